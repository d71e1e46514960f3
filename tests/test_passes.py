"""Pass manager and basic passes: each pass is checked by running the graph before and after."""
import numpy as np
import pytest
from onnx import helper

from helpers import make_model, ort_run
from onnxc import frontend
from onnxc.ir import verify
from onnxc.ir.onnx_export import to_model
from onnxc.passes import Pass, PassManager, PassResult, passes_for
from onnxc.passes.basic.constant_folding import ConstantFolding
from onnxc.passes.basic.dce import DeadCodeElimination


def run_before_after(model, pass_, feed):
    g = frontend.load(model)
    before = ort_run(to_model(g), feed)
    res = pass_.run(g)
    verify(g)
    after = ort_run(to_model(g), feed)
    for a, b in zip(before, after):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    return g, res


def shape_subgraph_model():
    # Reshape(x, Concat(Gather(Shape(x), 0), [-1])) : the classic exported flatten
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
        helper.make_node("ConstantOfShape", ["wshape"], ["w"], value=helper.make_tensor("v", 1, [1], [0.5])),
        helper.make_node("Mul", ["y", "w"], ["z"]),
    ]
    inits = {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "wshape": np.array([12], np.int64)}
    return make_model(nodes, [("x", np.float32, [2, 3, 4])], [("z", np.float32, [2, 12])], inits)


def test_constant_folding_folds_shape_subgraph_and_constantofshape():
    x = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)
    g, res = run_before_after(shape_subgraph_model(), ConstantFolding(), {"x": x})
    assert res.modified and res.rewrites == 5
    assert [n.op_type for n in g.nodes] == ["Reshape", "Mul"]
    assert g.nodes[0].inputs[1].is_const and g.nodes[1].inputs[1].is_const


def test_constant_folding_leaves_dynamic_inputs_alone():
    model = make_model([helper.make_node("Add", ["x", "c"], ["y"])], [("x", np.float32, [3])],
                       [("y", np.float32, [3])], {"c": np.ones(3, np.float32)})
    g, res = run_before_after(model, ConstantFolding(), {"x": np.zeros(3, np.float32)})
    assert not res.modified and [n.op_type for n in g.nodes] == ["Add"]


def test_constant_folding_does_not_fold_random_ops():
    nodes = [helper.make_node("RandomUniform", [], ["r"], shape=[3]), helper.make_node("Add", ["x", "r"], ["y"])]
    model = make_model(nodes, [("x", np.float32, [3])], [("y", np.float32, [3])])
    g = frontend.load(model)
    assert not ConstantFolding().run(g).modified


def test_dce_removes_unused_nodes_only():
    nodes = [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["unused"]),
             helper.make_node("Exp", ["unused"], ["unused2"])]
    model = make_model(nodes, [("x", np.float32, [3])], [("y", np.float32, [3])])
    x = np.array([-1, 0, 2], np.float32)
    g, res = run_before_after(model, DeadCodeElimination(), {"x": x})
    assert res.rewrites == 2 and [n.op_type for n in g.nodes] == ["Relu"]


def test_pass_manager_runs_to_fixpoint_and_counts():
    g = frontend.load(shape_subgraph_model())
    pm = PassManager("basic", verify_each=True)
    pm.run(g)
    assert pm.stats["constant_folding"].rewrites == 5
    assert pm.stats["constant_folding"].runs >= 2  # second sweep confirms the fixpoint
    assert "constant_folding" in pm.report()


def test_levels_are_cumulative_and_validated():
    assert passes_for("none") == []
    basic = passes_for("basic")
    assert all(p in passes_for("extended") for p in basic)
    with pytest.raises(ValueError, match="unknown optimization level"):
        passes_for("O9")


def test_pass_failure_names_recent_passes():
    from onnxc.errors import ModelError
    from onnxc.passes.manager import PassFailure

    class Broken(Pass):
        name, level = "broken", "basic"

        def run(self, graph):
            raise ModelError("boom")

    g = frontend.load(shape_subgraph_model())
    pm = PassManager(passes=[ConstantFolding(), Broken()])
    with pytest.raises(PassFailure, match="broken.*constant_folding"):
        pm.run(g)


def test_pass_results_drive_the_fixpoint_and_the_stats():
    """A PassResult(True, n) with details makes the manager run the group again and adds n and the
    details to the pass's stats; PassResult(False) (no rewrites, no details by default) ends the
    loop; results never share a details list."""
    class Countdown(Pass):
        name, level = "countdown", "basic"

        def __init__(self):
            self.left = 3

        def run(self, graph):
            if self.left == 0:
                return PassResult(False)
            self.left -= 1
            res = PassResult(True, 2)
            res.details.append(f"step {self.left}")
            return res

    pm = PassManager(passes=[Countdown()])
    pm.run(frontend.load(shape_subgraph_model()))
    st = pm.stats["countdown"]
    assert (st.runs, st.rewrites, st.details) == (4, 6, ["step 2", "step 1", "step 0"])
    assert PassResult(False).rewrites == 0 and PassResult(False).details == []


def test_passes_ask_the_capability_they_are_handed():
    """Passes import no code generator: c_supported asks the capability the caller handed them
    (driver.optimize hands the C provider's), and refuses to guess without one."""
    from onnxc.errors import CompileError
    from onnxc.ir import Node, Value
    from onnxc.passes.capability import using
    from onnxc.passes.util import c_supported
    from onnxc.providers import CProvider
    relu = Node("Relu", [Value("x", np.dtype("float32"), (2, 3))], [Value("y", np.dtype("float32"), (2, 3))])
    with pytest.raises(CompileError, match="none was handed"):
        c_supported(relu)

    class Nothing:
        def claim(self, node):
            return "this backend runs nothing"

        def scalar_expr(self, node):
            return False
    with using(Nothing()):
        assert not c_supported(relu)
    with using(CProvider()):
        assert c_supported(relu)
