"""Op knowledge for the ai.onnx.ml domain: ArrayFeatureExtractor's shape rule (onnx infers no
shape for it).  References are onnx.reference's; onnxruntime computes the same on valid input."""
from __future__ import annotations

from .registry import shape_rule

ML = "ai.onnx.ml"


@shape_rule("ArrayFeatureExtractor", ML)
def _array_feature_extractor_shape(node):
    """X[..., d] and k indices (of any shape) give [..., k]; a 1-D X gives [1, k] (as onnxruntime
    and the reference)."""
    x, ind = node.inputs[0], node.inputs[1]
    if x.shape is None or ind.shape is None or not all(isinstance(d, int) for d in ind.shape):
        return [(x.dtype, None)]
    k = 1
    for d in ind.shape:
        k *= d
    return [(x.dtype, (1, k) if len(x.shape) == 1 else tuple(x.shape[:-1]) + (k,))]
