"""Multi-head self-attention (BERT/HuggingFace and torchvision ViT exports) ->
onnxc.MultiHeadAttention (extended level, float32, in transformer_fusion): the Q/K/V
projections (MatMul + bias Add, separate or packed), the head split (any chain of
Reshape/Transpose/Squeeze/Unsqueeze/Gather/Slice/Split), scalar scales (on Q, K or the scores,
Mul or Div), an optional additive mask, Softmax, an optional Where(IsNaN) guard, the product with
V and the head merge.  The layout chains are not matched op by op: each is replayed on an index
tensor (arange over the projection output) and the result must address exactly the elements the
fused kernel reads, which checks every shape, perm, axis and index at once.

Projections may also be quantize_dynamic's int8 products (com.microsoft.MatMulIntegerToFloat
after the basic pass fuse_matmul_integer_to_float) of one quantized activation: their Q | K | V
columns become one MatMulIntegerToFloat (weights, per-column scales and zero points cut and
concatenated: the same int32 sums and float32 scaling, so bit-identical projections) and the
attention reads its output (onnxc.MultiHeadAttention without W, as for com.microsoft.QAttention)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ir import Node
from ...ops import evaluate, get_attr
from ..util import c_supported, is_op, replace_with, scalar, sole_user
from .transformer_match import F32, f32, last_dim_vector, ordered, other, prod, same_shape, static_shape, users_inside

MS = "com.microsoft"
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


def _int8_projection(p):
    """com.microsoft.MatMulIntegerToFloat(X8, W8 const [K, N], x_scale, w_scale const, x_zp?,
    w_zp const?, bias const?) (quantize_dynamic's product after fuse_matmul_integer_to_float):
    (X8, W8, bias or None, (x_scale, x_zp, w_scale [N], w_zp [N] or None))."""
    x, w, xs, ws = p.inputs[:4]
    xz, wz, bias = p.input(4), p.input(5), p.input(6)
    _need(w.is_const and w.const.ndim == 2 and ws.is_const and (wz is None or wz.is_const)
          and (bias is None or bias.is_const), "int8 projection parameters not constant")
    n = w.shape[1]
    _need(all(c.const.size in (1, n) for c in (ws, wz) if c is not None), "int8 projection parameters shape")
    cols = [np.broadcast_to(np.asarray(c.const).reshape(-1), (n,)) for c in (ws, wz) if c is not None]
    wz_n = cols[1].astype(w.dtype) if wz is not None else None
    return x, w, bias, (xs, xz, cols[0].astype(F32), wz_n)


def _projection(v):
    """The projection behind a head tensor: walk up layout ops and scalar scales to
    Add(MatMul(X, W const), bias const) or MatMul(X, W const), or the int8 product
    MatMulIntegerToFloat(X8, W8 const, ...) (+ bias Add).
    Returns (X, W, bias or None, projection output, index tensor, factor, nodes, int8 parameters
    or None)."""
    chain, nodes, factor = [], [], 1.0
    while True:
        v, factor, sn = _scale_through(v, factor)
        nodes += sn
        p = prod(v)
        _need(p is not None or _is_int8_product(v.producer), "no producer")
        if p is not None and p.op_type in _LAYOUT:
            _need(all(i is p.inputs[0] or i is None or i.is_const for i in p.inputs), "non-constant layout input")
            chain.append((p, p.outputs.index(v)))
            nodes.append(p)
            v = p.inputs[0]
            continue
        p = v.producer
        break
    proj_out = v
    bias = None
    if is_op(p, "Add"):
        mm_v = next((i for i in p.inputs if is_op(prod(i), "MatMul") or _is_int8_product(i.producer)), None)
        _need(mm_v is not None, "bias Add without MatMul")
        bias = other(p, mm_v)
        _need(bias is not None and bias.is_const, "bias not constant")
        nodes.append(p)
        p = mm_v.producer
    q = None
    if _is_int8_product(p):
        x, w, qbias, q = _int8_projection(p)
        _need(qbias is None or bias is None, "two biases")
        bias = bias if qbias is None else qbias
        _need(x.dtype in (np.uint8, np.int8) and x.is_static, "int8 projection input")
    else:
        _need(is_op(p, "MatMul"), "no projection MatMul")
        x, w = p.inputs
        _need(f32(x), "projection input")
    _need(w.is_const and len(w.shape) == 2 and x.is_static and len(x.shape) in (2, 3), "projection shape")
    n = w.shape[1]
    if bias is not None:
        _need(last_dim_vector(bias, n) is not None, "bias shape")
        bias = last_dim_vector(bias, n)
    _need(f32(proj_out) and static_shape(proj_out) == tuple(x.shape[:-1]) + (n,), "projection output")
    nodes.append(p)
    # replay the layout chain on the flat index of every projection output element
    idx = np.arange(int(np.prod(proj_out.shape)), dtype=np.int64).reshape(proj_out.shape)
    for node, k in reversed(chain):
        idx = _replay(node, idx, k)
    return x, w.const, bias, proj_out, idx, factor, nodes, q


def _is_int8_product(p) -> bool:
    return p is not None and p.domain == MS and p.op_type == "MatMulIntegerToFloat"


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
    xq, wq, bq, pq, iq, fq, nq, qq = _projection(qk.inputs[0])
    xk, wk, bk, pk, ik, fk, nk, qk_ = _projection(qk.inputs[1])
    xv, wv, bv, pv_, iv, fv, nv, qv = _projection(pv.inputs[1])
    _need(xq is xk is xv, "Q, K and V do not project one input")
    quant = [qq, qk_, qv]
    if any(t is not None for t in quant):  # one int8 product: one activation quantization, one weight type
        _need(all(t is not None and t[0] is qq[0] and t[1] is qq[1] for t in quant)
              and wq.dtype == wk.dtype == wv.dtype, "Q, K and V quantized differently")
    _need(fv == 1.0, "scaled V")
    nodes += nq + nk + nv
    _need(iq.ndim == ik.ndim == iv.ndim == 4, "heads not 4-D")
    _need(iq.shape[:2] == (B, H) and iq.shape[2] == S and ik.shape == (B, H, iq.shape[3], S)
          and iv.shape[:3] == (B, H, S), "head shapes")
    D, Dv = iq.shape[3], iv.shape[3]
    _need(D == Dv, "V head size differs")
    x = xq
    if len(x.shape) == 2:  # rows flattened ([B * S, E] or [S * B, E]): the index replay tells which
        layouts = [False, True] if x.shape[0] == B * S else []
    else:
        d0, d1, _ = x.shape
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
    cut = [slice(o, o + HD) for o in offs]
    w = np.concatenate([m[:, c] for m, c in zip((wq, wk, wv), cut)], axis=1)
    int8 = None
    if qq is None:
        w = w.astype(F32)
    else:  # the packed int8 product: per-column scales and zero points cut like the weights
        zps = [t[3] if t[3] is not None else np.zeros(m.shape[1], m.dtype) for t, m in zip(quant, (wq, wk, wv))]
        int8 = dict(x_scale=qq[0], x_zp=qq[1],
                     w_scale=np.concatenate([t[2][c] for t, c in zip(quant, cut)]).astype(F32),
                     w_zp=None if all(t[3] is None for t in quant)
                     else np.concatenate([z[c] for z, c in zip(zps, cut)]).astype(w.dtype))
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
    return dict(nodes=nodes, x=x, w=w, bias=bias, mask=mask, out=out, final=tail[final - 1], int8=int8,
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
        old = ordered(graph, nodes)
        if old[-1] is not final:
            old.remove(final)
            old.append(final)
        added = []  # nodes inserted for the fused one, removed again if C declines it
        x = m["x"]
        if len(x.shape) == 2:  # flattened rows: the kernel reads [B, S, E] ([S, B, E]), the same bytes
            shape = m["shape"][:2] + (x.shape[1],)
            xr = graph.add_node("Reshape", [x, graph.add_const(np.array(shape, np.int64), "mha_x_shape")],
                                outputs=[graph.new_value("mha_x", x.dtype, shape)], name="mha_x", before=final)
            added.append(xr)
            m["x"] = xr.outputs[0]
        ins = [m["x"], w, b, m["mask"]]
        qkv = None
        if m["int8"] is not None:  # one int8 product for Q, K and V; the attention reads its output
            qkv = _int8_qkv(graph, m, w, b, before=final)
            if qkv is None:
                for n in added:
                    graph.remove_node(n)
                graph.prune_constants()
                continue
            added.append(qkv)
            ins = [qkv.outputs[0], None, None, m["mask"]]
        while ins[-1] is None:
            ins.pop()
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
            for n in reversed(added):
                graph.remove_node(n)
            graph.prune_constants()
            continue
        details.append(node.label + (" (int8 QKV projection)" if qkv is not None else ""))
        count += 1
    return count


def _int8_qkv(graph, m, w, b, before) -> Optional[Node]:
    """com.microsoft.MatMulIntegerToFloat of the packed Q | K | V columns (inserted before
    ``before``), or None when C does not run it."""
    q = m["int8"]
    x = m["x"]
    n = m["w"].shape[1]
    ins = [x, w, q["x_scale"], graph.add_const(q["w_scale"], "mha_qkv_w_scale"), q["x_zp"],
           graph.add_const(q["w_zp"], "mha_qkv_w_zp") if q["w_zp"] is not None else None, b]
    while ins[-1] is None:
        ins.pop()
    y = graph.new_value("mha_qkv", F32, tuple(x.shape[:2]) + (n,))
    node = Node("MatMulIntegerToFloat", ins, [y], {}, name=graph.fresh_name("mha_qkv"), domain=MS,
                opset=graph.opset.get(MS, 1))
    if not c_supported(node):
        node.detach_inputs()
        return None
    graph.insert(node, before=before)
    return node
