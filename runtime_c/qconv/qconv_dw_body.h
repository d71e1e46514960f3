/* The SIMD depthwise row, included by qconv_dw_<isa>.c once per kernel with these macros:
 *   DW(name)          a unique name per inclusion
 *   V, L, OWB         vector of L int32 lanes; output pixels per register block
 *   LOADX(p, s8)      L bytes at p widened to int32 lanes (zero- or sign-extended)
 *   LOADX_N(p, s8, n) the same for the first n < L bytes only (no read past them)
 *   LOADI(p), STOREI(p, v), SET1(v)
 *   MADD(acc, x, w)   acc + x * w per lane, x and w int32 lanes whose product is exact in 16 x 16
 *                     bits (vpmaddwd + vpaddd, or vpdpwssd): w's high halves are 0
 *   DW_PAIRED         optional: the interior function for stride 1 instead of DW(interior_k) (same
 *                     signature; the AVX2 kernel's two-rows-per-lane version)
 * Contract: onnxc_qconv_dw_fn (onnxc_qconv.h). For each vector of channels: pixels whose taps are
 * all inside the row run in register blocks of OWB outputs (for stride 1/2 and 3/5 wide kernels
 * the input vectors a block needs are loaded once and reused across kw); rows of taps above or
 * below the image add xz * w, folded into the block's start; the remaining (border) pixels test
 * each tap. */

#ifdef DW_PAIRED
#define DW_IK DW_PAIRED
#else
#define DW_IK DW(interior_k)
#endif

/* full: a whole vector of channels (a compile-time constant where it is called) */
QGEMM_INLINE V DW(px)(const int s8, const int full, const uint8_t* p, int64_t nv) {
    return full ? LOADX(p, s8) : LOADX_N(p, s8, nv);
}

/* one pixel, every tap tested */
QGEMM_INLINE V DW(border_px)(const int s8, const int full, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow,
                             int64_t c, int64_t nv, V st) {
    const onnxc_qconv_geom* g = a->g;
    const V zv = SET1(a->xz);
    int64_t kh, kw;
    for (kh = 0; kh < g->KH; ++kh) {
        const int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
        const int inh = ih >= 0 && ih < g->H;
        for (kw = 0; kw < g->KW; ++kw) {
            const int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
            const V w = LOADI(a->wq + (kh * g->KW + kw) * a->cp + c);
            const V xv = inh && iw >= 0 && iw < g->W ? DW(px)(s8, full, a->x + ((n * g->H + ih) * g->W + iw) * a->x_pitch + c, nv) : zv;
            st = MADD(st, xv, w);
        }
    }
    return st;
}

/* Interior pixels [ow, ow_b) of one row with stride SW and width KW known at compile time
 * (dilation 1): a block of OWB outputs loads its (OWB - 1) * SW + KW input vectors once per kh. */
QGEMM_INLINE void DW(interior_k)(const int s8, const int full, const int64_t SW, const int64_t KW, const onnxc_qconv_dw_args* a,
                                 const uint8_t* img, int64_t ih0, int64_t khlo, int64_t khhi, int64_t ow,
                                 int64_t ow_b, int64_t ow0, int64_t c, int64_t c0, int64_t nv, V st,
                                 int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t xp = a->x_pitch, rowb = g->W * xp, dh = g->dil_h, pl = g->pad_l;
    const int32_t* wq = a->wq + c;
    int64_t kh, kw;
    int j, i;
    for (; ow + OWB <= ow_b; ow += OWB) {
        V s[OWB], xs[(OWB - 1) * 2 + 5];
#pragma GCC unroll 16
        for (j = 0; j < OWB; ++j) s[j] = st;
        for (kh = khlo; kh < khhi; ++kh) {
            const uint8_t* p = img + (ih0 + kh * dh) * rowb + (ow * SW - pl) * xp;
            const int32_t* wk = wq + kh * KW * a->cp;
#pragma GCC unroll 24
            for (i = 0; i < (OWB - 1) * SW + KW; ++i) xs[i] = DW(px)(s8, full, p + i * xp, nv);
#pragma GCC unroll 8
            for (kw = 0; kw < KW; ++kw) {
                const V w = LOADI(wk + kw * a->cp);
#pragma GCC unroll 16
                for (j = 0; j < OWB; ++j) s[j] = MADD(s[j], xs[j * SW + kw], w);
            }
        }
#pragma GCC unroll 16
        for (j = 0; j < OWB; ++j) STOREI(acc + (ow - ow0 + j) * ldacc + (c - c0), s[j]);
    }
    for (; ow < ow_b; ++ow) {
        V s = st;
        for (kh = khlo; kh < khhi; ++kh) {
            const uint8_t* p = img + (ih0 + kh * dh) * rowb + (ow * SW - pl) * xp;
#pragma GCC unroll 8
            for (kw = 0; kw < KW; ++kw) s = MADD(s, DW(px)(s8, full, p + kw * xp, nv), LOADI(wq + (kh * KW + kw) * a->cp));
        }
        STOREI(acc + (ow - ow0) * ldacc + (c - c0), s);
    }
}

