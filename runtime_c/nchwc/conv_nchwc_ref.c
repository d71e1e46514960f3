/* NCHWc convolutions (direct, pointwise, depthwise, NCHW-input first layer) for block sizes 8
 * and 16: the body is compiled once per block so the b-wide loops have constant trip counts.
 * A block that matches the build's vector registers (8 with AVX2+FMA, 16 with AVX-512F) uses
 * intrinsics for the accumulators; every other combination (the portable build, b=16 in an
 * AVX2 build) runs the plain C path of the same loop nest, which the tests exercise through the
 * generic target. */
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Most output pixels of one depthwise or pointwise microkernel call (8 accumulators + 1 weight
 * + 1 broadcast fit the 16 AVX2 registers). */
#define NCHWC_TILE 8
/* Bytes of weights one pass over the pixels uses before the partial sums go back to Y (the
 * input blocks are summed in chunks of this much weight).  Pointwise: a part of the L1d, so a
 * chunk's weights stay there while 64 pixels reuse them.  Window convs: a part of the L2, so
 * a chunk's weights serve all the rows of a task (16 KiB chunks measured 3-15% slower on 3x3
 * layers at AVX-512: each chunk stores and reloads the 4x6 accumulators).  Overridable for
 * the tests, which shrink them to reach the chunked paths with small shapes. */
#ifndef NCHWC_PW_CHUNK_WEIGHTS
#define NCHWC_PW_CHUNK_WEIGHTS (16 * 1024)
#endif
#ifndef NCHWC_WINDOW_CHUNK_WEIGHTS
#define NCHWC_WINDOW_CHUNK_WEIGHTS (256 * 1024)
#endif
/* Output pixels (whole rows) one window-conv task covers at least (at 2+ threads fewer when
 * that balances the threads' shares: split_rows in conv_nchwc_body.h). */
#define NCHWC_WINDOW_PIXELS 48
/* Most taps (input channels x kernel rows x columns) of a plain-NCHW-input row the flat tap
 * table covers (first layers: 3 x 7 x 7 = 147); more run the nested loops. */
#define NCHWC_NCHW_TAPS 256
/* Pixels per parallel work item of the pointwise kernel. */
#define NCHWC_PW_CHUNK 64
/* Multiply-adds below which a kernel stays on one thread. */
#define NCHWC_PARALLEL_MIN_WORK (1 << 18)

#if defined(__GNUC__)
#define NCHWC_INLINE inline __attribute__((always_inline))
#else
#define NCHWC_INLINE inline
#endif

/* Register tiles of the window convs (NB_OBMAX output blocks x NB_TMAX pixels): AVX2 has 16
 * vector registers, 2x6 accumulators + 2 weights + 1 broadcast; AVX-512 has 32, 4x7 + 4 weights
 * (+ 1 broadcast: GCC spills one accumulator, still faster than 4x6: 7 divides the 7/14/28/56
 * widths of ImageNet CNNs, so rows split into whole tiles; 3x3 512@7 90 -> 111 GFLOP/s).  The
 * portable path takes 2x4 (fewer registers, and the multi-block code stays exercised on every
 * build). */
#define NB 8
#define NB_FN(name) name##_b8
#if defined(__AVX2__) && defined(__FMA__)
#define NB_SIMD 1
#define NB_OBMAX 2
#define NB_TMAX 6
#define VT __m256
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VADD _mm256_add_ps
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
#else
#define NB_SIMD 0
#define NB_OBMAX 2
#define NB_TMAX 4
#endif
#include "conv_nchwc_body.h"
#undef NB
#undef NB_FN
#undef NB_SIMD
#undef NB_OBMAX
#undef NB_TMAX
#undef VT
#undef VLOAD
#undef VSTORE
#undef VZERO
#undef VSET1
#undef VFMA
#undef VADD
#undef VMAX
#undef VMIN

#define NB 16
#define NB_FN(name) name##_b16
#if defined(__AVX512F__)
#define NB_SIMD 1
#define NB_OBMAX 4
#define NB_TMAX 7
#define VT __m512
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VADD _mm512_add_ps
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
#else
#define NB_SIMD 0
#define NB_OBMAX 2
#define NB_TMAX 4
#endif
#include "conv_nchwc_body.h"
