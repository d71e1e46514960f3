/* LayerNorm / RMSNorm / SkipLayerNorm over the last dim of a [rows, n] float32 tensor.
 *
 * One read of the input row gathers the statistics: sums of (x - K) and (x - K)^2 in double
 * with K = the row's first element (the shift keeps E[x^2] - E[x]^2 from cancelling when the
 * mean is large next to the spread); a second loop writes the normalized row. With a skip input
 * the summed row (x + bias) + skip is formed first, into `sum` when the caller wants it, else
 * into Y itself (normalized in place afterwards: each element is read before it is written).
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define LN_PARALLEL_MIN_WORK (1 << 15)
#define LN_LANES 8

static void ln_row(int64_t n, const float* x, const float* skip, const float* bias,
                   const float* gamma, const float* beta, float eps, int rms, float* s, float* y) {
    const float* src = x;
    double s1 = 0.0, s2 = 0.0, mean, var;
    float k0, m, inv;
    int64_t k;
    if (n <= 0) return;
    if (skip) {
        for (k = 0; k < n; ++k) s[k] = (bias ? x[k] + bias[k] : x[k]) + skip[k];
        src = s;
    }
    k0 = rms ? 0.0f : src[0];
    {
        /* LN_LANES independent partial sums: one double accumulator would be a serial chain
         * (no vectorization without reassociating, which -ffast-math alone would allow) */
        double a1[LN_LANES] = {0}, a2[LN_LANES] = {0};
        int j;
        for (k = 0; k + LN_LANES <= n; k += LN_LANES)
            for (j = 0; j < LN_LANES; ++j) {
                const double d = (double)src[k + j] - k0;
                a1[j] += d;
                a2[j] += d * d;
            }
        for (; k < n; ++k) {
            const double d = (double)src[k] - k0;
            s1 += d;
            s2 += d * d;
        }
        for (j = 0; j < LN_LANES; ++j) {
            s1 += a1[j];
            s2 += a2[j];
        }
    }
    mean = s1 / (double)n;
    var = rms ? s2 / (double)n : s2 / (double)n - mean * mean;
    if (var < 0.0) var = 0.0;
    m = rms ? 0.0f : (float)(mean + k0);
    inv = (float)(1.0 / sqrt(var + (double)eps));
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
