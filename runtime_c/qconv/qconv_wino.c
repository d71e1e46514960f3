/* Exact integer Winograd F(2x2, 3x3) for int8 3x3 stride-1 convolutions (group 1, dilation 1).
 * API: onnxc_qconv.h (onnxc_qconv_wino); choice and measurements:
 * docs/quantize.md (avx2 speed), compiler/kernels/qwino.py (when the compiler uses it).
 *
 * With d = x - xz (0 in the padding) and w the int8 weights, per 4x4 input tile / 2x2 output tile:
 *   V = B^T d B          B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]: rows of L1 norm 2,
 *                        so |V| <= 4 * 255 = 1020 (int16)
 *   U' = (2G) w (2G)^T   2G = [2 0 0; 1 1 1; 1 -1 1; 0 0 2]: rows of L1 norm <= 3,
 *                        so |U'| <= 9 * 128 = 1152 (int16; packed at compile time)
 *   M' = sum_c V (.) U'  16 GEMMs [tiles x C] x [C x K] with vpmaddwd: a pair sum is at most
 *                        2 * 1020 * 1152 < 2^31, no saturation; int32 sums wrap
 *   Y' = A^T M' A = 4Y   A^T = [1 1 1 0; 0 1 -1 -1], in wrapping int32: exact modulo 2^32
 * Y is the direct convolution sum_{c,kh,kw} d * w: |Y| <= 9 * 255 * 128 * C, so |4Y| < 2^31 for
 * C <= ONNXC_QWINO_MAX_C (1827) and the int32 4Y is exact; it is a multiple of 4, so Y = 4Y / 4
 * exactly. Weights with a zero point enter as w - wz (|w - wz| <= 255: |U'| <= 2295), exact while
 * 4 * 255 * sum |w - wz| < 2^31 per output channel (the compiler checks the weights: qwino.fits).
 * The accumulator bias + Y then goes through the direct path's output stage: results are
 * bit-identical to onnxc_qconv (and onnxruntime) for every input.
 *
 * Work, two phases: the input transform of every tile into the workspace, V [16][tiles][Cp] int16
 * (tiles in (n, th, tw) order); then tasks of (block of NCB output channels, block of TB tiles),
 * column-block major: the 16 products into M' [16][TB][NCB] (stack), the output transform into
 * Y [2][TB][2][NCB] (row dy, tile, column dx: the outputs of one tile row are consecutive rows)
 * and the output stage per output row segment. Holding all of V lets the transformed weights
 * (3.6x the int8 ones) stream once per call rather than once per tile block. Every output is
 * computed by one task with integer arithmetic: results do not depend on the thread count. */
#include <string.h>

#include "onnxc_qconv.h"
#include "onnxc_threads.h"
#include "../qgemm/qgemm_kernel.h"
#include "qconv_internal.h"

#if defined(QGEMM_AVX2)
#include <immintrin.h>
#endif

#ifndef QWINO_NCB
#define QWINO_NCB 32 /* output channels per product block (a multiple of NR = 16) */
#endif
#ifndef QWINO_TB
#define QWINO_TB 48 /* most tiles per block (a multiple of MR = 6) */
#endif
#ifndef QWINO_MAX_CP_TILE
#define QWINO_MAX_CP_TILE 256 /* channels per input-transform step (16 rows of them on the stack) */
#endif
#define MR 6
#define NR 16
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ------------------------------------------------------------------------------------------ */
/* Microkernels: C[i*ldc + j] = sum_{p < kp} sum_{h < 2} A[i*lda + 2p + h] * B[(p*16 + j)*2 + h]   */
/* for i < mr <= 6, j < nr <= 16 (B: one packed panel of 16 columns, zero past the matrix)      */
/* ------------------------------------------------------------------------------------------ */

void onnxc_s16_wgemm_6x16__generic(int64_t mr, int64_t nr, int64_t kp, const int16_t* A, int64_t lda,
                                   const int16_t* B, int32_t* C, int64_t ldc) {
    int64_t i, j, p;
    for (i = 0; i < mr; ++i) {
        uint32_t acc[NR] = {0};
        const int16_t* a = A + i * lda;
        for (p = 0; p < kp; ++p) {
            const int32_t a0 = a[2 * p], a1 = a[2 * p + 1];
            const int16_t* b = B + p * 2 * NR;
            for (j = 0; j < NR; ++j) acc[j] += (uint32_t)(a0 * b[2 * j] + a1 * b[2 * j + 1]);
        }
        for (j = 0; j < nr; ++j) C[i * ldc + j] = (int32_t)acc[j];
    }
}
const onnxc_qconv_wino_kernel onnxc_s16_wgemm_6x16__generic_info = {"onnxc_s16_wgemm_6x16__generic",
                                                                    onnxc_s16_wgemm_6x16__generic, MR, NR};

