/* Portable C99 Unique (ONNX opset 11) over the middle axis of X viewed as [outer, n, inner]: the
 * n slices X[:, j, :] are compared lexicographically (element order o*inner + i, as numpy.unique
 * with axis compares the flattened subarrays), and each distinct slice is kept once.
 *
 * A stable bottom-up merge sort of the slice indices puts equal slices next to each other with
 * the lowest index first, so a group's first member is its first occurrence (the "indices"
 * output) and its value is that occurrence's (-0.0 and 0.0 compare equal, as in numpy).  NaN
 * sorts after every number; NaN equals NaN without an axis (numpy.unique's equal_nan) and is
 * never equal with one (numpy compares the slices element by element).  sorted=1 lists the groups
 * in ascending order, sorted=0 in the order of their first occurrence.  O(n log n) slice compares.
 */
#include <string.h>
#include "onnxc_kernels.h"

enum { UQ_FLOAT = 1, UQ_UINT8 = 2, UQ_INT8 = 3, UQ_UINT16 = 4, UQ_INT16 = 5, UQ_INT32 = 6,
       UQ_INT64 = 7, UQ_BOOL = 9, UQ_DOUBLE = 11, UQ_UINT32 = 12, UQ_UINT64 = 13 };

/* a before b: numbers ascending, NaN last; (x != x) folds away for integer types. */
#define UQ_LESS(a, b) ((a) < (b) || ((a) == (a) && (b) != (b)))

#define UQ_DEFINE(NAME, T)                                                                      \
/* -1, 0, 1: slice a against slice b; *nan set when an element pair of equal rank is NaN */    \
static int NAME##_cmp(const T* X, int64_t outer, int64_t n, int64_t inner, int64_t a, int64_t b, \
                      int* nan) {                                                               \
    int64_t o, i;                                                                               \
    for (o = 0; o < outer; ++o)                                                                 \
        for (i = 0; i < inner; ++i) {                                                           \
            const T x = X[(o * n + a) * inner + i], y = X[(o * n + b) * inner + i];             \
            if (UQ_LESS(x, y)) return -1;                                                       \
            if (UQ_LESS(y, x)) return 1;                                                        \
            if (x != x) *nan = 1;                                                               \
        }                                                                                       \
    return 0;                                                                                   \
}                                                                                               \
static void NAME##_sort(const T* X, int64_t outer, int64_t n, int64_t inner, int64_t* perm,    \
                        int64_t* tmp) {                                                         \
    int64_t j, w, *src = perm, *dst = tmp, *t;                                                  \
    int nan = 0;                                                                                \
    for (j = 0; j < n; ++j) src[j] = j;                                                         \
    for (w = 1; w < n; w *= 2) {                                                                \
        int64_t lo;                                                                             \
        for (lo = 0; lo < n; lo += 2 * w) {                                                     \
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;        \
            int64_t a = lo, b = mid, d = lo;                                                    \
            /* take from the right run only when strictly before: stable */                     \
            while (a < mid && b < hi)                                                           \
                dst[d++] = NAME##_cmp(X, outer, n, inner, src[b], src[a], &nan) < 0 ? src[b++] : src[a++]; \
            while (a < mid) dst[d++] = src[a++];                                                \
            while (b < hi) dst[d++] = src[b++];                                                 \
        }                                                                                       \
        t = src; src = dst; dst = t;                                                            \
    }                                                                                           \
    if (src != perm) for (j = 0; j < n; ++j) perm[j] = src[j];                                  \
}                                                                                               \
static int64_t NAME(const T* X, int64_t outer, int64_t n, int64_t inner, int nan_equal,         \
                    int64_t* perm, int64_t* gid, int64_t* first, int64_t* cnt, int64_t* tmp) {  \
    int64_t t, g = -1;                                                                          \
    NAME##_sort(X, outer, n, inner, perm, tmp);                                                 \
    for (t = 0; t < n; ++t) {                                                                   \
        int nan = 0;                                                                            \
        if (t == 0 || NAME##_cmp(X, outer, n, inner, perm[t - 1], perm[t], &nan) != 0 ||        \
            (nan && !nan_equal)) {                                                              \
            ++g;                                                                                \
            first[g] = perm[t];                                                                 \
            cnt[g] = 0;                                                                         \
        }                                                                                       \
        gid[perm[t]] = g;                                                                       \
        ++cnt[g];                                                                               \
    }                                                                                           \
    return g + 1;                                                                               \
}

UQ_DEFINE(uq_f32, float)
UQ_DEFINE(uq_f64, double)
UQ_DEFINE(uq_i8, int8_t)
UQ_DEFINE(uq_u8, uint8_t)
UQ_DEFINE(uq_i16, int16_t)
UQ_DEFINE(uq_u16, uint16_t)
UQ_DEFINE(uq_i32, int32_t)
UQ_DEFINE(uq_u32, uint32_t)
UQ_DEFINE(uq_i64, int64_t)
UQ_DEFINE(uq_u64, uint64_t)

static int uq_size(int elem_type) {
    switch (elem_type) {
        case UQ_UINT8: case UQ_INT8: case UQ_BOOL: return 1;
        case UQ_UINT16: case UQ_INT16: return 2;
        case UQ_FLOAT: case UQ_INT32: case UQ_UINT32: return 4;
        case UQ_DOUBLE: case UQ_INT64: case UQ_UINT64: return 8;
        default: return 0;
    }
}

int64_t onnxc_unique(int elem_type, int64_t outer, int64_t n, int64_t inner, int sorted, int nan_equal,
                     const void* X, void* Y, int64_t* indices, int64_t* inverse, int64_t* counts,
                     int64_t cap, int64_t* scratch) {
    int64_t *perm = scratch, *gid = scratch + n, *first = scratch + 2 * n, *cnt = scratch + 3 * n;
    int64_t *tmp = scratch + 4 * n, *order = scratch + 5 * n; /* order: output slot -> group */
    int64_t u, r, j, o;
    const int64_t size = uq_size(elem_type);
    if (size == 0) return -1;
    switch (elem_type) {
        case UQ_FLOAT: u = uq_f32((const float*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_DOUBLE: u = uq_f64((const double*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_INT8: u = uq_i8((const int8_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_UINT8: case UQ_BOOL:
            u = uq_u8((const uint8_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_INT16: u = uq_i16((const int16_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_UINT16: u = uq_u16((const uint16_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_INT32: u = uq_i32((const int32_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_UINT32: u = uq_u32((const uint32_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        case UQ_INT64: u = uq_i64((const int64_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
        default: u = uq_u64((const uint64_t*)X, outer, n, inner, nan_equal, perm, gid, first, cnt, tmp); break;
    }
    if (u > cap) return u; /* the caller's buffers hold cap groups: nothing written */
    if (sorted) {
        for (r = 0; r < u; ++r) order[r] = r;
    } else { /* groups by first occurrence: walk the positions, a group's first member starts it */
        for (r = 0, j = 0; j < n; ++j)
            if (first[gid[j]] == j) order[r++] = gid[j];
    }
    for (r = 0; r < u; ++r) tmp[order[r]] = r; /* group -> output slot */
    for (r = 0; r < u; ++r) {
        const int64_t g = order[r];
        if (indices) indices[r] = first[g];
        if (counts) counts[r] = cnt[g];
        for (o = 0; o < outer; ++o)
            memcpy((char*)Y + ((o * u + r) * inner) * size, (const char*)X + ((o * n + first[g]) * inner) * size,
                   (size_t)(inner * size));
    }
    if (inverse)
        for (j = 0; j < n; ++j) inverse[j] = tmp[gid[j]];
    return u;
}
