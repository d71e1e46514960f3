"""onnxruntime's fused com.microsoft transformer ops (frontend/contrib.py): each compiles to C with
fallback=False and matches onnxruntime running the same node; what the reading does not cover
stays as written and is named."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxc
from onnxc.errors import ModelError, UnsupportedError
from helpers import ort_run, tensor_info

MS = "com.microsoft"
rng = np.random.default_rng(7)


def ms_model(nodes, inputs, outputs, inits=None):
    g = helper.make_graph(nodes, "contrib", [tensor_info(*i) for i in inputs], [tensor_info(*o) for o in outputs],
                          initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    return m


def run_both(model, feed, tmp_path):
    ref = ort_run(model, feed)
    m = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False)  # fails if a node is left
    return ref, m.run(None, feed)


def f32(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("op,with_bias", [("Gelu", False), ("BiasGelu", True), ("FastGelu", False),
                                          ("FastGelu", True)])
def test_gelu_family(op, with_bias, tmp_path):
    x, b = f32(2, 5, 24, scale=3), f32(24)
    ins = ["x", "b"] if with_bias else ["x"]
    model = ms_model([helper.make_node(op, ins, ["y"], domain=MS)], [("x", np.float32, [2, 5, 24])],
                     [("y", np.float32, [2, 5, 24])], {"b": b} if with_bias else None)
    ref, got = run_both(model, {"x": x}, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("n_in,sum_out,eps", [(3, False, None), (4, True, None), (5, True, 1e-5), (5, False, 1e-3)])
def test_skip_layer_normalization(n_in, sum_out, eps, tmp_path):
    H = 40
    x, s = f32(2, 7, H, scale=2), f32(2, 7, H)
    inits = {"gamma": f32(H), "beta": f32(H), "bias": f32(H)}
    ins = ["x", "s", "gamma", "beta", "bias"][:n_in]
    outs = ["y", "", "", "sum"] if sum_out else ["y"]
    attrs = {} if eps is None else {"epsilon": eps}
    node = helper.make_node("SkipLayerNormalization", ins, outs, domain=MS, **attrs)
    o = [("y", np.float32, [2, 7, H])] + ([("sum", np.float32, [2, 7, H])] if sum_out else [])
    model = ms_model([node], [("x", np.float32, [2, 7, H]), ("s", np.float32, [2, 7, H])], o,
                     {k: inits[k] for k in ins[2:]})
    ref, got = run_both(model, {"x": x, "s": s}, tmp_path)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_skip_layer_norm_default_epsilon_is_onnxruntimes(tmp_path):
    """onnxruntime's default epsilon is 1e-12, onnx LayerNormalization's 1e-5: a tiny-variance row
    tells them apart (mean 0, so no cancellation blurs the variance)."""
    H = 16
    x = (rng.standard_normal((1, 2, H)) * 1e-4).astype(np.float32)
    x -= x.mean(-1, keepdims=True)
    node = helper.make_node("SkipLayerNormalization", ["x", "s", "gamma"], ["y"], domain=MS)
    model = ms_model([node], [("x", np.float32, [1, 2, H]), ("s", np.float32, [1, 2, H])],
                     [("y", np.float32, [1, 2, H])], {"gamma": np.ones(H, np.float32)})
    feed = {"x": x, "s": np.zeros_like(x)}
    ref, got = run_both(model, feed, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)  # int8 vs float here: ~5e-2
    assert np.abs(ref[0]).max() > 1.0  # with eps 1e-5 the output would be ~0.03


def attention_model(quantized, B, S, E, H, mask=None, unidirectional=0, per_column=False, scale=None,
                    u8_weight=False, e_in=None):
    """e_in: the input's hidden size when it differs from E = H * head size (a pruned model)."""
    D = E // H
    e_in = E if e_in is None else e_in
    w = f32(e_in, 3 * E, scale=0.3)
    bias = f32(3 * E, scale=0.1)
    inits, inputs = {"bias": bias}, []
    attrs = {"num_heads": H, "unidirectional": unidirectional}
    if scale is not None:
        attrs["scale"] = scale
    if quantized:
        ws = (np.abs(w).max(0) / 127).astype(np.float32) if per_column else np.float32(np.abs(w).max() / 127)
        if u8_weight:  # zero points near the middle, one per column when the scales are
            wz = (128 + rng.integers(-3, 4, np.shape(ws))).astype(np.uint8)
            wq = np.clip(np.round(w / ws) + wz, 0, 255).astype(np.uint8)
        else:
            wq = np.clip(np.round(w / ws), -127, 127).astype(np.int8)
            wz = np.zeros(ws.shape, np.int8)
        inits.update(w=wq, ws=np.asarray(ws, np.float32), xs=np.float32(0.02), xz=np.uint8(131), wz=wz)
        inputs.append(("x", np.uint8, [B, S, e_in]))
        ins = ["x", "w", "bias", "xs", "ws", "mask" if mask is not None else "", "xz", "wz"]
        op = "QAttention"
    else:
        inits["w"] = w
        inputs.append(("x", np.float32, [B, S, e_in]))
        ins = ["x", "w", "bias"] + (["mask"] if mask is not None else [])
        op = "Attention"
    if mask is not None:
        inputs.append(("mask", np.int32, list(mask.shape)))
    node = helper.make_node(op, ins, ["y"], domain=MS, **attrs)
    return ms_model([node], inputs, [("y", np.float32, [B, S, H * D])], inits)


