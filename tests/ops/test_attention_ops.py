"""Attention (opsets 23-25) and RotaryEmbedding against onnxruntime; configurations onnxruntime
rejects (a mask shorter than the total key length, out-of-range position ids, float64 rotary)
against onnx.reference; FlexAttention against onnx.reference. Every model is compiled C-only, so
a refused node fails the test."""
import warnings

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import compile_c, make_model, ort_run

RNG = np.random.default_rng(0)


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def build(op, feed, outputs, opset, **attrs):
    """feed: [(name, array or None)] in input order (None = omitted optional input);
    outputs: output names in order ('' = not requested), all of the first input's dtype."""
    node = helper.make_node(op, [n if a is not None else "" for n, a in feed], outputs, **attrs)
    ins = [(n, a.dtype, list(a.shape)) for n, a in feed if a is not None]
    return make_model([node], ins, [(o, feed[0][1].dtype, None) for o in outputs if o], opset=opset)


def reference_run(model, feed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ReferenceEvaluator(model).run(None, feed)


def check(op, feed, outputs=("y",), opset=23, oracle="ort", rtol=1e-5, atol=1e-6, tmp_path=None, **attrs):
    model = build(op, feed, list(outputs), opset, **attrs)
    d = {n: a for n, a in feed if a is not None}
    ref = ort_run(model, d) if oracle == "ort" else reference_run(model, d)
    out = compile_c(model, tmp_path / "o").run(None, d)
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
    return out, ref


def qkv(B=2, Hq=3, Hkv=3, Sq=4, Skv=6, D=8, Dv=8, three_d=False):
    if three_d:
        return f32(B, Sq, Hq * D), f32(B, Skv, Hkv * D), f32(B, Skv, Hkv * Dv)
    return f32(B, Hq, Sq, D), f32(B, Hkv, Skv, D), f32(B, Hkv, Skv, Dv)


def attn_feed(q, k, v, mask=None, past_k=None, past_v=None, nonpad=None):
    feed = [("Q", q), ("K", k), ("V", v), ("attn_mask", mask), ("past_key", past_k),
            ("past_value", past_v), ("nonpad_kv_seqlen", nonpad)]
    while feed[-1][1] is None:
        feed.pop()
    return feed


# --- Attention against onnxruntime ----------------------------------------------------------
SHAPES = [
    dict(),                                             # MHA, cross lengths
    dict(Hq=6, Hkv=2),                                  # GQA
    dict(Hq=4, Hkv=1, Dv=5),                            # MQA, V head size != Q head size
    dict(B=1, Hq=2, Hkv=2, Sq=1, Skv=9),                # decode step
    dict(B=1, Hq=2, Hkv=1, Sq=7, Skv=7, D=3, Dv=2),     # odd sizes
]


@pytest.mark.parametrize("opset", [23, 24])
@pytest.mark.parametrize("three_d", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("attrs", [dict(), dict(is_causal=1), dict(scale=0.3, softcap=1.5)])
def test_attention_shapes(shape, three_d, opset, attrs, tmp_path):
    q, k, v = qkv(three_d=three_d, **shape)
    if three_d:
        attrs = dict(attrs, q_num_heads=shape.get("Hq", 3), kv_num_heads=shape.get("Hkv", 3))
    check("Attention", attn_feed(q, k, v), opset=opset, tmp_path=tmp_path, **attrs)


@pytest.mark.parametrize("mshape", [(4, 6), (2, 1, 4, 6), (3, 4, 6), (2, 3, 4, 6), (1, 1, 4, 6)])
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_masks(mshape, kind, causal, tmp_path):
    q, k, v = qkv()
    mask = RNG.random(mshape) > 0.3 if kind == "bool" else f32(*mshape)
    check("Attention", attn_feed(q, k, v, mask), is_causal=causal, tmp_path=tmp_path)


@pytest.mark.parametrize("mshape", [(6,), (1, 6), (3, 1, 6), (2, 1, 1, 6)])
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_broadcast_masks(mshape, kind, causal, tmp_path):
    """Masks broadcast along the query axis, which onnxruntime rejects: compared with the reference
    on the same mask materialized to [.., Sq, T] (the reference's causal path needs rank >= 2)."""
    q, k, v = qkv()
    mask = RNG.random(mshape) > 0.3 if kind == "bool" else f32(*mshape)
    full = np.ascontiguousarray(np.broadcast_to(mask, mshape[:-2] + (4, 6)))
    want = reference_run(build("Attention", attn_feed(q, k, v, full), ["y"], 23, is_causal=causal),
                         {"Q": q, "K": k, "V": v, "attn_mask": full})
    model = build("Attention", attn_feed(q, k, v, mask), ["y"], 23, is_causal=causal)
    got = compile_c(model, tmp_path / "o").run(None, {"Q": q, "K": k, "V": v, "attn_mask": mask})
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("three_d", [False, True])
@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("gqa", [False, True])
def test_attention_past_present(three_d, causal, gqa, tmp_path):
    Hq, Hkv, P = (4, 2, 5) if gqa else (3, 3, 5)
    q, k, v = qkv(Hq=Hq, Hkv=Hkv, Sq=3, Skv=3, three_d=three_d, Dv=6)
    pk, pv = f32(2, Hkv, P, 8), f32(2, Hkv, P, 6)
    mask = f32(3, P + 3)
    attrs = dict(q_num_heads=Hq, kv_num_heads=Hkv) if three_d else {}
    check("Attention", attn_feed(q, k, v, mask, pk, pv), outputs=("y", "pk", "pv"), is_causal=causal,
          tmp_path=tmp_path, **attrs)


@pytest.mark.parametrize("mode", [0, 1, 2, 3])
@pytest.mark.parametrize("softcap", [0.0, 2.0])
@pytest.mark.parametrize("with_past", [False, True])
def test_attention_qk_output(mode, softcap, with_past, tmp_path):
    """Mode 0 is the raw product even with softcap (spec and onnxruntime; the reference gives it
    after softcap). Mode 2 against the reference: onnxruntime writes -FLT_MAX, not -inf, for
    causally masked scores."""
    q, k, v = qkv()
    pk, pv = (f32(2, 3, 2, 8), f32(2, 3, 2, 8)) if with_past else (None, None)
    mask = f32(4, 8 if with_past else 6)
    outs = ("y", "pk", "pv", "qk") if with_past else ("y", "", "", "qk")
    check("Attention", attn_feed(q, k, v, mask, pk, pv), outputs=outs, qk_matmul_output_mode=mode,
          softcap=softcap, is_causal=1, oracle="reference" if mode == 2 else "ort", tmp_path=tmp_path)


@pytest.mark.parametrize("prec", [1, 11])
def test_attention_softmax_precision(prec, tmp_path):
    q, k, v = qkv()
    check("Attention", attn_feed(q, k, v, f32(4, 6)), outputs=("y", "", "", "qk"), opset=24,
          softmax_precision=prec, qk_matmul_output_mode=3, tmp_path=tmp_path)


@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("lengths", [[3, 6], [6, 5], [4, 4]])
def test_attention_nonpad(causal, lengths, tmp_path):
    q, k, v = qkv(Hq=4, Hkv=2, Sq=3, Skv=6)
    check("Attention", attn_feed(q, k, v, nonpad=np.array(lengths, np.int64)), opset=24, is_causal=causal,
          tmp_path=tmp_path)


@pytest.mark.parametrize("win", [dict(left_window_size=2), dict(left_window_size=1, right_window_size=2),
                                 dict(right_window_size=0), dict(left_window_size=0, right_window_size=0)])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_window(win, causal, tmp_path):
    if causal and win.get("right_window_size", 0) > 0:
        pytest.skip("the spec asks for is_causal=0 with a positive right window")
    q, k, v = qkv(Sq=5, Skv=7)
    check("Attention", attn_feed(q, k, v, RNG.random((5, 7)) > 0.2), opset=25, is_causal=causal,
          tmp_path=tmp_path, **win)


def test_attention_fully_masked_rows(tmp_path):
    """A row with no allowed key gives zeros (Y and mode-3 probabilities), not NaN."""
    q, k, v = qkv()
    mask = RNG.random((2, 3, 4, 6)) > 0.5
    mask[0, 1, 2, :] = False
    mask[1, :, 0, :] = False
    out, _ = check("Attention", attn_feed(q, k, v, mask), outputs=("y", "", "", "qk"), qk_matmul_output_mode=3,
                   tmp_path=tmp_path)
    assert not np.isnan(out[0]).any() and np.all(out[0][0, 1, 2] == 0) and np.all(out[1][1, :, 0] == 0)


def test_attention_large_parallel(tmp_path):
    """Several query tiles per head and more tasks than scratch slots."""
    q, k, v = qkv(B=2, Hq=8, Hkv=4, Sq=150, Skv=100, D=32, Dv=16)
    pk, pv = f32(2, 4, 40, 32), f32(2, 4, 40, 16)
    check("Attention", attn_feed(q, k, v, RNG.random((2, 1, 150, 140)) > 0.1, pk, pv),
          outputs=("y", "pk", "pv", "qk"), qk_matmul_output_mode=3, is_causal=1, rtol=1e-4, atol=1e-5,
          tmp_path=tmp_path)


# --- Attention against onnx.reference (onnxruntime rejects these) --------------------------------
@pytest.mark.parametrize("kind", ["bool", "float"])
@pytest.mark.parametrize("causal", [0, 1])
def test_attention_short_mask(kind, causal, tmp_path):
    """A mask shorter than past + new keys: the missing keys are masked (False / -inf)."""
    q, k, v = qkv()
    pk, pv = f32(2, 3, 3, 8), f32(2, 3, 3, 8)
    mask = RNG.random((2, 1, 4, 5)) > 0.3 if kind == "bool" else f32(2, 1, 4, 5)
    check("Attention", attn_feed(q, k, v, mask, pk, pv), outputs=("y", "pk", "pv", "qk"), oracle="reference",
          is_causal=causal, qk_matmul_output_mode=3, tmp_path=tmp_path)


def test_attention_nonpad_edges_and_out_of_contract(tmp_path):
    """nonpad_kv_seqlen below q length (leading rows fully masked), zero and the full length match
    the reference; a negative or too large one is refused (as onnxruntime does; onnx.reference
    masks as if it were clamped)."""
    q, k, v = qkv(B=4, Hq=2, Hkv=2, Sq=4, Skv=5)
    nonpad = np.array([2, 0, 1, 5], np.int64)
    out, _ = check("Attention", attn_feed(q, k, v, nonpad=nonpad), opset=24, oracle="reference", is_causal=1,
                   tmp_path=tmp_path)
    assert not np.isnan(out[0]).any()
    model = build("Attention", attn_feed(q, k, v, nonpad=nonpad), ["y"], 24, is_causal=1)
    m = compile_c(model, tmp_path / "bad")
    for bad, pos in (([2, 0, -3, 1], 2), ([2, 0, 1, 1 << 50], 3)):
        with pytest.raises(onnxc.InputError, match=rf"nonpad_kv_seqlen {bad[pos]} out of range \[0, 5\] .*"
                                                   rf"at nonpad_kv_seqlen\[{pos}\]$"):
            m.run(None, {"Q": q, "K": k, "V": v, "nonpad_kv_seqlen": np.array(bad, np.int64)})


def test_attention_special_values(tmp_path):
    """+inf / NaN in the float mask and huge scores propagate like the reference."""
    q, k, v = qkv(B=1, Hq=1, Hkv=1)
    q[0, 0, 3] *= 1e30
    mask = f32(4, 6)
    mask[0, 2] = np.inf
    mask[1, 1] = np.nan
    mask[2, :] = -np.inf
    check("Attention", attn_feed(q, k, v, mask), outputs=("y", "", "", "qk"), qk_matmul_output_mode=3,
          oracle="reference", tmp_path=tmp_path)


@pytest.mark.parametrize("causal", [0, 1])
@pytest.mark.parametrize("window", [{}, dict(left_window_size=1), dict(left_window_size=0, right_window_size=1)])
@pytest.mark.parametrize("nonpad", [False, True])
@pytest.mark.parametrize("mode", [2, 3])
def test_attention_special_mask_values(causal, window, nonpad, mode, tmp_path):
    """A short float mask holding -inf, +inf and NaN, composed with causality, windows and
    padding: the bias sums, the fully-masked-row guard and NaN propagation follow the reference."""
    if causal and window.get("right_window_size", 0) > 0:
        pytest.skip("the spec asks for is_causal=0 with a positive right window")
    q, k, v = qkv(B=2, Hq=2, Hkv=1, Sq=4, Skv=6)
    mask = f32(2, 1, 4, 5)
    pick = RNG.random(mask.shape)
    mask[pick < 0.3] = -np.inf
    mask[(pick > 0.9) & (pick < 0.95)] = np.inf
    mask[pick > 0.97] = np.nan
    mask[0, 0, 1, :] = -np.inf
    lengths = np.array([3, 6], np.int64) if nonpad else None
    check("Attention", attn_feed(q, k, v, mask, nonpad=lengths), outputs=("y", "", "", "qk"), opset=25,
          oracle="reference", is_causal=causal, qk_matmul_output_mode=mode, tmp_path=tmp_path, **window)


# --- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["int_mask", "softmax_fp16", "heads", "mask_shape"])
def test_attention_refused(case, tmp_path):
    q, k, v = qkv()
    attrs, mask = {}, None
    if case == "int_mask":
        mask = np.ones((4, 6), np.int32)
    elif case == "softmax_fp16":
        attrs = dict(softmax_precision=10)
    elif case == "heads":
        q = f32(2, 4, 4, 8)
    elif case == "mask_shape":
        mask = f32(2, 2, 4, 6)
    model = build("Attention", attn_feed(q, k, v, mask), ["y"], 23, **attrs)
    with pytest.raises(NotImplementedError, match="Attention"):
        compile_c(model, tmp_path / "o")


# --- RotaryEmbedding -------------------------------------------------------------------------------
def rope_feed(x, cos, sin, pos=None):
    return [("x", x), ("cos", cos), ("sin", sin)] + ([("pos", pos)] if pos is not None else [])


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 4])
@pytest.mark.parametrize("three_d", [False, True])
def test_rotary_position_ids(interleaved, rotary_dim, three_d, tmp_path):
    half = (rotary_dim or 8) // 2
    x = f32(2, 3, 32) if three_d else f32(2, 4, 3, 8)
    attrs = dict(interleaved=interleaved, rotary_embedding_dim=rotary_dim)
    if three_d:
        attrs["num_heads"] = 4
    pos = RNG.integers(0, 50, (2, 3)).astype(np.int64)
    check("RotaryEmbedding", rope_feed(x, f32(50, half), f32(50, half), pos), tmp_path=tmp_path, **attrs)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 6])
