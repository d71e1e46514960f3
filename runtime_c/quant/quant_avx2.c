/* AVX2 row kernels of QuantizeLinear / DequantizeLinear (contract: quant_ref.c, whose generic
 * twins they match bit for bit, and which finish their tails). 16 elements per step when
 * quantizing (two vectors packed together), 8 when dequantizing.
 * vmaxps returns its second operand when the first is NaN: max(v, lo) sends NaN to lo, as the
 * portable `v > lo ? v : lo`. */
#include "onnxc_quant.h"
#include "q_isa.h"

#if defined(ONNXC_Q_AVX2)
#include <immintrin.h>

/* 8 quantized int32 lanes of x[0..8). */
Q_INLINE __m256i q8(const float* x, const float* scale, const float* zp, int64_t step, __m256 s0,
                    __m256 lo0, __m256 hi0, __m256 z0, float qmin, float qmax) {
    __m256 v = _mm256_loadu_ps(x), s = s0, lo = lo0, hi = hi0, z = z0;
    if (step) {
        s = _mm256_loadu_ps(scale);
        z = zp ? _mm256_loadu_ps(zp) : _mm256_setzero_ps();
        lo = _mm256_sub_ps(_mm256_set1_ps(qmin), z);
        hi = _mm256_sub_ps(_mm256_set1_ps(qmax), z);
    }
    v = _mm256_div_ps(v, s);
    v = _mm256_max_ps(v, lo);
    v = _mm256_min_ps(v, hi);
    v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvtps_epi32(_mm256_add_ps(v, z));
}

/* 16 int32 (a, b) -> 16 int16 in order (the packs work within 128-bit lanes). */
#define PACK16(a, b, PACK) _mm256_permute4x64_epi64(PACK(a, b), 0xD8)
#define ST_S8(p, a, b)                                                                          \
    do {                                                                                        \
        const __m256i w = PACK16(a, b, _mm256_packs_epi32);                                     \
        _mm_storeu_si128((__m128i*)(void*)(p),                                                  \
                         _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1))); \
    } while (0)
#define ST_U8(p, a, b)                                                                          \
    do {                                                                                        \
        const __m256i w = PACK16(a, b, _mm256_packs_epi32);                                     \
        _mm_storeu_si128((__m128i*)(void*)(p),                                                  \
                         _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1))); \
    } while (0)
#define ST_S16(p, a, b) _mm256_storeu_si256((__m256i*)(void*)(p), PACK16(a, b, _mm256_packs_epi32))
#define ST_U16(p, a, b) _mm256_storeu_si256((__m256i*)(void*)(p), PACK16(a, b, _mm256_packus_epi32))

#define Q_AVX2(NAME, GENERIC, T, STORE)                                                         \
    void NAME(const float* x, T* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step, float qmin, float qmax) {                                           \
        const float zs = zp ? zp[0] : 0.0f;                                                     \
        const __m256 s0 = _mm256_set1_ps(scale[0]), z0 = _mm256_set1_ps(zs);                    \
        const __m256 lo0 = _mm256_set1_ps(qmin - zs), hi0 = _mm256_set1_ps(qmax - zs);          \
        int64_t i;                                                                              \
        for (i = 0; i + 16 <= n; i += 16) {                                                     \
            const int64_t o = i * step;                                                         \
            const __m256i a = q8(x + i, scale + o, zp ? zp + o : NULL, step, s0, lo0, hi0, z0,  \
                                 qmin, qmax);                                                   \
            const __m256i b = q8(x + i + 8, scale + o + 8 * step, zp ? zp + o + 8 * step : NULL, \
                                 step, s0, lo0, hi0, z0, qmin, qmax);                           \
            STORE(y + i, a, b);                                                                 \
        }                                                                                       \
        if (i < n)                                                                              \
            GENERIC(x + i, y + i, n - i, scale + i * step, zp ? zp + i * step : NULL, step,     \
                    qmin, qmax);                                                                \
    }

