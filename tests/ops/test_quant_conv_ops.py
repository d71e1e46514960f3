"""QLinearConv and ConvInteger compiled to C (compiler/ops/quant_conv.py,
compiler/providers/c/quant_conv.py on runtime_c/qconv) with fallback=False, against onnxruntime
bit for bit, for every ISA row this host runs (onnxc.cpu.runnable_isas(), generic included):
each row's module packs the weights for its own kernel. The cases sit side by side in one model
per activation type (one compile per row): 1x1 (DIRECT), 3x3/5x5/7x7 with pads (IMPLICIT,
IM2COL), strides, dilations, asymmetric pads, auto_pad, groups, depthwise, 1-D, batches, channel
counts at vector and tile edges (AMX tiles: 64 channels), uint8 and int8 weights, per-tensor and
per-channel scales, zero points, bias, outputs that saturate at both ends.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxc
from onnxc import cpu
from onnxc.errors import ModelError, UnsupportedError
from onnxc.ops import quant_conv as QOP

from helpers import make_model, ort_run, tensor_info

ISAS = cpu.runnable_isas()

# (name, N, C, H, W (None: 1-D), M, kernel, attrs)
CASES = [
    ("k3p1", 1, 16, 9, 10, 24, 3, dict(pads=[1, 1, 1, 1])),
    ("k5s2asym", 1, 12, 11, 13, 20, 5, dict(strides=[2, 2], pads=[2, 1, 0, 2])),
    ("k1", 2, 32, 7, 5, 40, 1, {}),
    ("k1s2", 1, 24, 9, 9, 17, 1, dict(strides=[2, 2])),
    ("dw3", 1, 32, 10, 9, 32, 3, dict(pads=[1, 1, 1, 1], group=32)),
    ("dw3s2d2", 1, 24, 13, 12, 24, 3, dict(strides=[2, 2], dilations=[2, 2], pads=[2, 2, 2, 2], group=24)),
    ("dw5", 2, 20, 8, 8, 20, 5, dict(pads=[2, 2, 2, 2], group=20)),
    # channel tails (not multiples of 8 / 16) through the avx2 kernel's paired rows (stride 1)
    ("dw3tail", 1, 19, 9, 14, 19, 3, dict(pads=[1, 1, 1, 1], group=19)),
    ("dw5tail", 1, 13, 11, 12, 13, 5, dict(pads=[1, 2, 3, 2], group=13)),
    ("dw3s2tail", 1, 21, 11, 13, 21, 3, dict(strides=[2, 2], pads=[1, 1, 1, 1], group=21)),
    ("grouped", 1, 16, 8, 9, 32, 3, dict(pads=[1, 0, 1, 1], group=4)),
    ("dil2", 1, 20, 12, 11, 33, 3, dict(dilations=[2, 2], pads=[2, 2, 2, 2])),
    ("same_upper", 1, 8, 9, 10, 16, 3, dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ("valid7", 1, 3, 16, 15, 16, 7, dict(strides=[2, 2], auto_pad="VALID")),
    ("amx64", 1, 64, 8, 8, 72, 3, dict(pads=[1, 1, 1, 1])),
    ("conv1d", 1, 12, None, 17, 20, 3, dict(pads=[1, 2], strides=[1])),
]


def _kshape(k, H):
    return [k] if H is None else [k, k]


def _case_inputs(rng, name, N, C, H, W, M, k, attrs, xdt, wdt, per_channel):
    grp = attrs.get("group", 1)
    xs = [N, C] + ([W] if H is None else [H, W])
    x = rng.integers(np.iinfo(xdt).min, int(np.iinfo(xdt).max) + 1, xs).astype(xdt)
    w = rng.integers(np.iinfo(wdt).min, int(np.iinfo(wdt).max) + 1, [M, C // grp] + _kshape(k, H)).astype(wdt)
    ws = ((rng.random(M) * 0.01 + 0.002) if per_channel else np.array(0.005)).astype(np.float32)
    # onnxruntime's QLinearConv needs one weight zero point for all channels: per-channel arrays
    # hold one repeated value (0 for int8 weights, onnxruntime's symmetric kernels, on half the cases)
    lo, hi = int(np.iinfo(wdt).min), int(np.iinfo(wdt).max) + 1
    wz0 = 0 if wdt == np.int8 and rng.random() < 0.5 else int(rng.integers(lo, hi))
    wz = np.full(M, wz0, wdt) if per_channel else np.array(wz0, wdt)
    xz = np.array(rng.integers(np.iinfo(xdt).min, int(np.iinfo(xdt).max) + 1), xdt)
    # a small y_scale on some cases: outputs saturate at both ends
    ys = np.array(0.004 if name in ("k3p1", "dw3") else (0.05 if grp < C else 0.03), np.float32)
    yz = np.array(rng.integers(np.iinfo(xdt).min // 2, np.iinfo(xdt).max // 2 + 1), xdt)
    bias = rng.integers(-4000, 4000, M).astype(np.int32) if rng.random() < 0.7 else None
    return x, np.array(0.02, np.float32), xz, w, ws, wz, ys, yz, bias


def qlinear_model(xdt, wdt, seed):
    """One model with every case as its own QLinearConv (input x_<name>, output y_<name>)."""
    rng = np.random.default_rng(seed)
    nodes, inputs, outputs, inits, feed = [], [], [], {}, {}
    for i, (name, N, C, H, W, M, k, attrs) in enumerate(CASES):
        x, xs, xz, w, ws, wz, ys, yz, bias = _case_inputs(rng, name, N, C, H, W, M, k, attrs, xdt, wdt, i % 2 == 1)
        p = f"{name}_"
        ins = ["x_" + name] + [p + s for s in ("xs", "xz", "w", "ws", "wz", "ys", "yz")]
        ins += [p + "b"] if bias is not None else []
        a = dict(attrs)
        if "auto_pad" not in a:
            a["kernel_shape"] = _kshape(k, H)
        nodes.append(helper.make_node("QLinearConv", ins, ["y_" + name], name=name, **a))
        for s, v in zip(("xs", "xz", "w", "ws", "wz", "ys", "yz", "b"), (xs, xz, w, ws, wz, ys, yz, bias)):
            if v is not None:
                inits[p + s] = v
        inputs.append(("x_" + name, xdt, list(x.shape)))
        outputs.append(("y_" + name, xdt, None))
        feed["x_" + name] = x
    return make_model(nodes, inputs, outputs, inits), feed


def compile_c(model, out_dir, isa):
    return onnxc.compile(model, output_dir=out_dir, fallback=False, target=isa)


def _compare(model, feed, tmp_path, isa, ref=None):
    want = ref if ref is not None else ort_run(model, feed)
    got = compile_c(model, tmp_path / isa, isa).run(None, feed)
    names = [o.name for o in model.graph.output]
    for n, g, r in zip(names, got, want):
        assert g.dtype == r.dtype and g.shape == r.shape, f"[{isa}] {n}: {g.dtype}{g.shape} vs {r.dtype}{r.shape}"
        if not np.array_equal(g, r):
            d = np.abs(g.astype(np.int64) - r.astype(np.int64))
            pytest.fail(f"[{isa}] {n}: {np.count_nonzero(d)} of {d.size} differ, max {d.max()}")


_MODELS = {}


def _model(key, make):
    if key not in _MODELS:
        model, feed = make()
        _MODELS[key] = (model, feed, ort_run(model, feed))
    return _MODELS[key]


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)],
                         ids=["u8s8", "u8u8", "s8s8"])
def test_qlinearconv_matches_onnxruntime(isa, xdt, wdt, tmp_path):
    seed = 11 + (xdt == np.int8) + 2 * (wdt == np.uint8)
    model, feed, want = _model(("q", xdt, wdt), lambda: qlinear_model(xdt, wdt, seed))
    _compare(model, feed, tmp_path, isa, want)


def convinteger_model(xdt, wdt, seed):
    rng = np.random.default_rng(seed)
    nodes, inputs, outputs, inits, feed = [], [], [], {}, {}
    for i, (name, N, C, H, W, M, k, attrs) in enumerate(CASES):
        grp = attrs.get("group", 1)
        xshape = [N, C] + ([W] if H is None else [H, W])
        x = rng.integers(np.iinfo(xdt).min, int(np.iinfo(xdt).max) + 1, xshape).astype(xdt)
        w = rng.integers(np.iinfo(wdt).min, int(np.iinfo(wdt).max) + 1, [M, C // grp] + _kshape(k, H)).astype(wdt)
        a = dict(attrs)
        if "auto_pad" not in a:
            a["kernel_shape"] = _kshape(k, H)
        ins = ["x_" + name, name + "_w"]
        inits[name + "_w"] = w
        if i % 3 != 2:  # some without zero points (0)
            ins.append(name + "_xz")
            inits[name + "_xz"] = np.array(rng.integers(np.iinfo(xdt).min, int(np.iinfo(xdt).max) + 1), xdt)
            if i % 3 == 1:
                ins.append(name + "_wz")
                inits[name + "_wz"] = np.array(rng.integers(np.iinfo(wdt).min, int(np.iinfo(wdt).max) + 1), wdt)
        nodes.append(helper.make_node("ConvInteger", ins, ["y_" + name], name=name, **a))
        inputs.append(("x_" + name, xdt, list(x.shape)))
        outputs.append(("y_" + name, np.int32, None))
        feed["x_" + name] = x
    return make_model(nodes, inputs, outputs, inits), feed


@pytest.mark.parametrize("isa", ISAS)
def test_convinteger_matches_onnxruntime(isa, tmp_path):
    """ConvInteger uint8 x uint8 (what onnxruntime's CPU kernel takes): int32 identical."""
    model, feed, want = _model(("ci", np.uint8, np.uint8), lambda: convinteger_model(np.uint8, np.uint8, 5))
    _compare(model, feed, tmp_path, isa, want)


@pytest.mark.parametrize("xdt,wdt", [(np.uint8, np.int8), (np.int8, np.int8), (np.int8, np.uint8)],
                         ids=["u8s8", "s8s8", "s8u8"])
def test_convinteger_other_types_match_onnx_reference(xdt, wdt, tmp_path):
    """The type pairs onnxruntime's ConvInteger lacks: against onnx.reference (int64 numpy
    there), on the host's best row and generic."""
    from onnx.reference import ReferenceEvaluator
    model, feed = convinteger_model(xdt, wdt, 7)
    want = ReferenceEvaluator(model).run(None, feed)
    want = [np.asarray(r, np.int32) for r in want]
    for isa in dict.fromkeys(["generic", ISAS[-1]]):
        _compare(model, feed, tmp_path, isa, want)


def test_numpy_references_match_onnxruntime():
    """ops/quant_conv.py's references (constant folding) agree with onnxruntime bit for bit."""
    model, feed, want = _model(("q", np.uint8, np.int8), lambda: qlinear_model(np.uint8, np.int8, 11))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}

    class N:  # the little of an IR node the references read
        def __init__(self, proto):
            self.op_type, self.domain, self.opset = proto.op_type, "", 18
            self.attrs = {a.name: helper.get_attribute_value(a) for a in proto.attribute}
            self.attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.attrs.items()}
    vals = {**inits, **feed}
    for proto, w in zip(model.graph.node, want):
        args = [vals[n] for n in proto.input]
        got = QOP._qlinear_conv_ref(N(proto), *args)[0]
        np.testing.assert_array_equal(got, w, err_msg=proto.name)