def test_rotary_no_position_ids(interleaved, rotary_dim, tmp_path):
    half = (rotary_dim or 10) // 2
    check("RotaryEmbedding", rope_feed(f32(2, 3, 5, 10), f32(2, 5, half), f32(2, 5, half)), tmp_path=tmp_path,
          interleaved=interleaved, rotary_embedding_dim=rotary_dim)


def test_rotary_large(tmp_path):
    pos = np.tile(np.arange(64, dtype=np.int64), (2, 1))
    check("RotaryEmbedding", rope_feed(f32(2, 64, 512), f32(128, 32), f32(128, 32), pos), num_heads=8,
          tmp_path=tmp_path)


def test_rotary_reference_only(tmp_path):
    """Broadcast caches / position ids and float64, which onnxruntime does not take."""
    check("RotaryEmbedding", rope_feed(f32(2, 2, 3, 8), f32(1, 3, 4), f32(1, 3, 4)), oracle="reference",
          tmp_path=tmp_path)
    x = RNG.standard_normal((2, 2, 3, 8))
    check("RotaryEmbedding", rope_feed(x, RNG.standard_normal((9, 4)), RNG.standard_normal((9, 4)),
                                       np.array([[1, 5, 8]], np.int64)),
          oracle="reference", tmp_path=tmp_path / "d", interleaved=1)


