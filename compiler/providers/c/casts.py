"""C expressions for Cast: element conversions between every pair of types the C path carries.

* Between standard types, C's own conversion, except float -> integer, which C leaves undefined
  for NaN and out-of-range values: onnxc_f2i* (runtime_c) define them.
* Where either side is narrow (float16, bfloat16, float8, float4, int4/int2: raw bits in C), through
  onnxc_half.h: round to nearest even, once, from the source value (float64 and wide integers
  reach bfloat16 and E8M0 through a float32 rounded to odd, never through a float32 rounded to
  nearest); float8 ``saturate``, E8M0 ``round_mode``; float -> int4/int2 truncates to int32 and
  keeps the low bits (the spec leaves a float out of the target's range undefined).

A leaf: the Cast emitter (elementwise.py) and every kernel that converts an element use it.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ...dtypes import c_type, dtype_name, has_c_type
from ...ops.registry import get_attr

_ROUND_MODES = {"up": 0, "down": 1, "nearest": 2}


def standard_cast_expr(x, src, dst) -> str:
    """C expression converting element ``x`` of standard type ``src`` to ``dst``."""
    src, dst = np.dtype(src), np.dtype(dst)
    if dst == np.bool_:
        return f"({x} != 0)"
    if src.kind == "f" and dst.kind in "iu":
        # float -> int is undefined in C for NaN and out-of-range values: onnxc_f2i* define them
        if dst == np.uint64:
            return f"onnxc_f2u64({x})"
        conv = "onnxc_f2i32" if dst.itemsize < 4 or dst == np.int32 else "onnxc_f2i64"
        return f"({c_type(dst)}){conv}({x})"
    return x


# narrow source -> (C expression decoding the bits exactly, class of the result)
_DECODE = {
    "float16": ("onnxc_f16_to_f32({})", "f"),
    "bfloat16": ("onnxc_bf16_to_f32({})", "f"),
    "float8_e4m3fn": ("onnxc_f8e4m3fn_to_f32({})", "f"),
    "float8_e4m3fnuz": ("onnxc_f8e4m3fnuz_to_f32({})", "f"),
    "float8_e5m2": ("onnxc_f8e5m2_to_f32({})", "f"),
    "float8_e5m2fnuz": ("onnxc_f8e5m2fnuz_to_f32({})", "f"),
    "float8_e8m0fnu": ("onnxc_e8m0_to_f32({})", "f"),
    "float4_e2m1fn": ("onnxc_f4e2m1_to_f32({})", "f"),
    "int4": ("onnxc_i4_to_i32({})", "i"),
    "uint4": ("((int32_t)(({}) & 15u))", "i"),
    "int2": ("onnxc_i2_to_i32({})", "i"),
    "uint2": ("((int32_t)(({}) & 3u))", "i"),
}
_F8_ENCODE = {"float8_e4m3fn": "onnxc_f64_to_f8e4m3fn", "float8_e4m3fnuz": "onnxc_f64_to_f8e4m3fnuz",
              "float8_e5m2": "onnxc_f64_to_f8e5m2", "float8_e5m2fnuz": "onnxc_f64_to_f8e5m2fnuz"}
_LOW_BITS = {"int4": 15, "uint4": 15, "int2": 3, "uint2": 3}
_STANDARD = {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "bool"}


def castable(dtype) -> bool:
    return dtype is not None and has_c_type(dtype) and (dtype_name(dtype) in _STANDARD or dtype_name(dtype) in _DECODE)


def decode(x: str, src) -> Tuple[str, str]:
    """(C expression of the exact source value, its class): f float, d double, i integer."""
    name = dtype_name(src)
    if name in _DECODE:
        tmpl, kind = _DECODE[name]
        return tmpl.format(x), kind
    return x, {"float32": "f", "float64": "d"}.get(name, "i")


def _as_double(e: str, kind: str) -> str:
    return e if kind == "d" else f"(double)({e})"


def _as_float32_odd(e: str, kind: str, src) -> str:
    """A float32 from which one more rounding to bfloat16/E8M0 rounds the source value once:
    exact sources as they are, float64 and integers wider than 24 bits rounded to odd."""
    if kind == "f" or dtype_name(src) in ("int8", "uint8", "int16", "uint16", "bool", *_LOW_BITS):
        return e if kind == "f" else f"(float)({e})"
    if kind == "d":
        return f"onnxc_f64_to_f32_odd({e})"
    if dtype_name(src) in ("uint32", "uint64"):
        return f"onnxc_u64_to_f32_odd((uint64_t)({e}))"
    return f"onnxc_i64_to_f32_odd((int64_t)({e}))"


def cast_expr(x: str, src, dst, saturate: int = 1, round_mode: str = "up") -> str:
    """C expression converting element ``x`` of ``src`` to ``dst`` when either is narrow."""
    e, kind = decode(x, src)
    name = dtype_name(dst)
    sat = 1 if saturate else 0
    if name == "float16":  # integers beyond 2^53 overflow float16 however they round
        return f"onnxc_f32_to_f16({e})" if kind == "f" else f"onnxc_f64_to_f16({_as_double(e, kind)})"
    if name in _F8_ENCODE:  # from double, rounded once; every integer beyond 2^53 overflows them
        return f"{_F8_ENCODE[name]}({_as_double(e, kind)}, {sat})"
    if name == "float4_e2m1fn":
        return f"onnxc_f64_to_f4e2m1({_as_double(e, kind)})"
    f = _as_float32_odd(e, kind, src)
    if name == "bfloat16":
        return f"onnxc_f32_to_bf16({f})"
    if name == "float8_e8m0fnu":
        return f"onnxc_f32_to_e8m0({f}, {sat}, {_ROUND_MODES[round_mode]})"
    if name in _LOW_BITS:
        mask = _LOW_BITS[name]
        if kind in ("f", "d"):
            return f"onnxc_f64_to_lowbits({_as_double(e, kind)}, {mask}u)"
        return f"(uint8_t)((uint64_t)({e}) & {mask}u)"
    if name == "bool":
        return f"(({e}) != 0)"
    if kind == "f":  # a decoded float: the float32 cast, whose float -> integer has no undefined behaviour
        return standard_cast_expr(e, np.float32, dst)
    return f"({c_type(dst)})({e})"  # an int4/int2 value to a standard type


def cast_reason(node) -> Optional[str]:
    """Why a Cast/CastLike touching narrow types is not supported (None: it is)."""
    src, dst = node.inputs[0].dtype, node.outputs[0].dtype
    for role, t in (("from", src), ("to", dst)):
        if not castable(t):
            return f"cast {role} {t} not supported"
    if dtype_name(dst) == "float8_e8m0fnu" and get_attr(node, "round_mode", "up") not in _ROUND_MODES:
        return f"round_mode '{get_attr(node, 'round_mode', 'up')}' not supported"
    return None
