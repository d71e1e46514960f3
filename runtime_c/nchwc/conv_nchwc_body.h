/* NCHWc convolution kernels for one block size; included by conv_nchwc_ref.c once per size
 * with NB (the block, a compile-time constant) and NB_FN(name) (name with the _b<NB> suffix)
 * defined.  See onnxc_nchwc.h for the layouts.
 *
 * Inner loops: NB-wide FMAs over output channels (one weight vector per input channel and
 * kernel tap) with the results of NCHWC_TILE output pixels held in registers; pixels whose
 * whole kernel window lies inside the input (the interior of a row) run in tiles, border
 * pixels one at a time with their valid tap range. */

/* Epilogue of one output pixel: + Z, clamp, store; padding lanes (>= valid) are stored as 0. */
static inline void NB_FN(conv_store)(const float* acc, const float* z, float* y, float lo,
                                     float hi, int64_t valid) {
    int l;
    for (l = 0; l < NB; ++l) {
        float v = acc[l] + (z ? z[l] : 0.0f);
        v = v < lo ? lo : v; /* comparisons keep NaN, as max/min-based Relu/Clip do */
        v = v > hi ? hi : v;
        y[l] = l < valid ? v : 0.0f;
    }
}

static inline void NB_FN(conv_init)(float* acc, const float* bias) {
    int l;
    for (l = 0; l < NB; ++l) acc[l] = bias ? bias[l] : 0.0f;
}

/* Pointwise (1x1, stride 1, no padding): per output block a GEMM over the blocked input
 * channels with the pixels as one long row. */
static void NB_FN(conv_pointwise)(const onnxc_nchwc_conv_params* p, const float* X,
                                  const float* W, const float* B, const float* Z, float* Y) {
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group;
    const int64_t HW = p->OH * p->OW;
    const int64_t chunks = (HW + NCHWC_PW_CHUNK - 1) / NCHWC_PW_CHUNK;
    const int64_t total = p->N * Mb * chunks;
    const int parallel = total > 1 && total * NCHWC_PW_CHUNK * Cbg * NB >= NCHWC_PARALLEL_MIN_WORK;
    int64_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (t = 0; t < total; ++t) {
        const int64_t n = t / (Mb * chunks), ob = (t / chunks) % Mb, ch = t % chunks;
        const int64_t g = ob / Mbg;
        const int64_t s0 = ch * NCHWC_PW_CHUNK;
        const int64_t s1 = s0 + NCHWC_PW_CHUNK < HW ? s0 + NCHWC_PW_CHUNK : HW;
        const int64_t valid = (ob % Mbg) * NB < Mg ? Mg - (ob % Mbg) * NB : 0;
        const float* xg = X + (n * Cb + g * Cbg) * HW * NB;
        const float* wb = W + ob * Cbg * NB * NB;
        const float* bias = B ? B + ob * NB : NULL;
        const int64_t yoff = (n * Mb + ob) * HW * NB;
        int64_t s = s0;
        for (; s + NCHWC_TILE <= s1; s += NCHWC_TILE) {
            float acc[NCHWC_TILE][NB];
            int64_t ib;
            int i, ci, co;
            for (i = 0; i < NCHWC_TILE; ++i) NB_FN(conv_init)(acc[i], bias);
            for (ib = 0; ib < Cbg; ++ib) {
                const float* xp = xg + (ib * HW + s) * NB;
                const float* wk = wb + ib * NB * NB;
                for (ci = 0; ci < NB; ++ci) {
                    const float* wv = wk + ci * NB;
                    for (i = 0; i < NCHWC_TILE; ++i) {
                        const float xv = xp[i * NB + ci];
                        for (co = 0; co < NB; ++co) acc[i][co] += xv * wv[co];
                    }
                }
            }
            for (i = 0; i < NCHWC_TILE; ++i)
                NB_FN(conv_store)(acc[i], Z ? Z + yoff + (s + i) * NB : NULL,
                                  Y + yoff + (s + i) * NB, p->lo, p->hi, valid);
        }
        for (; s < s1; ++s) {
            float acc[NB];
            int64_t ib;
            int ci, co;
            NB_FN(conv_init)(acc, bias);
            for (ib = 0; ib < Cbg; ++ib) {
                const float* xp = xg + (ib * HW + s) * NB;
                const float* wk = wb + ib * NB * NB;
                for (ci = 0; ci < NB; ++ci)
                    for (co = 0; co < NB; ++co) acc[co] += xp[ci] * wk[ci * NB + co];
            }
            NB_FN(conv_store)(acc, Z ? Z + yoff + s * NB : NULL, Y + yoff + s * NB, p->lo,
                              p->hi, valid);
        }
    }
}