def test_rotary_bad_position_ids(tmp_path):
    """Ids outside the cache are an input error (as in onnxruntime), never a read out of bounds;
    the module stays usable."""
    x = f32(1, 2, 3, 8)
    model = build("RotaryEmbedding", rope_feed(x, f32(10, 2), f32(10, 2), np.zeros((1, 3), np.int64)), ["y"], 23,
                  rotary_embedding_dim=4)
    mod = compile_c(model, tmp_path / "o")
    feed = {"x": x, "cos": f32(10, 2), "sin": f32(10, 2)}
    for bad in ([[-1, 3, 4]], [[0, 3, 10]]):
        with pytest.raises(onnxc.InputError):
            mod.run(None, dict(feed, pos=np.array(bad, np.int64)))
    good = dict(feed, pos=np.array([[0, 3, 9]], np.int64))
    np.testing.assert_allclose(mod.run(None, good)[0], reference_run(model, good)[0], rtol=1e-6, atol=1e-6)


# --- SwiGLU, CausalConvWithState, LinearAttention -----------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [None, 0.5, -1.25])
def test_swiglu(dtype, alpha, tmp_path):
    """onnxruntime has no SwiGLU (its function body needs Swish-24): against the reference."""
    a, b = (RNG.standard_normal((3, 70000 if dtype == np.float32 else 5)).astype(dtype) * 4 for _ in range(2))
    attrs = {} if alpha is None else dict(alpha=alpha)
    check("SwiGLU", [("a", a), ("b", b)], opset=28, oracle="reference", tmp_path=tmp_path, **attrs)


