/* GEMV with B read in place: onnxc_sgemm's M == 1 and N == 1 cases when B is not prepacked
 * (packing B, which is read once, would not pay). The dot form walks rows of the matrix, the
 * axpy form its columns; with OpenMP, long outputs are split into blocks across threads.
 * (Prepacked B has its own GEMV over the panels in sgemm_driver.c.)
 */
#include <math.h>

#include "f32_gemm.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ONNXC_ALIGN64 __attribute__((aligned(64)))
#else
#define ONNXC_ALIGN64
#endif

/* fmaf() is exact and, with hardware FMA, compiles (and vectorizes) to one instruction;
 * -std=c99 disables automatic contraction of a*b+c, so it has to be explicit. */
#if ONNXC_HW_FMA
#define ONNXC_FMADD(a, b, c) fmaf((a), (b), (c))
#else
#define ONNXC_FMADD(a, b, c) ((a) * (b) + (c))
#endif

#define ONNXC_MIN(a, b) ((a) < (b) ? (a) : (b))

/* Multiply-accumulates below which the GEMV runs on the calling thread only. */
#define SGEMM_PARALLEL_MIN_MACS (1 << 20)

/* ------------------------------------------------------------------------------------------ */
/* GEMV paths (M == 1 or N == 1)                                                               */
/* ------------------------------------------------------------------------------------------ */

#define GEMV_DOT_ROWS 32    /* outputs per block in the dot form */
#define GEMV_DOT_KB 1024    /* K chunk gathered when x is strided */
#define GEMV_AXPY_COLS 512  /* outputs per block in the axpy form */

/* y = alpha * acc + beta * y over n outputs with stride incy (beta == 0: y is write-only). */
static void gemv_store(float* y, int64_t incy, const float* acc, int64_t n, float alpha,
                       float beta) {
    int64_t j;
    if (beta == 0.0f) {
        for (j = 0; j < n; ++j) y[j * incy] = alpha * acc[j];
    } else {
        for (j = 0; j < n; ++j) y[j * incy] = ONNXC_FMADD(alpha, acc[j], beta * y[j * incy]);
    }
}

/* sum_k a[k] * b[k] with 32 independent partial sums (vectorizes without reassociation). */
static float gemv_dot_kernel(const float* restrict a, const float* restrict b, int64_t n) {
    float s[32];
    float t = 0.0f;
    int64_t k = 0;
    int j;
    for (j = 0; j < 32; ++j) s[j] = 0.0f;
    for (; k + 32 <= n; k += 32)
        for (j = 0; j < 32; ++j) s[j] = ONNXC_FMADD(a[k + j], b[k + j], s[j]);
    for (; k < n; ++k) t = ONNXC_FMADD(a[k], b[k], t);
    for (j = 0; j < 16; ++j) s[j] += s[j + 16];
    for (j = 0; j < 8; ++j) s[j] += s[j + 8];
    for (j = 0; j < 4; ++j) s[j] += s[j + 4];
    return t + ((s[0] + s[2]) + (s[1] + s[3]));
}

/* y[j*incy] = alpha * sum_k Mat[j*ldm + k] * x[k*incx] + beta * y[j*incy], j < n. */
static void gemv_dot(int64_t n, int64_t K, const float* Mat, int64_t ldm, const float* x,
                     int64_t incx, float alpha, float beta, float* y, int64_t incy) {
    const int64_t nblocks = (n + GEMV_DOT_ROWS - 1) / GEMV_DOT_ROWS;
    int64_t blk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * K >= SGEMM_PARALLEL_MIN_MACS && nblocks > 1 && onnxc_rt_omp_ok())
#endif
    for (blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * GEMV_DOT_ROWS;
        const int64_t nb = ONNXC_MIN(GEMV_DOT_ROWS, n - j0);
        float acc[GEMV_DOT_ROWS];
        float xbuf[GEMV_DOT_KB];
        int64_t j, k0, k;
        for (j = 0; j < nb; ++j) acc[j] = 0.0f;
        if (incx == 1) {
            for (j = 0; j < nb; ++j) acc[j] = gemv_dot_kernel(Mat + (j0 + j) * ldm, x, K);
        } else {
            for (k0 = 0; k0 < K; k0 += GEMV_DOT_KB) {
                const int64_t kb = ONNXC_MIN(GEMV_DOT_KB, K - k0);
                for (k = 0; k < kb; ++k) xbuf[k] = x[(k0 + k) * incx];
                for (j = 0; j < nb; ++j)
                    acc[j] += gemv_dot_kernel(Mat + (j0 + j) * ldm + k0, xbuf, kb);
            }
        }
        gemv_store(y + j0 * incy, incy, acc, nb, alpha, beta);
    }
}

/* y[j*incy] = alpha * sum_k x[k*incx] * Mat[k*ldm + j] + beta * y[j*incy], j < n. */
static void gemv_axpy(int64_t n, int64_t K, const float* Mat, int64_t ldm, const float* x,
                      int64_t incx, float alpha, float beta, float* y, int64_t incy) {
    const int64_t nblocks = (n + GEMV_AXPY_COLS - 1) / GEMV_AXPY_COLS;
    int64_t blk;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (n * K >= SGEMM_PARALLEL_MIN_MACS && nblocks > 1 && onnxc_rt_omp_ok())
#endif
    for (blk = 0; blk < nblocks; ++blk) {
        const int64_t j0 = blk * GEMV_AXPY_COLS;
        const int64_t nb = ONNXC_MIN(GEMV_AXPY_COLS, n - j0);
        float acc[GEMV_AXPY_COLS] ONNXC_ALIGN64;
        int64_t j, k = 0;
        for (j = 0; j < nb; ++j) acc[j] = 0.0f;
        for (; k + 4 <= K; k += 4) {
            const float x0 = x[k * incx], x1 = x[(k + 1) * incx];
            const float x2 = x[(k + 2) * incx], x3 = x[(k + 3) * incx];
            const float* restrict r0 = Mat + k * ldm + j0;
            const float* restrict r1 = r0 + ldm;
            const float* restrict r2 = r1 + ldm;
            const float* restrict r3 = r2 + ldm;
            for (j = 0; j < nb; ++j)
                acc[j] = ONNXC_FMADD(x3, r3[j], ONNXC_FMADD(x2, r2[j],
                         ONNXC_FMADD(x1, r1[j], ONNXC_FMADD(x0, r0[j], acc[j]))));
        }
        for (; k < K; ++k) {
            const float x0 = x[k * incx];
            const float* restrict r0 = Mat + k * ldm + j0;
            for (j = 0; j < nb; ++j) acc[j] = ONNXC_FMADD(x0, r0[j], acc[j]);
        }
        gemv_store(y + j0 * incy, incy, acc, nb, alpha, beta);
    }
}

void onnxc_sgemv(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                 float* C, int64_t ldc) {
    if (M == 1) {
        /* C row = alpha * x^T op(B) with x = op(A) row 0. */
        const int64_t incx = transA ? lda : 1;
        if (transB)
            gemv_dot(N, K, B, ldb, A, incx, alpha, beta, C, 1);
        else
            gemv_axpy(N, K, B, ldb, A, incx, alpha, beta, C, 1);
    } else {
        /* C column = alpha * op(A) x with x = op(B) column 0. */
        const int64_t incx = transB ? 1 : ldb;
        if (transA)
            gemv_axpy(M, K, A, lda, B, incx, alpha, beta, C, ldc);
        else
            gemv_dot(M, K, A, lda, B, incx, alpha, beta, C, ldc);
    }
}
