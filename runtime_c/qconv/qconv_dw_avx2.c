/* AVX2 depthwise int8 kernels: 8 channels per ymm as int32 lanes, blocks of 4 output pixels;
 * vpmaddwd + vpaddd per tap (avx2), vpdpwssd (avx2vnni: AVX-VNNI). Body: qconv_dw_body.h,
 * contract: onnxc_qconv.h.
 *
 * The avx2 kernel's stride-1 interior blocks take two kernel rows per int32 lane: the bytes of rows 2p and
 * 2p+1 at one column are interleaved (vpunpcklbw) and widened to int16 (vpmovzxbw / vpmovsxbw),
 * so one vpmaddwd against the packed wp lanes (w[2p][kw], w[2p+1][kw]) adds two exact products
 * (|x| <= 255, |w - wz| <= 255: each |product| < 2^16, their sum far from vpmaddwd's only
 * saturating case -2^15 * -2^15 * 2). The widening stays at two shuffles per 8 channels and input
 * column (as one vpmovzxbd per row before) while the vpmaddwd + vpaddd per tap halve. Stride 2,
 * lone remainder pixels and rows whose partner is outside the image run one row per lane. */
#include <string.h>

#include "../qgemm/qgemm_kernel.h"
#include "qconv_internal.h"

#if defined(QGEMM_AVX2)

#include <immintrin.h>

#define V __m256i
#define L 8
#define OWB 4
#define LOADX(p, s8) ((s8) ? _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p))) \
                           : _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p))))
#define LOADI(p) _mm256_loadu_si256((const __m256i*)(p))
#define STOREI(p, v) _mm256_storeu_si256((__m256i*)(p), (v))
#define SET1(v) _mm256_set1_epi32(v)

/* the channel tail: n < 8 bytes through a zeroed copy (no read past the tensor) */
static __m256i loadx_n(const uint8_t* p, int s8, int64_t n) {
    uint8_t b[8] = {0};
    memcpy(b, p, (size_t)n);
    return LOADX(b, s8);
}
#define LOADX_N(p, s8, n) loadx_n((p), (s8), (n))

#define MADD(acc, x, w) _mm256_add_epi32((acc), _mm256_madd_epi16((x), (w)))

/* 8 channels of two rows at p0 and p1, interleaved per channel and widened to int16 */
QGEMM_INLINE __m128i avx2_load8(const int full, const uint8_t* p, int64_t n) {
    uint8_t b[8] = {0};
    if (full) return _mm_loadl_epi64((const __m128i*)p);
    memcpy(b, p, (size_t)n);
    return _mm_loadl_epi64((const __m128i*)b);
}
QGEMM_INLINE __m256i avx2_px2(const int s8, const int full, const uint8_t* p0, const uint8_t* p1, int64_t nv) {
    const __m128i u = _mm_unpacklo_epi8(avx2_load8(full, p0, nv), avx2_load8(full, p1, nv));
    return s8 ? _mm256_cvtepi8_epi16(u) : _mm256_cvtepu8_epi16(u);
}

/* Interior pixels [ow, ow_b) with stride SW and width KW known at compile time (dilation 1 across,
 * any down; the body calls it for stride 1 only: at stride 2 a block loads (OWB - 1) * 2 + KW
 * columns for OWB * KW taps, so the widening, not the vpmaddwd, bounds it): kernel rows inside the image [khlo, khhi) as pairs (2p, 2p+1) where both are inside,
 * the rest one per lane. Same contract as the body's interior_k. */
