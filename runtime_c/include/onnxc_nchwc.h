/* onnxc NCHWc kernels: convolution, pooling and reorders on channel-blocked tensors.
 *
 * A blocked tensor of logical shape [N, C, H, W] is stored as [N, ceil(C/b), H, W, b]: channel
 * c lives in block c/b, lane c%b.  The lanes past C in the last block ("padding channels") hold
 * zeros; every kernel here reads them as zeros and writes zeros there, so a blocked region
 * never lets padding leak into a real channel.  b is the target's ONNXC_NCHWC_BLOCK: 8 (avx2 and
 * portable builds) or 16 (avx512); each kernel exists once per block size, onnxc_f32_nchwc_<kind>
 * _b8 / _b16 (compiler/kernels/nchwc_f32.py lists them), so that b is a compile-time constant and
 * the b-wide inner loops vectorize: a block matching the build's vector registers runs
 * intrinsics, the other the plain C path of the same loops.
 */
#ifndef ONNXC_NCHWC_H
#define ONNXC_NCHWC_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2-D convolution geometry.  C and M are the real input/output channel counts (not rounded to
 * the block).  group: 1, C (depthwise: one input and one output channel per group) or a group
 * count whose C/group and M/group are multiples of b.  PT/PL are the leading pads (the trailing
 * pads are implied by OH/OW).  lo/hi clamp the result after bias and Z (use -INFINITY/INFINITY
 * for no clamp; Relu is [0, INFINITY), Clip [min, max]). */
typedef struct {
    int64_t N, C, M, group;
    int64_t IH, IW, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW;
    float lo, hi;
} onnxc_nchwc_conv_params;

/* Y = clamp(conv(X, W) + B + Z), X and Y blocked, Z (may be NULL) blocked with Y's shape,
 * B (may be NULL) padded to ceil(M/b)*b.  W is [Mb, Cbg, KH, KW, b_in, b_out] with
 * Mb = ceil(M/b), Cbg = ceil((C/group)/b): W[ob][ib][kh][kw][ci][co] is the weight from input
 * channel (group's first block + ib)*b + ci to output channel ob*b + co (0 where either is a
 * padding channel).  1x1 kernels with stride 1 and no padding run as a GEMM over the blocked
 * channels (pixels as one long row). */
void onnxc_f32_nchwc_conv_b8(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                             const float* B, const float* Z, float* Y);
void onnxc_f32_nchwc_conv_b16(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                              const float* B, const float* Z, float* Y);

/* Y as onnxc_f32_nchwc_conv for 1x1 kernels with a stride and no padding: the sampled pixels
 * are gathered into S (N * ceil(C/b) * OH * OW * b floats; C/group a multiple of b when
 * grouped) and summed as a stride-1 pointwise conv.  Other geometries run
 * onnxc_f32_nchwc_conv (S unused). */
void onnxc_f32_nchwc_conv_subsample_b8(const onnxc_nchwc_conv_params* p, const float* X,
                                       const float* W, const float* B, const float* Z, float* Y,
                                       float* S);
void onnxc_f32_nchwc_conv_subsample_b16(const onnxc_nchwc_conv_params* p, const float* X,
                                        const float* W, const float* B, const float* Z, float* Y,
                                        float* S);

/* Depthwise (group == C == M): W is [ceil(C/b), KH, KW, b]. */
void onnxc_f32_nchwc_conv_depthwise_b8(const onnxc_nchwc_conv_params* p, const float* X,
                                       const float* W, const float* B, const float* Z, float* Y);
void onnxc_f32_nchwc_conv_depthwise_b16(const onnxc_nchwc_conv_params* p, const float* X,
                                        const float* W, const float* B, const float* Z, float* Y);

/* First-layer variant: X is plain NCHW (few channels, not worth a reorder), Y blocked, group 1;
 * W is [ceil(M/b), C, KH, KW, b]. */
void onnxc_f32_nchwc_conv_nchw_b8(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                                  const float* B, const float* Z, float* Y);
void onnxc_f32_nchwc_conv_nchw_b16(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                                   const float* B, const float* Z, float* Y);

