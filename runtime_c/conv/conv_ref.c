/* Portable C99 N-d convolution (1 to 3 spatial dims), NC[D][H]W layout.
 *
 * Every shape is first normalized to 3 spatial dims (missing leading dims get size 1, kernel 1,
 * stride 1, pad 0, dilation 1), so one code path serves Conv1d/2d/3d.
 *
 *  - general case: per (image, group), im2col into the caller's scratch
 *    ([C/group * prod(kernel), prod(out)]) then one onnxc_sgemm:
 *        Y_g[M/group, out] = W_g[M/group, C/group * prod(kernel)] * col
 *  - 1x1 kernels with stride 1 and no padding: X is already the column matrix (no scratch);
 *  - grouped convolutions with one input channel per group (depthwise, channel multiplier
 *    allowed): a direct loop per output channel, vectorizable along the output row.
 *
 * onnxc_conv_fused also adds a residual Z and applies an activation (onnxc.FusedConv): per
 * output channel plane right after the depthwise loop, per output channel row of the group
 * right after its GEMM otherwise. (Splitting the GEMM into column tiles to keep the epilogue's
 * block in L2 measured no faster: each call repacks W.)
 */
#include <string.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work (in floats touched) below which the data-movement loops stay on one thread. */
#define CONV_PARALLEL_MIN_WORK (1 << 16)

static void conv_geom_init(const onnxc_conv_params* p, onnxc_geom3* g) {
    onnxc_geom3_init(g, p->rank, p->in, p->kernel, p->out, p->stride, p->pad_begin, NULL,
                     p->dilation);
}

static int conv_is_pointwise(const onnxc_geom3* g) {
    int i;
    for (i = 0; i < 3; ++i)
        if (g->k[i] != 1 || g->s[i] != 1 || g->pb[i] != 0 || g->out[i] != g->in[i]) return 0;
    return 1;
}

static int conv_is_depthwise(const onnxc_conv_params* p) {
    return p->group > 1 && p->C == p->group;
}

size_t onnxc_conv_scratch_floats(const onnxc_conv_params* p) {
    onnxc_geom3 g;
    conv_geom_init(p, &g);
    if (conv_is_depthwise(p) || conv_is_pointwise(&g)) return 0;
    return (size_t)(p->C / (p->group > 0 ? p->group : 1)) * (size_t)g.k_sp * (size_t)g.out_sp;
}

/* col[(c*k_sp + kidx) * out_sp + opos] = x[c, input position of (kidx, opos)] or 0 in padding,
 * for the Cg channels starting at x. */
static void conv_im2col(const onnxc_geom3* g, int64_t Cg, const float* x, float* col) {
    const int64_t rows = Cg * g->k_sp;
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t sw = g->s[2];
    const int parallel = rows > 1 && rows * g->out_sp >= CONV_PARALLEL_MIN_WORK;
    int64_t r;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (r = 0; r < rows; ++r) {
        const int64_t c = r / g->k_sp;
        const int64_t kidx = r % g->k_sp;
        const int64_t kd = kidx / (g->k[1] * g->k[2]);
        const int64_t kh = (kidx / g->k[2]) % g->k[1];
        const int64_t kw = kidx % g->k[2];
        const int64_t offd = kd * g->d[0] - g->pb[0];
        const int64_t offh = kh * g->d[1] - g->pb[1];
        const int64_t offw = kw * g->d[2] - g->pb[2];
        const float* xc = x + c * g->in_sp;
        float* dst = col + r * g->out_sp;
        int64_t od, oh, ow, wlo, whi;
        onnxc_geom_valid_range(OW, IW, sw, offw, &wlo, &whi);
        for (od = 0; od < OD; ++od) {
            const int64_t id = od * g->s[0] + offd;
            if (id < 0 || id >= ID) {
                memset(dst, 0, (size_t)(OH * OW) * sizeof(float));
                dst += OH * OW;
                continue;
            }
            for (oh = 0; oh < OH; ++oh, dst += OW) {
                const int64_t ih = oh * g->s[1] + offh;
                const float* src;
                if (ih < 0 || ih >= IH) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                src = xc + (id * IH + ih) * IW + offw;
                for (ow = 0; ow < wlo; ++ow) dst[ow] = 0.0f;
                if (sw == 1) {
                    for (ow = wlo; ow < whi; ++ow) dst[ow] = src[ow];
                } else {
                    for (ow = wlo; ow < whi; ++ow) dst[ow] = src[ow * sw];
                }
                for (ow = whi; ow < OW; ++ow) dst[ow] = 0.0f;
            }
        }
    }
}

