/* Portable C99 RoiAlign (ONNX opsets 10-22), float32, following onnxruntime's kernel (which
 * the ONNX reference mirrors): per output bin, a grid of bilinear samples (sampling_ratio per
 * side, or ceil(roi size / bin count) when it is 0) is averaged, or for mode "max" the largest
 * of the weighted corner values is kept.
 *
 * Sample positions depend on the runtime ROIs, so each sample's 4 corners and weights are
 * computed once and applied to every channel. Malformed inputs never read outside X: a batch
 * index outside [0, batches) gives a zero output, non-finite coordinates give samples of weight
 * 0, and the per-bin sample grid is capped at ROIALIGN_MAX_GRID per side.
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define ROIALIGN_MAX_GRID 1024

typedef struct {
    int64_t pos[4];
    float w[4];
} roi_sample;

/* Corners and weights of the bilinear sample at (y, x); weight 0 outside [-1, H] x [-1, W]. */
static void roi_sample_at(float y, float x, int64_t H, int64_t W, roi_sample* s) {
    int64_t yl, xl, yh, xh;
    float ly, lx;
    int k;
    if (!(y >= -1.0f && y <= (float)H && x >= -1.0f && x <= (float)W)) {  /* NaN too */
        for (k = 0; k < 4; ++k) s->pos[k] = 0, s->w[k] = 0.0f;
        return;
    }
    if (y < 0) y = 0;
    if (x < 0) x = 0;
    yl = (int64_t)y;
    xl = (int64_t)x;
    if (yl >= H - 1) {
        yh = yl = H - 1;
        y = (float)yl;
    } else {
        yh = yl + 1;
    }
    if (xl >= W - 1) {
        xh = xl = W - 1;
        x = (float)xl;
    } else {
        xh = xl + 1;
    }
    ly = y - (float)yl;
    lx = x - (float)xl;
    s->pos[0] = yl * W + xl;
    s->pos[1] = yl * W + xh;
    s->pos[2] = yh * W + xl;
    s->pos[3] = yh * W + xh;
    s->w[0] = (1 - ly) * (1 - lx);
    s->w[1] = (1 - ly) * lx;
    s->w[2] = ly * (1 - lx);
    s->w[3] = ly * lx;
}

static int64_t roi_grid(int64_t ratio, float extent, int64_t bins) {
    float g;
    if (ratio > 0) return ratio < ROIALIGN_MAX_GRID ? ratio : ROIALIGN_MAX_GRID;
    g = ceilf(extent / (float)bins);
    if (!(g > 0)) return 0;  /* negative, zero or NaN: no samples */
    return g < (float)ROIALIGN_MAX_GRID ? (int64_t)g : ROIALIGN_MAX_GRID;
}

void onnxc_roialign(const onnxc_roialign_params* p, const float* X, const float* rois,
                    const int64_t* batch_indices, float* Y) {
    const int64_t H = p->H, W = p->W, PH = p->pooled_h, PW = p->pooled_w, C = p->C;
    const int64_t plane = H * W, bins = PH * PW;
    const int64_t tasks = p->num_rois * PH;
    const int parallel = tasks > 1 && p->num_rois * bins * C >= (1 << 12);
    int64_t t;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (t = 0; t < tasks; ++t) {
        const int64_t n = t / PH, ph = t % PH;
        const float* roi = rois + n * 4;
        const int64_t b = batch_indices[n];
        const float off = p->half_pixel ? 0.5f : 0.0f;
        const float x0 = roi[0] * p->spatial_scale - off, y0 = roi[1] * p->spatial_scale - off;
        float rw = roi[2] * p->spatial_scale - off - x0, rh = roi[3] * p->spatial_scale - off - y0;
        float bh, bw;
        int64_t gh, gw, count, pw, c, iy, ix, k;
        float* ybase = Y + n * C * bins + ph * PW;
        if (b < 0 || b >= p->batches || H <= 0 || W <= 0) {
            for (c = 0; c < C; ++c)
                for (pw = 0; pw < PW; ++pw) ybase[c * bins + pw] = 0.0f;
            continue;
        }
        if (!p->half_pixel) {  /* malformed ROIs are forced to 1x1 */
            if (!(rw > 1.0f)) rw = 1.0f;
            if (!(rh > 1.0f)) rh = 1.0f;
        }
        bh = rh / (float)PH;
        bw = rw / (float)PW;
        gh = roi_grid(p->sampling_ratio, rh, PH);
        gw = roi_grid(p->sampling_ratio, rw, PW);
        count = gh * gw > 1 ? gh * gw : 1;
        for (pw = 0; pw < PW; ++pw) {
            const float* x = X + b * C * plane;
            float* y = ybase + pw;
            int first = 1;
            for (c = 0; c < C; ++c) y[c * bins] = 0.0f;
            for (iy = 0; iy < gh; ++iy) {
                const float sy = y0 + (float)ph * bh + ((float)iy + 0.5f) * bh / (float)gh;
                for (ix = 0; ix < gw; ++ix) {
                    const float sx = x0 + (float)pw * bw + ((float)ix + 0.5f) * bw / (float)gw;
                    roi_sample s;
                    roi_sample_at(sy, sx, H, W, &s);
                    for (c = 0; c < C; ++c) {
                        const float* xc = x + c * plane;
                        float* yc = y + c * bins;
                        if (p->mode_max) {
                            float v = s.w[0] * xc[s.pos[0]];
                            for (k = 1; k < 4; ++k) {
                                const float u = s.w[k] * xc[s.pos[k]];
                                if (u > v) v = u;
                            }
                            if (first || v > *yc) *yc = v;
                        } else {
                            *yc += s.w[0] * xc[s.pos[0]] + s.w[1] * xc[s.pos[1]] +
                                   s.w[2] * xc[s.pos[2]] + s.w[3] * xc[s.pos[3]];
                        }
                    }
                    first = 0;
                }
            }
            if (!p->mode_max)
                for (c = 0; c < C; ++c) y[c * bins] /= (float)count;
        }
    }
}
