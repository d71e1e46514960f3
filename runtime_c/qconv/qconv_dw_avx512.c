/* AVX-512 depthwise int8 kernels: 16 channels per zmm as int32 lanes (byte-masked loads for the
 * channel tail), blocks of 8 output pixels; vpmaddwd + vpaddd per tap (avx512), vpdpwssd
 * (avx512vnni). Body: qconv_dw_body.h, contract: onnxc_qconv.h. */
#include "../qgemm/qgemm_kernel.h"
#include "qconv_internal.h"

#if defined(QGEMM_AVX512)

#include <immintrin.h>

#define V __m512i
#define L 16
#define OWB 8
#define LOADX(p, s8) ((s8) ? _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)(p))) \
                           : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)(p))))
#define LOADX_N(p, s8, n) ((s8) ? _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8((__mmask16)((1u << (n)) - 1u), (p))) \
                                : _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8((__mmask16)((1u << (n)) - 1u), (p))))
#define LOADI(p) _mm512_loadu_si512((const void*)(p))
#define STOREI(p, v) _mm512_storeu_si512((void*)(p), (v))
#define SET1(v) _mm512_set1_epi32(v)

#define MADD(acc, x, w) _mm512_add_epi32((acc), _mm512_madd_epi16((x), (w)))
#define DW(name) avx512_##name
#include "qconv_dw_body.h"
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_8x16__avx512(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                    int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx512_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_8x16__avx512(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                    int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx512_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_8x16__avx512, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_8x16__avx512, L, 1);

#if defined(QGEMM_AVX512VNNI)
#define MADD(acc, x, w) _mm512_dpwssd_epi32((acc), (x), (w))
#define DW(name) avx512vnni_##name
#include "qconv_dw_body.h"
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_8x16__avx512vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                        int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx512vnni_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_8x16__avx512vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                        int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx512vnni_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_8x16__avx512vnni, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_8x16__avx512vnni, L, 1);
#endif

#endif
