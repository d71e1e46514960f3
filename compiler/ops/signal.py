"""Op knowledge for the signal family: DFT's parameters (axis and dft_length, attributes or
constant inputs by opset) and validity rule.  The reference is onnx.reference's (numpy's FFT);
the C kernel is runtime_c/math/dft_ref.c."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .registry import check, facts, get_attr, shape_rule
from .validate import const_of, inp, shape_of, shape_str

# dft_length and (opset 20) axis decide the output shape: specialized on their value (session.py)
facts("DFT", param_inputs=(1, 2))
# STFT's frame_step and frame_length decide the output shape too (the window is data)
facts("STFT", param_inputs=(1, 3))
# every input of MelWeightMatrix decides its output (shape and values): specialized, it folds
facts("MelWeightMatrix", param_inputs=(0, 1, 2, 3, 4))
# onnxruntime's DFT and STFT differ from the spec's values in the node suite (10 DFT, 2 STFT cases)
facts("DFT", "STFT", ort_deviates=True)


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


def stft_plan(node):
    """(frame_step, window_len, frame_length) with constant parameters, or None: the window's
    length (frames are sliced that long; frame_length without a window), and the DFT length
    (frame_length, else the window's, else the whole signal), as onnx.reference."""
    x = shape_of(node, 0)
    step = const_of(node, 1)
    if x is None or step is None or len(x) != 3 or not isinstance(x[1], int):
        return None
    win = node.input(2)
    if win is not None and (win.shape is None or len(win.shape) != 1 or not isinstance(win.shape[0], int)):
        return None
    if node.input(3) is not None:
        c = const_of(node, 3)
        if c is None:
            return None
        n = int(np.asarray(c).reshape(-1)[0])
    else:
        n = win.shape[0] if win is not None else x[1]
    return int(np.asarray(step).reshape(-1)[0]), (win.shape[0] if win is not None else n), n


@check("STFT")
def _stft_rule(node):
    x = shape_of(node, 0)
    if x is not None and (len(x) != 3 or (isinstance(x[2], int) and x[2] not in (1, 2))):
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected [batch, signal_length, 1 or 2]"
        return
    plan = stft_plan(node)
    if plan is None:
        return
    step, _, n = plan
    if step < 1:
        yield f"{inp(node, 1)} (frame_step) is {step}, expected >= 1"
    if n < 1 or n > x[1]:
        yield f"the frame length is {n}, expected in [1, {x[1]}] (the signal length)"


@shape_rule("STFT")
def _stft_shape(node):
    """[batch, frames, bins, 2]: frames = (signal_length - frame_length) // frame_step + 1, bins
    frame_length // 2 + 1 when onesided (the default, 1; onnx's own rule reads it as 0)."""
    x = node.inputs[0]
    plan = stft_plan(node)
    if plan is None or not isinstance(x.shape[0], int):
        return [(x.dtype, None)]
    step, _, n = plan
    if step < 1 or not 1 <= n <= x.shape[1]:
        return [(x.dtype, None)]
    bins = n // 2 + 1 if int(get_attr(node, "onesided", 1)) else n
    return [(x.dtype, (x.shape[0], (x.shape[1] - n) // step + 1, bins, 2))]
