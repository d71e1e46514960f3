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
from .registry import check, facts, get_attr, shape_rule
from .validate import inp, known, shape_of, shape_str

# Facts (registry.FACTS): its float32 twin agrees with the official float16 cases (within their
# rtol, about an ulp) but not with the bfloat16 ones, whose reference rounds every inner step:
# there it runs as its function body, each step rounded (frontend/expand.py)
facts("Attention", twin="float16", expand="bfloat16")
# FlexAttention has no kernel: its function body (score_mod/prob_mod inlined by onnx) runs
facts("FlexAttention", domain="ai.onnx.preview", expand=True)
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


# FlexAttention's softmax_precision: the float types its body may compute the softmax in
_SOFTMAX_PRECISIONS = {1: "float", 10: "float16", 11: "double", 16: "bfloat16"}


@check("FlexAttention", domain="ai.onnx.preview")
def _flex_attention_rule(node):
    """Q (B, Hq, L, E), K (B, Hkv, S, E), V (B, Hkv, S, Ev), Hq a multiple of Hkv; each modifier
    subgraph maps one tensor to one."""
    from ..ir import Graph
    shapes = [shape_of(node, i) for i in range(3)]
    for i, s in enumerate(shapes):
        if s is not None and len(s) != 4:
            yield f"{inp(node, i)} has shape {shape_str(s)}, expected rank 4 (batch, heads, sequence, head size)"
    if all(s is not None and len(s) == 4 for s in shapes):
        (b, hq, _, e), (bk, hkv, s, ek), (bv, hv, sv, _) = shapes
        for i, dim, got, want, what in ((1, 0, bk, b, "Q's batch size"), (2, 0, bv, b, "Q's batch size"),
                                        (1, 3, ek, e, "Q's head size"), (2, 1, hv, hkv, "K's head count"),
                                        (2, 2, sv, s, "K's sequence length")):
            if known(got) and known(want) and got != want:
                yield f"{inp(node, i)} has dim {dim} = {got}, expected {want} ({what})"
        if known(hq) and known(hkv) and (hkv <= 0 or hq % hkv):
            yield (f"{inp(node, 1)} has {hkv} heads (dim 1), expected a divisor of Q's {hq} heads "
                   "(each K/V head serves a group of query heads)")
    for key in ("score_mod", "prob_mod"):
        g = node.attrs.get(key)
        if isinstance(g, Graph) and (len(g.inputs) != 1 or len(g.outputs) != 1):
            yield (f"attribute '{key}' is a graph of {len(g.inputs)} inputs and {len(g.outputs)} outputs, "
                   "expected 1 and 1 (the scores or probabilities, modified)")
    sp = node.attrs.get("softmax_precision")
    if sp is not None and int(sp) not in _SOFTMAX_PRECISIONS:
        yield (f"attribute 'softmax_precision' is {sp}, expected one of "
               + ", ".join(f"{k} ({v})" for k, v in sorted(_SOFTMAX_PRECISIONS.items())))
