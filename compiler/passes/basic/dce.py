"""Dead-code elimination: drop nodes none of whose outputs is used or a graph output."""
from __future__ import annotations

from ..manager import Pass, PassResult, register


@register
class DeadCodeElimination(Pass):
    name = "dead_code_elimination"
    level = "basic"
    always = True

    def run(self, graph) -> PassResult:
        live_outputs = {id(v) for v in graph.outputs}
        removed = []
        for node in reversed(list(graph.nodes)):
            if any(v.uses or id(v) in live_outputs for v in node.outputs):
                continue
            graph.remove_node(node)
            removed.append(node.label)
        dropped = graph.prune_constants()
        return PassResult(bool(removed) or dropped > 0, len(removed), removed)
