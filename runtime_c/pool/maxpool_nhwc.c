/* 8-bit MaxPool on NHWC tensors (onnxruntime's com.microsoft.NhwcMaxPool), the form the int8
 * layout pass (compiler/passes/layout/int8_nhwc.py) gives a quantized MaxPool inside an NHWC
 * region. Channels are contiguous, so each output pixel is an elementwise max of its window's
 * pixel rows: a loop over C that compilers vectorize (vpmaxub / vpmaxsb) for any target.
 * Geometry as onnxc_maxpool's (2-D, rank-1 read as H = 1); padding never wins and an empty window
 * gives the type's minimum. Work: rows (n, oh) split over the thread pool. */
#include <stdint.h>
#include <string.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

/* window elements visited below which the kernel stays on one thread (as pool_ref.c) */
#define NHWC_POOL_PARALLEL_MIN_WORK (1 << 15)

typedef struct {
    const onnxc_pool_params* p;
    onnxc_geom3 g;
    const void* X;
    void* Y;
    int is_signed;
} nhwc_pool_job;

#define ROW_BODY(T, LOWEST)                                                                        \
    do {                                                                                           \
        const T* x = (const T*)J->X;                                                               \
        T* yrow = (T*)J->Y + (n * g->out[1] + oh) * g->out[2] * C;                                 \
        for (ow = 0; ow < g->out[2]; ++ow) {                                                       \
            T* y = yrow + ow * C;                                                                  \
            int64_t sw, low, hiw, th, tw, c;                                                       \
            onnxc_geom_window(g, 2, ow, &sw, &low, &hiw);                                          \
            for (c = 0; c < C; ++c) y[c] = (T)(LOWEST);                                            \
            for (th = loh; th < hih; ++th) {                                                       \
                const T* row = x + ((n * g->in[1] + sh + th * g->d[1]) * g->in[2]) * C;            \
                for (tw = low; tw < hiw; ++tw) {                                                   \
                    const T* px = row + (sw + tw * g->d[2]) * C;                                   \
                    for (c = 0; c < C; ++c) y[c] = px[c] > y[c] ? px[c] : y[c];                    \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static void nhwc_pool_rows(void* ctx, int64_t r0, int64_t r1) {
    const nhwc_pool_job* J = (const nhwc_pool_job*)ctx;
    const onnxc_geom3* g = &J->g;
    const int64_t C = J->p->C;
    int64_t r, ow;
    for (r = r0; r < r1; ++r) {
        const int64_t n = r / g->out[1], oh = r % g->out[1];
        int64_t sh, loh, hih;
        onnxc_geom_window(g, 1, oh, &sh, &loh, &hih);
        if (J->is_signed)
            ROW_BODY(int8_t, INT8_MIN);
        else
            ROW_BODY(uint8_t, 0);
    }
}

static void nhwc_maxpool(const onnxc_pool_params* p, const void* X, void* Y, int is_signed) {
    nhwc_pool_job J;
    int64_t rows;
    memset(&J, 0, sizeof(J));
    J.p = p;
    J.X = X;
    J.Y = Y;
    J.is_signed = is_signed;
    /* 2-D geometry in dims 1 and 2 of onnxc_geom3 (dim 0: size 1), as pool_ref.c's */
    onnxc_geom3_init(&J.g, p->rank, p->in, p->kernel, p->out, p->stride, p->pad_begin, p->pad_end, p->dilation);
    rows = p->N * J.g.out[1];
    onnxc_parallel_for(rows, rows > 1 && rows * J.g.out[2] * J.g.k[1] * J.g.k[2] * p->C >= NHWC_POOL_PARALLEL_MIN_WORK,
                       nhwc_pool_rows, &J);
}

void onnxc_u8_maxpool_nhwc(const onnxc_pool_params* p, const uint8_t* X, uint8_t* Y) { nhwc_maxpool(p, X, Y, 0); }

void onnxc_s8_maxpool_nhwc(const onnxc_pool_params* p, const int8_t* X, int8_t* Y) { nhwc_maxpool(p, X, Y, 1); }
