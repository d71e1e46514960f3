/* QLinearAdd and QLinearMul of two same-shape 8-bit tensors (the residual Add of quantized CNNs), onnxruntime's
 * formula (compiler/ops/quant.py qladd_params): t = fmaf(a, ra, fmaf(b, rb, fx)), then clamped to
 * [qmin, qmax] (NaN -> qmin), rounded half to even; t >= 2^31 -> qmin (cvt_sat). The generated
 * loop of compiler/providers/c/quant.py computes the same expression for broadcast shapes; GCC
 * does not vectorize it (its selects may trap under -ftrapping-math), so the element-for-element
 * case, ~1/4 of ResNet-18's int8 time outside the convolutions, comes here: 16 elements per
 * step on AVX2, the scalar loop for the tail and for builds without AVX2. QLinearMul likewise
 * (EfficientNet's SiLU multiplies were 38% of its int8 time at target avx2 as generated loops).
 * Contract: onnxc_quant.h. */
#include <math.h>

#include "onnxc_quant.h"
#include "onnxc_threads.h"
#include "q_isa.h"

#if defined(ONNXC_Q_AVX2)
#include <immintrin.h>
#endif

#define QLADD_CHUNK 16384                /* elements per task (a multiple of 16) */
#define QLADD_PARALLEL_MIN (1 << 16)     /* elements before the tensor is split over threads */

typedef struct {
    const uint8_t *a, *b;
    uint8_t* y;
    int64_t n;
    float ra, rb, fx; /* QLinearMul: ra = ratio, fx = zc */
    int32_t za, zb;   /* QLinearMul's input zero points */
    int is_signed, mul;
} qladd_job;

/* t -> the output byte: clamped to [qmin, qmax] (NaN -> qmin), rounded half to even, t >= 2^31 -> qmin */
Q_INLINE uint8_t qbin_store(float t, float lo, float hi, int is_signed) {
    float c = t > lo ? t : lo; /* NaN -> lo */
    int32_t q;
    c = c < hi ? c : hi;
    q = t < 2147483648.0f ? (int32_t)onnxc_q_rne(c) : (int32_t)lo;
    return is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
}

/* QLinearAdd: t = fmaf(a, ra, fmaf(b, rb, fx)); QLinearMul: t = (float)((a - za) * (b - zb)) * ratio + zc,
 * as the generated loops */
static void qbin_scalar(const qladd_job* j, int64_t i, int64_t e) {
    const float lo = j->is_signed ? -128.0f : 0.0f, hi = j->is_signed ? 127.0f : 255.0f;
    for (; i < e; ++i) {
        const int32_t av = j->is_signed ? (int32_t)(int8_t)j->a[i] : (int32_t)j->a[i];
        const int32_t bv = j->is_signed ? (int32_t)(int8_t)j->b[i] : (int32_t)j->b[i];
        const float t = j->mul ? (float)((av - j->za) * (bv - j->zb)) * j->ra + j->fx
                               : fmaf((float)av, j->ra, fmaf((float)bv, j->rb, j->fx));
        j->y[i] = qbin_store(t, lo, hi, j->is_signed);
    }
}

#if defined(ONNXC_Q_AVX2)
/* clamp as qbin_store (max(NaN, lo) = lo), then 8 lanes -> int32 (cvtps2dq rounds half to even in the
 * default MXCSR) */
Q_INLINE __m256i qbin_cvt8(__m256 t, __m256 lo, __m256 hi, __m256 big) {
    __m256 c = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    c = _mm256_blendv_ps(lo, c, _mm256_cmp_ps(t, big, _CMP_LT_OQ));
    return _mm256_cvtps_epi32(c);
}

