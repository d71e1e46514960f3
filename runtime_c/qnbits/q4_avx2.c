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
#define ZCH 64   /* blocks whose zero points are staged as floats at a time */

/* Rows [m0, m0 + mr) x columns [n0, n0 + nr); mr and bs16 constants after inlining. Zero points
 * are staged as floats ZCH blocks at a time (ZCH even), so scale and zero point are broadcast
 * loads. */
Q_INLINE void f32_tile(const int mr, const int bs16, int nr, const onnxc_q4_args* g, int64_t m0,
                       int64_t n0) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    const int ncol = mr == 1 ? ONE_NR : F32_NR; /* columns computed (past nr: copies of n0) */
    const __m256i low = _mm256_set1_epi32(0xF);
    __m256 acc[F32_MR][ONE_NR];
    float zf[ONE_NR][ZCH];
    const uint8_t* bp[ONE_NR];
    const float *ap[F32_MR], *sc[ONE_NR];
    int64_t b, b0, c, cn[ONE_NR];
    int i, j;
    Q4_UNROLL
    for (i = 0; i < F32_MR; ++i)
        Q4_UNROLL
        for (j = 0; j < ONE_NR; ++j) acc[i][j] = _mm256_setzero_ps();
    Q4_UNROLL
    for (j = 0; j < ONE_NR; ++j) {
        cn[j] = n0 + (j < nr ? j : 0);
        bp[j] = w->B + cn[j] * bpr;
        sc[j] = w->scales + cn[j] * kb;
    }
    Q4_UNROLL
    for (i = 0; i < F32_MR; ++i) ap[i] = g->a + (m0 + (i < mr ? i : 0)) * g->lda_p;
    for (b0 = 0; b0 < kb; b0 += ZCH) {
        const int64_t b1 = kb - b0 < ZCH ? kb : b0 + ZCH;
        for (j = 0; j < ncol; ++j)
            for (b = b0; b < b1; ++b) zf[j][b - b0] = q4_zp(w, kb, cn[j], b);
        /* one group of 32 (16 bytes of B) per step: bytes 0-7 give elements a0 + 0..7 (low
         * nibbles) and a0 + 16..23 (high), bytes 8-15 a0 + 8..15 and a0 + 24..31; with blocks of
         * 16 the two halves are two blocks */
        for (c = b0 * bs; c < b1 * bs; c += 32) {
            const int64_t b = c / bs;
            if (!((c >> 1) & 63))
                Q4_UNROLL
                for (j = 0; j < ncol; ++j) {
                    Q4_PREFETCH(bp[j] + ncol * bpr + c / 2);
                    Q4_PREFETCH(sc[j] + ncol * kb + b);
                }
            Q4_UNROLL
            for (j = 0; j < ncol; ++j) {
                const __m256 s0 = _mm256_set1_ps(sc[j][b]), z0 = _mm256_set1_ps(zf[j][b - b0]);
                const __m256 s1 = bs16 ? _mm256_set1_ps(b + 1 < kb ? sc[j][b + 1] : 0.0f) : s0;
                const __m256 z1 = bs16 ? _mm256_set1_ps(b + 1 < kb ? zf[j][b + 1 - b0] : 0.0f) : z0;
                const __m256i x0 = load8_u8(bp[j] + c / 2);
                /* a last, odd block of 16 has no second half: read its bytes again (finite
                 * weights, met by the zero padding of A) */
                const __m256i x1 = load8_u8(bp[j] + c / 2 + (bs16 && b + 1 >= kb ? 0 : 8));
                const __m256 w0 = deq8(_mm256_and_si256(x0, low), z0, s0);
                const __m256 w1 = deq8(_mm256_srli_epi32(x0, 4), z0, s0);
                const __m256 w2 = deq8(_mm256_and_si256(x1, low), z1, s1);
                const __m256 w3 = deq8(_mm256_srli_epi32(x1, 4), z1, s1);
                Q4_UNROLL
                for (i = 0; i < mr; ++i) {
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + c), w0, acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + c + 16), w1, acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + c + 8), w2, acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(_mm256_loadu_ps(ap[i] + c + 24), w3, acc[i][j]);
                }
            }
        }
    }
    Q4_UNROLL
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j)
            g->C[(m0 + i) * g->ldc + n0 + j] = hsum8(acc[i][j]) + (w->bias ? w->bias[n0 + j] : 0.0f);
}

Q_INLINE void f32_rows(const int bs16, const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += F32_MR) {
        const int mr = (int)(g->M - m < F32_MR ? g->M - m : F32_MR);
        const int64_t step = mr == 1 ? ONE_NR : F32_NR;
        for (n = n0; n < n1; n += step) {
            const int nr = (int)(n1 - n < step ? n1 - n : step);
            switch (mr) {
            case 1: f32_tile(1, bs16, nr, g, m, n); break;
            case 2: f32_tile(2, bs16, nr, g, m, n); break;
            case 3: f32_tile(3, bs16, nr, g, m, n); break;
            default: f32_tile(4, bs16, nr, g, m, n); break;
            }
        }
    }
}

