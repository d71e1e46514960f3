"""Move Transposes below the element-wise ops that read them, so that the Transposes a converter
puts around every Conv (NCHW Conv inside an NHWC graph, e.g. TensorFlow's open_nsfw ResNet-50)
meet and cancel (fuse_transpose_chain) and the per-channel affine ops between them (bias,
batch norm as Sub/Mul/Add) reach the Conv and fold into it (fuse_conv):

    Op(Transpose(x, p), c)                 -> Transpose(Op(x, c'), p)   Op in Add Sub Mul Div,
                                              c constant, c' = c at the output's rank permuted by p^-1
    Op(Transpose(a, p), Transpose(b, p))   -> Transpose(Op(a, b), p)
    Relu(Transpose(x, p))                  -> Transpose(Relu(x), p)
    Sub(Conv(...), c)                      -> Add(Conv(...), -c)        (exact; fuse_conv_add folds it)

The element-wise results are the same numbers, computed in another memory order.  A Transpose
read by anything else stays for those readers (the constant and unary cases need it to have no
other reader, so nothing is duplicated).
"""
from __future__ import annotations

import numpy as np

from ..manager import Pass, PassResult, register
from ..util import const, sole_user
from .common import std_op

BINARY = ("Add", "Sub", "Mul", "Div")


def _perm(t):
    p = t.attrs.get("perm")
    r = len(t.inputs[0].shape) if t.inputs[0].shape is not None else None
    if p is None:
        return list(range(r - 1, -1, -1)) if r is not None else None
    return [int(i) for i in p]


def _transpose_of(graph, v):
    t = v.producer if v is not None else None
    if t is None or t.graph is not graph or not std_op(t, "Transpose"):  # (not from an outer scope)
        return None
    return t


def _inner_shape(y, p):
    if y.shape is None:
        return None
    z = [None] * len(p)
    for j, pj in enumerate(p):
        z[pj] = y.shape[j]
    return tuple(z)


def _move(graph, node, inputs, p):
    """node reads ``inputs`` (pre-Transpose); its old output becomes a Transpose of its new one."""
    from ...ir import Node
    y = node.outputs[0]
    z = graph.new_value(f"{y.name}_untransposed", y.dtype, _inner_shape(y, p))
    for i, v in enumerate(inputs):
        node.set_input(i, v)
    node.outputs = [z]
    z.producer = node
    t = Node("Transpose", [z], [y], {"perm": list(p)}, name=graph.fresh_name(f"{node.name}_transpose"),
             opset=graph.opset.get("", 1))
    y.producer = t
    graph.insert(t, after=node)


@register
class SinkTranspose(Pass):
    name = "sink_transpose"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or len(node.outputs) != 1:
                continue
            if std_op(node, "Sub") and len(node.inputs) == 2 and node.inputs[0].producer is not None \
                    and std_op(node.inputs[0].producer, "Conv") and const(node.inputs[1]) is not None \
                    and node.inputs[1].dtype.kind == "f":
                node.op_type = "Add"
                node.set_input(1, graph.add_const(-const(node.inputs[1]), hint=f"{node.inputs[1].name}_negated"))
                details.append(f"{node.label}: Sub of a constant as Add")
            if std_op(node, "Relu"):
                t = _transpose_of(graph, node.inputs[0])
                if t is None or sole_user(node.inputs[0]) is not node or _perm(t) is None:
                    continue
                _move(graph, node, [t.inputs[0]], _perm(t))
                graph.remove_node(t)
                details.append(f"{t.label} below {node.label}")
            elif std_op(node, *BINARY) and len(node.inputs) == 2:
                a, b = node.inputs
                ta, tb = _transpose_of(graph, a), _transpose_of(graph, b)
                if ta is not None and tb is not None:
                    pa, pb = _perm(ta), _perm(tb)
                    if pa is None or pa != pb or a.shape is None or a.shape != b.shape:
                        continue
                    _move(graph, node, [ta.inputs[0], tb.inputs[0]], pa)
                    for t in {id(ta): ta, id(tb): tb}.values():
                        if not t.outputs[0].uses and not graph.is_output(t.outputs[0]):
                            graph.remove_node(t)
                    details.append(f"{ta.label}, {tb.label} below {node.label}")
                    continue
                k = 0 if ta is not None else 1 if tb is not None else None
                if k is None:
                    continue
                t, v, c = (ta, a, const(b)) if k == 0 else (tb, b, const(a))
                p = _perm(t)
                if c is None or p is None or sole_user(v) is not node or c.ndim > len(p) \
                        or node.outputs[0].shape is None or len(node.outputs[0].shape) != len(p):
                    continue
                full = c.reshape((1,) * (len(p) - c.ndim) + c.shape)
                moved = graph.add_const(np.ascontiguousarray(np.transpose(full, np.argsort(p))),
                                        hint=f"{node.inputs[1 - k].name}_transposed")
                _move(graph, node, [t.inputs[0], moved] if k == 0 else [moved, t.inputs[0]], p)
                graph.remove_node(t)
                details.append(f"{t.label} below {node.label}")
        return PassResult(bool(details), len(details), details)
