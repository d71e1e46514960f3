/* MatMulNBits AVX2 kernels: q4f32 (fp32 compute), q4s8 with vpmaddubsw (AVX2) or vpdpbusd
 * (AVX-VNNI), and the int8 quantizer of A. Contract: onnxc_quant.h and q4_impl.h; portable twins
 * in q4_ref.c.
 *
 * q4f32: 8 bytes of B widened to 8 lanes give, masked, the weights of 8 even elements and,
 * shifted, of the 8 odd ones (the permuted A matches); (q - zp) * scale is formed in registers.
 * q4s8: 16 bytes of B widen to 32 nibbles in the order of the permuted int8 A ([low | high] per
 * group), one dot product step per 32 weights and row. Blocks of 32 or more sum in int32 over the
 * block before scaling; blocks of 16 (two per vector) scale each half by its own sa * sb.
 * 16 ymm registers: tiles 4x2 (fp32) and 2x4 (int8); one row runs 1x4. */
#include <string.h>

#include "q4_impl.h"

#if defined(ONNXC_Q_AVX2)
#include <immintrin.h>

Q_INLINE float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

Q_INLINE __m256i load8_u8(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(const void*)p));
}

/* (q - z) * s for 8 nibbles in the low 4 bits of each lane */
Q_INLINE __m256 deq8(__m256i q, __m256 z, __m256 s) {
    return _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), z), s);
}

#define F32_MR 4
#define F32_NR 2
#define ONE_NR 4 /* columns per tile with one row */

Q_INLINE void f32_tile(const int mr, const int nr, const onnxc_q4_args* g, int64_t m0,
                       int64_t n0) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    const __m256i low = _mm256_set1_epi32(0xF);
    __m256 acc[F32_MR][ONE_NR];
    const int ncol = mr == 1 ? ONE_NR : F32_NR; /* columns computed (past nr: copies of n0) */
    const uint8_t* bp[ONE_NR];
    const float* ap[F32_MR];
    int64_t b, c, cn[ONE_NR];
    int i, j;
    for (i = 0; i < F32_MR; ++i)
        for (j = 0; j < ONE_NR; ++j) acc[i][j] = _mm256_setzero_ps();
    for (j = 0; j < ONE_NR; ++j) {
        cn[j] = n0 + (j < nr ? j : 0);
        bp[j] = w->B + cn[j] * bpr;
    }
    for (i = 0; i < F32_MR; ++i) ap[i] = g->a + (m0 + (i < mr ? i : 0)) * g->lda_p;
    for (b = 0; b < kb; ++b) {
        for (j = 0; j < ncol; ++j) {
            const __m256 s = _mm256_set1_ps(w->scales[cn[j] * kb + b]);
            const __m256 z = _mm256_set1_ps(q4_zp(w, kb, cn[j], b));
            for (c = 0; c < bs; c += 16) { /* 8 bytes: 8 even + 8 odd elements of A */
                const __m256i x = load8_u8(bp[j] + (b * bs + c) / 2);
                const __m256 wl = deq8(_mm256_and_si256(x, low), z, s);
                const __m256 wh = deq8(_mm256_srli_epi32(x, 4), z, s);
                /* the group of 32 starting at c & ~31 holds its even elements first */
                const int64_t a0 = bs == 16 ? b * bs : b * bs + (c & ~(int64_t)31) + ((c & 16) ? 8 : 0);
                const int64_t half = bs == 16 ? 8 : 16;
                for (i = 0; i < mr; ++i) {
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + a0), wl, acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + a0 + half), wh, acc[i][j]);
                }
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j)
            g->C[(m0 + i) * g->ldc + n0 + j] = hsum8(acc[i][j]) + (w->bias ? w->bias[n0 + j] : 0.0f);
}

