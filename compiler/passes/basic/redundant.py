"""Redundant-node elimination: nodes whose output is their input (Identity, inference Dropout,
Cast to the same type, Expand/Reshape to the input's own shape, a Slice selecting everything,
Transpose by the identity permutation) and pairs that cancel or compose (Unsqueeze/Squeeze of
the same axes, Reshape of Reshape, Transpose of Transpose).

Bypassing a node is sound whatever else reads its input, so the no-op passes fire even when the
input has other users; composing two nodes into one only fires when the intermediate has no
other reader (otherwise both would still run).  A bypassed graph output keeps its name: the
driver records output names before the passes and legalize_outputs copies an output that
became a graph input, a constant or a duplicate of another output.
"""
from __future__ import annotations

import numpy as np

from ...ops import get_attr, infer_graph
from ..manager import Pass, PassResult, register
from ..util import const, sole_user
from .common import axes_of, bypass, int_list, norm_axes, rank, std_op, unused

# A Dropout whose mask is read is replaced by an all-true constant only up to this many
# elements (the constant goes into the weights blob).
_MAX_MASK_ELEMENTS = 1 << 20


def _dropout_is_inference(node) -> bool:
    if node.opset < 7:
        return bool(get_attr(node, "is_test", 0))  # is_test=0 is training: random
    if node.opset < 12:
        return True  # Dropout-7/10 has no training mode
    t = node.input(2)
    if t is None:
        return True
    c = const(t)
    return c is not None and c.size == 1 and not bool(c.reshape(-1)[0])


def _drop_dropout(graph, node) -> bool:
    if not _dropout_is_inference(node):
        return False
    x = node.inputs[0]
    if len(node.outputs) > 1 and not unused(node.outputs[1]):
        mask = node.outputs[1]
        # Dropout-12's inference mask is all true (the reference and onnxruntime agree); for
        # Dropout-7/10 onnxruntime returns all false where the reference says true: left alone
        if (node.opset < 12 or mask.dtype != np.bool_ or not x.is_static
                or int(np.prod(x.shape, dtype=np.int64)) > _MAX_MASK_ELEMENTS):
            return False
        ones = graph.add_const(np.ones(x.shape, np.bool_), hint=f"{mask.name}_ones")
        graph.replace_all_uses(mask, ones)
    bypass(graph, node, x)
    return True


def _slice_is_noop(node) -> bool:
    x = node.inputs[0]
    if not x.is_static:
        return False
    r = len(x.shape)
    if node.opset < 10:
        starts, ends = node.attrs.get("starts"), node.attrs.get("ends")
        axes, steps = node.attrs.get("axes"), None
        if starts is None or ends is None:
            return False
    else:
        starts, ends = int_list(node.input(1)), int_list(node.input(2))
        axes = None if node.input(3) is None else int_list(node.input(3))
        steps = None if node.input(4) is None else int_list(node.input(4))
        if starts is None or ends is None or (node.input(3) is not None and axes is None) or \
                (node.input(4) is not None and steps is None):
            return False
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps) or any(not -r <= a < r for a in axes):
        return False
    for s, e, a, st in zip(starts, ends, axes, steps):
        d = x.shape[a % r]
        if d == 0:
            continue  # an empty axis stays empty
        if st != 1:
            return False  # a step of -1 over the whole axis reverses it; others skip elements
        s = s + d if s < 0 else s
        e = e + d if e < 0 else e
        if min(max(s, 0), d) != 0 or min(max(e, 0), d) != d:
            return False
    return True


def _transpose_perm(node):
    r = rank(node.inputs[0])
    if r is None:
        return None
    perm = node.attrs.get("perm")
    return list(range(r))[::-1] if perm is None else [int(p) for p in perm]


def _noop_source(node):
    """The input ``node``'s output equals, or None."""
    x = node.input(0)
    if x is None or len(node.outputs) != 1:
        return None
    y = node.outputs[0]
    if node.op_type == "Identity":
        return x
    if node.op_type == "Cast":
        return x if x.dtype is not None and y.dtype == x.dtype else None
    if node.op_type == "CastLike":
        t = node.input(1)
        return x if x.dtype is not None and t is not None and t.dtype == x.dtype else None
    if node.op_type in ("Expand", "Reshape"):
        return x if x.is_static and y.is_static and tuple(x.shape) == tuple(y.shape) else None
    if node.op_type == "Slice":
        return x if _slice_is_noop(node) else None
    if node.op_type == "Transpose":
        perm = _transpose_perm(node)
        return x if perm is not None and perm == list(range(len(perm))) else None
    return None


