/* NCHWc convolution kernels for one block size; included by conv_nchwc_ref.c once per size
 * with NB (the block, a compile-time constant), NB_FN(name) (name with the _b<NB> suffix) and
 * NB_SIMD (1: the VT/V* vector macros below are one NB-float register) defined.  See
 * onnxc_nchwc.h for the layouts.
 *
 * Every variant runs the same microkernel: T output pixels (T = 8, 4 or 1, a constant after
 * inlining) of one output block, accumulated in T registers of NB floats; per input channel and
 * kernel tap one weight vector (NB output channels) meets T broadcast input values (one FMA
 * each).  Pixels whose whole window lies inside the input (a row's interior) run in tiles;
 * border pixels one at a time over their valid taps.  The portable path is the same loop nest
 * on float arrays. */

/* What the microkernel needs besides pointers: input blocks (or channels) to sum over and the
 * strides in floats between them, between input channels inside a block (1, or 0 taps for
 * plain NCHW input where nci = 1), kernel rows, columns and output pixels; chunk: input blocks
 * per pass over an output row. */
typedef struct {
    int64_t nblk, chunk, nci, xblk, wblk, wtap, xrow, xcol, xpix, KW, valid;
    float lo, hi;
} NB_FN(mk_args);

/* Y[0..T) (NB floats per pixel) += the sums over input blocks [ib0, ib1): the first chunk
 * (first) starts from the bias instead of Y, the last (last) adds Z, clamps and zeroes the
 * padding lanes (>= valid).  X + xoff is tap (0, 0) of pixel 0 (may lie outside X: only the
 * taps [kh0, kh1) x [kw0, kw1) are read).  Splitting the input blocks into chunks keeps one
 * chunk's weights in L1 while a whole output row reuses them. */
static NCHWC_INLINE void NB_FN(mk)(const NB_FN(mk_args) * a, const int T, const float* X,
                                   int64_t xoff, const float* W, const float* bias,
                                   const float* Z, float* Y, int64_t kh0, int64_t kh1,
                                   int64_t kw0, int64_t kw1, int64_t ib0, int64_t ib1, int first,
                                   int last) {
    int64_t ib, kh, kw, ci;
    int i, l;
#if NB_SIMD
    VT acc[NCHWC_TILE];
    for (i = 0; i < T; ++i) acc[i] = !first ? VLOAD(Y + i * NB) : bias ? VLOAD(bias) : VZERO();
    if (T == 1 && a->nci == NB) {
        /* a lone (border) pixel: four chains over the input channels instead of one, so the
         * FMA latency does not serialize it */
        VT part[4];
        for (i = 0; i < 4; ++i) part[i] = VZERO();
        for (ib = ib0; ib < ib1; ++ib)
            for (kh = kh0; kh < kh1; ++kh)
                for (kw = kw0; kw < kw1; ++kw) {
                    const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                    const float* wp = W + ib * a->wblk + (kh * a->KW + kw) * a->wtap;
                    for (ci = 0; ci < NB; ci += 4)
                        for (i = 0; i < 4; ++i)
                            part[i] = VFMA(VSET1(xp[ci + i]), VLOAD(wp + (ci + i) * NB), part[i]);
                }
        acc[0] = VADD(acc[0], VADD(VADD(part[0], part[1]), VADD(part[2], part[3])));
    } else {
    for (ib = ib0; ib < ib1; ++ib)
        for (kh = kh0; kh < kh1; ++kh)
            for (kw = kw0; kw < kw1; ++kw) {
                const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                const float* wp = W + ib * a->wblk + (kh * a->KW + kw) * a->wtap;
                for (ci = 0; ci < a->nci; ++ci) {
                    const VT w = VLOAD(wp + ci * NB);
                    for (i = 0; i < T; ++i) acc[i] = VFMA(VSET1(xp[i * a->xpix + ci]), w, acc[i]);
                }
            }
    }
    if (!last) {
        for (i = 0; i < T; ++i) VSTORE(Y + i * NB, acc[i]);
        return;
    }
    for (i = 0; i < T; ++i) {
        VT v = acc[i];
        if (Z) v = VADD(v, VLOAD(Z + i * NB));
        /* max/min with v second: a NaN v passes through, as the C comparisons would */
        v = VMIN(VSET1(a->hi), VMAX(VSET1(a->lo), v));
        VSTORE(Y + i * NB, v);
    }
#else
    float acc[NCHWC_TILE][NB];
    for (i = 0; i < T; ++i)
        for (l = 0; l < NB; ++l) acc[i][l] = !first ? Y[i * NB + l] : bias ? bias[l] : 0.0f;
    for (ib = ib0; ib < ib1; ++ib)
        for (kh = kh0; kh < kh1; ++kh)
            for (kw = kw0; kw < kw1; ++kw) {
                const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                const float* wp = W + ib * a->wblk + (kh * a->KW + kw) * a->wtap;
                for (ci = 0; ci < a->nci; ++ci) {
                    const float* w = wp + ci * NB;
                    for (i = 0; i < T; ++i) {
                        const float xv = xp[i * a->xpix + ci];
                        for (l = 0; l < NB; ++l) acc[i][l] += xv * w[l];
                    }
                }
            }
    if (!last) {
        for (i = 0; i < T; ++i)
            for (l = 0; l < NB; ++l) Y[i * NB + l] = acc[i][l];
        return;
    }
    for (i = 0; i < T; ++i)
        for (l = 0; l < NB; ++l) {
            float v = acc[i][l] + (Z ? Z[i * NB + l] : 0.0f);
            v = v < a->lo ? a->lo : v; /* comparisons keep NaN, as max/min-based Relu/Clip do */
            Y[i * NB + l] = v > a->hi ? a->hi : v;
        }
#endif
    if (a->valid < NB)
        for (i = 0; i < T; ++i)
            for (l = (int)a->valid; l < NB; ++l) Y[i * NB + l] = 0.0f;
}

