/* AVX512-VNNI int8 GEMM microkernels: a 12 x 32 tile of int32 in 24 zmm accumulators (two
 * 16-column panels per row), 2 B vectors and the A broadcast in the remaining registers.
 * Per group of 4 k: 2 panel loads, 12 broadcasts of 4 A bytes, 24 vpdpbusd (u8 x s8, int32
 * accumulation: exact, no int16 stage). u8s8: vpdpbusd(acc, A, B); s8s8: vpdpbusd(acc, B, A)
 * with B stored as uint8 (onnxc_qgemm.h). One row (GEMV) keeps 4 K-interleaved accumulator
 * sets so that vpdpbusd's latency does not serialize it. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX512VNNI)

#include <immintrin.h>

#ifndef QGEMM_AVX512VNNI_KC
#define QGEMM_AVX512VNNI_KC 512 /* K block (the driver's unit of K) */
#endif
#define MR 12
#define NR 32

QGEMM_INLINE __m512i bcast4(const uint8_t* p, int64_t n) {
    return _mm512_set1_epi32((int)qgemm_load4(p, n));
}

/* acc += u8 x s8 dot products of 4 bytes per lane; inline asm on GCC/clang ties the accumulator
 * to one register (with the intrinsic GCC 12 copied every accumulator each iteration). */
#if defined(__GNUC__) || defined(__clang__)
#define DPBUSD(acc, u, s) __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(u), "v"(s))
#else
#define DPBUSD(acc, u, s) ((acc) = _mm512_dpbusd_epi32((acc), (u), (s)))
#endif
/* s8: A is int8 and B uint8 (operands swapped) */
#define DP(acc, a, b)                 \
    do {                              \
        if (s8) DPBUSD(acc, b, a);    \
        else DPBUSD(acc, a, b);       \
    } while (0)

/* Accumulator start of rows [0, m): col + row * zbn (first K block) or C (later blocks). A macro,
 * not a function taking the arrays: their address escaping made GCC keep them in memory. */
#define START(m, wide, c0, c1)                                                                   \
    do {                                                                                         \
        int i_;                                                                                  \
        if (col) {                                                                               \
            const __m512i v0 = _mm512_maskz_loadu_epi32(m0, col);                                \
            const __m512i v1 = wide ? _mm512_maskz_loadu_epi32(m1, col + 16) : _mm512_setzero_si512(); \
            const __m512i z0 = row ? _mm512_maskz_loadu_epi32(m0, zbn) : _mm512_setzero_si512(); \
            const __m512i z1 = row && wide ? _mm512_maskz_loadu_epi32(m1, zbn + 16) : _mm512_setzero_si512(); \
            _Pragma("GCC unroll 12") for (i_ = 0; i_ < (m); ++i_) {                                                       \
                const __m512i r_ = _mm512_set1_epi32(row ? row[i_] : 0);                         \
                c0[i_] = _mm512_add_epi32(v0, _mm512_mullo_epi32(r_, z0));                       \
                c1[i_] = _mm512_add_epi32(v1, _mm512_mullo_epi32(r_, z1));                       \
            }                                                                                    \
        } else {                                                                                 \
            _Pragma("GCC unroll 12") for (i_ = 0; i_ < (m); ++i_) {                                                       \
                c0[i_] = _mm512_maskz_loadu_epi32(m0, C + i_ * ldc);                             \
                c1[i_] = wide ? _mm512_maskz_loadu_epi32(m1, C + i_ * ldc + 16) : _mm512_setzero_si512(); \
            }                                                                                    \
        }                                                                                        \
    } while (0)

QGEMM_INLINE void tile(const int s8, const int m, const int wide, int64_t nr, int64_t kc,
                       const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride,
                       int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row,
                       const int32_t* zbn) {
    __m512i c0[MR], c1[MR];
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    const uint8_t* B1 = B + bstride;
    int64_t k = 0;
    int i;
    START(m, wide, c0, c1);
    for (; k + 4 <= kc; k += 4) {
        const __m512i b0 = _mm512_loadu_si512((const void*)(B + k * 16));
        const __m512i b1 = wide ? _mm512_loadu_si512((const void*)(B1 + k * 16)) : _mm512_setzero_si512();
#pragma GCC unroll 12
        for (i = 0; i < m; ++i) {
            const __m512i a = bcast4(A + i * lda + k, 4);
            DP(c0[i], a, b0);
            if (wide) DP(c1[i], a, b1);
        }
    }
    if (k < kc) { /* last group of a K that is not a multiple of 4: B is zero past K */
        const __m512i b0 = _mm512_loadu_si512((const void*)(B + k * 16));
        const __m512i b1 = wide ? _mm512_loadu_si512((const void*)(B1 + k * 16)) : _mm512_setzero_si512();
        #pragma GCC unroll 12
        for (i = 0; i < m; ++i) {
            const __m512i a = bcast4(A + i * lda + k, kc - k);
            DP(c0[i], a, b0);
            if (wide) DP(c1[i], a, b1);
        }
    }
#pragma GCC unroll 12
    for (i = 0; i < m; ++i) {
        _mm512_mask_storeu_epi32(C + i * ldc, m0, c0[i]);
        if (wide) _mm512_mask_storeu_epi32(C + i * ldc + 16, m1, c1[i]);
    }
}

