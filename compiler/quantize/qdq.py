"""Writing the quantized graph: which nodes are quantized, how their tensors are quantized, and
the Q/DQ nodes put around them.

Static (QDQ format, as onnxruntime's quantize_static writes it):
    x  -> QuantizeLinear(x, s_x, z_x) -> DequantizeLinear -> node            (activations)
    W_q (int8 constant) -> DequantizeLinear(W_q, s_w[C], 0, axis) -> node     (weights)
    b_q (int32 constant, scale s_x * s_w[C]) -> DequantizeLinear -> node      (bias)
  A quantized activation has one Q/DQ pair, shared by every quantized node that reads it; nodes
  left in float keep reading the float tensor.  Outputs are not quantized here: the next
  quantized node's input pair follows them (after Relu, MaxPool, ... which commute with a
  monotone quantization), so an int8 Conv+Relu can requantize straight into the pair that
  follows it, and a float consumer (a residual Add, LayerNorm, the logits) loses nothing.
Static, full (onnxc.quantize's form, as quantize_static places them): every activation that
enters or leaves an int8-capable node gets one Q/DQ pair read by all of its consumers (except
layers kept in float; graph outputs stay float: a Conv/Gemm/MatMul writing one gets its input
pair and int8 weights and no output pair, and a Gemm there fuses to a float-output QGemm), so
onnxc's QDQ fusions (passes/basic/fuse_qdq*.py) turn the whole chain into int8 nodes:
    Conv/Gemm/MatMul (weights)            input and output
    Add, GlobalAveragePool, AveragePool,  inputs and output, each with its own calibrated range
    Concat
    MaxPool, Reshape, Flatten, Transpose, output with its input's scale and zero point (the op
    Squeeze, Unsqueeze, Slice, Gather,    then runs on the 8-bit tensor), when the input is quantized
    Depth/SpaceToDepth, Resize (nearest)  (passes/basic/fuse_qdq_ops.DROP_OPS)
  With uint8 activations a Relu (or Clip(0, max)) that alone reads such an output is dropped and
  the output quantized with the Relu output's range: its zero point is 0 = the type's minimum, so
  QuantizeLinear's saturation does what the Relu did, exactly.
Dynamic, standard ops (as onnxruntime's quantize_dynamic writes it, which onnxruntime fuses into
DynamicQuantizeMatMul / MatMulIntegerToFloat):
    DynamicQuantizeLinear(x) -> MatMulInteger(x_q, W_q, z_x, z_w) -> Cast -> Mul(s_x * s_w)
Dynamic, QDQ (inside onnxc.compile, where fused ops have no integer form):
    DynamicQuantizeLinear(x) -> DequantizeLinear(x_q, s_x, z_x) -> node,  W as in static.
Dynamic, per token (per_token=True, the default): one uint8 scale and zero point per row of x
(over its last axis), computed with standard ops, the zero point taken out after the product:
    lo, hi = min(ReduceMin(x, -1), 0), max(ReduceMax(x, -1), 0);  s = (hi - lo) / 255;  z = round(-lo / s)
    x_q = Cast(Clip(round(x / s) + z, 0, 255))          (DynamicQuantizeLinear's formula, per row)
    y = Cast(MatMulInteger(x_q, W_q) - z * colsum(W_q)) * s * s_w      (int32 correction, exact)
  and in the QDQ form the float node reads (Clip(round(x / s) + z, 0, 255) - z) * s.

Fused ops (after the extended passes) are quantized as units: onnxc.FusedConv (+activation,
+residual Z), FusedGemm, FusedMatMul, MatMulGelu and MultiHeadAttention get Q/DQ on their
activation input and DQ on their weight and bias; the activation, the residual input Z, the
Gelu and the attention core (Q K^T, softmax, V) stay float inside the unit, as onnxruntime's
QAttention and QLinearConv+activation treat them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UnsupportedError
from ..passes.basic.fuse_qdq_ops import DROP_OPS, moves_values
from .options import QuantizeOptions, matches

F32 = np.dtype(np.float32)
INT32_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class Role:
    """Input positions of a quantizable node: the activation, the weight (and the axis of its
    output channels), the bias."""
    act: int
    weight: int
    bias: Optional[int]


def _weight_axis(node) -> int:
    op = node.op_type
    if op in ("Conv", "FusedConv"):
        return 0
    if op in ("Gemm", "FusedGemm", "FusedMatMul"):
        return 0 if node.attrs.get("transB", 0) else 1
    return 1  # MatMul, MatMulGelu, MultiHeadAttention: [K, N]


ROLES = {
    ("", "Conv"): Role(0, 1, 2), ("", "Gemm"): Role(0, 1, 2), ("", "MatMul"): Role(0, 1, None),
    ("onnxc", "FusedConv"): Role(0, 1, 2), ("onnxc", "FusedGemm"): Role(0, 1, 2),
    ("onnxc", "FusedMatMul"): Role(0, 1, 2), ("onnxc", "MatMulGelu"): Role(0, 1, 2),
    ("onnxc", "MultiHeadAttention"): Role(0, 1, 2),
}
# op types onnxc.quantize's op_types/exclude may name (with or without the onnxc. prefix)
SUPPORTED_OPS = sorted({op for _, op in ROLES})


def role_of(node) -> Optional[Role]:
    """The node's Role if it is quantizable: a float32 activation and a float32 constant weight of
    rank >= 2 (MatMul: exactly 2-D), else None."""
    role = ROLES.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
    if role is None:
        return None
    x, w = node.input(role.act), node.input(role.weight)
    if x is None or w is None or x.dtype != F32 or not w.is_const or w.dtype != F32 or x.is_const:
        return None
    if node.op_type == "MatMul" and w.const.ndim != 2:
        return None
    if w.const.ndim < 2 or w.const.size == 0:
        return None
    if node.op_type == "FusedMatMul" and node.attrs.get("transA", 0) and x.shape is not None and len(x.shape) < 2:
        return None
    if node.op_type == "FusedMatMul" and w.const.ndim != 2:
        return None
    if node.op_type in ("Gemm", "FusedGemm") and node.attrs.get("transA", 0):
        return None  # quantized per tensor it would be fine; the integer form needs A as rows
    return role


def candidates(graph, options: QuantizeOptions) -> List:
    """The nodes to quantize, in graph order: quantizable, of the requested op types, not
    excluded.  Dynamic mode leaves convolutions in float (dynamic activation quantization of a
    convolution is the slow path users of onnxruntime hit: static mode is the one for CNNs)."""
    out = []
    for n in graph.nodes:
        role = role_of(n)
        if role is None:
            continue
        if options.mode == "dynamic" and n.op_type in ("Conv", "FusedConv"):
            continue
        if options.op_types is not None and not matches(n, options.op_types):
            continue
        if matches(n, options.exclude):
            continue
        out.append(n)
    return out


# --- numbers ----------------------------------------------------------------------------------
def _act_dtype(activation_type: str):
    return np.uint8 if activation_type == "uint8" else np.int8


def weight_range(reduce_range: bool) -> int:
    return 63 if reduce_range else 127


def quantize_weight(w: np.ndarray, axis: Optional[int], reduce_range: bool = False, min_scale=None
                    ) -> Tuple[np.ndarray, np.ndarray]:
    """Symmetric int8: per channel along ``axis`` (None: per tensor). Returns (q int8, scale
    float32 of shape [C] or []); an all-zero channel gets scale 1 (its q are 0 either way).
    ``min_scale`` (per channel or scalar): a floor on the scale (so an int32 bias fits)."""
    w = np.asarray(w, np.float32)
    qmax = weight_range(reduce_range)
    if axis is None:
        amax = np.abs(w).max() if w.size else np.float32(0)
        scale = np.asarray(amax / qmax if amax > 0 else 1.0, np.float32)
        if min_scale is not None:
            scale = np.asarray(max(float(scale), float(np.max(min_scale))), np.float32)
        q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
        return q, scale
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(moved).max(axis=1)
    scale = np.where(amax > 0, amax / np.float32(qmax), np.float32(1)).astype(np.float32)
    if min_scale is not None and np.size(min_scale) in (1, scale.size):
        scale = np.maximum(scale, np.asarray(min_scale, np.float32)).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.rint(w / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
    return q, scale


def dequantize_weight(q: np.ndarray, scale: np.ndarray, axis: Optional[int]) -> np.ndarray:
    if axis is None or scale.ndim == 0:
        return (q.astype(np.float32) * scale).astype(np.float32)
    shape = [1] * q.ndim
    shape[axis] = -1
    return (q.astype(np.float32) * scale.reshape(shape)).astype(np.float32)


def activation_params(lo: float, hi: float, activation_type: str) -> Tuple[np.ndarray, np.ndarray]:
    """(scale float32 [], zero point uint8/int8 []) for a calibrated range, widened to hold 0
    (zero padding and Relu's zeros are then exact). uint8: asymmetric over [lo, hi]; int8:
    symmetric, zero point 0, |q| <= 127."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UnsupportedError(f"calibrated range [{lo}, {hi}] is not finite")
    if activation_type == "int8":
        amax = max(-lo, hi)
        scale = np.float32(amax / 127.0) if amax > 0 else np.float32(1.0)
        return np.asarray(scale, np.float32), np.asarray(0, np.int8)
    if hi == lo:
        return np.asarray(1.0, np.float32), np.asarray(0, np.uint8)
    scale = np.float32((hi - lo) / 255.0)
    zp = int(np.clip(np.rint(-lo / float(scale)), 0, 255))
    return np.asarray(scale, np.float32), np.asarray(zp, np.uint8)


def fake_quantize(x: np.ndarray, scale, zp) -> np.ndarray:
    """QuantizeLinear then DequantizeLinear, as onnxruntime and onnxc's C compute them."""
    zp = np.asarray(zp)
    info = np.iinfo(zp.dtype)
    q = np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)) + float(zp), info.min, info.max)
    return ((q - float(zp)) * np.float32(scale)).astype(np.float32)


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(|ref|^2 / |ref - approx|^2) in float64; inf when identical."""
    ref = np.asarray(ref, np.float64)
    err = float(np.sum((ref - np.asarray(approx, np.float64)) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0:
        return float("inf")
    if sig == 0:
        return float("-inf")
    return 10.0 * np.log10(sig / err)


# --- the rewrite ------------------------------------------------------------------------------
@dataclass
class LayerInfo:
    """What was done to one node (for the summary and the report)."""
    name: str
    op: str
    activation: str
    act_range: Optional[Tuple[float, float]]
    act_scale: Optional[float]
    act_zero_point: Optional[int]
    weight: str
    weight_axis: Optional[int]
    weight_sqnr: float
    bias_int32: bool


class Rewriter:
    """Inserts Q/DQ (or the dynamic forms) into an IR graph, one node at a time."""

    def __init__(self, graph, options: QuantizeOptions, ranges: Optional[Dict[str, Tuple[float, float]]] = None,
                 form: str = "qdq"):
        self.g = graph
        self.o = options
        self.ranges = ranges or {}
        self.form = form  # "qdq" or (dynamic only) "integer"
        self.acts: Dict[int, object] = {}     # id(float value) -> its DQ output
        self.weights: Dict[Tuple[int, Optional[int]], Tuple] = {}
        self.layers: List[LayerInfo] = []
        if options.per_channel and graph.opset.get("", 1) < 13:
            raise UnsupportedError(f"per-channel quantization needs opset >= 13 (DequantizeLinear's axis); the "
                                   f"model is opset {graph.opset.get('', 1)}: use per_channel=False")

    # values and constants
    def _const(self, arr, hint):
        return self.g.add_const(np.asarray(arr), hint=hint)

    def _out(self, hint, dtype, shape):
        return self.g.new_value(hint, dtype, shape)

    def _node(self, op, inputs, outputs, before, attrs=None, domain=""):
        from ..ir import Node
        n = Node(op, inputs, outputs, attrs, name=self.g.fresh_name(f"{outputs[0].name}_{op}"), domain=domain,
                 opset=self.g.opset.get(domain, 1))
        self.g.insert(n, before=before)
        return n

    def _dq_weight(self, node, role, min_scale=None):
        w = node.inputs[role.weight]
        axis = _weight_axis(node) if self.o.per_channel else None
        key = (id(w), axis)
        if key not in self.weights:
            q, scale = quantize_weight(w.const, axis, self.o.reduce_range, min_scale)
            qv = self._const(q, f"{w.name}_quantized")
            sv = self._const(scale, f"{w.name}_scale")
            zv = self._const(np.zeros(scale.shape, np.int8), f"{w.name}_zero_point")
            out = self._out(f"{w.name}_dequantized", F32, w.shape)
            attrs = {"axis": axis} if axis is not None else {}
            self._node("DequantizeLinear", [qv, sv, zv], [out], before=self.g.nodes[0], attrs=attrs)
            self.weights[key] = (out, q, scale, axis, sqnr_db(w.const, dequantize_weight(q, scale, axis)))
        return self.weights[key]

    def _qdq_act(self, x, node):
        if id(x) in self.acts:
            return self.acts[id(x)]
        lo, hi = self.ranges[x.name]
        scale, zp = activation_params(lo, hi, self.o.activation_type)
        sv = self._const(scale, f"{x.name}_scale")
        zv = self._const(zp, f"{x.name}_zero_point")
        q = self._out(f"{x.name}_quantized", zp.dtype, x.shape)
        dq = self._out(f"{x.name}_dequantized", F32, x.shape)
        self._node("QuantizeLinear", [x, sv, zv], [q], before=node)
        self._node("DequantizeLinear", [q, sv, zv], [dq], before=node)
        self.acts[id(x)] = (dq, float(scale), int(zp), (float(lo), float(hi)))
        return self.acts[id(x)]

    def place(self, plan: "FullPlan", floats=frozenset()) -> None:
        """The full static form: drop the folded activations, then one Q/DQ pair per planned
        tensor, read by every consumer of the tensor that runs quantized."""
        by_name = {n.name: n for n in self.g.nodes}
        for name in plan.drops:
            act = by_name[name]
            y, r = act.inputs[0], act.outputs[0]
            self.g.replace_all_uses(r, y)
            self.g.remove_node(act)
        values = self.g.value_map()
        for name, (kind, src) in plan.tensors:
            x = values[name]
            if kind == "share":
                _, scale, zp, rng = self.acts[id(values[src])]
                scale, zp = np.asarray(scale, np.float32), np.asarray(zp, _act_dtype(self.o.activation_type))
            else:
                rng = self.ranges[src]
                scale, zp = activation_params(rng[0], rng[1], self.o.activation_type)
            sv = self._const(scale, f"{x.name}_scale")
            zv = self._const(zp, f"{x.name}_zero_point")
            q = self._out(f"{x.name}_quantized", zp.dtype, x.shape)
            dq = self._out(f"{x.name}_dequantized", F32, x.shape)
            uses = list(x.uses)
            from ..ir import Node
            qn = Node("QuantizeLinear", [x, sv, zv], [q], None, name=self.g.fresh_name(f"{q.name}_QuantizeLinear"),
                      opset=self.g.opset.get("", 1))
            dqn = Node("DequantizeLinear", [q, sv, zv], [dq], None,
                       name=self.g.fresh_name(f"{dq.name}_DequantizeLinear"), opset=self.g.opset.get("", 1))
            if x.producer is not None:
                self.g.insert(qn, after=x.producer)
            else:
                self.g.insert(qn, before=self.g.nodes[0])
            self.g.insert(dqn, after=qn)
            for user, idx in uses:
                if id(user) not in floats:
                    user.set_input(idx, dq)
            entry = (dq, float(scale), int(zp), (float(rng[0]), float(rng[1])))
            self.acts[id(x)] = self.acts[id(dq)] = entry

    def _dyn_act(self, x, node):
        if id(x) in self.acts:
            return self.acts[id(x)]
        q = self._out(f"{x.name}_quantized", np.uint8, x.shape)
        s = self._out(f"{x.name}_scale", F32, ())
        z = self._out(f"{x.name}_zero_point", np.uint8, ())
        self._node("DynamicQuantizeLinear", [x], [q, s, z], before=node)
        dq = None
        if self.form == "qdq":
            dq = self._out(f"{x.name}_dequantized", F32, x.shape)
            self._node("DequantizeLinear", [q, s, z], [dq], before=node)
        self.acts[id(x)] = (dq, (q, s, z), None, None)
        return self.acts[id(x)]

    def _f32(self, value, hint):
        return self._const(np.asarray(value, np.float32), hint)

    def _op(self, op, inputs, before, hint, dtype=F32, attrs=None, shape=None):
        out = self._out(hint, dtype, shape)
        self._node(op, inputs, [out], before=before, attrs=attrs)
        return out

    @staticmethod
    def _rows_shape(x):
        return None if x.shape is None else tuple(x.shape[:-1]) + (1,)

    def _reduce(self, op, x, before, hint):
        """``op`` over x's last axis, kept (attribute axes before opset 18, an input from 18)."""
        rows = self._rows_shape(x)
        if self.g.opset.get("", 1) >= 18:
            axes = self._const(np.asarray([-1], np.int64), f"{x.name}_last_axis")
            return self._op(op, [x, axes], before, hint, attrs={"keepdims": 1}, shape=rows)
        return self._op(op, [x], before, hint, attrs={"axes": [-1], "keepdims": 1}, shape=rows)

    def _row_act(self, x, node):
        """Per-row (per-token) dynamic uint8 quantization of x with standard ops: returns
        (q float holding integers in [0, 255], scale [..., 1], zero point [..., 1] float)."""
        key = ("rows", id(x))
        if key in self.acts:
            return self.acts[key]
        n, rs, xs = x.name, self._rows_shape(x), x.shape
        zero, tiny = self._f32(0.0, f"{n}_zero"), self._f32(np.finfo(np.float32).tiny, f"{n}_tiny")
        hi = self._op("Max", [self._reduce("ReduceMax", x, node, f"{n}_row_max"), zero], node, f"{n}_row_hi",
                      shape=rs)
        lo = self._op("Min", [self._reduce("ReduceMin", x, node, f"{n}_row_min"), zero], node, f"{n}_row_lo",
                      shape=rs)
        span = self._op("Sub", [hi, lo], node, f"{n}_row_span", shape=rs)
        span = self._op("Div", [span, self._f32(255.0, f"{n}_255")], node, f"{n}_row_step", shape=rs)
        s = self._op("Max", [span, tiny], node, f"{n}_row_scale", shape=rs)  # an all-zero row: x / s = 0
        z = self._op("Round", [self._op("Div", [self._op("Neg", [lo], node, f"{n}_row_neg_lo", shape=rs), s], node,
                                        f"{n}_row_zp_real", shape=rs)], node, f"{n}_row_zero_point", shape=rs)
        r = self._op("Round", [self._op("Div", [x, s], node, f"{n}_row_scaled", shape=xs)], node, f"{n}_row_rounded",
                     shape=xs)
        r = self._op("Add", [r, z], node, f"{n}_row_shifted", shape=xs)
        q = self._op("Clip", [r, zero, self._f32(255.0, f"{n}_qmax")], node, f"{n}_row_q", shape=xs)
        self.acts[key] = (q, s, z)
        return self.acts[key]

    def _row_dq(self, x, node):
        """The float node's input in the QDQ form: x quantized per row and dequantized."""
        key = ("rows_dq", id(x))
        if key not in self.acts:
            q, s, z = self._row_act(x, node)
            d = self._op("Sub", [q, z], node, f"{x.name}_row_centered", shape=x.shape)
            self.acts[key] = self._op("Mul", [d, s], node, f"{x.name}_dequantized", shape=x.shape)
        return self.acts[key]

    def _row_u8(self, x, node):
        key = ("rows_u8", id(x))
        if key not in self.acts:
            q, s, z = self._row_act(x, node)
            q8 = self._op("Cast", [q], node, f"{x.name}_quantized", np.dtype(np.uint8), {"to": 2}, x.shape)
            z32 = self._op("Cast", [z], node, f"{x.name}_zero_point", np.dtype(np.int32), {"to": 6},
                           self._rows_shape(x))
            self.acts[key] = (q8, s, z32)
        return self.acts[key]

    def _bias_floor(self, node, role, x_scale):
        """The smallest weight scales (per output channel) that keep the int32 bias within 2^30
        in units of x_scale * w_scale: a channel whose weights are near zero but whose bias is
        not (batch norm folded into a dead filter) would otherwise leave the bias float and the
        node out of the integer kernels; its weights then round to fewer levels, which costs
        nothing next to the bias they are added to."""
        if role.bias is None or not x_scale:
            return None
        b = node.input(role.bias)
        if b is None or not b.is_const or b.dtype != F32 or b.const.ndim != 1:
            return None
        floor = np.abs(b.const.astype(np.float64)) / (float(x_scale) * 2.0 ** 30)
        return floor.astype(np.float32)

    def _bias(self, node, role, x_scale, w_scale):
        """int32 bias with scale s_x * s_w; left float (False) when it does not fit or the node
        scales it (Gemm's alpha/beta, FusedMatMul's alpha) or it is not a [C] constant."""
        if role.bias is None:
            return False
        b = node.input(role.bias)
        if b is None or not b.is_const or b.dtype != F32 or b.const.ndim != 1:
            return False
        if node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0:
            return False
        bscale = (np.float32(x_scale) * np.asarray(w_scale, np.float32)).astype(np.float32)
        if bscale.ndim and bscale.shape[0] != b.const.shape[0]:
            return False
        if np.any(bscale == 0):
            return False
        q = np.rint(b.const.astype(np.float64) / bscale.astype(np.float64))
        if np.any(np.abs(q) > INT32_MAX):
            return False
        qv = self._const(q.astype(np.int32), f"{b.name}_quantized")
        sv = self._const(bscale, f"{b.name}_scale")
        zv = self._const(np.zeros(bscale.shape, np.int32), f"{b.name}_zero_point")
        out = self._out(f"{b.name}_dequantized", F32, b.shape)
        self._node("DequantizeLinear", [qv, sv, zv], [out], before=node, attrs={"axis": 0} if bscale.ndim else {})
        node.set_input(role.bias, out)
        return True

    def quantize_node(self, node) -> None:
        role = role_of(node)
        x = node.inputs[role.act]
        w = node.inputs[role.weight]
        if self.o.mode == "dynamic" and self.form == "integer" and node.op_type in ("MatMul", "Gemm") \
                and not node.domain:
            return self._integer_matmul(node, role)
        if self.o.mode == "static":
            dq, xs, xz, rng = self._qdq_act(x, node)
            wout, q, wscale, axis, wsqnr = self._dq_weight(node, role, self._bias_floor(node, role, xs))
            node.set_input(role.act, dq)
            bias = self._bias(node, role, xs, wscale)
            act = f"{self.o.activation_type} {'asymmetric' if self.o.activation_type == 'uint8' else 'symmetric'}"
        else:
            wout, q, wscale, axis, wsqnr = self._dq_weight(node, role)
        if self.o.mode == "static":
            pass
        elif self.o.per_token:
            node.set_input(role.act, self._row_dq(x, node))
            xs = xz = rng = None
            bias = False
            act = "uint8 dynamic per token"
        else:
            dq, _, _, _ = self._dyn_act(x, node)
            node.set_input(role.act, dq)
            xs = xz = rng = None
            bias = False
            act = "uint8 dynamic"
        node.set_input(role.weight, wout)
        self.layers.append(LayerInfo(node.name, node.op_type, act, rng, xs, xz,
                                     f"int8 {'per-channel' if axis is not None else 'per-tensor'}",
                                     axis, wsqnr, bias))
        del w

    def _integer_matmul(self, node, role):
        """MatMul/Gemm -> DynamicQuantizeLinear + MatMulInteger + Cast + Mul (+ Add for Gemm's C)."""
        x, w = node.inputs[role.act], node.inputs[role.weight]
        wc = w.const
        if node.op_type == "Gemm" and node.attrs.get("transB", 0):
            wc = wc.T
        axis = 1 if self.o.per_channel else None
        wq, wscale = quantize_weight(wc, axis, self.o.reduce_range)
        wsqnr = sqnr_db(wc, dequantize_weight(wq, wscale, axis))
        alpha = float(node.attrs.get("alpha", 1.0)) if node.op_type == "Gemm" else 1.0
        y = node.outputs[0]
        qv = self._const(wq, f"{w.name}_quantized")
        sv = self._const((wscale * np.float32(alpha)).astype(np.float32), f"{w.name}_scale")
        acc = self._out(f"{y.name}_int32", np.int32, y.shape)
        if self.o.per_token:
            xq, xs, xz = self._row_u8(x, node)
            self._node("MatMulInteger", [xq, qv], [acc], before=node)
            # sum_k (q - z) w = acc - z * colsum(w), in int32 (exact: |acc| < 255 * 127 * K)
            colsum = self._const(wq.astype(np.int32).sum(axis=0, dtype=np.int32), f"{w.name}_column_sums")
            corr = self._op("Mul", [xz, colsum], node, f"{y.name}_zero_point_term", np.dtype(np.int32), shape=y.shape)
            centered = self._op("Sub", [acc, corr], node, f"{y.name}_int32_centered", np.dtype(np.int32),
                                shape=y.shape)
            accf = self._op("Cast", [centered], node, f"{y.name}_int32_float", F32, {"to": 1}, y.shape)
            rows = self._op("Mul", [accf, xs], node, f"{y.name}_row_scaled", shape=y.shape)
            accf, scale = rows, sv
        else:
            _, (xq, xs, xz), _, _ = self._dyn_act(x, node)
            zv = self._const(np.zeros(wscale.shape, np.int8), f"{w.name}_zero_point")
            self._node("MatMulInteger", [xq, qv, xz, zv], [acc], before=node)
            accf = self._out(f"{y.name}_int32_float", F32, y.shape)
            self._node("Cast", [acc], [accf], before=node, attrs={"to": 1})
            scale = self._out(f"{y.name}_scale", F32, tuple(wscale.shape))
            self._node("Mul", [xs, sv], [scale], before=node)
        c = node.input(2) if node.op_type == "Gemm" else None
        beta = float(node.attrs.get("beta", 1.0))
        if c is None:
            self._node("Mul", [accf, scale], [y], before=node)
        else:
            if beta != 1.0:
                if not c.is_const:  # never reached: role_of admits such Gemms only as the qdq form
                    raise UnsupportedError(f"Gemm '{node.name}': beta != 1 with a non-constant C")
                c = self._const((c.const * np.float32(beta)).astype(np.float32), f"{c.name}_beta")
            mid = self._out(f"{y.name}_nobias", F32, y.shape)
            self._node("Mul", [accf, scale], [mid], before=node)
            self._node("Add", [mid, c], [y], before=node)
        # the new nodes define y now: drop the float node (its output value moves to the last Mul/Add)
        self.g.remove_node(node)
        act = "uint8 dynamic per token" if self.o.per_token else "uint8 dynamic"
        self.layers.append(LayerInfo(node.name, node.op_type, act, None, None, None,
                                     f"int8 {'per-channel' if axis is not None else 'per-tensor'}", axis, wsqnr,
                                     False))


