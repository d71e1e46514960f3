"""Quantize/dequantize row kernels (runtime_c/quant/): QuantizeLinear, DequantizeLinear,
DynamicQuantizeLinear and the per-row dynamic quantization of activations for the int8 GEMM.

One row per kernel. A row kernel converts one contiguous run of elements with either one
scale/zero point or one per element (``step`` 0 or 1); the drivers in quant_ref.c (declared by
hand in onnxc_quant.h) split tensors into such runs, handle 4-bit packing and threads, and call
the best row kernel the build's ISA macros allow (``best``). 4-bit types go through the 8-bit
kernels with 4-bit clamp bounds. The declarations of these kernels in onnxc_quant.h are generated
from this list (compiler/kernels/quant_header.py).
"""
from __future__ import annotations

from . import Kernel

# dtype code -> (C type, ONNX TensorProto element type, qmin, qmax)
QTYPES = {
    "u8": ("uint8_t", 2, 0, 255),
    "s8": ("int8_t", 3, -128, 127),
    "u16": ("uint16_t", 4, 0, 65535),
    "s16": ("int16_t", 5, -32768, 32767),
}
# 4-bit types: carried by the 8-bit kernels (ONNX element type -> (8-bit carrier, qmin, qmax))
QTYPES4 = {"u4": ("u8", 21, 0, 15), "s4": ("s8", 22, -8, 7)}

ISAS = ("generic", "avx2", "avx512")
_SOURCE = {"generic": "quant/quant_ref.c", "avx2": "quant/quant_avx2.c", "avx512": "quant/quant_avx512.c"}

# kind -> C prototype with {name}, {T} (the integer C type)
SIGNATURES = {
    "quantize": "void {name}(const float* x, {T}* y, int64_t n, const float* scale, const float* zp, "
                "int64_t step, float qmin, float qmax);",
    "dequantize": "void {name}(const {T}* x, float* y, int64_t n, const float* scale, const float* zp, "
                  "int64_t step);",
    "minmax": "void {name}(const float* x, int64_t n, float* mn, float* mx);",
}


def _kernels():
    out = []
    for t in QTYPES:
        for isa in ISAS:
            out.append(Kernel(f"f32{t}", "quantize", "row", isa, _SOURCE[isa]))
            out.append(Kernel(f"{t}f32", "dequantize", "row", isa, _SOURCE[isa]))
    for isa in ISAS:
        out.append(Kernel("f32", "minmax", "row", isa, _SOURCE[isa]))
    return out


KERNELS = _kernels()


def ctype(k: Kernel) -> str:
    """The integer C type of a quantize/dequantize kernel (its dtype minus the f32 side)."""
    return QTYPES[k.dtype.replace("f32", "")][0] if k.kind != "minmax" else ""


def declaration(k: Kernel) -> str:
    return SIGNATURES[k.kind].format(name=k.name, T=ctype(k))


def best(kernels, isa: str):
    """The kernel of ``kernels`` (one dtype and kind) a build for ISA row ``isa`` calls: the last in
    onnxc.isa order whose CPU flags the row has (the C drivers choose by the same rule, with the
    compiler's ISA macros)."""
    from ..isa import BY_NAME, ISAS as ROWS
    order = [r.name for r in ROWS]
    have = set(BY_NAME[isa].cpu_flags)
    ok = [k for k in kernels if set(BY_NAME[k.isa].cpu_flags) <= have]
    if not ok:
        raise LookupError(f"no kernel among {[k.name for k in kernels]} runs on ISA {isa}")
    return max(ok, key=lambda k: order.index(k.isa))
