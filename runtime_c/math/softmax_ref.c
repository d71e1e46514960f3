/* Portable C99 Softmax / LogSoftmax over the middle axis of [outer, axis_len, inner].
 *
 * Numerically stable: the maximum along the axis is subtracted before exponentiating.
 * inner == 1 (the common "last axis" case) walks contiguous rows; inner > 1 works on chunks
 * of SOFTMAX_CHUNK adjacent inner positions at a time, so the inner loops stay unit-stride.
 * Y may equal X: every element is read before the same element is written.
 * exp is onnxc_expf (onnxc_transformer.h, within ~1.5 ulp, inline and branch-free), as in the
 * fused attention: libm's expf is an opaque call per element, which left these loops scalar
 * (an unfused attention's Softmax took 12% of BERT-base's int8 time, ~15 cycles per element).
 * Contiguous rows keep SOFTMAX_LANES independent partial maxima and sums so that the loops
 * vectorize (one float accumulator is a serial chain the compiler may not reorder).
 */
#include <float.h>
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define SOFTMAX_CHUNK 256
#define SOFTMAX_LANES 16
#define SOFTMAX_PARALLEL_MIN_WORK (1 << 14)

/* One contiguous row of n elements. */
static void softmax_row(const float* x, float* y, int64_t n, int log_mode) {
    float mx = -INFINITY, sum = 0.0f, lm[SOFTMAX_LANES], ls[SOFTMAX_LANES];
    int64_t i;
    int l;
    for (l = 0; l < SOFTMAX_LANES; ++l) {
        lm[l] = -INFINITY;
        ls[l] = 0.0f;
    }
    for (i = 0; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
        for (l = 0; l < SOFTMAX_LANES; ++l) lm[l] = x[i + l] > lm[l] ? x[i + l] : lm[l];
    for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
    for (l = 0; l < SOFTMAX_LANES; ++l) mx = lm[l] > mx ? lm[l] : mx;
    if (log_mode) {
        float lse;
        for (i = 0; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
            for (l = 0; l < SOFTMAX_LANES; ++l) ls[l] += onnxc_expf(x[i + l] - mx);
        for (; i < n; ++i) sum += onnxc_expf(x[i] - mx);
        for (l = 0; l < SOFTMAX_LANES; ++l) sum += ls[l];
        lse = mx + logf(sum);
        for (i = 0; i < n; ++i) y[i] = x[i] - lse;
    } else {
        float inv;
        for (i = 0; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
            for (l = 0; l < SOFTMAX_LANES; ++l) {
                const float e = onnxc_expf(x[i + l] - mx);
                y[i + l] = e;
                ls[l] += e;
            }
        for (; i < n; ++i) {
            const float e = onnxc_expf(x[i] - mx);
            y[i] = e;
            sum += e;
        }
        for (l = 0; l < SOFTMAX_LANES; ++l) sum += ls[l];
        inv = 1.0f / sum;
        for (i = 0; i < n; ++i) y[i] *= inv;
    }
}

/* axis_len x w block with row stride `inner` (w <= SOFTMAX_CHUNK adjacent inner positions). */
static void softmax_cols(const float* x, float* y, int64_t axis_len, int64_t inner, int64_t w,
                         int log_mode) {
    float mx[SOFTMAX_CHUNK], sum[SOFTMAX_CHUNK];
    int64_t a, j;
    for (j = 0; j < w; ++j) {
        mx[j] = -INFINITY;
        sum[j] = 0.0f;
    }
    for (a = 0; a < axis_len; ++a) {
        const float* xa = x + a * inner;
        for (j = 0; j < w; ++j) mx[j] = xa[j] > mx[j] ? xa[j] : mx[j];
    }
    if (log_mode) {
        for (a = 0; a < axis_len; ++a) {
            const float* xa = x + a * inner;
            for (j = 0; j < w; ++j) sum[j] += onnxc_expf(xa[j] - mx[j]);
        }
        for (j = 0; j < w; ++j) sum[j] = mx[j] + logf(sum[j]);
        for (a = 0; a < axis_len; ++a) {
            const float* xa = x + a * inner;
            float* ya = y + a * inner;
            for (j = 0; j < w; ++j) ya[j] = xa[j] - sum[j];
        }
    } else {
        for (a = 0; a < axis_len; ++a) {
            const float* xa = x + a * inner;
            float* ya = y + a * inner;
            for (j = 0; j < w; ++j) {
                const float e = onnxc_expf(xa[j] - mx[j]);
                ya[j] = e;
                sum[j] += e;
            }
        }
        for (j = 0; j < w; ++j) sum[j] = 1.0f / sum[j];
        for (a = 0; a < axis_len; ++a) {
            float* ya = y + a * inner;
            for (j = 0; j < w; ++j) ya[j] *= sum[j];
        }
    }
}

typedef struct {
    int64_t axis_len, inner, chunks;
    const float* X;
    float* Y;
    int log_mode;
} softmax_job;

static void softmax_rows(void* ctx, int64_t t0, int64_t t1) {
    const softmax_job* j = (const softmax_job*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) softmax_row(j->X + t * j->axis_len, j->Y + t * j->axis_len, j->axis_len, j->log_mode);
}

static void softmax_col_chunks(void* ctx, int64_t t0, int64_t t1) {
    const softmax_job* j = (const softmax_job*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t o = t / j->chunks;
        const int64_t j0 = (t % j->chunks) * SOFTMAX_CHUNK;
        const int64_t w = j->inner - j0 < SOFTMAX_CHUNK ? j->inner - j0 : SOFTMAX_CHUNK;
        const int64_t base = o * j->axis_len * j->inner + j0;
        softmax_cols(j->X + base, j->Y + base, j->axis_len, j->inner, w, j->log_mode);
    }
}

static void softmax_any(int64_t outer, int64_t axis_len, int64_t inner, const float* X, float* Y,
                        int log_mode) {
    softmax_job j;
    if (outer <= 0 || axis_len <= 0 || inner <= 0) return;
    j.axis_len = axis_len; j.inner = inner; j.X = X; j.Y = Y; j.log_mode = log_mode;
    j.chunks = (inner + SOFTMAX_CHUNK - 1) / SOFTMAX_CHUNK;
    if (inner == 1)
        onnxc_parallel_for(outer, outer > 1 && outer * axis_len >= SOFTMAX_PARALLEL_MIN_WORK,
                           softmax_rows, &j);
    else
        onnxc_parallel_for(outer * j.chunks,
                           outer * j.chunks > 1 && outer * axis_len * inner >= SOFTMAX_PARALLEL_MIN_WORK,
                           softmax_col_chunks, &j);
}

void onnxc_softmax(int64_t outer, int64_t axis_len, int64_t inner, const float* X, float* Y) {
    softmax_any(outer, axis_len, inner, X, Y, 0);
}

void onnxc_logsoftmax(int64_t outer, int64_t axis_len, int64_t inner, const float* X, float* Y) {
    softmax_any(outer, axis_len, inner, X, Y, 1);
}
