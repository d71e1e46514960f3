/* Portable C99 MaxRoiPool (ONNX opsets 1-22), float32: the Fast R-CNN ROI pooling as
 * onnxruntime computes it. Per ROI (batch_id, x1, y1, x2, y2), the corners scaled by
 * spatial_scale are rounded half away from zero (in float, as onnxruntime); the ROI spans
 * max(end - start + 1, 1) cells per side, split into pooled_h x pooled_w bins
 * [floor(i * size / pooled), ceil((i + 1) * size / pooled)) (float bin sizes) that are offset by
 * the ROI start and clipped to the image. An empty bin gives 0 (the spec says nothing; Caffe's
 * and onnxruntime's convention); otherwise the bin's maximum, NaN if it holds one.
 *
 * The caller checks batch ids (trunc(rois[n, 0]) in [0, batches)); a bad one gives zeros here.
 * Corners are clamped to +-2^40 before conversion, so any float (inf, NaN: 0) is safe.
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MAXROIPOOL_LIMIT 1099511627776.0 /* 2^40: beyond any image side */

static int64_t roi_corner(float v, float scale) {
    const float r = roundf(v * scale);
    if (!(r == r)) return 0;
    if (r > MAXROIPOOL_LIMIT) return (int64_t)MAXROIPOOL_LIMIT;
    if (r < -MAXROIPOOL_LIMIT) return -(int64_t)MAXROIPOOL_LIMIT;
    return (int64_t)r;
}

static int64_t clip_to(int64_t v, int64_t hi) { return v < 0 ? 0 : (v > hi ? hi : v); }

void onnxc_maxroipool(const onnxc_maxroipool_params* p, const float* X, const float* rois, float* Y) {
    const int64_t H = p->H, W = p->W, PH = p->pooled_h, PW = p->pooled_w, C = p->C;
    const int64_t plane = H * W, bins = PH * PW;
    const int parallel = p->num_rois * C > 1 && p->num_rois * C * bins >= (1 << 12);
    int64_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (t = 0; t < p->num_rois * C; ++t) {
        const int64_t n = t / C, c = t % C;
        const float* roi = rois + n * 5;
        float* y = Y + t * bins;
        const float bid = roi[0];
        const int64_t x0 = roi_corner(roi[1], p->spatial_scale), y0 = roi_corner(roi[2], p->spatial_scale);
        const int64_t x1 = roi_corner(roi[3], p->spatial_scale), y1 = roi_corner(roi[4], p->spatial_scale);
        const int64_t rh = y1 - y0 + 1 > 1 ? y1 - y0 + 1 : 1, rw = x1 - x0 + 1 > 1 ? x1 - x0 + 1 : 1;
        const float bin_h = (float)rh / (float)PH, bin_w = (float)rw / (float)PW;
        const float* x;
        int64_t ph, pw, h, w;
        if (!(bid > -1.0f && bid < (float)p->batches)) {  /* NaN too */
            for (ph = 0; ph < bins; ++ph) y[ph] = 0.0f;
            continue;
        }
        x = X + ((int64_t)bid * C + c) * plane;
        for (ph = 0; ph < PH; ++ph) {
            const int64_t hs = clip_to((int64_t)floorf((float)ph * bin_h) + y0, H);
            const int64_t he = clip_to((int64_t)ceilf((float)(ph + 1) * bin_h) + y0, H);
            for (pw = 0; pw < PW; ++pw) {
                const int64_t ws = clip_to((int64_t)floorf((float)pw * bin_w) + x0, W);
                const int64_t we = clip_to((int64_t)ceilf((float)(pw + 1) * bin_w) + x0, W);
                float m = -INFINITY;
                if (he <= hs || we <= ws) {
                    y[ph * PW + pw] = 0.0f;
                    continue;
                }
                for (h = hs; h < he; ++h)
                    for (w = ws; w < we; ++w) {
                        const float v = x[h * W + w];
                        if (v > m || v != v) m = v;  /* a NaN stays: v > NaN is false */
                    }
                y[ph * PW + pw] = m;
            }
        }
    }
}
