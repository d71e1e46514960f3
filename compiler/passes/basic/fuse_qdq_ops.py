"""QDQ fusion beyond the matrix products (fuse_qdq.py): the rest of a quantize_static CNN.

    fuse_qdq_conv    DQ(x) ─┐
                     DQ(W) ─┼ Conv [── Relu|Clip] ── Q(sy, zy)   =>  QLinearConv(x, .., W, .., sy, zy, B)
                     bias? ─┘
    fuse_qdq_binary  DQ(a), DQ(b) ── Add|Mul ── Q                 =>  com.microsoft QLinearAdd|QLinearMul
    fuse_qdq_concat  DQ(x_i)... ── Concat ── Q                    =>  com.microsoft QLinearConcat
    fuse_qdq_pool    DQ(x) ── GlobalAveragePool|AveragePool ── Q  =>  com.microsoft QLinear(Global)AveragePool
    fuse_qdq_unary   DQ(x) ── Sigmoid|LeakyRelu ── Q               =>  com.microsoft QLinearSigmoid|QLinearLeakyRelu
    drop_qdq         DQ(x; s, z) ── MaxPool|Reshape|Transpose|Flatten|Squeeze|Unsqueeze|Slice|Gather|
                                    DepthToSpace|SpaceToDepth|Resize(nearest) ── Q(s, z)
                     =>  the op on the int8 tensor itself

The conditions are onnxruntime's QDQ selectors (core/optimizer/qdq_transformer/selectors_actions/
qdq_selectors.cc): 8-bit tensors; the activation's and Q's scale and zero point per tensor and
constant; Conv: x, y of one type, int8 x only with int8 W, a DequantizeLinear bias int32 (a float
or otherwise quantized constant bias is rounded to int32 in units of sx * sw[m], one rounding);
Add/Mul: a, b, y of one type; Concat: every input and y of one type; pools, Sigmoid, LeakyRelu: x and y
of one type; the drop: same type, the same constant
scalar scale (> 0) and zero point on both sides.  Every float intermediate is read by its one
consumer only; a DequantizeLinear read by other nodes stays for them.

Relu / Clip between Conv and Q are absorbed only when they cannot change the quantized result
(onnxruntime's IsClipMadeRedundantByQ, ReluQuantTransformer, ClipQuantFusion): Relu when Q's
zero point is the type's minimum; Clip when [min, max] covers Q's representable range
[sy * (qmin - zy), sy * (qmax - zy)] (to within float32 epsilon, as onnxruntime) and Q maps min
to qmin and max to qmax (so the Clip is a no-op, not just nearly one).  Anything else keeps the
Conv in float.

A fused node accumulates in integers and requantizes once (float32 multiplier, round half to even),
where the graph rounded a float32 sum: within one step of the output scale (1 LSB) of the graph.
Each fused node is built only when the C backend can run it (capability), else the float graph stays.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ir import Node
from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import c_supported, const, is_op, producer, sole_user
from .common import fuse_each
from .fuse_qdq import F32, QTYPES, FuseQDQMatMul, remove_fused

MS = "com.microsoft"
EPS32 = float(np.finfo(np.float32).eps)


def _qrange(dtype):
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _scalar_const(v):
    c = const(v)
    return None if c is None or c.size != 1 else c.reshape(-1)[0]


def act_dq(v):
    """(node, xq, scale, zero point) of a DequantizeLinear of an 8-bit activation with a constant
    per-tensor float32 scale and zero point, else None.  The DQ may have other readers."""
    n = producer(v, "DequantizeLinear")
    if n is None or get_attr(n, "block_size", 0):
        return None
    x, s, z = n.inputs[0], n.inputs[1], n.input(2)
    if x.dtype not in QTYPES or s.dtype != np.float32 or _scalar_const(s) is None:
        return None
    if z is not None and (_scalar_const(z) is None or z.dtype != x.dtype):
        return None
    return n, x, s, z


def out_q(v):
    """The QuantizeLinear reading float ``v`` (its only reader) with a constant per-tensor positive
    float32 scale and an 8-bit zero point, saturating, else None."""
    q = sole_user(v)
    if not is_op(q, "QuantizeLinear") or q.inputs[0] is not v:
        return None
    s, z = q.inputs[1], q.input(2)
    if z is None or z.dtype not in QTYPES or s.dtype != np.float32 or _scalar_const(z) is None:
        return None
    sv = _scalar_const(s)
    if sv is None or not np.isfinite(sv) or sv <= 0 or int(get_attr(q, "saturate", 1)) != 1:
        return None
    if q.outputs[0].dtype != z.dtype:
        return None
    return q


def _zp_value(graph, z, dtype, hint):
    return z if z is not None else graph.add_const(np.zeros((), dtype), hint=hint)


def _build(graph, op_type, inputs, attrs, out, domain, after, name=""):
    """A node computing ``out`` (a QuantizeLinear output, after node ``after``), named after the
    float node it replaces, or None (and nothing changed) when the C backend would not run it."""
    opset = 1 if domain == MS else graph.opset.get("", 1)
    node = Node(op_type, inputs, [], attrs, name=graph.fresh_name(name or op_type), domain=domain, opset=opset)
    node.outputs = [out]
    if not c_supported(node):
        node.detach_inputs()
        return None
    if domain == MS and MS not in graph.opset:
        graph.opset[MS] = 1
    out.producer = node
    after.outputs = []
    graph.insert(node, after=after)
    return node


def _clip_bounds(act):
    """Clip's constant (min, max) as floats (absent = infinite), or None when not constant."""
    if act.opset and act.opset < 11:
        return float(get_attr(act, "min", -np.inf)), float(get_attr(act, "max", np.inf))
    out = []
    for i, default in ((1, -np.inf), (2, np.inf)):
        v = act.input(i)
        if v is None:
            out.append(default)
            continue
        c = _scalar_const(v)
        if c is None:
            return None
        out.append(float(c))
    return tuple(out)


