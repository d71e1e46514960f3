"""QDQ graph structure (checker, onnxruntime runs it), per-channel axes, bias, exclude, dynamic
mode, and quantization inside onnxc.compile."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxc
from helpers import make_model, ort_run
from qmodels import cnn_feeds, mlp, mlp_feeds, small_cnn, sqnr


def _inits(m):
    return {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}


def _ops(m):
    return [n.op_type for n in m.graph.node]


def _consumer(m, name):
    return [n for n in m.graph.node if name in n.input]


def test_static_qdq_structure_and_numbers():
    model = small_cnn()
    calib = cnn_feeds(6)
    q, res = onnxc.quantize(model, calibration=calib, engine="reference", return_result=True)
    onnx.checker.check_model(q, full_check=True)
    ops = _ops(q)
    # one per tensor, as quantize_static places them: x, conv1's and conv2's outputs (their Relus
    # dropped: uint8 zero point 0 saturates as they did), the pool's, the flattened pool's (its
    # scale); the Gemm's output y is the graph's output and stays float
    assert ops.count("QuantizeLinear") == 5 and "Relu" not in ops
    assert ops.count("Conv") == 2 and ops.count("Gemm") == 1
    inits = _inits(q)
    for n in q.graph.node:
        if n.op_type in ("Conv", "Gemm"):
            # every input of a quantized node is a DQ output
            producers = {o: p for p in q.graph.node for o in p.output}
            for i, name in enumerate(n.input[:3]):
                assert producers[name].op_type == "DequantizeLinear", (n.name, i)
            wdq = producers[n.input[1]]
            wq, ws = inits[wdq.input[0]], inits[wdq.input[1]]
            axis = helper.get_attribute_value(wdq.attribute[0])
            assert wq.dtype == np.int8 and np.abs(wq).max() == 127
            assert axis == (0 if n.op_type == "Conv" else 0 if any(a.name == "transB" and a.i for a in n.attribute)
                            else 1)
            assert ws.shape == (wq.shape[axis],)
            # bias: int32, scale = x_scale * w_scale
            bdq = producers[n.input[2]]
            bq, bs = inits[bdq.input[0]], inits[bdq.input[1]]
            xdq = producers[n.input[0]]
            xs = inits[xdq.input[1]]
            assert bq.dtype == np.int32
            np.testing.assert_allclose(bs, xs * ws, rtol=1e-7)
    # the weights round trip: DQ(W_q) is W within half a step per channel
    w1 = numpy_helper.to_array([i for i in model.graph.initializer if i.name == "W1"][0])
    name = [n for n in q.graph.node if n.op_type == "Conv" and n.name == "conv1"][0].input[1]
    dq = [n for n in q.graph.node if name in n.output][0]
    wq, ws = inits[dq.input[0]], inits[dq.input[1]]
    assert np.all(np.abs(wq * ws[:, None, None, None] - w1) <= ws[:, None, None, None] / 2 + 1e-7)
    # onnxruntime runs it, close to float
    test = cnn_feeds(4, seed=9)
    for f in test:
        ref = ort_run(model, f)[0]
        got = ort_run(q, f)[0]
        assert sqnr(ref, got) > 30
    assert {l.name for l in res.layers} == {"conv1", "conv2", "fc__0"} or len(res.layers) == 3
    meta = {p.key: p.value for p in q.metadata_props}
    assert "onnxc.quantize" in meta


def test_static_qdq_per_tensor_and_int8_activations():
    model = small_cnn()
    q = onnxc.quantize(model, calibration=cnn_feeds(4), per_channel=False, activation_type="int8",
                       engine="reference")
    inits = _inits(q)
    for n in q.graph.node:
        if n.op_type == "QuantizeLinear":
            assert inits[n.input[2]].dtype == np.int8 and inits[n.input[2]] == 0
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None and \
                inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim > 1:
            assert inits[n.input[1]].shape == ()
            assert not any(a.name == "axis" for a in n.attribute)
    f = cnn_feeds(1, seed=5)[0]
    assert sqnr(ort_run(model, f)[0], ort_run(q, f)[0]) > 25


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_per_channel_axis_follows_transB(trans_b):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 5)).astype(np.float32)
    w[:, 2] *= 50  # one output column much larger: per-column scales must follow it
    wstore = w.T.copy() if trans_b else w
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"], transB=trans_b, name="g")],
                       [("x", np.float32, [3, 6])], [("y", np.float32, [3, 5])], {"W": wstore})
    q = onnxc.quantize(model, calibration=[{"x": rng.standard_normal((3, 6)).astype(np.float32)}],
                       engine="reference")
    dq = [n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in _inits(q)
          and _inits(q)[n.input[0]].ndim == 2][0]
    axis = helper.get_attribute_value([a for a in dq.attribute if a.name == "axis"][0])
    assert axis == (0 if trans_b else 1)
    scales = _inits(q)[dq.input[1]]
    np.testing.assert_allclose(scales, np.abs(w).max(axis=0) / 127, rtol=1e-6)  # per output column


def test_matmul_weight_axis_and_onnxc_runs_qdq_like_onnxruntime(tmp_path):
    model = mlp()
    q = onnxc.quantize(model, calibration=mlp_feeds(4), engine="reference")
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear" and _inits(q).get(n.input[0]) is not None \
                and _inits(q)[n.input[0]].ndim == 2:
            assert helper.get_attribute_value(n.attribute[0]) == 1
    f = mlp_feeds(1, seed=7)[0]
    ours = onnxc.compile(q, output_dir=tmp_path / "m").run(None, f)[0]
    np.testing.assert_allclose(ours, ort_run(q, f)[0], rtol=1e-5, atol=1e-5)


def test_exclude_by_name_and_op_type():
    model = small_cnn()
    calib = cnn_feeds(3)
    q = onnxc.quantize(model, calibration=calib, exclude=["conv2"], engine="reference")
    conv2 = [n for n in q.graph.node if n.name == "conv2"][0]
    assert conv2.input[1] == "W2" and conv2.input[0] == "r1"  # float weight and input
    conv1 = [n for n in q.graph.node if n.name == "conv1"][0]
    assert conv1.input[1] != "W1"
    q2, res = onnxc.quantize(model, calibration=calib, exclude="Gemm", engine="reference", return_result=True)
    gemm = [n for n in q2.graph.node if n.op_type == "Gemm"][0]
    assert "WG" in gemm.input[1] and not gemm.input[1].endswith("dequantized")
    assert any("excluded" in s for s in res.skipped)
    # x, conv1's and conv2's outputs, the pool's; the flattened pool only feeds the float Gemm
    assert _ops(q2).count("QuantizeLinear") == 4
    # op_types restricts: the Gemm's input only (its output is the graph's)
    q3 = onnxc.quantize(model, calibration=calib, op_types=["Gemm"], engine="reference")
    assert _ops(q3).count("QuantizeLinear") == 1


def test_dynamic_mode_graph():
    """per_token=False: onnxruntime's form (one DynamicQuantizeLinear per activation)."""
    model = small_cnn()
    q, res = onnxc.quantize(model, mode="dynamic", per_token=False, return_result=True)
    ops = _ops(q)
    assert ops.count("DynamicQuantizeLinear") == 1 and ops.count("MatMulInteger") == 1
    assert "Cast" in ops and ops.count("Conv") == 2 and "QuantizeLinear" not in ops  # convs stay float
    mmi = [n for n in q.graph.node if n.op_type == "MatMulInteger"][0]
    inits = _inits(q)
    assert inits[mmi.input[1]].dtype == np.int8 and inits[mmi.input[3]].shape == (10,)  # per-column zero points
    assert any("dynamic mode leaves convolutions" in s for s in res.skipped)
    onnx.checker.check_model(q, full_check=True)
    for f in cnn_feeds(3, seed=11):
        assert sqnr(ort_run(model, f)[0], ort_run(q, f)[0]) > 30
    # 3-D activations into 2-D weights (transformer style)
    m3 = mlp(seq=5)
    q3 = onnxc.quantize(m3, mode="dynamic", per_token=False)
    assert _ops(q3).count("MatMulInteger") == 3
    f = mlp_feeds(1, seq=5)[0]
    assert sqnr(ort_run(m3, f)[0], ort_run(q3, f)[0]) > 30


