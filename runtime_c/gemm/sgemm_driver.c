/* Fast SGEMM: cache blocking and threading around the build's f32 microkernel (f32_gemm.h:
 * ONNXC_SGEMM_KERNEL, e.g. onnxc_f32_gemm_14x32__avx512).
 *
 *   onnxc_sgemm         op(B) packed here, one KC x NC_BUF block at a time, into a stack buffer
 *   onnxc_sgemm_packed  op(B) packed once, at compile time (weights); layout in onnxc_kernels.h
 *
 * Both run the same blocked loop:
 *
 *   for each N block of NC columns                 (jc)
 *     for each K block of at most KC               (pc)   B block kc x nc stays in L2
 *       for each TILE_M rows of C                  (i)    A sliver TILE_M x kc, reused nc/TN times
 *         for each TILE_N panel of the block       (jr)   microkernel
 *
 * op(A) is read in place: the microkernel broadcasts op(A)(i,k) straight from A, row-major or
 * transposed (only slivers of A with a conflicting row stride are copied, see macro_block).
 * Packing A would cost about as much as the multiply when N is small (N = 64 in half the
 * convolutions of a ResNet). alpha is applied when a tile is stored; later K blocks accumulate
 * into C (beta = 1). K is cut into equal blocks of at most KC (no thin last block).
 *
 * Threads (the runtime's pool, onnxc_threads.h): a product of at least SGEMM_PARALLEL_MIN_MACS
 * multiply-adds is split into a grid of (row range, panel range) tasks, one per usable thread;
 * smaller ones, and calls the pool would run serially (nested, pool busy), stay on the calling
 * thread.
 *
 * The _ep entry points take an epilogue callback (onnxc_kernels.h), run on each mr x nc block
 * of C right after its last K block, while it is in L1 (bias, activation: no second pass).
 *
 * M == 1 with packed B has its own GEMV loop (panels streamed once, several at a time); with
 * unpacked B, M == 1 and N == 1 go to the GEMV loops of sgemv.c, which read B in place.
 */
#include <math.h>
#include <string.h>

#include "f32_gemm.h"
#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ALIGN64 __attribute__((aligned(64)))
#else
#define ALIGN64
#endif

#define TM ONNXC_SGEMM_TILE_M
#define TN ONNXC_SGEMM_TILE_N
#define MIN(a, b) ((a) < (b) ? (a) : (b))
/* -std=c99 turns off contraction of a*b+c; fmaf() is one instruction with hardware FMA. */
#if ONNXC_HW_FMA
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

/* K block: a TILE_M x KC sliver of A (14 KB with AVX-512) stays in L1 while the panels of
 * the B block stream from L2. Part of the packed layout (onnxc_kernels.h). */
#define KC ONNXC_SGEMM_KC
/* Columns per block with prepacked B: KC x NC_PACKED floats = 512 KB, half the L2. */
#ifndef NC_PACKED
#define NC_PACKED 512
#endif
/* Columns per block packed at run time, into a KC x NC_BUF stack buffer (256 KB per thread:
 * threads running this need a stack of at least ~512 KB; glibc/libgomp default to 8 MB). */
#ifndef NC_BUF
#define NC_BUF 256
#endif
/* Multiply-adds per thread below which a product is not split further (~5 us of work: handing
 * a loop to the pool costs ~1 us while the workers spin; at 1 << 20 the 0.5-2M MAC products of
 * the small models, e.g. the 1x1 convolutions' GEMMs of ShuffleNet and MobileNetV3's 576x1024
 * GEMV, stayed on one thread). */
#ifndef SGEMM_PARALLEL_MIN_MACS
#define SGEMM_PARALLEL_MIN_MACS (1 << 18)
#endif
/* Panels the packed GEMV streams at once (GEMV_PANELS * TN accumulators). */
#ifndef GEMV_PANELS
#define GEMV_PANELS 4
#endif
/* A float packed costs about as much as this many multiply-adds (thread split heuristic). */
#define PACK_COST 16

int onnxc_sgemm_tile_m(void) { return TM; }
int onnxc_sgemm_tile_n(void) { return TN; }

size_t onnxc_sgemm_packed_floats(int64_t N, int64_t K) {
    if (N <= 0 || K <= 0) return 0;
    return (size_t)((N + TN - 1) / TN) * TN * (size_t)K;
}

