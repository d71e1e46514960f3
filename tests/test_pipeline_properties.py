"""The whole pass pipeline on random small graphs: at every level the optimized graph must compute
what the unoptimized model computes (onnxruntime on the source model as the oracle).

Graphs are drawn from op sequences that the passes look for (Conv with Add/Mul/BatchNorm/
activations/residuals/Pad, pools, MatMul+Add, elementwise chains, transpose/reshape pairs,
redundant nodes), so the rewrites fire in varying combinations and orders.  The property test
runs the optimized IR in the reference interpreter (fast, many examples); a few seeded graphs
are compiled to C at every level as well.
"""
import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import check_levels, make_model, ort_run
from onnxc import frontend
from onnxc.driver import optimize
from onnxc.ir import verify
from onnxc.ops.interp import run_graph
from onnxc.passes import LEVELS

SETTINGS = settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])

CNN_STEPS = ["conv", "conv_dw", "conv_pw", "add_const", "mul_const", "bn", "relu", "clip", "sigmoid", "silu",
             "hardswish", "leaky", "residual", "pad_conv", "maxpool", "avgpool", "identity", "dropout",
             "transpose_pair", "div_const", "tanh"]
MLP_STEPS = ["matmul_add", "matmul", "gelu", "relu", "add_const", "mul_const", "layernorm", "transpose_pair",
             "identity", "div_const", "sigmoid", "tanh", "reshape_pair"]