/* Input blocks whose weights (wblk floats each) fit the L1 budget; at least one. */
static inline int64_t NB_FN(chunk)(int64_t wblk) {
    const int64_t n = NCHWC_L1_WEIGHTS / (wblk * (int64_t)sizeof(float));
    return n > 0 ? n : 1;
}

/* One output row segment [ow0, ow1) of a window conv: tiles over the interior [owlo, owhi)
 * (every kernel column inside the input), single pixels elsewhere.  iw(ow) = ow*SW - PL;
 * xbase: offset of (row ih0, column 0) of the first block/channel. */
static NCHWC_INLINE void NB_FN(conv_row)(const NB_FN(mk_args) * a, const float* X, int64_t xbase,
                                         const float* W, const float* bias, const float* Z,
                                         float* Y, int64_t OW, int64_t IW, int64_t SW, int64_t PL,
                                         int64_t DW, int64_t owlo, int64_t owhi, int64_t kh0,
                                         int64_t kh1, int64_t cstride) {
    /* cstride: floats between input columns (NB blocked, 1 plain) */
    int64_t ib0;
    for (ib0 = 0; ib0 < a->nblk; ib0 += a->chunk) {
    const int64_t ib1 = ib0 + a->chunk < a->nblk ? ib0 + a->chunk : a->nblk;
    const int first = ib0 == 0, last = ib1 == a->nblk;
    int64_t ow = 0;
    while (ow < OW) {
        const int64_t iw0 = ow * SW - PL;
        const int64_t xoff = xbase + iw0 * cstride;
        const float* z = Z ? Z + ow * NB : NULL;
        if (ow >= owlo && ow + 8 <= owhi) {
            NB_FN(mk)(a, 8, X, xoff, W, bias, z, Y + ow * NB, kh0, kh1, 0, a->KW, ib0, ib1, first, last);
            ow += 8;
        } else if (ow >= owlo && ow + 4 <= owhi) {
            NB_FN(mk)(a, 4, X, xoff, W, bias, z, Y + ow * NB, kh0, kh1, 0, a->KW, ib0, ib1, first, last);
            ow += 4;
        } else {
            int64_t kw0, kw1;
            onnxc_geom_valid_range(a->KW, IW, DW, iw0, &kw0, &kw1);
            NB_FN(mk)(a, 1, X, xoff, W, bias, z, Y + ow * NB, kh0, kh1, kw0, kw1, ib0, ib1, first, last);
            ow += 1;
        }
    }
    }
}

/* Pointwise (1x1, stride 1, no padding): per output block a GEMM over the blocked input
 * channels with the pixels as one long row. */
#include "onnxc_threads.h"

/* One convolution's arguments; body(job, t0, t1) runs its tasks [t0, t1), and with t1 < 0
 * decides whether to split them across the runtime's pool (onnxc_threads.h). */
