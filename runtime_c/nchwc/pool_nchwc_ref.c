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

#define NB 8
#define NB_FN(name) name##_b8
#include "pool_nchwc_body.h"
#undef NB
#undef NB_FN

#define NB 16
#define NB_FN(name) name##_b16
#include "pool_nchwc_body.h"
#undef NB
#undef NB_FN
