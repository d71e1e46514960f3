"""NCHWc blocking (layout level): convolutions and the image ops around them run on tensors
whose channels are split into blocks of b = the target's vector width (16 AVX-512, 8 AVX2 and
the portable build), stored [N, ceil(C/b), H, W, b] with zero padding channels
(ops/nchwc.py has the ops and layout, runtime_c/nchwc/ the kernels).

One pass, in topological order (ONNX Runtime's NchwcTransformer does the same job):
  * seeds: float32 2-D Conv / onnxc.FusedConv with static shapes and constant weights where a
    block pays: output channels >= b (group 1, or groups whose channels per group are multiples
    of b) or depthwise with >= b channels.  Weights are packed and the bias padded here, at
    compile time; the fused activation and residual Z stay in the kernel epilogue.  A group-1
    conv with fewer than b input channels reading a plain tensor (a first layer) reads it
    directly, without a reorder; 3x3 stride-1 convs big enough to pay run as Winograd
    F(4x4, 3x3) or F(2x2, 3x3) (kind "winograd", weights transformed here; winograd.py);
  * propagation: a node whose image input is already blocked is rewritten to its blocked form
    when there is one: MaxPool/AveragePool, global pools (plain [N, C, 1, 1] output unless a
    blocked conv reads it), BatchNormalization (per-channel scale+shift), elementwise ops
    (unary and broadcasting binary/variadic: the standard kernels run on the 5-D shapes, other
    operands reordered, per-channel constants reblocked at compile time), Concat on channels
    (every input's C a multiple of b; else an NchwcChannelGather), nearest Resize with integer
    spatial scales, and as NchwcChannelGather a constant Slice or Split on channels and a channel
    shuffle (Reshape [N, g, C/g, H, W] -> Transpose [0, 2, 1, 3, 4] -> Reshape back; of a
    plain tensor that a blocked conv reads: the channel order of its ReorderInput);
  * borders: a plain value a blocked node reads gets one ReorderInput (shared by all its blocked
    readers); a blocked value with plain readers or that is a graph output gets one ReorderOutput
    (shared by all of them), so a chain of blocked ops never returns to NCHW in between.
NchwcGatherFold (the next pass, nchwc_gather_fold.py) then composes chained gathers, so
ShuffleNet's Concat -> shuffle -> Slice is one copy per Slice.
Padding channels must stay zero (a later conv multiplies them by zero weights, which 0*inf
would break): ops with f(0) != 0 (Sigmoid, Exp, an Add of a scalar, ...) are blocked only when
C is a multiple of b.  Every rewritten node must be claimed by the C provider, else it stays.

Modules: nchwc_rewrite.py (the rewriter), winograd.py (which convs run as Winograd),
nchwc_gather_fold.py (the next pass).
"""
from __future__ import annotations

from ..manager import Pass, PassResult, register
from .nchwc_rewrite import Rewriter


def target_block(graph) -> int:
    target = graph.metadata.get("target")
    if target is None:
        from ...target import resolve
        target = resolve("native")
    return int(target.nchwc_block)


@register
class NchwcLayout(Pass):
    name = "nchwc"
    level = "layout"

    def run(self, graph) -> PassResult:
        rw = Rewriter(graph, target_block(graph))
        n = rw.run()
        if n:
            graph.prune_constants()
        return PassResult(n > 0, n, rw.details)
