/* int8 depthwise convolution (group == C == M): the driver, the portable kernel and the scalar
 * row every SIMD kernel falls back to for its channel tail. API: onnxc_qconv.h.
 *
 * (x - xz) * (w - wz) summed over the taps is computed as start + sum x * wq with wq = w - wz
 * (packed, 16 bits) and start = bias - xz * sum_t wq: padding taps read x = xz, so they add
 * xz * wq and cancel exactly. Every product |x * wq| <= 255 * 255 fits 32 bits; the SIMD kernels
 * get it from vpmaddwd (or vpdpwssd) on 32-bit lanes whose high halves are 0 in wq, so each lane
 * is one exact 16 x 16 -> 32-bit product.
 *
 * Work: tasks of one output row x a chunk of channels (x a chunk of columns for very wide rows);
 * the kernel fills an int32 row buffer on the stack, the output stage (onnxc_qconv_stage_:
 * requantize, float, int32 or the residual add) converts it. Results do not depend on the split. */
#include <string.h>

#include "onnxc_qconv.h"
#include "onnxc_threads.h"
#include "qconv_internal.h"

#define DW_ACC_INTS 16384 /* int32 row buffer of a task (64 KB of stack) */
#define DW_MAX_CHUNK 4096 /* channels per task at most */
#define DW_BAND_INTS 16384 /* the band form's widened rows and paired weights (64 KB of stack) */
#ifndef QCONV_DW_PARALLEL_MIN_MACS
#define QCONV_DW_PARALLEL_MIN_MACS (1 << 15) /* as the NCHWc depthwise convolution */
#endif
#define MIN(a, b) ((a) < (b) ? (a) : (b))

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

void onnxc_qconv_dw_scalar_(int a_signed, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                            int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    const onnxc_qconv_geom* g = a->g;
    int64_t ow, c, kh, kw;
    for (ow = ow0; ow < ow1; ++ow) {
        int32_t* o = acc + (ow - ow0) * ldacc - c0;
        for (c = c0; c < c1; ++c) o[c] = a->start[c - c0];
        for (kh = 0; kh < g->KH; ++kh) {
            const int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
            for (kw = 0; kw < g->KW; ++kw) {
                const int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
                const int32_t* w = a->wq + (kh * g->KW + kw) * a->cp;
                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) {
                    for (c = c0; c < c1; ++c)
                        o[c] = (int32_t)((uint32_t)o[c] + (uint32_t)(a->xz * (int32_t)(int16_t)(uint16_t)w[c]));
                } else {
                    const uint8_t* p = a->x + ((n * g->H + ih) * g->W + iw) * a->x_pitch;
                    for (c = c0; c < c1; ++c) {
                        const int32_t xv = a_signed ? (int32_t)(int8_t)p[c] : (int32_t)p[c];
                        o[c] = (int32_t)((uint32_t)o[c] + (uint32_t)(xv * (int32_t)(int16_t)(uint16_t)w[c]));
                    }
                }
            }
        }
    }
}

