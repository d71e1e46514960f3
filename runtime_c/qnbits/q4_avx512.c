/* MatMulNBits AVX-512 kernels: q4f32 (fp32 compute), q4s8 with and without VNNI, and the int8
 * quantizer of A. Contract: onnxc_quant.h and q4_impl.h; portable twins in q4_ref.c.
 *
 * q4f32: per block and column, the 16 values a nibble can take, (q - zp) * scale, sit in one zmm;
 * vpermps looks weights up by the low 4 bits of each lane, so 16 bytes of B widened to 16 lanes
 * give 16 weights of even index (the low nibbles) and, shifted right by 4, the 16 odd ones: two
 * lookups and two FMAs per 32 weights, against A permuted to match.
 * q4s8: 32 bytes of B widen to 64 nibbles in the order of the permuted int8 A (each 16-byte group
 * as [low nibbles | high nibbles]), one vpdpbusd (u4 x s8, 4 products per lane) per 64 weights
 * and row. Blocks of 64 or more sum in int32 over the block, then scale once; blocks of 16 and 32
 * (several per vector) scale each lane by its block's sa * sb, formed per 64 weights. */
#include <string.h>

#include "q4_impl.h"

#if defined(ONNXC_Q_AVX512)
#include <immintrin.h>

#define MR 4
#define NR 4

/* ------------------------------------------------------------------------------------------ */
/* fp32 compute                                                                                */
/* ------------------------------------------------------------------------------------------ */

#define ZCH 64 /* blocks whose zero points are staged as floats at a time */

/* Zero points of blocks [b, b + 16) of column n as floats (b a multiple of 16; past kb: 0). */
Q_INLINE __m512 zp16(const onnxc_q4_weights* w, int64_t kb, int64_t n, int64_t b) {
    const int64_t left = kb - b;
    const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    if (w->zp_u4) {
        const int64_t bytes = (left + 1) / 2 < 8 ? (left + 1) / 2 : 8;
        const __m128i v = _mm_maskz_loadu_epi8((__mmask16)((1u << bytes) - 1u),
                                               (const void*)(w->zp_u4 + n * ((kb + 1) / 2) + b / 2));
        const __m128i lo = _mm_and_si128(v, _mm_set1_epi8(0x0F));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
        return _mm512_maskz_cvtepi32_ps(m, _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
    }
    if (w->zp_f32) return _mm512_maskz_loadu_ps(m, w->zp_f32 + n * kb + b);
    return _mm512_maskz_mov_ps(m, _mm512_set1_ps(8.0f));
}

/* (q - z) * s for q = 0..15: what a nibble of the block dequantizes to */
Q_INLINE __m512 lut16(const float* s, const float* z) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(*z)), _mm512_set1_ps(*s));
}

/* Rows [m0, m0 + mr) x columns [n0, n0 + nr); mr and bs16 constants after inlining. A tile always
 * computes NR columns (past nr: copies of column n0, not stored). With one or two rows the low and
 * high halves of each 32-weight step go to separate accumulators (more independent FMA chains for
 * the memory-bound GEMV). Blocks of 16 go two at a time: vpermt2ps picks from the two blocks'
 * tables by bit 4 of the index, set in the upper 8 lanes. Zero points are staged as floats ZCH
 * blocks at a time, so a block's table costs two broadcast loads, a subtraction and a product. */
