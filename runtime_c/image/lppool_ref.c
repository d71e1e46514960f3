/* Portable C99 LpPool (1 to 3 spatial dims), NC[D][H]W: y = (sum of |x|^p over the window's
 * in-bounds elements)^(1/p); padding contributes nothing. Sums in double. */
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define LPPOOL_PARALLEL_MIN_WORK (1 << 15)

static double lp_power(double v, int64_t p) {
    v = fabs(v);
    return p == 1 ? v : (p == 2 ? v * v : pow(v, (double)p));
}

void onnxc_lppool(const onnxc_pool_params* p, int64_t pw, const float* X, float* Y) {
    onnxc_geom3 g;
    int64_t nc;
    const int64_t planes = p->N * p->C;
    int parallel;
    /* padding contributes nothing: only the in-bounds taps are summed, pad_end is not needed */
    onnxc_geom3_init(&g, p->rank, p->in, p->kernel, p->out, p->stride, p->pad_begin, NULL,
                     p->dilation);
    parallel = planes > 1 && planes * g.out_sp * g.k_sp >= LPPOOL_PARALLEL_MIN_WORK;
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
            int64_t sd, lod, hid;
            onnxc_geom_window(&g, 0, od, &sd, &lod, &hid);
            for (oh = 0; oh < g.out[1]; ++oh) {
                int64_t sh, loh, hih;
                onnxc_geom_window(&g, 1, oh, &sh, &loh, &hih);
                for (ow = 0; ow < g.out[2]; ++ow) {
                    int64_t sw, low, hiw, td, th, tw;
                    double sum = 0.0;
                    onnxc_geom_window(&g, 2, ow, &sw, &low, &hiw);
                    for (td = lod; td < hid; ++td)
                        for (th = loh; th < hih; ++th) {
                            const float* row =
                                x + ((sd + td * g.d[0]) * g.in[1] + sh + th * g.d[1]) * g.in[2];
                            for (tw = low; tw < hiw; ++tw) sum += lp_power(row[sw + tw * g.d[2]], pw);
                        }
                    y[(od * g.out[1] + oh) * g.out[2] + ow] =
                        (float)(pw == 1 ? sum : (pw == 2 ? sqrt(sum) : pow(sum, 1.0 / (double)pw)));
                }
            }
        }
    }
}
