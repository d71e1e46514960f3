/* int8 convolution on the int8 GEMM microkernels (API and formulas: onnxc_qconv.h; choices:
 * docs/qconv.md).
 *
 * The convolution of one group is a GEMM over "virtual rows": row m of A holds the KH*KW*Cg
 * input values output pixel m multiplies (k in (kh, kw, c) order, the packed B's row order), B
 * is the packed weights [K, Mg]. Where those A rows come from:
 *   DIRECT    1x1 stride 1 unpadded: row m is input pixel m, in place (lda = pixel pitch).
 *   IMPLICIT  stride 1: tap t of row m is the Cg bytes at a + m*lda + toff[t], toff[t] =
 *             (kh*dh*Wv + kw*dw)*lda, a = the input (no padding) or its zero-point-padded copy
 *             (Hv x Wv pixels per image). Virtual row m = (n*Hv + oh)*Wv + ow; rows with ow >= OW
 *             (or oh >= OH, between images) read real memory and are computed, then dropped by
 *             the output stage. One microkernel call per tap (per kernel row when its taps are
 *             contiguous: dilation 1, one dense group) accumulates into the int32 block (the
 *             first starts it at col + row*zbn, like the GEMM's first K block).
 *   IM2COL    anything: rows gathered into a stack buffer per block of output pixels (padding =
 *             the zero point), reused across all column blocks; for K too long to hold
 *             MC_MIN rows, gathered per K block and column block instead.
 * Zero points as in the GEMM (onnxc_qgemm.h): col[n] = bias[n] + za'*(K*zb[n] - colsum[n]) and,
 * when some zb != 0, row sums over exactly the values the kernel multiplies (the padding's
 * zero points included, so (x - xz) = 0 there).
 *
 * Threads: tasks are (group, row range, column range) of a grid sized like the GEMM's; every
 * output element is computed by one task with integer arithmetic and an elementwise output
 * stage, so results do not depend on the split.
 */
#include <math.h>
#include <string.h>

#include "onnxc_qconv.h"
#include "onnxc_threads.h"
#include "../qgemm/qgemm_kernel.h"
#include "qconv_internal.h"

#if defined(QGEMM_AVX2)
#include <immintrin.h>
#endif

#ifndef QCONV_MC
#define QCONV_MC 96 /* rows per block: a multiple of every MR (4, 6, 12, 32) */
#endif
#ifndef QCONV_NC
#define QCONV_NC 64 /* columns per block: MC x NC int32 stay in L1 */
#endif
#ifndef QCONV_GATHER_BYTES
#define QCONV_GATHER_BYTES (192 * 1024) /* im2col rows of one block (stack) */
#endif
#ifndef QCONV_PARALLEL_MIN_MACS
#define QCONV_PARALLEL_MIN_MACS (1 << 20) /* as the GEMM's */
#endif
#define MC QCONV_MC
#define NC QCONV_NC
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(QGEMM_AMX)
void onnxc_qgemm_amx_begin_(void);
void onnxc_qgemm_amx_end_(void);
#endif

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* AMX tiles multiply 64 k per step: a GEMM with K < 64 (MobileNet's 1x1 expansions from 16, 24
 * or 32 channels, a 3-channel first layer's K = 27) pads most of every tile with zeros; the
 * same packing's VNNI fallback is 1.5-1.75x faster there (MobileNetV2 int8, SPR VM, per node). */
#define AMX_MIN_K 64

static const onnxc_qgemm_kernel* short_k(const onnxc_qgemm_kernel* k, int64_t K) {
    return k && k->amx && k->fallback && K < AMX_MIN_K ? k->fallback : k;
}

/* ------------------------------------------------------------------------------------------ */
/* Geometry, algorithm choice, workspace                                                       */
/* ------------------------------------------------------------------------------------------ */

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1) {
    const int64_t span = d * (k - 1) + 1;
    return in + p0 + p1 < span ? 0 : (in + p0 + p1 - span) / s + 1;
}

int onnxc_qconv_geom_ok_(const onnxc_qconv_geom* g) {
    if (!g || g->N < 1 || g->H < 1 || g->W < 1 || g->C < 1 || g->M < 1 || g->KH < 1 || g->KW < 1 ||
        g->stride_h < 1 || g->stride_w < 1 || g->dil_h < 1 || g->dil_w < 1 || g->pad_t < 0 ||
        g->pad_l < 0 || g->pad_b < 0 || g->pad_r < 0 || g->group < 1 || g->C % g->group ||
        g->M % g->group || (g->x_pitch && g->x_pitch < g->C))
        return 0;
    return g->OH >= 1 && g->OW >= 1 &&
           g->OH == out_size(g->H, g->KH, g->stride_h, g->dil_h, g->pad_t, g->pad_b) &&
           g->OW == out_size(g->W, g->KW, g->stride_w, g->dil_w, g->pad_l, g->pad_r);
}

