"""Zero Pad folded into Conv / AveragePool pads (compiler/passes/basic/fuse_pad.py)."""
import sys

import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc import frontend
from onnxc.passes.basic.fuse_pad import FusePadAveragePool, FusePadConv

F = np.float32
X = (1, 2, 5, 6)
PADS = [0, 0, 1, 2, 0, 0, 2, 1]


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def ops(g):
    return [n.op_type for n in g.nodes]


def _model(user, pads=PADS, value=None, mode="constant", axes=None, user_attrs=None, extra=(), outputs=None,
           opset=18, pads_input=False, w_channels=2):
    inits, inputs = {}, [("x", F, list(X))]
    if opset >= 11:
        ins = ["x", "pads"]
        if pads_input:
            inputs.append(("pads", np.int64, [len(pads)]))
        else:
            inits["pads"] = np.array(pads, np.int64)
        if value is not None or axes is not None:
            ins.append("" if value is None else "cv")
            if value is not None:
                inits["cv"] = np.array(value, F)
        if axes is not None:
            ins.append("axes")
            inits["axes"] = np.array(axes, np.int64)
        pad = helper.make_node("Pad", ins, ["p"], mode=mode)
    else:
        pad = helper.make_node("Pad", ["x"], ["p"], pads=pads, mode=mode, **({} if value is None else {"value": value}))
    attrs = dict(user_attrs or {})
    if user == "Conv":
        inits["W"] = rnd(3, w_channels, 3, 3, seed=1)
        inits["B"] = rnd(3, seed=2)
        node = helper.make_node("Conv", ["p", "W", "B"], ["y"], kernel_shape=[3, 3], **attrs)
    else:
        node = helper.make_node(user, ["p"], ["y"], kernel_shape=[3, 2], **attrs)
    return make_model([pad, node] + list(extra), inputs, outputs or [("y", F, None)], inits, opset=opset)


def _feed(**more):
    return {"x": rnd(*X), **more}


@pytest.mark.parametrize("kw", [{}, {"user_attrs": {"pads": [1, 0, 0, 1], "strides": [2, 1]}},
                                {"value": 0.0}, {"pads": [1, 2, 2, 1], "axes": [2, 3]},
                                {"pads": [1, 1, 2, 0], "axes": [-1, -2]}])
def test_pad_into_conv(kw):
    g, _ = check_pass(_model("Conv", **kw), FusePadConv(), _feed())
    assert ops(g) == ["Conv"] and g.nodes[0].inputs[0] is g.inputs[0]


@pytest.mark.parametrize("kw", [
    {"value": 1.0},
    {"value": -0.0},
    {"mode": "reflect"},
    {"pads": [0, 1, 1, 1], "axes": [0, 2]},  # the batch, through axes
    {"user_attrs": {"auto_pad": "SAME_UPPER"}},
    {"extra": [helper.make_node("Neg", ["p"], ["z"])], "outputs": [("y", F, None), ("z", F, None)]},
    {"outputs": [("y", F, None), ("p", F, None)]},
])
def test_pad_not_folded_into_conv(kw):
    check_pass(_model("Conv", **kw), FusePadConv(), _feed(), fires=False)


@pytest.mark.parametrize("pads,wc", [([0, 0, 1, -1, 0, 0, 1, 1], 2),  # a crop
                                     ([0, 1, 1, 1, 0, 0, 1, 1], 3)])  # pads the channels
def test_crop_or_channel_pad_not_folded(pads, wc):
    # on the IR only: onnx.reference (the interpreter) cannot run a negative constant pad
    g = frontend.load(_model("Conv", pads=pads, w_channels=wc))
    assert not FusePadConv().run(g).modified and ops(g) == ["Pad", "Conv"]


def test_runtime_pads_not_folded():
    check_pass(_model("Conv", pads_input=True), FusePadConv(), _feed(pads=np.array(PADS, np.int64)), fires=False)


def test_pad2_attributes_folded(monkeypatch):
    monkeypatch.setattr(sys.modules["onnxc.frontend.load"], "normalize_opset", lambda m, *a, **k: m)
    g, _ = check_pass(_model("Conv", opset=10), FusePadConv(), _feed())
    assert ops(g) == ["Conv"] and g.nodes[0].opset == 10
    check_pass(_model("Conv", opset=10, value=0.5), FusePadConv(), _feed(), fires=False)


def test_pad_into_average_pool_counting_pads():
    attrs = {"count_include_pad": 1, "pads": [0, 1, 0, 1]}
    g, _ = check_pass(_model("AveragePool", user_attrs=attrs), FusePadAveragePool(), _feed())
    assert ops(g) == ["AveragePool"] and g.nodes[0].attrs["pads"] == [1, 3, 2, 2]


@pytest.mark.parametrize("user,attrs", [
    ("AveragePool", {}),  # count_include_pad=0: the explicit zeros were counted, implicit pads would not be
    ("AveragePool", {"count_include_pad": 1, "ceil_mode": 1, "strides": [2, 2]}),
    ("MaxPool", {}),  # implicit MaxPool padding is -inf, not 0
])
def test_pad_not_folded_into_pool(user, attrs):
    m = _model(user, user_attrs=attrs)
    check_pass(m, FusePadAveragePool(), _feed(), fires=False)
    check_pass(m, FusePadConv(), _feed(), fires=False)


def test_pad_family_compiled(tmp_path):
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"]),
             helper.make_node("Conv", ["p", "W"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Pad", ["c", "pads2"], ["q"]),
             helper.make_node("AveragePool", ["q"], ["y"], kernel_shape=[2, 2], count_include_pad=1)]
    inits = {"pads": np.array(PADS, np.int64), "W": rnd(3, 2, 3, 3, seed=1),
             "pads2": np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64)}
    m = make_model(nodes, [("x", F, list(X))], [("y", F, None)], inits)
    built = check_levels(m, _feed(), tmp_path, levels=("none", "basic"))
    assert built["basic"].report["op_counts"] == {"AveragePool": 1, "Conv": 1}
