"""C emitters of the quantized ops (issue 13). What each op computes, and where it follows
onnxruntime rather than the op's formula, is in ops/quant.py; the lookup tables and constant
scales come from there, so the C and the numpy reference cannot drift apart.

GEMM family (MatMulInteger, QLinearMatMul, QGemm, MatMulIntegerToFloat, DynamicQuantizeMatMul)
on the int8 GEMM of runtime_c/qgemm (onnxc_qgemm.h): the kernel is kernel_for(the module's ISA
row, A's dtype, B); a constant B is packed at compile time into the weights blob in that
kernel's layout (compiler/kernels/qgemm.py's pack_b), a runtime B is packed per call into the
node's scratch by the C packer (then the plain "gemm" kernel: the pair-safe AVX2 one needs B's
values to size its blob). Zero points are folded by the driver, the output stage requantizes,
converts to float or stores int32 (docs/qgemm.md). Scales that are constants are multiplied out
here in float32 (the order onnxruntime uses); runtime ones in the emitted C, same order.

Elementwise ops are loops over constant shapes: QLinearAdd / QLinearMul in float32 with
onnxruntime's exact operation sequence (fmaf where its AVX2 kernel fuses; same-shape 8-bit ones
on the runtime's vectorized loops, runtime_c/quant/qladd.c), the lookup ops and
QLinearConcat through 256-byte tables in the weights blob, the pools and QLinearSoftmax as
plain loops in onnxruntime's summation order.

Declined (left to the fallback, with the reason): per-row A scales / zero points, per-column
B parameters that are not constants, lookup ops whose scales or zero points are runtime values
(the table is built at compile time), float16 scales.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...codegen.loops import broadcast_strides, contiguous_strides, pooled_loop
from ...ops import quant as Q
from .registry import c_kernel

QGEMM_H = "onnxc_qgemm.h"  # runtime headers the emitters include (ctx.include)
QUANT_H = "onnxc_quant.h"
F32 = np.float32
SHIFTER = "12582912.0f"  # 1.5 * 2^23: (v + S) - S rounds |v| < 2^22 half to even, vectorizably


def _validate(node):
    """The op's shape/dtype rule: raises ModelError for an invalid node (named, with the value
    expected and the one found) before anything is emitted for it."""
    from ...ops.registry import SHAPE_RULES
    SHAPE_RULES[(node.domain, node.op_type)](node)


def _const_or_none(v):
    return None if v is None else v.const


def _is_scalar(v) -> bool:
    return v is None or (v.is_static and v.size == 1)


def _f32_expr(ctx, v) -> str:
    """C float expression of a size-1 float scale (literal when constant)."""
    lit = ctx.scalar(v)
    return lit if lit is not None else f"{ctx.ptr(v)}[0]"


def _zp_expr(ctx, v) -> str:
    """C int32 expression of a size-1 zero point (0 when omitted)."""
    if v is None:
        return "0"
    if v.is_const:
        return str(int(v.const.reshape(-1)[0]))
    return f"(int32_t){ctx.ptr(v)}[0]"


def _scale_check(*idx, scalar_only=True):
    """check: the scales at ``idx`` are float32 (float16 ones are valid but not handled here)."""
    def check(node):
        for i in idx:
            v = node.input(i)
            if v is not None and v.dtype != np.float32:
                return f"input {i} '{v.name}' is a {v.dtype} scale (float32 only)"
            if scalar_only and v is not None and not _is_scalar(v):
                return f"input {i} '{v.name}' has {v.size} elements (per-tensor only)"
        return None
    return check


def _run_checks(node, *checks):
    _validate(node)
    for c in checks:
        r = c(node)
        if r:
            return r
    return None


# --- the int8 GEMM ------------------------------------------------------------------------------
def _isa(ctx) -> str:
    from ...target import resolve
    return resolve(ctx.options.get("target", "native")).isa


def _kernel(ctx, a_dtype, b2d: Optional[np.ndarray] = None):
    from ...kernels.qgemm import kernel_for
    return kernel_for(_isa(ctx), a_dtype, b2d)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def packed_bytes(K: int, N: int) -> int:
    """Bytes of a run-time packed B (onnxc_qgemm_packed_bytes for the non-pair-safe kernels)."""
    from ...kernels.qgemm import HEADER, KALIGN, PANEL
    Kp, Np = _round_up(max(K, 0), KALIGN), _round_up(max(N, 0), PANEL)
    panels = _round_up(HEADER + 8 * Np, 64)
    return _round_up(panels + Np * Kp, 64)


class MatMulGeometry:
    """numpy.matmul geometry of A x B: M, K, N, the broadcast batch and per-batch element
    offsets; ``fold``: B has no batch dims, so every row of A (its batch dims included) is one
    row of a single product."""

    def __init__(self, a, b, out):
        ash, bsh = list(a.shape), list(b.shape)
        if len(ash) == 1:
            ash = [1] + ash
        if len(bsh) == 1:
            bsh = bsh + [1]
        self.M, self.K, self.N = ash[-2], ash[-1], bsh[-1]
        self.batch = list(np.broadcast_shapes(tuple(ash[:-2]), tuple(bsh[:-2])))
        self.fold = len(bsh) == 2
        self.rows = int(np.prod(ash[:-1], dtype=np.int64)) if self.fold else self.M
        nb = int(np.prod(self.batch, dtype=np.int64)) if self.batch else 1
        self.nbatch = 1 if self.fold else nb
        if not self.fold:
            a_st = broadcast_strides(ash[:-2], self.batch)
            b_st = broadcast_strides(bsh[:-2], self.batch)
            idx = np.indices(self.batch).reshape(len(self.batch), -1).T if self.batch else np.zeros((1, 0), int)
            self.a_off = [int(np.dot(i, a_st)) * self.M * self.K for i in idx]
            self.b_off = [int(np.dot(i, b_st)) * self.K * self.N for i in idx]
            self.y_off = [t * self.M * self.N for t in range(nb)]
        self.empty = out.size == 0


def _b_matrix(b: np.ndarray, K: int, N: int, trans: bool = False) -> np.ndarray:
    m = b.reshape(N, K).T if trans else b.reshape(K, N)
    return np.ascontiguousarray(m)


def _b_zero_points(v, N: int):
    """(compile-time zero points of B: None, a scalar or N values; per column?)."""
    if v is None:
        return None, False
    z = v.const.astype(np.int64).reshape(-1)
    return (z if z.size > 1 else int(z[0])), z.size > 1


def _scratch_layout(parts: List[Tuple[str, int]]):
    """Offsets of 64-byte-aligned named parts in one scratch block: ({name: offset}, total)."""
    off, total = {}, 0
    for name, size in parts:
        off[name] = total
        total += _round_up(size, 64)
    return off, total


def _gemm_parts(node) -> List[Tuple[str, int]]:
    """Scratch needs of a GEMM-family node (also the scratch function, so both agree)."""
    op = node.op_type
    a, b = _ab(node)
    parts = []
    if op == "QGemm":
        M, N, K, _ = Q.gemm_mnk(node)
        if Q.attr(node, "transA"):
            parts.append(("at", M * K))
        if not b.is_const:
            parts.append(("pb", packed_bytes(K, N)))
        c = node.input(6)
        if c is not None and not _row_bias(c, N) and c.size != 1:
            parts.append(("acc", 4 * M * N))
        if c is not None and not c.is_const and c.size == 1:
            parts.append(("bias", 4 * N))
        return parts
    g = MatMulGeometry(a, b, node.outputs[0])
    if op == "DynamicQuantizeMatMul":
        parts.append(("aq", a.size))
    if not (b.is_const and g.fold):
        parts.append(("pb", packed_bytes(g.K, g.N)))
    return parts


def _gemm_scratch(node) -> int:
    return _scratch_layout(_gemm_parts(node))[1]


def _ab(node):
    if node.op_type in ("QLinearMatMul", "QGemm"):
        return node.inputs[0], node.inputs[3]
    return node.inputs[0], node.inputs[1]


def _row_bias(c, N) -> bool:
    """QGemm's C is one int32 per column ([N] or [1, N]): the driver's bias."""
    return tuple(c.shape) in ((N,), (1, N)) and N != 1


def _b_params_check(node, zp_i: Optional[int], scale_i: Optional[int]):
    """Per-column B parameters must be constants (the packer and the scale array need them)."""
    for i in (zp_i, scale_i):
        v = node.input(i) if i is not None else None
        if v is not None and not v.is_const and not _is_scalar(v):
            return f"input {i} '{v.name}' (per-column B parameter) is not a constant"
    return None


def _a_params_check(node, *idx):
    for i in idx:
        v = node.input(i)
        if v is not None and not _is_scalar(v):
            return f"input {i} '{v.name}' has {v.size} elements: per-row A parameters are not supported"
    return None


def _gemm_check(node) -> Optional[str]:
    op = node.op_type
    if op == "MatMulInteger":
        return _run_checks(node, lambda n: _a_params_check(n, 2), lambda n: _b_params_check(n, 3, None))
    if op == "QLinearMatMul":
        return _run_checks(node, _scale_check(1, 6), _scale_check(4, scalar_only=False),
                           lambda n: _a_params_check(n, 1, 2), lambda n: _b_params_check(n, 5, 4),
                           lambda n: _a_params_check(n, 6, 7))
    if op == "QGemm":
        return _run_checks(node, _scale_check(1, 7), _scale_check(4, scalar_only=False),
                           lambda n: _b_params_check(n, 5, 4))
    if op == "MatMulIntegerToFloat":
        return _run_checks(node, _scale_check(2), _scale_check(3, scalar_only=False),
                           lambda n: _a_params_check(n, 4), lambda n: _b_params_check(n, 5, 3))
    if op == "DynamicQuantizeMatMul":
        return _run_checks(node, _scale_check(2, scalar_only=False), lambda n: _b_params_check(n, 3, 2))
    return None


def _scale_array(ctx, lines: List[str], factors, divisor=None, alpha: Optional[float] = None) -> Tuple[str, int]:
    """The output scale (onnxruntime's order: ((alpha * a) * b[n]) / y) as (C pointer, per
    column). Constant factors are multiplied out at compile time; runtime ones (scalars) in C."""
    vals = [f for f in factors] + ([divisor] if divisor is not None else [])
    if all(v.is_const for v in vals):
        fs = list(f.const for f in factors)
        if alpha is not None:
            fs[0] = np.asarray(F32(alpha) * F32(np.asarray(fs[0]).reshape(-1)[0]), F32)
        s = Q.out_scale(*fs, divisor=None if divisor is None else divisor.const)
        s = np.asarray(s, F32).reshape(-1)
        return ctx.const_array(s), int(s.size > 1)
    per_col = [f for f in factors if not _is_scalar(f)]
    if per_col:  # a constant per-column factor times runtime scalars: loop in C
        n = per_col[0].size
        expr = None
        lines.append(f"float qscale[{n}];")
        terms = []
        for k, f in enumerate(factors):
            t = f"{ctx.ptr(f)}[j]" if not _is_scalar(f) else _f32_expr(ctx, f)
            if k == 0 and alpha is not None:
                t = f"({ctx.lit(alpha, F32)} * {t})"
            terms.append(t)
        expr = terms[0]
        for t in terms[1:]:
            expr = f"({expr} * {t})"
        if divisor is not None:
            expr = f"({expr} / {_f32_expr(ctx, divisor)})"
        lines.append(f"for (int64_t j = 0; j < {n}; ++j) qscale[j] = {expr};")
        return "qscale", 1
    terms = [_f32_expr(ctx, f) for f in factors]
    if alpha is not None:
        terms[0] = f"({ctx.lit(alpha, F32)} * {terms[0]})"
    expr = terms[0]
    for t in terms[1:]:
        expr = f"({expr} * {t})"
    if divisor is not None:
        expr = f"({expr} / {_f32_expr(ctx, divisor)})"
    lines.append(f"const float qscale[1] = {{{expr}}};")
    return "qscale", 0


def _output_struct(kind: str, y_ptr: str, ldc: int, scale=("NULL", 0), zp="0", qrange=(0, 0), bias="NULL") -> str:
    qtype = {"S32": "ONNXC_QOUT_S32", "U8": "ONNXC_QOUT_U8", "S8": "ONNXC_QOUT_S8", "F32": "ONNXC_QOUT_F32"}[kind]
    return (f"onnxc_qgemm_output qo = {{{qtype}, (void*)({y_ptr}), {ldc}, {scale[0]}, {scale[1]}, {zp}, "
            f"{qrange[0]}, {qrange[1]}, {bias}, NULL, NULL}};")


def _kind_of(dtype) -> str:
    return {np.dtype(np.uint8): "U8", np.dtype(np.int8): "S8", np.dtype(np.int32): "S32",
            np.dtype(np.float32): "F32"}[np.dtype(dtype)]


def _emit_product(node, ctx, lines: List[str], a_ptr: str, a_dtype, a_zp: str, b, b_zp_v, g: MatMulGeometry,
                  out_decl: str, y_expr: str, bias: str = "NULL", scratch=None, trans_b: bool = False) -> None:
    """The qgemm call(s) of C = A x B for geometry ``g`` (batched when B has batch dims): B
    packed at compile time when constant, else per batch into scratch part "pb"."""
    zb, zb_per_col = (None, False)
    if b_zp_v is not None and b_zp_v.is_const:
        zb, zb_per_col = _b_zero_points(b_zp_v, g.N)
    K, N = g.K, g.N
    signed_b = int(b.dtype == np.int8)
    lines.append(out_decl)
    if b.is_const:
        bconst = b.const
        if g.fold:
            bm = _b_matrix(bconst, K, N, trans_b)
            k = _kernel(ctx, a_dtype, bm)
            from ...kernels.qgemm import pack_b
            blob = ctx.const_array(pack_b(bm, k, zb))
            lines.append(f"qo.C = (void*)({y_expr});")
            lines.append(f"(void)onnxc_qgemm(&{k.name}_info, {g.rows}, {N}, {K}, {a_ptr}, {K}, {a_zp}, "
                         f"{blob}, {bias}, &qo);")
            return
        k = _kernel(ctx, a_dtype)
        from ...kernels.qgemm import pack_b
        blobs, offs, seen = [], [], {}
        flat = bconst.reshape(-1)
        for off in g.b_off:
            if off not in seen:
                seen[off] = sum(len(x) for x in blobs)
                blobs.append(pack_b(_b_matrix(flat[off:off + K * N], K, N), k, zb))
            offs.append(seen[off])
        allb = ctx.const_array(np.concatenate(blobs))
        lines += [f"const int64_t qa_off[{g.nbatch}] = {{{', '.join(map(str, g.a_off))}}};",
                  f"const int64_t qb_off[{g.nbatch}] = {{{', '.join(map(str, offs))}}};",
                  f"for (int64_t t = 0; t < {g.nbatch}; ++t) {{",
                  f"  qo.C = (void*)({y_expr} + t * {g.M * N});",
                  f"  (void)onnxc_qgemm(&{k.name}_info, {g.M}, {N}, {K}, {a_ptr} + qa_off[t], {K}, {a_zp}, "
                  f"(const uint8_t*){allb} + qb_off[t], {bias}, &qo);",
                  "}"]
        return
    k = _kernel(ctx, a_dtype)
    pb = scratch("pb", "uint8_t")
    if zb is None and b_zp_v is not None:  # a runtime per-tensor zero point
        zb_decl, zb_ptr, per = f"const int32_t qzb = {_zp_expr(ctx, b_zp_v)};", "&qzb", 0
    elif zb is None:
        zb_decl, zb_ptr, per = "", "NULL", 0
    elif zb_per_col:
        zb_decl, zb_ptr, per = "", ctx.const_array(np.asarray(zb, np.int32)), 1
    else:
        zb_decl, zb_ptr, per = f"const int32_t qzb = {int(zb)};", "&qzb", 0
    if zb_decl:
        lines.append(zb_decl)
    b_ptr = ctx.ptr(b)
    ldb = K if trans_b else N
    if g.fold:
        lines += [f"onnxc_qgemm_pack_b(&{k.name}_info, {K}, {N}, {b_ptr}, {ldb}, {int(trans_b)}, {signed_b}, "
                  f"{zb_ptr}, {per}, {pb});",
                  f"qo.C = (void*)({y_expr});",
                  f"(void)onnxc_qgemm(&{k.name}_info, {g.rows}, {N}, {K}, {a_ptr}, {K}, {a_zp}, {pb}, {bias}, &qo);"]
        return
    lines += [f"const int64_t qa_off[{g.nbatch}] = {{{', '.join(map(str, g.a_off))}}};",
              f"const int64_t qb_off[{g.nbatch}] = {{{', '.join(map(str, g.b_off))}}};",
              f"for (int64_t t = 0; t < {g.nbatch}; ++t) {{",
              f"  onnxc_qgemm_pack_b(&{k.name}_info, {K}, {N}, {b_ptr} + qb_off[t], {ldb}, 0, {signed_b}, "
              f"{zb_ptr}, {per}, {pb});",
              f"  qo.C = (void*)({y_expr} + t * {g.M * N});",
              f"  (void)onnxc_qgemm(&{k.name}_info, {g.M}, {N}, {K}, {a_ptr} + qa_off[t], {K}, {a_zp}, {pb}, "
              f"{bias}, &qo);",
              "}"]


def _scratch_fn(ctx, node):
    off, _ = _scratch_layout(_gemm_parts(node))

    def get(name, ctype):
        return f"(({ctype}*)((uint8_t*){ctx.scratch(node, 'uint8_t')} + {off[name]}))"
    return get


def _qrange(dtype) -> Tuple[int, int]:
    i = np.iinfo(dtype)
    return i.min, i.max


@c_kernel("MatMulInteger", check=_gemm_check, scratch=_gemm_scratch)
@c_kernel("QLinearMatMul", check=_gemm_check, scratch=_gemm_scratch)
@c_kernel("MatMulIntegerToFloat", domain=Q.MS, check=_gemm_check, scratch=_gemm_scratch)
@c_kernel("DynamicQuantizeMatMul", domain=Q.MS, check=_gemm_check, scratch=_gemm_scratch)
def qmatmul(node, ctx):
    op = node.op_type
    a, b = _ab(node)
    y = node.outputs[0]
    g = MatMulGeometry(a, b, y)
    if g.empty:
        return "/* empty output */"
    ctx.include(QGEMM_H)
    sc = _scratch_fn(ctx, node)
    lines = [f"{ctx.ctype(y)}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    a_ptr, a_dtype = ctx.ptr(a), a.dtype
    if op == "MatMulInteger":
        a_zp, b_zp = _zp_expr(ctx, node.input(2)), node.input(3)
        decl = _output_struct("S32", "Y", g.N)
    elif op == "QLinearMatMul":
        a_zp, b_zp = _zp_expr(ctx, node.inputs[2]), node.inputs[5]
        scale = _scale_array(ctx, lines, [node.inputs[1], node.inputs[4]], divisor=node.inputs[6])
        decl = _output_struct(_kind_of(y.dtype), "Y", g.N, scale, _zp_expr(ctx, node.inputs[7]), _qrange(y.dtype))
    elif op == "MatMulIntegerToFloat":
        a_zp, b_zp = _zp_expr(ctx, node.input(4)), node.input(5)
        scale = _scale_array(ctx, lines, [node.inputs[2], node.inputs[3]])
        bias = node.input(6)
        decl = _output_struct("F32", "Y", g.N, scale, bias="NULL" if bias is None else ctx.ptr(bias))
    else:  # DynamicQuantizeMatMul: A quantized per tensor (uint8) at run time, as onnxruntime
        aq = sc("aq", "uint8_t")
        lines += _dynamic_quantize_lines(ctx.ptr(a), a.size, aq, "qa_scale", "qa_zp")
        a_ptr, a_dtype, a_zp, b_zp = aq, np.dtype(np.uint8), "qa_zp", node.input(3)
        lines.append("const float qa_scale_arr[1] = {qa_scale};")
        bs = node.inputs[2]
        if bs.is_const:
            s = np.asarray(bs.const, F32).reshape(-1)
            lines.append(f"float qscale[{s.size}];")
            lines.append(f"for (int64_t j = 0; j < {s.size}; ++j) qscale[j] = qa_scale * {ctx.const_array(s)}[j];")
            scale = ("qscale", int(s.size > 1))
        else:
            lines.append(f"const float qscale[1] = {{qa_scale * {_f32_expr(ctx, bs)}}};")
            scale = ("qscale", 0)
        bias = node.input(4)
        decl = _output_struct("F32", "Y", g.N, scale, bias="NULL" if bias is None else ctx.ptr(bias))
    _emit_product(node, ctx, lines, a_ptr, a_dtype, a_zp, b, b_zp, g, decl, "Y", scratch=sc)
    return "\n".join(lines)


def _dynamic_quantize_lines(x_ptr: str, n: int, q_ptr: str, scale: str, zp: str) -> List[str]:
    """DynamicQuantizeLinear's parameters and data (uint8), onnxruntime's numerics
    (ops/quant.py dynamic_qparams, quantize_mlas)."""
    return [
        f"const float* ONNXC_RESTRICT qx = {x_ptr};",
        f"uint8_t* ONNXC_RESTRICT qq = {q_ptr};",
        "float qmx = 0.0f, qmn = 0.0f;",
        f"for (int64_t e = 0; e < {n}; ++e) {{",
        "  const float v = qx[e]; qmx = v > qmx ? v : qmx; qmn = v < qmn ? v : qmn;",
        "}",
        f"const float {scale} = qmx == qmn ? 1.0f : (qmx - qmn) / 255.0f;",
        f"const float qizp = 0.0f - qmn / {scale};",
        f"const int32_t {zp} = (int32_t)nearbyintf(qizp > 0.0f ? (qizp < 255.0f ? qizp : 255.0f) : 0.0f);",
        f"const float qlo = (float)(0 - {zp}), qhi = (float)(255 - {zp});",
        f"for (int64_t e = 0; e < {n}; ++e) {{",
        f"  float v = qx[e] / {scale};",
        "  v = v > qlo ? v : qlo; v = v < qhi ? v : qhi;",
        f"  qq[e] = (uint8_t)((int32_t)((v + {SHIFTER}) - {SHIFTER}) + {zp});",
        "}"]


@c_kernel("QGemm", domain=Q.MS, check=_gemm_check, scratch=_gemm_scratch)
def qgemm(node, ctx):
    a, b, y = node.inputs[0], node.inputs[3], node.outputs[0]
    M, N, K, _ = Q.gemm_mnk(node)
    if y.size == 0:
        return "/* empty output */"
    ctx.include(QGEMM_H)
    sc = _scratch_fn(ctx, node)
    lines = [f"{ctx.ctype(y)}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    a_ptr = ctx.ptr(a)
    if Q.attr(node, "transA"):  # A is [K, M]: the driver reads rows of A
        at = sc("at", ctx.ctype(a))
        lines += [f"{ctx.ctype(a)}* ONNXC_RESTRICT QA = {at};",
                  f"for (int64_t i = 0; i < {M}; ++i) for (int64_t k = 0; k < {K}; ++k) "
                  f"QA[i * {K} + k] = {a_ptr}[k * {M} + i];"]
        a_ptr = "QA"
    ys, yz = node.input(7), node.input(8)
    kind = "F32" if yz is None else _kind_of(y.dtype)
    alpha = float(Q.attr(node, "alpha"))
    scale = _scale_array(ctx, lines, [node.inputs[1], node.inputs[4]], divisor=ys, alpha=alpha)
    zp = "0" if yz is None else _zp_expr(ctx, yz)
    qr = (0, 0) if yz is None else _qrange(y.dtype)
    c = node.input(6)
    bias, post = "NULL", None
    if c is not None:
        if _row_bias(c, N):
            bias = ctx.ptr(c)
        elif c.size == 1 and c.is_const:
            bias = ctx.const_array(np.full(N, int(c.const.reshape(-1)[0]), np.int32))
        elif c.size == 1:
            lines.append(f"int32_t* ONNXC_RESTRICT QB = {sc('bias', 'int32_t')};")
            lines.append(f"for (int64_t j = 0; j < {N}; ++j) QB[j] = {ctx.ptr(c)}[0];")
            bias = "QB"
        else:  # C per row or per element: int32 product, C added, then the output stage here
            post = c
    g = _GemmAsMatMul(M, K, N)
    if post is None:
        decl = _output_struct(kind, "Y", N, scale, zp, qr)  # C goes in as the int32 bias of the product
        _emit_product(node, ctx, lines, a_ptr, a.dtype, _zp_expr(ctx, node.inputs[2]), b, node.inputs[5], g,
                      decl, "Y", bias=bias, scratch=sc, trans_b=bool(Q.attr(node, "transB")))
        return "\n".join(lines)
    acc = sc("acc", "int32_t")
    decl = _output_struct("S32", acc, N)
    _emit_product(node, ctx, lines, a_ptr, a.dtype, _zp_expr(ctx, node.inputs[2]), b, node.inputs[5], g,
                  decl, acc, scratch=sc, trans_b=bool(Q.attr(node, "transB")))
    rs, cs = broadcast_strides(post.shape, [M, N])
    sidx = "j" if scale[1] else "0"
    lines += [f"const int32_t* ONNXC_RESTRICT QC = {ctx.ptr(post)};",
              f"const int32_t* ONNXC_RESTRICT QACC = {acc};",
              f"for (int64_t i = 0; i < {M}; ++i) for (int64_t j = 0; j < {N}; ++j) {{",
              f"  const int32_t v = (int32_t)((uint32_t)QACC[i * {N} + j] + (uint32_t)QC[i * {rs} + j * {cs}]);",
              f"  float f = (float)v * {scale[0]}[{sidx}];"]
    if kind == "F32":
        lines.append(f"  Y[i * {N} + j] = f;")
    else:
        lo, hi = qr[0], qr[1]
        lines += [f"  const float lo = (float)({lo} - {zp}), hi = (float)({hi} - {zp});",
                  "  f = f > lo ? f : lo; f = f < hi ? f : hi;",
                  f"  Y[i * {N} + j] = ({ctx.ctype(y)})((int32_t)rintf(f) + {zp});"]
    lines.append("}")
    return "\n".join(lines)


class _GemmAsMatMul:
    """The 2-D geometry of QGemm in MatMulGeometry's terms (no batch)."""

    def __init__(self, M, K, N):
        self.M, self.K, self.N, self.rows, self.fold, self.nbatch = M, K, N, M, True, 1