static int is_pointwise(const onnxc_qconv_geom* g) {
    return g->KH == 1 && g->KW == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_t == 0 &&
           g->pad_l == 0 && g->pad_b == 0 && g->pad_r == 0;
}

static int k_group(const onnxc_qgemm_kernel* k) { return (k->pack_flags & ONNXC_QPACK_K2) ? 2 : 4; }

/* The kernel IMPLICIT runs with: AMX tiles read 64 k per tap, so Cg % 64 != 0 goes to the
 * fallback (same packing); NULL when Cg does not split into the kernel's k groups. */
static const onnxc_qgemm_kernel* implicit_kernel(const onnxc_qgemm_kernel* k, int64_t Cg) {
    if (k->amx && Cg % 64) k = k->fallback;
    return k && Cg % k_group(k) == 0 ? k : NULL;
}

/* Virtual rows IMPLICIT computes for the N*OH*OW outputs (stride 1) */
static int64_t implicit_rows(const onnxc_qconv_geom* g) {
    const int64_t Hv = g->H + g->pad_t + g->pad_b, Wv = g->W + g->pad_l + g->pad_r;
    return ((g->N - 1) * Hv + g->OH - 1) * Wv + g->OW;
}

int onnxc_qconv_choose_algo(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g) {
    const int64_t Cg = g->C / g->group, Mg = g->M / g->group, M = g->N * g->OH * g->OW;
    int64_t budget;
    if (is_pointwise(g)) return ONNXC_QCONV_DIRECT;
    if (g->stride_h != 1 || g->stride_w != 1 || Cg < 16 || !implicit_kernel(kernel, Cg)) return ONNXC_QCONV_IM2COL;
    if (kernel->amx && Cg % 64) return ONNXC_QCONV_IM2COL; /* tiles on gathered rows beat VNNI in place */
    /* IMPLICIT computes the dropped virtual rows (waste = extra rows / M); IM2COL copies K bytes
     * per row, which costs about (multiply-adds per cycle / 32) / Mg of the product: IMPLICIT
     * when waste * Mg <= multiply-adds per cycle / 32 (AMX ~1024 -> 32, zmm VNNI ~128 -> 4,
     * ymm ~64 -> 2, generic -> 1), measured on ResNet-50's 3x3 layers (docs/qconv.md) */
    budget = kernel->amx ? 32 : kernel->mr * kernel->nr >= 256 ? 4 : kernel->mr * kernel->nr >= 96 ? 2 : 1;
    return (implicit_rows(g) - M) * Mg <= budget * M ? ONNXC_QCONV_IMPLICIT : ONNXC_QCONV_IM2COL;
}

static int algo_of(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g) {
    int a = (int)g->algo;
    if (a == ONNXC_QCONV_AUTO) a = onnxc_qconv_choose_algo(kernel, g);
    return a;
}

static int padded(const onnxc_qconv_geom* g) { return g->pad_t || g->pad_l || g->pad_b || g->pad_r; }

size_t onnxc_qconv_workspace_bytes(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g) {
    if (!kernel || !onnxc_qconv_geom_ok_(g) || algo_of(kernel, g) != ONNXC_QCONV_IMPLICIT || !padded(g)) return 0;
    return (size_t)(g->N * (g->H + g->pad_t + g->pad_b) * (g->W + g->pad_l + g->pad_r) * g->C);
}

/* ------------------------------------------------------------------------------------------ */
/* Row sums (sum of a' over the values a row multiplies)                                       */
/* ------------------------------------------------------------------------------------------ */

/* a'(x): mode 0 uint8, 1 int8, 2 int8 ^ 0x80 (kernels with a_xor) */
#define A_VAL(mode, x) ((mode) == 2 ? (int32_t)((x) ^ 0x80u) : (mode) == 1 ? (int32_t)(int8_t)(x) : (int32_t)(x))

static uint32_t sum_bytes(const uint8_t* a, int64_t n, int mode) {
    int64_t k = 0;
    uint32_t s = 0;
#if defined(QGEMM_AVX2)
    {
        /* vpsadbw sums 8 unsigned bytes per 64-bit lane; int8 is summed as a ^ 0x80 */
        const __m256i flip = _mm256_set1_epi8((char)(mode ? 0x80 : 0)), zero = _mm256_setzero_si256();
        __m256i acc = zero;
        __m128i t;
        for (; k + 32 <= n; k += 32)
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i*)(a + k)), flip), zero));
        t = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        t = _mm_add_epi64(t, _mm_unpackhi_epi64(t, t));
        s = (uint32_t)_mm_cvtsi128_si32(t);
        if (mode == 1) s -= (uint32_t)(128 * k);
    }
