"""GEMM/Conv epilogue fusions (extended level): work that would otherwise re-read a Conv, Gemm or
MatMul output moves into the producing kernel (ops/fused_nn.py has the fused ops' semantics).

In run order:
  * epilogue_matmul_transpose: MatMul(Transpose(A) swapping the last two dims, B) -> transA/transB;
  * epilogue_matmul_scale: MatMul input or output multiplied/divided by a scalar constant -> alpha;
  * epilogue_matmul_bias: MatMul + Add(constant varying only along the last dim) -> bias;
  * epilogue_conv_residual: Conv + Add(non-constant Z of the output's shape) -> FusedConv with Z;
  * epilogue_activation: Conv/Gemm/MatMul (or a fused node without activation) followed by Relu,
    LeakyRelu, Clip (constant bounds), Sigmoid, Tanh, HardSigmoid, HardSwish or Mul(x, Sigmoid(x))
    -> the activation in the epilogue.
The level's fixpoint chains them (MatMul -> Mul(0.5) -> Add(b) -> Relu ends as one FusedMatMul).
Every rewrite needs each removed intermediate to have a single user and not be a graph output,
works on float32 only, and is kept only if the C provider claims the fused node (ONNX Runtime's
conv_activation_fusion, matmul_scale_fusion, conv_add_act_fusion and matmul_transpose_fusion do
the same job for its own contrib ops).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ir import Value
from ...ops import get_attr
from ...ops.activations import params_of
from ...ops.fused_nn import activation_of
from ..manager import Pass, PassResult, register
from ..util import const, is_op, replace_with, scalar, sole_user

F32 = np.dtype("float32")
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_GEMM_ATTRS = ("alpha", "beta", "transA", "transB")
_FUSED_ATTRS = ("activation", "activation_params")


def _is_fused(node, *ops) -> bool:
    return node is not None and node.domain == "onnxc" and node.op_type in ops


def _f32(node) -> bool:
    """float32 with static shapes throughout (what the fused C kernels take)."""
    return all(v is None or (v.dtype == F32 and v.is_static) for v in list(node.inputs) + list(node.outputs))


def _matmul_like(node) -> bool:
    return (is_op(node, "MatMul") or _is_fused(node, "FusedMatMul")) and _f32(node)


def _matmul_attrs(node) -> dict:
    """FusedMatMul attributes equivalent to ``node`` (a MatMul or a FusedMatMul)."""
    if _is_fused(node, "FusedMatMul"):
        return dict(node.attrs)
    return {"transA": 0, "transB": 0, "alpha": 1.0, "activation": "", "activation_params": []}


def _inputs(node) -> List:
    ins = list(node.inputs)
    while ins and ins[-1] is None:
        ins.pop()
    return ins


class _Rewriter(Pass):
    level = "extended"

    def match(self, graph, node) -> Optional[Tuple[list, str, list, dict]]:
        """(old nodes, last to replace last; fused op type; inputs; attributes) or None."""
        raise NotImplementedError

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph:  # removed by an earlier rewrite of this sweep
                continue
            m = self.match(graph, node)
            if m is None:
                continue
            old, op, inputs, attrs = m
            labels = " + ".join(n.label for n in old)
            new = replace_with(graph, old, op, inputs, attrs, check_c=True)
            if new is not None:
                for v in inputs:  # constants made for the fused node join the graph only now
                    if v is not None and v.is_const and v.name not in graph.constants:
                        graph.constants[v.name] = v
                details.append(f"{labels} -> {op}")
        return PassResult(bool(details), len(details), details)


# --- MatMul + Transpose -------------------------------------------------------------------------
def _swaps_last_two(t) -> bool:
    rank = len(t.inputs[0].shape) if t.inputs[0].shape is not None else 0
    if rank < 2:
        return False
    perm = get_attr(t, "perm", None)
    perm = list(range(rank))[::-1] if perm is None else [int(p) % rank for p in perm]
    return perm == list(range(rank - 2)) + [rank - 1, rank - 2]


@register
class MatMulTranspose(_Rewriter):
    name = "epilogue_matmul_transpose"

    def match(self, graph, node):
        if not _matmul_like(node):
            return None
        attrs, inputs, old = _matmul_attrs(node), _inputs(node), []
        for i, flag in ((0, "transA"), (1, "transB")):
            t = inputs[i].producer
            if is_op(t, "Transpose") and _swaps_last_two(t) and sole_user(inputs[i]) is node:
                inputs[i] = t.inputs[0]
                attrs[flag] = 1 - int(attrs.get(flag, 0))
                old.append(t)
        return (old + [node], "FusedMatMul", inputs, attrs) if old else None


# --- MatMul scaled by a scalar constant ---------------------------------------------------------
def _scale_of(op_node, x) -> Optional[float]:
    """s when ``op_node`` computes x*s, s*x or x/s with s a scalar float constant that does not
    broadcast x to a larger shape; else None."""
    if not (is_op(op_node, "Mul", "Div") and _f32(op_node)):
        return None
    a, b = op_node.inputs
    other = b if a is x else a if (b is x and op_node.op_type == "Mul") else None
    if other is None or other is x:
        return None
    s = scalar(other)
    if s is None or len(other.shape) > len(x.shape) or not np.isfinite(s):
        return None
    if op_node.op_type == "Div":
        return None if s == 0 else float(np.float32(1) / np.float32(s))
    return float(s)


@register
class MatMulScale(_Rewriter):
    name = "epilogue_matmul_scale"

    def match(self, graph, node):
        if not _matmul_like(node):
            return None
        attrs, inputs, old = _matmul_attrs(node), _inputs(node), []
        alpha = float(attrs.get("alpha", 1.0))
        for i in (0, 1):
            p = inputs[i].producer
            if not is_op(p, "Mul", "Div") or sole_user(inputs[i]) is not node:
                continue
            x = p.inputs[0] if p.inputs[1].is_const else p.inputs[1]
            s = _scale_of(p, x)
            if s is not None:
                inputs[i] = x
                alpha *= s
                old.append(p)
        old.append(node)
        # output scale: only when nothing (bias, activation) follows the product yet
        y = node.outputs[0]
        user = sole_user(y)
        if (user is not None and len(inputs) < 3 and not activation_of(node)[0]
                and tuple(user.outputs[0].shape or ()) == tuple(y.shape or ())):
            s = _scale_of(user, y)
            if s is not None:
                alpha *= s
                old.append(user)
        if len(old) == 1:
            return None
        attrs["alpha"] = float(np.float32(alpha))
        return old, "FusedMatMul", inputs, attrs


# --- MatMul + Add(bias) ---------------------------------------------------------------------------
def _last_dim_bias(c: np.ndarray, y_shape) -> Optional[np.ndarray]:
    """c as an [N] vector when Add(y, c) only adds it along y's last dim (and keeps y's shape)."""
    if not y_shape or c.ndim > len(y_shape) or any(d != 1 for d in c.shape[:-1]):
        return None
    n = y_shape[-1]
    if c.ndim and c.shape[-1] not in (1, n):
        return None
    return np.ascontiguousarray(np.broadcast_to(c.reshape(-1), (n,)))


@register
class MatMulBias(_Rewriter):
    name = "epilogue_matmul_bias"

    def match(self, graph, node):
        if not _matmul_like(node) or len(_inputs(node)) > 2 or activation_of(node)[0]:
            return None
        if len(node.inputs[1].shape) < 2:  # 1-D B: Y's last dim is not N
            return None
        y = node.outputs[0]
        add = sole_user(y)
        if not is_op(add, "Add") or not _f32(add) or tuple(add.outputs[0].shape) != tuple(y.shape):
            return None
        other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        c = const(other)
        if other is y or c is None:
            return None
        bias = _last_dim_bias(c, y.shape)
        if bias is None:
            return None
        b = Value(graph.fresh_name(f"{node.name or 'matmul'}_bias"), const=bias)
        b.graph = graph  # registered as a graph constant only if the rewrite happens
        return [node, add], "FusedMatMul", _inputs(node)[:2] + [b], _matmul_attrs(node)


# --- Conv + residual Add --------------------------------------------------------------------------
def _conv_attrs(node) -> dict:
    attrs = {k: v for k, v in node.attrs.items() if k in _CONV_ATTRS + _FUSED_ATTRS}
    attrs.setdefault("activation", "")
    attrs.setdefault("activation_params", [])
    return attrs


@register
class ConvResidual(_Rewriter):
    name = "epilogue_conv_residual"

    def match(self, graph, node):
        is_conv = is_op(node, "Conv") or (_is_fused(node, "FusedConv") and node.input(3) is None
                                          and not activation_of(node)[0])
        if not is_conv or not _f32(node):
            return None
        y = node.outputs[0]
        add = sole_user(y)
        if not is_op(add, "Add") or not _f32(add):
            return None
        z = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
        if z is y or z.is_const or tuple(z.shape or ()) != tuple(y.shape) \
                or tuple(add.outputs[0].shape) != tuple(y.shape):
            return None
        ins = list(node.inputs[:3]) + [None] * (3 - len(node.inputs[:3]))
        return [node, add], "FusedConv", ins + [z], _conv_attrs(node)


# --- activation -----------------------------------------------------------------------------------
def _activation(graph, y) -> Optional[Tuple[list, str, list]]:
    """(nodes computing act(y), last being the result; activation name; params) or None."""
    if graph.is_output(y):
        return None
    users = y.users
    if len(users) == 2 and len(y.uses) == 2:  # SiLU: Mul(y, Sigmoid(y)) in either order
        sig = next((u for u in users if is_op(u, "Sigmoid")), None)
        mul = next((u for u in users if is_op(u, "Mul")), None)
        if sig is not None and mul is not None and sole_user(sig.outputs[0]) is mul \
                and {id(v) for v in mul.inputs} == {id(y), id(sig.outputs[0])} and _f32(mul):
            return [sig, mul], "SiLU", []
        return None
    u = sole_user(y)
    if u is None or not _f32(u) or len(u.outputs) != 1:
        return None
    params = params_of(u)  # an activation op of the table (ops/activations.py), attributes as params
    if params is not None:
        return [u], u.op_type, params
    if is_op(u, "Clip"):
        if u.opset < 11:
            lo, hi = get_attr(u, "min", float("-inf")), get_attr(u, "max", float("inf"))
        else:
            bounds = [u.input(1), u.input(2)]
            if any(b is not None and scalar(b) is None for b in bounds):
                return None  # runtime bounds: not a constant epilogue
            lo = scalar(bounds[0]) if bounds[0] is not None else float("-inf")
            hi = scalar(bounds[1]) if bounds[1] is not None else float("inf")
        return [u], "Clip", [float(lo), float(hi)]
    return None


@register
class ActivationEpilogue(_Rewriter):
    name = "epilogue_activation"

    def match(self, graph, node):
        if not _f32(node):
            return None
        if is_op(node, "Conv"):
            op, attrs, ins = "FusedConv", _conv_attrs(node), _inputs(node)
        elif is_op(node, "Gemm"):
            op = "FusedGemm"
            attrs = {k: v for k, v in node.attrs.items() if k in _GEMM_ATTRS}
            ins = _inputs(node)
        elif is_op(node, "MatMul"):
            op, attrs, ins = "FusedMatMul", _matmul_attrs(node), _inputs(node)
        elif _is_fused(node, "FusedConv", "FusedGemm", "FusedMatMul") and not activation_of(node)[0]:
            op, attrs, ins = node.op_type, dict(node.attrs), list(node.inputs)
        else:
            return None
        m = _activation(graph, node.outputs[0])
        if m is None:
            return None
        tail, name, params = m
        attrs["activation"], attrs["activation_params"] = name, params
        return [node] + tail, op, ins, attrs
