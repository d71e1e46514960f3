"""The quantize step of the pass manager (onnxc.compile(model, quantize=...)).

It runs once, after the extended level's fixpoint and before layout (passes/manager.py
``stages``): the graph it sees has its fusions (onnxc.FusedConv with its activation and
residual, FusedGemm/FusedMatMul with their epilogues, MatMulGelu, MultiHeadAttention), which are
quantized as units (qdq.py); the activation ranges are calibrated on that same graph, so a fused
node's input range is the one its kernel will read.  Layout then blocks the float parts as usual.
"""
from __future__ import annotations

from ..passes.manager import Pass, PassResult


class QuantizeStep(Pass):
    name = "quantize"
    level = "extended"  # runs after this level (not registered: PassManager(stages=...) runs it)

    def __init__(self, options):
        self.options = options

    def run(self, graph) -> PassResult:
        from .api import quantize_graph
        res = quantize_graph(graph, self.options, form="qdq")
        graph.metadata["quantize"] = res
        return PassResult(bool(res.layers), len(res.layers), [f"{l.op} '{l.name}'" for l in res.layers])