#endif
    for (; k < n; ++k) s += (uint32_t)A_VAL(mode, a[k]);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Residual output stage                                                                       */
/* ------------------------------------------------------------------------------------------ */

static void residual_row(const int32_t* acc, int64_t n, const float* sc, int per_col, const uint8_t* r,
                         int r_signed, int32_t rz, float rs, int32_t zp, float lo, float hi,
                         int is_signed, uint8_t* y) {
    int64_t j = 0;
#if defined(QGEMM_AVX512)
    {
        const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), s0 = _mm512_set1_ps(sc[0]);
        const __m512 vrs = _mm512_set1_ps(rs);
        const __m512i vzp = _mm512_set1_epi32(zp), vrz = _mm512_set1_epi32(rz);
        for (; j < n; j += 16) {
            const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1u);
            const __m128i rb = _mm_maskz_loadu_epi8(m, r + j);
            const __m512i ri = r_signed ? _mm512_cvtepi8_epi32(rb) : _mm512_cvtepu8_epi32(rb);
            const __m512 t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, acc + j)),
                                            per_col ? _mm512_maskz_loadu_ps(m, sc + j) : s0);
            const __m512 t2 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ri, vrz)), vrs);
            const __m512 f = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(t1, t2), vlo), vhi);
            _mm_mask_storeu_epi8(y + j, m, _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(f), vzp)));
        }
        return;
    }
#elif defined(QGEMM_AVX2)
    {
        const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), s0 = _mm256_set1_ps(sc[0]);
        const __m256 vrs = _mm256_set1_ps(rs);
        const __m256i vzp = _mm256_set1_epi32(zp), vrz = _mm256_set1_epi32(rz);
        for (; j + 8 <= n; j += 8) {
            const __m128i rb = _mm_loadl_epi64((const __m128i*)(r + j));
            const __m256i ri = r_signed ? _mm256_cvtepi8_epi32(rb) : _mm256_cvtepu8_epi32(rb);
            const __m256 t1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i*)(acc + j))),
                                            per_col ? _mm256_loadu_ps(sc + j) : s0);
            const __m256 t2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(ri, vrz)), vrs);
            const __m256 f = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t1, t2), vlo), vhi);
            const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(f), vzp); /* in range: packs keep it */
            const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
            _mm_storel_epi64((__m128i*)(y + j), is_signed ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
        }
    }
#endif
    for (; j < n; ++j) {
        const int32_t rv = r_signed ? (int32_t)(int8_t)r[j] : (int32_t)r[j];
        const float t1 = (float)acc[j] * sc[per_col ? j : 0];
        const float t2 = (float)(rv - rz) * rs;
        float f = t1 + t2;
        int32_t q;
        f = f > lo ? f : lo; /* max then min, as _mm_max_ps / _mm_min_ps (NaN -> lo) */
        f = f < hi ? f : hi;
        q = (int32_t)rintf(f) + zp;
        y[j] = is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
    }
}

