/* Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions on NCHWc tensors, block sizes 8 and 16
 * (the body, conv_winograd_body.h, is compiled once per block and tile size WG_M: WG_A = WG_M + 2
 * input patch, WG_P = WG_A^2 positions; F(4x4) functions carry _f4 before the block suffix).
 * Same split as conv_nchwc.c: a block matching the build's vector registers (8 with the avx2
 * row's features, 16 with the avx512 row's: onnxc_isa.h) uses intrinsics, every other
 * combination the portable C path of the same loop nest. */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

#if defined(__GNUC__)
#define WG_INLINE inline __attribute__((always_inline))
#else
#define WG_INLINE inline
#endif

/* Multiply-adds (of the direct conv the kernel replaces) below which it stays on one thread:
 * the direct kernel's threshold. */
#define WG_PARALLEL_MIN_WORK (1 << 18)

/* Register tiles of the transform-domain GEMM (WG_OBMAX output blocks x WG_TMAX tiles of
 * accumulators): AVX-512 4x6 (24 accumulators + 4 weights + 1 broadcast of 32 registers),
 * AVX2 2x6 (12 + 2 + 1 of 16), portable 2x4.  Each block size is compiled for both tile sizes:
 * F(2x2) (WG_M 2) and F(4x4) (WG_M 4, functions named _f4_b<NB>). */
#define NB 8
#define WG_FN2(name) name##_b8
#define WG_FN4(name) name##_f4_b8
#define WG_CONV2 onnxc_f32_nchwc_conv_winograd_b8
#define WG_SCRATCH2 onnxc_f32_nchwc_conv_winograd_scratch_b8
#define WG_CONV4 onnxc_f32_nchwc_conv_winograd_f4_b8
#define WG_SCRATCH4 onnxc_f32_nchwc_conv_winograd_scratch_f4_b8
#include "nchwc_vec.h"
#define WG_OBMAX 2
#define WG_TMAX (NB_SIMD ? 6 : 4)
#include "conv_winograd_tiles.h"

#define NB 16
#define WG_FN2(name) name##_b16
#define WG_FN4(name) name##_f4_b16
#define WG_CONV2 onnxc_f32_nchwc_conv_winograd_b16
#define WG_SCRATCH2 onnxc_f32_nchwc_conv_winograd_scratch_b16
#define WG_CONV4 onnxc_f32_nchwc_conv_winograd_f4_b16
#define WG_SCRATCH4 onnxc_f32_nchwc_conv_winograd_scratch_f4_b16
#include "nchwc_vec.h"
#define WG_OBMAX (NB_SIMD ? 4 : 2)
#define WG_TMAX (NB_SIMD ? 6 : 4)
#include "conv_winograd_tiles.h"
