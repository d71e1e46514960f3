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

Q_INLINE __m512 lut16(float s, float z) {
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(z)), _mm512_set1_ps(s));
}

/* Rows [m0, m0 + mr) x columns [n0, n0 + nr); mr a constant after inlining. A tile always
 * computes NR columns (past nr: copies of column n0, not stored), so only mr is instantiated.
 * With one or two rows the low and high halves of each 32-weight step go to separate
 * accumulators (more independent FMA chains for the memory-bound GEMV). */
Q_INLINE void f32_tile(const int mr, const int nr, const onnxc_q4_args* g, int64_t m0,
                       int64_t n0) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    const int two = mr <= 2;
    const __m512i shv = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    __m512 acc[MR][NR], acc2[MR][NR];
    const uint8_t* bp[NR];
    const float* ap[MR];
    int64_t b, c, cn[NR];
    int i, j;
    for (i = 0; i < MR; ++i)
        for (j = 0; j < NR; ++j) acc[i][j] = acc2[i][j] = _mm512_setzero_ps();
    for (j = 0; j < NR; ++j) {
        cn[j] = n0 + (j < nr ? j : 0);
        bp[j] = w->B + cn[j] * bpr;
    }
    for (i = 0; i < MR; ++i) ap[i] = g->a + (m0 + (i < mr ? i : 0)) * g->lda_p;
    for (b = 0; b < kb; ++b) {
        __m512 lut[NR];
        for (j = 0; j < NR; ++j) lut[j] = lut16(w->scales[cn[j] * kb + b], q4_zp(w, kb, cn[j], b));
        if (bs == 16) {
            const int odd = two && (b & 1);
            for (j = 0; j < NR; ++j) {
                long long v;
                __m512i x;
                __m512 wv;
                memcpy(&v, bp[j] + b * 8, 8);
                x = _mm512_srlv_epi32(_mm512_cvtepu8_epi32(_mm_set1_epi64x(v)), shv);
                wv = _mm512_permutexvar_ps(x, lut[j]);
                for (i = 0; i < mr; ++i) {
                    const __m512 a = _mm512_loadu_ps(ap[i] + b * 16);
                    if (odd)
                        acc2[i][j] = _mm512_fmadd_ps(a, wv, acc2[i][j]);
                    else
                        acc[i][j] = _mm512_fmadd_ps(a, wv, acc[i][j]);
                }
            }
        } else {
            for (c = 0; c < bs; c += 32) {
                for (j = 0; j < NR; ++j) {
                    const __m512i x = _mm512_cvtepu8_epi32(
                        _mm_loadu_si128((const __m128i*)(const void*)(bp[j] + (b * bs + c) / 2)));
                    const __m512 wl = _mm512_permutexvar_ps(x, lut[j]);
                    const __m512 wh = _mm512_permutexvar_ps(_mm512_srli_epi32(x, 4), lut[j]);
                    for (i = 0; i < mr; ++i) {
                        const float* a = ap[i] + b * bs + c;
                        acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(a), wl, acc[i][j]);
                        if (two)
                            acc2[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 16), wh, acc2[i][j]);
                        else
                            acc[i][j] = _mm512_fmadd_ps(_mm512_loadu_ps(a + 16), wh, acc[i][j]);
                    }
                }
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) {
            const __m512 s = two ? _mm512_add_ps(acc[i][j], acc2[i][j]) : acc[i][j];
            g->C[(m0 + i) * g->ldc + n0 + j] =
                _mm512_reduce_add_ps(s) + (w->bias ? w->bias[n0 + j] : 0.0f);
        }
}

#define TILE_CASES(FN, mr, nr, g, m, n)                                                          \
    switch (mr) {                                                                               \
    case 1: FN(1, nr, g, m, n); break;                                                          \
    case 2: FN(2, nr, g, m, n); break;                                                          \
    case 3: FN(3, nr, g, m, n); break;                                                          \
    default: FN(4, nr, g, m, n); break;                                                         \
    }

void onnxc_q4f32_gemm_4x4__avx512(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += MR) {
        const int mr = (int)(g->M - m < MR ? g->M - m : MR);
        for (n = n0; n < n1; n += NR) {
            const int nr = (int)(n1 - n < NR ? n1 - n : NR);
            TILE_CASES(f32_tile, mr, nr, g, m, n)
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* int8 activations                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* 32 bytes of B -> 64 nibbles as the permuted A has them: groups of 16 bytes (block >= 32) or
 * 8 bytes (block 16), each as [low nibbles | high nibbles]. */
Q_INLINE __m512i expand64(const uint8_t* p, int bs16) {
    const __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)(const void*)p));
    const __m512i x = bs16 ? _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 0, 1, 1, 2, 2, 3, 3), v)
                           : _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), v);
    const __m512i h = _mm512_srli_epi16(x, 4);
    return _mm512_and_si512(_mm512_mask_blend_epi64(bs16 ? 0xAA : 0xCC, x, h),
                            _mm512_set1_epi8(0x0F));
}

/* acc + sum of 4 products u8 x s8 per int32 lane. */
#define DOT_VNNI(acc, bu, as) _mm512_dpbusd_epi32(acc, bu, as)
/* Without VNNI: u4 x s8 pairs fit int16 (2 * 15 * 127), so vpmaddubsw cannot saturate. */
#define DOT_BW(acc, bu, as) \
    _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(bu, as), _mm512_set1_epi16(1)))