/* The output stage of an m x n int32 block (row stride ld) for output rows i0.., columns j0.. */
void onnxc_qconv_stage_(const onnxc_qgemm_output* o, const onnxc_qconv_residual* res, const int32_t* C32,
                        int64_t ld, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    int64_t i;
    if (!res) {
        onnxc_qgemm_output_block(o, C32, ld, i0, m, j0, n);
        return;
    }
    {
        const float lo = (float)(o->qmin - o->zero_point), hi = (float)(o->qmax - o->zero_point);
        const float* sc = o->scale_per_column ? o->scale + j0 : o->scale;
        const uint8_t* r = (const uint8_t*)res->r;
        for (i = 0; i < m; ++i)
            residual_row(C32 + i * ld, n, sc, o->scale_per_column, r + (i0 + i) * res->ldr + j0, res->r_signed,
                         res->zero_point, res->scale, o->zero_point, lo, hi, o->type == ONNXC_QOUT_S8,
                         (uint8_t*)o->C + (i0 + i) * o->ldc + j0);
        if (o->hook) o->hook(o->hook_arg, (uint8_t*)o->C + i0 * o->ldc + j0, o->ldc, i0, m, j0, n);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The job                                                                                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const onnxc_qgemm_kernel* k; /* the microkernel that runs (resolved) */
    const onnxc_qconv_geom* g;
    int algo, mode, need_row, tm, tn;
    const uint8_t* x;     /* input, pixel pitch xp */
    int64_t xp;
    const uint8_t* a;     /* DIRECT / IMPLICIT: A base (channel 0), pixel pitch lda */
    int64_t lda, Hv, Wv, Mv;
    int64_t Cg, Mg, K, kb, kpad, mcg; /* kb: K block; kpad: gathered row bytes; mcg: gathered rows */
    int64_t seg_taps;     /* IMPLICIT: taps per call (KW when a kernel row is contiguous, else 1) */
    int32_t za;           /* za' (za + 128 for a_xor kernels) */
    uint8_t zbyte;        /* the activation zero point as stored (the padding value) */
    const uint8_t* w;     /* packed blobs, one per group */
    const int32_t* bias;
    const onnxc_qgemm_output* out;
    const onnxc_qconv_residual* res;
} job_t;

static const onnxc_qgemm_packed_header* blob_of(const job_t* J, int64_t grp) {
    const uint8_t* p = J->w;
    int64_t i;
    for (i = 0; i < grp; ++i) p += ((const onnxc_qgemm_packed_header*)p)->total_bytes;
    return (const onnxc_qgemm_packed_header*)p;
}

/* the A bytes of virtual row m, tap t (IMPLICIT) */
static const uint8_t* tap_row(const job_t* J, int64_t m, int64_t t, int64_t grp) {
    const onnxc_qconv_geom* g = J->g;
    const int64_t kh = t / g->KW, kw = t % g->KW;
    return J->a + m * J->lda + (kh * g->dil_h * J->Wv + kw * g->dil_w) * J->lda + grp * J->Cg;
}

/* Gathered columns [k0, k1) of the im2col row of output pixel m (group grp) into dst. */
static void gather_row(const job_t* J, int64_t m, int64_t grp, int64_t k0, int64_t k1, uint8_t* dst) {
    const onnxc_qconv_geom* g = J->g;
    const int64_t Cg = J->Cg, hw = g->OH * g->OW;
    const int64_t n = m / hw, oh = m % hw / g->OW, ow = m % g->OW;
    const uint8_t z = J->zbyte;
    const uint8_t* img = J->x + n * g->H * g->W * J->xp + grp * Cg;
    const int64_t ih0 = oh * g->stride_h - g->pad_t, iw0 = ow * g->stride_w - g->pad_l;
    int64_t k = k0;
    if (k0 == 0 && k1 == J->K && g->dil_w == 1 && J->xp == Cg) {
        /* whole row, dense input: each kh is KW*Cg contiguous bytes when inside the image */
        const int64_t seg = g->KW * Cg;
        int64_t kh;
        for (kh = 0; kh < g->KH; ++kh, dst += seg) {
            const int64_t ih = ih0 + kh * g->dil_h;
            if (ih < 0 || ih >= g->H) {
                memset(dst, z, (size_t)seg);
            } else if (iw0 >= 0 && iw0 + g->KW <= g->W) {
                memcpy(dst, img + (ih * g->W + iw0) * Cg, (size_t)seg);
            } else {
                int64_t kw;
                for (kw = 0; kw < g->KW; ++kw) {
                    const int64_t iw = iw0 + kw;
                    if (iw < 0 || iw >= g->W) memset(dst + kw * Cg, z, (size_t)Cg);
                    else memcpy(dst + kw * Cg, img + (ih * g->W + iw) * Cg, (size_t)Cg);
                }
            }
        }
        return;
    }
    while (k < k1) {
        const int64_t t = k / Cg, c = k % Cg, len = MIN(Cg - c, k1 - k);
        const int64_t ih = ih0 + t / g->KW * g->dil_h, iw = iw0 + t % g->KW * g->dil_w;
        if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) memset(dst, z, (size_t)len);
        else memcpy(dst, img + (ih * g->W + iw) * J->xp + c, (size_t)len);
        dst += len;
        k += len;
    }
}

/* Row sum of virtual row m over all of K (the values the kernel multiplies, padding included) */
static int32_t row_sum(const job_t* J, int64_t m, int64_t grp, const uint8_t* gathered) {
    const onnxc_qconv_geom* g = J->g;
    const int64_t T = g->KH * g->KW;
    uint32_t s = 0;
    int64_t t;
    if (gathered) return (int32_t)sum_bytes(gathered, J->K, J->mode);
    if (J->algo == ONNXC_QCONV_DIRECT) return (int32_t)sum_bytes(J->a + m * J->lda + grp * J->Cg, J->K, J->mode);
    if (J->algo == ONNXC_QCONV_IMPLICIT) {
        for (t = 0; t < T; ++t) s += sum_bytes(tap_row(J, m, t, grp), J->Cg, J->mode);
        return (int32_t)s;
    }
    { /* IM2COL without a gathered row: tap by tap */
        const int64_t hw = g->OH * g->OW, n = m / hw, oh = m % hw / g->OW, ow = m % g->OW;
        const uint8_t z = J->zbyte;
        for (t = 0; t < T; ++t) {
            const int64_t ih = oh * g->stride_h - g->pad_t + t / g->KW * g->dil_h;
            const int64_t iw = ow * g->stride_w - g->pad_l + t % g->KW * g->dil_w;
            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W)
                s += (uint32_t)J->Cg * (uint32_t)A_VAL(J->mode, z);
            else
                s += sum_bytes(J->x + ((n * g->H + ih) * g->W + iw) * J->xp + grp * J->Cg, J->Cg, J->mode);
        }
        return (int32_t)s;
    }
}