# --- QLinearAdd / QLinearMul --------------------------------------------------------------------
def _cvt(t: str, dtype) -> str:
    """C expression: float ``t`` rounded half to even and saturated to ``dtype``; NaN and
    t >= 2^31 give the minimum (ops/quant.py cvt_sat)."""
    lo, hi = _qrange(dtype)
    c = f"({t} > {lo}.0f ? ({t} < {hi}.0f ? {t} : {hi}.0f) : {lo}.0f)"
    return f"({t} < 2147483648.0f ? (int32_t)(({c} + {SHIFTER}) - {SHIFTER}) : {lo})"


def _binary_check(node):
    return _run_checks(node, _scale_check(1, 4, 6), lambda n: _a_params_check(n, 2, 5, 7))


@c_kernel("QLinearAdd", "QLinearMul", domain=Q.MS, check=_binary_check)
def qlinear_binary(node, ctx):
    a, b, y = node.inputs[0], node.inputs[3], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    ct = ctx.ctype(y)
    sa, sb, scv = node.inputs[1], node.inputs[4], node.inputs[6]
    za, zb, zc = node.input(2), node.input(5), node.input(7)
    prm = []
    if node.op_type == "QLinearAdd":
        swap = Q.add_swapped(a.shape, b.shape)
        (xa, xsa, xza), (xb, xsb, xzb) = ((b, sb, zb), (a, sa, za)) if swap else ((a, sa, za), (b, sb, zb))
        if all(v is None or v.is_const for v in (sa, sb, scv, za, zb, zc)):
            ra, rb, fx = Q.qladd_params(Q._scalar(xsa.const), Q._zp_int(_const_or_none(xza)),
                                        Q._scalar(xsb.const), Q._zp_int(_const_or_none(xzb)),
                                        Q._scalar(scv.const), Q._zp_int(_const_or_none(zc)))
            ra, rb, fx = (ctx.lit(v, F32) for v in (ra, rb, fx))
        else:
            prm = [f"const float qra = {_f32_expr(ctx, xsa)} / {_f32_expr(ctx, scv)};",
                   f"const float qrb = {_f32_expr(ctx, xsb)} / {_f32_expr(ctx, scv)};",
                   f"float qprm[3];",
                   f"qprm[0] = qra; qprm[1] = qrb;",
                   f"qprm[2] = (float){_zp_expr(ctx, zc)} - fmaf(qra, (float){_zp_expr(ctx, xza)}, "
                   f"qrb * (float){_zp_expr(ctx, xzb)});"]
            ra, rb, fx = "P[0]", "P[1]", "P[2]"
        first, second = ("x1", "x0") if swap else ("x0", "x1")
        if tuple(a.shape) == tuple(b.shape) and y.dtype in (np.uint8, np.int8):
            # element for element (the residual Add): the runtime's vectorized loop, same formula
            ctx.include(QUANT_H)
            ra_c, rb_c, fx_c = (e.replace("P[", "qprm[") for e in (ra, rb, fx))
            return "\n".join(prm + [f"onnxc_qlinear_add_8({ctx.ptr(xa)}, {ctx.ptr(xb)}, {ctx.ptr(y)}, {y.size}, "
                                     f"{ra_c}, {rb_c}, {fx_c}, {int(y.dtype == np.int8)});"])

        def body(el, oi):
            e = {"x0": el[0], "x1": el[1]}
            t = f"fmaf((float){e[first]}, {ra}, fmaf((float){e[second]}, {rb}, {fx}))"
            return f"const float t = {t}; y[{oi}] = ({ct}){_cvt('t', y.dtype)};"
    else:
        if all(v is None or v.is_const for v in (sa, sb, scv, za, zb, zc)):
            prod = F32(F32(Q._scalar(sa.const)) * F32(Q._scalar(sb.const)))
            ratio = ctx.lit(F32(prod / F32(Q._scalar(scv.const))), F32)
            zcf = ctx.lit(F32(Q._zp_int(_const_or_none(zc))), F32)
            za_e, zb_e = _zp_expr(ctx, za), _zp_expr(ctx, zb)
        else:  # run-time parameters reach the (possibly split) loop through P; 8-bit zero points are exact as floats
            prm = [f"float qprm[4];",
                   f"qprm[0] = ({_f32_expr(ctx, sa)} * {_f32_expr(ctx, sb)}) / {_f32_expr(ctx, scv)};",
                   f"qprm[1] = (float){_zp_expr(ctx, zc)};",
                   f"qprm[2] = (float){_zp_expr(ctx, za)}; qprm[3] = (float){_zp_expr(ctx, zb)};"]
            ratio, zcf, za_e, zb_e = "P[0]", "P[1]", "(int32_t)P[2]", "(int32_t)P[3]"
        if tuple(a.shape) == tuple(b.shape) and y.dtype in (np.uint8, np.int8):
            # element for element (EfficientNet's SiLU): the runtime's vectorized loop, same formula
            ctx.include(QUANT_H)
            args = [e.replace("P[", "qprm[") for e in (ratio, zcf, za_e, zb_e)]
            return "\n".join(prm + [f"onnxc_qlinear_mul_8({ctx.ptr(a)}, {ctx.ptr(b)}, {ctx.ptr(y)}, {y.size}, "
                                     f"{', '.join(args)}, {int(y.dtype == np.int8)});"])

        def body(el, oi):
            p = f"((int32_t){el[0]} - {za_e}) * ((int32_t){el[1]} - {zb_e})"
            return f"const float t = (float)({p}) * {ratio} + {zcf}; y[{oi}] = ({ct}){_cvt('t', y.dtype)};"
    ptrs = [(f"const {ct}*", "x0", ctx.ptr(a)), (f"const {ct}*", "x1", ctx.ptr(b)), (f"{ct}*", "y", ctx.ptr(y))]
    if prm:
        ptrs.append(("const float*", "P", "qprm"))
    loop = pooled_loop(ctx, node, ptrs, y.shape, [("x0", a.shape), ("x1", b.shape)], body, block=True)
    return "\n".join(prm + [loop])


