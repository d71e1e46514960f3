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

/* ---- Band form (onnxc_qconv_dw_band_fn): each input row widened once, adjacent columns paired ----
 * The row of image n at ih, padded with xz on both sides (a row outside the image is all xz), is
 * stored as lanes P[j][c] = (x[2j][c], x[2j + 1][c]) in int16 (padded columns, low half first),
 * [ncv][NP][8] per kernel-row slot (ih mod KH: the KH rows an output row reads are consecutive).
 * Output column ow (padded start s = ow * SW) is sum_p P[s/2 + p] . (w[2p - par], w[2p + 1 - par])
 * over p < NPP = (KW + 2) / 2, par = s & 1, w outside [0, KW) = 0: a 3x3 kernel row is 2 vpmaddwd
 * instead of 3, and the inner loop has no widening and no border test (the padding is in the
 * rows); each widened row serves the KH output rows over it. Same-process A/B against the row form
 * (AMD EPYC Zen 4, MobileNetV2's stride-1 depthwise layers, target avx2): 1.20-1.48x. */
/* -DONNXC_QDW_NO_BAND (ONNXC_EXTRA_CFLAGS): the row form only, for A/B runs */
#ifndef ONNXC_QDW_NO_BAND
#define BOB 8 /* output columns per register block */
#define BMADD(acc, x, w) _mm256_add_epi32((acc), _mm256_madd_epi16((x), (w)))

/* one pair vector: 8 channels of padded columns 2j and 2j + 1 (xz outside the row) */
QGEMM_INLINE void band_pair(const int s8, const int full, const uint8_t* row, int64_t W, int64_t xp, int64_t i0,
                            int64_t nv, __m128i zb, int32_t* d) {
    const __m128i v0 = i0 >= 0 && i0 < W ? avx2_load8(full, row + i0 * xp, nv) : zb;
    const __m128i v1 = i0 + 1 >= 0 && i0 + 1 < W ? avx2_load8(full, row + (i0 + 1) * xp, nv) : zb;
    const __m128i u = _mm_unpacklo_epi8(v0, v1);
    STOREI(d, s8 ? _mm256_cvtepi8_epi16(u) : _mm256_cvtepu8_epi16(u));
}

/* widen input row ih of image n into slot `dst` for channels [c0, c1) */
static void band_widen(const int s8, const onnxc_qconv_dw_args* a, int64_t n, int64_t ih, int64_t c0, int64_t c1,
                       int64_t NP, int32_t* dst) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t xp = a->x_pitch, pl = g->pad_l, W = g->W, ncv = (c1 - c0 + L - 1) / L, plane = NP * L;
    const __m128i zb = _mm_set1_epi8((char)a->xz);
    /* pairs with both columns inside the row: [jlo, jhi) */
    const int64_t jlo = (pl + 1) / 2, jhi0 = (W + pl) / 2, jhi = jhi0 < jlo ? jlo : jhi0 > NP ? NP : jhi0;
    const uint8_t* row;
    int64_t cv, j;
    if (ih < 0 || ih >= g->H) { /* a padding row */
        const __m128i u = _mm_unpacklo_epi8(zb, zb);
        const V z = s8 ? _mm256_cvtepi8_epi16(u) : _mm256_cvtepu8_epi16(u);
        for (cv = 0; cv < ncv; ++cv)
            for (j = 0; j < NP; ++j) STOREI(dst + cv * plane + j * L, z);
        return;
    }
    row = a->x + (n * g->H + ih) * W * xp + c0;
    for (cv = 0; cv < ncv; ++cv) {
        const int64_t nv = c1 - c0 - cv * L < L ? c1 - c0 - cv * L : L;
        const uint8_t* r = row + cv * L;
        int32_t* d = dst + cv * plane;
        for (j = 0; j < jlo && j < NP; ++j) band_pair(s8, nv == L, r, W, xp, 2 * j - pl, nv, zb, d + j * L);
        if (nv == L) {
            const uint8_t* p = r + (2 * jlo - pl) * xp;
            for (j = jlo; j < jhi; ++j, p += 2 * xp) {
                const __m128i u = _mm_unpacklo_epi8(_mm_loadl_epi64((const __m128i*)p), _mm_loadl_epi64((const __m128i*)(p + xp)));
                STOREI(d + j * L, s8 ? _mm256_cvtepi8_epi16(u) : _mm256_cvtepu8_epi16(u));
            }
        } else {
            for (j = jlo; j < jhi; ++j) band_pair(s8, 0, r, W, xp, 2 * j - pl, nv, zb, d + j * L);
        }
        for (j = jhi > jlo ? jhi : jlo; j < NP; ++j) band_pair(s8, nv == L, r, W, xp, 2 * j - pl, nv, zb, d + j * L);
    }
}

/* wb[((kh * 2 + par) * NPP + p) * ncv * 8 + c - c0] = wq[kh][2p - par] | wq[kh][2p + 1 - par] << 16 */
static void band_weights(const onnxc_qconv_dw_args* a, int64_t c0, int64_t ncv, int64_t NPP, int32_t* wb) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t KW = g->KW, cp = a->cp;
    int64_t kh, par, p, cv;
    for (kh = 0; kh < g->KH; ++kh)
        for (par = 0; par < 2; ++par)
            for (p = 0; p < NPP; ++p) {
                const int64_t klo = 2 * p - par, khi = klo + 1;
                int32_t* d = wb + ((kh * 2 + par) * NPP + p) * ncv * L;
                for (cv = 0; cv < ncv; ++cv) {
                    const int64_t c = c0 + cv * L;
                    const V lo = klo >= 0 && klo < KW ? LOADI(a->wq + (kh * KW + klo) * cp + c) : _mm256_setzero_si256();
                    const V hi = khi < KW ? LOADI(a->wq + (kh * KW + khi) * cp + c) : _mm256_setzero_si256();
                    STOREI(d + cv * L, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16)));
                }
            }
}

