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

static void qladd_scalar(const qladd_job* j, int64_t i, int64_t e) {
    const float lo = j->is_signed ? -128.0f : 0.0f, hi = j->is_signed ? 127.0f : 255.0f;
    for (; i < e; ++i) {
        const float av = j->is_signed ? (float)(int8_t)j->a[i] : (float)j->a[i];
        const float bv = j->is_signed ? (float)(int8_t)j->b[i] : (float)j->b[i];
        const float t = fmaf(av, j->ra, fmaf(bv, j->rb, j->fx));
        float c = t > lo ? t : lo; /* NaN -> lo */
        int32_t q;
        c = c < hi ? c : hi;
        q = t < 2147483648.0f ? (int32_t)onnxc_q_rne(c) : (int32_t)lo;
        j->y[i] = j->is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
    }
}

/* QLinearMul: t = (float)((a - za) * (b - zb)) * ratio + zc, as the generated loop */
static void qlmul_scalar(const qladd_job* j, int64_t i, int64_t e) {
    const float lo = j->is_signed ? -128.0f : 0.0f, hi = j->is_signed ? 127.0f : 255.0f;
    for (; i < e; ++i) {
        const int32_t av = j->is_signed ? (int32_t)(int8_t)j->a[i] : (int32_t)j->a[i];
        const int32_t bv = j->is_signed ? (int32_t)(int8_t)j->b[i] : (int32_t)j->b[i];
        const float p = (float)((av - j->za) * (bv - j->zb)) * j->ra;
        const float t = p + j->fx;
        float c = t > lo ? t : lo; /* NaN -> lo */
        int32_t q;
        c = c < hi ? c : hi;
        q = t < 2147483648.0f ? (int32_t)onnxc_q_rne(c) : (int32_t)lo;
        j->y[i] = j->is_signed ? (uint8_t)(int8_t)q : (uint8_t)q;
    }
}

#if defined(ONNXC_Q_AVX2)
/* 8 lanes of t -> int32, as the scalar loop (cvtps2dq rounds half to even in the default MXCSR) */
Q_INLINE __m256i qladd8(__m256 av, __m256 bv, __m256 ra, __m256 rb, __m256 fx, __m256 lo, __m256 hi,
                        __m256 big) {
    const __m256 t = _mm256_fmadd_ps(av, ra, _mm256_fmadd_ps(bv, rb, fx));
    __m256 c = _mm256_min_ps(_mm256_max_ps(t, lo), hi); /* max(NaN, lo) = lo */
    c = _mm256_blendv_ps(lo, c, _mm256_cmp_ps(t, big, _CMP_LT_OQ));
    return _mm256_cvtps_epi32(c);
}

static int64_t qladd_avx2(const qladd_job* j, int64_t i, int64_t e) {
    const __m256 ra = _mm256_set1_ps(j->ra), rb = _mm256_set1_ps(j->rb), fx = _mm256_set1_ps(j->fx);
    const __m256 lo = _mm256_set1_ps(j->is_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(j->is_signed ? 127.0f : 255.0f);
    const __m256 big = _mm256_set1_ps(2147483648.0f);
    for (; i + 16 <= e; i += 16) {
        const __m128i xa = _mm_loadu_si128((const __m128i*)(const void*)(j->a + i));
        const __m128i xb = _mm_loadu_si128((const __m128i*)(const void*)(j->b + i));
        __m256i a0, a1, b0, b1, q0, q1, w;
        __m128i r;
        if (j->is_signed) {
            a0 = _mm256_cvtepi8_epi32(xa); a1 = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(xa, xa));
            b0 = _mm256_cvtepi8_epi32(xb); b1 = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(xb, xb));
        } else {
            a0 = _mm256_cvtepu8_epi32(xa); a1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(xa, xa));
            b0 = _mm256_cvtepu8_epi32(xb); b1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(xb, xb));
        }
        q0 = qladd8(_mm256_cvtepi32_ps(a0), _mm256_cvtepi32_ps(b0), ra, rb, fx, lo, hi, big);
        q1 = qladd8(_mm256_cvtepi32_ps(a1), _mm256_cvtepi32_ps(b1), ra, rb, fx, lo, hi, big);
        /* in range already: the packs only narrow; permute undoes their 128-bit lane order */
        w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
        r = j->is_signed ? _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1))
                         : _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
        _mm_storeu_si128((__m128i*)(void*)(j->y + i), r);
    }
    return i;
}

