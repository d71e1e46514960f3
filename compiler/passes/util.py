"""Pattern-matching helpers shared by the rewrite passes.

Every helper answers a question a rewrite must ask before it fires: is this value read by
exactly one node (so the intermediate can disappear), is it a compile-time constant, can the
backend run the fused node (extended and layout rewrites only create what C can emit).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..ir import Node
from .capability import current


def sole_user(v) -> Optional[object]:
    """The one node reading ``v`` (once), if ``v`` is not a graph output; else None."""
    if v is None or v.graph is None and v.producer is None:
        return None
    if len(v.uses) != 1:
        return None
    g = v.producer.graph if v.producer is not None else v.graph
    if g is not None and g.is_output(v):
        return None
    return v.uses[0][0]


def producer(v, *op_types: str):
    """The node defining ``v`` if its op type is one of ``op_types`` (default domain)."""
    if v is None or v.producer is None:
        return None
    p = v.producer
    if p.domain not in ("", "ai.onnx") or (op_types and p.op_type not in op_types):
        return None
    return p


def const(v) -> Optional[np.ndarray]:
    return v.const if v is not None and v.is_const else None


def scalar(v) -> Optional[float]:
    """The value of a constant holding one element (any shape), else None."""
    c = const(v)
    if c is None or c.size != 1:
        return None
    return c.reshape(-1)[0].item()


def is_op(node, *op_types: str) -> bool:
    return node is not None and node.domain in ("", "ai.onnx") and node.op_type in op_types


def c_supported(node) -> bool:
    """Would the backend (the C provider) claim this node?  Extended/layout rewrites only build
    such nodes; the answer comes from the capability the passes were handed (capability.py)."""
    return current().claim(node) is None


def remove_chain(graph, nodes: Sequence) -> None:
    """Remove ``nodes`` (last to first) once their outputs have been rerouted."""
    for n in reversed(list(nodes)):
        if n.graph is graph:
            graph.remove_node(n)


def replace_with(graph, old_nodes: Sequence, op_type: str, inputs, attrs=None, domain: str = "onnxc",
                 name: str = "", check_c: bool = False):
    """Insert one node computing what the last of ``old_nodes`` computed (same output Values,
    so readers need no rewiring) and remove ``old_nodes``.  With ``check_c`` the new node is
    built first and dropped again (returning None, graph untouched) if C cannot run it."""
    last = old_nodes[-1]
    outputs = list(last.outputs)
    node = Node(op_type, inputs, [], attrs, name=graph.fresh_name(name or last.name or op_type), domain=domain,
                opset=graph.opset.get(domain, 1))
    node.outputs = outputs  # not yet owning them: the old node still does until removed
    if check_c and not c_supported(node):
        node.detach_inputs()
        return None
    for o in outputs:
        o.producer = node
    last.outputs = []
    graph.insert(node, after=last)
    remove_chain(graph, old_nodes)
    return node
