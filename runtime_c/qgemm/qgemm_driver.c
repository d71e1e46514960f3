/* int8 GEMM driver: blocking, threads, zero-point fix-ups and the output stage around the
 * microkernels (contract and packed layout: onnxc_qgemm.h).
 *
 * One task (a row range x column range of C, tile aligned) runs:
 *
 *   for each NC columns                     (jc)   col[] = bias + za'*(K*zb - colsum), zbn = -zb
 *     for each MC rows                      (ic)   rowsum'[] of the rows, over K, when zb != 0
 *       for each K block of at most kc      (pc)   A block MC x kc in L2
 *         for each NR panel group           (jr)   B micro-panel NR x kc stays in L1 ...
 *           for each MR rows                (ir)   ... while the MR-row slivers of A stream
 *       pair-safe corrections, then the output stage on the MC x NC block (still in L2)
 *
 * The int32 accumulators live in C itself for int32 output, else in a per-task MC x NC stack
 * buffer. A is read in place (no packing: MLAS packs A, but at int8 speeds the copy costs
 * 4/N of the multiply; kernels read only the bytes of their rows, K tails included).
 * M == 1 (GEMV) runs the same loop with one K block (B is streamed once, no int32 re-reads)
 * split over columns only.
 *
 * Threads: the runtime's pool (onnxc_threads.h); a product of at least QGEMM_PARALLEL_MIN_MACS
 * multiply-adds is cut into a grid of tasks, one per usable thread. Every output element is
 * computed by one task with integer arithmetic and an elementwise output stage, so results do not
 * depend on the split.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1 /* syscall() */
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "onnxc_qgemm.h"
#include "onnxc_threads.h"
#include "qgemm_kernel.h"

#if defined(QGEMM_AVX2)
#include <immintrin.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#ifndef QGEMM_MC
#define QGEMM_MC 96  /* rows per block: a multiple of every MR (4, 6, 12, 32 -> 96) */
#endif
#ifndef QGEMM_NC
#define QGEMM_NC 64 /* columns per block: a multiple of every NR; MC x NC int32 stay in L1 */
#endif
#define MC QGEMM_MC
#define NC QGEMM_NC
#define MIN(a, b) ((a) < (b) ? (a) : (b))
/* ~4x the SGEMM threshold: an int8 multiply-add costs about a quarter of a float one */
#ifndef QGEMM_PARALLEL_MIN_MACS
#define QGEMM_PARALLEL_MIN_MACS (1 << 20)
#endif
/* Below this many rows the AMX kernels hand over to their VNNI fallback: a 16-row tile would
 * mostly multiply zero rows. */
#define AMX_MIN_M 8

/* ------------------------------------------------------------------------------------------ */
/* AMX permission                                                                              */
/* ------------------------------------------------------------------------------------------ */

static int amx_state = -1; /* -1: not asked yet, 0: refused/disabled, 1: granted */
static int amx_allowed = -1; /* -1: from ONNXC_NO_AMX at first use */

static int amx_request(void) {
#if defined(QGEMM_AMX)
    /* ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA: once per process, valid for every thread */
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
#else
    return 0;
#endif
}

int onnxc_qgemm_amx_ready(void) {
    int s = __atomic_load_n(&amx_state, __ATOMIC_ACQUIRE), allowed;
    if (s < 0) {
        s = amx_request();
        __atomic_store_n(&amx_state, s, __ATOMIC_RELEASE);
    }
    allowed = __atomic_load_n(&amx_allowed, __ATOMIC_ACQUIRE);
    if (allowed < 0) {
        const char* e = getenv("ONNXC_NO_AMX");
        allowed = !(e && e[0] && e[0] != '0');
        __atomic_store_n(&amx_allowed, allowed, __ATOMIC_RELEASE);
    }
    return s && allowed;
}

void onnxc_qgemm_set_amx(int allow) { __atomic_store_n(&amx_allowed, allow ? 1 : 0, __ATOMIC_RELEASE); }

const onnxc_qgemm_kernel* onnxc_qgemm_resolve(const onnxc_qgemm_kernel* k, int64_t M) {
    while (k && k->amx && k->fallback && (M < AMX_MIN_M || !onnxc_qgemm_amx_ready())) k = k->fallback;
    return k;
}

/* ------------------------------------------------------------------------------------------ */
/* Row sums of A, pair-safe corrections, output stage                                          */
/* ------------------------------------------------------------------------------------------ */

/* a'(i, k): the value the kernel multiplies */
#define A_VAL(mode, x) ((mode) == 2 ? (int32_t)((x) ^ 0x80u) : (mode) == 1 ? (int32_t)(int8_t)(x) : (int32_t)(x))

