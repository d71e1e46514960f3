/* AVX-512 row kernels of QuantizeLinear / DequantizeLinear (contract: quant_ref.c, whose generic
 * twins they match bit for bit). 16 elements per step, the tail under a mask.
 * vmaxps returns its second operand when the first is NaN: max(v, lo) sends NaN to lo, as the
 * portable `v > lo ? v : lo`. The conversion to int32 rounds half to even (MXCSR default). */
#include "onnxc_quant.h"
#include "q_isa.h"

#if defined(ONNXC_Q_AVX512)
#include <immintrin.h>

/* 16 quantized int32 lanes of x[0..16) under mask m. */
Q_INLINE __m512i q16(const float* x, const float* scale, const float* zp, int64_t step,
                     __mmask16 m, __m512 s0, __m512 lo0, __m512 hi0, __m512 z0, float qmin,
                     float qmax) {
    __m512 v = _mm512_maskz_loadu_ps(m, x), s = s0, lo = lo0, hi = hi0, z = z0;
    if (step) {
        s = _mm512_maskz_loadu_ps(m, scale);
        z = zp ? _mm512_maskz_loadu_ps(m, zp) : _mm512_setzero_ps();
        lo = _mm512_sub_ps(_mm512_set1_ps(qmin), z);
        hi = _mm512_sub_ps(_mm512_set1_ps(qmax), z);
    }
    v = _mm512_div_ps(v, s);
    v = _mm512_max_ps(v, lo);
    v = _mm512_min_ps(v, hi);
    v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm512_cvtps_epi32(_mm512_add_ps(v, z));
}

#define Q_AVX512(NAME, T, STORE)                                                                \
    void NAME(const float* x, T* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step, float qmin, float qmax) {                                           \
        const float zs = zp ? zp[0] : 0.0f;                                                     \
        const __m512 s0 = _mm512_set1_ps(scale[0]), z0 = _mm512_set1_ps(zs);                    \
        const __m512 lo0 = _mm512_set1_ps(qmin - zs), hi0 = _mm512_set1_ps(qmax - zs);          \
        int64_t i;                                                                              \
        for (i = 0; i < n; i += 16) {                                                           \
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF                                 \
                                            : (__mmask16)((1u << (n - i)) - 1u);               \
            const __m512i q = q16(x + i, scale + i * step, zp ? zp + i * step : NULL, step, m,  \
                                  s0, lo0, hi0, z0, qmin, qmax);                               \
            STORE(y + i, m, q);                                                                 \
        }                                                                                       \
    }

#define ST8(p, m, q) _mm512_mask_cvtepi32_storeu_epi8((void*)(p), m, q)
#define ST16(p, m, q) _mm512_mask_cvtepi32_storeu_epi16((void*)(p), m, q)

Q_AVX512(onnxc_f32u8_quantize_row__avx512, uint8_t, ST8)
Q_AVX512(onnxc_f32s8_quantize_row__avx512, int8_t, ST8)
Q_AVX512(onnxc_f32u16_quantize_row__avx512, uint16_t, ST16)
Q_AVX512(onnxc_f32s16_quantize_row__avx512, int16_t, ST16)

#define LD_U8(p, m) _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, (const void*)(p)))
#define LD_S8(p, m) _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void*)(p)))
#define LD_U16(p, m) _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const void*)(p)))
#define LD_S16(p, m) _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, (const void*)(p)))

#define DQ_AVX512(NAME, T, LOAD)                                                                \
    void NAME(const T* x, float* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step) {                                                                   \
        const __m512 s0 = _mm512_set1_ps(scale[0]);                                             \
        const __m512 z0 = _mm512_set1_ps(zp ? zp[0] : 0.0f);                                    \
        int64_t i;                                                                              \
        for (i = 0; i < n; i += 16) {                                                           \
            const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF                                 \
                                            : (__mmask16)((1u << (n - i)) - 1u);               \
            __m512 s = s0, z = z0;                                                              \
            const __m512 v = _mm512_cvtepi32_ps(LOAD(x + i, m));                                \
            if (step) {                                                                         \
                s = _mm512_maskz_loadu_ps(m, scale + i);                                        \
                z = zp ? _mm512_maskz_loadu_ps(m, zp + i) : _mm512_setzero_ps();                \
            }                                                                                   \
            _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_sub_ps(v, z), s));             \
        }                                                                                       \
    }

DQ_AVX512(onnxc_u8f32_dequantize_row__avx512, uint8_t, LD_U8)
DQ_AVX512(onnxc_s8f32_dequantize_row__avx512, int8_t, LD_S8)
DQ_AVX512(onnxc_u16f32_dequantize_row__avx512, uint16_t, LD_U16)
DQ_AVX512(onnxc_s16f32_dequantize_row__avx512, int16_t, LD_S16)

void onnxc_f32_minmax_row__avx512(const float* x, int64_t n, float* mn, float* mx) {
    __m512 lo = _mm512_set1_ps(*mn), hi = _mm512_set1_ps(*mx);
    int64_t i;
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        lo = _mm512_min_ps(v, lo); /* NaN in v keeps lo, as the portable loop */
        hi = _mm512_max_ps(v, hi);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        lo = _mm512_mask_min_ps(lo, m, v, lo);
        hi = _mm512_mask_max_ps(hi, m, v, hi);
    }
    *mn = _mm512_reduce_min_ps(lo);
    *mx = _mm512_reduce_max_ps(hi);
}

#endif
