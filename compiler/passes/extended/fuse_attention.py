"""Multi-head self-attention (BERT/HuggingFace and torchvision ViT exports) ->
onnxc.MultiHeadAttention (extended level, float32, in transformer_fusion): the Q/K/V
projections (MatMul + bias Add, separate or packed), the head split (any chain of
Reshape/Transpose/Squeeze/Unsqueeze/Gather/Slice/Split), scalar scales (on Q, K or the scores,
Mul or Div), an optional additive mask, Softmax, an optional Where(IsNaN) guard, the product with
V and the head merge.  The layout chains are not matched op by op: each is replayed on an index
tensor (arange over the projection output) and the result must address exactly the elements the
fused kernel reads, which checks every shape, perm, axis and index at once."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ir import Node
from ...ops import evaluate, get_attr
from ..util import c_supported, is_op, replace_with, scalar, sole_user
from .transformer_match import F32, f32, last_dim_vector, ordered, other, prod, same_shape, static_shape, users_inside

_LAYOUT = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Gather", "Slice", "Split")


class _NoMatch(Exception):
    pass


def _need(cond, why=""):
    if not cond:
        raise _NoMatch(why)


def _scale_through(v, factor) -> Tuple[object, float, List[Node]]:
    """Skip scalar Mul/Div nodes above ``v``: (value, accumulated factor, nodes)."""
    nodes = []
    while True:
        p = prod(v)
        if is_op(p, "Mul"):
            o = next((i for i in p.inputs if scalar(i) is not None), None)
            if o is None or other(p, o) is None or not same_shape(p.outputs[0], other(p, o)):
                return v, factor, nodes
            factor *= float(scalar(o))
            nodes.append(p)
            v = other(p, o)
        elif (is_op(p, "Div") and scalar(p.inputs[1]) is not None
              and same_shape(p.outputs[0], p.inputs[0])):
            factor /= float(scalar(p.inputs[1]))
            nodes.append(p)
            v = p.inputs[0]
        else:
            return v, factor, nodes


def _projection(v):
    """The projection behind a head tensor: walk up layout ops and scalar scales to
    Add(MatMul(X, W const), bias const) or MatMul(X, W const).
    Returns (X, W, bias or None, projection output, index tensor, factor, nodes)."""
    chain, nodes, factor = [], [], 1.0
    while True:
        v, factor, sn = _scale_through(v, factor)
        nodes += sn
        p = prod(v)
        _need(p is not None, "no producer")
        if p.op_type in _LAYOUT:
            _need(all(i is p.inputs[0] or i is None or i.is_const for i in p.inputs), "non-constant layout input")
            chain.append((p, p.outputs.index(v)))
            nodes.append(p)
            v = p.inputs[0]
            continue
        break
    proj_out = v
    bias = None
    if is_op(p, "Add"):
        mm_v = next((i for i in p.inputs if is_op(prod(i), "MatMul")), None)
        _need(mm_v is not None, "bias Add without MatMul")
        bias = other(p, mm_v)
        _need(bias is not None and bias.is_const, "bias not constant")
        nodes.append(p)
        p = prod(mm_v)
    _need(is_op(p, "MatMul"), "no projection MatMul")
    x, w = p.inputs
    _need(w.is_const and len(w.shape) == 2 and x.shape is not None and len(x.shape) == 3, "projection shape")
    n = w.shape[1]
    if bias is not None:
        _need(last_dim_vector(bias, n) is not None, "bias shape")
        bias = last_dim_vector(bias, n)
    _need(f32(x, proj_out) and static_shape(proj_out) == tuple(x.shape[:2]) + (n,), "projection output")
    nodes.append(p)
    # replay the layout chain on the flat index of every projection output element
    idx = np.arange(int(np.prod(proj_out.shape)), dtype=np.int64).reshape(proj_out.shape)
    for node, k in reversed(chain):
        idx = _replay(node, idx, k)
    return x, w.const, bias, proj_out, idx, factor, nodes


def _replay(node, idx, k):
    """Output ``k`` of layout op ``node`` applied to the index tensor ``idx`` (its data input).
    Pure reshapes keep the element order, so they take the output's static shape."""
    out = node.outputs[k]
    _need(out.is_static, "layout output shape unknown")
    if node.op_type in ("Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"):
        _need(idx.size == out.size, "reshape size")
        return idx.reshape(out.shape)
    args = [idx if i is node.inputs[0] else (None if i is None else i.const) for i in node.inputs]
    res = np.asarray(evaluate(node, args)[k])
    _need(tuple(res.shape) == tuple(out.shape), "layout shape disagrees")
    return res