/* sum_k a'(i, k) of one row; mode 0: uint8, 1: int8, 2: int8 ^ 0x80 */
static int32_t row_sum(const uint8_t* a, int64_t K, int mode) {
    int64_t k = 0;
    uint32_t s = 0;
#if defined(QGEMM_AVX2)
    {
        /* vpsadbw sums 8 unsigned bytes into a 64-bit lane; int8 rows are summed as a ^ 0x80 */
        const __m256i flip = _mm256_set1_epi8((char)(mode ? 0x80 : 0)), zero = _mm256_setzero_si256();
        __m256i acc = zero;
        for (; k + 32 <= K; k += 32) {
            const __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(a + k)), flip);
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(v, zero));
        }
        {
            __m128i t = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
            t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
            s = (uint32_t)_mm_cvtsi128_si32(t);
        }
        if (mode == 1) s -= (uint32_t)(128 * k); /* back from a ^ 0x80 = a + 128 */
    }
#endif
    for (; k < K; ++k) s += (uint32_t)A_VAL(mode, a[k]);
    return (int32_t)s;
}

static int a_mode(const onnxc_qgemm_kernel* k) { return k->a_xor ? 2 : k->a_signed ? 1 : 0; }

/* C32 block (rows i0.., columns jc..jc+nc) += a'(i, k) * e for every correction in it. */
static void apply_corrections(const onnxc_qgemm_packed_header* h, int mode, const uint8_t* A,
                              int64_t lda, int64_t i0, int64_t mc, int64_t jc, int64_t nc,
                              int32_t* C32, int64_t ld) {
    const uint8_t* base = (const uint8_t*)h;
    const int32_t* index = (const int32_t*)(base + h->corr_off);
    const int32_t* ent = index + h->Np / ONNXC_QPACK_PANEL + 1;
    const int64_t p0 = jc / ONNXC_QPACK_PANEL, p1 = (jc + nc + ONNXC_QPACK_PANEL - 1) / ONNXC_QPACK_PANEL;
    int64_t e, i;
    for (e = index[p0]; e < index[p1]; ++e) {
        const int64_t k = ent[3 * e], n = ent[3 * e + 1] - jc;
        const uint32_t v = (uint32_t)ent[3 * e + 2];
        if (n < 0 || n >= nc) continue;
        for (i = 0; i < mc; ++i) {
            int32_t* c = C32 + i * ld + n;
            *c = (int32_t)((uint32_t)*c + (uint32_t)A_VAL(mode, A[(i0 + i) * lda + k]) * v);
        }
    }
}

/* One row of the requantize stage, n values; MlasRequantizeOutput's arithmetic: float(acc) *
 * scale, clamped to [qmin - zp, qmax - zp] in float, rounded half to even, + zp. */
static void requant_row(const int32_t* acc, int64_t n, const float* sc, int per_col, int32_t zp,
                        float lo, float hi, int is_signed, uint8_t* y) {
    int64_t j = 0;
#if defined(QGEMM_AVX512)
    {
        const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), s0 = _mm512_set1_ps(sc[0]);
        const __m512i vzp = _mm512_set1_epi32(zp);
        /* the packs interleave 4-value groups of the 4 vectors per 128-bit lane: back in order */
        const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
#define RQ16(m, off)                                                                               \
    _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(                               \
        _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + (off))),                \
                      per_col ? _mm512_maskz_loadu_ps(m, sc + (off)) : s0), vlo), vhi)), vzp)
        for (; j + 64 <= n; j += 64) {
            /* in range after the clamp: the saturating packs keep every value */
            const __m512i w0 = _mm512_packs_epi32(RQ16(0xFFFF, j), RQ16(0xFFFF, j + 16));
            const __m512i w1 = _mm512_packs_epi32(RQ16(0xFFFF, j + 32), RQ16(0xFFFF, j + 48));
            const __m512i b = is_signed ? _mm512_packs_epi16(w0, w1) : _mm512_packus_epi16(w0, w1);
            _mm512_storeu_si512((void*)(y + j), _mm512_permutexvar_epi32(order, b));
        }
        for (; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
            _mm_mask_storeu_epi8(y + j, m, _mm512_cvtepi32_epi8(RQ16(m, j)));
        }
#undef RQ16
        return;
    }
