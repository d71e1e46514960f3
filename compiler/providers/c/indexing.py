"""Indexing and scan ops: CumSum/CumProd, TopK, ScatterElements (and the old Scatter),
ScatterND, TensorScatter, GatherND, OneHot, EyeLike.

Shapes, axes and attributes are compile-time constants.  Indices read at run time are wrapped
when negative (as the spec says) and bounds-checked: one out of range fails the run with
ONNXC_ERR_INDEX naming the node, the index and where it was read (EmitContext.fail), as
onnxruntime refuses it, and is never read or written through.  A runtime k, depth, axis or write
index that disagrees with the compiled shapes fails it with ONNXC_ERR_VALUE.  A OneHot index out
of range is valid (the spec asks for all off_value there).  Integer accumulation goes through
uint64_t so overflow wraps instead of being undefined in C.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...codegen.loops import contiguous_strides
from ...dtypes import onnx_from_np_dtype
from ...ops import get_attr
from .intmath import wrap_binary
from .registry import c_kernel
from .shape import const_within, index_message

FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}
INTS = {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)}
NUMERIC = FLOATS | INTS
INDEX_TYPES = {np.dtype(np.int32), np.dtype(np.int64)}


def _prod(dims) -> int:
    return int(np.prod(list(dims), dtype=np.int64))


def _nest(shape: Sequence[int], idx: Sequence[str], body: str) -> List[str]:
    lines = [("  " * k) + f"for (int64_t {i} = 0; {i} < {d}; ++{i})" for k, (i, d) in enumerate(zip(idx, shape))]
    return lines + ["  " * len(shape) + "{ " + body + " }"]


def _offset(idx: Sequence[str], strides: Sequence[int]) -> str:
    terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, strides) if s != 0]
    return " + ".join(terms) if terms else "0"


def _combine(op: str, a: str, b: str, dtype, ctype: str) -> str:
    """C expression for ``a op b`` in ``dtype``; integer + and * wrap (intmath.py)."""
    if op in ("+", "*"):
        return wrap_binary(op, a, b, dtype)
    if op == "max":  # std::max(a, b) as onnxruntime: a NaN already there stays
        return f"(({a} < {b}) ? {b} : {a})"
    if op == "min":
        return f"(({b} < {a}) ? {b} : {a})"
    return b  # plain assignment


def _const_int(v) -> Optional[int]:
    if v is None or not v.is_const or v.const.size != 1:
        return None
    return int(v.const.reshape(-1)[0])


# --- CumSum / CumProd ------------------------------------------------------------------------
def _cum_check(node):
    x = node.inputs[0]
    if x.dtype not in NUMERIC:
        return f"dtype {x.dtype} not supported"
    if not x.shape:
        return "scalar input"
    ax = node.inputs[1]
    if ax.dtype not in INDEX_TYPES or ax.size != 1:
        return "axis must be an int32/int64 scalar"
    axis = _const_int(ax)
    if axis is not None and not -len(x.shape) <= axis < len(x.shape):
        return f"axis {axis} out of range for rank {len(x.shape)}"
    return None


@c_kernel("CumSum", "CumProd", check=_cum_check)
def cumulative(node, ctx):
    """Row k of the result is row k-1 (k+1 when reverse) combined with the input row: the
    sum runs in the element type, in order, as onnxruntime does.  A runtime axis picks the
    [outer, n, inner] geometry at run time (out of range: the run fails, ONNXC_ERR_VALUE)."""
    x, y = node.inputs[0], node.outputs[0]
    ct, t = ctx.ctype(x), x.dtype
    rank = len(x.shape)
    if y.size == 0:
        return "/* empty */"
    op, ident = ("+", 0) if node.op_type == "CumSum" else ("*", 1)
    excl, rev = bool(get_attr(node, "exclusive", 0)), bool(get_attr(node, "reverse", 0))
    row = "(n - 1 - s)" if rev else "s"
    prev = "(row + 1)" if rev else "(row - 1)"
    first = ctx.lit(ident, t) if excl else "x[row*INNER + i]"
    src = "x[prev*INNER + i]" if excl else "x[row*INNER + i]"
    nxt = _combine(op, "y[prev*INNER + i]", src, t, ct)
    scan = [
        "for (int64_t o = 0; o < outer; ++o) {",
        f"  const {ct}* x = X + o*n*INNER; {ct}* y = Y + o*n*INNER;",
        "  for (int64_t s = 0; s < n; ++s) {",
        f"    const int64_t row = {row}, prev = {prev};",
        "    if (s == 0) { for (int64_t i = 0; i < INNER; ++i) y[row*INNER + i] = " + first + "; }",
        "    else { for (int64_t i = 0; i < INNER; ++i) y[row*INNER + i] = " + nxt + "; }",
        "  }",
        "}",
    ]
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    axis = _const_int(node.inputs[1])
    if axis is not None:
        axis %= rank
        lines.append(f"const int64_t outer = {_prod(x.shape[:axis])}, n = {x.shape[axis]}, "
                     f"INNER = {_prod(x.shape[axis + 1:])};")
        return "\n".join(lines + scan)
    ax = node.inputs[1]
    fail = ctx.fail(node, f"axis {{value}} out of range [{-rank}, {rank - 1}] for input '{x.name}' of rank {rank}",
                    f"{ctx.ptr(ax)}[0]", code="ONNXC_ERR_VALUE")
    lines += [f"static const int64_t D[{rank}] = {{{', '.join(map(str, x.shape))}}};",
              f"int64_t a = (int64_t){ctx.ptr(ax)}[0]; if (a < 0) a += {rank};",
              f"if (a < 0 || a >= {rank}) {{ {fail} }}",
              "else {",
              "  int64_t outer = 1, n = D[a], INNER = 1;",
              "  for (int64_t j = 0; j < a; ++j) outer *= D[j];",
              f"  for (int64_t j = a + 1; j < {rank}; ++j) INNER *= D[j];"]
    return "\n".join(lines + ["  " + s for s in scan] + ["}"])


# --- TopK ------------------------------------------------------------------------------------
def _topk_params(node):
    """(axis, k, largest, k_is_const): k from the constant input (attribute before opset 10),
    else the output's static extent along the axis."""
    x = node.inputs[0]
    axis = get_attr(node, "axis", -1) % max(len(x.shape), 1)
    k = get_attr(node, "k", None) if node.opset < 10 else _const_int(node.input(1))
    const = k is not None
    if not const:
        k = node.outputs[0].shape[axis]
    return axis, int(k), bool(get_attr(node, "largest", 1)) if node.opset >= 11 else True, const


