"""Normalization ops: InstanceNormalization, GroupNormalization, LpNormalization,
MeanVarianceNormalization (float32/float64, emitted loops).

Statistics are accumulated in double with two passes (mean, then squared deviations), so a
large mean does not cancel the variance; the result is cast back to the tensor's type.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from .registry import c_kernel

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
PARALLEL_MIN = 1 << 16


def _float_check(node) -> Optional[str]:
    x = node.inputs[0]
    if x.dtype not in FLOATS:
        return f"dtype {x.dtype} not supported (float32/float64)"
    for v in list(node.inputs[1:]) + list(node.outputs):
        if v is not None and v.dtype != x.dtype:
            return f"'{v.name}' has dtype {v.dtype}, not the input's {x.dtype}"
    return None


def _sum4(acc: str, term: str, n: int, ind: str) -> str:
    """double `acc` = sum of `term` (in k) over k < n, with 4 independent partial sums: a
    single double accumulator is a serial chain of adds (no auto-vectorization without
    -ffast-math)."""
    t = [term.replace("[k]", f"[k + {j}]") for j in range(4)]
    return "\n".join([
        f"{ind}double {acc};",
        f"{ind}{{",
        f"{ind}  double s0 = 0, s1 = 0, s2 = 0, s3 = 0; int64_t k = 0;",
        f"{ind}  for (; k + 4 <= {n}; k += 4) {{ s0 += {t[0]}; s1 += {t[1]}; s2 += {t[2]}; s3 += {t[3]}; }}",
        f"{ind}  for (; k < {n}; ++k) s0 += {term};",
        f"{ind}  {acc} = (s0 + s1) + (s2 + s3);",
        f"{ind}}}",
    ])


def _omp(work: int, iters: int) -> str:
    return "ONNXC_OMP_FOR" if work >= PARALLEL_MIN and iters > 1 else ""


# --- InstanceNormalization / GroupNormalization -------------------------------------------------
def _groups(node) -> int:
    """InstanceNorm is GroupNorm with one channel per group."""
    if node.op_type == "InstanceNormalization":
        return node.inputs[0].shape[1]
    return int(get_attr(node, "num_groups"))


def _group_norm_check(node) -> Optional[str]:
    reason = _float_check(node)
    if reason:
        return reason
    x = node.inputs[0]
    if len(x.shape) < 3:
        return "input rank < 3"
    g, c = _groups(node), x.shape[1]
    if g < 1 or c % g:
        return f"{c} channels do not split into {g} groups"
    for v in node.inputs[1:3]:
        if v is None or tuple(v.shape) != (c,):
            return f"scale/bias must have shape ({c},)"
    if node.op_type == "GroupNormalization":
        if node.opset < 21:
            return "GroupNormalization-18 (deprecated, one scale per group) not supported"
        if get_attr(node, "stash_type", 1) != 1:
            return "stash_type other than float32 not supported"
    return None


@c_kernel("InstanceNormalization", "GroupNormalization", check=_group_norm_check)
def group_norm(node, ctx):
    """y = (x - mean) / sqrt(var + eps) * scale + bias, statistics per (image, group)."""
    x, s, b, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    g = _groups(node)
    n_img, c = x.shape[0], x.shape[1]
    sp = int(np.prod(x.shape[2:], dtype=np.int64))
    cg = c // g
    n = cg * sp
    eps = float(get_attr(node, "epsilon", 1e-5))
    ct = ctx.ctype(x)
    ch = f"gi*{cg} + cc"
    return "\n".join(line for line in [
        f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"const {ct}* ONNXC_RESTRICT S = {ctx.ptr(s)};", f"const {ct}* ONNXC_RESTRICT Bv = {ctx.ptr(b)};",
        _omp(x.size, n_img * g),
        f"for (int64_t r = 0; r < {n_img * g}; ++r) {{",
        f"  const {ct}* p = X + r*{n}; {ct}* q = Y + r*{n};",
        f"  const int64_t gi = r % {g};",
        _sum4("mean", "p[k]", n, "  "),
        f"  mean /= {n};",
        _sum4("var", "(p[k] - mean) * (p[k] - mean)", n, "  "),
        f"  const double inv = 1.0 / sqrt(var / {n} + {eps!r});",
        f"  for (int64_t cc = 0; cc < {cg}; ++cc) {{",
        f"    const double a = inv * S[{ch}], c0 = Bv[{ch}] - mean * a;",
        f"    for (int64_t k = cc*{sp}; k < (cc + 1)*{sp}; ++k) q[k] = ({ct})(p[k] * a + c0);",
        "  }",
        "}",
    ] if line)


# --- reductions over arbitrary axes -------------------------------------------------------------
def _nest(idx: Sequence[str], dims: Sequence[int], indent: str) -> List[str]:
    return [indent + "  " * k + f"for (int64_t {i} = 0; {i} < {d}; ++{i})" for k, (i, d) in enumerate(zip(idx, dims))]


def _offset(idx: Sequence[str], strides: Sequence[int]) -> str:
    terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, strides)]
    return " + ".join(terms) if terms else "0"


def _row_loops(shape, axes, passes):
    """Loops over the kept dims, and per kept position one loop over the reduced dims per pass.

    passes: (prologue statements, body statement with `o` the element offset, epilogue) per pass.
    """
    xs = contiguous_strides(shape)
    kept = [d for d in range(len(shape)) if d not in axes]
    ko, ri = [f"o{k}" for k in range(len(kept))], [f"r{k}" for k in range(len(axes))]
    base = _offset(ko, [xs[d] for d in kept])
    rel = _offset(ri, [xs[a] for a in axes])
    lines = _nest(ko, [shape[d] for d in kept], "")
    pad = "  " * len(kept)
    lines.append(pad + "{")
    lines.append(pad + f"  const int64_t base = {base};")
    for pro, body, epi in passes:
        lines += [pad + "  " + p for p in pro]
        lines += _nest(ri, [shape[a] for a in axes], pad + "  ")
        lines.append(pad + "  " + "  " * len(axes) + f"{{ const int64_t o = base + {rel}; {body} }}")
        lines += [pad + "  " + e for e in epi]
    lines.append(pad + "}")
    return lines


def _lp_check(node) -> Optional[str]:
    reason = _float_check(node)
    if reason:
        return reason
    if len(node.inputs[0].shape) == 0:
        return "scalar input"
    if get_attr(node, "p", 2) not in (1, 2):
        return "p must be 1 or 2"
    return None


@c_kernel("LpNormalization", check=_lp_check)
def lp_norm(node, ctx):
    """y = x / ||x||_p along axis (0 where the norm is 0, as onnxruntime and onnx.reference)."""
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    shape = list(x.shape)
    axis = get_attr(node, "axis", -1) % len(shape)
    p = get_attr(node, "p", 2)
    ct = ctx.ctype(x)
    acc = "acc += fabs((double)X[o]);" if p == 1 else "acc += (double)X[o] * X[o];"
    norm = "acc" if p == 1 else "sqrt(acc)"
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    lines += _row_loops(shape, [axis], [
        (["double acc = 0;"], acc, [f"const double inv = acc == 0 ? 0.0 : 1.0 / {norm};"]),
        ([], f"Y[o] = ({ct})(X[o] * inv);", [])])
    return "\n".join(lines)


def _mvn_axes(node) -> List[int]:
    rank = len(node.inputs[0].shape)
    return sorted({int(a) % rank for a in get_attr(node, "axes", None) or [0, 2, 3]})


def _mvn_check(node) -> Optional[str]:
    reason = _float_check(node)
    if reason:
        return reason
    rank = len(node.inputs[0].shape)
    if any(not -rank <= int(a) < rank for a in get_attr(node, "axes", None) or [0, 2, 3]):
        return f"axes out of range for rank {rank}"
    return None


@c_kernel("MeanVarianceNormalization", check=_mvn_check)
def mvn(node, ctx):
    """y = (x - mean) / (sqrt(var) + 1e-9) over `axes` (the ONNX function's formula)."""
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    shape = list(x.shape)
    axes = _mvn_axes(node)
    n = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    ct = ctx.ctype(x)
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    lines += _row_loops(shape, axes, [
        (["double mean = 0;"], "mean += X[o];", [f"mean /= {n};", "double var = 0;"]),
        ([], "const double d = X[o] - mean; var += d * d;", [f"const double inv = 1.0 / (sqrt(var / {n}) + 1e-9);"]),
        ([], f"Y[o] = ({ct})((X[o] - mean) * inv);", [])])
    return "\n".join(lines)
