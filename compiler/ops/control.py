"""Op knowledge for control flow (If, Loop, Scan): output types inferred through the bodies.

onnx.shape_inference infers a body without the values of the outer scope's constants: a body
whose Unsqueeze/Squeeze/Reshape reads its axes or shape from a constant defined outside (the
expanded LinearAttention function defines them once, outside its Scan) gets no shapes there,
and the node's outputs none either. These rules infer the body with onnxc's per-node inference
(shapes.py), which sees outer constants, for the types the node feeds it, and keep onnx's
answer wherever they find nothing better.

A Loop/Scan body is inferred for the types of the first iteration; its outputs count only when
the carried values come out of it with the types they went in with (so every iteration sees the
same types, and each iteration's scan output has the same shape). The body's own types are
restored afterwards: the types of one iteration are not facts of the model (the C provider binds
them again when it compiles the body, providers/c/control.py).
"""
from __future__ import annotations

import contextlib
from typing import List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from ..ir import Graph, subgraphs
from .registry import facts, get_attr, shape_rule

# Loop's trip count and first condition: C unrolls nothing but needs both known
# (providers/c/control.py)
facts("Loop", param_inputs=(0, 1))
# their own C code only copies values (carried state, scan slices, branch outputs); the body's
# nodes meet narrow types under their own facts (each is checked as any other node)
facts("If", "Loop", "Scan", bit_mover=True)

Types = List[Tuple[Optional[np.dtype], Optional[tuple]]]


def _static(v) -> bool:
    return v is not None and v.dtype is not None and v.is_static


def _same(a, b) -> bool:
    return _static(a) and _static(b) and a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)


def _values(g: Graph):
    """The values of ``g`` and of the subgraphs nested in it (an If in a Loop body is inferred
    along with the body)."""
    yield from g.values()
    for n in g.nodes:
        for sub in subgraphs(n):
            yield from _values(sub)


@contextlib.contextmanager
def bound_body(body: Graph, types: Types):
    """Infer ``body`` with its inputs typed ``types``; yields False when a declared static input
    type contradicts them. Every non-constant value of the body (and of its
    subgraphs) gets its type back on exit."""
    from .shapes import infer_graph
    saved = [(v, v.dtype, v.shape) for v in _values(body) if not v.is_const]
    try:
        ok = len(types) == len(body.inputs)
        for v, (dt, shape) in zip(body.inputs, types) if ok else ():
            if (v.dtype is not None and v.dtype != dt) or (v.is_static and tuple(v.shape) != tuple(shape)):
                ok = False
                break
            v.dtype, v.shape = np.dtype(dt), tuple(shape)
        if ok:
            infer_graph(body)
        yield ok
    finally:
        for v, dt, shape in saved:
            v.dtype, v.shape = dt, shape


def _onnx_types(node) -> Types:
    from .shapes import _onnx_infer
    try:
        return _onnx_infer(node)
    except ModelError:  # e.g. a body reading outer values the one-node model does not define
        return [(None, None)] * len(node.outputs)


def _merge(onnx_types: Types, found: Optional[list]) -> Types:
    """onnx's type for each output, unless the body gave a static one where onnx's is not."""
    out = []
    for i, (dt, shape) in enumerate(onnx_types):
        f = found[i] if found is not None else None
        static = shape is not None and all(isinstance(d, int) for d in shape)
        if f is not None and not static and (dt is None or dt == f[0]):
            out.append(f)
        else:
            out.append((dt, shape))
    return out


def always_true(node) -> bool:
    """A Loop whose condition provably stays true (its scan outputs get exactly M rows)."""
    c, body = node.input(1), node.attrs["body"]
    if c is not None and not (c.is_const and c.const.size == 1 and bool(np.asarray(c.const).reshape(-1)[0])):
        return False
    cout = body.outputs[0]
    while cout.producer is not None and cout.producer.op_type == "Identity" and cout.producer.graph is body:
        cout = cout.producer.inputs[0]
    return cout is body.inputs[1] or (cout.is_const and cout.const.size == 1 and bool(cout.const.reshape(-1)[0]))