def _topk_check(node):
    x = node.inputs[0]
    if x.dtype not in NUMERIC:
        return f"dtype {x.dtype} not supported"
    if not x.shape:
        return "scalar input"
    if node.opset >= 10 and (node.inputs[1].dtype != np.int64 or node.inputs[1].size != 1):
        return "k must be an int64 tensor of one element"
    if len(node.outputs[0].shape) != len(x.shape):
        return "output rank differs from the input's"
    axis, k, _, _ = _topk_params(node)
    if not 0 <= k <= x.shape[axis]:
        return f"k={k} outside [0, {x.shape[axis]}]"
    want = list(x.shape[:axis]) + [k] + list(x.shape[axis + 1:])
    if any(list(o.shape) != want for o in node.outputs) or node.outputs[1].dtype != np.int64:
        return "inferred output shapes disagree with k"
    return None


def _topk_scratch(node):
    axis = _topk_params(node)[0]
    return 16 * node.inputs[0].shape[axis]


@c_kernel("TopK", check=_topk_check, scratch=_topk_scratch)
def topk(node, ctx):
    """A runtime k must equal the output's declared extent along the axis (the shapes are
    compiled in); when it does not, the run fails (ONNXC_ERR_VALUE)."""
    x, v, i = node.inputs[0], node.outputs[0], node.outputs[1]
    axis, k, largest, const = _topk_params(node)
    if v.size == 0:
        return "/* empty */"
    outer, n, inner = _prod(x.shape[:axis]), x.shape[axis], _prod(x.shape[axis + 1:])
    # sorted=0 leaves the order undefined: the sorted order is one valid answer
    call = (f"(void)onnxc_topk({onnx_from_np_dtype(x.dtype)}, {outer}, {n}, {inner}, {k}, {int(largest)}, "
            f"{ctx.ptr(x)}, {ctx.ptr(v)}, {ctx.ptr(i)}, {ctx.scratch(node, 'int64_t')});")
    if const:
        return call
    fail = ctx.fail(node, f"k = {{value}} disagrees with the compiled output shape {tuple(v.shape)} (k = {k} on "
                          f"axis {axis}); recompile for that k", f"{ctx.ptr(node.inputs[1])}[0]",
                    code="ONNXC_ERR_VALUE")
    return f"if ({ctx.ptr(node.inputs[1])}[0] != {k}) {{ {fail} }}\nelse {call}"


