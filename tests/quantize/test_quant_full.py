"""onnxc.quantize's static placement (qdq.full_plan) fuses completely under onnxc's QDQ passes:
residual Add, MaxPool, Concat, AveragePool, GlobalAveragePool and Gemm run in int8 with only the
input's QuantizeLinear and the float consumers' DequantizeLinear left, and the compiled module
agrees with onnxruntime running the QDQ model."""
import collections

import numpy as np
import onnx
from onnx import helper

import onnxc
from helpers import make_model, ort_run
from qmodels import cnn_feeds, small_cnn, sqnr


def residual_net(seed=0):
    """conv1+Relu, MaxPool, a residual block (conv2+Relu, conv3, Add, Relu), two branches
    concatenated, AveragePool, GlobalAveragePool, Flatten, Gemm, Softmax."""
    rng = np.random.default_rng(seed)

    def w(*s, k=0.3):
        return (rng.standard_normal(s) * k).astype(np.float32)
    inits = {"W1": w(8, 3, 3, 3), "B1": w(8, k=0.1), "W2": w(8, 8, 3, 3, k=0.2), "B2": w(8, k=0.1),
             "W3": w(8, 8, 3, 3, k=0.2), "B3": w(8, k=0.1), "W4": w(4, 8, 1, 1), "B4": w(4, k=0.1),
             "W5": w(4, 8, 3, 3, k=0.2), "B5": w(4, k=0.1), "WG": w(8, 10), "BG": w(10, k=0.1)}
    conv = lambda i, wn, bn, o, k: helper.make_node("Conv", [i, wn, bn], [o], pads=[k // 2] * 4, name=o)  # noqa: E731
    nodes = [conv("x", "W1", "B1", "c1", 3), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
             conv("m", "W2", "B2", "c2", 3), helper.make_node("Relu", ["c2"], ["r2"]),
             conv("r2", "W3", "B3", "c3", 3), helper.make_node("Add", ["c3", "m"], ["s"]),
             helper.make_node("Relu", ["s"], ["a"]),
             conv("a", "W4", "B4", "c4", 1), helper.make_node("Relu", ["c4"], ["r4"]),
             conv("a", "W5", "B5", "c5", 3), helper.make_node("Relu", ["c5"], ["r5"]),
             helper.make_node("Concat", ["r4", "r5"], ["cc"], axis=1),
             helper.make_node("AveragePool", ["cc"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["ap"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "WG", "BG"], ["logits"], name="fc"),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    return make_model(nodes, [("x", np.float32, [1, 3, 16, 16])], [("y", np.float32, [1, 10])], inits)


def feeds(n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def optimized_ops(model):
    from onnxc.driver import optimize_model
    opt, _ = optimize_model(model, opt_level="basic")
    return collections.Counter(n.op_type for n in opt.graph.node)


def test_static_output_fuses_to_int8(tmp_path):
    model = residual_net()
    q = onnxc.quantize(model, calibration=feeds(8, 1), engine="reference")
    onnx.checker.check_model(q, full_check=True)
    raw = collections.Counter(n.op_type for n in q.graph.node)
    assert raw["Relu"] == 0  # every Relu feeds a quantized tensor: uint8's zero point 0 does its work
    ops = optimized_ops(q)
    assert ops["QLinearConv"] == 5 and ops["QLinearAdd"] == 1 and ops["QLinearConcat"] == 1
    assert ops["QLinearAveragePool"] == 1 and ops["QLinearGlobalAveragePool"] == 1 and ops["QGemm"] == 1
    assert ops["MaxPool"] == 1  # on the uint8 tensor (drop_qdq)
    # only the input's Q and the Softmax's DQ are left
    assert ops["QuantizeLinear"] == 1 and ops["DequantizeLinear"] == 1, ops
    assert not {"Conv", "Add", "Concat", "AveragePool", "GlobalAveragePool", "Gemm"} & set(ops)
    # onnxruntime runs the QDQ model; the int8 module compiled by onnxc agrees with it
    m = onnxc.compile(q, output_dir=tmp_path / "q", fallback=False)
    for f in feeds(6, 9):
        ref, got_ort, got = ort_run(model, f)[0], ort_run(q, f)[0], m.run(None, f)[0]
        assert sqnr(ref, got_ort) > 25
        # the integer paths agree (measured: 1e-8, float Softmax); a requantization off by one
        # step somewhere would move these probabilities by more than 2e-3
        assert np.abs(got - got_ort).max() <= 2e-3, np.abs(got - got_ort).max()


def test_last_gemm_reading_int8_writes_a_float_graph_output(tmp_path):
    """The small CNN's Gemm writes the graph output: its input and weights are quantized, its
    output stays float (no Q), and fuse_qdq_matmul runs it as a QGemm with a float output
    (int32 accumulation, int32 bias, float(acc + C) * sa * sb[n]) instead of a float Gemm."""
    model = small_cnn()
    q = onnxc.quantize(model, calibration=cnn_feeds(8), engine="reference")
    gemm = [n for n in q.graph.node if n.op_type == "Gemm"][0]
    producers = {o: p for p in q.graph.node for o in p.output}
    assert gemm.output[0] == "y" and all(producers[i].op_type == "DequantizeLinear" for i in gemm.input)
    ops = optimized_ops(q)
    assert ops["QGemm"] == 1 and ops["QLinearConv"] == 2 and ops["QLinearGlobalAveragePool"] == 1
    assert not {"Gemm", "MatMul", "Conv", "DequantizeLinear"} & set(ops), ops
    assert ops["QuantizeLinear"] == 1  # the input's only
    m = onnxc.compile(q, output_dir=tmp_path / "q", fallback=False)
    for f in cnn_feeds(4, seed=7):
        ref, got_ort, got = ort_run(model, f)[0], ort_run(q, f)[0], m.run(None, f)[0]
        assert sqnr(ref, got) > 25
        # the int32 sum of the products and the float32 sum of the dequantized ones differ only by
        # float rounding (measured 1.2e-7 on outputs up to 1.6); an int8 rounding of y would be
        # ~1e-2, a lost bias or zero point far more
        assert np.abs(got - got_ort).max() <= 1e-5 * np.abs(got_ort).max(), np.abs(got - got_ort).max()
    # a float bias would be rounded to accumulator units (up to half a step the float graph does
    # not lose): without a Q after it such a Gemm stays float
    bdq = producers[gemm.input[2]]
    bias = onnx.numpy_helper.to_array([i for i in model.graph.initializer if i.name == "BG"][0])
    q.graph.initializer.append(onnx.numpy_helper.from_array(bias, "BG_float"))
    gemm.input[2] = "BG_float"
    q.graph.node.remove(bdq)
    ops = optimized_ops(q)
    assert ops["Gemm"] == 1 and "QGemm" not in ops, ops


def test_relu_kept_for_a_layer_in_float_and_int8_activations():
    model = residual_net()
    # conv3 kept in float: it reads r2 unquantized, so conv2's Relu stays
    q = onnxc.quantize(model, calibration=feeds(4, 1), exclude=["c3"], engine="reference")
    c3 = [n for n in q.graph.node if n.name == "c3"][0]
    assert c3.input[0] == "r2" and c3.input[1] == "W3"
    assert "Relu" in [n.op_type for n in q.graph.node]
    for f in feeds(3, 9):
        assert sqnr(ort_run(model, f)[0], ort_run(q, f)[0]) > 25
    # int8 activations (zero point 0 is not the type's minimum): Relus stay, results still close
    q8 = onnxc.quantize(model, calibration=feeds(4, 1), activation_type="int8", engine="reference")
    assert [n.op_type for n in q8.graph.node].count("Relu") == 5
    for f in feeds(3, 9):
        assert sqnr(ort_run(model, f)[0], ort_run(q8, f)[0]) > 20


def test_nearest_resize_and_slice_run_on_the_int8_tensor(tmp_path):
    """Resize(nearest) and Slice between two int8 convs take their input's scale (they only select
    values): no Q/DQ between the convs, the Resize and Slice run on uint8 in C; a linear Resize
    interpolates and stays float."""
    rng = np.random.default_rng(2)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    inits = {"W1": w(6, 3, 3, 3), "W2": w(4, 6, 3, 3), "sc": np.array([1, 1, 2, 2], np.float32),
             "st": np.array([1], np.int64), "en": np.array([15], np.int64), "ax": np.array([3], np.int64)}
    for mode, int8 in (("nearest", True), ("linear", False)):
        nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"], pads=[1] * 4), helper.make_node("Relu", ["c1"], ["r1"]),
                 helper.make_node("Resize", ["r1", "", "sc"], ["u"], mode=mode),
                 helper.make_node("Slice", ["u", "st", "en", "ax"], ["s"]),
                 helper.make_node("Conv", ["s", "W2"], ["c2"], pads=[1] * 4),
                 helper.make_node("Softmax", ["c2"], ["y"], axis=1)]
        model = make_model(nodes, [("x", np.float32, [1, 3, 8, 8])], [("y", np.float32, [1, 4, 16, 14])], inits)
        small = [{"x": f["x"][:, :, :8, :8].copy()} for f in feeds(6, 1)]
        q = onnxc.quantize(model, calibration=small[:4])
        ops = optimized_ops(q)
        assert ops["QLinearConv"] == 2 and ops["Resize"] == 1 and ops["Slice"] == 1, ops
        assert (ops["QuantizeLinear"] == 1) == int8, ops  # linear: Q/DQ around the float Resize
        m = onnxc.compile(q, output_dir=tmp_path / mode, fallback=False)
        for f in small[4:]:
            np.testing.assert_allclose(m.run(None, f)[0], ort_run(q, f)[0], rtol=0, atol=1e-6)
