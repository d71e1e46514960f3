/* AVX2 int8 GEMM microkernels, exact for every input (no VNNI: Haswell to Zen 3, AVX-512 CPUs
 * without VNNI): a 6 x 16 tile of int32 in 12 ymm accumulators. vpmaddwd on 16-bit values: B is
 * packed in groups of 2 k (ONNXC_QPACK_K2) and sign-extended when loaded (vpmovsxbw: 8 columns x
 * 2 k per ymm), A is widened to int16 (zero- or sign-extended) 256 k at a time into a stack
 * buffer, whose k pairs are broadcast. Per 2 k and 8 columns: vpmaddwd + vpaddd, 16
 * multiply-adds, no intermediate that can saturate (vpmaddubsw's int16 pair sum can: onnxruntime's
 * AVX2 u8s8 kernel saturates). Cost: 4 instructions per 32 multiply-adds against 3 for
 * vpmaddubsw, measured ~1.4x the AVX2 float32 rate where the vpmaddubsw kernel
 * (qgemmps_avx2_6x16.c, exact only through corrections) reaches ~1.8x. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX2)

#include <immintrin.h>

#ifndef QGEMM_AVX2_KC
#define QGEMM_AVX2_KC 512 /* K block (the driver's unit of K) */
#endif
#define MR 6
#define NR 16
#define KW 256 /* k widened at a time */
/* -DQGEMM_AVX2_NO_INLINE / -DQGEMM_AVX2_NO_WIDEN8 (ONNXC_EXTRA_CFLAGS): the widening as before
 * 2026-12-07, for A/B runs */
#ifdef QGEMM_AVX2_NO_INLINE
#define SMALLK 0
#else
#define SMALLK 1
#endif

QGEMM_INLINE __m256i lane_mask(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), idx);
}

/* w[0 .. n rounded up to even) = A[0 .. n) as int16 (the odd tail padded with 0), 16 k and then
 * 8 k at a time (the 1x1 convolutions of small CNNs have K = 16..32: the scalar loop took K = 24's
 * last 8 one by one). Inlined for K blocks up to 32, where the call cost as much as the widening;
 * else called once per row per 256 k (widen). */
QGEMM_INLINE void widen_in(const int s8, const uint8_t* a, int64_t n, int16_t* w) {
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i*)(a + k));
        _mm256_storeu_si256((__m256i*)(w + k), s8 ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v));
    }
#ifndef QGEMM_AVX2_NO_WIDEN8
    if (k + 8 <= n) {
        const __m128i v = _mm_loadl_epi64((const __m128i*)(a + k));
        _mm_storeu_si128((__m128i*)(w + k), s8 ? _mm_cvtepi8_epi16(v) : _mm_cvtepu8_epi16(v));
        k += 8;
    }
#endif
    for (; k < n; ++k) w[k] = s8 ? (int16_t)(int8_t)a[k] : (int16_t)a[k];
    if (n & 1) w[n] = 0;
}
static void widen(const int s8, const uint8_t* a, int64_t n, int16_t* w) { widen_in(s8, a, n, w); }

QGEMM_INLINE void tile(const int s8, const int m, const int wide, int64_t nr, int64_t kc,
                       const uint8_t* A, int64_t lda, const uint8_t* B, int32_t* C, int64_t ldc,
                       const int32_t* col, const int32_t* row, const int32_t* zbn) {
    int16_t aw[MR][KW + 2] QGEMM_ALIGN64;
    __m256i c0[MR], c1[MR];
    const __m256i m0 = lane_mask(nr), m1 = lane_mask(nr - 8);
    int64_t k0, g;
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
    for (k0 = 0; k0 < kc; k0 += KW) {
        const int64_t kk = kc - k0 < KW ? kc - k0 : KW;
        const uint8_t* b = B + k0 * 16;
        if (SMALLK && kk <= 32) {
#pragma GCC unroll 6
            for (i = 0; i < m; ++i) widen_in(s8, A + i * lda + k0, kk, aw[i]);
        } else {
#pragma GCC unroll 6
            for (i = 0; i < m; ++i) widen(s8, A + i * lda + k0, kk, aw[i]);
        }
        for (g = 0; g < kk; g += 2) {
            const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(b + g * 16)));
            const __m256i b1 = wide ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(b + g * 16 + 16)))
                                    : _mm256_setzero_si256();
#pragma GCC unroll 6
            for (i = 0; i < m; ++i) {
                int32_t pair;
                __m256i a;
                memcpy(&pair, aw[i] + g, 4);
                a = _mm256_set1_epi32(pair);
                c0[i] = _mm256_add_epi32(c0[i], _mm256_madd_epi16(a, b0));
                if (wide) c1[i] = _mm256_add_epi32(c1[i], _mm256_madd_epi16(a, b1));
            }
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
            { tile(s8, 1, wide, ARGS); d = 1; }                                                  \
            A += d * lda;                                                                      \
            C += d * ldc;                                                                      \
            if (row) row += d;                                                                 \
            m -= d;                                                                            \
        }                                                                                      \
    } while (0)

void onnxc_u8s8_gemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
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

void onnxc_s8s8_gemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
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

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_6x16__avx2, MR, NR, QGEMM_AVX2_KC, 0, 0, ONNXC_QPACK_K2, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_6x16__avx2, MR, NR, QGEMM_AVX2_KC, 1, 0, ONNXC_QPACK_K2, 0, 0);

#endif
