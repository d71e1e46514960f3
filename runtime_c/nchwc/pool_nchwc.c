/* NCHWc pooling (Max/Average, global), NCHW <-> NCHWc reorders and per-channel scale/shift,
 * for block sizes 8 and 16 (body compiled once per block, see conv_nchwc.c). */
#include <float.h>
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Elements visited below which a kernel stays on one thread.  Low: at 2 threads a serial
 * reorder or pool reads half its input from the other core's cache, where the split conv before
 * it left it (ShuffleNet at 2 threads 2.93 -> 2.63 ms going from 2^16 to 2^14; 1 thread same;
 * 2^12 with the depthwise and gather thresholds lowered alike, see conv_nchwc.c). */
#define NCHWC_POOL_MIN_WORK (1 << 12)

/* A block that matches the build's vector registers (8 with the avx2 row's features, 16 with
 * the avx512 row's: onnxc_isa.h) uses intrinsics for the window loops; the other combinations
 * run the plain C path (the tests exercise it through the generic target). */
#if ONNXC_HAS_AVX2
#include <immintrin.h>

/* The reorders move 8 pixels x 8 channels at a time through this in-register transpose (for
 * b=16 as two 8-channel halves). */
#define NCHWC_TR8 1
static inline void onnxc_nchwc_tr8(__m256 r[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#else
#define NCHWC_TR8 0
#endif

#define NB 8
#define NB_FN(name) name##_b8
#define NCHWC_MAXPOOL onnxc_f32_nchwc_maxpool_b8
#define NCHWC_AVGPOOL onnxc_f32_nchwc_avgpool_b8
#define NCHWC_GLOBAL_POOL onnxc_f32_nchwc_global_pool_b8
#define NCHWC_REORDER_INPUT onnxc_f32_nchwc_reorder_input_b8
#define NCHWC_REORDER_INPUT_PERM onnxc_f32_nchwc_reorder_input_perm_b8
#define NCHWC_REORDER_OUTPUT onnxc_f32_nchwc_reorder_output_b8
#define NCHWC_SCALE_SHIFT onnxc_f32_nchwc_scale_shift_b8
#include "nchwc_vec.h"
#include "pool_nchwc_body.h"
#include "nchwc_vec_end.h"

#define NB 16
#define NB_FN(name) name##_b16
#define NCHWC_MAXPOOL onnxc_f32_nchwc_maxpool_b16
#define NCHWC_AVGPOOL onnxc_f32_nchwc_avgpool_b16
#define NCHWC_GLOBAL_POOL onnxc_f32_nchwc_global_pool_b16
#define NCHWC_REORDER_INPUT onnxc_f32_nchwc_reorder_input_b16
#define NCHWC_REORDER_INPUT_PERM onnxc_f32_nchwc_reorder_input_perm_b16
#define NCHWC_REORDER_OUTPUT onnxc_f32_nchwc_reorder_output_b16
#define NCHWC_SCALE_SHIFT onnxc_f32_nchwc_scale_shift_b16
#include "nchwc_vec.h"
#include "pool_nchwc_body.h"
#include "nchwc_vec_end.h"
