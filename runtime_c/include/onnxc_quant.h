/* onnxc quantization kernels: QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, the
 * per-row dynamic quantization of activations for the int8 GEMM (runtime_c/quant/), and the
 * 4-bit weight-only MatMulNBits (runtime_c/qnbits/).
 *
 * Conventions: as onnxc_kernels.h (row-major, no allocation: scratch is passed in, outputs never
 * alias inputs unless said). Rounding is round-half-to-even in the default FP environment, as the
 * ONNX spec says. Drivers call the best row/microkernel the build's ISA macros allow (named
 * onnxc_<dtype>_<kind>_<tile>__<isa>, declared below) and split work over the runtime's thread
 * pool (onnxc_threads.h). Only this header's declarations outside the generated block are the API
 * generated code calls; the named kernels are for tests and benchmarks.
 */
#ifndef ONNXC_QUANT_H
#define ONNXC_QUANT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* QuantizeLinear / DequantizeLinear                                                          */
/* ------------------------------------------------------------------------------------------ */

/* Integer element types, as ONNX numbers them (TensorProto.DataType). */
enum {
    ONNXC_QT_UINT8 = 2,
    ONNXC_QT_INT8 = 3,
    ONNXC_QT_UINT16 = 4,
    ONNXC_QT_INT16 = 5,
    ONNXC_QT_UINT4 = 21,
    ONNXC_QT_INT4 = 22
};

/* How scale and zero point map onto x, viewed as [outer, axis, inner] (axis: the op's axis):
 *   PER_TENSOR  one scale (outer, axis, inner may be any split of the element count)
 *   PER_AXIS    scale[a], a < axis
 *   BLOCKED     scale[o][a / block][i], shape [outer, ceil(axis / block), inner] */
enum { ONNXC_Q_PER_TENSOR = 0, ONNXC_Q_PER_AXIS = 1, ONNXC_Q_BLOCKED = 2 };

/* 4-bit layout flag for qtype UINT4/INT4: 1 = packed two per byte, element 2i in the low nibble
 * of byte i and 2i+1 in the high one (ONNX's stored form, odd counts end with a zero high
 * nibble); 0 = one element per byte (onnxc's in-memory form of int4, as ml_dtypes stores it:
 * int8 sign-extended / uint8). Zero points of a 4-bit type use the same layout as x or y. */

/* y = saturate(round_half_even(x / scale) + zero_point), fp32 x and scale; zp is of qtype (NULL:
 * 0). NaN gives qmin, +-inf saturate (the spec leaves NaN undefined; onnxruntime on x86 gives the
 * same). y is written element by element, including both nibbles of every byte it covers. */
void onnxc_quantize_linear(const float* x, void* y, int qtype, int packed4, const float* scale,
                           const void* zp, int mode, int64_t outer, int64_t axis, int64_t inner,
                           int64_t block);

/* y = (x - zero_point) * scale, fp32 out. */
void onnxc_dequantize_linear(const void* x, float* y, int qtype, int packed4, const float* scale,
                             const void* zp, int mode, int64_t outer, int64_t axis, int64_t inner,
                             int64_t block);

/* DynamicQuantizeLinear (uint8): with lo = min(0, min x), hi = max(0, max x):
 * scale = (hi - lo) / 255, zp = round_half_even(clamp(-lo / scale, 0, 255)), y as
 * QuantizeLinear. When hi == lo (all zeros) the spec's scale is 0/0: scale = 1 and zp = 0, as
 * onnxruntime. NaN in x: undefined (min/max ignore it or not depending on position). */
void onnxc_dynamic_quantize_linear(const float* x, int64_t n, uint8_t* y, float* scale,
                                   uint8_t* zp);

/* Per-row dynamic quantization of an activation A [M, K] (row stride lda) for the int8 GEMM:
 *   u8: asymmetric per row, as DynamicQuantizeLinear on each row: scale[m], zp[m] in 0..255
 *   s8: symmetric per row: scale[m] = amax / 127 (1 when the row is all zeros), zp = 0,
 *       q = round_half_even(a / scale) clamped to [-127, 127]
 * q is [M, K] with row stride ldq; rowsum[m] = sum_k q[m][k] (as stored, before removing the zero
 * point: the zero-point fix-up term of the GEMM), or rowsum == NULL. zp may be NULL for s8. */
