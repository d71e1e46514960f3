"""MatMulNBits (com.microsoft, 4-bit weights) kernels (runtime_c/qnbits/).

Two microkernel families, one row per ISA, and the per-block int8 quantizer of A:
  q4f32 gemm   accuracy_level 0/1: each 4-bit weight dequantized in registers, (q - zp) * scale
               exactly as the spec's dequantization, times fp32 A, fp32 accumulation
  q4s8 gemm    accuracy_level 4: A quantized to int8 per block (symmetric, scale = amax / 127,
               as onnxruntime's MLAS does), int8 x uint4 dot products in int32 per block, scaled
               and accumulated in fp32 (VNNI vpdpbusd, or AVX2 vpmaddubsw)
  f32s8 qblock the per-block quantizer of A for q4s8
Both microkernels compute rows [0, M) x columns [n0, n1) of C in register tiles (TILES) from an A
laid out by onnxc_q4_permute_a (permute_a below); onnxc_matmulnbits (qnbits_driver.c) picks the best
kernel the build's ISA macros allow (``best``), prepares A, splits N over the thread pool and
adds the bias. B, scales and zero points are read in the ONNX layout as stored in the model: no
weight repacking at compile time.
"""
from __future__ import annotations

import numpy as np

from . import Kernel
from .quant import best  # noqa: F401 (re-exported: same rule for every family)

GEMM_ISAS = {"q4f32": ("generic", "avx2", "avx512"),
             "q4s8": ("generic", "avx2", "avx2vnni", "avx512", "avx512vnni")}
QBLOCK_ISAS = ("generic", "avx2", "avx512")
# rows of A x columns of B per register tile (one row: 1 x 4 everywhere)
TILES = {("q4f32", "avx2"): "4x2", ("q4s8", "avx2"): "2x4", ("q4s8", "avx2vnni"): "2x4"}
_SOURCE = {"generic": "qnbits/q4_ref.c", "avx2": "qnbits/q4_avx2.c", "avx2vnni": "qnbits/q4_avx2.c",
           "avx512": "qnbits/q4_avx512.c", "avx512vnni": "qnbits/q4_avx512.c"}

SIGNATURES = {
    "gemm": "void {name}(const onnxc_q4_args* g, int64_t n0, int64_t n1);",
    "qblock": "void {name}(const float* a, int64_t K, int64_t block, int8_t* q, float* scale, "
              "float* bsum);",
}

BLOCK_SIZES = (16, 32, 64, 128, 256)


def _kernels():
    out = [Kernel(d, "gemm", TILES.get((d, isa), "4x4"), isa, _SOURCE[isa])
           for d, isas in GEMM_ISAS.items() for isa in isas]
    out += [Kernel("f32s8", "qblock", "row", isa, _SOURCE[isa]) for isa in QBLOCK_ISAS]
    return out


KERNELS = _kernels()


def declaration(k: Kernel) -> str:
    return SIGNATURES[k.kind].format(name=k.name)


def permute_a(a: np.ndarray, block: int) -> np.ndarray:
    """numpy twin of onnxc_q4_permute_a on rows of A (M, K): zero-padded to whole blocks and then to
    a multiple of 32 elements, each group of 32 stored as its 16 even-indexed elements, then its 16
    odd-indexed ones: the order in which the low and the high nibbles of the 16 bytes of B covering
    the group come out of a vector register, so the kernels never interleave nibbles."""
    M, K = a.shape
    kp = -(-(-(-K // block) * block) // 32) * 32
    p = np.zeros((M, kp), a.dtype)
    p[:, :K] = a
    p = p.reshape(M, kp // 32, 16, 2)
    return np.ascontiguousarray(p.transpose(0, 1, 3, 2)).reshape(M, kp)


def quantize_a_blocks(a: np.ndarray, block: int):
    """numpy twin of the f32s8 qblock kernels (and of MLAS's QuantizeARow_CompInt8): per block of
    K, amax = max |a|, scale = amax / 127, q = round_half_even(a * (127 / amax)) (0 when amax is 0),
    bsum = scale * sum(q). Returns q (M, kb*block) int8 zero-padded, scale (M, kb), bsum (M, kb)."""
    a = np.asarray(a, np.float32)
    M, K = a.shape
    kb = -(-K // block)
    pad = np.zeros((M, kb * block), np.float32)
    pad[:, :K] = a
    blocks = pad.reshape(M, kb, block)
    amax = np.abs(blocks).max(axis=2)
    scale = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127) / amax, np.float32(0)).astype(np.float32)
    q = np.rint(blocks * inv[:, :, None]).astype(np.int8)
    bsum = (scale * q.astype(np.int32).sum(axis=2).astype(np.float32)).astype(np.float32)
    return q.reshape(M, kb * block), scale, bsum
