"""int8 NHWC layout pass (compiler/passes/layout/int8_nhwc.py): int8 regions (QLinearConv,
QLinearAdd/Mul, QLinearSigmoid/LeakyRelu, QLinear(Global)AveragePool, QLinearConcat) keep NHWC, Transposes only at the
regions' borders.

Before/after: the same graph runs in the IR interpreter before and after the pass on the same
inputs, bit-exact (integer outputs), and both equal onnxruntime running the QOperator model;
cases where it must not fire or must stop at a border; and compiled models (every ISA row this
host runs, generic included) bit-exact with onnxruntime and with the same model compiled without
the layout level."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxc
from onnxc import cpu, frontend
from onnxc.ir import verify
from onnxc.ops.interp import run_graph
from onnxc.passes.capability import using
from onnxc.passes.layout.int8_nhwc import Int8NhwcLayout
from onnxc.providers import CProvider
from onnxc.target import resolve

from helpers import ort_run

MS = "com.microsoft"
ISAS = cpu.runnable_isas()


class QNet:
    """A QOperator-format int8 CNN builder (activations of one type, per-channel weights)."""

    def __init__(self, x_shape, dt, seed=0):
        self.rng = np.random.default_rng(seed)
        self.dt = np.dtype(dt)
        self.nodes, self.inits, self.n = [], {}, 0
        self.shapes = {}
        self.x_shape = list(x_shape)
        self.nodes.append(helper.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["q0"]))
        self.inits["x_s"] = np.array(0.02, np.float32)
        self.inits["x_z"] = self.zero()
        self.shapes["q0"] = list(x_shape)
        self.params = {"q0": ("x_s", "x_z")}

    def zero(self):
        return np.array(self.rng.integers(100, 140) if self.dt == np.uint8 else self.rng.integers(-10, 10), self.dt)

    def scale(self, name, s):
        self.n += 1
        sn, zn = f"{name}_s{self.n}", f"{name}_z{self.n}"
        self.inits[sn] = np.array(s, np.float32)
        self.inits[zn] = self.zero()
        return sn, zn

    def conv(self, x, m, k, group=1, stride=1, pad=None, y_scale=0.05):
        c = self.shapes[x][1]
        self.n += 1
        name = f"c{self.n}"
        w = self.rng.integers(-127, 128, (m, c // group, k, k)).astype(np.int8)
        ws = (self.rng.random(m) * 0.01 + 0.002).astype(np.float32)
        self.inits[name + "_w"] = w
        self.inits[name + "_ws"] = ws
        self.inits[name + "_wz"] = np.zeros(m, np.int8)
        self.inits[name + "_b"] = self.rng.integers(-2000, 2000, m).astype(np.int32)
        ys, yz = self.scale(name, y_scale)
        xs, xz = self.params[x]
        p = k // 2 if pad is None else pad
        self.nodes.append(helper.make_node(
            "QLinearConv", [x, xs, xz, name + "_w", name + "_ws", name + "_wz", ys, yz, name + "_b"], [name],
            kernel_shape=[k, k], pads=[p] * 4, strides=[stride] * 2, group=group, name=name))
        n, _, h, wd = self.shapes[x]
        self.shapes[name] = [n, m, (h + 2 * p - k) // stride + 1, (wd + 2 * p - k) // stride + 1]
        self.params[name] = (ys, yz)
        return name

    def ms(self, op, ins, shape, **attrs):
        """A com.microsoft QLinear op: ins = tensors (their scale/zero point are looked up)."""
        self.n += 1
        name = f"{op}{self.n}"
        ys, yz = self.scale(name, 0.06)
        if op == "QLinearConcat":
            args = [ys, yz] + [a for t in ins for a in (t, *self.params[t])]
        elif op in ("QLinearAdd", "QLinearMul"):
            args = [ins[0], *self.params[ins[0]], ins[1], *self.params[ins[1]], ys, yz]
        else:
            args = [ins[0], *self.params[ins[0]], ys, yz]
        self.nodes.append(helper.make_node(op, args, [name], domain=MS, name=name, **attrs))
        self.shapes[name] = shape
        self.params[name] = (ys, yz)
        return name

    def const_image(self, shape):
        """An 8-bit constant operand with its own scale and zero point."""
        self.n += 1
        name = f"k{self.n}"
        info = np.iinfo(self.dt)
        self.inits[name] = self.rng.integers(info.min, int(info.max) + 1, shape).astype(self.dt)
        self.params[name] = self.scale(name, 0.03)
        self.shapes[name] = list(shape)
        return name

    def model(self, outs):
        """outs: 8-bit values; each is dequantized to a float output (and kept as a raw one)."""
        outputs = []
        for o in outs:
            s, z = self.params[o]
            self.nodes.append(helper.make_node("DequantizeLinear", [o, s, z], [o + "_f"]))
            outputs.append(helper.make_tensor_value_info(o + "_f", onnx.TensorProto.FLOAT, self.shapes[o]))
            outputs.append(helper.make_tensor_value_info(
                o, onnx.helper.np_dtype_to_tensor_dtype(self.dt), self.shapes[o]))
        g = helper.make_graph(self.nodes, "qnet", [helper.make_tensor_value_info(
            "x", onnx.TensorProto.FLOAT, self.x_shape)], outputs,
            initializer=[numpy_helper.from_array(v, k) for k, v in self.inits.items()])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(MS, 1)])
        m.ir_version = 8
        return m

    def feed(self):
        return {"x": self.rng.standard_normal(self.x_shape).astype(np.float32) * 2}


def mobilenet_block(dt, seed=0):
    """stem conv -> [1x1 expand -> depthwise -> 1x1 project] + residual add -> strided depthwise
    -> concat with a 1x1 branch -> global average pool; a side branch MaxPool (ceil_mode) -> conv
    -> QLinearLeakyRelu -> conv, and an inner value as a graph output."""
    q = QNet([1, 8, 12, 11], dt, seed)
    s = q.conv("q0", 16, 3)
    e = q.conv(s, 48, 1)
    d = q.conv(e, 48, 3, group=48)
    p = q.conv(d, 16, 1)
    a = q.ms("QLinearAdd", [s, p], q.shapes[s])
    d2 = q.conv(a, 16, 3, group=16, stride=2)
    b = q.conv(d2, 24, 1)
    c = q.ms("QLinearConcat", [d2, b], [1, 40] + q.shapes[d2][2:], axis=1)
    gp = q.ms("QLinearGlobalAveragePool", [c], [1, 40, 1, 1])
    q.nodes.append(helper.make_node("MaxPool", [a], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0],
                                    ceil_mode=1))
    q.shapes["mp"], q.params["mp"] = [1, 16, 6, 6], q.params[a]
    mc = q.conv("mp", 8, 3)
    lr = q.ms("QLinearLeakyRelu", [mc], q.shapes[mc], alpha=0.1)
    mc2 = q.conv(lr, 8, 1)
    return q, q.model([gp, d, mc2])


def _ops(g, op, domain=""):
    return [n for n in g.nodes if n.op_type == op and n.domain == domain]


def _run_pass(model, feed):
    """(graph, result, outputs before, outputs after, onnxruntime's)"""
    g = frontend.load(model)
    g.metadata["target"] = resolve("native")
    before = run_graph(g, feed)
    with using(CProvider()):
        res = Int8NhwcLayout().run(g)
    verify(g)
    after = run_graph(g, feed)
    return g, res, before, after, ort_run(model, feed)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_region_bit_exact_and_borders(dt):
    q, model = mobilenet_block(dt)
    feed = q.feed()
    g, res, before, after, ref = _run_pass(model, feed)
    assert res.modified
    for b, a, r in zip(before, after, ref):
        assert a.dtype == r.dtype and a.shape == r.shape
        np.testing.assert_array_equal(b, r)  # the interpreter before the pass is onnxruntime's
        np.testing.assert_array_equal(a, b)  # and the pass changes no bit
    # every conv, the Add, the Concat, the pools run NHWC
    assert not _ops(g, "QLinearConv") and len(_ops(g, "QLinearConv", MS)) == 8
    assert not _ops(g, "MaxPool") and len(_ops(g, "NhwcMaxPool", MS)) == 1
    assert all(n.attrs["channels_last"] == 1 for n in _ops(g, "QLinearConv", MS))
    assert _ops(g, "QLinearConcat", MS)[0].attrs["axis"] == 3
    assert _ops(g, "QLinearGlobalAveragePool", MS)[0].attrs["channels_last"] == 1
    assert len(_ops(g, "QLinearLeakyRelu", MS)) == 1 and _ops(g, "QLinearLeakyRelu", MS)[0].outputs[0].shape == (1, 6, 6, 8)
    # Transposes only at borders: into the stem (1), back for the pool output, the depthwise output
    # (graph output) and the last conv (3)
    tr = _ops(g, "Transpose")
    to_nhwc = [n for n in tr if n.attrs["perm"] == [0, 2, 3, 1]]
    to_nchw = [n for n in tr if n.attrs["perm"] == [0, 3, 1, 2]]
    assert len(to_nhwc) == 1 and len(to_nchw) == 3, [n.label for n in tr]
    assert not any(n.inputs[0].producer is not None and n.inputs[0].producer.op_type == "Transpose" for n in tr)


def test_squeeze_excitation_in_nhwc(tmp_path):
    """EfficientNet's SiLU and squeeze-excitation in int8: conv -> QLinearSigmoid, QLinearMul (the
    SiLU), global pool -> 1x1 conv -> QLinearSigmoid (the gate, [1, C, 1, 1]) -> QLinearMul
    broadcasting it over the image, and a QLinearAdd of a constant [1, C, 1, 1]: all NHWC (the
    per-channel operands as [1, 1, 1, C]), bit-exact before/after, and compiled."""
    q = QNet([1, 8, 6, 7], np.uint8, seed=3)
    c = q.conv("q0", 16, 3)
    sg = q.ms("QLinearSigmoid", [c], q.shapes[c])
    si = q.ms("QLinearMul", [c, sg], q.shapes[c])
    gp = q.ms("QLinearGlobalAveragePool", [si], [1, 16, 1, 1])
    gate = q.ms("QLinearSigmoid", [q.conv(gp, 16, 1)], [1, 16, 1, 1])
    se = q.ms("QLinearMul", [si, gate], q.shapes[c])
    a = q.ms("QLinearAdd", [se, q.const_image([1, 16, 1, 1])], q.shapes[c])
    model = q.model([a])
    feed = q.feed()
    g, res, before, after, ref = _run_pass(model, feed)
    assert res.modified
    assert len(_ops(g, "QLinearSigmoid", MS)) == 2 and len(_ops(g, "QLinearMul", MS)) == 2
    tr = _ops(g, "Transpose")
    assert [n.attrs["perm"] for n in tr] == [[0, 2, 3, 1], [0, 3, 1, 2]], [n.label for n in tr]
    (add,) = _ops(g, "QLinearAdd", MS)
    assert add.inputs[3].is_const and add.inputs[3].shape == (1, 1, 1, 16)
    for b, a_, r in zip(before, after, ref):
        np.testing.assert_array_equal(b, r)
        np.testing.assert_array_equal(a_, b)
    m = onnxc.compile(model, output_dir=tmp_path / "c", fallback=False)
    for got, r in zip(m.run(None, feed), ref):
        np.testing.assert_array_equal(got, r)


def test_scalar_operand_and_constant_image_operand():
    """One-element operands stay as they are; a constant full-shape operand is transposed at
    compile time (no Transpose node)."""
    q = QNet([1, 8, 6, 7], np.int8, seed=4)
    c = q.conv("q0", 16, 3)
    one = q.const_image([1])
    m = q.ms("QLinearMul", [c, one], q.shapes[c])
    full = q.const_image(q.shapes[c])
    a = q.ms("QLinearAdd", [full, m], q.shapes[c])
    model = q.model([a])
    g, res, before, after, ref = _run_pass(model, q.feed())
    assert res.modified and len(_ops(g, "Transpose")) == 2  # into the conv, out of the Add
    assert _ops(g, "QLinearAdd", MS)[0].inputs[0].is_const
    for b, a_, r in zip(before, after, ref):
        np.testing.assert_array_equal(b, r)
        np.testing.assert_array_equal(a_, b)


def test_does_not_fire_without_conv():
    """No QLinearConv: nothing to seed a region (an Add alone gains nothing from NHWC)."""
    q = QNet([1, 8, 6, 7], np.uint8, seed=5)
    k = q.const_image([1, 8, 6, 7])
    a = q.ms("QLinearAdd", ["q0", k], [1, 8, 6, 7])
    model = q.model([a])
    g, res, before, after, ref = _run_pass(model, q.feed())
    assert not res.modified and not _ops(g, "Transpose")


def test_conv1d_stays_nchw():
    """A 1-D QLinearConv (rank-3 input) is not rewritten."""
    rng = np.random.default_rng(6)
    inits = {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8),
             "w": rng.integers(-127, 128, (8, 4, 3)).astype(np.int8), "ws": np.array(0.01, np.float32),
             "wz": np.array(0, np.int8), "ys": np.array(0.05, np.float32), "yz": np.array(120, np.uint8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["q"]),
             helper.make_node("QLinearConv", ["q", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1])]
    g = helper.make_graph(nodes, "c1", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 9])],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1, 8, 9])],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 8
    feed = {"x": rng.standard_normal((1, 4, 9)).astype(np.float32)}
    _, res, before, after, ref = _run_pass(model, feed)
    assert not res.modified
    np.testing.assert_array_equal(after[0], ref[0])


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_compiled_bit_exact(tmp_path, isa, dt):
    """Compiled with the layout level (NHWC regions) on every ISA row: bit-exact with
    onnxruntime; on the generic row also the extended level (per-node transposes)."""
    q, model = mobilenet_block(dt, seed=7)
    feed = q.feed()
    ref = ort_run(model, feed)
    lay = onnxc.compile(model, output_dir=tmp_path / "layout", target=isa, fallback=False, opt_level="layout")
    assert lay.report["op_counts"].get("com.microsoft.QLinearConv") == 8, lay.report["op_counts"]
    assert lay.report["op_counts"].get("Transpose") == 4, lay.report["op_counts"]
    builds = [lay]
    if isa == "generic":
        builds.append(onnxc.compile(model, output_dir=tmp_path / "extended", target=isa, fallback=False,
                                    opt_level="extended"))
    for m in builds:
        for a, r in zip(m.run(None, feed), ref):
            np.testing.assert_array_equal(a, r)


