/* Vector macros of one NCHWc block size, for the kernel files that compile a body once per
 * block (conv, pool, gather, Winograd): define NB (8 or 16), include this, include the body,
 * then include nchwc_vec_end.h.  NB_SIMD is 1 when the build's vector registers hold NB floats
 * (onnxc_isa.h: the avx2 rows' features for 8, the avx512 rows' for 16), and VT, VLOAD, ... then
 * name the intrinsics; every other combination (the portable build, b=16 in an AVX2 build) gets
 * NB_SIMD 0 and runs the plain C paths of the same loops. */
#include "onnxc_isa.h"

#if ONNXC_HAS_AVX2
#include <immintrin.h>
#endif

#if NB == 8 && ONNXC_HAS_AVX2
#define NB_SIMD 1
#define VT __m256
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#elif NB == 16 && ONNXC_HAS_AVX512
#define NB_SIMD 1
#define VT __m512
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#else
#define NB_SIMD 0
#endif
