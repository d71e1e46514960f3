"""One table for element types: ONNX enum <-> numpy dtype <-> C type."""
from __future__ import annotations

import numpy as np

# onnx TensorProto enum values, written out so the runtime needs no onnx import.
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16 = 10, 11, 12, 13, 16

# name, numpy dtype, C type, ONNX enum
_TABLE = [
    ("float32", np.float32, "float", FLOAT),
    ("float64", np.float64, "double", DOUBLE),
    ("int8", np.int8, "int8_t", INT8),
    ("int16", np.int16, "int16_t", INT16),
    ("int32", np.int32, "int32_t", INT32),
    ("int64", np.int64, "int64_t", INT64),
    ("uint8", np.uint8, "uint8_t", UINT8),
    ("uint16", np.uint16, "uint16_t", UINT16),
    ("uint32", np.uint32, "uint32_t", UINT32),
    ("uint64", np.uint64, "uint64_t", UINT64),
    ("bool", np.bool_, "uint8_t", BOOL),
]

_BY_ONNX = {t[3]: t for t in _TABLE}
_BY_NP = {np.dtype(t[1]): t for t in _TABLE}

# ORT-style type strings for get_inputs()/get_outputs()
_ORT_NAMES = {
    "float32": "tensor(float)", "float64": "tensor(double)", "int8": "tensor(int8)",
    "int16": "tensor(int16)", "int32": "tensor(int32)", "int64": "tensor(int64)",
    "uint8": "tensor(uint8)", "uint16": "tensor(uint16)", "uint32": "tensor(uint32)",
    "uint64": "tensor(uint64)", "bool": "tensor(bool)",
}


def np_dtype_from_onnx(elem_type: int) -> np.dtype:
    """numpy dtype for an ONNX element type; falls back to onnx's own table for exotic types."""
    if elem_type in _BY_ONNX:
        return np.dtype(_BY_ONNX[elem_type][1])
    from onnx import helper
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def onnx_from_np_dtype(dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype in _BY_NP:
        return _BY_NP[dtype][3]
    from onnx import helper
    return helper.np_dtype_to_tensor_dtype(dtype)


def c_type(dtype) -> str:
    """C element type for a numpy dtype; raises KeyError for types the C path cannot carry."""
    return _BY_NP[np.dtype(dtype)][2]


def has_c_type(dtype) -> bool:
    try:
        return np.dtype(dtype) in _BY_NP
    except TypeError:
        return False


def dtype_name(dtype) -> str:
    dtype = np.dtype(dtype)
    return _BY_NP[dtype][0] if dtype in _BY_NP else str(dtype)


def ort_type_name(dtype) -> str:
    return _ORT_NAMES.get(dtype_name(dtype), f"tensor({dtype_name(dtype)})")


def is_float(dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.floating)


def is_int(dtype) -> bool:
    return np.issubdtype(np.dtype(dtype), np.integer)