def _quantize_scalar(x: float, s: float, z: int, dtype) -> int:
    lo, hi = _qrange(dtype)
    return int(np.clip(np.rint(np.float32(x) / np.float32(s)) + z, lo, hi))


def redundant_activation(act, q) -> bool:
    """Whether Relu/Clip ``act`` feeding ``q`` cannot change q's result (see the module doc)."""
    s = float(_scalar_const(q.inputs[1]))
    z = int(_scalar_const(q.inputs[2]))
    dtype = q.inputs[2].dtype
    lo, hi = _qrange(dtype)
    if act.op_type == "Relu":
        return z == lo
    bounds = _clip_bounds(act)
    if bounds is None:
        return False
    mn, mx = bounds
    lower, upper = float(np.float32(s) * np.float32(lo - z)), float(np.float32(s) * np.float32(hi - z))
    if EPS32 < mn - lower or EPS32 < upper - mx:  # onnxruntime's rule
        return False
    return (mn == -np.inf or _quantize_scalar(mn, s, z, dtype) == lo) and \
        (mx == np.inf or _quantize_scalar(mx, s, z, dtype) == hi)


def _epilogue(y):
    """(activation node or None, Q node) after float ``y``, or None."""
    act = sole_user(y)
    if is_op(act, "Relu", "Clip") and act.inputs[0] is y:
        q = out_q(act.outputs[0])
        if q is None or not redundant_activation(act, q):
            return None
        return act, q
    q = out_q(y)
    return None if q is None else (None, q)