#if defined(QGEMM_AVX2)
/* 6 x 16 int32 in 12 ymm: per k pair a broadcast of each row's pair and vpmaddwd + vpaddd with
 * the panel's two ymm (16 multiply-adds per vpmaddwd). Rows past mr repeat row 0 (computed, not
 * stored). */
QGEMM_INLINE __m256i pair_at(const int16_t* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

void onnxc_s16_wgemm_6x16__avx2(int64_t mr, int64_t nr, int64_t kp, const int16_t* A, int64_t lda,
                                const int16_t* B, int32_t* C, int64_t ldc) {
    /* named accumulators and row pointers: GCC spills an array of 12 ymm to the stack */
    const int16_t* a0 = A;
    const int16_t* a1 = A + (mr > 1 ? 1 : 0) * lda;
    const int16_t* a2 = A + (mr > 2 ? 2 : 0) * lda;
    const int16_t* a3 = A + (mr > 3 ? 3 : 0) * lda;
    const int16_t* a4 = A + (mr > 4 ? 4 : 0) * lda;
    const int16_t* a5 = A + (mr > 5 ? 5 : 0) * lda;
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    int64_t p;
    for (p = 0; p < kp; ++p) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i*)(B + p * 2 * NR));
        const __m256i b1 = _mm256_loadu_si256((const __m256i*)(B + p * 2 * NR + NR));
        __m256i av = pair_at(a0 + 2 * p);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(av, b0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(av, b1));
        av = pair_at(a1 + 2 * p);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(av, b0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(av, b1));
        av = pair_at(a2 + 2 * p);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(av, b0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(av, b1));
        av = pair_at(a3 + 2 * p);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(av, b0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(av, b1));
        av = pair_at(a4 + 2 * p);
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(av, b0));
        c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(av, b1));
        av = pair_at(a5 + 2 * p);
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(av, b0));
        c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(av, b1));
    }
    {
        int32_t t[NR];
        int64_t i;
        __m256i r[MR][2];
        r[0][0] = c00, r[0][1] = c01, r[1][0] = c10, r[1][1] = c11, r[2][0] = c20, r[2][1] = c21;
        r[3][0] = c30, r[3][1] = c31, r[4][0] = c40, r[4][1] = c41, r[5][0] = c50, r[5][1] = c51;
        for (i = 0; i < mr; ++i) {
            if (nr == NR) {
                _mm256_storeu_si256((__m256i*)(C + i * ldc), r[i][0]);
                _mm256_storeu_si256((__m256i*)(C + i * ldc + 8), r[i][1]);
            } else {
                _mm256_storeu_si256((__m256i*)t, r[i][0]);
                _mm256_storeu_si256((__m256i*)(t + 8), r[i][1]);
                memcpy(C + i * ldc, t, (size_t)nr * 4);
            }
        }
    }
}
const onnxc_qconv_wino_kernel onnxc_s16_wgemm_6x16__avx2_info = {"onnxc_s16_wgemm_6x16__avx2",
                                                                 onnxc_s16_wgemm_6x16__avx2, MR, NR};
#endif

/* ------------------------------------------------------------------------------------------ */
/* Driver                                                                                      */
/* ------------------------------------------------------------------------------------------ */

int onnxc_qconv_wino_ok(const onnxc_qconv_geom* g) {
    return onnxc_qconv_geom_ok_(g) && g->KH == 3 && g->KW == 3 && g->stride_h == 1 && g->stride_w == 1 &&
           g->dil_h == 1 && g->dil_w == 1 && g->group == 1 && g->C <= ONNXC_QWINO_MAX_C;
}

size_t onnxc_qconv_wino_packed_elems(int64_t C, int64_t M) {
    return (size_t)(16 * ((M + NR - 1) / NR) * ((C + 1) / 2) * 2 * NR);
}

typedef struct {
    const onnxc_qconv_wino_kernel* k;
    const onnxc_qconv_geom* g;
    const uint8_t* x;
    int64_t xp, Cp, TH, TW, tiles, tb, np;
    int32_t xz;
    int x_signed;
    const int16_t* U;
    int16_t* V; /* workspace: the transformed input [16][tiles][Cp] */
    const int32_t* bias;
    const onnxc_qgemm_output* out;
    const onnxc_qconv_residual* res;
} wino_t;

