"""Matching helpers shared by the transformer fusions (fuse_attention, fuse_gelu,
fuse_layer_norm, fuse_skip_layer_norm): producers and operands in the default domain, static
float32 shapes, last-dim parameter vectors, and the replacement of a matched subgraph by one
C-supported onnxc node."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...ir import Node
from ..util import const, replace_with, scalar

F32 = np.dtype(np.float32)


def prod(v) -> Optional[Node]:
    """Producer of ``v`` in the default domain, or None."""
    p = v.producer if v is not None else None
    return p if p is not None and p.domain in ("", "ai.onnx") else None


def other(node, v):
    """The other input of a binary node one of whose inputs is ``v``."""
    a, b = node.inputs[0], node.inputs[1]
    return b if a is v else a if b is v else None


def scalar_operand(node, v) -> Optional[float]:
    """Value of the scalar-constant operand of binary ``node`` whose other operand is ``v``."""
    o = other(node, v)
    return scalar(o) if o is not None else None




def users_inside(nodes: Sequence[Node], final: Node) -> bool:
    """Every output of every node but ``final`` is read only by ``nodes`` and is no graph output."""
    ids = {id(n) for n in nodes}
    for n in nodes:
        if n is final:
            continue
        for o in n.outputs:
            if n.graph.is_output(o) or any(id(u) not in ids for u, _ in o.uses):
                return False
    return True


def static_shape(v) -> Optional[tuple]:
    """The static shape of ``v`` as a tuple, else None."""
    return tuple(v.shape) if v is not None and v.is_static else None


def same_shape(a, b) -> bool:
    """Both static and of one shape."""
    return static_shape(a) is not None and static_shape(a) == static_shape(b)


def ordered(graph, nodes) -> List[Node]:
    pos = {id(n): i for i, n in enumerate(graph.nodes)}
    uniq = {id(n): n for n in nodes}
    return sorted(uniq.values(), key=lambda n: pos[id(n)])


def f32(*vals) -> bool:
    return all(v is not None and v.dtype == F32 and v.is_static for v in vals)


def last_dim_vector(v, n: int) -> Optional[np.ndarray]:
    """A constant that broadcasts along the last dim only, as an [n] float32 array, else None."""
    c = const(v)
    if c is None:
        return None
    if any(d != 1 for d in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, n)):
        return None
    return np.ascontiguousarray(np.broadcast_to(c.reshape(-1) if c.ndim else c, (n,)).astype(F32))




def fuse(graph, nodes, final, op, inputs, attrs, details) -> bool:
    """Replace ``nodes`` (ending in ``final``) by one C-supported onnxc node."""
    if not users_inside(nodes, final):
        return False
    old = ordered(graph, nodes)
    if old[-1] is not final:
        old.remove(final)
        old.append(final)
    node = replace_with(graph, old, op, inputs, attrs, check_c=True)
    if node is None:
        return False
    details.append(node.label)
    return True



def vec_input(graph, v, n):
    """``v`` as an [n] float32 input of a fused node (a new constant when it must be reshaped)."""
    if v is None:
        return None
    if static_shape(v) == (n,) and v.dtype == F32:
        return v
    return graph.add_const(last_dim_vector(v, n), "norm_param")

