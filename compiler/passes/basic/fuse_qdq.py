"""QDQ fusion: the int8 form of a quantize_static (QDQ format) matrix product.

    DequantizeLinear(xq, sa, za) ─┐
    DequantizeLinear(Wq, sb, zb) ─┴ MatMul / Gemm (+ bias) ── QuantizeLinear(sy, zy) -> yq

becomes one integer node reading xq and Wq directly:

    QLinearMatMul(xq, sa, za, Wq, sb, zb, sy, zy)                  (MatMul, no bias)
    com.microsoft QGemm(xq, sa, za, Wq, sb, zb, C, sy, zy, alpha)  (Gemm, or MatMul + Add(bias))

what onnxruntime's own QDQ selectors do. Without the QuantizeLinear, when the product (or its
bias Add) writes a float graph output (onnxc.quantize leaves outputs float) and A is 2-D:
QGemm without y_scale, a float output float(acc + C) * (alpha * sa * sb[n]); only with no bias
or an int32 bias of scale sa * sb exactly, so the output loses nothing to rounding. The product is accumulated exactly in int32 and
requantized once with (sa * sb[n]) / sy, instead of a float32 product rounded by Q: results
differ from the float graph by at most one step of the output's scale where the float sum lands
near a rounding boundary. Bias: a float bias becomes C[n] = rint(beta * bias[n] / (sa * sb[n]))
in int32 (what quantize_static stores as the int32 bias of DequantizeLinear(bias_q, sa * sb, 0);
that one is taken as it is when its scale is sa * sb exactly).

Conditions: xq and Wq int8/uint8; Wq a constant, B's scale/zero point per tensor or per output
column (MatMul: axis 1 of a 2-D B; Gemm: axis 0 with transB=1, axis 1 without); the activation's
scale/zero point and Q's per tensor and constant; A 2-D for Gemm, any rank for MatMul with a 2-D
B; the float intermediates read by nothing else (a DequantizeLinear read by other nodes stays for
them). Runs first in the basic level: constant folding
would otherwise turn DequantizeLinear(Wq) into a float weight.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import const, producer, remove_chain, sole_user

QTYPES = (np.dtype(np.int8), np.dtype(np.uint8))
F32 = np.float32


def _per_tensor(v) -> bool:
    c = const(v)
    return c is not None and c.size == 1


def remove_fused(graph, chain, dqs) -> None:
    """Remove the fused ``chain`` (last to first), then each node of ``dqs`` (DequantizeLinear, or
    an Identity before a bias) that no node reads any more (one shared with other readers stays)."""
    remove_chain(graph, chain)
    for n in dqs:
        if n.graph is graph and not n.outputs[0].uses and not graph.is_output(n.outputs[0]):
            graph.remove_node(n)


def _dq(v):
    """(node, x, scale, zero point) when ``v`` is a DequantizeLinear output of an 8-bit type
    with a float32 scale (zero point present or not); other readers keep the DequantizeLinear."""
    n = producer(v, "DequantizeLinear")
    if n is None:
        return None
    x, s, z = n.inputs[0], n.inputs[1], n.input(2)
    if x.dtype not in QTYPES or s.dtype != np.float32 or get_attr(n, "block_size", 0):
        return None
    return n, x, s, z


def _column_params(node, b, s, z, n_cols: int, axis_of_n: int):
    """B's scale and zero point as constants of 1 or N elements, or None."""
    sc, zc = const(s), (None if z is None else const(z))
    if sc is None or (z is not None and zc is None):
        return None
    if sc.size != 1:
        axis = get_attr(node, "axis", 1) % 2
        if sc.shape != (n_cols,) or axis != axis_of_n:
            return None
    if zc is None:
        zc = np.zeros(sc.shape, b.dtype)
    return sc.astype(F32), zc.astype(b.dtype)