def _per_token_reference(x, w):
    """Numpy statement of the per-token form: x quantized to uint8 per row (DynamicQuantizeLinear's
    formula over the last axis), w per column to int8, the product dequantized."""
    lo = np.minimum(x.min(-1, keepdims=True), 0)
    hi = np.maximum(x.max(-1, keepdims=True), 0)
    s = np.maximum((hi - lo) / np.float32(255), np.finfo(np.float32).tiny).astype(np.float32)
    z = np.rint(-lo / s)
    q = np.clip(np.rint(x / s) + z, 0, 255)
    sw = (np.abs(w).max(0) / np.float32(127)).astype(np.float32)
    wq = np.clip(np.rint(w / sw), -127, 127)
    return ((q - z).astype(np.float64) @ wq.astype(np.float64)) * s * sw


def _one_matmul(k=16, n=8, seq=6, seed=0):
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    return make_model([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
                      [("x", np.float32, [2, seq, k])], [("y", np.float32, [2, seq, n])], {"W": w}), w


def test_dynamic_per_token_graph_and_numbers(tmp_path):
    """The default dynamic form: one scale and zero point per row, standard ops only, the same
    numbers under onnxruntime, onnxc (C only) and the numpy statement of the formula."""
    model, w = _one_matmul()
    q, res = onnxc.quantize(model, mode="dynamic", return_result=True)
    ops = _ops(q)
    assert "DynamicQuantizeLinear" not in ops and ops.count("MatMulInteger") == 1
    assert {"ReduceMax", "ReduceMin", "Round", "Clip"} <= set(ops) and all(n.domain == "" for n in q.graph.node)
    assert res.layers[0].activation == "uint8 dynamic per token"
    onnx.checker.check_model(q, full_check=True)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 16)).astype(np.float32)
    x[0, 2] *= 40           # an outlier row
    x[1, 3] = 0             # an all-zero row: scale floored, output 0
    x[1, 4] = np.abs(x[1, 4])  # an all-positive row: zero point 0
    ref = _per_token_reference(x, w)
    got = ort_run(q, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert np.all(got[1, 3] == 0)
    m = onnxc.compile(q, fallback=False, output_dir=tmp_path / "c")
    np.testing.assert_allclose(m.run(None, {"x": x})[0], got, rtol=1e-6, atol=1e-6 * np.abs(ref).max())
    # inside onnxc.compile: the same integer graph
    mc = onnxc.compile(model, quantize="dynamic", fallback=False, output_dir=tmp_path / "d")
    np.testing.assert_allclose(mc.run(None, {"x": x})[0], got, rtol=1e-6, atol=1e-6 * np.abs(ref).max())


def test_dynamic_per_token_gemm(tmp_path):
    """The small CNN's MatMul+Add becomes a Gemm (basic passes): per token, its bias added after the
    zero-point correction; onnxc's C module computes what onnxruntime does."""
    model = small_cnn(batch=3)
    q = onnxc.quantize(model, mode="dynamic")
    assert _ops(q).count("MatMulInteger") == 1 and "DynamicQuantizeLinear" not in _ops(q)
    m = onnxc.compile(q, fallback=False, output_dir=tmp_path / "c")
    for f in cnn_feeds(2, seed=9, batch=3):
        got = ort_run(q, f)[0]
        assert sqnr(ort_run(model, f)[0], got) > 30
        np.testing.assert_allclose(m.run(None, f)[0], got, rtol=1e-5, atol=1e-5)


def test_dynamic_per_token_against_per_tensor_on_an_outlier_row():
    """One row 100x larger than the others (a token with an outlier channel, as in BERT-style
    models): one scale per tensor makes the step 100x coarser for every other row; per token
    only that row pays.  Measured before/after on the same model and feed."""
    model, w = _one_matmul(k=64, n=32, seq=16, seed=1)
    x = np.random.default_rng(2).standard_normal((2, 16, 64)).astype(np.float32)
    x[0, 0, 5] = 300.0
    ref = ort_run(model, {"x": x})[0]
    worst = {}
    for per_token in (False, True):
        q = onnxc.quantize(model, mode="dynamic", per_token=per_token)
        y = ort_run(q, {"x": x})[0]
        worst[per_token] = min(sqnr(ref[b, t], y[b, t]) for b in range(2) for t in range(16))
    assert worst[True] > 35 and worst[True] > worst[False] + 20, worst


def test_static_needs_calibration_and_clear_errors():
    with pytest.raises(onnxc.InputError, match="static mode needs calibration"):
        onnxc.quantize(small_cnn())
    with pytest.raises(onnxc.InputError, match="method"):
        onnxc.quantize(small_cnn(), mode="dynamic", method="kl")
    with pytest.raises(onnxc.InputError, match="do not match the model's"):
        onnxc.quantize(small_cnn(), calibration=[{"input": np.zeros((1, 3, 16, 16), np.float32)}], engine="reference")
    with pytest.raises(onnxc.InputError, match="expects"):
        onnxc.quantize(small_cnn(), calibration=[{"x": np.zeros((1, 3, 8, 8), np.float32)}], engine="reference")


def test_compile_quantize_is_quantize_then_compile(tmp_path):
    """onnxc.compile(quantize=...) quantizes as onnxc.quantize does and fuses the Q/DQ pairs into
    int8 nodes: the same optimized graph and bit-identical outputs as compiling onnxc.quantize's
    model (an earlier form left Q/DQ around float FusedConvs: slower than float)."""
    model = small_cnn()
    calib = cnn_feeds(4)
    m = onnxc.compile(model, quantize={"mode": "static", "calibration": calib}, output_dir=tmp_path / "c",
                      save_optimized=tmp_path / "opt.onnx")
    ref = onnxc.compile(onnxc.quantize(model, calibration=calib), output_dir=tmp_path / "r",
                        save_optimized=tmp_path / "ref.onnx")
    ops = _ops(onnx.load(tmp_path / "opt.onnx"))
    assert ops == _ops(onnx.load(tmp_path / "ref.onnx"))
    assert ops.count("QLinearConv") == 2 and "FusedConv" not in ops and "Conv" not in ops, ops
    rep = m.report["quantize"]
    assert [l["op"] for l in rep["layers"]].count("Conv") == 2
    assert m.report["passes"]["quantize"]["rewrites"] == len(rep["layers"])
    assert m.report["passes"]["fuse_qdq_conv"]["rewrites"] == 2  # the basic level ran again, in the report
    for f in cnn_feeds(3, seed=4):
        out = m.run(None, f)[0]
        np.testing.assert_array_equal(out, ref.run(None, f)[0])
        assert sqnr(ort_run(model, f)[0], out) > 30
    # the calibration data is part of the cache key
    m2 = onnxc.compile(model, quantize={"mode": "static", "calibration": calib[:2]})
    m3 = onnxc.compile(model, quantize={"mode": "static", "calibration": calib[:2]})
    assert m2.output_dir == m3.output_dir != m.output_dir


@pytest.mark.parametrize("per_token", [False, True])
def test_compile_dynamic_is_quantize_then_compile(tmp_path, per_token):
    model = mlp(seq=5)
    m = onnxc.compile(model, quantize={"mode": "dynamic", "per_token": per_token}, fallback=False,
                      output_dir=tmp_path / "d")
    ref = onnxc.compile(onnxc.quantize(model, mode="dynamic", per_token=per_token), output_dir=tmp_path / "r")
    f = mlp_feeds(1, seq=5, seed=3)[0]
    out = m.run(None, f)[0]
    np.testing.assert_array_equal(out, ref.run(None, f)[0])
    assert sqnr(ort_run(model, f)[0], out) > 30
