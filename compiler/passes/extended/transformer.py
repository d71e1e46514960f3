"""Transformer subgraph fusions (extended level, float32, only where the C provider claims the
fused node).  In run order:

* multi-head self-attention (BERT/HuggingFace and torchvision ViT exports) -> onnxc.MultiHeadAttention:
  the Q/K/V projections (MatMul + bias Add, separate or packed; or quantize_dynamic's int8
  MatMulIntegerToFloat products, packed into one that feeds the attention), the head split (any chain of
  Reshape/Transpose/Squeeze/Unsqueeze/Gather/Slice/Split), scalar scales (on Q, K or the scores,
  Mul or Div), an optional additive mask, Softmax, an optional Where(IsNaN) guard, the product
  with V and the head merge.  The layout chains are not matched op by op: each is replayed on an
  index tensor (arange over the projection output) and the result must address exactly the
  elements the fused kernel reads, which checks every shape, perm, axis and index at once;
* Gelu (erf form: Div by sqrt 2 or Mul by 1/sqrt 2, Erf, Add 1, Mul x, Mul 0.5 in any
  association), its tanh form -> onnxc.FastGelu, and the standard Gelu op (opset 20); then a
  bias Add feeding either is folded in as its bias input;
* LayerNormalization (ReduceMean, Sub, Pow 2 / Mul self, ReduceMean, Add eps, Sqrt, Div or
  Reciprocal + Mul, Mul gamma?, Add beta?) and RMSNormalization (Pow 2, ReduceMean, Add eps,
  Sqrt, Div or Reciprocal + Mul, Mul gamma?) over the last dim -> onnxc.LayerNormalization /
  onnxc.RMSNormalization; the standard LayerNormalization op over the last dim is taken over too;
* a residual Add (with an optional bias Add on one side) feeding a LayerNormalization ->
  onnxc.SkipLayerNormalization, with the sum as a second output when something else reads it;
* (transformer_matmul_gelu, a pass of its own after these) MatMul with constant 2-D weights
  whose sole reader is an onnxc.Gelu / FastGelu -> onnxc.MatMulGelu: bias and Gelu run in the
  SGEMM epilogue, on each block of the product while it is in cache, instead of a second pass.
* (transformer_unit_transpose, after that: passes/basic/unit_transpose.py) a Transpose that
  only moves size-1 dims (torchvision ViT's [1, S, E] <-> [S, 1, E] around its attention) ->
  Reshape: the same elements in the same order, so an alias instead of a copy.

One module per fusion (fuse_attention.py, fuse_gelu.py, fuse_layer_norm.py,
fuse_skip_layer_norm.py; shared matching in transformer_match.py); this module holds the passes.

Every intermediate of a matched subgraph must be read only inside it (and not be a graph
output); constants (eps, gamma, beta, biases, weights, scales) must be compile-time constants.
"""
from __future__ import annotations

from typing import List

from ..manager import Pass, PassResult, register
from .fuse_attention import fuse_attention
from .fuse_gelu import fuse_gelus, fuse_matmul_gelus
from .fuse_layer_norm import fuse_norms
from .fuse_skip_layer_norm import fuse_skip_norms


@register
class TransformerFusion(Pass):
    name = "transformer_fusion"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = fuse_attention(graph, details)
        n += fuse_gelus(graph, details)
        n += fuse_norms(graph, details)
        n += fuse_skip_norms(graph, details)
        return PassResult(n > 0, n, details)


@register
class TransformerMatMulGelu(Pass):
    """MatMul(A, constant 2-D B) -> onnxc.Gelu / FastGelu (bias?) => onnxc.MatMulGelu."""
    name = "transformer_matmul_gelu"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = fuse_matmul_gelus(graph, details)
        return PassResult(n > 0, n, details)