class Builder:
    """Builds a model op by op, tracking the current value's shape."""

    def __init__(self, rng, shape):
        self.rng, self.nodes, self.inits, self.n = rng, [], {}, 0
        self.cur, self.shape = "x", list(shape)

    def name(self, base):
        self.n += 1
        return f"{base}{self.n}"

    def const(self, arr):
        nm = self.name("c")
        self.inits[nm] = np.asarray(arr, np.float32) if np.asarray(arr).dtype.kind == "f" else np.asarray(arr)
        return nm

    def node(self, op, inputs, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        self.cur = out
        return out

    def randn(self, *shape, scale=0.5):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    # --- CNN steps (shape [1, C, H, W]) ------------------------------------------------------
    def conv(self, oc=None, k=3, group=1, pads=None):
        c = self.shape[1]
        oc = oc or int(self.rng.choice([4, 8, 12, 16]))
        if group > 1:
            oc = c
        w = self.const(self.randn(oc, c // group, k, k, scale=1.0 / np.sqrt(c * k * k / group)))
        b = self.const(self.randn(oc))
        p = k // 2 if pads is None else pads
        self.node("Conv", [self.cur, w, b], pads=[p] * 4, group=group)
        self.shape[1] = oc
        self.shape[2] += 2 * p - (k - 1)
        self.shape[3] += 2 * p - (k - 1)

    def step(self, kind):
        s, cur = self.shape, self.cur
        if kind == "conv":
            self.conv()
        elif kind == "conv_dw":
            self.conv(group=s[1])
        elif kind == "conv_pw":
            self.conv(k=1)
        elif kind == "pad_conv":
            pad = self.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
            self.node("Pad", [cur, pad])
            s[2] += 2
            s[3] += 2
            self.conv(pads=0)
        elif kind == "add_const":
            shp = [s[1], 1, 1] if len(s) == 4 else [s[-1]]
            self.node("Add", [cur, self.const(self.randn(*shp))])
        elif kind == "mul_const":
            shp = [s[1], 1, 1] if len(s) == 4 else [s[-1]]
            self.node("Mul", [cur, self.const(1.0 + self.randn(*shp, scale=0.2))])
        elif kind == "div_const":
            self.node("Div", [cur, self.const(np.float32(self.rng.choice([2.0, 3.0, 0.7])))])
        elif kind == "bn":
            c = s[1]
            ins = [self.const(1 + self.randn(c, scale=0.1)), self.const(self.randn(c)),
                   self.const(self.randn(c)), self.const(0.5 + np.abs(self.randn(c)))]
            self.node("BatchNormalization", [cur] + ins, epsilon=1e-5)
        elif kind in ("relu", "sigmoid", "tanh"):
            self.node({"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}[kind], [cur])
        elif kind == "clip":
            self.node("Clip", [cur, self.const(np.float32(0.0)), self.const(np.float32(6.0))])
        elif kind == "silu":
            sg = self.node("Sigmoid", [cur])
            self.node("Mul", [cur, sg])
        elif kind == "hardswish":
            self.node("HardSwish", [cur])
        elif kind == "leaky":
            self.node("LeakyRelu", [cur], alpha=0.1)
        elif kind == "residual":
            start = cur
            self.conv(oc=s[1], k=3)
            self.node("Add", [self.cur, start])
        elif kind in ("maxpool", "avgpool"):
            if s[2] < 2 or s[3] < 2:
                return
            self.node("MaxPool" if kind == "maxpool" else "AveragePool", [cur], kernel_shape=[2, 2], strides=[2, 2])
            s[2] //= 2
            s[3] //= 2
        elif kind == "identity":
            self.node("Identity", [cur])
        elif kind == "dropout":
            self.node("Dropout", [cur])
        elif kind == "transpose_pair":
            perm = list(self.rng.permutation(len(s)))
            inv = list(np.argsort(perm))
            self.node("Transpose", [cur], perm=[int(p) for p in perm])
            self.node("Transpose", [self.cur], perm=[int(p) for p in inv])
        elif kind == "reshape_pair":
            flat = self.const(np.array([-1], np.int64))
            back = self.const(np.array(s, np.int64))
            self.node("Reshape", [cur, flat])
            self.node("Reshape", [self.cur, back])
        # --- MLP steps (shape [M, K]) --------------------------------------------------------
        elif kind in ("matmul_add", "matmul"):
            n = int(self.rng.choice([8, 16, 24]))
            w = self.const(self.randn(s[-1], n, scale=1.0 / np.sqrt(s[-1])))
            self.node("MatMul", [cur, w])
            if kind == "matmul_add":
                self.node("Add", [self.cur, self.const(self.randn(n))])
            s[-1] = n
        elif kind == "gelu":
            x = cur
            d = self.node("Div", [x, self.const(np.float32(1.4142135))])
            e = self.node("Erf", [d])
            a = self.node("Add", [e, self.const(np.float32(1.0))])
            m = self.node("Mul", [x, a])
            self.node("Mul", [m, self.const(np.float32(0.5))])
        elif kind == "layernorm":
            x = cur
            axes = self.const(np.array([-1], np.int64))
            mean = self.node("ReduceMean", [x, axes])
            d = self.node("Sub", [x, mean])
            p = self.node("Pow", [d, self.const(np.float32(2.0))])
            var = self.node("ReduceMean", [p, axes])
            ve = self.node("Add", [var, self.const(np.float32(1e-5))])
            sd = self.node("Sqrt", [ve])
            nrm = self.node("Div", [d, sd])
            g = self.node("Mul", [nrm, self.const(1 + self.randn(s[-1], scale=0.1))])
            self.node("Add", [g, self.const(self.randn(s[-1]))])
        else:  # pragma: no cover - a typo in the step lists
            raise AssertionError(kind)

    def model(self, in_shape):
        return make_model(self.nodes, [("x", np.float32, in_shape)], [(self.cur, np.float32, None)],
                          self.inits, opset=18)


def build(kind, seed, steps):
    rng = np.random.default_rng(seed)
    in_shape = [1, int(rng.choice([3, 4, 8])), 8, 8] if kind == "cnn" else [int(rng.choice([1, 4, 6])), 16]
    b = Builder(rng, in_shape)
    for s in steps:
        b.step(s)
    feed = {"x": rng.standard_normal(in_shape).astype(np.float32)}
    return b.model(in_shape), feed


def check_all_levels_interpreted(model, feed, rtol=2e-4, atol=2e-5):
    ref = ort_run(model, feed)
    for lvl in LEVELS:
        g = frontend.load(model)
        optimize(g, lvl)
        verify(g)
        out = run_graph(g, feed)
        for o, r in zip(out, ref):
            assert o.shape == r.shape and o.dtype == r.dtype, (lvl, o.shape, r.shape)
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=f"opt_level={lvl}")


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), steps=st.lists(st.sampled_from(CNN_STEPS), min_size=1, max_size=7))
def test_random_cnn_graphs_agree_at_every_level(seed, steps):
    model, feed = build("cnn", seed, steps)
    check_all_levels_interpreted(model, feed)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), steps=st.lists(st.sampled_from(MLP_STEPS), min_size=1, max_size=7))
def test_random_mlp_graphs_agree_at_every_level(seed, steps):
    model, feed = build("mlp", seed, steps)
    check_all_levels_interpreted(model, feed)


@pytest.mark.parametrize("kind,seed,steps", [
    ("cnn", 1, ["conv", "bn", "relu", "residual", "relu", "maxpool", "conv_pw", "silu"]),
    ("cnn", 2, ["pad_conv", "mul_const", "add_const", "clip", "conv_dw", "hardswish", "avgpool"]),
    ("mlp", 3, ["matmul_add", "gelu", "matmul_add", "layernorm", "transpose_pair", "div_const", "tanh"]),
])
def test_seeded_graphs_compiled_at_every_level(kind, seed, steps, tmp_path):
    model, feed = build(kind, seed, steps)
    check_levels(model, feed, tmp_path, rtol=2e-4, atol=2e-5)
