"""com.microsoft.NhwcMaxPool (onnxruntime's contrib op): MaxPool on an 8-bit NHWC tensor
([N, spatial..., C]), what the int8 layout pass (passes/layout/int8_nhwc.py) makes of a quantized
MaxPool inside an NHWC region.  Attributes as MaxPool's (kernel_shape, strides, dilations, pads,
ceil_mode; the pass writes pads resolved, no auto_pad).  Padding never wins; an empty window gives
the type's minimum (as the C kernels, runtime_c/pool/maxpool_nhwc.c)."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .registry import get_attr, reference, shape_rule

MS = "com.microsoft"


def window(node, spatial) -> Tuple[List[int], List[int], List[int], List[int], List[int], List[int]]:
    """(kernel, strides, dilations, pads begin, pads end, output sizes) for input ``spatial``."""
    r = len(spatial)
    k = [int(v) for v in get_attr(node, "kernel_shape")]
    s = [int(v) for v in (get_attr(node, "strides", None) or [1] * r)]
    d = [int(v) for v in (get_attr(node, "dilations", None) or [1] * r)]
    pads = [int(v) for v in (get_attr(node, "pads", None) or [0] * (2 * r))]
    b, e = pads[:r], pads[r:]
    ceil = bool(get_attr(node, "ceil_mode", 0))
    out = []
    for i in range(r):
        num = int(spatial[i]) + b[i] + e[i] - ((k[i] - 1) * d[i] + 1)
        o = (-(-num // s[i]) if ceil else num // s[i]) + 1
        if ceil and (o - 1) * s[i] >= int(spatial[i]) + b[i]:
            o -= 1  # the last window would start in the end padding
        out.append(o)
    return k, s, d, b, e, out


@shape_rule("NhwcMaxPool", MS)
def _nhwc_maxpool_shape(node):
    x = node.inputs[0]
    if x.shape is None or not all(isinstance(v, (int, np.integer)) for v in x.shape):
        return [(x.dtype, None)]
    out = window(node, list(x.shape[1:-1]))[-1]
    return [(x.dtype, (x.shape[0],) + tuple(out) + (x.shape[-1],))]


@reference("NhwcMaxPool", MS)
def _nhwc_maxpool_ref(node, x):
    k, s, d, b, e, out = window(node, list(x.shape[1:-1]))
    lowest = np.iinfo(x.dtype).min
    r = len(k)
    # pad with the lowest value far enough for every window (ceil_mode may reach past pads end)
    hi = [max(0, (o - 1) * st + (kk - 1) * dd + 1 - (n + bb))
          for o, st, kk, dd, n, bb in zip(out, s, k, d, x.shape[1:-1], b)]
    xp = np.pad(x, [(0, 0)] + [(bb, h) for bb, h in zip(b, hi)] + [(0, 0)], constant_values=lowest)
    y = np.full((x.shape[0],) + tuple(out) + (x.shape[-1],), lowest, x.dtype)
    for tap in np.ndindex(*k):
        sl = tuple(slice(t * dd, t * dd + (o - 1) * st + 1, st) for t, dd, o, st in zip(tap, d, out, s))
        y = np.maximum(y, xp[(slice(None),) + sl + (slice(None),)])
    assert y.ndim == r + 2
    return [y]
