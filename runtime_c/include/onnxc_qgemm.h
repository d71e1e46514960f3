/* onnxc int8 GEMM (runtime_c/qgemm/): packed-B u8s8 / s8s8 products with zero points, int32
 * accumulation and a requantize / dequantize / raw int32 output stage.
 *
 *   C[m, n] = out( sum_k (A[m, k] - za) * (B[k, n] - zb[n]) + bias[n] )
 *
 * A (M x K, row stride lda) is uint8 or int8 (the kernel's A type) and read in place; B (K x N,
 * int8 or uint8, zero point per tensor or per column) is packed once (compile time for weights:
 * compiler/kernels/qgemm.py; run time: onnxc_qgemm_pack_b) into the layout below. Integer results
 * are exact (mod 2^32, like onnxruntime's int32 accumulation) for every input value.
 *
 * Packed B ("OQB1"), one layout for every kernel, byte offsets from the start of the blob:
 *   [0, 128)          onnxc_qgemm_packed_header
 *   colsum_off        int32 colsum[Np]: sum over k < K of the stored column (see below)
 *   zb_off            int32 zb[Np]: zero point of the stored column (0 past N)
 *   panels_off        Np/16 panels of 16 columns, each Kp/4 groups of 64 bytes; group g of panel
 *                     p holds, for its columns j = 0..15, the stored bytes of rows 4g..4g+3 at
 *                     j*4 + 0..3 (the VNNI dot-product order; zero past K and past N). Panel p
 *                     starts at panels_off + p * Kp * 16. Kp = K rounded up to 64 (an AMX tile).
 *                     ONNXC_QPACK_K2 (the AVX2 vpmaddwd kernels): groups of 2 rows instead, 32
 *                     bytes, column j at j*2 + 0..1. Either way row k of panel p is in the 64
 *                     bytes at k * 16 of the panel.
 *   corr_off          (ONNXC_QPACK_PAIRSAFE only) int32 index[Np/16 + 1] (first correction of
 *                     each panel, then the total), then ncorr entries {int32 k, n, e} sorted by
 *                     (n, k): the true stored value at (k, n) is the packed byte + e.
 * Stored bytes are B itself, or B ^ 0x80 (B + 128 as u8, or B - 128 as s8) when the kernel
 * multiplies the other signedness (flags ONNXC_QPACK_B_U8: stored bytes are unsigned); zb is
 * shifted with them, so (B - zb) is unchanged and the fix-up below only sees stored values.
 * ONNXC_QPACK_PAIRSAFE (the AVX2 vpmaddubsw kernels): each pair of rows (2i, 2i+1) of a column
 * holds values with |b0| + |b1| <= 128, so a u8 x s8 pair sum never leaves int16; a pair beyond
 * that keeps b0 and stores b1 shrunk toward 0 by the excess, the difference going to the
 * correction list (rare for real weights: a column's largest weight next to a large one;
 * adversarial weights, e.g. all -128, still compute exactly, just slowly).
 *
 * Zero points (folded into the accumulator start, MLAS's decomposition): with S = sum a'*b' of
 * the values the kernel multiplies (a' = A, or A ^ 0x80 for kernels with a_xor),
 *   sum (A - za)(B - zb) = S - za'*colsum[n] - zb[n]*rowsum'[m] + K*za'*zb[n],   za' = za (+128)
 * col[n] = bias[n] + za'*(K*zb[n] - colsum[n]) is computed per call (N operations); rowsum'
 * (per row of A, over all of K) only when some zb[n] != 0; every kernel starts its accumulators
 * at col[n] - rowsum'[m]*zb[n].
 *
 * Kernels are named onnxc_<u8s8|s8s8>_gemm_<MR>x<NR>__<isa> (compiler/kernels/qgemm.py lists
 * them; the declarations at the end of this file are generated from that list). Each has a
 * descriptor <name>_info the driver takes; a kernel exists in a build only when the build's
 * flags enable its ISA (the C file compiles to nothing otherwise). The AMX kernels ask Linux for
 * the tile-data permission on first use and run their AVX512-VNNI fallback (same packing) when
 * it is refused, when onnxc_qgemm_set_amx(0) was called or ONNXC_NO_AMX=1, and for M < 8.
 */
#ifndef ONNXC_QGEMM_H
#define ONNXC_QGEMM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Layout constants (also in compiler/kernels/qgemm.py). */
enum {
    ONNXC_QPACK_MAGIC = 0x3142514F, /* "OQB1" little endian */
    ONNXC_QPACK_HEADER = 128,
    ONNXC_QPACK_PANEL = 16,  /* columns per panel */
    ONNXC_QPACK_KGROUP = 4,  /* consecutive k of one column */
    ONNXC_QPACK_KALIGN = 64, /* Kp is a multiple of this */
    /* header flags */
    ONNXC_QPACK_B_U8 = 1,          /* stored bytes are unsigned (else signed) */
    ONNXC_QPACK_PAIRSAFE = 2,      /* pair-limited values + correction list */
    ONNXC_QPACK_ZB_PER_COLUMN = 4, /* B had a zero point per column (informative) */
    ONNXC_QPACK_K2 = 8             /* groups of 2 k (32 bytes) instead of 4 (vpmaddwd kernels) */
};

