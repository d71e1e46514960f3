/* onnxc runtime kernels of the transformer fusions (onnxc.LayerNormalization,
 * RMSNormalization, SkipLayerNormalization, MultiHeadAttention); float32, conventions as in
 * onnxc_kernels.h (which includes this header). */
#ifndef ONNXC_TRANSFORMER_H
#define ONNXC_TRANSFORMER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Per row of X[rows, n]: s = skip ? (x + bias) + skip : x; y = (s - mean) / sqrt(var + eps) *
 * gamma + beta (rms: mean taken as 0). bias/gamma/beta are [n] or NULL (0 / 1 / 0); bias is
 * read only with skip. sum (may be NULL) receives s. Y may not alias X or skip. */
void onnxc_layernorm(int64_t rows, int64_t n, const float* X, const float* skip,
                     const float* bias, const float* gamma, const float* beta, float eps, int rms,
                     float* Y, float* sum);

/* Self-attention of X ([B, S, E], or [S, B, E] with seq_first) with the packed projection
 * W [E, 3*H*D] (Q | K | V column blocks, head h at h*D) and bias [3*H*D] (may be NULL):
 * Y (X's layout, [.., .., H*D]) = per head softmax(scale * Q K^T + mask) V. The float mask (used
 * when has_mask) is addressed by element strides over (batch, head, query, key), 0 along
 * broadcast dims. nan_to_zero: NaN probabilities become 0. tile_rows query rows per task,
 * `slots` score tiles. */
typedef struct {
    int64_t B, S, E, H, D;
    int seq_first;
    float scale;
    int has_mask;
    int64_t mask_str[4];
    int nan_to_zero;
    int64_t tile_rows, slots;
} onnxc_mha_params;

size_t onnxc_mha_scratch_floats(const onnxc_mha_params* p);

void onnxc_mha(const onnxc_mha_params* p, const float* X, const float* W, const float* bias,
               const float* mask, float* Y, float* scratch);

#ifdef __cplusplus
}
#endif

#endif /* ONNXC_TRANSFORMER_H */
