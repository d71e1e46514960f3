"""quantize_dynamic's products -> MatMulIntegerToFloat (passes/basic/fuse_matmul_integer.py), and
the attention fusion on the result (an int8 Q | K | V product + onnxc.MultiHeadAttention on the
projected QKV, passes/extended/fuse_attention.py).

The model: test_transformer's one-layer BERT encoder quantized by onnxruntime's quantize_dynamic
(DynamicQuantizeLinear + MatMulInteger + Cast + Mul by x_scale * w_scale + bias Add per MatMul).
Each pass runs on the IR and the graph is run before and after it (interpreter) against
onnxruntime on the same quantized model; the compiled C (fallback=False) against onnxruntime and
against the unoptimized graph compiled the same way.
"""
import numpy as np
import pytest
from onnx import helper

from helpers import check_pass, make_model, ort_run, rel_err
from test_transformer import B, E, S, attn_feed, mini_encoder

F = np.float32


def _quantized(tmp_path, weight_type="QInt8", per_channel=True):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    ns, c = mini_encoder()
    model = make_model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S])], [("y", F, None)], c, opset=17)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    quantize_dynamic(str(src), str(dst), weight_type=getattr(QuantType, weight_type), per_channel=per_channel)
    return model, onnx.load(str(dst))


def _attention_fused(q, feed):
    """q after the basic level, its outputs on feed, then after transformer_fusion (with the C
    provider's capability): (graph, before, after)."""
    from onnxc import frontend
    from onnxc.driver import optimize
    from onnxc.ops.interp import run_graph
    from onnxc.passes.capability import using
    from onnxc.passes.extended.transformer import TransformerFusion
    from onnxc.providers import CProvider
    g = frontend.load(q)
    optimize(g, "basic")
    before = run_graph(g, feed)[0]
    with using(CProvider()):
        TransformerFusion().run(g)
    return g, before, run_graph(g, feed)[0]


def _counts(g):
    return g.op_counts()


@pytest.mark.parametrize("weight_type,per_channel", [("QInt8", True), ("QUInt8", False)])
def test_products_fused(weight_type, per_channel, tmp_path):
    from onnxc import frontend
    from onnxc.ops.interp import run_graph
    from onnxc.passes.basic.fuse_matmul_integer import FuseMatMulIntegerToFloat
    _, q = _quantized(tmp_path, weight_type, per_channel)
    products = sum(n.op_type == "MatMulInteger" for n in q.graph.node)
    feed = attn_feed()
    g, res = check_pass(q, FuseMatMulIntegerToFloat(), feed)
    # the same float32 operations in the same order: bit-identical to the graph before the pass
    np.testing.assert_array_equal(run_graph(g, feed)[0], run_graph(frontend.load(q), feed)[0])
    counts = _counts(g)
    assert res.rewrites == products == 6 and counts["com.microsoft.MatMulIntegerToFloat"] == products
    assert not {"MatMulInteger", "Cast"} & set(counts), counts
    mm = [n for n in g.nodes if n.op_type == "MatMulIntegerToFloat"]
    assert all(n.input(6) is not None for n in mm)  # every bias Add taken in


def test_products_not_fused(tmp_path):
    """The float product is read elsewhere (a graph output): nothing changes."""
    from onnxc.passes.basic.fuse_matmul_integer import FuseMatMulIntegerToFloat
    q = helper.make_model(helper.make_graph(
        [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
         helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["acc"]),
         helper.make_node("Cast", ["acc"], ["accf"], to=1),
         helper.make_node("Mul", ["xs", "ws"], ["s"]),
         helper.make_node("Mul", ["accf", "s"], ["y"])], "t",
        [helper.make_tensor_value_info("x", 1, [3, 8])],
        [helper.make_tensor_value_info("y", 1, [3, 4]), helper.make_tensor_value_info("accf", 1, [3, 4])],
        initializer=[helper.make_tensor("w", 3, [8, 4], np.arange(-16, 16, dtype=np.int8).tolist()),
                     helper.make_tensor("ws", 1, [4], [0.1, 0.2, 0.3, 0.4])]),
        opset_imports=[helper.make_opsetid("", 17)])
    q.ir_version = 8
    feed = {"x": np.random.default_rng(0).standard_normal((3, 8)).astype(F)}
    check_pass(q, FuseMatMulIntegerToFloat(), feed, fires=False)
    q.graph.output.pop()  # now it fuses, per-column scales after one runtime scalar
    g, _ = check_pass(q, FuseMatMulIntegerToFloat(), feed)
    assert _counts(g).get("com.microsoft.MatMulIntegerToFloat") == 1


