"""quantize_dynamic's float products -> com.microsoft MatMulIntegerToFloat.

    MatMulInteger(A8, B8 const, a_zp?, b_zp?) ── Cast(to float) ── Mul(., s) [── Add(., bias const)]
        s = Mul(a_scale, b_scale) (either order; a_scale one element, b_scale const, one or [N])
    =>  MatMulIntegerToFloat(A8, B8, a_scale, b_scale, a_zp, b_zp, bias)

What onnxruntime's quantize_dynamic writes for every MatMul with constant weights (A8, a_scale
and a_zp from one DynamicQuantizeLinear, shared by every product of the same activation), and
what onnxruntime fuses the same way at session start (MatMulIntegerToFloatFusion). The fused node
computes float(acc) * (a_scale * b_scale[n]) + bias[n] in float32, in the graph's order: the same
bits as the chain, in one pass over the output instead of three (the int8 GEMM's float output
stage, runtime_c/qgemm). It also makes the Q/K/V projections of an attention block projections
again, which the attention fusion (extended level) reads. The DynamicQuantizeLinear stays: one
quantization of the activation for all the products that read it.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import const, replace_with, sole_user
from .common import fuse_each, std_op

MS = "com.microsoft"
_FLOAT = 1  # TensorProto.FLOAT


def _one(v) -> bool:
    """A value holding one element (rank <= 1), as MatMulIntegerToFloat's per-tensor parameters."""
    return v is not None and v.is_static and v.size == 1 and len(v.shape) <= 1


def _per_column(c: np.ndarray, n) -> Optional[np.ndarray]:
    """A float32 constant that broadcasts along the last dim only, as () or [n]; else None."""
    if c is None or c.dtype != np.float32 or any(d != 1 for d in c.shape[:-1]):
        return None
    if c.size == 1:
        return c.reshape(())
    return c.reshape(-1) if c.ndim and c.shape[-1] == n else None


def _scales(s, n):
    """(a_scale Value, b_scale array) of the product's scale ``s`` = a_scale * b_scale, else None."""
    c = const(s)
    if c is not None:  # folded already: all of it is B's, A's is 1 (1 * s is exact)
        b = _per_column(c, n)
        return None if b is None else (None, b)
    m = s.producer
    if not std_op(m, "Mul") or s.dtype != np.float32:
        return None
    for a, b in ((m.inputs[0], m.inputs[1]), (m.inputs[1], m.inputs[0])):
        if _one(a) and a.dtype == np.float32 and not a.is_const and const(b) is not None:
            bc = _per_column(const(b), n)
            if bc is not None and b.shape is not None and len(b.shape) <= len(s.shape):
                return a, bc
    return None


@register
class FuseMatMulIntegerToFloat(Pass):
    name = "fuse_matmul_integer_to_float"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("MatMulInteger",), self._fuse)

    def _fuse(self, graph, mmi) -> Optional[str]:
        acc = mmi.outputs[0]
        cast = sole_user(acc)
        if not std_op(cast, "Cast") or int(get_attr(cast, "to", 0)) != _FLOAT:
            return None
        mul = sole_user(cast.outputs[0])
        if not std_op(mul, "Mul"):
            return None
        s = mul.inputs[1] if mul.inputs[0] is cast.outputs[0] else mul.inputs[0]
        kept = f"kept {mmi.label} + Cast + Mul: "
        a, b = mmi.inputs[0], mmi.inputs[1]
        if const(b) is None or b.shape is None or len(b.shape) != 2 or a.shape is None:
            return kept + "B is not a constant [K, N]"
        n = b.shape[1]
        if s is cast.outputs[0] or acc.shape is None or tuple(mul.outputs[0].shape or ()) != tuple(acc.shape):
            return kept + "the scale broadcasts the product to another shape"
        sc = _scales(s, n)
        if sc is None:
            return kept + f"the scale '{s.name}' is not (one-element float) * (constant, per tensor or per column)"
        a_s, b_s = sc
        a_zp = mmi.input(2)
        if a_zp is not None and not _one(a_zp):
            return kept + f"A's zero point '{a_zp.name}' is not per tensor"
        b_zp = mmi.input(3)
        if b_zp is not None and (not b_zp.is_static or b_zp.size != b_s.size):  # the op wants one count for both
            if const(b_zp) is None or const(b_zp).size not in (1, n):
                return kept + f"B's zero point '{b_zp.name}' is a runtime value of another size than B's scale"
            b_s = np.broadcast_to(b_s, (n,)).copy()
            b_zp = graph.add_const(np.broadcast_to(const(b_zp).reshape(-1), (n,)).copy(), "mmi2f_b_zp")
        old, bias = [mmi, cast, mul], None
        add = sole_user(mul.outputs[0])
        if std_op(add, "Add") and tuple(add.outputs[0].shape or ()) == tuple(acc.shape):
            c = add.inputs[1] if add.inputs[0] is mul.outputs[0] else add.inputs[0]
            cb = _per_column(const(c), n) if c is not mul.outputs[0] else None
            if cb is not None:
                bias = graph.add_const(np.broadcast_to(cb, (n,)).copy(), "mmi2f_bias")
                old.append(add)
        a_scale = a_s if a_s is not None else graph.add_const(np.float32(1.0), "mmi2f_a_scale")
        ins = [a, b, a_scale, graph.add_const(b_s, "mmi2f_b_scale"), a_zp, b_zp, bias]
        while ins[-1] is None:
            ins.pop()
        added = MS not in graph.opset
        if added:
            graph.opset[MS] = 1
        node = replace_with(graph, old, "MatMulIntegerToFloat", ins, {}, domain=MS, name=mmi.name, check_c=True)
        if node is None:
            if added:
                del graph.opset[MS]
            graph.prune_constants()
            return kept + "the C backend has no MatMulIntegerToFloat of this shape"
        graph.prune_constants()
        return f"{mmi.label} + {cast.label} + {mul.label}{' + ' + add.label if bias is not None else ''}" \
               f" -> MatMulIntegerToFloat"
