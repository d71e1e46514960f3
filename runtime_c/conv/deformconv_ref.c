/* Portable C99 DeformConv (ONNX opset 19+), 2-D, float32. Per image: each input channel's
 * samples at the deformed kernel positions, times the mask, go into a column buffer
 * cols[C * kh * kw][oh * ow] (im2col with bilinear sampling), then Y_g = W_g cols_g + B per group.
 *
 * Tap (a, b) of output (i, j) in offset group g samples X at
 *   y = i * sh - ph + a * dh + offset[n, g, a, b, 0, i, j],  x = j * sw - pw + b * dw + offset[.., 1, i, j]
 * bilinearly, each of the 4 neighbours outside the image counting 0 (the reference's GridSample
 * with align_corners=1 and zero padding, in pixel coordinates). A position with y <= -1, y >= H,
 * x <= -1 or x >= W (NaN too) samples 0 without converting it to an integer.
 */
#include <math.h>

#include "onnxc_kernels.h"

static float deform_sample(const float* x, int64_t H, int64_t W, float y, float xx) {
    int64_t y0, x0;
    float ly, lx, v = 0.0f;
    if (!(y > -1.0f && y < (float)H && xx > -1.0f && xx < (float)W)) return 0.0f;
    y0 = (int64_t)floorf(y);
    x0 = (int64_t)floorf(xx);
    ly = y - (float)y0;
    lx = xx - (float)x0;
    if (y0 >= 0 && x0 >= 0) v += (1.0f - ly) * (1.0f - lx) * x[y0 * W + x0];
    if (y0 >= 0 && x0 + 1 < W) v += (1.0f - ly) * lx * x[y0 * W + x0 + 1];
    if (y0 + 1 < H && x0 >= 0) v += ly * (1.0f - lx) * x[(y0 + 1) * W + x0];
    if (y0 + 1 < H && x0 + 1 < W) v += ly * lx * x[(y0 + 1) * W + x0 + 1];
    return v;
}

size_t onnxc_deformconv_scratch_floats(const onnxc_deformconv_params* p) {
    return (size_t)(p->C * p->kh * p->kw * p->oh * p->ow);
}

void onnxc_deformconv(const onnxc_deformconv_params* p, const float* X, const float* Wt, const float* offset,
                      const float* B, const float* mask, float* Y, float* cols) {
    const int64_t P = p->oh * p->ow, K = p->kh * p->kw;
    const int64_t cpg = p->C / p->group, mpg = p->M / p->group, cpog = p->C / p->offset_group;
    const int64_t rows = cpg * K;
    int64_t n, c, k, pix, g, m, r;
    for (n = 0; n < p->N; ++n) {
        for (c = 0; c < p->C; ++c) {
            const float* x = X + (n * p->C + c) * p->H * p->W;
            const int64_t og = c / cpog;
            for (k = 0; k < K; ++k) {
                const int64_t a = k / p->kw, b = k % p->kw;
                const float* off_y = offset + ((n * p->offset_group + og) * K + k) * 2 * P;
                const float* off_x = off_y + P;
                const float* msk = mask ? mask + ((n * p->offset_group + og) * K + k) * P : 0;
                float* col = cols + (c * K + k) * P;
                for (pix = 0; pix < P; ++pix) {
                    const int64_t i = pix / p->ow, j = pix % p->ow;
                    const float y = (float)(i * p->sh - p->ph + a * p->dh) + off_y[pix];
                    const float xx = (float)(j * p->sw - p->pw + b * p->dw) + off_x[pix];
                    const float v = deform_sample(x, p->H, p->W, y, xx);
                    col[pix] = msk ? v * msk[pix] : v;
                }
            }
        }
        for (g = 0; g < p->group; ++g)
            for (m = g * mpg; m < (g + 1) * mpg; ++m) {
                float* y = Y + (n * p->M + m) * P;
                const float* w = Wt + m * rows;
                const float* cg = cols + g * rows * P;
                const float bias = B ? B[m] : 0.0f;
                for (pix = 0; pix < P; ++pix) y[pix] = bias;
                for (r = 0; r < rows; ++r) {
                    const float wr = w[r];
                    const float* cr = cg + r * P;
                    for (pix = 0; pix < P; ++pix) y[pix] += wr * cr[pix];
                }
            }
    }
}
