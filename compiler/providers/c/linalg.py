"""Gemm and MatMul: float32 through onnxc_sgemm, other numeric dtypes through plain loops."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...codegen.loops import broadcast_loop, broadcast_strides, contiguous_strides
from ...ops import get_attr
from .registry import all_of, c_kernel, dtypes_in

NUMERIC = ("float32", "float64", "int32", "int64", "uint32", "uint64")


def _gemm_check(node) -> Optional[str]:
    a, b = node.inputs[0], node.inputs[1]
    if len(a.shape) != 2 or len(b.shape) != 2:
        return "Gemm inputs must be 2-D"
    c = node.input(2)
    if c is not None:
        try:
            np.broadcast_shapes(tuple(c.shape), tuple(node.outputs[0].shape))
        except ValueError:
            return "C does not broadcast to [M, N]"
    return None


@c_kernel("Gemm", check=all_of(dtypes_in("float32"), _gemm_check))
def gemm(node, ctx):
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    c = node.input(2)
    ta, tb = int(get_attr(node, "transA", 0)), int(get_attr(node, "transB", 0))
    alpha, beta = float(get_attr(node, "alpha", 1.0)), float(get_attr(node, "beta", 1.0))
    M, N = y.shape
    K = a.shape[0] if ta else a.shape[1]
    lines = [f"float* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    use_c = c is not None and beta != 0.0 and c.size > 0
    if use_c:
        # Y = beta*C broadcast, then Y += alpha*A*B
        lines.append(f"const float* ONNXC_RESTRICT Cb = {ctx.ptr(c)};")
        lines.append(broadcast_loop([M, N], [("Cb", c.shape)],
                                    lambda e, oi: f"Y[{oi}] = {ctx.lit(beta, np.float32)} * {e[0]};"))
    lines.append(f"onnxc_sgemm({ta}, {tb}, {M}, {N}, {K}, {ctx.lit(alpha, np.float32)}, {ctx.ptr(a)}, {a.shape[1]}, "
                 f"{ctx.ptr(b)}, {b.shape[1]}, {'1.0f' if use_c else '0.0f'}, Y, {N});")
    return "\n".join(lines)


def _matmul_geometry(node, trans_a: int = 0, trans_b: int = 0):
    """(A shape, B shape, M, K, N, batch) with 1-D operands promoted as MatMul does; trans_a /
    trans_b (FusedMatMul) swap the last two dims of that operand's stored shape first."""
    a, b = node.inputs[0], node.inputs[1]
    ash, bsh = list(a.shape), list(b.shape)
    if trans_a:
        ash[-2], ash[-1] = ash[-1], ash[-2]
    if trans_b:
        bsh[-2], bsh[-1] = bsh[-1], bsh[-2]
    if len(ash) == 1:
        ash = [1] + ash
    if len(bsh) == 1:
        bsh = bsh + [1]
    M, K = ash[-2], ash[-1]
    N = bsh[-1]
    batch = list(np.broadcast_shapes(tuple(ash[:-2]), tuple(bsh[:-2])))
    return ash, bsh, M, K, N, batch


def _matmul_check(node):
    a, b = node.inputs[0], node.inputs[1]
    if a.dtype != b.dtype:
        return "mixed dtypes"
    if len(a.shape) == 0 or len(b.shape) == 0:
        return "scalar operands"
    try:
        ash, bsh, M, K, N, batch = _matmul_geometry(node)
    except ValueError:
        return "batch dims do not broadcast"
    if bsh[-2] != K:
        return f"inner dims differ ({K} vs {bsh[-2]})"
    return None


@c_kernel("MatMul", check=all_of(dtypes_in(*NUMERIC), _matmul_check))
def matmul(node, ctx):
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    ash, bsh, M, K, N, batch = _matmul_geometry(node)
    # per-batch element offsets of A and B (broadcast batch dims have stride 0)
    a_str = broadcast_strides(ash[:-2], batch) if batch else []
    b_str = broadcast_strides(bsh[:-2], batch) if batch else []
    ct = ctx.ctype(y)
    lines = [f"const {ct}* ONNXC_RESTRICT A = {ctx.ptr(a)};", f"const {ct}* ONNXC_RESTRICT B = {ctx.ptr(b)};",
             f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if y.size == 0:
        return "/* empty output */"
    bidx = [f"b{k}" for k in range(len(batch))]
    off = lambda st, mat: " + ".join([f"{i}*{s * mat}" for i, s in zip(bidx, st) if s] or ["0"])  # noqa: E731
    yoff = " + ".join([f"{i}*{s * M * N}" for i, s in zip(bidx, contiguous_strides(batch))] or ["0"])
    for k, d in enumerate(batch):
        lines.append("  " * k + f"for (int64_t {bidx[k]} = 0; {bidx[k]} < {d}; ++{bidx[k]})")
    pad = "  " * len(batch)
    ao, bo = off(a_str, M * K), off(b_str, K * N)
    if y.dtype == np.float32:
        lines.append(pad + f"onnxc_sgemm(0, 0, {M}, {N}, {K}, 1.0f, A + {ao}, {K}, B + {bo}, {N}, 0.0f, Y + {yoff}, {N});")
    else:
        acc = "double" if y.dtype.kind == "f" else ct
        lines += [pad + "{",
                  pad + f"  const {ct}* a = A + {ao}; const {ct}* b = B + {bo}; {ct}* o = Y + {yoff};",
                  pad + f"  for (int64_t i = 0; i < {M}; ++i) for (int64_t j = 0; j < {N}; ++j) {{",
                  pad + f"    {acc} s = 0;",
                  pad + f"    for (int64_t k = 0; k < {K}; ++k) s += ({acc})a[i*{K} + k] * b[k*{N} + j];",
                  pad + f"    o[i*{N} + j] = ({ct})s;",
                  pad + "  }",
                  pad + "}"]
    return "\n".join(lines)
