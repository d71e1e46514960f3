/* MatMulNBits driver (onnxc_quant.h): picks the build's microkernels, prepares A, splits the
 * columns of C over the thread pool.
 *
 *   accuracy 4      A quantized per block (f32s8 qblock), permuted, then the q4s8 microkernel
 *   fp32, M small   A permuted into the workspace, then the q4f32 microkernel (weights
 *                   dequantized in registers: B is streamed once per 4 rows of A)
 *   fp32, M large   (M >= Q4_SGEMM_MIN_M) slices of Q4_SGEMM_NC columns of B dequantized to fp32
 *                   and multiplied by onnxc_sgemm: with many rows the dequantization is paid once
 *                   per weight and the SGEMM's cache blocking does the rest (the register kernels
 *                   stream all of A once per 16 columns). Measured on Sapphire Rapids, 1 thread,
 *                   2048 x 2048, block 32: register kernel 44 G weight-rows/s from M = 4 to 16,
 *                   41 at 32, 36 at 64; this path 7 at 8, 18 at 32, 37 at 128, 41 at 256
 *                   (register kernel 38), 36 at 512 (31): the crossing is near M = 128.
 */
#include <string.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"
#include "q4_impl.h"

#ifndef Q4_SGEMM_MIN_M
#define Q4_SGEMM_MIN_M 128
#endif
#define Q4_SGEMM_NC 64          /* columns of B dequantized per SGEMM call */
#define Q4_TASK_COLS 16         /* columns per task: a multiple of every microkernel's NR */
#define Q4_PARALLEL_MIN_MACS (1 << 16)

#if defined(ONNXC_Q_AVX512)
#define F32_KERNEL onnxc_q4f32_gemm_4x4__avx512
#define F32_NAME "avx512"
#elif defined(ONNXC_Q_AVX2)
#define F32_KERNEL onnxc_q4f32_gemm_4x2__avx2
#define F32_NAME "avx2"
#else
#define F32_KERNEL onnxc_q4f32_gemm_4x4__generic
#define F32_NAME "generic"
#endif

#if defined(ONNXC_Q_AVX512VNNI)
#define S8_KERNEL onnxc_q4s8_gemm_4x4__avx512vnni
#define S8_NAME "avx512vnni"
#elif defined(ONNXC_Q_AVX512)
#define S8_KERNEL onnxc_q4s8_gemm_4x4__avx512
#define S8_NAME "avx512"
#elif defined(ONNXC_Q_AVX2VNNI)
#define S8_KERNEL onnxc_q4s8_gemm_2x4__avx2vnni
#define S8_NAME "avx2vnni"
#elif defined(ONNXC_Q_AVX2)
#define S8_KERNEL onnxc_q4s8_gemm_2x4__avx2
#define S8_NAME "avx2"
#else
#define S8_KERNEL onnxc_q4s8_gemm_4x4__generic
#define S8_NAME "generic"
#endif

#if defined(ONNXC_Q_AVX512)
#define QBLOCK onnxc_f32s8_qblock_row__avx512
#elif defined(ONNXC_Q_AVX2)
#define QBLOCK onnxc_f32s8_qblock_row__avx2
#else
#define QBLOCK onnxc_f32s8_qblock_row__generic
#endif

const char* onnxc_matmulnbits_isa(int accuracy) { return accuracy == 4 ? S8_NAME : F32_NAME; }

#define ALIGN64(x) (((x) + 63) & ~(size_t)63)

static int sgemm_route(const onnxc_q4_weights* w, int64_t M) {
    return w->accuracy != 4 && M >= Q4_SGEMM_MIN_M;
}

size_t onnxc_matmulnbits_workspace(const onnxc_q4_weights* w, int64_t M) {
    const size_t kb = (size_t)q4_kb(w), kp = (size_t)q4_kp(w), m = (size_t)(M > 0 ? M : 0);
    if (w->accuracy == 4) return 64 + ALIGN64(m * kp) + 2 * ALIGN64(m * kb * sizeof(float));
    if (sgemm_route(w, M)) return 64 + ALIGN64((size_t)Q4_SGEMM_NC * (size_t)w->K * sizeof(float));
    return 64 + ALIGN64(m * kp * sizeof(float));
}

