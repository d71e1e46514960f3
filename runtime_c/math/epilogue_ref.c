/* Kernel epilogues of the fused ops (onnxc.FusedConv and friends): y = act(y + z),
 * applied by a kernel to the block it just produced while that block is still in cache.
 *
 * The activations are the switch generated from the activation table (compiler/ops/
 * activations.py): the same float operations in the same order as the code generator's inline
 * expressions. One switch per row, outside the element loop, so every case is a plain
 * vectorizable loop.
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "activation_switch.h"

void onnxc_activation_row(const onnxc_activation* act, float* y, int64_t n) {
    if (act) onnxc_activation_apply(act->kind, act->alpha, act->beta, y, n);
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
