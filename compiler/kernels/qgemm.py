"""The int8 GEMM family (runtime_c/qgemm/): one row per microkernel, the packer of constant B
(byte-identical to the C packer onnxc_qgemm_pack_b), and the kernel choice for an ISA row.

The list feeds the C declarations at the end of runtime_c/include/onnxc_qgemm.h (c_declarations;
a test checks the header is current), the kernel tests (tests/kernels/test_qgemm.py) and the
benchmark (benchmarks/bench_qgemm.py). Packed layout, zero-point fix-up and output stage:
onnxc_qgemm.h.

Which instruction does the multiply, and why the packing differs per kernel:
  generic       portable C, int32 arithmetic
  avx2          vpmaddubsw (u8 x s8 pairs summed to int16, saturating) + vpmaddwd + vpaddd. A
                pair sum saturates only when |b0| + |b1| > 128 (255 * 128 * 2 > 32767), so B is
                packed pair-safe: such a pair keeps b0 and stores b1 shrunk to 128 - |b0|, the
                difference going to a correction list the driver applies per output block
                (sum over the list of a[k] * e). Exact for every input; the cost is one
                multiply-add per row per correction (real weights: about one per column, a
                column's largest weight next to a large one; all -128 weights: one per pair).
                s8 A is flipped to u8 (a ^ 0x80 = a + 128, one vpxor per broadcast), the + 128
                folded into the A zero point.
  avx2vnni      vpdpbusd on ymm (u8 x s8, int32 accumulation, no saturation)
  avx512vnni    vpdpbusd on zmm
  amx           tdpbusd / tdpbsud on 16 x 64-byte tiles; VNNI (avx512vnni, same packing) for
                M < 8 and when Linux refuses the tile permission
For s8s8 the VNNI/AMX/generic kernels multiply A as int8 by B stored as uint8 (B ^ 0x80:
vpdpbusd(B, A) takes the unsigned operand first), the shift folded into B's zero point.
"""
from __future__ import annotations

import struct
from typing import Optional

import numpy as np

from .. import isa as _isa
from . import Kernel

PANEL, KGROUP, KALIGN, HEADER = 16, 4, 64, 128
MAGIC = 0x3142514F
B_U8, PAIRSAFE, ZB_PER_COLUMN, K2 = 1, 2, 4, 8
HEADER_FMT = "<II10q"  # onnxc_qgemm_packed_header


class QKernel(Kernel):
    """A row of the int8 GEMM family: tile MR x NR, the A type (a_signed), whether A is flipped
    to uint8 (a_xor), how B must be packed (pack_flags) and the AMX fallback's name."""
    __slots__ = ("mr", "nr", "a_signed", "a_xor", "pack_flags", "fallback")

    def __init__(self, dtype, tile, isa, source, *, kind="gemm", a_xor=False, b_u8=False, pairsafe=False,
                 k2=False, fallback=None):
        super().__init__(dtype, kind, tile, isa, source)
        self.mr, self.nr = (int(x) for x in tile.split("x"))
        self.a_signed = dtype.startswith("s8")
        self.a_xor = a_xor
        self.pack_flags = (B_U8 if b_u8 else 0) | (PAIRSAFE if pairsafe else 0) | (K2 if k2 else 0)
        self.fallback = fallback

    @property
    def a_dtype(self):
        return np.dtype(np.int8 if self.a_signed else np.uint8)


_AMX_FB = {"u8s8": "onnxc_u8s8_gemm_12x32__avx512vnni", "s8s8": "onnxc_s8s8_gemm_12x32__avx512vnni"}