# --- ScatterElements / Scatter ---------------------------------------------------------------
REDUCTIONS = {"none": "=", "add": "+", "mul": "*", "max": "max", "min": "min"}


def _reduction_check(node, data):
    red = get_attr(node, "reduction", "none") if node.op_type != "Scatter" else "none"
    if red not in REDUCTIONS:
        return f"reduction '{red}' not supported"
    if red != "none" and data.dtype not in NUMERIC:
        return f"reduction '{red}' on {data.dtype} not supported"
    return None


def _scatter_types_check(data, ind, upd):
    if ind.dtype not in INDEX_TYPES:
        return "indices must be int32 or int64"
    if upd.dtype != data.dtype:
        return "updates dtype differs from data"
    return None


def _scatter_pointers(ctx, data, ind, upd, y) -> List[str]:
    """C declarations of Y (output), I (indices) and U (updates) for the scatter loops."""
    ct = ctx.ctype(data)
    return [f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
            f"const {ctx.ctype(ind)}* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
            f"const {ct}* ONNXC_RESTRICT U = {ctx.ptr(upd)};"]


def _scatter_elements_check(node):
    data, ind, upd = node.inputs
    reason = _scatter_types_check(data, ind, upd)
    if reason:
        return reason
    if len(ind.shape) != len(data.shape) or tuple(upd.shape) != tuple(ind.shape):
        return "indices/updates must have data's rank and the same shape"
    if not data.shape:
        return "scalar data"
    axis = get_attr(node, "axis", 0) % len(data.shape)
    if any(i > d for j, (i, d) in enumerate(zip(ind.shape, data.shape)) if j != axis):
        return "indices larger than data along a non-axis dimension"
    return _reduction_check(node, data)


def _copy(ctx, src, dst) -> str:
    return f"memcpy({ctx.ptr(dst)}, {ctx.ptr(src)}, {dst.nbytes});" if dst.nbytes else "/* empty */"


@c_kernel("ScatterElements", "Scatter", check=_scatter_elements_check)
def scatter_elements(node, ctx):
    data, ind, upd = node.inputs
    y = node.outputs[0]
    ct = ctx.ctype(data)
    rank = len(data.shape)
    axis = get_attr(node, "axis", 0) % rank
    op = REDUCTIONS[get_attr(node, "reduction", "none") if node.op_type != "Scatter" else "none"]
    lines = [_copy(ctx, data, y)]
    if ind.size == 0:
        return lines[0]
    ys = contiguous_strides(data.shape)
    idx = [f"i{k}" for k in range(rank)]
    ui = _offset(idx, contiguous_strides(ind.shape))
    other = _offset([i for k, i in enumerate(idx) if k != axis], [s for k, s in enumerate(ys) if k != axis])
    n = data.shape[axis]
    fail = "" if const_within(ind, -n, n - 1) else ctx.fail(node, index_message(n, axis, data), f"I[{ui}]", ui,
                                                            tensor=ind)
    body = (f"int64_t k = (int64_t)I[{ui}]; if (k < 0) k += {n}; "
            f"if (k >= 0 && k < {n}) {{ {ct}* d = Y + {other} + k*{ys[axis]}; "
            f"*d = {_combine(op, '*d', f'U[{ui}]', data.dtype, ct)}; }}" + (f" else {{ {fail} }}" if fail else ""))
    lines += _scatter_pointers(ctx, data, ind, upd, y)
    return "\n".join(lines + _nest(list(ind.shape), idx, body))