/* Interior pixels, any stride, width and dilation */
QGEMM_INLINE void DW(interior_any)(const int s8, const int full, const onnxc_qconv_dw_args* a, const uint8_t* img, int64_t ih0,
                                   int64_t khlo, int64_t khhi, int64_t ow, int64_t ow_b, int64_t ow0, int64_t c,
                                   int64_t c0, int64_t nv, V st, int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t xp = a->x_pitch, rowb = g->W * xp;
    int64_t kh, kw;
    for (; ow < ow_b; ++ow) {
        V s = st;
        for (kh = khlo; kh < khhi; ++kh) {
            const uint8_t* p = img + (ih0 + kh * g->dil_h) * rowb + (ow * g->stride_w - g->pad_l) * xp;
            for (kw = 0; kw < g->KW; ++kw)
                s = MADD(s, DW(px)(s8, full, p + kw * g->dil_w * xp, nv), LOADI(a->wq + (kh * g->KW + kw) * a->cp + c));
        }
        STOREI(acc + (ow - ow0) * ldacc + (c - c0), s);
    }
}

/* one vector of channels at c (nv of them valid) over columns [ow0, ow1) */
QGEMM_INLINE void DW(cvec)(const int s8, const int full, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh,
                           int64_t ow0, int64_t ow1, int64_t ow_a, int64_t ow_b, int64_t khlo, int64_t khhi,
                           int64_t c, int64_t c0, int64_t nv, int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t sw = g->stride_w, KW = g->KW, dw = g->dil_w, ih0 = oh * g->stride_h - g->pad_t;
    const uint8_t* img = a->x + n * g->H * g->W * a->x_pitch + c;
    const V zv = SET1(a->xz);
    const V st = LOADI(a->start + (c - c0));
    V sti = st; /* interior start: rows of taps outside the image add xz * w */
    int64_t kh, kw, ow;
    for (kh = 0; kh < g->KH; ++kh)
        if (kh < khlo || kh >= khhi)
            for (kw = 0; kw < KW; ++kw) sti = MADD(sti, zv, LOADI(a->wq + (kh * KW + kw) * a->cp + c));
    for (ow = ow0; ow < ow_a; ++ow)
        STOREI(acc + (ow - ow0) * ldacc + (c - c0), DW(border_px)(s8, full, a, n, oh, ow, c, nv, st));
    if (dw == 1 && KW == 3 && sw == 1)
        DW_IK(s8, full, 1, 3, a, img, ih0, khlo, khhi, ow_a, ow_b, ow0, c, c0, nv, sti, acc, ldacc);
    else if (dw == 1 && KW == 3 && sw == 2)
        DW(interior_k)(s8, full, 2, 3, a, img, ih0, khlo, khhi, ow_a, ow_b, ow0, c, c0, nv, sti, acc, ldacc);
    else if (dw == 1 && KW == 5 && sw == 1)
        DW_IK(s8, full, 1, 5, a, img, ih0, khlo, khhi, ow_a, ow_b, ow0, c, c0, nv, sti, acc, ldacc);
    else if (dw == 1 && KW == 5 && sw == 2)
        DW(interior_k)(s8, full, 2, 5, a, img, ih0, khlo, khhi, ow_a, ow_b, ow0, c, c0, nv, sti, acc, ldacc);
    else
        DW(interior_any)(s8, full, a, img, ih0, khlo, khhi, ow_a, ow_b, ow0, c, c0, nv, sti, acc, ldacc);
    for (ow = ow_b; ow < ow1; ++ow)
        STOREI(acc + (ow - ow0) * ldacc + (c - c0), DW(border_px)(s8, full, a, n, oh, ow, c, nv, st));
}

QGEMM_INLINE void DW(row)(const int s8, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                          int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    const int64_t sw = g->stride_w, ih0 = oh * g->stride_h - g->pad_t;
    const int64_t lim = g->W - 1 - (g->KW - 1) * g->dil_w + g->pad_l; /* ow * sw <= lim: last tap inside */
    int64_t khlo = 0, khhi = g->KH, ow_a, ow_b, c;
    while (khlo < g->KH && ih0 + khlo * g->dil_h < 0) ++khlo;
    while (khhi > khlo && ih0 + (khhi - 1) * g->dil_h >= g->H) --khhi;
    ow_a = (g->pad_l + sw - 1) / sw;
    ow_b = lim < 0 ? 0 : lim / sw + 1;
    ow_a = ow_a < ow0 ? ow0 : ow_a > ow1 ? ow1 : ow_a;
    ow_b = ow_b < ow_a ? ow_a : ow_b > ow1 ? ow1 : ow_b;
    for (c = c0; c + L <= c1; c += L)
        DW(cvec)(s8, 1, a, n, oh, ow0, ow1, ow_a, ow_b, khlo, khhi, c, c0, L, acc, ldacc);
    if (c < c1)
        DW(cvec)(s8, 0, a, n, oh, ow0, ow1, ow_a, ow_b, khlo, khhi, c, c0, c1 - c, acc, ldacc);
}

#undef DW_IK