#elif defined(QGEMM_AVX2)
    {
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), s0 = _mm256_set1_ps(sc[0]);
        const __m256i vzp = _mm256_set1_epi32(zp);
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#define RQ8(off)                                                                                   \
    _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(                               \
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(acc + (off)))),       \
                      per_col ? _mm256_loadu_ps(sc + (off)) : s0), vlo), vhi)), vzp)
        for (; j + 32 <= n; j += 32) {
            const __m256i w0 = _mm256_packs_epi32(RQ8(j), RQ8(j + 8));
            const __m256i w1 = _mm256_packs_epi32(RQ8(j + 16), RQ8(j + 24));
            const __m256i b = is_signed ? _mm256_packs_epi16(w0, w1) : _mm256_packus_epi16(w0, w1);
            _mm256_storeu_si256((__m256i*)(y + j), _mm256_permutevar8x32_epi32(b, order));
        }
        /* 8 at a time for the rest: blocks of 16 or 24 columns (MobileNet's projections to 16
         * and 24 channels) had their whole output stage in the scalar loop */
        for (; j + 8 <= n; j += 8) {
            const __m256i q = RQ8(j);
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i*)(void*)(y + j), is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
        }
#undef RQ8
    }
#endif
    for (; j < n; ++j) {
        float f = (float)acc[j] * sc[per_col ? j : 0];
        int32_t q;
        f = f > lo ? f : lo; /* _mm_max_ps(f, lo) / _mm_min_ps(f, hi), NaN included */
        f = f < hi ? f : hi;
        q = (int32_t)rintf(f) + zp;
        y[j] = is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
    }
}

/* y = float(acc) * scale (+ bias), multiply then add (no FMA contraction under -std=c99) */
static void float_row(const int32_t* acc, int64_t n, const float* sc, int per_col,
                      const float* bias, float* y) {
    int64_t j = 0;
#if defined(QGEMM_AVX2)
    {
        const __m256 s0 = _mm256_set1_ps(sc[0]);
        for (; j + 8 <= n; j += 8) {
            __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(acc + j))),
                                     per_col ? _mm256_loadu_ps(sc + j) : s0);
            if (bias) f = _mm256_add_ps(f, _mm256_loadu_ps(bias + j));
            _mm256_storeu_ps(y + j, f);
        }
    }
#endif
    for (; j < n; ++j) {
        float f = (float)acc[j] * sc[per_col ? j : 0];
        if (bias) f = f + bias[j];
        y[j] = f;
    }
}

/* The output stage of the block C32 (mc x nc) at output row i0, column j0. */
static void output_block(const onnxc_qgemm_output* o, const int32_t* C32, int64_t ld, int64_t i0,
                         int64_t mc, int64_t j0, int64_t nc) {
    int64_t i;
    if (o->type == ONNXC_QOUT_U8 || o->type == ONNXC_QOUT_S8) {
        const float lo = (float)(o->qmin - o->zero_point), hi = (float)(o->qmax - o->zero_point);
        const float* sc = o->scale_per_column ? o->scale + j0 : o->scale;
        for (i = 0; i < mc; ++i)
            requant_row(C32 + i * ld, nc, sc, o->scale_per_column, o->zero_point, lo, hi,
                        o->type == ONNXC_QOUT_S8, (uint8_t*)o->C + (i0 + i) * o->ldc + j0);
    } else if (o->type == ONNXC_QOUT_F32) {
        const float* sc = o->scale_per_column ? o->scale + j0 : o->scale;
        for (i = 0; i < mc; ++i)
            float_row(C32 + i * ld, nc, sc, o->scale_per_column, o->bias ? o->bias + j0 : NULL,
                      (float*)o->C + (i0 + i) * o->ldc + j0);
    }
    if (o->hook) {
        const size_t es = o->type == ONNXC_QOUT_U8 || o->type == ONNXC_QOUT_S8 ? 1 : 4;
        o->hook(o->hook_arg, (char*)o->C + (size_t)(i0 * o->ldc + j0) * es, o->ldc, i0, mc, j0, nc);
    }
}

void onnxc_qgemm_output_block(const onnxc_qgemm_output* o, const int32_t* C32, int64_t ld,
                              int64_t i0, int64_t m, int64_t j0, int64_t n) {
    if (o->type == ONNXC_QOUT_S32) { /* the GEMM accumulates in place; a caller's block is copied */
        int32_t* y = (int32_t*)o->C + i0 * o->ldc + j0;
        int64_t i;
        if (y != C32)
            for (i = 0; i < m; ++i) memcpy(y + i * o->ldc, C32 + i * ld, (size_t)n * sizeof(int32_t));
    }
    output_block(o, C32, ld, i0, m, j0, n);
}

