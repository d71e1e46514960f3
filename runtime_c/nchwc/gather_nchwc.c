/* NCHWc channel gather (onnxc.NchwcChannelGather): each output channel copies one channel of
 * one of several blocked inputs, so a Concat, a Slice/Split on channels or a channel shuffle
 * (Reshape-Transpose-Reshape) whose channel counts are not multiples of the block stays
 * blocked (ShuffleNet).  Compiled once per block size, as the conv and pool kernels.
 *
 * The map comes precomputed per output block as "entries": one entry per source vector (input
 * i, block k) the output block takes lanes from, with the output lanes it fills (mask) and for
 * each of them the source lane (idx).  Per pixel an output vector is then one load, one lane
 * permute and one masked merge per entry (AVX-512 b=16, AVX2 b=8), lanes no entry fills (the
 * padding) stay zero. */
#include <stdint.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

/* Elements copied below which the gather stays on one thread.  Low: a serial gather at 2
 * threads reads half its input from the other core's cache (ShuffleNetV2's channel shuffle of
 * 4 blocks of 28x28, 50K elements: 11 us at 1 thread, 88 us serial at 2). */
#define NCHWC_GATHER_MIN_WORK (1 << 13)
/* Entry layout: input, block, lane mask, then NB source lanes. */
#define GATHER_ENT(NB) (3 + (NB))

typedef struct {
    int64_t N, HW, Cb;
    const float* const* X;
    const int64_t* in_blocks;
    const int32_t* first;
    const int32_t* ent;
    float* Y;
} gather_job;

#define NB 8
#define NB_FN(name) name##_b8
#define NCHWC_CHANNEL_GATHER onnxc_f32_nchwc_channel_gather_b8
#include "nchwc_vec.h"
#include "gather_nchwc_body.h"
#include "nchwc_vec_end.h"

#define NB 16
#define NB_FN(name) name##_b16
#define NCHWC_CHANNEL_GATHER onnxc_f32_nchwc_channel_gather_b16
#include "nchwc_vec.h"
#include "gather_nchwc_body.h"
#include "nchwc_vec_end.h"