/* one output row from the KH widened rows R[kh] (SW, NPP compile-time constants where called) */
QGEMM_INLINE void band_row(const int64_t SW, const int64_t NPP, const onnxc_qconv_dw_args* a,
                           const int32_t* const* R, const int32_t* wb, int64_t ncv, int64_t NP, int32_t* acc,
                           int64_t ldacc) {
    const int64_t KH = a->g->KH, OW = a->g->OW, wstride = ncv * L;
    int64_t cv, ow, kh, p;
    int j, par;
    for (cv = 0; cv < ncv; ++cv) {
        const V st = LOADI(a->start + cv * L);
        for (ow = 0; ow + BOB <= OW; ow += BOB) { /* ow even: column j has parity (j * SW) & 1 */
            V s[BOB];
#pragma GCC unroll 8
            for (j = 0; j < BOB; ++j) s[j] = st;
            for (kh = 0; kh < KH; ++kh) {
                const int32_t* r = R[kh] + cv * NP * L + (ow * SW >> 1) * L;
                const int32_t* w = wb + kh * 2 * NPP * wstride + cv * L;
                for (par = 0; par < (SW & 1 ? 2 : 1); ++par) {
#pragma GCC unroll 4
                    for (p = 0; p < NPP; ++p) {
                        const V wv = LOADI(w + (par * NPP + p) * wstride);
#pragma GCC unroll 8
                        for (j = 0; j < BOB; ++j)
                            if (((j * SW) & 1) == par) s[j] = BMADD(s[j], LOADI(r + ((j * SW >> 1) + p) * L), wv);
                    }
                }
            }
#pragma GCC unroll 8
            for (j = 0; j < BOB; ++j) STOREI(acc + (ow + j) * ldacc + cv * L, s[j]);
        }
        for (; ow < OW; ++ow) {
            const int64_t q = ow * SW >> 1, pr = (ow * SW) & 1;
            V s1 = st;
            for (kh = 0; kh < KH; ++kh) {
                const int32_t* r = R[kh] + cv * NP * L + q * L;
                const int32_t* w = wb + (kh * 2 + pr) * NPP * wstride + cv * L;
                for (p = 0; p < NPP; ++p) s1 = BMADD(s1, LOADI(r + p * L), LOADI(w + p * wstride));
            }
            STOREI(acc + ow * ldacc + cv * L, s1);
        }
    }
}

static void avx2_band(const int s8, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh0, int64_t oh1, int64_t c0,
                      int64_t c1, int32_t* acc, int64_t ldacc, int32_t* rows, onnxc_qconv_dw_emit_fn emit, void* ctx) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t KH = g->KH, KW = g->KW, SW = g->stride_w;
    const int64_t NP = onnxc_qconv_dw_band_np_(g), NPP = onnxc_qconv_dw_band_npp_(g), ncv = (c1 - c0 + L - 1) / L;
    int32_t* wb = rows + KH * ncv * NP * L;
    const int32_t* R[7];
    int64_t tag[7], oh, kh;
    int valid[7] = {0, 0, 0, 0, 0, 0, 0};
    band_weights(a, c0, ncv, NPP, wb);
    for (oh = oh0; oh < oh1; ++oh) {
        const int64_t ih0 = oh * g->stride_h - g->pad_t;
        for (kh = 0; kh < KH; ++kh) {
            const int64_t ih = ih0 + kh, slot = (ih % KH + KH) % KH;
            int32_t* d = rows + slot * ncv * NP * L;
            if (!valid[slot] || tag[slot] != ih) {
                band_widen(s8, a, n, ih, c0, c1, NP, d);
                tag[slot] = ih;
                valid[slot] = 1;
            }
            R[kh] = d;
        }
        if (KW == 3 && SW == 1)
            band_row(1, 2, a, R, wb, ncv, NP, acc, ldacc);
        else if (KW == 5 && SW == 1)
            band_row(1, 3, a, R, wb, ncv, NP, acc, ldacc);
        else /* any KW; stride 2 is computed right too, though the driver does not send it */
            band_row(SW, NPP, a, R, wb, ncv, NP, acc, ldacc);
        emit(ctx, n, oh, acc);
    }
}

static void avx2_band_u8(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1,
                         int32_t* acc, int64_t ldacc, int32_t* rows, onnxc_qconv_dw_emit_fn emit, void* ctx) {
    avx2_band(0, a, n, oh0, oh1, c0, c1, acc, ldacc, rows, emit, ctx);
}
static void avx2_band_s8(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1,
                         int32_t* acc, int64_t ldacc, int32_t* rows, onnxc_qconv_dw_emit_fn emit, void* ctx) {
    avx2_band(1, a, n, oh0, oh1, c0, c1, acc, ldacc, rows, emit, ctx);
}
#define BAND_U8 avx2_band_u8
#define BAND_S8 avx2_band_s8
#else
#define BAND_U8 NULL
#define BAND_S8 NULL
#endif

void onnxc_u8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO_BAND(onnxc_u8s8_dwconv_4x8__avx2, L, 0, BAND_U8);
ONNXC_QCONV_DW_INFO_BAND(onnxc_s8s8_dwconv_4x8__avx2, L, 1, BAND_S8);

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
