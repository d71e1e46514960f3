/* AVX512-VNNI int8 GEMM microkernels: a 12 x 32 tile of int32 in 24 zmm accumulators (two
 * 16-column panels per row), 2 B vectors and the A broadcast in the remaining registers.
 * Per group of 4 k: 2 panel loads, 12 broadcasts of 4 A bytes, 24 vpdpbusd (u8 x s8, int32
 * accumulation: exact, no int16 stage). u8s8: vpdpbusd(acc, A, B); s8s8: vpdpbusd(acc, B, A)
 * with B stored as uint8 (onnxc_qgemm.h). One row (GEMV) keeps 4 K-interleaved accumulator
 * sets so that vpdpbusd's latency does not serialize it. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX512VNNI)

#include <immintrin.h>

#define MR 12
#define NR 32

QGEMM_INLINE __m512i bcast4(const uint8_t* p, int64_t n) {
    return _mm512_set1_epi32((int)qgemm_load4(p, n));
}

/* s8: A is int8 and B uint8 (operands swapped) */
#define DP(acc, a, b) (s8 ? _mm512_dpbusd_epi32((acc), (b), (a)) : _mm512_dpbusd_epi32((acc), (a), (b)))

QGEMM_INLINE void start(const int m, const int wide, __m512i* c0, __m512i* c1, __mmask16 m0,
                        __mmask16 m1, int32_t* C, int64_t ldc, const int32_t* col,
                        const int32_t* row, const int32_t* zbn) {
    int i;
    if (col) {
        const __m512i v0 = _mm512_maskz_loadu_epi32(m0, col);
        const __m512i v1 = wide ? _mm512_maskz_loadu_epi32(m1, col + 16) : _mm512_setzero_si512();
        const __m512i z0 = row ? _mm512_maskz_loadu_epi32(m0, zbn) : _mm512_setzero_si512();
        const __m512i z1 = row && wide ? _mm512_maskz_loadu_epi32(m1, zbn + 16) : _mm512_setzero_si512();
#pragma GCC unroll 12
        for (i = 0; i < m; ++i) {
            c0[i] = v0;
            c1[i] = v1;
            if (row) {
                const __m512i r = _mm512_set1_epi32(row[i]);
                c0[i] = _mm512_add_epi32(c0[i], _mm512_mullo_epi32(r, z0));
                if (wide) c1[i] = _mm512_add_epi32(c1[i], _mm512_mullo_epi32(r, z1));
            }
        }
    } else {
#pragma GCC unroll 12
        for (i = 0; i < m; ++i) {
            c0[i] = _mm512_maskz_loadu_epi32(m0, C + i * ldc);
            c1[i] = wide ? _mm512_maskz_loadu_epi32(m1, C + i * ldc + 16) : _mm512_setzero_si512();
        }
    }
}

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
    start(m, wide, c0, c1, m0, m1, C, ldc, col, row, zbn);
    for (; k + 4 <= kc; k += 4) {
        const __m512i b0 = _mm512_loadu_si512((const void*)(B + k * 16));
        const __m512i b1 = wide ? _mm512_loadu_si512((const void*)(B1 + k * 16)) : _mm512_setzero_si512();
#pragma GCC unroll 12
        for (i = 0; i < m; ++i) {
            const __m512i a = bcast4(A + i * lda + k, 4);
            c0[i] = DP(c0[i], a, b0);
            if (wide) c1[i] = DP(c1[i], a, b1);
        }
    }
    if (k < kc) { /* last group of a K that is not a multiple of 4: B is zero past K */
        const __m512i b0 = _mm512_loadu_si512((const void*)(B + k * 16));
        const __m512i b1 = wide ? _mm512_loadu_si512((const void*)(B1 + k * 16)) : _mm512_setzero_si512();
        for (i = 0; i < m; ++i) {
            const __m512i a = bcast4(A + i * lda + k, kc - k);
            c0[i] = DP(c0[i], a, b0);
            if (wide) c1[i] = DP(c1[i], a, b1);
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
    start(1, wide, c0, c1, m0, m1, C, ldc, col, row, zbn);
    for (u = 1; u < 4; ++u) c0[u] = c1[u] = _mm512_setzero_si512();
    for (; k + 16 <= kc; k += 16) {
#pragma GCC unroll 4
        for (u = 0; u < 4; ++u) {
            const __m512i a = bcast4(A + k + 4 * u, 4);
            c0[u] = DP(c0[u], a, _mm512_loadu_si512((const void*)(B + (k + 4 * u) * 16)));
            if (wide) c1[u] = DP(c1[u], a, _mm512_loadu_si512((const void*)(B1 + (k + 4 * u) * 16)));
        }
    }
    for (; k < kc; k += 4) {
        const __m512i a = bcast4(A + k, kc - k);
        c0[0] = DP(c0[0], a, _mm512_loadu_si512((const void*)(B + k * 16)));
        if (wide) c1[0] = DP(c1[0], a, _mm512_loadu_si512((const void*)(B1 + k * 16)));
    }
    c0[0] = _mm512_add_epi32(_mm512_add_epi32(c0[0], c0[1]), _mm512_add_epi32(c0[2], c0[3]));
    _mm512_mask_storeu_epi32(C, m0, c0[0]);
    if (wide) {
        c1[0] = _mm512_add_epi32(_mm512_add_epi32(c1[0], c1[1]), _mm512_add_epi32(c1[2], c1[3]));
        _mm512_mask_storeu_epi32(C + 16, m1, c1[0]);
    }
}

#define ARGS nr, kc, A, lda, B, bstride, C, ldc, col, row, zbn
#define ROWS(s8, wide)                                                                   \
    switch (mr) {                                                                        \
    case 12: tile(s8, 12, wide, ARGS); break;                                            \
    case 11: tile(s8, 11, wide, ARGS); break;                                            \
    case 10: tile(s8, 10, wide, ARGS); break;                                            \
    case 9: tile(s8, 9, wide, ARGS); break;                                              \
    case 8: tile(s8, 8, wide, ARGS); break;                                              \
    case 7: tile(s8, 7, wide, ARGS); break;                                              \
    case 6: tile(s8, 6, wide, ARGS); break;                                              \
    case 5: tile(s8, 5, wide, ARGS); break;                                              \
    case 4: tile(s8, 4, wide, ARGS); break;                                              \
    case 3: tile(s8, 3, wide, ARGS); break;                                              \
    case 2: tile(s8, 2, wide, ARGS); break;                                              \
    default: row1(s8, wide, nr, kc, A, B, bstride, C, ldc, col, row, zbn); break;        \
    }

void onnxc_u8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                       int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                       int64_t ldc, const int32_t* col, const int32_t* row,
                                       const int32_t* zbn) {
    if (nr > 16) {
        ROWS(0, 1)
    } else {
        ROWS(0, 0)
    }
}

void onnxc_s8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                       int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                       int64_t ldc, const int32_t* col, const int32_t* row,
                                       const int32_t* zbn) {
    if (nr > 16) {
        ROWS(1, 1)
    } else {
        ROWS(1, 0)
    }
}

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_12x32__avx512vnni, MR, NR, 512, 0, 0, 0, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_12x32__avx512vnni, MR, NR, 512, 1, 0, ONNXC_QPACK_B_U8, 0, 0);

#endif
