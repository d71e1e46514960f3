"""Transformer fusions (compiler/passes/extended/transformer.py) and the fused ops they build.

Each pattern is built as a small ONNX graph in the forms the PyTorch/TF exporters produce and
checked with check_pass (onnxruntime on the original vs the IR interpreter after the pass on the
same random inputs), plus the cases where it must not fire; compiled C at levels none and
extended against onnxruntime for a 1-layer mini encoder, RMSNorm/FastGelu and a ViT-style
(sequence-first, packed QKV) attention; and, when models/bert_tiny.onnx exists, the real model.
"""
import math
import os
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model, ort_run, rel_err
from onnxc.ops import infer_node
from onnxc.passes.extended.transformer import TransformerFusion

F = np.float32
MODELS_DIR = Path(os.environ.get("ONNXC_MODELS_DIR", Path(__file__).resolve().parents[2] / "models"))


def rnd(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F)


def node(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


def fused(g, op):
    nodes = [n for n in g.nodes if n.domain == "onnxc" and n.op_type == op]
    for n in nodes:  # the shape rule agrees with the shapes the rewrite kept
        assert [(np.dtype(d), tuple(s)) for d, s in infer_node(n)] == [(o.dtype, o.shape) for o in n.outputs]
    return nodes


def run(nodes, feed, outputs, inits=None, opset=18, fires=True, **kw):
    model = make_model(nodes, [(k, v.dtype, list(v.shape)) for k, v in feed.items()],
                       [(o, F, None) for o in outputs], inits, opset=opset)
    g, res = check_pass(model, TransformerFusion(), feed, fires=fires, **kw)
    return g, res


# --- Gelu ----------------------------------------------------------------------------------------
def gelu_erf_nodes(form, x="x", y="y"):
    """x -> y as exporters write 0.5 x (1 + erf(x / sqrt 2))."""
    consts = {"c_sqrt2": np.array(1.4142135, F), "c_isqrt2": np.array(0.70710677, F),
              "c_one": np.array(1.0, F), "c_half": np.array(0.5, F)}
    if form == "torch":  # Div, Erf, Add, Mul x, Mul 0.5
        ns = [node("Div", [x, "c_sqrt2"], ["u"]), node("Erf", ["u"], ["e"]), node("Add", ["e", "c_one"], ["a"]),
              node("Mul", [x, "a"], ["m"]), node("Mul", ["m", "c_half"], [y])]
    elif form == "tf":  # 0.5 x first, Mul by 1/sqrt 2, 1 + erf on the left
        ns = [node("Mul", [x, "c_half"], ["h"]), node("Mul", ["c_isqrt2", x], ["u"]), node("Erf", ["u"], ["e"]),
              node("Add", ["c_one", "e"], ["a"]), node("Mul", ["h", "a"], [y])]
    else:  # x * ((1 + erf) * 0.5)
        ns = [node("Div", [x, "c_sqrt2"], ["u"]), node("Erf", ["u"], ["e"]), node("Add", ["e", "c_one"], ["a"]),
              node("Mul", ["a", "c_half"], ["m"]), node("Mul", [x, "m"], [y])]
    return ns, consts


@pytest.mark.parametrize("form", ["torch", "tf", "inner_half"])
def test_gelu_erf_forms(form):
    ns, c = gelu_erf_nodes(form)
    g, res = run(ns, {"x": rnd(2, 3, 16, scale=2)}, ["y"], c)
    assert len(fused(g, "Gelu")) == 1 and res.rewrites == 1
    assert [n.op_type for n in g.nodes] == ["Gelu"]


def test_bias_gelu():
    ns, c = gelu_erf_nodes("torch", x="xb")
    ns = [node("MatMul", ["x", "w"], ["mm"]), node("Add", ["b", "mm"], ["xb"])] + ns
    c.update(w=rnd(8, 16, seed=1), b=rnd(16, seed=2))
    g, _ = run(ns, {"x": rnd(2, 5, 8)}, ["y"], c)
    (gl,) = fused(g, "Gelu")
    assert gl.input(1) is not None and gl.input(1).shape == (16,)
    assert [n.op_type for n in g.nodes] == ["MatMul", "Gelu"]


def fast_gelu_nodes(cube="pow", dtype=F):
    """x -> y as 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    c = {"c3": np.array(3.0, dtype), "k": np.array(0.044715, dtype), "s": np.array(math.sqrt(2 / math.pi), dtype),
         "one": np.array(1.0, dtype), "half": np.array(0.5, dtype)}
    ns = ([node("Pow", ["x", "c3"], ["x3"])] if cube == "pow" else
          [node("Mul", ["x", "x"], ["x2"]), node("Mul", ["x2", "x"], ["x3"])])
    ns += [node("Mul", ["x3", "k"], ["kx3"]), node("Add", ["x", "kx3"], ["in"]), node("Mul", ["s", "in"], ["t"]),
           node("Tanh", ["t"], ["th"]), node("Add", ["th", "one"], ["a"]), node("Mul", ["x", "half"], ["h"]),
           node("Mul", ["h", "a"], ["y"])]
    return ns, c


@pytest.mark.parametrize("cube", ["pow", "mul"])
def test_fast_gelu(cube):
    ns, c = fast_gelu_nodes(cube)
    g, _ = run(ns, {"x": rnd(3, 16, scale=2)}, ["y"], c)
    assert len(fused(g, "FastGelu")) == 1 and len(g.nodes) == 1


@pytest.mark.parametrize("approx,op", [("none", "Gelu"), ("tanh", "FastGelu")])
def test_standard_gelu_op(approx, op):
    ns = [node("Add", ["x", "b"], ["xb"]), node("Gelu", ["xb"], ["y"], approximate=approx)]
    g, _ = run(ns, {"x": rnd(4, 12, scale=2)}, ["y"], {"b": rnd(12, seed=3)}, opset=20)
    (n,) = fused(g, op)
    assert n.input(1) is not None and len(g.nodes) == 1


def test_gelu_does_not_fire():
    ns, c = gelu_erf_nodes("torch")
    c["c_sqrt2"] = np.array(2.0, F)  # constant off by a lot: not a Gelu
    run(ns, {"x": rnd(2, 16)}, ["y"], c, fires=False)
    ns, c = gelu_erf_nodes("torch")
    run(ns, {"x": rnd(2, 16)}, ["y", "e"], c, fires=False)  # Erf output also a graph output
    ns, c = gelu_erf_nodes("torch")
    c["c_half"] = np.array(0.25, F)
    run(ns, {"x": rnd(2, 16)}, ["y"], c, fires=False)
    ns, c = fast_gelu_nodes(dtype=np.float64)  # float64: the fused kernels are float32 only
    model = make_model(ns, [("x", np.float64, [2, 16])], [("y", np.float64, None)], c)
    check_pass(model, TransformerFusion(), {"x": rnd(2, 16).astype(np.float64)}, fires=False)


# --- LayerNorm / RMSNorm -----------------------------------------------------------------------------
def ln_nodes(opset=18, square="pow", div="div", axes1=-1, axes2=-1, eps_input=False, affine=True, x="x", y="y",
             p="", n=16):
    """x -> y as the decomposed LayerNorm over the last dim; intermediates and constants are
    named with the prefix p."""
    def rmean(i, o, ax):
        if opset >= 18:
            return node("ReduceMean", [i, f"{o}_ax"], [o]), {f"{o}_ax": np.array([ax], np.int64)}
        return node("ReduceMean", [i], [o], axes=[ax]), {}
    c = {p + "two": np.array(2.0, F), p + "gamma": rnd(n, seed=5), p + "beta": rnd(n, seed=6)}
    if not eps_input:
        c[p + "eps"] = np.array(1e-5, F)
    n1, c1 = rmean(x, p + "mean", axes1)
    n2, c2 = rmean(p + "sq", p + "var", axes2)
    c.update(c1)
    c.update(c2)
    ns = [n1, node("Sub", [x, p + "mean"], [p + "d"]),
          node("Pow", [p + "d", p + "two"], [p + "sq"]) if square == "pow" else node("Mul", [p + "d", p + "d"], [p + "sq"]),
          n2, node("Add", [p + "var", p + "eps"], [p + "ve"]), node("Sqrt", [p + "ve"], [p + "sd"])]
    if div == "div":
        ns.append(node("Div", [p + "d", p + "sd"], [p + "n"]))
    else:
        ns += [node("Reciprocal", [p + "sd"], [p + "r"]), node("Mul", [p + "d", p + "r"], [p + "n"])]
    if affine:
        ns += [node("Mul", [p + "n", p + "gamma"], [p + "ng"]), node("Add", [p + "beta", p + "ng"], [y])]
    else:
        ns[-1].output[0] = y
    return ns, c


@pytest.mark.parametrize("opset,square,div", [(18, "pow", "div"), (17, "mul", "recip"), (13, "pow", "recip"),
                                              (18, "mul", "div")])
def test_layer_norm_decomposed(opset, square, div):
    ns, c = ln_nodes(opset, square, div)
    g, _ = run(ns, {"x": rnd(2, 3, 16, scale=3) + 5}, ["y"], c, opset=opset)
    (ln,) = fused(g, "LayerNormalization")
    assert len(g.nodes) == 1 and ln.attrs["epsilon"] == pytest.approx(1e-5)
    assert len([i for i in ln.inputs if i is not None]) == 3


def test_layer_norm_without_affine():
    ns, c = ln_nodes(affine=False)
    g, _ = run(ns, {"x": rnd(4, 16)}, ["y"], c)
    (ln,) = fused(g, "LayerNormalization")
    assert len(ln.inputs) == 1


def test_layer_norm_does_not_fire():
    feed = {"x": rnd(2, 4, 16)}
    ns, c = ln_nodes(eps_input=True)  # eps not a constant
    model = make_model(ns, [("x", F, [2, 4, 16]), ("eps", F, [])], [("y", F, None)], c)
    check_pass(model, TransformerFusion(), dict(feed, eps=np.array(1e-5, F)), fires=False)
    ns, c = ln_nodes(axes2=1)  # variance over another axis
    run(ns, feed, ["y"], c, fires=False)
    ns, c = ln_nodes()
    run(ns, feed, ["y", "sd"], c, fires=False)  # an intermediate is also a graph output
    ns, c = ln_nodes()  # an intermediate with a second user
    ns.append(node("Neg", ["var"], ["z"]))
    run(ns, feed, ["y", "z"], c, fires=False)


def rms_nodes(div="recip", eps=1e-6):
    c = {"two": np.array(2.0, F), "eps": np.array(eps, F), "ax": np.array([-1], np.int64), "gamma": rnd(16, seed=7)}
    ns = [node("Pow", ["x", "two"], ["sq"]), node("ReduceMean", ["sq", "ax"], ["ms"]),
          node("Add", ["ms", "eps"], ["mse"]), node("Sqrt", ["mse"], ["rms"])]
    if div == "recip":
        ns += [node("Reciprocal", ["rms"], ["inv"]), node("Mul", ["x", "inv"], ["n"])]
    else:
        ns += [node("Div", ["x", "rms"], ["n"])]
    ns.append(node("Mul", ["gamma", "n"], ["y"]))
    return ns, c


@pytest.mark.parametrize("div", ["recip", "div"])
def test_rms_norm(div):
    ns, c = rms_nodes(div)
    g, _ = run(ns, {"x": rnd(3, 5, 16)}, ["y"], c)
    (n,) = fused(g, "RMSNormalization")
    assert len(g.nodes) == 1 and n.input(1) is not None


def test_rms_norm_does_not_fire():
    ns, c = rms_nodes()
    c["ax"] = np.array([1], np.int64)  # not the last axis
    run(ns, {"x": rnd(3, 5, 16)}, ["y"], c, fires=False)
    ns, c = rms_nodes()
    run(ns, {"x": rnd(3, 5, 16)}, ["y", "ms"], c, fires=False)


# --- SkipLayerNorm -----------------------------------------------------------------------------------
def test_skip_layer_norm_standard_op_with_bias():
    ns = [node("MatMul", ["h", "w"], ["mm"]), node("Add", ["mm", "b"], ["dense"]),
          node("Add", ["dense", "res"], ["s"]),
          node("LayerNormalization", ["s", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    c = {"w": rnd(8, 16, seed=1), "b": rnd(16, seed=2), "gamma": rnd(16, seed=3), "beta": rnd(16, seed=4)}
    g, _ = run(ns, {"h": rnd(2, 3, 8), "res": rnd(2, 3, 16, seed=9)}, ["y"], c)
    (sk,) = fused(g, "SkipLayerNormalization")
    assert sk.input(4) is not None and len(sk.outputs) == 1
    assert [n.op_type for n in g.nodes] == ["MatMul", "SkipLayerNormalization"]


def test_skip_layer_norm_decomposed_with_sum_output():
    ns, c = ln_nodes(x="s")
    ns = [node("Add", ["a", "r"], ["s"])] + ns + [node("Relu", ["s"], ["z"])]  # the sum has another user
    g, _ = run(ns, {"a": rnd(2, 16), "r": rnd(2, 16, seed=1)}, ["y", "z"], c)
    (sk,) = fused(g, "SkipLayerNormalization")
    assert len(sk.outputs) == 2 and sk.outputs[1].users[0].op_type == "Relu"


def test_standard_layer_norm_taken_over_and_broadcast_add_left():
    ns = [node("Add", ["a", "r"], ["s"]), node("LayerNormalization", ["s", "gamma", "beta"], ["y"], epsilon=1e-5)]
    c = {"gamma": rnd(16, seed=3), "beta": rnd(16, seed=4)}
    # r broadcasts: no residual fusion, but the LayerNormalization becomes the onnxc kernel
    g, _ = run(ns, {"a": rnd(2, 3, 16), "r": rnd(3, 16, seed=1)}, ["y"], c)
    assert fused(g, "LayerNormalization") and not fused(g, "SkipLayerNormalization")


# --- attention ---------------------------------------------------------------------------------------
B, S, H, D = 2, 5, 2, 4
E = H * D


def bert_attention(scale_form="split", mask=True, guard=True, k_form="perm0231", x="x", y="ctx", bad_k=False):
    """HuggingFace BertSelfAttention as torch.onnx.export (opset 17) writes it."""
    c = {f"w{t}": rnd(E, E, seed=10 + i, scale=0.5) for i, t in enumerate("qkv")}
    c.update({f"b{t}": rnd(E, seed=20 + i) for i, t in enumerate("qkv")})
    c.update(heads=np.array([B, S, H, D], np.int64), merged=np.array([B, S, E], np.int64),
             kheads=np.array([B, S, D, H] if bad_k else [B, S, H, D], np.int64))
    ns = []
    for t in "qkv":
        ns += [node("MatMul", [x, f"w{t}"], [f"{t}_mm"]), node("Add", [f"b{t}", f"{t}_mm"], [f"{t}_p"]),
               node("Reshape", [f"{t}_p", "kheads" if t == "k" else "heads"], [f"{t}_r"])]
    ns += [node("Transpose", ["q_r"], ["q_t"], perm=[0, 2, 1, 3]), node("Transpose", ["v_r"], ["v_t"], perm=[0, 2, 1, 3])]
    if bad_k:
        ns.append(node("Transpose", ["k_r"], ["k_t"], perm=[0, 3, 2, 1]))  # [B,H,D,S] but heads interleaved
    elif k_form == "perm0231":
        ns.append(node("Transpose", ["k_r"], ["k_t"], perm=[0, 2, 3, 1]))
    else:
        ns += [node("Transpose", ["k_r"], ["k_h"], perm=[0, 2, 1, 3]), node("Transpose", ["k_h"], ["k_t"], perm=[0, 1, 3, 2])]
    if scale_form == "split":
        c["sq"] = np.array(D ** -0.25, F)
        ns += [node("Mul", ["q_t", "sq"], ["q_s"]), node("Mul", ["k_t", "sq"], ["k_s"]),
               node("MatMul", ["q_s", "k_s"], ["scores"])]
    else:
        c["sd"] = np.array(math.sqrt(D), F)
        ns += [node("MatMul", ["q_t", "k_t"], ["qk"]), node("Div", ["qk", "sd"], ["scores"])]
    if mask:
        ns.append(node("Add", ["scores", "mask"], ["masked"]))
    ns.append(node("Softmax", ["masked" if mask else "scores"], ["p"], axis=-1))
    if guard:
        c["zero"] = np.array([0.0], F)
        ns += [node("IsNaN", ["p"], ["pn"]), node("Where", ["pn", "zero", "p"], ["pg"])]
    ns += [node("MatMul", ["pg" if guard else "p", "v_t"], ["o"]), node("Transpose", ["o"], ["o_t"], perm=[0, 2, 1, 3]),
           node("Reshape", ["o_t", "merged"], [y])]
    return ns, c


def attn_feed(mask=True, seed=0):
    feed = {"x": rnd(B, S, E, seed=seed)}
    if mask:
        m = np.zeros((B, 1, 1, S), F)
        m[1, ..., 3:] = -np.inf  # padded keys of the second sequence
        feed["mask"] = m
    return feed


@pytest.mark.parametrize("scale_form,mask,guard,k_form", [("split", True, True, "perm0231"),
                                                          ("div", True, False, "two_transposes"),
                                                          ("div", False, False, "perm0231")])
def test_bert_attention(scale_form, mask, guard, k_form):
    ns, c = bert_attention(scale_form, mask, guard, k_form)
    g, _ = run(ns, attn_feed(mask), ["ctx"], c, rtol=1e-4, atol=1e-5)
    (m,) = fused(g, "MultiHeadAttention")
    assert [n.op_type for n in g.nodes] == ["MultiHeadAttention"]
    assert m.attrs["num_heads"] == H and m.attrs["scale"] == pytest.approx(D ** -0.5, rel=1e-6)
    assert m.attrs["nan_to_zero"] == int(guard) and m.inputs[1].shape == (E, 3 * E)
    assert (m.input(3) is not None) == mask


@pytest.mark.parametrize("guard", [True, False])
def test_attention_fully_masked_rows(guard, tmp_path):
    """A fully masked sequence: NaN probabilities (as ONNX Softmax gives them), zeroed when the
    graph guards them; interpreter and compiled C against onnxruntime."""
    ns, c = bert_attention(guard=guard)
    feed = attn_feed()
    feed["mask"][0] = -np.inf
    g, _ = run(ns, feed, ["ctx"], c, rtol=1e-4, atol=1e-5)
    assert fused(g, "MultiHeadAttention")
    model = make_model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S])], [("ctx", F, None)], c)
    out = check_levels(model, feed, tmp_path, levels=("extended",), rtol=1e-4, atol=1e-5)
    (y,) = out["extended"].run(None, feed)
    assert np.isnan(y[0]).all() != guard and np.isfinite(y[1]).all()


def test_attention_does_not_fire():
    ns, c = bert_attention(bad_k=True)  # K heads taken with a non-matching perm
    run(ns, attn_feed(), ["ctx"], c, fires=False, rtol=1e-4, atol=1e-5)
    ns, c = bert_attention()  # the probabilities have a second user
    run(ns, attn_feed(), ["ctx", "p"], c, fires=False, rtol=1e-4, atol=1e-5)
    ns, c = bert_attention()
    c.pop("bk")
    ns[4].input[0] = "kb_in"  # a non-constant K bias: not a projection the kernel can pack
    model = make_model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S]), ("kb_in", F, [E])], [("ctx", F, None)], c)
    check_pass(model, TransformerFusion(), dict(attn_feed(), kb_in=rnd(E, seed=3)), fires=False, rtol=1e-4, atol=1e-5)


def vit_attention(x="xs", y="att"):
    """torchvision VisionTransformer's nn.MultiheadAttention as exported (sequence-first, packed)."""
    c = {"w": rnd(E, 3 * E, seed=30, scale=0.5), "b": rnd(3 * E, seed=31),
         "s3": np.array([S, B, 3, E], np.int64), "ax0": np.array([0], np.int64), "ax3": np.array([3], np.int64),
         "i0": np.array(0, np.int64), "i1": np.array(1, np.int64), "i2": np.array(2, np.int64),
         "sbhd": np.array([S, B * H, D], np.int64), "bhsd": np.array([B, H, S, D], np.int64),
         "sc": np.array(math.sqrt(D ** -0.5), F), "out": np.array([S * B, E], np.int64)}
    ns = [node("MatMul", [x, "w"], ["mm"]), node("Add", ["b", "mm"], ["p"]), node("Reshape", ["p", "s3"], ["r3"]),
          node("Unsqueeze", ["r3", "ax0"], ["u"]), node("Transpose", ["u"], ["tu"], perm=[3, 1, 2, 0, 4]),
          node("Squeeze", ["tu", "ax3"], ["qkv"])]
    for t, i in zip("qkv", ("i0", "i1", "i2")):
        ns += [node("Gather", ["qkv", i], [f"{t}g"], axis=0), node("Reshape", [f"{t}g", "sbhd"], [f"{t}r"]),
               node("Transpose", [f"{t}r"], [f"{t}t"], perm=[1, 0, 2]), node("Reshape", [f"{t}t", "bhsd"], [f"{t}h"])]
    ns += [node("Transpose", ["kh"], ["kT"], perm=[0, 1, 3, 2]), node("Mul", ["qh", "sc"], ["qs"]),
           node("Mul", ["kT", "sc"], ["ks"]), node("MatMul", ["qs", "ks"], ["scores"]),
           node("Softmax", ["scores"], ["pr"], axis=-1), node("MatMul", ["pr", "vh"], ["o"]),
           node("Transpose", ["o"], ["ot"], perm=[2, 0, 1, 3]), node("Reshape", ["ot", "out"], [y])]
    return ns, c


def test_vit_attention_seq_first_packed():
    ns, c = vit_attention()
    g, _ = run(ns, {"xs": rnd(S, B, E, seed=4)}, ["att"], c, rtol=1e-4, atol=1e-5)
    (m,) = fused(g, "MultiHeadAttention")
    assert m.attrs["seq_first"] == 1 and m.outputs[0].shape == (S, B, E)
    assert [n.op_type for n in g.nodes] == ["MultiHeadAttention", "Reshape"]  # [S*B, E] is a view


# --- compiled C against onnxruntime ------------------------------------------------------------------
def mini_encoder():
    """One BERT layer: attention, output dense + residual + LayerNorm (decomposed), FFN with erf
    Gelu + residual + LayerNorm (standard op)."""
    ns, c = bert_attention(x="x", y="ctx")
    ln1, c1 = ln_nodes(opset=17, x="s1", y="h1", p="ln1_", n=E)
    gl, cg = gelu_erf_nodes("torch", x="f1", y="f1g")
    ns += [node("MatMul", ["ctx", "wo"], ["o_mm"]), node("Add", ["o_mm", "bo"], ["o_d"]), node("Add", ["o_d", "x"], ["s1"])]
    ns += ln1
    ns += [node("MatMul", ["h1", "wi"], ["f1_mm"]), node("Add", ["bi", "f1_mm"], ["f1"])] + gl
    ns += [node("MatMul", ["f1g", "wo2"], ["f2_mm"]), node("Add", ["bo2", "f2_mm"], ["f2"]), node("Add", ["f2", "h1"], ["s2"]),
           node("LayerNormalization", ["s2", "g2", "be2"], ["y"], axis=-1, epsilon=1e-12)]
    c.update(c1)
    c.update(cg)
    c.update(wo=rnd(E, E, seed=40, scale=0.5), bo=rnd(E, seed=41), wi=rnd(E, 16, seed=42, scale=0.5), bi=rnd(16, seed=43),
             wo2=rnd(16, E, seed=44, scale=0.5), bo2=rnd(E, seed=45), g2=rnd(E, seed=46), be2=rnd(E, seed=47))
    return ns, c


def test_mini_encoder_levels(tmp_path):
    ns, c = mini_encoder()
    feed = attn_feed()
    model = make_model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S])], [("y", F, None)], c, opset=17)
    g, _ = check_pass(model, TransformerFusion(), feed, rtol=1e-4, atol=1e-5)
    counts = g.op_counts()
    for op in ("onnxc.MultiHeadAttention", "onnxc.SkipLayerNormalization", "onnxc.Gelu"):
        assert op in counts, counts
    assert not {"Softmax", "Erf", "ReduceMean", "LayerNormalization", "Sqrt"} & set(counts), counts
    check_levels(model, feed, tmp_path, levels=("none", "extended"), rtol=1e-4, atol=1e-5)