/* a'(row m, k) for the pair-safe corrections */
static int32_t a_at(const job_t* J, int64_t m, int64_t k, int64_t grp, const uint8_t* gathered) {
    uint8_t v;
    if (gathered) v = gathered[k];
    else if (J->algo == ONNXC_QCONV_DIRECT) v = J->a[m * J->lda + grp * J->Cg + k];
    else if (J->algo == ONNXC_QCONV_IMPLICIT) v = tap_row(J, m, k / J->Cg, grp)[k % J->Cg];
    else gather_row(J, m, grp, k, k + 1, &v);
    return A_VAL(J->mode, v);
}

/* Output stage of the block: virtual rows [i0, i0 + mc) -> output pixels (IMPLICIT drops the
 * rows outside the output and splits the rest into runs of consecutive pixels). */
static void block_out(const job_t* J, const int32_t* C32, int64_t i0, int64_t mc, int64_t j0, int64_t nc) {
    const onnxc_qconv_geom* g = J->g;
    int64_t i = 0;
    if (J->algo != ONNXC_QCONV_IMPLICIT) {
        onnxc_qconv_stage_(J->out, J->res, C32, NC, i0, mc, j0, nc);
        return;
    }
    while (i < mc) {
        const int64_t m = i0 + i, img = J->Hv * J->Wv;
        const int64_t n = m / img, oh = m % img / J->Wv, ow = m % J->Wv;
        int64_t run;
        if (oh >= g->OH || ow >= g->OW) {
            i += J->Wv - ow; /* to the next virtual row of the image */
            continue;
        }
        run = MIN(g->OW - ow, mc - i);
        onnxc_qconv_stage_(J->out, J->res, C32 + i * NC, NC, (n * g->OH + oh) * g->OW + ow, run, j0, nc);
        i += run;
    }
}

/* One block: rows [ic, ic + mc) x columns [jc, jc + nc) of group grp; A from `ga` (gathered rows,
 * row stride gld, covering K columns [gk0, gk0 + gkn)) or in place. */