void NB_FN(onnxc_nchwc_conv)(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                             const float* B, const float* Z, float* Y) {
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t SW = p->SW, DW = p->DW;
    const int64_t total = p->N * Mb * OH;
    int64_t owlo, owhi, t;
    int parallel;
    if (p->N <= 0 || p->M <= 0 || OH <= 0 || OW <= 0) return;
    if (KH == 1 && KW == 1 && p->SH == 1 && SW == 1 && p->PT == 0 && p->PL == 0 && OH == IH &&
        OW == IW) {
        NB_FN(conv_pointwise)(p, X, W, B, Z, Y);
        return;
    }
    /* interior columns: every tap of the window inside [0, IW) */
    onnxc_geom_valid_range(OW, IW - (KW - 1) * DW, SW, -p->PL, &owlo, &owhi);
    parallel = total > 1 && total * OW * Cbg * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (t = 0; t < total; ++t) {
        const int64_t n = t / (Mb * OH), ob = (t / OH) % Mb, oh = t % OH;
        const int64_t g = ob / Mbg;
        const int64_t valid = (ob % Mbg) * NB < Mg ? Mg - (ob % Mbg) * NB : 0;
        const int64_t ih0 = oh * p->SH - p->PT;
        const float* xg = X + (n * Cb + g * Cbg) * IH * IW * NB;
        const float* wb = W + ob * Cbg * KH * KW * NB * NB;
        const float* bias = B ? B + ob * NB : NULL;
        const int64_t yoff = ((n * Mb + ob) * OH + oh) * OW * NB;
        int64_t khlo, khhi, ow = 0;
        onnxc_geom_valid_range(KH, IH, p->DH, ih0, &khlo, &khhi);
        while (ow < OW) {
            const int tile = ow >= owlo && ow + NCHWC_TILE <= owhi;
            if (tile) {
                float acc[NCHWC_TILE][NB];
                int64_t ib, kh, kw;
                int i, ci, co;
                for (i = 0; i < NCHWC_TILE; ++i) NB_FN(conv_init)(acc[i], bias);
                for (ib = 0; ib < Cbg; ++ib) {
                    for (kh = khlo; kh < khhi; ++kh) {
                        const float* xr = xg + ((ib * IH + ih0 + kh * p->DH) * IW) * NB;
                        for (kw = 0; kw < KW; ++kw) {
                            const float* xp = xr + (ow * SW - p->PL + kw * DW) * NB;
                            const float* wk = wb + ((ib * KH + kh) * KW + kw) * NB * NB;
                            for (ci = 0; ci < NB; ++ci) {
                                const float* wv = wk + ci * NB;
                                for (i = 0; i < NCHWC_TILE; ++i) {
                                    const float xv = xp[i * SW * NB + ci];
                                    for (co = 0; co < NB; ++co) acc[i][co] += xv * wv[co];
                                }
                            }
                        }
                    }
                }
                for (i = 0; i < NCHWC_TILE; ++i)
                    NB_FN(conv_store)(acc[i], Z ? Z + yoff + (ow + i) * NB : NULL,
                                      Y + yoff + (ow + i) * NB, p->lo, p->hi, valid);
                ow += NCHWC_TILE;
            } else {
                float acc[NB];
                int64_t ib, kh, kw, kwlo, kwhi;
                const int64_t iw0 = ow * SW - p->PL;
                int ci, co;
                onnxc_geom_valid_range(KW, IW, DW, iw0, &kwlo, &kwhi);
                NB_FN(conv_init)(acc, bias);
                for (ib = 0; ib < Cbg; ++ib) {
                    for (kh = khlo; kh < khhi; ++kh) {
                        const float* xr = xg + ((ib * IH + ih0 + kh * p->DH) * IW) * NB;
                        for (kw = kwlo; kw < kwhi; ++kw) {
                            const float* xp = xr + (iw0 + kw * DW) * NB;
                            const float* wk = wb + ((ib * KH + kh) * KW + kw) * NB * NB;
                            for (ci = 0; ci < NB; ++ci)
                                for (co = 0; co < NB; ++co) acc[co] += xp[ci] * wk[ci * NB + co];
                        }
                    }
                }
                NB_FN(conv_store)(acc, Z ? Z + yoff + ow * NB : NULL, Y + yoff + ow * NB, p->lo,
                                  p->hi, valid);
                ow += 1;
            }
        }
    }
}