# --- ScatterND / GatherND ----------------------------------------------------------------------
def _tuple_offset(node, ctx, data, ind, first: int, row: str) -> List[str]:
    """C lines computing ``off`` (element offset) and ``ok`` from the index tuple at I + row,
    which addresses dims first, first + 1, ... of ``data``: each entry wrapped if negative;
    one out of range fails the run and makes ``ok`` 0."""
    q = ind.shape[-1]
    dims, strides = data.shape[first:first + q], contiguous_strides(data.shape)[first:first + q]
    lines = ["int64_t off = 0; int ok = 1;"]
    for d, (n, s) in enumerate(zip(dims, strides)):
        if const_within(ind, -n, n - 1, column=d):
            lines.append(f"{{ int64_t k = (int64_t)I[{row} + {d}]; if (k < 0) k += {n}; off += k*{s}; }}")
            continue
        fail = ctx.fail(node, index_message(n, first + d, data), f"I[{row} + {d}]", f"{row} + {d}", tensor=ind)
        lines.append(f"{{ int64_t k = (int64_t)I[{row} + {d}]; if (k < 0) k += {n}; "
                     f"if (k < 0 || k >= {n}) {{ ok = 0; {fail} }} else off += k*{s}; }}")
    return lines


def _scatter_nd_check(node):
    data, ind, upd = node.inputs
    reason = _scatter_types_check(data, ind, upd)
    if reason:
        return reason
    if not data.shape or not ind.shape:
        return "data and indices must have rank >= 1"
    q = ind.shape[-1]
    if q > len(data.shape):
        return "indices.shape[-1] exceeds the data rank"
    if tuple(upd.shape) != tuple(ind.shape[:-1]) + tuple(data.shape[q:]):
        return "updates shape must be indices.shape[:-1] + data.shape[k:]"
    return _reduction_check(node, data)


@c_kernel("ScatterND", check=_scatter_nd_check)
def scatter_nd(node, ctx):
    data, ind, upd = node.inputs
    y = node.outputs[0]
    ct = ctx.ctype(data)
    q = ind.shape[-1]
    m = _prod(ind.shape[:-1])
    sl = _prod(data.shape[q:])
    op = REDUCTIONS[get_attr(node, "reduction", "none")]
    lines = [_copy(ctx, data, y)]
    if m == 0 or sl == 0 or y.size == 0:
        return lines[0]
    lines += _scatter_pointers(ctx, data, ind, upd, y) + [f"for (int64_t j = 0; j < {m}; ++j) {{"]
    lines += ["  " + s for s in _tuple_offset(node, ctx, data, ind, 0, f"j*{q}")]
    lines += ["  if (!ok) continue;  /* out-of-range index: the run fails, nothing written through it */",
              f"  for (int64_t e = 0; e < {sl}; ++e) {{ {ct}* d = Y + off + e; "
              f"*d = {_combine(op, '*d', f'U[j*{sl} + e]', data.dtype, ct)}; }}",
              "}"]
    return "\n".join(lines)


def _gather_nd_check(node):
    data, ind = node.inputs
    if ind.dtype not in INDEX_TYPES:
        return "indices must be int32 or int64"
    b = get_attr(node, "batch_dims", 0)
    if not data.shape or not ind.shape:
        return "data and indices must have rank >= 1"
    q = ind.shape[-1]
    if not (0 <= b < min(len(data.shape), len(ind.shape))) or b + q > len(data.shape):
        return "batch_dims/indices.shape[-1] out of range for the data rank"
    if tuple(data.shape[:b]) != tuple(ind.shape[:b]):
        return "batch dims of data and indices differ"
    if tuple(node.outputs[0].shape) != tuple(ind.shape[:-1]) + tuple(data.shape[b + q:]):
        return "inferred output shape disagrees"
    return None


@c_kernel("GatherND", check=_gather_nd_check)
def gather_nd(node, ctx):
    data, ind = node.inputs
    y = node.outputs[0]
    b = get_attr(node, "batch_dims", 0)
    q = ind.shape[-1]
    nb, m = _prod(data.shape[:b]), _prod(ind.shape[b:-1])
    sl = _prod(data.shape[b + q:])
    if y.size == 0:
        return "/* empty */"
    es = data.dtype.itemsize
    lines = [f"const uint8_t* ONNXC_RESTRICT X = (const uint8_t*){ctx.ptr(data)};",
             f"const {ctx.ctype(ind)}* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
             f"uint8_t* ONNXC_RESTRICT Y = (uint8_t*){ctx.ptr(y)};",
             f"for (int64_t bj = 0; bj < {nb * m}; ++bj) {{"]
    lines += ["  " + s for s in _tuple_offset(node, ctx, data, ind, b, f"bj*{q}")]
    batch_stride = _prod(data.shape[b:])
    lines += [f"  uint8_t* dst = Y + bj*{sl * es};",
              f"  if (!ok) memset(dst, 0, {sl * es});  /* out-of-range index: the run fails */",
              f"  else memcpy(dst, X + ((bj / {m})*{batch_stride} + off)*{es}, {sl * es});",
              "}"]
    return "\n".join(lines)


