/* NCHWc convolutions (direct, pointwise, depthwise, NCHW-input first layer) for block sizes 8
 * and 16: the body is compiled once per block so the b-wide loops have constant trip counts.
 * A block that matches the build's vector registers (8 where the avx2 row's features are
 * enabled, 16 where the avx512 row's are: onnxc_isa.h) uses intrinsics for the accumulators; every other combination (the portable build, b=16 in an
 * AVX2 build) runs the plain C path of the same loop nest, which the tests exercise through the
 * generic target. */
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
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
/* Multiply-adds below which a kernel stays on one thread.  Depthwise convs split from much
 * less: they are memory-bound and read what the previous (split) node wrote, half of it in the
 * other core's cache when run serially (ShuffleNetV2's 14x14 116-channel ones, 225K multiply-
 * adds: 13 us at 1 thread, 88 us serial at 2). */
#define NCHWC_PARALLEL_MIN_WORK (1 << 18)
#define NCHWC_DW_PARALLEL_MIN_WORK (1 << 15)

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
#define NCHWC_CONV onnxc_f32_nchwc_conv_b8
#define NCHWC_CONV_NCHW onnxc_f32_nchwc_conv_nchw_b8
#define NCHWC_CONV_SUBSAMPLE onnxc_f32_nchwc_conv_subsample_b8
#define NCHWC_CONV_DEPTHWISE onnxc_f32_nchwc_conv_depthwise_b8
#include "nchwc_vec.h"
#if NB_SIMD
#define NB_OBMAX 2
#define NB_TMAX 6
/* pointwise: 2 output blocks x 6 pixels (conv_nchwc_body.h says why); -DNCHWC_PW_OBN_B8=1
 * restores 1 x NCHWC_TILE, for A/B measurements */
#ifndef NCHWC_PW_OBN_B8
#define NCHWC_PW_OBN_B8 2
#endif
#define NB_PW_OBN NCHWC_PW_OBN_B8
#define NB_PW_T (NCHWC_PW_OBN_B8 == 1 ? NCHWC_TILE : 6)
#else
#define NB_OBMAX 2
#define NB_TMAX 4
#define NB_PW_OBN 1
#define NB_PW_T NCHWC_TILE
#endif
/* window convs pick their task order by traffic (conv_nchwc_body.h); -DNCHWC_ROWS_OUTER_B8=0
 * keeps the tile-major order, for A/B measurements */
#ifndef NCHWC_ROWS_OUTER_B8
#define NCHWC_ROWS_OUTER_B8 1
#endif
#define NB_WINDOW_ROWS_OUTER NCHWC_ROWS_OUTER_B8
/* depthwise border pixels in tiles (conv_nchwc_dw_body.h); -DNCHWC_DW_BORDER_TILES_B8=0 runs
 * them one at a time, for A/B measurements */
#ifndef NCHWC_DW_BORDER_TILES_B8
#define NCHWC_DW_BORDER_TILES_B8 1
#endif
#define NB_DW_BORDER_TILES NCHWC_DW_BORDER_TILES_B8
/* strided 1x1 convs gather then run pointwise (conv_nchwc_body.h); -DNCHWC_SUBSAMPLE_B8=0 runs
 * onnxc_f32_nchwc_conv_subsample_b8 through the window path, for A/B measurements */
#ifndef NCHWC_SUBSAMPLE_B8
#define NCHWC_SUBSAMPLE_B8 1
#endif
#define NB_SUBSAMPLE NCHWC_SUBSAMPLE_B8
/* pointwise convs pick their task order by traffic (conv_nchwc_body.h); -DNCHWC_PW_CHUNKS_OUTER_B8=0
 * keeps the tile-major order, for A/B measurements */
#ifndef NCHWC_PW_CHUNKS_OUTER_B8
#define NCHWC_PW_CHUNKS_OUTER_B8 1
#endif
#define NB_PW_CHUNKS_OUTER NCHWC_PW_CHUNKS_OUTER_B8
#include "conv_nchwc_body.h"
#include "conv_nchwc_dw_body.h"
#undef NB_OBMAX
#undef NB_TMAX
#undef NB_PW_OBN
#undef NB_PW_T
#undef NB_WINDOW_ROWS_OUTER
#undef NB_DW_BORDER_TILES
#undef NB_SUBSAMPLE
#undef NB_PW_CHUNKS_OUTER
#include "nchwc_vec_end.h"

#define NB 16
#define NB_FN(name) name##_b16
#define NCHWC_CONV onnxc_f32_nchwc_conv_b16
#define NCHWC_CONV_NCHW onnxc_f32_nchwc_conv_nchw_b16
#define NCHWC_CONV_SUBSAMPLE onnxc_f32_nchwc_conv_subsample_b16
#define NCHWC_CONV_DEPTHWISE onnxc_f32_nchwc_conv_depthwise_b16
#include "nchwc_vec.h"
#if NB_SIMD
#define NB_OBMAX 4
#define NB_TMAX 7
#else
#define NB_OBMAX 2
#define NB_TMAX 4
#endif
#define NB_PW_OBN 1
#define NB_PW_T NCHWC_TILE
#define NB_WINDOW_ROWS_OUTER 0 /* b=16 (AVX-512) keeps the tile-major order */
#define NB_DW_BORDER_TILES 0   /* and its depthwise border pixels one at a time */
#define NB_SUBSAMPLE 1 /* (generated code calls conv_subsample at b=8 only) */
#ifndef NCHWC_PW_CHUNKS_OUTER_B16
#define NCHWC_PW_CHUNKS_OUTER_B16 0 /* b=16 keeps the tile-major pointwise order (-D...=1 for A/B) */
#endif
#define NB_PW_CHUNKS_OUTER NCHWC_PW_CHUNKS_OUTER_B16
#include "conv_nchwc_body.h"
#include "conv_nchwc_dw_body.h"
#undef NB_OBMAX
#undef NB_TMAX
#undef NB_PW_OBN
#undef NB_PW_T
#undef NB_WINDOW_ROWS_OUTER
#undef NB_DW_BORDER_TILES
#undef NB_SUBSAMPLE
#undef NB_PW_CHUNKS_OUTER
#include "nchwc_vec_end.h"
