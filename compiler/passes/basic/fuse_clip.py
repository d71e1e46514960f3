"""Relu and Clip into one Clip:

    Clip(Relu(x), lo, hi)  -> Clip(x, lo, hi)                    when lo >= 0
    Relu(Clip(x, lo, hi))  -> Clip(x, max(lo, 0), max(hi, 0))    (lo absent: 0)

max(min(max(x, lo), hi), 0) = min(max(x, max(lo, 0)), max(hi, 0)) for every lo, hi, including
lo > hi (both sides are then the constant max(hi, 0)).  Clip-6 (bounds as attributes) is read
and written in that form when the graph's opset is below 11; bounds that are not compile-time
scalars, or are NaN, leave the pair alone.
"""
from __future__ import annotations

import math

from ..manager import Pass, PassResult, register
from ..util import sole_user
from .common import clip_bounds, clip_node_args, fuse, std_op


def _bounds(clip):
    b = clip_bounds(clip)
    if b is None or any(v is not None and isinstance(v, float) and math.isnan(v) for v in b):
        return None
    return b


@register
class FuseReluClip(Pass):
    name = "fuse_relu_clip"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or not std_op(node, "Relu", "Clip"):
                continue
            user = sole_user(node.outputs[0])
            if node.op_type == "Relu" and std_op(user, "Clip") and user.inputs[0] is node.outputs[0]:
                b = _bounds(user)
                if b is None or b[0] is None or b[0] < 0:
                    continue
                fuse(graph, [node, user], "Clip", [node.inputs[0]] + list(user.inputs[1:]), dict(user.attrs),
                     name=user.name)
            elif node.op_type == "Clip" and std_op(user, "Relu"):
                b = _bounds(node)
                if b is None:
                    continue
                lo = 0 if b[0] is None else max(b[0], 0)
                hi = None if b[1] is None else max(b[1], 0)
                x = node.inputs[0]
                extra, attrs = clip_node_args(graph, node, lo, hi, x.dtype)
                fuse(graph, [node, user], "Clip", [x] + extra, attrs, name=node.name)
            else:
                continue
            details.append(f"{node.label} + {user.label}")
        return PassResult(bool(details), len(details), details)