static void block(const job_t* J, int64_t grp, const onnxc_qgemm_packed_header* h, int64_t ic, int64_t mc,
                  int64_t jc, int64_t nc, const int32_t* row, uint8_t* gbuf) {
    const onnxc_qgemm_kernel* k = J->k;
    const onnxc_qconv_geom* g = J->g;
    const uint8_t* base = (const uint8_t*)h;
    const int32_t* colsum = (const int32_t*)(base + h->colsum_off);
    const int32_t* zb = (const int32_t*)(base + h->zb_off);
    const uint8_t* panels = base + h->panels_off;
    const int64_t pstride = QGEMM_PANEL_BYTES(h->Kp), K = J->K, MR = k->mr, NR = k->nr;
    int32_t col[NC] QGEMM_ALIGN64, zbn[NC] QGEMM_ALIGN64;
    int32_t C32[MC * NC] QGEMM_ALIGN64;
    int64_t j, jr, ir, pc;
    for (j = 0; j < nc; ++j) {
        const uint32_t z = (uint32_t)zb[jc + j];
        col[j] = (int32_t)((J->bias ? (uint32_t)J->bias[grp * J->Mg + jc + j] : 0u) +
                           (uint32_t)J->za * ((uint32_t)K * z - (uint32_t)colsum[jc + j]));
        zbn[j] = (int32_t)(0u - z);
    }
#define PANEL_AT(kk) (panels + (jc + jr) / ONNXC_QPACK_PANEL * pstride + (kk) * ONNXC_QPACK_PANEL)
    if (J->algo == ONNXC_QCONV_IMPLICIT) {
        /* segments of taps contiguous in A (a whole kernel row when the channels are the pixel:
         * dilation 1, one dense group) and in B: one call per K block of a segment */
        const int64_t T = g->KH * g->KW, Cg = J->Cg, seg = J->seg_taps, len = seg * Cg, kbt = J->kb;
        int64_t t;
        for (t = 0; t < T; t += seg) {
            const uint8_t* At = tap_row(J, ic, t, grp);
            for (pc = 0; pc < len; pc += kbt) {
                const int64_t kc = MIN(kbt, len - pc);
                const int first = t == 0 && pc == 0;
                for (jr = 0; jr < nc; jr += NR)
                    for (ir = 0; ir < mc; ir += MR)
                        k->fn(MIN(MR, mc - ir), MIN(NR, nc - jr), kc, At + ir * J->lda + pc, J->lda,
                              PANEL_AT(t * Cg + pc), pstride, C32 + ir * NC + jr, NC, first ? col + jr : NULL,
                              J->need_row ? row + ir : NULL, zbn + jr);
            }
        }
    } else if (gbuf && J->mcg == 0) {
        /* K too long for whole gathered rows: gather each K block for this column block */
        for (pc = 0; pc < K; pc += J->kb) {
            const int64_t kc = MIN(J->kb, K - pc);
            int64_t i;
            for (i = 0; i < mc; ++i) gather_row(J, ic + i, grp, pc, pc + kc, gbuf + i * J->kpad);
            for (jr = 0; jr < nc; jr += NR)
                for (ir = 0; ir < mc; ir += MR)
                    k->fn(MIN(MR, mc - ir), MIN(NR, nc - jr), kc, gbuf + ir * J->kpad, J->kpad, PANEL_AT(pc),
                          pstride, C32 + ir * NC + jr, NC, pc == 0 ? col + jr : NULL, J->need_row ? row + ir : NULL,
                          zbn + jr);
        }
    } else {
        const uint8_t* A = gbuf ? gbuf : J->a + ic * J->lda + grp * J->Cg;
        const int64_t lda = gbuf ? J->kpad : J->lda;
        for (pc = 0; pc < K; pc += J->kb) {
            const int64_t kc = MIN(J->kb, K - pc);
            for (jr = 0; jr < nc; jr += NR)
                for (ir = 0; ir < mc; ir += MR)
                    k->fn(MIN(MR, mc - ir), MIN(NR, nc - jr), kc, A + ir * lda + pc, lda, PANEL_AT(pc), pstride,
                          C32 + ir * NC + jr, NC, pc == 0 ? col + jr : NULL, J->need_row ? row + ir : NULL,
                          zbn + jr);
        }
    }
#undef PANEL_AT
    if (h->flags & ONNXC_QPACK_PAIRSAFE) { /* C32 += a'(i, k) * e for each correction in the block */
        const int32_t* index = (const int32_t*)(base + h->corr_off);
        const int32_t* ent = index + h->Np / ONNXC_QPACK_PANEL + 1;
        const int64_t p0 = jc / ONNXC_QPACK_PANEL, p1 = (jc + nc + ONNXC_QPACK_PANEL - 1) / ONNXC_QPACK_PANEL;
        const int whole = gbuf && J->mcg > 0;
        int64_t e, i;
        for (e = index[p0]; e < index[p1]; ++e) {
            const int64_t kk = ent[3 * e], n = ent[3 * e + 1] - jc;
            const uint32_t v = (uint32_t)ent[3 * e + 2];
            if (n < 0 || n >= nc) continue;
            for (i = 0; i < mc; ++i) {
                int32_t* c = C32 + i * NC + n;
                *c = (int32_t)((uint32_t)*c + (uint32_t)a_at(J, ic + i, kk, grp, whole ? gbuf + i * J->kpad : NULL) * v);
            }
        }
    }
    block_out(J, C32, ic, mc, grp * J->Mg + jc, nc);
}

static void run_task(const job_t* J, int64_t grp, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const onnxc_qgemm_packed_header* h = blob_of(J, grp);
    const int gather = J->algo == ONNXC_QCONV_IM2COL;
    const int64_t mstep = gather && J->mcg > 0 ? J->mcg : MC;
    int32_t row[MC] QGEMM_ALIGN64;
    uint8_t gbuf[QCONV_GATHER_BYTES] QGEMM_ALIGN64;
    int64_t ic, jc, i;
    for (ic = m0; ic < m1; ic += mstep) {
        const int64_t mc = MIN(mstep, m1 - ic);
        const int whole = gather && J->mcg > 0;
        if (whole)
            for (i = 0; i < mc; ++i) gather_row(J, ic + i, grp, 0, J->K, gbuf + i * J->kpad);
        if (J->need_row)
            for (i = 0; i < mc; ++i) row[i] = row_sum(J, ic + i, grp, whole ? gbuf + i * J->kpad : NULL);
        for (jc = n0; jc < n1; jc += NC)
            block(J, grp, h, ic, mc, jc, MIN(NC, n1 - jc), row, gather ? gbuf : NULL);
    }
}

