/* Portable C99 LpPool (1 to 3 spatial dims), NC[D][H]W: y = (sum of |x|^p over the window's
 * in-bounds elements)^(1/p); padding contributes nothing. Sums in double. */
#include <math.h>

#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define LPPOOL_PARALLEL_MIN_WORK (1 << 15)

/* In-bounds tap range [lo, hi) of a window starting at st (taps st + t*d, t < k, in [0, n)). */
static void lp_window(int64_t st, int64_t k, int64_t d, int64_t n, int64_t* lo, int64_t* hi) {
    int64_t a = st >= 0 ? 0 : (-st + d - 1) / d;
    int64_t b = n - st > 0 ? (n - st - 1) / d + 1 : 0;
    if (b > k) b = k;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

static double lp_power(double v, int64_t p) {
    v = fabs(v);
    return p == 1 ? v : (p == 2 ? v * v : pow(v, (double)p));
}

void onnxc_lppool(const onnxc_pool_params* p, int64_t pw, const float* X, float* Y) {
    int64_t in[3], k[3], out[3], s[3], pb[3], d[3], i, nc;
    const int64_t r = p->rank < 1 ? 1 : (p->rank > 3 ? 3 : p->rank);
    const int64_t planes = p->N * p->C;
    int64_t in_sp, out_sp;
    int parallel;
    for (i = 0; i < 3; ++i) in[i] = k[i] = out[i] = s[i] = d[i] = 1, pb[i] = 0;
    for (i = 0; i < r; ++i) {
        const int64_t j = 3 - r + i;
        in[j] = p->in[i];
        k[j] = p->kernel[i];
        out[j] = p->out[i];
        s[j] = p->stride[i] > 0 ? p->stride[i] : 1;
        pb[j] = p->pad_begin[i];
        d[j] = p->dilation[i] > 0 ? p->dilation[i] : 1;
    }
    in_sp = in[0] * in[1] * in[2];
    out_sp = out[0] * out[1] * out[2];
    parallel = planes > 1 && planes * out_sp * k[0] * k[1] * k[2] >= LPPOOL_PARALLEL_MIN_WORK;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (nc = 0; nc < planes; ++nc) {
        const float* x = X + nc * in_sp;
        float* y = Y + nc * out_sp;
        int64_t od, oh, ow;
        for (od = 0; od < out[0]; ++od) {
            const int64_t sd = od * s[0] - pb[0];
            int64_t lod, hid;
            lp_window(sd, k[0], d[0], in[0], &lod, &hid);
            for (oh = 0; oh < out[1]; ++oh) {
                const int64_t sh = oh * s[1] - pb[1];
                int64_t loh, hih;
                lp_window(sh, k[1], d[1], in[1], &loh, &hih);
                for (ow = 0; ow < out[2]; ++ow) {
                    const int64_t sw = ow * s[2] - pb[2];
                    int64_t low, hiw, td, th, tw;
                    double sum = 0.0;
                    lp_window(sw, k[2], d[2], in[2], &low, &hiw);
                    for (td = lod; td < hid; ++td)
                        for (th = loh; th < hih; ++th) {
                            const float* row = x + ((sd + td * d[0]) * in[1] + sh + th * d[1]) * in[2];
                            for (tw = low; tw < hiw; ++tw) sum += lp_power(row[sw + tw * d[2]], pw);
                        }
                    y[(od * out[1] + oh) * out[2] + ow] =
                        (float)(pw == 1 ? sum : (pw == 2 ? sqrt(sum) : pow(sum, 1.0 / (double)pw)));
                }
            }
        }
    }
}