Q_INLINE void f32_tile(const int mr, const int bs16, int nr, const onnxc_q4_args* g, int64_t m0,
                       int64_t n0) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    const int two = mr <= 2;
    const __m512i sel = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16, 16);
    __m512 acc[MR][NR], acc2[MR][NR];
    float zf[NR][ZCH];
    const uint8_t* bp[NR];
    const float *ap[MR], *sc[NR];
    int64_t b, b0, c, t, cn[NR];
    int i, j;
    Q4_UNROLL
    for (i = 0; i < MR; ++i)
        Q4_UNROLL
        for (j = 0; j < NR; ++j) acc[i][j] = acc2[i][j] = _mm512_setzero_ps();
    Q4_UNROLL
    for (j = 0; j < NR; ++j) {
        cn[j] = n0 + (j < nr ? j : 0);
        bp[j] = w->B + cn[j] * bpr;
        sc[j] = w->scales + cn[j] * kb;
    }
    Q4_UNROLL
    for (i = 0; i < MR; ++i) ap[i] = g->a + (m0 + (i < mr ? i : 0)) * g->lda_p;
    for (b0 = 0; b0 < kb; b0 += ZCH) {
        const int64_t b1 = kb - b0 < ZCH ? kb : b0 + ZCH;
        Q4_UNROLL
        for (j = 0; j < NR; ++j) {
            for (t = 0; t < b1 - b0; t += 16) _mm512_storeu_ps(zf[j] + t, zp16(w, kb, cn[j], b0 + t));
            if (w->zp_u4) Q4_PREFETCH(w->zp_u4 + (cn[j] + NR) * ((kb + 1) / 2) + b0 / 2);
        }
        if (!bs16) {
            for (b = b0; b < b1; ++b) {
                __m512 lut[NR];
                Q4_UNROLL
                for (j = 0; j < NR; ++j) lut[j] = lut16(sc[j] + b, zf[j] + (b - b0));
                if (!(b & 15))
                    Q4_UNROLL
                    for (j = 0; j < NR; ++j) Q4_PREFETCH(sc[j] + NR * kb + b);
                for (c = b * bs; c < (b + 1) * bs; c += 32) {
                    if (!((c >> 1) & 63))
                        Q4_UNROLL
                        for (j = 0; j < NR; ++j) Q4_PREFETCH(bp[j] + NR * bpr + c / 2);
                    Q4_UNROLL
                    for (j = 0; j < NR; ++j) {
                        const __m512i x = _mm512_cvtepu8_epi32(
                            _mm_loadu_si128((const __m128i*)(const void*)(bp[j] + c / 2)));
                        const __m512 wl = _mm512_permutexvar_ps(x, lut[j]);
                        const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(x, 4), lut[j]);
                        Q4_UNROLL
                        for (i = 0; i < mr; ++i) {
                            acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + c), wl, acc[i][j]);
                            if (two)
                                acc2[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + c + 16), wh, acc2[i][j]);
                            else
                                acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + c + 16), wh, acc[i][j]);
                        }
                    }
                }
            }
        } else {
            for (b = b0; b < b1; b += 2) { /* b0 is even: a pair of blocks is one group of 32 */
                const int pair = b + 1 < kb;
                if (!(b & 7))
                    Q4_UNROLL
                    for (j = 0; j < NR; ++j) {
                        Q4_PREFETCH(bp[j] + NR * bpr + b * 8);
                        if (!(b & 15)) Q4_PREFETCH(sc[j] + NR * kb + b);
                    }
                Q4_UNROLL
                for (j = 0; j < NR; ++j) {
                    const __m512 la = lut16(sc[j] + b, zf[j] + (b - b0));
                    const __m512 lb = pair ? lut16(sc[j] + b + 1, zf[j] + (b + 1 - b0)) : la;
                    const __m128i v = pair ? _mm_loadu_si128((const __m128i*)(const void*)(bp[j] + b * 8))
                                           : _mm_loadl_epi64((const __m128i*)(const void*)(bp[j] + b * 8));
                    const __m512i x = _mm512_cvtepu8_epi32(v);
                    const __m512i il = _mm512_ternarylogic_epi32(x, _mm512_set1_epi32(0xF), sel, 0xEA);
                    const __m512i ih = _mm512_or_si512(_mm512_srli_epi32(x, 4), sel);
                    const __m512 wl = _mm512_permutex2var_ps(la, il, lb);
                    const __m512 wh = _mm512_permutex2var_ps(la, ih, lb);
                    Q4_UNROLL
                    for (i = 0; i < mr; ++i) {
                        acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + b * 16), wl, acc[i][j]);
                        if (two)
                            acc2[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + b * 16 + 16), wh, acc2[i][j]);
                        else
                            acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(ap[i] + b * 16 + 16), wh, acc[i][j]);
                    }
                }
            }
        }
    }
    Q4_UNROLL
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) {
            const __m512 s = two ? _mm512_add_ps(acc[i][j], acc2[i][j]) : acc[i][j];
            g->C[(m0 + i) * g->ldc + n0 + j] =
                _mm512_reduce_add_ps(s) + (w->bias ? w->bias[n0 + j] : 0.0f);
        }
}

