"""onnxc.ElementwiseChain: a run of elementwise ops computed in one pass over memory.

The node's attribute ``body`` is an IR Graph holding the fused elementwise nodes (default
domain, unchanged attributes).  The body's inputs stand, position by position, for the node's
inputs (the chain's external operands: any shapes that broadcast to the output); size-1
constants live in the body itself (the C emitter inlines them as literals).  The body's
outputs are the node's outputs: the chain's final result plus any intermediate also read
outside the chain, all of the one loop shape (the C kernel writes them from one loop nest).

Shape rule: the body's output types (after checking the node's inputs agree with the body's).
Reference: the body run by the IR interpreter, node by node as the unfused graph would run.
"""
from __future__ import annotations

from typing import List

import numpy as np

from ..errors import ModelError
from .interp import run_graph
from .registry import reference, shape_rule

OP = "ElementwiseChain"
DOMAIN = "onnxc"


def body_of(node):
    """The node's body graph, checked against the node's inputs and outputs."""
    from ..ir import Graph
    body = node.attrs.get("body")
    if not isinstance(body, Graph):
        raise ModelError(f"{node.label}: attribute 'body' must be a graph")
    if len(body.inputs) != len(node.inputs) or len(body.outputs) != len(node.outputs):
        raise ModelError(f"{node.label}: {len(node.inputs)} inputs / {len(node.outputs)} outputs, but the body "
                         f"has {len(body.inputs)} / {len(body.outputs)}")
    for i, (v, b) in enumerate(zip(node.inputs, body.inputs)):
        if v is None:
            raise ModelError(f"{node.label}: input {i} is missing")
        if v.dtype is not None and v.dtype != b.dtype:
            raise ModelError(f"{node.label}: input {i} '{v.name}' is {v.dtype}, the body expects {b.dtype}")
        if v.shape is not None and b.shape is not None and tuple(v.shape) != tuple(b.shape):
            raise ModelError(f"{node.label}: input {i} '{v.name}' has shape {v.shape}, the body expects "
                             f"{b.shape}")
    return body


@shape_rule(OP, DOMAIN)
def _chain_shape(node):
    return [(o.dtype, None if o.shape is None else tuple(o.shape)) for o in body_of(node).outputs]


@reference(OP, DOMAIN)
def _chain_ref(node, *arrays) -> List[np.ndarray]:
    body = body_of(node)
    return run_graph(body, {b.name: np.asarray(a) for b, a in zip(body.inputs, arrays)})
