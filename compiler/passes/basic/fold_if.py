"""Fold an If whose condition is a compile-time constant: the chosen branch's nodes are inlined
into the parent graph in place of the If.

The branch's nodes and values are moved (not copied) into the parent and renamed with fresh
names there; outer-scope values they read are already the parent's Value objects, so those
reads need no remapping, and subgraphs nested in moved nodes keep pointing at the same
(renamed) Values.  The branch's outputs then replace the If's outputs.
"""
from __future__ import annotations

import numpy as np

from ...ir import Graph
from ...ops import infer_graph
from ..manager import Pass, PassResult, register


def _const_cond(node):
    c = node.input(0)
    if c is None or not c.is_const or c.const.size != 1:
        return None
    return bool(np.asarray(c.const).reshape(-1)[0])


def _inline(graph: Graph, node) -> None:
    branch: Graph = node.attrs["then_branch" if _const_cond(node) else "else_branch"]
    for v in branch.constants.values():  # branch constants become parent constants
        v.name = graph.fresh_name(v.name)
        v.graph = graph
        graph.constants[v.name] = v
    for n in list(branch.nodes):
        n.name = graph.fresh_name(n.name or n.op_type)
        for v in n.outputs:
            v.name = graph.fresh_name(v.name)
        for a in n.attrs.values():  # nested subgraphs now see the parent as their outer scope
            for g in (a if isinstance(a, list) else [a]):
                if isinstance(g, Graph):
                    g.parent = graph
        graph.insert(n, before=node)
    branch.nodes = []
    for old, new in zip(node.outputs, branch.outputs):
        if new.shape is None or (not new.is_static and old.is_static):
            new.shape = old.shape  # the If's inferred type is at least as precise
        if new.dtype is None:
            new.dtype = old.dtype
        graph.replace_all_uses(old, new)
    graph.remove_node(node)


@register
class FoldIf(Pass):
    name = "fold_if"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.op_type == "If" and node.domain in ("", "ai.onnx") and _const_cond(node) is not None:
                _inline(graph, node)
                details.append(node.label)
        if details:
            infer_graph(graph)
        return PassResult(bool(details), len(details), details)