def apply(graph, options: QuantizeOptions, ranges=None, form: str = "qdq", nodes=None, full: bool = False
          ) -> List[LayerInfo]:
    """Quantize ``nodes`` (default: candidates(graph, options)) of ``graph`` in place.  ``full``
    (static mode): also quantize the outputs and the int8-capable ops around them (full_plan)."""
    nodes = candidates(graph, options) if nodes is None else nodes
    full = full and options.mode == "static" and form == "qdq"
    plan = full_plan(graph, options, nodes) if full else None
    if options.mode == "static":
        need = set(plan.range_names()) if full else {n.inputs[role_of(n).act].name for n in nodes}
        missing = sorted(need - set(ranges or {}))
        if missing:
            raise UnsupportedError(f"no calibrated range for {len(missing)} tensor(s): {missing[:5]}")
    rw = Rewriter(graph, options, ranges, form)
    if full:
        rw.place(plan, _float_readers(graph, options, nodes))
    for n in nodes:
        rw.quantize_node(n)
    graph.prune_constants()
    graph.toposort()
    return rw.layers


def calibration_tensors(graph, options: QuantizeOptions, nodes=None) -> List[str]:
    """Names of the float tensors whose ranges static mode needs (activation inputs)."""
    nodes = candidates(graph, options) if nodes is None else nodes
    seen, out = set(), []
    for n in nodes:
        name = n.inputs[role_of(n).act].name
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


