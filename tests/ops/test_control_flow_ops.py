"""If / Loop / Scan compiled to C, against onnxruntime; each test also asserts where the node ran."""
import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxc
from helpers import make_model, ort_run

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def run_both(model, feed, tmp_path, in_c=(), rtol=1e-5, atol=1e-6):
    """Compile, compare with onnxruntime; ``in_c``: op types that must not be in fallback_nodes."""
    ref = ort_run(model, feed)
    cm = onnxc.compile(model, output_dir=tmp_path)
    out = cm.run(None, feed)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
    fb = {n["op"] for n in cm.fallback_nodes}
    assert not fb & set(in_c), cm.fallback_nodes
    return cm


# --- If ----------------------------------------------------------------------------------------
def _if_model(const_cond=None):
    # branches read outer 'h' (made by a C node) and graph input 'y'; each has local intermediates
    then = helper.make_graph([helper.make_node("Mul", ["h", "y"], ["t1"]),
                              helper.make_node("Relu", ["t1"], ["t2"]),
                              helper.make_node("Add", ["t2", "h"], ["a"])], "then", [], [vi("a", [2, 3])])
    els = helper.make_graph([helper.make_node("Sub", ["h", "y"], ["b"])], "else", [], [vi("b", [2, 3])])
    nodes = [helper.make_node("Tanh", ["x"], ["h"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=els),
             helper.make_node("Sigmoid", ["r"], ["z"])]
    inputs = [("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])]
    inits = {}
    if const_cond is None:
        inputs.append(("cond", np.bool_, []))
    else:
        inits["cond"] = np.array(const_cond)
    return make_model(nodes, inputs, [("z", np.float32, [2, 3])], inits)


def _xy():
    return {"x": rng.standard_normal((2, 3)).astype(np.float32), "y": rng.standard_normal((2, 3)).astype(np.float32)}


@pytest.mark.parametrize("cond", [True, False])
def test_if_runtime_condition_in_c(cond, tmp_path):
    model = _if_model()
    feed = dict(_xy(), cond=np.array(cond))
    cm = run_both(model, feed, tmp_path, in_c=["If"])
    assert not cm.fallback_nodes
    feed["cond"] = np.array(not cond)  # the same build takes the other branch
    ref = ort_run(model, feed)
    np.testing.assert_allclose(cm.run(None, feed)[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cond", [True, False])
def test_if_constant_condition_folded(cond, tmp_path):
    cm = run_both(_if_model(cond), _xy(), tmp_path, in_c=["If"])
    assert "If" not in cm.report["op_counts"]


def test_nested_if(tmp_path):
    inner_t = helper.make_graph([helper.make_node("Mul", ["t0", "x"], ["it"])], "it", [], [vi("it", [4])])
    inner_e = helper.make_graph([helper.make_node("Neg", ["t0"], ["ie"])], "ie", [], [vi("ie", [4])])
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t0"]),
                              helper.make_node("If", ["c2"], ["o"], then_branch=inner_t, else_branch=inner_e)],
                             "then", [], [vi("o", [4])])
    els = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [vi("e", [4])])
    model = make_model([helper.make_node("If", ["c1"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [4]), ("c1", np.bool_, []), ("c2", np.bool_, [])],
                       [("z", np.float32, [4])])
    x = rng.standard_normal(4).astype(np.float32)
    cm = None
    for c1 in (True, False):
        for c2 in (True, False):
            feed = {"x": x, "c1": np.array(c1), "c2": np.array(c2)}
            if cm is None:
                cm = run_both(model, feed, tmp_path, in_c=["If"])
            np.testing.assert_allclose(cm.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)


def test_if_branch_output_is_a_constant(tmp_path):
    then = helper.make_graph([helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kt", F, [3], [1, 2, 3]))],
                             "then", [], [vi("k", [3])])
    els = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "else", [], [vi("n", [3])])
    model = make_model([helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [3]), ("c", np.bool_, [])], [("z", np.float32, [3])])
    for c in (True, False):
        run_both(model, {"x": rng.standard_normal(3).astype(np.float32), "c": np.array(c)},
                 tmp_path / str(c), in_c=["If"])


def test_if_different_branch_shapes_falls_back(tmp_path):
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "then", [], [vi("a", [4])])
    els = helper.make_graph([helper.make_node("Slice", ["x", "s", "e"], ["b"])], "else", [], [vi("b", [2])])
    model = make_model([helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [4]), ("c", np.bool_, [])], [("z", np.float32, None)],
                       {"s": np.array([0], np.int64), "e": np.array([2], np.int64)})
    feed = {"x": rng.standard_normal(4).astype(np.float32), "c": np.array(False)}
    ref = ort_run(model, feed)
    cm = onnxc.compile(model, output_dir=tmp_path)
    np.testing.assert_allclose(cm.run(None, feed)[0], ref[0])
    assert [n["op"] for n in cm.fallback_nodes] == ["If"]