void onnxc_dynamic_quantize_rows_u8(const float* a, int64_t M, int64_t K, int64_t lda, uint8_t* q,
                                    int64_t ldq, float* scale, int32_t* zp, int32_t* rowsum);
void onnxc_dynamic_quantize_rows_s8(const float* a, int64_t M, int64_t K, int64_t lda, int8_t* q,
                                    int64_t ldq, float* scale, int32_t* rowsum);

/* Which row kernels the drivers of this build call ("generic", "avx2", "avx512"). */
const char* onnxc_quant_isa(void);

/* QLinearAdd of two same-shape tensors of n uint8 (is_signed 0) or int8 (1) elements, in
 * onnxruntime's order: t = fmaf(a, ra, fmaf(b, rb, fx)), y = round_half_even(clamp(t, qmin,
 * qmax)); NaN and t >= 2^31 give qmin (runtime_c/quant/qladd.c). */
void onnxc_qlinear_add_8(const void* a, const void* b, void* y, int64_t n, float ra, float rb, float fx,
                         int is_signed);

/* QLinearMul of two same-shape tensors (EfficientNet's SiLU, x * sigmoid(x)), the generated
 * loop's formula: t = (float)((a - za) * (b - zb)) * ratio + zc (multiply, then add: no
 * contraction), y = round_half_even(clamp(t, qmin, qmax)); NaN and t >= 2^31 give qmin. */
void onnxc_qlinear_mul_8(const void* a, const void* b, void* y, int64_t n, float ratio, float zc, int32_t za,
                         int32_t zb, int is_signed);

/* ------------------------------------------------------------------------------------------ */
/* MatMulNBits, 4-bit (com.microsoft)                                                          */
/* ------------------------------------------------------------------------------------------ */

/* The constant operands of one MatMulNBits node, in the op's own layout (kb = ceil(K / block)):
 *   B        uint8 [N, kb, block / 2]: element k of a block in the low nibble of byte k/2 when k
 *            is even, the high nibble when odd
 *   scales   fp32 [N, kb]
 *   zp_u4    uint8 [N, ceil(kb / 2)]: packed 4-bit zero points (block b: low nibble of byte b/2
 *            when b is even), or NULL
 *   zp_f32   fp32 [N, kb] zero points (the op's zero_points typed as the scales), or NULL; with
 *            neither, every zero point is 8
 *   bias     fp32 [N] or NULL
 * accuracy: 4 quantizes A to int8 per block (onnxruntime's accuracy_level 4); any other value
 * computes in fp32 (levels 0 and 1; the op layer decides what 2 and 3 mean).
 * Weights are read as stored; block is a power of two in [16, 256]. */
typedef struct {
    int64_t N, K, block;
    const uint8_t* B;
    const float* scales;
    const uint8_t* zp_u4;
    const float* zp_f32;
    const float* bias;
    int accuracy;
} onnxc_q4_weights;

/* Bytes of scratch onnxc_matmulnbits needs for M rows (any alignment; 0 never). */
size_t onnxc_matmulnbits_workspace(const onnxc_q4_weights* w, int64_t M);

/* C[M, N] = A[M, K] * dequant(B)^T + bias; A row stride lda, C row stride ldc (floats). */
void onnxc_matmulnbits(const onnxc_q4_weights* w, int64_t M, const float* A, int64_t lda,
                       float* C, int64_t ldc, void* workspace);

/* Which microkernels onnxc_matmulnbits calls in this build: accuracy 4 or not. */
const char* onnxc_matmulnbits_isa(int accuracy);

/* What a microkernel reads: the weights, and A prepared by the driver (kp = kb * block rounded up
 * to a multiple of 32):
 *   a            accuracy != 4: fp32 [M, lda_p], lda_p = kp, each row onnxc_q4_permute_a'd
 *   qa, qa_scale, qa_bsum   accuracy 4: int8 [M, lda_p] (quantized per block by an f32s8 qblock
 *                kernel, zero-padded to kp, then permuted as a), scale [M, kb], scale * sum(q)
 *                [M, kb]
 * The kernel writes C[m][n] for m < M, n0 <= n < n1, bias included. */
