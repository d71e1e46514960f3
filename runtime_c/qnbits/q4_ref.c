/* MatMulNBits portable kernels (__generic): the fp32 and int8-activation microkernels and the
 * per-block int8 quantizer of A. The SIMD twins (q4_avx2.c, q4_avx512.c) are tested against
 * these; contract in onnxc_quant.h and q4_impl.h. */
#include <math.h>
#include <string.h>

#include "q4_impl.h"

#define MR 4
#define NR 4

/* Rows [m0, m0 + mr) x columns [n0, n0 + nr) over all of K. Byte j of a block holds elements
 * k = 2j (low nibble) and 2j + 1 (high), found in the permuted A at q4_pos(k) and q4_pos(k) + 16. */
static void f32_tile(const onnxc_q4_args* g, int64_t m0, int mr, int64_t n0, int nr) {
    const onnxc_q4_weights* w = g->w;
    const int64_t kb = q4_kb(w), bs = w->block, bpr = kb * bs / 2;
    float acc[MR][NR], lut[NR][16];
    int64_t b, k;
    int i, j, q;
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) acc[i][j] = 0.0f;
    for (b = 0; b < kb; ++b) {
        for (j = 0; j < nr; ++j) {  /* the 16 values a nibble dequantizes to in this block */
            const float s = w->scales[(n0 + j) * kb + b], z = q4_zp(w, kb, n0 + j, b);
            for (q = 0; q < 16; ++q) lut[j][q] = ((float)q - z) * s;
        }
        for (j = 0; j < nr; ++j) {
            const uint8_t* bp = w->B + (n0 + j) * bpr + b * bs / 2;
            for (i = 0; i < mr; ++i) {
                const float* a = g->a + (m0 + i) * g->lda_p;
                float s = acc[i][j];
                for (k = 0; k < bs; k += 2) {
                    const int64_t p = q4_pos(b * bs + k);
                    s += a[p] * lut[j][bp[k / 2] & 0xF];
                    s += a[p + 16] * lut[j][bp[k / 2] >> 4];
                }
                acc[i][j] = s;
            }
        }
    }
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j)
            g->C[(m0 + i) * g->ldc + n0 + j] = acc[i][j] + (w->bias ? w->bias[n0 + j] : 0.0f);
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
    int64_t b, k;
    int i, j;
    for (i = 0; i < mr; ++i)
        for (j = 0; j < nr; ++j) acc[i][j] = 0.0f;
    for (b = 0; b < kb; ++b) {
        for (j = 0; j < nr; ++j) {
            const uint8_t* bp = w->B + (n0 + j) * bpr + b * bs / 2;
            const float sb = w->scales[(n0 + j) * kb + b];
            for (i = 0; i < mr; ++i) {
                const int8_t* a = g->qa + (m0 + i) * g->lda_p;
                int32_t dot = 0;
                for (k = 0; k < bs; k += 2) {
                    const int64_t p = q4_pos(b * bs + k);
                    dot += a[p] * (bp[k / 2] & 0xF) + a[p + 16] * (bp[k / 2] >> 4);
                }
                acc[i][j] += (float)dot * (g->qa_scale[(m0 + i) * kb + b] * sb);
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
