/* NCHWc depthwise convolution (group = C = M, one weight vector per channel block and tap) for
 * one block size; included by conv_nchwc.c after conv_nchwc_body.h, whose job driver
 * (conv_job, conv_run, conv_tasks) and zero vector it uses, with the same macros defined (NB,
 * NB_FN, NB_SIMD and the VT/V* vector macros, NCHWC_CONV_DEPTHWISE: the kernel's full name,
 * undefined at the end) and NB_DW_BORDER_TILES (border pixels in tiles, or one at a time).
 * Memory-bound: no register tile over output blocks, one channel block per call. */

/* Depthwise microkernel: T pixels of one channel block; per tap one input vector per pixel
 * times the tap's weight vector.  BORDER: a tile with pixels whose window leaves the input
 * (iw0: input column of pixel 0's tap 0, SW/DW: column stride and dilation, IW: input width);
 * those read zeros at the taps outside [0, IW), so border pixels run in tiles too. */
static NCHWC_INLINE void NB_FN(mk_dw)(const int T, const int BORDER, const float* X, int64_t xoff,
                                      int64_t xrow, int64_t xcol, int64_t xpix, const float* W,
                                      int64_t KW, const float* bias, const float* Z, float* Y,
                                      float lo, float hi, int64_t valid, int64_t kh0, int64_t kh1,
                                      int64_t kw0, int64_t kw1, int64_t iw0, int64_t IW,
                                      int64_t SW, int64_t DW) {
    int64_t kh, kw;
    int i, l;
#if NB_SIMD
    VT acc[NCHWC_TILE];
    for (i = 0; i < T; ++i) acc[i] = bias ? VLOAD(bias) : VZERO();
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kw0; kw < kw1; ++kw) {
            const float* xp = X + xoff + kh * xrow + kw * xcol;
            const VT w = VLOAD(W + (kh * KW + kw) * NB);
            for (i = 0; i < T; ++i) {
                const int64_t c = iw0 + i * SW + kw * DW;
                const float* xq = !BORDER || (c >= 0 && c < IW) ? xp + i * xpix : NB_FN(zeros);
                acc[i] = VFMA(VLOAD(xq), w, acc[i]);
            }
        }
    for (i = 0; i < T; ++i) {
        VT v = acc[i];
        if (Z) v = VADD(v, VLOAD(Z + i * NB));
        v = VMIN(VSET1(hi), VMAX(VSET1(lo), v));
        VSTORE(Y + i * NB, v);
    }
#else
    float acc[NCHWC_TILE][NB];
    for (i = 0; i < T; ++i)
        for (l = 0; l < NB; ++l) acc[i][l] = bias ? bias[l] : 0.0f;
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kw0; kw < kw1; ++kw) {
            const float* xp = X + xoff + kh * xrow + kw * xcol;
            const float* w = W + (kh * KW + kw) * NB;
            for (i = 0; i < T; ++i) {
                const int64_t c = iw0 + i * SW + kw * DW;
                if (!BORDER || (c >= 0 && c < IW))
                    for (l = 0; l < NB; ++l) acc[i][l] += xp[i * xpix + l] * w[l];
            }
        }
    for (i = 0; i < T; ++i)
        for (l = 0; l < NB; ++l) {
            float v = acc[i][l] + (Z ? Z[i * NB + l] : 0.0f);
            v = v < lo ? lo : v;
            Y[i * NB + l] = v > hi ? hi : v;
        }
#endif
    if (valid < NB)
        for (i = 0; i < T; ++i)
            for (l = (int)valid; l < NB; ++l) Y[i * NB + l] = 0.0f;
}

static void NB_FN(conv_dw)(NB_FN(conv_job) * job, int64_t t0, int64_t t1);

void NCHWC_CONV_DEPTHWISE(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                          const float* B, const float* Z, float* Y) {
    NB_FN(conv_run)(NB_FN(conv_dw), p, X, W, B, Z, Y, 0);
}

static void NB_FN(conv_dw)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int64_t Cb = (p->C + NB - 1) / NB;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t total = p->N * Cb * OH;
    const int parallel = total > 1 && total * OW * NB * KH * KW >= NCHWC_DW_PARALLEL_MIN_WORK;
    int64_t owlo, owhi, t;
    if (p->N <= 0 || p->C <= 0 || OH <= 0 || OW <= 0) return;
    onnxc_geom_valid_range(OW, IW - (KW - 1) * p->DW, p->SW, -p->PL, &owlo, &owhi);
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(conv_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (Cb * OH), cb = (t / OH) % Cb, oh = t % OH;
        const int64_t valid = p->C - cb * NB;
        const int64_t ih0 = oh * p->SH - p->PT;
        const int64_t xbase = ((n * Cb + cb) * IH + ih0) * IW * NB;
        const int64_t xrow = p->DH * IW * NB, xcol = p->DW * NB, xpix = p->SW * NB;
        const float* w = W + cb * KH * KW * NB;
        const float* bias = B ? B + cb * NB : NULL;
        const int64_t yoff = ((n * Cb + cb) * OH + oh) * OW * NB;
        int64_t kh0, kh1, ow = 0;
        onnxc_geom_valid_range(KH, IH, p->DH, ih0, &kh0, &kh1);
        while (ow < OW) {
            const int64_t iw0 = ow * p->SW - p->PL;
            const int64_t xoff = xbase + iw0 * NB;
            const float* z = Z ? Z + yoff + ow * NB : NULL;
            float* y = Y + yoff + ow * NB;
            if (ow >= owlo && ow + 8 <= owhi) {
                NB_FN(mk_dw)(8, 0, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi, valid,
                             kh0, kh1, 0, KW, iw0, IW, p->SW, p->DW);
                ow += 8;
            } else {
#if NB_DW_BORDER_TILES
                /* a tile of up to 8 pixels: before the interior, up to its start when a full
                 * interior tile follows, else (and after the interior) to the row's end; taps
                 * outside the input read as zeros.  A 7-wide row with a 5x5 kernel has no full
                 * interior tile, and lone pixels chain their FMAs. */
                int64_t T = ow < owlo && owlo + 8 <= owhi ? owlo - ow : OW - ow;
                int border;
                T = T < 8 ? T : 8;
                border = ow < owlo || ow + T > owhi;
#define NCHWC_DW_R(k)                                                                             \
    case k:                                                                                       \
        if (border)                                                                               \
            NB_FN(mk_dw)(k, 1, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi, valid, \
                         kh0, kh1, 0, KW, iw0, IW, p->SW, p->DW);                                 \
        else                                                                                      \
            NB_FN(mk_dw)(k, 0, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi, valid, \
                         kh0, kh1, 0, KW, iw0, IW, p->SW, p->DW);                                 \
        break
                switch (T) {
                    NCHWC_DW_R(1); NCHWC_DW_R(2); NCHWC_DW_R(3); NCHWC_DW_R(4);
                    NCHWC_DW_R(5); NCHWC_DW_R(6); NCHWC_DW_R(7); NCHWC_DW_R(8);
                    default: break;
                }
#undef NCHWC_DW_R
                ow += T;
#else
                int64_t kw0, kw1;
                onnxc_geom_valid_range(KW, IW, p->DW, iw0, &kw0, &kw1);
                NB_FN(mk_dw)(1, 0, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi,
                             valid, kh0, kh1, kw0, kw1, iw0, IW, p->SW, p->DW);
                ow += 1;
#endif
            }
        }
    }
}

#undef NCHWC_CONV_DEPTHWISE