# --- lookup-table ops ---------------------------------------------------------------------------
def _consts_check(*idx):
    def check(node):
        for i in idx:
            v = node.input(i)
            if v is not None and not v.is_const:
                return f"input {i} '{v.name}' is not a constant (the lookup table is built at compile time)"
        return None
    return check


def _lut_check(node):
    return _run_checks(node, _scale_check(1, 3), _consts_check(1, 2, 3, 4))


def _table_loop(ctx, node, x, y, table: np.ndarray) -> str:
    ct = ctx.ctype(y)
    tp = ctx.const_array(np.ascontiguousarray(table).view(np.uint8))
    ptrs = [(f"const uint8_t*", "x", f"(const uint8_t*)({ctx.ptr(x)})"), ("const uint8_t*", "T", tp),
            (f"uint8_t*", "y", f"(uint8_t*)({ctx.ptr(y)})")]
    return pooled_loop(ctx, node, ptrs, y.shape, [("x", x.shape)], lambda el, oi: f"y[{oi}] = T[{el[0]}];")


@c_kernel("QLinearSigmoid", "QLinearLeakyRelu", domain=Q.MS, check=_lut_check)
def qlinear_lut(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    args = [_const_or_none(node.input(i)) for i in (1, 2, 3, 4)]
    if node.op_type == "QLinearSigmoid":
        table = Q.sigmoid_table(*args, x.dtype)
    else:
        table = Q.leaky_relu_table(node, *args, x.dtype)
    return _table_loop(ctx, node, x, y, table)


# --- QLinearConcat ------------------------------------------------------------------------------
def _concat_check(node):
    def consts(n):
        for xi, si, zi in Q.concat_inputs(n):
            for i in (si, zi):
                if not n.inputs[i].is_const:
                    return f"input {i} '{n.inputs[i].name}' is not a constant (tables are built at compile time)"
        for i in (0, 1):
            if not n.inputs[i].is_const:
                return f"input {i} '{n.inputs[i].name}' is not a constant (tables are built at compile time)"
        return None
    return _run_checks(node, _scale_check(0, *[si for _, si, _ in Q.concat_inputs(node)]), consts)


@c_kernel("QLinearConcat", domain=Q.MS, check=_concat_check)
def qlinear_concat(node, ctx):
    y = node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    axis = int(node.attrs["axis"]) % len(y.shape)
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
    out_pitch = y.shape[axis] * inner
    lines = [f"uint8_t* ONNXC_RESTRICT Y = (uint8_t*)({ctx.ptr(y)});"]
    start = 0
    ys, yz = node.inputs[0].const, node.inputs[1].const
    for xi, si, zi in Q.concat_inputs(node):
        x = node.inputs[xi]
        pitch = x.shape[axis] * inner
        if pitch and outer:
            table = Q.concat_table(node.inputs[si].const, node.inputs[zi].const, ys, yz, y.dtype)
            src = f"(const uint8_t*)({ctx.ptr(x)})"
            if table is None:
                lines.append(f"for (int64_t o = 0; o < {outer}; ++o) memcpy(Y + o * {out_pitch} + {start}, "
                             f"{src} + o * {pitch}, {pitch});")
            else:
                tp = ctx.const_array(table.view(np.uint8))
                lines += [f"{{ const uint8_t* ONNXC_RESTRICT X = {src}; const uint8_t* ONNXC_RESTRICT T = {tp};",
                          f"  for (int64_t o = 0; o < {outer}; ++o) for (int64_t i = 0; i < {pitch}; ++i) "
                          f"Y[o * {out_pitch} + {start} + i] = T[X[o * {pitch} + i]]; }}"]
        start += pitch
    return "\n".join(lines)


# --- pools ----------------------------------------------------------------------------------------
def _pool_check(node):
    return _run_checks(node, _scale_check(1, 3), lambda n: _a_params_check(n, 2, 4))


def _requant_lines(acc: str, scale: str, zp: str, dtype, out: str) -> List[str]:
    """MLAS requantize of the int32 ``acc`` (onnxc_qgemm's U8/S8 stage) into ``out``."""
    lo, hi = _qrange(dtype)
    return [f"float f = (float)({acc}) * {scale};",
            f"f = f > (float)({lo} - {zp}) ? f : (float)({lo} - {zp});",
            f"f = f < (float)({hi} - {zp}) ? f : (float)({hi} - {zp});",
            f"{out} = ({np.dtype(dtype).name}_t)((int32_t)rintf(f) + {zp});"]


def _global_avg_lines(ctx, node, x, y, N: int, C: int, image: int, channels_last: bool) -> List[str]:
    ct = ctx.ctype(x)
    xs, xz, ys, yz = (node.input(i) for i in (1, 2, 3, 4))
    if all(v is None or v.is_const for v in (xs, ys)):
        scale = ctx.lit(Q.gap_scale(xs.const, ys.const, image), F32)
    else:
        scale = f"({_f32_expr(ctx, xs)} / ({_f32_expr(ctx, ys)} * {ctx.lit(F32(image), F32)}))"
    xz_e, yz_e = _zp_expr(ctx, xz), _zp_expr(ctx, yz)
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
             f"const float qscale = {scale};",
             f"const uint32_t qbias = (uint32_t)(0 - {xz_e} * {image});"]
    if channels_last:
        lines += [f"for (int64_t n = 0; n < {N}; ++n) for (int64_t c = 0; c < {C}; ++c) {{",
                  "  uint32_t s = qbias;",
                  f"  for (int64_t p = 0; p < {image}; ++p) s += (uint32_t)(int32_t)X[(n * {image} + p) * {C} + c];"]
    else:
        lines += [f"for (int64_t n = 0; n < {N}; ++n) for (int64_t c = 0; c < {C}; ++c) {{",
                  "  uint32_t s = qbias;",
                  f"  const {ct}* ONNXC_RESTRICT r = X + (n * {C} + c) * {image};",
                  f"  for (int64_t p = 0; p < {image}; ++p) s += (uint32_t)(int32_t)r[p];"]
    lines += ["  " + ln for ln in _requant_lines("(int32_t)s", "qscale", yz_e, y.dtype, f"Y[n * {C} + c]")]
    lines.append("}")
    return lines