@register
class FuseQDQConv(Pass):
    name = "fuse_qdq_conv"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("Conv",), self._fuse)

    def _fuse(self, graph, conv) -> Optional[str]:
        if len(conv.inputs) < 2 or not all(producer(v, "DequantizeLinear") for v in conv.inputs[:2]):
            return None  # not a QDQ Conv (or one whose weights constant folding already made float)
        kept = f"kept {conv.label} in float: "
        da = act_dq(conv.inputs[0])
        dw = producer(conv.inputs[1], "DequantizeLinear")
        if da is None:
            return kept + "x's DequantizeLinear is not an 8-bit per-tensor constant-parameter one"
        if get_attr(dw, "block_size", 0):
            return kept + "W's DequantizeLinear is blocked"
        dqa, xq, sa, za = da
        wq, sw, zw = dw.inputs[0], dw.inputs[1], dw.input(2)
        w = const(wq)
        if w is None or w.dtype not in QTYPES or w.ndim < 3 or const(sw) is None or sw.dtype != np.float32:
            return kept + "W is not DequantizeLinear(int8/uint8 constant)"
        M = w.shape[0]
        swc = const(sw).astype(F32).reshape(-1)
        zwc = np.zeros(swc.shape, w.dtype) if zw is None else const(zw)
        if zwc is None or zwc.dtype != w.dtype:
            return kept + "W's zero point is not a constant"
        zwc = zwc.reshape(-1)
        if swc.size != 1 and (swc.size != M or int(get_attr(dw, "axis", 1)) % w.ndim != 0):
            return kept + "W's scale is neither per tensor nor per output channel (axis 0)"
        if zwc.size not in (1, swc.size) or (zwc.size > 1 and not np.all(zwc == zwc[0])):
            return kept + "W's zero points differ between channels (onnxruntime's QLinearConv takes one)"
        if xq.dtype == np.int8 and w.dtype != np.int8:
            return kept + "int8 x with uint8 W (onnxruntime's selector takes int8 x with int8 W only)"
        if conv.outputs[0].shape is None:
            return kept + "output shape unknown"
        ep = _epilogue(conv.outputs[0])
        if ep is None:
            act = sole_user(conv.outputs[0])
            if is_op(act, "Relu", "Clip") and out_q(act.outputs[0]) is not None:
                return kept + f"its {act.op_type} would change the quantized result (Q's range is not inside it)"
            return kept + "not followed by one per-tensor QuantizeLinear"
        act, q = ep
        zy = q.inputs[2]
        if zy.dtype != xq.dtype:
            return kept + f"x is {xq.dtype}, y {zy.dtype} (onnxruntime: the same type)"
        bias_v = conv.input(2)
        c = None
        if bias_v is not None:
            bdq = producer(bias_v, "DequantizeLinear")
            if bdq is not None and const(bdq.inputs[0]) is not None and bdq.inputs[0].dtype != np.int32:
                return kept + f"bias quantized as {bdq.inputs[0].dtype} (onnxruntime takes int32)"
            c = FuseQDQMatMul._int32_bias(bias_v, F32(_scalar_const(sa)), swc, 1.0, 1.0, M)
            if c is None:
                return kept + "bias is not a constant that fits int32 in units of x_scale * w_scale"
        attrs = {k: v for k, v in conv.attrs.items() if k in ("auto_pad", "dilations", "group", "kernel_shape",
                                                               "pads", "strides")}
        ins = [xq, sa, _zp_value(graph, za, xq.dtype, "x_zero_point"), wq,
               graph.add_const(swc.reshape(-1) if swc.size > 1 else swc.reshape(()), hint="w_scale"),
               graph.add_const(zwc.reshape(-1) if swc.size > 1 else zwc[:1].reshape(()), hint="w_zero_point"),
               q.inputs[1], zy]
        if c is not None:
            ins.append(graph.add_const(c, hint="bias_int32"))
        new = _build(graph, "QLinearConv", ins, attrs, q.outputs[0], "", q, conv.name)
        if new is None:
            return kept + "the C backend has no QLinearConv of this shape"
        chain = [conv] + ([act] if act is not None else []) + [q]
        feeders = [dqa, dw]  # removed when nothing else reads them, nearest first
        while bias_v is not None and producer(bias_v, "Identity", "DequantizeLinear") is not None:
            feeders.append(bias_v.producer)
            bias_v = bias_v.producer.inputs[0]
        remove_fused(graph, chain, feeders)
        return f"{conv.label} -> QLinearConv" + (f" (absorbed {act.op_type}: a no-op given Q's range)" if act else "")


