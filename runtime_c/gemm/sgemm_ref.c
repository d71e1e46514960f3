/* Portable C99 single-precision GEMM: C = alpha * op(A) * op(B) + beta * C (row-major).
 *
 * onnxc_sgemm_ref is the reference twin of onnxc_sgemm (sgemm_driver.c, SIMD microkernels and
 * packed weights): same contract, no ISA-specific code; tests compare the two. onnxc_sgemm
 * also delegates its M == 1 and N == 1 cases with unpacked B to the GEMV loops below.
 *
 * Structure (Goto/BLIS style), so that an ISA-specific micro-kernel can be swapped in:
 *
 *   for each N block of NC columns          (jc)
 *     for each K block of KC                (pc)  pack op(B)[pc:, jc:] into NR-wide panels
 *       for each M block of MC rows         (ic)  pack alpha*op(A)[ic:, pc:] into MR-tall panels
 *         for each NR panel of the B block  (jr)
 *           for each MR panel of the A block (ir) micro-kernel: MR x NR tile of C
 *
 * The packing buffers are fixed-size arrays on the stack (no malloc), sized by the block
 * constants below: (MC + NC) * KC floats = 352 KB per calling thread with the defaults, so
 * threads running this code need a stack of at least ~512 KB (glibc/libgomp default: 8 MB).
 * Edge tiles are zero-padded by the packing routines, so the micro-kernel always computes a
 * full MR x NR tile and only its write-back is clipped. A micro-kernel is
 *
 *   void kernel(int64_t kc, const float* Ap, const float* Bp, float* C, int64_t ldc,
 *               int64_t mr, int64_t nr, float beta);
 *
 * Ap: kc x MR, k-major (Ap[k*MR + i], alpha already applied); Bp: kc x NR (Bp[k*NR + j]);
 * it stores C[i*ldc + j] = acc[i][j] + beta * C[i*ldc + j] for i < mr, j < nr, and must not
 * read C when beta == 0. To plug in another one, define ONNXC_SGEMM_KERNEL, ONNXC_SGEMM_MR and
 * ONNXC_SGEMM_NR before the kernel section below (the block sizes must stay multiples of MR
 * and NR). The kernel is called out of line (gcc spills the accumulators when it is inlined
 * into the blocking loops).
 *
 * M == 1 and N == 1 go to dedicated GEMV loops (no packing). With OpenMP, large problems are
 * split into a 2-d grid of (M range, N range) tasks, one per thread, each with its own buffers.
 */
#include <math.h>
#include <string.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ONNXC_ALIGN64 __attribute__((aligned(64)))
#define ONNXC_NOINLINE __attribute__((noinline))
#else
#define ONNXC_ALIGN64
#define ONNXC_NOINLINE
#endif

/* fmaf() is exact and, with hardware FMA, compiles (and vectorizes) to one instruction;
 * -std=c99 disables automatic contraction of a*b+c, so it has to be explicit. */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define ONNXC_FMADD(a, b, c) fmaf((a), (b), (c))
#else
#define ONNXC_FMADD(a, b, c) ((a) * (b) + (c))
#endif

#define ONNXC_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------------------------------ */
/* Reference micro-kernel: 6 x 16 tile, written so that gcc/clang keep the 96 accumulators in  */
/* vector registers (one array per row, unit-stride inner loop over the 16 columns).           */
/* ------------------------------------------------------------------------------------------ */

#ifndef ONNXC_SGEMM_KERNEL

#define SGEMM_REF_MR 6
#define SGEMM_REF_NR 16

/* Store one row of an accumulator tile: C[j] = acc[j] + beta * C[j] for j < nr. */
static inline void sgemm_store_row(float* restrict c, const float* restrict acc, int64_t nr,
                                   float beta) {
    int64_t j;
    if (beta == 0.0f) {
        for (j = 0; j < nr; ++j) c[j] = acc[j];
    } else if (beta == 1.0f) {
        for (j = 0; j < nr; ++j) c[j] += acc[j];
    } else {
        for (j = 0; j < nr; ++j) c[j] = ONNXC_FMADD(beta, c[j], acc[j]);
    }
}

