/* onnxc_f32_gemm_6x16__avx2: a 6 x 16 tile of C in 12 ymm accumulators (two 8-float vectors
 * per row), leaving 4 of the 16 ymm registers for the two B vectors and the broadcast of A.
 * Per k: 2 aligned loads of the packed B panel, 6 broadcasts of A, 12 FMAs.
 * Contract: f32_gemm.h. Compiled where the build enables the avx2 row. */
#include "f32_gemm.h"

#if ONNXC_HAS_AVX2

#include <immintrin.h>

#define TM 6
#define TN 16

/* Lane masks for a partial row: lanes [0, n) set, n in 0..8. */
static __m256i lanes(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), idx);
}

/* m is a compile-time constant after inlining (one copy per row count), so the accumulator
 * arrays become registers; rowmajor selects A(i,k) = A[i*lda + k] versus A[k*lda + i]; wide == 0
 * (nr <= TN/2: narrow outputs, N tails) skips the second vector of each row. */
SGEMM_INLINE void tile(const int m, const int rowmajor, const int wide, int64_t kc,
                       const float* A, int64_t lda, const float* Bp, float* C, int64_t ldc,
                       int64_t nr, float alpha, float beta) {
    __m256 c0[TM], c1[TM];
    const float* a[TM];
    int i;
    int64_t k;
#pragma GCC unroll 6
    for (i = 0; i < m; ++i) {
        c0[i] = _mm256_setzero_ps();
        c1[i] = _mm256_setzero_ps();
        a[i] = rowmajor ? A + i * lda : A + i;
    }
    for (k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(Bp);
        const __m256 b1 = wide ? _mm256_load_ps(Bp + 8) : _mm256_setzero_ps();
        Bp += TN;
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256 ai = _mm256_broadcast_ss(rowmajor ? &a[i][k] : &a[0][k * lda + i]);
            c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
            if (wide) c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
        }
    }
    {
        const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
        if (nr == TN) {
#pragma GCC unroll 6
            for (i = 0; i < m; ++i) {
                float* c = C + i * ldc;
                __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
                if (beta != 0.0f) {
                    r0 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), r0);
                    r1 = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), r1);
                }
                _mm256_storeu_ps(c, r0);
                _mm256_storeu_ps(c + 8, r1);
            }
        } else {
            const __m256i m0 = lanes(nr >= 8 ? 8 : nr), m1 = lanes(nr > 8 ? nr - 8 : 0);
#pragma GCC unroll 6
            for (i = 0; i < m; ++i) {
                float* c = C + i * ldc;
                __m256 r0 = _mm256_mul_ps(va, c0[i]), r1 = _mm256_mul_ps(va, c1[i]);
                if (beta != 0.0f) {
                    r0 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c, m0), r0);
                    r1 = _mm256_fmadd_ps(vb, _mm256_maskload_ps(c + 8, m1), r1);
                }
                _mm256_maskstore_ps(c, m0, r0);
                _mm256_maskstore_ps(c + 8, m1, r1);
            }
        }
    }
}

#define ROWS(mode, wide)                                                                  \
    switch (mr) {                                                                         \
    case 6: tile(6, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 5: tile(5, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 4: tile(4, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 3: tile(3, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 2: tile(2, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    default: tile(1, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;         \
    }

void onnxc_f32_gemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa,
                               int64_t csa, const float* Bp, float* C, int64_t ldc,
                               float alpha, float beta) {
    if (csa == 1) {
        const int64_t lda = rsa;
        if (nr > TN / 2) {
            ROWS(1, 1)
        } else {
            ROWS(1, 0)
        }
    } else {
        const int64_t lda = csa;
        if (nr > TN / 2) {
            ROWS(0, 1)
        } else {
            ROWS(0, 0)
        }
    }
}

#endif
