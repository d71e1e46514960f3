"""Constant sharing and common-subexpression elimination (compiler/passes/basic/cse.py)."""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc import frontend
from onnxc.passes.basic.cse import CommonSubexpressionElimination, ConstantSharing

F = np.float32


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def ops(g):
    return [n.op_type for n in g.nodes]


def test_identical_constants_shared():
    nodes = [helper.make_node("Add", ["x", "c1"], ["a"]), helper.make_node("Mul", ["a", "c2"], ["y"])]
    c = rnd(3, seed=1)
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])], {"c1": c, "c2": c.copy()})
    g, res = check_pass(m, ConstantSharing(), {"x": rnd(2, 3)})
    assert res.rewrites == 1 and len(g.constants) == 1 and g.nodes[0].inputs[1] is g.nodes[1].inputs[1]


@pytest.mark.parametrize("c2", [np.arange(3, dtype=np.float64),  # same values, other dtype
                                np.arange(3, dtype=F).reshape(1, 3),  # other shape
                                np.array([0, 1, 2.5], F),  # other bytes
                                np.array([-0.0, 1, 2], F)])  # -0.0 is not 0.0 bitwise
def test_different_constants_not_shared(c2):
    nodes = [helper.make_node("Add", ["x", "c1"], ["a"]), helper.make_node("Add", ["x", "c2"], ["b"])]
    outs = [("a", F, None), ("b", F if c2.dtype == F else np.float64, None)]
    if c2.dtype != F:
        nodes[1] = helper.make_node("Add", ["xd", "c2"], ["b"])
    m = make_model(nodes, [("x", F, [3]), ("xd", np.float64, [3])], outs, {"c1": np.arange(3, dtype=F), "c2": c2})
    check_pass(m, ConstantSharing(), {"x": rnd(3), "xd": rnd(3).astype(np.float64)}, fires=False)


def test_cse_merges_identical_nodes_and_chains():
    nodes = [helper.make_node("Relu", ["x"], ["r1"]), helper.make_node("Relu", ["x"], ["r2"]),
             helper.make_node("Softmax", ["r1"], ["s1"], axis=0), helper.make_node("Softmax", ["r2"], ["s2"], axis=0),
             helper.make_node("Sub", ["s1", "s2"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])])
    g, res = check_pass(m, CommonSubexpressionElimination(), {"x": rnd(2, 3)})
    assert res.rewrites == 2 and ops(g) == ["Relu", "Softmax", "Sub"]
    assert g.nodes[2].inputs[0] is g.nodes[2].inputs[1]


def test_cse_after_constant_sharing():
    nodes = [helper.make_node("Add", ["x", "c1"], ["a"]), helper.make_node("Add", ["x", "c2"], ["b"]),
             helper.make_node("Mul", ["a", "b"], ["y"])]
    c = rnd(3, seed=2)
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])], {"c1": c, "c2": c.copy()})
    check_pass(m, CommonSubexpressionElimination(), {"x": rnd(2, 3)}, fires=False)  # different inputs
    g = frontend.load(m)
    assert ConstantSharing().run(g).modified and CommonSubexpressionElimination().run(g).rewrites == 1


@pytest.mark.parametrize("n2", [helper.make_node("Softmax", ["x"], ["b"], axis=0),  # other attribute
                                helper.make_node("LogSoftmax", ["x"], ["b"], axis=1),  # other op
                                helper.make_node("Softmax", ["z"], ["b"], axis=1)])  # other input
def test_cse_needs_same_op_attributes_and_inputs(n2):
    nodes = [helper.make_node("Softmax", ["x"], ["a"], axis=1), helper.make_node("Relu", ["x"], ["z"]), n2,
             helper.make_node("Add", ["a", "b"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])])
    check_pass(m, CommonSubexpressionElimination(), {"x": rnd(2, 3)}, fires=False)


def test_cse_never_merges_random_ops_or_subgraphs():
    nodes = [helper.make_node("RandomUniformLike", ["x"], ["a"], seed=1.0),
             helper.make_node("RandomUniformLike", ["x"], ["b"], seed=1.0),
             helper.make_node("Add", ["a", "b"], ["y"])]
    g = frontend.load(make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])]))
    assert not CommonSubexpressionElimination().run(g).modified
    # (self-contained branches: the IR interpreter evaluates an If node on its own)
    branch = helper.make_graph([helper.make_node("Constant", [], ["o"], value=helper.make_tensor(
        "v", 1, [2, 3], np.ones(6).tolist()))], "b", [],
                               [helper.make_tensor_value_info("o", 1, [2, 3])])
    nodes = [helper.make_node("If", ["c"], ["a"], then_branch=branch, else_branch=branch),
             helper.make_node("If", ["c"], ["b"], then_branch=branch, else_branch=branch),
             helper.make_node("Add", ["a", "b"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3]), ("c", np.bool_, [])], [("y", F, [2, 3])])
    check_pass(m, CommonSubexpressionElimination(), {"x": rnd(2, 3), "c": np.array(True)}, fires=False)


def test_cse_of_graph_outputs_compiled(tmp_path):
    # both duplicates are graph outputs (and two equal constants are outputs): after merging,
    # every output still comes back under its own name
    nodes = [helper.make_node("Relu", ["x"], ["y1"]), helper.make_node("Relu", ["x"], ["y2"]),
             helper.make_node("Add", ["y1", "c1"], ["y3"]), helper.make_node("Add", ["y2", "c2"], ["y4"]),
             helper.make_node("Identity", ["c1"], ["k1"]), helper.make_node("Identity", ["c2"], ["k2"])]
    c = rnd(3, seed=3)
    outs = [(n, F, [2, 3]) for n in ("y1", "y2", "y3", "y4")] + [("k1", F, [3]), ("k2", F, [3])]
    m = make_model(nodes, [("x", F, [2, 3])], outs, {"c1": c, "c2": c.copy()})
    feed = {"x": rnd(2, 3)}
    g = frontend.load(m)
    ConstantSharing().run(g)
    assert CommonSubexpressionElimination().run(g).rewrites == 3  # Relu, Add, Identity
    built = check_levels(m, feed, tmp_path, levels=("none", "basic"))
    assert [o.name for o in built["basic"].get_outputs()] == ["y1", "y2", "y3", "y4", "k1", "k2"]
    assert built["basic"].report["op_counts"]["Relu"] == 1 and built["basic"].report["op_counts"]["Add"] == 1
