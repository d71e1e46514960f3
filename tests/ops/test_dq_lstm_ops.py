"""com.microsoft.DynamicQuantizeLSTM (what onnxruntime's quantize_dynamic makes of an LSTM) in C:
against onnxruntime running the same node, and the OCR-style CNN+LSTM of issue 13 entirely in C."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from helpers import ort_run, tensor_info

import onnxc
import onnxc.cpu

MS = "com.microsoft"


def quantize_w(w, per_column, u8, rng):
    """w [D, K, 4H] float -> (q, scale, zero point) as onnxruntime's quantizer lays them out."""
    axis = (1,) if per_column else (1, 2)
    amax = np.abs(w).max(axis=axis, keepdims=True)
    s = (amax / 127).astype(np.float32)
    if u8:  # asymmetric uint8 weights with a zero point near the middle
        z = np.full(s.shape, 128, np.int32) + rng.integers(-3, 4, s.shape)
        q = np.clip(np.round(w / s) + z, 0, 255).astype(np.uint8)
        z = z.astype(np.uint8)
    else:
        z = np.zeros(s.shape, np.int8)
        q = np.clip(np.round(w / s), -127, 127).astype(np.int8)
    shape = (w.shape[0], w.shape[2]) if per_column else (w.shape[0],)
    return q, s.reshape(shape), z.reshape(shape)


def dq_lstm(T=7, N=2, I=20, H=12, direction="forward", per_column=False, u8=False, h0=False, peep=False,
            seed=0, clip=None):
    rng = np.random.default_rng(seed)
    D = 2 if direction == "bidirectional" else 1
    w = (rng.standard_normal((D, I, 4 * H)) * 0.3).astype(np.float32)
    r = (rng.standard_normal((D, H, 4 * H)) * 0.3).astype(np.float32)
    wq, ws, wz = quantize_w(w, per_column, u8, rng)
    rq, rs, rz = quantize_w(r, per_column, u8, rng)
    inits = {"W": wq, "R": rq, "B": (rng.standard_normal((D, 8 * H)) * 0.1).astype(np.float32),
             "ws": ws, "wz": wz, "rs": rs, "rz": rz}
    ins = ["X", "W", "R", "B", "", "", "", ""]
    feed = {"X": rng.standard_normal((T, N, I)).astype(np.float32)}
    inputs = [("X", np.float32, [T, N, I])]
    if h0:
        ins[5], ins[6] = "h0", "c0"
        for k in ("h0", "c0"):
            feed[k] = (rng.standard_normal((D, N, H)) * 0.5).astype(np.float32)
            inputs.append((k, np.float32, [D, N, H]))
    if peep:
        ins[7] = "P"
        inits["P"] = (rng.standard_normal((D, 3 * H)) * 0.2).astype(np.float32)
    attrs = {"direction": direction, "hidden_size": H}
    if clip is not None:
        attrs["clip"] = clip
    node = helper.make_node("DynamicQuantizeLSTM", ins + ["ws", "wz", "rs", "rz"], ["Y", "Yh", "Yc"], domain=MS,
                            **attrs)
    outs = [("Y", np.float32, [T, D, N, H]), ("Yh", np.float32, [D, N, H]), ("Yc", np.float32, [D, N, H])]
    g = helper.make_graph([node], "dqlstm", [tensor_info(*i) for i in inputs], [tensor_info(*o) for o in outs],
                          initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)])
    m.ir_version = 8
    return m, feed


def run_c(model, feed, tmp_path):
    return onnxc.compile(model, output_dir=tmp_path / "c", fallback=False).run(None, feed)


