/* Kernel epilogues of the fused ops (onnxc.FusedConv and friends): y = act(y + z),
 * applied by a kernel to the block it just produced while that block is still in cache.
 *
 * The formulas are those of the C expression table in compiler/providers/c/fused_nn.py (the
 * same float operations in the same order): Relu keeps NaN, Clip is max-then-min, HardSigmoid
 * keeps NaN, SiLU is x * sigmoid(x) as onnxc_siluf's x / (1 + exp(-x)); Sigmoid/SiLU use the
 * vectorizable onnxc_sigmoidf / onnxc_siluf (within 2.5 ulp), as the unfused float32 Sigmoid does.
 * One switch per row, outside the element loop, so every case is a plain vectorizable loop.
 */
#include <math.h>

#include "onnxc_kernels.h"

/* min(1, max(0, v)) by comparisons: vectorizes (fminf/fmaxf are libm calls without
 * -ffinite-math-only) and keeps a NaN, as the spec's clamp does */
static inline float ep_clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

void onnxc_activation_row(const onnxc_activation* act, float* y, int64_t n) {
    int64_t i;
    const float a = act ? act->alpha : 0.0f, b = act ? act->beta : 0.0f;
    switch (act ? act->kind : ONNXC_ACT_NONE) {
        case ONNXC_ACT_RELU:
            for (i = 0; i < n; ++i) y[i] = y[i] < 0.0f ? 0.0f : y[i];
            break;
        case ONNXC_ACT_LEAKYRELU:
            for (i = 0; i < n; ++i) y[i] = y[i] < 0.0f ? a * y[i] : y[i];
            break;
        case ONNXC_ACT_CLIP:
            for (i = 0; i < n; ++i) {
                const float v = y[i] < a ? a : y[i];
                y[i] = v > b ? b : v;
            }
            break;
        case ONNXC_ACT_SIGMOID:
            for (i = 0; i < n; ++i) y[i] = onnxc_sigmoidf(y[i]);
            break;
        case ONNXC_ACT_TANH:
            for (i = 0; i < n; ++i) y[i] = tanhf(y[i]);
            break;
        case ONNXC_ACT_HARDSIGMOID:
            for (i = 0; i < n; ++i) y[i] = ep_clamp01(a * y[i] + b);
            break;
        case ONNXC_ACT_HARDSWISH:
            for (i = 0; i < n; ++i) y[i] = y[i] * ep_clamp01(y[i] / 6.0f + 0.5f);
            break;
        case ONNXC_ACT_SILU:
            for (i = 0; i < n; ++i) y[i] = onnxc_siluf(y[i]);
            break;
        default:
            break;
    }
}

void onnxc_epilogue_row(const onnxc_activation* act, float bias, const float* z, float* y,
                        int64_t n) {
    int64_t i;
    if (z)
        for (i = 0; i < n; ++i) y[i] = (y[i] + bias) + z[i];
    else if (bias != 0.0f)
        for (i = 0; i < n; ++i) y[i] += bias;
    onnxc_activation_row(act, y, n);
}