/* Four V rows from two input rows a, b (4 pixels of QWINO_MAX_CP_TILE channels each): q[s] = a[s]
 * + b[s] (plus) or a[s] - b[s]; v[0..3] = q0 - q2, q1 + q2, q2 - q1, q1 - q3 (row stride es).
 * Two loops so that each vectorizes over the channels. */
static void wino_row(const int16_t* restrict a, const int16_t* restrict b, int plus, int64_t cn, int16_t* v, int64_t es) {
    const int64_t L = QWINO_MAX_CP_TILE;
    int16_t* restrict v0 = v;
    int16_t* restrict v1 = v + es;
    int16_t* restrict v2 = v + 2 * es;
    int16_t* restrict v3 = v + 3 * es;
    int64_t c;
    if (plus) {
        for (c = 0; c < cn; ++c) {
            const int16_t q0 = (int16_t)(a[c] + b[c]), q1 = (int16_t)(a[L + c] + b[L + c]);
            const int16_t q2 = (int16_t)(a[2 * L + c] + b[2 * L + c]), q3 = (int16_t)(a[3 * L + c] + b[3 * L + c]);
            v0[c] = (int16_t)(q0 - q2);
            v1[c] = (int16_t)(q1 + q2);
            v2[c] = (int16_t)(q2 - q1);
            v3[c] = (int16_t)(q1 - q3);
        }
    } else {
        for (c = 0; c < cn; ++c) {
            const int16_t q0 = (int16_t)(a[c] - b[c]), q1 = (int16_t)(a[L + c] - b[L + c]);
            const int16_t q2 = (int16_t)(a[2 * L + c] - b[2 * L + c]), q3 = (int16_t)(a[3 * L + c] - b[3 * L + c]);
            v0[c] = (int16_t)(q0 - q2);
            v1[c] = (int16_t)(q1 + q2);
            v2[c] = (int16_t)(q2 - q1);
            v3[c] = (int16_t)(q1 - q3);
        }
    }
}

/* V[e][t][c] (row stride Cp, e stride tiles*Cp) of the tiles t in [t0, t0 + nt) */
static void input_transform(const wino_t* W, int64_t t0, int64_t nt, int16_t* V) {
    const onnxc_qconv_geom* g = W->g;
    const int64_t C = g->C, Cp = W->Cp, es = W->tiles * Cp, tpi = W->TH * W->TW;
    int16_t d[16][QWINO_MAX_CP_TILE];
    int64_t i, c0;
    for (i = 0; i < nt; ++i) {
        const int64_t t = t0 + i, n = t / tpi, th = t % tpi / W->TW, tw = t % W->TW;
        const int64_t ih0 = 2 * th - g->pad_t, iw0 = 2 * tw - g->pad_l;
        for (c0 = 0; c0 < Cp; c0 += QWINO_MAX_CP_TILE) {
            const int64_t cn = MIN(QWINO_MAX_CP_TILE, Cp - c0), cx = MIN(cn, C - c0); /* cx: real channels */
            int64_t r, s, c;
            for (r = 0; r < 4; ++r)
                for (s = 0; s < 4; ++s) {
                    const int64_t ih = ih0 + r, iw = iw0 + s;
                    int16_t* dr = d[r * 4 + s];
                    if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) {
                        memset(dr, 0, (size_t)cn * 2);
                        continue;
                    }
                    {
                        const uint8_t* px = W->x + ((n * g->H + ih) * g->W + iw) * W->xp + c0;
                        const int16_t z = (int16_t)W->xz;
                        if (W->x_signed)
                            for (c = 0; c < cx; ++c) dr[c] = (int16_t)((int16_t)(int8_t)px[c] - z);
                        else
                            for (c = 0; c < cx; ++c) dr[c] = (int16_t)((int16_t)px[c] - z);
                        for (; c < cn; ++c) dr[c] = 0;
                    }
                }
            /* V row r = (B^T d)[r] B: q[s] = d[ra][s] +- d[rb][s], then the columns */
            wino_row(d[0], d[8], 0, cn, V + 0 * es + (t0 + i) * Cp + c0, es);      /* d0 - d2 */
            wino_row(d[4], d[8], 1, cn, V + 4 * es + (t0 + i) * Cp + c0, es);      /* d1 + d2 */
            wino_row(d[8], d[4], 0, cn, V + 8 * es + (t0 + i) * Cp + c0, es);      /* d2 - d1 */
            wino_row(d[4], d[12], 0, cn, V + 12 * es + (t0 + i) * Cp + c0, es);    /* d1 - d3 */
        }
    }
}

