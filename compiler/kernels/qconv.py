"""The int8 convolution family (runtime_c/qconv/): the depthwise kernel list, the compile-time
weight packers (byte-identical to onnxc_qconv_pack_w / onnxc_qconv_pack_dw), the choice of
kernel and algorithm for an ISA row, and the workspace size, mirroring the C side (tests check
both agree). API, formulas and layouts: runtime_c/include/onnxc_qconv.h; why: docs/qconv.md.

Convolutions with groups < channels run on the int8 GEMM microkernels (compiler/kernels/qgemm.py:
the same rows, the same packed-B format, one blob per group); depthwise convolutions have their
own kernels, listed here:
  generic     portable C, int32 arithmetic
  avx2        8 channels per ymm as int32 lanes, vpmaddwd + vpaddd (exact 16 x 16-bit products);
              stride-1 interiors take two kernel rows per lane (the packed row pairs wp)
  avx2vnni    the same with vpdpwssd (AVX-VNNI)
  avx512      16 channels per zmm, byte-masked channel tail
  avx512vnni  the same with vpdpwssd (also what the amx row runs: AMX has no depthwise form)
"""
from __future__ import annotations

import struct
from typing import List, Optional

import numpy as np

from . import Kernel
from . import qgemm as Q

AUTO, DIRECT, IMPLICIT, IM2COL = 0, 1, 2, 3
ALGO_NAMES = {DIRECT: "direct", IMPLICIT: "implicit", IM2COL: "im2col"}
DW_MAGIC, DW_HEADER, DW_CALIGN = 0x3244514F, 64, 16  # "OQD2"
DW_HEADER_FMT = "<II5q"  # onnxc_qconv_dw_header


class DwKernel(Kernel):
    """A depthwise kernel row: output pixels x channels per register block (tile), the activation
    type (u8s8: uint8, s8s8: int8; the weights may be either, they are packed as 16-bit w - wz)."""
    __slots__ = ("cblock", "a_signed")

    def __init__(self, dtype, tile, isa, source):
        super().__init__(dtype, "dwconv", tile, isa, source)
        self.cblock = int(tile.split("x")[1])
        self.a_signed = dtype.startswith("s8")

    @property
    def a_dtype(self):
        return np.dtype(np.int8 if self.a_signed else np.uint8)


# In order of preference (the last that an ISA row can run is its kernel).
DWCONV = (
    DwKernel("u8s8", "1x1", "generic", "qconv/qconv_dw.c"),
    DwKernel("s8s8", "1x1", "generic", "qconv/qconv_dw.c"),
    DwKernel("u8s8", "4x8", "avx2", "qconv/qconv_dw_avx2.c"),
    DwKernel("s8s8", "4x8", "avx2", "qconv/qconv_dw_avx2.c"),
    DwKernel("u8s8", "4x8", "avx2vnni", "qconv/qconv_dw_avx2.c"),
    DwKernel("s8s8", "4x8", "avx2vnni", "qconv/qconv_dw_avx2.c"),
    DwKernel("u8s8", "8x16", "avx512", "qconv/qconv_dw_avx512.c"),
    DwKernel("s8s8", "8x16", "avx512", "qconv/qconv_dw_avx512.c"),
    DwKernel("u8s8", "8x16", "avx512vnni", "qconv/qconv_dw_avx512.c"),
    DwKernel("s8s8", "8x16", "avx512vnni", "qconv/qconv_dw_avx512.c"),
)
BY_NAME = {k.name: k for k in DWCONV}
SUPPORT_SOURCES = ("qconv/qconv_driver.c", "qconv/qconv_pack.c")


def sources():
    """runtime_c-relative C files of the family and of the GEMM family it runs on."""
    from . import qwino  # the Winograd path (qconv_wino.c) runs on the driver's output stage
    return sorted({k.source for k in DWCONV} | set(SUPPORT_SOURCES) | set(Q.sources()) | set(qwino.sources()))


def dw_kernel_for(isa, a_dtype="uint8") -> DwKernel:
    """The depthwise kernel of ISA row ``isa`` (an onnxc.isa.Isa or its name) for activations of
    ``a_dtype``: the last row of DWCONV the ISA runs."""
    name = isa if isinstance(isa, str) else isa.name
    signed = np.dtype(a_dtype) == np.int8
    return [k for k in DWCONV if k.a_signed == signed and Q.can_run(k.isa, name)][-1]


def is_depthwise(group: int, C: int, M: int) -> bool:
    return group == C == M and group > 1


# ------------------------------------------------------------------------------------------------
# geometry and algorithm (mirrors qconv_driver.c)
# ------------------------------------------------------------------------------------------------

