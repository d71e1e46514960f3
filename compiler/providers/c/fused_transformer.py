"""C emitters of the onnxc transformer fusions (float32): Gelu / FastGelu (with optional bias) as
emitted loops, MatMulGelu as one SGEMM with bias + Gelu in its epilogue, LayerNormalization /
RMSNormalization / SkipLayerNormalization through onnxc_layernorm (runtime_c/math/layernorm_ref.c), MultiHeadAttention through onnxc_mha
(runtime_c/attention/mha_ref.c).  Semantics: compiler/ops/fused_transformer.py."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from ...ops.fused_transformer import mha_geometry
from ...ops.plan import Refuse
from .linalg import _pack_worthwhile, sgemm_epilogue, sgemm_packed_call
from .registry import c_kernel

F32 = np.dtype(np.float32)
_TILE_ROWS = 256        # query rows per attention task: a whole head up to S = 256 (K^T packed once)
_TILE_FLOATS = 1 << 16  # cap of one task's score tile (256 KB, in L2)
_MAX_SLOTS = 16




def _f32_check(node) -> Optional[str]:
    for v in list(node.inputs) + list(node.outputs):
        if v is not None and v.dtype != F32:
            return f"'{v.name}' has dtype {v.dtype}; the fused transformer kernels are float32 only"
    x = node.inputs[0]
    if len(x.shape) < 1 or x.shape[-1] <= 0:
        return "input needs a non-empty last dim"
    return None


def _vec_check(node, first: int, last: int) -> Optional[str]:
    """Inputs first..last (optional) must be [N] vectors, N = X's last dim."""
    n = node.inputs[0].shape[-1]
    for i in range(first, last + 1):
        v = node.input(i)
        if v is not None and tuple(v.shape) != (n,):
            return f"input {i} '{v.name}' has shape {v.shape}, expected ({n},)"
    return None


def _rows(x) -> int:
    return int(np.prod(x.shape[:-1], dtype=np.int64))


# --- Gelu / FastGelu ----------------------------------------------------------------------------
def _gelu_check(node) -> Optional[str]:
    return _f32_check(node) or _vec_check(node, 1, 1)