static void grid_tasks(void* ctx, int64_t t0, int64_t t1) {
    const job_t* J = (const job_t*)ctx;
    const int64_t mr = J->k->mr, nr = J->k->nr, per = (int64_t)J->tm * J->tn;
    const int64_t mt = (J->Mv + mr - 1) / mr, nt = (J->Mg + nr - 1) / nr;
    int64_t t;
#if defined(QGEMM_AMX)
    if (J->k->amx) onnxc_qgemm_amx_begin_();
#endif
    for (t = t0; t < t1; ++t) {
        const int64_t grp = t / per, bi = t % per / J->tn, bj = t % J->tn;
        const int64_t m0 = MIN(J->Mv, mt * bi / J->tm * mr), m1 = MIN(J->Mv, mt * (bi + 1) / J->tm * mr);
        const int64_t n0 = MIN(J->Mg, nt * bj / J->tn * nr), n1 = MIN(J->Mg, nt * (bj + 1) / J->tn * nr);
        if (m0 < m1 && n0 < n1) run_task(J, grp, m0, m1, n0, n1);
    }
#if defined(QGEMM_AMX)
    if (J->k->amx) onnxc_qgemm_amx_end_();
#endif
}

/* Threads worth using and the tm x tn grid per group minimizing the largest task (as the GEMM) */
static void thread_grid(job_t* J) {
    const int64_t mr = J->k->mr, nr = J->k->nr, G = J->g->group;
    const int64_t mt = (J->Mv + mr - 1) / mr, nt = (J->Mg + nr - 1) / nr;
    const double macs = (double)J->Mv * (double)J->Mg * (double)J->K * (double)G;
    double best = -1.0;
    int T = onnxc_rt_threads_usable(), tn;
    J->tm = J->tn = 1;
    if ((double)T > macs / QCONV_PARALLEL_MIN_MACS) T = (int)(macs / QCONV_PARALLEL_MIN_MACS);
    if (T <= 1 || G >= T) return; /* groups alone split enough */
    for (tn = 1; tn <= T && tn <= nt; ++tn) {
        const int tm = (int)MIN((int64_t)(T / tn), mt);
        const double m = (double)((mt + tm - 1) / tm * mr), n = (double)((nt + tn - 1) / tn * nr);
        const double cost = m * n + 8.0 * (m + n);
        if (best < 0.0 || cost < best) {
            best = cost;
            J->tm = tm;
            J->tn = tn;
        }
    }
}

/* K block: equal blocks of at most kc, each a multiple of 64 but the last (as the GEMM) */
static int64_t k_block(int64_t K, int64_t kc) {
    const int64_t nb = K > 0 ? (K + kc - 1) / kc : 1;
    return round_up((K + nb - 1) / nb, 64);
}

/* the zero-point-padded copy of the input: rows [r0, r1) of the N*Hp padded image rows */
typedef struct {
    const onnxc_qconv_geom* g;
    const uint8_t* x;
    int64_t xp;
    uint8_t* p, z;
} pad_job_t;

static void pad_rows(void* ctx, int64_t r0, int64_t r1) {
    const pad_job_t* P = (const pad_job_t*)ctx;
    const onnxc_qconv_geom* g = P->g;
    const int64_t Hp = g->H + g->pad_t + g->pad_b, Wp = g->W + g->pad_l + g->pad_r, C = g->C;
    int64_t r;
    for (r = r0; r < r1; ++r) {
        const int64_t n = r / Hp, ih = r % Hp - g->pad_t;
        uint8_t* d = P->p + r * Wp * C;
        if (ih < 0 || ih >= g->H) {
            memset(d, P->z, (size_t)(Wp * C));
            continue;
        }
        memset(d, P->z, (size_t)(g->pad_l * C));
        if (P->xp == C) {
            memcpy(d + g->pad_l * C, P->x + (n * g->H + ih) * g->W * C, (size_t)(g->W * C));
        } else {
            int64_t w;
            for (w = 0; w < g->W; ++w)
                memcpy(d + (g->pad_l + w) * C, P->x + ((n * g->H + ih) * g->W + w) * P->xp, (size_t)C);
        }
        memset(d + (g->pad_l + g->W) * C, P->z, (size_t)(g->pad_r * C));
    }
}

