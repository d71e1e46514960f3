"""onnxruntime's com.microsoft transformer ops, read as the onnxc ops that compute the same thing.

onnxruntime's transformer optimizer (``onnxruntime.transformers.optimizer``) and its quantizer
write fused com.microsoft nodes; onnxc defines the same computations once, as onnxc-domain ops
(ops/fused_transformer.py) with C kernels. The importer rewrites each such node into them, keeping
its name, so every later layer (inference, validation of the result, passes, C emitters) knows
only one definition:

* Gelu [X], BiasGelu [A, B]          -> onnxc.Gelu [X, bias?] (erf form)
* FastGelu [X, bias?]                -> onnxc.FastGelu
* SkipLayerNormalization [X, skip, gamma, beta?, bias?] -> onnxc.SkipLayerNormalization, its 4th
  output (input + skip + bias) becoming onnxc's 2nd; epsilon defaults to 1e-12 as in onnxruntime
* Attention [X, W, bias?, mask_index?] -> onnxc.MultiHeadAttention with the mask made additive
* QAttention [X8, W8, bias, x_scale, w_scale, mask_index?, x_zp?, w_zp?] -> com.microsoft.
  MatMulIntegerToFloat [X8, W8, x_scale, w_scale, x_zp, w_zp, bias] (onnxruntime's own math:
  (X8 - x_zp)(W8 - w_zp) summed in int32, times x_scale * w_scale, per column when w_scale /
  w_zp are, plus bias; the int8 GEMM of runtime_c/qgemm, W8 packed at compile time), then
  onnxc.MultiHeadAttention [QKV, -, -, mask] on the projected QKV

mask_index as onnxruntime reads it: absent; [B] key lengths (keys at or past the length are
masked); [B, T] or [B, S, T] raw masks (a key whose value is 0 is masked). A masked score gets
``mask_filter_value`` (default -10000) added, as onnxruntime's CPU kernel does, and so does a
future key with ``unidirectional=1``. What this reading does not cover (past/present state,
attention_bias, rotary embeddings, unequal qkv_hidden_sizes, the mean/inv_std_var outputs) leaves
the node as written, with a log line saying why: it runs in the fallback, or fallback=False
names it.
"""
from __future__ import annotations

import logging
import math
import numpy as np

from ..errors import ModelError
from ..ir import Graph, Node, subgraphs

log = logging.getLogger("onnxc")

MS = "com.microsoft"
_ORT_SKIP_LN_EPS = 1e-12  # onnxruntime's default epsilon for SkipLayerNormalization
_ORT_MASK_FILTER = -10000.0  # onnxruntime's default mask_filter_value


class _Keep(Exception):
    """The node is left as written (reason in the message)."""




def _replace(graph: Graph, old: Node, op: str, inputs, outputs, attrs) -> Node:
    """Insert onnxc ``op`` where ``old`` was, taking over ``outputs`` (old's values, so readers and
    graph outputs need no rewiring), and drop ``old``."""
    new = Node(op, inputs, list(outputs), attrs, name=old.name, domain="onnxc", opset=1)
    graph.insert(new, before=old)
    graph.remove_node(old)
    old.outputs = []
    return new


def _gelu(graph, node):
    op = "FastGelu" if node.op_type == "FastGelu" else "Gelu"
    _replace(graph, node, op, list(node.inputs[:2]), node.outputs[:1], {})


def _skip_ln(graph, node):
    if node.output_read(1) or node.output_read(2):
        raise _Keep("its mean / inv_std_var outputs are read (onnxc computes neither)")
    x, skip, gamma = node.inputs[0], node.inputs[1], node.input(2)
    if gamma is None:
        raise _Keep("gamma is missing (onnxruntime requires it)")
    outs = [node.outputs[0]]
    if node.output_read(3):
        outs.append(node.outputs[3])
    eps = float(node.attr("epsilon", _ORT_SKIP_LN_EPS))
    _replace(graph, node, "SkipLayerNormalization", [x, skip, gamma, node.input(3), node.input(4)], outs,
             {"epsilon": eps})