# In order of preference (the last that an ISA can run is its kernel), u8s8 and s8s8 per row.
QGEMM = (
    QKernel("u8s8", "4x16", "generic", "qgemm/qgemm_generic_4x16.c"),
    QKernel("s8s8", "4x16", "generic", "qgemm/qgemm_generic_4x16.c", b_u8=True),
    QKernel("u8s8", "6x16", "avx2", "qgemm/qgemm_avx2_6x16.c", k2=True),
    QKernel("s8s8", "6x16", "avx2", "qgemm/qgemm_avx2_6x16.c", k2=True),
    QKernel("u8s8", "6x16", "avx2", "qgemm/qgemmps_avx2_6x16.c", kind="gemmps", pairsafe=True),
    QKernel("s8s8", "6x16", "avx2", "qgemm/qgemmps_avx2_6x16.c", kind="gemmps", a_xor=True, pairsafe=True),
    QKernel("u8s8", "6x16", "avx2vnni", "qgemm/qgemm_avx2vnni_6x16.c"),
    QKernel("s8s8", "6x16", "avx2vnni", "qgemm/qgemm_avx2vnni_6x16.c", b_u8=True),
    QKernel("u8s8", "12x32", "avx512vnni", "qgemm/qgemm_avx512vnni_12x32.c"),
    QKernel("s8s8", "12x32", "avx512vnni", "qgemm/qgemm_avx512vnni_12x32.c", b_u8=True),
    QKernel("u8s8", "32x32", "amx", "qgemm/qgemm_amx_32x32.c", fallback=_AMX_FB["u8s8"]),
    QKernel("s8s8", "32x32", "amx", "qgemm/qgemm_amx_32x32.c", b_u8=True, fallback=_AMX_FB["s8s8"]),
)
BY_NAME = {k.name: k for k in QGEMM}
# C files of the family besides the microkernels (driver, run-time packer)
SUPPORT_SOURCES = ("qgemm/qgemm_driver.c", "qgemm/qgemm_pack.c")


def sources():
    """runtime_c-relative C files of the family (kernel tests build them into one library)."""
    return sorted({k.source for k in QGEMM} | set(SUPPORT_SOURCES))


def can_run(kernel_isa: str, isa: str) -> bool:
    """Whether a build for ISA row ``isa`` contains (and its CPU executes) kernels of ``kernel_isa``."""
    return set(_isa.BY_NAME[kernel_isa].cpu_flags) <= set(_isa.BY_NAME[isa].cpu_flags)


def kernel_for(isa, a_dtype="uint8", b: Optional[np.ndarray] = None) -> QKernel:
    """The family's kernel for ISA row ``isa`` (an onnxc.isa.Isa or its name) and A's dtype: the
    most preferred "gemm" kernel the row can run (avx512 without VNNI gets the avx2 one). Given
    the constant B ([K, N]), an AVX2-class row gets the vpmaddubsw "gemmps" kernel instead when B
    is (nearly) pair-safe (at most K*N/4096 corrections, e.g. 7-bit reduce_range weights: none),
    where it is ~1.5x faster than the exact vpmaddwd one and still exact."""
    name = isa if isinstance(isa, str) else isa.name
    signed = np.dtype(a_dtype) == np.int8
    best = None
    for k in QGEMM:
        if k.kind == "gemm" and k.a_signed == signed and can_run(k.isa, name):
            best = k
    if best is not None and best.isa == "avx2" and b is not None:
        ps = next(k for k in QGEMM if k.kind == "gemmps" and k.a_signed == signed)
        if pair_corrections(b) * 4096 <= max(b.size, 1):
            best = ps
    return best


def pair_corrections(b: np.ndarray) -> int:
    """How many (k, n) of B ([K, N], int8 or uint8) the pair-safe packing moves to its correction
    list: pairs of rows (2i, 2i+1) with |b0| + |b1| > 128 (as int8; uint8 B shifted by -128)."""
    s = b.astype(np.int32) - (128 if b.dtype == np.uint8 else 0)
    pairs = s.shape[0] // 2
    return int(np.count_nonzero(np.abs(s[0:2 * pairs:2]) + np.abs(s[1:2 * pairs:2]) > 128))


def host_isas():
    """ISA rows whose instructions this host executes (AMX also needs the OS permission, which
    the C side asks for; a refusal only makes the AMX kernels run their fallback)."""
    from ..cpu import host_flags
    flags = host_flags()
    return [i.name for i in _isa.ISAS if set(i.cpu_flags) <= flags]


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def stored_values(b: np.ndarray, kernel: QKernel) -> np.ndarray:
    """B [K, N] as the kernel multiplies it (int32): B itself, or B ^ 0x80 reinterpreted in the
    other signedness."""
    store_u8 = bool(kernel.pack_flags & B_U8)
    b_signed = b.dtype == np.int8
    raw = b.view(np.uint8)
    if b_signed == store_u8:
        raw = raw ^ np.uint8(0x80)
    return (raw if store_u8 else raw.view(np.int8)).astype(np.int32)