def test_rms_fast_gelu_vit_attention_levels(tmp_path):
    rms, c = rms_nodes()
    for n in rms:
        n.input[:] = ["att" if i == "x" else i for i in n.input]
    fg = [node("Gelu", ["y"], ["z"], approximate="tanh")]
    ns, cv = vit_attention(x="xs", y="att2")
    c.update(cv)
    c["gamma"] = rnd(E, seed=7)
    c["flat"] = np.array([S, B, E], np.int64)
    ns += [node("Reshape", ["att2", "flat"], ["att"])] + rms + fg
    model = make_model(ns, [("xs", F, [S, B, E])], [("z", F, None)], c, opset=20)
    feed = {"xs": rnd(S, B, E, seed=4)}
    g, _ = check_pass(model, TransformerFusion(), feed, rtol=1e-4, atol=1e-5)
    assert {"onnxc.MultiHeadAttention", "onnxc.RMSNormalization", "onnxc.FastGelu"} <= set(g.op_counts())
    check_levels(model, feed, tmp_path, levels=("none", "extended"), rtol=1e-4, atol=1e-5)


@pytest.mark.models
def test_bert_tiny_fully_fused(tmp_path):
    path = MODELS_DIR / "bert_tiny.onnx"
    if not path.exists():
        pytest.skip(f"{path} not built")
    import onnx

    import onnxc
    from onnxc import frontend
    from onnxc.driver import optimize
    model = onnx.load(str(path))
    data = np.load(MODELS_DIR / "bert_tiny.inputs.npz")
    feed = {k: data[k] for k in data.files}
    feed["attention_mask"] = feed["attention_mask"].copy()
    feed["attention_mask"][:, -7:] = 0  # padded tail: the mask path matters
    g = frontend.load(model)
    optimize(g, "extended")
    counts = g.op_counts()
    layers = sum(1 for n in model.graph.node if n.op_type == "Softmax")
    lns = sum(1 for n in model.graph.node if n.op_type == "LayerNormalization")
    gelus = sum(1 for n in model.graph.node if n.op_type == "Erf")
    assert counts.get("onnxc.MultiHeadAttention") == layers
    assert counts.get("onnxc.LayerNormalization", 0) + counts.get("onnxc.SkipLayerNormalization", 0) == lns
    # each Gelu fused, most into the preceding MatMul (transformer_matmul_gelu)
    assert counts.get("onnxc.Gelu", 0) + counts.get("onnxc.MatMulGelu", 0) == gelus
    assert not {"Softmax", "Erf", "LayerNormalization", "Transpose"} & set(counts), counts
    ref = ort_run(model, feed)
    out = onnxc.compile(model, output_dir=tmp_path / "bert", opt_level="extended", fallback=False).run(None, feed)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and rel_err(o, r) <= 1e-4