ONNXC_NOINLINE
static void sgemm_kernel_ref_6x16(int64_t kc, const float* restrict Ap, const float* restrict Bp,
                                  float* restrict C, int64_t ldc, int64_t mr, int64_t nr,
                                  float beta) {
    float c0[SGEMM_REF_NR], c1[SGEMM_REF_NR], c2[SGEMM_REF_NR];
    float c3[SGEMM_REF_NR], c4[SGEMM_REF_NR], c5[SGEMM_REF_NR];
    int64_t k;
    int j;
    for (j = 0; j < SGEMM_REF_NR; ++j) {
        c0[j] = 0.0f; c1[j] = 0.0f; c2[j] = 0.0f; c3[j] = 0.0f; c4[j] = 0.0f; c5[j] = 0.0f;
    }
    for (k = 0; k < kc; ++k) {
        const float* restrict a = Ap + k * SGEMM_REF_MR;
        const float* restrict b = Bp + k * SGEMM_REF_NR;
        const float a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3], a4 = a[4], a5 = a[5];
        for (j = 0; j < SGEMM_REF_NR; ++j) {
            const float bj = b[j];
            c0[j] = ONNXC_FMADD(a0, bj, c0[j]);
            c1[j] = ONNXC_FMADD(a1, bj, c1[j]);
            c2[j] = ONNXC_FMADD(a2, bj, c2[j]);
            c3[j] = ONNXC_FMADD(a3, bj, c3[j]);
            c4[j] = ONNXC_FMADD(a4, bj, c4[j]);
            c5[j] = ONNXC_FMADD(a5, bj, c5[j]);
        }
    }
    {
        const float* rows[SGEMM_REF_MR];
        int64_t i;
        rows[0] = c0; rows[1] = c1; rows[2] = c2; rows[3] = c3; rows[4] = c4; rows[5] = c5;
        if (nr == SGEMM_REF_NR && beta == 0.0f) {
            for (i = 0; i < mr; ++i)
                for (j = 0; j < SGEMM_REF_NR; ++j) C[i * ldc + j] = rows[i][j];
        } else if (nr == SGEMM_REF_NR && beta == 1.0f) {
            for (i = 0; i < mr; ++i)
                for (j = 0; j < SGEMM_REF_NR; ++j) C[i * ldc + j] += rows[i][j];
        } else {
            for (i = 0; i < mr; ++i) sgemm_store_row(C + i * ldc, rows[i], nr, beta);
        }
    }
}

#define ONNXC_SGEMM_KERNEL sgemm_kernel_ref_6x16
#define ONNXC_SGEMM_MR SGEMM_REF_MR
#define ONNXC_SGEMM_NR SGEMM_REF_NR

#endif /* !ONNXC_SGEMM_KERNEL */

/* Cache blocking: a KC x NR panel of B (16 KB) stays in L1, an MC x KC block of A (96 KB) in L2,
 * the KC x NC block of B (256 KB) in L2/L3. MC must be a multiple of MR, NC of NR. */
#ifndef ONNXC_SGEMM_KC
#define ONNXC_SGEMM_KC 256
#endif
#ifndef ONNXC_SGEMM_MC
#define ONNXC_SGEMM_MC (16 * ONNXC_SGEMM_MR)
#endif
#ifndef ONNXC_SGEMM_NC
#define ONNXC_SGEMM_NC (16 * ONNXC_SGEMM_NR)
#endif

#define MR ONNXC_SGEMM_MR
#define NR ONNXC_SGEMM_NR
#define KC ONNXC_SGEMM_KC
#define MC ONNXC_SGEMM_MC
#define NC ONNXC_SGEMM_NC

/* Multiply-accumulates below which the GEMM runs on the calling thread only. */
#define SGEMM_PARALLEL_MIN_MACS (1 << 20)

/* ------------------------------------------------------------------------------------------ */
/* Packing                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Pack alpha * op(A)[i0 : i0+mc, p0 : p0+kc] into ceil(mc/MR) panels of kc x MR (k-major),
 * zero-filling the rows past mc. */