typedef struct {
    const onnxc_q4_weights* w;
    int64_t M, lda_p;
    const float* a;
    const int8_t* qa;
    const float* qa_scale;
    const float* qa_bsum;
    float* C;
    int64_t ldc;
} onnxc_q4_args;

/* One row of A reordered for the microkernels: src holds K elements (read as zero from K to kp),
 * dst gets kp (a multiple of 32): in each group of 32 elements, the 16 even-indexed ones, then the
 * 16 odd-indexed ones (the order the low and high nibbles of the 16 bytes of B covering the group
 * come out of a register). elem_size 4 (fp32) or 1 (int8); dst may equal src (then K == kp). */
void onnxc_q4_permute_a(const void* src, int64_t K, void* dst, int64_t kp, int elem_size);

/* ------------------------------------------------------------------------------------------ */
/* Named kernels (generated from compiler/kernels/quant.py and qnbits.py)                      */
/* ------------------------------------------------------------------------------------------ */
/* BEGIN GENERATED by compiler/kernels/quant_header.py: do not edit */
/* quant: QuantizeLinear / DequantizeLinear row kernels (runtime_c/quant/) */
void onnxc_f32u8_quantize_row__generic(const float* x, uint8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u8f32_dequantize_row__generic(const uint8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32u8_quantize_row__avx2(const float* x, uint8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u8f32_dequantize_row__avx2(const uint8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32u8_quantize_row__avx512(const float* x, uint8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u8f32_dequantize_row__avx512(const uint8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s8_quantize_row__generic(const float* x, int8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s8f32_dequantize_row__generic(const int8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s8_quantize_row__avx2(const float* x, int8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s8f32_dequantize_row__avx2(const int8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s8_quantize_row__avx512(const float* x, int8_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s8f32_dequantize_row__avx512(const int8_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32u16_quantize_row__generic(const float* x, uint16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u16f32_dequantize_row__generic(const uint16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32u16_quantize_row__avx2(const float* x, uint16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u16f32_dequantize_row__avx2(const uint16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32u16_quantize_row__avx512(const float* x, uint16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_u16f32_dequantize_row__avx512(const uint16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s16_quantize_row__generic(const float* x, int16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s16f32_dequantize_row__generic(const int16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s16_quantize_row__avx2(const float* x, int16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s16f32_dequantize_row__avx2(const int16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32s16_quantize_row__avx512(const float* x, int16_t* y, int64_t n, const float* scale, const float* zp, int64_t step, float qmin, float qmax);
void onnxc_s16f32_dequantize_row__avx512(const int16_t* x, float* y, int64_t n, const float* scale, const float* zp, int64_t step);
void onnxc_f32_minmax_row__generic(const float* x, int64_t n, float* mn, float* mx);
void onnxc_f32_minmax_row__avx2(const float* x, int64_t n, float* mn, float* mx);
void onnxc_f32_minmax_row__avx512(const float* x, int64_t n, float* mn, float* mx);
/* qnbits: MatMulNBits microkernels and the int8 quantizer of A (runtime_c/qnbits/) */
void onnxc_q4f32_gemm_4x4__generic(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4f32_gemm_4x2__avx2(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4f32_gemm_4x4__avx512(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4s8_gemm_4x4__generic(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4s8_gemm_2x4__avx2(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4s8_gemm_2x4__avx2vnni(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4s8_gemm_4x4__avx512(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_q4s8_gemm_4x4__avx512vnni(const onnxc_q4_args* g, int64_t n0, int64_t n1);
void onnxc_f32s8_qblock_row__generic(const float* a, int64_t K, int64_t block, int8_t* q, float* scale, float* bsum);
void onnxc_f32s8_qblock_row__avx2(const float* a, int64_t K, int64_t block, int8_t* q, float* scale, float* bsum);
void onnxc_f32s8_qblock_row__avx512(const float* a, int64_t K, int64_t block, int8_t* q, float* scale, float* bsum);
/* END GENERATED */

#ifdef __cplusplus
}
#endif
#endif
