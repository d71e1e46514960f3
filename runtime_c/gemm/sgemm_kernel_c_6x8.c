/* Portable C SGEMM microkernel: a 6 x 8 tile of C (48 accumulators = 12 four-float vectors,
 * which fit the 16 registers of SSE2 or NEON once the compiler vectorizes the j loops).
 * Used when the target has neither AVX-512F nor AVX2+FMA. Contract: sgemm_kernel.h. */
#include "sgemm_kernel.h"

#if !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))

#include <math.h>

#define TM 6
#define TN 8

/* -std=c99 disables contraction of a*b+c; fmaf() is one instruction only with hardware FMA. */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* m is a compile-time constant after inlining (one copy per row count); rowmajor selects
 * A(i,k) = A[i*lda + k] versus A[k*lda + i]. */
SGEMM_INLINE void tile(const int m, const int rowmajor, int64_t kc, const float* A, int64_t lda,
                       const float* Bp, float* C, int64_t ldc, int64_t nr, float alpha,
                       float beta) {
    float acc[TM][TN];
    int i, j;
    int64_t k;
    for (i = 0; i < m; ++i)
        for (j = 0; j < TN; ++j) acc[i][j] = 0.0f;
    for (k = 0; k < kc; ++k) {
        const float* b = Bp + k * TN;
        for (i = 0; i < m; ++i) {
            const float ai = rowmajor ? A[i * lda + k] : A[k * lda + i];
            for (j = 0; j < TN; ++j) acc[i][j] = MADD(ai, b[j], acc[i][j]);
        }
    }
    for (i = 0; i < m; ++i) {
        float* c = C + i * ldc;
        if (beta == 0.0f) {
            for (j = 0; j < nr; ++j) c[j] = alpha * acc[i][j];
        } else {
            for (j = 0; j < nr; ++j) c[j] = MADD(beta, c[j], alpha * acc[i][j]);
        }
    }
}

#define ROWS(mode)                                                                       \
    switch (mr) {                                                                        \
    case 6: tile(6, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;               \
    case 5: tile(5, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;               \
    case 4: tile(4, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;               \
    case 3: tile(3, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;               \
    case 2: tile(2, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;               \
    default: tile(1, mode, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;              \
    }

void onnxc_sgemm_kernel(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa,
                        int64_t csa, const float* Bp, float* C, int64_t ldc, float alpha,
                        float beta) {
    if (csa == 1) {
        const int64_t lda = rsa;
        ROWS(1)
    } else {
        const int64_t lda = csa;
        ROWS(0)
    }
}

#endif