static void sgemm_pack_a(int transA, const float* A, int64_t lda, int64_t i0, int64_t p0,
                         int64_t mc, int64_t kc, float alpha, float* restrict Ap) {
    int64_t ip, i, k;
    for (ip = 0; ip < mc; ip += MR) {
        const int64_t mr = ONNXC_MIN(MR, mc - ip);
        float* restrict dst = Ap + ip * kc;
        if (!transA) {
            /* op(A)(r, k) = A[r*lda + k]: MR row streams. */
            for (i = 0; i < mr; ++i) {
                const float* restrict src = A + (i0 + ip + i) * lda + p0;
                if (alpha == 1.0f) {
                    for (k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
                } else {
                    for (k = 0; k < kc; ++k) dst[k * MR + i] = alpha * src[k];
                }
            }
        } else {
            /* op(A)(r, k) = A[k*lda + r]: rows of MR contiguous floats. */
            for (k = 0; k < kc; ++k) {
                const float* restrict src = A + (p0 + k) * lda + i0 + ip;
                for (i = 0; i < mr; ++i) dst[k * MR + i] = alpha * src[i];
            }
        }
        if (mr < MR) {
            for (k = 0; k < kc; ++k)
                for (i = mr; i < MR; ++i) dst[k * MR + i] = 0.0f;
        }
    }
}

/* Pack op(B)[p0 : p0+kc, j0 : j0+nc] into ceil(nc/NR) panels of kc x NR, zero-filling the
 * columns past nc. */
static void sgemm_pack_b(int transB, const float* B, int64_t ldb, int64_t p0, int64_t j0,
                         int64_t kc, int64_t nc, float* restrict Bp) {
    int64_t jp, j, k;
    if (!transB) {
        /* op(B)(k, c) = B[k*ldb + c]: walk each row of B once, scattering NR-wide pieces into
         * the panels (sequential reads are what the hardware prefetcher handles best). */
        const int64_t nfull = nc / NR * NR;
        for (k = 0; k < kc; ++k) {
            const float* restrict s = B + (p0 + k) * ldb + j0;
            for (jp = 0; jp < nfull; jp += NR) {
                float* restrict d = Bp + jp * kc + k * NR;
                for (j = 0; j < NR; ++j) d[j] = s[jp + j];
            }
            if (nfull < nc) {
                float* restrict d = Bp + nfull * kc + k * NR;
                for (j = 0; j < nc - nfull; ++j) d[j] = s[nfull + j];
                for (; j < NR; ++j) d[j] = 0.0f;
            }
        }
        return;
    }
    /* op(B)(k, c) = B[c*ldb + k]: transpose nr row streams per panel. */
    for (jp = 0; jp < nc; jp += NR) {
        const int64_t nr = ONNXC_MIN(NR, nc - jp);
        float* restrict dst = Bp + jp * kc;
        for (j = 0; j < nr; ++j) {
            const float* restrict s = B + (j0 + jp + j) * ldb + p0;
            for (k = 0; k < kc; ++k) dst[k * NR + j] = s[k];
        }
        if (nr < NR) {
            for (k = 0; k < kc; ++k)
                for (j = nr; j < NR; ++j) dst[k * NR + j] = 0.0f;
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Blocked GEMM over one (M range, N range) task                                               */
/* ------------------------------------------------------------------------------------------ */

static void sgemm_task(int transA, int transB, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                       int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                       int64_t ldb, float beta, float* C, int64_t ldc) {
    float Ap[MC * KC] ONNXC_ALIGN64;
    float Bp[KC * NC] ONNXC_ALIGN64;
    int64_t jc, pc, ic, jr, ir;
    for (jc = n0; jc < n1; jc += NC) {
        const int64_t nc = ONNXC_MIN(NC, n1 - jc);
        for (pc = 0; pc < K; pc += KC) {
            const int64_t kc = ONNXC_MIN(KC, K - pc);
            const float beta_k = pc == 0 ? beta : 1.0f;
            sgemm_pack_b(transB, B, ldb, pc, jc, kc, nc, Bp);
            for (ic = m0; ic < m1; ic += MC) {
                const int64_t mc = ONNXC_MIN(MC, m1 - ic);
                sgemm_pack_a(transA, A, lda, ic, pc, mc, kc, alpha, Ap);
                for (jr = 0; jr < nc; jr += NR) {
                    const int64_t nr = ONNXC_MIN(NR, nc - jr);
                    for (ir = 0; ir < mc; ir += MR) {
                        const int64_t mr = ONNXC_MIN(MR, mc - ir);
                        ONNXC_SGEMM_KERNEL(kc, Ap + ir * kc, Bp + jr * kc,
                                           C + (ic + ir) * ldc + jc + jr, ldc, mr, nr, beta_k);
                    }
                }
            }
        }
    }
}

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

/* ------------------------------------------------------------------------------------------ */
/* Entry point                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* C = beta * C (beta == 0: C = 0 without reading it). */
static void sgemm_scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
    int64_t i, j;
    for (i = 0; i < M; ++i) {
        float* c = C + i * ldc;
        if (beta == 0.0f) {
            for (j = 0; j < N; ++j) c[j] = 0.0f;
        } else if (beta != 1.0f) {
            for (j = 0; j < N; ++j) c[j] *= beta;
        }
    }
}

#ifdef _OPENMP
/* Split the work into a tm x tn grid of at most T tasks minimizing the most expensive task,
 * counting the padded MR x NR tiles it computes plus the floats it packs (every task packs its
 * whole A range once per NC columns and its whole B range once; a packed float costs about as
 * much as SGEMM_PACK_COST multiply-adds). */
#define SGEMM_PACK_COST 16.0
static void sgemm_grid(int64_t M, int64_t N, int T, int* tm_out, int* tn_out) {
    const int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
    double best = -1.0;
    int tn;
    *tm_out = 1;
    *tn_out = 1;
    for (tn = 1; tn <= T && tn <= nt; ++tn) {
        const int tm = (int)ONNXC_MIN((int64_t)(T / tn), mt);
        const double m = (double)((mt + tm - 1) / tm * MR);
        const double n = (double)((nt + tn - 1) / tn * NR);
        const double cost = m * n + SGEMM_PACK_COST * (m * (double)((int64_t)n / NC + 1) + n);
        if (best < 0.0 || cost < best) {
            best = cost;
            *tm_out = tm;
            *tn_out = tn;
        }
    }
}
#endif

void onnxc_sgemm_ref(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        sgemm_scale_c(M, N, beta, C, ldc);
        return;
    }
    if (M == 1) {
        /* C row = alpha * x^T op(B) with x = op(A) row 0. */
        const int64_t incx = transA ? lda : 1;
        if (transB)
            gemv_dot(N, K, B, ldb, A, incx, alpha, beta, C, 1);
        else
            gemv_axpy(N, K, B, ldb, A, incx, alpha, beta, C, 1);
        return;
    }
    if (N == 1) {
        /* C column = alpha * op(A) x with x = op(B) column 0. */
        const int64_t incx = transB ? 1 : ldb;
        if (transA)
            gemv_axpy(M, K, A, lda, B, incx, alpha, beta, C, ldc);
        else
            gemv_dot(M, K, A, lda, B, incx, alpha, beta, C, ldc);
        return;
    }
#ifdef _OPENMP
    {
        const double macs = (double)M * (double)N * (double)K;
        int T = onnxc_rt_omp_ok() ? omp_get_max_threads() : 1;
        const double max_useful = macs / (double)SGEMM_PARALLEL_MIN_MACS;
        int tm = 1, tn = 1;
        if ((double)T > max_useful) T = (int)max_useful;
        if (T > 1) sgemm_grid(M, N, T, &tm, &tn);
        if (tm * tn > 1) {
            const int64_t mt = (M + MR - 1) / MR, nt = (N + NR - 1) / NR;
#pragma omp parallel num_threads(tm * tn)
            {
                const int nth = omp_get_num_threads();
                int t;
                for (t = omp_get_thread_num(); t < tm * tn; t += nth) {
                    const int bi = t / tn, bj = t % tn;
                    const int64_t m0 = ONNXC_MIN(M, (mt * bi / tm) * MR);
                    const int64_t m1 = ONNXC_MIN(M, (mt * (bi + 1) / tm) * MR);
                    const int64_t n0 = ONNXC_MIN(N, (nt * bj / tn) * NR);
                    const int64_t n1 = ONNXC_MIN(N, (nt * (bj + 1) / tn) * NR);
                    if (m0 < m1 && n0 < n1)
                        sgemm_task(transA, transB, m0, m1, n0, n1, K, alpha, A, lda, B, ldb,
                                   beta, C, ldc);
                }
            }
            return;
        }
    }
#endif
    sgemm_task(transA, transB, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
