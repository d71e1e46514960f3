/* Portable C99 TfIdfVectorizer over int32/int64 tokens, as the ONNX reference (and onnxruntime)
 * count: per row and per skip distance d = 1 .. max_skip + 1, from every start position the
 * tokens x[s], x[s + d], x[s + 2d], ... are walked down the pool's trie (compiler/ops/text.py);
 * each node passed that ends an n-gram of at least the smallest size sought counts once into
 * its column. Unigrams do not depend on d: they are counted at d = 1 only. Then per column:
 * TF keeps the count, IDF gives weight (or 1) where the count is positive, TFIDF count * weight.
 * Counts are kept in the float output (the caller bounds them below 2^24: exact).
 */
#include "onnxc_kernels.h"

static int64_t tfidf_token(const int64_t* x64, const int32_t* x32, int64_t i) {
    return x64 ? x64[i] : (int64_t)x32[i];
}

/* The edge among [lo, hi) of sorted keys equal to tok, or -1. */
static int64_t tfidf_find(const int64_t* keys, int64_t lo, int64_t hi, int64_t tok) {
    const int64_t end = hi;
    while (lo < hi) {
        const int64_t mid = lo + (hi - lo) / 2;
        if (keys[mid] < tok) lo = mid + 1;
        else hi = mid;
    }
    return lo < end && keys[lo] == tok ? lo : -1;
}

void onnxc_tfidf(const onnxc_tfidf_params* p, const int64_t* x64, const int32_t* x32, const int64_t* first,
                 const int64_t* keys, const int64_t* column, const float* weights, float* Y) {
    const int64_t L = p->row_len;
    /* a distance of L - 1 or more leaves no second token: no n-gram beyond unigrams */
    const int64_t max_d = p->max_skip + 1 < (L > 1 ? L - 1 : 1) ? p->max_skip + 1 : (L > 1 ? L - 1 : 1);
    int64_t r, i;
    for (r = 0; r < p->rows; ++r) {
        float* y = Y + r * p->out_size;
        int64_t start_size = p->min_gram, d;
        const int64_t base = r * L;
        for (i = 0; i < p->out_size; ++i) y[i] = 0.0f;
        for (d = 1; d <= max_d; ++d) {
            int64_t s;
            for (s = 0; s < L; ++s) {
                int64_t node = 0, size = 1, item = s;
                if (s + d * (start_size - 1) >= L) break;
                while (first[node] < first[node + 1] && size <= p->max_gram && item < L) {
                    const int64_t e = tfidf_find(keys, first[node], first[node + 1],
                                                 tfidf_token(x64, x32, base + item));
                    if (e < 0) break;
                    node = e + 1;
                    if (size >= start_size && column[node] >= 0) y[column[node]] += 1.0f;
                    ++size;
                    item += d;
                }
            }
            if (start_size == 1) {
                ++start_size;
                if (start_size > p->max_gram) break;
            }
        }
        if (p->mode == ONNXC_TFIDF_IDF)
            for (i = 0; i < p->out_size; ++i) y[i] = y[i] > 0.0f ? (weights ? weights[i] : 1.0f) : 0.0f;
        else if (p->mode == ONNXC_TFIDF_TFIDF && weights)
            for (i = 0; i < p->out_size; ++i) y[i] *= weights[i];
    }
}
