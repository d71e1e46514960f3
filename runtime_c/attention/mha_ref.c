/* Fused multi-head self-attention (onnxc.MultiHeadAttention), float32.
 *
 * 1. One GEMM projects every token: QKV[rows, 3*H*D] = X[rows, E] W + bias (rows = B*S, in X's
 *    own token order, batch-major or sequence-major); the bias is added in its epilogue.
 * 2. Tasks of up to tile_rows query rows of one (batch, head): scores = scale * Q K^T with
 *    onnxc_sgemm straight from the strided QKV rows (no head transposes), then per row the
 *    additive mask, a plain softmax (as ONNX Softmax: an all -inf row gives NaN; exp is the
 *    vectorizable onnxc_expf) and, when the exported graph guarded it, NaN -> 0; finally
 *    Y = P V written into the head's columns of Y, each row's 1 / sum applied in the GEMM's
 *    epilogue.
 * Tasks are spread over `slots` scratch tiles (slot g runs tasks g, g + slots, ...).
 * onnxc_mha_attend is step 2 alone, for callers that project with weights packed at compile
 * time (onnxc_sgemm_packed).
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define MHA_PARALLEL_MIN_WORK (1 << 15)
#define MHA_LANES 16

size_t onnxc_mha_scratch_floats(const onnxc_mha_params* p) {
    return (size_t)(p->B * p->S * 3 * p->H * p->D + p->slots * p->tile_rows * (p->S + 1));
}

/* Softmax numerators of one score row in place: x = exp(x + mask - max), returning 1 / their
 * sum; the normalization is left to the P V product's epilogue (mha_rows_ep: D columns per row to
 * scale instead of S). As ONNX Softmax: a row whose sum is NaN (a NaN score, or no finite
 * maximum: all -inf or some +inf) is all NaN, and with nan_to_zero (the exported Where(IsNaN)
 * guard) all 0; a finite sum is >= 1 (the maximum contributes exp(0)), so no other row holds NaN.
 * Two passes (mask + max, exp + sum), each over MHA_LANES independent partial max/sums so that
 * the loops vectorize (a single float accumulator is a serial chain the compiler may not
 * reorder). */
static float mha_softmax_row(const onnxc_mha_params* p, float* x, const float* m) {
    const int64_t S = p->S;
    float mx = -INFINITY, sum = 0.0f, lm[MHA_LANES], ls[MHA_LANES];
    int64_t j;
    int l;
    for (l = 0; l < MHA_LANES; ++l) {
        lm[l] = -INFINITY;
        ls[l] = 0.0f;
    }
    if (m && p->mask_str[3] == 1) {
        for (j = 0; j + MHA_LANES <= S; j += MHA_LANES)
            for (l = 0; l < MHA_LANES; ++l) {
                const float v = x[j + l] + m[j + l];
                x[j + l] = v;
                lm[l] = v > lm[l] ? v : lm[l];
            }
    } else {
        if (m) /* a mask broadcast along the keys (stride 0) or strided */
            for (j = 0; j < S; ++j) x[j] += m[j * p->mask_str[3]];
        for (j = 0; j + MHA_LANES <= S; j += MHA_LANES)
            for (l = 0; l < MHA_LANES; ++l) lm[l] = x[j + l] > lm[l] ? x[j + l] : lm[l];
    }
    for (; j < S; ++j) {
        if (m && p->mask_str[3] == 1) x[j] += m[j];
        mx = x[j] > mx ? x[j] : mx;
    }
    for (l = 0; l < MHA_LANES; ++l) mx = lm[l] > mx ? lm[l] : mx;
    for (j = 0; j + MHA_LANES <= S; j += MHA_LANES)
        for (l = 0; l < MHA_LANES; ++l) {
            const float e = onnxc_expf(x[j + l] - mx);
            x[j + l] = e;
            ls[l] += e;
        }
    for (; j < S; ++j) {
        x[j] = onnxc_expf(x[j] - mx);
        sum += x[j];
    }
    for (l = 0; l < MHA_LANES; ++l) sum += ls[l];
    if (sum != sum) {
        const float fill = p->nan_to_zero ? 0.0f : NAN;
        for (j = 0; j < S; ++j) x[j] = fill;
        return 1.0f;
    }
    return 1.0f / sum;
}

