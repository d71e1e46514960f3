/* AVX2 depthwise int8 kernels: 8 channels per ymm as int32 lanes, blocks of 4 output pixels;
 * vpmaddwd + vpaddd per tap (avx2), vpdpwssd (avx2vnni: AVX-VNNI). Body: qconv_dw_body.h,
 * contract: onnxc_qconv.h. */
#include <string.h>

#include "../qgemm/qgemm_kernel.h"
#include "qconv_internal.h"

#if defined(QGEMM_AVX2)

#include <immintrin.h>

#define V __m256i
#define L 8
#define OWB 4
#define LOADX(p, s8) ((s8) ? _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)(p))) \
                           : _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(p))))
#define LOADI(p) _mm256_loadu_si256((const __m256i*)(p))
#define STOREI(p, v) _mm256_storeu_si256((__m256i*)(p), (v))
#define SET1(v) _mm256_set1_epi32(v)

/* the channel tail: n < 8 bytes through a zeroed copy (no read past the tensor) */
static __m256i loadx_n(const uint8_t* p, int s8, int64_t n) {
    uint8_t b[8] = {0};
    memcpy(b, p, (size_t)n);
    return LOADX(b, s8);
}
#define LOADX_N(p, s8, n) loadx_n((p), (s8), (n))

#define MADD(acc, x, w) _mm256_add_epi32((acc), _mm256_madd_epi16((x), (w)))
#define DW(name) avx2_##name
#include "qconv_dw_body.h"
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_4x8__avx2(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0, int64_t ow1,
                                 int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_4x8__avx2, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_4x8__avx2, L, 1);

#if defined(QGEMM_AVX2VNNI)
#define MADD(acc, x, w) _mm256_dpwssd_avx_epi32((acc), (x), (w))
#define DW(name) avx2vnni_##name
#include "qconv_dw_body.h"
#undef MADD
#undef DW

void onnxc_u8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                     int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2vnni_row(0, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
void onnxc_s8s8_dwconv_4x8__avx2vnni(const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                                     int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc) {
    avx2vnni_row(1, a, n, oh, ow0, ow1, c0, c1, acc, ldacc);
}
ONNXC_QCONV_DW_INFO(onnxc_u8s8_dwconv_4x8__avx2vnni, L, 0);
ONNXC_QCONV_DW_INFO(onnxc_s8s8_dwconv_4x8__avx2vnni, L, 1);
#endif

#endif