class Geom:
    """onnxc_qconv_geom: NHWC input N x H x W x C, output N x OH x OW x M, kernel KH x KW, strides,
    dilations, pads (top, left, bottom, right), group, input pixel pitch (0: C), algo."""
    FIELDS = ("N", "H", "W", "C", "OH", "OW", "M", "KH", "KW", "stride_h", "stride_w", "dil_h", "dil_w",
              "pad_t", "pad_l", "pad_b", "pad_r", "group", "x_pitch", "algo")

    def __init__(self, N, H, W, C, M, KH, KW, strides=(1, 1), dilations=(1, 1), pads=(0, 0, 0, 0), group=1,
                 x_pitch=0, algo=AUTO):
        self.N, self.H, self.W, self.C, self.M, self.KH, self.KW = N, H, W, C, M, KH, KW
        self.stride_h, self.stride_w = strides
        self.dil_h, self.dil_w = dilations
        self.pad_t, self.pad_l, self.pad_b, self.pad_r = pads
        self.group, self.x_pitch, self.algo = group, x_pitch, algo
        self.OH = out_size(H, KH, self.stride_h, self.dil_h, self.pad_t, self.pad_b)
        self.OW = out_size(W, KW, self.stride_w, self.dil_w, self.pad_l, self.pad_r)
        if C % group or M % group or min(self.OH, self.OW) < 1:
            raise ValueError(f"bad convolution geometry: C={C} M={M} group={group} output {self.OH}x{self.OW}")

    @property
    def Cg(self) -> int:
        return self.C // self.group

    @property
    def Mg(self) -> int:
        return self.M // self.group

    def values(self):
        return [int(getattr(self, f)) for f in self.FIELDS]

    def __repr__(self) -> str:
        return (f"Geom(N={self.N} {self.H}x{self.W}x{self.C} -> {self.OH}x{self.OW}x{self.M} k={self.KH}x{self.KW} "
                f"s={self.stride_h},{self.stride_w} d={self.dil_h},{self.dil_w} "
                f"p={self.pad_t},{self.pad_l},{self.pad_b},{self.pad_r} g={self.group})")


def out_size(n, k, s, d, p0, p1) -> int:
    span = d * (k - 1) + 1
    return 0 if n + p0 + p1 < span else (n + p0 + p1 - span) // s + 1


def _pointwise(g: Geom) -> bool:
    return g.KH == g.KW == 1 and g.stride_h == g.stride_w == 1 and not any((g.pad_t, g.pad_l, g.pad_b, g.pad_r))


def _implicit_kernel(k: Q.QKernel, Cg: int) -> Optional[Q.QKernel]:
    if k.isa == "amx" and Cg % 64:
        k = Q.BY_NAME[k.fallback]
    return k if Cg % (2 if k.pack_flags & Q.K2 else 4) == 0 else None


def implicit_rows(g: Geom) -> int:
    """Virtual rows IMPLICIT computes (stride 1): N*OH*OW plus the dropped ones."""
    hv, wv = g.H + g.pad_t + g.pad_b, g.W + g.pad_l + g.pad_r
    return ((g.N - 1) * hv + g.OH - 1) * wv + g.OW


def choose_algo(kernel: Q.QKernel, g: Geom) -> int:
    """onnxc_qconv_choose_algo: DIRECT for unpadded 1x1 stride 1; for stride 1 with at least 16
    channels per group that split into the kernel's k groups (AMX: into tiles of 64), IMPLICIT
    when its dropped virtual rows cost less than IM2COL's copy (waste * Mg <= multiply-adds per
    cycle / 32), else IM2COL."""
    if _pointwise(g):
        return DIRECT
    if g.stride_h != 1 or g.stride_w != 1 or g.Cg < 16 or _implicit_kernel(kernel, g.Cg) is None:
        return IM2COL
    if kernel.isa == "amx" and g.Cg % 64:
        return IM2COL
    tile = kernel.mr * kernel.nr
    budget = 32 if kernel.isa == "amx" else 4 if tile >= 256 else 2 if tile >= 96 else 1
    m = g.N * g.OH * g.OW
    return IMPLICIT if (implicit_rows(g) - m) * g.Mg <= budget * m else IM2COL


def workspace_bytes(kernel: Q.QKernel, g: Geom) -> int:
    """onnxc_qconv_workspace_bytes: the zero-point-padded input copy of IMPLICIT with padding."""
    algo = g.algo or choose_algo(kernel, g)
    if algo != IMPLICIT or not any((g.pad_t, g.pad_l, g.pad_b, g.pad_r)):
        return 0
    return g.N * (g.H + g.pad_t + g.pad_b) * (g.W + g.pad_l + g.pad_r) * g.C


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------

def group_matrices(w: np.ndarray, group: int) -> List[np.ndarray]:
    """ONNX weights w [M, Cg, KH, KW] as one B [KH*KW*Cg, Mg] per group, k in (kh, kw, c) order
    (the order of an NHWC im2col row)."""
    M, Cg, KH, KW = w.shape
    Mg = M // group
    return [np.ascontiguousarray(w[g * Mg:(g + 1) * Mg].transpose(2, 3, 1, 0).reshape(KH * KW * Cg, Mg))
            for g in range(group)]


