"""QDQ fusion of a quantized CNN (compiler/passes/basic/fuse_qdq_ops.py): Conv (+ a Relu/Clip that
Q's range makes a no-op) -> QLinearConv, Add/Mul -> QLinearAdd/Mul, Concat -> QLinearConcat,
(Global)AveragePool -> QLinear*Pool,
and DequantizeLinear/QuantizeLinear dropped around MaxPool/Reshape/Transpose/Flatten.

Why "within 1 LSB": a fused node accumulates exactly in int32 and requantizes once with a float32
multiplier (sx * sw / sy), while the QDQ graph rounds a float32 sum of float32 products (and
QLinearAdd / QLinearAveragePool follow MLAS's own float formulas); the two roundings can land on
different sides of a half step, so one output element may differ by one step of the output scale,
never more for one node.  Against onnxruntime with its own QDQ fusion (the same integer
arithmetic) the whole model is bit-exact in the cases below; against its unfused float graph it
is within 1 LSB at the output.

Each hand-built case runs the graph before and after the pass (IR interpreter) against
onnxruntime on the original model (check_pass); the quantize_static models also compile with
fallback=False on every ISA the host runs.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from helpers import check_pass, ort_run
from onnxc import cpu
from onnxc.ops.interp import run_graph
from onnxc.passes.basic.fuse_qdq_ops import (DropQDQ, FuseQDQBinary, FuseQDQConcat, FuseQDQConv, FuseQDQPool,
                                             FuseQDQUnary)

F32 = np.float32
U8, S8 = TensorProto.UINT8, TensorProto.INT8


def _np(t):
    return np.uint8 if t == U8 else np.int8


def _qmin(t):
    return 0 if t == U8 else -128


def _graph(body, inputs, out_shape, inits, sy, zy, opset=21):
    """Each input x_i (float) -> Q(s_i, z_i) -> DQ -> ``body`` (reads "d0", "d1", ..., writes "f")
    -> Q(sy, zy) -> DQ -> y.  inputs: [(shape, scale, zero point of the input's type)]."""
    nodes, vis = [], []
    for i, (shape, s, z) in enumerate(inputs):
        inits[f"s{i}"], inits[f"z{i}"] = np.array(s, F32), z
        nodes += [helper.make_node("QuantizeLinear", [f"x{i}", f"s{i}", f"z{i}"], [f"q{i}"]),
                  helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"d{i}"])]
        vis.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(shape)))
    inits["sy"], inits["zy"] = np.array(sy, F32), zy
    nodes += body + [helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["yq"]),
                     helper.make_node("DequantizeLinear", ["yq", "sy", "zy"], ["y"])]
    g = helper.make_graph(nodes, "qdq", vis, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    return m


def _feed(inputs, seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    return {f"x{i}": (rng.standard_normal(shape) * scale).astype(F32) for i, (shape, _, _) in enumerate(inputs)}


def _conv_model(a_type=U8, w_type=S8, per_channel=True, bias="int32", act=None, y_type=None, group=1,
                zy=None, sy=0.04, clip=(0.0, 6.0)):
    rng = np.random.default_rng(1)
    C, M = 4, (4 if group > 1 else 6)
    w_np = _np(w_type)
    w = rng.integers(-127 if w_np is np.int8 else 0, 128 if w_np is np.int8 else 256,
                     (M, C // group, 3, 3)).astype(w_np)
    ws = (rng.uniform(0.5, 1.5, M) * 0.01).astype(F32) if per_channel else np.array(0.01, F32)
    wz = np.full(M if per_channel else (), 0 if w_np is np.int8 else 128, w_np)
    sx = 0.02
    zx = np.array(128 if a_type == U8 else 3, _np(a_type))
    y_type = y_type or a_type
    zy = np.array(_qmin(y_type) + 7 if zy is None else zy, _np(y_type))
    inits = {"w": w, "ws": ws, "wz": wz}
    body = [helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0)]
    ins = ["d0", "wd"]
    b = (rng.standard_normal(M) * 0.3).astype(F32)
    if bias == "int32":  # quantize_static's form
        inits["bq"], inits["bs"] = np.rint(b / (F32(sx) * ws)).astype(np.int32), (F32(sx) * ws).astype(F32)
        body.append(helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"], axis=0))
        ins.append("bd")
    elif bias == "other_scale":  # a bias shared with another layer (torch export): Identity of a
        # DequantizeLinear with that layer's scale; rounded again in units of this one's
        inits["bq"], inits["bs"] = np.rint(b / np.float32(0.0007)).astype(np.int32), np.array(0.0007, F32)
        body += [helper.make_node("DequantizeLinear", ["bq", "bs"], ["bd"]), helper.make_node("Identity", ["bd"], ["bi"])]
        ins.append("bi")
    elif bias == "float":
        inits["b"] = b
        ins.append("b")
    conv_out = "c" if act else "f"
    body.append(helper.make_node("Conv", ins, [conv_out], pads=[1, 1, 1, 1], group=group,
                                 strides=[2, 2] if group > 1 else [1, 1]))
    if act == "Relu":
        body.append(helper.make_node("Relu", ["c"], ["f"]))
    elif act == "Clip":
        inits["lo"], inits["hi"] = np.array(clip[0], F32), np.array(clip[1], F32)
        body.append(helper.make_node("Clip", ["c", "lo", "hi"], ["f"]))
    shape = (2, C, 7, 6)
    out = [2, M, 4, 3] if group > 1 else [2, M, 7, 6]
    inputs = [(shape, sx, zx)]
    return _graph(body, inputs, out, inits, sy, zy), _feed(inputs), sy


def _one_lsb(step):
    """One step of the output scale, plus the float32 rounding of the dequantized values."""
    return float(step) * (1 + 1e-4)


CONV_CASES = [dict(per_channel=True, bias="int32"), dict(per_channel=False, bias="int32"),
              dict(per_channel=True, bias="float"), dict(per_channel=False, bias="none"),
              dict(per_channel=True, bias="other_scale"),
              dict(a_type=S8, per_channel=True, bias="int32"), dict(a_type=S8, per_channel=False, bias="float"),
              dict(a_type=U8, w_type=U8, per_channel=False, bias="int32"),  # u8 x with u8 W: onnxruntime allows it
              dict(per_channel=True, bias="int32", group=4),  # depthwise, stride 2
              # a Relu is a no-op when Q's zero point is the type's minimum
              dict(act="Relu", zy=0, sy=6 / 255), dict(a_type=S8, act="Relu", zy=-128, sy=6 / 255),
              # Clip(0, 6) with Q's range exactly [0, 6] (Relu6 into a [0, 6] quantization)
              dict(act="Clip", zy=0, sy=6 / 255), dict(a_type=S8, act="Clip", zy=-128, sy=6 / 255),
              # Clip(-1, 9) wider than Q's range [0, 255 * 0.03]: saturation clips first
              dict(act="Clip", zy=0, sy=0.03, clip=(-1.0, 9.0))]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fuse_qdq_conv(case):
    m, feed, sy = _conv_model(**case)
    g, res = check_pass(m, FuseQDQConv(), feed, fires=True, rtol=0, atol=_one_lsb(sy))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QLinearConv") == 1 and "Conv" not in ops and "Relu" not in ops and "Clip" not in ops, ops
    # the input's Q/DQ stay (x is float), the output's DQ stays (y is float); none in between
    assert ops.count("DequantizeLinear") == 1 and ops.count("QuantizeLinear") == 1, ops
    assert res.details[0].endswith("QLinearConv" if "act" not in case else "a no-op given Q's range)")


KEPT = [(dict(act="Relu", zy=5), "Relu would change"),  # zero point above qmin: Relu clips real values
        (dict(act="Clip", zy=0, sy=6 / 255, clip=(0.0, 3.0)), "Clip would change"),  # Clip inside Q's range
        (dict(act="Clip", zy=0, sy=6 / 255, clip=(0.5, 6.0)), "Clip would change"),
        (dict(a_type=S8, w_type=U8), "int8 x with uint8 W"),
        (dict(a_type=U8, y_type=S8), "x is uint8, y int8")]


@pytest.mark.parametrize("case,why", KEPT, ids=[k[1] for k in KEPT])
def test_fuse_qdq_conv_kept(case, why):
    m, feed, sy = _conv_model(**case)
    g, res = check_pass(m, FuseQDQConv(), feed, fires=False, rtol=0, atol=0)
    assert "Conv" in [n.op_type for n in g.nodes]
    assert res.details == [] and len(res.notes) == 1 and why in res.notes[0], res.notes


@pytest.mark.parametrize("op", ["Add", "Mul"])
@pytest.mark.parametrize("a_type", [U8, S8])
@pytest.mark.parametrize("broadcast", [False, True])
def test_fuse_qdq_binary(op, a_type, broadcast):
    t = _np(a_type)
    inputs = [((2, 5, 4, 3), 0.03, np.array(_qmin(a_type) + 120, t)),
              ((1, 5, 1, 1) if broadcast else (2, 5, 4, 3), 0.05, np.array(_qmin(a_type) + 131, t))]
    m = _graph([helper.make_node(op, ["d0", "d1"], ["f"])], inputs, [2, 5, 4, 3], {}, 0.07,
               np.array(_qmin(a_type) + 125, t))
    g, res = check_pass(m, FuseQDQBinary(), _feed(inputs), fires=True, rtol=0, atol=_one_lsb(0.07))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QLinear" + op) == 1 and op not in ops and ops.count("DequantizeLinear") == 1, ops


@pytest.mark.parametrize("a_type", [U8, S8])
def test_fuse_qdq_concat(a_type):
    """Three inputs with their own scales (requantized to y's) and one sharing y's (copied)."""
    t = _np(a_type)
    inputs = [((2, 3, 4, 5), 0.03, np.array(_qmin(a_type) + 120, t)), ((2, 2, 4, 5), 0.05, np.array(_qmin(a_type) + 9, t)),
              ((2, 4, 4, 5), 0.04, np.array(_qmin(a_type) + 128, t))]
    m = _graph([helper.make_node("Concat", ["d0", "d1", "d2"], ["f"], axis=1)], inputs, [2, 9, 4, 5], {}, 0.04,
               np.array(_qmin(a_type) + 128, t))
    g, res = check_pass(m, FuseQDQConcat(), _feed(inputs), fires=True, rtol=0, atol=_one_lsb(0.04))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QLinearConcat") == 1 and "Concat" not in ops and ops.count("DequantizeLinear") == 1, ops


def test_fuse_qdq_add_mixed_types_kept():
    inputs = [((2, 5), 0.03, np.array(120, np.uint8)), ((2, 5), 0.05, np.array(3, np.int8))]
    m = _graph([helper.make_node("Add", ["d0", "d1"], ["f"])], inputs, [2, 5], {}, 0.07, np.array(125, np.uint8))
    g, res = check_pass(m, FuseQDQBinary(), _feed(inputs), fires=False, rtol=0, atol=0)
    assert "one type" in res.notes[0]


POOLS = [("GlobalAveragePool", {}, [2, 6, 1, 1]),
         ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), [2, 6, 4, 4]),
         ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
          [2, 6, 4, 4]),
         ("AveragePool", dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1), [2, 6, 4, 4])]