def ort_1thread(model, feed):
    """onnxruntime with one thread: with more, its LSTM splits the batch across threads and
    quantizes each part's hidden states with their own scale, so its answer for a batch > 1
    depends on the thread count (measured: 1e-3 apart at N=3 with 1 and 2 threads). onnxc
    quantizes the batch's hidden states together, as onnxruntime's single thread does."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feed)


def close_to_ort(model, feed, tmp_path):
    """Same quantization of every GEMM operand as onnxruntime, so the two differ by float rounding
    only (1e-6 of the output), far below what int8 costs against float (~3e-2 here)."""
    ref, got = ort_1thread(model, feed), run_c(model, feed, tmp_path)
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=2e-6 * max(1.0, float(np.abs(r).max())))


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("per_column", [False, True])
def test_dynamic_quantize_lstm(direction, per_column, tmp_path):
    close_to_ort(*dq_lstm(direction=direction, per_column=per_column, seed=len(direction) + per_column), tmp_path)


@pytest.mark.parametrize("kw", [dict(u8=True), dict(h0=True, peep=True), dict(N=1, T=1, I=3, H=1),
                                dict(N=5, T=3, I=33, H=17, clip=0.8)], ids=["u8", "state_peep", "tiny", "odd_clip"])
def test_dynamic_quantize_lstm_forms(kw, tmp_path):
    close_to_ort(*dq_lstm(**kw), tmp_path)


def test_integer_gemms_are_identical_on_every_isa(tmp_path):
    """Both gate GEMMs (X of all steps at once: 15 rows, AMX tiles at native; the hidden states
    per step: 3 rows, the VNNI fallback) run on onnxc_qgemm with W and R packed at compile time.
    Integer sums are exact and each output is (float)acc * (a_scale * w_scale[n]) on every ISA,
    so the outputs are bit-identical across ISA rows, the portable one included (and, checked
    when this moved off the former portable int32 loop, bit-identical to it). Odd sizes: K = 70
    (a 64-wide K block + tail), 4H = 68 columns (a 16-column panel tail), uint8 weights with
    per-column zero points (onnxruntime refuses those, so only the ISAs are compared here)."""
    model, feed = dq_lstm(T=5, N=3, I=70, H=17, direction="bidirectional", per_column=True, u8=True, seed=5)
    outs = {}
    for isa in ["generic"] + [i for i in onnxc.cpu.runnable_isas() if i in ("avx2", "avx2vnni", "avx512vnni", "amx")]:
        m = onnxc.compile(model, output_dir=tmp_path / isa, fallback=False, target=isa)
        assert "onnxc_qgemm.h" in (m.build_dir / "model.c").read_text()
        outs[isa] = m.run(None, feed)
    for isa, got in outs.items():
        for g, r in zip(got, outs["generic"]):
            assert np.array_equal(g, r), isa


def test_non_constant_weights_are_named(tmp_path):
    model, feed = dq_lstm()
    w = [i for i in model.graph.initializer if i.name == "W"][0]
    model.graph.input.append(tensor_info("W", np.int8, list(w.dims)))
    model.graph.initializer.remove(w)
    with pytest.raises(onnxc.errors.UnsupportedError, match="DynamicQuantizeLSTM.*not a constant"):
        onnxc.compile(model, output_dir=tmp_path / "c", fallback=False)


def test_bad_weight_shape_is_a_model_error(tmp_path):
    model, _ = dq_lstm()
    for i in model.graph.initializer:
        if i.name == "W":
            i.CopyFrom(numpy_helper.from_array(np.zeros((1, 4, 48), np.int8), "W"))
    with pytest.raises(onnxc.errors.ModelError, match=r"DynamicQuantizeLSTM.*W.*\(1, 20, 48\)"):
        onnxc.compile(model, output_dir=tmp_path / "c")


def ocr_model(T=16, seed=0):
    """A CRNN-style recognizer: two convolutions over a 32 x (4T) text line, the columns as a
    sequence into a bidirectional LSTM, a per-step classifier."""
    rng = np.random.default_rng(seed)
    C1, C2, H, K = 8, 16, 24, 11
    W = 4 * T
    f = lambda *s: (rng.standard_normal(s) * (2.0 / np.prod(s[1:])) ** 0.5).astype(np.float32)  # noqa: E731
    inits = {"c1": f(C1, 1, 3, 3), "b1": np.zeros(C1, np.float32), "c2": f(C2, C1, 3, 3),
             "b2": np.zeros(C2, np.float32), "shape": np.array([0, C2 * 8, T], np.int64),
             "W": f(2, 4 * H, C2 * 8) * 2, "R": f(2, 4 * H, H) * 2,
             "B": (rng.standard_normal((2, 8 * H)) * 0.1).astype(np.float32), "fc": f(2 * H, K),
             "fcb": np.zeros(K, np.float32), "yshape": np.array([T, 0, 2 * H], np.int64)}
    nodes = [helper.make_node("Conv", ["x", "c1", "b1"], ["a1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "c2", "b2"], ["a2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a2"], ["r2"]),
             helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),  # [N, C2, 8, T]
             helper.make_node("Reshape", ["p2", "shape"], ["s1"]),  # [N, C2*8, T]
             helper.make_node("Transpose", ["s1"], ["seq"], perm=[2, 0, 1]),  # [T, N, C2*8]
             helper.make_node("LSTM", ["seq", "W", "R", "B"], ["y"], hidden_size=H, direction="bidirectional"),
             helper.make_node("Transpose", ["y"], ["yt"], perm=[0, 2, 1, 3]),  # [T, N, 2, H]
             helper.make_node("Reshape", ["yt", "yshape"], ["feat"]),
             helper.make_node("MatMul", ["feat", "fc"], ["logits0"]),
             helper.make_node("Add", ["logits0", "fcb"], ["logits"])]
    g = helper.make_graph(nodes, "ocr", [tensor_info("x", np.float32, [1, 1, 32, W])],
                          [tensor_info("logits", np.float32, [T, 1, K])],
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m, {"x": rng.random((1, 1, 32, W)).astype(np.float32)}


def test_quantize_dynamic_cnn_lstm_runs_in_c(tmp_path):
    """Issue 13: onnxruntime's quantize_dynamic of a CNN+LSTM (ConvInteger, DynamicQuantizeLinear,
    DynamicQuantizeLSTM, MatMulInteger) compiles with fallback=False; against onnxruntime it is off
    by far less than the int8 model is off float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    model, feed = ocr_model()
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, src)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    q = onnx.load(dst)
    ops = {n.op_type for n in q.graph.node}
    assert {"ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeLSTM", "MatMulInteger"} <= ops, ops
    ref, got, flt = ort_run(q, feed)[0], run_c(q, feed, tmp_path)[0], ort_run(model, feed)[0]
    scale = float(np.abs(flt).max())
    int8_err = float(np.abs(ref - flt).max()) / scale
    diff = float(np.abs(got - ref).max()) / scale
    assert int8_err > 1e-3 and diff < 0.05 * int8_err, (diff, int8_err)