def _dequantized_vector(dq, n: int) -> Optional[np.ndarray]:
    """DequantizeLinear of a constant vector of ``n`` (a bias quantized with another node's scale,
    which exporters share between layers): float32((x - zero point) * scale), per tensor or per
    element, as the operator defines it; None when not that."""
    x, s = const(dq.inputs[0]), const(dq.inputs[1])
    z = const(dq.input(2)) if dq.input(2) is not None else np.zeros((), x.dtype if x is not None else np.int32)
    if x is None or s is None or z is None or x.size != n or s.dtype != np.float32 or get_attr(dq, "block_size", 0):
        return None
    if s.size not in (1, n) or z.size not in (1, s.size):
        return None
    diff = x.reshape(-1).astype(np.int64) - z.reshape(-1).astype(np.int64)
    return (diff.astype(F32) * s.reshape(-1).astype(F32)).astype(F32)


@register
class FuseQDQMatMul(Pass):
    name = "fuse_qdq_matmul"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if node.graph is not graph or node.domain not in ("", "ai.onnx") or node.op_type not in ("MatMul", "Gemm"):
                continue
            if self._fuse(graph, node):
                details.append(node.label)
        return PassResult(bool(details), len(details), details)

    def _fuse(self, graph, mm) -> bool:
        gemm = mm.op_type == "Gemm"
        if len(mm.inputs) < 2:
            return False
        da, db = _dq(mm.inputs[0]), _dq(mm.inputs[1])
        if da is None or db is None:
            return False
        dqa, xq, sa, za = da
        dqb, wq, sb, zb = db
        w = const(wq)
        if w is None or w.ndim != 2 or not _per_tensor(sa) or (za is not None and not _per_tensor(za)):
            return False
        if gemm:
            ta, tb = int(get_attr(mm, "transA", 0)), int(get_attr(mm, "transB", 0))
            if ta or xq.shape is None or len(xq.shape) != 2:
                return False
        else:
            tb = 0
        n_cols = w.shape[0] if tb else w.shape[1]
        cols = _column_params(dqb, wq, sb, zb, n_cols, 0 if tb else 1)
        if cols is None:
            return False
        # the epilogue: an optional bias (Gemm's C, or MatMul + Add of a constant row) then Q
        y, bias_nodes, bias, beta = mm.outputs[0], [], None, 1.0
        if gemm:
            beta = float(get_attr(mm, "beta", 1.0))
            if len(mm.inputs) > 2 and mm.inputs[2] is not None:
                bias = mm.inputs[2]
        else:
            add = sole_user(y)
            if add is not None and add.domain in ("", "ai.onnx") and add.op_type == "Add":
                other = add.inputs[1] if add.inputs[0] is y else add.inputs[0]
                if other is not y and other.shape is not None and tuple(other.shape) in ((n_cols,), (1, n_cols)):
                    bias, bias_nodes, y = other, [add], add.outputs[0]
        q = sole_user(y)
        if q is None or q.domain not in ("", "ai.onnx") or q.op_type != "QuantizeLinear":
            q = None
            # a graph output left float (onnxc.quantize's full placement): QGemm with a float
            # output, float(acc + C) * (alpha * sa * sb[n]), as onnxruntime's QDQ Gemm selector
            # does without a Q. Only with an exact int32 bias (a float one rounded to accumulator
            # units would cost up to half a step the float graph does not lose)
            if not graph.is_output(y) or y.dtype != np.float32 or xq.shape is None or len(xq.shape) != 2:
                return False
        else:
            sy, zy = q.inputs[1], q.input(2)
            if not _per_tensor(sy) or zy is None or not _per_tensor(zy) or zy.dtype not in QTYPES:
                return False
            if sy.dtype != np.float32 or int(get_attr(q, "saturate", 1)) != 1:
                return False
        a_scale = F32(const(sa).reshape(-1)[0])
        b_scale, b_zp = cols
        c = None
        alpha = float(get_attr(mm, "alpha", 1.0)) if gemm else 1.0
        if bias is not None:
            c = self._int32_bias(bias, a_scale, b_scale, alpha, beta, n_cols, exact=q is None)
            if c is None:
                return False
        za_v = za if za is not None else graph.add_const(np.zeros((), xq.dtype), hint="a_zero_point")
        wq_v, sb_v = wq, graph.add_const(b_scale.reshape(-1) if b_scale.size > 1 else b_scale.reshape(()),
                                         hint="b_scale")
        zb_v = graph.add_const(b_zp.reshape(-1) if b_zp.size > 1 else b_zp.reshape(()), hint="b_zero_point")
        old = [mm] + bias_nodes + ([q] if q is not None else [])
        if q is None:
            c_v = graph.add_const(c, hint="bias_int32") if c is not None else None
            new = Node("QGemm", [xq, sa, za_v, wq_v, sb_v, zb_v] + ([c_v] if c_v is not None else []), [],
                       {"alpha": alpha, "transB": tb}, name=graph.fresh_name(mm.name or "QGemm"),
                       domain="com.microsoft", opset=1)
            if "com.microsoft" not in graph.opset:
                graph.opset["com.microsoft"] = 1
            last = bias_nodes[-1] if bias_nodes else mm
            new.outputs = [y]
            y.producer = new
            last.outputs = []
            graph.insert(new, after=last)
            bdq = producer(bias, "DequantizeLinear") if bias is not None else None
            remove_fused(graph, old, [dqa, dqb] + ([bdq] if bdq is not None else []))
            return True
        if gemm or c is not None:
            if not gemm:  # MatMul + Add: QGemm needs a 2-D A
                if xq.shape is None or len(xq.shape) != 2:
                    return False
            c_v = graph.add_const(c, hint="bias_int32") if c is not None else None
            ins = [xq, sa, za_v, wq_v, sb_v, zb_v, c_v, q.inputs[1], zy]
            attrs = {"alpha": alpha, "transB": tb}
            new = Node("QGemm", ins, [], attrs, name=graph.fresh_name(mm.name or "QGemm"), domain="com.microsoft",
                       opset=1)
            if "com.microsoft" not in graph.opset:
                graph.opset["com.microsoft"] = 1
        else:
            new = Node("QLinearMatMul", [xq, sa, za_v, wq_v, sb_v, zb_v, q.inputs[1], zy], [], {},
                       name=graph.fresh_name(mm.name or "QLinearMatMul"), domain="", opset=graph.opset.get("", 1))
        out = q.outputs[0]
        new.outputs = [out]
        out.producer = new
        q.outputs = []
        graph.insert(new, after=q)
        bdq = producer(bias, "DequantizeLinear") if bias is not None else None
        remove_fused(graph, old, [dqa, dqb] + ([bdq] if bdq is not None else []))
        return True

    @staticmethod
    def _int32_bias(bias, a_scale, b_scale, alpha: float, beta: float, n: int, exact: bool = False
                    ) -> Optional[np.ndarray]:
        """C[n] in int32, in units of QGemm's accumulator (alpha * sa * sb[n]): the int32 data of
        DequantizeLinear(bias_q, sa * sb, 0) when that is its scale exactly and alpha = beta = 1,
        else (not ``exact``) beta * bias / (alpha * sa * sb[n]) rounded half to even."""
        prod = (np.asarray(a_scale, F32) * b_scale.reshape(-1)).astype(F32)
        while producer(bias, "Identity") is not None:  # exporters share a bias through Identity
            bias = bias.producer.inputs[0]
        dq = producer(bias, "DequantizeLinear")
        if dq is not None and alpha == 1.0 and beta == 1.0 and sole_user(bias) is not None:
            bq, bs = const(dq.inputs[0]), const(dq.inputs[1])
            bz = const(dq.input(2)) if dq.input(2) is not None else None
            same_scale = bs is not None and np.array_equal(np.broadcast_to(bs.astype(F32).reshape(-1), (n,)),
                                                           np.broadcast_to(prod, (n,)))
            if bq is not None and bq.dtype == np.int32 and bq.size == n and (bz is None or not bz.any()) and same_scale:
                return bq.reshape(-1).astype(np.int32)
        if exact:
            return None
        f = const(bias)
        if f is None and dq is not None:  # a DequantizeLinear of constants: its float values
            f = _dequantized_vector(dq, n)
        if f is None or f.dtype != np.float32 or f.size != n:
            return None
        unit = np.float64(alpha) * np.broadcast_to(prod, (n,)).astype(np.float64)
        v = np.rint(np.float64(beta) * f.reshape(-1).astype(np.float64) / unit)
        if np.abs(v).max(initial=0) >= 2 ** 31:
            return None
        return v.astype(np.int32)