void NB_FN(onnxc_nchwc_conv_depthwise)(const onnxc_nchwc_conv_params* p, const float* X,
                                       const float* W, const float* B, const float* Z,
                                       float* Y) {
    const int64_t Cb = (p->C + NB - 1) / NB;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t total = p->N * Cb * OH;
    const int parallel = total > 1 && total * OW * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
    int64_t t;
    if (p->N <= 0 || p->C <= 0 || OH <= 0 || OW <= 0) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (t = 0; t < total; ++t) {
        const int64_t n = t / (Cb * OH), cb = (t / OH) % Cb, oh = t % OH;
        const int64_t valid = p->C - cb * NB;
        const int64_t ih0 = oh * p->SH - p->PT;
        const float* x = X + (n * Cb + cb) * IH * IW * NB;
        const float* w = W + cb * KH * KW * NB;
        const float* bias = B ? B + cb * NB : NULL;
        const int64_t yoff = ((n * Cb + cb) * OH + oh) * OW * NB;
        int64_t khlo, khhi, ow;
        onnxc_geom_valid_range(KH, IH, p->DH, ih0, &khlo, &khhi);
        for (ow = 0; ow < OW; ++ow) {
            float acc[NB];
            const int64_t iw0 = ow * p->SW - p->PL;
            int64_t kh, kw, kwlo, kwhi;
            int l;
            onnxc_geom_valid_range(KW, IW, p->DW, iw0, &kwlo, &kwhi);
            NB_FN(conv_init)(acc, bias);
            for (kh = khlo; kh < khhi; ++kh) {
                const float* xr = x + (ih0 + kh * p->DH) * IW * NB;
                for (kw = kwlo; kw < kwhi; ++kw) {
                    const float* xp = xr + (iw0 + kw * p->DW) * NB;
                    const float* wv = w + (kh * KW + kw) * NB;
                    for (l = 0; l < NB; ++l) acc[l] += xp[l] * wv[l];
                }
            }
            NB_FN(conv_store)(acc, Z ? Z + yoff + ow * NB : NULL, Y + yoff + ow * NB, p->lo, p->hi,
                              valid);
        }
    }
}

void NB_FN(onnxc_nchwc_conv_nchw)(const onnxc_nchwc_conv_params* p, const float* X,
                                  const float* W, const float* B, const float* Z, float* Y) {
    const int64_t C = p->C, Mb = (p->M + NB - 1) / NB;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t SW = p->SW, DW = p->DW;
    const int64_t total = p->N * Mb * OH;
    int64_t owlo, owhi, t;
    int parallel;
    if (p->N <= 0 || p->M <= 0 || OH <= 0 || OW <= 0) return;
    onnxc_geom_valid_range(OW, IW - (KW - 1) * DW, SW, -p->PL, &owlo, &owhi);
    parallel = total > 1 && total * OW * C * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (t = 0; t < total; ++t) {
        const int64_t n = t / (Mb * OH), ob = (t / OH) % Mb, oh = t % OH;
        const int64_t valid = p->M - ob * NB;
        const int64_t ih0 = oh * p->SH - p->PT;
        const float* xn = X + n * C * IH * IW;
        const float* wb = W + ob * C * KH * KW * NB;
        const float* bias = B ? B + ob * NB : NULL;
        const int64_t yoff = ((n * Mb + ob) * OH + oh) * OW * NB;
        int64_t khlo, khhi, ow = 0;
        onnxc_geom_valid_range(KH, IH, p->DH, ih0, &khlo, &khhi);
        while (ow < OW) {
            const int tile = ow >= owlo && ow + NCHWC_TILE <= owhi;
            const int T = tile ? NCHWC_TILE : 1;
            const int64_t iw0 = ow * SW - p->PL;
            float acc[NCHWC_TILE][NB];
            int64_t c, kh, kw, kwlo = 0, kwhi = KW;
            int i, co;
            if (!tile) onnxc_geom_valid_range(KW, IW, DW, iw0, &kwlo, &kwhi);
            for (i = 0; i < T; ++i) NB_FN(conv_init)(acc[i], bias);
            for (c = 0; c < C; ++c) {
                for (kh = khlo; kh < khhi; ++kh) {
                    const float* xr = xn + (c * IH + ih0 + kh * p->DH) * IW;
                    const float* wr = wb + (c * KH + kh) * KW * NB;
                    for (kw = kwlo; kw < kwhi; ++kw) {
                        const float* wv = wr + kw * NB;
                        const float* xp = xr + iw0 + kw * DW;
                        if (tile) {
                            for (i = 0; i < NCHWC_TILE; ++i) {
                                const float xv = xp[i * SW];
                                for (co = 0; co < NB; ++co) acc[i][co] += xv * wv[co];
                            }
                        } else {
                            const float xv = xp[0];
                            for (co = 0; co < NB; ++co) acc[0][co] += xv * wv[co];
                        }
                    }
                }
            }
            for (i = 0; i < T; ++i)
                NB_FN(conv_store)(acc[i], Z ? Z + yoff + (ow + i) * NB : NULL,
                                  Y + yoff + (ow + i) * NB, p->lo, p->hi, valid);
            ow += T;
        }
    }
}