/* Grouped convolution with one input channel per group: direct loop per output channel. */
static void conv_depthwise(const onnxc_conv_params* p, const onnxc_geom3* g, const float* X,
                           const float* W, const float* B, const float* Z,
                           const onnxc_activation* act, float* Y) {
    const int64_t Mg = p->M / p->group;
    const int64_t total = p->N * p->M;
    const int64_t OD = g->out[0], OH = g->out[1], OW = g->out[2];
    const int64_t ID = g->in[0], IH = g->in[1], IW = g->in[2];
    const int64_t KD = g->k[0], KH = g->k[1], KW = g->k[2];
    const int64_t sw = g->s[2];
    const int parallel = total > 1 && total * g->out_sp * g->k_sp >= CONV_PARALLEL_MIN_WORK;
    int64_t nm;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (nm = 0; nm < total; ++nm) {
        const int64_t n = nm / p->M, m = nm % p->M;
        const float* x = X + (n * p->C + m / Mg) * g->in_sp;
        const float* w = W + m * g->k_sp;
        float* y = Y + nm * g->out_sp;
        const float bias = B ? B[m] : 0.0f;
        int64_t i, od, oh, kd, kh, kw, ow;
        for (i = 0; i < g->out_sp; ++i) y[i] = bias;
        for (od = 0; od < OD; ++od) {
            for (oh = 0; oh < OH; ++oh) {
                float* yrow = y + (od * OH + oh) * OW;
                for (kd = 0; kd < KD; ++kd) {
                    const int64_t id = od * g->s[0] + kd * g->d[0] - g->pb[0];
                    if (id < 0 || id >= ID) continue;
                    for (kh = 0; kh < KH; ++kh) {
                        const int64_t ih = oh * g->s[1] + kh * g->d[1] - g->pb[1];
                        const float* xrow;
                        if (ih < 0 || ih >= IH) continue;
                        xrow = x + (id * IH + ih) * IW;
                        for (kw = 0; kw < KW; ++kw) {
                            const float wv = w[(kd * KH + kh) * KW + kw];
                            const int64_t off = kw * g->d[2] - g->pb[2];
                            int64_t lo, hi;
                            onnxc_geom_valid_range(OW, IW, sw, off, &lo, &hi);
                            if (sw == 1) {
                                const float* src = xrow + off;
                                for (ow = lo; ow < hi; ++ow) yrow[ow] += wv * src[ow];
                            } else {
                                for (ow = lo; ow < hi; ++ow) yrow[ow] += wv * xrow[ow * sw + off];
                            }
                        }
                    }
                }
            }
        }
        /* epilogue on this channel's plane, still in cache */
        if (Z || act) onnxc_epilogue_row(act, 0.0f, Z ? Z + nm * g->out_sp : NULL, y, g->out_sp);
    }
}

void onnxc_conv(const onnxc_conv_params* p, const float* X, const float* W, const float* B,
                float* Y, float* scratch) {
    onnxc_conv_fused(p, X, W, B, NULL, NULL, Y, scratch);
}

/* One (image, group) of the im2col + GEMM path: Y_g = W_g col (+ bias, residual, activation). */
typedef struct {
    const onnxc_conv_params* p;
    onnxc_geom3 g;
    const float *X, *W, *B, *Z;
    const onnxc_activation* act;
    float *Y, *scratch;
    int64_t group, Cg, Mg, Kdim;
    int pointwise, epilogue;
} conv_gemm_job;

