"""Op knowledge for the attention family: how Attention, LinearAttention, SwiGLU and
CausalConvWithState meet narrow types (facts), and a shape rule for Attention that completes
onnx's.

onnx infers present_key/present_value only when past_key/past_value are given, so an output
that is requested (or left as an empty-name placeholder) without a past has no shape, and the
whole node would be refused; with nonpad_kv_seqlen, onnx even rejects the node once the
placeholders carry names. The shapes follow from the spec: Y is [B, Hq, Sq, Dv] (4-D) or
[B, Sq, Hq*Dv] (3-D), present_* is [B, Hkv, P + Skv, *], qk_matmul_output is [B, Hq, Sq, P + Skv].
"""
from __future__ import annotations

from ..errors import ModelError
from .registry import facts, get_attr, shape_rule

# Facts (registry.FACTS): its float32 twin agrees with the official float16 cases (within their
# rtol, about an ulp) but not with the bfloat16 ones, whose reference rounds every inner step
facts("Attention", twin="float16")
# LinearAttention's reference computes in float32 and rounds once: its twin, on either type.
# SwiGLU and CausalConvWithState round inner steps to the input type in the reference (the
# sigmoid, the convolution): the twin is within an ulp or two of it on float16
# (tests/ops/test_half_ops.py), more than a bfloat16 case's rtol allows.
facts("LinearAttention", twin=True)
facts("SwiGLU", "CausalConvWithState", twin="float16")


def _static(v) -> bool:
    return v is not None and v.shape is not None and all(isinstance(d, int) for d in v.shape)


def _bhsd(v, heads):
    """(B, H, S, width) of a 4-D [B, H, S, w] or 3-D [B, S, H*w] tensor, or None."""
    if len(v.shape) == 4:
        return tuple(v.shape)
    if len(v.shape) == 3 and heads and v.shape[2] % heads == 0:
        return v.shape[0], heads, v.shape[1], v.shape[2] // heads
    return None


@shape_rule("Attention")
def _attention_shapes(node):
    from .shapes import _onnx_infer
    q, k, v, past_k = node.inputs[0], node.inputs[1], node.inputs[2], node.input(4)
    try:
        found = list(_onnx_infer(node))
    except ModelError:
        if not all(_static(x) for x in (q, k, v)):
            raise
        found = [(None, None)] * len(node.outputs)
    if not all(_static(x) for x in (q, k, v)) or (past_k is not None and not _static(past_k)):
        return found
    qv = _bhsd(q, get_attr(node, "q_num_heads", None))
    kv = _bhsd(k, get_attr(node, "kv_num_heads", None))
    vv = _bhsd(v, get_attr(node, "kv_num_heads", None))
    if qv is None or kv is None or vv is None:
        return found
    P = past_k.shape[2] if past_k is not None and len(past_k.shape) == 4 else 0
    T = P + kv[2]
    y = (qv[0], qv[2], qv[1] * vv[3]) if len(q.shape) == 3 else (qv[0], qv[1], qv[2], vv[3])
    spec = {0: (q.dtype, y), 1: (k.dtype, (kv[0], kv[1], T, kv[3])), 2: (v.dtype, (vv[0], vv[1], T, vv[3])),
            3: (q.dtype, (qv[0], qv[1], qv[2], T))}
    for i, (dtype, shape) in spec.items():
        if i < len(found) and (found[i][1] is None or found[i][0] is None):
            found[i] = (found[i][0] or dtype, shape)
    return found
