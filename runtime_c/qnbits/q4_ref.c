/* MatMulNBits portable kernels (__generic): the fp32 and int8-activation microkernels and the
 * per-block int8 quantizer of A. The SIMD twins (q4_avx2.c, q4_avx512.c) are tested against
 * these; contract in onnxc_quant.h and q4_impl.h. */
#include <math.h>
#include <string.h>

#include "q4_impl.h"

#define MR 4
#define NR 4

/* The kernels walk B 8 bytes at a time: 16 elements c..c+15 (c a multiple of 16) of one block,
 * half a group of the permuted A, whose 8 even elements sit at a0 = (c & ~31) + (c & 16) / 2 and 8
 * odd ones at a0 + 16. The 8-wide inner loops over partial sums vectorize. */
#define HALF 8

/* Rows [m0, m0 + mr) x columns [n0, n0 + nr) over all of K. */
static void f32_tile(const onnxc_q4_args* g, int64_t m0, int mr, int64_t n0, int nr) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    float acc[MR][NR][HALF];
    int64_t b, c;
    int i, j, t;
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j)
            for (t = 0; t < HALF; ++t) acc[i][j][t] = 0.0f;
    for (b = 0; b < kb; ++b) {
        for (j = 0; j < nr; ++j) {
            const float s = w->scales[(n0 + j) * kb + b], z = q4_zp(w, kb, n0 + j, b);
            const uint8_t* bp = w->B + (n0 + j) * bpr;
            for (c = b * bs; c < (b + 1) * bs; c += 16) {
                const int64_t a0 = (c & ~(int64_t)31) + ((c & 16) >> 1);
                float lo[HALF], hi[HALF];
                for (t = 0; t < HALF; ++t) { /* the spec's dequantization, (q - zp) * scale */
                    lo[t] = ((float)(bp[c / 2 + t] & 0xF) - z) * s;
                    hi[t] = ((float)(bp[c / 2 + t] >> 4) - z) * s;
                }
                for (i = 0; i < mr; ++i) {
                    const float* a = g->a + (m0 + i) * g->lda_p + a0;
                    for (t = 0; t < HALF; ++t) acc[i][j][t] += a[t] * lo[t] + a[16 + t] * hi[t];
                }
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) {
            float sum = 0.0f;
            for (t = 0; t < HALF; ++t) sum += acc[i][j][t];
            g->C[(m0 + i) * g->ldc + n0 + j] = sum + (w->bias ? w->bias[n0 + j] : 0.0f);
        }
}

void onnxc_q4f32_gemm_4x4__generic(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += MR)
        for (n = n0; n < n1; n += NR)
            f32_tile(g, m, (int)(g->M - m < MR ? g->M - m : MR), n, (int)(n1 - n < NR ? n1 - n : NR));
}

static void s8_tile(const onnxc_q4_args* g, int64_t m0, int mr, int64_t n0, int nr) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    float acc[MR][NR];
    int64_t b, c;
    int i, j, t;
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) acc[i][j] = 0.0f;
    for (b = 0; b < kb; ++b) {
        for (j = 0; j < nr; ++j) {
            const uint8_t* bp = w->B + (n0 + j) * bpr;
            const float sb = w->scales[(n0 + j) * kb + b];
            for (i = 0; i < mr; ++i) {
                const int8_t* a = g->qa + (m0 + i) * g->lda_p;
                int32_t dot[HALF] = {0, 0, 0, 0, 0, 0, 0, 0}, d = 0;
                for (c = b * bs; c < (b + 1) * bs; c += 16) {
                    const int64_t a0 = (c & ~(int64_t)31) + ((c & 16) >> 1);
                    for (t = 0; t < HALF; ++t)
                        dot[t] += a[a0 + t] * (bp[c / 2 + t] & 0xF) + a[a0 + 16 + t] * (bp[c / 2 + t] >> 4);
                }
                for (t = 0; t < HALF; ++t) d += dot[t];
                acc[i][j] += (float)d * (g->qa_scale[(m0 + i) * kb + b] * sb);
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j)
            g->C[(m0 + i) * g->ldc + n0 + j] =
                acc[i][j] + q4_zp_term(w, kb, n0 + j, g->qa_bsum + (m0 + i) * kb) +
                (w->bias ? w->bias[n0 + j] : 0.0f);
}

void onnxc_q4s8_gemm_4x4__generic(const onnxc_q4_args* g, int64_t n0, int64_t n1) {
    int64_t m, n;
    for (m = 0; m < g->M; m += MR)
        for (n = n0; n < n1; n += NR)
            s8_tile(g, m, (int)(g->M - m < MR ? g->M - m : MR), n, (int)(n1 - n < NR ? n1 - n : NR));
}

/* MLAS's rounding: scale = amax / 127, q = round_half_even(a * (127 / amax)) (one division, as
 * MLAS, not a * (1 / scale)); |a * 127 / amax| <= 127 + 1 ulp, so no clamp is needed. The block
 * is padded with zeros to `block` elements. */
void onnxc_f32s8_qblock_row__generic(const float* a, int64_t K, int64_t block, int8_t* q,
                                     float* scale, float* bsum) {
    const int64_t kb = (K + block - 1) / block;
    int64_t b, k;
    for (b = 0; b < kb; ++b) {
        const int64_t k0 = b * block, n = K - k0 < block ? K - k0 : block;
        float amax = 0.0f, inv;
        int32_t sum = 0;
        for (k = 0; k < n; ++k) {
            const float v = fabsf(a[k0 + k]);
            amax = v > amax ? v : amax;
        }
        inv = amax != 0.0f ? 127.0f / amax : 0.0f;
        for (k = 0; k < n; ++k) {
            const float x = a[k0 + k] * inv;  /* NaN (a NaN, or an inf in the block) -> 0, as
                                                * MLAS's convert-and-truncate */
            const int8_t v = x == x ? (int8_t)(int32_t)onnxc_q_rne(x) : (int8_t)0;
            q[k0 + k] = v;
            sum += v;
        }
        for (; k < block; ++k) q[k0 + k] = 0;
        scale[b] = amax / 127.0f;
        bsum[b] = scale[b] * (float)sum;
    }
}