/* SGEMM epilogue of P V: row i of the tile times its softmax factor ((const float*)arg)[i]. */
static void mha_rows_ep(const void* arg, float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0,
                        int64_t n) {
    const float* inv = (const float*)arg + i0;
    int64_t i, j;
    (void)j0;
    for (i = 0; i < m; ++i)
        for (j = 0; j < n; ++j) c[i * ldc + j] *= inv[i];
}

typedef struct {
    const onnxc_mha_params* p;
    const float *qkv, *mask;
    float *Y, *tiles;
} mha_job;

/* Slots [g0, g1): each slot owns one score tile and the tasks t = g mod slots. */
static void mha_slots(void* ctx, int64_t g0, int64_t g1) {
    const mha_job* job = (const mha_job*)ctx;
    const onnxc_mha_params* p = job->p;
    const float *qkv = job->qkv, *mask = job->mask;
    float *Y = job->Y, *tiles = job->tiles;
    const int64_t B = p->B, S = p->S, H = p->H, D = p->D, HD = p->H * p->D;
    const int64_t ts = p->seq_first ? B : 1; /* rows between consecutive tokens of one batch */
    const int64_t tiles_per_head = (S + p->tile_rows - 1) / p->tile_rows, tasks = B * H * tiles_per_head;
    int64_t g;
    for (g = g0; g < g1; ++g) {
        float* sc = tiles + g * (p->tile_rows * S + p->tile_rows);
        float* inv = sc + p->tile_rows * S; /* the tile rows' softmax factors */
        onnxc_sgemm_epilogue ep;
        int64_t t;
        ep.fn = mha_rows_ep;
        ep.arg = inv;
        for (t = g; t < tasks; t += p->slots) {
            const int64_t tile = t % tiles_per_head, bh = t / tiles_per_head, b = bh / H, h = bh % H;
            const int64_t i0 = tile * p->tile_rows;
            const int64_t r = S - i0 < p->tile_rows ? S - i0 : p->tile_rows;
            const int64_t base = p->seq_first ? b : b * S; /* row of token 0 of batch b */
            const int64_t ld = ts * 3 * HD;
            const float* q = qkv + (base + i0 * ts) * 3 * HD + h * D;
            const float* k = qkv + base * 3 * HD + HD + h * D;
            const float* v = qkv + base * 3 * HD + 2 * HD + h * D;
            float* y = Y + (base + i0 * ts) * HD + h * D;
            int64_t i;
            onnxc_sgemm(0, 1, r, S, D, p->scale, q, ld, k, ld, 0.0f, sc, S);
            for (i = 0; i < r; ++i) {
                const float* m = p->has_mask ? mask + b * p->mask_str[0] + h * p->mask_str[1] +
                                                   (i0 + i) * p->mask_str[2]
                                             : NULL;
                inv[i] = mha_softmax_row(p, sc + i * S, m);
            }
            onnxc_sgemm_ep(0, 0, r, D, S, 1.0f, sc, S, v, ld, 0.0f, y, ts * HD, &ep);
        }
    }
}

void onnxc_mha_attend(const onnxc_mha_params* p, const float* qkv, const float* mask, float* Y,
                      float* tiles) {
    const int64_t tasks = p->B * p->H * ((p->S + p->tile_rows - 1) / p->tile_rows);
    mha_job job;
    job.p = p; job.qkv = qkv; job.mask = mask; job.Y = Y; job.tiles = tiles;
    onnxc_parallel_for(p->slots, p->slots > 1 && tasks * p->tile_rows * p->S * p->D >= MHA_PARALLEL_MIN_WORK,
                       mha_slots, &job);
}

/* SGEMM epilogue: the projection bias, added to each block of QKV while it is in cache. */
static void mha_bias_ep(const void* arg, float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0,
                        int64_t n) {
    const float* bias = (const float*)arg + j0;
    int64_t i, j;
    (void)i0;
    for (i = 0; i < m; ++i)
        for (j = 0; j < n; ++j) c[i * ldc + j] += bias[j];
}

void onnxc_mha(const onnxc_mha_params* p, const float* X, const float* W, const float* bias,
               const float* mask, float* Y, float* scratch) {
    const int64_t rows = p->B * p->S, N = 3 * p->H * p->D;
    float* qkv = scratch;
    onnxc_sgemm_epilogue ep;
    ep.fn = mha_bias_ep;
    ep.arg = bias;
    onnxc_sgemm_ep(0, 0, rows, N, p->E, 1.0f, X, p->E, W, N, 0.0f, qkv, N, bias ? &ep : NULL);
    onnxc_mha_attend(p, qkv, mask, Y, scratch + rows * N);
}
