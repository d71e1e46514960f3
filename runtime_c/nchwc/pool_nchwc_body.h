/* NCHWc pooling, reorders and per-channel scale/shift for one block size; included by
 * pool_nchwc.c once per size with NB, NB_FN(name), NB_SIMD (1: the VT/V* macros are one
 * NB-float register) and the full names of the kernels it defines (NCHWC_MAXPOOL, ...,
 * NCHWC_SCALE_SHIFT; undefined at the end) defined (see conv_nchwc_body.h).  Every loop works on whole NB-lane
 * channel vectors; padding lanes come out as zeros. */

#include "onnxc_threads.h"

/* One call's arguments; body(job, t0, t1) runs its tasks [t0, t1), and with t1 < 0 decides
 * whether to split them across the runtime's pool (onnxc_threads.h). */
typedef struct NB_FN(pool_job_s) {
    const onnxc_nchwc_pool_params* p;
    int64_t N, C, HW;
    int is_max, nchw_out;
    const float *X, *S, *T;
    const int32_t* chan; /* reorder_input: source channel of each output channel (NULL: identity) */
    float* Y;
    void (*body)(struct NB_FN(pool_job_s) *, int64_t, int64_t);
} NB_FN(pool_job);

static void NB_FN(pool_tasks)(void* job, int64_t t0, int64_t t1) {
    ((NB_FN(pool_job)*)job)->body((NB_FN(pool_job)*)job, t0, t1);
}

static void NB_FN(pool_run)(void (*body)(NB_FN(pool_job) *, int64_t, int64_t),
                            const onnxc_nchwc_pool_params* p, int64_t N, int64_t C, int64_t HW,
                            int is_max, int nchw_out, const float* X, const float* S,
                            const float* T, float* Y) {
    NB_FN(pool_job) job;
    job.p = p; job.N = N; job.C = C; job.HW = HW; job.is_max = is_max; job.nchw_out = nchw_out;
    job.X = X; job.S = S; job.T = T; job.Y = Y; job.body = body; job.chan = NULL;
    body(&job, 0, -1);
}

/* Zero the padding lanes (>= valid) of n consecutive pixels: only an empty max window
 * (-FLT_MAX) can make them nonzero, the inputs' padding lanes being zero. */
static inline void NB_FN(pool_zero_pad)(float* y, int64_t n, int64_t valid) {
    int64_t i;
    int l;
    if (valid >= NB) return;
    for (i = 0; i < n; ++i)
        for (l = (int)valid; l < NB; ++l) y[i * NB + l] = 0.0f;
}

/* Max over the taps [kh0, kh1) x [kw0, kw1) of the window whose tap (0, 0) is at xp (whole
 * NB-lane vectors).  The first tap is taken as is (NaN included), later ones only when
 * larger: onnxc_maxpool's rule, lane by lane (VMAX(a, b) is a > b ? a : b).  An empty window
 * gives -FLT_MAX, as onnxc_maxpool. */
static inline void NB_FN(max_window)(const float* xp, int64_t xrow, int64_t xcol, int64_t kh0,
                                     int64_t kh1, int64_t kw0, int64_t kw1, float* y) {
    int64_t kh, kw;
#if NB_SIMD
    VT m;
    if (kh0 >= kh1 || kw0 >= kw1) {
        VSTORE(y, VSET1(-FLT_MAX));
        return;
    }
    m = VLOAD(xp + kh0 * xrow + kw0 * xcol);
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kh == kh0 ? kw0 + 1 : kw0; kw < kw1; ++kw) m = VMAX(VLOAD(xp + kh * xrow + kw * xcol), m);
    VSTORE(y, m);
#else
    float m[NB];
    int l;
    if (kh0 >= kh1 || kw0 >= kw1) {
        for (l = 0; l < NB; ++l) y[l] = -FLT_MAX;
        return;
    }
    for (l = 0; l < NB; ++l) m[l] = xp[kh0 * xrow + kw0 * xcol + l];
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kh == kh0 ? kw0 + 1 : kw0; kw < kw1; ++kw) {
            const float* x = xp + kh * xrow + kw * xcol;
            for (l = 0; l < NB; ++l) m[l] = x[l] > m[l] ? x[l] : m[l];
        }
    for (l = 0; l < NB; ++l) y[l] = m[l];
#endif
}

