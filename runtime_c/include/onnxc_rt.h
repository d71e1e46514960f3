/* onnxc runtime: the one header generated code includes.
 * Portable C99; kernels are declared in onnxc_kernels.h, the build's ISA row (macros, tiles,
 * NCHWc block) in onnxc_isa.h, generated from compiler/isa.py. */
#ifndef ONNXC_RT_H
#define ONNXC_RT_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_half.h"
#include "onnxc_threads.h"

/* Status codes returned by <prefix>_run(). */
#define ONNXC_OK 0
#define ONNXC_ERR_NULL 1      /* a required pointer was NULL */
#define ONNXC_ERR_ALIGN 2     /* arena or weights not 64-byte aligned */
#define ONNXC_ERR_FALLBACK 3  /* the model has nodes only the Python fallback provider runs */
#define ONNXC_ERR_VALUE 4     /* a runtime input value (TopK k, OneHot depth, Range bounds, a window
                               * size, a CumSum axis) disagrees with what the module was compiled for */
#define ONNXC_ERR_INDEX 5     /* a runtime index (Gather, Scatter*, GatherND, a position id, ...) is
                               * outside the tensor it addresses */

/* What the first failed runtime check of a run was (ONNXC_ERR_VALUE / ONNXC_ERR_INDEX): written
 * into the caller's arena at <PREFIX>_ERROR_OFFSET, so concurrent runs (one arena each) never share
 * it.  ``check`` numbers the checks listed in <prefix>.h (and manifest.json's "checks"); ``value``
 * is the offending value, ``pos`` its row-major element position in the tensor it was read from
 * (-1: a scalar). */
typedef struct onnxc_error {
    int64_t check, value, pos, status;
} onnxc_error;

#if defined(__GNUC__) || defined(__clang__)
#define ONNXC_COLD __attribute__((cold, noinline, unused))
#else
#define ONNXC_COLD
#endif

/* Records a failed check unless one already failed in this run (the first one is reported). */
static ONNXC_COLD void onnxc_fail(onnxc_error* e, int* status, int code, int64_t check, int64_t value,
                                  int64_t pos) {
    if (*status != ONNXC_OK) return;
    e->check = check;
    e->value = value;
    e->pos = pos;
    e->status = code;
    *status = code;
}

#ifdef _OPENMP
#include <omp.h>
/* Loops of generated code that still use OpenMP fork only when the runtime's pool is idle and
 * no other run of the module is in flight (onnxc_threads.h). */
#define ONNXC_OMP_FOR _Pragma("omp parallel for schedule(static) if(onnxc_rt_omp_ok())")
#else
#define ONNXC_OMP_FOR
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ONNXC_RESTRICT __restrict__
#else
#define ONNXC_RESTRICT
#endif

/* float -> integer conversions, defined for every input: C leaves NaN and out-of-range values
 * undefined, so give what x86's truncating converts (and so onnxruntime's static_cast) give:
 * the "integer indefinite" INT_MIN of the 32- or 64-bit convert, narrowed modulo 2^n. */
static inline int32_t onnxc_f2i32(double x) {
    return (x != x || x >= 2147483648.0 || x < -2147483648.0) ? INT32_MIN : (int32_t)x;
}
static inline int64_t onnxc_f2i64(double x) {
    return (x != x || x >= 9223372036854775808.0 || x < -9223372036854775808.0) ? INT64_MIN : (int64_t)x;
}
static inline uint64_t onnxc_f2u64(double x) {
    if (x >= 9223372036854775808.0 && x < 18446744073709551616.0)
        return (uint64_t)(int64_t)(x - 9223372036854775808.0) ^ ((uint64_t)1 << 63);
    return (uint64_t)onnxc_f2i64(x);
}

/* Integer Pow with an integer exponent (e, e_neg: its magnitude's bits and sign), exact and
 * wrapping modulo 2^64 as numpy's integer power (narrower results are its low bits). A negative
 * exponent gives 1/b^|e| truncated toward 0, as onnxruntime (which the spec leaves undefined, and
 * onnx.reference refuses): 1, +-1 for b = -1, 0 for |b| > 1; 0^negative is infinite, given as the
 * type's "integer indefinite" minimum as onnxruntime's conversion gives. */
static inline uint64_t onnxc_ipow_bits(int64_t b, uint64_t e, int e_neg, uint64_t indefinite) {
    uint64_t r = 1, x = (uint64_t)b;
    if (e_neg) {
        if (b == 0) return indefinite;
        if (b == 1) return 1;
        return b == -1 ? ((e & 1) ? (uint64_t)0 - 1 : 1) : 0;
    }
    for (; e; e >>= 1) {
        if (e & 1) r *= x;
        x *= x;
    }
    return r;
}
static inline int32_t onnxc_ipow_i32(int64_t b, uint64_t e, int e_neg) {
    return (int32_t)(uint32_t)onnxc_ipow_bits(b, e, e_neg, (uint64_t)1 << 31);
}
static inline int64_t onnxc_ipow_i64(int64_t b, uint64_t e, int e_neg) {
    return (int64_t)onnxc_ipow_bits(b, e, e_neg, (uint64_t)1 << 63);
}

/* Seconds on a monotonic clock (profile counters). */
double onnxc_rt_now(void);

#endif
