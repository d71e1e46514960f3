"""Reductions and softmax-like ops: Reduce*, ArgMax/ArgMin, Softmax/LogSoftmax/Hardmax.

Loops run over the kept dims outside and the reduced dims inside, with constant strides.
Float reductions accumulate in double so long sums match onnxruntime closely; integer ones in
uint64_t, where overflow wraps (signed overflow is undefined in C).
"""
from __future__ import annotations

import re
from typing import List, Optional, Sequence

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from .registry import c_kernel

FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}
NUMERIC = FLOATS | {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                           np.uint32, np.uint64)}


def _f(name, dtype):
    return name + "f" if np.dtype(dtype) == np.float32 else name


def reduce_axes(node) -> Optional[List[int]]:
    """Normalized reduction axes, or None when they are not known at compile time."""
    x = node.inputs[0]
    rank = len(x.shape)
    if node.input(1) is not None:
        if not node.inputs[1].is_const:
            return None
        axes = [int(a) for a in node.inputs[1].const.reshape(-1)]
    else:
        axes = list(get_attr(node, "axes", None) or [])
    if not axes:
        if get_attr(node, "noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted({a % rank for a in axes}) if rank else []


def _loops(idx: Sequence[str], dims: Sequence[int], indent: int = 0) -> List[str]:
    return ["  " * (indent + k) + f"for (int64_t {i} = 0; {i} < {d}; ++{i})" for k, (i, d) in enumerate(zip(idx, dims))]


def _offset(idx: Sequence[str], strides: Sequence[int]) -> str:
    terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, strides) if s != 0]
    return " + ".join(terms) if terms else "0"


# op -> (init, combine(acc, v), finalize(acc, n), element transform)
def _reduce_parts(op, t):
    fl = np.dtype(t).kind == "f"
    # integers accumulate in uint64_t: a sum or product that overflows wraps (as numpy's does, in
    # the element type) instead of being undefined in C; the final conversion takes it modulo 2^N
    acc_t = "double" if fl else "uint64_t"
    big = {"Max": "-INFINITY" if fl else _int_limit(t, low=True), "Min": "INFINITY" if fl else _int_limit(t, low=False)}
    table = {
        "ReduceSum": ("0", "acc + v", "acc", "x"),
        "ReduceMean": ("0", "acc + v", "acc / (double){n}", "x"),
        "ReduceProd": ("1", "acc * v", "acc", "x"),
        "ReduceSumSquare": ("0", "acc + v", "acc", "x * x"),
        "ReduceL1": ("0", "acc + v", "acc", "(x < 0 ? -x : x)" if fl else "(s < 0 ? (uint64_t)0 - x : x)"),
        "ReduceL2": ("0", "acc + v", "sqrt((double)acc)", "x * x"),
        "ReduceLogSum": ("0", "acc + v", "log((double)acc)", "x"),
        # a NaN wins (floats only: v != v on an integer is a compiler warning)
        "ReduceMax": (big["Max"], "((v > acc || v != v) ? v : acc)" if fl else "(v > acc ? v : acc)", "acc", "x"),
        "ReduceMin": (big["Min"], "((v < acc || v != v) ? v : acc)" if fl else "(v < acc ? v : acc)", "acc", "x"),
    }
    if op in ("ReduceMax", "ReduceMin"):
        acc_t = "double" if fl else _ctype(t)
    return acc_t, table[op]


def _ctype(t):
    from ...dtypes import c_type
    return c_type(t)


def _int_limit(t, low: bool) -> str:
    from ...codegen.context import c_literal
    if np.dtype(t) == np.bool_:  # stored as 0/1 bytes: Max is Or, Min is And
        return "0" if low else "1"
    info = np.iinfo(np.dtype(t))
    return c_literal(info.min if low else info.max, t)