/* Sum of the taps [kh0, kh1) x [kw0, kw1) divided by cnt (0 for an empty window). */
static inline void NB_FN(avg_window)(const float* xp, int64_t xrow, int64_t xcol, int64_t kh0,
                                     int64_t kh1, int64_t kw0, int64_t kw1, float cnt, float* y) {
    int64_t kh, kw;
#if NB_SIMD
    VT s = VZERO();
    if (kh0 >= kh1 || kw0 >= kw1) {
        VSTORE(y, s); /* window entirely in padding */
        return;
    }
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kw0; kw < kw1; ++kw) s = VADD(s, VLOAD(xp + kh * xrow + kw * xcol));
    VSTORE(y, VDIV(s, VSET1(cnt)));
#else
    float s[NB];
    int l;
    for (l = 0; l < NB; ++l) s[l] = 0.0f;
    if (kh0 >= kh1 || kw0 >= kw1) {
        for (l = 0; l < NB; ++l) y[l] = 0.0f;
        return;
    }
    for (kh = kh0; kh < kh1; ++kh)
        for (kw = kw0; kw < kw1; ++kw) {
            const float* x = xp + kh * xrow + kw * xcol;
            for (l = 0; l < NB; ++l) s[l] += x[l];
        }
    for (l = 0; l < NB; ++l) y[l] = s[l] / cnt;
#endif
}

/* Number of window positions start + t*d (t < k) below end. */
static int64_t NB_FN(pool_count_below)(int64_t start, int64_t k, int64_t d, int64_t end) {
    int64_t n;
    if (end <= start) return 0;
    n = (end - start - 1) / d + 1;
    return n < k ? n : k;
}

/* Max (job->is_max) or average pool; tasks are (n, channel block, output row).  Per output
 * row the valid kernel rows are computed once; columns whose whole window lies inside the
 * input (the interior [owlo, owhi)) skip the per-pixel range computation (two divisions, the
 * main cost of small windows otherwise). */
static void NB_FN(pool2d_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_pool_params* p = job->p;
    const int is_avg = !job->is_max;
    const float* X = job->X;
    float* Y = job->Y;
    const int64_t Cb = (p->C + NB - 1) / NB, total = p->N * Cb * p->OH;
    const int parallel = total > 1 && total * p->OW * p->KH * p->KW * NB >= NCHWC_POOL_MIN_WORK;
    const int64_t xrow = p->DH * p->IW * NB, xcol = p->DW * NB;
    int64_t owlo, owhi, t;
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(pool_tasks), job);
        return;
    }
    onnxc_geom_valid_range(p->OW, p->IW - (p->KW - 1) * p->DW, p->SW, -p->PL, &owlo, &owhi);
    for (t = t0; t < t1; ++t) {
        const int64_t nc = t / p->OH, oh = t % p->OH;
        const int64_t valid = p->C - (nc % Cb) * NB;
        const int64_t ih0 = oh * p->SH - p->PT;
        const float* x = X + (nc * p->IH + ih0) * p->IW * NB; /* row ih0 (may lie outside X) */
        float* y = Y + (nc * p->OH + oh) * p->OW * NB;
        int64_t khlo, khhi, ch = 0, ow;
        onnxc_geom_valid_range(p->KH, p->IH, p->DH, ih0, &khlo, &khhi);
        if (is_avg)
            ch = p->count_include_pad ? NB_FN(pool_count_below)(ih0, p->KH, p->DH, p->IH + p->PB)
                                      : khhi - khlo;
        for (ow = 0; ow < p->OW; ++ow) {
            const int64_t iw0 = ow * p->SW - p->PL;
            const float* xp = x + iw0 * NB;
            int64_t kwlo = 0, kwhi = p->KW;
            if (ow < owlo || ow >= owhi) onnxc_geom_valid_range(p->KW, p->IW, p->DW, iw0, &kwlo, &kwhi);
            if (!is_avg) {
                NB_FN(max_window)(xp, xrow, xcol, khlo, khhi, kwlo, kwhi, y + ow * NB);
            } else {
                const int64_t cw = p->count_include_pad
                                       ? NB_FN(pool_count_below)(iw0, p->KW, p->DW, p->IW + p->PR)
                                       : kwhi - kwlo;
                NB_FN(avg_window)(xp, xrow, xcol, khlo, khhi, kwlo, kwhi, (float)(ch * cw), y + ow * NB);
            }
        }
        NB_FN(pool_zero_pad)(y, p->OW, valid);
    }
}