# --- OneHot ----------------------------------------------------------------------------------
def _onehot_check(node):
    ind, depth, values = node.inputs
    y = node.outputs[0]
    if ind.dtype not in NUMERIC:
        return f"indices dtype {ind.dtype} not supported"
    if values.size != 2 or y.dtype != values.dtype:
        return "values must hold [off_value, on_value] of the output dtype"
    if depth.dtype not in NUMERIC or depth.size != 1:
        return "depth must be a numeric scalar"
    axis = get_attr(node, "axis", -1) % (len(ind.shape) + 1)
    if list(y.shape) != list(ind.shape[:axis]) + [y.shape[axis]] + list(ind.shape[axis:]):
        return "inferred output shape disagrees"
    if depth.is_const and int(depth.const.reshape(-1)[0]) != y.shape[axis]:
        return "depth disagrees with the inferred output shape"
    return None


@c_kernel("OneHot", check=_onehot_check)
def onehot(node, ctx):
    """All off_value, then on_value where an index points.  Float indices are truncated to
    integers (as onnxruntime casts them); NaN or out of [-depth, depth-1]: no on_value.
    A runtime depth must equal the output's compiled extent; when it does not, the run fails
    (ONNXC_ERR_VALUE)."""
    ind, dep, values = node.inputs
    y = node.outputs[0]
    axis = get_attr(node, "axis", -1) % (len(ind.shape) + 1)
    depth = y.shape[axis]
    outer, inner = _prod(ind.shape[:axis]), _prod(ind.shape[axis:])
    if y.size == 0:
        return "/* empty */"
    ct = ctx.ctype(y)
    if ind.dtype.kind == "f":
        # compare as double first: casting NaN or a huge float to int64 is undefined in C
        get = (f"const double v = (double)I[o*{inner} + i]; "
               f"if (!(v > -{depth + 1}.0 && v < {depth}.0)) continue; int64_t k = (int64_t)v;")
    elif ind.dtype.kind == "u":
        get = f"if (I[o*{inner} + i] >= {depth}u) continue; int64_t k = (int64_t)I[o*{inner} + i];"
    else:
        get = f"int64_t k = (int64_t)I[o*{inner} + i];"
    body = [
        f"const {ctx.ctype(ind)}* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
        f"const {ct}* ONNXC_RESTRICT V = {ctx.ptr(values)};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"const {ct} off = V[0], on = V[1];",
        f"for (int64_t j = 0; j < {y.size}; ++j) Y[j] = off;",
        f"for (int64_t o = 0; o < {outer}; ++o)",
        f"  for (int64_t i = 0; i < {inner}; ++i) {{",
        f"    {get}",
        f"    if (k < 0) k += {depth};",
        f"    if (k >= 0 && k < {depth}) Y[(o*{depth} + k)*{inner} + i] = on;",
        "  }",
    ]
    if dep.is_const:
        return "\n".join(body)
    fail = ctx.fail(node, f"depth {{value}} disagrees with the compiled output shape {tuple(y.shape)} (depth "
                          f"{depth} on axis {axis}); recompile for that depth", "onnxc_f2i64(dv)",
                    code="ONNXC_ERR_VALUE")
    return "\n".join([  # a runtime depth is truncated, as onnxruntime casts it to int64
        f"const double dv = (double){ctx.ptr(dep)}[0];",
        f"if (!(dv >= {depth} && dv < {depth + 1})) {{ {fail} }}",
        "else {"] + ["  " + b for b in body] + ["}"])


# --- EyeLike ---------------------------------------------------------------------------------
def _eyelike_check(node):
    if len(node.inputs[0].shape) != 2 or tuple(node.outputs[0].shape) != tuple(node.inputs[0].shape):
        return "input must be 2-D"
    return None


