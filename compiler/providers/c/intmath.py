"""Integer arithmetic as C expressions without undefined behaviour.

ONNX integer +, -, * and negation wrap around (two's complement), as numpy and onnxruntime
compute them; in C a signed overflow (INT32_MAX + 1, -INT32_MIN, 65535 * 65535 after uint16
promotes to int) is undefined and was reported by UBSan (scripts/sanitize.py).  These
expressions compute in the unsigned type of the operands' width, where wrapping is defined,
and convert back (modulo 2^N on every compiler onnxc supports).  Float operands are left as
they were.
"""
from __future__ import annotations

import numpy as np

from ...dtypes import c_type


def _unsigned(dtype) -> str:
    return "uint64_t" if np.dtype(dtype).itemsize == 8 else "uint32_t"


def wraps(dtype) -> bool:
    return np.dtype(dtype).kind in "iu"


def wrap_binary(op: str, a: str, b: str, dtype) -> str:
    """``a op b`` (op one of + - *) in ``dtype``."""
    if not wraps(dtype):
        return f"({a} {op} {b})"
    u = _unsigned(dtype)
    return f"(({c_type(dtype)})(({u})({a}) {op} ({u})({b})))"


def wrap_neg(a: str, dtype) -> str:
    if not wraps(dtype):
        return f"(-{a})"
    u = _unsigned(dtype)
    return f"(({c_type(dtype)})(({u})0 - ({u})({a})))"


def wrap_abs(a: str, dtype) -> str:
    """|a|; |INT_MIN| is INT_MIN, as numpy gives."""
    if np.dtype(dtype).kind == "u":
        return a
    return f"({a} < 0 ? {wrap_neg(a, dtype)} : {a})"