void NCHWC_MAXPOOL(const onnxc_nchwc_pool_params* p, const float* X, float* Y) {
    NB_FN(pool_run)(NB_FN(pool2d_tasks), p, 0, 0, 0, 1, 0, X, NULL, NULL, Y);
}

void NCHWC_AVGPOOL(const onnxc_nchwc_pool_params* p, const float* X, float* Y) {
    NB_FN(pool_run)(NB_FN(pool2d_tasks), p, 0, 0, 0, 0, 0, X, NULL, NULL, Y);
}

static void NB_FN(global_pool_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1);

void NCHWC_GLOBAL_POOL(int64_t N, int64_t C, int64_t HW, int is_max, int nchw_out, const float* X,
                       float* Y) {
    NB_FN(pool_run)(NB_FN(global_pool_tasks), NULL, N, C, HW, is_max, nchw_out, X, NULL, NULL, Y);
}

static void NB_FN(global_pool_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1) {
    const int64_t N = job->N, C = job->C, HW = job->HW;
    const int is_max = job->is_max, nchw_out = job->nchw_out;
    const float* X = job->X;
    float* Y = job->Y;
    const int64_t Cb = (C + NB - 1) / NB, total = N * Cb;
    const int parallel = total > 1 && total * HW * NB >= NCHWC_POOL_MIN_WORK;
    int64_t t;
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(pool_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / Cb, cb = t % Cb, valid = C - cb * NB;
        const float* x = X + t * HW * NB;
        float r[NB];
        int64_t s;
        int l;
        if (is_max) {
            for (l = 0; l < NB; ++l) r[l] = HW > 0 ? x[l] : -FLT_MAX;
            for (s = 1; s < HW; ++s)
                for (l = 0; l < NB; ++l) r[l] = x[s * NB + l] > r[l] ? x[s * NB + l] : r[l];
        } else {
            for (l = 0; l < NB; ++l) r[l] = 0.0f;
            for (s = 0; s < HW; ++s)
                for (l = 0; l < NB; ++l) r[l] += x[s * NB + l];
            for (l = 0; l < NB; ++l) r[l] = HW > 0 ? r[l] / (float)HW : 0.0f;
        }
        if (nchw_out) {
            for (l = 0; l < NB && l < valid; ++l) Y[n * C + cb * NB + l] = r[l];
        } else {
            for (l = 0; l < NB; ++l) Y[t * NB + l] = l < valid ? r[l] : 0.0f;
        }
    }
}

static void NB_FN(reorder_input_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1);

void NCHWC_REORDER_INPUT(int64_t N, int64_t C, int64_t HW, const float* X, float* Y) {
    NB_FN(pool_run)(NB_FN(reorder_input_tasks), NULL, N, C, HW, 0, 0, X, NULL, NULL, Y);
}

void NCHWC_REORDER_INPUT_PERM(int64_t N, int64_t C, int64_t HW, const float* X,
                              const int32_t* chan, float* Y) {
    NB_FN(pool_job) job;
    job.p = NULL; job.N = N; job.C = C; job.HW = HW; job.is_max = 0; job.nchw_out = 0;
    job.X = X; job.S = NULL; job.T = NULL; job.Y = Y; job.chan = chan;
    job.body = NB_FN(reorder_input_tasks);
    job.body(&job, 0, -1);
}

/* The reorders' tasks are (image, channel block).  Called with t1 < 0 (the entry): hands all of
 * them to the pool and returns 1; else returns 0 and the caller runs tasks [t0, t1). */
static int NB_FN(reorder_dispatch)(NB_FN(pool_job) * job, int64_t t1) {
    const int64_t total = job->N * ((job->C + NB - 1) / NB);
    if (t1 >= 0)
        return 0;
    onnxc_parallel_for(total, total > 1 && total * job->HW * NB >= NCHWC_POOL_MIN_WORK, NB_FN(pool_tasks), job);
    return 1;
}