/* One row: 4 accumulator sets over interleaved groups of 4 k, summed at the end. */
QGEMM_INLINE void row1(const int s8, const int wide, int64_t nr, int64_t kc, const uint8_t* A,
                       const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc,
                       const int32_t* col, const int32_t* row, const int32_t* zbn) {
    __m512i c0[4], c1[4];
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    const uint8_t* B1 = B + bstride;
    int64_t k = 0;
    int u;
    START(1, wide, c0, c1);
    for (u = 1; u < 4; ++u) c0[u] = c1[u] = _mm512_setzero_si512();
    for (; k + 16 <= kc; k += 16) {
#pragma GCC unroll 4
        for (u = 0; u < 4; ++u) {
            const __m512i a = bcast4(A + k + 4 * u, 4);
            DP(c0[u], a, _mm512_loadu_si512((const void*)(B + (k + 4 * u) * 16)));
            if (wide) DP(c1[u], a, _mm512_loadu_si512((const void*)(B1 + (k + 4 * u) * 16)));
        }
    }
    for (; k < kc; k += 4) {
        const __m512i a = bcast4(A + k, kc - k);
        DP(c0[0], a, _mm512_loadu_si512((const void*)(B + k * 16)));
        if (wide) DP(c1[0], a, _mm512_loadu_si512((const void*)(B1 + k * 16)));
    }
    c0[0] = _mm512_add_epi32(_mm512_add_epi32(c0[0], c0[1]), _mm512_add_epi32(c0[2], c0[3]));
    _mm512_mask_storeu_epi32(C, m0, c0[0]);
    if (wide) {
        c1[0] = _mm512_add_epi32(_mm512_add_epi32(c1[0], c1[1]), _mm512_add_epi32(c1[2], c1[3]));
        _mm512_mask_storeu_epi32(C + 16, m1, c1[0]);
    }
}

/* Rows of the tile in chunks of 12, 8, 4, 2, 1 (fewer instantiations to compile than one per
 * row count; the panel re-read for a remainder chunk is in L1). */
#define ARGS nr, kc, A, lda, B, bstride, C, ldc, col, row, zbn
#define ROWS(s8, wide)                                                                         \
    do {                                                                                       \
        int64_t m = mr, d;                                                                     \
        while (m > 0) {                                                                        \
            if (m >= 12) { tile(s8, 12, wide, ARGS); d = 12; } else \
            if (m >= 8) { tile(s8, 8, wide, ARGS); d = 8; } else \
            if (m >= 4) { tile(s8, 4, wide, ARGS); d = 4; } else \
            if (m >= 2) { tile(s8, 2, wide, ARGS); d = 2; } else \
            { row1(s8, wide, nr, kc, A, B, bstride, C, ldc, col, row, zbn); d = 1; }                                                  \
            A += d * lda;                                                                      \
            C += d * ldc;                                                                      \
            if (row) row += d;                                                                 \
            m -= d;                                                                            \
        }                                                                                      \
    } while (0)

void onnxc_u8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                       int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                       int64_t ldc, const int32_t* col, const int32_t* row,
                                       const int32_t* zbn) {
    if (nr > 16) {
        ROWS(0, 1);
    } else {
        ROWS(0, 0);
    }
}

void onnxc_s8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                       int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                       int64_t ldc, const int32_t* col, const int32_t* row,
                                       const int32_t* zbn) {
    if (nr > 16) {
        ROWS(1, 1);
    } else {
        ROWS(1, 0);
    }
}

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_12x32__avx512vnni, MR, NR, QGEMM_AVX512VNNI_KC, 0, 0, 0, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_12x32__avx512vnni, MR, NR, QGEMM_AVX512VNNI_KC, 1, 0, ONNXC_QPACK_B_U8, 0, 0);

#endif
