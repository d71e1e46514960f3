"""Legalize narrow types (float16, bfloat16, float8, float4, int4, ...) for the C provider.

C carries these types as raw bits and computes only in float32/float64/integers.  Casts and
kernels that only move bits run on them directly (ops/narrow.py); every other node
whose *float32 twin* the C provider supports is rewritten

    y16 = Op(x16, w16)   ->   y16 = Cast(Op(Cast(x16 -> float32), w32) -> float16)

Inputs widen exactly (float32 holds every float16/bfloat16/float8/float4 value, int8/uint8 every
int4/int2 value; constant inputs are widened at compile time); float16/bfloat16 outputs are
rounded once, to nearest even, by the Cast.  For +, -, *, /, sqrt that single rounding of the
float32 result is the correctly rounded float16/bfloat16 result (float32 has more than 2p+2
bits); elsewhere it is what onnxruntime's CPU kernels do (compute in float, round the result).

A value read by several rewritten nodes is widened once.  Afterwards ``Cast(Cast(x: T ->
float32) -> T)`` round trips are dropped (exact for the narrow floats but E8M0).  The reverse pair
``Cast(Cast(y32 -> float16) -> float32)`` is a rounding and is kept.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import dtype_name, onnx_from_np_dtype
from ..ir import Node
from ..ops.narrow import MAX_ROUNDED_SUM, needs_twin, twin_plan, twin_reason
from .capability import current

_ONNX = ("", "ai.onnx")


def legalize_half(graph) -> int:
    """Rewrite the graph's narrow-typed compute nodes through float32; returns the rewrites."""
    widened = {}  # (id(narrow value), wide dtype) -> wide value
    rewrites = sum(_split_softmax(graph, node) for node in list(graph.nodes))
    for node in list(graph.nodes):
        if not needs_twin(node):
            continue
        plan = twin_plan(node)
        if isinstance(plan, str) or twin_reason(node, plan, current().claim) is not None:
            continue  # the backend refuses it, saying why
        _rewrite(graph, node, plan, widened)
        rewrites += 1
    return rewrites + _drop_round_trips(graph)


def _split_softmax(graph, node) -> int:
    """Softmax on float16/bfloat16 as the steps the onnx reference rounds after: t = x - max(x),
    e = exp(t), s = sum(e), e / s, each rounded to the narrow type.  The official outputs are
    made that way; one float32 softmax rounded once is more accurate (onnxruntime's result) but
    differs from them by up to 2 ulps, beyond the cases' rtol of 1e-3.  numpy sums float16 along
    the last axis in float (ReduceSum matches it within an ulp) and along other axes one rounded
    addition at a time, as ml_dtypes sums bfloat16 along any axis: those sums are Add chains."""
    x = node.inputs[0] if node.inputs else None
    if (node.op_type != "Softmax" or node.domain not in _ONNX or node.opset < 13 or x is None
            or dtype_name(x.dtype) not in ("float16", "bfloat16") or not x.is_static or not x.shape):
        return 0
    axis = int(node.attrs.get("axis", -1)) % len(x.shape)
    n = x.shape[axis]
    chain = dtype_name(x.dtype) == "bfloat16" or axis != len(x.shape) - 1
    if chain and n > MAX_ROUNDED_SUM:
        return 0  # refused: a longer chain of rounded additions is not worth the nodes
    kept = tuple(1 if i == axis else d for i, d in enumerate(x.shape))
    axes = graph.add_const(np.array([axis], np.int64), hint=f"{node.name}_axes")

    def step(op, inputs, shape, out=None, nout=1, **attrs):
        outs = [out] if out is not None else [graph.new_value(f"{node.name}_{op.lower()}", x.dtype, shape)
                                             for _ in range(nout)]
        graph.insert(Node(op, inputs, outs, attrs, name=graph.fresh_name(f"{node.name}_{op.lower()}"),
                          opset=node.opset), before=node)
        return outs[0] if nout == 1 else outs

    if node.opset >= 18:
        m = step("ReduceMax", [x, axes], kept, keepdims=1)
    else:
        m = step("ReduceMax", [x], kept, axes=[axis], keepdims=1)
    e = step("Exp", [step("Sub", [x, m], x.shape)], x.shape)
    if not chain:
        total = step("ReduceSum", [e, axes], kept, keepdims=1)
    elif n == 1:
        total = e
    else:
        sizes = graph.add_const(np.ones(n, np.int64), hint=f"{node.name}_split")
        parts = step("Split", [e, sizes], kept, nout=n, axis=axis)
        total = parts[0]
        for part in parts[1:]:
            total = step("Add", [total, part], kept)
    step("Div", [e, total], x.shape, out=node.outputs[0])
    graph.remove_node(node)
    return 1


def _cast(graph, x, dtype, name, before):
    out = graph.new_value(f"{x.name}_{dtype_name(dtype)}", dtype, x.shape)
    node = Node("Cast", [x], [out], {"to": onnx_from_np_dtype(dtype)}, name=graph.fresh_name(name),
                opset=graph.opset.get("", 18))
    graph.insert(node, before=before)
    return node


def _widen(graph, v, dtype, before, widened):
    key = (id(v), np.dtype(dtype))
    if key not in widened:
        if v.is_const:
            widened[key] = graph.add_const(v.const.astype(dtype), hint=f"{v.name}_{dtype_name(dtype)}")
        else:
            widened[key] = _cast(graph, v, dtype, f"{v.name}_widen", before).outputs[0]
    return widened[key]


def _rewrite(graph, node, plan, widened) -> None:
    in_types, out_types = plan
    ins = [v if v is None or t is None else _widen(graph, v, t, node, widened)
           for v, t in zip(node.inputs, in_types)]
    outs, narrowed = [], []
    for v, t in zip(node.outputs, out_types):
        if t is None:
            outs.append(v)
        else:
            w = graph.new_value(f"{v.name}_{dtype_name(t)}", t, v.shape)
            outs.append(w)
            narrowed.append((w, v))
    twin = Node(node.op_type, ins, outs, dict(node.attrs), name=node.name, domain=node.domain, opset=node.opset)
    graph.insert(twin, before=node)
    for w, v in narrowed:  # the Cast now defines the original value: its users and name stay
        back = Node("Cast", [w], [v], {"to": onnx_from_np_dtype(v.dtype)}, name=graph.fresh_name(f"{node.name}_round"),
                    opset=graph.opset.get("", 18))
        graph.insert(back, before=node)
    graph.remove_node(node)


def _drop_round_trips(graph) -> int:
    """Cast(Cast(x: narrow float -> float32/float64) -> same type) is x."""
    dropped = 0
    for node in list(graph.nodes):
        if node.op_type != "Cast" or node.domain not in _ONNX or graph.is_output(node.outputs[0]):
            continue
        mid = node.inputs[0]
        first = mid.producer
        if first is None or first.op_type != "Cast" or first.domain not in _ONNX:
            continue
        x = first.inputs[0]
        if (dtype_name(x.dtype) not in _EXACT_IN_FLOAT32 or x.dtype != node.outputs[0].dtype
                or mid.dtype not in _WIDE_FLOATS):
            continue
        graph.replace_all_uses(node.outputs[0], x)
        graph.remove_node(node)
        if not mid.uses and not graph.is_output(mid):
            graph.remove_node(first)
        dropped += 1
    return dropped


_WIDE_FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}
# float8_e8m0fnu is not here: its least value 2^-127 comes back as 2^-126 (round_mode "up")
_EXACT_IN_FLOAT32 = {"float16", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                     "float4_e2m1fn"}
