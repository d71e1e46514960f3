/* onnxc runtime kernels: portable C99 float32 kernels called by generated code.
 *
 * Conventions shared by every kernel here:
 *   - tensors are dense, row-major (C order), NC[D][H]W for images;
 *   - no kernel allocates memory; scratch space, when needed, is passed in by the caller;
 *   - outputs never alias inputs unless a comment says otherwise;
 *   - kernels are thread-safe and parallelize internally with OpenMP when built with -fopenmp.
 */
#ifndef ONNXC_KERNELS_H
#define ONNXC_KERNELS_H

#include <stdint.h>
#include <stddef.h>
#include "onnxc_isa.h" /* the build's ISA row: SGEMM tile and K block, NCHWc block (generated) */
#include "onnxc_transformer.h" /* LayerNorm and attention fusions (runtime_c/math, attention) */
#include "onnxc_nchwc.h" /* NCHWc blocked-layout kernels (runtime_c/nchwc/) */

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, row-major; op(X) = X if trans == 0 else X^T.
 * lda/ldb/ldc are the row strides (in floats) of A, B, C as stored (A is MxK or KxM if transA).
 * When beta == 0, C is write-only (never read, may hold NaN); M, N or K may be 0. */
void onnxc_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                 float* C, int64_t ldc);

/* Register tile of the microkernel this build uses, ONNXC_SGEMM_TILE_M x ONNXC_SGEMM_TILE_N
 * (onnxc_isa.h: that of the float ISA of the row the compiler flags select, e.g. 14x32 for
 * onnxc_f32_gemm_14x32__avx512), and ONNXC_SGEMM_KC, the K block of the blocked loops.
 * Packed B layout for an op(B) of [K,N], with TN = ONNXC_SGEMM_TILE_N, Np = N rounded up to a
 * multiple of TN, kb = ceil(K / ceil(K / ONNXC_SGEMM_KC)) (equal K blocks):
 *   K block [pc, pc + kc) (pc a multiple of kb, kc = min(kb, K - pc)) starts at pc * Np and holds
 *   Np / TN panels of kc x TN floats: op(B)[pc + k][p*TN + j] is at pc*Np + p*kc*TN + k*TN + j,
 *   zero for columns >= N.
 * (K-block-major so that the panels a block streams are contiguous: whole-K panels put them at
 * a power-of-two stride for K = 1024 and they evicted each other from L2.)
 * compiler/providers/c/linalg.py packs weights the same way at compile time; the generated code
 * checks that both agree on TILE_N and KC. */

/* Floats of packed B for an [K,N] op(B) (K * N rounded up to whole panels). */
size_t onnxc_sgemm_packed_floats(int64_t N, int64_t K);

/* Pack op(B) (B is KxN, or NxK if transB, row stride ldb) into the panel layout above. */
void onnxc_sgemm_pack_b(int transB, int64_t N, int64_t K, const float* B, int64_t ldb,
                        float* packedB);

/* onnxc_sgemm with op(B) given packed (see above); packedB must be 64-byte aligned. */
void onnxc_sgemm_packed(int transA, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* packedB, float beta,
                        float* C, int64_t ldc);

/* Epilogue of a GEMM (fused bias/activation): called once for every element of C, in blocks,
 * right after the block's last K step (while it is in cache), from whichever thread computed
 * it: fn(arg, c, ldc, i0, m, j0, n) with c = &C[i0 * ldc + j0], the block being m x n. */
typedef void (*onnxc_sgemm_epilogue_fn)(const void* arg, float* c, int64_t ldc, int64_t i0,
                                        int64_t m, int64_t j0, int64_t n);
typedef struct {
    onnxc_sgemm_epilogue_fn fn;
    const void* arg;
} onnxc_sgemm_epilogue;

/* onnxc_sgemm / onnxc_sgemm_packed, then ep (may be NULL) on every block of the result. */
void onnxc_sgemm_ep(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc, const onnxc_sgemm_epilogue* ep);
void onnxc_sgemm_packed_ep(int transA, int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, const float* packedB, float beta,
                           float* C, int64_t ldc, const onnxc_sgemm_epilogue* ep);

