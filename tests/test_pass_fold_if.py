"""fold_if: an If with a constant condition is replaced by its chosen branch (run before/after)."""
import numpy as np
from onnx import TensorProto, helper

from helpers import make_model
from test_passes import run_before_after
from onnxc.passes.basic.fold_if import FoldIf


def _branch(name, op, out):
    # reads the outer 'x' and 'y'; a branch-local constant and an intermediate
    return helper.make_graph(
        [helper.make_node("Constant", [], [f"{name}_c"], value=helper.make_tensor(f"{name}_ct", TensorProto.FLOAT, [], [2.0])),
         helper.make_node(op, ["x", "y"], [f"{name}_t"]),
         helper.make_node("Mul", [f"{name}_t", f"{name}_c"], [out])],
        name, [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, [3])])


def if_model(cond_is_input: bool, cond_value=True):
    nodes = [helper.make_node("Relu", ["x"], ["rx"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=_branch("then", "Add", "a"),
                              else_branch=_branch("else", "Sub", "b")),
             helper.make_node("Add", ["r", "rx"], ["z"])]
    inputs = [("x", np.float32, [3]), ("y", np.float32, [3])]
    inits = {}
    if cond_is_input:
        inputs.append(("cond", np.bool_, []))
    else:
        inits["cond"] = np.array(cond_value)
    return make_model(nodes, inputs, [("z", np.float32, [3])], inits)


def _feed():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal(3).astype(np.float32), "y": rng.standard_normal(3).astype(np.float32)}


def test_fold_if_inlines_the_chosen_branch():
    for value, op in ((True, "Add"), (False, "Sub")):
        g, res = run_before_after(if_model(False, value), FoldIf(), _feed())
        assert res.modified and res.rewrites == 1
        assert [n.op_type for n in g.nodes] == ["Relu", op, "Mul", "Add"]
        names = [v.name for v in g.values()]
        assert len(names) == len(set(names))


def test_fold_if_nested_if_reads_inlined_values():
    inner = helper.make_graph([helper.make_node("Neg", ["then_t"], ["n"])], "inner", [],
                              [helper.make_tensor_value_info("n", TensorProto.FLOAT, [3])])
    inner_else = helper.make_graph([helper.make_node("Identity", ["then_t"], ["m"])], "inner_else", [],
                                   [helper.make_tensor_value_info("m", TensorProto.FLOAT, [3])])
    then = helper.make_graph([helper.make_node("Add", ["x", "y"], ["then_t"]),
                              helper.make_node("If", ["c2"], ["o"], then_branch=inner, else_branch=inner_else)],
                             "then", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, [3])])
    nodes = [helper.make_node("If", ["cond"], ["z"], then_branch=then, else_branch=_branch("else", "Sub", "b"))]
    model = make_model(nodes, [("x", np.float32, [3]), ("y", np.float32, [3]), ("c2", np.bool_, [])],
                       [("z", np.float32, [3])], {"cond": np.array(True)})
    feed = dict(_feed(), c2=np.array(False))
    g, res = run_before_after(model, FoldIf(), feed)
    assert res.rewrites == 1 and [n.op_type for n in g.nodes] == ["Add", "If"]


def test_fold_if_leaves_runtime_condition_alone():
    g, res = run_before_after(if_model(True), FoldIf(), dict(_feed(), cond=np.array(True)))
    assert not res.modified and [n.op_type for n in g.nodes] == ["Relu", "If", "Add"]
