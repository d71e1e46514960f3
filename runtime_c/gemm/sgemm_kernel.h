/* Internal to runtime_c/gemm: the register-tiled SGEMM microkernel the driver calls.
 *
 * One microkernel is compiled per build, chosen by the ISA macros of the target
 * (onnxc_kernels.h fixes ONNXC_SGEMM_TILE_M/N the same way, so packed weights and kernel agree):
 *   __AVX512F__             -> sgemm_kernel_avx512_14x32.c (28 zmm accumulators)
 *   __AVX2__ && __FMA__     -> sgemm_kernel_avx2_6x16.c    (12 ymm accumulators)
 *   otherwise               -> sgemm_kernel_c_6x16.c       (portable C, one array per row)
 *
 * Contract (mr <= TILE_M, nr <= TILE_N, kc >= 1):
 *   C[i*ldc + j] = alpha * sum_{k<kc} A(i,k) * Bp[k*TILE_N + j] + beta * C[i*ldc + j]
 * for i < mr, j < nr, where A(i,k) = A[i*rsa + k*csa] and one of rsa, csa is 1 (op(A) read in
 * place: row-major rows for transA == 0, columns of the stored matrix otherwise; or a copied
 * k-major sliver: rsa = 1, csa = TILE_M).
 * Bp is one packed panel (kc rows of TILE_N floats, zero padded past the last column). When
 * beta == 0, C is not read. Only mr rows of A are read.
 */
#ifndef ONNXC_SGEMM_KERNEL_H
#define ONNXC_SGEMM_KERNEL_H

#include <stdint.h>

#include "onnxc_kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define SGEMM_INLINE static inline __attribute__((always_inline))
#define SGEMM_NOINLINE static __attribute__((noinline))
#else
#define SGEMM_INLINE static inline
#define SGEMM_NOINLINE static
#endif

/* The portable kernel is fast only on packed (k-major) slivers of A: the driver then copies
 * every sliver (sgemm_kernel_c_6x16.c says why). */
#if !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))
#define SGEMM_ALWAYS_PACK_A 1
#else
#define SGEMM_ALWAYS_PACK_A 0
#endif

void onnxc_sgemm_kernel(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa,
                        int64_t csa, const float* Bp, float* C, int64_t ldc, float alpha,
                        float beta);

#endif
