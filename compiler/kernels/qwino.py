"""Exact integer Winograd F(2x2, 3x3) for int8 convolutions (runtime_c/qconv/qconv_wino.c, API in
runtime_c/include/onnxc_qconv.h): the product kernels (16 GEMMs of int16 transformed inputs and
weights, int32 sums), the compile-time weight transform and packing, and the rule of when a
convolution uses it.

  generic  portable C
  avx2     6 x 16 int32 in ymm, vpmaddwd + vpaddd (16 multiply-adds per vpmaddwd)

Where: ISA rows whose int8 GEMM is the exact vpmaddwd kernel (avx2, and avx512 without VNNI, which
runs the avx2 GEMM kernel), where F(2x2, 3x3)'s 2.25x fewer multiplies beat the transforms
(ResNet 3x3 layers alone, 1 thread, SPR VM: 1.9-2.3x the direct path at 56x56 to 14x14, 1.15-1.6x
at 7x7x512); with VNNI or AMX the direct kernels multiply 2-4x faster per instruction and keep
the convolution (avx2vnni: Winograd 0.52-0.79x the direct path on the same layers). Bit-exact with the direct path (the arithmetic
and its bounds: qconv_wino.c).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from . import Kernel
from . import qgemm as Q

WGEMM = (
    Kernel.parse("onnxc_s16_wgemm_6x16__generic", "qconv/qconv_wino.c"),
    Kernel.parse("onnxc_s16_wgemm_6x16__avx2", "qconv/qconv_wino.c"),
)
BY_NAME = {k.name: k for k in WGEMM}
SOURCES = ("qconv/qconv_wino.c",)
NR = 16
MAX_C = 1827  # ONNXC_QWINO_MAX_C: 4 * 9 * 255 * 128 * C < 2^31
ROWS = ("avx2", "avx512")  # ISA rows that use it (see the module docstring)
MIN_CHANNELS = 16  # below, the transforms cost more than the multiplies saved (and ResNet-class layers have >= 64)

# F(2x2, 3x3) with G scaled by 2 (integer)
G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)
# Enabled by default; tests and benchmarks switch it off to compare with the direct path.
ENABLED = True


def sources():
    return sorted({k.source for k in WGEMM})


def kernel_for(isa) -> Kernel:
    """The product kernel of ISA row ``isa``: the last row of WGEMM it runs."""
    name = isa if isinstance(isa, str) else isa.name
    return [k for k in WGEMM if Q.can_run(k.isa, name)][-1]


def workspace_bytes(g) -> int:
    """onnxc_qconv_wino_workspace_bytes: the transformed input, int16 [16][tiles][ceil(C/2)*2]."""
    return 32 * g.N * ((g.OH + 1) // 2) * ((g.OW + 1) // 2) * ((g.C + 1) // 2 * 2)


def transform_weights(w: np.ndarray, zero_point=None) -> np.ndarray:
    """U' = (2G) (w - wz) (2G)^T, int64 [M, C, 4, 4]."""
    w = np.asarray(w).astype(np.int64)
    if zero_point is not None:
        w = w - np.broadcast_to(np.asarray(zero_point, np.int64).reshape(-1), (w.shape[0],))[:, None, None, None]
    return np.einsum("ik,mckl,jl->mcij", G2, w, G2)


def fits(w: np.ndarray, zero_point=None) -> Optional[str]:
    """None when the exact arithmetic holds for these weights (with any 8-bit input and zero
    point: |x - xz| <= 255): U' fits int16 and |4Y| <= 4 * 255 * sum |w - wz| < 2^31 per output
    channel; else why not."""
    w64 = np.asarray(w).astype(np.int64)
    if zero_point is not None:
        w64 = w64 - np.broadcast_to(np.asarray(zero_point, np.int64).reshape(-1), (w64.shape[0],))[:, None, None, None]
    worst = int(np.abs(w64).reshape(w64.shape[0], -1).sum(axis=1).max())
    if 4 * 255 * worst >= 2 ** 31:
        return f"4 * 255 * sum|w - wz| = {4 * 255 * worst} >= 2^31"
    u = transform_weights(w, zero_point)
    if np.abs(u).max() > 32767:
        return f"transformed weight {int(np.abs(u).max())} does not fit int16"
    return None


def pack(w: np.ndarray, zero_point=None) -> np.ndarray:
    """Weights w [M, C, 3, 3] (int8 / uint8, zero point None / scalar / per M) as onnxc_qconv_wino's
    packedU: int16 [16][ceil(M/16)][ceil(C/2)][16][2], zero past M and C."""
    M, C = w.shape[:2]
    u = transform_weights(w, zero_point).reshape(M, C, 16)  # e = 4 * i + j
    npn, cp = -(-M // NR), -(-C // 2) * 2
    buf = np.zeros((16, npn * NR, cp), np.int64)
    buf[:, :M, :C] = u.transpose(2, 0, 1)
    # [e][panel][col][k pair][2] -> [e][panel][k pair][col][2]
    out = buf.reshape(16, npn, NR, cp // 2, 2).transpose(0, 1, 3, 2, 4)
    return np.ascontiguousarray(out.reshape(-1).astype(np.int16))


def applies(isa: str, g, w: Optional[np.ndarray], zero_point=None) -> Optional[str]:
    """None when a convolution of geometry ``g`` (kernels.qconv.Geom) with constant weights
    ``w`` runs as Winograd on ISA row ``isa``; else why not."""
    if isa not in ROWS:
        return f"ISA row {isa} keeps the direct kernels"
    return applies_any_row(g, w, zero_point)


def applies_any_row(g, w: Optional[np.ndarray], zero_point=None) -> Optional[str]:
    """applies() without the ISA row (scratch is planned before the row's kernels are chosen)."""
    if not ENABLED:
        return "disabled"
    if w is None:
        return "run-time weights"
    if (g.KH, g.KW, g.stride_h, g.stride_w, g.dil_h, g.dil_w, g.group) != (3, 3, 1, 1, 1, 1, 1):
        return "not a 3x3 stride-1 dilation-1 dense convolution"
    if g.C > MAX_C:
        return f"{g.C} input channels > {MAX_C}"
    if min(g.C, g.M) < MIN_CHANNELS:
        return f"fewer than {MIN_CHANNELS} channels"
    return fits(w, zero_point)
