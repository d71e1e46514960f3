/* onnxc int8 convolution (runtime_c/qconv/): QLinearConv / ConvInteger on NHWC uint8 or int8
 * activations with int32 accumulation and the int8 GEMM's output stage (requantize, float, raw
 * int32), plus an optional fused residual add. docs/qconv.md explains the choices.
 *
 * Layout: activations are NHWC (channels of a pixel contiguous), read and written with a pixel
 * pitch (elements from one pixel to the next: C for a dense tensor, more for a channel slice of
 * a wider one, e.g. a branch of a Concat written in place). Weights are packed once
 * (compile time: compiler/kernels/qconv.py; run time: onnxc_qconv_pack_w / _pack_dw).
 *
 *   y[n, oh, ow, m] = out( sum_{kh, kw, c} (x[n, ih, iw, g*Cg + c] - xz) * (w[m, c, kh, kw] - wz[m])
 *                          + bias[m] ),   ih = oh*sh - pad_t + kh*dh, iw = ow*sw - pad_l + kw*dw
 *
 * with x = xz where (ih, iw) is outside the image (padding is the activation zero point, so it
 * adds nothing), g = m / Mg the group, Cg = C / group, Mg = M / group. Integer results are exact
 * (int32, wrapping like onnxruntime's accumulation) for every input value; `out` is the int8
 * GEMM's onnxc_qgemm_output (onnxc_qgemm.h) applied to the [N*OH*OW, M] output matrix whose row
 * stride is the output pixel pitch `out->ldc`:
 *   ONNXC_QOUT_U8 / _S8  clamp(rint(float(acc) * scale[m]) + zero_point, qmin, qmax), the float
 *                        clamped before rounding, half to even: MlasRequantizeOutput's arithmetic
 *                        (QLinearConv: scale = x_scale * w_scale[m] / y_scale in float32, in that
 *                        order; a fused Relu/Clip narrows qmin/qmax)
 *   ONNXC_QOUT_F32       float(acc) * scale[m] (+ out->bias[m]) (dequantized output: DQ -> Conv)
 *   ONNXC_QOUT_S32       acc (ConvInteger)
 *
 * Two entry points:
 *   onnxc_qconv      any group count, on the int8 GEMM microkernels (onnxc_qgemm_kernel) and
 *                    their packed-B format, one packed B per group ([KH*KW*Cg, Mg], k in (kh, kw,
 *                    c) order). Algorithms (onnxc_qconv_geom.algo):
 *        DIRECT      1x1, stride 1, no padding: the input is A itself (no copy)
 *        IMPLICIT    stride 1 (any kernel size, dilation, padding): per-tap GEMMs on the input
 *                    (or on a zero-point-padded copy of it in the workspace), rows of A at the
 *                    input pixel pitch; virtual rows past the right edge of the output are
 *                    computed and dropped ((Wp - OW) / Wp of the work). Needs Cg a multiple of the
 *                    kernel's k group (4; 2 for K2 kernels); AMX tiles need Cg % 64 == 0, else
 *                    the AMX kernel's VNNI fallback runs this path
 *        IM2COL      anything: rows of A gathered per block of output pixels into a stack
 *                    buffer (padding = the zero point), then the GEMM
 *        AUTO        onnxc_qconv_choose_algo (the compiler mirrors it: compiler/kernels/qconv.py)
 *   onnxc_qconv_dw   depthwise (group == C == M, one filter per channel), vectorized over
 *                    channels with exact 16 x 16 -> 32-bit products (onnxc_qconv_dw_kernel).
 *
 * Residual (optional, U8/S8 output only): y = clamp(rint(t1 + t2) + zp, qmin, qmax) with
 * t1 = float(acc) * scale[m], t2 = float(r - r_zero_point) * r_scale (r_scale = r_scale_orig /
 * y_scale), each product and the sum rounded to float32 (no FMA), the float clamped to
 * [qmin - zp, qmax - zp] before rounding half to even. This is NOT onnxruntime's QLinearConv +
 * QLinearAdd (which rounds the conv output to 8 bits first): a provider uses it only where the
 * model allows (docs/qconv.md).
 *
 * Threads: the runtime pool (onnxc_threads.h); results do not depend on the thread count.
 */
#ifndef ONNXC_QCONV_H
#define ONNXC_QCONV_H

#include <stddef.h>
#include <stdint.h>

