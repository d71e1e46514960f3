"""RNN, GRU and LSTM against onnxruntime.

onnxruntime's CPU kernels take only layout=0 and float32, so layout=1 cases are checked against
onnxruntime on the transposed (layout=0) problem, and float64 cases against its float32 result.
"""
import zlib

import numpy as np
import pytest
from onnx import helper

from helpers import make_model, ort_run

import onnxc
from onnxc.frontend import load
from onnxc.providers.c import check_node

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed(request):
    """Data depends on the test, not on which tests ran before it."""
    global RNG
    RNG = np.random.default_rng(zlib.crc32(request.node.name.encode()))
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
ALL_OUTS = {"RNN": ("Y", "Yh"), "GRU": ("Y", "Yh"), "LSTM": ("Y", "Yh", "Yc")}


def build(op, T=5, N=3, I=4, H=3, direction="forward", layout=0, bias=True, h0=True, c0=True, peep=False,
          sl=None, sl_runtime=False, outs=None, dtype=np.float32, scale=1.0, **attrs):
    """(model, feed, arrays): one recurrent node; sl are the sequence lengths (None: absent)."""
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    f = lambda *s: (scale * RNG.standard_normal(s)).astype(dtype)  # noqa: E731
    state = (D, N, H) if layout == 0 else (N, D, H)
    arrays = {"x": f(T, N, I) if layout == 0 else f(N, T, I), "W": f(D, G * H, I), "R": f(D, G * H, H)}
    if bias:
        arrays["B"] = f(D, 2 * G * H)
    if sl is not None:
        arrays["sl"] = np.array(sl, np.int32)
    if h0:
        arrays["h0"] = f(*state)
    if op == "LSTM" and c0:
        arrays["c0"] = f(*state)
    if op == "LSTM" and peep:
        arrays["P"] = f(D, 3 * H)
    names = ["x", "W", "R", "B", "sl", "h0"] + (["c0", "P"] if op == "LSTM" else [])
    ins = [n if n in arrays else "" for n in names]
    while ins[-1] == "":
        ins.pop()
    outs = list(outs or ALL_OUTS[op])
    node = helper.make_node(op, ins, outs, hidden_size=H, direction=direction, **attrs)
    runtime = ["x"] + (["sl"] if sl_runtime else [])
    inputs = [(n, arrays[n].dtype, list(arrays[n].shape)) for n in runtime]
    inits = {k: v for k, v in arrays.items() if k not in runtime}
    opset = 22 if layout else 18
    if layout:
        node.attribute.append(helper.make_attribute("layout", layout))
    model = make_model([node], inputs, [(o, dtype, None) for o in outs if o], inits, opset=opset)
    return model, {n: arrays[n] for n in runtime}, arrays, dict(op=op, ins=ins, outs=outs, attrs=dict(
        hidden_size=H, direction=direction, **attrs), T=T, N=N)


def oracle(info, arrays, layout):
    """onnxruntime's outputs for the layout-0 float32 version of the problem, in ``layout``."""
    a = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in arrays.items()}
    if layout:
        for k in ("x", "h0", "c0"):
            if k in a:
                a[k] = np.ascontiguousarray(a[k].transpose(1, 0, 2))
    node = helper.make_node(info["op"], info["ins"], info["outs"], **info["attrs"])
    feed = {"x": a["x"]}
    model = make_model([node], [("x", np.float32, list(a["x"].shape))],
                       [(o, np.float32, None) for o in info["outs"] if o],
                       {k: v for k, v in a.items() if k != "x"})
    ref = ort_run(model, feed)
    if layout:
        ref = [r.transpose(2, 0, 1, 3) if r.ndim == 4 else r.transpose(1, 0, 2) for r in ref]
    return ref


def claimed(model):
    """The C provider runs the node itself (no fallback to another provider)."""
    reason = check_node(load(model).nodes[0])
    assert reason is None, reason


def check(tmp_path, op, rtol=1e-4, atol=1e-5, **kw):
    model, feed, arrays, info = build(op, **kw)
    claimed(model)
    ref = oracle(info, arrays, kw.get("layout", 0))
    got = onnxc.compile(model, output_dir=tmp_path / "o").run(None, feed)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == kw.get("dtype", np.float32)
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)
    return got


OPS = ["RNN", "GRU", "LSTM"]
DIRECTIONS = ["forward", "reverse", "bidirectional"]
SIZES = [dict(T=1, N=1, I=1, H=1), dict(T=6, N=2, I=5, H=4), dict(T=3, N=5, I=2, H=7)]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("size", range(len(SIZES)))
def test_directions_and_sizes(op, direction, size, tmp_path):
    check(tmp_path, op, direction=direction, peep=True, **SIZES[size])


@pytest.mark.parametrize("op", OPS)
def test_large_blocked_gemm(op, tmp_path):
    # T*N rows and G*H columns past the SGEMM block sizes; one batch row takes the GEMV path
    check(tmp_path, op, T=20, N=7, I=33, H=40, direction="bidirectional", scale=0.3)
    check(tmp_path / "b1", op, T=9, N=1, I=17, H=24, scale=0.3)


@pytest.mark.parametrize("op", OPS)
def test_minimal_inputs(op, tmp_path):
    check(tmp_path, op, bias=False, h0=False, c0=False)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("sl_runtime", [False, True])
def test_sequence_lens(op, direction, sl_runtime, tmp_path):
    check(tmp_path, op, T=6, N=4, direction=direction, sl=[6, 2, 0, 5], sl_runtime=sl_runtime)