@pytest.mark.parametrize("k", [1, 3, 4])
@pytest.mark.parametrize("L", [1, 2, 9])
@pytest.mark.parametrize("extras", ["", "bias", "past", "bias+past"])
@pytest.mark.parametrize("activation", ["none", "silu"])
def test_causal_conv_with_state(k, L, extras, activation, tmp_path):
    B, C = 2, 5
    feed = [("x", f32(B, C, L)), ("w", f32(C, 1, k)), ("bias", f32(C) if "bias" in extras else None),
            ("past", f32(B, C, k - 1) if "past" in extras else None)]
    while feed[-1][1] is None:
        feed.pop()
    check("CausalConvWithState", feed, outputs=("y", "state"), opset=27, activation=activation, tmp_path=tmp_path)


def test_causal_conv_with_state_float64(tmp_path):
    x, w, p = (RNG.standard_normal(s) for s in ((2, 3, 6), (3, 1, 3), (2, 3, 2)))
    check("CausalConvWithState", [("x", x), ("w", w), ("", None), ("past", p)], outputs=("y", "state"), opset=27,
          oracle="reference", activation="swish", tmp_path=tmp_path)


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
@pytest.mark.parametrize("heads", [(4, 4), (4, 2), (3, 1)])
@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("with_past", [False, True])
def test_linear_attention(rule, heads, T, with_past, tmp_path):
    Hq, Hkv = heads
    B, dk, dv = 2, 4, 6
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    k = f32(B, T, Hkv, dk)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)  # the delta rules expect L2-normalized keys
    decay = -np.abs(f32(B, T, Hkv * dk if T == 5 else Hkv)) if gating else None
    beta = (1 / (1 + np.exp(-f32(B, T, Hkv if Hkv > 1 else 1)))).astype(np.float32) if delta else None
    feed = [("q", f32(B, T, Hq * dk)), ("k", k.reshape(B, T, Hkv * dk)), ("v", f32(B, T, Hkv * dv)),
            ("past", f32(B, Hkv, dk, dv) if with_past else None), ("decay", decay), ("beta", beta)]
    while feed[-1][1] is None:
        feed.pop()
    scale = {} if T == 1 else dict(scale=0.3)
    check("LinearAttention", feed, outputs=("o", "state"), opset=27, q_num_heads=Hq, kv_num_heads=Hkv,
          update_rule=rule, rtol=1e-4, atol=1e-5, tmp_path=tmp_path, **scale)