#include "onnxc_qgemm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    ONNXC_QCONV_AUTO = 0,
    ONNXC_QCONV_DIRECT = 1,
    ONNXC_QCONV_IMPLICIT = 2,
    ONNXC_QCONV_IM2COL = 3
};

enum { ONNXC_QCONV_OK = 0, ONNXC_QCONV_ERR_PACK = 1, ONNXC_QCONV_ERR_ARG = 2 };

/* Geometry of one 2-D convolution (NHWC). OH/OW must equal the ONNX output size
 * (H + pad_t + pad_b - dh*(KH-1) - 1) / sh + 1 (checked). */
typedef struct {
    int64_t N, H, W, C;  /* input; C = all input channels (group * Cg) */
    int64_t OH, OW, M;   /* output; M = all output channels */
    int64_t KH, KW, stride_h, stride_w, dil_h, dil_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t group;
    int64_t x_pitch;     /* input elements from one pixel to the next (>= C; 0: C) */
    int64_t algo;        /* ONNXC_QCONV_*; AUTO: onnxc_qconv_choose_algo */
} onnxc_qconv_geom;

/* Optional fused residual add (see above): r has the output's shape, row stride ldr elements. */
typedef struct {
    const void* r;
    int64_t ldr;
    int r_signed;        /* int8 (else uint8) */
    int32_t zero_point;
    float scale;         /* r_scale / y_scale, float32 */
} onnxc_qconv_residual;

/* Depthwise kernels: a descriptor per (activation type, ISA), like the GEMM's.
 * Contract of fn: for output row oh of image n, columns ow0 <= ow < ow1 and channels [c0, c1)
 * (c0 a multiple of cblock),
 *   acc[(ow - ow0) * ldacc + (c - c0)] = start[c - c0] + sum_{kh, kw} x'(n, ih, iw, c) * wq[kh*KW + kw][c]
 * (int32, wrapping) where x' = x, or the zero point xz outside the image, and wq the packed
 * weights (w - wz); start[c - c0] = bias[c] - xz * sum_t wq[t][c] (the driver's). ldacc and the
 * start array cover c1 - c0 rounded up to cblock (whole vectors are loaded and stored). */
