"""Gemm and MatMul: float32 through onnxc_sgemm, other numeric dtypes through plain loops.

A constant B (weights) is packed here, at compile time, into the panel layout of the target's
SGEMM microkernel (pack_sgemm_b; the kernel and its tile: compiler/kernels/gemm_f32.py) and
multiplied with onnxc_sgemm_packed, which then never touches the original layout. The layout
depends on the ISA the module is compiled for, so the emitted call carries a preprocessor check
that the C build agrees (onnxc_isa.h).
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from ...codegen.loops import broadcast_loop, broadcast_strides, contiguous_strides
from ...isa import BY_NAME as ISA_ROWS
from ...kernels import gemm_f32
from ...ops import get_attr
from ...ops.fused_nn import activation_of
from .activations import c_activation
from .intmath import wrap_binary
from .registry import all_of, c_kernel, dtypes_in

NUMERIC = ("float32", "float64", "int32", "int64", "uint32", "uint64")

# Register tile (rows, columns) of the SGEMM microkernel per ISA row and the K block: what
# ONNXC_SGEMM_TILE_M/N and ONNXC_SGEMM_KC of onnxc_isa.h say (both from gemm_f32).
SGEMM_TILE = {isa: gemm_f32.tile(isa) for isa in ISA_ROWS}
SGEMM_KC = gemm_f32.KC


def target_isa(ctx) -> str:
    """The ISA the module is compiled for (what selects the C microkernel)."""
    from ...target import resolve
    return resolve(ctx.options.get("target", "native")).isa


def pack_sgemm_b(op_b: np.ndarray, isa: str) -> np.ndarray:
    """op(B) [K, N] in onnxc_sgemm_packed's layout for ``isa`` (flat float32): equal K blocks of
    at most SGEMM_KC rows, one after the other; each block holds ceil(N/TN) panels of kc x TN
    floats (row k of a panel is op(B)[pc + k, p*TN : p*TN + TN]), zero past column N."""
    tn = SGEMM_TILE[isa][1]
    K, N = op_b.shape
    npad = -(-N // tn) * tn
    kb = -(-K // -(-K // SGEMM_KC)) if K else 0
    b = np.zeros((K, npad), np.float32)
    b[:, :N] = op_b
    blocks = [b[pc:pc + kb].reshape(-1, npad // tn, tn).transpose(1, 0, 2).reshape(-1)
              for pc in range(0, K, kb)] if K else []
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def sgemm_packed_call(ctx, ta: int, M: int, N: int, K: int, alpha: float, a_ptr: str, lda: int,
                      op_b: np.ndarray, beta: float, c_ptr: str, ldc: int, ep: Optional[str] = None) -> str:
    """C statements: C = alpha * op(A) * op_b + beta * C with the constant op_b ([K, N]) packed
    at compile time for the module's target; ``ep``: an epilogue (sgemm_epilogue) run on C."""
    isa = target_isa(ctx)
    tm, tn = SGEMM_TILE[isa]
    packed = ctx.const_array(pack_sgemm_b(np.asarray(op_b, np.float32), isa))
    args = (f"{ta}, {M}, {N}, {K}, {ctx.lit(alpha, np.float32)}, {a_ptr}, {lda}, "
            f"{packed}, {ctx.lit(beta, np.float32)}, {c_ptr}, {ldc}")
    return (f"#if ONNXC_SGEMM_TILE_N != {tn} || ONNXC_SGEMM_KC != {SGEMM_KC}\n"
            f'#error "B was packed for the {ISA_ROWS[isa].base} SGEMM tile ({tm}x{tn}); this build selects another '
            f'microkernel (compile flags and target disagree)"\n#endif\n'
            + (f"onnxc_sgemm_packed_ep({args}, {ep});" if ep else f"onnxc_sgemm_packed({args});"))


