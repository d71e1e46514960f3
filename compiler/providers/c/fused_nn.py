"""C emitters of onnxc.FusedConv, onnxc.FusedGemm and onnxc.FusedMatMul (float32).

The activation and the residual run in the kernel epilogue, on the block the kernel just
produced: FusedConv through onnxc_conv_fused (runtime_c/conv/conv_ref.c, per channel plane or
GEMM tile), FusedGemm/FusedMatMul in the SGEMM epilogue (linalg.sgemm_epilogue: a callback the
driver runs on each block of C right after its last K step).  Geometry comes from the unfused
emitters (nn.py, linalg.py).

The activations' C forms live in activations.py.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from ...codegen.loops import broadcast_strides, contiguous_strides
from ...ops import get_attr
from ...ops.fused_nn import activation_error, activation_of
from .activations import ACT_KIND, C_ACTIVATIONS, activation_struct, c_activation  # noqa: F401  (old home)
from .linalg import _gemm_check, _matmul_geometry, _pack_worthwhile, gemm, sgemm_epilogue, sgemm_packed_call
from .nn import _conv_check, _conv_scratch, conv_params
from .registry import all_of, c_kernel, dtypes_in

F32 = dtypes_in("float32")


def _activation_check(node) -> Optional[str]:
    return activation_error(*activation_of(node))


# --- FusedConv -----------------------------------------------------------------------------------
def _fused_conv_check(node) -> Optional[str]:
    w, y = node.inputs[1], node.outputs[0]
    b, z = node.input(2), node.input(3)
    if b is not None and tuple(b.shape) != (w.shape[0],):
        return f"bias shape {b.shape} is not [M] = [{w.shape[0]}]"
    if z is not None and tuple(z.shape) != tuple(y.shape):
        return f"residual Z shape {z.shape} differs from the output shape {y.shape}"
    return None


@c_kernel("FusedConv", domain="onnxc", check=all_of(F32, _conv_check, _fused_conv_check, _activation_check),
          scratch=_conv_scratch)
def fused_conv(node, ctx):
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b, z = node.input(2), node.input(3)
    name, params = activation_of(node)
    scratch = ctx.scratch(node) if _conv_scratch(node) else "NULL"
    lines = [conv_params(node)]
    if name:
        lines.append(f"static const onnxc_activation act = {activation_struct(name, params)};")
    opt = lambda v: ctx.ptr(v) if v is not None else "NULL"  # noqa: E731
    lines.append(f"onnxc_conv_fused(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {opt(b)}, {opt(z)}, "
                 f"{'&act' if name else 'NULL'}, {ctx.ptr(y)}, {scratch});")
    return "\n".join(lines)


# --- FusedGemm -----------------------------------------------------------------------------------
@c_kernel("FusedGemm", domain="onnxc", check=all_of(F32, _gemm_check, _activation_check))
def fused_gemm(node, ctx):
    return gemm(node, ctx)  # beta*C and the activation run in the SGEMM epilogue


# --- FusedMatMul ---------------------------------------------------------------------------------
def _trans(node):
    return int(get_attr(node, "transA", 0)), int(get_attr(node, "transB", 0))


def _fused_matmul_check(node) -> Optional[str]:
    a, b = node.inputs[0], node.inputs[1]
    ta, tb = _trans(node)
    if (ta and len(a.shape) < 2) or (tb and len(b.shape) < 2):
        return "transA/transB on an operand of rank < 2"
    try:
        ash, bsh, M, K, N, batch = _matmul_geometry(node, ta, tb)
    except ValueError:
        return "batch dims do not broadcast"
    if bsh[-2] != K:
        return f"inner dims differ ({K} vs {bsh[-2]})"
    bias = node.input(2)
    if bias is not None:
        if len(b.shape) < 2:
            return "bias with a 1-D B (the output's last dim is not N)"
        if tuple(bias.shape) != (N,):
            return f"bias shape {bias.shape} is not [N] = [{N}]"
    return None


def _rank_check(node) -> Optional[str]:
    a, b = node.inputs[0], node.inputs[1]
    return "scalar operands" if len(a.shape) == 0 or len(b.shape) == 0 else None


@c_kernel("FusedMatMul", domain="onnxc", check=all_of(F32, _rank_check, _fused_matmul_check, _activation_check))
def fused_matmul(node, ctx):
    a, b, y, bias = node.inputs[0], node.inputs[1], node.outputs[0], node.input(2)
    ta, tb = _trans(node)
    alpha = float(get_attr(node, "alpha", 1.0))
    name, params = activation_of(node)
    ash, bsh, M, K, N, batch = _matmul_geometry(node, ta, tb)
    if y.size == 0:
        return "/* empty output */"
    lda, ldb = (M if ta else K), (K if tb else N)  # row strides of A and B as stored
    if batch and len(b.shape) == 2 and not ta:
        # one B for every batch and A's rows contiguous: a single [prod(batch)*M, N] call
        M, batch = M * int(np.prod(batch)), []
    a_str = broadcast_strides(ash[:-2], batch) if batch else []
    b_str = broadcast_strides(bsh[:-2], batch) if batch else []
    packed = b.is_const and len(b.shape) == 2 and _pack_worthwhile(N, K)
    lines = [f"const float* ONNXC_RESTRICT A = {ctx.ptr(a)};", f"float* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    ep = None
    if bias is not None or name:
        # bias and activation in the SGEMM epilogue, on each block while it is in cache
        decl, ep = sgemm_epilogue(ctx, node, (ctx.ptr(bias), 0, 1, 1.0) if bias is not None else None,
                                  (lambda v: c_activation(name, params, v)) if name else None)
        lines.append(decl)
    if not packed:  # (a packed B replaces the original in the weights blob)
        lines.append(f"const float* ONNXC_RESTRICT B = {ctx.ptr(b)};")
    bidx = [f"b{k}" for k in range(len(batch))]
    off = lambda st, mat: " + ".join([f"{i}*{s * mat}" for i, s in zip(bidx, st) if s] or ["0"])  # noqa: E731
    yoff = " + ".join([f"{i}*{s * M * N}" for i, s in zip(bidx, contiguous_strides(batch))] or ["0"])
    for k, d in enumerate(batch):
        lines.append("  " * k + f"for (int64_t {bidx[k]} = 0; {bidx[k]} < {d}; ++{bidx[k]})")
    pad = "  " * len(batch)
    lines += [pad + "{", pad + f"  float* o = Y + {yoff};"]
    if packed:
        # constant weights: packed at compile time for the target's microkernel (as MatMul does)
        call = sgemm_packed_call(ctx, ta, M, N, K, alpha, f"A + {off(a_str, M * K)}", lda,
                                 b.const.T if tb else b.const, 0.0, "o", N, ep)
        lines += [pad + "  " + ln for ln in call.split("\n")]
    else:
        args = (f"{ta}, {tb}, {M}, {N}, {K}, {ctx.lit(alpha, np.float32)}, "
                f"A + {off(a_str, M * K)}, {lda}, B + {off(b_str, K * N)}, {ldb}, 0.0f, o, {N}")
        lines.append(pad + (f"  onnxc_sgemm_ep({args}, {ep});" if ep else f"  onnxc_sgemm({args});"))
    lines.append(pad + "}")
    return "\n".join(lines)