void onnxc_u8s8_dwconv_1x1__generic(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                    int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    onnxc_qconv_dw_scalar_(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}

void onnxc_s8s8_dwconv_1x1__generic(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                    int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    onnxc_qconv_dw_scalar_(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}

ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_1x1__generic, 1, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_1x1__generic, 1, 1);

typedef struct {
    const onnxc_qconv_dw_kernel* k;
    const onnxc_qconv_geom* g;
    onnxc_qconv_dw_args args;
    const int32_t* wsum;
    const int32_t* bias;
    const onnxc_qgemm_output* out;
    const onnxc_qconv_residual* res;
    int64_t cchunk, owchunk, ncc, nowc;
    int64_t nb, bh; /* band form: bands of bh output rows per image and channel chunk */
} dw_job_t;

/* the accumulator start of channels [c0, c0 + ld): bias - xz * sum_t wq (0 past c1) */
static void dw_start(const dw_job_t* J, int64_t c0, int64_t c1, int64_t ld, int32_t* start) {
    int64_t i;
    for (i = 0; i < ld; ++i) {
        const int64_t c = c0 + i;
        start[i] = c < c1 ? (int32_t)((J->bias ? (uint32_t)J->bias[c] : 0u) - (uint32_t)J->args.xz * (uint32_t)J->wsum[c]) : 0;
    }
}

static void dw_tasks(void* ctx, int64_t t0, int64_t t1) {
    const dw_job_t* J = (const dw_job_t*)ctx;
    const onnxc_qconv_geom* g = J->g;
    int32_t acc[DW_ACC_INTS];
    int32_t start[DW_MAX_CHUNK];
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t r = t / (J->ncc * J->nowc), cc = t / J->nowc % J->ncc, oc = t % J->nowc;
        const int64_t n = r / g->OH, oh = r % g->OH;
        const int64_t c0 = cc * J->cchunk, c1 = MIN(g->C, c0 + J->cchunk);
        const int64_t ow0 = oc * J->owchunk, ow1 = MIN(g->OW, ow0 + J->owchunk);
        const int64_t ld = round_up(c1 - c0, ONNXC_QDW_CALIGN);
        onnxc_qconv_dw_args a = J->args;
        dw_start(J, c0, c1, ld, start);
        a.start = start;
        J->k->fn(&a, n, oh, ow0, ow1, c0, c1, acc, ld);
        onnxc_qconv_stage_(J->out, J->res, acc, ld, (n * g->OH + oh) * g->OW + ow0, ow1 - ow0, c0, c1 - c0);
    }
}

typedef struct {
    const dw_job_t* J;
    int64_t c0, c1, ld;
} dw_emit_t;

static void dw_emit(void* ctx, int64_t n, int64_t oh, const int32_t* acc) {
    const dw_emit_t* E = (const dw_emit_t*)ctx;
    const onnxc_qconv_geom* g = E->J->g;
    onnxc_qconv_stage_(E->J->out, E->J->res, acc, E->ld, (n * g->OH + oh) * g->OW, g->OW, E->c0, E->c1 - E->c0);
}

/* tasks of the band form: (image, channel chunk, band of output rows) */
static void dw_band_tasks(void* ctx, int64_t t0, int64_t t1) {
    const dw_job_t* J = (const dw_job_t*)ctx;
    const onnxc_qconv_geom* g = J->g;
    int32_t acc[DW_ACC_INTS];
    int32_t start[DW_MAX_CHUNK];
    int32_t rows[DW_BAND_INTS];
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (J->ncc * J->nb), cc = t / J->nb % J->ncc, b = t % J->nb;
        const int64_t oh0 = b * J->bh, oh1 = MIN(g->OH, oh0 + J->bh);
        onnxc_qconv_dw_args a = J->args;
        dw_emit_t E;
        E.J = J;
        E.c0 = cc * J->cchunk;
        E.c1 = MIN(g->C, E.c0 + J->cchunk);
        E.ld = round_up(E.c1 - E.c0, ONNXC_QDW_CALIGN);
        dw_start(J, E.c0, E.c1, E.ld, start);
        a.start = start;
        J->k->band(&a, n, oh0, oh1, E.c0, E.c1, acc, E.ld, rows, dw_emit, &E);
    }
}

/* The band form's channel chunk (a multiple of 16: its rows and weights fit DW_BAND_INTS, its
 * output row DW_ACC_INTS), or 0 when even 16 channels do not fit */
static int64_t band_chunk(const onnxc_qconv_geom* g, int64_t Cp) {
    int64_t cc = MIN(Cp, DW_MAX_CHUNK) / ONNXC_QDW_CALIGN * ONNXC_QDW_CALIGN;
    while (cc > 0 && (onnxc_qconv_dw_band_ints_(g, cc) > DW_BAND_INTS || g->OW * cc > DW_ACC_INTS))
        cc -= ONNXC_QDW_CALIGN;
    return cc;
}

