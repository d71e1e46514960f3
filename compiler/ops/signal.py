"""Op knowledge for the signal family: DFT's parameters (axis and dft_length, attributes or
constant inputs by opset) and validity rule.  The reference is onnx.reference's (numpy's FFT);
the C kernel is runtime_c/math/dft_ref.c."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .registry import check, facts, get_attr
from .validate import const_of, inp, shape_of, shape_str

# dft_length and (opset 20) axis decide the output shape: specialized on their value (session.py)
facts("DFT", param_inputs=(1, 2))


def dft_axis(node) -> Optional[int]:
    """The signal axis as given (an attribute before opset 20, input 2 from 20: None when that is
    a runtime value); default 1 before opset 20, -2 from it."""
    if node.opset < 20:
        return int(get_attr(node, "axis", 1))
    if node.input(2) is None:
        return -2
    c = const_of(node, 2)
    return None if c is None else int(np.asarray(c).reshape(-1)[0])


def dft_length(node, signal_len: int) -> Tuple[bool, Optional[int]]:
    """(known, n): the transform length, input 1 when given (None if a runtime value), else the
    signal's length along the axis (2 * (len - 1) for an inverse one-sided transform)."""
    if node.input(1) is not None:
        c = const_of(node, 1)
        return (False, None) if c is None else (True, int(np.asarray(c).reshape(-1)[0]))
    if get_attr(node, "inverse", 0) and get_attr(node, "onesided", 0):
        return True, 2 * (signal_len - 1)
    return True, signal_len


@check("DFT")
def _dft_rule(node):
    x = shape_of(node, 0)
    if x is None:
        return
    if len(x) < 2 or (isinstance(x[-1], int) and x[-1] not in (1, 2)):
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected [..., signal, 1 or 2] (real or complex)"
        return
    axis = dft_axis(node)
    if axis is not None and not (-len(x) <= axis < len(x) and axis % len(x) != len(x) - 1):
        yield (f"axis is {axis}, expected a signal axis of {inp(node, 0)}: in [{-len(x)}, {len(x) - 1}] "
               f"but not the last one (real/imaginary)")
    c = const_of(node, 1)
    if c is not None and int(np.asarray(c).reshape(-1)[0]) < 1:
        yield f"{inp(node, 1)} (dft_length) is {int(np.asarray(c).reshape(-1)[0])}, expected >= 1"