#define S8_TILE(SUFFIX, DOT)                                                                    \
    Q_INLINE void s8_tile_##SUFFIX(const int mr, const int nr, const onnxc_q4_args* g,          \
                                   int64_t m0, int64_t n0) {                                    \
        const onnxc_q4_weights* w = g->w;                                                       \
        const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2, kp = g->lda_p;          \
        __m512 acc[MR][NR];                                                                     \
        const uint8_t* bp[NR];                                                                  \
        const int8_t* ap[MR];                                                                   \
        const float *sa[MR], *sb[NR];                                                           \
        int64_t b, c;                                                                           \
        int i, j;                                                                               \
        for (i = 0; i < MR; ++i)                                                                \
            for (j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();                           \
        for (j = 0; j < NR; ++j) {                                                              \
            const int64_t n = n0 + (j < nr ? j : 0);                                            \
            bp[j] = w->B + n * bpr;                                                             \
            sb[j] = w->scales + n * kb;                                                         \
        }                                                                                       \
        for (i = 0; i < MR; ++i) {                                                              \
            const int64_t m = m0 + (i < mr ? i : 0);                                            \
            ap[i] = g->qa + m * kp;                                                             \
            sa[i] = g->qa_scale + m * kb;                                                       \
        }                                                                                       \
        if (bs >= 64) {                                                                         \
            for (b = 0; b < kb; ++b)                                                            \
                for (j = 0; j < NR; ++j) {                                                      \
                    __m512i d[MR];                                                              \
                    for (i = 0; i < mr; ++i) d[i] = _mm512_setzero_si512();                     \
                    for (c = b * bs; c < (b + 1) * bs; c += 64) {                               \
                        const __m512i x = expand64(bp[j] + c / 2, 0);                           \
                        for (i = 0; i < mr; ++i)                                                \
                            d[i] = DOT(d[i], x, _mm512_loadu_si512((const void*)(ap[i] + c)));  \
                    }                                                                           \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d[i]),                   \
                                                    _mm512_set1_ps(sa[i][b] * sb[j][b]),        \
                                                    acc[i][j]);                                 \
                }                                                                               \
        } else {                                                                                \
            /* 64 weights = 64 / bs blocks; lane l belongs to block l / (bs / 4) of them */     \
            const int bpc = (int)(64 / bs);                                                     \
            const __m512i idx = bs == 16 ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, \
                                                             3, 3, 3, 3)                        \
                                         : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, \
                                                             1, 1, 1, 1);                       \
            for (c = 0; c < kp; c += 64) {                                                      \
                const int64_t b0 = c / bs;                                                      \
                const int nblk = (int)(kb - b0 < bpc ? kb - b0 : bpc);                          \
                const __mmask16 sm = (__mmask16)((1u << nblk) - 1u);                            \
                const int full = c + 64 <= kp;                                                  \
                uint8_t btail[32];                                                              \
                int8_t atail[MR][64];                                                           \
                __m512 sal[MR];                                                                 \
                __m512i av[MR];                                                                 \
                for (i = 0; i < mr; ++i) {                                                      \
                    sal[i] = _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(sm, sa[i] + b0)); \
                    if (full) {                                                                 \
                        av[i] = _mm512_loadu_si512((const void*)(ap[i] + c));                   \
                    } else { /* last, partial: a zero-padded copy */                          \
                        memset(atail[i], 0, 64);                                                \
                        memcpy(atail[i], ap[i] + c, (size_t)(kp - c));                          \
                        av[i] = _mm512_loadu_si512((const void*)atail[i]);                      \
                    }                                                                           \
                }                                                                               \
                for (j = 0; j < NR; ++j) {                                                      \
                    const __m512 sbl =                                                          \
                        _mm512_permutexvar_ps(idx, _mm512_maskz_loadu_ps(sm, sb[j] + b0));      \
                    __m512i x;                                                                  \
                    if (full) {                                                                 \
                        x = expand64(bp[j] + c / 2, bs == 16);                                  \
                    } else {                                                                    \
                        memset(btail, 0, 32);                                                   \
                        memcpy(btail, bp[j] + c / 2, (size_t)((kp - c) / 2));                   \
                        x = expand64(btail, bs == 16);                                          \
                    }                                                                           \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm512_fmadd_ps(                                            \
                            _mm512_cvtepi32_ps(DOT(_mm512_setzero_si512(), x, av[i])),          \
                            _mm512_mul_ps(sal[i], sbl), acc[i][j]);                             \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (i = 0; i < mr; ++i)                                                                \
            for (j = 0; j < nr; ++j)                                                            \
                g->C[(m0 + i) * g->ldc + n0 + j] =                                              \
                    _mm512_reduce_add_ps(acc[i][j]) +                                           \
                    q4_zp_term(w, kb, n0 + j, g->qa_bsum + (m0 + i) * kb) +                     \
                    (w->bias ? w->bias[n0 + j] : 0.0f);                                         \
    }                                                                                           \
    void onnxc_q4s8_gemm_4x4__##SUFFIX(const onnxc_q4_args* g, int64_t n0, int64_t n1) {        \
        int64_t m, n;                                                                           \
        for (m = 0; m < g->M; m += MR) {                                                        \
            const int mr = (int)(g->M - m < MR ? g->M - m : MR);                                \
            for (n = n0; n < n1; n += NR) {                                                     \
                const int nr = (int)(n1 - n < NR ? n1 - n : NR);                                \
                TILE_CASES(s8_tile_##SUFFIX, mr, nr, g, m, n)                                   \
            }                                                                                   \
        }                                                                                       \
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