def test_bad_quantization_parameters_refused(tmp_path):
    """A w_scale whose length is neither 1 nor M is a ModelError naming the node and the shape."""
    x = np.zeros((1, 4, 5, 5), np.uint8)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], name="qc",
                            kernel_shape=[3, 3])
    inits = {"xs": np.array(0.1, np.float32), "xz": np.array(0, np.uint8), "w": np.ones((6, 4, 3, 3), np.int8),
             "ws": np.ones(5, np.float32), "wz": np.array(0, np.int8), "ys": np.array(0.2, np.float32),
             "yz": np.array(0, np.uint8)}
    graph = helper.make_graph([node], "bad", [helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, x.shape)],
                              [tensor_info("y", np.uint8, [1, 6, 3, 3])],
                              initializer=[onnx.numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    with pytest.raises(ModelError, match=r"qc.*QLinearConv.*ws.*\(5,\).*6 values"):
        onnxc.compile(model, output_dir=tmp_path / "o", fallback=False)


def runtime_params_model(seed):
    """QLinearConv / ConvInteger whose weights, zero points and scales are graph inputs (as in
    the ONNX node tests): packed by the C packer on every run."""
    rng = np.random.default_rng(seed)
    nodes, inputs, outputs, feed = [], [], [], {}
    for name, C, M, k, attrs, per_ch in (("rk3", 16, 24, 3, dict(pads=[1, 1, 1, 1]), True),
                                         ("rdw", 32, 32, 3, dict(pads=[1, 0, 1, 1], group=32), True),
                                         ("rg", 12, 20, 5, dict(strides=[2, 2], pads=[2, 2, 1, 1], group=2), False)):
        grp = attrs.get("group", 1)
        x = rng.integers(0, 256, (1, C, 11, 10)).astype(np.uint8)
        w = rng.integers(-128, 128, (M, C // grp, k, k)).astype(np.int8)
        vals = {"x": x, "xs": np.array(0.03, np.float32), "xz": np.array(rng.integers(0, 256), np.uint8), "w": w,
                "ws": (rng.random(M) * 0.01 + 0.002).astype(np.float32) if per_ch else np.array(0.004, np.float32),
                "wz": np.zeros(M, np.int8) if per_ch else np.array(3, np.int8),
                "ys": np.array(0.06, np.float32), "yz": np.array(rng.integers(0, 256), np.uint8),
                "b": rng.integers(-3000, 3000, M).astype(np.int32)}
        names = [f"{name}_{s}" for s in vals]
        nodes.append(helper.make_node("QLinearConv", names, [f"y_{name}"], name=name, kernel_shape=[k, k], **attrs))
        for n, v in zip(names, vals.values()):
            inputs.append((n, v.dtype, list(v.shape)))
            feed[n] = v
        outputs.append((f"y_{name}", np.uint8, None))
    x = rng.integers(0, 256, (2, 8, 7, 9)).astype(np.uint8)
    w = rng.integers(0, 256, (12, 8, 3, 3)).astype(np.uint8)
    ci = {"ci_x": x, "ci_w": w, "ci_xz": np.array(77, np.uint8), "ci_wz": np.array(140, np.uint8)}
    nodes.append(helper.make_node("ConvInteger", list(ci), ["y_ci"], name="ci", kernel_shape=[3, 3], pads=[0, 1, 2, 1]))
    for n, v in ci.items():
        inputs.append((n, v.dtype, list(v.shape)))
        feed[n] = v
    outputs.append(("y_ci", np.int32, None))
    return make_model(nodes, inputs, outputs), feed


@pytest.mark.parametrize("isa", ISAS)
def test_runtime_weights_and_parameters(isa, tmp_path):
    """Weights, zero points and scales fed at run time: bit-exact with onnxruntime (the ONNX
    node tests' QLinearConv and ConvInteger cases pass in C the same way)."""
    model, feed, want = _model(("rt",), lambda: runtime_params_model(9))
    _compare(model, feed, tmp_path, isa, want)


# ---------------------------------------------------------------------------------------------
# a small CNN quantized by onnxruntime.quantization.quantize_static in QOperator format
# ---------------------------------------------------------------------------------------------

def _float_cnn(rng):
    """Conv 3->16 3x3 + Relu, Conv 16->32 3x3/2 + Relu, depthwise 3x3 + Relu, Conv 1x1 32->24,
    GlobalAveragePool, Flatten, Gemm 24->10."""
    def conv(name, x, m, c, k, **a):
        w = (rng.standard_normal((m, c // a.get("group", 1), k, k)) * (2.0 / (c * k * k)) ** 0.5).astype(np.float32)
        b = (rng.standard_normal(m) * 0.1).astype(np.float32)
        inits[name + "_w"], inits[name + "_b"] = w, b
        return helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], name=name, kernel_shape=[k, k], **a)
    inits = {}
    nodes = [conv("c1", "x", 16, 3, 3, pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             conv("c2", "r1", 32, 16, 3, pads=[1, 1, 1, 1], strides=[2, 2]), helper.make_node("Relu", ["c2"], ["r2"]),
             conv("c3", "r2", 32, 32, 3, pads=[1, 1, 1, 1], group=32), helper.make_node("Relu", ["c3"], ["r3"]),
             conv("c4", "r3", 24, 32, 1),
             helper.make_node("GlobalAveragePool", ["c4"], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
             helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1)]
    inits["fc_w"] = (rng.standard_normal((10, 24)) * 0.3).astype(np.float32)
    inits["fc_b"] = np.zeros(10, np.float32)
    return make_model(nodes, [("x", np.float32, [1, 3, 20, 20])], [("y", np.float32, [1, 10])], inits, opset=13)


@pytest.mark.parametrize("act,per_channel", [("u8", False), ("u8", True), ("s8", True)])
def test_quantize_static_qoperator_cnn(act, per_channel, tmp_path):
    """quantize_static (QOperator: QLinearConv) of a small CNN compiles with fallback=False on
    the host's best row and generic; every QLinearConv output (uint8/int8) equals onnxruntime's,
    the float output agrees to float rounding."""
    quant = pytest.importorskip("onnxruntime.quantization")
    rng = np.random.default_rng(3)
    fmodel = _float_cnn(rng)
    calib = [{"x": rng.standard_normal((1, 3, 20, 20)).astype(np.float32)} for _ in range(4)]

    class Reader(quant.CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)
    fpath, qpath = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(fmodel, fpath)
    qt = quant.QuantType.QUInt8 if act == "u8" else quant.QuantType.QInt8
    quant.quantize_static(str(fpath), str(qpath), Reader(), quant_format=quant.QuantFormat.QOperator,
                          op_types_to_quantize=["Conv"], per_channel=per_channel, activation_type=qt,
                          weight_type=quant.QuantType.QInt8)
    qmodel = onnx.load(qpath)
    convs = [n for n in qmodel.graph.node if n.op_type == "QLinearConv"]
    assert len(convs) == 4, [n.op_type for n in qmodel.graph.node]
    for n in convs:  # expose the int8 tensors
        qmodel.graph.output.append(onnx.ValueInfoProto(name=n.output[0]))
    qmodel = onnx.shape_inference.infer_shapes(qmodel)
    feed = {"x": rng.standard_normal((1, 3, 20, 20)).astype(np.float32)}
    want = ort_run(qmodel, feed)
    for isa in dict.fromkeys(["generic", ISAS[-1]]):
        got = compile_c(qmodel, tmp_path / isa, isa).run(None, feed)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5, err_msg=f"[{isa}] y")
        for n, g, w in zip(convs, got[1:], want[1:]):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w, err_msg=f"[{isa}] {n.name}")