REDUCE_OPS = ["ReduceSum", "ReduceMean", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMin"]


def _reduce_check(node) -> Optional[str]:
    x = node.inputs[0]
    if x.dtype not in NUMERIC and not (x.dtype == np.bool_ and node.op_type in ("ReduceMax", "ReduceMin")):
        return f"dtype {x.dtype} not supported"
    if node.op_type in ("ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMean") and x.dtype not in FLOATS:
        return f"{node.op_type} on {x.dtype} not supported"
    if reduce_axes(node) is None:
        return "axes must be a constant"
    return None


def _emit_reduce(node, ctx) -> str:
    x, y = node.inputs[0], node.outputs[0]
    t = x.dtype
    axes = reduce_axes(node)
    shape = list(x.shape)
    # no axes (noop_with_empty_axes, or a scalar): each element is reduced alone, which is a copy
    # only for ops without an element transform (L1 gives |x|, SumSquare x*x, LogSum log x, ...)
    if not axes and node.op_type in ("ReduceSum", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin",
                                     "ReduceLogSumExp"):
        return f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});" if y.nbytes else "/* empty */"
    xs = contiguous_strides(shape)
    kept = [d for d in range(len(shape)) if d not in axes]
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    ko = [f"o{k}" for k in range(len(kept))]
    ri = [f"r{k}" for k in range(len(axes))]
    kdims, rdims = [shape[d] for d in kept], [shape[a] for a in axes]
    in_off = " + ".join(filter(None, [_offset(ko, [xs[d] for d in kept]), _offset(ri, [xs[a] for a in axes])]))
    y_off = _offset(ko, contiguous_strides(kdims))
    yt = ctx.ctype(y)
    lines = [f"const {ctx.ctype(x)}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{yt}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if y.size == 0:
        return "/* empty output */"
    lines += _loops(ko, kdims)
    pad = "  " * len(ko)
    if node.op_type == "ReduceLogSumExp":
        if n == 0:
            lines.append(pad + f"{{ Y[{y_off}] = ({yt})(-INFINITY); }}")
            return "\n".join(lines)
        lines.append(pad + "{")
        lines.append(pad + "  double m = -INFINITY, acc = 0;")
        lines += _loops(ri, rdims, len(ko) + 1)
        lines.append(pad + "  " * (len(ri) + 1) + f"{{ double v = X[{in_off}]; if (v > m) m = v; }}")
        lines += _loops(ri, rdims, len(ko) + 1)
        lines.append(pad + "  " * (len(ri) + 1) + f"{{ acc += exp((double)X[{in_off}] - m); }}")
        lines.append(pad + f"  Y[{y_off}] = ({yt})((m == INFINITY || m == -INFINITY) ? m : m + log(acc));")
        lines.append(pad + "}")
        return "\n".join(lines)
    acc_t, (init, combine, fin, elem) = _reduce_parts(node.op_type, t)
    lines.append(pad + "{")
    lines.append(pad + f"  {acc_t} acc = {init};")
    lines += _loops(ri, rdims, len(ko) + 1)
    # x: the element converted to the accumulator type; s: the element as it is (its sign)
    elem_c = re.sub(r"\b[xs]\b", lambda m: f"(({acc_t})X[{in_off}])" if m.group() == "x" else f"X[{in_off}]", elem)
    body = combine.replace("v", "vv")
    lines.append(pad + "  " * (len(ri) + 1) + f"{{ {acc_t} vv = {elem_c}; acc = {body}; }}")
    lines.append(pad + f"  Y[{y_off}] = ({yt})({fin.format(n=n)});")
    lines.append(pad + "}")
    return "\n".join(lines)


for _op in REDUCE_OPS:
    c_kernel(_op, check=_reduce_check)(_emit_reduce)


# --- ArgMax / ArgMin ----------------------------------------------------------------------
def _arg_check(node):
    x = node.inputs[0]
    if x.dtype not in NUMERIC:
        return f"dtype {x.dtype} not supported"
    if len(x.shape) == 0 or x.shape[get_attr(node, "axis", 0) % len(x.shape)] == 0:
        return "empty reduction axis"
    return None


def _outer_axis_inner(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, shape[axis], inner


@c_kernel("ArgMax", "ArgMin", check=_arg_check)
def _argmax(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    axis = get_attr(node, "axis", 0) % len(x.shape)
    outer, n, inner = _outer_axis_inner(list(x.shape), axis)
    last = bool(get_attr(node, "select_last_index", 0))
    cmp = (">" if node.op_type == "ArgMax" else "<") + ("=" if last else "")
    return "\n".join([
        f"const {ctx.ctype(x)}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
        f"int64_t* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"for (int64_t o = 0; o < {outer}; ++o)",
        f"  for (int64_t i = 0; i < {inner}; ++i) {{",
        f"    const {ctx.ctype(x)}* p = X + o*{n * inner} + i;",
        "    int64_t best = 0;",
        f"    for (int64_t k = 1; k < {n}; ++k) if (p[k*{inner}] {cmp} p[best*{inner}]) best = k;",
        f"    Y[o*{inner} + i] = best;",
        "  }",
    ])


# --- Softmax / LogSoftmax / Hardmax -------------------------------------------------------
def _softmax_geometry(node):
    shape = list(node.inputs[0].shape)
    rank = len(shape)
    axis = get_attr(node, "axis", -1 if node.opset >= 13 else 1) % max(rank, 1)
    if node.opset >= 13:
        return _outer_axis_inner(shape, axis)
    # before opset 13 the input is coerced to 2-D [prod(shape[:axis]), prod(shape[axis:])]
    return int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)), 1


def _softmax_check(node):
    if node.inputs[0].dtype not in FLOATS:
        return f"dtype {node.inputs[0].dtype} not supported"
    if len(node.inputs[0].shape) == 0:
        return "scalar input"
    return None


@c_kernel("Softmax", "LogSoftmax", check=_softmax_check)
def _softmax(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    outer, n, inner = _softmax_geometry(node)
    if y.size == 0:
        return "/* empty */"
    if x.dtype == np.float32:
        fn = "onnxc_softmax" if node.op_type == "Softmax" else "onnxc_logsoftmax"
        return f"{fn}({outer}, {n}, {inner}, {ctx.ptr(x)}, {ctx.ptr(y)});"
    log = node.op_type == "LogSoftmax"
    return "\n".join([
        f"const double* ONNXC_RESTRICT X = {ctx.ptr(x)};",
        f"double* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"for (int64_t o = 0; o < {outer}; ++o)",
        f"  for (int64_t i = 0; i < {inner}; ++i) {{",
        f"    const double* p = X + o*{n * inner} + i; double* q = Y + o*{n * inner} + i;",
        "    double m = -INFINITY, s = 0;",
        f"    for (int64_t k = 0; k < {n}; ++k) if (p[k*{inner}] > m) m = p[k*{inner}];",
        f"    for (int64_t k = 0; k < {n}; ++k) s += exp(p[k*{inner}] - m);",
        f"    for (int64_t k = 0; k < {n}; ++k) q[k*{inner}] = "
        + ("p[k*{0}] - m - log(s);".format(inner) if log else "exp(p[k*{0}] - m) / s;".format(inner)),
        "  }",
    ])


@c_kernel("Hardmax", check=_softmax_check)
def _hardmax(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    outer, n, inner = _softmax_geometry(node)
    ct = ctx.ctype(x)
    if y.size == 0:
        return "/* empty */"
    return "\n".join([
        f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"for (int64_t o = 0; o < {outer}; ++o)",
        f"  for (int64_t i = 0; i < {inner}; ++i) {{",
        f"    const {ct}* p = X + o*{n * inner} + i; {ct}* q = Y + o*{n * inner} + i;",
        "    int64_t best = 0;",
        f"    for (int64_t k = 1; k < {n}; ++k) if (p[k*{inner}] > p[best*{inner}]) best = k;",
        f"    for (int64_t k = 0; k < {n}; ++k) q[k*{inner}] = (k == best);",
        "  }",
    ])


# --- LayerNormalization / RMSNormalization ------------------------------------------------
def _layernorm_check(node):
    x = node.inputs[0]
    if x.dtype not in FLOATS or any(v is not None and v.dtype != x.dtype for v in node.inputs):
        return "float32/float64 with matching scale/bias dtypes only"
    for o in node.outputs[1:]:
        if o.dtype not in FLOATS:
            return f"Mean/InvStdDev dtype {o.dtype} not supported"
    if get_attr(node, "stash_type", 1) != 1:
        return "stash_type other than float32 not supported"
    axis = get_attr(node, "axis", -1) % len(x.shape)
    n = int(np.prod(x.shape[axis:], dtype=np.int64))
    for v in node.inputs[1:3]:
        if v is not None and not v.is_const and v.size != n:
            return "non-constant scale/bias that broadcast are not supported"
    return None


@c_kernel("LayerNormalization", "RMSNormalization", check=_layernorm_check)
def _layernorm(node, ctx):
    """y = (x - mean) / sqrt(var + eps) * scale + bias over the trailing dims from `axis`;
    scale/bias broadcast against those trailing dims.  RMSNormalization is the same with the
    mean taken as 0 and no bias."""
    rms = node.op_type == "RMSNormalization"
    x, scale, y = node.inputs[0], node.inputs[1], node.outputs[0]
    bias = None if node.op_type == "RMSNormalization" else node.input(2)
    shape = list(x.shape)
    axis = get_attr(node, "axis", -1) % len(shape)
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    n = int(np.prod(shape[axis:], dtype=np.int64))
    eps = get_attr(node, "epsilon", 1e-5)
    ct = ctx.ctype(x)
    tail = shape[axis:]

    def param(v):
        # constants broadcast to the full normalized extent at compile time (check() ensured
        # that non-constant ones already have it)
        if v is None:
            return None
        if v.is_const:
            return ctx.const_array(np.broadcast_to(v.const, tail).astype(x.dtype).reshape(-1))
        return ctx.ptr(v)
    S, B = param(scale), param(bias)
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
             f"const {ct}* ONNXC_RESTRICT S = {S};"]
    if B:
        lines.append(f"const {ct}* ONNXC_RESTRICT Bv = {B};")
    extra = []  # optional Mean / InvStdDev outputs, one value per normalized row
    for k, o in enumerate(node.outputs[1:3]):
        if o.uses or node.graph.is_output(o):
            name = ("Mean", "InvStd")[k]
            lines.append(f"{ctx.ctype(o)}* ONNXC_RESTRICT {name} = {ctx.ptr(o)};")
            extra.append(f"  {name}[o] = ({ctx.ctype(o)})" + ("mean;" if k == 0 else "(1.0 / sqrt(var / {0} + {1!r}));".format(n, float(eps))))
    lines += [
        "ONNXC_OMP_FOR" if outer * n >= (1 << 16) and outer > 1 else "",
        f"for (int64_t o = 0; o < {outer}; ++o) {{",
        f"  const {ct}* p = X + o*{n}; {ct}* q = Y + o*{n};",
        "  double mean = 0, var = 0;",
        "" if rms else f"  for (int64_t k = 0; k < {n}; ++k) mean += p[k];",
        "" if rms else f"  mean /= {n};",
        f"  for (int64_t k = 0; k < {n}; ++k) {{ double d = p[k] - mean; var += d * d; }}",
        f"  const {ct} inv = ({ct})(1.0 / sqrt(var / {n} + {float(eps)!r})), m = ({ct})mean;",
        f"  for (int64_t k = 0; k < {n}; ++k) q[k] = (p[k] - m) * inv * S[k]" + (" + Bv[k];" if B else ";"),
    ] + extra + ["}"]
    return "\n".join(line for line in lines if line)
