"""Data movement: views (Reshape & co.), Transpose, Concat, Split, Slice, Gather, GatherElements,
Expand.  Everything is index arithmetic on compile-time shapes; runtime indices are bounds-checked:
one out of range fails the run with ONNXC_ERR_INDEX naming the node (EmitContext.fail) and is
never read through."""
from __future__ import annotations

from typing import List

import numpy as np

from ...codegen.loops import broadcast_loop, contiguous_strides
from ...ops import get_attr
from ...ops.registry import evaluate
from .registry import c_kernel

# index tables are C arrays built in Python, one entry per output index: larger ones (a fuzzed
# dim of 2^31 made the Pad table a 30-minute loop) are refused and the node goes elsewhere
_MAX_TABLE = 1 << 22


def _view(node):
    return node.inputs[0]


def _emit_view(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if ctx.is_alias(node):
        return f"/* view of '{x.name}': no copy */"
    return f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});" if y.nbytes else "/* empty */"


def _same_size(node):
    return None if node.inputs[0].size == node.outputs[0].size else "input and output sizes differ"


c_kernel("Reshape", "Flatten", "Squeeze", "Unsqueeze", alias=_view, check=_same_size)(_emit_view)


# Shape and Size fold away once shapes are static (passes); these kernels serve the unoptimized
# pipeline (opt_level="none"): the dims are compile-time literals, the input is never read.
@c_kernel("Shape", "Size")
def shape_size(node, ctx):
    shaped = np.broadcast_to(np.zeros((), np.uint8), node.inputs[0].shape)  # the shape, no memory
    dims = [int(d) for d in evaluate(node, [shaped])[0].reshape(-1)]
    y = node.outputs[0]
    if not dims:
        return "/* empty: start >= end */"
    ct = ctx.ctype(y)
    return f"{{ static const {ct} dims[{len(dims)}] = {{{', '.join(map(str, dims))}}}; memcpy({ctx.ptr(y)}, dims, {y.nbytes}); }}"


def _decls(ctx, x, y):
    return [f"const {ctx.ctype(x)}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ctx.ctype(y)}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]


def _nest(shape: List[int], idx: List[str], body: str) -> List[str]:
    lines = [("  " * k) + f"for (int64_t {i} = 0; {i} < {d}; ++{i})" for k, (i, d) in enumerate(zip(idx, shape))]
    return lines + ["  " * len(shape) + "{ " + body + " }"]


def _offset(idx, strides) -> str:
    terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, strides) if s != 0]
    return " + ".join(terms) if terms else "0"


