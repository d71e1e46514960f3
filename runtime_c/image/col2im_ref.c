/* Portable C99 col2im and transposed convolution (1 to 3 spatial dims), NC[D][H]W layout.
 *
 * Shapes are normalized to 3 spatial dims as in conv_ref.c (missing leading dims get size 1,
 * kernel 1, stride 1, pad 0, dilation 1).
 *
 *  - col2im: every grid position g (a ConvTranspose input pixel, a Col2Im sliding block) adds
 *    its kernel-sized column to the image at g*stride - pad_begin + k*dilation; positions that
 *    fall outside the image are dropped;
 *  - ConvTranspose per (image, group): col[Mg*k_sp, in_sp] = W_g^T * X_g with onnxc_sgemm, then
 *    col2im into Y (initialized with the bias).
 */
#include <string.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define COL2IM_PARALLEL_MIN_WORK (1 << 16)

/* in = the image, out = the grid of column positions. */
static void col2im_geom_init(const onnxc_col2im_params* p, onnxc_geom3* g) {
    onnxc_geom3_init(g, p->rank, p->image, p->kernel, p->grid, p->stride, p->pad_begin, NULL,
                     p->dilation);
}

/* One channel: Y[img] += scatter of col[k_sp, out_sp]. */
static void col2im_channel(const onnxc_geom3* g, const float* col, float* y) {
    int64_t kd, kh, kw, qd, qh, qw;
    for (kd = 0; kd < g->k[0]; ++kd) {
        const int64_t offd = kd * g->d[0] - g->pb[0];
        for (kh = 0; kh < g->k[1]; ++kh) {
            const int64_t offh = kh * g->d[1] - g->pb[1];
            for (kw = 0; kw < g->k[2]; ++kw) {
                const int64_t offw = kw * g->d[2] - g->pb[2];
                const float* src = col + ((kd * g->k[1] + kh) * g->k[2] + kw) * g->out_sp;
                int64_t wlo, whi;
                onnxc_geom_valid_range(g->out[2], g->in[2], g->s[2], offw, &wlo, &whi);
                for (qd = 0; qd < g->out[0]; ++qd) {
                    const int64_t od = qd * g->s[0] + offd;
                    if (od < 0 || od >= g->in[0]) continue;
                    for (qh = 0; qh < g->out[1]; ++qh) {
                        const int64_t oh = qh * g->s[1] + offh;
                        const float* srow = src + (qd * g->out[1] + qh) * g->out[2];
                        float* yrow;
                        if (oh < 0 || oh >= g->in[1]) continue;
                        yrow = y + (od * g->in[1] + oh) * g->in[2];
                        for (qw = wlo; qw < whi; ++qw) yrow[qw * g->s[2] + offw] += srow[qw];
                    }
                }
            }
        }
    }
}

static void col2im_channels(const onnxc_geom3* g, int64_t channels, const float* col, float* Y) {
    const int parallel = channels > 1 && channels * g->k_sp * g->out_sp >= COL2IM_PARALLEL_MIN_WORK;
    int64_t c;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (c = 0; c < channels; ++c)
        col2im_channel(g, col + c * g->k_sp * g->out_sp, Y + c * g->in_sp);
}

void onnxc_col2im(const onnxc_col2im_params* p, int64_t channels, const float* col, float* Y) {
    onnxc_geom3 g;
    col2im_geom_init(p, &g);
    if (channels <= 0 || g.in_sp <= 0) return;
    memset(Y, 0, (size_t)(channels * g.in_sp) * sizeof(float));
    if (g.out_sp > 0 && g.k_sp > 0) col2im_channels(&g, channels, col, Y);
}

size_t onnxc_conv_transpose_scratch_floats(const onnxc_conv_params* p) {
    int64_t i, k_sp = 1, in_sp = 1;
    const int64_t group = p->group > 0 ? p->group : 1;
    for (i = 0; i < p->rank && i < 3; ++i) {
        k_sp *= p->kernel[i];
        in_sp *= p->in[i];
    }
    return (size_t)(p->M / group) * (size_t)k_sp * (size_t)in_sp;
}

void onnxc_conv_transpose(const onnxc_conv_params* p, const float* X, const float* W,
                          const float* B, float* Y, float* scratch) {
    onnxc_geom3 g;
    int64_t i, n, gi, group, Cg, Mg, rows;
    if (p->N <= 0 || p->M <= 0) return;
    /* The image is Y (p->out), the column grid is X's spatial positions (p->in). */
    onnxc_geom3_init(&g, p->rank, p->out, p->kernel, p->in, p->stride, p->pad_begin, NULL,
                     p->dilation);
    if (g.in_sp <= 0) return;
    group = p->group > 0 ? p->group : 1;
    Cg = p->C / group;
    Mg = p->M / group;
    rows = Mg * g.k_sp;
    for (n = 0; n < p->N; ++n) {
        for (gi = 0; gi < group; ++gi) {
            const float* xg = X + (n * p->C + gi * Cg) * g.out_sp;
            const float* wg = W + gi * Cg * rows;  /* [Cg, Mg * k_sp] */
            float* yg = Y + (n * p->M + gi * Mg) * g.in_sp;
            int64_t m;
            for (m = 0; m < Mg; ++m) {
                const float b = B ? B[gi * Mg + m] : 0.0f;
                float* yrow = yg + m * g.in_sp;
                for (i = 0; i < g.in_sp; ++i) yrow[i] = b;
            }
            if (g.out_sp <= 0 || Cg <= 0) continue;
            onnxc_sgemm(1, 0, rows, g.out_sp, Cg, 1.0f, wg, rows, xg, g.out_sp, 0.0f, scratch,
                        g.out_sp);
            col2im_channels(&g, Mg, scratch, yg);
        }
    }
}