/* Y[dy][i][dx][j] = bias + (A^T M' A)[dy][dx] / 4 for tiles i < nt, columns j < nc */
static void output_transform(const wino_t* W, const int32_t* Mb, int64_t nt, int64_t jc, int64_t nc,
                             int32_t* Y) {
    const int64_t es = W->tb * QWINO_NCB, ys = W->tb * 2 * QWINO_NCB;
    int32_t bias[QWINO_NCB];
    int64_t i, j;
    /* bias hoisted: a conditional load in the loop became a masked load, whose all-off mask on
     * a NULL bias costs a microcode assist per vector */
    for (j = 0; j < nc; ++j) bias[j] = W->bias ? W->bias[jc + j] : 0;
    for (i = 0; i < nt; ++i) {
        const int32_t* m = Mb + i * QWINO_NCB;
        int32_t* y0 = Y + i * 2 * QWINO_NCB;
        int32_t* y1 = y0 + ys;
        for (j = 0; j < nc; ++j) {
            uint32_t u[16], t0[4], t1[4];
            int e;
            const uint32_t b = (uint32_t)bias[j];
            for (e = 0; e < 16; ++e) u[e] = (uint32_t)m[e * es + j];
            for (e = 0; e < 4; ++e) {
                t0[e] = u[0 * 4 + e] + u[1 * 4 + e] + u[2 * 4 + e];
                t1[e] = u[1 * 4 + e] - u[2 * 4 + e] - u[3 * 4 + e];
            }
            /* 4Y is exact (|4Y| < 2^31): the division by 4 has no remainder */
            y0[j] = (int32_t)(b + (uint32_t)((int32_t)(t0[0] + t0[1] + t0[2]) / 4));
            y0[QWINO_NCB + j] = (int32_t)(b + (uint32_t)((int32_t)(t0[1] - t0[2] - t0[3]) / 4));
            y1[j] = (int32_t)(b + (uint32_t)((int32_t)(t1[0] + t1[1] + t1[2]) / 4));
            y1[QWINO_NCB + j] = (int32_t)(b + (uint32_t)((int32_t)(t1[1] - t1[2] - t1[3]) / 4));
        }
    }
}

/* the output stage of the block's tiles [t0, t0 + nt), columns [jc, jc + nc): one call per output
 * row segment (tiles of one tile row, rows dy = 0, 1; the last row / column dropped past OH / OW) */
static void stage(const wino_t* W, const int32_t* Y, int64_t t0, int64_t nt, int64_t jc, int64_t nc) {
    const onnxc_qconv_geom* g = W->g;
    const int64_t tpi = W->TH * W->TW, ys = W->tb * 2 * QWINO_NCB;
    int64_t i = 0;
    while (i < nt) {
        const int64_t t = t0 + i, n = t / tpi, th = t % tpi / W->TW, tw = t % W->TW;
        const int64_t run = MIN(nt - i, W->TW - tw), cols = MIN(2 * run, g->OW - 2 * tw);
        int64_t dy;
        for (dy = 0; dy < 2 && 2 * th + dy < g->OH; ++dy)
            onnxc_qconv_stage_(W->out, W->res, Y + dy * ys + i * 2 * QWINO_NCB, QWINO_NCB,
                               (n * g->OH + 2 * th + dy) * g->OW + 2 * tw, cols, jc, nc);
        i += run;
    }
}

/* phase 1: the input transform of tile chunks [b0, b1) (QWINO_TB tiles each) */
static void in_tasks(void* ctx, int64_t b0, int64_t b1) {
    const wino_t* W = (const wino_t*)ctx;
    const int64_t t0 = b0 * QWINO_TB, t1 = MIN(W->tiles, b1 * QWINO_TB);
    input_transform(W, t0, t1 - t0, W->V);
}

/* phase 2: tasks (column block jb, tile block b), column-block major so that consecutive tasks
 * reuse one column block of the transformed weights (16 * Cp * NCB int16) from cache while the
 * transformed input streams */
