"""f32 GEMM microkernels (runtime_c/gemm/): one register tile of C per call.

Contract (runtime_c/gemm/f32_gemm.h), for mr <= TM, nr <= TN, kc >= 1:
C[i*ldc + j] = alpha * sum_k A(i,k) * Bp[k*TN + j] + beta * C[i*ldc + j], A(i,k) = A[i*rsa + k*csa].
The runtime built for an ISA row runs the kernel of the row's float ISA (isa.base) from the
SGEMM driver (runtime_c/gemm/sgemm_driver.c, through ONNXC_SGEMM_KERNEL of onnxc_isa.h), and
constant B is packed for that kernel's tile at compile time (providers/c/linalg.py).
"""
from __future__ import annotations

from typing import Tuple

from ..isa import BY_NAME
from . import Kernel

# C declaration of every kernel of the list (written into onnxc_isa.h)
SIGNATURE = ("void {name}(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa, int64_t csa,\n"
             "    const float* Bp, float* C, int64_t ldc, float alpha, float beta);")

KERNELS = [
    Kernel.parse("onnxc_f32_gemm_6x16__generic", "gemm/f32_gemm_6x16__generic.c"),
    Kernel.parse("onnxc_f32_gemm_6x16__avx2", "gemm/f32_gemm_6x16__avx2.c"),
    Kernel.parse("onnxc_f32_gemm_14x32__avx512", "gemm/f32_gemm_14x32__avx512.c"),
]

# K block of the driver's loops and of the packed-B layout (ONNXC_SGEMM_KC; onnxc_kernels.h)
KC = 256

# Every source of the family: the driver (blocking, threads, packing), the GEMV paths it takes
# for M == 1 or N == 1, and the kernels.
SOURCES = ["gemm/sgemm_driver.c", "gemm/sgemv.c"] + [k.source for k in KERNELS]


def for_isa(isa: str) -> Kernel:
    """The kernel the runtime built for ISA row ``isa`` runs."""
    base = BY_NAME[isa].base
    for k in KERNELS:
        if k.isa == base:
            return k
    raise KeyError(f"no f32 GEMM microkernel for ISA {isa} (float ISA {base})")


def tile(isa: str) -> Tuple[int, int]:
    """(rows, columns) of the register tile of ``isa``'s kernel: the packed-B panel width is the
    second."""
    m, n = for_isa(isa).tile.split("x")
    return int(m), int(n)
