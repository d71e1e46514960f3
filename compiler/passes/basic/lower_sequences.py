"""Lower sequences built and consumed inside one graph to tensor ops.

When every sequence value of the graph is made by SequenceEmpty/Construct/Insert/Erase or
SplitToSequence and read only by those and SequenceAt/Length/ConcatFromSequence (none is a
graph input or output, none read by a subgraph), and every position and split is a
compile-time constant (value specialization makes specialized inputs constants), each
sequence is known at compile time as a list of tensor Values.  Then SequenceAt becomes an
Identity of the element, SequenceLength an int64 constant, ConcatFromSequence a Concat (with
an Unsqueeze per element for new_axis=1), SplitToSequence a Split (and Squeeze for
keepdims=0 without split); the builders disappear.  Otherwise the graph is left as it is
(the fallback provider runs the sequence ops) and a note says why.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ...errors import ModelError
from ...ir import Graph, Node, subgraphs
from ...ops import infer_graph
from ..manager import Pass, PassResult, register
from .common import ONNX

BUILDERS = ("SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence")
READERS = ("SequenceAt", "SequenceLength", "ConcatFromSequence")
# (op, input index) pairs that read a sequence
SEQ_INPUTS = {("SequenceInsert", 0), ("SequenceErase", 0), ("SequenceAt", 0), ("SequenceLength", 0),
              ("ConcatFromSequence", 0)}
# (op, input index) of positions and splits: compile-time constants needed
PARAMS = {"SequenceInsert": 2, "SequenceErase": 1, "SequenceAt": 1, "SplitToSequence": 1}


def _subgraph_reads(graph: Graph) -> set:
    """ids of the values nodes of nested subgraphs read (outer-scope reads included)."""
    ids = set()

    def walk(g):
        for n in g.nodes:
            ids.update(id(v) for v in n.inputs if v is not None)
            for sub in subgraphs(n):
                walk(sub)
    for n in graph.nodes:
        for sub in subgraphs(n):
            walk(sub)
    return ids


def _position(node, v, lo: int, hi: int, n: int) -> int:
    """A constant position in [lo, hi] (negative counts from the end: + n)."""
    p = int(np.asarray(v.const).reshape(-1)[0])
    q = p + n if p < 0 else p
    if not lo <= q <= hi:
        raise ModelError(f"{node.op_type} node '{node.name}': position {p} is out of range for a sequence of "
                         f"length {n} (expected {-n}..{hi})")
    return q


def _check(graph: Graph) -> Optional[str]:
    """Why the graph's sequences cannot be lowered (None: they can; "": it has none).  A
    sequence made elsewhere (a graph input, a Loop's output) fails the sequence-input test."""
    seq_ops = [n for n in graph.nodes if n.domain in ONNX and
               (n.op_type.startswith("Sequence") or n.op_type in ("SplitToSequence", "ConcatFromSequence"))]
    if not seq_ops:
        return ""
    for n in seq_ops:
        if n.op_type not in BUILDERS + READERS:
            return f"{n.label}: {n.op_type} is not lowered"
        k = PARAMS.get(n.op_type)
        if k is not None and n.input(k) is not None and not n.input(k).is_const:
            return f"{n.label}: its {'split' if n.op_type == 'SplitToSequence' else 'position'} input " \
                   f"'{n.input(k).name}' is not a compile-time constant"
        for i, v in enumerate(n.inputs):
            if (n.op_type, i) in SEQ_INPUTS:
                if v is None or v.producer is None or v.producer.graph is not graph or \
                        v.producer.op_type not in BUILDERS:
                    return f"{n.label}: its sequence input '{getattr(v, 'name', '')}' is not built in this graph"
    inner = _subgraph_reads(graph)
    for n in seq_ops:
        if n.op_type not in BUILDERS:
            continue
        s = n.outputs[0]
        if graph.is_output(s):
            return f"sequence '{s.name}' is a graph output"
        if id(s) in inner:
            return f"sequence '{s.name}' is read by a subgraph"
        for user, i in s.uses:
            if (user.op_type, i) not in SEQ_INPUTS or user.graph is not graph:
                return f"sequence '{s.name}' is read by {user.label} (input {i})"
    return None


def _op(graph, op, inputs, before, shape=None, dtype=None, nout=1, out=None, **attrs):
    outs = [out] if out is not None else [graph.new_value(f"{before.name}_{op.lower()}", dtype, shape)
                                         for _ in range(nout)]
    node = Node(op, inputs, outs, attrs, name=graph.fresh_name(f"{before.name}_{op.lower()}"),
                opset=graph.opset.get("", 18))
    graph.insert(node, before=before)
    return outs


def _axes_op(graph, op, x, axes, before, shape, out=None):
    """Squeeze/Unsqueeze with axes as an input (opset >= 13) or an attribute."""
    if graph.opset.get("", 18) >= 13:
        a = graph.add_const(np.array(axes, np.int64), hint=f"{before.name}_axes")
        return _op(graph, op, [x, a], before, shape, x.dtype, out=out)[0]
    return _op(graph, op, [x], before, shape, x.dtype, out=out, axes=list(axes))[0]


def _lower(graph: Graph) -> List[str]:
    seqs: Dict[int, List] = {}
    details = []
    for node in list(graph.nodes):
        if node.domain not in ONNX:
            continue
        op = node.op_type
        if op not in BUILDERS + READERS:
            continue
        out = node.outputs[0]
        if op == "SequenceEmpty":
            seqs[id(out)] = []
        elif op == "SequenceConstruct":
            seqs[id(out)] = list(node.inputs)
        elif op == "SequenceInsert":
            s = list(seqs[id(node.inputs[0])])
            p = len(s) if node.input(2) is None else _position(node, node.input(2), 0, len(s), len(s))
            s.insert(p, node.inputs[1])
            seqs[id(out)] = s
        elif op == "SequenceErase":
            s = list(seqs[id(node.inputs[0])])
            if not s:
                raise ModelError(f"SequenceErase node '{node.name}': the sequence is empty")
            p = len(s) - 1 if node.input(1) is None else _position(node, node.input(1), 0, len(s) - 1, len(s))
            del s[p]
            seqs[id(out)] = s
        elif op == "SplitToSequence":
            seqs[id(out)] = _split(graph, node)
        elif op == "SequenceAt":
            s = seqs[id(node.inputs[0])]
            elem = s[_position(node, node.input(1), 0, len(s) - 1, len(s))]
            if out.shape is None or not out.is_static:
                out.shape = elem.shape
            if out.dtype is None:
                out.dtype = elem.dtype
            node.outputs = []
            _op(graph, "Identity", [elem], node, out=out)
        elif op == "SequenceLength":
            c = graph.add_const(np.array(len(seqs[id(node.inputs[0])]), np.int64), hint=f"{node.name}_len")
            node.outputs = []
            _op(graph, "Identity", [c], node, out=out)
        elif op == "ConcatFromSequence":
            _concat(graph, node, seqs[id(node.inputs[0])])
        details.append(node.label)
        graph.remove_node(node)
    return details


def _split(graph, node) -> List:
    x = node.inputs[0]  # static shape (checked before)
    r = len(x.shape)
    axis = node.attr("axis", 0)
    if not -r <= axis < r:
        raise ModelError(f"SplitToSequence node '{node.name}': axis {axis} is out of range for rank {r}")
    axis %= r
    d = x.shape[axis]
    sv = node.input(1)
    squeeze = sv is None and node.attr("keepdims", 1) == 0
    if sv is None:
        sizes = [1] * d
    else:
        split = np.asarray(sv.const).astype(np.int64)
        if split.ndim == 0:
            c = int(split)
            if c <= 0:
                raise ModelError(f"SplitToSequence node '{node.name}': split {c} is not positive")
            sizes = [c] * (d // c) + ([d % c] if d % c else [])
        else:
            sizes = [int(t) for t in split.reshape(-1)]
            if any(t < 0 for t in sizes) or sum(sizes) != d:
                raise ModelError(f"SplitToSequence node '{node.name}': split {sizes} does not add up to "
                                 f"{d}, the size of axis {axis}")
    if not sizes:
        return []
    shapes = [tuple(t if i == axis else dd for i, dd in enumerate(x.shape)) for t in sizes]
    if len(sizes) == 1:
        parts = _op(graph, "Identity", [x], node, shapes[0], x.dtype)
    elif graph.opset.get("", 18) >= 13:
        sc = graph.add_const(np.array(sizes, np.int64), hint=f"{node.name}_split")
        parts = _op(graph, "Split", [x, sc], node, None, x.dtype, nout=len(sizes), axis=axis)
    else:
        parts = _op(graph, "Split", [x], node, None, x.dtype, nout=len(sizes), axis=axis, split=sizes)
    for p, sh in zip(parts, shapes):
        p.shape = sh
    if squeeze:
        sq = shapes[0][:axis] + shapes[0][axis + 1:]
        parts = [_axes_op(graph, "Squeeze", p, [axis], node, sq) for p in parts]
    return parts


def _concat(graph, node, elems) -> None:
    out = node.outputs[0]
    if not elems:
        raise ModelError(f"ConcatFromSequence node '{node.name}': the sequence is empty")
    r = len(elems[0].shape)
    axis = node.attr("axis")
    new_axis = node.attr("new_axis", 0)
    rr = r + 1 if new_axis else r
    if not -rr <= axis < rr:
        raise ModelError(f"ConcatFromSequence node '{node.name}': axis {axis} is out of range for elements "
                         f"of rank {r} (new_axis={new_axis})")
    axis %= rr
    if new_axis:
        elems = [_axes_op(graph, "Unsqueeze", e, [axis], node, e.shape[:axis] + (1,) + e.shape[axis:])
                 for e in elems]
    node.outputs = []
    if len(elems) == 1:
        _op(graph, "Identity", elems, node, out=out)
    else:
        _op(graph, "Concat", elems, node, out=out, axis=axis)
    if out.shape is None or not out.is_static:
        out.shape = None  # inferred again from the elements


@register
class LowerStaticSequences(Pass):
    name = "lower_static_sequences"
    level = "basic"

    def run(self, graph) -> PassResult:
        why = _check(graph)
        if why == "":
            return PassResult(False)
        if why is not None:
            return PassResult(False, notes=[f"sequences left to the fallback: {why}"])
        # what would stop the rewrite half way is refused before any rewrite
        for n in graph.nodes:
            if n.op_type == "SplitToSequence":
                x = n.inputs[0]
                if x.shape is None or not all(isinstance(d, int) for d in x.shape):
                    return PassResult(False, notes=[f"sequences left to the fallback: {n.label}: its input "
                                                    f"'{x.name}' has no static shape"])
            if n.op_type in ("SequenceConstruct", "SequenceInsert"):
                for t in (n.inputs if n.op_type == "SequenceConstruct" else n.inputs[1:2]):
                    if t is None or t.shape is None or t.dtype is None:
                        return PassResult(False, notes=[f"sequences left to the fallback: {n.label}: element "
                                                        f"'{getattr(t, 'name', '')}' has no known rank"])
        details = _lower(graph)
        infer_graph(graph)
        return PassResult(bool(details), len(details), details)