@c_kernel("EyeLike", check=_eyelike_check)
def eyelike(node, ctx):
    y = node.outputs[0]
    rows, cols = y.shape
    k = int(get_attr(node, "k", 0))
    lo, hi = max(0, -k), min(rows, cols - k)
    lines = [f"{ctx.ctype(y)}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
             f"memset(Y, 0, {y.nbytes});" if y.nbytes else "/* empty */"]
    if hi > lo:
        lines.append(f"for (int64_t i = {lo}; i < {hi}; ++i) Y[i*{cols} + i + {k}] = 1;")
    return "\n".join(lines)


# --- TensorScatter -----------------------------------------------------------------------------
def _tensor_scatter_check(node):
    cache, upd = node.inputs[0], node.inputs[1]
    wi = node.input(2)
    rank = len(cache.shape)
    if rank < 2 or len(upd.shape) != rank or upd.dtype != cache.dtype:
        return "past_cache and update must have one rank >= 2 and one dtype"
    axis = get_attr(node, "axis", -2)
    if not -rank <= axis < rank or axis % rank == 0:
        return f"axis {axis} invalid (it cannot be the batch dimension)"
    axis %= rank
    others_differ = any(u != c for k, (u, c) in enumerate(zip(upd.shape, cache.shape)) if k != axis)
    if others_differ or upd.shape[axis] > cache.shape[axis]:
        return "update shape does not fit the cache"
    if wi is not None and (wi.dtype != np.int64 or tuple(wi.shape) != (cache.shape[0],)):
        return "write_indices must be int64 [batch]"
    if get_attr(node, "mode", "linear") not in ("linear", "circular"):
        return f"mode '{get_attr(node, 'mode', 'linear')}' not supported"
    return None


@c_kernel("TensorScatter", check=_tensor_scatter_check)
def tensor_scatter(node, ctx):
    """present = past with update's rows written at write_indices[b] + s along the axis
    (modulo its length when circular).  As onnxruntime, a negative write index fails the run,
    and so does one whose rows would run past the end in linear mode; nothing is written then."""
    cache, upd = node.inputs[0], node.inputs[1]
    wi = node.input(2)
    y = node.outputs[0]
    rank = len(cache.shape)
    axis = get_attr(node, "axis", -2) % rank
    circular = get_attr(node, "mode", "linear") == "circular"
    outer, n = _prod(cache.shape[:axis]), cache.shape[axis]
    seq, row = upd.shape[axis], _prod(cache.shape[axis + 1:]) * cache.dtype.itemsize
    per_batch = _prod(cache.shape[1:axis])  # prefix rows that share one batch index
    lines = [_copy(ctx, cache, y)]
    if seq == 0 or row == 0 or outer == 0:
        return lines[0]
    start = f"{ctx.ptr(wi)}[o / {per_batch}]" if wi is not None else "0"
    # w0 + s without overflow: reduce first (circular), or compare against N - s (linear)
    pos = "(((w0 % N) + N) % N + s) % N" if circular else "(w0 >= 0 && w0 < N - s) ? w0 + s : -1"
    lines += [f"const uint8_t* ONNXC_RESTRICT U = (const uint8_t*){ctx.ptr(upd)};",
              f"uint8_t* ONNXC_RESTRICT Y = (uint8_t*){ctx.ptr(y)};",
              f"const int64_t N = {n};",
              "int ok = 1;"]
    if wi is not None:
        w = f"{ctx.ptr(wi)}[b]"
        bad = f"{w} < 0 || {w} > {n - seq}" if not circular else f"{w} < 0"
        what = (f"out of range [0, {n - seq}] (linear mode: {seq} rows written on axis {axis} of length {n} of "
                f"'{cache.name}')") if not circular else f"negative (circular mode, axis {axis} of '{cache.name}')"
        fail = ctx.fail(node, f"write index {{value}} {what}", f"{ctx.ptr(wi)}[b]", "b", tensor=wi)
        lines += [f"for (int64_t b = 0; b < {wi.size}; ++b)",
                  f"  if ({bad}) {{ {fail} ok = 0; break; }}"]
    lines += [f"if (ok) for (int64_t o = 0; o < {outer}; ++o) {{",
              f"  const int64_t w0 = {start};",
              f"  for (int64_t s = 0; s < {seq}; ++s) {{",
              f"    const int64_t p = {pos};",
              "" if circular else "    if (p < 0) continue;  /* linear: outside the cache (refused above) */",
              f"    memcpy(Y + (o*N + p)*{row}, U + (o*{seq} + s)*{row}, {row});",
              "  }",
              "}"]
    return "\n".join(line for line in lines if line)