struct onnxc_qconv_dw_args;
typedef void (*onnxc_qconv_dw_fn)(const struct onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                  int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
/* Optional band form of a depthwise kernel (geometries of onnxc_qconv_dw_band_ok_ in
 * qconv/qconv_internal.h: dilation 1, stride 1 across, KH and KW <= 7): output rows
 * [oh0, oh1) of image n, all OW columns, channels [c0, c1) (c0 a multiple of 16). Each input row
 * is widened once into `rows` (onnxc_qconv_dw_band_ints_ int32) and read by every output row over
 * it; after each output row, acc (OW x ldacc, the contract above) goes to emit(ctx, n, oh, acc). */
typedef void (*onnxc_qconv_dw_emit_fn)(void* ctx, int64_t n, int64_t oh, const int32_t* acc);
typedef void (*onnxc_qconv_dw_band_fn)(const struct onnxc_qconv_dw_args* a, int64_t n, int64_t oh0, int64_t oh1,
                                       int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc, int32_t* rows,
                                       onnxc_qconv_dw_emit_fn emit, void* ctx);
typedef struct onnxc_qconv_dw_kernel {
    const char* name;
    onnxc_qconv_dw_fn fn;
    int cblock;    /* channels per vector */
    int a_signed;  /* int8 activations (else uint8) */
    onnxc_qconv_dw_band_fn band; /* or NULL */
} onnxc_qconv_dw_kernel;

typedef struct onnxc_qconv_dw_args {
    const onnxc_qconv_geom* g;
    const uint8_t* x;       /* input at channel 0 */
    int64_t x_pitch;
    int32_t xz;             /* activation zero point */
    const int32_t* wq;      /* [KH*KW][Cp] packed weights (int32 lanes: low 16 bits w - wz, high 0) */
    const int32_t* wp;      /* [KH/2][KW][Cp] kernel rows 2p and 2p+1 paired (see the layout) */
    int64_t cp;             /* Cp */
    const int32_t* start;   /* accumulator start of channels c0.. (see the contract) */
} onnxc_qconv_dw_args;

/* Packed depthwise weights ("OQD2"), byte offsets from the start of the blob:
 *   [0, 64)        header: uint32 magic, flags; int64 C, Cp, KH, KW, total_bytes
 *   64             int32 wsum[Cp]: sum_t (w - wz) of each channel (0 past C)
 *   64 + 4*Cp      int32 wq[KH*KW][Cp], low 16 bits (w - wz) as int16, high 16 bits 0
 *   64 + 4*Cp*(1 + KH*KW)
 *                  int32 wp[KH/2][KW][Cp]: low 16 bits wq[2p*KW + kw], high 16 bits
 *                  wq[(2p+1)*KW + kw] (two kernel rows per vpmaddwd lane; the AVX2 kernel)
 * Cp = C rounded up to 16. w int8 or uint8, wz per channel or per tensor. */
enum { ONNXC_QDW_MAGIC = 0x3244514F /* "OQD2" */, ONNXC_QDW_HEADER = 64, ONNXC_QDW_CALIGN = 16 };
typedef struct {
    uint32_t magic, flags;
    int64_t C, Cp, KH, KW, total_bytes;
} onnxc_qconv_dw_header;

/* The algorithm AUTO stands for with this kernel and geometry (what onnxc_qconv runs). */
int onnxc_qconv_choose_algo(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g);

/* Bytes of workspace onnxc_qconv needs (the zero-point-padded copy of the input for IMPLICIT
 * with padding; else 0). */
size_t onnxc_qconv_workspace_bytes(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g);

/* The convolution on the GEMM microkernels. x: N*H*W pixels of x_pitch elements (uint8, or int8
 * for an s8s8 kernel); packedW: `group` packed B blobs back to back (onnxc_qconv_pack_w or the
 * compiler), each for K = KH*KW*Cg rows and Mg columns; bias: M int32 or NULL; out: onnxc_qgemm_
 * output over the [N*OH*OW, M] output (C = y, ldc = output pixel pitch); res: NULL or a residual
 * (U8/S8 output); workspace: onnxc_qconv_workspace_bytes bytes (may be NULL when that is 0).
 * Returns ONNXC_QCONV_ERR_PACK for packed weights that do not fit, ONNXC_QCONV_ERR_ARG for a
 * bad geometry or output. */
int onnxc_qconv(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                int32_t x_zero_point, const void* packedW, const int32_t* bias,
                const onnxc_qgemm_output* out, const onnxc_qconv_residual* res, void* workspace);

/* Depthwise (group == C == M): packed weights from onnxc_qconv_pack_dw / the compiler. */
int onnxc_qconv_dw(const onnxc_qconv_dw_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                   int32_t x_zero_point, const void* packedW, const int32_t* bias,
                   const onnxc_qgemm_output* out, const onnxc_qconv_residual* res);

/* Run-time packing of ONNX weights w[M][Cg][KH][KW] (int8 if w_signed else uint8) with zero
 * point wz[0] or wz[m] (wz_per_channel; wz NULL: 0), for onnxc_qconv with this kernel. Both
 * reorder one group at a time into `scratch` (KH*KW*Cg*(M/group) bytes); the byte count reads
 * the weights too (the pair-safe layout's corrections). Byte-identical to compiler/kernels/qconv.py. */
size_t onnxc_qconv_packed_bytes(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t Cg, int64_t KH,
                                int64_t KW, int64_t group, const void* w, int w_signed, void* scratch);
void onnxc_qconv_pack_w(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t Cg, int64_t KH,
                        int64_t KW, int64_t group, const void* w, int w_signed, const int32_t* wz,
                        int wz_per_channel, void* scratch, void* dst);
/* Depthwise weights w[C][1][KH][KW] into the OQD2 layout (any kernel). */
size_t onnxc_qconv_dw_packed_bytes(int64_t C, int64_t KH, int64_t KW);
void onnxc_qconv_pack_dw(int64_t C, int64_t KH, int64_t KW, const void* w, int w_signed,
                         const int32_t* wz, int wz_per_channel, void* dst);

/* Exact integer Winograd F(2x2, 3x3) (runtime_c/qconv/qconv_wino.c explains the arithmetic):
 * 3x3, stride 1, dilation 1, group 1, C <= ONNXC_QWINO_MAX_C; results bit-identical to
 * onnxc_qconv when 4 * 255 * sum_{c,kh,kw} |w - wz| < 2^31 for every output channel (always for
 * int8 weights with zero point 0). packedU: (2G) (w - wz) (2G)^T as int16 (fits), laid out
 * [16][ceil(M/16) panels][ceil(C/2) k pairs][16 columns][2] (zero past M and C), made by
 * compiler/kernels/qwino.py; x uint8, or int8 when x_signed. The microkernel (one per ISA, the
 * descriptor names it) computes C = A B for one 16-column panel of k pairs:
 *   C[i*ldc + j] = sum_{p < kp, h < 2} A[i*lda + 2p + h] * B[(p*16 + j)*2 + h], i < mr <= 6, j < nr <= 16. */
enum { ONNXC_QWINO_MAX_C = 1827 /* |4Y| <= 4 * 9 * 255 * 128 * C < 2^31 */ };
typedef void (*onnxc_qconv_wino_fn)(int64_t mr, int64_t nr, int64_t kp, const int16_t* A, int64_t lda,
                                    const int16_t* B, int32_t* C, int64_t ldc);
typedef struct onnxc_qconv_wino_kernel {
    const char* name;
    onnxc_qconv_wino_fn fn;
    int mr, nr;
} onnxc_qconv_wino_kernel;
/* 1 when onnxc_qconv_wino takes this geometry */
int onnxc_qconv_wino_ok(const onnxc_qconv_geom* g);
/* int16 elements of packedU for C input and M output channels */
size_t onnxc_qconv_wino_packed_elems(int64_t C, int64_t M);
int onnxc_qconv_wino(const onnxc_qconv_wino_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                     int x_signed, int32_t x_zero_point, const int16_t* packedU, const int32_t* bias,
                     const onnxc_qgemm_output* out, const onnxc_qconv_residual* res, void* workspace);
/* bytes of workspace onnxc_qconv_wino needs (the transformed input: 32 * N * ceil(OH/2) *
 * ceil(OW/2) * ceil(C/2)*2; 0 for a geometry it does not take) */
size_t onnxc_qconv_wino_workspace_bytes(const onnxc_qconv_geom* g);
/* Winograd product kernels: generic: qconv/qconv_wino.c */
void onnxc_s16_wgemm_6x16__generic(int64_t mr, int64_t nr, int64_t kp, const int16_t* A, int64_t lda, const int16_t* B, int32_t* C, int64_t ldc);
extern const onnxc_qconv_wino_kernel onnxc_s16_wgemm_6x16__generic_info;
/* avx2: qconv/qconv_wino.c */
void onnxc_s16_wgemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kp, const int16_t* A, int64_t lda, const int16_t* B, int32_t* C, int64_t ldc);
extern const onnxc_qconv_wino_kernel onnxc_s16_wgemm_6x16__avx2_info;