# --- full static placement --------------------------------------------------------------------
OWN_RANGE_OPS = ("Add", "GlobalAveragePool", "AveragePool", "Concat")
SAME_SCALE_OPS = DROP_OPS  # what drop_qdq runs on the 8-bit tensor (Resize when it selects: moves_values)


@dataclass
class FullPlan:
    """Where the full static form puts its Q/DQ pairs (computed on the float graph, before
    calibration, so the ranges it needs are known): ``drops`` the Relu/Clip nodes folded into the
    quantization of their input; ``tensors`` (value name, ("range", calibrated tensor) or
    ("share", value whose scale and zero point it takes)) in graph order."""
    drops: List[str]
    tensors: List[Tuple[str, Tuple[str, str]]]

    def range_names(self) -> List[str]:
        out: List[str] = []
        for _, (kind, src) in self.tensors:
            if kind == "range" and src not in out:
                out.append(src)
        return out


def _is_act(v) -> bool:
    return v is not None and not v.is_const and v.dtype == F32


def _foldable_activation(graph, y, uint8: bool):
    """The Relu / Clip(0, max) that alone reads y, if quantizing y with that node's output range
    makes the node a no-op; else None."""
    if not uint8 or graph.is_output(y) or len(y.uses) != 1:
        return None
    act, idx = y.uses[0]
    if idx != 0 or act.domain not in ("", "ai.onnx") or graph.is_output(act.outputs[0]):
        return None
    if act.op_type == "Relu":
        return act
    if act.op_type == "Clip":
        lo = act.input(1) if len(act.inputs) > 1 else None
        if lo is not None and lo.is_const and lo.const.size == 1 and float(lo.const.reshape(())) == 0.0:
            hi = act.input(2) if len(act.inputs) > 2 else None
            if hi is None or (hi.is_const and hi.const.size == 1):
                return act
        if act.opset < 11 and act.attrs.get("min", None) == 0.0:
            return act
    return None