void onnxc_q4f32_gemm_4x2__avx2(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += F32_MR) {
        const int mr = (int)(g->M - m < F32_MR ? g->M - m : F32_MR);
        const int64_t step = mr == 1 ? ONE_NR : F32_NR;
        for (n = n0; n < n1; n += step) {
            const int nr = (int)(n1 - n < step ? n1 - n : step);
            switch (mr) {
            case 1: f32_tile(1, nr, g, m, n); break;
            case 2: f32_tile(2, nr, g, m, n); break;
            case 3: f32_tile(3, nr, g, m, n); break;
            default: f32_tile(4, nr, g, m, n); break;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* int8 activations                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* 16 bytes of B -> 32 nibbles as the permuted A has them: [low | high] of 16 bytes (block >= 32)
 * or of each 8 bytes (block 16). */
Q_INLINE __m256i expand32(const uint8_t* p, int bs16) {
    const __m128i v = _mm_loadu_si128((const __m128i*)(const void*)p);
    __m256i x;
    if (bs16) {
        x = _mm256_permute4x64_epi64(_mm256_castsi128_si256(v), 0x50); /* q0 q0 q1 q1 */
        x = _mm256_blend_epi32(x, _mm256_srli_epi16(x, 4), 0xCC);
    } else {
        x = _mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1);
    }
    return _mm256_and_si256(x, _mm256_set1_epi8(0x0F));
}

#define DOT_AVX2(acc, bu, as) \
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(bu, as), _mm256_set1_epi16(1)))
#define DOT_AVXVNNI(acc, bu, as) _mm256_dpbusd_avx_epi32(acc, bu, as)

#define S8_MR 2
#define S8_NR 4