int onnxc_qconv(const onnxc_qgemm_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                int32_t x_zero_point, const void* packedW, const int32_t* bias,
                const onnxc_qgemm_output* out, const onnxc_qconv_residual* res, void* workspace) {
    const unsigned mask = ONNXC_QPACK_B_U8 | ONNXC_QPACK_PAIRSAFE | ONNXC_QPACK_K2;
    job_t J;
    int64_t grp, n;
    if (!kernel || !onnxc_qconv_geom_ok_(g) || !x || !packedW || !out) return ONNXC_QCONV_ERR_ARG;
    if (out->type < ONNXC_QOUT_S32 || out->type > ONNXC_QOUT_F32 || out->ldc < g->M) return ONNXC_QCONV_ERR_ARG;
    if (res && (out->type == ONNXC_QOUT_S32 || out->type == ONNXC_QOUT_F32 || !res->r || res->ldr < g->M))
        return ONNXC_QCONV_ERR_ARG;
    memset(&J, 0, sizeof(J));
    J.g = g;
    J.algo = algo_of(kernel, g);
    J.Cg = g->C / g->group;
    J.Mg = g->M / g->group;
    J.K = g->KH * g->KW * J.Cg;
    J.xp = g->x_pitch ? g->x_pitch : g->C;
    J.x = (const uint8_t*)x;
    J.w = (const uint8_t*)packedW;
    J.bias = bias;
    J.out = out;
    J.res = res;
    {
        const uint8_t* p = J.w;
        for (grp = 0; grp < g->group; ++grp) {
            const onnxc_qgemm_packed_header* h = (const onnxc_qgemm_packed_header*)p;
            const int32_t* zb = (const int32_t*)(p + h->zb_off);
            if (h->magic != (uint32_t)ONNXC_QPACK_MAGIC || h->K != J.K || h->N != J.Mg ||
                (h->flags & mask) != (kernel->pack_flags & mask))
                return ONNXC_QCONV_ERR_PACK;
            for (n = 0; n < J.Mg && !J.need_row; ++n) J.need_row = zb[n] != 0;
            p += h->total_bytes;
        }
    }
    switch (J.algo) {
    case ONNXC_QCONV_DIRECT:
        if (!is_pointwise(g)) return ONNXC_QCONV_ERR_ARG;
        J.k = short_k(onnxc_qgemm_resolve(kernel, g->N * g->H * g->W), J.K);
        J.a = J.x;
        J.lda = J.xp;
        J.Mv = g->N * g->OH * g->OW;
        break;
    case ONNXC_QCONV_IMPLICIT:
        if (g->stride_h != 1 || g->stride_w != 1) return ONNXC_QCONV_ERR_ARG;
        J.k = implicit_kernel(onnxc_qgemm_resolve(kernel, g->N * g->OH * g->OW), J.Cg);
        if (!J.k) return ONNXC_QCONV_ERR_ARG;
        J.Hv = g->H + g->pad_t + g->pad_b;
        J.Wv = g->W + g->pad_l + g->pad_r;
        if (padded(g)) {
            pad_job_t P;
            if (!workspace) return ONNXC_QCONV_ERR_ARG;
            P.g = g;
            P.x = J.x;
            P.xp = J.xp;
            P.p = (uint8_t*)workspace;
            P.z = (uint8_t)x_zero_point;
            onnxc_parallel_for(g->N * J.Hv, g->N * J.Hv * J.Wv * g->C >= (1 << 16), pad_rows, &P);
            J.a = P.p;
            J.lda = g->C;
        } else {
            J.a = J.x;
            J.lda = J.xp;
        }
        J.Mv = implicit_rows(g);
        break;
    case ONNXC_QCONV_IM2COL:
        J.k = short_k(onnxc_qgemm_resolve(kernel, g->N * g->OH * g->OW), J.K);
        J.Mv = g->N * g->OH * g->OW;
        J.kpad = round_up(J.K, 64);
        J.mcg = MIN((int64_t)MC, QCONV_GATHER_BYTES / J.kpad) / J.k->mr * J.k->mr;
        if (J.mcg == 0) J.kpad = 0; /* per K block, set below */
        break;
    default:
        return ONNXC_QCONV_ERR_ARG;
    }
    J.mode = J.k->a_xor ? 2 : J.k->a_signed ? 1 : 0;
    J.za = x_zero_point + (J.k->a_xor ? 128 : 0);
    J.zbyte = (uint8_t)x_zero_point;
    J.seg_taps = J.algo == ONNXC_QCONV_IMPLICIT && g->dil_w == 1 && J.lda == J.Cg ? g->KW : 1;
    J.kb = k_block(J.algo == ONNXC_QCONV_IMPLICIT ? J.seg_taps * J.Cg : J.K, J.k->kc);
    if (J.algo == ONNXC_QCONV_IM2COL && J.mcg == 0) {
        J.kpad = J.kb; /* MC rows of one K block */
        while ((int64_t)MC * J.kpad > QCONV_GATHER_BYTES) J.kb = J.kpad = J.kpad / 2 / 64 * 64;
    }
    thread_grid(&J);
    {
        const int64_t tasks = g->group * J.tm * J.tn;
        const double macs = (double)J.Mv * (double)g->M * (double)J.K;
        onnxc_parallel_for(tasks, tasks > 1 && macs >= QCONV_PARALLEL_MIN_MACS, grid_tasks, &J);
    }
    return ONNXC_QCONV_OK;
}