#define TILE_CASES(FN, mr, path, nr, g, m, n)                                                    \
    switch (mr) {                                                                               \
    case 1: FN(1, path, nr, g, m, n); break;                                                    \
    case 2: FN(2, path, nr, g, m, n); break;                                                    \
    case 3: FN(3, path, nr, g, m, n); break;                                                    \
    default: FN(4, path, nr, g, m, n); break;                                                   \
    }

Q_INLINE void f32_rows(const int bs16, const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += MR) {
        const int mr = (int)(g->M - m < MR ? g->M - m : MR);
        for (n = n0; n < n1; n += NR) {
            const int nr = (int)(n1 - n < NR ? n1 - n : NR);
            TILE_CASES(f32_tile, mr, bs16, nr, g, m, n)
        }
    }
}

void onnxc_q4f32_gemm_4x4__avx512(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    if (g->w->block == 16)
        f32_rows(1, g, n0, n1);
    else
        f32_rows(0, g, n0, n1);
}

/* ------------------------------------------------------------------------------------------ */
/* int8 activations                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* 32 bytes of B (fewer under mask bm, the rest read as 0) -> 64 nibbles as the permuted A has
 * them: each group of 16 bytes as [16 low nibbles | 16 high nibbles]. */
Q_INLINE __m512i expand64(const uint8_t* p, __mmask32 bm) {
    const __m512i v = _mm512_castsi256_si512(_mm256_maskz_loadu_epi8(bm, (const void*)p));
    const __m512i x = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), v);
    return _mm512_and_si512(_mm512_mask_blend_epi64(0xCC, x, _mm512_srli_epi16(x, 4)),
                            _mm512_set1_epi8(0x0F));
}

/* sum_b bsum[b] * (-zp[n][b] * sb[n][b]), 16 blocks per step (q4_zp_term vectorized) */
Q_INLINE float zp_term(const onnxc_q4_weights* w, int64_t kb, int64_t n, const float* bsum) {
    const float* sb = w->scales + n * kb;
    __m512 t = _mm512_setzero_ps();
    int64_t b;
    for (b = 0; b < kb; b += 16) {
        const int64_t left = kb - b;
        const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        /* bsum * (-(z * sb)), as the scalar twin rounds it */
        t = _mm512_fnmadd_ps(_mm512_maskz_loadu_ps(m, bsum + b),
                             _mm512_mul_ps(zp16(w, kb, n, b), _mm512_maskz_loadu_ps(m, sb + b)), t);
    }
    return _mm512_reduce_add_ps(t);
}

/* acc + sum of 4 products u8 x s8 per int32 lane. */
#define DOT_VNNI(acc, bu, as) _mm512_dpbusd_epi32(acc, bu, as)
/* Without VNNI: u4 x s8 pairs fit int16 (2 * 15 * 127), so vpmaddubsw cannot saturate. */
#define DOT_BW(acc, bu, as) \
    _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(bu, as), _mm512_set1_epi16(1)))

/* path (a constant after inlining): 0 blocks >= 64 (int32 sums over a block, then one scale),
 * 1 block 32, 2 block 16 (64 weights span 2 or 4 blocks; int32 lane l sums bytes 4l..4l+3 of the
 * expanded 64, which belong to block (idx below) of the step). */
