/* Portable C99 pooling and local response normalization, NC[D][H]W layout.
 *
 * MaxPool/AveragePool shapes are normalized to 3 spatial dims (missing leading dims get size 1,
 * kernel 1, stride 1, pad 0, dilation 1); the flattened MaxPool indices are unaffected by this
 * since the added dims have size 1. Work is split over the N*C planes with OpenMP.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Work (in window elements visited) below which a kernel stays on one thread. */
#define POOL_PARALLEL_MIN_WORK (1 << 15)

static void pool_geom_init(const onnxc_pool_params* p, onnxc_geom3* g) {
    onnxc_geom3_init(g, p->rank, p->in, p->kernel, p->out, p->stride, p->pad_begin, p->pad_end,
                     p->dilation);
}

#define MAXPOOL_NAME onnxc_maxpool
#define MAXPOOL_T float
#define MAXPOOL_LOWEST (-FLT_MAX)
#include "maxpool_body.h"

#define MAXPOOL_NAME onnxc_s8_maxpool
#define MAXPOOL_T int8_t
#define MAXPOOL_LOWEST INT8_MIN
#include "maxpool_body.h"

#define MAXPOOL_NAME onnxc_u8_maxpool
#define MAXPOOL_T uint8_t
#define MAXPOOL_LOWEST 0
#include "maxpool_body.h"

/* Number of window positions start + t*d (t < k) below end. */
static int64_t pool_count_below(int64_t start, int64_t k, int64_t d, int64_t end) {
    int64_t n;
    if (end <= start) return 0;
    n = (end - start - 1) / d + 1;
    return n < k ? n : k;
}

void onnxc_avgpool(const onnxc_pool_params* p, const float* X, float* Y) {
    onnxc_geom3 g;
    int64_t nc;
    const int64_t planes = p->N * p->C;
    const int include_pad = p->count_include_pad != 0;
    int parallel;
    pool_geom_init(p, &g);
    parallel = planes > 1 && planes * g.out_sp * g.k[0] * g.k[1] * g.k[2] >= POOL_PARALLEL_MIN_WORK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (nc = 0; nc < planes; ++nc) {
        const float* x = X + nc * g.in_sp;
        float* y = Y + nc * g.out_sp;
        int64_t od, oh, ow;
        for (od = 0; od < g.out[0]; ++od) {
            int64_t sd, lod, hid, cd;
            onnxc_geom_window(&g, 0, od, &sd, &lod, &hid);
            cd = include_pad ? pool_count_below(sd, g.k[0], g.d[0], g.in[0] + g.pe[0])
                             : hid - lod;
            for (oh = 0; oh < g.out[1]; ++oh) {
                int64_t sh, loh, hih, ch;
                onnxc_geom_window(&g, 1, oh, &sh, &loh, &hih);
                ch = include_pad ? pool_count_below(sh, g.k[1], g.d[1], g.in[1] + g.pe[1])
                                 : hih - loh;
                for (ow = 0; ow < g.out[2]; ++ow) {
                    int64_t sw, low, hiw, cw, td, th, tw;
                    float sum = 0.0f;
                    float* out = y + (od * g.out[1] + oh) * g.out[2] + ow;
                    onnxc_geom_window(&g, 2, ow, &sw, &low, &hiw);
                    if (hid <= lod || hih <= loh || hiw <= low) {
                        *out = 0.0f;  /* window entirely in padding or past the end */
                        continue;
                    }
                    cw = include_pad ? pool_count_below(sw, g.k[2], g.d[2], g.in[2] + g.pe[2])
                                     : hiw - low;
                    for (td = lod; td < hid; ++td) {
                        const int64_t id = sd + td * g.d[0];
                        for (th = loh; th < hih; ++th) {
                            const int64_t ih = sh + th * g.d[1];
                            const float* row = x + (id * g.in[1] + ih) * g.in[2] + sw;
                            for (tw = low; tw < hiw; ++tw) sum += row[tw * g.d[2]];
                        }
                    }
                    *out = sum / (float)(cd * ch * cw);
                }
            }
        }
    }
}

void onnxc_global_avgpool(int64_t NC, int64_t spatial, const float* X, float* Y) {
    const int parallel = NC > 1 && NC * spatial >= POOL_PARALLEL_MIN_WORK;
    int64_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (i = 0; i < NC; ++i) {
        const float* x = X + i * spatial;
        float s[16];
        float tail = 0.0f;
        int64_t k = 0;
        int j;
        for (j = 0; j < 16; ++j) s[j] = 0.0f;
        for (; k + 16 <= spatial; k += 16)
            for (j = 0; j < 16; ++j) s[j] += x[k + j];
        for (; k < spatial; ++k) tail += x[k];
        for (j = 0; j < 8; ++j) s[j] += s[j + 8];
        for (j = 0; j < 4; ++j) s[j] += s[j + 4];
        Y[i] = spatial > 0 ? (tail + (s[0] + s[2]) + (s[1] + s[3])) / (float)spatial : 0.0f;
    }
}

void onnxc_global_maxpool(int64_t NC, int64_t spatial, const float* X, float* Y) {
    const int parallel = NC > 1 && NC * spatial >= POOL_PARALLEL_MIN_WORK;
    int64_t i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (i = 0; i < NC; ++i) {
        const float* x = X + i * spatial;
        float m = spatial > 0 ? x[0] : -FLT_MAX;
        int64_t k;
        for (k = 1; k < spatial; ++k) m = x[k] > m ? x[k] : m;
        Y[i] = m;
    }
}

void onnxc_lrn(int64_t N, int64_t C, int64_t spatial, int64_t size, float alpha, float beta,
               float bias, const float* X, float* Y) {
    const int64_t before = (size - 1) / 2;        /* floor((size-1)/2) */
    const int64_t after = (size - 1) - before;    /* ceil((size-1)/2) */
    const float scale = alpha / (float)size;
    const int64_t total = N * C;
    const int parallel = total > 1 && total * spatial * size >= POOL_PARALLEL_MIN_WORK;
    int64_t nc;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (nc = 0; nc < total; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        const int64_t c0 = c - before < 0 ? 0 : c - before;
        const int64_t c1 = c + after > C - 1 ? C - 1 : c + after;
        const float* xn = X + n * C * spatial;
        const float* x = xn + c * spatial;
        float* y = Y + nc * spatial;
        int64_t i, cc;
        /* y first holds the square sum, then the result (Y must not alias X). */
        for (i = 0; i < spatial; ++i) y[i] = 0.0f;
        for (cc = c0; cc <= c1; ++cc) {
            const float* xs = xn + cc * spatial;
            for (i = 0; i < spatial; ++i) y[i] += xs[i] * xs[i];
        }
        if (beta == 0.75f) {
            for (i = 0; i < spatial; ++i) {
                const float b = bias + scale * y[i];
                const float s = sqrtf(b);
                y[i] = x[i] / (s * sqrtf(s));  /* b^0.75 = sqrt(b) * b^0.25 */
            }
        } else {
            for (i = 0; i < spatial; ++i) y[i] = x[i] * powf(bias + scale * y[i], -beta);
        }
    }
}