void onnxc_q4_permute_a(const void* src, int64_t K, void* dst, int64_t kp, int elem_size) {
    const int64_t G = 32, half = 16;
    unsigned char grp[32 * 4];
    int64_t g, k;
    for (g = 0; g < kp; g += G) {
        const int64_t n = K - g < G ? (K - g > 0 ? K - g : 0) : G;
        memset(grp, 0, (size_t)(G * elem_size));
        memcpy(grp, (const unsigned char*)src + g * elem_size, (size_t)(n * elem_size));
        for (k = 0; k < half; ++k) {
            memcpy((unsigned char*)dst + (g + k) * elem_size, grp + 2 * k * elem_size, (size_t)elem_size);
            memcpy((unsigned char*)dst + (g + half + k) * elem_size, grp + (2 * k + 1) * elem_size,
                   (size_t)elem_size);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */

typedef struct {
    onnxc_q4_args g;
    int s8;
    /* A preparation */
    const float* A;
    int64_t lda;
    int8_t* qa;
    float *qa_scale, *qa_bsum, *ap;
} q4_job;

static void col_tasks(void* ctx, int64_t t0, int64_t t1) {
    const q4_job* j = (const q4_job*)ctx;
    const int64_t N = j->g.w->N;
    const int64_t n0 = t0 * Q4_TASK_COLS, n1 = t1 * Q4_TASK_COLS < N ? t1 * Q4_TASK_COLS : N;
    if (j->s8)
        S8_KERNEL(&j->g, n0, n1);
    else
        F32_KERNEL(&j->g, n0, n1);
}

static void prep_rows(void* ctx, int64_t m0, int64_t m1) {
    const q4_job* j = (const q4_job*)ctx;
    const onnxc_q4_weights* w = j->g.w;
    const int64_t kb = q4_kb(w), kp = j->g.lda_p;
    int64_t m;
    for (m = m0; m < m1; ++m) {
        if (j->s8) {
            int8_t* q = j->qa + m * kp;
            QBLOCK(j->A + m * j->lda, w->K, w->block, q, j->qa_scale + m * kb, j->qa_bsum + m * kb);
            memset(q + kb * w->block, 0, (size_t)(kp - kb * w->block));
            onnxc_q4_permute_a(q, kp, q, kp, 1);
        } else {
            onnxc_q4_permute_a(j->A + m * j->lda, w->K, j->ap + m * kp, kp, 4);
        }
    }
}

/* Column n of B dequantized to K floats (the spec's (q - zp) * scale), in a form the compiler
 * vectorizes (a table lookup would not be). */
static void dequant_col(const onnxc_q4_weights* w, int64_t kb, int64_t n, float* dst) {
    const int64_t bs = w->block, bpr = kb * bs / 2;
    const uint8_t* bp = w->B + n * bpr;
    int64_t b, j;
    for (b = 0; b < kb; ++b) {
        const float s = w->scales[n * kb + b], z = q4_zp(w, kb, n, b);
        const uint8_t* p = bp + b * bs / 2;
        float* d = dst + b * bs;
        if ((b + 1) * bs <= w->K) {
            for (j = 0; j < bs / 2; ++j) {
                d[2 * j] = ((float)(p[j] & 0xF) - z) * s;
                d[2 * j + 1] = ((float)(p[j] >> 4) - z) * s;
            }
        } else { /* the last, partial block */
            for (j = 0; j < w->K - b * bs; ++j) d[j] = ((float)((p[j >> 1] >> ((j & 1) * 4)) & 0xF) - z) * s;
        }
    }
}

typedef struct {
    const onnxc_q4_weights* w;
    int64_t n0;
    float* deq;
} deq_job;

static void deq_tasks(void* ctx, int64_t c0, int64_t c1) {
    const deq_job* j = (const deq_job*)ctx;
    const int64_t kb = q4_kb(j->w);
    int64_t c;
    for (c = c0; c < c1; ++c) dequant_col(j->w, kb, j->n0 + c, j->deq + c * j->w->K);
}

static void sgemm_path(const onnxc_q4_weights* w, int64_t M, const float* A, int64_t lda,
                       float* C, int64_t ldc, float* deq) {
    int64_t n0, m, n;
    deq_job dj;
    dj.w = w;
    dj.deq = deq;
    for (n0 = 0; n0 < w->N; n0 += Q4_SGEMM_NC) {
        const int64_t nc = w->N - n0 < Q4_SGEMM_NC ? w->N - n0 : Q4_SGEMM_NC;
        dj.n0 = n0;
        onnxc_parallel_for(nc, nc * w->K >= Q4_PARALLEL_MIN_MACS, deq_tasks, &dj);
        onnxc_sgemm(0, 1, M, nc, w->K, 1.0f, A, lda, deq, w->K, 0.0f, C + n0, ldc);
        if (w->bias)
            for (m = 0; m < M; ++m)
                for (n = 0; n < nc; ++n) C[m * ldc + n0 + n] += w->bias[n0 + n];
    }
}

void onnxc_matmulnbits(const onnxc_q4_weights* w, int64_t M, const float* A, int64_t lda,
                       float* C, int64_t ldc, void* workspace) {
    const int64_t kb = q4_kb(w), kp = q4_kp(w);
    unsigned char* ws = (unsigned char*)workspace;
    const double macs = (double)M * (double)w->N * (double)w->K;
    int64_t tasks;
    q4_job j;
    if (M <= 0 || w->N <= 0) return;
    ws += (64 - ((uintptr_t)ws & 63)) & 63;
    if (sgemm_route(w, M)) {
        sgemm_path(w, M, A, lda, C, ldc, (float*)(void*)ws);
        return;
    }
    memset(&j, 0, sizeof(j));
    j.g.w = w;
    j.g.M = M;
    j.g.lda_p = kp;
    j.g.C = C;
    j.g.ldc = ldc;
    j.s8 = w->accuracy == 4;
    j.A = A;
    j.lda = lda;
    if (j.s8) {
        j.qa = (int8_t*)(void*)ws;
        j.qa_scale = (float*)(void*)(ws + ALIGN64((size_t)(M * kp)));
        j.qa_bsum = j.qa_scale + ALIGN64((size_t)(M * kb) * sizeof(float)) / sizeof(float);
        j.g.qa = j.qa;
        j.g.qa_scale = j.qa_scale;
        j.g.qa_bsum = j.qa_bsum;
    } else {
        j.ap = (float*)(void*)ws;
        j.g.a = j.ap;
    }
    onnxc_parallel_for(M, M > 1 && M * kp >= (1 << 15), prep_rows, &j);
    tasks = (w->N + Q4_TASK_COLS - 1) / Q4_TASK_COLS;
    onnxc_parallel_for(tasks, tasks > 1 && macs >= Q4_PARALLEL_MIN_MACS, col_tasks, &j);
}
