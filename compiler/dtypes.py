"""One table for element types: ONNX enum <-> numpy dtype <-> C type."""
from __future__ import annotations

import numpy as np

# onnx TensorProto enum values, written out so the runtime needs no onnx import.
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, BFLOAT16 = 10, 11, 12, 13, 16
FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ = 17, 18, 19, 20
UINT4, INT4, FLOAT4E2M1, FLOAT8E8M0, UINT2, INT2 = 21, 22, 23, 24, 25, 26

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
    ("float16", np.float16, "uint16_t", FLOAT16),
]

# Narrow types numpy lacks (ml_dtypes, which onnx depends on): C carries their bits, one element
# per storage unit (int4/uint4/int2/uint2/float4 unpacked, one per byte, as ml_dtypes stores them).
_NARROW = [
    ("bfloat16", "uint16_t", BFLOAT16),
    ("float8_e4m3fn", "uint8_t", FLOAT8E4M3FN),
    ("float8_e4m3fnuz", "uint8_t", FLOAT8E4M3FNUZ),
    ("float8_e5m2", "uint8_t", FLOAT8E5M2),
    ("float8_e5m2fnuz", "uint8_t", FLOAT8E5M2FNUZ),
    ("float8_e8m0fnu", "uint8_t", FLOAT8E8M0),
    ("float4_e2m1fn", "uint8_t", FLOAT4E2M1),
    ("int4", "uint8_t", INT4),
    ("uint4", "uint8_t", UINT4),
    ("int2", "uint8_t", INT2),
    ("uint2", "uint8_t", UINT2),
]
try:  # the runtime still loads (without these types) when ml_dtypes is absent
    import ml_dtypes as _ml
    _TABLE += [(name, getattr(_ml, name), ct, enum) for name, ct, enum in _NARROW if hasattr(_ml, name)]
except ImportError:  # pragma: no cover
    pass

_BY_ONNX = {t[3]: t for t in _TABLE}
_BY_NP = {np.dtype(t[1]): t for t in _TABLE}
_BY_NAME = {t[0]: t for t in _TABLE}

# Types the C path stores but does not compute in: only Cast/CastLike and kernels that move
# bits convert or copy them; every other op is rewritten through float32 (passes/legalize_half).
STORAGE_ONLY = frozenset(np.dtype(t[1]) for t in _TABLE if t[0] in {"float16"} | {n for n, _, _ in _NARROW})

# ORT-style type strings for get_inputs()/get_outputs()
_ORT_NAMES = {
    "float32": "tensor(float)", "float64": "tensor(double)", "int8": "tensor(int8)",
    "int16": "tensor(int16)", "int32": "tensor(int32)", "int64": "tensor(int64)",
    "uint8": "tensor(uint8)", "uint16": "tensor(uint16)", "uint32": "tensor(uint32)",
    "uint64": "tensor(uint64)", "bool": "tensor(bool)", "float16": "tensor(float16)",
    "bfloat16": "tensor(bfloat16)", "float8_e4m3fn": "tensor(float8e4m3fn)",
    "float8_e4m3fnuz": "tensor(float8e4m3fnuz)", "float8_e5m2": "tensor(float8e5m2)",
    "float8_e5m2fnuz": "tensor(float8e5m2fnuz)", "float8_e8m0fnu": "tensor(float8e8m0)",
    "float4_e2m1fn": "tensor(float4e2m1)",
}


def np_dtype_from_name(name: str) -> np.dtype:
    """numpy dtype for a name written by dtype_name (manifest), ml_dtypes names included."""
    if name in _BY_NAME:
        return np.dtype(_BY_NAME[name][1])
    return np.dtype(name)


def is_storage_only(dtype) -> bool:
    """float16, bfloat16, float8, float4, int4/uint4, int2/uint2: carried, not computed in."""
    try:
        return np.dtype(dtype) in STORAGE_ONLY
    except TypeError:
        return False


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
