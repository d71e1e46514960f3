"""Conv + Add / Mul / BatchNormalization folded into the Conv's weights and bias
(compiler/passes/basic/fuse_conv.py)."""
import sys

import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model, ort_run
from onnxc import frontend
from onnxc.ops.interp import run_graph
from onnxc.passes.basic.fuse_conv import FuseConvAdd, FuseConvBatchNorm, FuseConvMul

F = np.float32
X = (1, 3, 5, 5)


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def ops(g):
    return [n.op_type for n in g.nodes]


def _conv_model(tail_nodes, extra_inits, bias=True, extra_inputs=(), outputs=(("y", F, None),), w_input=False):
    ins = ["x", "W"] + (["B"] if bias else [])
    nodes = [helper.make_node("Conv", ins, ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])] + tail_nodes
    inits = {"B": rnd(4, seed=2)} if bias else {}
    inputs = [("x", F, list(X))]
    if w_input:
        inputs.append(("W", F, [4, 3, 3, 3]))
    else:
        inits["W"] = rnd(4, 3, 3, 3, seed=1)
    inits.update(extra_inits)
    return make_model(nodes, inputs + list(extra_inputs), list(outputs), inits)


def _feed(**more):
    return {"x": rnd(*X), **more}


# --- Conv + Add -----------------------------------------------------------------------------
@pytest.mark.parametrize("cshape,bias", [((4, 1, 1), True), ((1, 4, 1, 1), False), ((), True), ((1,), True)])
def test_conv_add_fused(cshape, bias):
    m = _conv_model([helper.make_node("Add", ["k", "c"], ["y"])], {"k": rnd(*cshape, seed=3)}, bias=bias)
    g, _ = check_pass(m, FuseConvAdd(), _feed())
    assert ops(g) == ["Conv"] and g.nodes[0].inputs[2].const.shape == (4,) and g.outputs[0] is g.nodes[0].outputs[0]


@pytest.mark.parametrize("cshape", [(1, 1, 5, 5), (5, 1), (1, 1, 1, 1, 1), (2, 4, 1, 1)])
def test_conv_add_wrong_shape_not_fused(cshape):
    out = ("y", F, None)
    m = _conv_model([helper.make_node("Add", ["c", "k"], ["y"])], {"k": rnd(*cshape, seed=3)}, outputs=(out,))
    check_pass(m, FuseConvAdd(), _feed(), fires=False)


def test_conv_add_runtime_operand_not_fused():
    m = _conv_model([helper.make_node("Add", ["c", "k"], ["y"])], {}, extra_inputs=[("k", F, [4, 1, 1])])
    check_pass(m, FuseConvAdd(), _feed(k=rnd(4, 1, 1)), fires=False)


def test_conv_add_second_user_or_graph_output_not_fused():
    tail = [helper.make_node("Add", ["c", "k"], ["y"]), helper.make_node("Relu", ["c"], ["z"])]
    m = _conv_model(tail, {"k": rnd(4, 1, 1)}, outputs=(("y", F, None), ("z", F, None)))
    check_pass(m, FuseConvAdd(), _feed(), fires=False)
    m = _conv_model([helper.make_node("Add", ["c", "k"], ["y"])], {"k": rnd(4, 1, 1)},
                    outputs=(("y", F, None), ("c", F, None)))
    check_pass(m, FuseConvAdd(), _feed(), fires=False)


# --- Conv + Mul -----------------------------------------------------------------------------
@pytest.mark.parametrize("sshape,bias", [((4, 1, 1), True), ((1, 4, 1, 1), False), ((), True)])
def test_conv_mul_fused(sshape, bias):
    m = _conv_model([helper.make_node("Mul", ["s", "c"], ["y"])], {"s": rnd(*sshape, seed=4)}, bias=bias)
    g, _ = check_pass(m, FuseConvMul(), _feed())
    assert ops(g) == ["Conv"] and len(g.nodes[0].inputs) == 3


