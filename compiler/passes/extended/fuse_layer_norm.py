"""LayerNormalization (ReduceMean, Sub, Pow 2 / Mul self, ReduceMean, Add eps, Sqrt, Div or
Reciprocal + Mul, Mul gamma?, Add beta?) and RMSNormalization (Pow 2, ReduceMean, Add eps, Sqrt,
Div or Reciprocal + Mul, Mul gamma?) over the last dim -> onnxc.LayerNormalization /
onnxc.RMSNormalization (extended level, float32, in transformer_fusion)."""
from __future__ import annotations

from typing import List, Optional, Tuple

from ...ir import Node
from ...ops import get_attr
from ..util import const, is_op, scalar, sole_user
from .transformer_match import f32, fuse, last_dim_vector, other, prod, same_shape, scalar_operand, vec_input


def _reduce_last_axis(node) -> bool:
    """ReduceMean over exactly the last axis with keepdims."""
    if not is_op(node, "ReduceMean") or not get_attr(node, "keepdims", 1):
        return False
    x = node.inputs[0]
    if x.shape is None:
        return False
    rank = len(x.shape)
    axes = node.attrs.get("axes")
    if axes is None and node.input(1) is not None:
        c = const(node.input(1))
        if c is None:
            return False
        axes = c.reshape(-1).tolist()
    if axes is None or len(axes) != 1:
        return False
    return rank > 0 and int(axes[0]) % rank == rank - 1



def _affine_tail(v, n) -> Tuple[List[Node], object, Optional[object], Optional[object]]:
    """Optional Mul(gamma) then optional Add(beta) after ``v``: (nodes, out, gamma, beta)."""
    nodes, gamma, beta = [], None, None
    u = sole_user(v)
    if is_op(u, "Mul"):
        g = other(u, v)
        if g is not None and last_dim_vector(g, n) is not None and same_shape(u.outputs[0], v):
            nodes.append(u)
            gamma, v = g, u.outputs[0]
    u = sole_user(v)
    if is_op(u, "Add"):
        b = other(u, v)
        if b is not None and last_dim_vector(b, n) is not None and same_shape(u.outputs[0], v):
            nodes.append(u)
            beta, v = b, u.outputs[0]
    return nodes, v, gamma, beta


def _inv_std(var_v) -> Optional[Tuple[List[Node], float, Node, str]]:
    """From a variance value: Add eps, Sqrt, then Div (returns 'div') or Reciprocal ('mul').
    Returns (nodes, eps, last node, kind)."""
    add = sole_user(var_v)
    if not is_op(add, "Add"):
        return None
    eps = scalar_operand(add, var_v)
    if eps is None or not eps >= 0:
        return None
    sq = sole_user(add.outputs[0])
    if not is_op(sq, "Sqrt"):
        return None
    u = sole_user(sq.outputs[0])
    if is_op(u, "Reciprocal") or (is_op(u, "Div") and u.inputs[1] is sq.outputs[0] and scalar(u.inputs[0]) == 1.0):
        return [add, sq, u], float(eps), u, "mul"
    if is_op(u, "Div") and u.inputs[1] is sq.outputs[0]:
        return [add, sq], float(eps), u, "div"
    return None


def _square_of(v) -> Optional[Tuple[Node, object]]:
    p = prod(v)
    if is_op(p, "Pow") and scalar(p.inputs[1]) == 2.0:
        return p, p.inputs[0]
    if is_op(p, "Mul") and p.inputs[0] is p.inputs[1]:
        return p, p.inputs[0]
    return None


def _normalize_tail(num, inv) -> Optional[Tuple[List[Node], object]]:
    """num / sqrt(...) given the _inv_std result: (nodes, normalized value)."""
    nodes, eps, last, kind = inv
    if kind == "div":
        return ([last], last.outputs[0]) if last.inputs[0] is num else None
    u = sole_user(last.outputs[0])
    if is_op(u, "Mul") and other(u, last.outputs[0]) is num:
        return [u], u.outputs[0]
    return None


def _match_layer_norm(rm1):
    """rm1 = ReduceMean(x) feeding x - mean."""
    x = rm1.inputs[0]
    if not _reduce_last_axis(rm1):
        return None
    sub = sole_user(rm1.outputs[0])
    if not is_op(sub, "Sub") or sub.inputs[0] is not x or sub.inputs[1] is not rm1.outputs[0]:
        return None
    d = sub.outputs[0]
    users = d.users
    if len(users) != 2:
        return None
    sq = next((u for u in users if _square_of(u.outputs[0]) is not None and _square_of(u.outputs[0])[1] is d), None)
    if sq is None:
        return None
    rm2 = sole_user(sq.outputs[0])
    if not _reduce_last_axis(rm2):
        return None
    inv = _inv_std(rm2.outputs[0])
    if inv is None:
        return None
    norm = _normalize_tail(d, inv)
    if norm is None:
        return None
    n = x.shape[-1]
    tail, out, gamma, beta = _affine_tail(norm[1], n)
    nodes = [rm1, sub, sq, rm2] + inv[0] + norm[0] + tail
    final = nodes[-1]
    return nodes, final, x, inv[1], gamma, beta


def _match_rms_norm(rm):
    if not _reduce_last_axis(rm):
        return None
    s = _square_of(rm.inputs[0])
    if s is None:
        return None
    sq, x = s
    if sole_user(sq.outputs[0]) is not rm:
        return None
    inv = _inv_std(rm.outputs[0])
    if inv is None:
        return None
    norm = _normalize_tail(x, inv)
    if norm is None:
        return None
    tail, out, gamma, beta = _affine_tail(norm[1], x.shape[-1])
    if beta is not None:  # RMSNorm has no shift: leave the Add outside
        tail = tail[:-1]
    nodes = [sq, rm] + inv[0] + norm[0] + tail
    return nodes, nodes[-1], x, inv[1], gamma



def fuse_norms(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph or not is_op(node, "ReduceMean"):
            continue
        x = node.inputs[0]
        if not f32(x) or not x.shape:
            continue
        n = x.shape[-1]
        m = _match_layer_norm(node)
        if m is not None:
            nodes, final, x, eps, gamma, beta = m
            if f32(final.outputs[0]) and same_shape(final.outputs[0], x):
                ins = [x, vec_input(graph, gamma, n), vec_input(graph, beta, n)]
                while ins[-1] is None:
                    ins.pop()
                if fuse(graph, nodes, final, "LayerNormalization", ins, {"epsilon": eps}, details):
                    count += 1
                    continue
                graph.prune_constants()
            continue
        m = _match_rms_norm(node)
        if m is not None:
            nodes, final, x, eps, gamma = m
            if f32(final.outputs[0]) and same_shape(final.outputs[0], x):
                ins = [x] + ([vec_input(graph, gamma, n)] if gamma is not None else [])
                if fuse(graph, nodes, final, "RMSNormalization", ins, {"epsilon": eps}, details):
                    count += 1
                    continue
                graph.prune_constants()
    return count