typedef struct {
    uint32_t magic, flags;
    int64_t K, N, Kp, Np, ncorr;
    int64_t colsum_off, zb_off, panels_off, corr_off, total_bytes;
} onnxc_qgemm_packed_header;

/* Microkernel contract (every ISA): for i < mr <= MR, j < nr <= NR, kc >= 1,
 *   C[i*ldc + j] = start(i, j) + sum_{k < kc} a'(i, k) * Bstored(k, j)
 * start = col[j] + (row ? row[i] * zbn[j] : 0) when col != NULL, else C[i*ldc + j] (a later K
 * block). A points at A[i0][k0] (rows at lda; only mr rows and kc bytes per row are read), B at
 * k-group k0/4 of the tile's first panel (panel q of the tile at B + q * bstride bytes). k0 is a
 * multiple of 64. Pair-safe corrections are the driver's. */
typedef void (*onnxc_qgemm_ukernel_fn)(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                       int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                       int64_t ldc, const int32_t* col, const int32_t* row,
                                       const int32_t* zbn);

typedef struct onnxc_qgemm_kernel {
    const char* name;
    onnxc_qgemm_ukernel_fn fn;
    int mr, nr;          /* register tile */
    int kc;              /* K block (a multiple of 64) */
    int a_signed;        /* A is int8 (s8s8 kernels) */
    int a_xor;           /* the kernel multiplies A ^ 0x80 (int8 A seen as uint8 + 128) */
    unsigned pack_flags; /* the ONNXC_QPACK_B_U8 / _PAIRSAFE / _K2 flags its packed B must carry */
    int amx;             /* needs the OS tile permission (else `fallback` runs) */
    const struct onnxc_qgemm_kernel* fallback;
} onnxc_qgemm_kernel;

/* Output stage, applied to each block of C right after its last K block (while in cache). */
enum {
    ONNXC_QOUT_S32 = 0, /* raw int32 (MatMulInteger) */
    ONNXC_QOUT_U8 = 1,  /* requantized uint8 (QLinearMatMul, QGemm, QLinearConv) */
    ONNXC_QOUT_S8 = 2,  /* requantized int8 */
    ONNXC_QOUT_F32 = 3  /* float (MatMulIntegerToFloat, dynamic quantization) */
};

/* Called on each finished block of the output (after the built-in conversion), from whichever
 * thread computed it: c = the output at row i0, column j0 (elements of `type`, row stride ldc),
 * the block being m x n. For fusions the built-in stage lacks (e.g. a residual QLinearAdd). */
typedef void (*onnxc_qgemm_hook_fn)(const void* arg, void* c, int64_t ldc, int64_t i0, int64_t m,
                                    int64_t j0, int64_t n);

typedef struct {
    int type;           /* ONNXC_QOUT_* */
    void* C;            /* output, M x N elements of `type` */
    int64_t ldc;        /* its row stride in elements */
    /* U8/S8: y = clamp(rint((float)acc * scale[n]) + zero_point, qmin, qmax), the float product
     * rounded half to even (onnxruntime's MlasRequantizeOutput); scale = a_scale * b_scale[n] /
     * y_scale computed in float32 in that order (as onnxruntime does); qmin/qmax the type's range,
     * narrowed for a fused Relu (qmin = zero_point) or Clip.
     * F32: y = (float)acc * scale[n] (+ bias[n]), scale = a_scale * b_scale[n]. */
    const float* scale;
    int scale_per_column; /* scale[n] (else scale[0]) */
    int32_t zero_point, qmin, qmax;
    const float* bias;    /* F32 only; may be NULL */
    onnxc_qgemm_hook_fn hook; /* may be NULL */
    const void* hook_arg;
} onnxc_qgemm_output;

enum { ONNXC_QGEMM_OK = 0, ONNXC_QGEMM_ERR_PACK = 1, ONNXC_QGEMM_ERR_ARG = 2 };

/* C = out(A * B) as above. A: M x K elements of the kernel's A type (uint8 or int8), row
 * stride lda; a_zero_point in A's type range; packedB from onnxc_qgemm_pack_b or the compiler
 * for a kernel with the same pack_flags (and this K, N), 64-byte alignment recommended; bias: N
 * int32 added to the accumulator (may be NULL). Splits the work over the runtime's thread pool;
 * M == 1 streams B once (GEMV). Returns ONNXC_QGEMM_ERR_PACK when packedB does not fit the
 * kernel or K/N, ONNXC_QGEMM_ERR_ARG for a bad output type. Results do not depend on the
 * thread count. */
