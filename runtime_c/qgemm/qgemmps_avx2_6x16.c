/* AVX2 int8 GEMM microkernels for pair-safe B ("gemmps"): a 6 x 16 tile of int32 in 12 ymm
 * accumulators. Per group of 4 k and 8 columns: vpmaddubsw (u8 x s8 products, adjacent pairs
 * summed to int16 with saturation), vpmaddwd with ones (int16 pairs to int32), vpaddd: 3
 * instructions per 32 multiply-adds, ~1.8x the AVX2 float32 rate (the exact vpmaddwd kernel,
 * qgemm_avx2_6x16.c: ~1.4x). The int16 step saturates when a pair sum leaves int16, possible only
 * for |b0| + |b1| > 128: B is packed pair-safe (ONNXC_QPACK_PAIRSAFE, onnxc_qgemm.h) and the
 * driver adds back what was clipped from such pairs, so results are exact for every input
 * (onnxruntime's AVX2 u8s8 kernel saturates instead). Fast when B has (almost) no such pairs,
 * e.g. 7-bit weights (onnxruntime's reduce_range, which it recommends for AVX2): the compiler
 * picks this kernel then (compiler/kernels/qgemm.py kernel_for). s8s8: A is flipped to uint8
 * (xor 0x80, folded into the A zero point) against the same int8 B. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX2)

#include <immintrin.h>

#ifndef QGEMM_AVX2PS_KC
#define QGEMM_AVX2PS_KC 512 /* K block (the driver's unit of K) */
#endif
#define MR 6
#define NR 16

QGEMM_INLINE __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), idx);
}

QGEMM_INLINE __m256i bcast4(const int s8, const uint8_t* p, int64_t n) {
    /* int8 A as uint8 + 128; past K (n < 4) the flipped zeros meet zero B */
    return _mm256_set1_epi32((int)(qgemm_load4(p, n) ^ (s8 ? 0x80808080u : 0u)));
}

/* acc += sum over the 4 k of a * b, per 32-bit lane */
QGEMM_INLINE __m256i madd(__m256i acc, __m256i a, __m256i b, __m256i ones) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
}

/* Accumulator start of m rows: col + row * zbn (first K block) or C (later blocks). */
QGEMM_INLINE void start(const int m, __m256i* c0, __m256i* c1, __m256i m0, __m256i m1,
                        const int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row,
                        const int32_t* zbn) {
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
}

QGEMM_INLINE void tile(const int s8, const int m, const int wide, int64_t nr, int64_t kc,
                       const uint8_t* A, int64_t lda, const uint8_t* B, int32_t* C, int64_t ldc,
                       const int32_t* col, const int32_t* row, const int32_t* zbn) {
    __m256i c0[MR], c1[MR];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8), ones = _mm256_set1_epi16(1);
    int64_t k = 0;
    int i;
    start(m, c0, c1, m0, m1, C, ldc, col, row, zbn);
    for (; k + 4 <= kc; k += 4) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i*)(B + k * 16));
        const __m256i b1 = _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32));
#pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256i a = bcast4(s8, A + i * lda + k, 4);
            c0[i] = madd(c0[i], a, b0, ones);
            if (wide) c1[i] = madd(c1[i], a, b1, ones);
        }
    }
    if (k < kc) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i*)(B + k * 16));
        const __m256i b1 = _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32));
        #pragma GCC unroll 6
        for (i = 0; i < m; ++i) {
            const __m256i a = bcast4(s8, A + i * lda + k, kc - k);
            c0[i] = madd(c0[i], a, b0, ones);
            if (wide) c1[i] = madd(c1[i], a, b1, ones);
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

/* One row: 2 K-interleaved accumulator sets. */
QGEMM_INLINE void row1(const int s8, int64_t nr, int64_t kc, const uint8_t* A, const uint8_t* B,
                       int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row,
                       const int32_t* zbn) {
    __m256i c0[2], c1[2];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8), ones = _mm256_set1_epi16(1);
    int64_t k = 0;
    int u;
    start(1, c0, c1, m0, m1, C, ldc, col, row, zbn);
    c0[1] = c1[1] = _mm256_setzero_si256();
    for (; k + 8 <= kc; k += 8) {
#pragma GCC unroll 2
        for (u = 0; u < 2; ++u) {
            const __m256i a = bcast4(s8, A + k + 4 * u, 4);
            c0[u] = madd(c0[u], a, _mm256_loadu_si256((const __m256i*)(B + (k + 4 * u) * 16)), ones);
            c1[u] = madd(c1[u], a, _mm256_loadu_si256((const __m256i*)(B + (k + 4 * u) * 16 + 32)), ones);
        }
    }
    for (; k < kc; k += 4) {
        const __m256i a = bcast4(s8, A + k, kc - k);
        c0[0] = madd(c0[0], a, _mm256_loadu_si256((const __m256i*)(B + k * 16)), ones);
        c1[0] = madd(c1[0], a, _mm256_loadu_si256((const __m256i*)(B + k * 16 + 32)), ones);
    }
    _mm256_maskstore_epi32(C, m0, _mm256_add_epi32(c0[0], c0[1]));
    _mm256_maskstore_epi32(C + 8, m1, _mm256_add_epi32(c1[0], c1[1]));
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

void onnxc_u8s8_gemmps_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
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

void onnxc_s8s8_gemmps_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
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

ONNXC_QGEMM_INFO(onnxc_u8s8_gemmps_6x16__avx2, MR, NR, QGEMM_AVX2PS_KC, 0, 0, ONNXC_QPACK_PAIRSAFE, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemmps_6x16__avx2, MR, NR, QGEMM_AVX2PS_KC, 1, 1, ONNXC_QPACK_PAIRSAFE, 0, 0);

#endif