def _float_readers(graph, options: QuantizeOptions, nodes) -> set:
    """ids of the nodes that must read float tensors: excluded (by name or op type) or
    quantizable but left out (op_types, the accuracy-aware mode's choice)."""
    chosen = {id(n) for n in nodes}
    return {id(n) for n in graph.nodes
            if id(n) not in chosen and (role_of(n) is not None or matches(n, options.exclude))}


def _only_float_readers(graph, v, floats) -> bool:
    """v (looking through Relu/Clip) is read only by nodes that stay float, or is a graph output
    (outputs stay float: 8-bit rounding and clipping at the calibrated range of what the user
    reads is a cost quantize_static pays to run the last layer in int8; here it is not paid)."""
    if not v.uses and not graph.is_output(v):
        return False
    for user, _ in v.uses:
        if id(user) in floats:
            continue
        if user.op_type in ("Relu", "Clip") and user.domain in ("", "ai.onnx") and len(user.outputs) == 1:
            if _only_float_readers(graph, user.outputs[0], floats):
                continue
        return False
    return True


def full_plan(graph, options: QuantizeOptions, nodes) -> FullPlan:
    weight_nodes = {id(n) for n in nodes}
    uint8 = options.activation_type == "uint8"
    floats = _float_readers(graph, options, nodes)

    def allowed(n):
        if matches(n, options.exclude):
            return False
        return options.op_types is None or matches(n, options.op_types)

    alias: Dict[int, object] = {}   # id(dropped Relu output) -> the value quantized in its place
    source: Dict[int, Tuple[str, str]] = {}
    order: List = []
    drops: List[str] = []

    def real(v):
        return alias.get(id(v), v)

    def add(v, src):
        v = real(v)
        if id(v) not in source:
            source[id(v)] = src
            order.append(v)

    for n in graph.nodes:
        if n.domain not in ("", "ai.onnx") and id(n) not in weight_nodes:
            continue
        if id(n) in weight_nodes:
            ins = [n.inputs[role_of(n).act]]
        elif n.op_type in OWN_RANGE_OPS and allowed(n) and len(n.outputs) == 1:
            ins = list(n.inputs[:2]) if n.op_type == "Add" else (list(n.inputs) if n.op_type == "Concat"
                                                                  else [n.inputs[0]])
            if not ins or not all(_is_act(v) for v in ins):
                continue
            if n.op_type == "Add" and (ins[0].shape is None or ins[0].shape != ins[1].shape):
                continue  # QLinearAdd of two activations of one shape (no broadcast of a bias)
        elif n.op_type in SAME_SCALE_OPS and moves_values(n) and allowed(n) and _is_act(n.inputs[0]) \
                and id(real(n.inputs[0])) in source:
            if n.outputs[0].dtype == F32 and (len(n.outputs) == 1 or not n.outputs[1].uses) \
                    and not _only_float_readers(graph, n.outputs[0], floats):
                add(n.outputs[0], ("share", real(n.inputs[0]).name))
            continue
        else:
            continue
        for v in ins:
            add(v, ("range", v.name))  # a dropped Relu's output: already added as its input
        y = n.outputs[0]
        if not _is_act(y) or _only_float_readers(graph, y, floats):
            continue  # (a layer kept in float reads its input unquantized)
        act = _foldable_activation(graph, y, uint8)
        if act is not None and any(id(u) in floats for u in act.outputs[0].users):
            act = None
        if act is not None:
            drops.append(act.name)
            alias[id(act.outputs[0])] = y
            add(y, ("range", act.outputs[0].name))
        else:
            add(y, ("range", y.name))
    return FullPlan(drops, [(v.name, source[id(v)]) for v in order])
