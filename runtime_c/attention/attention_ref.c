/* ONNX Attention (opsets 23-25), float32.
 *
 * Work is split into tasks of up to tile_rows query rows of one (batch, query head). A task
 * computes its score tile S = (Q*s)(K*s)^T with onnxc_sgemm (past keys and new keys are two
 * column ranges of S, so no concatenation is needed), turns each row into probabilities in
 * place (softcap, additive bias, numerically stable softmax, fully-masked-row guard), then
 * Y = P V with two more GEMMs. Tasks are spread over `slots` scratch tiles: slot g runs tasks
 * g, g + slots, ... so the tiles never need to know the thread count.
 *
 * The bias of a (query i, key j) pair follows the reference: the mask value (0 when there is
 * no mask; a bool mask gives 0 / -inf; keys past the mask's last dimension get -inf), plus -inf
 * when the causal frontier, the sliding window or nonpad_kv_seqlen excludes the key. A row
 * whose bias is -inf everywhere is "fully masked": its probabilities are zero (so Y = 0 V).
 */
#include <math.h>
#include <string.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define ATTN_PARALLEL_MIN_WORK (1 << 15)
/* nonpad_kv_seqlen is data: clamping it keeps the index arithmetic far from overflow without
 * changing any result (window sizes are limited to 2^30 by the compiler, lengths are small). */
#define ATTN_NONPAD_MAX ((int64_t)1 << 40)

size_t onnxc_attention_scratch_floats(const onnxc_attention_params* p) {
    return (size_t)(p->slots * p->tile_rows * (p->P + p->Skv));
}

/* Keys [*lo, *hi) pass causality, the window and padding for a query at block index i (the
 * constraints are all bounds on j - (i + offset)); *lo >= *hi when none does. */
static void attn_key_range(const onnxc_attention_params* p, int64_t i, int64_t offset,
                           int64_t nonpad, int64_t T, int64_t* lo, int64_t* hi) {
    const int64_t pos = i + offset; /* the query's absolute position */
    int64_t a = 0, z = T;
    if (p->is_causal && pos + 1 < z) z = pos + 1;
    if (p->right_window >= 0 && pos + p->right_window + 1 < z) z = pos + p->right_window + 1;
    if (p->left_window >= 0 && pos - p->left_window > a) a = pos - p->left_window;
    if (nonpad >= 0 && nonpad < z) z = nonpad;
    *lo = a;
    *hi = z;
}

/* Softmax of x[0..T) in place, in double when p->softmax_f64. As in the reference, an all -inf
 * row gives zeros (not 0/0) and a NaN anywhere makes the whole row NaN. Past the all -inf test
 * the max m is finite, +inf or NaN, so a -inf entry's exp(x - m) is exactly 0 (or NaN when m is:
 * then the sum is NaN and so is every quotient anyway). */
static void attn_softmax_row(const onnxc_attention_params* p, float* x, int64_t T) {
    float m = -INFINITY;
    int64_t j;
    for (j = 0; j < T; ++j)
        if (x[j] > m || x[j] != x[j]) {
            m = x[j];
            if (m != m) break;
        }
    if (m == -INFINITY) {
        for (j = 0; j < T; ++j) x[j] = 0.0f;
        return;
    }
    if (p->softmax_f64) {
        double sum = 0.0;
        for (j = 0; j < T; ++j) sum += x[j] == -INFINITY ? 0.0 : exp((double)x[j] - (double)m);
        if (sum == 0.0) sum = 1.0;
        for (j = 0; j < T; ++j)
            x[j] = (float)((x[j] == -INFINITY ? 0.0 : exp((double)x[j] - (double)m)) / sum);
    } else {
        double sum = 0.0;
        float inv;
        for (j = 0; j < T; ++j) {
            x[j] = x[j] == -INFINITY ? 0.0f : expf(x[j] - m); /* masked keys skip the expf */
            sum += x[j];
        }
        inv = (float)sum;
        if (inv == 0.0f) inv = 1.0f;
        for (j = 0; j < T; ++j) x[j] = x[j] / inv;
    }
}

