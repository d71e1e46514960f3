/* Compiles conv_winograd_body.h for one block size NB (nchwc_vec.h included, WG_OBMAX / WG_TMAX
 * set) at both tile sizes: F(2x2, 3x3) with names WG_FN2(name), F(4x4, 3x3) with WG_FN4(name);
 * then undefines all of it (conv_winograd.c). */
#define NB_FN WG_FN2
#define WG_M 2
#define WG_A 4
#define WG_P 16
#include "conv_winograd_body.h"
#undef NB_FN
#undef WG_M
#undef WG_A
#undef WG_P
#define NB_FN WG_FN4
#define WG_M 4
#define WG_A 6
#define WG_P 36
#include "conv_winograd_body.h"
#undef WG_M
#undef WG_A
#undef WG_P
#undef WG_OBMAX
#undef WG_TMAX
#undef WG_FN2
#undef WG_FN4
#include "nchwc_vec_end.h"