/* K blocks of equal size (at most KC): no thin last block. */
static int64_t k_block(int64_t K) {
    const int64_t nb = K > 0 ? (K + KC - 1) / KC : 1; /* K = 0: no blocks, but no division by 0 */
    return (K + nb - 1) / nb;
}

/* Pack op(B)[p0 : p0+kc, j0 : j0+nc] into ceil(nc/TN) panels of kc x TN, panel q at
 * Bp + q * pstride, zero-filling the columns past nc. */
static void pack_panels(int transB, const float* B, int64_t ldb, int64_t p0, int64_t kc,
                        int64_t j0, int64_t nc, float* Bp, int64_t pstride) {
    int64_t jp, j, k;
    for (jp = 0; jp < nc; jp += TN) {
        const int64_t nr = MIN(TN, nc - jp);
        float* dst = Bp + (jp / TN) * pstride;
        if (!transB) {
            /* op(B)(k, c) = B[k*ldb + c]: TN contiguous floats per row. */
            for (k = 0; k < kc; ++k) {
                const float* s = B + (p0 + k) * ldb + j0 + jp;
                float* d = dst + k * TN;
                if (nr == TN) {
                    memcpy(d, s, TN * sizeof(float));
                } else {
                    for (j = 0; j < nr; ++j) d[j] = s[j];
                    for (; j < TN; ++j) d[j] = 0.0f;
                }
            }
        } else {
            /* op(B)(k, c) = B[c*ldb + k]: transpose nr row streams. */
            for (j = 0; j < nr; ++j) {
                const float* s = B + (j0 + jp + j) * ldb + p0;
                for (k = 0; k < kc; ++k) dst[k * TN + j] = s[k];
            }
            for (k = 0; k < kc && nr < TN; ++k)
                for (j = nr; j < TN; ++j) dst[k * TN + j] = 0.0f;
        }
    }
}

void onnxc_sgemm_pack_b(int transB, int64_t N, int64_t K, const float* B, int64_t ldb,
                        float* packedB) {
    const int64_t kb = k_block(K), npad = (N + TN - 1) / TN * TN;
    int64_t pc;
    for (pc = 0; pc < K && N > 0; pc += kb) {
        const int64_t kc = MIN(kb, K - pc);
        pack_panels(transB, B, ldb, pc, kc, 0, N, packedB + pc * npad, kc * TN);
    }
}

/* Copy the sliver op(A)[0:mr, 0:kc] (A(i,k) = A[i*rsa + k*csa]) into Ap[k*TM + i], rows past
 * mr zero (a kernel computing all TM rows then reads no stale data). */
static void pack_a_sliver(const float* A, int64_t rsa, int64_t csa, int64_t mr, int64_t kc,
                          float* Ap) {
    int64_t i, k;
    if (rsa == 1) {
        for (k = 0; k < kc; ++k) memcpy(Ap + k * TM, A + k * csa, (size_t)mr * sizeof(float));
    } else {
        for (i = 0; i < mr; ++i) {
            const float* a = A + i * rsa;
            for (k = 0; k < kc; ++k) Ap[k * TM + i] = a[k];
        }
    }
    for (k = 0; k < kc && mr < TM; ++k)
        for (i = mr; i < TM; ++i) Ap[k * TM + i] = 0.0f;
}

/* C[m0:m1, 0:nc] (C points at column jc) = alpha * op(A)[m0:m1, pc:pc+kc] * block + beta * C,
 * block panel q at Bp + q * pstride (kc x TN each).
 * op(A) is read in place (copying it costs as much as the multiply when few panels reuse it),
 * except when lda is a multiple of 256 floats and more than 4 panels reuse the sliver: its TM
 * rows (or kc columns, transposed) then fall into at most 4 of the 64 L1 sets and evict each
 * other between panels (1024 x 1024 x 1024 ran 3x slower), so the sliver is first copied into a
 * contiguous k-major buffer. With 1 or 2 panels the copy cost more than the misses (N = 49:
 * 80 against 57 GFLOP/s). */