/* Row i of head (b, h): raw scores in s[0..T) become probabilities; QK row written per mode.
 * x_j = softcap(s_j) + bias_j, where bias_j is the mask value (0 without a mask, -inf past its
 * end) plus -inf outside the structural key range: the same IEEE sums as the reference's, so
 * +inf/NaN mask values propagate as there. */
static void attn_row(const onnxc_attention_params* p, int64_t b, int64_t h, int64_t i,
                     const void* mask, const int64_t* nonpad_kv_seqlen, float* s, float* qk) {
    const int64_t T = p->P + p->Skv, M = p->mask_len;
    const float cap = p->softcap, NEG = -INFINITY;
    const int mode = p->qk_mode;
    int64_t offset = p->P, nonpad = -1, lo, hi, j;
    int all_masked;
    if (nonpad_kv_seqlen) {
        nonpad = nonpad_kv_seqlen[b];
        nonpad = nonpad < 0 ? 0 : (nonpad > ATTN_NONPAD_MAX ? ATTN_NONPAD_MAX : nonpad);
        offset = nonpad - p->Sq; /* external cache: the query block ends at the last valid key */
    }
    attn_key_range(p, i, offset, nonpad, T, &lo, &hi);
    if (lo > hi) lo = hi = 0;
    if (qk && mode == 0) memcpy(qk, s, (size_t)T * sizeof(float));
    if (cap > 0.0f)
        for (j = 0; j < T; ++j) s[j] = cap * tanhf(s[j] / cap);
    if (qk && mode == 1) memcpy(qk, s, (size_t)T * sizeof(float));
    if (p->mask_kind == ONNXC_ATTN_MASK_NONE) {
        for (j = 0; j < lo; ++j) s[j] += NEG;
        for (j = hi; j < T; ++j) s[j] += NEG;
        all_masked = lo >= hi;
    } else {
        const int64_t mo = b * p->mask_str[0] + h * p->mask_str[1] + i * p->mask_str[2];
        const int64_t mhi = hi < M ? hi : M; /* keys [lo, mhi) are allowed and inside the mask */
        all_masked = 1;
        for (j = 0; j < lo; ++j) s[j] += NEG;
        for (j = mhi > lo ? mhi : lo; j < T; ++j) s[j] += NEG;
        if (p->mask_kind == ONNXC_ATTN_MASK_BOOL) {
            const uint8_t* mb = (const uint8_t*)mask + mo;
            for (j = lo; j < mhi; ++j) {
                const int keep = mb[j] != 0;
                s[j] += keep ? 0.0f : NEG;
                all_masked &= !keep;
            }
        } else {
            const float* mf = (const float*)mask + mo;
            /* outside [lo, hi) the bias is mask + -inf: -inf unless the mask is +inf or NaN */
            for (j = 0; j < lo; ++j) all_masked &= (j < M ? mf[j] : NEG) + NEG == NEG;
            for (j = hi; j < M; ++j) all_masked &= mf[j] + NEG == NEG;
            for (j = 0; j < lo && j < M; ++j) s[j] += mf[j]; /* (s + -inf) + m: same as s + (m + -inf) */
            for (j = hi; j < M; ++j) s[j] += mf[j];
            for (j = lo; j < mhi; ++j) {
                s[j] += mf[j];
                all_masked &= mf[j] == NEG;
            }
        }
    }
    if (qk && mode == 2) memcpy(qk, s, (size_t)T * sizeof(float));
    attn_softmax_row(p, s, T);
    if (all_masked) memset(s, 0, (size_t)T * sizeof(float));
    if (qk && mode == 3) memcpy(qk, s, (size_t)T * sizeof(float));
}