def sgemm_epilogue(ctx, node, addend: Optional[Tuple[str, int, int, float]] = None,
                   act: Optional[Callable[[str], str]] = None, tag: str = "") -> Tuple[str, str]:
    """An SGEMM epilogue (onnxc_kernels.h) y = act(y + scale * P[i*rs + j*cs]) for the GEMM of
    ``node``, run by the driver on each block of C while it is in cache instead of a second pass
    over the output.  addend: (C pointer expression of P, row stride rs, column stride cs, scale)
    in the [M, N] index space of C (stride 0 broadcasts: a bias is (ptr, 0, 1, 1.0)); act: C
    expression of the float variable ``v``.  The loop is a file-scope helper function with the
    strides, scale and activation as constants.  Returns (statement declaring the
    onnxc_sgemm_epilogue, expression of its address)."""
    name = f"onnxc_ep{ctx.node_index[id(node)]}{tag}"
    if addend is not None:
        ptr, rs, cs, scale = addend
        sc = "" if scale == 1.0 else f"{ctx.lit(scale, np.float32)} * "
        row = f"const float* ONNXC_RESTRICT q = P + (i0 + i) * {rs}LL + j0 * {cs}LL;"
        val = f"y[j] + {sc}q[{'j' if cs == 1 else f'j * {cs}LL'}]"
    else:
        ptr, row, val = "NULL", "", "y[j]"
    body = act("v") if act is not None else "v"
    helper = "\n".join([
        f"static void {name}(const void* arg, float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {{",
        "    const float* ONNXC_RESTRICT P = (const float*)arg;",
        "    (void)P; (void)i0; (void)j0;",
        "    for (int64_t i = 0; i < m; ++i) {",
        "        float* ONNXC_RESTRICT y = c + i * ldc;",
        *([f"        {row}"] if row else []),
        f"        for (int64_t j = 0; j < n; ++j) {{ const float v = {val}; y[j] = {body}; }}",
        "    }",
        "}"])
    ctx.add_helper(helper)
    return f"const onnxc_sgemm_epilogue ep{tag} = {{{name}, {ptr}}};", f"&ep{tag}"


def _pack_worthwhile(N: int, K: int) -> bool:
    """N == 1 is a matrix-vector product (onnxc_sgemm's GEMV reads B in place; a packed panel
    would be TN - 1 columns of zeros)."""
    return N > 1 and K > 0


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
    if y.size == 0:
        return "/* empty output */"
    act = gemm_activation(node)
    ep = None
    if use_c or act is not None:
        # Y = act(alpha*A*B + beta*C) in the SGEMM epilogue, block by block while C is in cache
        # (no pass that fills Y with beta*C first, none that applies the activation after)
        addend = None
        if use_c:
            rs, cs = broadcast_strides(c.shape, [M, N])[-2:] if len(c.shape) else (0, 0)
            addend = (ctx.ptr(c), rs, cs, beta)
        decl, ep = sgemm_epilogue(ctx, node, addend, act)
        lines.append(decl)
    if b.is_const and _pack_worthwhile(N, K):
        op_b = b.const.T if tb else b.const
        lines.append(sgemm_packed_call(ctx, ta, M, N, K, alpha, ctx.ptr(a), a.shape[1], op_b, 0.0, "Y", N, ep))
    else:
        args = (f"{ta}, {tb}, {M}, {N}, {K}, {ctx.lit(alpha, np.float32)}, {ctx.ptr(a)}, "
                f"{a.shape[1]}, {ctx.ptr(b)}, {b.shape[1]}, 0.0f, Y, {N}")
        lines.append(f"onnxc_sgemm_ep({args}, {ep});" if ep else f"onnxc_sgemm({args});")
    return "\n".join(lines)


def gemm_activation(node) -> Optional[Callable[[str], str]]:
    """The epilogue activation of a FusedGemm (None for Gemm and for none)."""
    if node.domain != "onnxc":
        return None
    name, params = activation_of(node)
    return (lambda v: c_activation(name, params, v)) if name else None


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
    if y.size == 0:
        return "/* empty output */"
    if y.dtype == np.float32 and b.is_const and len(b.shape) == 2 and _pack_worthwhile(N, K):
        # constant 2-D weights: every row of A (batch dims included) times the same B, one call
        rows = a.size // K
        return (f"float* ONNXC_RESTRICT Y = {ctx.ptr(y)};\n"
                + sgemm_packed_call(ctx, 0, rows, N, K, 1.0, ctx.ptr(a), K, b.const, 0.0, "Y", N))
    lines = [f"const {ct}* ONNXC_RESTRICT A = {ctx.ptr(a)};", f"const {ct}* ONNXC_RESTRICT B = {ctx.ptr(b)};",
             f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
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
        term = f"({acc})a[i*{K} + k] * b[k*{N} + j]" if y.dtype.kind == "f" else \
            wrap_binary("*", f"a[i*{K} + k]", f"b[k*{N} + j]", y.dtype)  # integers wrap (intmath.py)
        lines += [pad + "{",
                  pad + f"  const {ct}* a = A + {ao}; const {ct}* b = B + {bo}; {ct}* o = Y + {yoff};",
                  pad + f"  for (int64_t i = 0; i < {M}; ++i) for (int64_t j = 0; j < {N}; ++j) {{",
                  pad + f"    {acc} s = 0;",
                  pad + f"    for (int64_t k = 0; k < {K}; ++k) s = {wrap_binary('+', 's', term, y.dtype)};",
                  pad + f"    o[i*{N} + j] = ({ct})s;",
                  pad + "  }",
                  pad + "}"]
    return "\n".join(lines)