def test_linear_attention_refused(tmp_path):
    """float64 is refused: the reference runs the recurrence in float32 whatever the input type."""
    feed = [("q", RNG.standard_normal((1, 2, 8))), ("k", RNG.standard_normal((1, 2, 8))),
            ("v", RNG.standard_normal((1, 2, 8)))]
    model = build("LinearAttention", feed, ["o", "state"], 27, q_num_heads=2, kv_num_heads=2, update_rule="linear")
    with pytest.raises(NotImplementedError, match="LinearAttention"):
        compile_c(model, tmp_path / "o")


# --- FlexAttention (ai.onnx.preview) ---------------------------------------------------------------
# It runs as its ONNX function body (frontend/expand.py), score_mod/prob_mod inlined by onnx; the
# reference evaluates the mod graphs on whole tensors. onnxruntime has no FlexAttention.
def _mod(name, nodes, inits=(), elem=None):
    from onnx import TensorProto
    elem = elem or TensorProto.FLOAT
    return helper.make_graph(nodes, name, [helper.make_tensor_value_info("s", elem, ["B", "H", "L", "S"])],
                             [helper.make_tensor_value_info("m", elem, ["B", "H", "L", "S"])], list(inits))


def _causal_mod():
    from onnx import TensorProto
    i64 = TensorProto.INT64
    return _mod("causal", [
        helper.make_node("Shape", ["s"], ["sh"]),
        helper.make_node("Gather", ["sh", "two"], ["l"], axis=0), helper.make_node("Gather", ["sh", "three"], ["n"], axis=0),
        helper.make_node("Range", ["zero", "l", "one"], ["qi"]), helper.make_node("Range", ["zero", "n", "one"], ["ki"]),
        helper.make_node("Unsqueeze", ["qi", "last"], ["qc"]),
        helper.make_node("GreaterOrEqual", ["qc", "ki"], ["keep"]),
        helper.make_node("Where", ["keep", "s", "ninf"], ["m"])],
        [helper.make_tensor(n, i64, [], [v]) for n, v in (("zero", 0), ("one", 1), ("two", 2), ("three", 3))]
        + [helper.make_tensor("last", i64, [1], [-1]), helper.make_tensor("ninf", TensorProto.FLOAT, [], [-np.inf])])