/* One task: query rows [i0, i0 + r) of head (b, h). */
static void attn_task(const onnxc_attention_params* p, int64_t b, int64_t h, int64_t i0, int64_t r,
                      const float* Q, const float* K, const float* V, const void* mask,
                      const float* past_key, const float* past_value,
                      const int64_t* nonpad_kv_seqlen, float* Y, float* QK, float* S) {
    const int64_t T = p->P + p->Skv, P = p->P;
    const int64_t hk = h / (p->Hq / p->Hkv); /* GQA: each KV head serves consecutive Q heads */
    const float* q = Q + b * p->q_str[0] + h * p->q_str[1] + i0 * p->q_str[2];
    const float* k = K + b * p->k_str[0] + hk * p->k_str[1];
    const float* v = V + b * p->v_str[0] + hk * p->v_str[1];
    float* y = Y + b * p->y_str[0] + h * p->y_str[1] + i0 * p->y_str[2];
    int64_t t;
    if (P > 0)
        onnxc_sgemm(0, 1, r, P, p->D, p->alpha, q, p->q_str[2],
                    past_key + (b * p->Hkv + hk) * P * p->D, p->D, 0.0f, S, T);
    onnxc_sgemm(0, 1, r, p->Skv, p->D, p->alpha, q, p->q_str[2], k, p->k_str[2], 0.0f, S + P, T);
    for (t = 0; t < r; ++t) {
        float* qk = QK ? QK + ((b * p->Hq + h) * p->Sq + i0 + t) * T : NULL;
        attn_row(p, b, h, i0 + t, mask, nonpad_kv_seqlen, S + t * T, qk);
    }
    if (P > 0)
        onnxc_sgemm(0, 0, r, p->Dv, P, 1.0f, S, T, past_value + (b * p->Hkv + hk) * P * p->Dv,
                    p->Dv, 0.0f, y, p->y_str[2]);
    onnxc_sgemm(0, 0, r, p->Dv, p->Skv, 1.0f, S + P, T, v, p->v_str[2], P > 0 ? 1.0f : 0.0f, y,
                p->y_str[2]);
}

/* present[b, hk] = concat(past[b, hk], X[b, hk]) along the sequence, X strided. */
static void attn_concat(const onnxc_attention_params* p, const float* past, const float* X,
                        const int64_t* x_str, int64_t width, float* present) {
    const int64_t T = p->P + p->Skv;
    int64_t b, hk, j;
    for (b = 0; b < p->B; ++b)
        for (hk = 0; hk < p->Hkv; ++hk) {
            float* dst = present + (b * p->Hkv + hk) * T * width;
            if (p->P > 0)
                memcpy(dst, past + (b * p->Hkv + hk) * p->P * width,
                       (size_t)(p->P * width) * sizeof(float));
            for (j = 0; j < p->Skv; ++j)
                memcpy(dst + (p->P + j) * width, X + b * x_str[0] + hk * x_str[1] + j * x_str[2],
                       (size_t)width * sizeof(float));
        }
}

void onnxc_attention(const onnxc_attention_params* p, const float* Q, const float* K,
                     const float* V, const void* mask, const float* past_key,
                     const float* past_value, const int64_t* nonpad_kv_seqlen, float* Y,
                     float* present_key, float* present_value, float* QK, float* scratch) {
    const int64_t T = p->P + p->Skv;
    const int64_t tiles = (p->Sq + p->tile_rows - 1) / p->tile_rows;
    const int64_t tasks = p->B * p->Hq * tiles;
    const int parallel = p->slots > 1 && tasks * T * (p->D + p->Dv) * p->tile_rows >= ATTN_PARALLEL_MIN_WORK;
    int64_t g;
    if (present_key) attn_concat(p, past_key, K, p->k_str, p->D, present_key);
    if (present_value) attn_concat(p, past_value, V, p->v_str, p->Dv, present_value);
    if (tasks <= 0 || T <= 0) return;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (g = 0; g < p->slots; ++g) {
        float* S = scratch + g * p->tile_rows * T;
        int64_t t;
        for (t = g; t < tasks; t += p->slots) {
            const int64_t tile = t % tiles, bh = t / tiles;
            const int64_t i0 = tile * p->tile_rows;
            const int64_t r = p->Sq - i0 < p->tile_rows ? p->Sq - i0 : p->tile_rows;
            attn_task(p, bh / p->Hq, bh % p->Hq, i0, r, Q, K, V, mask, past_key, past_value,
                      nonpad_kv_seqlen, Y, QK, S);
        }
    }
}