static void macro_block(int transA, const float* A, int64_t lda, int64_t m0, int64_t m1,
                        int64_t pc, int64_t kc, const float* Bp, int64_t pstride, int64_t nc,
                        float* C, int64_t ldc, float alpha, float beta, int64_t jc,
                        const onnxc_sgemm_epilogue* ep) {
    float Ap[TM * KC] ALIGN64;
    const int pack_a = SGEMM_ALWAYS_PACK_A || (lda % 256 == 0 && nc > 4 * TN);
    const int64_t rsa = transA ? 1 : lda, csa = transA ? lda : 1;
    int64_t i, jr;
    for (i = m0; i < m1; i += TM) {
        const int64_t mr = MIN(TM, m1 - i);
        const float* a = transA ? A + pc * lda + i : A + i * lda + pc;
        if (pack_a) {
            pack_a_sliver(a, rsa, csa, mr, kc, Ap);
            a = Ap;
        }
        for (jr = 0; jr < nc; jr += TN)
            ONNXC_SGEMM_KERNEL(mr, MIN(TN, nc - jr), kc, a, pack_a ? 1 : rsa, pack_a ? TM : csa,
                               Bp + (jr / TN) * pstride, C + i * ldc + jr, ldc, alpha, beta);
        /* last K block (callers pass ep only then): the mr x nc block is final and still in L1 */
        if (ep) ep->fn(ep->arg, C + i * ldc, ldc, i, mr, jc, nc);
    }
}

/* Rows [m0, m1) and columns [n0, n1) of C, op(B) prepacked (n0 a multiple of TN). */
static void task_packed(int transA, int64_t m0, int64_t m1, int64_t n0, int64_t n1, int64_t N,
                        int64_t K, float alpha, const float* A, int64_t lda, const float* packedB,
                        float beta, float* C, int64_t ldc, const onnxc_sgemm_epilogue* ep) {
    const int64_t kb = k_block(K), npad = (N + TN - 1) / TN * TN;
    int64_t jc, pc;
    for (jc = n0; jc < n1; jc += NC_PACKED) {
        const int64_t nc = MIN(NC_PACKED, n1 - jc);
        for (pc = 0; pc < K; pc += kb) {
            const int64_t kc = MIN(kb, K - pc);
            macro_block(transA, A, lda, m0, m1, pc, kc, packedB + pc * npad + jc * kc, kc * TN,
                        nc, C + jc, ldc, alpha, pc == 0 ? beta : 1.0f, jc, pc + kc >= K ? ep : NULL);
        }
    }
}

/* Same with op(B) packed here, block by block. */
static void task_unpacked(int transA, int transB, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                          int64_t K, float alpha, const float* A, int64_t lda, const float* B,
                          int64_t ldb, float beta, float* C, int64_t ldc,
                          const onnxc_sgemm_epilogue* ep) {
    float Bp[KC * NC_BUF] ALIGN64;
    const int64_t kb = k_block(K);
    int64_t jc, pc;
    for (jc = n0; jc < n1; jc += NC_BUF) {
        const int64_t nc = MIN(NC_BUF, n1 - jc);
        for (pc = 0; pc < K; pc += kb) {
            const int64_t kc = MIN(kb, K - pc);
            pack_panels(transB, B, ldb, pc, kc, jc, nc, Bp, kc * TN);
            macro_block(transA, A, lda, m0, m1, pc, kc, Bp, kc * TN, nc, C + jc, ldc, alpha,
                        pc == 0 ? beta : 1.0f, jc, pc + kc >= K ? ep : NULL);
        }
    }
}

/* C = beta * C (beta == 0: C = 0 without reading it). */
static void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
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

/* ------------------------------------------------------------------------------------------ */
/* GEMV with packed B (M == 1): y = alpha * x op(B) + beta * y                                 */
/* ------------------------------------------------------------------------------------------ */

/* Panels [p, p + np) (np a constant after inlining: np * TN independent accumulators), each
 * K block of a panel read once as one contiguous stream. */
SGEMM_INLINE void gemv_panels(const int np, int64_t p, int64_t N, int64_t K, float alpha,
                              const float* x, int64_t incx, const float* packedB, float beta,
                              float* y) {
    float acc[GEMV_PANELS][TN] ALIGN64;
    const int64_t kb = k_block(K), npad = (N + TN - 1) / TN * TN;
    int64_t pc, k, j;
    int q;
    for (q = 0; q < np; ++q)
        for (j = 0; j < TN; ++j) acc[q][j] = 0.0f;
    for (pc = 0; pc < K; pc += kb) {
        const int64_t kc = MIN(kb, K - pc);
        const float* b = packedB + pc * npad + p * kc * TN;
        for (k = 0; k < kc; ++k) {
            const float xk = x[(pc + k) * incx];
            for (q = 0; q < np; ++q)
                for (j = 0; j < TN; ++j) acc[q][j] = MADD(xk, b[q * kc * TN + k * TN + j], acc[q][j]);
        }
    }
    for (q = 0; q < np; ++q) {
        const int64_t c0 = (p + q) * TN, nr = MIN(TN, N - c0);
        float* yq = y + c0;
        if (beta == 0.0f) {
            for (j = 0; j < nr; ++j) yq[j] = alpha * acc[q][j];
        } else {
            for (j = 0; j < nr; ++j) yq[j] = alpha * acc[q][j] + beta * yq[j];
        }
    }
}