/* ONNXC_SGEMM_TILE_M / _N of the build (lets code built elsewhere check the packed layout). */
int onnxc_sgemm_tile_m(void);
int onnxc_sgemm_tile_n(void);

/* ------------------------------------------------------------------------------------------ */
/* Convolution                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Parameters of an N-d convolution with 1 <= rank <= 3 spatial dims; only the first `rank`
 * entries of each array are read. in/out are spatial sizes (out already computed by the caller,
 * auto_pad included); pad_begin is the leading pad per spatial dim (the trailing pad is implied
 * by out). W is [M, C/group, kernel...]. */
typedef struct {
    int64_t N, C, M, group, rank;
    int64_t in[3], kernel[3], out[3], stride[3], pad_begin[3], dilation[3];
} onnxc_conv_params;

/* Floats of scratch onnxc_conv needs for these parameters (0 when X can be used directly:
 * 1x1 kernels with stride 1 and no padding, or depthwise convolutions). */
size_t onnxc_conv_scratch_floats(const onnxc_conv_params* p);

/* Y[N,M,out...] = conv(X[N,C,in...], W[M,C/group,kernel...]) + B[M] (B may be NULL).
 * scratch holds onnxc_conv_scratch_floats(p) floats (may be NULL when that is 0).
 * Implemented as im2col + onnxc_sgemm per (image, group); depthwise-like groups (C/group == 1,
 * group > 1) use a direct loop. */
void onnxc_conv(const onnxc_conv_params* p, const float* X, const float* W, const float* B,
                float* Y, float* scratch);

/* ONNX DeformConv, 2-D: Y[N,M,oh,ow] from X[N,C,H,W], W[M,C/group,kh,kw], offset[N,
 * offset_group*kh*kw*2,oh,ow], B[M] and mask[N,offset_group*kh*kw,oh,ow] (both may be NULL);
 * cols holds onnxc_deformconv_scratch_floats(p) floats. runtime_c/conv/deformconv_ref.c. */
typedef struct {
    int64_t N, C, H, W, M, group, offset_group, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
} onnxc_deformconv_params;

size_t onnxc_deformconv_scratch_floats(const onnxc_deformconv_params* p);
void onnxc_deformconv(const onnxc_deformconv_params* p, const float* X, const float* Wt, const float* offset,
                      const float* B, const float* mask, float* Y, float* cols);

/* ------------------------------------------------------------------------------------------ */
/* Image: col2im, transposed convolution, GridSample, RoiAlign (runtime_c/image/)              */
/* ------------------------------------------------------------------------------------------ */

/* Geometry of a col2im with 1 <= rank <= 3 spatial dims (first `rank` entries read): each of
 * the prod(grid) positions q scatters a kernel-sized patch into an image at
 * q*stride - pad_begin + k*dilation (positions outside the image are dropped). */
typedef struct {
    int64_t rank;
    int64_t image[3], kernel[3], grid[3], stride[3], pad_begin[3], dilation[3];
} onnxc_col2im_params;

/* Y[channels, image...] = sum of the scattered columns col[channels, prod(kernel), prod(grid)]
 * (ONNX Col2Im for one batch image). Y is overwritten. */
void onnxc_col2im(const onnxc_col2im_params* p, int64_t channels, const float* col, float* Y);

/* Floats of scratch onnxc_conv_transpose needs: M/group * prod(kernel) * prod(in). */
size_t onnxc_conv_transpose_scratch_floats(const onnxc_conv_params* p);

/* ONNX ConvTranspose: Y[N,M,out...] from X[N,C,in...], W[C,M/group,kernel...], B[M] (may be
 * NULL). p->in is X's spatial size, p->out Y's (output_padding / output_shape already applied
 * by the caller), p->pad_begin the leading pad. Per (image, group): W_g^T * X_g with
 * onnxc_sgemm into scratch, then col2im into Y. */