/* Winograd F(2x2, 3x3) (conv_winograd.c): 3x3, stride 1, dilation 1, group 1, any pads and
 * sizes; Y = clamp(conv(X, W) + B + Z) as onnxc_f32_nchwc_conv.  U is the transformed weight
 * [16][Mb][Cb][b_in][b_out]: U[xi][ob][ib][ci][co] = (G g G^T)[xi / 4][xi % 4] of the 3x3 kernel
 * g from input channel ib*b + ci to output channel ob*b + co (0 for padding channels), G =
 * [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].  scratch: at least
 * onnxc_f32_nchwc_conv_winograd_scratch_b<b>(p) bytes, computable at compile time: with
 * tiles = N * ceil(OH/2) * ceil(OW/2), Cb = ceil(C/b), Mb = ceil(M/b),
 * phases = Cb*Mb*b*b >= ONNXC_WINOGRAD_PHASES_MIN_CM, (budget, most) = phases ?
 * (ONNXC_WINOGRAD_PHASES_BYTES, ONNXC_WINOGRAD_PHASES_MAX_TILES) : (ONNXC_WINOGRAD_CHUNK_BYTES,
 * ONNXC_WINOGRAD_MAX_TILES),
 *   T = min(tiles, max(1, min(most, budget / (64 * (Cb + Mb) * b)))),
 *   slots = phases ? 1 : min(ceil(tiles / T), ONNXC_WINOGRAD_SLOTS),
 *   bytes = slots * 64 * (Cb + Mb) * b * T
 * (output tiles run in chunks of at most T; a chunk's transformed input and products take one
 * slot: one per thread at work, or one shared by the threads in phases mode). */
#ifndef ONNXC_WINOGRAD_CHUNK_BYTES
#define ONNXC_WINOGRAD_CHUNK_BYTES (384 * 1024)
#endif
#ifndef ONNXC_WINOGRAD_MAX_TILES
#define ONNXC_WINOGRAD_MAX_TILES 96
#endif
#ifndef ONNXC_WINOGRAD_SLOTS
#define ONNXC_WINOGRAD_SLOTS 4
#endif
#ifndef ONNXC_WINOGRAD_PHASES_MIN_CM
#define ONNXC_WINOGRAD_PHASES_MIN_CM 32768
#endif
#ifndef ONNXC_WINOGRAD_PHASES_BYTES
#define ONNXC_WINOGRAD_PHASES_BYTES (4 * 1024 * 1024)
#endif
#ifndef ONNXC_WINOGRAD_PHASES_MAX_TILES
#define ONNXC_WINOGRAD_PHASES_MAX_TILES 192
#endif
void onnxc_f32_nchwc_conv_winograd_b8(const onnxc_nchwc_conv_params* p, const float* X,
                                      const float* U, const float* B, const float* Z, float* Y,
                                      float* scratch);
void onnxc_f32_nchwc_conv_winograd_b16(const onnxc_nchwc_conv_params* p, const float* X,
                                       const float* U, const float* B, const float* Z, float* Y,
                                       float* scratch);
int64_t onnxc_f32_nchwc_conv_winograd_scratch_b8(const onnxc_nchwc_conv_params* p);
int64_t onnxc_f32_nchwc_conv_winograd_scratch_b16(const onnxc_nchwc_conv_params* p);
/* F(4x4, 3x3): the same with U [36][Mb][Cb][b_in][b_out] = (G4 g G4^T) (G4: ops/nchwc.py
 * WINOGRAD_G4), 4x4 output tiles (tiles = N * ceil(OH/4) * ceil(OW/4)) and 144 instead of 64 in
 * the scratch rule (36 positions). */
void onnxc_f32_nchwc_conv_winograd_f4_b8(const onnxc_nchwc_conv_params* p, const float* X,
                                         const float* U, const float* B, const float* Z, float* Y,
                                         float* scratch);
void onnxc_f32_nchwc_conv_winograd_f4_b16(const onnxc_nchwc_conv_params* p, const float* X,
                                          const float* U, const float* B, const float* Z, float* Y,
                                          float* scratch);
int64_t onnxc_f32_nchwc_conv_winograd_scratch_f4_b8(const onnxc_nchwc_conv_params* p);
int64_t onnxc_f32_nchwc_conv_winograd_scratch_f4_b16(const onnxc_nchwc_conv_params* p);

