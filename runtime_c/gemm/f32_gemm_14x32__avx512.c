/* onnxc_f32_gemm_14x32__avx512: a 14 x 32 tile of C in 28 zmm accumulators (two 16-float vectors
 * per row), leaving 4 of the 32 zmm registers for the two B vectors and the broadcast of A.
 * Per k: 2 aligned loads of the packed B panel, 14 broadcasts of A, 28 FMAs.
 * Contract: f32_gemm.h. Compiled where the build enables the avx512 row. */
#include "f32_gemm.h"

#if ONNXC_HAS_AVX512

#include <immintrin.h>

#define TM 14
#define TN 32

/* m is a compile-time constant after inlining (one copy per row count), so the accumulator
 * arrays become registers; rowmajor selects A(i,k) = A[i*lda + k] versus A[k*lda + i]; wide == 0
 * (nr <= TN/2: narrow outputs, N tails) skips the second vector of each row. */
SGEMM_INLINE void tile(const int m, const int rowmajor, const int wide, int64_t kc,
                       const float* A, int64_t lda, const float* Bp, float* C, int64_t ldc,
                       int64_t nr, float alpha, float beta) {
    __m512 c0[TM], c1[TM];
    const float* a[TM];
    int i;
    int64_t k;
#pragma GCC unroll 14
    for (i = 0; i < m; ++i) {
        c0[i] = _mm512_setzero_ps();
        c1[i] = _mm512_setzero_ps();
        a[i] = rowmajor ? A + i * lda : A + i;
    }
    for (k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(Bp);
        const __m512 b1 = wide ? _mm512_load_ps(Bp + 16) : _mm512_setzero_ps();
        Bp += TN;
#pragma GCC unroll 14
        for (i = 0; i < m; ++i) {
            const __m512 ai = _mm512_set1_ps(rowmajor ? a[i][k] : a[0][k * lda + i]);
            c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
            if (wide) c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
        }
    }
    {
        const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
        if (nr == TN) {
#pragma GCC unroll 14
            for (i = 0; i < m; ++i) {
                float* c = C + i * ldc;
                __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
                if (beta != 0.0f) {
                    r0 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c), r0);
                    r1 = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + 16), r1);
                }
                _mm512_storeu_ps(c, r0);
                _mm512_storeu_ps(c + 16, r1);
            }
        } else {
            const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
            const __mmask16 m1 = nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
#pragma GCC unroll 14
            for (i = 0; i < m; ++i) {
                float* c = C + i * ldc;
                __m512 r0 = _mm512_mul_ps(va, c0[i]), r1 = _mm512_mul_ps(va, c1[i]);
                if (beta != 0.0f) {
                    r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, c), r0);
                    r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16), r1);
                }
                _mm512_mask_storeu_ps(c, m0, r0);
                _mm512_mask_storeu_ps(c + 16, m1, r1);
            }
        }
    }
}

#define ROWS(mode, wide)                                                                  \
    switch (mr) {                                                                         \
    case 14: tile(14, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;        \
    case 13: tile(13, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;        \
    case 12: tile(12, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;        \
    case 11: tile(11, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;        \
    case 10: tile(10, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;        \
    case 9: tile(9, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 8: tile(8, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 7: tile(7, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 6: tile(6, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 5: tile(5, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 4: tile(4, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 3: tile(3, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    case 2: tile(2, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;          \
    default: tile(1, mode, wide, kc, A, lda, Bp, C, ldc, nr, alpha, beta); break;         \
    }

void onnxc_f32_gemm_14x32__avx512(int64_t mr, int64_t nr, int64_t kc, const float* A, int64_t rsa,
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