@pytest.mark.parametrize("op", OPS)
def test_sequence_lens_runtime_values(op, tmp_path):
    """One compiled model, several runtime length vectors; values outside [0, seq_length] are
    refused (as onnxruntime does) naming the node and the value."""
    model, feed, arrays, info = build(op, T=5, N=3, direction="bidirectional", sl=[5, 5, 5], sl_runtime=True)
    claimed(model)
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    for sl in ([1, 3, 5], [0, 0, 0], [5, 4, 2]):
        arrays["sl"] = feed["sl"] = np.array(sl, np.int32)
        for g, r in zip(m.run(None, feed), oracle(info, arrays, 0)):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
    for sl, pos in (([-7, 99, 2 ** 31 - 1], 0), ([1, 3, 6], 2), ([0, -(2 ** 31), 3], 1)):
        with pytest.raises(onnxc.InputError, match=rf"\({op}\): sequence length {sl[pos]} out of range \[0, 5\] "
                                                   rf".*at sl\[{pos}\]$"):
            m.run(None, dict(feed, sl=np.array(sl, np.int32)))


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_layout_1(op, direction, tmp_path):
    check(tmp_path, op, layout=1, direction=direction, T=4, N=3, peep=True, sl=[4, 1, 3])


def _subsets(op):
    outs = ALL_OUTS[op]
    subsets = [outs[:1], ("", "Yh"), outs]
    if op == "LSTM":
        subsets += [("", "", "Yc"), ("Y", "", "Yc")]
    return subsets


@pytest.mark.parametrize("op,outs", [(op, s) for op in OPS for s in _subsets(op)])
@pytest.mark.parametrize("layout", [0, 1])
def test_output_subsets(op, outs, layout, tmp_path):
    check(tmp_path, op, outs=outs, layout=layout, direction="bidirectional", sl=[5, 3, 4])


def test_gru_linear_before_reset(tmp_path):
    for i, d in enumerate(DIRECTIONS):
        check(tmp_path / str(i), "GRU", linear_before_reset=1, direction=d, sl=[5, 1, 3])
    check(tmp_path / "nob", "GRU", linear_before_reset=1, bias=False)


def test_lstm_peepholes_input_forget(tmp_path):
    check(tmp_path / "a", "LSTM", peep=True, input_forget=1, direction="bidirectional")
    check(tmp_path / "b", "LSTM", peep=True, input_forget=1, sl=[2, 5, 0], direction="reverse")


@pytest.mark.parametrize("op", OPS)
def test_clip(op, tmp_path):
    kw = dict(linear_before_reset=1) if op == "GRU" else {}
    check(tmp_path, op, clip=0.4, scale=2.0, direction="bidirectional", peep=True, **kw)


ACT_CASES = [
    # (op, direction, activations, alpha, beta)
    ("RNN", "bidirectional", ["Relu", "Tanh"], None, None),
    ("RNN", "forward", ["Relu", "Tanh"], None, None),  # the schema's two-entry default form
    ("GRU", "bidirectional", ["HardSigmoid", "Softsign", "sigmoid", "Softplus"], [0.3], [0.4]),
    ("GRU", "forward", ["HardSigmoid", "Elu"], None, None),  # defaults 0.2/0.5 and 1.0
    ("LSTM", "bidirectional", ["Sigmoid", "LeakyRelu", "ThresholdedRelu", "HardSigmoid", "ScaledTanh", "Affine"],
     [0.05, 0.1, 0.25, 0.7, 0.6], [0.55, 1.3, 0.2]),
    ("LSTM", "forward", ["Sigmoid", "Elu", "LeakyRelu"], [0.8, 0.02], None),
    ("RNN", "forward", ["Softplus"], None, None),
]


@pytest.mark.parametrize("op,direction,acts,alpha,beta", ACT_CASES)
def test_activations(op, direction, acts, alpha, beta, tmp_path):
    attrs = {"activations": acts}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    # onnxruntime's Softplus overflows to inf past x ~ 88 (ours does not): keep an RNN's unbounded state small
    scale = 0.5 if op == "RNN" and "Softplus" in acts else 1.5
    check(tmp_path, op, direction=direction, scale=scale, **attrs)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("layout", [0, 1])
def test_float64(op, layout, tmp_path):
    got = check(tmp_path, op, dtype=np.float64, layout=layout, direction="bidirectional", sl=[5, 2, 4],
                peep=True, rtol=1e-4, atol=1e-5)
    assert all(g.dtype == np.float64 for g in got)


def test_opset_7(tmp_path):
    model, feed, arrays, info = build("LSTM", peep=True)
    model.opset_import[0].version = 7
    claimed(model)
    ref = oracle(info, arrays, 0)
    for g, r in zip(onnxc.compile(model, output_dir=tmp_path / "o").run(None, feed), ref):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


REFUSED = [
    (dict(activations=["ThresholdedRelu"]), "no agreed default"),
    (dict(activations=["Affine"], activation_alpha=[0.5]), "no agreed default"),
    (dict(activations=["Sigmoid"], activation_alpha=[0.5]), "activation_alpha has 1 values for 0"),
    (dict(activations=["Tanh", "Tanh", "Tanh"]), "3 activations given, expected 1"),
    (dict(activations=["LeakyRelu", "Elu"], activation_alpha=[0.1, 0.2, 0.3], direction="bidirectional"),
     "activation_alpha has 3 values for 2"),
    (dict(activations=["Elu", "LeakyRelu"], activation_alpha=[0.8], direction="bidirectional"),
     "activation_alpha has 1 values for 2"),  # positional or in order? ambiguous
    (dict(activations=["Swish"]), "unknown activation"),
]


@pytest.mark.parametrize("attrs,reason", REFUSED)
def test_refused(attrs, reason):
    model, *_ = build("RNN", **attrs)
    node = load(model).nodes[0]
    r = check_node(node)
    assert r is not None and reason in r, r
