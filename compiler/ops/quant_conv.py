"""Op knowledge for the quantized convolutions QLinearConv and ConvInteger: the window attributes
resolved once (kernel, strides, dilations, pads with auto_pad, group) for the shape rule and the
C emitter (providers/c/quant_conv.py), validity rules for the quantization parameters (the
geometry rules shared with Conv are in nn.py), and numpy references with onnxruntime's
arithmetic (int32 accumulation; QLinearConv requantizes as MlasRequantizeOutput: float32
multiplier x_scale * w_scale[m] / y_scale in that order, float(acc) * multiplier rounded half to
even, plus the zero point, saturated), so constant folding agrees with the C kernels bit for bit.

Inputs: QLinearConv (x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
B?); ConvInteger (x, w, x_zero_point?, w_zero_point?). x_scale, x_zero_point, y_scale,
y_zero_point are per tensor (a scalar or one element: onnxruntime accepts both); w_scale and
w_zero_point per tensor or one per output channel.

com.microsoft.QLinearConv (onnxruntime's contrib op, same inputs) with ``channels_last`` = 1 reads
and writes NHWC ([N, spatial..., C]); the int8 layout pass (passes/layout/int8_nhwc.py) makes it.
Everything below works on the NCHW view of its shapes (``nchw``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from .registry import check, get_attr, reference, shape_rule
from .validate import inp, known, shape_of, shape_str

MS = "com.microsoft"

# input positions
QLINEAR = {"x": 0, "x_scale": 1, "x_zero_point": 2, "w": 3, "w_scale": 4, "w_zero_point": 5,
           "y_scale": 6, "y_zero_point": 7, "B": 8}
INTEGER = {"x": 0, "w": 1, "x_zero_point": 2, "w_zero_point": 3}


def positions(node) -> dict:
    return QLINEAR if node.op_type == "QLinearConv" else INTEGER


def channels_last(node) -> bool:
    return node.domain == MS and bool(get_attr(node, "channels_last", 0))


def nchw(node, shape):
    """The NCHW view of an activation shape of ``node`` (channels_last: [N, spatial..., C])."""
    if shape is None or not channels_last(node) or len(shape) < 3:
        return None if shape is None else tuple(shape)
    return (shape[0], shape[-1]) + tuple(shape[1:-1])


def to_nhwc(shape):
    """[N, C, spatial...] -> [N, spatial..., C]."""
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


@dataclass
class Window:
    """A convolution's resolved window: per spatial axis kernel, stride, dilation, pads (begin,
    end) and output size; group."""
    kernel: Tuple[int, ...]
    strides: Tuple[int, ...]
    dilations: Tuple[int, ...]
    pads_begin: Tuple[int, ...]
    pads_end: Tuple[int, ...]
    out: Tuple[int, ...]
    group: int


def window(node, x_shape, w_shape) -> Window:
    """The window of a QLinearConv/ConvInteger with static input and weight shapes (auto_pad
    resolved like Conv: SAME_* gives ceil(in / stride) outputs, the odd pad at the end for
    SAME_UPPER, at the beginning for SAME_LOWER; VALID none)."""
    sp = len(x_shape) - 2
    kernel = tuple(int(k) for k in (get_attr(node, "kernel_shape") or w_shape[2:]))
    strides = tuple(int(s) for s in (get_attr(node, "strides") or [1] * sp))
    dil = tuple(int(d) for d in (get_attr(node, "dilations") or [1] * sp))
    auto = get_attr(node, "auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    ins = [int(d) for d in x_shape[2:]]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(ins, strides)]
        total = [max(0, (o - 1) * s + (k - 1) * d + 1 - i) for o, s, k, d, i in zip(out, strides, kernel, dil, ins)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto == "SAME_UPPER" else (big, small)
    else:
        pads = get_attr(node, "pads") or [0] * (2 * sp)
        begin, end = [int(p) for p in pads[:sp]], [int(p) for p in pads[sp:]]
        if auto == "VALID":
            begin, end = [0] * sp, [0] * sp
    out = tuple((i + b + e - d * (k - 1) - 1) // s + 1
                for i, b, e, d, k, s in zip(ins, begin, end, dil, kernel, strides))
    return Window(kernel, strides, dil, tuple(begin), tuple(end), out, int(get_attr(node, "group", 1)))


# --- shape rule -----------------------------------------------------------------------------
@shape_rule("QLinearConv")
@shape_rule("QLinearConv", MS)
@shape_rule("ConvInteger")
def _quant_conv_shape(node):
    """(N, M, out...) from the window (channels_last: (N, out..., M)); onnx's rule where a dim
    is symbolic."""
    x, w = node.inputs[0], node.inputs[positions(node)["w"]]
    xs = nchw(node, x.shape)
    if xs is None or w.shape is None or not all(known(d) for d in list(xs[2:]) + [w.shape[0]]) \
            or len(xs) < 3 or len(xs) != len(w.shape):
        if node.domain == MS:
            return [(None, None)]
        from .shapes import _onnx_infer
        return _onnx_infer(node)
    win = window(node, xs, w.shape)
    if node.op_type == "QLinearConv":
        yz = node.input(QLINEAR["y_zero_point"])
        dtype = yz.dtype if yz is not None else x.dtype
    else:
        dtype = np.dtype(np.int32)
    y = (xs[0], int(w.shape[0])) + win.out
    return [(dtype, to_nhwc(y) if channels_last(node) else y)]


# --- validity -------------------------------------------------------------------------------
def _per_tensor(node, i, what):
    s = shape_of(node, i)
    if s is not None and all(known(d) for d in s) and (len(s) > 1 or int(np.prod(s, dtype=np.int64)) != 1):
        yield f"{inp(node, i)} has shape {shape_str(s)}, expected a scalar or one element ({what} is per tensor)"


def _per_channel(node, i, out_channels, what):
    s = shape_of(node, i)
    if s is None or not all(known(d) for d in s):
        return
    n = int(np.prod(s, dtype=np.int64))
    if len(s) > 1 or (n != 1 and (out_channels is None or n != out_channels)):
        yield (f"{inp(node, i)} has shape {shape_str(s)}, expected a scalar, one element or "
               f"{out_channels if out_channels is not None else 'M'} values ({what}: per tensor or per output channel)")


def _window_problem(node):
    x, w = nchw(node, shape_of(node, 0)), shape_of(node, positions(node)["w"])
    if x is None or w is None or len(x) < 3 or len(x) != len(w) or not all(known(d) for d in x[2:]):
        return
    try:
        win = window(node, x, w)
    except (TypeError, ValueError):
        return  # malformed attributes: nn.py's rules name them
    if len(win.kernel) != len(x) - 2 or len(win.strides) != len(x) - 2 or len(win.dilations) != len(x) - 2 \
            or min(win.strides + win.dilations, default=1) < 1:
        return
    for a, o in enumerate(win.out):
        if o < 1:
            yield (f"the window does not fit on spatial axis {a}: input {x[2 + a]} + pads "
                   f"{win.pads_begin[a]} + {win.pads_end[a]} < dilated kernel "
                   f"{win.dilations[a] * (win.kernel[a] - 1) + 1}")


@check("QLinearConv")
@check("QLinearConv", domain=MS)
def _qlinear_conv_params(node):
    w = shape_of(node, QLINEAR["w"])
    m = int(w[0]) if w is not None and len(w) and known(w[0]) else None
    for name in ("x_scale", "x_zero_point", "y_scale", "y_zero_point"):
        yield from _per_tensor(node, QLINEAR[name], name)
    for name in ("w_scale", "w_zero_point"):
        yield from _per_channel(node, QLINEAR[name], m, name)
    yield from _window_problem(node)


@check("ConvInteger")
def _conv_integer_params(node):
    w = shape_of(node, INTEGER["w"])
    m = int(w[0]) if w is not None and len(w) and known(w[0]) else None
    if node.input(INTEGER["x_zero_point"]) is not None:
        yield from _per_tensor(node, INTEGER["x_zero_point"], "x_zero_point")
    if node.input(INTEGER["w_zero_point"]) is not None:
        yield from _per_channel(node, INTEGER["w_zero_point"], m, "w_zero_point")
    yield from _window_problem(node)


# --- numpy references -----------------------------------------------------------------------
def conv_int32(node, x: np.ndarray, w: np.ndarray, xz, wz) -> np.ndarray:
    """sum (x - xz) * (w - wz[m]) over each window, padding contributing nothing, as int32
    (wrapping like onnxruntime's int32 accumulation)."""
    win = window(node, x.shape, w.shape)
    N, C = x.shape[:2]
    M = w.shape[0]
    G = win.group
    Cg, Mg = C // G, M // G
    xd = x.astype(np.int64) - int(np.asarray(xz).reshape(-1)[0])
    wd = w.astype(np.int64) - np.asarray(wz, np.int64).reshape((-1,) + (1,) * (w.ndim - 1))
    pad = [(0, 0), (0, 0)] + [(b, e) for b, e in zip(win.pads_begin, win.pads_end)]
    xp = np.pad(xd, pad)
    y = np.zeros((N, M) + win.out, np.int64)
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                   for t, d, o, s in zip(tap, win.dilations, win.out, win.strides))
        patch = xp[(slice(None), slice(None)) + sl]  # N, C, out...
        for g in range(G):
            wt = wd[(slice(g * Mg, (g + 1) * Mg), slice(None)) + tap]  # Mg, Cg
            pg = patch[:, g * Cg:(g + 1) * Cg]
            y[:, g * Mg:(g + 1) * Mg] += np.einsum("mc,nc...->nm...", wt, pg)
    return ((y + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def requantize(acc: np.ndarray, mult: np.ndarray, zp: int, dtype) -> np.ndarray:
    """clamp(rint(float32(acc) * mult[m]) + zp) over axis 1, float32 arithmetic, half to even."""
    info = np.iinfo(dtype)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    v = acc.astype(np.float32) * np.asarray(mult, np.float32).reshape(shape)
    v = np.clip(v, np.float32(info.min - zp), np.float32(info.max - zp))
    return (np.rint(v).astype(np.int64) + zp).astype(dtype)


def multiplier(x_scale, w_scale, y_scale) -> np.ndarray:
    """x_scale * w_scale / y_scale in float32, in onnxruntime's order (one per w_scale value)."""
    xs = np.float32(np.asarray(x_scale, np.float32).reshape(-1)[0])
    ys = np.float32(np.asarray(y_scale, np.float32).reshape(-1)[0])
    with np.errstate(all="ignore"):
        return (xs * np.asarray(w_scale, np.float32).reshape(-1)) / ys


@reference("QLinearConv")
def _qlinear_conv_ref(node, x, xs, xz, w, ws, wz, ys, yz, b=None):
    acc = conv_int32(node, x, w, xz, wz)
    if b is not None:
        acc = (acc.astype(np.int64) + b.astype(np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2)))
        acc = ((acc + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)
    M = w.shape[0]
    mult = np.broadcast_to(multiplier(xs, ws, ys), (M,))
    return [requantize(acc, mult, int(np.asarray(yz).reshape(-1)[0]), yz.dtype)]


@reference("QLinearConv", MS)
def _qlinear_conv_ms_ref(node, x, *rest):
    if not channels_last(node):
        return _qlinear_conv_ref(node, x, *rest)
    y = _qlinear_conv_ref(node, np.moveaxis(x, -1, 1), *rest)[0]
    return [np.ascontiguousarray(np.moveaxis(y, 1, -1))]


@reference("ConvInteger")
def _conv_integer_ref(node, x, w, xz=None, wz=None):
    return [conv_int32(node, x, w, 0 if xz is None else xz, 0 if wz is None else wz)]


def spatial_2d(win: Window, x_shape, w_shape) -> Optional[List[int]]:
    """(H, W, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr, OH, OW) of a 1-D or 2-D window seen as 2-D
    (1-D: H = 1), or None for other ranks."""
    if len(win.kernel) == 2:
        H, W = int(x_shape[2]), int(x_shape[3])
        return [H, W, *win.kernel, *win.strides, *win.dilations, win.pads_begin[0], win.pads_begin[1],
                win.pads_end[0], win.pads_end[1], *win.out]
    if len(win.kernel) == 1:
        return [1, int(x_shape[2]), 1, win.kernel[0], 1, win.strides[0], 1, win.dilations[0], 0, win.pads_begin[0],
                0, win.pads_end[0], 1, win.out[0]]
    return None