def test_norms_levels(tmp_path):
    """SkipLayerNorm with the sum as a second output, LayerNorm (Reciprocal form) on rows with a
    large mean (the kernel's mean is taken of shifted values, then the centered variance) and
    RMSNorm, compiled in C."""
    ln, c = ln_nodes(div="recip", x="s", y="h", p="ln_")
    rms, cr = rms_nodes(div="div")
    for n in rms:
        n.input[:] = ["h" if i == "x" else i for i in n.input]
    ns = [node("Add", ["a", "r"], ["s"])] + ln + [node("Relu", ["s"], ["z"])] + rms
    c.update(cr)
    model = make_model(ns, [("a", F, [6, 16]), ("r", F, [6, 16])], [("y", F, None), ("z", F, None)], c)
    feed = {"a": rnd(6, 16) + 300, "r": rnd(6, 16, seed=1)}
    # at |x| ~ 300 a float32 ulp is 3e-5: the decomposed graph's own float32 mean/centering
    # rounds at that level (the fused statistics are in double), hence atol 1e-4 on O(1) outputs
    g, _ = check_pass(model, TransformerFusion(), feed, rtol=1e-4, atol=1e-4)
    assert [n.op_type for n in g.nodes] == ["SkipLayerNormalization", "Relu", "RMSNormalization"]
    check_levels(model, feed, tmp_path, levels=("none", "extended"), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_gelu_kernel_accuracy(approx, tmp_path):
    """The C Gelu/FastGelu (branch-free onnxc_gelu_erff / onnxc_gelu_tanhf) against float64
    over the whole range, the tails and the special values."""
    import onnxc
    x = np.concatenate([np.linspace(-14, 14, 40001), [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 60, -60, 3e38,
                                                      -3e38]]).astype(F)
    model = make_model([node("Gelu", ["x"], ["y"], approximate=approx)], [("x", F, [x.size])], [("y", F, [x.size])],
                       opset=20)
    m = onnxc.compile(model, output_dir=tmp_path / "g", opt_level="extended", fallback=False)
    (y,) = m.run(None, {"x": x})
    xd = x.astype(np.float64)
    with np.errstate(all="ignore"):  # 1 + erf(z) = erfc(-z), 1 + tanh(u) = 2 / (1 + exp(-2u)): no cancellation
        if approx == "none":
            want = 0.5 * xd * np.vectorize(math.erfc)(-xd / math.sqrt(2))
        else:
            want = xd / (1 + np.exp(-2 * math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    want[np.isinf(xd) & (xd < 0)] = np.nan  # -inf * 0, as the decomposed graph computes it
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
    ok = ~np.isnan(want)
    # tanh form: the float32 rounding of u is amplified 2|u|-fold by exp(-2u) in the negative
    # tail (as in the decomposed graph itself), so up to ~1e-5 relative there
    np.testing.assert_allclose(y[ok], want[ok].astype(F), rtol=2e-6 if approx == "none" else 2e-5, atol=1e-37)


@pytest.mark.parametrize("const_w", [True, False])
def test_mha_node_in_c(const_w, tmp_path):
    """onnxc.MultiHeadAttention compiled directly (sequence-first, no bias, a [S, S] mask that
    broadcasts over batch and heads) against its numpy reference; the weights either constant
    (projection on compile-time packed B) or a graph input (onnxc_mha projects at run time)."""
    import onnx

    import onnxc
    from onnxc.ops import evaluate
    from onnxc.frontend import load
    w = rnd(E, 3 * E, seed=5, scale=0.5)
    feed = {"xs": rnd(S, B, E, seed=6), "mask": np.triu(np.full((S, S), -np.inf, F), 1)}
    inputs = [helper.make_tensor_value_info("xs", 1, [S, B, E]), helper.make_tensor_value_info("mask", 1, [S, S])]
    inits = []
    if const_w:
        inits.append(onnx.numpy_helper.from_array(w, "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", 1, [E, 3 * E]))
        feed["w"] = w
    n = helper.make_node("MultiHeadAttention", ["xs", "w", "", "mask"], ["y"], domain="onnxc", num_heads=H,
                         scale=0.3, seq_first=1, nan_to_zero=0)
    graph = helper.make_graph([n], "mha", inputs, [helper.make_tensor_value_info("y", 1, [S, B, E])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("onnxc", 1)])
    model.ir_version = 8
    g = load(model)
    want = evaluate(g.nodes[0], [feed["xs"], w, None, feed["mask"]])[0]
    (y,) = onnxc.compile(model, output_dir=tmp_path / "m", opt_level="none", fallback=False).run(None, feed)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