typedef struct NB_FN(conv_job_s) {
    const onnxc_nchwc_conv_params* p;
    const float *X, *W, *B, *Z;
    float* Y;
    int nchw_input;
    void (*body)(struct NB_FN(conv_job_s) *, int64_t, int64_t);
} NB_FN(conv_job);

static void NB_FN(conv_tasks)(void* job, int64_t t0, int64_t t1) {
    ((NB_FN(conv_job)*)job)->body((NB_FN(conv_job)*)job, t0, t1);
}

static void NB_FN(conv_run)(void (*body)(NB_FN(conv_job) *, int64_t, int64_t),
                            const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                            const float* B, const float* Z, float* Y, int nchw_input) {
    NB_FN(conv_job) job;
    job.p = p; job.X = X; job.W = W; job.B = B; job.Z = Z; job.Y = Y;
    job.nchw_input = nchw_input; job.body = body;
    body(&job, 0, -1);
}

static void NB_FN(conv_pointwise)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group;
    const int64_t HW = p->OH * p->OW;
    const int64_t chunks = (HW + NCHWC_PW_CHUNK - 1) / NCHWC_PW_CHUNK;
    const int64_t total = p->N * Mb * chunks;
    const int parallel = total > 1 && total * NCHWC_PW_CHUNK * Cbg * NB * NB >= NCHWC_PARALLEL_MIN_WORK;
    int64_t t;
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(conv_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (Mb * chunks), ob = (t / chunks) % Mb, ch = t % chunks;
        const int64_t g = ob / Mbg;
        const int64_t s1 = (ch + 1) * NCHWC_PW_CHUNK < HW ? (ch + 1) * NCHWC_PW_CHUNK : HW;
        const int64_t xbase = (n * Cb + g * Cbg) * HW * NB;
        const int64_t yoff = (n * Mb + ob) * HW * NB;
        const float* bias = B ? B + ob * NB : NULL;
        NB_FN(mk_args) a;
        int64_t s = ch * NCHWC_PW_CHUNK;
        a.nblk = Cbg; a.nci = NB; a.xblk = HW * NB; a.wblk = NB * NB; a.wtap = NB * NB;
        a.xrow = 0; a.xcol = 0; a.xpix = NB; a.KW = 1;
        a.valid = (ob % Mbg) * NB < Mg ? Mg - (ob % Mbg) * NB : 0;
        a.lo = p->lo; a.hi = p->hi;
        a.chunk = NB_FN(chunk)(NB * NB);
        {
            const int64_t s0 = s;
            int64_t ib0;
            for (ib0 = 0; ib0 < Cbg; ib0 += a.chunk) {
                const int64_t ib1 = ib0 + a.chunk < Cbg ? ib0 + a.chunk : Cbg;
                const int first = ib0 == 0, last = ib1 == Cbg;
                for (s = s0; s + 8 <= s1; s += 8)
                    NB_FN(mk)(&a, 8, X, xbase + s * NB, W + ob * Cbg * NB * NB, bias,
                              Z ? Z + yoff + s * NB : NULL, Y + yoff + s * NB, 0, 1, 0, 1, ib0, ib1,
                              first, last);
                for (; s < s1; ++s)
                    NB_FN(mk)(&a, 1, X, xbase + s * NB, W + ob * Cbg * NB * NB, bias,
                              Z ? Z + yoff + s * NB : NULL, Y + yoff + s * NB, 0, 1, 0, 1, ib0, ib1,
                              first, last);
            }
        }
    }
}

/* Direct (blocked input) and plain-NCHW-input convolutions share the row driver; they differ in
 * what one "input block" is (NB channels of a blocked plane, or one plain channel plane). */