@c_kernel("QLinearGlobalAveragePool", domain=Q.MS, check=_pool_check)
def qlinear_global_avgpool(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    cl = bool(Q.attr(node, "channels_last"))
    shape = Q.nchw_shape(node, x.shape)
    image = int(np.prod(shape[2:], dtype=np.int64))
    return "\n".join(_global_avg_lines(ctx, node, x, y, shape[0], shape[1], image, cl))


@c_kernel("QLinearAveragePool", domain=Q.MS, check=_pool_check)
def qlinear_avgpool(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    cl = bool(Q.attr(node, "channels_last"))
    shape = Q.nchw_shape(node, x.shape)
    N, C, sp = shape[0], shape[1], list(shape[2:])
    if Q.avgpool_is_global(node, shape):
        return "\n".join(_global_avg_lines(ctx, node, x, y, N, C, int(np.prod(sp, dtype=np.int64)), cl))
    k, strides, pads, out_sp = Q.avgpool_geometry(node, shape)
    nd = len(k)
    ct = ctx.ctype(x)
    xs, xz, ys, yz = (node.input(i) for i in (1, 2, 3, 4))
    # element strides of the NCHW view (channels_last: C innermost)
    if cl:
        in_st = contiguous_strides([N] + sp + [C])
        x_n, x_c, x_sp = in_st[0], 1, in_st[1:1 + nd]
        out_st = contiguous_strides([N] + list(out_sp) + [C])
        y_n, y_c, y_sp = out_st[0], 1, out_st[1:1 + nd]
    else:
        in_st = contiguous_strides([N, C] + sp)
        x_n, x_c, x_sp = in_st[0], in_st[1], in_st[2:]
        out_st = contiguous_strides([N, C] + list(out_sp))
        y_n, y_c, y_sp = out_st[0], out_st[1], out_st[2:]
    full = int(np.prod(k))
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
             f"const float qxs = {_f32_expr(ctx, xs)}, qys = {_f32_expr(ctx, ys)};",
             f"const int32_t qxz = {_zp_expr(ctx, xz)};",
             f"const float qyz = (float){_zp_expr(ctx, yz)};",
             f"for (int64_t n = 0; n < {N}; ++n) for (int64_t c = 0; c < {C}; ++c) {{",
             f"  const {ct}* ONNXC_RESTRICT xb = X + n * {x_n} + c * {x_c};",
             f"  {ct}* ONNXC_RESTRICT yb = Y + n * {y_n} + c * {y_c};"]
    ind = "  "
    for d in range(nd):
        lines += [f"{ind}for (int64_t o{d} = 0; o{d} < {out_sp[d]}; ++o{d}) {{",
                  f"{ind}  int64_t s{d} = o{d} * {strides[d]} - {pads[d]};",
                  f"{ind}  const int64_t e{d} = s{d} + {k[d]} < {sp[d]} ? s{d} + {k[d]} : {sp[d]};",
                  f"{ind}  s{d} = s{d} > 0 ? s{d} : 0;"]
        ind += "  "
    lines.append(f"{ind}float acc = 0.0f;")
    inner = ind
    for d in range(nd):
        lines.append(f"{inner}for (int64_t i{d} = s{d}; i{d} < e{d}; ++i{d})")
        inner += "  "
    off = " + ".join(f"i{d} * {x_sp[d]}" for d in range(nd))
    lines.append(f"{inner}acc += qxs * (float)((int32_t)xb[{off}] - qxz);")
    cnt = f"{full}" if Q.attr(node, "count_include_pad") else " * ".join(f"(e{d} - s{d})" for d in range(nd))
    yoff = " + ".join(f"o{d} * {y_sp[d]}" for d in range(nd))
    lines += [f"{ind}const float v = acc / (float)({cnt});",
              f"{ind}const float t = v / qys + qyz;",
              f"{ind}yb[{yoff}] = ({ct}){_cvt('t', y.dtype)};"]
    for d in range(nd):
        ind = ind[:-2]
        lines.append(f"{ind}}}")
    lines.append("}")
    return "\n".join(lines)


# --- QLinearSoftmax -------------------------------------------------------------------------------
def _softmax_check(node):
    return _run_checks(node, _scale_check(1, 3), _consts_check(1, 3, 4))


@c_kernel("QLinearSoftmax", domain=Q.MS, check=_softmax_check)
def qlinear_softmax(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    ct = ctx.ctype(x)
    rank = len(x.shape)
    rows, D, moved = Q.softmax_rows(node, x.shape)
    axis = Q.softmax_axis(node, rank)
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64)) if moved else 1
    table = ctx.const_array(Q.softmax_exp_table(Q._scalar(node.inputs[1].const), D))
    ysc = ctx.lit(Q.softmax_y_scale(node.inputs[3].const), F32)
    yz = Q._zp_int(node.inputs[4].const)
    lo, hi = _qrange(y.dtype)
    # row r of the reduction: elements base + d * inner (d < D), base = (r / inner) * D * inner + r % inner
    return "\n".join([
        f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"const float* ONNXC_RESTRICT T = {table};",
        f"for (int64_t r = 0; r < {rows}; ++r) {{",
        f"  const int64_t base = (r / {inner}) * {D * inner} + r % {inner};",
        "  int32_t mx = X[base];",
        f"  for (int64_t d = 1; d < {D}; ++d) {{ const int32_t v = X[base + d * {inner}]; mx = v > mx ? v : mx; }}",
        "  float sum = 0.0f;",
        f"  for (int64_t d = 0; d < {D}; ++d) sum += T[(int32_t)X[base + d * {inner}] - mx + 255];",
        f"  for (int64_t d = 0; d < {D}; ++d) {{",
        f"    float v = nearbyintf((T[(int32_t)X[base + d * {inner}] - mx + 255] * {ysc}) / sum) + {yz}.0f;",
        f"    v = v > {lo}.0f ? (v < {hi}.0f ? v : {hi}.0f) : {lo}.0f;  /* inf (an overflowed product) saturates */",
        f"    Y[base + d * {inner}] = ({ct})(int32_t)v;",
        "  }",
        "}"])


