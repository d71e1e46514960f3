/* onnxc_f32_gemm_6x16__generic, portable C: a 6 x 16 tile of C, one 16-float array per row
 * (the j loops vectorize to whatever the compiler targets). With baseline SSE2 it runs at
 * 38 GFLOP/s where a 6 x 8 tile, whose 12 accumulator vectors fit the 16 registers, ran at 26:
 * loading B costs more than the spills. The kernel of the generic row; compiled in every build
 * (the tests compare it with the SIMD kernels). Contract: f32_gemm.h. */
#include <math.h>

#include "f32_gemm.h"

#define TM 6
#define TN 16

/* -std=c99 disables contraction of a*b+c; fmaf() is one instruction only with hardware FMA. */
#if ONNXC_HW_FMA
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* Store one accumulator row: c[j] = alpha * acc[j] + beta * c[j] for j < nr. */
static void store_row(float* c, const float* acc, int64_t nr, float alpha, float beta) {
    int64_t j;
    if (beta == 0.0f) {
        for (j = 0; j < nr; ++j) c[j] = alpha * acc[j];
    } else {
        for (j = 0; j < nr; ++j) c[j] = MADD(beta, c[j], alpha * acc[j]);
    }
}

/* All TM rows are always computed (one row array each, unit-stride j loops: what compilers keep
 * in vector registers); rows past mr are not stored (and re-read row 0 when A is read in place).
 * mode is a constant after inlining: 0: A(i,k) = A[k*TM + i] (a packed sliver, the case the
 * driver always uses with this kernel: with A strided along k, gcc vectorizes the k loop with
 * shuffles instead, 5x slower), 1: A[i*lda + k], 2: A[k*lda + i]. */
SGEMM_INLINE void tile(const int mode, int64_t mr, int64_t kc, const float* A, int64_t lda,
                       const float* Bp, float* C, int64_t ldc, int64_t nr, float alpha,
                       float beta) {
    float c0[TN], c1[TN], c2[TN], c3[TN], c4[TN], c5[TN];
    const float* r[TM];
    int64_t i, k;
    int j;
    for (i = 0; i < TM; ++i)
        r[i] = mode == 0 ? A + i : A + (i < mr ? i : 0) * (mode == 1 ? lda : 1);
    for (j = 0; j < TN; ++j) {
        c0[j] = 0.0f; c1[j] = 0.0f; c2[j] = 0.0f; c3[j] = 0.0f; c4[j] = 0.0f; c5[j] = 0.0f;
    }
    for (k = 0; k < kc; ++k) {
        const float* b = Bp + k * TN;
        const int64_t o = mode == 1 ? k : k * lda;
        const float* ap = A + k * TM;  /* mode 0: the 6 values of step k are contiguous */
        const float a0 = mode == 0 ? ap[0] : r[0][o], a1 = mode == 0 ? ap[1] : r[1][o],
                    a2 = mode == 0 ? ap[2] : r[2][o], a3 = mode == 0 ? ap[3] : r[3][o],
                    a4 = mode == 0 ? ap[4] : r[4][o], a5 = mode == 0 ? ap[5] : r[5][o];
        for (j = 0; j < TN; ++j) {
            const float bj = b[j];
            c0[j] = MADD(a0, bj, c0[j]);
            c1[j] = MADD(a1, bj, c1[j]);
            c2[j] = MADD(a2, bj, c2[j]);
            c3[j] = MADD(a3, bj, c3[j]);
            c4[j] = MADD(a4, bj, c4[j]);
            c5[j] = MADD(a5, bj, c5[j]);
        }
    }
    {
        const float* rows[TM];
        rows[0] = c0; rows[1] = c1; rows[2] = c2; rows[3] = c3; rows[4] = c4; rows[5] = c5;
        for (i = 0; i < mr; ++i) store_row(C + i * ldc, rows[i], nr, alpha, beta);
    }
}

/* One out-of-line copy per mode: inlined into the dispatcher, gcc keeps fewer accumulators in
 * registers. */
#define TILE_FN(name, mode)                                                                  \
    SGEMM_NOINLINE void name(int64_t mr, int64_t kc, const float* A, int64_t lda,            \
                             const float* Bp, float* C, int64_t ldc, int64_t nr, float alpha, \
                             float beta) {                                                   \
        tile(mode, mr, kc, A, lda, Bp, C, ldc, nr, alpha, beta);                             \
    }
TILE_FN(tile_packed, 0)
TILE_FN(tile_rows, 1)
TILE_FN(tile_cols, 2)

void onnxc_f32_gemm_6x16__generic(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa,
                                  int64_t csa, const float* Bp, float* C, int64_t ldc,
                                  float alpha, float beta) {
    if (rsa == 1 && csa == TM)
        tile_packed(mr, kc, A, TM, Bp, C, ldc, nr, alpha, beta);
    else if (csa == 1)
        tile_rows(mr, kc, A, rsa, Bp, C, ldc, nr, alpha, beta);
    else
        tile_cols(mr, kc, A, csa, Bp, C, ldc, nr, alpha, beta);
}