# --- Transpose ------------------------------------------------------------------------------
@c_kernel("Transpose")
def transpose(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    perm = list(get_attr(node, "perm", None) or list(range(rank))[::-1])
    if y.size == 0:
        return "/* empty */"
    xs = contiguous_strides(x.shape)
    # iterate over the output in order; gather from the input with permuted strides
    shape = [x.shape[p] for p in perm]
    strides = [xs[p] for p in perm]
    # drop size-1 dims, merge dims contiguous in both
    dims = [(d, s) for d, s in zip(shape, strides) if d != 1]
    merged: List[list] = []
    for d, s in dims:
        if merged and merged[-1][1] == s * d:
            merged[-1] = [merged[-1][0] * d, s]
        else:
            merged.append([d, s])
    if not merged:
        merged = [[1, 0]]
    oshape = [d for d, _ in merged]
    idx = [f"i{k}" for k in range(len(merged))]
    body = f"Y[{_offset(idx, contiguous_strides(oshape))}] = X[{_offset(idx, [s for _, s in merged])}];"
    return "\n".join(_decls(ctx, x, y) + _nest(oshape, idx, body))


# --- Concat / Split -----------------------------------------------------------------------
def _chunk_copies(whole, parts, axis, ctx, gather: bool) -> str:
    """memcpy rows between ``whole`` and its ``parts`` along ``axis``: into whole (Concat,
    gather=True) or out of it (Split)."""
    axis %= len(whole.shape)
    outer = int(np.prod(whole.shape[:axis], dtype=np.int64))
    inner = int(np.prod(whole.shape[axis + 1:], dtype=np.int64)) * whole.dtype.itemsize
    row = whole.shape[axis] * inner
    lines = [f"uint8_t* W0 = (uint8_t*){ctx.ptr(whole)};"]
    start = 0
    for v in parts:
        chunk = v.shape[axis] * inner
        if chunk:
            w, p = f"W0 + o*{row} + {start}", f"(uint8_t*){ctx.ptr(v)} + o*{chunk}"
            dst, src = (w, p) if gather else (p, w)
            lines.append(f"for (int64_t o = 0; o < {outer}; ++o) memcpy({dst}, {src}, {chunk});")
        start += chunk
    return "\n".join(lines)


@c_kernel("Concat")
def concat(node, ctx):
    return _chunk_copies(node.outputs[0], node.inputs, get_attr(node, "axis"), ctx, gather=True)


def split(node, ctx):
    return _chunk_copies(node.inputs[0], node.outputs, get_attr(node, "axis", 0), ctx, gather=False)


def _split_check(node):
    x = node.inputs[0]
    axis = get_attr(node, "axis", 0) % len(x.shape)
    if sum(y.shape[axis] for y in node.outputs) != x.shape[axis]:
        return "output sizes do not add up to the input along the axis"
    return None


c_kernel("Split", check=_split_check)(split)


# --- Slice ----------------------------------------------------------------------------------
def _slice_params(node):
    x = node.inputs[0]
    rank = len(x.shape)
    if any(node.input(i) is not None and not node.inputs[i].is_const for i in range(1, 5)):
        return None
    starts = node.inputs[1].const.reshape(-1).tolist()
    ends = node.inputs[2].const.reshape(-1).tolist()
    axes = node.input(3).const.reshape(-1).tolist() if node.input(3) is not None else list(range(len(starts)))
    steps = node.input(4).const.reshape(-1).tolist() if node.input(4) is not None else [1] * len(starts)
    out = [(0, 1, d) for d in x.shape]  # per-dim (start, step, count)
    for s, e, a, st in zip(starts, ends, axes, steps):
        out[a % rank] = _slice_dim(x.shape[a % rank], int(s), int(e), int(st))
    return out


def _slice_dim(d, s, e, step):
    """ONNX's clamping, which differs from numpy's for a negative step and a start below -d
    (ONNX clamps it to 0 and takes element 0; numpy's slice is empty)."""
    s, e = s + d if s < 0 else s, e + d if e < 0 else e
    lo, hi = (0, d) if step > 0 else (-1, d - 1)
    s, e = min(max(s, 0), hi), min(max(e, lo), hi)
    count = max(0, -((e - s) // -step))  # ceil((e - s) / step)
    return (s, step, count) if count else (0, step, 0)


def _slice_check(node):
    if node.opset < 10:
        return "Slice before opset 10 (attributes) not supported"
    p = _slice_params(node)
    if p is None:
        return "starts/ends/axes/steps must be constants"
    if [c for _, _, c in p] != list(node.outputs[0].shape):
        return "inferred output shape disagrees with the slice"
    return None


@c_kernel("Slice", check=_slice_check)
def slice_(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    p = _slice_params(node)
    if y.size == 0:
        return "/* empty */"
    xs = contiguous_strides(x.shape)
    base = sum(s * st for (s, _, _), st in zip(p, xs))
    idx = [f"i{k}" for k in range(len(p))]
    src = _offset(idx, [step * st for (_, step, _), st in zip(p, xs)])
    body = f"Y[{_offset(idx, contiguous_strides(y.shape))}] = X[{base} + {src}];"
    return "\n".join(_decls(ctx, x, y) + _nest(list(y.shape), idx, body))


# --- Gather / GatherElements -----------------------------------------------------------------
def _index_check(node):
    if node.inputs[1].dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        return "indices must be int32 or int64"
    return None


def const_within(v, lo: int, hi: int, column: int = None) -> bool:
    """``v`` (or column ``column`` of its last axis) is a constant with every value in [lo, hi]:
    no runtime check needed."""
    if v is None or not v.is_const:
        return False
    a = np.asarray(v.const)
    if column is not None:
        a = a.reshape(-1, a.shape[-1])[:, column]
    return a.size == 0 or (int(a.min()) >= lo and int(a.max()) <= hi)


def index_message(n: int, axis: int, x) -> str:
    """What an out-of-range runtime index on ``axis`` (length n) of input ``x`` is told."""
    return f"index {{value}} out of range [{-n}, {n - 1}] on axis {axis} of input '{x.name}' (shape {tuple(x.shape)})"


@c_kernel("Gather", check=_index_check)
def gather(node, ctx):
    """The indices are checked once, before any copy: one out of [-n, n-1] fails the run (as
    onnxruntime does) and nothing is copied."""
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    axis = get_attr(node, "axis", 0) % len(x.shape)
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    n = x.shape[axis]
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    m = ind.size
    if y.size == 0:
        return "/* empty */"
    es = x.dtype.itemsize
    lines = [f"const uint8_t* ONNXC_RESTRICT X = (const uint8_t*){ctx.ptr(x)};",
             f"const {ctx.ctype(ind)}* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
             f"uint8_t* ONNXC_RESTRICT Y = (uint8_t*){ctx.ptr(y)};",
             "int ok = 1;"]
    if not const_within(ind, -n, n - 1):
        fail = ctx.fail(node, index_message(n, axis, x), "I[j]", "j", tensor=ind)
        lines += [f"for (int64_t j = 0; j < {m}; ++j)",
                  f"  if ((int64_t)I[j] < {-n} || (int64_t)I[j] >= {n}) {{ {fail} ok = 0; break; }}"]
    return "\n".join(lines + [
        f"if (ok) for (int64_t o = 0; o < {outer}; ++o)",
        f"  for (int64_t j = 0; j < {m}; ++j) {{",
        f"    int64_t k = (int64_t)I[j]; if (k < 0) k += {n};",
        f"    memcpy(Y + (o*{m} + j)*{inner * es}, X + (o*{n} + k)*{inner * es}, {inner * es});",
        "  }",
    ])


@c_kernel("GatherElements", check=_index_check)
def gather_elements(node, ctx):
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    rank = len(x.shape)
    axis = get_attr(node, "axis", 0) % rank
    if y.size == 0:
        return "/* empty */"
    xs = contiguous_strides(x.shape)
    idx = [f"i{k}" for k in range(rank)]
    other = _offset([i for k, i in enumerate(idx) if k != axis], [s for k, s in enumerate(xs) if k != axis])
    oi = _offset(idx, contiguous_strides(y.shape))
    n = x.shape[axis]
    if const_within(ind, -n, n - 1):
        body = f"int64_t k = (int64_t)I[{oi}]; if (k < 0) k += {n}; Y[{oi}] = X[{other} + k*{xs[axis]}];"
    else:
        fail = ctx.fail(node, index_message(n, axis, x), f"I[{oi}]", oi, tensor=ind)
        body = (f"int64_t k = (int64_t)I[{oi}]; if (k < 0) k += {n}; "
                f"if (k < 0 || k >= {n}) {{ {fail} Y[{oi}] = 0; }} else Y[{oi}] = X[{other} + k*{xs[axis]}];")
    return "\n".join(_decls(ctx, x, y) + [f"const {ctx.ctype(ind)}* ONNXC_RESTRICT I = {ctx.ptr(ind)};"]
                     + _nest(list(y.shape), idx, body))


# --- Expand ---------------------------------------------------------------------------------
def _expand_check(node):
    x, y = node.inputs[0], node.outputs[0]
    try:
        ok = tuple(np.broadcast_shapes(tuple(x.shape), tuple(y.shape))) == tuple(y.shape)
    except ValueError:
        ok = False
    return None if ok else f"input shape {x.shape} does not broadcast to the output {y.shape}"


@c_kernel("Expand", check=_expand_check)
def expand(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    return "\n".join(_decls(ctx, x, y) + [broadcast_loop(y.shape, [("X", x.shape)], lambda e, oi: f"Y[{oi}] = {e[0]};")])


# --- Pad ------------------------------------------------------------------------------------
def _pad_params(node):
    """(begin, end) pads per dim and the mode, or None if not known at compile time."""
    x = node.inputs[0]
    rank = len(x.shape)
    if node.opset < 11:
        pads = list(get_attr(node, "pads"))
    else:
        if node.input(1) is None or not node.inputs[1].is_const:
            return None
        pads = node.inputs[1].const.reshape(-1).tolist()
    axes = list(range(rank))
    if node.input(3) is not None:
        if not node.inputs[3].is_const:
            return None
        axes = [int(a) % rank for a in node.inputs[3].const.reshape(-1)]
    begin, end = [0] * rank, [0] * rank
    for k, a in enumerate(axes):
        begin[a], end[a] = int(pads[k]), int(pads[k + len(axes)])
    return begin, end, get_attr(node, "mode", "constant")


def _pad_source(n: int, b: int, size: int, mode: str) -> List[int]:
    """Source index along one dim for each of the `size` outputs (-1: the constant)."""
    out = []
    for o in range(size):
        i = o - b
        if 0 <= i < n:
            out.append(i)
        elif mode == "constant" or n == 0:
            out.append(-1)
        elif mode == "edge":
            out.append(min(max(i, 0), n - 1))
        elif mode == "wrap":
            out.append(i % n)
        else:  # reflect
            period = 2 * (n - 1)
            j = i % period if period else 0
            out.append(j if j < n else period - j)
    return out


def _pad_check(node):
    p = _pad_params(node)
    if p is None:
        return "pads/axes must be constants"
    begin, end, mode = p
    if mode not in ("constant", "edge", "reflect", "wrap"):
        return f"mode '{mode}' not supported"
    x = node.inputs[0]
    if [d + b + e for d, b, e in zip(x.shape, begin, end)] != list(node.outputs[0].shape):
        return "inferred output shape disagrees with the pads"
    if mode == "reflect" and any(max(b, e) > d - 1 for d, b, e in zip(x.shape, begin, end) if b or e):
        return "reflect padding wider than the dim minus one"
    if any((b or e) and d + b + e > _MAX_TABLE for d, b, e in zip(x.shape, begin, end)):
        return "a padded dim too large for an index table"  # a table entry per output index
    if node.input(2) is not None and not node.inputs[2].is_const:
        return "constant_value must be a constant"
    return None


@c_kernel("Pad", check=_pad_check)
def pad(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    begin, end, mode = _pad_params(node)
    if y.size == 0:
        return "/* empty */"
    if node.opset < 11:
        cval = get_attr(node, "value", 0.0)
    else:
        cv = node.input(2)
        cval = cv.const.reshape(-1)[0] if cv is not None and cv.const.size else 0
    lines = _decls(ctx, x, y)
    idx = [f"i{k}" for k in range(len(y.shape))]
    xs = contiguous_strides(x.shape)
    terms, conds = [], []
    for k, (n, b, e, size) in enumerate(zip(x.shape, begin, end, y.shape)):
        src = _pad_source(n, b, size, mode) if b or e else None
        if src is None:  # not padded: no table (the dim may be huge)
            terms.append(f"{idx[k]}*{xs[k]}")
            continue
        if src == list(range(size)):
            terms.append(f"{idx[k]}*{xs[k]}")
            continue
        lines.append(f"static const int64_t T{k}[{size}] = {{{', '.join(map(str, src))}}};")
        terms.append(f"T{k}[{idx[k]}]*{xs[k]}")
        if -1 in src:
            conds.append(f"T{k}[{idx[k]}] < 0")
    value = f"X[{' + '.join(terms) or '0'}]"
    if conds:
        value = f"({' || '.join(conds)}) ? {ctx.lit(cval, x.dtype)} : {value}"
    lines += _nest(list(y.shape), idx, f"Y[{_offset(idx, contiguous_strides(y.shape))}] = {value};")
    return "\n".join(lines)


# --- pure index maps ------------------------------------------------------------------------
# Ops whose output elements are copies of input elements (or zeros) at positions fixed by
# shapes and constant operands.  Running the op's reference on 1..n tells, for every output
# element, which input element it copies (0 = fill with zero); the C is one table-driven loop.
INDEX_MAP_OPS = ("Tile", "DepthToSpace", "SpaceToDepth", "Trilu", "Compress", "ReverseSequence",
                 "CenterCropPad")

def _index_table(node):
    from ...ops import evaluate
    x = node.inputs[0]
    probe = np.arange(1, x.size + 1, dtype=np.int64).reshape(x.shape)
    out = evaluate(node, [probe] + [None if v is None else v.const for v in node.inputs[1:]])[0]
    return np.asarray(out, dtype=np.int64).reshape(-1) - 1


def _index_map_check(node):
    if any(v is not None and not v.is_const for v in node.inputs[1:]):
        return "all inputs but the data must be constants"
    if node.outputs[0].size > _MAX_TABLE or node.inputs[0].size >= 2**31:
        return "too large for an index table"
    try:
        table = _index_table(node)
    except Exception as e:  # noqa: BLE001 - the reference refused the attributes
        return f"reference evaluation failed: {e}"
    if table.size != node.outputs[0].size:
        return "inferred output shape disagrees with the reference"
    return None


@c_kernel(*INDEX_MAP_OPS, check=_index_map_check)
def index_map(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    table = _index_table(node).astype(np.int32)
    fill = table.min() < 0
    body = "{ const int32_t t = T[i]; Y[i] = t < 0 ? 0 : X[t]; }" if fill else "Y[i] = X[T[i]];"
    return "\n".join(_decls(ctx, x, y) + [f"const int32_t* ONNXC_RESTRICT T = {ctx.const_array(table)};",
                                          f"for (int64_t i = 0; i < {y.size}; ++i) {body}"])