@pytest.mark.parametrize("weight_type,per_channel", [("QInt8", True), ("QUInt8", False)])
def test_dynamic_int8_attention_fused(weight_type, per_channel, tmp_path):
    """After the basic level, transformer_fusion turns the attention into one int8 QKV product
    (per-column scales / zero points from three per-tensor or per-column ones) + MultiHeadAttention."""
    _, q = _quantized(tmp_path, weight_type, per_channel)
    feed = attn_feed()
    ref = ort_run(q, feed)[0]
    g, before, after = _attention_fused(q, feed)
    counts = _counts(g)
    assert counts.get("onnxc.MultiHeadAttention") == 1, counts
    assert counts["com.microsoft.MatMulIntegerToFloat"] == 4  # QKV, output, 2 FFN
    assert not {"Softmax", "MatMul", "Transpose", "Reshape"} & set(counts), counts
    (mha,) = [n for n in g.nodes if n.op_type == "MultiHeadAttention"]
    assert mha.input(1) is None and mha.inputs[0].producer.op_type == "MatMulIntegerToFloat"
    # the projections are bit-exact; only the score / softmax float order differs
    assert rel_err(after, before) <= 1e-5 and rel_err(after, ref) <= 1e-5


def test_dynamic_int8_attention_in_c(tmp_path):
    import onnxc
    fmodel, q = _quantized(tmp_path)
    feed = attn_feed(seed=1)
    ref, flt = ort_run(q, feed)[0], ort_run(fmodel, feed)[0]
    fused = onnxc.compile(q, output_dir=tmp_path / "ext", opt_level="extended", fallback=False)
    plain = onnxc.compile(q, output_dir=tmp_path / "none", opt_level="none", fallback=False)
    assert fused.report["op_counts"].get("onnxc.MultiHeadAttention") == 1, fused.report["op_counts"]
    y, y0 = fused.run(None, feed)[0], plain.run(None, feed)[0]
    # int8 against float is ~1e-2 here; the fused graph stays at float rounding from both
    assert rel_err(ref, flt) > 1e-3
    assert rel_err(y, ref) <= 1e-5 and rel_err(y, y0) <= 1e-5


def test_flattened_rows_attention(tmp_path):
    """Projections of the hidden states flattened to [B * S, E] (as ViT's quantize_dynamic model
    has them): the int8 QKV product reads them reshaped to [B, S, E] (a view)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from test_transformer import bert_attention, node
    ns, c = bert_attention(x="x2")
    c["rows"] = np.array([B * S, E], np.int64)
    ns = [node("Reshape", ["x", "rows"], ["x2"])] + ns
    model = make_model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S])], [("ctx", F, None)], c, opset=17)
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8)
    q = onnx.load(str(tmp_path / "q.onnx"))
    feed = attn_feed()
    g, before, after = _attention_fused(q, feed)
    counts = _counts(g)
    assert counts.get("onnxc.MultiHeadAttention") == 1 and "Softmax" not in counts, counts
    (mm,) = [n for n in g.nodes if n.op_type == "MatMulIntegerToFloat"]
    assert mm.inputs[0].shape == (B, S, E) and mm.inputs[0].producer.op_type == "Reshape"
    assert rel_err(after, before) <= 1e-5 and rel_err(after, ort_run(q, feed)[0]) <= 1e-5