#define S8_TILE(SUFFIX, DOT)                                                                    \
    Q_INLINE void s8_tile_##SUFFIX(const int mr, const int nr, const onnxc_q4_args* g,          \
                                   int64_t m0, int64_t n0) {                                    \
        const onnxc_q4_weights* w = g->w;                                                       \
        const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2, kp = g->lda_p;          \
        __m256 acc[S8_MR][S8_NR];                                                               \
        const uint8_t* bp[S8_NR];                                                               \
        const int8_t* ap[S8_MR];                                                                \
        const float *sa[S8_MR], *sb[S8_NR];                                                     \
        int64_t b, c;                                                                           \
        int i, j;                                                                               \
        for (i = 0; i < S8_MR; ++i)                                                             \
            for (j = 0; j < S8_NR; ++j) acc[i][j] = _mm256_setzero_ps();                        \
        for (j = 0; j < S8_NR; ++j) {                                                           \
            const int64_t n = n0 + (j < nr ? j : 0);                                            \
            bp[j] = w->B + n * bpr;                                                             \
            sb[j] = w->scales + n * kb;                                                         \
        }                                                                                       \
        for (i = 0; i < S8_MR; ++i) {                                                           \
            const int64_t m = m0 + (i < mr ? i : 0);                                            \
            ap[i] = g->qa + m * kp;                                                             \
            sa[i] = g->qa_scale + m * kb;                                                       \
        }                                                                                       \
        if (bs >= 32) {                                                                         \
            for (b = 0; b < kb; ++b)                                                            \
                for (j = 0; j < S8_NR; ++j) {                                                   \
                    __m256i d[S8_MR];                                                           \
                    for (i = 0; i < mr; ++i) d[i] = _mm256_setzero_si256();                     \
                    for (c = b * bs; c < (b + 1) * bs; c += 32) {                               \
                        const __m256i x = expand32(bp[j] + c / 2, 0);                           \
                        for (i = 0; i < mr; ++i)                                                \
                            d[i] = DOT(d[i], x,                                                 \
                                       _mm256_loadu_si256((const __m256i*)(const void*)(ap[i] + c))); \
                    }                                                                           \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[i]),                   \
                                                    _mm256_set1_ps(sa[i][b] * sb[j][b]),        \
                                                    acc[i][j]);                                 \
                }                                                                               \
        } else { /* block 16: two blocks per 32 weights, lanes 0-3 and 4-7 */                   \
            for (c = 0; c < kp; c += 32) {                                                      \
                const int64_t b0 = c / 16;                                                      \
                const int two = b0 + 1 < kb;                                                    \
                int8_t atail[S8_MR][32];                                                        \
                uint8_t btail[16];                                                              \
                __m256i av[S8_MR];                                                              \
                for (i = 0; i < mr; ++i) {                                                      \
                    if (two) {                                                                  \
                        av[i] = _mm256_loadu_si256((const __m256i*)(const void*)(ap[i] + c));   \
                    } else { /* last, odd block: a zero-padded copy */                        \
                        memset(atail[i], 0, 32);                                                \
                        memcpy(atail[i], ap[i] + c, 16);                                        \
                        av[i] = _mm256_loadu_si256((const __m256i*)(const void*)atail[i]);      \
                    }                                                                           \
                }                                                                               \
                for (j = 0; j < S8_NR; ++j) {                                                   \
                    __m256i x;                                                                  \
                    const __m128 sbl = _mm_set1_ps(sb[j][b0]);                                  \
                    const __m128 sbh = _mm_set1_ps(two ? sb[j][b0 + 1] : 0.0f);                 \
                    if (two) {                                                                  \
                        x = expand32(bp[j] + c / 2, 1);                                         \
                    } else {                                                                    \
                        memset(btail, 0, 16);                                                   \
                        memcpy(btail, bp[j] + c / 2, 8);                                        \
                        x = expand32(btail, 1);                                                 \
                    }                                                                           \
                    for (i = 0; i < mr; ++i) {                                                  \
                        const __m128 sl = _mm_mul_ps(_mm_set1_ps(sa[i][b0]), sbl);              \
                        const __m128 sh = _mm_mul_ps(_mm_set1_ps(two ? sa[i][b0 + 1] : 0.0f), sbh); \
                        acc[i][j] = _mm256_fmadd_ps(                                            \
                            _mm256_cvtepi32_ps(DOT(_mm256_setzero_si256(), x, av[i])),          \
                            _mm256_set_m128(sh, sl), acc[i][j]);                                \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        for (i = 0; i < mr; ++i)                                                                \
            for (j = 0; j < nr; ++j)                                                            \
                g->C[(m0 + i) * g->ldc + n0 + j] =                                              \
                    hsum8(acc[i][j]) + q4_zp_term(w, kb, n0 + j, g->qa_bsum + (m0 + i) * kb) +  \
                    (w->bias ? w->bias[n0 + j] : 0.0f);                                         \
    }                                                                                           \
    void onnxc_q4s8_gemm_2x4__##SUFFIX(const onnxc_q4_args* g, int64_t n0, int64_t n1) {        \
        int64_t m, n;                                                                           \
        for (m = 0; m < g->M; m += S8_MR) {                                                     \
            const int mr = (int)(g->M - m < S8_MR ? g->M - m : S8_MR);                          \
            for (n = n0; n < n1; n += S8_NR) {                                                  \
                const int nr = (int)(n1 - n < S8_NR ? n1 - n : S8_NR);                          \
                if (mr == 1)                                                                    \
                    s8_tile_##SUFFIX(1, nr, g, m, n);                                           \
                else                                                                            \
                    s8_tile_##SUFFIX(2, nr, g, m, n);                                           \
            }                                                                                   \
        }                                                                                       \
    }

S8_TILE(avx2, DOT_AVX2)
#if defined(ONNXC_Q_AVX2VNNI)
S8_TILE(avx2vnni, DOT_AVXVNNI)
#endif

/* ------------------------------------------------------------------------------------------ */
/* Per-block int8 quantization of A (bit-identical to the generic twin and to MLAS)            */
/* ------------------------------------------------------------------------------------------ */

void onnxc_f32s8_qblock_row__avx2(const float* a, int64_t K, int64_t block, int8_t* q,
                                  float* scale, float* bsum) {
    const int64_t kb = (K + block - 1) / block;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    float buf[256];
    int64_t b, k;
    for (b = 0; b < kb; ++b) {
        const int64_t k0 = b * block, n = K - k0 < block ? K - k0 : block;
        const float* src = a + k0;
        __m256 mx = _mm256_setzero_ps(), inv;
        __m256i sum = _mm256_setzero_si256();
        __m128 m4;
        __m128i s4;
        float amax;
        if (n < block) { /* the last, partial block: a zero-padded copy */
            memset(buf, 0, sizeof(float) * (size_t)block);
            memcpy(buf, src, sizeof(float) * (size_t)n);
            src = buf;
        }
        for (k = 0; k < block; k += 8) /* NaN compares false: max keeps mx, as the portable loop */
            mx = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(src + k), absmask), mx);
        m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        amax = _mm_cvtss_f32(m4);
        inv = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
        for (k = 0; k < block; k += 16) {
            const __m256 v0 = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(src + k), inv),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m256 v1 = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(src + k + 8), inv),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            /* NaN converts to INT32_MIN; its low byte, 0, is what MLAS's truncating narrow keeps */
            __m256i i0 = _mm256_cvtps_epi32(v0), i1 = _mm256_cvtps_epi32(v1);
            __m256i p;
            i0 = _mm256_srai_epi32(_mm256_slli_epi32(i0, 24), 24);
            i1 = _mm256_srai_epi32(_mm256_slli_epi32(i1, 24), 24);
            sum = _mm256_add_epi32(sum, _mm256_add_epi32(i0, i1));
            p = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
            _mm_storeu_si128((__m128i*)(void*)(q + k0 + k),
                             _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
        }
        s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        scale[b] = amax / 127.0f;
        bsum[b] = scale[b] * (float)_mm_cvtsi128_si32(s4);
    }
}

#endif