/* 8 lanes of QLinearMul's t -> int32 (products of 8-bit values are exact in int32 and float) */
Q_INLINE __m256i qlmul8(__m256i a, __m256i b, __m256i za, __m256i zb, __m256 ratio, __m256 zc, __m256 lo,
                        __m256 hi, __m256 big) {
    const __m256i p = _mm256_mullo_epi32(_mm256_sub_epi32(a, za), _mm256_sub_epi32(b, zb));
    const __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(p), ratio), zc);
    __m256 c = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
    c = _mm256_blendv_ps(lo, c, _mm256_cmp_ps(t, big, _CMP_LT_OQ));
    return _mm256_cvtps_epi32(c);
}

static int64_t qlmul_avx2(const qladd_job* j, int64_t i, int64_t e) {
    const __m256 ratio = _mm256_set1_ps(j->ra), zc = _mm256_set1_ps(j->fx);
    const __m256 lo = _mm256_set1_ps(j->is_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(j->is_signed ? 127.0f : 255.0f);
    const __m256 big = _mm256_set1_ps(2147483648.0f);
    const __m256i za = _mm256_set1_epi32(j->za), zb = _mm256_set1_epi32(j->zb);
    for (; i + 16 <= e; i += 16) {
        const __m128i xa = _mm_loadu_si128((const __m128i*)(const void*)(j->a + i));
        const __m128i xb = _mm_loadu_si128((const __m128i*)(const void*)(j->b + i));
        __m256i a0, a1, b0, b1, q0, q1, w;
        __m128i r;
        if (j->is_signed) {
            a0 = _mm256_cvtepi8_epi32(xa); a1 = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(xa, xa));
            b0 = _mm256_cvtepi8_epi32(xb); b1 = _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(xb, xb));
        } else {
            a0 = _mm256_cvtepu8_epi32(xa); a1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(xa, xa));
            b0 = _mm256_cvtepu8_epi32(xb); b1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(xb, xb));
        }
        q0 = qlmul8(a0, b0, za, zb, ratio, zc, lo, hi, big);
        q1 = qlmul8(a1, b1, za, zb, ratio, zc, lo, hi, big);
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
    i = j->mul ? qlmul_avx2(j, i, e) : qladd_avx2(j, i, e);
#endif
    if (j->mul)
        qlmul_scalar(j, i, e);
    else
        qladd_scalar(j, i, e);
}

void onnxc_qlinear_add_8(const void* a, const void* b, void* y, int64_t n, float ra, float rb, float fx,
                         int is_signed) {
    qladd_job j;
    int64_t tasks;
    if (n <= 0) return;
    j.a = (const uint8_t*)a;
    j.b = (const uint8_t*)b;
    j.y = (uint8_t*)y;
    j.n = n;
    j.ra = ra;
    j.rb = rb;
    j.fx = fx;
    j.za = j.zb = 0;
    j.is_signed = is_signed != 0;
    j.mul = 0;
    tasks = (n + QLADD_CHUNK - 1) / QLADD_CHUNK;
    onnxc_parallel_for(tasks, tasks > 1 && n >= QLADD_PARALLEL_MIN, qladd_tasks, &j);
}

void onnxc_qlinear_mul_8(const void* a, const void* b, void* y, int64_t n, float ratio, float zc, int32_t za,
                         int32_t zb, int is_signed) {
    qladd_job j;
    int64_t tasks;
    if (n <= 0) return;
    j.a = (const uint8_t*)a;
    j.b = (const uint8_t*)b;
    j.y = (uint8_t*)y;
    j.n = n;
    j.ra = ratio;
    j.rb = 0.0f;
    j.fx = zc;
    j.za = za;
    j.zb = zb;
    j.is_signed = is_signed != 0;
    j.mul = 1;
    tasks = (n + QLADD_CHUNK - 1) / QLADD_CHUNK;
    onnxc_parallel_for(tasks, tasks > 1 && n >= QLADD_PARALLEL_MIN, qladd_tasks, &j);
}