MAXPOOLS = [  # (kernel, strides, pads, dilations, ceil_mode)
    ([3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0),
    ([2, 2], [2, 2], [0, 0, 0, 0], [1, 1], 1),
    ([3, 2], [1, 2], [1, 0, 0, 1], [1, 1], 0),
    ([3, 3], [2, 1], [2, 2, 2, 2], [2, 2], 1),
    ([5, 5], [3, 3], [0, 0, 0, 0], [1, 1], 1),
]


def _maxpool_model(dt, cases, seed):
    """A conv feeding one MaxPool per case, each a graph output."""
    q = QNet([2, 8, 13, 10], dt, seed)
    c = q.conv("q0", 20, 3)
    outs = []
    for i, (k, s, p, d, ceil) in enumerate(cases):
        q.nodes.append(helper.make_node("MaxPool", [c], [f"mp{i}"], kernel_shape=k, strides=s, pads=p, dilations=d,
                                        ceil_mode=ceil))
        q.shapes[f"mp{i}"], q.params[f"mp{i}"] = None, q.params[c]
        outs.append(f"mp{i}")
    model = q.model(outs)
    for o in model.graph.output:  # shapes from onnx
        o.type.tensor_type.ClearField("shape")
    return q, onnx.shape_inference.infer_shapes(model, strict_mode=True)


@pytest.mark.parametrize("case", range(len(MAXPOOLS)))
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_maxpool_nhwc(case, dt):
    """MaxPool on the NHWC tensor (com.microsoft.NhwcMaxPool, pads resolved): strides, pads,
    dilations, ceil_mode; bit-exact before/after and with onnxruntime."""
    q, model = _maxpool_model(dt, [MAXPOOLS[case]], seed=case)
    g, res, before, after, ref = _run_pass(model, q.feed())
    assert len(_ops(g, "NhwcMaxPool", MS)) == 1 and not _ops(g, "MaxPool")
    for b, a, r in zip(before, after, ref):
        np.testing.assert_array_equal(b, r)
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("isa", sorted({"generic", ISAS[-1]}))
@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_maxpool_nhwc_compiled(tmp_path, isa, dt):
    """The C NhwcMaxPool on every geometry above (one model), against onnxruntime."""
    q, model = _maxpool_model(dt, MAXPOOLS, seed=10)
    feed = q.feed()
    m = onnxc.compile(model, output_dir=tmp_path / "m", target=isa, fallback=False)
    assert m.report["op_counts"].get("com.microsoft.NhwcMaxPool") == len(MAXPOOLS), m.report["op_counts"]
    for a, r in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_average_pool_nhwc(tmp_path, dt):
    """QLinearAveragePool (com.microsoft) in a region gets channels_last = 1: bit-exact before/after
    the pass, with onnxruntime, and compiled."""
    q = QNet([1, 8, 9, 10], dt, seed=21)
    c = q.conv("q0", 24, 3)
    ap = q.ms("QLinearAveragePool", [c], [1, 24, 5, 5], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
              count_include_pad=0)
    c2 = q.conv(ap, 16, 1)
    model = q.model([c2])
    feed = q.feed()
    g, res, before, after, ref = _run_pass(model, feed)
    pools = _ops(g, "QLinearAveragePool", MS)
    assert len(pools) == 1 and pools[0].attrs["channels_last"] == 1 and len(_ops(g, "Transpose")) == 2
    for b, a, r in zip(before, after, ref):
        np.testing.assert_array_equal(b, r)
        np.testing.assert_array_equal(a, b)
    m = onnxc.compile(model, output_dir=tmp_path / "m", fallback=False)
    for a, r in zip(m.run(None, feed), ref):
        np.testing.assert_array_equal(a, r)
