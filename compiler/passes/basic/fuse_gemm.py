"""MatMul + Add -> Gemm:  Add(MatMul(A, B), C) -> Gemm(A, B, C)  (alpha = beta = 1)

A must be 2-D and B a 2-D constant (the shapes Gemm takes), and C must broadcast
unidirectionally to the [M, N] product (so the Add's output shape is the product's); C need
not be a constant.  Only float32: onnxc's C Gemm kernel runs float32 and MatMul of other types
runs in C as it is.  Needs Gemm-7 or later (earlier Gemm has a ``broadcast`` attribute).
"""
from __future__ import annotations

import numpy as np

from ..manager import Pass, PassResult, register
from ..util import const, sole_user
from .common import fuse, rank, std_op


def _broadcasts_to(shape, out) -> bool:
    if shape is None or len(shape) > len(out):
        return False
    for d, o in zip(reversed(shape), reversed(out)):
        if d != 1 and d != o:
            return False
    return True


@register
class FuseMatMulAdd(Pass):
    name = "fuse_matmul_add"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        if graph.opset.get("", 1) < 7:
            return PassResult(False)
        for node in list(graph.nodes):
            if node.graph is not graph or not std_op(node, "MatMul"):
                continue
            a, y = node.inputs[0], node.outputs[0]
            b = const(node.inputs[1])
            if rank(a) != 2 or b is None or b.ndim != 2 or a.dtype != np.float32 or rank(y) != 2:
                continue
            add = sole_user(y)
            if not std_op(add, "Add"):
                continue
            c = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
            if c is y or not _broadcasts_to(c.shape, y.shape) or c.dtype != np.float32:
                continue
            fuse(graph, [node, add], "Gemm", [a, node.inputs[1], c], {}, name=node.name)
            details.append(f"{node.label} + {add.label}")
        return PassResult(bool(details), len(details), details)
