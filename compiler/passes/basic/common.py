"""Helpers shared by the basic rewrite passes: bypassing a node whose output equals one of its
inputs, fusing a chain into one standard-domain node, and reading the parameters that moved
from attributes to inputs across opsets (axes, pads, Clip bounds)."""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ..manager import PassResult
from ..util import const

ONNX = ("", "ai.onnx")


def fuse_each(graph, ops, fuse) -> PassResult:
    """Apply ``fuse`` to every standard-domain node of ``ops``; it answers None (no pattern there),
    a line starting "kept" (a candidate left as it was, and why) or the line saying what was fused.
    The details list the fused ones, the notes the kept ones (`onnxc inspect --passes -v`)."""
    done, kept = [], []
    for node in list(graph.nodes):
        if node.graph is graph and std_op(node, *ops):
            d = fuse(graph, node)
            if d:
                (kept if d.startswith("kept") else done).append(d)
    return PassResult(bool(done), len(done), done, kept)


def std_op(node, *op_types: str) -> bool:
    return node is not None and node.domain in ONNX and node.op_type in op_types


def has_subgraph(node) -> bool:
    from ...ir import subgraphs
    return any(True for _ in subgraphs(node))


def bypass(graph, node, src) -> None:
    """``node``'s only output carries exactly the tensor ``src`` holds: readers (and the graph
    output list, if the output is one) switch to ``src``; the node goes.  The driver keeps the
    caller's output names (io_names) and legalize_outputs copies an output that became a graph
    input, a constant or a duplicate, so a bypassed graph output keeps working."""
    out = node.outputs[0]
    if src.producer is not None and not src.is_static and out.is_static:
        src.shape = out.shape  # the same tensor: keep the better-known shape
    graph.replace_all_uses(out, src)
    graph.remove_node(node)


def fuse(graph, old_nodes: Sequence, op_type: str, inputs, attrs=None, name: str = "") -> Node:
    """One standard-domain node replacing ``old_nodes``; it takes over the first output Value of
    the last of them (readers and graph outputs need no rewiring).  Every other output of the
    old nodes must be unused (the caller checks)."""
    last = old_nodes[-1]
    out = last.outputs[0]
    node = Node(op_type, inputs, [], attrs, name=graph.fresh_name(name or last.name or op_type), domain="",
                opset=graph.opset.get("", 1))
    node.outputs = [out]
    out.producer = node
    last.outputs = [o for o in last.outputs if o is not out]
    graph.insert(node, after=last)
    for n in reversed(list(old_nodes)):
        graph.remove_node(n)
    return node


def unused(v) -> bool:
    """An output nobody reads (or omitted)."""
    if v is None:
        return True
    g = v.producer.graph if v.producer is not None else v.graph
    return not v.uses and not (g is not None and g.is_output(v))


def rank(v) -> Optional[int]:
    return None if v is None or v.shape is None else len(v.shape)


def int_list(v) -> Optional[List[int]]:
    c = const(v)
    return None if c is None else [int(i) for i in np.asarray(c).reshape(-1)]


def axes_of(node, since: int) -> Optional[List[int]]:
    """Axes of Squeeze/Unsqueeze/ReduceX: an attribute before opset ``since``, an optional input
    after.  [] when absent; None when given but not a compile-time constant."""
    if node.opset < since:
        a = node.attrs.get("axes")
        return [] if a is None else [int(i) for i in a]
    if node.input(1) is None:
        return []
    return int_list(node.input(1))


def norm_axes(axes, r: int) -> Optional[List[int]]:
    out = []
    for a in axes:
        if not -r <= a < r:
            return None
        out.append(a % r)
    return sorted(out) if len(set(out)) == len(out) else None


def pad_params(node):
    """(pads over all axes, mode, constant value array) of a Pad node, from its attributes
    (Pad-2 ``pads``/``value``; Pad-1's ``paddings`` is not read, so Pad-1 is left alone) or its
    inputs (with the opset-18 ``axes``); None when any of them is not a compile-time constant or
    the rank is unknown."""
    r = rank(node.inputs[0])
    if r is None:
        return None
    mode = get_attr(node, "mode", "constant")
    if node.opset < 11:
        pads = [int(p) for p in node.attrs.get("pads", [])]
        value = np.array(float(get_attr(node, "value", 0.0)))
    else:
        pads = int_list(node.input(1))
        if pads is None:
            return None
        cv = node.input(2)
        value = None if cv is None else const(cv)
        if cv is not None and value is None:
            return None
        if value is None:
            value = np.zeros((), node.inputs[0].dtype)
        axes = node.input(3)
        if axes is not None:
            ax = int_list(axes)
            if ax is None or len(pads) != 2 * len(ax) or any(not -r <= a < r for a in ax):
                return None
            ax = [a % r for a in ax]
            if len(set(ax)) != len(ax):
                return None
            full = [0] * (2 * r)
            for i, a in enumerate(ax):
                full[a], full[a + r] = pads[i], pads[i + len(ax)]
            pads = full
    if len(pads) != 2 * r:
        return None
    return pads, mode, value


def clip_bounds(node):
    """(min, max) of a Clip as Python numbers (None for an absent bound), from its attributes
    (opset < 11) or constant scalar inputs; None when a bound is not a compile-time scalar."""
    if node.opset < 11:
        return (node.attrs.get("min"), node.attrs.get("max"))
    bounds = []
    for i in (1, 2):
        v = node.input(i)
        if v is None:
            bounds.append(None)
            continue
        c = const(v)
        if c is None or c.size != 1:
            return None
        bounds.append(c.reshape(-1)[0].item())
    return tuple(bounds)


def clip_node_args(graph, node, lo, hi, dtype):
    """(inputs after x, attrs) for a Clip of the graph's opset with bounds lo/hi (None: absent)."""
    if graph.opset.get("", 1) < 11:
        attrs = {}
        if lo is not None:
            attrs["min"] = float(lo)
        if hi is not None:
            attrs["max"] = float(hi)
        return [], attrs
    ins = [None if lo is None else graph.add_const(np.array(lo, dtype=dtype), hint=f"{node.name}_min"),
           None if hi is None else graph.add_const(np.array(hi, dtype=dtype), hint=f"{node.name}_max")]
    while ins and ins[-1] is None:
        ins.pop()
    return ins, {}


def per_channel(c: np.ndarray, out_shape, axis: int = 1) -> Optional[np.ndarray]:
    """``c`` as a 1-D vector over ``out_shape[axis]`` when broadcasting ``c`` against a tensor of
    ``out_shape`` varies only along ``axis`` and leaves the shape unchanged; else None."""
    r = len(out_shape)
    if c.ndim > r or not isinstance(out_shape[axis], int):
        return None
    shape = (1,) * (r - c.ndim) + tuple(c.shape)
    for i, d in enumerate(shape):
        if i != axis and d != 1:
            return None
        if i == axis and d not in (1, out_shape[axis]):
            return None
    flat = c.reshape(-1)
    return np.broadcast_to(flat, (out_shape[axis],)).copy()