void onnxc_q4f32_gemm_4x2__avx2(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    if (g->w->block == 16)
        f32_rows(1, g, n0, n1);
    else
        f32_rows(0, g, n0, n1);
}

/* ------------------------------------------------------------------------------------------ */
/* int8 activations                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* 16 bytes of B (half: only the first 8 exist, the rest reads as 0) -> 32 nibbles as the
 * permuted A has them: [16 low nibbles | 16 high nibbles]. */
Q_INLINE __m256i expand32(const uint8_t* p, int half) {
    const __m128i v = half ? _mm_loadl_epi64((const __m128i*)(const void*)p)
                           : _mm_loadu_si128((const __m128i*)(const void*)p);
    return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(v), _mm_srli_epi16(v, 4), 1),
                            _mm256_set1_epi8(0x0F));
}

/* sum_b bsum[b] * (-zp[n][b] * sb[n][b]), 8 blocks per step (q4_zp_term vectorized; the tail
 * finishes with the scalar twin's arithmetic) */
Q_INLINE float zp_term(const onnxc_q4_weights* w, int64_t kb, int64_t n, const float* bsum) {
    const float* sb = w->scales + n * kb;
    __m256 t = _mm256_setzero_ps();
    float r;
    int64_t b;
    for (b = 0; b + 8 <= kb; b += 8) {
        __m256 z;
        if (w->zp_u4) {
            int32_t raw;
            __m128i v, lo, hi;
            memcpy(&raw, w->zp_u4 + n * ((kb + 1) / 2) + b / 2, 4);
            v = _mm_cvtsi32_si128(raw);
            lo = _mm_and_si128(v, _mm_set1_epi8(0x0F));
            hi = _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F));
            z = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
        } else if (w->zp_f32) {
            z = _mm256_loadu_ps(w->zp_f32 + n * kb + b);
        } else {
            z = _mm256_set1_ps(8.0f);
        }
        t = _mm256_fnmadd_ps(_mm256_loadu_ps(bsum + b), _mm256_mul_ps(z, _mm256_loadu_ps(sb + b)), t);
    }
    r = hsum8(t);
    for (; b < kb; ++b) r += bsum[b] * (-q4_zp(w, kb, n, b) * sb[b]);
    return r;
}

#define DOT_AVX2(acc, bu, as) \
    _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(bu, as), _mm256_set1_epi16(1)))
#define DOT_AVXVNNI(acc, bu, as) _mm256_dpbusd_avx_epi32(acc, bu, as)

#define S8_MR 2
#define S8_NR 4

/* path (a constant after inlining): 0 blocks >= 32 (int32 sums over a block, then one scale),
 * 1 block 16 (two blocks per 32 weights: int32 lanes 0-1 and 4-5 hold the first block, 2-3 and
 * 6-7 the second, each scaled by its own sa * sb). */