def _softcap_mod(cap):
    from onnx import TensorProto
    return _mod("softcap", [helper.make_node("Div", ["s", "cap"], ["d"]), helper.make_node("Tanh", ["d"], ["t"]),
                            helper.make_node("Mul", ["t", "cap"], ["m"])],
                [helper.make_tensor("cap", TensorProto.FLOAT, [], [cap])])


def flex_model(feed, **attrs):
    """One FlexAttention node on Q, K, V."""
    dt = feed["Q"].dtype
    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["Y"], domain="ai.onnx.preview", **attrs)
    graph = helper.make_graph([node], "flex", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype),
                                                                             list(a.shape)) for n, a in feed.items()],
                              [helper.make_tensor_value_info("Y", helper.np_dtype_to_tensor_dtype(dt), list("bhle"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26),
                                                    helper.make_opsetid("ai.onnx.preview", 1)])
    model.ir_version = 11
    onnx.checker.check_model(model)
    return model


def check_flex(feed, tmp_path, rtol=1e-5, atol=1e-6, **attrs):
    model = flex_model(feed, **attrs)
    got = compile_c(model, tmp_path / "o").run(None, feed)[0]
    want = reference_run(model, feed)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol)
    return got


@pytest.mark.parametrize("Hq,Hkv,L,S,E,Ev", [(2, 2, 4, 4, 8, 8), (4, 2, 3, 7, 8, 5), (6, 1, 1, 9, 4, 16),
                                             (3, 3, 5, 2, 16, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flex_attention_shapes(Hq, Hkv, L, S, E, Ev, dtype, tmp_path):
    """GQA (each K/V head serves a contiguous group of query heads), L != S, Ev != E."""
    feed = {"Q": RNG.standard_normal((2, Hq, L, E)).astype(dtype), "K": RNG.standard_normal((2, Hkv, S, E)).astype(dtype),
            "V": RNG.standard_normal((2, Hkv, S, Ev)).astype(dtype)}
    check_flex(feed, tmp_path, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6 if dtype == np.float32 else 1e-12)
    check_flex(feed, tmp_path / "scaled", rtol=1e-5, atol=1e-6, scale=0.37)


@pytest.mark.parametrize("mods", ["causal", "softcap", "prob", "causal+prob"])
def test_flex_attention_mods(mods, tmp_path):
    from onnx import TensorProto
    feed = {"Q": f32(2, 4, 5, 8) * 3, "K": f32(2, 2, 5, 8) * 3, "V": f32(2, 2, 5, 6)}
    attrs = {}
    if "causal" in mods:
        attrs["score_mod"] = _causal_mod()
    if "softcap" in mods:
        attrs["score_mod"] = _softcap_mod(2.5)
    if "prob" in mods:
        attrs["prob_mod"] = _mod("half", [helper.make_node("Mul", ["s", "h"], ["m"])],
                                 [helper.make_tensor("h", TensorProto.FLOAT, [], [0.5])])
    check_flex(feed, tmp_path, **attrs)


def test_flex_attention_softmax_in_double(tmp_path):
    feed = {"Q": f32(2, 4, 6, 8), "K": f32(2, 2, 6, 8), "V": f32(2, 2, 6, 8)}
    check_flex(feed, tmp_path, softmax_precision=11)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("precision", [None, 1])
def test_flex_attention_narrow(dtype, precision, tmp_path):
    """Narrow inputs: as the reference, the body rounds Q*sqrt(scale), K*sqrt(scale) and the scores
    Q K^T to the input type, computes the softmax and P V in float32 (softmax_precision 1 says so)
    and rounds Y. The scores' float32 sums may be ordered differently from numpy's: a score may
    round to the neighbouring value (|ds| <= 2u|s|, u the unit roundoff), which moves each
    probability by a factor within exp(+-2 max|ds|), so Y by (exp(2 max|ds|) - 1) sum_j p_j |V_j|,
    plus the two final roundings. That bound is checked; on float16 most elements agree exactly.
    On bfloat16 the reference keeps the scores in float32 (numpy's matmul of ml_dtypes bfloat16
    returns float32) where the function body, the op's definition, rounds them to bfloat16 as its
    MatMul's type says (we follow the body): within the same bound."""
    import ml_dtypes
    dt = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(np.float16)
    u = 2.0 ** -8 if dtype == "bfloat16" else 2.0 ** -11
    feed = {"Q": f32(2, 4, 6, 8).astype(dt), "K": f32(2, 2, 6, 8).astype(dt), "V": f32(2, 2, 6, 8).astype(dt)}
    attrs = {} if precision is None else {"softmax_precision": precision}
    model = flex_model(feed, **attrs)
    got = compile_c(model, tmp_path / "o").run(None, feed)[0].astype(np.float64)
    want = reference_run(model, feed)[0].astype(np.float64)
    q, k, v = (feed[n].astype(np.float64) for n in "QKV")
    k, v = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(8)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ds = 2 * u * np.abs(s).max(-1, keepdims=True)
    bound = np.expm1(2 * ds) * (p @ np.abs(v)) + 4 * u * np.abs(want) + 1e-30
    assert np.all(np.abs(got - want) <= bound)
    if dtype == "float16":
        assert np.mean(got == want) > 0.9


def test_flex_attention_mod_reads_an_outer_value(tmp_path):
    """score_mod may read a value of the enclosing graph (here a bias input): onnx inlines the mod
    into the body under its own names, the outer one resolves in the graph. onnx.reference cannot
    run such a mod: against numpy in float64."""
    from onnx import TensorProto
    feed = {"Q": f32(2, 2, 3, 4), "K": f32(2, 1, 5, 4), "V": f32(2, 1, 5, 6), "bias": f32(1, 1, 3, 5)}
    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["Y"], domain="ai.onnx.preview",
                            score_mod=_mod("outer", [helper.make_node("Add", ["s", "bias"], ["m"])]))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
                                            for n, a in feed.items()],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list("bhle"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26), helper.make_opsetid("ai.onnx.preview", 1)])
    model.ir_version = 11
    got = compile_c(model, tmp_path / "o").run(None, feed)[0]
    q, k, v, b = (feed[n].astype(np.float64) for n in ("Q", "K", "V", "bias"))
    k, v = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    s = q @ k.transpose(0, 1, 3, 2) / 2 + b
    p = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(got, (p / p.sum(-1, keepdims=True)) @ v, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case,match", [
    ("rank", "input 0 'Q' has shape \\(2, 4, 8\\), expected rank 4"),
    ("heads", "input 1 'K' has 3 heads \\(dim 1\\), expected a divisor of Q's 4 heads"),
    ("head_size", "input 1 'K' has dim 3 = 6, expected 8 \\(Q's head size\\)"),
    ("kv_len", "input 2 'V' has dim 2 = 3, expected 5 \\(K's sequence length\\)"),
    ("mod_io", "attribute 'score_mod' is a graph of 1 inputs and 2 outputs"),
    ("precision", "attribute 'softmax_precision' is 7, expected one of")])
