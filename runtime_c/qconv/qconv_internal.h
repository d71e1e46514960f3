/* Internal to runtime_c/qconv: helpers shared by the GEMM-based driver and the depthwise one. */
#ifndef ONNXC_QCONV_INTERNAL_H
#define ONNXC_QCONV_INTERNAL_H

#include <stdint.h>

#include "onnxc_qconv.h"

/* geometry valid (sizes, pads, groups, OH/OW = the ONNX output size) */
int onnxc_qconv_geom_ok_(const onnxc_qconv_geom* g);

/* output stage of an m x n int32 block (row stride ld) into output rows i0.., columns j0..:
 * onnxc_qgemm_output_block, or the fused residual add when res != NULL */
void onnxc_qconv_stage_(const onnxc_qgemm_output* o, const onnxc_qconv_residual* res, const int32_t* C32,
                        int64_t ld, int64_t i0, int64_t m, int64_t j0, int64_t n);

/* the portable depthwise row (contract of onnxc_qconv_dw_fn, channels [c0, c1) any, acc at
 * acc[(ow - ow0) * ldacc + c - c0]); SIMD kernels use it for what their vectors do not cover */
void onnxc_qconv_dw_scalar_(int a_signed, const onnxc_qconv_dw_args* a, int64_t n, int64_t oh, int64_t ow0,
                            int64_t ow1, int64_t c0, int64_t c1, int32_t* acc, int64_t ldacc);

#define ONNXC_QCONV_DW_INFO(fn_, cblock_, as_) \
    const onnxc_qconv_dw_kernel fn_##_info = {#fn_, fn_, cblock_, as_}

#endif