@pytest.mark.parametrize("a_type", [U8, S8])
@pytest.mark.parametrize("op,attrs,out", POOLS, ids=[f"{p[0]}{i}" for i, p in enumerate(POOLS)])
def test_fuse_qdq_pool(a_type, op, attrs, out):
    t = _np(a_type)
    inputs = [((2, 6, 7, 7), 0.03, np.array(_qmin(a_type) + 100, t))]
    m = _graph([helper.make_node(op, ["d0"], ["f"], **attrs)], inputs, out, {}, 0.02, np.array(_qmin(a_type) + 128, t))
    g, res = check_pass(m, FuseQDQPool(), _feed(inputs), fires=True, rtol=0, atol=_one_lsb(0.02))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QLinear" + op) == 1 and op not in ops and ops.count("QuantizeLinear") == 1, ops


UNARY = [("Sigmoid", {}, 1 / 255, 0), ("LeakyRelu", dict(alpha=0.1), 0.02, 100)]


@pytest.mark.parametrize("a_type", [U8, S8])
@pytest.mark.parametrize("op,attrs,sy,zy", UNARY, ids=[u[0] for u in UNARY])
def test_fuse_qdq_unary(a_type, op, attrs, sy, zy):
    """A 256-entry table of onnxruntime's logistic / LeakyRelu: within one step of the float graph,
    and onnxruntime's own QDQ run (which fuses the same way) bit for bit."""
    t = _np(a_type)
    inputs = [((2, 6, 7, 7), 0.03, np.array(_qmin(a_type) + 100, t))]
    m = _graph([helper.make_node(op, ["d0"], ["f"], **attrs)], inputs, [2, 6, 7, 7], {}, sy,
               np.array(_qmin(a_type) + zy, t))
    feed = _feed(inputs)
    g, res = check_pass(m, FuseQDQUnary(), feed, fires=True, rtol=0, atol=_one_lsb(sy))
    ops = [n.op_type for n in g.nodes]
    assert ops.count("QLinear" + op) == 1 and op not in ops and ops.count("QuantizeLinear") == 1, ops
    np.testing.assert_array_equal(run_graph(g, feed)[0], _ort_fused(m, feed)[0])