static void wino_tasks(void* ctx, int64_t q0, int64_t q1) {
    const wino_t* W = (const wino_t*)ctx;
    const int64_t Cp = W->Cp, kp = Cp / 2, M = W->g->M, TB = W->tb, es = W->tiles * Cp;
    const int64_t nb = (W->tiles + TB - 1) / TB;
    const int64_t pstride = kp * 2 * NR; /* int16 per panel */
    int32_t Mb[16 * QWINO_TB * QWINO_NCB] QGEMM_ALIGN64;
    int32_t Y[4 * QWINO_TB * QWINO_NCB] QGEMM_ALIGN64;
    int64_t q;
    for (q = q0; q < q1; ++q) {
        const int64_t jc = q / nb * QWINO_NCB, t0 = q % nb * TB;
        const int64_t nt = MIN(TB, W->tiles - t0), nc = MIN(QWINO_NCB, M - jc);
        int e;
        for (e = 0; e < 16; ++e) {
            const int16_t* Ve = W->V + e * es + t0 * Cp;
            int64_t jr, ir;
            for (jr = 0; jr < nc; jr += NR) {
                const int16_t* Bp = W->U + (e * W->np + (jc + jr) / NR) * pstride;
                for (ir = 0; ir < nt; ir += MR)
                    W->k->fn(MIN(MR, nt - ir), MIN(NR, nc - jr), kp, Ve + ir * Cp, Cp, Bp,
                             Mb + (e * TB + ir) * QWINO_NCB + jr, QWINO_NCB);
            }
        }
        output_transform(W, Mb, nt, jc, nc, Y);
        stage(W, Y, t0, nt, jc, nc);
    }
}

size_t onnxc_qconv_wino_workspace_bytes(const onnxc_qconv_geom* g) {
    if (!onnxc_qconv_wino_ok(g)) return 0;
    return (size_t)(32 * g->N * ((g->OH + 1) / 2) * ((g->OW + 1) / 2) * ((g->C + 1) / 2 * 2));
}

int onnxc_qconv_wino(const onnxc_qconv_wino_kernel* kernel, const onnxc_qconv_geom* g, const void* x,
                     int x_signed, int32_t x_zero_point, const int16_t* packedU, const int32_t* bias,
                     const onnxc_qgemm_output* out, const onnxc_qconv_residual* res, void* workspace) {
    wino_t W;
    if (!kernel || !g || !onnxc_qconv_wino_ok(g) || !x || !packedU || !out || !workspace) return ONNXC_QCONV_ERR_ARG;
    if (out->type < ONNXC_QOUT_S32 || out->type > ONNXC_QOUT_F32 || out->ldc < g->M) return ONNXC_QCONV_ERR_ARG;
    if (res && (out->type == ONNXC_QOUT_S32 || out->type == ONNXC_QOUT_F32 || !res->r || res->ldr < g->M))
        return ONNXC_QCONV_ERR_ARG;
    memset(&W, 0, sizeof W);
    W.k = kernel;
    W.g = g;
    W.x = (const uint8_t*)x;
    W.xp = g->x_pitch ? g->x_pitch : g->C;
    W.xz = x_zero_point;
    W.x_signed = x_signed;
    W.Cp = (g->C + 1) / 2 * 2;
    W.TH = (g->OH + 1) / 2;
    W.TW = (g->OW + 1) / 2;
    W.tiles = g->N * W.TH * W.TW;
    W.np = (g->M + NR - 1) / NR;
    W.U = packedU;
    W.bias = bias;
    W.out = out;
    W.res = res;
    W.V = (int16_t*)workspace;
    {   /* tile blocks of at most QWINO_TB tiles, equal sizes rounded up to MR */
        const int64_t n = (W.tiles + QWINO_TB - 1) / QWINO_TB, per = (W.tiles + n - 1) / n;
        W.tb = MIN((int64_t)QWINO_TB, (per + MR - 1) / MR * MR);
    }
    {
        const double macs = (double)W.tiles * 16.0 * (double)W.Cp * (double)g->M;
        const int64_t nin = (W.tiles + QWINO_TB - 1) / QWINO_TB;
        const int64_t ntask = (W.tiles + W.tb - 1) / W.tb * ((g->M + QWINO_NCB - 1) / QWINO_NCB);
        onnxc_parallel_for(nin, nin > 1 && macs >= (double)(1 << 20), in_tasks, &W);
        onnxc_parallel_for(ntask, ntask > 1 && macs >= (double)(1 << 20), wino_tasks, &W);
    }
    return ONNXC_QCONV_OK;
}
