/* Geometry shared by the convolution-like kernels (conv, col2im, ConvTranspose), C99.
 *
 * A kernel window at grid position o covers image positions o*s - pb + k*d. Shapes with
 * 1 <= rank <= 3 spatial dims are normalized to 3 (missing leading dims get size 1, kernel 1,
 * stride 1, pad 0, dilation 1), so one code path serves 1-d, 2-d and 3-d. */
#ifndef ONNXC_GEOM_H
#define ONNXC_GEOM_H

#include <stdint.h>

/* in: the image the windows read (conv, pooling) or scatter into (col2im); out: the window
 * grid; pe: the trailing pad (pooling's count_include_pad only). */
typedef struct {
    int64_t in[3], k[3], out[3], s[3], pb[3], pe[3], d[3];
    int64_t in_sp, out_sp, k_sp;
} onnxc_geom3;

/* Fills g from the first `rank` (clamped to [1, 3]) entries of each array; non-positive
 * strides and dilations count as 1; pad_end may be NULL (all 0). */
static inline void onnxc_geom3_init(onnxc_geom3* g, int64_t rank, const int64_t* in,
                                    const int64_t* kernel, const int64_t* out,
                                    const int64_t* stride, const int64_t* pad_begin,
                                    const int64_t* pad_end, const int64_t* dilation) {
    int64_t i;
    const int64_t r = rank < 1 ? 1 : (rank > 3 ? 3 : rank);
    for (i = 0; i < 3; ++i) {
        g->in[i] = 1; g->k[i] = 1; g->out[i] = 1; g->s[i] = 1;
        g->pb[i] = 0; g->pe[i] = 0; g->d[i] = 1;
    }
    for (i = 0; i < r; ++i) {
        const int64_t j = 3 - r + i;
        g->in[j] = in[i];
        g->k[j] = kernel[i];
        g->out[j] = out[i];
        g->s[j] = stride[i] > 0 ? stride[i] : 1;
        g->pb[j] = pad_begin[i];
        g->pe[j] = pad_end ? pad_end[i] : 0;
        g->d[j] = dilation[i] > 0 ? dilation[i] : 1;
    }
    g->in_sp = g->in[0] * g->in[1] * g->in[2];
    g->out_sp = g->out[0] * g->out[1] * g->out[2];
    g->k_sp = g->k[0] * g->k[1] * g->k[2];
}

/* Range [*lo, *hi) of grid positions o in [0, n) for which o*s + off lies in [0, size). */
static inline void onnxc_geom_valid_range(int64_t n, int64_t size, int64_t s, int64_t off,
                                          int64_t* lo, int64_t* hi) {
    int64_t a, b;
    a = off >= 0 ? 0 : (-off + s - 1) / s;
    b = size - off > 0 ? (size - off - 1) / s + 1 : 0;
    if (b > n) b = n;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* Window of grid position o along dim: image positions *start + t*d for t < k; [*lo, *hi) is
 * the t range inside the image [0, in). */
static inline void onnxc_geom_window(const onnxc_geom3* g, int dim, int64_t o, int64_t* start,
                                     int64_t* lo, int64_t* hi) {
    *start = o * g->s[dim] - g->pb[dim];
    onnxc_geom_valid_range(g->k[dim], g->in[dim], g->d[dim], *start, lo, hi);
}

#endif /* ONNXC_GEOM_H */