def conv_kernel_for(isa, a_dtype, w: Optional[np.ndarray] = None, group: int = 1) -> Q.QKernel:
    """The GEMM kernel a (non-depthwise) convolution with weights ``w`` [M, Cg, KH, KW] runs on an
    ISA row: qgemm.kernel_for with the weights as its B (the AVX2 pair-safe kernel for 7-bit
    weights)."""
    b = None if w is None else np.concatenate(group_matrices(w, group), axis=1)
    return Q.kernel_for(isa, a_dtype, b)


def pack_w(w: np.ndarray, kernel: Q.QKernel, zero_point=None, group: int = 1) -> np.ndarray:
    """Weights w [M, Cg, KH, KW] (int8 or uint8) with zero point None / scalar / M values, packed
    for ``kernel``: one qgemm blob per group, back to back (each a multiple of 64 bytes)."""
    w = np.asarray(w)
    if w.ndim != 4 or w.dtype not in (np.int8, np.uint8):
        raise ValueError(f"pack_w: weights must be 4-D int8 or uint8, got {w.dtype} {w.shape}")
    M = w.shape[0]
    Mg = M // group
    zp = None if zero_point is None else np.asarray(zero_point, np.int64).reshape(-1)
    if zp is not None and zp.size not in (1, M):
        raise ValueError(f"pack_w: {zp.size} zero points for {M} output channels")
    blobs = []
    for g, b in enumerate(group_matrices(w, group)):
        z = None if zp is None else (zp if zp.size == 1 else zp[g * Mg:(g + 1) * Mg])
        blobs.append(Q.pack_b(b, kernel, z))
    return np.concatenate(blobs)


def pack_dw(w: np.ndarray, zero_point=None) -> np.ndarray:
    """Depthwise weights w [C, 1, KH, KW] (int8 or uint8) with zero point None / scalar / C values
    in the OQD2 layout of onnxc_qconv.h (any depthwise kernel)."""
    w = np.asarray(w)
    if w.ndim != 4 or w.shape[1] != 1 or w.dtype not in (np.int8, np.uint8):
        raise ValueError(f"pack_dw: weights must be [C, 1, KH, KW] int8 or uint8, got {w.dtype} {w.shape}")
    C, _, KH, KW = w.shape
    T = KH * KW
    Cp = -(-C // DW_CALIGN) * DW_CALIGN
    z = np.zeros(C, np.int32) if zero_point is None else np.broadcast_to(
        np.asarray(zero_point, np.int32).reshape(-1), (C,))
    d = w.reshape(C, T).astype(np.int32) - z[:, None]
    total = DW_HEADER + 4 * Cp * (1 + T + KH // 2 * KW)
    out = np.zeros(total, np.uint8)
    hdr = struct.pack(DW_HEADER_FMT, DW_MAGIC, 0, C, Cp, KH, KW, total)
    out[:len(hdr)] = np.frombuffer(hdr, np.uint8)
    wsum = np.zeros(Cp, np.int32)
    wsum[:C] = d.sum(axis=1)
    wq = np.zeros((T, Cp), np.uint32)
    wq[:, :C] = (d.T.astype(np.int16).view(np.uint16)).astype(np.uint32)
    out[DW_HEADER:DW_HEADER + 4 * Cp] = wsum.view(np.uint8)
    out[DW_HEADER + 4 * Cp:DW_HEADER + 4 * Cp * (1 + T)] = wq.reshape(-1).view(np.uint8)
    # kernel rows 2p (low 16 bits) and 2p + 1 (high) per lane: the AVX2 kernel's paired taps
    rows = wq.reshape(KH, KW, Cp)
    wp = rows[0:KH // 2 * 2:2] | (rows[1:KH // 2 * 2:2] << np.uint32(16))
    out[DW_HEADER + 4 * Cp * (1 + T):] = wp.reshape(-1).view(np.uint8)
    return out


# ------------------------------------------------------------------------------------------------
# C declarations
# ------------------------------------------------------------------------------------------------

def c_declarations() -> str:
    """The depthwise kernel declarations of onnxc_qconv.h (between its BEGIN/END GENERATED lines)."""
    lines = []
    for k in DWCONV:
        lines.append(f"/* {k.dtype} {k.tile}, {k.isa}: {k.source} */")
        lines.append(f"void {k.name}(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, "
                     f"int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);")
        lines.append(f"extern const onnxc_qconv_dw_kernel {k.name}_info;")
    return "\n".join(lines)


def write_header(path=None) -> Optional[str]:
    """Rewrite the generated block of onnxc_qconv.h (python -m onnxc.kernels.qconv)."""
    from ..resources import runtime_dir
    path = path or runtime_dir() / "include" / "onnxc_qconv.h"
    text = path.read_text()
    begin, end = "/* BEGIN GENERATED", "/* END GENERATED */"
    head, rest = text.split(begin, 1)
    first_line, _, tail = rest.partition("\n")
    _, _, after = tail.partition(end)
    new = head + begin + first_line + "\n" + c_declarations() + "\n" + end + after
    path.write_text(new)
    return new


if __name__ == "__main__":
    write_header()
