/* onnxc runtime: the one header generated code includes.
 * Portable C99; kernels are declared in onnxc_kernels.h, ISA macros live here. */
#ifndef ONNXC_RT_H
#define ONNXC_RT_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_half.h"

/* Status codes returned by <prefix>_run(). */
#define ONNXC_OK 0
#define ONNXC_ERR_NULL 1      /* a required pointer was NULL */
#define ONNXC_ERR_ALIGN 2     /* arena or weights not 64-byte aligned */
#define ONNXC_ERR_FALLBACK 3  /* the model has nodes only the Python fallback provider runs */
#define ONNXC_ERR_VALUE 4     /* a runtime input value (TopK k, OneHot depth, Range bounds, a window
                               * size) disagrees with the output shape compiled into the module */

#ifdef _OPENMP
#include <omp.h>
#define ONNXC_OMP_FOR _Pragma("omp parallel for schedule(static)")
#else
#define ONNXC_OMP_FOR
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ONNXC_RESTRICT __restrict__
#else
#define ONNXC_RESTRICT
#endif

/* Thread count for OpenMP regions; no-op in a build without OpenMP. */
void onnxc_rt_set_num_threads(int n);
int onnxc_rt_get_num_threads(void);

#endif