void onnxc_conv_transpose(const onnxc_conv_params* p, const float* X, const float* W,
                          const float* B, float* Y, float* scratch);

enum { ONNXC_GS_NEAREST = 0, ONNXC_GS_LINEAR = 1, ONNXC_GS_CUBIC = 2 };
enum { ONNXC_GS_PAD_ZEROS = 0, ONNXC_GS_PAD_BORDER = 1, ONNXC_GS_PAD_REFLECTION = 2 };

/* ONNX GridSample with rank = 2 or 3 spatial dims: X[N,C,in...], grid[N,out...,rank] holding
 * normalized (x, y[, z]) coordinates, Y[N,C,out...]. Cubic is defined for rank 2 only. */
typedef struct {
    int64_t N, C, rank;
    int64_t in[3], out[3];
    int mode, padding, align_corners;
} onnxc_gridsample_params;

void onnxc_gridsample(const onnxc_gridsample_params* p, const float* X, const float* grid,
                      float* Y);

/* ONNX RoiAlign: X[batches,C,H,W], rois[num_rois,4] as (x1, y1, x2, y2), batch_indices
 * [num_rois] (outside [0, batches): zero output), Y[num_rois,C,pooled_h,pooled_w]. half_pixel:
 * coordinate_transformation_mode "half_pixel" (else "output_half_pixel"); mode_max: "max". */
typedef struct {
    int64_t num_rois, batches, C, H, W, pooled_h, pooled_w, sampling_ratio;
    float spatial_scale;
    int half_pixel, mode_max;
} onnxc_roialign_params;

void onnxc_roialign(const onnxc_roialign_params* p, const float* X, const float* rois,
                    const int64_t* batch_indices, float* Y);

/* ONNX MaxRoiPool: X[batches,C,H,W], rois[num_rois,5] as (batch_id, x1, y1, x2, y2),
 * Y[num_rois,C,pooled_h,pooled_w] (runtime_c/image/maxroipool_ref.c says how bins fall). */
typedef struct {
    int64_t num_rois, batches, C, H, W, pooled_h, pooled_w;
    float spatial_scale;
} onnxc_maxroipool_params;

void onnxc_maxroipool(const onnxc_maxroipool_params* p, const float* X, const float* rois, float* Y);

/* ONNX TfIdfVectorizer over rows of row_len int32 (x32) or int64 (x64, the other NULL) tokens,
 * the pool as a trie (first[nodes + 1], keys[edges], column[nodes]: compiler/ops/text.py),
 * Y[rows, out_size]; weights[out_size] or NULL (all 1). runtime_c/text/tfidf_ref.c. */
enum { ONNXC_TFIDF_TF = 0, ONNXC_TFIDF_IDF = 1, ONNXC_TFIDF_TFIDF = 2 };
typedef struct {
    int64_t rows, row_len, out_size, min_gram, max_gram, max_skip;
    int mode;
} onnxc_tfidf_params;

void onnxc_tfidf(const onnxc_tfidf_params* p, const int64_t* x64, const int32_t* x32, const int64_t* first,
                 const int64_t* keys, const int64_t* column, const float* weights, float* Y);

/* ------------------------------------------------------------------------------------------ */
/* Pooling and normalization                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Parameters of an N-d pooling with 1 <= rank <= 3 spatial dims (X is [N,C,in...], Y is
 * [N,C,out...]; out already computed by the caller, ceil_mode/auto_pad included).
 * pad_end is the trailing pad per spatial dim as given by the model (after auto_pad resolution):
 * only AveragePool with count_include_pad reads it, to know where the padded region ends
 * (with ceil_mode a window may run past it; those positions never count). */
typedef struct {
    int64_t N, C, rank;
    int64_t in[3], kernel[3], out[3], stride[3], pad_begin[3], dilation[3];
    int count_include_pad;
    int64_t pad_end[3];
} onnxc_pool_params;