@c_kernel("Gelu", "FastGelu", domain="onnxc", check=_gelu_check)
def gelu(node, ctx):
    x, y, bias = node.inputs[0], node.outputs[0], node.input(1)
    if y.size == 0:
        return "/* empty */"
    n = x.shape[-1]
    rows = _rows(x)
    # branch-free inline forms (runtime_c/include/onnxc_transformer.h): the loop vectorizes
    f = "onnxc_gelu_erff(v)" if node.op_type == "Gelu" else "onnxc_gelu_tanhf(v)"
    v = "X[r*%d + k] + Bv[k]" % n if bias is not None else "X[r*%d + k]" % n
    lines = [f"const float* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"float* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if bias is not None:
        lines.append(f"const float* ONNXC_RESTRICT Bv = {ctx.ptr(bias)};")
    lines += ["ONNXC_OMP_FOR" if y.size >= (1 << 16) and rows > 1 else "",
              f"for (int64_t r = 0; r < {rows}; ++r)",
              f"  for (int64_t k = 0; k < {n}; ++k) {{ const float v = {v}; Y[r*{n} + k] = {f}; }}"]
    return "\n".join(line for line in lines if line)


# --- MatMulGelu ----------------------------------------------------------------------------------
def _matmul_gelu_check(node) -> Optional[str]:
    reason = _f32_check(node)
    if reason:
        return reason
    a, b, bias = node.inputs[0], node.inputs[1], node.input(2)
    if len(a.shape) < 2 or len(b.shape) != 2:
        return f"A must have rank >= 2 and B rank 2 (shapes {a.shape}, {b.shape})"
    if a.shape[-1] != b.shape[0]:
        return f"inner dims differ ({a.shape[-1]} vs {b.shape[0]})"
    if bias is not None and tuple(bias.shape) != (b.shape[1],):
        return f"bias shape {bias.shape} is not [N] = [{b.shape[1]}]"
    if get_attr(node, "approximate", "none") not in ("none", "tanh"):
        return f"approximate {get_attr(node, 'approximate')!r} is neither 'none' nor 'tanh'"
    return None


@c_kernel("MatMulGelu", domain="onnxc", check=_matmul_gelu_check)
def matmul_gelu(node, ctx):
    a, b, y, bias = node.inputs[0], node.inputs[1], node.outputs[0], node.input(2)
    if y.size == 0:
        return "/* empty */"
    K, N = b.shape
    rows = y.size // N
    f = "onnxc_gelu_tanhf" if get_attr(node, "approximate", "none") == "tanh" else "onnxc_gelu_erff"
    # bias + Gelu in the SGEMM epilogue: each block of Y is finished while it is in L1
    decl, ep = sgemm_epilogue(ctx, node, (ctx.ptr(bias), 0, 1, 1.0) if bias is not None else None,
                              lambda v: f"{f}({v})")
    lines = [decl, f"float* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if b.is_const and _pack_worthwhile(N, K):
        lines.append(sgemm_packed_call(ctx, 0, rows, N, K, 1.0, ctx.ptr(a), K, b.const, 0.0, "Y", N, ep))
    else:
        lines.append(f"onnxc_sgemm_ep(0, 0, {rows}, {N}, {K}, 1.0f, {ctx.ptr(a)}, {K}, {ctx.ptr(b)}, {N}, "
                     f"0.0f, Y, {N}, {ep});")
    return "\n".join(lines)


# --- normalizations -----------------------------------------------------------------------------
def _ln_check(node) -> Optional[str]:
    reason = _f32_check(node)
    if reason:
        return reason
    if node.op_type == "SkipLayerNormalization":
        x, skip = node.inputs[0], node.inputs[1]
        if tuple(skip.shape) != tuple(x.shape):
            return f"skip shape {skip.shape} differs from the input's {x.shape}"
        return _vec_check(node, 2, 4)
    return _vec_check(node, 1, 2 if node.op_type == "LayerNormalization" else 1)


@c_kernel("LayerNormalization", "RMSNormalization", "SkipLayerNormalization", domain="onnxc", check=_ln_check)
def layer_norm(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    op = node.op_type

    def opt(i):
        v = node.input(i)
        return ctx.ptr(v) if v is not None else "NULL"
    if op == "SkipLayerNormalization":
        skip, gamma, beta, bias = opt(1), opt(2), opt(3), opt(4)
        total = ctx.ptr(node.outputs[1]) if node.output_read(1) else "NULL"
    else:
        skip, bias, total = "NULL", "NULL", "NULL"
        gamma, beta = opt(1), (opt(2) if op == "LayerNormalization" else "NULL")
    eps = ctx.lit(float(get_attr(node, "epsilon", 1e-5)), np.float32)
    return (f"onnxc_layernorm({_rows(x)}, {x.shape[-1]}, {ctx.ptr(x)}, {skip}, {bias}, {gamma}, {beta}, "
            f"{eps}, {int(op == 'RMSNormalization')}, {ctx.ptr(y)}, {total});")


# --- MultiHeadAttention -------------------------------------------------------------------------
def _mha_params(node):
    x, w, bias, mask = node.inputs[0], node.input(1), node.input(2), node.input(3)
    if len(x.shape) != 3 or (w is not None and len(w.shape) != 2):
        raise Refuse("X must be 3-D and W 2-D")
    H = int(get_attr(node, "num_heads", 0) or 0)
    cols = x.shape[2] if w is None else w.shape[1]
    if H <= 0 or cols % (3 * H):
        raise Refuse(f"{'X' if w is None else 'W'} has {cols} columns, not 3 * num_heads ({H}) * head size")
    B, S, E, H, D, seq_first = mha_geometry(node)
    if (w is not None and w.shape[0] != E) or min(B, S, E, D) <= 0:
        raise Refuse(f"W shape {w.shape if w is not None else None} does not match X {x.shape}")
    if w is None and bias is not None:
        raise Refuse("bias without W (a projected X carries its bias)")
    if bias is not None and tuple(bias.shape) != (3 * H * D,):
        raise Refuse(f"bias shape {bias.shape}, expected ({3 * H * D},)")
    mask_str = [0, 0, 0, 0]
    if mask is not None:
        ms = list(mask.shape)
        if len(ms) > 4:
            raise Refuse(f"mask rank {len(ms)} > 4")
        full = [1] * (4 - len(ms)) + ms
        for d, t in zip(full, (B, H, S, S)):
            if d not in (1, t):
                raise Refuse(f"mask shape {tuple(ms)} does not broadcast to {(B, H, S, S)}")
        mask_str = [0 if d == 1 else s for d, s in zip(full, contiguous_strides(full))]
    tile_rows = max(1, min(S, _TILE_ROWS, _TILE_FLOATS // S))
    tasks = B * H * -(-S // tile_rows)
    return dict(B=B, S=S, E=E, H=H, D=D, seq_first=int(seq_first), scale=float(get_attr(node, "scale")),
                has_mask=int(mask is not None), mask_str=mask_str,
                nan_to_zero=int(bool(get_attr(node, "nan_to_zero", 0))), tile_rows=tile_rows,
                slots=min(tasks, _MAX_SLOTS))


def _mha_check(node) -> Optional[str]:
    reason = _f32_check(node)
    if reason:
        return reason
    try:
        p = _mha_params(node)
    except Refuse as e:
        return str(e)
    want = (p["S"], p["B"], p["H"] * p["D"]) if p["seq_first"] else (p["B"], p["S"], p["H"] * p["D"])
    if tuple(node.outputs[0].shape) != want:
        return f"output shape {node.outputs[0].shape}, expected {want}"
    return None


def _mha_scratch(node) -> int:
    p = _mha_params(node)
    tiles = p["slots"] * p["tile_rows"] * (p["S"] + 1)
    if node.input(1) is None:  # X is the projection: only the score tiles
        return 4 * tiles
    return 4 * (p["B"] * p["S"] * 3 * p["H"] * p["D"] + tiles)


@c_kernel("MultiHeadAttention", domain="onnxc", check=_mha_check, scratch=_mha_scratch)
def mha(node, ctx):
    p = _mha_params(node)
    ms = ", ".join(str(int(s)) for s in p["mask_str"])
    params = (f"{{{p['B']}, {p['S']}, {p['E']}, {p['H']}, {p['D']}, {p['seq_first']}, "
              f"{ctx.lit(p['scale'], np.float32)}, {p['has_mask']}, {{{ms}}}, {p['nan_to_zero']}, "
              f"{p['tile_rows']}, {p['slots']}}}")
    x, w, bias, mask = node.inputs[0], node.input(1), node.input(2), node.input(3)
    mask_p, y_p = (ctx.ptr(mask) if mask is not None else "NULL"), ctx.ptr(node.outputs[0])
    lines = [f"static const onnxc_mha_params p = {params};"]
    if w is None:  # X is the projected QKV (e.g. QAttention's int8 GEMM)
        return "\n".join(lines + [f"onnxc_mha_attend(&p, {ctx.ptr(x)}, {mask_p}, {y_p}, {ctx.scratch(node, 'float')});"])
    if not w.is_const:
        args = [ctx.ptr(x), ctx.ptr(w), ctx.ptr(bias) if bias is not None else "NULL", mask_p, y_p,
                ctx.scratch(node, "float")]
        return "\n".join(lines + [f"onnxc_mha(&p, {', '.join(args)});"])
    # constant weights: the projection runs on B packed at compile time, then the attention
    rows, n = p["B"] * p["S"], 3 * p["H"] * p["D"]
    lines.append(f"float* QKV = {ctx.scratch(node, 'float')};")
    ep = None
    if bias is not None:  # added in the SGEMM epilogue while each block is in cache
        decl, ep = sgemm_epilogue(ctx, node, (ctx.ptr(bias), 0, 1, 1.0))
        lines.append(decl)
    lines.append(sgemm_packed_call(ctx, 0, rows, n, p["E"], 1.0, ctx.ptr(x), p["E"], w.const, 0.0, "QKV", n, ep))
    lines.append(f"onnxc_mha_attend(&p, QKV, {mask_p}, {y_p}, QKV + {rows * n});")
    return "\n".join(lines)
