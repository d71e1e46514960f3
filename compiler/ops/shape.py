"""Op knowledge for the shape family: numpy references and shape rules (see registry.py)."""
from __future__ import annotations

import numpy as np

from .registry import reference, shape_rule


@reference("ConstantOfShape")
def _constant_of_shape(node, shape):
    value = node.attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)[:1]
    return [np.full(tuple(int(d) for d in shape), fill[0], dtype=fill.dtype)]


@reference("Shape")
def _shape(node, x):
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return [np.array(x.shape[start:end], dtype=np.int64)]


@reference("Unsqueeze")
def _unsqueeze(node, x, axes=None):
    axes = node.attrs.get("axes") if axes is None else axes.tolist()
    out_rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(int(a) % out_rank for a in axes):
        shape.insert(a, 1)
    return [x.reshape(shape)]


@reference("Concat")
def _concat(node, *xs):
    return [np.concatenate(xs, axis=node.attrs["axis"])]


@shape_rule("Compress")
def _compress_shape(node):
    """With a constant condition the output shape is known at compile time."""
    x, cond = node.inputs[0], node.inputs[1]
    if cond is None or not cond.is_const or x.shape is None:
        from .shapes import _onnx_infer
        return _onnx_infer(node)
    keep = int(np.count_nonzero(cond.const.reshape(-1)[: (x.shape[node.attrs["axis"]] if "axis" in node.attrs
                                                          else x.size)]))
    if "axis" not in node.attrs:
        return [(x.dtype, (keep,))]
    axis = node.attrs["axis"] % len(x.shape)
    return [(x.dtype, tuple(keep if i == axis else d for i, d in enumerate(x.shape)))]