int onnxc_qconv_dw(const onnxc_qconv_dw_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                   int32_t x_zero_point, const void* packedW, const int32_t* bias,
                   const onnxc_qgemm_output* out, const onnxc_qconv_residual* res) {
    const onnxc_qconv_dw_header* h = (const onnxc_qconv_dw_header*)packedW;
    dw_job_t J;
    int64_t tasks;
    if (!kernel || !onnxc_qconv_geom_ok_(g) || !x || !packedW || !out) return ONNXC_QCONV_ERR_ARG;
    if (g->group != g->C || g->M != g->C) return ONNXC_QCONV_ERR_ARG;
    if (out->type < ONNXC_QOUT_S32 || out->type > ONNXC_QOUT_F32 || out->ldc < g->M) return ONNXC_QCONV_ERR_ARG;
    if (res && (out->type == ONNXC_QOUT_S32 || out->type == ONNXC_QOUT_F32 || !res->r || res->ldr < g->M))
        return ONNXC_QCONV_ERR_ARG;
    if (h->magic != (uint32_t)ONNXC_QDW_MAGIC || h->C != g->C || h->KH != g->KH || h->KW != g->KW ||
        h->Cp != round_up(g->C, ONNXC_QDW_CALIGN))
        return ONNXC_QCONV_ERR_PACK;
    memset(&J, 0, sizeof(J));
    J.k = kernel;
    J.g = g;
    J.args.g = g;
    J.args.x = (const uint8_t*)x;
    J.args.x_pitch = g->x_pitch ? g->x_pitch : g->C;
    J.args.xz = x_zero_point;
    J.args.cp = h->Cp;
    J.wsum = (const int32_t*)((const uint8_t*)packedW + ONNXC_QDW_HEADER);
    J.args.wq = J.wsum + h->Cp;
    J.args.wp = J.args.wq + g->KH * g->KW * h->Cp;
    J.bias = bias;
    J.out = out;
    J.res = res;
    if (kernel->band && onnxc_qconv_dw_band_ok_(g) && (J.cchunk = band_chunk(g, h->Cp)) > 0) {
        /* bands of output rows: one per image and chunk on one thread, else ~2 tasks per thread
         * (a band re-widens the KH - 1 input rows above its first output row) */
        const int64_t units = g->N * ((g->C + J.cchunk - 1) / J.cchunk), T = onnxc_rt_threads_usable();
        const int par = (double)g->N * g->OH * g->OW * g->C * g->KH * g->KW >= QCONV_DW_PARALLEL_MIN_MACS;
        J.ncc = (g->C + J.cchunk - 1) / J.cchunk;
        J.nb = par && units < 2 * T ? MIN(g->OH, (2 * T + units - 1) / units) : 1;
        J.bh = (g->OH + J.nb - 1) / J.nb;
        J.nb = (g->OH + J.bh - 1) / J.bh;
        tasks = units * J.nb;
        onnxc_parallel_for(tasks, tasks > 1 && par, dw_band_tasks, &J);
        return ONNXC_QCONV_OK;
    }
    /* a task's int32 row (columns x channels) fits the stack buffer */
    if (g->OW * h->Cp <= DW_ACC_INTS && h->Cp <= DW_MAX_CHUNK) {
        J.cchunk = h->Cp;
    } else {
        J.cchunk = MIN(DW_MAX_CHUNK, DW_ACC_INTS / g->OW / ONNXC_QDW_CALIGN * ONNXC_QDW_CALIGN);
        if (J.cchunk < ONNXC_QDW_CALIGN) J.cchunk = ONNXC_QDW_CALIGN;
        if (J.cchunk > h->Cp) J.cchunk = h->Cp;
    }
    J.owchunk = MIN(g->OW, DW_ACC_INTS / J.cchunk);
    J.ncc = (g->C + J.cchunk - 1) / J.cchunk;
    J.nowc = (g->OW + J.owchunk - 1) / J.owchunk;
    tasks = g->N * g->OH * J.ncc * J.nowc;
    onnxc_parallel_for(tasks, tasks > 1 && (double)g->N * g->OH * g->OW * g->C * g->KH * g->KW >= QCONV_DW_PARALLEL_MIN_MACS,
                       dw_tasks, &J);
    return ONNXC_QCONV_OK;
}
