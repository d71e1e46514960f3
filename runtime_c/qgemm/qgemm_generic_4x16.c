/* Portable int8 GEMM microkernels (any C99 compiler, every build): a 4 x 16 tile of int32
 * accumulators over one packed panel. The twins of the SIMD kernels: same contract
 * (onnxc_qgemm.h) and, for s8s8, the same packing as the VNNI and AMX kernels (B stored as
 * uint8, A multiplied as int8). Arithmetic in uint32 so that int32 wrap-around (onnxruntime's
 * accumulation) is defined behaviour. */
#include "qgemm_kernel.h"

#define MR 4
#define NR 16

QGEMM_INLINE void tile(const int a_signed, int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                       int64_t lda, const uint8_t* B, int32_t* C, int64_t ldc, const int32_t* col,
                       const int32_t* row, const int32_t* zbn) {
    uint32_t acc[MR][NR];
    int64_t i, j, k;
    for (i = 0; i < mr; ++i)
        for (j = 0; j < NR; ++j)
            acc[i][j] = col ? (uint32_t)col[j < nr ? j : 0] + (row ? (uint32_t)row[i] * (uint32_t)zbn[j < nr ? j : 0] : 0u)
                            : (j < nr ? (uint32_t)C[i * ldc + j] : 0u);
    for (k = 0; k < kc; k += 4) {
        const uint8_t* b = B + k * NR;
        for (i = 0; i < mr; ++i) {
            const uint32_t w = qgemm_load4(A + i * lda + k, kc - k);
            int32_t a[4];
            int t;
            for (t = 0; t < 4; ++t) {
                const uint8_t x = (uint8_t)(w >> (8 * t));
                a[t] = a_signed ? (int32_t)(int8_t)x : (int32_t)x;
            }
            for (j = 0; j < NR; ++j) {
                const uint8_t* bj = b + 4 * j;
                /* s8s8 kernels multiply int8 A by B stored as uint8; u8s8 uint8 A by int8 B */
                const int32_t s = a_signed ? a[0] * bj[0] + a[1] * bj[1] + a[2] * bj[2] + a[3] * bj[3]
                                           : a[0] * (int8_t)bj[0] + a[1] * (int8_t)bj[1] +
                                                 a[2] * (int8_t)bj[2] + a[3] * (int8_t)bj[3];
                acc[i][j] += (uint32_t)s;
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) C[i * ldc + j] = (int32_t)acc[i][j];
}

void onnxc_u8s8_gemm_4x16__generic(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                   int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                   int64_t ldc, const int32_t* col, const int32_t* row,
                                   const int32_t* zbn) {
    (void)bstride;
    tile(0, mr, nr, kc, A, lda, B, C, ldc, col, row, zbn);
}

void onnxc_s8s8_gemm_4x16__generic(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                   int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                   int64_t ldc, const int32_t* col, const int32_t* row,
                                   const int32_t* zbn) {
    (void)bstride;
    tile(1, mr, nr, kc, A, lda, B, C, ldc, col, row, zbn);
}

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_4x16__generic, MR, NR, 256, 0, 0, 0, 0, 0);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_4x16__generic, MR, NR, 256, 1, 0, ONNXC_QPACK_B_U8, 0, 0);