def _additive_mask(graph: Graph, node: Node, mask, S: int, causal: bool, filt: float):
    """mask_index (or None) -> an additive float32 mask broadcasting to [B, H, S, S], or None."""
    def add(op, ins, attrs=None):
        return graph.add_node(op, ins, attrs=attrs, name=f"{node.name}/{op}", before=node).outputs[0]

    def const(a, hint):
        return graph.add_const(np.asarray(a), hint=f"{node.name}/{hint}")
    zero, filt_v = const(np.float32(0), "zero"), const(np.float32(filt), "filter")
    out = None
    if mask is not None:
        if mask.dtype is None or mask.shape is None:
            raise _Keep(f"mask_index '{mask.name}' has no known type and rank")
        if mask.dtype != np.int32:
            raise ModelError(f"com.microsoft.{node.op_type} node '{node.name}': mask_index '{mask.name}' has "
                             f"dtype {mask.dtype}, expected int32")
        r = len(mask.shape)
        if r == 1:
            if mask.shape[0] != node.inputs[0].shape[0]:
                raise _Keep(f"1-D mask_index of {mask.shape[0]} entries (only [batch] key lengths are read)")
            lens = add("Unsqueeze", [mask, const(np.array([1], np.int64), "axis1")])  # [B, 1]
            keep = add("Less", [const(np.arange(S, dtype=np.int32), "positions"), lens])  # [B, S]
            axes = [1, 2]
        elif r in (2, 3):
            keep = add("Greater", [mask, const(np.int32(0), "izero")])
            axes = [1, 2] if r == 2 else [1]
        else:
            raise _Keep(f"{r}-D mask_index (only 1-, 2- and 3-D are read)")
        m = add("Where", [keep, zero, filt_v])
        out = add("Unsqueeze", [m, const(np.array(axes, np.int64), "axes")])
    if causal:
        future = np.triu(np.ones((S, S), bool), 1)
        c = const(np.where(future, np.float32(filt), np.float32(0)).astype(np.float32), "causal")
        out = c if out is None else add("Add", [out, c])
    return out


def _attention(graph, node):
    quantized = node.op_type == "QAttention"
    if node.output_read(1):
        raise _Keep("its present output is read (past/present state is not supported)")
    past_i = 8 if quantized else 4
    extra = [past_i] if quantized else [4, 5, 6]  # past, attention_bias, past_sequence_length
    if any(node.input(i) is not None for i in extra):
        raise _Keep("past state or attention_bias is given")
    if int(node.attr("do_rotary", 0)):
        raise _Keep("do_rotary=1")
    x, w, bias = node.inputs[0], node.inputs[1], node.input(2)
    if x.shape is None or w.shape is None or len(x.shape) != 3 or len(w.shape) != 2 \
            or not all(isinstance(d, int) for d in x.shape + w.shape):
        raise _Keep("input or weights without a static 3-D / 2-D shape")
    H = int(node.attr("num_heads", 0))
    hs = node.attr("qkv_hidden_sizes")
    if hs is not None and len(set(int(h) for h in hs)) != 1:
        raise _Keep(f"qkv_hidden_sizes {list(hs)} are not equal")
    if H <= 0 or w.shape[1] % (3 * H):
        raise ModelError(f"com.microsoft.{node.op_type} node '{node.name}': weights '{w.name}' have "
                         f"{w.shape[1]} columns, expected 3 * num_heads ({H}) * head size")
    D = w.shape[1] // (3 * H)
    S = x.shape[1]
    scale = node.attr("scale")
    scale = float(scale) if scale else 1.0 / math.sqrt(D)
    mask = node.input(5 if quantized else 3)
    filt = float(node.attr("mask_filter_value", _ORT_MASK_FILTER))
    add_mask = _additive_mask(graph, node, mask, S, bool(int(node.attr("unidirectional", 0))), filt)
    if quantized:  # the projection as onnxruntime computes it: int32 products, one scale, + bias
        xs, ws, xz, wz = node.inputs[3], node.inputs[4], node.input(6), node.input(7)
        x = graph.add_node("MatMulIntegerToFloat", [x, w, xs, ws, xz, wz, bias], name=f"{node.name}/qkv",
                           domain=MS, before=node).outputs[0]
        w = bias = None
    _replace(graph, node, "MultiHeadAttention", [x, w, bias, add_mask], node.outputs[:1],
             {"num_heads": H, "scale": scale})


_REWRITES = {"Gelu": _gelu, "BiasGelu": _gelu, "FastGelu": _gelu, "SkipLayerNormalization": _skip_ln,
             "Attention": _attention, "QAttention": _attention}


def rewrite_contrib(graph: Graph) -> int:
    """Rewrite the com.microsoft nodes above (in ``graph`` and its subgraphs); returns how many."""
    count = 0
    for node in list(graph.nodes):
        for sub in subgraphs(node):
            count += rewrite_contrib(sub)
        how = _REWRITES.get(node.op_type) if node.domain == MS else None
        if how is None:
            continue
        try:
            how(graph, node)
            count += 1
        except _Keep as e:
            log.warning("onnxc: com.microsoft.%s node '%s' is left as written: %s", node.op_type, node.name, e)
    return count