@register
class EliminateIdentity(Pass):
    """Identity and inference-mode Dropout."""
    name = "eliminate_identity"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if std_op(node, "Identity") and node.input(0) is not None:
                bypass(graph, node, node.inputs[0])
                details.append(node.label)
            elif std_op(node, "Dropout") and _drop_dropout(graph, node):
                details.append(node.label)
        if details:  # an Identity of a constant (a folded If's branch) makes the reader's input constant
            infer_graph(graph)
        return PassResult(bool(details), len(details), details)


@register
class EliminateNoop(Pass):
    """Cast/CastLike to the input's type, Expand and Reshape to the input's own shape, a Slice
    that selects everything, Transpose by the identity permutation."""
    name = "eliminate_noop"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if not std_op(node, "Cast", "CastLike", "Expand", "Reshape", "Slice", "Transpose"):
                continue
            src = _noop_source(node)
            if src is not None:
                bypass(graph, node, src)
                details.append(node.label)
        return PassResult(bool(details), len(details), details)


def _squeeze_axes(node, r):
    """Normalized axes a Squeeze of a rank-``r`` tensor removes (all unit dims when absent)."""
    axes = axes_of(node, 13)
    if axes is None:
        return None
    if not axes:
        x = node.inputs[0]
        if not x.is_static:
            return None
        return [i for i, d in enumerate(x.shape) if d == 1]
    return norm_axes(axes, r)


@register
class CancelUnsqueezeSqueeze(Pass):
    """Squeeze(Unsqueeze(x, a), a) -> x and Unsqueeze(Squeeze(x, a), a) -> x."""
    name = "cancel_unsqueeze_squeeze"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or not std_op(node, "Squeeze", "Unsqueeze"):
                continue
            mid = node.inputs[0]
            first = mid.producer
            other = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
            if first is None or first.graph is not graph or not std_op(first, other):
                continue
            x = first.inputs[0]
            if rank(x) is None or rank(mid) is None:
                continue
            if node.op_type == "Squeeze":  # first is Unsqueeze: x rank r, mid rank r + len(a)
                ins = axes_of(first, 13)
                ins = None if not ins else norm_axes(ins, rank(mid))
                outs = _squeeze_axes(node, rank(mid))
            else:  # first is Squeeze: x rank R, mid rank R - len(a), output rank R
                outs = _squeeze_axes(first, rank(x))
                ins = axes_of(node, 13)
                ins = None if not ins else norm_axes(ins, rank(x))
            if ins is None or outs is None or ins != outs:
                continue
            bypass(graph, node, x)
            details.append(f"{first.label} + {node.label}")
        return PassResult(bool(details), len(details), details)


@register
class FuseReshapeChain(Pass):
    """Reshape(Reshape(x, s1), s2) -> Reshape(x, s2') where s2' is s2 when it does not copy
    dims from the intermediate (no 0 entries, or allowzero=1), else the static output shape."""
    name = "fuse_reshape_chain"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or not std_op(node, "Reshape") or node.opset < 5:
                continue
            first = node.inputs[0].producer
            if first is None or first.graph is not graph or not std_op(first, "Reshape"):
                continue
            shape = int_list(node.input(1))
            allowzero = int(get_attr(node, "allowzero", 0))
            new_shape = None
            if shape is not None and (allowzero or 0 not in shape):
                new_shape = node.inputs[1]
            elif node.outputs[0].is_static and (allowzero or 0 not in node.outputs[0].shape):
                new_shape = graph.add_const(np.array(node.outputs[0].shape, np.int64), hint=f"{node.name}_shape")
            if new_shape is None:
                continue
            node.set_input(0, first.inputs[0])
            node.set_input(1, new_shape)
            details.append(f"{first.label} + {node.label}")
        return PassResult(bool(details), len(details), details)


@register
class FuseTransposeChain(Pass):
    """Transpose(Transpose(x, p1), p2) -> x when the composition is the identity, else one
    Transpose(x, p1[p2]) when the intermediate has no other reader."""
    name = "fuse_transpose_chain"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or not std_op(node, "Transpose"):
                continue
            mid = node.inputs[0]
            first = mid.producer
            if first is None or first.graph is not graph or not std_op(first, "Transpose"):
                continue
            p1, p2 = _transpose_perm(first), _transpose_perm(node)
            if p1 is None or p2 is None or len(p1) != len(p2):
                continue
            perm = [p1[i] for i in p2]
            x = first.inputs[0]
            if perm == list(range(len(perm))):
                bypass(graph, node, x)
            elif sole_user(mid) is node:
                node.set_input(0, x)
                node.attrs["perm"] = perm
                graph.remove_node(first)
            else:
                continue
            details.append(f"{first.label} + {node.label}")
        return PassResult(bool(details), len(details), details)