typedef struct {
    int64_t N, K, incx;
    float alpha, beta;
    const float *x, *packedB;
    float* y;
} gemv_job;

static void gemv_groups(void* ctx, int64_t g0, int64_t g1) {
    const gemv_job* j = (const gemv_job*)ctx;
    const int64_t N = j->N, K = j->K, incx = j->incx, panels = (N + TN - 1) / TN;
    const float alpha = j->alpha, beta = j->beta, *x = j->x, *packedB = j->packedB;
    float* y = j->y;
    int64_t g;
    for (g = g0; g < g1; ++g) {
        const int64_t p = GEMV_PANELS * g;
        if (p + GEMV_PANELS <= panels) {
            gemv_panels(GEMV_PANELS, p, N, K, alpha, x, incx, packedB, beta, y);
        } else {
            int64_t q;
            for (q = p; q < panels; ++q) gemv_panels(1, q, N, K, alpha, x, incx, packedB, beta, y);
        }
    }
}

static void gemv_packed(int64_t N, int64_t K, float alpha, const float* x, int64_t incx,
                        const float* packedB, float beta, float* y) {
    const int64_t panels = (N + TN - 1) / TN, groups = (panels + GEMV_PANELS - 1) / GEMV_PANELS;
    gemv_job j;
    j.N = N; j.K = K; j.incx = incx; j.alpha = alpha; j.beta = beta;
    j.x = x; j.packedB = packedB; j.y = y;
    onnxc_parallel_for(groups, N * K >= SGEMM_PARALLEL_MIN_MACS && groups > 1, gemv_groups, &j);
}

/* ------------------------------------------------------------------------------------------ */
/* Thread split                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* Threads worth using for an M x N x K product, and the tm x tn grid of tasks among them that
 * minimizes the largest task (padded tiles it computes, operand floats it reads, plus the B
 * floats it packs when B is packed at run time: every task packs the whole B of its columns). */
static void thread_grid(int64_t M, int64_t N, int64_t K, int packs_b, int* tm_out, int* tn_out) {
    *tm_out = 1;
    *tn_out = 1;
    {
        const int64_t mt = (M + TM - 1) / TM, nt = (N + TN - 1) / TN;
        const double macs = (double)M * (double)N * (double)K;
        double best = -1.0;
        int T = onnxc_rt_threads_usable();
        int tn;
        if ((double)T > macs / SGEMM_PARALLEL_MIN_MACS) T = (int)(macs / SGEMM_PARALLEL_MIN_MACS);
        for (tn = 1; tn <= T && tn <= nt; ++tn) {
            const int tm = (int)MIN((int64_t)(T / tn), mt);
            const double m = (double)((mt + tm - 1) / tm * TM);
            const double n = (double)((nt + tn - 1) / tn * TN);
            /* + the A and B floats the task streams (splitting M re-reads all of B per thread,
             * splitting N all of A: the tie-break goes to the smaller operand) */
            const double cost = (m * n + 2.0 * (m + n) + (packs_b ? PACK_COST * n : 0.0)) * (double)K;
            if (best < 0.0 || cost < best) {
                best = cost;
                *tm_out = tm;
                *tn_out = tn;
            }
        }
    }
}

/* Row and column range of task t in a tm x tn grid (tile-aligned). */
static void task_range(int t, int tm, int tn, int64_t M, int64_t N, int64_t* m0, int64_t* m1,
                       int64_t* n0, int64_t* n1) {
    const int64_t mt = (M + TM - 1) / TM, nt = (N + TN - 1) / TN;
    const int bi = t / tn, bj = t % tn;
    *m0 = MIN(M, (mt * bi / tm) * TM);
    *m1 = MIN(M, (mt * (bi + 1) / tm) * TM);
    *n0 = MIN(N, (nt * bj / tn) * TN);
    *n1 = MIN(N, (nt * (bj + 1) / tn) * TN);
}