def test_fuse_qdq_unary_needs_one_type():
    inputs = [((2, 5), 0.03, np.array(120, np.uint8))]
    m = _graph([helper.make_node("Sigmoid", ["d0"], ["f"])], inputs, [2, 5], {}, 1 / 255, np.array(-128, np.int8))
    g, res = check_pass(m, FuseQDQUnary(), _feed(inputs), fires=False, rtol=0, atol=0)
    assert "of x's type" in res.notes[0]


DROPS = [("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2]), [], [2, 6, 3, 3]),
         ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), [], [2, 6, 4, 4]),
         ("Reshape", {}, [np.array([2, 6, 49], np.int64)], [2, 6, 49]),
         ("Transpose", dict(perm=[0, 2, 3, 1]), [], [2, 7, 7, 6]),
         ("Flatten", dict(axis=1), [], [2, 294]),
         ("Unsqueeze", {}, [np.array([2], np.int64)], [2, 6, 1, 7, 7]),
         ("Resize", dict(mode="nearest"), [None, np.array([1, 1, 2, 1.5], F32)], [2, 6, 14, 10]),
         ("Resize", dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
          [None, None, np.array([2, 6, 5, 9], np.int64)], [2, 6, 5, 9]),
         ("Slice", {}, [np.array([1, 0], np.int64), np.array([6, 7], np.int64), np.array([1, 3], np.int64),
                        np.array([2, 1], np.int64)], [2, 3, 7, 7]),
         ("Gather", dict(axis=1), [np.array([5, 0, 0, 3], np.int64)], [2, 4, 7, 7]),
         ("DepthToSpace", dict(blocksize=1), [], [2, 6, 7, 7]),
         ("SpaceToDepth", dict(blocksize=7), [], [2, 294, 1, 1])]