#define S8_TILE(SUFFIX, DOT)                                                                    \
    Q_INLINE void s8_tile_##SUFFIX(const int mr, const int path, int nr,                        \
                                   const onnxc_q4_args* g, int64_t m0, int64_t n0) {            \
        const onnxc_q4_weights* w = g->w;                                                       \
        const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2, kp = g->lda_p;          \
        __m256 acc[S8_MR][S8_NR];                                                               \
        const uint8_t* bp[S8_NR];                                                               \
        const int8_t* ap[S8_MR];                                                                \
        const float *sa[S8_MR], *sb[S8_NR];                                                     \
        int64_t b, c, cn[S8_NR];                                                                \
        int i, j;                                                                               \
        Q4_UNROLL                                                                               \
        for (i = 0; i < S8_MR; ++i)                                                             \
            Q4_UNROLL                                                                           \
            for (j = 0; j < S8_NR; ++j) acc[i][j] = _mm256_setzero_ps();                        \
        Q4_UNROLL                                                                               \
        for (j = 0; j < S8_NR; ++j) {                                                           \
            cn[j] = n0 + (j < nr ? j : 0);                                                      \
            bp[j] = w->B + cn[j] * bpr;                                                         \
            sb[j] = w->scales + cn[j] * kb;                                                     \
        }                                                                                       \
        Q4_UNROLL                                                                               \
        for (i = 0; i < S8_MR; ++i) {                                                           \
            const int64_t m = m0 + (i < mr ? i : 0);                                            \
            ap[i] = g->qa + m * kp;                                                             \
            sa[i] = g->qa_scale + m * kb;                                                       \
        }                                                                                       \
        if (path == 0) {                                                                        \
            for (b = 0; b < kb; ++b)                                                            \
                Q4_UNROLL                                                                       \
                for (j = 0; j < S8_NR; ++j) {                                                   \
                    __m256i d[S8_MR];                                                           \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i) d[i] = _mm256_setzero_si256();                     \
                    if (!(b & 15)) Q4_PREFETCH(sb[j] + S8_NR * kb + b);                         \
                    for (c = b * bs; c < (b + 1) * bs; c += 32) {                               \
                        if (!((c >> 1) & 63)) Q4_PREFETCH(bp[j] + S8_NR * bpr + c / 2);         \
                        const __m256i x = expand32(bp[j] + c / 2, 0);                           \
                        Q4_UNROLL                                                               \
                        for (i = 0; i < mr; ++i)                                                \
                            d[i] = DOT(d[i], x,                                                 \
                                       _mm256_loadu_si256((const __m256i*)(const void*)(ap[i] + c))); \
                    }                                                                           \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i)                                                    \
                        acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d[i]),                   \
                                                    _mm256_set1_ps(sa[i][b] * sb[j][b]),        \
                                                    acc[i][j]);                                 \
                }                                                                               \
        } else {                                                                                \
            for (c = 0; c < kp; c += 32) {                                                      \
                const int64_t b0 = c / 16;                                                      \
                if (!((c >> 1) & 63))                                                           \
                    Q4_UNROLL                                                                   \
                    for (j = 0; j < S8_NR; ++j) {                                               \
                        Q4_PREFETCH(bp[j] + S8_NR * bpr + c / 2);                               \
                        Q4_PREFETCH(sb[j] + S8_NR * kb + b0);                                   \
                    }                                                                           \
                const int two = b0 + 1 < kb; /* else the last, odd block: half a group */       \
                __m256i av[S8_MR];                                                              \
                __m128 pa[S8_MR];                                                               \
                Q4_UNROLL                                                                       \
                for (i = 0; i < mr; ++i) {                                                      \
                    av[i] = _mm256_loadu_si256((const __m256i*)(const void*)(ap[i] + c));       \
                    pa[i] = _mm_setr_ps(sa[i][b0], sa[i][b0], two ? sa[i][b0 + 1] : 0.0f,       \
                                        two ? sa[i][b0 + 1] : 0.0f);                            \
                }                                                                               \
                Q4_UNROLL                                                                       \
                for (j = 0; j < S8_NR; ++j) {                                                   \
                    const __m128 pb = _mm_setr_ps(sb[j][b0], sb[j][b0], two ? sb[j][b0 + 1] : 0.0f, \
                                                  two ? sb[j][b0 + 1] : 0.0f);                  \
                    const __m256i x = expand32(bp[j] + c / 2, !two);                            \
                    Q4_UNROLL                                                                   \
                    for (i = 0; i < mr; ++i) {                                                  \
                        const __m128 p = _mm_mul_ps(pa[i], pb);                                 \
                        acc[i][j] = _mm256_fmadd_ps(                                            \
                            _mm256_cvtepi32_ps(DOT(_mm256_setzero_si256(), x, av[i])),          \
                            _mm256_set_m128(p, p), acc[i][j]);                                  \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        Q4_UNROLL                                                                               \
        for (i = 0; i < mr; ++i)                                                                \
            Q4_UNROLL                                                                           \
            for (j = 0; j < nr; ++j)                                                            \
                g->C[(m0 + i) * g->ldc + n0 + j] =                                              \
                    hsum8(acc[i][j]) + zp_term(w, kb, n0 + j, g->qa_bsum + (m0 + i) * kb) +     \
                    (w->bias ? w->bias[n0 + j] : 0.0f);                                         \
    }                                                                                           \
    Q_INLINE void s8_rows_##SUFFIX(const int path, const onnxc_q4_args* g, int64_t n0,          \
                                   int64_t n1) {                                                \
        int64_t m, n;                                                                           \
        for (m = 0; m < g->M; m += S8_MR) {                                                     \
            const int mr = (int)(g->M - m < S8_MR ? g->M - m : S8_MR);                          \
            for (n = n0; n < n1; n += S8_NR) {                                                  \
                const int nr = (int)(n1 - n < S8_NR ? n1 - n : S8_NR);                          \
                if (mr == 1)                                                                    \
                    s8_tile_##SUFFIX(1, path, nr, g, m, n);                                     \
                else                                                                            \
                    s8_tile_##SUFFIX(2, path, nr, g, m, n);                                     \
            }                                                                                   \
        }                                                                                       \
    }                                                                                           \
    void onnxc_q4s8_gemm_2x4__##SUFFIX(const onnxc_q4_args* g, int64_t n0, int64_t n1) {        \
        if (g->w->block >= 32)                                                                  \
            s8_rows_##SUFFIX(0, g, n0, n1);                                                     \
        else                                                                                    \
            s8_rows_##SUFFIX(1, g, n0, n1);                                                     \
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