Q_AVX2(onnxc_f32u8_quantize_row__avx2, onnxc_f32u8_quantize_row__generic, uint8_t, ST_U8)
Q_AVX2(onnxc_f32s8_quantize_row__avx2, onnxc_f32s8_quantize_row__generic, int8_t, ST_S8)
Q_AVX2(onnxc_f32u16_quantize_row__avx2, onnxc_f32u16_quantize_row__generic, uint16_t, ST_U16)
Q_AVX2(onnxc_f32s16_quantize_row__avx2, onnxc_f32s16_quantize_row__generic, int16_t, ST_S16)

#define LD_U8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(const void*)(p)))
#define LD_S8(p) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(const void*)(p)))
#define LD_U16(p) _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)(const void*)(p)))
#define LD_S16(p) _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i*)(const void*)(p)))

#define DQ_AVX2(NAME, GENERIC, T, LOAD)                                                         \
    void NAME(const T* x, float* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step) {                                                                   \
        const __m256 s0 = _mm256_set1_ps(scale[0]);                                             \
        const __m256 z0 = _mm256_set1_ps(zp ? zp[0] : 0.0f);                                    \
        int64_t i;                                                                              \
        for (i = 0; i + 8 <= n; i += 8) {                                                       \
            __m256 s = s0, z = z0;                                                              \
            const __m256 v = _mm256_cvtepi32_ps(LOAD(x + i));                                   \
            if (step) {                                                                         \
                s = _mm256_loadu_ps(scale + i);                                                 \
                z = zp ? _mm256_loadu_ps(zp + i) : _mm256_setzero_ps();                         \
            }                                                                                   \
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_sub_ps(v, z), s));                     \
        }                                                                                       \
        if (i < n) GENERIC(x + i, y + i, n - i, scale + i * step, zp ? zp + i * step : NULL, step); \
    }

DQ_AVX2(onnxc_u8f32_dequantize_row__avx2, onnxc_u8f32_dequantize_row__generic, uint8_t, LD_U8)
DQ_AVX2(onnxc_s8f32_dequantize_row__avx2, onnxc_s8f32_dequantize_row__generic, int8_t, LD_S8)
DQ_AVX2(onnxc_u16f32_dequantize_row__avx2, onnxc_u16f32_dequantize_row__generic, uint16_t, LD_U16)
DQ_AVX2(onnxc_s16f32_dequantize_row__avx2, onnxc_s16f32_dequantize_row__generic, int16_t, LD_S16)

void onnxc_f32_minmax_row__avx2(const float* x, int64_t n, float* mn, float* mx) {
    __m256 lo = _mm256_set1_ps(*mn), hi = _mm256_set1_ps(*mx);
    __m128 l4, h4;
    float lo1, hi1;
    int64_t i;
    for (i = 0; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        lo = _mm256_min_ps(v, lo); /* NaN in v keeps lo, as the portable loop */
        hi = _mm256_max_ps(v, hi);
    }
    l4 = _mm_min_ps(_mm256_castps256_ps128(lo), _mm256_extractf128_ps(lo, 1));
    h4 = _mm_max_ps(_mm256_castps256_ps128(hi), _mm256_extractf128_ps(hi, 1));
    l4 = _mm_min_ps(l4, _mm_movehl_ps(l4, l4));
    h4 = _mm_max_ps(h4, _mm_movehl_ps(h4, h4));
    l4 = _mm_min_ss(l4, _mm_movehdup_ps(l4));
    h4 = _mm_max_ss(h4, _mm_movehdup_ps(h4));
    lo1 = _mm_cvtss_f32(l4);
    hi1 = _mm_cvtss_f32(h4);
    onnxc_f32_minmax_row__generic(x + i, n - i, &lo1, &hi1);
    *mn = lo1;
    *mx = hi1;
}

#endif