@pytest.mark.parametrize("a_type", [U8, S8])
@pytest.mark.parametrize("op,attrs,consts,out", DROPS, ids=[f"{d[0]}{i}" for i, d in enumerate(DROPS)])
def test_drop_qdq(a_type, op, attrs, consts, out):
    """Exact (atol 0): the op moves or selects 8-bit values, and Q(DQ(v)) = v for equal scale and
    zero point."""
    t = _np(a_type)
    z = np.array(_qmin(a_type) + 100, t)
    inputs = [((2, 6, 7, 7), 0.03, z)]
    inits = {f"k{i}": c for i, c in enumerate(consts) if c is not None}
    body = [helper.make_node(op, ["d0"] + [f"k{i}" if c is not None else "" for i, c in enumerate(consts)], ["f"],
                             **attrs)]
    m = _graph(body, inputs, out, inits, 0.03, z)
    g, res = check_pass(m, DropQDQ(), _feed(inputs), fires=True, rtol=0, atol=0)
    ops = [n.op_type for n in g.nodes]
    assert ops.count("DequantizeLinear") == 1 and ops.count("QuantizeLinear") == 1, ops
    mid = [n for n in g.nodes if n.op_type == op][0]
    assert mid.inputs[0].dtype == t and mid.outputs[0].dtype == t


