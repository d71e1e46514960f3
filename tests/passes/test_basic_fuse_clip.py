"""Relu + Clip into one Clip (compiler/passes/basic/fuse_clip.py)."""
import sys

import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc import frontend
from onnxc.passes.basic.fuse_clip import FuseReluClip

F = np.float32


def feed(dtype=F):
    x = np.random.default_rng(0).uniform(-8, 8, (3, 5))
    return {"x": x.astype(dtype)}


def ops(g):
    return [n.op_type for n in g.nodes]


def _clip_inputs(lo, hi, dtype, inits, prefix):
    names = ["", ""]
    for i, v in enumerate((lo, hi)):
        if v is not None:
            names[i] = f"{prefix}{i}"
            inits[names[i]] = np.array(v, dtype)
    while names and not names[-1]:
        names.pop()
    return names


def relu_clip(lo, hi, dtype=F, extra=(), outputs=None, inputs=None):
    inits = {}
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Clip", ["r"] + _clip_inputs(lo, hi, dtype, inits, "b"), ["y"])] + list(extra)
    return make_model(nodes, inputs or [("x", dtype, [3, 5])], outputs or [("y", dtype, [3, 5])], inits)


def clip_relu(lo, hi, dtype=F):
    inits = {}
    nodes = [helper.make_node("Clip", ["x"] + _clip_inputs(lo, hi, dtype, inits, "b"), ["c"]),
             helper.make_node("Relu", ["c"], ["y"])]
    return make_model(nodes, [("x", dtype, [3, 5])], [("y", dtype, [3, 5])], inits)


@pytest.mark.parametrize("lo,hi", [(0.0, 6.0), (0.5, 3.0), (0.0, None), (4.0, 2.0)])
def test_relu_then_clip(lo, hi):
    g, _ = check_pass(relu_clip(lo, hi), FuseReluClip(), feed())
    assert ops(g) == ["Clip"] and g.nodes[0].inputs[0] is g.inputs[0]


@pytest.mark.parametrize("lo,hi", [(None, 6.0), (-1.0, 6.0)])
def test_relu_then_clip_with_negative_or_no_min_kept(lo, hi):
    check_pass(relu_clip(lo, hi), FuseReluClip(), feed(), fires=False)


def test_nan_bound_kept():
    # on the IR only: onnxruntime and onnx.reference disagree on a NaN bound
    for m in (relu_clip(float("nan"), 6.0), clip_relu(float("nan"), 6.0)):
        assert not FuseReluClip().run(frontend.load(m)).modified


def test_relu_then_clip_runtime_min_second_user_or_graph_output_kept():
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Clip", ["r", "lo"], ["y"])]
    m = make_model(nodes, [("x", F, [3, 5]), ("lo", F, [])], [("y", F, [3, 5])])
    check_pass(m, FuseReluClip(), {**feed(), "lo": np.array(1, F)}, fires=False)
    m = relu_clip(0.0, 6.0, extra=[helper.make_node("Neg", ["r"], ["z"])],
                  outputs=[("y", F, [3, 5]), ("z", F, [3, 5])])
    check_pass(m, FuseReluClip(), feed(), fires=False)
    check_pass(relu_clip(0.0, 6.0, outputs=[("y", F, [3, 5]), ("r", F, [3, 5])]), FuseReluClip(), feed(), fires=False)


@pytest.mark.parametrize("lo,hi,want", [(-1.0, 6.0, (0, 6)), (2.0, 6.0, (2, 6)), (None, 6.0, (0, 6)),
                                        (-3.0, -1.0, (0, 0)), (3.0, 1.0, (3, 1)), (None, None, (0, None))])
def test_clip_then_relu(lo, hi, want):
    g, _ = check_pass(clip_relu(lo, hi), FuseReluClip(), feed())
    assert ops(g) == ["Clip"]
    got = tuple(None if v is None else float(v.const) for v in list(g.nodes[0].inputs[1:]) + [None] * 2)[:2]
    assert got == want


def test_clip_then_relu_int32():
    g, _ = check_pass(clip_relu(-2, 5, dtype=np.int32), FuseReluClip(), feed(np.int32))
    assert ops(g) == ["Clip"] and g.nodes[0].inputs[1].const.dtype == np.int32


def test_clip6_attributes(monkeypatch):
    monkeypatch.setattr(sys.modules["onnxc.frontend.load"], "normalize_opset", lambda m, *a, **k: m)

    def model(first, second, **clip):
        nodes = [helper.make_node(first, ["x"], ["a"], **(clip if first == "Clip" else {})),
                 helper.make_node(second, ["a"], ["y"], **(clip if second == "Clip" else {}))]
        return make_model(nodes, [("x", F, [3, 5])], [("y", F, [3, 5])], opset=10)
    g, _ = check_pass(model("Relu", "Clip", min=0.0, max=6.0), FuseReluClip(), feed())
    assert ops(g) == ["Clip"] and g.nodes[0].opset == 10 and g.nodes[0].attrs == {"min": 0.0, "max": 6.0}
    g, _ = check_pass(model("Clip", "Relu", min=-1.0, max=6.0), FuseReluClip(), feed())
    assert ops(g) == ["Clip"] and g.nodes[0].attrs == {"min": 0.0, "max": 6.0}
    check_pass(model("Relu", "Clip", max=6.0), FuseReluClip(), feed(), fires=False)


def test_clip_family_compiled(tmp_path):
    inits = {"a": np.array(0.5, F), "b": np.array(6, F), "c": np.array(-1, F), "d": np.array(4, F)}
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Clip", ["r", "a", "b"], ["c1"]),
             helper.make_node("Clip", ["c1", "c", "d"], ["c2"]), helper.make_node("Relu", ["c2"], ["y"])]
    m = make_model(nodes, [("x", F, [3, 5])], [("y", F, [3, 5])], inits)
    built = check_levels(m, feed(), tmp_path, levels=("none", "basic"))
    assert built["basic"].report["op_counts"] == {"Clip": 2}