/* ------------------------------------------------------------------------------------------ */
/* Tasks                                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const onnxc_qgemm_kernel* k;
    const onnxc_qgemm_packed_header* h;
    int64_t M, N, K, lda, kb; /* kb: K block */
    const uint8_t* A;
    int32_t za; /* za' */
    const int32_t* bias;
    const onnxc_qgemm_output* out;
    int need_row, tm, tn;
} job_t;

/* Rows [m0, m1), columns [n0, n1) of C. */
static void run_task(const job_t* J, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const onnxc_qgemm_kernel* k = J->k;
    const onnxc_qgemm_packed_header* h = J->h;
    const uint8_t* base = (const uint8_t*)h;
    const int32_t* colsum = (const int32_t*)(base + h->colsum_off);
    const int32_t* zb = (const int32_t*)(base + h->zb_off);
    const uint8_t* panels = base + h->panels_off;
    const int64_t pstride = QGEMM_PANEL_BYTES(h->Kp), K = J->K, lda = J->lda;
    const int direct = J->out->type == ONNXC_QOUT_S32, mode = a_mode(k);
    const int MR = k->mr, NR = k->nr;
    int32_t col[NC] QGEMM_ALIGN64, zbn[NC] QGEMM_ALIGN64, row[MC] QGEMM_ALIGN64;
    int32_t scratch[MC * NC] QGEMM_ALIGN64; /* 24 KB of stack */
    int64_t jc, ic, pc, jr, ir, j, i;
    for (jc = n0; jc < n1; jc += NC) {
        const int64_t nc = MIN(NC, n1 - jc);
        for (j = 0; j < nc; ++j) {
            const uint32_t z = (uint32_t)zb[jc + j];
            col[j] = (int32_t)((J->bias ? (uint32_t)J->bias[jc + j] : 0u) +
                               (uint32_t)J->za * ((uint32_t)K * z - (uint32_t)colsum[jc + j]));
            zbn[j] = (int32_t)(0u - z);
        }
        for (ic = m0; ic < m1; ic += MC) {
            const int64_t mc = MIN(MC, m1 - ic);
            const uint8_t* Ab = J->A + ic * lda;
            int32_t* C32 = direct ? (int32_t*)J->out->C + ic * J->out->ldc + jc : scratch;
            const int64_t ld = direct ? J->out->ldc : NC;
            if (J->need_row)
                for (i = 0; i < mc; ++i) row[i] = row_sum(Ab + i * lda, K, mode);
            if (K == 0) {
                for (i = 0; i < mc; ++i)
                    for (j = 0; j < nc; ++j) C32[i * ld + j] = col[j];
            }
            for (pc = 0; pc < K; pc += J->kb) {
                const int64_t kc = MIN(J->kb, K - pc);
                for (jr = 0; jr < nc; jr += NR) {
                    const uint8_t* Bp = panels + (jc + jr) / ONNXC_QPACK_PANEL * pstride + pc * ONNXC_QPACK_PANEL;
                    const int64_t nr = MIN(NR, nc - jr);
                    for (ir = 0; ir < mc; ir += MR)
                        k->fn(MIN(MR, mc - ir), nr, kc, Ab + ir * lda + pc, lda, Bp, pstride,
                              C32 + ir * ld + jr, ld, pc == 0 ? col + jr : NULL,
                              J->need_row ? row + ir : NULL, zbn + jr);
                }
            }
            if (h->flags & ONNXC_QPACK_PAIRSAFE)
                apply_corrections(h, mode, J->A, lda, ic, mc, jc, nc, C32, ld);
            output_block(J->out, C32, ld, ic, mc, jc, nc);
        }
    }
}

/* Threads worth using and the tm x tn task grid among them minimizing the largest task
 * (padded tiles it computes plus the operand bytes it streams). */
static void thread_grid(const onnxc_qgemm_kernel* k, int64_t M, int64_t N, int64_t K, int* tm_out,
                        int* tn_out) {
    const int64_t mt = (M + k->mr - 1) / k->mr, nt = (N + k->nr - 1) / k->nr;
    const double macs = (double)M * (double)N * (double)(K > 0 ? K : 1);
    double best = -1.0;
    int T = onnxc_rt_threads_usable(), tn;
    *tm_out = *tn_out = 1;
    if ((double)T > macs / QGEMM_PARALLEL_MIN_MACS) T = (int)(macs / QGEMM_PARALLEL_MIN_MACS);
    for (tn = 1; tn <= T && tn <= nt; ++tn) {
        const int tm = (int)MIN((int64_t)(T / tn), mt);
        const double m = (double)((mt + tm - 1) / tm * k->mr), n = (double)((nt + tn - 1) / tn * k->nr);
        const double cost = m * n + 8.0 * (m + n); /* per k: MACs, plus the A and B bytes streamed */
        if (best < 0.0 || cost < best) {
            best = cost;
            *tm_out = tm;
            *tn_out = tn;
        }
    }
}

