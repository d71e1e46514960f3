"""ai.onnx.ml emitters: Binarizer (float types) and ArrayFeatureExtractor (numeric types).

* Binarizer: y = x > threshold ? 1 : 0 with the threshold in x's type; NaN gives 0 (the
  comparison is false, as onnx.reference; onnxruntime refuses a NaN input). Integer inputs stay
  outside C: onnxruntime compares them in float32, numpy (the reference) in float64.
* ArrayFeatureExtractor: Y[..., j] = X[..., I[j]] over the flattened indices; an index outside
  [0, d) fails the run (ONNXC_ERR_INDEX), as onnxruntime refuses it (the reference would wrap a
  negative one), and nothing is copied.
"""
from __future__ import annotations

import numpy as np

from ...ops import get_attr
from ...ops.ml import ML
from .registry import c_kernel, dtypes_in


@c_kernel("Binarizer", domain=ML, check=dtypes_in("float32", "float64"))
def binarizer(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    ct = ctx.ctype(x)
    t = ctx.lit(float(get_attr(node, "threshold", 0.0)), x.dtype)
    return "\n".join([f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
                      f"for (int64_t i = 0; i < {x.size}; ++i) Y[i] = X[i] > {t} ? 1 : 0;"])


def _afe_check(node):
    x, ind = node.inputs[0], node.inputs[1]
    if ind.dtype != np.int64:
        return "indices must be int64"
    if x.dtype.kind not in "fiub" or len(x.shape) < 1:
        return f"dtype {x.dtype} or rank {len(x.shape)} not supported"
    return None


@c_kernel("ArrayFeatureExtractor", domain=ML, check=_afe_check)
def array_feature_extractor(node, ctx):
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if y.size == 0:
        return "/* empty */"
    d, k = x.shape[-1], ind.size
    rows = x.size // d if d else 0
    fail = ctx.fail(node, f"index {{value}} out of range [0, {d - 1}] on the last axis of input '{x.name}' "
                          f"(shape {tuple(x.shape)})", "I[j]", "j", tensor=ind)
    ct = ctx.ctype(x)
    return "\n".join([
        f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"const int64_t* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};", "int ok = 1;",
        f"for (int64_t j = 0; j < {k}; ++j) if (I[j] < 0 || I[j] >= {d}) {{ {fail} ok = 0; break; }}",
        f"if (ok) for (int64_t r = 0; r < {rows}; ++r) for (int64_t j = 0; j < {k}; ++j) Y[r * {k} + j] = X[r * {d} + I[j]];",
    ])