/* ONNX MaxPool (padding never wins). indices may be NULL; otherwise it receives, per output,
 * the flattened index into X over (N, C, spatial...) of the max (storage_order = 0). */
void onnxc_maxpool(const onnxc_pool_params* p, const float* X, float* Y, int64_t* indices);
/* The same on int8 / uint8 tensors (an empty window gives the type's minimum). */
void onnxc_s8_maxpool(const onnxc_pool_params* p, const int8_t* X, int8_t* Y, int64_t* indices);
void onnxc_u8_maxpool(const onnxc_pool_params* p, const uint8_t* X, uint8_t* Y, int64_t* indices);
/* The same on NHWC tensors (N, spatial..., C; p->C = C), rank 1 or 2: pool/maxpool_nhwc.c. */
void onnxc_s8_maxpool_nhwc(const onnxc_pool_params* p, const int8_t* X, int8_t* Y);
void onnxc_u8_maxpool_nhwc(const onnxc_pool_params* p, const uint8_t* X, uint8_t* Y);

/* ONNX AveragePool: sum of the window's input elements divided by the count of window positions
 * inside the padded region (count_include_pad) or inside the input (otherwise); 0 if empty. */
void onnxc_avgpool(const onnxc_pool_params* p, const float* X, float* Y);

/* Y[i] = mean of X[i*spatial .. (i+1)*spatial) for i < NC (ONNX GlobalAveragePool). */
void onnxc_global_avgpool(int64_t NC, int64_t spatial, const float* X, float* Y);

/* Y[i] = max of X[i*spatial .. (i+1)*spatial) for i < NC (ONNX GlobalMaxPool). */
void onnxc_global_maxpool(int64_t NC, int64_t spatial, const float* X, float* Y);

/* ONNX LRN over X[N,C,spatial]: y = x / (bias + alpha/size * sum of x^2 over channels
 * [c - floor((size-1)/2), c + ceil((size-1)/2)] clipped to [0, C))^beta. Y must not alias X. */
void onnxc_lrn(int64_t N, int64_t C, int64_t spatial, int64_t size, float alpha, float beta,
               float bias, const float* X, float* Y);

/* ONNX LpPool with exponent pw >= 1 (geometry as for onnxc_avgpool; pad_end and
 * count_include_pad unused): y = (sum of |x|^pw over the in-bounds window elements)^(1/pw). */
void onnxc_lppool(const onnxc_pool_params* p, int64_t pw, const float* X, float* Y);

/* ONNX DFT along one axis (runtime_c/math/dft_ref.c): X[outer, in_len, inner, in_c],
 * Y[outer, out_len, inner, out_c], n the dft_length, tw the 2n cos/sin of 2 pi j / n. */
typedef struct {
    int64_t outer, in_len, inner, in_c, n, out_len, out_c;
    int inverse, onesided;
} onnxc_dft_params;

void onnxc_dft(const onnxc_dft_params* p, const double* tw, const float* X, float* Y);

/* ------------------------------------------------------------------------------------------ */
/* Softmax                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Softmax over the middle axis of X viewed as [outer, axis_len, inner] (numerically stable:
 * the max is subtracted first). Y may equal X (in place). */
void onnxc_softmax(int64_t outer, int64_t axis_len, int64_t inner, const float* X, float* Y);

/* LogSoftmax over the middle axis of X viewed as [outer, axis_len, inner]:
 * y = x - max - log(sum(exp(x - max))). Y may equal X (in place). */
void onnxc_logsoftmax(int64_t outer, int64_t axis_len, int64_t inner, const float* X, float* Y);

/* ------------------------------------------------------------------------------------------ */
/* Recurrent layers: RNN, GRU, LSTM (ONNX opsets 7-22)                                         */
/* ------------------------------------------------------------------------------------------ */

enum { ONNXC_RNN_CELL_RNN = 0, ONNXC_RNN_CELL_GRU = 1, ONNXC_RNN_CELL_LSTM = 2 };

