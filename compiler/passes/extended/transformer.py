"""Transformer subgraph fusions (extended level, float32, only where the C provider claims the
fused node).  In run order:

* multi-head self-attention (BERT/HuggingFace and torchvision ViT exports) -> onnxc.MultiHeadAttention:
  the Q/K/V projections (MatMul + bias Add, separate or packed), the head split (any chain of
  Reshape/Transpose/Squeeze/Unsqueeze/Gather/Slice/Split), scalar scales (on Q, K or the scores,
  Mul or Div), an optional additive mask, Softmax, an optional Where(IsNaN) guard, the product
  with V and the head merge.  The layout chains are not matched op by op: each is replayed on an
  index tensor (arange over the projection output) and the result must address exactly the
  elements the fused kernel reads, which checks every shape, perm, axis and index at once;
* Gelu (erf form: Div by sqrt 2 or Mul by 1/sqrt 2, Erf, Add 1, Mul x, Mul 0.5 in any
  association), its tanh form -> onnxc.FastGelu, and the standard Gelu op (opset 20); then a
  bias Add feeding either is folded in as its bias input;
* LayerNormalization (ReduceMean, Sub, Pow 2 / Mul self, ReduceMean, Add eps, Sqrt, Div or
  Reciprocal + Mul, Mul gamma?, Add beta?) and RMSNormalization (Pow 2, ReduceMean, Add eps,
  Sqrt, Div or Reciprocal + Mul, Mul gamma?) over the last dim -> onnxc.LayerNormalization /
  onnxc.RMSNormalization; the standard LayerNormalization op over the last dim is taken over too;
* a residual Add (with an optional bias Add on one side) feeding a LayerNormalization ->
  onnxc.SkipLayerNormalization, with the sum as a second output when something else reads it;
* (transformer_matmul_gelu, a pass of its own after these) MatMul with constant 2-D weights
  whose sole reader is an onnxc.Gelu / FastGelu -> onnxc.MatMulGelu: bias and Gelu run in the
  SGEMM epilogue, on each block of the product while it is in cache, instead of a second pass.
* (transformer_unit_transpose, after that) a Transpose that only moves size-1 dims (torchvision
  ViT's [1, S, E] <-> [S, 1, E] around its attention) -> Reshape: the same elements in the same
  order, so an alias instead of a copy.

Every intermediate of a matched subgraph must be read only inside it (and not be a graph
output); constants (eps, gamma, beta, biases, weights, scales) must be compile-time constants.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ...ir import Node
from ...ops import evaluate, get_attr
from ..manager import Pass, PassResult, register
from ..util import c_supported, const, is_op, remove_chain, replace_with, scalar, sole_user

F32 = np.dtype(np.float32)
_LAYOUT = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Gather", "Slice", "Split")
_GELU_TOL = 1e-4  # relative tolerance on the Gelu pattern constants (exports write sqrt 2 as 1.4142 etc.)


# --- small helpers --------------------------------------------------------------------------------
def _prod(v) -> Optional[Node]:
    """Producer of ``v`` in the default domain, or None."""
    p = v.producer if v is not None else None
    return p if p is not None and p.domain in ("", "ai.onnx") else None


def _other(node, v):
    """The other input of a binary node one of whose inputs is ``v``."""
    a, b = node.inputs[0], node.inputs[1]
    return b if a is v else a if b is v else None


def _scalar_operand(node, v) -> Optional[float]:
    """Value of the scalar-constant operand of binary ``node`` whose other operand is ``v``."""
    o = _other(node, v)
    return scalar(o) if o is not None else None


def _close(a: Optional[float], b: float, tol: float = _GELU_TOL) -> bool:
    return a is not None and math.isfinite(a) and abs(a - b) <= tol * abs(b)


def _users_inside(nodes: Sequence[Node], final: Node) -> bool:
    """Every output of every node but ``final`` is read only by ``nodes`` and is no graph output."""
    ids = {id(n) for n in nodes}
    for n in nodes:
        if n is final:
            continue
        for o in n.outputs:
            if n.graph.is_output(o) or any(id(u) not in ids for u, _ in o.uses):
                return False
    return True


def _shape(v) -> Optional[tuple]:
    """The static shape of ``v`` as a tuple, else None."""
    return tuple(v.shape) if v is not None and v.is_static else None


def _same(a, b) -> bool:
    """Both static and of one shape."""
    return _shape(a) is not None and _shape(a) == _shape(b)


def _ordered(graph, nodes) -> List[Node]:
    pos = {id(n): i for i, n in enumerate(graph.nodes)}
    uniq = {id(n): n for n in nodes}
    return sorted(uniq.values(), key=lambda n: pos[id(n)])


def _f32(*vals) -> bool:
    return all(v is not None and v.dtype == F32 and v.is_static for v in vals)


def _last_dim_vector(v, n: int) -> Optional[np.ndarray]:
    """A constant that broadcasts along the last dim only, as an [n] float32 array, else None."""
    c = const(v)
    if c is None:
        return None
    if any(d != 1 for d in c.shape[:-1]) or (c.ndim and c.shape[-1] not in (1, n)):
        return None
    return np.ascontiguousarray(np.broadcast_to(c.reshape(-1) if c.ndim else c, (n,)).astype(F32))


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


def _fuse(graph, nodes, final, op, inputs, attrs, details) -> bool:
    """Replace ``nodes`` (ending in ``final``) by one C-supported onnxc node."""
    if not _users_inside(nodes, final):
        return False
    old = _ordered(graph, nodes)
    if old[-1] is not final:
        old.remove(final)
        old.append(final)
    node = replace_with(graph, old, op, inputs, attrs, check_c=True)
    if node is None:
        return False
    details.append(node.label)
    return True


# --- Gelu -----------------------------------------------------------------------------------------
def _gelu_tail(x, a) -> Optional[Tuple[List[Node], Node]]:
    """Nodes computing 0.5 * x * a from ``a`` (= 1 + f(x)) in any association; (nodes, final)."""
    m1 = sole_user(a)
    if not is_op(m1, "Mul"):
        return None
    o = _other(m1, a)
    if o is x:  # (x * a) * 0.5
        m2 = sole_user(m1.outputs[0])
        if is_op(m2, "Mul") and _close(_scalar_operand(m2, m1.outputs[0]), 0.5):
            return [m1, m2], m2
        return None
    if _close(scalar(o), 0.5):  # x * (a * 0.5)
        m2 = sole_user(m1.outputs[0])
        if is_op(m2, "Mul") and _other(m2, m1.outputs[0]) is x:
            return [m1, m2], m2
        return None
    h = _prod(o)  # (x * 0.5) * a
    if is_op(h, "Mul") and _close(_scalar_operand(h, x), 0.5) and sole_user(o) is m1:
        return [h, m1], m1
    return None


def _one_plus(v) -> Optional[Node]:
    n = sole_user(v)
    return n if is_op(n, "Add") and _close(_scalar_operand(n, v), 1.0) else None


def _match_gelu_erf(erf) -> Optional[Tuple[List[Node], Node, object]]:
    u = erf.inputs[0]
    d = _prod(u)
    if d is None or sole_user(u) is not erf:
        return None
    if is_op(d, "Div") and _close(scalar(d.inputs[1]), math.sqrt(2.0)):
        x = d.inputs[0]
    elif is_op(d, "Mul"):
        x = next((i for i in d.inputs if not _close(scalar(i), math.sqrt(0.5))), None)
        if x is None or not _close(_scalar_operand(d, x), math.sqrt(0.5)):
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
    p = _prod(v)
    if is_op(p, "Pow") and scalar(p.inputs[1]) == 3.0:
        return [p], p.inputs[0]
    if is_op(p, "Mul"):
        for sq_v in p.inputs:
            sq = _prod(sq_v)
            if is_op(sq, "Mul") and sq.inputs[0] is sq.inputs[1] and _other(p, sq_v) is sq.inputs[0]:
                return [sq, p], sq.inputs[0]
    return None


def _match_gelu_tanh(tanh) -> Optional[Tuple[List[Node], Node, object]]:
    t = tanh.inputs[0]
    m = _prod(t)  # sqrt(2/pi) * inner
    if not is_op(m, "Mul") or sole_user(t) is not tanh:
        return None
    inner = next((i for i in m.inputs if scalar(i) is None), None)
    if inner is None or not _close(_scalar_operand(m, inner), math.sqrt(2.0 / math.pi)):
        return None
    add = _prod(inner)  # x + 0.044715 x^3
    if not is_op(add, "Add"):
        return None
    for x in add.inputs:
        c3 = _prod(_other(add, x))
        if not is_op(c3, "Mul"):
            continue
        cube_v = next((i for i in c3.inputs if scalar(i) is None), None)
        if cube_v is None or not _close(_scalar_operand(c3, cube_v), 0.044715):
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


def _fuse_gelus(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph:
            continue
        m, op = None, None
        if is_op(node, "Erf"):
            m, op = _match_gelu_erf(node), "Gelu"
        elif is_op(node, "Tanh"):
            m, op = _match_gelu_tanh(node), "FastGelu"
        elif is_op(node, "Gelu") and _f32(node.inputs[0], node.outputs[0]):
            approx = get_attr(node, "approximate", "none")
            if approx in ("none", "tanh"):
                m, op = ([node], node, node.inputs[0]), ("Gelu" if approx == "none" else "FastGelu")
        if m is None:
            continue
        nodes, final, x = m
        if not _f32(x, final.outputs[0]) or not _same(x, final.outputs[0]):
            continue
        count += _fuse(graph, nodes, final, op, [x], {}, details)
    # a bias Add feeding a Gelu becomes its bias input
    for node in list(graph.nodes):
        if node.graph is not graph or node.domain != "onnxc" or node.op_type not in ("Gelu", "FastGelu"):
            continue
        if node.input(1) is not None:
            continue
        a = _prod(node.inputs[0])
        if not is_op(a, "Add") or sole_user(a.outputs[0]) is not node:
            continue
        for t in a.inputs:
            b = _other(a, t)
            n = a.outputs[0].shape[-1]
            vec = _last_dim_vector(b, n) if b is not None and b.is_const else None
            if vec is None or t.is_const or not _same(t, a.outputs[0]):
                continue
            bias = b if _shape(b) == (n,) and b.dtype == F32 else graph.add_const(vec, "gelu_bias")
            if _fuse(graph, [a, node], node, node.op_type, [t, bias], {}, details):
                count += 1
                break
            graph.prune_constants()
    return count


# --- LayerNorm / RMSNorm --------------------------------------------------------------------------
def _affine_tail(v, n) -> Tuple[List[Node], object, Optional[object], Optional[object]]:
    """Optional Mul(gamma) then optional Add(beta) after ``v``: (nodes, out, gamma, beta)."""
    nodes, gamma, beta = [], None, None
    u = sole_user(v)
    if is_op(u, "Mul"):
        g = _other(u, v)
        if g is not None and _last_dim_vector(g, n) is not None and _same(u.outputs[0], v):
            nodes.append(u)
            gamma, v = g, u.outputs[0]
    u = sole_user(v)
    if is_op(u, "Add"):
        b = _other(u, v)
        if b is not None and _last_dim_vector(b, n) is not None and _same(u.outputs[0], v):
            nodes.append(u)
            beta, v = b, u.outputs[0]
    return nodes, v, gamma, beta


def _inv_std(var_v) -> Optional[Tuple[List[Node], float, Node, str]]:
    """From a variance value: Add eps, Sqrt, then Div (returns 'div') or Reciprocal ('mul').
    Returns (nodes, eps, last node, kind)."""
    add = sole_user(var_v)
    if not is_op(add, "Add"):
        return None
    eps = _scalar_operand(add, var_v)
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
    p = _prod(v)
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
    if is_op(u, "Mul") and _other(u, last.outputs[0]) is num:
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


def _vec_input(graph, v, n):
    """``v`` as an [n] float32 input of a fused node (a new constant when it must be reshaped)."""
    if v is None:
        return None
    if _shape(v) == (n,) and v.dtype == F32:
        return v
    return graph.add_const(_last_dim_vector(v, n), "norm_param")


def _fuse_norms(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph or not is_op(node, "ReduceMean"):
            continue
        x = node.inputs[0]
        if not _f32(x) or not x.shape:
            continue
        n = x.shape[-1]
        m = _match_layer_norm(node)
        if m is not None:
            nodes, final, x, eps, gamma, beta = m
            if _f32(final.outputs[0]) and _same(final.outputs[0], x):
                ins = [x, _vec_input(graph, gamma, n), _vec_input(graph, beta, n)]
                while ins[-1] is None:
                    ins.pop()
                if _fuse(graph, nodes, final, "LayerNormalization", ins, {"epsilon": eps}, details):
                    count += 1
                    continue
                graph.prune_constants()
            continue
        m = _match_rms_norm(node)
        if m is not None:
            nodes, final, x, eps, gamma = m
            if _f32(final.outputs[0]) and _same(final.outputs[0], x):
                ins = [x] + ([_vec_input(graph, gamma, n)] if gamma is not None else [])
                if _fuse(graph, nodes, final, "RMSNormalization", ins, {"epsilon": eps}, details):
                    count += 1
                    continue
                graph.prune_constants()
    return count


def _standard_ln(node) -> bool:
    """A standard LayerNormalization the onnxc kernel computes: last axis, float32, no stats."""
    if not is_op(node, "LayerNormalization"):
        return False
    x = node.inputs[0]
    if not _f32(x) or not x.shape or get_attr(node, "stash_type", 1) != 1:
        return False
    if int(get_attr(node, "axis", -1)) % len(x.shape) != len(x.shape) - 1:
        return False
    if any(o.uses or node.graph.is_output(o) for o in node.outputs[1:]):
        return False
    n = x.shape[-1]
    return all(v is None or (v.dtype == F32 and (_shape(v) == (n,) or _last_dim_vector(v, n) is not None))
               for v in node.inputs[1:3])


def _fuse_skip_norms(graph, details) -> int:
    count = 0
    for node in list(graph.nodes):
        if node.graph is not graph:
            continue
        onnxc_ln = node.domain == "onnxc" and node.op_type == "LayerNormalization"
        if not (onnxc_ln or _standard_ln(node)):
            continue
        x = node.inputs[0]
        n = x.shape[-1]
        gamma = _vec_input(graph, node.input(1), n)
        beta = _vec_input(graph, node.input(2), n)
        eps = float(get_attr(node, "epsilon", 1e-5))
        s = _prod(x)
        fused = False
        if is_op(s, "Add") and _same(s.inputs[0], x) and _same(s.inputs[1], x) \
                and not any(v.is_const for v in s.inputs):
            ln_only = x.users == [node] and not graph.is_output(x)
            for a in s.inputs:  # a = X (+ bias), b = the residual
                b = _other(s, a)
                nodes, xin, bias = [s, node], a, None
                p = _prod(a)
                if is_op(p, "Add") and sole_user(a) is s:
                    for t in p.inputs:
                        vec = _last_dim_vector(_other(p, t), n) if _other(p, t).is_const else None
                        if vec is not None and not t.is_const and _same(t, x):
                            nodes, xin, bias = [p, s, node], t, _vec_input(graph, _other(p, t), n)
                            break
                fused = _fuse_skip(graph, nodes, node, [xin, b, gamma, beta, bias], eps, ln_only, details)
                if fused:
                    break
        if fused:
            count += 1
        elif not onnxc_ln:
            # a plain standard LayerNormalization becomes the onnxc one (one-pass kernel)
            ins = [x, gamma, beta]
            while ins[-1] is None:
                ins.pop()
            node_ = replace_with(graph, [node], "LayerNormalization", ins, {"epsilon": eps}, check_c=True)
            if node_ is not None:
                node_.outputs = node_.outputs[:1]
                details.append(node_.label)
                count += 1
        graph.prune_constants()
    return count


def _fuse_skip(graph, nodes, ln, ins, eps, ln_only, details) -> bool:
    while ins and ins[-1] is None:
        ins.pop()
    add = nodes[-2]
    y = ln.outputs[0]
    outputs = [y] if ln_only else [y, add.outputs[0]]
    new = Node("SkipLayerNormalization", ins, [], {"epsilon": eps}, name=graph.fresh_name(ln.name or "SkipLayerNorm"),
               domain="onnxc", opset=graph.opset.get("onnxc", 1))
    new.outputs = outputs
    if not c_supported(new):
        new.detach_inputs()
        return False
    for o in outputs:
        o.producer = new
    ln.outputs = []
    if not ln_only:  # the sum Value now belongs to the new node
        add.outputs = []
    graph.insert(new, after=ln)
    remove_chain(graph, _ordered(graph, nodes))
    details.append(new.label)
    return True


# --- multi-head attention -------------------------------------------------------------------------
class _NoMatch(Exception):
    pass


def _need(cond, why=""):
    if not cond:
        raise _NoMatch(why)


def _scale_through(v, factor) -> Tuple[object, float, List[Node]]:
    """Skip scalar Mul/Div nodes above ``v``: (value, accumulated factor, nodes)."""
    nodes = []
    while True:
        p = _prod(v)
        if is_op(p, "Mul"):
            o = next((i for i in p.inputs if scalar(i) is not None), None)
            if o is None or _other(p, o) is None or not _same(p.outputs[0], _other(p, o)):
                return v, factor, nodes
            factor *= float(scalar(o))
            nodes.append(p)
            v = _other(p, o)
        elif (is_op(p, "Div") and scalar(p.inputs[1]) is not None
              and _same(p.outputs[0], p.inputs[0])):
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
        p = _prod(v)
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
        mm_v = next((i for i in p.inputs if is_op(_prod(i), "MatMul")), None)
        _need(mm_v is not None, "bias Add without MatMul")
        bias = _other(p, mm_v)
        _need(bias is not None and bias.is_const, "bias not constant")
        nodes.append(p)
        p = _prod(mm_v)
    _need(is_op(p, "MatMul"), "no projection MatMul")
    x, w = p.inputs
    _need(w.is_const and len(w.shape) == 2 and x.shape is not None and len(x.shape) == 3, "projection shape")
    n = w.shape[1]
    if bias is not None:
        _need(_last_dim_vector(bias, n) is not None, "bias shape")
        bias = _last_dim_vector(bias, n)
    _need(_f32(x, proj_out) and _shape(proj_out) == tuple(x.shape[:2]) + (n,), "projection output")
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
    _need(_f32(scores) and len(scores.shape) == 4, "scores not 4-D float32")
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
    a = _prod(v)
    if is_op(a, "Add"):
        for cand in a.inputs:
            other = _other(a, cand)
            c, _, _ = _scale_through(cand, 1.0)
            if is_op(_prod(c), "MatMul") and other is not cand:
                mask = other
                v = cand
                break
        _need(mask is not None, "Add without a QK product")
        _need(mask.dtype == F32 and mask.is_static and len(mask.shape) <= 4, "mask")
        nodes.append(a)
    v, factor, sn = _scale_through(v, 1.0)
    nodes += sn
    qk = _prod(v)
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
    _need(_shape(ctx) == (B, H, S, D), "context shape")
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


def _fuse_attention(graph, details) -> int:
    count = 0
    for sm in list(graph.nodes):
        if sm.graph is not graph or not is_op(sm, "Softmax"):
            continue
        try:
            m = _match_attention(graph, sm)
        except _NoMatch:
            continue
        nodes, final, out = m["nodes"], m["final"], m["out"]
        if not _users_inside(nodes, final) or not _f32(out):
            continue
        w = graph.add_const(m["w"], "mha_qkv_weight")
        b = graph.add_const(m["bias"], "mha_qkv_bias") if m["bias"] is not None else None
        ins = [m["x"], w, b, m["mask"]]
        while ins[-1] is None:
            ins.pop()
        old = _ordered(graph, nodes)
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


@register
class TransformerFusion(Pass):
    name = "transformer_fusion"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = _fuse_attention(graph, details)
        n += _fuse_gelus(graph, details)
        n += _fuse_norms(graph, details)
        n += _fuse_skip_norms(graph, details)
        return PassResult(n > 0, n, details)


@register
class TransformerMatMulGelu(Pass):
    """MatMul(A, constant 2-D B) -> onnxc.Gelu / FastGelu (bias?) => onnxc.MatMulGelu."""
    name = "transformer_matmul_gelu"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = 0
        for g in list(graph.nodes):
            if g.graph is not graph or g.domain != "onnxc" or g.op_type not in ("Gelu", "FastGelu"):
                continue
            mm = _prod(g.inputs[0])
            if not is_op(mm, "MatMul") or sole_user(mm.outputs[0]) is not g:
                continue
            a, b = mm.inputs
            if not _f32(a, b, g.outputs[0]) or not b.is_const or len(b.shape) != 2 or len(a.shape) < 2:
                continue
            ins = [a, b] + ([g.input(1)] if g.input(1) is not None else [])
            approx = "tanh" if g.op_type == "FastGelu" else "none"
            n += _fuse(graph, [mm, g], g, "MatMulGelu", ins, {"approximate": approx}, details)
        return PassResult(n > 0, n, details)


@register
class TransformerUnitTranspose(Pass):
    """Transpose whose permutation keeps the dims larger than 1 in their order -> Reshape."""
    name = "transformer_unit_transpose"
    level = "extended"

    def run(self, graph) -> PassResult:
        details: List[str] = []
        n = 0
        for t in list(graph.nodes):
            if t.graph is not graph or not is_op(t, "Transpose"):
                continue
            x, y = t.inputs[0], t.outputs[0]
            shape = _shape(x)
            if shape is None or _shape(y) is None or len(shape) < 2 or 0 in shape:
                continue  # (a 0 in Reshape's shape would mean "copy that dim")
            perm = list(get_attr(t, "perm", None) or reversed(range(len(shape))))
            moved = [p for p in perm if shape[p] != 1]
            if moved != sorted(moved) or perm == sorted(perm):
                continue
            target = graph.add_const(np.array(_shape(y), np.int64), "unit_transpose_shape")
            node = replace_with(graph, [t], "Reshape", [x, target], {}, domain="", check_c=True)
            if node is None:
                graph.prune_constants()
                continue
            details.append(node.label)
            n += 1
        return PassResult(n > 0, n, details)