/* BEGIN GENERATED: depthwise kernel list (compiler/kernels/qconv.py c_declarations) */
/* u8s8 1x1, generic: qconv/qconv_dw.c */
void onnxc_u8s8_dwconv_1x1__generic(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_u8s8_dwconv_1x1__generic_info;
/* s8s8 1x1, generic: qconv/qconv_dw.c */
void onnxc_s8s8_dwconv_1x1__generic(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_s8s8_dwconv_1x1__generic_info;
/* u8s8 4x8, avx2: qconv/qconv_dw_avx2.c */
void onnxc_u8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_u8s8_dwconv_4x8__avx2_info;
/* s8s8 4x8, avx2: qconv/qconv_dw_avx2.c */
void onnxc_s8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_s8s8_dwconv_4x8__avx2_info;
/* u8s8 4x8, avx2vnni: qconv/qconv_dw_avx2.c */
void onnxc_u8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_u8s8_dwconv_4x8__avx2vnni_info;
/* s8s8 4x8, avx2vnni: qconv/qconv_dw_avx2.c */
void onnxc_s8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_s8s8_dwconv_4x8__avx2vnni_info;
/* u8s8 8x16, avx512: qconv/qconv_dw_avx512.c */
void onnxc_u8s8_dwconv_8x16__avx512(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_u8s8_dwconv_8x16__avx512_info;
/* s8s8 8x16, avx512: qconv/qconv_dw_avx512.c */
void onnxc_s8s8_dwconv_8x16__avx512(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_s8s8_dwconv_8x16__avx512_info;
/* u8s8 8x16, avx512vnni: qconv/qconv_dw_avx512.c */
void onnxc_u8s8_dwconv_8x16__avx512vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_u8s8_dwconv_8x16__avx512vnni_info;
/* s8s8 8x16, avx512vnni: qconv/qconv_dw_avx512.c */
void onnxc_s8s8_dwconv_8x16__avx512vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);
extern const onnxc_qconv_dw_kernel onnxc_s8s8_dwconv_8x16__avx512vnni_info;
/* END GENERATED */

#ifdef __cplusplus
}
#endif
#endif