#define S8_TILE(SUFFIX, DOT)                                                                    \
    Q_INLINE void s8_tile_##SUFFIX(const int mr, const int path, int nr,                        \
                                   const onnxc_q4_args* g, int64_t m0, int64_t n0) {            \
        const onnxc_q4_weights* w = g->w;                                                       \
        const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2, kp = g->lda_p;          \
        __m512 acc[MR][NR];                                                                     \
        const uint8_t* bp[NR];                                                                  \
        const int8_t* ap[MR];                                                                   \
        const float *sa[MR], *sb[NR];                                                           \
        int64_t b, c, cn[NR];                                                                   \
        int i, j;                                                                               \
        Q4_UNROLL                                                                               \
        for (i = 0; i < MR; ++i)                                                                \
            Q4_UNROLL                                                                           \
            for (j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();                           \
        Q4_UNROLL                                                                               \
        for (j = 0; j < NR; ++j) {                                                              \
            cn[j] = n0 + (j < nr ? j : 0);                                                      \
            bp[j] = w->B + cn[j] * bpr;                                                         \
            sb[j] = w->scales + cn[j] * kb;                                                     \
        }                                                                                       \
        Q4_UNROLL                                                                               \
        for (i = 0; i < MR; ++i) {                                                              \
            const int64_t m = m0 + (i < mr ? i : 0);                                            \
            ap[i] = g->qa + m * kp;                                                             \
            sa[i] = g->qa_scale + m * kb;                                                       \
        }                                                                                       \
        if (path == 0) {                                                                        \
            for (b = 0; b < kb; ++b)                                                            \
                Q4_UNROLL                                                                       \
                for (j = 0; j < NR; ++j) {                                                      \
                    __m512i d[MR];                                                              \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i) d[i] = _mm512_setzero_si512();                     \
                    if (!(b & 15)) Q4_PREFETCH(sb[j] + NR * kb + b);                            \
                    for (c = b * bs; c < (b + 1) * bs; c += 64) {                               \
                        const __m512i x = expand64(bp[j] + c / 2, (__mmask32)0xFFFFFFFFu);      \
                        if (!((c >> 1) & 63)) Q4_PREFETCH(bp[j] + NR * bpr + c / 2);            \
                        Q4_UNROLL                                                               \
                        for (i = 0; i < mr; ++i)                                                \
                            d[i] = DOT(d[i], x, _mm512_loadu_si512((const void*)(ap[i] + c)));  \
                    }                                                                           \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i]),                   \
                                                    _mm512_set1_ps(sa[i][b] * sb[j][b]),        \
                                                    acc[i][j]);                                 \
                }                                                                               \
        } else {                                                                                \
            const int bpc = path == 1 ? 2 : 4;                                                  \
            const __m512i idx = path == 2 ? _mm512_setr_epi32(0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, \
                                                               2, 2, 3, 3)                      \
                                          : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, \
                                                              1, 1, 1, 1);                      \
            for (c = 0; c < kp; c += 64) {                                                      \
                const int64_t b0 = c / bs, left = kp - c;                                       \
                const int nblk = (int)(kb - b0 < bpc ? kb - b0 : bpc);                          \
                const __mmask16 sm = (__mmask16)((1u << nblk) - 1u);                            \
                /* the last step may be partial: bytes past the row read as 0 */                \
                const __mmask64 am = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1u); \
                const int64_t bbytes = (kb * bs - c) / 2; /* B has no padding to 32 */          \
                const __mmask32 bm = bbytes >= 32 ? ~(__mmask32)0                               \
                                                  : (__mmask32)(((uint64_t)1 << bbytes) - 1u);  \
                __m512 sal[MR];                                                                 \
                __m512i av[MR];                                                                 \
                Q4_UNROLL                                                                       \
                for (i = 0; i < mr; ++i) {                                                      \
                    sal[i] = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(sm, sa[i] + b0)); \
                    av[i] = _mm512_maskz_loadu_epi8(am, (const void*)(ap[i] + c));              \
                }                                                                               \
                if (!((c >> 1) & 63))                                                           \
                    Q4_UNROLL                                                                   \
                    for (j = 0; j < NR; ++j) {                                                  \
                        Q4_PREFETCH(bp[j] + NR * bpr + c / 2);                                  \
                        Q4_PREFETCH(sb[j] + NR * kb + b0);                                      \
                    }                                                                           \
                Q4_UNROLL                                                                       \
                for (j = 0; j < NR; ++j) {                                                      \
                    const __m512 sbl =                                                          \
                        _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(sm, sb[j] + b0));      \
                    const __m512i x = expand64(bp[j] + c / 2, bm);                              \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm512_fmadd_ps(                                            \
                            _mm512_cvtepi32_ps(DOT(_mm512_setzero_si512(), x, av[i])),          \
                            _mm512_mul_ps(sal[i], sbl), acc[i][j]);                             \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        Q4_UNROLL                                                                               \
        for (i = 0; i < mr; ++i)                                                                \
            Q4_UNROLL                                                                           \
            for (j = 0; j < nr; ++j)                                                            \
                g->C[(m0 + i) * g->ldc + n0 + j] =                                              \
                    _mm512_reduce_add_ps(acc[i][j]) +                                           \
                    zp_term(w, kb, n0 + j, g->qa_bsum + (m0 + i) * kb) +                        \
                    (w->bias ? w->bias[n0 + j] : 0.0f);                                         \
    }                                                                                           \
    Q_INLINE void s8_rows_##SUFFIX(const int path, const onnxc_q4_args* g, int64_t n0,          \
                                   int64_t n1) {                                                \
        int64_t m, n;                                                                           \
        for (m = 0; m < g->M; m += MR) {                                                        \
            const int mr = (int)(g->M - m < MR ? g->M - m : MR);                                \
            for (n = n0; n < n1; n += NR) {                                                     \
                const int nr = (int)(n1 - n < NR ? n1 - n : NR);                                \
                switch (mr) {                                                                   \
                case 1: s8_tile_##SUFFIX(1, path, nr, g, m, n); break;                          \
                case 2: s8_tile_##SUFFIX(2, path, nr, g, m, n); break;                          \
                case 3: s8_tile_##SUFFIX(3, path, nr, g, m, n); break;                          \
                default: s8_tile_##SUFFIX(4, path, nr, g, m, n); break;                         \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    void onnxc_q4s8_gemm_4x4__##SUFFIX(const onnxc_q4_args* g, int64_t n0, int64_t n1) {        \
        if (g->w->block >= 64)                                                                  \
            s8_rows_##SUFFIX(0, g, n0, n1);                                                     \
        else if (g->w->block == 32)                                                             \
            s8_rows_##SUFFIX(1, g, n0, n1);                                                     \
        else                                                                                    \
            s8_rows_##SUFFIX(2, g, n0, n1);                                                     \
    }

S8_TILE(avx512, DOT_BW)
#if defined(ONNXC_Q_AVX512VNNI)
S8_TILE(avx512vnni, DOT_VNNI)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Per-block int8 quantization of A (bit-identical to the generic twin and to MLAS)            */
/* ------------------------------------------------------------------------------------------ */

void onnxc_f32s8_qblock_row__avx512(const float* a, int64_t K, int64_t block, int8_t* q,
                                    float* scale, float* bsum) {
    const int64_t kb = (K + block - 1) / block;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
    int64_t b, k;
    for (b = 0; b < kb; ++b) {
        const int64_t k0 = b * block, n = K - k0 < block ? K - k0 : block;
        __m512 mx = _mm512_setzero_ps();
        __m512i sum = _mm512_setzero_si512();
        float amax, inv;
        for (k = 0; k < n; k += 16) {
            const __mmask16 m = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1u);
            /* NaN compares false: max(|x|, mx) keeps mx, as the portable loop */
            mx = _mm512_max_ps(_mm512_and_ps(_mm512_maskz_loadu_ps(m, a + k0 + k), absmask), mx);
        }
        amax = _mm512_reduce_max_ps(mx);
        inv = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (k = 0; k < block; k += 16) {
            const int64_t left = n - k;
            const __mmask16 m = left >= 16 ? (__mmask16)0xFFFF
                                           : (left > 0 ? (__mmask16)((1u << left) - 1u) : (__mmask16)0);
            const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + k0 + k), _mm512_set1_ps(inv));
            /* NaN converts to INT32_MIN, whose low byte is 0, as MLAS's truncating narrow */
            const __m512i iv = _mm512_cvtps_epi32(
                _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            const __m512i iv8 = _mm512_srai_epi32(_mm512_slli_epi32(iv, 24), 24);
            _mm_storeu_si128((__m128i*)(void*)(q + k0 + k), _mm512_cvtepi32_epi8(iv));
            sum = _mm512_add_epi32(sum, iv8);
        }
        scale[b] = amax / 127.0f;
        bsum[b] = scale[b] * (float)_mm512_reduce_add_epi32(sum);
    }
}

#endif
