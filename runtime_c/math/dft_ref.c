/* Portable C99 DFT (ONNX opsets 17-20) along one axis, float32 in and out, sums in double; a
 * direct O(n^2) transform (no SIMD, no FFT) with the caller's twiddle table
 * tw[2j] = cos(2 pi j / n), tw[2j + 1] = sin(2 pi j / n), j < n, so no angle is recomputed.
 *
 * X is [outer, in_len, inner, in_c] (in_c 1: real, 2: complex), Y [outer, out_len, inner, out_c].
 * The signal is x[0 .. min(in_len, n)) zero-padded to n (dft_length).
 *   forward: Y[k] = sum_t x[t] e^{-2 pi i k t / n}, k < n (onesided: k <= n / 2), complex out;
 *   inverse: Y[t] = (1/n) sum_k x[k] e^{+2 pi i k t / n}, t < n, complex out;
 *   inverse onesided (irfft): the input holds bins 0 .. n/2 of a Hermitian spectrum (missing ones
 *     0; the imaginary parts of bin 0 and, n even, of bin n/2 ignored, as numpy's irfft), the
 *     output is the real signal of length n (out_c 1).
 */
#include "onnxc_kernels.h"

void onnxc_dft(const onnxc_dft_params* p, const double* tw, const float* X, float* Y) {
    const int64_t n = p->n, inner = p->inner, ic = p->in_c, oc = p->out_c;
    const int64_t avail = p->in_len < n ? p->in_len : n;
    int64_t o, q, k, t;
    for (o = 0; o < p->outer; ++o)
        for (q = 0; q < inner; ++q) {
            const float* x = X + o * p->in_len * inner * ic + q * ic;
            float* y = Y + o * p->out_len * inner * oc + q * oc;
            if (p->inverse && p->onesided) {
                const int64_t bins = avail < n / 2 + 1 ? avail : n / 2 + 1;
                for (t = 0; t < n; ++t) {
                    double acc = bins > 0 ? (double)x[0] : 0.0;
                    for (k = 1; k < bins; ++k) {
                        const int64_t j = (k * t) % n;
                        const double re = x[k * inner * ic], im = ic == 2 ? x[k * inner * ic + 1] : 0.0;
                        if (2 * k == n) acc += re * tw[2 * j];  /* Nyquist: e^{i pi t} = +-1, imag ignored */
                        else acc += 2.0 * (re * tw[2 * j] - im * tw[2 * j + 1]);
                    }
                    y[t * inner * oc] = (float)(acc / (double)n);
                }
                continue;
            }
            for (k = 0; k < p->out_len; ++k) {
                double re = 0.0, im = 0.0;
                for (t = 0; t < avail; ++t) {
                    const int64_t j = (k * t) % n;
                    const double c = tw[2 * j], s = p->inverse ? tw[2 * j + 1] : -tw[2 * j + 1];
                    const double xr = x[t * inner * ic], xi = ic == 2 ? x[t * inner * ic + 1] : 0.0;
                    re += xr * c - xi * s;
                    im += xr * s + xi * c;
                }
                if (p->inverse) {
                    re /= (double)n;
                    im /= (double)n;
                }
                y[k * inner * oc] = (float)re;
                y[k * inner * oc + 1] = (float)im;
            }
        }
}