def test_flex_attention_invalid(case, match, tmp_path):
    """Invalid shapes and attributes are a ModelError naming the node, input and both values."""
    from onnx import TensorProto
    feed = {"Q": f32(2, 4, 5, 8), "K": f32(2, 2, 5, 8), "V": f32(2, 2, 5, 8)}
    attrs = {}
    if case == "rank":
        feed["Q"] = f32(2, 4, 8)
    elif case == "heads":
        feed["K"], feed["V"] = f32(2, 3, 5, 8), f32(2, 3, 5, 8)
    elif case == "head_size":
        feed["K"] = f32(2, 2, 5, 6)
    elif case == "kv_len":
        feed["V"] = f32(2, 2, 3, 8)
    elif case == "mod_io":
        g = _softcap_mod(1.0)
        g.output.append(helper.make_tensor_value_info("d", TensorProto.FLOAT, None))
        attrs["score_mod"] = g
    else:
        attrs["softmax_precision"] = 7
    try:
        model = flex_model(feed, **attrs)
    except onnx.checker.ValidationError:  # onnx's own checks caught it first: so much the better
        pytest.skip("onnx.checker refuses this model")
    with pytest.raises(onnxc.ModelError, match=match):
        onnxc.compile(model, output_dir=tmp_path / "o")


def test_flex_attention_not_expanded_falls_back(tmp_path, monkeypatch):
    """A node whose function body cannot be built stays whole: the fallback runs it, saying why."""
    from onnxc.frontend import expand
    monkeypatch.setattr(expand, "function_body", lambda node: "no body today")
    feed = {"Q": f32(1, 2, 3, 4), "K": f32(1, 2, 3, 4), "V": f32(1, 2, 3, 4)}
    model = flex_model(feed)
    cm = onnxc.compile(model, output_dir=tmp_path / "o")
    assert [n["op"] for n in cm.fallback_nodes] == ["FlexAttention"]
    assert "function body" in cm.fallback_nodes[0]["why"]
    np.testing.assert_allclose(cm.run(None, feed)[0], reference_run(model, feed)[0], rtol=1e-5, atol=1e-6)
