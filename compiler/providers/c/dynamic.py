"""Ops whose output shape depends on the data: NonZero, Unique, NonMaxSuppression.

Each output gets a buffer of a compile-time upper bound (``bounds``: NonZero [rank, numel];
Unique numel, or the axis' extent, slices; NonMaxSuppression batches * classes * min(max, boxes)
rows when max_output_boxes_per_class is a constant, else batches * classes * boxes).  The kernel
counts first, writes at most the bound (densely, at the actual shape) and leaves the actual dims
in the value's dims record (EmitContext.dims), which model.h's <prefix>_output_shape and the
Python runtime read.  The values' readers need static shapes, so they run in the fallback
provider (registry.common_check says so), which reads the actual shape from the same record.

A model may declare a static shape for such an output (the ONNX test cases do): then the
buffer has that shape and a run whose data give another count fails with ONNXC_ERR_VALUE
(nothing past the buffer is written), as a runtime k that disagrees with TopK's compiled shape.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ...dtypes import is_storage_only, onnx_from_np_dtype
from ...ops import get_attr
from .registry import c_kernel

_UNIQUE_TYPES = {np.dtype(t) for t in (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                       np.uint16, np.uint32, np.uint64, np.bool_)}


def _prod(dims) -> int:
    return int(np.prod(list(dims), dtype=np.int64))


def _count_check(ctx, node, v, k: int, count: str, bound) -> str:
    """C that, after ``count`` (a C expression) is known, either records the dims of bounded
    output ``v`` (its dim ``k`` is the count) or, for a declared static shape, fails the run when
    the count differs from it."""
    if id(v) in ctx.bounds:
        return " ".join(f"{ctx.dims(v)}[{j}] = {count if j == k else d};" for j, d in enumerate(bound))
    fail = ctx.fail(node, f"the data give {{value}} along axis {k} of output '{v.name}', whose shape the model "
                          f"declares as {tuple(v.shape)}", count, code="ONNXC_ERR_VALUE")
    return f"if ({count} != {v.shape[k]}) {{ {fail} }}"


# --- NonZero ---------------------------------------------------------------------------------
def _nonzero_check(node):
    x = node.inputs[0]
    if is_storage_only(x.dtype):
        return f"dtype {x.dtype} needs its float32 twin"
    return None


def _nonzero_bounds(node):
    x = node.inputs[0]
    return [(len(x.shape), x.size) if x.shape else (0, 1)]


@c_kernel("NonZero", check=_nonzero_check, bounds=_nonzero_bounds)
def nonzero(node, ctx):
    """Indices of the nonzero elements, [rank, count], in row-major order (numpy.nonzero; NaN is
    nonzero, -0.0 is zero).  A scalar gives [0, count]."""
    x, y = node.inputs[0], node.outputs[0]
    rank, bound = len(x.shape), ctx.bound(node.outputs[0])
    lines = [f"const {ctx.ctype(x)}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
             f"int64_t* ONNXC_RESTRICT Y = {ctx.ptr(y)};", "int64_t n = 0;",
             f"for (int64_t i = 0; i < {x.size}; ++i) n += X[i] != 0;"]
    record = _count_check(ctx, node, y, 1, "n", bound)
    if id(y) in ctx.bounds or rank == 0:  # a bound always holds n; a scalar writes no element
        lines.append(record)
        if rank == 0:
            return "\n".join(lines + ["(void)Y;"])
        lines.append("{")
    else:
        lines.append(record + " else {")
    dims = ", ".join(map(str, x.shape))
    lines += [f"  static const int64_t D[{rank}] = {{{dims}}};",
              "  int64_t j = 0;",
              f"  for (int64_t i = 0; i < {x.size}; ++i) {{",
              "    if (X[i] == 0) continue;",
              f"    for (int64_t d = {rank - 1}, r = i; d >= 0; --d) {{ Y[d * n + j] = r % D[d]; r /= D[d]; }}",
              "    ++j;",
              "  }",
              "}"]
    return "\n".join(lines)


# --- Unique ----------------------------------------------------------------------------------
def _unique_axis(node):
    """(axis or None, outer, n, inner) of the slices Unique compares."""
    x = node.inputs[0]
    axis = node.attrs.get("axis")
    if axis is None:
        return None, 1, x.size, 1
    axis %= len(x.shape)
    return axis, _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:])


def _unique_check(node):
    x = node.inputs[0]
    if x.dtype not in _UNIQUE_TYPES:
        return f"dtype {x.dtype} not supported"
    if "axis" in node.attrs and not x.shape:
        return "axis given for a scalar input"
    if any(v.dtype is None for v in node.outputs):
        return "an omitted output in the middle"
    n = _unique_axis(node)[2]
    if len(node.outputs) > 2 and node.outputs[2].is_static and tuple(node.outputs[2].shape) != (n,):
        return f"inverse_indices declared {node.outputs[2].shape}, expected ({n},)"
    return None


def _unique_bounds(node):
    x = node.inputs[0]
    axis, _, n, _ = _unique_axis(node)
    y = (n,) if axis is None else tuple(x.shape[:axis]) + (n,) + tuple(x.shape[axis + 1:])
    return [y, (n,), (n,), (n,)][:len(node.outputs)]


def _unique_scratch(node):
    return 6 * 8 * max(_unique_axis(node)[2], 1)


@c_kernel("Unique", check=_unique_check, bounds=_unique_bounds, scratch=_unique_scratch)
def unique(node, ctx):
    x, outs = node.inputs[0], list(node.outputs)
    axis, outer, n, inner = _unique_axis(node)
    y = outs[0]
    ydim = 0 if axis is None else axis
    # the groups every buffer holds (a declared static shape may hold fewer than the bound)
    cap = min([ctx.bound(y)[ydim]] + [ctx.bound(v)[0] for k, v in enumerate(outs) if k in (1, 3)])
    ptrs = [ctx.ptr(outs[k]) if k < len(outs) else "NULL" for k in range(4)]
    lines = [f"const int64_t u = onnxc_unique({onnx_from_np_dtype(x.dtype)}, {outer}, {n}, {inner}, "
             f"{int(get_attr(node, 'sorted', 1))}, {int(axis is None)}, {ctx.ptr(x)}, {ptrs[0]}, {ptrs[1]}, "
             f"{ptrs[2]}, {ptrs[3]}, {cap}, {ctx.scratch(node, 'int64_t')});"]
    # a declared static shape must hold the data's count (u > cap: onnxc_unique wrote nothing)
    for k, v in enumerate(outs):
        if k == 2:  # inverse_indices: always n (checked)
            if id(v) in ctx.bounds:
                lines.append(f"{ctx.dims(v)}[0] = {n};")
            continue
        lines.append(_count_check(ctx, node, v, ydim if k == 0 else 0, "u", ctx.bound(v)))
    return "\n".join(lines)


# --- NonMaxSuppression -----------------------------------------------------------------------
def _nms_max(node):
    """max_output_boxes_per_class when it is a constant (absent: 0), else None."""
    m = node.input(2)
    if m is None or (m.is_const and m.const.size == 0):
        return 0
    if m.is_const:
        return max(int(m.const.reshape(-1)[0]), 0)
    return None


def _nms_check(node):
    boxes, scores = node.inputs[0], node.inputs[1]
    if boxes.dtype != np.float32 or scores.dtype != np.float32:
        return "boxes and scores must be float32"
    if len(boxes.shape) != 3 or boxes.shape[2] != 4 or len(scores.shape) != 3:
        return f"boxes {boxes.shape} / scores {scores.shape} are not [b, n, 4] / [b, c, n]"
    if scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        return f"scores {scores.shape} do not match boxes {boxes.shape}"
    for k in (2, 3, 4):
        v = node.input(k)
        if v is not None and v.size > 1:
            return f"input {k} '{v.name}' has {v.size} elements (a scalar expected)"
    if get_attr(node, "center_point_box", 0) not in (0, 1):
        return "center_point_box must be 0 or 1"
    return None


def _nms_bounds(node):
    b, n = node.inputs[0].shape[:2]
    c = node.inputs[1].shape[1]
    m = _nms_max(node)
    return [(b * c * (n if m is None else min(m, n)), 3)]


def _nms_scratch(node):
    return 3 * 8 * max(node.inputs[0].shape[1], 1)


@c_kernel("NonMaxSuppression", check=_nms_check, bounds=_nms_bounds, scratch=_nms_scratch)
def non_max_suppression(node, ctx):
    boxes, scores = node.inputs[0], node.inputs[1]
    y = node.outputs[0]
    b, n = boxes.shape[:2]
    c = scores.shape[1]
    m = _nms_max(node)

    def scalar(k, ct, default):
        v = node.input(k)
        if v is None or v.size == 0:
            return default
        return f"({ct}){ctx.ptr(v)}[0]"
    max_c = str(m) if m is not None else scalar(2, "int64_t", "0")
    iou = scalar(3, "float", "0.0f")
    st = node.input(4)
    has_st = int(st is not None and st.size > 0)
    cap = ctx.bound(y)[0]
    lines = [f"const int64_t total = onnxc_f32_nms({ctx.ptr(boxes)}, {ctx.ptr(scores)}, {b}, {c}, {n}, {max_c}, "
             f"{iou}, {has_st}, {scalar(4, 'float', '0.0f')}, {int(get_attr(node, 'center_point_box', 0))}, "
             f"{ctx.ptr(y)}, {cap}, {ctx.scratch(node, 'int64_t')});",
             _count_check(ctx, node, y, 0, "total", ctx.bound(y))]
    return "\n".join(lines)


__all__: List[str] = []