def trip_count(node) -> Optional[int]:
    """A Loop's constant trip count M (None: omitted or a runtime value)."""
    m = node.input(0)
    return int(np.asarray(m.const).reshape(-1)[0]) if m is not None and m.is_const and m.const.size == 1 else None


def _loop_body_types(node) -> Optional[list]:
    body = node.attrs.get("body")
    inits = list(node.inputs[2:])
    if not isinstance(body, Graph) or not all(_static(v) for v in inits):
        return None
    n = len(inits)
    k = len(body.outputs) - 1 - n
    if len(body.inputs) != n + 2 or k < 0 or len(node.outputs) != n + k:
        return None
    m = trip_count(node)
    rows = m if m is not None and m >= 0 and always_true(node) else None
    with bound_body(body, [(np.int64, ()), (np.bool_, ())] + [(v.dtype, v.shape) for v in inits]) as ok:
        if not ok or not all(_same(b, v) for b, v in zip(body.outputs[1:n + 1], inits)):
            return None
        found = [(v.dtype, tuple(v.shape)) for v in inits]
        for b in body.outputs[n + 1:]:
            found.append((b.dtype, (rows,) + tuple(b.shape)) if rows is not None and _static(b) else None)
        return found


def _scan_body_types(node) -> Optional[list]:
    body = node.attrs.get("body")
    if node.opset < 9 or not isinstance(body, Graph) or not all(_static(v) for v in node.inputs):
        return None
    m = int(get_attr(node, "num_scan_inputs", 0))
    n = len(node.inputs) - m
    k = len(body.outputs) - n
    if m < 1 or n < 0 or k < 0 or len(body.inputs) != n + m or len(node.outputs) != n + k:
        return None
    states, ins = list(node.inputs[:n]), list(node.inputs[n:])
    in_axes = list(get_attr(node, "scan_input_axes", None) or [0] * m)
    if len(in_axes) != m or any(not -len(v.shape) <= a < len(v.shape) for v, a in zip(ins, in_axes)):
        return None
    in_axes = [a % len(v.shape) for v, a in zip(ins, in_axes)]
    lengths = {v.shape[a] for v, a in zip(ins, in_axes)}
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    slices = [(v.dtype, tuple(d for i, d in enumerate(v.shape) if i != a)) for v, a in zip(ins, in_axes)]
    with bound_body(body, [(v.dtype, v.shape) for v in states] + slices) as ok:
        outs = body.outputs[n:]
        if not ok or not all(_same(b, v) for b, v in zip(body.outputs[:n], states)) or not all(map(_static, outs)):
            return None
        out_axes = list(get_attr(node, "scan_output_axes", None) or [0] * k)
        if len(out_axes) != k or any(not -(len(b.shape) + 1) <= a <= len(b.shape) for b, a in zip(outs, out_axes)):
            return None
        found = [(v.dtype, tuple(v.shape)) for v in states]
        for b, a in zip(outs, out_axes):
            a %= len(b.shape) + 1
            found.append((b.dtype, tuple(b.shape[:a]) + (length,) + tuple(b.shape[a:])))
        return found


def _if_branch_types(node) -> Optional[list]:
    """Each output typed as both branches type it, where they agree on a static type. Branches
    take no inputs, so their inferred types stay (the C If check infers them the same way)."""
    from .shapes import infer_graph
    branches = [node.attrs.get(k) for k in ("then_branch", "else_branch")]
    if not all(isinstance(g, Graph) and len(g.outputs) == len(node.outputs) for g in branches):
        return None
    for g in branches:
        infer_graph(g)
    return [(a.dtype, tuple(a.shape)) if _same(a, b) else None for a, b in zip(*(g.outputs for g in branches))]


@shape_rule("Scan")
def _scan_rule(node):
    return _merge(_onnx_types(node), _scan_body_types(node))


@shape_rule("Loop")
def _loop_rule(node):
    return _merge(_onnx_types(node), _loop_body_types(node))


@shape_rule("If")
def _if_rule(node):
    return _merge(_onnx_types(node), _if_branch_types(node))