/* 2-D pooling geometry on blocked tensors (C real channels); PB/PR trailing pads (read only by
 * AveragePool with count_include_pad, as onnxc_avgpool does). */
typedef struct {
    int64_t N, C;
    int64_t IH, IW, OH, OW, KH, KW, SH, SW, PT, PL, PB, PR, DH, DW;
    int count_include_pad;
} onnxc_nchwc_pool_params;

/* MaxPool / AveragePool, blocked in and out (semantics of onnxc_maxpool / onnxc_avgpool). */
void onnxc_f32_nchwc_maxpool_b8(const onnxc_nchwc_pool_params* p, const float* X, float* Y);
void onnxc_f32_nchwc_maxpool_b16(const onnxc_nchwc_pool_params* p, const float* X, float* Y);
void onnxc_f32_nchwc_avgpool_b8(const onnxc_nchwc_pool_params* p, const float* X, float* Y);
void onnxc_f32_nchwc_avgpool_b16(const onnxc_nchwc_pool_params* p, const float* X, float* Y);

/* Global average (is_max 0) / max (is_max 1) pool of blocked X [N, ceil(C/b), HW, b]; Y is
 * blocked [N, ceil(C/b), 1, 1, b] (nchw_out 0) or plain [N, C, 1, 1] (nchw_out 1). */
void onnxc_f32_nchwc_global_pool_b8(int64_t N, int64_t C, int64_t HW, int is_max, int nchw_out,
                                    const float* X, float* Y);
void onnxc_f32_nchwc_global_pool_b16(int64_t N, int64_t C, int64_t HW, int is_max, int nchw_out,
                                     const float* X, float* Y);

/* Channel gather: Y (blocked, Cb blocks, N images of HW pixels) takes each channel from one
 * channel of the blocked inputs X[i] (in_blocks[i] blocks each).  Output block ob is built from
 * the entries [first[ob], first[ob+1]) of ent, each 3 + b int32: input i, its block, the mask of
 * output lanes it fills, the b source lanes; unfilled lanes are zero (gather_nchwc.c). */
void onnxc_f32_nchwc_channel_gather_b8(int64_t N, int64_t HW, int64_t Cb, const float* const* X,
                                       const int64_t* in_blocks, const int32_t* first,
                                       const int32_t* ent, float* Y);
void onnxc_f32_nchwc_channel_gather_b16(int64_t N, int64_t HW, int64_t Cb, const float* const* X,
                                        const int64_t* in_blocks, const int32_t* first,
                                        const int32_t* ent, float* Y);

/* NCHW [N, C, HW] -> blocked [N, ceil(C/b), HW, b] (padding channels zeroed), and back. */
void onnxc_f32_nchwc_reorder_input_b8(int64_t N, int64_t C, int64_t HW, const float* X, float* Y);
void onnxc_f32_nchwc_reorder_input_b16(int64_t N, int64_t C, int64_t HW, const float* X, float* Y);
/* The same with output channel c taken from input channel chan[c] (a channel shuffle folded
 * into the reorder). */
void onnxc_f32_nchwc_reorder_input_perm_b8(int64_t N, int64_t C, int64_t HW, const float* X,
                                           const int32_t* chan, float* Y);
void onnxc_f32_nchwc_reorder_input_perm_b16(int64_t N, int64_t C, int64_t HW, const float* X,
                                            const int32_t* chan, float* Y);
void onnxc_f32_nchwc_reorder_output_b8(int64_t N, int64_t C, int64_t HW, const float* X, float* Y);
void onnxc_f32_nchwc_reorder_output_b16(int64_t N, int64_t C, int64_t HW, const float* X, float* Y);

/* Y = X * S[c] + T[c] per channel of blocked X [N, Cb, HW, b]; S and T hold Cb*b floats (zeros
 * in the padding lanes keep the padding zero).  Y may equal X. */
void onnxc_f32_nchwc_scale_shift_b8(int64_t N, int64_t Cb, int64_t HW, const float* X,
                                    const float* S, const float* T, float* Y);
void onnxc_f32_nchwc_scale_shift_b16(int64_t N, int64_t Cb, int64_t HW, const float* X,
                                     const float* S, const float* T, float* Y);

#ifdef __cplusplus
}
#endif

#endif /* ONNXC_NCHWC_H */