/* Gate activations (the spec's list); alpha/beta are resolved by the caller (defaults filled). */
enum {
    ONNXC_RNN_ACT_SIGMOID = 0, ONNXC_RNN_ACT_TANH, ONNXC_RNN_ACT_RELU, ONNXC_RNN_ACT_AFFINE,
    ONNXC_RNN_ACT_LEAKYRELU, ONNXC_RNN_ACT_THRESHOLDEDRELU, ONNXC_RNN_ACT_SCALEDTANH,
    ONNXC_RNN_ACT_HARDSIGMOID, ONNXC_RNN_ACT_ELU, ONNXC_RNN_ACT_SOFTSIGN, ONNXC_RNN_ACT_SOFTPLUS
};

typedef struct {
    int kind;
    double alpha, beta;
} onnxc_rnn_act;

/* seq/batch/input/hidden: T, N, I, H; dirs: 1 or 2 (bidirectional: direction 1 is reverse);
 * reverse: the single direction runs backwards; layout 0: X [T,N,I], Y [T,dirs,N,H], states
 * [dirs,N,H]; layout 1: X [N,T,I], Y [N,T,dirs,H], states [N,dirs,H].
 * act[d] = (f) for RNN, (f, g) for GRU, (f, g, h) for LSTM. */
/* Dynamically quantized LSTM (onnxruntime's com.microsoft.DynamicQuantizeLSTM): per direction d,
 * W[d] ([I, 4H]) and R[d] ([H, 4H]) are int8/uint8 B operands packed (with their zero points, per
 * column or per tensor) for the u8s8 kernels w_kernel / r_kernel of onnxc_qgemm.h; w_scale and
 * r_scale are [dirs, 4H]. Each GEMM quantizes its float operand (all time steps of X at once, the
 * batch's previous hidden states once per step) to uint8 as DynamicQuantizeLinear, accumulates in
 * int32 (onnxc_qgemm: exact) and scales by a_scale * w_scale[column]: onnxruntime's order of
 * rounding. */
struct onnxc_qgemm_kernel;
typedef struct {
    const struct onnxc_qgemm_kernel *w_kernel, *r_kernel;
    const uint8_t *W[2], *R[2];
    const float *w_scale, *r_scale;
} onnxc_rnn_q8;

typedef struct {
    int cell;
    int64_t seq, batch, input, hidden, dirs;
    int reverse, layout, input_forget, linear_before_reset, has_clip;
    double clip;
    onnxc_rnn_act act[2][3];
    const onnxc_rnn_q8* q8; /* NULL: float W and R; else onnxc_rnn_f32 reads these (LSTM only) */
} onnxc_rnn_params;

/* Elements (of the kernel's type) of scratch onnxc_rnn_* needs:
 * (T*N + N) * gates * H + 4 * N * H, with gates = 1 (RNN), 3 (GRU), 4 (LSTM), plus
 * 4 * H (the output scales) + ceil(max(T*N*I, N*H) / 4) (the uint8 operand) when q8 is set. */
size_t onnxc_rnn_scratch_elems(const onnxc_rnn_params* p);

/* One ONNX RNN/GRU/LSTM node. W [dirs, gates*H, I], R [dirs, gates*H, H] (NULL with p->q8),
 * B [dirs, 2*gates*H],
 * P [dirs, 3*H] (LSTM). B, seq_lens, h0, c0, P may be NULL (zeros / full length); so may any of
 * Y, Y_h, Y_c (not computed). seq_lens values are clamped to [0, T]; outputs past a sequence's
 * length are zero, and Y_h/Y_c of an empty sequence are zero. Outputs must not alias inputs. */
void onnxc_rnn_f32(const onnxc_rnn_params* p, const float* X, const float* W, const float* R,
                   const float* B, const int32_t* seq_lens, const float* h0, const float* c0,
                   const float* P, float* Y, float* Y_h, float* Y_c, float* scratch);