static void grid_tasks(void* ctx, int64_t t0, int64_t t1) {
    const job_t* J = (const job_t*)ctx;
    const int64_t mt = (J->M + J->k->mr - 1) / J->k->mr, nt = (J->N + J->k->nr - 1) / J->k->nr;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t bi = t / J->tn, bj = t % J->tn;
        const int64_t m0 = MIN(J->M, mt * bi / J->tm * J->k->mr), m1 = MIN(J->M, mt * (bi + 1) / J->tm * J->k->mr);
        const int64_t n0 = MIN(J->N, nt * bj / J->tn * J->k->nr), n1 = MIN(J->N, nt * (bj + 1) / J->tn * J->k->nr);
        if (m0 < m1 && n0 < n1) run_task(J, m0, m1, n0, n1);
    }
}

/* K block: equal blocks of at most kc, each a multiple of 64 but the last. */
static int64_t k_block(int64_t K, int64_t kc) {
    const int64_t nb = K > 0 ? (K + kc - 1) / kc : 1;
    const int64_t kb = (K + nb - 1) / nb;
    return (kb + 63) / 64 * 64;
}

/* AMX kernels configure the tiles of the thread that runs them (see qgemm_amx_32x32.c). */
#if defined(QGEMM_AMX)
void onnxc_qgemm_amx_begin_(void);
void onnxc_qgemm_amx_end_(void);
#endif

static void tasks_with_tiles(void* ctx, int64_t t0, int64_t t1) {
#if defined(QGEMM_AMX)
    onnxc_qgemm_amx_begin_();
    grid_tasks(ctx, t0, t1);
    onnxc_qgemm_amx_end_();
#else
    grid_tasks(ctx, t0, t1);
#endif
}

int onnxc_qgemm(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t N, int64_t K,
                const void* A, int64_t lda, int32_t a_zero_point, const void* packedB,
                const int32_t* bias, const onnxc_qgemm_output* out) {
    const onnxc_qgemm_packed_header* h = (const onnxc_qgemm_packed_header*)packedB;
    const unsigned mask = ONNXC_QPACK_B_U8 | ONNXC_QPACK_PAIRSAFE | ONNXC_QPACK_K2;
    const onnxc_qgemm_kernel* k;
    job_t J;
    int64_t n;
    if (!kernel || !out || M < 0 || N < 0 || K < 0) return ONNXC_QGEMM_ERR_ARG;
    if (out->type < ONNXC_QOUT_S32 || out->type > ONNXC_QOUT_F32) return ONNXC_QGEMM_ERR_ARG;
    if (!h || h->magic != (uint32_t)ONNXC_QPACK_MAGIC || h->K != K || h->N != N ||
        (h->flags & mask) != (kernel->pack_flags & mask))
        return ONNXC_QGEMM_ERR_PACK;
    if (M == 0 || N == 0) return ONNXC_QGEMM_OK;
    k = onnxc_qgemm_resolve(kernel, M);
    J.k = k;
    J.h = h;
    J.M = M; J.N = N; J.K = K; J.lda = lda;
    J.A = (const uint8_t*)A;
    J.za = a_zero_point + (k->a_xor ? 128 : 0);
    J.bias = bias;
    J.out = out;
    J.need_row = 0;
    {
        const int32_t* zb = (const int32_t*)((const uint8_t*)h + h->zb_off);
        for (n = 0; n < N && !J.need_row; ++n) J.need_row = zb[n] != 0;
    }
    if (M == 1) { /* GEMV: one K block, columns split over the threads */
        const int64_t nt = (N + k->nr - 1) / k->nr;
        const double macs = (double)N * (double)K;
        int64_t T = onnxc_rt_threads_usable();
        if ((double)T > macs / QGEMM_PARALLEL_MIN_MACS) T = (int64_t)(macs / QGEMM_PARALLEL_MIN_MACS);
        J.kb = K > 0 ? (K + 63) / 64 * 64 : 64;
        J.tm = 1;
        J.tn = (int)(T < 1 ? 1 : T > nt ? nt : T);
    } else {
        J.kb = k_block(K, k->kc);
        thread_grid(k, M, N, K, &J.tm, &J.tn);
    }
    onnxc_parallel_for((int64_t)J.tm * J.tn, J.tm * J.tn > 1, k->amx ? tasks_with_tiles : grid_tasks, &J);
    return ONNXC_QGEMM_OK;
}
