/* Portable C99 TopK over the middle axis of [outer, n, inner], for every numeric element type.
 *
 * Each slice's indices are put in order by a stable bottom-up merge sort and the first k are
 * kept, so ties keep the lower index first, as the ONNX spec asks. NaN ranks above every number
 * (as onnxruntime and numpy do): first when largest, last otherwise. O(n log n) per slice.
 */
#include "onnxc_kernels.h"

/* ONNX TensorProto element types accepted by onnxc_topk. */
enum { TK_FLOAT = 1, TK_UINT8 = 2, TK_INT8 = 3, TK_UINT16 = 4, TK_INT16 = 5, TK_INT32 = 6,
       TK_INT64 = 7, TK_DOUBLE = 11, TK_UINT32 = 12, TK_UINT64 = 13 };

/* a ranks strictly above b; (x != x) is the NaN test and folds away for integer types. */
#define TK_ABOVE(a, b) ((a) > (b) || ((a) != (a) && (b) == (b)))
#define TK_BELOW(a, b) ((a) < (b) || ((a) == (a) && (b) != (b)))

#define TK_DEFINE(NAME, T)                                                                     \
static int NAME##_before(const T* p, int64_t inner, int largest, int64_t r, int64_t l) {        \
    const T a = p[r * inner], b = p[l * inner];                                                 \
    return largest ? TK_ABOVE(a, b) : TK_BELOW(a, b);                                           \
}                                                                                               \
static void NAME(int64_t outer, int64_t n, int64_t inner, int64_t k, int largest,               \
                 const T* X, T* V, int64_t* I, int64_t* scratch) {                              \
    int64_t o, i, j, w;                                                                         \
    for (o = 0; o < outer; ++o)                                                                 \
        for (i = 0; i < inner; ++i) {                                                           \
            const T* p = X + o * n * inner + i;                                                 \
            int64_t *src = scratch, *dst = scratch + n, *t;                                     \
            for (j = 0; j < n; ++j) src[j] = j;                                                 \
            for (w = 1; w < n; w *= 2) {                                                        \
                int64_t lo;                                                                     \
                for (lo = 0; lo < n; lo += 2 * w) {                                             \
                    int64_t mid = lo + w < n ? lo + w : n;                                      \
                    int64_t hi = lo + 2 * w < n ? lo + 2 * w : n;                               \
                    int64_t a = lo, b = mid, d = lo;                                            \
                    /* take from the right run only when strictly before: keeps it stable */    \
                    while (a < mid && b < hi)                                                   \
                        dst[d++] = NAME##_before(p, inner, largest, src[b], src[a]) ? src[b++] : src[a++]; \
                    while (a < mid) dst[d++] = src[a++];                                        \
                    while (b < hi) dst[d++] = src[b++];                                         \
                }                                                                               \
                t = src; src = dst; dst = t;                                                    \
            }                                                                                   \
            for (j = 0; j < k; ++j) {                                                           \
                const int64_t at = o * k * inner + j * inner + i;                               \
                I[at] = src[j];                                                                 \
                V[at] = p[src[j] * inner];                                                      \
            }                                                                                   \
        }                                                                                       \
}

TK_DEFINE(topk_f32, float)
TK_DEFINE(topk_f64, double)
TK_DEFINE(topk_i8, int8_t)
TK_DEFINE(topk_u8, uint8_t)
TK_DEFINE(topk_i16, int16_t)
TK_DEFINE(topk_u16, uint16_t)
TK_DEFINE(topk_i32, int32_t)
TK_DEFINE(topk_u32, uint32_t)
TK_DEFINE(topk_i64, int64_t)
TK_DEFINE(topk_u64, uint64_t)

int onnxc_topk(int elem_type, int64_t outer, int64_t n, int64_t inner, int64_t k, int largest,
               const void* X, void* V, int64_t* I, int64_t* scratch) {
    if (k < 0 || k > n) return 1;
#define TK_CASE(CODE, NAME, T)                                                                  \
    case CODE: NAME(outer, n, inner, k, largest, (const T*)X, (T*)V, I, scratch); return 0;
    switch (elem_type) {
        TK_CASE(TK_FLOAT, topk_f32, float)
        TK_CASE(TK_DOUBLE, topk_f64, double)
        TK_CASE(TK_INT8, topk_i8, int8_t)
        TK_CASE(TK_UINT8, topk_u8, uint8_t)
        TK_CASE(TK_INT16, topk_i16, int16_t)
        TK_CASE(TK_UINT16, topk_u16, uint16_t)
        TK_CASE(TK_INT32, topk_i32, int32_t)
        TK_CASE(TK_UINT32, topk_u32, uint32_t)
        TK_CASE(TK_INT64, topk_i64, int64_t)
        TK_CASE(TK_UINT64, topk_u64, uint64_t)
        default: return 1;
    }
#undef TK_CASE
}