void onnxc_rnn_f64(const onnxc_rnn_params* p, const double* X, const double* W,
                   const double* R, const double* B, const int32_t* seq_lens, const double* h0,
                   const double* c0, const double* P, double* Y, double* Y_h, double* Y_c,
                   double* scratch);

/* ------------------------------------------------------------------------------------------ */
/* Indexing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* ONNX TopK over the middle axis of X viewed as [outer, n, inner]: V and I are [outer, k, inner],
 * sorted (largest first if largest, else smallest first), ties broken by the lower index, NaN
 * ranking above every number. elem_type is the ONNX TensorProto type of X and V (float, double,
 * int8..int64, uint8..uint64). scratch holds 2*n int64. Returns 0, or 1 (nothing written) for an
 * unknown elem_type or k outside [0, n]. */
int onnxc_topk(int elem_type, int64_t outer, int64_t n, int64_t inner, int64_t k, int largest,
               const void* X, void* V, int64_t* I, int64_t* scratch);

/* ONNX Unique over the middle axis of X viewed as [outer, n, inner] (without an axis: [1, numel,
 * 1]), runtime_c/indexing/unique_ref.c.  Returns the number u of distinct slices, or -1 for an
 * unknown elem_type (float, double, int8..int64, uint8..uint64, bool).  When u <= cap it writes Y
 * [outer, u, inner], indices[u], counts[u] and inverse[n] (each of the last three may be NULL);
 * when u > cap nothing.  sorted: groups ascending, else by first occurrence; nan_equal: NaN
 * equals NaN (numpy.unique without an axis).  scratch holds 6*n int64. */
int64_t onnxc_unique(int elem_type, int64_t outer, int64_t n, int64_t inner, int sorted, int nan_equal,
                     const void* X, void* Y, int64_t* indices, int64_t* inverse, int64_t* counts,
                     int64_t cap, int64_t* scratch);

/* ONNX NonMaxSuppression on float32 boxes [batches, n, 4] and scores [batches, classes, n],
 * runtime_c/image/nms_ref.c: writes the first cap selected [batch, class, box] rows of Y and
 * returns how many were selected in all (never more than batches*classes*min(max, n)).
 * scratch holds 3*n int64. */
int64_t onnxc_f32_nms(const float* boxes, const float* scores, int64_t batches, int64_t classes, int64_t n,
                      int64_t max_per_class, float iou_threshold, int has_score_threshold, float score_threshold,
                      int center, int64_t* Y, int64_t cap, int64_t* scratch);

/* ------------------------------------------------------------------------------------------ */
/* Random generators (runtime_c/math/random_ref.c): Philox4x32-10, element i from (key, i)     */
/* ------------------------------------------------------------------------------------------ */

/* One Philox4x32-10 block: out = philox(counter, key). */
void onnxc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* A key for a run of a node without a seed: differs between calls (process-wide counter, clock,
 * arena address). */
uint64_t onnxc_rng_fresh_key(const void* arena);
/* Element i's uniform double in [0, 1) / standard normal (Box-Muller) of stream `stream`. */
double onnxc_rng_uniform(uint64_t key, uint32_t stream, int64_t i);
double onnxc_rng_normal(uint64_t key, uint32_t stream, int64_t i);
/* elem_type (ONNX TensorProto): float or double for Y and P/X; Bernoulli's out_type any number
 * or bool; Multinomial's int32 or int64 (scratch: classes doubles). */
void onnxc_random_uniform(int elem_type, void* Y, int64_t n, double low, double high, uint64_t key);
void onnxc_random_normal(int elem_type, void* Y, int64_t n, double mean, double scale, uint64_t key);
void onnxc_bernoulli(int in_type, const void* P, int out_type, void* Y, int64_t n, uint64_t key);
void onnxc_multinomial(int in_type, const void* X, int64_t batch, int64_t classes, int64_t samples,
                       int out_type, void* Y, uint64_t key, double* scratch);
/* Dropout's keep mask: mask[i] = uniform(i) >= ratio. */
void onnxc_dropout_mask(uint8_t* mask, int64_t n, double ratio, uint64_t key);

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                   */
/* ------------------------------------------------------------------------------------------ */

