/* AVX-VNNI int8 GEMM microkernels (vpdpbusd on ymm, VEX encoded: Alder Lake and later, and
 * Sapphire Rapids): a 6 x 16 tile of int32 in 12 ymm accumulators (one 16-column panel, two
 * vectors per row), 2 B vectors and the A broadcast in the other 4 registers. Per group of 4 k:
 * 2 loads, 6 broadcasts, 12 vpdpbusd (int32 accumulation: exact). u8s8: vpdpbusd(acc, A, B);
 * s8s8: vpdpbusd(acc, B, A) with B stored as uint8. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX2VNNI)

#include <immintrin.h>

#ifndef QGEMM_AVX2VNNI_KC
#define QGEMM_AVX2VNNI_KC 512 /* K block (the driver's unit of K) */
#endif
#define MR 6
#define NR 16

#define DP(acc, a, b) (s8 ? _mm256_dpbusd_avx_epi32((acc), (b), (a)) : _mm256_dpbusd_avx_epi32((acc), (a), (b)))

/* lanes j < n of a vector of 8 */
QGEMM_INLINE __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), idx);
}

QGEMM_INLINE __m256i bcast4(const uint8_t* p, int64_t n) {
    return _mm256_set1_epi32((int)qgemm_load4(p, n));
}

QGEMM_INLINE void tile(const int s8, const int m, const int wide, int64_t nr, int64_t kc,
                       const uint8_t* A, int64_t lda, const uint8_t* B, int32_t* C, int64_t ldc,
                       const int32_t* col, const int32_t* row, const int32_t* zbn) {
    __m256i c0[MR], c1[MR];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
    int64_t k = 0;
    int i;
    if (col) {
        const __m256i v0 = _mm256_maskload_epi32(col, m0), v1 = _mm256_maskload_epi32(col + 8, m1);
        const __m256i z0 = row ? _mm256_maskload_epi32(zbn, m0) : _mm256_setzero_si256();
        const __m256i z1 = row ? _mm256_maskload_epi32(zbn + 8, m1) : _mm256_setzero_si256();
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256i r = _mm256_set1_epi32(row ? row[i] : 0);
            c0[i] = _mm256_add_epi32(v0, _mm256_mullo_epi32(r, z0));
            c1[i] = _mm256_add_epi32(v1, _mm256_mullo_epi32(r, z1));
        }
    } else {
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            c0[i] = _mm256_maskload_epi32(C + i * ldc, m0);
            c1[i] = _mm256_maskload_epi32(C + i * ldc + 8, m1);
        }
    }
    for (; k + 4 <= kc; k += 4) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i*)(B + k * 16));
        const __m256i b1 = _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32));
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256i a = bcast4(A + i * lda + k, 4);
            c0[i] = DP(c0[i], a, b0);
            if (wide) c1[i] = DP(c1[i], a, b1);
        }
    }
    if (k < kc) { /* K tail: B is zero past K */
        const __m256i b0 = _mm256_loadu_si256((const __m256i*)(B + k * 16));
        const __m256i b1 = _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32));
        #pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256i a = bcast4(A + i * lda + k, kc - k);
            c0[i] = DP(c0[i], a, b0);
            if (wide) c1[i] = DP(c1[i], a, b1);
        }
    }
    if (nr == NR) {
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            _mm256_storeu_si256((__m256i*)(C + i * ldc), c0[i]);
            _mm256_storeu_si256((__m256i*)(C + i * ldc + 8), c1[i]);
        }
    } else {
        #pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            _mm256_maskstore_epi32(C + i * ldc, m0, c0[i]);
            _mm256_maskstore_epi32(C + i * ldc + 8, m1, c1[i]);
        }
    }
}

