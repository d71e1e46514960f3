"""IR verifier: the SSA and typing invariants every pass must keep."""
from __future__ import annotations

from typing import List

from ..errors import ModelError
from .core import Graph, subgraphs


def verify(graph: Graph, require_static: bool = False, require_typed: bool = True) -> None:
    """Raise ModelError listing every broken invariant:
    single definition, defined-before-use, use lists in sync, typed values, outputs defined."""
    problems: List[str] = []
    defined = {}
    outer = set()
    p = graph.parent
    while p is not None:
        outer |= {id(v) for v in p.values()}
        p = p.parent

    def define(v, where):
        if id(v) in defined:
            problems.append(f"value '{v.name}' defined twice ({defined[id(v)]} and {where})")
        defined[id(v)] = where

    for v in graph.inputs:
        define(v, "graph input")
        if v.producer is not None:
            problems.append(f"graph input '{v.name}' also has producer {v.producer.label}")
    for name, v in graph.constants.items():
        define(v, "constant")
        if v.const is None:
            problems.append(f"constant '{name}' has no data")
    for node in graph.nodes:
        for i, v in enumerate(node.inputs):
            if v is None:
                continue
            if id(v) not in defined and id(v) not in outer:
                problems.append(f"{node.label} input {i} '{v.name}' is used before it is defined")
            if (node, i) not in v.uses:
                problems.append(f"{node.label} input {i} '{v.name}' missing from its use list")
        for v in node.outputs:
            define(v, node.label)
            if v.producer is not node:
                problems.append(f"'{v.name}' output of {node.label} names another producer")
    all_values = list(graph.values())
    for v in all_values:
        if v.dtype is None and require_typed:
            problems.append(f"value '{v.name}' has no dtype")
        if require_static and not v.is_static:
            problems.append(f"value '{v.name}' has no static shape ({v.shape})")
        for node, idx in v.uses:
            if node.graph is graph and (idx >= len(node.inputs) or node.inputs[idx] is not v):
                problems.append(f"stale use of '{v.name}' by {node.label} input {idx}")
    for v in graph.outputs:
        if id(v) not in defined and id(v) not in outer:
            problems.append(f"graph output '{v.name}' is not defined")
    for node in graph.nodes:
        for sub in subgraphs(node):
                try:
                    verify(sub, require_static=False, require_typed=require_typed)
                except ModelError as e:
                    problems.append(f"in subgraph of {node.label}: {e}")
    if problems:
        raise ModelError(f"IR verification failed for graph '{graph.name}':\n  " + "\n  ".join(problems))