static void NB_FN(conv_window)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int nchw_input = job->nchw_input;
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t cstride = nchw_input ? 1 : NB;
    const int64_t total = p->N * Mb * OH;
    int64_t owlo, owhi, t;
    int parallel;
    /* interior columns: every tap of the window inside [0, IW) */
    onnxc_geom_valid_range(OW, IW - (KW - 1) * p->DW, p->SW, -p->PL, &owlo, &owhi);
    parallel = total > 1 && total * OW * Cg * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(conv_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (Mb * OH), ob = (t / OH) % Mb, oh = t % OH;
        const int64_t g = ob / Mbg;
        const int64_t ih0 = oh * p->SH - p->PT;
        const int64_t yoff = ((n * Mb + ob) * OH + oh) * OW * NB;
        NB_FN(mk_args) a;
        int64_t kh0, kh1, xbase;
        const float* wb;
        onnxc_geom_valid_range(KH, IH, p->DH, ih0, &kh0, &kh1);
        if (nchw_input) {
            a.nblk = p->C; a.nci = 1; a.xblk = IH * IW; a.wblk = KH * KW * NB; a.wtap = NB;
            xbase = n * p->C * IH * IW + ih0 * IW;
            wb = W + ob * p->C * KH * KW * NB;
        } else {
            a.nblk = Cbg; a.nci = NB; a.xblk = IH * IW * NB; a.wblk = KH * KW * NB * NB;
            a.wtap = NB * NB;
            xbase = ((n * Cb + g * Cbg) * IH + ih0) * IW * NB;
            wb = W + ob * Cbg * KH * KW * NB * NB;
        }
        a.xrow = p->DH * IW * cstride; a.xcol = p->DW * cstride; a.xpix = p->SW * cstride;
        a.KW = KW; a.lo = p->lo; a.hi = p->hi;
        a.valid = (ob % Mbg) * NB < Mg ? Mg - (ob % Mbg) * NB : 0;
        a.chunk = NB_FN(chunk)(a.wblk);
        NB_FN(conv_row)(&a, X, xbase, wb, B ? B + ob * NB : NULL, Z ? Z + yoff : NULL, Y + yoff,
                        OW, IW, p->SW, p->PL, p->DW, owlo, owhi, kh0, kh1, cstride);
    }
}

void NB_FN(onnxc_nchwc_conv)(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                             const float* B, const float* Z, float* Y) {
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    if (p->KH == 1 && p->KW == 1 && p->SH == 1 && p->SW == 1 && p->PT == 0 && p->PL == 0 &&
        p->OH == p->IH && p->OW == p->IW)
        NB_FN(conv_run)(NB_FN(conv_pointwise), p, X, W, B, Z, Y, 0);
    else
        NB_FN(conv_run)(NB_FN(conv_window), p, X, W, B, Z, Y, 0);
}

void NB_FN(onnxc_nchwc_conv_nchw)(const onnxc_nchwc_conv_params* p, const float* X,
                                  const float* W, const float* B, const float* Z, float* Y) {
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    NB_FN(conv_run)(NB_FN(conv_window), p, X, W, B, Z, Y, 1);
}

/* Depthwise microkernel: T pixels of one channel block; per tap one input vector per pixel
 * times the tap's weight vector. */
static NCHWC_INLINE void NB_FN(mk_dw)(const int T, const float* X, int64_t xoff, int64_t xrow,
                                      int64_t xcol, int64_t xpix, const float* W, int64_t KW,
                                      const float* bias, const float* Z, float* Y, float lo,
                                      float hi, int64_t valid, int64_t kh0, int64_t kh1,
                                      int64_t kw0, int64_t kw1) {
    int64_t kh, kw;
    int i, l;
#if NB_SIMD
    VT acc[NCHWC_TILE];
    for (i = 0; i < T; ++i) acc[i] = bias ? VLOAD(bias) : VZERO();
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kw0; kw < kw1; ++kw) {
            const float* xp = X + xoff + kh * xrow + kw * xcol;
            const VT w = VLOAD(W + (kh * KW + kw) * NB);
            for (i = 0; i < T; ++i) acc[i] = VFMA(VLOAD(xp + i * xpix), w, acc[i]);
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
            for (i = 0; i < T; ++i)
                for (l = 0; l < NB; ++l) acc[i][l] += xp[i * xpix + l] * w[l];
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

void NB_FN(onnxc_nchwc_conv_depthwise)(const onnxc_nchwc_conv_params* p, const float* X,
                                       const float* W, const float* B, const float* Z,
                                       float* Y) {
    NB_FN(conv_run)(NB_FN(conv_dw), p, X, W, B, Z, Y, 0);
}

static void NB_FN(conv_dw)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int64_t Cb = (p->C + NB - 1) / NB;
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t total = p->N * Cb * OH;
    const int parallel = total > 1 && total * OW * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
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
                NB_FN(mk_dw)(8, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi, valid,
                             kh0, kh1, 0, KW);
                ow += 8;
            } else {
                int64_t kw0, kw1;
                onnxc_geom_valid_range(KW, IW, p->DW, iw0, &kw0, &kw1);
                NB_FN(mk_dw)(1, X, xoff, xrow, xcol, xpix, w, KW, bias, z, y, p->lo, p->hi, valid,
                             kh0, kh1, kw0, kw1);
                ow += 1;
            }
        }
    }
}