/* Arguments of one product split into a tm x tn grid of tasks (onnxc_sgemm and _packed). */
typedef struct {
    int packed, transA, transB, tm, tn;
    int64_t M, N, K, lda, ldb, ldc;
    float alpha, beta;
    const float *A, *B;
    float* C;
    const onnxc_sgemm_epilogue* ep;
} grid_job;

static void grid_tasks(void* ctx, int64_t t0, int64_t t1) {
    const grid_job* j = (const grid_job*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        int64_t m0, m1, n0, n1;
        task_range((int)t, j->tm, j->tn, j->M, j->N, &m0, &m1, &n0, &n1);
        if (m0 >= m1 || n0 >= n1) continue;
        if (j->packed)
            task_packed(j->transA, m0, m1, n0, n1, j->N, j->K, j->alpha, j->A, j->lda, j->B,
                        j->beta, j->C, j->ldc, j->ep);
        else
            task_unpacked(j->transA, j->transB, m0, m1, n0, n1, j->K, j->alpha, j->A, j->lda, j->B,
                          j->ldb, j->beta, j->C, j->ldc, j->ep);
    }
}

/* packed: B is onnxc_sgemm_pack_b's layout (ldb and transB unused). */
static void grid_run(int packed, int transA, int transB, int tm, int tn, int64_t M,
                     int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                     const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                     const onnxc_sgemm_epilogue* ep) {
    grid_job j;
    j.packed = packed; j.transA = transA; j.transB = transB; j.tm = tm; j.tn = tn;
    j.M = M; j.N = N; j.K = K; j.lda = lda; j.ldb = ldb; j.ldc = ldc;
    j.alpha = alpha; j.beta = beta; j.A = A; j.B = B; j.C = C; j.ep = ep;
    onnxc_parallel_for((int64_t)tm * tn, 1, grid_tasks, &j);
}

/* ------------------------------------------------------------------------------------------ */
/* Entry points                                                                                */
/* ------------------------------------------------------------------------------------------ */

void onnxc_sgemm(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                 const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                 float* C, int64_t ldc) {
    onnxc_sgemm_ep(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL);
}

void onnxc_sgemm_ep(int transA, int transB, int64_t M, int64_t N, int64_t K, float alpha,
                    const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                    float* C, int64_t ldc, const onnxc_sgemm_epilogue* ep) {
    int tm, tn;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f || M == 1 || N == 1) {
        if (K <= 0 || alpha == 0.0f)
            scale_c(M, N, beta, C, ldc);
        else  /* GEMV: B is read once, packing it would not pay */
            onnxc_sgemv(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        if (ep) ep->fn(ep->arg, C, ldc, 0, M, 0, N);
        return;
    }
    thread_grid(M, N, K, 1, &tm, &tn);
    if (tm * tn > 1) {
        grid_run(0, transA, transB, tm, tn, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
        return;
    }
    task_unpacked(transA, transB, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc, ep);
}

void onnxc_sgemm_packed(int transA, int64_t M, int64_t N, int64_t K, float alpha,
                        const float* A, int64_t lda, const float* packedB, float beta,
                        float* C, int64_t ldc) {
    onnxc_sgemm_packed_ep(transA, M, N, K, alpha, A, lda, packedB, beta, C, ldc, NULL);
}

void onnxc_sgemm_packed_ep(int transA, int64_t M, int64_t N, int64_t K, float alpha,
                           const float* A, int64_t lda, const float* packedB, float beta,
                           float* C, int64_t ldc, const onnxc_sgemm_epilogue* ep) {
    int tm, tn;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f || M == 1) {
        if (K <= 0 || alpha == 0.0f)
            scale_c(M, N, beta, C, ldc);
        else
            gemv_packed(N, K, alpha, A, transA ? lda : 1, packedB, beta, C);
        if (ep) ep->fn(ep->arg, C, ldc, 0, M, 0, N);
        return;
    }
    thread_grid(M, N, K, 0, &tm, &tn);
    if (tm * tn > 1) {
        grid_run(1, transA, 0, tm, tn, M, N, K, alpha, A, lda, packedB, 0, beta, C, ldc, ep);
        return;
    }
    task_packed(transA, 0, M, 0, N, N, K, alpha, A, lda, packedB, beta, C, ldc, ep);
}