# --- MatMulNBits (4-bit weights) ------------------------------------------------------------------
NBITS_SGEMM_NC = 64  # qnbits_driver.c's Q4_SGEMM_NC: columns dequantized per SGEMM call


def nbits_workspace(K: int, block: int, M: int, int8: bool) -> int:
    """An upper bound of onnxc_matmulnbits_workspace (qnbits_driver.c): the fp32 bound covers
    both of its routes, so the driver's M threshold may move without this changing."""
    kb = -(-K // block)
    kp = _round_up(kb * block, 32)
    if int8:
        return 64 + _round_up(M * kp, 64) + 2 * _round_up(M * kb * 4, 64)
    return 64 + max(_round_up(NBITS_SGEMM_NC * K * 4, 64), _round_up(M * kp * 4, 64))


def _nbits_rows(node) -> int:
    return int(np.prod(node.inputs[0].shape[:-1], dtype=np.int64))


def _nbits_check(node) -> Optional[str]:
    _validate(node)
    K, N, block, _ = Q.nbits_geometry(node)
    if int(Q.attr(node, "bits")) != 4:
        return f"bits={Q.attr(node, 'bits')} (the C kernels are 4-bit only)"
    if block > 256:
        return f"block_size {block} (the C kernels take 16..256)"
    if node.inputs[0].dtype != np.float32:
        return f"A is {node.inputs[0].dtype} (float32 only)"
    if node.input(4) is not None:
        return "g_idx (act-order) is not supported"
    return None


def _nbits_scratch(node) -> int:
    K, _, block, _ = Q.nbits_geometry(node)
    return nbits_workspace(K, block, _nbits_rows(node), Q.nbits_int8_compute(node))


@c_kernel("MatMulNBits", domain=Q.MS, check=_nbits_check, scratch=_nbits_scratch)
def matmulnbits(node, ctx):
    a, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    K, N, block, _ = Q.nbits_geometry(node)
    M = _nbits_rows(node)
    ctx.include(QUANT_H)
    z, bias = node.input(3), node.input(5)
    zu4 = f"(const uint8_t*)({ctx.ptr(z)})" if z is not None and z.dtype == np.uint8 else "NULL"
    zf = f"(const float*)({ctx.ptr(z)})" if z is not None and z.dtype != np.uint8 else "NULL"
    acc = 4 if Q.nbits_int8_compute(node) else 0
    return "\n".join([
        f"const onnxc_q4_weights qw = {{.N = {N}, .K = {K}, .block = {block}, "
        f".B = (const uint8_t*)({ctx.ptr(node.inputs[1])}), .scales = (const float*)({ctx.ptr(node.inputs[2])}), "
        f".zp_u4 = {zu4}, .zp_f32 = {zf}, "
        f".bias = {'NULL' if bias is None else f'(const float*)({ctx.ptr(bias)})'}, .accuracy = {acc}}};",
        f"onnxc_matmulnbits(&qw, {M}, {ctx.ptr(a)}, {K}, {ctx.ptr(y)}, {N}, {ctx.scratch(node, 'uint8_t')});"])