@register
class FuseQDQBinary(Pass):
    name = "fuse_qdq_binary"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("Add", "Mul"), self._fuse)

    def _fuse(self, graph, add) -> Optional[str]:
        if len(add.inputs) != 2 or not any(producer(v, "DequantizeLinear") for v in add.inputs):
            return None
        kept = f"kept {add.label} in float: "
        da, db = act_dq(add.inputs[0]), act_dq(add.inputs[1])
        if da is None or db is None or add.inputs[0] is add.inputs[1]:
            return kept + "not two 8-bit per-tensor DequantizeLinear inputs"
        q = out_q(add.outputs[0])
        if q is None:
            return kept + "not followed by one per-tensor QuantizeLinear"
        if not (da[1].dtype == db[1].dtype == q.inputs[2].dtype):
            return kept + "a, b and y not of one type (onnxruntime's selector)"
        ins = [da[1], da[2], _zp_value(graph, da[3], da[1].dtype, "a_zero_point"),
               db[1], db[2], _zp_value(graph, db[3], db[1].dtype, "b_zero_point"), q.inputs[1], q.inputs[2]]
        op = "QLinear" + add.op_type
        if _build(graph, op, ins, {}, q.outputs[0], MS, q, add.name) is None:
            return kept + f"the C backend has no {op} of these shapes"
        remove_fused(graph, [add, q], [da[0], db[0]])
        return f"{add.label} -> {op}"


@register
class FuseQDQConcat(Pass):
    name = "fuse_qdq_concat"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("Concat",), self._fuse)

    def _fuse(self, graph, cat) -> Optional[str]:
        if not any(producer(v, "DequantizeLinear") for v in cat.inputs):
            return None
        kept = f"kept {cat.label} in float: "
        ds = [act_dq(v) for v in cat.inputs]
        if any(d is None for d in ds):
            return kept + "not every input an 8-bit per-tensor DequantizeLinear"
        q = out_q(cat.outputs[0])
        if q is None:
            return kept + "not followed by one per-tensor QuantizeLinear"
        if any(d[1].dtype != q.inputs[2].dtype for d in ds):
            return kept + "inputs and y not of one type (onnxruntime's selector)"
        ins = [q.inputs[1], q.inputs[2]]
        for d in ds:
            ins += [d[1], d[2], _zp_value(graph, d[3], d[1].dtype, "x_zero_point")]
        if _build(graph, "QLinearConcat", ins, {"axis": get_attr(cat, "axis")}, q.outputs[0], MS, q,
                  cat.name) is None:
            return kept + "the C backend has no QLinearConcat of these inputs"
        remove_fused(graph, [cat, q], [d[0] for d in ds])
        return f"{cat.label} -> QLinearConcat"


POOL_ATTRS = ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")


@register
class FuseQDQPool(Pass):
    name = "fuse_qdq_pool"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("GlobalAveragePool", "AveragePool"), self._fuse)

    def _fuse(self, graph, pool) -> Optional[str]:
        if pool.op_type == "AveragePool":
            if any(int(v) != 1 for v in (get_attr(pool, "dilations", None) or [])):
                return f"kept {pool.label} in float: dilations (com.microsoft QLinearAveragePool has none)"
            return _fuse_one_input(graph, pool, "QLinearAveragePool",
                                   {k: v for k, v in pool.attrs.items() if k in POOL_ATTRS})
        return _fuse_one_input(graph, pool, "QLinearGlobalAveragePool", {})