static void conv_gemm_group(const conv_gemm_job* j, int64_t n, int64_t gi) {
    const onnxc_conv_params* p = j->p;
    const int64_t Cg = j->Cg, Mg = j->Mg, Kdim = j->Kdim, out_sp = j->g.out_sp;
    const float* xg = j->X + (n * p->C + gi * Cg) * j->g.in_sp;
    const float* wg = j->W + gi * Mg * Kdim;
    float* yg = j->Y + (n * p->M + gi * Mg) * out_sp;
    const float* col = xg;
    float beta = 0.0f;
    if (!j->pointwise) {
        conv_im2col(&j->g, Cg, xg, j->scratch);
        col = j->scratch;
    }
    if (j->B && !j->epilogue) {
        int64_t m, i;
        for (m = 0; m < Mg; ++m) {
            const float b = j->B[gi * Mg + m];
            float* yrow = yg + m * out_sp;
            for (i = 0; i < out_sp; ++i) yrow[i] = b;
        }
        beta = 1.0f;
    }
    onnxc_sgemm(0, 0, Mg, out_sp, Kdim, 1.0f, wg, Kdim, col, out_sp, beta, yg, out_sp);
    if (j->epilogue) {
        const float* zg = j->Z ? j->Z + (n * p->M + gi * Mg) * out_sp : NULL;
        const int parallel = Mg > 1 && Mg * out_sp >= CONV_PARALLEL_MIN_WORK;
        int64_t m;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
        (void)parallel;
#endif
        for (m = 0; m < Mg; ++m)
            onnxc_epilogue_row(j->act, j->B ? j->B[gi * Mg + m] : 0.0f, zg ? zg + m * out_sp : NULL,
                               yg + m * out_sp, out_sp);
    }
}

/* Tasks t = n * group + gi of a pointwise grouped convolution (no shared im2col scratch). */
static void conv_group_tasks(void* ctx, int64_t t0, int64_t t1) {
    const conv_gemm_job* j = (const conv_gemm_job*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) conv_gemm_group(j, t / j->group, t % j->group);
}

/* Multiply-adds from which the (image, group) GEMMs of a pointwise grouped convolution run as
 * pool tasks, each GEMM on one thread: ShuffleNet's 4-group 1x1 convolutions are ~0.9M MACs per
 * group, too small to split well inside the GEMM (a split per group is 4 pool loops per node). */
#define CONV_GROUP_PARALLEL_MIN_MACS (1 << 19)

void onnxc_conv_fused(const onnxc_conv_params* p, const float* X, const float* W, const float* B,
                      const float* Z, const onnxc_activation* act, float* Y, float* scratch) {
    conv_gemm_job j;
    int64_t n, gi;
    if (p->N <= 0 || p->M <= 0) return;
    conv_geom_init(p, &j.g);
    if (j.g.out_sp <= 0) return;
    if (conv_is_depthwise(p)) {
        conv_depthwise(p, &j.g, X, W, B, Z, act, Y);
        return;
    }
    j.p = p; j.X = X; j.W = W; j.B = B; j.Z = Z; j.act = act; j.Y = Y; j.scratch = scratch;
    j.group = p->group > 0 ? p->group : 1;
    j.Cg = p->C / j.group;
    j.Mg = p->M / j.group;
    j.Kdim = j.Cg * j.g.k_sp;
    j.pointwise = conv_is_pointwise(&j.g);
    /* with an epilogue the bias joins it (one pass over Y less than filling Y with it first) */
    j.epilogue = Z != NULL || act != NULL;
    if (j.pointwise && j.group > 1 && p->N * j.group >= onnxc_rt_threads_usable()) {
        /* every task computes whole GEMMs exactly as the serial loop: results do not depend on
         * the thread count */
        const int64_t tasks = p->N * j.group;
        const double macs = (double)p->M * (double)j.Kdim * (double)j.g.out_sp * (double)p->N;
        onnxc_parallel_for(tasks, macs >= CONV_GROUP_PARALLEL_MIN_MACS, conv_group_tasks, &j);
        return;
    }
    for (n = 0; n < p->N; ++n)
        for (gi = 0; gi < j.group; ++gi) conv_gemm_group(&j, n, gi);
}
