/* Portable C99 NCHWc pooling (Max/Average, global), NCHW <-> NCHWc reorders and per-channel
 * scale/shift, for block sizes 8 and 16 (body compiled once per block, see conv_nchwc_ref.c). */
#include <float.h>
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements visited below which a kernel stays on one thread. */
#define NCHWC_POOL_MIN_WORK (1 << 16)

/* A block that matches the build's vector registers (8 with AVX2, 16 with AVX-512F) uses
 * intrinsics for the window loops; the other combinations run the plain C path (the tests
 * exercise it through the generic target). */
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#define NB 8
#define NB_FN(name) name##_b8
#if defined(__AVX2__)
#define NB_SIMD 1
#define VT __m256
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VADD _mm256_add_ps
#define VDIV _mm256_div_ps
#define VMAX _mm256_max_ps
#else
#define NB_SIMD 0
#endif
#include "pool_nchwc_body.h"
#undef NB
#undef NB_FN
#undef NB_SIMD
#undef VT
#undef VLOAD
#undef VSTORE
#undef VZERO
#undef VSET1
#undef VADD
#undef VDIV
#undef VMAX

#define NB 16
#define NB_FN(name) name##_b16
#if defined(__AVX512F__)
#define NB_SIMD 1
#define VT __m512
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VADD _mm512_add_ps
#define VDIV _mm512_div_ps
#define VMAX _mm512_max_ps
#else
#define NB_SIMD 0
#endif
#include "pool_nchwc_body.h"
#undef NB
#undef NB_FN