@pytest.mark.parametrize("case", ["spatial", "runtime_scale", "runtime_weights", "second_user", "inf"])
def test_conv_mul_not_fused(case):
    mul = [helper.make_node("Mul", ["c", "s"], ["y"])]
    feed, inits, kw = _feed(), {"s": rnd(4, 1, 1, seed=4)}, {}
    if case == "spatial":
        inits["s"] = rnd(1, 1, 5, 1)
    elif case == "runtime_scale":
        inits, kw = {}, {"extra_inputs": [("s", F, [4, 1, 1])]}
        feed["s"] = rnd(4, 1, 1)
    elif case == "runtime_weights":
        kw = {"w_input": True}
        feed["W"] = rnd(4, 3, 3, 3, seed=1)
    elif case == "second_user":
        mul.append(helper.make_node("Neg", ["c"], ["z"]))
        kw = {"outputs": (("y", F, None), ("z", F, None))}
    elif case == "inf":
        inits["s"] = np.array([1, np.inf, 2, 3], F).reshape(4, 1, 1)
    check_pass(_conv_model(mul, inits, **kw), FuseConvMul(), feed, fires=False)


# --- Conv + BatchNormalization --------------------------------------------------------------
def _bn_inits(seed=5):
    r = np.random.default_rng(seed)
    return {"sc": r.uniform(0.5, 2, 4).astype(F), "be": rnd(4, seed=6), "mu": rnd(4, seed=7),
            "va": r.uniform(0.1, 2, 4).astype(F)}


@pytest.mark.parametrize("bias", [True, False])
def test_conv_bn_fused(bias):
    bn = helper.make_node("BatchNormalization", ["c", "sc", "be", "mu", "va"], ["y"], epsilon=1e-3)
    g, _ = check_pass(_conv_model([bn], _bn_inits(), bias=bias), FuseConvBatchNorm(), _feed(), rtol=1e-4, atol=1e-5)
    assert ops(g) == ["Conv"]


def test_conv_bn_runtime_stats_or_second_user_not_fused():
    bn = helper.make_node("BatchNormalization", ["c", "sc", "be", "mu", "va"], ["y"])
    inits = _bn_inits()
    mu = inits.pop("mu")
    m = _conv_model([bn], inits, extra_inputs=[("mu", F, [4])])
    check_pass(m, FuseConvBatchNorm(), _feed(mu=mu), fires=False)
    m = _conv_model([bn, helper.make_node("Neg", ["c"], ["z"])], _bn_inits(), outputs=(("y", F, None), ("z", F, None)))
    check_pass(m, FuseConvBatchNorm(), _feed(), fires=False)


def test_conv_bn_training_mode_not_fused():
    # training mode normalizes with the batch's statistics: not the folded form (checked on the
    # IR only: onnxruntime's inference session does not run training-mode BatchNormalization)
    bn = helper.make_node("BatchNormalization", ["c", "sc", "be", "mu", "va"], ["y", "rm", "rv"], training_mode=1)
    m = _conv_model([bn], _bn_inits(), outputs=(("y", F, None), ("rm", F, None), ("rv", F, None)))
    g = frontend.load(m)
    assert not FuseConvBatchNorm().run(g).modified


def test_conv_bn_opset7_spatial(monkeypatch):
    monkeypatch.setattr(sys.modules["onnxc.frontend.load"], "normalize_opset", lambda m, *a, **k: m)

    def model(spatial):
        nodes = [helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3, 3]),
                 helper.make_node("BatchNormalization", ["c", "sc", "be", "mu", "va"], ["y"], spatial=spatial)]
        inits = {"W": rnd(4, 3, 3, 3, seed=1), **_bn_inits()}
        return make_model(nodes, [("x", F, list(X))], [("y", F, [1, 4, 3, 3])], inits, opset=7)
    # onnx.reference cannot run BatchNormalization-7, so only the rewritten graph is interpreted
    g = frontend.load(model(1))
    assert g.nodes[0].opset == 7 and FuseConvBatchNorm().run(g).modified and ops(g) == ["Conv"]
    np.testing.assert_allclose(run_graph(g, _feed())[0], ort_run(model(1), _feed())[0], rtol=1e-4, atol=1e-5)
    assert not FuseConvBatchNorm().run(frontend.load(model(0))).modified


# --- the family through the compiler --------------------------------------------------------
def test_conv_family_compiled(tmp_path):
    tail = [helper.make_node("BatchNormalization", ["c", "sc", "be", "mu", "va"], ["b"]),
            helper.make_node("Add", ["b", "k"], ["a"]),
            helper.make_node("Mul", ["a", "s"], ["y"])]
    inits = {**_bn_inits(), "k": rnd(1, 4, 1, 1, seed=8), "s": rnd(4, 1, 1, seed=9)}
    built = check_levels(_conv_model(tail, inits), _feed(), tmp_path, levels=("none", "basic"), rtol=1e-4, atol=1e-5)
    assert built["basic"].report["op_counts"] == {"Conv": 1}
