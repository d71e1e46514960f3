/* Internal to runtime_c/gemm: the contract of the f32 GEMM microkernels and what the driver
 * shares with them.
 *
 * The kernels (compiler/kernels/gemm_f32.py lists them; onnxc_isa.h declares them):
 *   onnxc_f32_gemm_14x32__avx512  f32_gemm_14x32__avx512.c  28 zmm accumulators
 *   onnxc_f32_gemm_6x16__avx2     f32_gemm_6x16__avx2.c     12 ymm accumulators
 *   onnxc_f32_gemm_6x16__generic  f32_gemm_6x16__generic.c  portable C, one array per row
 * Each is compiled wherever the build enables its row's features (ONNXC_HAS_<ISA>; the generic
 * one always); the driver calls ONNXC_SGEMM_KERNEL, the one of the build's float ISA, whose tile
 * (ONNXC_SGEMM_TILE_M/N) the packed weights are laid out for.
 *
 * Contract (mr <= TILE_M, nr <= TILE_N, kc >= 1; TILE_* of the kernel's name):
 *   C[i*ldc + j] = alpha * sum_{k<kc} A(i,k) * Bp[k*TILE_N + j] + beta * C[i*ldc + j]
 * for i < mr, j < nr, where A(i,k) = A[i*rsa + k*csa] and one of rsa, csa is 1 (op(A) read in
 * place: row-major rows for transA == 0, columns of the stored matrix otherwise; or a copied
 * k-major sliver: rsa = 1, csa = TILE_M).
 * Bp is one packed panel (kc rows of TILE_N floats, zero padded past the last column), 64-byte
 * aligned. When beta == 0, C is not read. Only mr rows of A are read.
 */
#ifndef ONNXC_F32_GEMM_H
#define ONNXC_F32_GEMM_H

#include <stdint.h>

#include "onnxc_isa.h"
#include "onnxc_kernels.h"

#if defined(__GNUC__) || defined(__clang__)
#define SGEMM_INLINE static inline __attribute__((always_inline))
#define SGEMM_NOINLINE static __attribute__((noinline))
#else
#define SGEMM_INLINE static inline
#define SGEMM_NOINLINE static
#endif

/* The portable kernel is fast only on packed (k-major) slivers of A: the driver then copies
 * every sliver (f32_gemm_6x16__generic.c says why). */
#define SGEMM_ALWAYS_PACK_A ONNXC_ISA_BASE_GENERIC

/* onnxc_sgemm's M == 1 and N == 1 cases with B unpacked: GEMV loops reading A and B in place
 * (sgemv.c); same contract as onnxc_sgemm with M == 1 or N == 1, K >= 1, alpha != 0. */
void onnxc_sgemv(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                 float* C, int64_t ldc);

#endif
