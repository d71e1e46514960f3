/* Compiles conv_winograd_body.h for one block size NB (nchwc_vec.h included, WG_OBMAX / WG_TMAX
 * set) at both tile sizes: F(2x2, 3x3) as WG_CONV2 / WG_SCRATCH2 with internal names
 * WG_FN2(name), F(4x4, 3x3) as WG_CONV4 / WG_SCRATCH4 with WG_FN4(name); then undefines all of
 * it (conv_winograd.c). */
#define NB_FN WG_FN2
#define WG_CONV WG_CONV2
#define WG_SCRATCH WG_SCRATCH2
#define WG_M 2
#define WG_A 4
#define WG_P 16
#include "conv_winograd_body.h"
#undef NB_FN
#undef WG_CONV
#undef WG_SCRATCH
#undef WG_M
#undef WG_A
#undef WG_P
#define NB_FN WG_FN4
#define WG_CONV WG_CONV4
#define WG_SCRATCH WG_SCRATCH4
#define WG_M 4
#define WG_A 6
#define WG_P 36
#include "conv_winograd_body.h"
#undef WG_CONV
#undef WG_SCRATCH
#undef WG_M
#undef WG_A
#undef WG_P
#undef WG_OBMAX
#undef WG_TMAX
#undef WG_FN2
#undef WG_FN4
#undef WG_CONV2
#undef WG_SCRATCH2
#undef WG_CONV4
#undef WG_SCRATCH4
#include "nchwc_vec_end.h"
