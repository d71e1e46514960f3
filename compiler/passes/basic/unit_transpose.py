"""transformer_unit_transpose: a Transpose whose permutation keeps the dims larger than 1 in
their order (torchvision ViT's [1, S, E] <-> [S, 1, E] around its attention) -> Reshape: the
same elements in the same order, so an alias instead of a copy.

A generic elimination, but it runs at the extended level, after the transformer fusions (whose
attention matching replays the Transposes it meets); passes/extended/__init__.py imports it
there, which places it in the pass order."""
from __future__ import annotations

from typing import List

import numpy as np

from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import is_op, replace_with


def _static_shape(v):
    return tuple(v.shape) if v is not None and v.is_static else None


@register
class TransformerUnitTranspose(Pass):
    """Transpose whose permutation keeps the dims larger than 1 in their order -> Reshape."""
    name = "transformer_unit_transpose"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = 0
        for t in list(graph.nodes):
            if t.graph is not graph or not is_op(t, "Transpose"):
                continue
            x, y = t.inputs[0], t.outputs[0]
            shape = _static_shape(x)
            if shape is None or _static_shape(y) is None or len(shape) < 2 or 0 in shape:
                continue  # (a 0 in Reshape's shape would mean "copy that dim")
            perm = list(get_attr(t, "perm", None) or reversed(range(len(shape))))
            moved = [p for p in perm if shape[p] != 1]
            if moved != sorted(moved) or perm == sorted(perm):
                continue
            target = graph.add_const(np.array(_static_shape(y), np.int64), "unit_transpose_shape")
            node = replace_with(graph, [t], "Reshape", [x, target], {}, domain="", check_c=True)
            if node is None:
                graph.prune_constants()
                continue
            details.append(node.label)
            n += 1
        return PassResult(n > 0, n, details)