static void NB_FN(reorder_input_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1) {
    const int64_t C = job->C, HW = job->HW;
    const float* X = job->X;
    float* Y = job->Y;
    const int64_t Cb = (C + NB - 1) / NB;
    int64_t t;
    if (NB_FN(reorder_dispatch)(job, t1))
        return;
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / Cb, cb = t % Cb, valid = C - cb * NB;
        const float* xn = X + n * C * HW;
        float* y = Y + t * HW * NB;
        const float* xc[NB]; /* each lane's source channel plane (padding lanes: unused) */
        int64_t s = 0;
        int l;
        for (l = 0; l < NB; ++l)
            xc[l] = xn + (l < valid ? (job->chan ? job->chan[cb * NB + l] : cb * NB + l) : 0) * HW;
#if NCHWC_TR8
        /* 8 pixels x 8 channels at a time: 8 channel rows loaded, transposed in registers */
        if (valid >= NB)
            for (; s + 8 <= HW; s += 8) {
                int l0;
                for (l0 = 0; l0 < NB; l0 += 8) {
                    __m256 r[8];
                    int i;
                    for (i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(xc[l0 + i] + s);
                    onnxc_nchwc_tr8(r);
                    for (i = 0; i < 8; ++i) _mm256_storeu_ps(y + (s + i) * NB + l0, r[i]);
                }
            }
#endif
        for (; s < HW; ++s)
            for (l = 0; l < NB; ++l) y[s * NB + l] = l < valid ? xc[l][s] : 0.0f;
    }
}

static void NB_FN(reorder_output_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1);

void NCHWC_REORDER_OUTPUT(int64_t N, int64_t C, int64_t HW, const float* X, float* Y) {
    NB_FN(pool_run)(NB_FN(reorder_output_tasks), NULL, N, C, HW, 0, 0, X, NULL, NULL, Y);
}

static void NB_FN(reorder_output_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1) {
    const int64_t C = job->C, HW = job->HW;
    const float* X = job->X;
    float* Y = job->Y;
    const int64_t Cb = (C + NB - 1) / NB;
    int64_t t;
    if (NB_FN(reorder_dispatch)(job, t1))
        return;
    /* tasks are (n, channel block): the block's plane is read once, in pixel order (one
     * strided pass per channel would re-read every cache line of it NB times) */
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / Cb, cb = t % Cb, valid = C - cb * NB < NB ? C - cb * NB : NB;
        const float* x = X + t * HW * NB;
        float* y = Y + (n * C + cb * NB) * HW;
        int64_t s = 0;
        int l;
#if NCHWC_TR8
        for (; s + 8 <= HW; s += 8) {
            int l0;
            for (l0 = 0; l0 < valid; l0 += 8) {
                __m256 r[8];
                int i;
                for (i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(x + (s + i) * NB + l0);
                onnxc_nchwc_tr8(r);
                for (i = 0; i < 8 && l0 + i < valid; ++i) _mm256_storeu_ps(y + (l0 + i) * HW + s, r[i]);
            }
        }
#endif
        for (; s < HW; ++s)
            for (l = 0; l < valid; ++l) y[l * HW + s] = x[s * NB + l];
    }
}

static void NB_FN(scale_shift_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1);

void NCHWC_SCALE_SHIFT(int64_t N, int64_t Cb, int64_t HW, const float* X, const float* S,
                       const float* T, float* Y) {
    NB_FN(pool_run)(NB_FN(scale_shift_tasks), NULL, N, Cb, HW, 0, 0, X, S, T, Y);
}

static void NB_FN(scale_shift_tasks)(NB_FN(pool_job) * job, int64_t t0, int64_t t1) {
    const int64_t N = job->N, Cb = job->C, HW = job->HW;
    const float *X = job->X, *S = job->S, *T = job->T;
    float* Y = job->Y;
    const int64_t total = N * Cb;
    const int parallel = total > 1 && total * HW * NB >= NCHWC_POOL_MIN_WORK;
    int64_t t;
    if (t1 < 0) {
        onnxc_parallel_for(total, parallel, NB_FN(pool_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const float* s = S + (t % Cb) * NB;
        const float* sh = T + (t % Cb) * NB;
        const float* x = X + t * HW * NB;
        float* y = Y + t * HW * NB;
        int64_t i;
        int l;
        for (i = 0; i < HW; ++i)
            for (l = 0; l < NB; ++l) y[i * NB + l] = x[i * NB + l] * s[l] + sh[l];
    }
}

#undef NCHWC_MAXPOOL
#undef NCHWC_AVGPOOL
#undef NCHWC_GLOBAL_POOL
#undef NCHWC_REORDER_INPUT
#undef NCHWC_REORDER_INPUT_PERM
#undef NCHWC_REORDER_OUTPUT
#undef NCHWC_SCALE_SHIFT
