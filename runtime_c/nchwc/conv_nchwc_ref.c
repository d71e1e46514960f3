/* Portable C99 NCHWc convolutions (direct, pointwise, depthwise, NCHW-input first layer) for
 * block sizes 8 and 16: the body is compiled once per block so the b-wide loops have constant
 * trip counts the compiler turns into vector FMAs (-O3 with -mavx2/-mavx512f or -march). */
#include <math.h>

#include "onnxc_geom.h"
#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* Output pixels accumulated together in registers by the tiled loops. */
#define NCHWC_TILE 4
/* Pixels per parallel work item of the pointwise kernel. */
#define NCHWC_PW_CHUNK 64
/* Multiply-adds below which a kernel stays on one thread. */
#define NCHWC_PARALLEL_MIN_WORK (1 << 18)

#define NB 8
#define NB_FN(name) name##_b8
#include "conv_nchwc_body.h"
#undef NB
#undef NB_FN

#define NB 16
#define NB_FN(name) name##_b16
#include "conv_nchwc_body.h"
#undef NB
#undef NB_FN
