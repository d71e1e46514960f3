"""Fold per-output-channel affine ops that follow a Conv into its weights and bias:

    Add(Conv(x, W, B), c)              -> Conv(x, W, B + c)            c scalar or per channel
    Mul(Conv(x, W, B), s)              -> Conv(x, W * s, B * s)        s scalar or per channel
    BatchNormalization(Conv(x, W, B))  -> Conv(x, W * f, (B - mean) * f + beta),
                                          f = scale / sqrt(var + epsilon)   (inference form)

Only when the Conv output has no other reader and is not a graph output, the operands are
compile-time constants and broadcasting them leaves the Conv's output shape unchanged.  The
folded parameters are computed in float64 and rounded once to the weights' type; the result
differs from the unfused graph by that reassociation only.
"""
from __future__ import annotations

import numpy as np

from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import const, sole_user
from .common import fuse, per_channel, std_op, unused


def _conv_then(graph, node, *op_types):
    """(user, other operand) when ``node`` is a Conv whose output's only reader is one of
    ``op_types`` (for binary ops, the operand that is not the Conv output)."""
    if not std_op(node, "Conv") or node.graph is not graph:
        return None
    y = node.outputs[0]
    user = sole_user(y)
    if not std_op(user, *op_types) or y.shape is None or len(y.shape) < 3 or not isinstance(y.shape[1], int):
        return None  # (only the channel count matters: weights from a runtime ConstantOfShape leave it
        # symbolic, fuzz seed 4 case 898; a symbolic batch, as in most exports, does not)
    if user.op_type in ("Add", "Mul"):
        other = user.inputs[1] if user.inputs[0] is y else user.inputs[0]
        return user, other
    return user, None


def _bias(node):
    """The Conv's bias as an array (zeros when absent), or None when it is not a constant."""
    b = node.input(2)
    if b is None:
        return np.zeros(node.outputs[0].shape[1], np.float64)
    c = const(b)
    if c is None or c.shape != (node.outputs[0].shape[1],):  # not a per-channel vector: not ours to fix
        return None
    return c.astype(np.float64)


def _rebuild(graph, conv, user, w, b, tag):
    x = conv.inputs[0]
    wv = conv.inputs[1] if w is None else graph.add_const(w, hint=f"{conv.name}_{tag}_W")
    bv = graph.add_const(b, hint=f"{conv.name}_{tag}_B")
    fuse(graph, [conv, user], "Conv", [x, wv, bv], dict(conv.attrs), name=conv.name)


def _finite(*arrays) -> bool:
    return all(np.all(np.isfinite(a)) for a in arrays)


@register
class FuseConvAdd(Pass):
    name = "fuse_conv_add"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            m = _conv_then(graph, node, "Add")
            if m is None:
                continue
            add, other = m
            c, b = const(other), _bias(node)
            if c is None or b is None or c.dtype != node.outputs[0].dtype:
                continue
            vec = per_channel(c, node.outputs[0].shape)
            if vec is None:
                continue
            _rebuild(graph, node, add, None, (b + vec.astype(np.float64)).astype(c.dtype), "add")
            details.append(f"{node.label} + {add.label}")
        return PassResult(bool(details), len(details), details)


@register
class FuseConvMul(Pass):
    name = "fuse_conv_mul"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            m = _conv_then(graph, node, "Mul")
            if m is None:
                continue
            mul, other = m
            s, w, b = const(other), const(node.inputs[1]), _bias(node)
            if s is None or w is None or b is None or s.dtype != w.dtype:
                continue
            vec = per_channel(s, node.outputs[0].shape)
            if vec is None or not _finite(vec):
                continue  # inf * 0 inside the convolution sum would not be inf * 0 after it
            vec = vec.astype(np.float64)
            w2 = (w.astype(np.float64) * vec.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            _rebuild(graph, node, mul, w2, (b * vec).astype(w.dtype), "mul")
            details.append(f"{node.label} + {mul.label}")
        return PassResult(bool(details), len(details), details)


def _bn_inference(bn) -> bool:
    """The inference form: Y = scale * (x - mean) / sqrt(var + eps) + B with the given stats."""
    if bn.opset < 7:
        return False  # BatchNormalization-1/6 (is_test, consumed_inputs): left alone
    if bn.opset < 9 and int(get_attr(bn, "spatial", 1)) != 1:
        return False
    if bn.opset >= 14 and int(get_attr(bn, "training_mode", 0)):
        return False
    return all(unused(o) for o in bn.outputs[1:])


@register
class FuseConvBatchNorm(Pass):
    name = "fuse_conv_batchnorm"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            m = _conv_then(graph, node, "BatchNormalization")
            if m is None:
                continue
            bn = m[0]
            if bn.inputs[0] is not node.outputs[0] or not _bn_inference(bn):
                continue
            w, b = const(node.inputs[1]), _bias(node)
            params = [const(bn.input(i)) for i in range(1, 5)]
            channels = node.outputs[0].shape[1]
            if w is None or b is None or any(p is None or p.shape != (channels,) for p in params):
                continue
            scale, beta, mean, var = (p.astype(np.float64) for p in params)
            eps = float(get_attr(bn, "epsilon", 1e-5))
            if not _finite(scale, beta, mean, var) or np.any(var + eps <= 0):
                continue
            f = scale / np.sqrt(var + eps)
            w2 = (w.astype(np.float64) * f.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            _rebuild(graph, node, bn, w2, ((b - mean) * f + beta).astype(w.dtype), "bn")
            details.append(f"{node.label} + {bn.label}")
        return PassResult(bool(details), len(details), details)