def _head_columns(idx, n, B, S, seq_first) -> Optional[int]:
    """Column offset ``off`` if idx [B, H, S, D] addresses row(b, s), column off + h*D + d."""
    Bq, H, Sq, D = idx.shape
    rows, cols = idx // n, idx % n
    b = np.arange(B).reshape(B, 1, 1, 1)
    s = np.arange(S).reshape(1, 1, S, 1)
    want_rows = s * B + b if seq_first else b * S + s
    if not np.array_equal(rows, np.broadcast_to(want_rows, rows.shape)):
        return None
    off = int(cols.reshape(-1)[0])
    want = off + np.arange(H).reshape(1, H, 1, 1) * D + np.arange(D).reshape(1, 1, 1, D)
    if off + H * D > n or not np.array_equal(cols, np.broadcast_to(want, cols.shape)):
        return None
    return off


def _match_attention(graph, sm):
    """sm: a Softmax over the last axis of the attention scores."""
    scores = sm.inputs[0]
    _need(f32(scores) and len(scores.shape) == 4, "scores not 4-D float32")
    _need(int(get_attr(sm, "axis", -1)) % 4 == 3, "softmax axis")
    B, H, S, S2 = scores.shape
    _need(S == S2, "not self-attention")
    nodes = [sm]
    # probabilities: optional Where(IsNaN(p), 0, p)
    p = sm.outputs[0]
    nan_to_zero = 0
    users = p.users
    isnan = next((u for u in users if is_op(u, "IsNaN")), None)
    if isnan is not None:
        where = sole_user(isnan.outputs[0])
        _need(is_op(where, "Where") and where.inputs[2] is p and scalar(where.inputs[1]) == 0.0, "IsNaN guard")
        _need(len(users) == 2 and where in users, "probabilities read elsewhere")
        nodes += [isnan, where]
        p, nan_to_zero = where.outputs[0], 1
    pv = sole_user(p)
    _need(is_op(pv, "MatMul") and pv.inputs[0] is p, "no P V product")
    nodes.append(pv)
    # scores = scale * (Q K^T) [+ mask]
    v, mask = scores, None
    a = prod(v)
    if is_op(a, "Add"):
        for cand in a.inputs:
            rest = other(a, cand)
            c, _, _ = _scale_through(cand, 1.0)
            if is_op(prod(c), "MatMul") and rest is not cand:
                mask = rest
                v = cand
                break
        _need(mask is not None, "Add without a QK product")
        _need(mask.dtype == F32 and mask.is_static and len(mask.shape) <= 4, "mask")
        nodes.append(a)
    v, factor, sn = _scale_through(v, 1.0)
    nodes += sn
    qk = prod(v)
    _need(is_op(qk, "MatMul"), "no QK product")
    nodes.append(qk)
    xq, wq, bq, pq, iq, fq, nq = _projection(qk.inputs[0])
    xk, wk, bk, pk, ik, fk, nk = _projection(qk.inputs[1])
    xv, wv, bv, pv_, iv, fv, nv = _projection(pv.inputs[1])
    _need(xq is xk is xv, "Q, K and V do not project one input")
    _need(fv == 1.0, "scaled V")
    nodes += nq + nk + nv
    _need(iq.ndim == ik.ndim == iv.ndim == 4, "heads not 4-D")
    _need(iq.shape[:2] == (B, H) and iq.shape[2] == S and ik.shape == (B, H, iq.shape[3], S)
          and iv.shape[:3] == (B, H, S), "head shapes")
    D, Dv = iq.shape[3], iv.shape[3]
    _need(D == Dv, "V head size differs")
    x = xq
    d0, d1, E = x.shape
    layouts = [False, True] if (d0, d1) == (B, S) else [True] if (d0, d1) == (S, B) else []
    _need(layouts, "hidden states do not match the batch/sequence dims")
    for seq_first in layouts:
        offs = [_head_columns(iq, wq.shape[1], B, S, seq_first),
                _head_columns(np.swapaxes(ik, 2, 3), wk.shape[1], B, S, seq_first),
                _head_columns(iv, wv.shape[1], B, S, seq_first)]
        if None not in offs:
            break
    else:
        raise _NoMatch("head layout")
    HD = H * D
    w = np.concatenate([m[:, o:o + HD] for m, o in zip((wq, wk, wv), offs)], axis=1).astype(F32)
    bias = None
    if any(b is not None for b in (bq, bk, bv)):
        bias = np.concatenate([(b if b is not None else np.zeros(m.shape[1], F32))[o:o + HD]
                               for b, m, o in zip((bq, bk, bv), (wq, wk, wv), offs)]).astype(F32)
    # head merge: follow the context through layout ops while its flat order is not yet
    # (batch-first) b, s, h, d or (seq-first) s, b, h, d
    ctx = pv.outputs[0]
    _need(static_shape(ctx) == (B, H, S, D), "context shape")
    base = np.arange(B * H * S * D, dtype=np.int64).reshape(B, H, S, D)
    want = (base.transpose(2, 0, 1, 3) if seq_first else base.transpose(0, 2, 1, 3)).reshape(-1)
    idx, cur, final, tail = base, ctx, None, []
    for _ in range(8):
        u = sole_user(cur)
        if u is None or not is_op(u, *_LAYOUT[:6]) or u.inputs[0] is not cur:
            break
        if not all(i is cur or i is None or i.is_const for i in u.inputs):
            break
        idx = _replay(u, idx, 0)
        tail.append(u)
        cur = u.outputs[0]
        if np.array_equal(idx.reshape(-1), want):
            final = len(tail)
    _need(final is not None, "head merge")
    nodes += tail[:final]
    out = tail[final - 1].outputs[0]
    scale = factor * fq * fk
    return dict(nodes=nodes, x=x, w=w, bias=bias, mask=mask, out=out, final=tail[final - 1],
                attrs={"num_heads": int(H), "scale": float(np.float32(scale)), "seq_first": int(seq_first),
                       "nan_to_zero": nan_to_zero},
                shape=(S, B, HD) if seq_first else (B, S, HD))