int onnxc_qgemm(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t N, int64_t K,
                const void* A, int64_t lda, int32_t a_zero_point, const void* packedB,
                const int32_t* bias, const onnxc_qgemm_output* out);

/* Bytes of packed B for this kernel (B as described for onnxc_qgemm_pack_b: pair-safe kernels
 * count their corrections, so they read B). */
size_t onnxc_qgemm_packed_bytes(const onnxc_qgemm_kernel* kernel, int64_t K, int64_t N,
                                const void* B, int64_t ldb, int transB, int b_signed);

/* Pack B (K x N, or N x K if transB, row stride ldb; int8 if b_signed else uint8) with zero
 * point zb[0] (zb_per_column == 0) or zb[n] (zb may be NULL: 0), into dst
 * (onnxc_qgemm_packed_bytes bytes). Byte-identical to compiler/kernels/qgemm.py's pack_b. */
void onnxc_qgemm_pack_b(const onnxc_qgemm_kernel* kernel, int64_t K, int64_t N, const void* B,
                        int64_t ldb, int transB, int b_signed, const int32_t* zb,
                        int zb_per_column, void* dst);

/* The output stage alone, for drivers that run the microkernels themselves (the int8 convolution,
 * runtime_c/qconv): converts (S32: copies) the int32 block C32 (m x n, row stride ld) into rows
 * i0.. and columns j0.. of out (scale[j0 + j] when per column), then calls out->hook, exactly as
 * onnxc_qgemm does for each of its blocks. */
void onnxc_qgemm_output_block(const onnxc_qgemm_output* out, const int32_t* C32, int64_t ld,
                              int64_t i0, int64_t m, int64_t j0, int64_t n);

/* AMX: 1 when the AMX kernels run tiles here (CPU + build + OS permission, asked once), else 0.
 * onnxc_qgemm_set_amx(0) makes them use their fallback from then on (tests), (1) allows them
 * again. ONNXC_NO_AMX=1 in the environment has the effect of set_amx(0) at first use. */
int onnxc_qgemm_amx_ready(void);
void onnxc_qgemm_set_amx(int allow);

/* The kernel a descriptor resolves to for an M-row product on this host (the AMX fallback
 * applied), for tests and benchmarks. */
const onnxc_qgemm_kernel* onnxc_qgemm_resolve(const onnxc_qgemm_kernel* kernel, int64_t M);

/* BEGIN GENERATED: kernel list (compiler/kernels/qgemm.py c_declarations) */
/* u8s8 4x16, generic: qgemm/qgemm_generic_4x16.c */
void onnxc_u8s8_gemm_4x16__generic(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemm_4x16__generic_info;
/* s8s8 4x16, generic: qgemm/qgemm_generic_4x16.c */
void onnxc_s8s8_gemm_4x16__generic(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemm_4x16__generic_info;
/* u8s8 6x16, avx2: qgemm/qgemm_avx2_6x16.c */
void onnxc_u8s8_gemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemm_6x16__avx2_info;
/* s8s8 6x16, avx2: qgemm/qgemm_avx2_6x16.c */
void onnxc_s8s8_gemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemm_6x16__avx2_info;
/* u8s8 6x16, avx2: qgemm/qgemmps_avx2_6x16.c */
void onnxc_u8s8_gemmps_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemmps_6x16__avx2_info;
/* s8s8 6x16, avx2: qgemm/qgemmps_avx2_6x16.c */
void onnxc_s8s8_gemmps_6x16__avx2(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemmps_6x16__avx2_info;
/* u8s8 6x16, avx2vnni: qgemm/qgemm_avx2vnni_6x16.c */
void onnxc_u8s8_gemm_6x16__avx2vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemm_6x16__avx2vnni_info;
/* s8s8 6x16, avx2vnni: qgemm/qgemm_avx2vnni_6x16.c */
void onnxc_s8s8_gemm_6x16__avx2vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemm_6x16__avx2vnni_info;
/* u8s8 12x32, avx512vnni: qgemm/qgemm_avx512vnni_12x32.c */
void onnxc_u8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemm_12x32__avx512vnni_info;
/* s8s8 12x32, avx512vnni: qgemm/qgemm_avx512vnni_12x32.c */
void onnxc_s8s8_gemm_12x32__avx512vnni(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemm_12x32__avx512vnni_info;
/* u8s8 32x32, amx: qgemm/qgemm_amx_32x32.c */
void onnxc_u8s8_gemm_32x32__amx(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_u8s8_gemm_32x32__amx_info;
/* s8s8 32x32, amx: qgemm/qgemm_amx_32x32.c */
void onnxc_s8s8_gemm_32x32__amx(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A, int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn);
extern const onnxc_qgemm_kernel onnxc_s8s8_gemm_32x32__amx_info;
/* END GENERATED */

#ifdef __cplusplus
}
#endif
#endif