def masks(B, S):
    lens = np.array([S, S - 3][:B], np.int32)
    raw2 = (np.arange(S)[None, :] < lens[:, None]).astype(np.int32)
    raw3 = np.tril(np.ones((S, S), np.int32))[None].repeat(B, 0)
    return {"none": None, "lengths": lens, "raw2d": raw2, "raw3d": raw3}


@pytest.mark.parametrize("quantized", [False, True], ids=["Attention", "QAttention"])
@pytest.mark.parametrize("mask_kind", ["none", "lengths", "raw2d", "raw3d"])
@pytest.mark.parametrize("unidirectional", [0, 1])
def test_attention(quantized, mask_kind, unidirectional, tmp_path):
    B, S, E, H = 2, 9, 32, 4
    mask = masks(B, S)[mask_kind]
    model = attention_model(quantized, B, S, E, H, mask, unidirectional)
    feed = {"x": rng.integers(0, 256, (B, S, E)).astype(np.uint8) if quantized else f32(B, S, E)}
    if mask is not None:
        feed["mask"] = mask
    ref, got = run_both(model, feed, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("per_column,u8_weight,scale", [(True, False, None), (False, True, None),
                                                       (True, True, 0.3)])
def test_qattention_weight_forms(per_column, u8_weight, scale, tmp_path):
    B, S, E, H = 1, 6, 24, 2
    model = attention_model(True, B, S, E, H, masks(B, S)["raw2d"], per_column=per_column, scale=scale,
                            u8_weight=u8_weight)
    feed = {"x": rng.integers(0, 256, (B, S, E)).astype(np.uint8), "mask": masks(B, S)["raw2d"]}
    ref, got = run_both(model, feed, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", ["generic", "native"])
def test_qattention_projection_is_the_int8_gemm(target, tmp_path):
    """QAttention's projection runs on the int8 GEMM (onnxc_qgemm, weights packed at compile time)
    as onnxruntime's does: int32 sums of (x - x_zp)(w - w_zp[n]), one scale x_scale * w_scale[n],
    + bias; then the attention on the projected QKV. Odd sizes (tile edges of every kernel: 15
    rows, 21 inputs, 45 columns), a pruned input hidden size, per-column scales and zero points."""
    B, S, E, H, e_in = 3, 5, 15, 3, 21
    model = attention_model(True, B, S, E, H, per_column=True, u8_weight=True, e_in=e_in)
    feed = {"x": rng.integers(0, 256, (B, S, e_in)).astype(np.uint8)}
    ref = ort_run(model, feed)
    m = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False, target=target)
    src = (m.build_dir / "model.c").read_text()
    assert "onnxc_qgemm(" in src and "onnxc_mha_attend(" in src and "onnxc_sgemm" not in src
    got = m.run(None, feed)[0]
    # the integer sums are exact; what is left is float rounding of the scale and the attention
    assert np.abs(got - ref[0]).max() <= 2e-6 * np.abs(ref[0]).max()


def test_attention_with_past_is_named_not_guessed(tmp_path):
    """past/present state is not read: the node stays com.microsoft.Attention, and fallback=False
    names it (with the fallback on, onnxruntime runs it)."""
    B, S, E, H = 1, 4, 16, 2
    w, bias = f32(E, 3 * E), f32(3 * E)
    node = helper.make_node("Attention", ["x", "w", "bias", "", "past"], ["y", "present"], domain=MS,
                            num_heads=H, unidirectional=1)
    model = ms_model([node], [("x", np.float32, [B, S, E]), ("past", np.float32, [2, B, H, 3, E // H])],
                     [("y", np.float32, [B, S, E]), ("present", np.float32, [2, B, H, 3 + S, E // H])],
                     {"w": w, "bias": bias})
    with pytest.raises(UnsupportedError, match="Attention"):
        onnxc.compile(model, output_dir=tmp_path / "c", fallback=False)
    feed = {"x": f32(B, S, E), "past": f32(2, B, H, 3, E // H)}
    ref = ort_run(model, feed)
    got = onnxc.compile(model, output_dir=tmp_path / "f").run(None, feed)
    for r, g in zip(ref, got):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_attention_bad_mask_dtype_is_a_model_error(tmp_path):
    B, S, E, H = 1, 4, 16, 2
    node = helper.make_node("Attention", ["x", "w", "bias", "mask"], ["y"], domain=MS, num_heads=H)
    model = ms_model([node], [("x", np.float32, [B, S, E]), ("mask", np.float32, [B, S])],
                     [("y", np.float32, [B, S, E])], {"w": f32(E, 3 * E), "bias": f32(3 * E)})
    with pytest.raises(ModelError, match=r"Attention node .*mask_index 'mask'.*float32.*int32"):
        onnxc.compile(model, output_dir=tmp_path / "c")


def bert_layer(B, S, E, H, F):
    inits = {"w": f32(E, 3 * E, scale=0.3), "bias": f32(3 * E, scale=0.1), "wo": f32(E, E, scale=0.2),
             "bo": f32(E), "g1": 1 + f32(E, scale=0.1), "b1": f32(E, scale=0.1), "w1": f32(E, F, scale=0.2),
             "bf": f32(F), "w2": f32(F, E, scale=0.2), "b2": f32(E), "g2": 1 + f32(E, scale=0.1),
             "beta2": f32(E, scale=0.1)}
    nodes = [helper.make_node("Attention", ["x", "w", "bias", "mask"], ["a"], domain=MS, num_heads=H),
             helper.make_node("MatMul", ["a", "wo"], ["ao"]),
             helper.make_node("SkipLayerNormalization", ["ao", "x", "g1", "b1", "bo"], ["h"], domain=MS),
             helper.make_node("MatMul", ["h", "w1"], ["f1"]),
             helper.make_node("BiasGelu", ["f1", "bf"], ["f2"], domain=MS),
             helper.make_node("MatMul", ["f2", "w2"], ["f3"]),
             helper.make_node("SkipLayerNormalization", ["f3", "h", "g2", "beta2", "b2"], ["y"], domain=MS)]
    return ms_model(nodes, [("x", np.float32, [B, S, E]), ("mask", np.int32, [B, S])],
                    [("y", np.float32, [B, S, E])], inits)


def test_onnxruntime_optimized_bert_runs_in_c(tmp_path):
    """A BERT layer whose SkipLayerNormalization / BiasGelu / Attention are written as onnxruntime's
    optimizer writes them, compiled with fallback=False."""
    B, S = 2, 8
    feed = {"x": f32(B, S, 32), "mask": masks(B, S)["raw2d"]}
    ref, got = run_both(bert_layer(B, S, 32, 4, 64), feed, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)


def test_quantize_dynamic_of_optimized_bert_runs_in_c(tmp_path):
    """onnxruntime's quantize_dynamic turns the fused Attention into QAttention (and the MatMuls into
    DynamicQuantizeLinear + MatMulInteger): all of it compiles to C and matches onnxruntime within
    the model's int8 step (both quantize the activations at run time from the same values)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    B, S = 2, 8
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(bert_layer(B, S, 32, 4, 64), src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    q = onnx.load(dst)
    assert "QAttention" in {n.op_type for n in q.graph.node}
    feed = {"x": f32(B, S, 32), "mask": masks(B, S)["raw2d"]}
    ref, got = run_both(q, feed, tmp_path)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-4, atol=1e-4)  # int8 vs float here: ~5e-2
