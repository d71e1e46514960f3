/* Internal to runtime_c/qconv: helpers shared by the GEMM-based driver and the depthwise one. */
#ifndef ONNXC_QCONV_INTERNAL_H
#define ONNXC_QCONV_INTERNAL_H

#include <stddef.h>
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
    const onnxc_qconv_dw_kernel fn_##_info = {#fn_, fn_, cblock_, as_, NULL}
#define ONNXC_QCONV_DW_INFO_BAND(fn_, cblock_, as_, band_) \
    const onnxc_qconv_dw_kernel fn_##_info = {#fn_, fn_, cblock_, as_, band_}

/* The band form (onnxc_qconv_dw_band_fn): the geometries it takes; its input rows hold pairs of
 * adjacent padded columns, (2j, 2j + 1) for j < band_np, per channel (int32 lanes of two int16),
 * and its weights per kernel row, column parity and pair band_npp vectors. Stride 1 across only:
 * at stride 2 (which the AVX2 band code computes too) the row form measured 3-8% faster on
 * MobileNetV2's layers (AMD EPYC Zen 4), each output row widening two new input rows. */
static inline int onnxc_qconv_dw_band_ok_(const onnxc_qconv_geom* g) {
    return g->dil_h == 1 && g->dil_w == 1 && g->stride_w == 1 && g->KH <= 7 && g->KW <= 7;
}
static inline int64_t onnxc_qconv_dw_band_npp_(const onnxc_qconv_geom* g) { return (g->KW + 2) / 2; }
static inline int64_t onnxc_qconv_dw_band_np_(const onnxc_qconv_geom* g) {
    return ((g->OW - 1) * g->stride_w >> 1) + onnxc_qconv_dw_band_npp_(g);
}
/* int32 of `rows` for a chunk of cc channels: KH widened rows + the paired weights */
static inline int64_t onnxc_qconv_dw_band_ints_(const onnxc_qconv_geom* g, int64_t cc) {
    const int64_t cv = (cc + 7) / 8 * 8;
    return g->KH * cv * (onnxc_qconv_dw_band_np_(g) + 2 * onnxc_qconv_dw_band_npp_(g));
}

#endif