/* 8 lanes of t as the scalar loop (products of 8-bit values are exact in int32 and float) */
Q_INLINE __m256 qbin_t8(const qladd_job* j, __m256i a, __m256i b) {
    if (j->mul) {
        const __m256i p = _mm256_mullo_epi32(_mm256_sub_epi32(a, _mm256_set1_epi32(j->za)),
                                             _mm256_sub_epi32(b, _mm256_set1_epi32(j->zb)));
        return _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(j->ra)), _mm256_set1_ps(j->fx));
    }
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(a), _mm256_set1_ps(j->ra),
                           _mm256_fmadd_ps(_mm256_cvtepi32_ps(b), _mm256_set1_ps(j->rb), _mm256_set1_ps(j->fx)));
}

/* 16 bytes of 8-bit values -> two 8-lane int32 halves */
Q_INLINE void qbin_widen16(__m128i x, int is_signed, __m256i* lo, __m256i* hi) {
    if (is_signed) {
        *lo = _mm256_cvtepi8_epi32(x); *hi = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(x, x));
    } else {
        *lo = _mm256_cvtepu8_epi32(x); *hi = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(x, x));
    }
}

static int64_t qbin_avx2(const qladd_job* j, int64_t i, int64_t e) {
    const __m256 lo = _mm256_set1_ps(j->is_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(j->is_signed ? 127.0f : 255.0f);
    const __m256 big = _mm256_set1_ps(2147483648.0f);
    for (; i + 16 <= e; i += 16) {
        __m256i a0, a1, b0, b1, q0, q1, w;
        __m128i r;
        qbin_widen16(_mm_loadu_si128((const __m128i*)(const void*)(j->a + i)), j->is_signed, &a0, &a1);
        qbin_widen16(_mm_loadu_si128((const __m128i*)(const void*)(j->b + i)), j->is_signed, &b0, &b1);
        q0 = qbin_cvt8(qbin_t8(j, a0, b0), lo, hi, big);
        q1 = qbin_cvt8(qbin_t8(j, a1, b1), lo, hi, big);
        /* in range already: the packs only narrow; permute undoes their 128-bit lane order */
        w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        r = j->is_signed ? _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1))
                         : _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i*)(void*)(j->y + i), r);
    }
    return i;
}
#endif

static void qladd_tasks(void* ctx, int64_t t0, int64_t t1) {
    const qladd_job* j = (const qladd_job*)ctx;
    int64_t i = t0 * QLADD_CHUNK;
    const int64_t e = t1 * QLADD_CHUNK < j->n ? t1 * QLADD_CHUNK : j->n;
#if defined(ONNXC_Q_AVX2)
    i = qbin_avx2(j, i, e);
#endif
    qbin_scalar(j, i, e);
}

static void qbin_run(qladd_job* j) {
    const int64_t tasks = (j->n + QLADD_CHUNK - 1) / QLADD_CHUNK;
    if (j->n > 0) onnxc_parallel_for(tasks, tasks > 1 && j->n >= QLADD_PARALLEL_MIN, qladd_tasks, j);
}

void onnxc_qlinear_add_8(const void* a, const void* b, void* y, int64_t n, float ra, float rb, float fx,
                         int is_signed) {
    qladd_job j = {0};
    j.a = (const uint8_t*)a;
    j.b = (const uint8_t*)b;
    j.y = (uint8_t*)y;
    j.n = n;
    j.ra = ra;
    j.rb = rb;
    j.fx = fx;
    j.is_signed = is_signed != 0;
    qbin_run(&j);
}

void onnxc_qlinear_mul_8(const void* a, const void* b, void* y, int64_t n, float ratio, float zc, int32_t za,
                         int32_t zb, int is_signed) {
    qladd_job j = {0};
    j.a = (const uint8_t*)a;
    j.b = (const uint8_t*)b;
    j.y = (uint8_t*)y;
    j.n = n;
    j.ra = ratio;
    j.fx = zc;
    j.za = za;
    j.zb = zb;
    j.is_signed = is_signed != 0;
    j.mul = 1;
    qbin_run(&j);
}
