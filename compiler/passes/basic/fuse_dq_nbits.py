"""Blocked 4-bit weights in QDQ form -> com.microsoft MatMulNBits.

    W_q (int4/uint4 constant [K, N]) ── DequantizeLinear(scale [K/bs, N], zp?, axis=0, block_size=bs)
                                                         ── MatMul(A, .)   =>  MatMulNBits(A, B, scales, zp)

What onnxruntime's MatMul4BitsQuantizer writes with quant_format=QDQ (and what onnxruntime fuses
the same way, DQMatMulToMatMulNBits): without it constant folding would dequantize the weights
into a float32 constant, 8x the bytes a memory-bound GEMV reads.  MatMulNBits stores unsigned
4-bit values, two per byte (low nibble first), per column; int4 weights and zero points move
by 8 (w - zp is unchanged), an absent zero point is 0 for uint4 and 0 (8 after the move, the
op's default) for int4.  accuracy_level 0: the weights dequantize to float32 as the
DequantizeLinear did, so the result differs from the QDQ graph by the order of the float sums.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import const, producer, replace_with
from .common import fuse_each

MS = "com.microsoft"
NIBBLE_TYPES = {"int4": 8, "uint4": 0}  # dtype name -> the shift to MatMulNBits's unsigned values


def _pack_pairs(q: np.ndarray) -> np.ndarray:
    """[rows, n] values in 0..15 -> [rows, ceil(n / 2)] bytes, element 2i in the low nibble."""
    if q.shape[1] % 2:
        q = np.concatenate([q, np.zeros((q.shape[0], 1), q.dtype)], 1)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)


def nbits_operands(w, scale, zp, block: int):
    """MatMulNBits's B [N, kb, block / 2], scales [N * kb] and packed zero points (None when they
    are all the op's default 8) from DequantizeLinear's blocked [K, N] weights."""
    shift = NIBBLE_TYPES[w.dtype.name]
    K, N = w.shape
    kb = -(-K // block)
    q = np.zeros((kb * block, N), np.uint8)
    q[:K] = (w.astype(np.int16) + shift).astype(np.uint8)
    b = _pack_pairs(np.ascontiguousarray(q.T)).reshape(N, kb, block // 2)
    z = np.full((kb, N), shift, np.uint8) if zp is None else (zp.astype(np.int16) + shift).astype(np.uint8)
    zpk = None if (z == 8).all() else _pack_pairs(np.ascontiguousarray(z.T))
    return b, np.ascontiguousarray(scale.astype(np.float32).T).reshape(-1), zpk


@register
class FuseDQMatMulNBits(Pass):
    name = "fuse_dq_matmul_nbits"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("MatMul",), self._fuse)

    def _fuse(self, graph, mm) -> Optional[str]:
        dq = producer(mm.inputs[1], "DequantizeLinear")
        if dq is None or dq.inputs[0].dtype is None or dq.inputs[0].dtype.name not in NIBBLE_TYPES:
            return None
        kept = f"kept {mm.label} on float weights: "
        w, scale, zp = const(dq.inputs[0]), const(dq.inputs[1]), (None if dq.input(2) is None else const(dq.input(2)))
        block = int(get_attr(dq, "block_size", 0))
        a = mm.inputs[0]
        if w is None or scale is None or (dq.input(2) is not None and zp is None) or w.ndim != 2:
            return kept + "weights, scales or zero points not constant, or not [K, N]"
        K, N = w.shape
        if block < 16 or block > 256 or block & (block - 1) or int(get_attr(dq, "axis", 1)) not in (0, -2):
            return kept + f"not blocked along K with a power-of-two block in [16, 256] (block_size {block})"
        kb = -(-K // block)
        if scale.shape != (kb, N) or (zp is not None and zp.shape != (kb, N)):
            return kept + f"scales / zero points not [{kb}, {N}] (K / block_size, N)"
        if a.dtype != np.float32 or scale.dtype != np.float32 or a.shape is None or len(a.shape) < 1 \
                or a.shape[-1] != K or mm.outputs[0].dtype != np.float32:
            return kept + "not a float32 A [..., K] with float32 scales"
        b, s, z = nbits_operands(w, scale, zp, block)
        ins = [a, graph.add_const(b, "nbits_B"), graph.add_const(s, "nbits_scales")]
        if z is not None:
            ins.append(graph.add_const(z, "nbits_zp"))
        attrs = {"K": K, "N": N, "bits": 4, "block_size": block, "accuracy_level": 0}
        added = MS not in graph.opset
        if added:
            graph.opset[MS] = 1
        if replace_with(graph, [mm], "MatMulNBits", ins, attrs, domain=MS, name=mm.name, check_c=True) is None:
            if added:
                del graph.opset[MS]
            graph.prune_constants()
            return kept + "the C backend has no MatMulNBits of this shape"
        if not dq.outputs[0].uses and not graph.is_output(dq.outputs[0]):
            graph.remove_node(dq)
        graph.prune_constants()
        return f"{mm.label} -> MatMulNBits ({w.dtype.name}, block {block})"
