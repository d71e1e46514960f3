"""The quantize step of the pass manager (onnxc.compile(model, quantize=...)).

It does inside the compile what onnxc.quantize followed by onnxc.compile does: it runs once,
after the basic level's fixpoint (BatchNormalization folded into Conv, MatMul+Add into Gemm,
constants folded), on the graph onnxc.quantize quantizes, with the same placement (static: Q/DQ
on the inputs and outputs of every int8-capable node, as quantize_static places them; dynamic:
DynamicQuantizeLinear + MatMulInteger); the pass manager then runs the basic level again (as after
any stage that changed the graph), so the QDQ fusions (passes/basic/fuse_qdq*.py) turn the pairs
into int8 nodes before the extended and layout levels.
(An earlier form quantized the fused float units after the extended level: the Q/DQ pairs around
FusedConv stayed, the convolutions ran in float on dequantized weights, 3.5x slower than float on
ResNet-18.)
"""
from __future__ import annotations

from ..passes.manager import Pass, PassResult


class QuantizeStep(Pass):
    name = "quantize"
    level = "basic"  # runs after this level (not registered: PassManager(stages=...) runs it)

    def __init__(self, options):
        self.options = options

    def run(self, graph) -> PassResult:
        from .api import quantize_graph
        res = quantize_graph(graph, self.options, form="integer" if self.options.mode == "dynamic" else "qdq",
                             full=True)
        graph.metadata["quantize"] = res
        return PassResult(bool(res.layers), len(res.layers), [f"{l.op} '{l.name}'" for l in res.layers])