def test_drop_qdq_keeps_an_interpolating_resize():
    z = np.array(100, np.uint8)
    inputs = [((2, 6, 7, 7), 0.03, z)]
    body = [helper.make_node("Resize", ["d0", "", "k"], ["f"], mode="linear")]
    m = _graph(body, inputs, [2, 6, 14, 14], {"k": np.array([1, 1, 2, 2], F32)}, 0.03, z)
    # (the interpreter's float Resize against onnxruntime's: one rounding apart, so 1 LSB)
    g, res = check_pass(m, DropQDQ(), _feed(inputs), fires=False, rtol=0, atol=_one_lsb(0.03))
    assert "interpolates" in res.notes[0]


def test_drop_qdq_needs_equal_parameters():
    z = np.array(100, np.uint8)
    inputs = [((2, 6, 7, 7), 0.03, z)]
    m = _graph([helper.make_node("MaxPool", ["d0"], ["f"], kernel_shape=[2, 2])], inputs, [2, 6, 6, 6], {}, 0.031, z)
    g, res = check_pass(m, DropQDQ(), _feed(inputs), fires=False, rtol=0, atol=0)
    assert "differ" in res.notes[0]


@pytest.mark.parametrize("a_type", [U8, S8])
def test_compiled_int8_maxpool_and_absorbed_clip(a_type, tmp_path):
    """The hand-built Conv + Clip case and an int8 MaxPool (the 8-bit C kernel), compiled
    entirely in C, against onnxruntime with and without its QDQ fusion."""
    m, feed, sy = _conv_model(a_type=a_type, act="Clip", zy=_qmin(a_type), sy=6 / 255)
    c = onnxc.compile(m, output_dir=tmp_path / "conv", opt_level="basic", fallback=False)
    assert c.fallback_nodes == [] and "QLinearConv" in c.report["op_counts"], c.report["op_counts"]
    for ref in (ort_run(m, feed)[0], _ort_fused(m, feed)[0]):
        assert np.abs(c.run(None, feed)[0] - ref).max() <= _one_lsb(sy)
    t = _np(a_type)
    z = np.array(_qmin(a_type) + 100, t)
    inputs = [((2, 6, 7, 7), 0.03, z)]
    m = _graph([helper.make_node("MaxPool", ["d0"], ["f"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
               inputs, [2, 6, 4, 4], {}, 0.03, z)
    c = onnxc.compile(m, output_dir=tmp_path / "pool", opt_level="basic", fallback=False)
    assert c.report["op_counts"].get("QuantizeLinear") == 1, c.report["op_counts"]
    feed = _feed(inputs)
    np.testing.assert_array_equal(c.run(None, feed)[0], ort_run(m, feed)[0])


@pytest.mark.parametrize("k", [i for i, d in enumerate(DROPS) if d[0] in ("Resize", "Slice", "Gather", "SpaceToDepth")])
def test_compiled_int8_data_movement(k, tmp_path):
    """The ops the drop adds run in C on the 8-bit tensor, bit-exact with onnxruntime."""
    op, attrs, consts, out = DROPS[k]
    z = np.array(100, np.uint8)
    inputs = [((2, 6, 7, 7), 0.03, z)]
    inits = {f"k{i}": c for i, c in enumerate(consts) if c is not None}
    body = [helper.make_node(op, ["d0"] + [f"k{i}" if c is not None else "" for i, c in enumerate(consts)], ["f"],
                             **attrs)]
    m = _graph(body, inputs, out, inits, 0.03, z)
    c = onnxc.compile(m, output_dir=tmp_path / "m", opt_level="basic", fallback=False)
    assert c.report["op_counts"].get("QuantizeLinear") == 1, c.report["op_counts"]
    feed = _feed(inputs, seed=k)
    np.testing.assert_array_equal(c.run(None, feed)[0], ort_run(m, feed)[0])


# --- quantize_static models -------------------------------------------------------------------------
def _ort_fused(model, feed):
    import onnxruntime as ort
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)


def _float_cnn():
    """Conv+Relu, MaxPool, Conv+Relu + residual Add, 1x1 Conv+Relu, AveragePool, Reshape,
    Transpose, Flatten, GlobalAveragePool, Gemm: every pattern of the pass in a quantize_static graph."""
    rng = np.random.default_rng(0)
    i = {"W1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "B1": rng.standard_normal(8) * 0.1,
         "W2": rng.standard_normal((8, 8, 3, 3)) * 0.2, "B2": rng.standard_normal(8) * 0.1,
         "W3": rng.standard_normal((12, 8, 1, 1)) * 0.3, "B3": rng.standard_normal(12) * 0.1,
         "WG": rng.standard_normal((10, 12)) * 0.3, "BG": rng.standard_normal(10) * 0.1}
    i = {k: v.astype(F32) for k, v in i.items()} | {"shape": np.array([1, 12, 16], np.int64)}
    n = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c1"], ["r1"]),
         helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Conv", ["p1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c2"], ["r2"]),
         helper.make_node("Add", ["r2", "p1"], ["s"]),
         helper.make_node("Conv", ["s", "W3", "B3"], ["c3"]),
         helper.make_node("Relu", ["c3"], ["r3"]),
         helper.make_node("AveragePool", ["r3"], ["a3"], kernel_shape=[2, 2], strides=[2, 2]),
         helper.make_node("Reshape", ["a3", "shape"], ["rs"]),
         helper.make_node("Transpose", ["rs"], ["tr"], perm=[0, 2, 1]),
         helper.make_node("Transpose", ["tr"], ["tr2"], perm=[0, 2, 1]),
         helper.make_node("Reshape", ["tr2", "shape4"], ["u"]),
         helper.make_node("GlobalAveragePool", ["u"], ["g"]),
         helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("Gemm", ["f", "WG", "BG"], ["y"], transB=1)]
    i["shape4"] = np.array([1, 12, 4, 4], np.int64)
    g = helper.make_graph(n, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                          [numpy_helper.from_array(v, k) for k, v in i.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return m


def _after_basic(model):
    """The model after onnxc's basic passes, as ONNX (QLinearConv, com.microsoft QLinear* nodes)."""
    from onnxc import frontend
    from onnxc.driver import optimize
    from onnxc.ir.onnx_export import to_model
    g = frontend.load(model)
    optimize(g, "basic")
    return to_model(g)


def _quantized(tmp_path, per_channel, a_type):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # random calibration data
        def __init__(self):
            rng = np.random.default_rng(1)
            self.it = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(F32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    onnx.save(_float_cnn(), tmp_path / "f.onnx")
    quantize_static(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QUInt8 if a_type == U8 else QuantType.QInt8)
    return onnx.load(str(tmp_path / "q.onnx"))


# The portable C path and the host's best ISA (the int8 kernels of each ISA are tested at tile edges
# in the kernel tests; one model per ISA here would cost a build each on a shared machine).
QS_CASES = [(True, U8, sorted({"generic", cpu.runnable_isas()[-1]})), (False, U8, ["native"]),
            (True, S8, ["native"]), (False, S8, ["native"])]


@pytest.mark.parametrize("per_channel,a_type,targets", QS_CASES,
                         ids=[f"{'pc' if c[0] else 'pt'}-{'u8' if c[1] == U8 else 's8'}" for c in QS_CASES])
def test_quantize_static_cnn(per_channel, a_type, targets, tmp_path):
    """(a) only the input's QuantizeLinear and the output's DequantizeLinear are left; (b) within
    1 LSB of the output scale of onnxruntime's float QDQ graph and of onnxruntime's own fusion
    (bit-exact with the latter for uint8 activations; with int8 activations onnxruntime's own
    fusion gives its float graph's result here, so it is 1 LSB off on a few elements like that);
    bit-exact with onnxruntime running the graph after onnxc's basic passes (the same QLinear*
    nodes: the C kernels match onnxruntime's); (c) entirely in C; (d) the level "none" build (no
    fusion, the QDQ graph in C) agrees within 1 LSB too."""
    m = _quantized(tmp_path, per_channel, a_type)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") >= 10  # a QDQ graph indeed
    out_scale = [numpy_helper.to_array(i) for i in m.graph.initializer if i.name == m.graph.node[-1].input[1]][0]
    rng = np.random.default_rng(11)
    feeds = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(F32) * s} for s in (1.0, 1.5, 3.0)]
    none = onnxc.compile(m, output_dir=tmp_path / "none", opt_level="none", fallback=False)
    fused_graph = _after_basic(m)
    assert none.fallback_nodes == []
    for target in targets:
        c = onnxc.compile(m, output_dir=tmp_path / f"basic-{target}", opt_level="basic", fallback=False,
                          target=target)
        assert c.fallback_nodes == []
        counts = c.report["op_counts"]
        assert counts.get("QuantizeLinear") == 1 and counts.get("DequantizeLinear") == 1, counts
        assert counts["QLinearConv"] == 3 and counts["com.microsoft.QLinearAdd"] == 1, counts
        assert not any(op in counts for op in ("Conv", "Add", "Gemm", "AveragePool", "GlobalAveragePool")), counts
        passes = c.report["passes"]
        assert passes["fuse_qdq_conv"]["rewrites"] == 3 and passes["fuse_qdq_pool"]["rewrites"] == 2
        assert passes["fuse_qdq_binary"]["rewrites"] == 1 and passes["drop_qdq"]["rewrites"] >= 5
        for feed in feeds:
            got = c.run(None, feed)[0]
            fused = _ort_fused(m, feed)[0]
            if a_type == U8:
                np.testing.assert_array_equal(got, fused, err_msg=f"{target} vs onnxruntime fused")
            np.testing.assert_array_equal(got, ort_run(fused_graph, feed)[0],
                                          err_msg=f"{target} vs onnxruntime on onnxc's fused graph")
            for what, ref in (("onnxruntime fused", fused), ("onnxruntime float QDQ", ort_run(m, feed)[0]),
                              ("level none", none.run(None, feed)[0])):
                d = np.abs(got.astype(np.float64) - ref) / float(out_scale)
                assert d.max() <= 1.0 + 1e-5, f"{target} vs {what}: {d.max()} steps"


def test_inspect_passes_reports_fusions(tmp_path, capsys):
    from onnxc.cli import main
    m, _, _ = _conv_model(act="Relu", zy=5)  # kept: the Relu is not a no-op
    onnx.save(m, tmp_path / "kept.onnx")
    assert main(["inspect", str(tmp_path / "kept.onnx"), "--passes", "-v"]) == 0
    out = capsys.readouterr().out
    assert "fuse_qdq_conv: kept" in out and "Relu would change the quantized result" in out
    m, _, _ = _conv_model(act="Relu", zy=0, sy=6 / 255)
    onnx.save(m, tmp_path / "fused.onnx")
    assert main(["inspect", str(tmp_path / "fused.onnx"), "--passes", "-v"]) == 0
    out = capsys.readouterr().out
    assert "QLinearConv (absorbed Relu" in out