def _fuse_one_input(graph, node, op, attrs) -> Optional[str]:
    """DQ(x) -> node -> Q(y), x and y of one 8-bit type, per-tensor constant parameters (onnxruntime's
    UnarySelector) => com.microsoft ``op``(x, sx, zx, sy, zy) with ``attrs``."""
    if producer(node.inputs[0], "DequantizeLinear") is None:
        return None
    kept = f"kept {node.label} in float: "
    d = act_dq(node.inputs[0])
    if d is None:
        return kept + "x's DequantizeLinear is not an 8-bit per-tensor one"
    dq, xq, sx, zx = d
    q = out_q(node.outputs[0])
    if q is None or q.inputs[2].dtype != xq.dtype:
        return kept + "not followed by one per-tensor QuantizeLinear of x's type"
    ins = [xq, sx, _zp_value(graph, zx, xq.dtype, "x_zero_point"), q.inputs[1], q.inputs[2]]
    if _build(graph, op, ins, attrs, q.outputs[0], MS, q, node.name) is None:
        return kept + f"the C backend has no {op} of this shape"
    remove_fused(graph, [node, q], [dq])
    return f"{node.label} -> {op}"


@register
class FuseQDQUnary(Pass):
    """Sigmoid (EfficientNet's SiLU and squeeze-excitation gates) and LeakyRelu between a DQ and a
    Q: a 256-entry table built at compile time with onnxruntime's logistic (compiler/ops/quant.py),
    as onnxruntime's own QDQ run does, so the int8 region is not cut at every SiLU."""
    name = "fuse_qdq_unary"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, ("Sigmoid", "LeakyRelu"), self._fuse)

    def _fuse(self, graph, node) -> Optional[str]:
        attrs = {"alpha": float(get_attr(node, "alpha", 0.01))} if node.op_type == "LeakyRelu" else {}
        return _fuse_one_input(graph, node, "QLinear" + node.op_type, attrs)


DROP_OPS = ("MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Resize", "Slice", "Gather",
            "DepthToSpace", "SpaceToDepth")


def moves_values(node) -> bool:
    """Resize only selects input values in nearest mode (linear and cubic interpolate; the
    tf_crop_and_resize extrapolation value is a float constant)."""
    if node.op_type != "Resize":
        return True
    return (get_attr(node, "mode", "nearest") == "nearest"
            and get_attr(node, "coordinate_transformation_mode", "half_pixel") != "tf_crop_and_resize")


@register
class DropQDQ(Pass):
    """DQ -> data movement or MaxPool -> Q with equal quantization on both sides: the op runs on
    the 8-bit tensor and both conversions go (exact: these ops only move or select values, and
    Q(DQ(v)) = v when scale and zero point agree)."""
    name = "drop_qdq"
    level = "basic"

    def run(self, graph) -> PassResult:
        return fuse_each(graph, DROP_OPS, self._drop)

    def _drop(self, graph, node) -> Optional[str]:
        if producer(node.inputs[0], "DequantizeLinear") is None:
            return None
        kept = f"kept DequantizeLinear/QuantizeLinear around {node.label}: "
        d = act_dq(node.inputs[0])
        if d is None or len(node.outputs) != 1:  # MaxPool's indices: not an 8-bit result
            return kept + "not an 8-bit per-tensor DequantizeLinear, or MaxPool indices used"
        if not moves_values(node):
            return kept + "a Resize that interpolates (only nearest selects input values)"
        dq, xq, sx, zx = d
        q = out_q(node.outputs[0])
        if q is None:
            return kept + "not followed by one per-tensor QuantizeLinear"
        sy, zy = q.inputs[1], q.inputs[2]
        zxv = 0 if zx is None else int(_scalar_const(zx))
        if zy.dtype != xq.dtype or F32(_scalar_const(sx)) != F32(_scalar_const(sy)) or zxv != int(_scalar_const(zy)):
            return kept + "scale, zero point or type differ on the two sides"
        out = q.outputs[0]
        ins = [xq] + list(node.inputs[1:])
        new = Node(node.op_type, ins, [], dict(node.attrs), name=graph.fresh_name(node.name or node.op_type),
                   domain=node.domain, opset=node.opset)
        new.outputs = [out]
        if not c_supported(new):
            new.detach_inputs()
            return kept + f"the C backend has no {xq.dtype} {node.op_type}"
        out.producer = new
        q.outputs = []
        graph.insert(new, after=q)
        remove_fused(graph, [node, q], [dq])
        return f"{node.label} on {xq.dtype}"