def fuse_attention(graph, details) -> int:
    count = 0
    for sm in list(graph.nodes):
        if sm.graph is not graph or not is_op(sm, "Softmax"):
            continue
        try:
            m = _match_attention(graph, sm)
        except _NoMatch:
            continue
        nodes, final, out = m["nodes"], m["final"], m["out"]
        if not users_inside(nodes, final) or not f32(out):
            continue
        w = graph.add_const(m["w"], "mha_qkv_weight")
        b = graph.add_const(m["bias"], "mha_qkv_bias") if m["bias"] is not None else None
        ins = [m["x"], w, b, m["mask"]]
        while ins[-1] is None:
            ins.pop()
        old = ordered(graph, nodes)
        if old[-1] is not final:
            old.remove(final)
            old.append(final)
        if tuple(out.shape) == m["shape"]:
            node = replace_with(graph, old, "MultiHeadAttention", ins, m["attrs"], check_c=True)
        else:  # the kernel writes its own layout; the old final shape is a view of it
            y = graph.new_value("mha_out", F32, m["shape"])
            node = Node("MultiHeadAttention", ins, [y], m["attrs"], name=graph.fresh_name("MultiHeadAttention"),
                        domain="onnxc", opset=graph.opset.get("onnxc", 1))
            if not c_supported(node):
                node.detach_inputs()
                node = None
            else:
                graph.insert(node, before=final)
                shape = graph.add_const(np.array(out.shape, dtype=np.int64), "mha_shape")
                replace_with(graph, old, "Reshape", [y, shape], {}, domain="")
        if node is None:
            graph.prune_constants()
            continue
        details.append(node.label)
        count += 1
    return count
