"""Gelu fusions (extended level, float32, only where the C provider claims the fused node):

* the erf form (Div by sqrt 2 or Mul by 1/sqrt 2, Erf, Add 1, Mul x, Mul 0.5 in any association)
  -> onnxc.Gelu, its tanh form -> onnxc.FastGelu, and the standard Gelu op (opset 20); then a
  bias Add feeding either is folded in as its bias input (``fuse_gelus``, in transformer_fusion);
* MatMul with constant 2-D weights whose sole reader is an onnxc.Gelu / FastGelu ->
  onnxc.MatMulGelu: bias and Gelu run in the SGEMM epilogue, on each block of the product while
  it is in cache, instead of a second pass (``fuse_matmul_gelus``, transformer_matmul_gelu).
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

from ...ir import Node
from ...ops import get_attr
from ..util import is_op, scalar, sole_user
from .transformer_match import F32, f32, fuse, last_dim_vector, other, prod, same_shape, scalar_operand, static_shape

_GELU_TOL = 1e-4  # relative tolerance on the Gelu pattern constants (exports write sqrt 2 as 1.4142 etc.)


def _close(a: Optional[float], b: float, tol: float = _GELU_TOL) -> bool:
    return a is not None and math.isfinite(a) and abs(a - b) <= tol * abs(b)



def _gelu_tail(x, a) -> Optional[Tuple[List[Node], Node]]:
    """Nodes computing 0.5 * x * a from ``a`` (= 1 + f(x)) in any association; (nodes, final)."""
    m1 = sole_user(a)
    if not is_op(m1, "Mul"):
        return None
    o = other(m1, a)
    if o is x:  # (x * a) * 0.5
        m2 = sole_user(m1.outputs[0])
        if is_op(m2, "Mul") and _close(scalar_operand(m2, m1.outputs[0]), 0.5):
            return [m1, m2], m2
        return None
    if _close(scalar(o), 0.5):  # x * (a * 0.5)
        m2 = sole_user(m1.outputs[0])
        if is_op(m2, "Mul") and other(m2, m1.outputs[0]) is x:
            return [m1, m2], m2
        return None
    h = prod(o)  # (x * 0.5) * a
    if is_op(h, "Mul") and _close(scalar_operand(h, x), 0.5) and sole_user(o) is m1:
        return [h, m1], m1
    return None


def _one_plus(v) -> Optional[Node]:
    n = sole_user(v)
    return n if is_op(n, "Add") and _close(scalar_operand(n, v), 1.0) else None


def _match_gelu_erf(erf) -> Optional[Tuple[List[Node], Node, object]]:
    u = erf.inputs[0]
    d = prod(u)
    if d is None or sole_user(u) is not erf:
        return None
    if is_op(d, "Div") and _close(scalar(d.inputs[1]), math.sqrt(2.0)):
        x = d.inputs[0]
    elif is_op(d, "Mul"):
        x = next((i for i in d.inputs if not _close(scalar(i), math.sqrt(0.5))), None)
        if x is None or not _close(scalar_operand(d, x), math.sqrt(0.5)):
            return None
    else:
        return None
    add = _one_plus(erf.outputs[0])
    tail = _gelu_tail(x, add.outputs[0]) if add is not None else None
    if tail is None:
        return None
    return [d, erf, add] + tail[0], tail[1], x


def _cube_of(v) -> Optional[Tuple[List[Node], object]]:
    """(nodes, x) if ``v`` = x^3 as Pow(x, 3), Mul(Mul(x, x), x) or Mul(x, Mul(x, x))."""
    p = prod(v)
    if is_op(p, "Pow") and scalar(p.inputs[1]) == 3.0:
        return [p], p.inputs[0]
    if is_op(p, "Mul"):
        for sq_v in p.inputs:
            sq = prod(sq_v)
            if is_op(sq, "Mul") and sq.inputs[0] is sq.inputs[1] and other(p, sq_v) is sq.inputs[0]:
                return [sq, p], sq.inputs[0]
    return None


def _match_gelu_tanh(tanh) -> Optional[Tuple[List[Node], Node, object]]:
    t = tanh.inputs[0]
    m = prod(t)  # sqrt(2/pi) * inner
    if not is_op(m, "Mul") or sole_user(t) is not tanh:
        return None
    inner = next((i for i in m.inputs if scalar(i) is None), None)
    if inner is None or not _close(scalar_operand(m, inner), math.sqrt(2.0 / math.pi)):
        return None
    add = prod(inner)  # x + 0.044715 x^3
    if not is_op(add, "Add"):
        return None
    for x in add.inputs:
        c3 = prod(other(add, x))
        if not is_op(c3, "Mul"):
            continue
        cube_v = next((i for i in c3.inputs if scalar(i) is None), None)
        if cube_v is None or not _close(scalar_operand(c3, cube_v), 0.044715):
            continue
        cube = _cube_of(cube_v)
        if cube is None or cube[1] is not x:
            continue
        one = _one_plus(tanh.outputs[0])
        tail = _gelu_tail(x, one.outputs[0]) if one is not None else None
        if tail is None:
            return None
        return cube[0] + [c3, add, m, tanh, one] + tail[0], tail[1], x
    return None


def fuse_gelus(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph:
            continue
        m, op = None, None
        if is_op(node, "Erf"):
            m, op = _match_gelu_erf(node), "Gelu"
        elif is_op(node, "Tanh"):
            m, op = _match_gelu_tanh(node), "FastGelu"
        elif is_op(node, "Gelu") and f32(node.inputs[0], node.outputs[0]):
            approx = get_attr(node, "approximate", "none")
            if approx in ("none", "tanh"):
                m, op = ([node], node, node.inputs[0]), ("Gelu" if approx == "none" else "FastGelu")
        if m is None:
            continue
        nodes, final, x = m
        if not f32(x, final.outputs[0]) or not same_shape(x, final.outputs[0]):
            continue
        count += fuse(graph, nodes, final, op, [x], {}, details)
    # a bias Add feeding a Gelu becomes its bias input
    for node in list(graph.nodes):
        if node.graph is not graph or node.domain != "onnxc" or node.op_type not in ("Gelu", "FastGelu"):
            continue
        if node.input(1) is not None:
            continue
        a = prod(node.inputs[0])
        if not is_op(a, "Add") or sole_user(a.outputs[0]) is not node:
            continue
        for t in a.inputs:
            b = other(a, t)
            n = a.outputs[0].shape[-1]
            vec = last_dim_vector(b, n) if b is not None and b.is_const else None
            if vec is None or t.is_const or not same_shape(t, a.outputs[0]):
                continue
            bias = b if static_shape(b) == (n,) and b.dtype == F32 else graph.add_const(vec, "gelu_bias")
            if fuse(graph, [a, node], node, node.op_type, [t, bias], {}, details):
                count += 1
                break
            graph.prune_constants()
    return count


def fuse_matmul_gelus(graph, details) -> int:
    """MatMul(A, constant 2-D B) -> onnxc.Gelu / FastGelu (bias?) => onnxc.MatMulGelu."""
    n = 0
    for g in list(graph.nodes):
        if g.graph is not graph or g.domain != "onnxc" or g.op_type not in ("Gelu", "FastGelu"):
            continue
        mm = prod(g.inputs[0])
        if not is_op(mm, "MatMul") or sole_user(mm.outputs[0]) is not g:
            continue
        a, b = mm.inputs
        if not f32(a, b, g.outputs[0]) or not b.is_const or len(b.shape) != 2 or len(a.shape) < 2:
            continue
        ins = [a, b] + ([g.input(1)] if g.input(1) is not None else [])
        approx = "tanh" if g.op_type == "FastGelu" else "none"
        n += fuse(graph, [mm, g], g, "MatMulGelu", ins, {"approximate": approx}, details)
    return n