/* One row: 3 K-interleaved accumulator sets (vpdpbusd latency). */
QGEMM_INLINE void row1(const int s8, int64_t nr, int64_t kc, const uint8_t* A, const uint8_t* B,
                       int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row,
                       const int32_t* zbn) {
    __m256i c0[3], c1[3];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
    int64_t k = 0;
    int u;
    (void)ldc;
    if (col) {
        const __m256i r = _mm256_set1_epi32(row ? row[0] : 0);
        c0[0] = _mm256_add_epi32(_mm256_maskload_epi32(col, m0),
                                 row ? _mm256_mullo_epi32(r, _mm256_maskload_epi32(zbn, m0)) : _mm256_setzero_si256());
        c1[0] = _mm256_add_epi32(_mm256_maskload_epi32(col + 8, m1),
                                 row ? _mm256_mullo_epi32(r, _mm256_maskload_epi32(zbn + 8, m1)) : _mm256_setzero_si256());
    } else {
        c0[0] = _mm256_maskload_epi32(C, m0);
        c1[0] = _mm256_maskload_epi32(C + 8, m1);
    }
    for (u = 1; u < 3; ++u) c0[u] = c1[u] = _mm256_setzero_si256();
    for (; k + 12 <= kc; k += 12) {
#pragma GCC unroll 3
        for (u = 0; u < 3; ++u) {
            const __m256i a = bcast4(A + k + 4 * u, 4);
            c0[u] = DP(c0[u], a, _mm256_loadu_si256((const __m256i*)(B + (k + 4 * u) * 16)));
            c1[u] = DP(c1[u], a, _mm256_loadu_si256((const __m256i*)(B + (k + 4 * u) * 16 + 32)));
        }
    }
    for (; k < kc; k += 4) {
        const __m256i a = bcast4(A + k, kc - k);
        c0[0] = DP(c0[0], a, _mm256_loadu_si256((const __m256i*)(B + k * 16)));
        c1[0] = DP(c1[0], a, _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32)));
    }
    _mm256_maskstore_epi32(C, m0, _mm256_add_epi32(_mm256_add_epi32(c0[0], c0[1]), c0[2]));
    _mm256_maskstore_epi32(C + 8, m1, _mm256_add_epi32(_mm256_add_epi32(c1[0], c1[1]), c1[2]));
}

/* Rows of the tile in chunks of 6, 4, 2, 1 (fewer instantiations to compile than one per
 * row count; the panel re-read for a remainder chunk is in L1). */
#define ARGS nr, kc, A, lda, B, C, ldc, col, row, zbn
#define ROWS(s8, wide)                                                                         \
    do {                                                                                       \
        int64_t m = mr, d;                                                                     \
        while (m > 0) {                                                                        \
            if (m >= 6) { tile(s8, 6, wide, ARGS); d = 6; } else \
            if (m >= 4) { tile(s8, 4, wide, ARGS); d = 4; } else \
            if (m >= 2) { tile(s8, 2, wide, ARGS); d = 2; } else \
            { row1(s8, nr, kc, A, B, C, ldc, col, row, zbn); d = 1; }                                                  \
            A += d * lda;                                                                      \
            C += d * ldc;                                                                      \
            if (row) row += d;                                                                 \
            m -= d;                                                                            \
        }                                                                                      \
    } while (0)

void onnxc_u8s8_gemm_6x16__avx2vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                    int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                    int64_t ldc, const int32_t* col, const int32_t* row,
                                    const int32_t* zbn) {
    (void)bstride;
    if (nr > 8) {
        ROWS(0, 1);
    } else {
        ROWS(0, 0);
    }
}

void onnxc_s8s8_gemm_6x16__avx2vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                    int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                    int64_t ldc, const int32_t* col, const int32_t* row,
                                    const int32_t* zbn) {
    (void)bstride;
    if (nr > 8) {
        ROWS(1, 1);
    } else {
        ROWS(1, 0);
    }
}

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_6x16__avx2vnni, MR, NR, QGEMM_AVX2VNNI_KC, 0, 0, 0, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_6x16__avx2vnni, MR, NR, QGEMM_AVX2VNNI_KC, 1, 0, ONNXC_QPACK_B_U8, 0, 0);

#endif