enum { ONNXC_ATTN_MASK_NONE = 0, ONNXC_ATTN_MASK_BOOL = 1, ONNXC_ATTN_MASK_FLOAT = 2 };

/* One ONNX Attention node (opsets 23-25), every shape resolved by the compiler.
 * Q is viewed as [B, Hq, Sq, D], K as [B, Hkv, Skv, D], V as [B, Hkv, Skv, Dv], Y as
 * [B, Hq, Sq, Dv] through element strides of (batch, head, position); the feature dim is
 * contiguous (so 3-D [B, S, H*D] inputs need no transpose). Past tensors are dense
 * [B, Hkv, P, D|Dv]; the keys are the P past ones followed by the Skv new ones (T = P + Skv).
 * alpha = sqrt(scale)^2 as the spec scales both Q and K. softcap <= 0: none. Windows < 0:
 * unbounded. The mask is [.., .., .., mask_len] with mask_len <= T, addressed by
 * mask_str (0 along broadcast dims); keys j >= mask_len are masked. qk_mode selects what QK
 * receives: 0 raw scores, 1 after softcap, 2 after the bias, 3 the probabilities.
 * tile_rows query rows per task, `slots` scratch tiles of tile_rows * T floats. */
typedef struct {
    int64_t B, Hq, Hkv, Sq, Skv, P, D, Dv;
    int64_t q_str[3], k_str[3], v_str[3], y_str[3];
    float alpha, softcap;
    int is_causal;
    int64_t left_window, right_window;
    int mask_kind;
    int64_t mask_len, mask_str[3];
    int qk_mode, softmax_f64;
    int64_t tile_rows, slots;
} onnxc_attention_params;

size_t onnxc_attention_scratch_floats(const onnxc_attention_params* p);

/* mask: uint8_t (bool) or float per mask_kind, may be NULL with ONNXC_ATTN_MASK_NONE;
 * past_key/past_value are read only when P > 0; nonpad_kv_seqlen [B] may be NULL (any value is
 * safe: it is clamped to [0, 2^40]). present_key, present_value and QK may be NULL (not
 * wanted). Outputs must not alias inputs. */
void onnxc_attention(const onnxc_attention_params* p, const float* Q, const float* K,
                     const float* V, const void* mask, const float* past_key,
                     const float* past_value, const int64_t* nonpad_kv_seqlen, float* Y,
                     float* present_key, float* present_value, float* QK, float* scratch);

/* ------------------------------------------------------------------------------------------ */
/* Fused epilogues (onnxc.FusedConv/FusedGemm/FusedMatMul; runtime_c/math/epilogue_ref.c)      */
/* ------------------------------------------------------------------------------------------ */

/* Activation applied by a kernel to the block it just wrote: the ONNXC_ACT_* enum and the
 * onnxc_activation struct (kind, alpha, beta), generated from the activation table
 * (compiler/ops/activations.py), which also gives the code generator's inline expressions. */
#include "onnxc_activations.h"

/* y[i] = act(y[i]) for i < n; act may be NULL (none). */
void onnxc_activation_row(const onnxc_activation* act, float* y, int64_t n);

/* y[i] = act((y[i] + bias) + z[i]) for i < n; z may be NULL (no residual), act may be NULL
 * (none). */
void onnxc_epilogue_row(const onnxc_activation* act, float bias, const float* z, float* y,
                        int64_t n);

/* Y = act(conv(X, W) + B + Z): onnxc_conv with a residual Z (Y's shape, may be NULL; must not
 * alias Y) and an activation (may be NULL) applied per output channel as soon as that channel's
 * block is computed. Same scratch as onnxc_conv. */
void onnxc_conv_fused(const onnxc_conv_params* p, const float* X, const float* W, const float* B,
                      const float* Z, const onnxc_activation* act, float* Y, float* scratch);

#ifdef __cplusplus
}
#endif

#endif /* ONNXC_KERNELS_H */
