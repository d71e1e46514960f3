/* LayerNorm / RMSNorm / SkipLayerNorm over the last dim of a [rows, n] float32 tensor.
 *
 * Per row, in float with LN_LANES independent partial sums (the loops vectorize: one float
 * accumulator would be a serial chain the compiler may not reorder): the mean of (x - K), K =
 * the row's first element (the shift keeps a large mean from costing the sum its low bits),
 * then the variance as the mean of squared deviations from that mean (no E[x^2] - E[x]^2
 * cancellation), then the normalized row. The row is in L1 for all three passes. With a skip
 * input the summed row (x + bias) + skip is formed first, into `sum` when the caller wants it,
 * else into Y itself (normalized in place afterwards: each element is read before it is
 * written).
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements below which the rows stay on one thread: BERT-tiny's 128 x 128 (Skip)LayerNorms
 * (~7 us) split (they read the halves the split MatMul before them left in each core's cache). */
#define LN_PARALLEL_MIN_WORK (1 << 13)
#define LN_LANES 16

static void ln_row(int64_t n, const float* x, const float* skip, const float* bias,
                   const float* gamma, const float* beta, float eps, int rms, float* s, float* y) {
    const float* src = x;
    float a1[LN_LANES], s1 = 0.0f, m, inv, k0;
    int64_t k;
    int j;
    if (n <= 0) return;
    if (skip) {
        if (bias)
            for (k = 0; k < n; ++k) s[k] = (x[k] + bias[k]) + skip[k];
        else
            for (k = 0; k < n; ++k) s[k] = x[k] + skip[k];
        src = s;
    }
    m = 0.0f;
    if (!rms) {
        k0 = src[0];
        for (j = 0; j < LN_LANES; ++j) a1[j] = 0.0f;
        for (k = 0; k + LN_LANES <= n; k += LN_LANES)
            for (j = 0; j < LN_LANES; ++j) a1[j] += src[k + j] - k0;
        for (; k < n; ++k) s1 += src[k] - k0;
        for (j = 0; j < LN_LANES; ++j) s1 += a1[j];
        m = k0 + s1 / (float)n;
    }
    s1 = 0.0f;
    for (j = 0; j < LN_LANES; ++j) a1[j] = 0.0f;
    for (k = 0; k + LN_LANES <= n; k += LN_LANES)
        for (j = 0; j < LN_LANES; ++j) {
            const float d = src[k + j] - m;
            a1[j] += d * d;
        }
    for (; k < n; ++k) s1 += (src[k] - m) * (src[k] - m);
    for (j = 0; j < LN_LANES; ++j) s1 += a1[j];
    inv = 1.0f / sqrtf(s1 / (float)n + eps);
    if (gamma && beta)
        for (k = 0; k < n; ++k) y[k] = (src[k] - m) * inv * gamma[k] + beta[k];
    else if (gamma)
        for (k = 0; k < n; ++k) y[k] = (src[k] - m) * inv * gamma[k];
    else if (beta)
        for (k = 0; k < n; ++k) y[k] = (src[k] - m) * inv + beta[k];
    else
        for (k = 0; k < n; ++k) y[k] = (src[k] - m) * inv;
}

typedef struct {
    int64_t n;
    const float *X, *skip, *bias, *gamma, *beta;
    float eps;
    int rms;
    float *Y, *sum;
} ln_job;

static void ln_rows(void* ctx, int64_t r0, int64_t r1) {
    const ln_job* j = (const ln_job*)ctx;
    const int64_t n = j->n;
    int64_t r;
    for (r = r0; r < r1; ++r)
        ln_row(n, j->X + r * n, j->skip ? j->skip + r * n : NULL, j->bias, j->gamma, j->beta,
               j->eps, j->rms, j->sum ? j->sum + r * n : j->Y + r * n, j->Y + r * n);
}

void onnxc_layernorm(int64_t rows, int64_t n, const float* X, const float* skip,
                     const float* bias, const float* gamma, const float* beta, float eps, int rms,
                     float* Y, float* sum) {
    ln_job j;
    j.n = n; j.X = X; j.skip = skip; j.bias = bias; j.gamma = gamma; j.beta = beta;
    j.eps = eps; j.rms = rms; j.Y = Y; j.sum = sum;
    onnxc_parallel_for(rows, rows > 1 && rows * n >= LN_PARALLEL_MIN_WORK, ln_rows, &j);
}
