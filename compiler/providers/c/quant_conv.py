"""QLinearConv and ConvInteger on the int8 convolution kernels (runtime_c/qconv, onnxc_qconv.h).

The weights are constant and packed here, at compile time, for the kernel of the module's target
ISA row (compiler/kernels/qconv.py: the int8 GEMM microkernel and its packed-B layout, one blob
per group, or the depthwise layout when group == C == M); the emitted call names that kernel's
descriptor, so a build whose flags lack its ISA fails with a clear #error instead of running a
kernel on weights packed for another. The kernels read and write NHWC: the NCHW activation is
transposed into the node's scratch first and the NHWC result back (skipped where the two
layouts coincide: one channel or one pixel); com.microsoft.QLinearConv with channels_last = 1,
which the int8 layout pass makes (passes/layout/int8_nhwc.py), reads and writes NHWC directly.
QLinearConv requantizes in the kernel's output stage
with the float32 multipliers x_scale * w_scale[m] / y_scale computed here in onnxruntime's order;
ConvInteger writes the int32 accumulators. Results are bit-exact with onnxruntime
(tests/ops/test_quant_conv_ops.py). 1-D convolutions run as 2-D with H = 1; 3-D is refused.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...errors import CompileError
from ...isa import ISAS
from ...kernels import qconv as QC
from ...kernels import qgemm as Q
from ...kernels import qwino as QW
from ...ops import quant_conv as QOP
from .linalg import target_isa
from .registry import c_kernel

_ALIGN = 64
_OUT = {np.dtype(np.uint8): "ONNXC_QOUT_U8", np.dtype(np.int8): "ONNXC_QOUT_S8"}

_TRANSPOSE = """\
/* dst[c][r] = src[r][c] of a rows x cols matrix (one image: NCHW <-> NHWC), in 32 x 32 blocks. */
static void onnxc_qconv_transpose_%(n)s(const %(t)s* src, %(t)s* dst, int64_t rows, int64_t cols) {
    for (int64_t r0 = 0; r0 < rows; r0 += 32) {
        const int64_t r1 = r0 + 32 < rows ? r0 + 32 : rows;
        for (int64_t c0 = 0; c0 < cols; c0 += 32) {
            const int64_t c1 = c0 + 32 < cols ? c0 + 32 : cols;
            for (int64_t r = r0; r < r1; ++r)
                for (int64_t c = c0; c < c1; ++c) dst[c * rows + r] = src[r * cols + c];
        }
    }
}"""


def _const(node, i) -> Optional[np.ndarray]:
    v = node.input(i)
    return None if v is None else v.const


def _parts(node):
    """(x, w, y, window, 2-D geometry list or None)."""
    pos = QOP.positions(node)
    x, w, y = node.inputs[0], node.inputs[pos["w"]], node.outputs[0]
    xs = QOP.nchw(node, x.shape)
    win = QOP.window(node, xs, w.shape)
    return x, w, y, win, QOP.spatial_2d(win, xs, w.shape)


def _geom(node, algo=QC.AUTO) -> QC.Geom:
    x, w, y, win, s = _parts(node)
    H, W, KH, KW, sh, sw, dh, dw, pt, pl, pb, pr, OH, OW = s
    xs = QOP.nchw(node, x.shape)
    return QC.Geom(int(xs[0]), H, W, int(xs[1]), int(w.shape[0]), KH, KW, (sh, sw), (dh, dw),
                   (pt, pl, pb, pr), win.group, algo=algo)


def _check(node) -> Optional[str]:
    pos = QOP.positions(node)
    x, w, y = node.inputs[0], node.inputs[pos["w"]], node.outputs[0]
    if x.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)) or w.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        return f"x {x.dtype} / w {w.dtype}: the int8 kernels take uint8 or int8"
    if len(x.shape) not in (3, 4):
        return f"{len(x.shape) - 2}-D convolution (the int8 kernels are 1-D and 2-D)"
    if QOP.channels_last(node) and len(x.shape) != 4:
        return f"channels_last with a rank-{len(x.shape)} input (the NHWC form is 2-D only)"
    win = QOP.window(node, QOP.nchw(node, x.shape), w.shape)
    if min(win.out) < 1:
        return "empty output"
    if node.op_type == "QLinearConv":
        m = _multipliers(node) if _scales_const(node) else np.ones(1, np.float32)
        if not np.all(np.isfinite(m)):
            return f"the requantize multiplier x_scale * w_scale / y_scale is not finite ({m[~np.isfinite(m)][0]})"
        if y.dtype != x.dtype:
            return f"y {y.dtype} differs from x {x.dtype}"
    return None


def _runtime_weights(node) -> bool:
    """Weights or their zero point are run-time values: packed by the C packer into scratch on
    every run (the ONNX node tests feed them as inputs), with the row's exact kernel (the AVX2
    pair-safe choice needs the values)."""
    pos = QOP.positions(node)
    return any(node.input(pos[n]) is not None and node.input(pos[n]).const is None for n in ("w", "w_zero_point"))


def _scales_const(node) -> bool:
    P = QOP.QLINEAR
    return all(node.input(P[n]).const is not None for n in ("x_scale", "w_scale", "y_scale"))


def _scalar(ctx, node, name, default=0) -> str:
    """C expression of a per-tensor parameter: its literal, or its first element read at run time."""
    v = node.input(QOP.positions(node)[name])
    if v is None:
        return str(default)
    if v.const is not None:
        return ctx.lit(v.const.reshape(-1)[0], v.dtype)
    return f"{ctx.ptr(v)}[0]"


def _multipliers(node) -> np.ndarray:
    P = QOP.QLINEAR
    return QOP.multiplier(_const(node, P["x_scale"]), _const(node, P["w_scale"]), _const(node, P["y_scale"]))


def _zero(node, name, default=0):
    v = _const(node, QOP.positions(node)[name]) if node.input(QOP.positions(node)[name]) is not None else None
    return default if v is None else v


def _layout_copies(node):
    """(input needs a transpose, output needs one)."""
    if QOP.channels_last(node):
        return False, False
    x, w, y = node.inputs[0], node.inputs[QOP.positions(node)["w"]], node.outputs[0]
    hw_in = int(np.prod(x.shape[2:]))
    hw_out = int(np.prod(y.shape[2:]))
    return x.shape[1] > 1 and hw_in > 1, y.shape[1] > 1 and hw_out > 1


def _round(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _gemm_kernels(node, x_dtype):
    """The GEMM kernel of every ISA row for this node (scratch is planned before the target's
    kernel is chosen, so it reserves the most any of them needs)."""
    return [QC.conv_kernel_for(i.name, x_dtype) for i in ISAS]


def _scratch_layout(node):
    """Byte offsets in the node's scratch: x NHWC, y NHWC, kernel workspace, run-time packed
    weights, packer scratch, run-time multipliers; and the total."""
    x, w, y = node.inputs[0], node.inputs[QOP.positions(node)["w"]], node.outputs[0]
    tin, tout = _layout_copies(node)
    xb = _round(x.dtype.itemsize * int(np.prod(x.shape))) if tin else 0
    yb = _round(y.dtype.itemsize * int(np.prod(y.shape))) if tout else 0
    g = _geom(node)
    dw = QC.is_depthwise(g.group, g.C, g.M)
    ws = pk = pks = 0
    if not dw:
        ws = max(QC.workspace_bytes(k, g) for k in _gemm_kernels(node, x.dtype))
        if not _runtime_weights(node) and _wino_ok(node, g):
            ws = max(ws, QW.workspace_bytes(g))
    if _runtime_weights(node):
        shape4 = (g.M, g.Cg, g.KH, g.KW)
        zeros = np.zeros(shape4, w.dtype)
        if dw:
            pk = len(QC.pack_dw(zeros))
        else:  # the exact kernels' blob size does not depend on the values
            pk = max(len(QC.pack_w(zeros, k, None, g.group)) for k in _gemm_kernels(node, x.dtype))
            pks = g.KH * g.KW * g.Cg * g.Mg
    sc = 4 * g.M if node.op_type == "QLinearConv" and not _scales_const(node) else 0
    offs, total = [], 0
    for b in (xb, yb, ws, pk, pks, sc):
        offs.append(total)
        total += _round(b)
    return (*offs, total)


def _const_weights(node):
    """(weights [M, Cg, KH, KW], zero point None / scalar / per channel) of constant weights."""
    w = node.inputs[QOP.positions(node)["w"]]
    wz = np.asarray(_zero(node, "w_zero_point"), np.int64).reshape(-1)
    wconst = w.const.reshape(w.shape[0], w.shape[1], 1, w.shape[2]) if len(w.shape) == 3 else w.const
    zp_arg = None if not wz.any() else (wz if wz.size > 1 and not np.all(wz == wz[0]) else int(wz[0]))
    return wconst, zp_arg


def _wino_ok(node, g) -> bool:
    """The convolution qualifies for the Winograd path on some row (its scratch is reserved)."""
    return QW.applies_any_row(g, *_const_weights(node)) is None


def _scratch(node) -> int:
    return _scratch_layout(node)[-1]


@c_kernel("QLinearConv", domain=QOP.MS, check=_check, scratch=_scratch)
@c_kernel("QLinearConv", "ConvInteger", check=_check, scratch=_scratch)
def quant_conv(node, ctx) -> str:
    pos = QOP.positions(node)
    x, w, y = node.inputs[0], node.inputs[pos["w"]], node.outputs[0]
    isa = target_isa(ctx)
    g = _geom(node)
    qlinear = node.op_type == "QLinearConv"
    dw = QC.is_depthwise(g.group, g.C, g.M)
    runtime_w = _runtime_weights(node)
    wino = False
    o_x, o_y, o_ws, o_pk, o_pks, o_sc, total = _scratch_layout(node)
    sbase = ctx.scratch(node, "uint8_t") if total else "NULL"
    ctx.include("onnxc_qconv.h")
    lines = []
    if runtime_w:
        kernel = QC.dw_kernel_for(isa, x.dtype) if dw else QC.conv_kernel_for(isa, x.dtype)
        wzv = node.input(pos["w_zero_point"])
        wz_ptr = "NULL" if wzv is None else "(const int32_t*)wz32"
        if wzv is not None:  # the packers take int32 zero points
            nz = int(np.prod(wzv.shape))
            lines += [f"int32_t wz32[{nz}];",
                      f"for (int64_t i = 0; i < {nz}; ++i) wz32[i] = (int32_t){ctx.ptr(wzv)}[i];"]
        per_ch = int(wzv is not None and int(np.prod(wzv.shape)) > 1)
        wptr = f"(const void*)({sbase} + {o_pk})"
        signed = int(w.dtype == np.int8)
        if dw:
            lines.append(f"onnxc_qconv_pack_dw({g.C}, {g.KH}, {g.KW}, {ctx.ptr(w)}, {signed}, {wz_ptr}, {per_ch}, "
                         f"(void*)({sbase} + {o_pk}));")
        else:
            lines.append(f"onnxc_qconv_pack_w(&{kernel.name}_info, {g.M}, {g.Cg}, {g.KH}, {g.KW}, {g.group}, "
                         f"{ctx.ptr(w)}, {signed}, {wz_ptr}, {per_ch}, (void*)({sbase} + {o_pks}), "
                         f"(void*)({sbase} + {o_pk}));")
    else:
        wconst, zp_arg = _const_weights(node)
        if dw:
            kernel = QC.dw_kernel_for(isa, x.dtype)
            packed = QC.pack_dw(wconst, zp_arg)
        elif QW.applies(isa, g, wconst, zp_arg) is None:
            wino = True
            kernel = QW.kernel_for(isa)
            packed = QW.pack(wconst, zp_arg)
        else:
            kernel = QC.conv_kernel_for(isa, x.dtype, wconst, g.group)
            packed = QC.pack_w(wconst, kernel, zp_arg, g.group)
        wptr = ctx.const_array(packed)
    algo = "depthwise" if dw else "winograd F(2x2, 3x3)" if wino else QC.ALGO_NAMES[QC.choose_algo(kernel, g)]
    lines = [f"/* {kernel.name}, {algo}"
             f"{', weights packed at run time' if runtime_w else ''} */",
             f"#if !ONNXC_HAS_{kernel.isa.upper()}",
             f'#error "this node calls {kernel.name} (weights packed for it); this build does not enable '
             f'{kernel.isa} (compile flags and target disagree)"',
             "#endif"] + lines
    tin, tout = _layout_copies(node)
    N, C, M = g.N, g.C, g.M
    hw_in, hw_out = g.H * g.W, g.OH * g.OW
    ct_x = "uint8_t" if x.dtype == np.uint8 else "int8_t"
    ct_y = {np.dtype(np.uint8): "uint8_t", np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}[y.dtype]
    xin = f"{ctx.ptr(x)}"
    if tin:
        n = "u8" if x.dtype == np.uint8 else "s8"
        ctx.add_helper(_TRANSPOSE % {"n": n, "t": ct_x})
        lines += [f"{ct_x}* xt = ({ct_x}*)({sbase} + {o_x});",
                  f"for (int64_t n = 0; n < {N}; ++n)",
                  f"    onnxc_qconv_transpose_{n}({xin} + n * {C * hw_in}LL, xt + n * {C * hw_in}LL, {C}, {hw_in});"]
        xin = "xt"
    yout = f"({ct_y}*)(yt)" if tout else ctx.ptr(y)
    if tout:
        lines.append(f"{ct_y}* yt = ({ct_y}*)({sbase} + {o_y});")
    gvals = ", ".join(str(v) for v in g.values())
    lines.append(f"static const onnxc_qconv_geom geom = {{{gvals}}};")
    bias = node.input(QOP.QLINEAR["B"]) if qlinear else None
    bias_ptr = f"(const int32_t*){ctx.ptr(bias)}" if bias is not None else "NULL"
    lines.append("onnxc_qgemm_output o;")
    lines.append("memset(&o, 0, sizeof o);")
    lines.append(f"o.C = (void*){yout}; o.ldc = {M};")
    xz = f"(int32_t){_scalar(ctx, node, 'x_zero_point')}"
    if qlinear:
        P = QOP.QLINEAR
        ws_v = node.input(P["w_scale"])
        per_col = int(int(np.prod(ws_v.shape)) > 1)
        if _scales_const(node):
            m = _multipliers(node)
            sc = ctx.const_array(np.ascontiguousarray(m.reshape(-1), np.float32))
        else:  # float32, onnxruntime's order: (x_scale * w_scale[m]) / y_scale
            n_sc = int(np.prod(ws_v.shape))
            lines += [f"float* sc = (float*)({sbase} + {o_sc});",
                      f"for (int64_t m = 0; m < {n_sc}; ++m) {{",
                      f"    const float t = {_scalar(ctx, node, 'x_scale')} * {ctx.ptr(ws_v)}[m];",
                      f"    sc[m] = t / {_scalar(ctx, node, 'y_scale')};",
                      "}"]
            sc = "sc"
        info = np.iinfo(y.dtype)
        lines.append(f"o.type = {_OUT[y.dtype]}; o.scale = {sc}; o.scale_per_column = {per_col};")
        lines.append(f"o.zero_point = (int32_t){_scalar(ctx, node, 'y_zero_point')}; "
                     f"o.qmin = {info.min}; o.qmax = {info.max};")
    else:
        lines.append("o.type = ONNXC_QOUT_S32;")
    if wino:
        call = (f"onnxc_qconv_wino(&{kernel.name}_info, &geom, {xin}, {int(x.dtype == np.int8)}, {xz}, "
                f"(const int16_t*){wptr}, {bias_ptr}, &o, NULL, {sbase} + {o_ws})")
        if QW.workspace_bytes(g) > o_pk - o_ws:  # the scratch reserved it: a broken invariant
            raise CompileError(f"{node.label}: Winograd needs {QW.workspace_bytes(g)} bytes of workspace, "
                               f"{o_pk - o_ws} planned")
    elif dw:
        call = f"onnxc_qconv_dw(&{kernel.name}_info, &geom, {xin}, {xz}, {wptr}, {bias_ptr}, &o, NULL)"
    else:
        need = QC.workspace_bytes(kernel, g)
        if need > o_pk - o_ws:  # the scratch reserved the most any row needs: a broken invariant
            raise CompileError(f"{node.label}: {kernel.name} needs {need} bytes of workspace, {o_pk - o_ws} planned")
        wsp = f"{sbase} + {o_ws}" if need else "NULL"
        call = f"onnxc_qconv(&{kernel.name}_info, &geom, {xin}, {xz}, {wptr}, {bias_ptr}, &o, NULL, {wsp})"
    lines += [f"const int rc = {call};",
              "if (rc != 0) {",
              "    " + ctx.fail(node, "the int8 convolution kernel refused its arguments (code {value})", value="rc",
                                code="ONNXC_ERR_VALUE"),
              "}"]
    if tout:
        n = {np.dtype(np.uint8): "u8", np.dtype(np.int8): "s8", np.dtype(np.int32): "s32"}[y.dtype]
        ctx.add_helper(_TRANSPOSE % {"n": n, "t": ct_y})
        lines += ["else {",
                  f"    for (int64_t n = 0; n < {N}; ++n)",
                  f"        onnxc_qconv_transpose_{n}(yt + n * {M * hw_out}LL, {ctx.ptr(y)} + n * {M * hw_out}LL, "
                  f"{hw_out}, {M});",
                  "}"]
    return "\n".join(lines)