QGEMM_INLINE void avx2_interior_k2(const int s8, const int full, const int64_t SW, const int64_t KW,
                                   const onnxc_qconv_dw_args* a, const uint8_t* img, int64_t ih0, int64_t khlo,
                                   int64_t khhi, int64_t ow, int64_t ow_b, int64_t ow0, int64_t c, int64_t c0,
                                   int64_t nv, V st, int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t xp = a->x_pitch, rowb = g->W * xp, dh = g->dil_h, pl = g->pad_l, cp = a->cp;
    const int64_t plo = (khlo + 1) / 2, phi = khhi / 2 > plo ? khhi / 2 : plo; /* pairs [plo, phi) */
    const int32_t* wq = a->wq + c;
    const int32_t* wp = a->wp + c;
    int64_t kh, kw, p;
    int j, i;
    for (; ow + OWB <= ow_b; ow += OWB) {
        V s[OWB], xs[(OWB - 1) * 2 + 5];
#pragma GCC unroll 16
        for (j = 0; j < OWB; ++j) s[j] = st;
        for (p = plo; p < phi; ++p) {
            const uint8_t* r0 = img + (ih0 + 2 * p * dh) * rowb + (ow * SW - pl) * xp;
            const uint8_t* r1 = r0 + dh * rowb;
            const int32_t* wk = wp + p * KW * cp;
#pragma GCC unroll 24
            for (i = 0; i < (OWB - 1) * SW + KW; ++i) xs[i] = avx2_px2(s8, full, r0 + i * xp, r1 + i * xp, nv);
#pragma GCC unroll 8
            for (kw = 0; kw < KW; ++kw) {
                const V w = LOADI(wk + kw * cp);
#pragma GCC unroll 16
                for (j = 0; j < OWB; ++j) s[j] = MADD(s[j], xs[j * SW + kw], w);
            }
        }
        for (kh = khlo; kh < khhi; ++kh) {
            if (kh >= 2 * plo && kh < 2 * phi) continue;
            {
                const uint8_t* r = img + (ih0 + kh * dh) * rowb + (ow * SW - pl) * xp;
                const int32_t* wk = wq + kh * KW * cp;
#pragma GCC unroll 24
                for (i = 0; i < (OWB - 1) * SW + KW; ++i)
                    xs[i] = full ? LOADX(r + i * xp, s8) : LOADX_N(r + i * xp, s8, nv);
#pragma GCC unroll 8
                for (kw = 0; kw < KW; ++kw) {
                    const V w = LOADI(wk + kw * cp);
#pragma GCC unroll 16
                    for (j = 0; j < OWB; ++j) s[j] = MADD(s[j], xs[j * SW + kw], w);
                }
            }
        }
#pragma GCC unroll 16
        for (j = 0; j < OWB; ++j) STOREI(acc + (ow - ow0 + j) * ldacc + (c - c0), s[j]);
    }
    for (; ow < ow_b; ++ow) { /* one row per lane: a lone pixel reuses no interleaved column */
        V s = st;
        for (kh = khlo; kh < khhi; ++kh) {
            const uint8_t* r = img + (ih0 + kh * dh) * rowb + (ow * SW - pl) * xp;
#pragma GCC unroll 8
            for (kw = 0; kw < KW; ++kw)
                s = MADD(s, full ? LOADX(r + kw * xp, s8) : LOADX_N(r + kw * xp, s8, nv), LOADI(wq + (kh * KW + kw) * cp));
        }
        STOREI(acc + (ow - ow0) * ldacc + (c - c0), s);
    }
}

#define DW(name) avx2_##name
#ifndef ONNXC_QDW_NO_PAIRS /* -DONNXC_QDW_NO_PAIRS (ONNXC_EXTRA_CFLAGS): one row per lane, for A/B runs */
#define DW_PAIRED avx2_interior_k2
#endif
#include "qconv_dw_body.h"
#undef DW_PAIRED
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_4x8__avx2, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_4x8__avx2, L, 1);

#if defined(QGEMM_AVX2VNNI)
#define MADD(acc, x, w) _mm256_dpwssd_avx_epi32((acc), (x), (w))
#define DW(name) avx2vnni_##name
#include "qconv_dw_body.h"
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                     int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2vnni_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                     int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2vnni_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_4x8__avx2vnni, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_4x8__avx2vnni, L, 1);
#endif

#endif