def pack_b(b: np.ndarray, kernel: QKernel, zero_point=None) -> np.ndarray:
    """B [K, N] (int8 or uint8) with its zero point (None, a scalar or N values) in the packed
    layout of onnxc_qgemm.h for ``kernel``; returns the blob as uint8 (place it 64-byte aligned)."""
    b = np.ascontiguousarray(b)
    if b.ndim != 2 or b.dtype not in (np.int8, np.uint8):
        raise ValueError(f"pack_b: B must be a 2-D int8 or uint8 array, got {b.dtype} {b.shape}")
    K, N = b.shape
    store_u8 = bool(kernel.pack_flags & B_U8)
    b_signed = b.dtype == np.int8
    shift = (128 if b_signed else -128) if b_signed == store_u8 else 0
    zp = np.zeros(N, np.int64) if zero_point is None else np.broadcast_to(
        np.asarray(zero_point, np.int64).reshape(-1), (N,))
    per_col = zero_point is not None and np.asarray(zero_point).size > 1
    if per_col and np.asarray(zero_point).size != N:
        raise ValueError(f"pack_b: {np.asarray(zero_point).size} zero points for {N} columns")
    s = stored_values(b, kernel)
    packed_vals = s.copy()
    corr = np.zeros((0, 3), np.int32)
    if kernel.pack_flags & PAIRSAFE:
        assert not store_u8
        pairs = K // 2
        b0, b1 = s[0:2 * pairs:2], s[1:2 * pairs:2]
        a0, a1 = np.abs(b0), np.abs(b1)
        bad = a0 + a1 > 128
        p1 = np.where(bad, np.where(b1 < 0, -(128 - a0), 128 - a0), b1)
        packed_vals[1:2 * pairs:2] = p1
        n_idx, i_idx = np.nonzero(bad.T)  # sorted by (n, k)
        corr = np.stack([2 * i_idx + 1, n_idx, (b1 - p1)[i_idx, n_idx]], axis=1).astype(np.int32)
    Kp, Np = _round_up(K, KALIGN), _round_up(N, PANEL)
    colsum_off = HEADER
    zb_off = colsum_off + 4 * Np
    panels_off = _round_up(zb_off + 4 * Np, 64)
    corr_off = panels_off + Np * Kp
    corr_bytes = 4 * (Np // PANEL + 1) + 12 * len(corr) if kernel.pack_flags & PAIRSAFE else 0
    total = _round_up(corr_off + corr_bytes, 64)
    flags = (kernel.pack_flags & (B_U8 | PAIRSAFE | K2)) | (ZB_PER_COLUMN if per_col else 0)
    out = np.zeros(total, np.uint8)
    hdr = struct.pack(HEADER_FMT, MAGIC, flags, K, N, Kp, Np, len(corr), colsum_off, zb_off, panels_off,
                      corr_off, total)
    out[:len(hdr)] = np.frombuffer(hdr, np.uint8)
    colsum = np.zeros(Np, np.int32)
    colsum[:N] = s.sum(axis=0, dtype=np.int64).astype(np.int32)
    zbs = np.zeros(Np, np.int32)
    zbs[:N] = (zp + shift).astype(np.int32)
    out[colsum_off:colsum_off + 4 * Np] = colsum.view(np.uint8)
    out[zb_off:zb_off + 4 * Np] = zbs.view(np.uint8)
    P = np.zeros((Kp, Np), np.uint8)
    P[:K, :N] = packed_vals.astype(np.uint8)
    kg = 2 if kernel.pack_flags & K2 else KGROUP
    P = P.reshape(Kp // kg, kg, Np // PANEL, PANEL).transpose(2, 0, 3, 1)
    out[panels_off:corr_off] = P.reshape(-1)
    if kernel.pack_flags & PAIRSAFE:
        panel_of = corr[:, 1] // PANEL if len(corr) else np.zeros(0, np.int64)
        index = np.searchsorted(panel_of, np.arange(Np // PANEL + 1), side="left").astype(np.int32)
        out[corr_off:corr_off + 4 * len(index)] = index.view(np.uint8)
        e0 = corr_off + 4 * len(index)
        out[e0:e0 + 12 * len(corr)] = np.ascontiguousarray(corr).view(np.uint8).reshape(-1)
    return out


def c_declarations() -> str:
    """The kernel declarations of onnxc_qgemm.h (between its BEGIN/END GENERATED lines)."""
    lines = []
    for k in QGEMM:
        lines.append(f"/* {k.dtype} {k.tile}, {k.isa}: {k.source} */")
        lines.append(f"void {k.name}(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, "
                     f"const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, "
                     f"const int32_t* row, const int32_t* zbn);")
        lines.append(f"extern const onnxc_qgemm_kernel {k.name}_info;")
    return "\n".join(lines)


def write_header(path=None) -> Optional[str]:
    """Rewrite the generated block of onnxc_qgemm.h (python -m onnxc.kernels.qgemm)."""
    from ..resources import runtime_dir
    path = path or runtime_dir() / "include" / "onnxc_qgemm.h"
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
