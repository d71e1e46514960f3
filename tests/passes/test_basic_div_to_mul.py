"""Div by a floating-point constant -> Mul by its reciprocal (compiler/passes/basic/div_to_mul.py)."""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc.passes.basic.div_to_mul import DivToMul

F = np.float32


def model(c, dtype=F, c_first=False, c_input=False):
    c = np.asarray(c, dtype)
    nodes = [helper.make_node("Div", ["c", "x"] if c_first else ["x", "c"], ["y"])]
    inputs = [("x", dtype, [2, 3])] + ([("c", dtype, list(c.shape))] if c_input else [])
    return make_model(nodes, inputs, [("y", dtype, None)], {} if c_input else {"c": c})


def feed(dtype=F):
    return {"x": np.random.default_rng(0).uniform(-5, 5, (2, 3)).astype(dtype)}


@pytest.mark.parametrize("c,dtype", [(3.0, F), ([0.7, -2.0, 1e-3], F), (0.1, np.float64), (7.0, np.float16),
                                     ([[0.25], [-4.0]], F)])
def test_div_by_constant_becomes_mul(c, dtype):
    rtol = 1e-3 if dtype == np.float16 else 1e-6
    g, _ = check_pass(model(c, dtype), DivToMul(), feed(dtype), rtol=rtol)
    assert [n.op_type for n in g.nodes] == ["Mul"]
    np.testing.assert_allclose(g.nodes[0].inputs[1].const * np.asarray(c, dtype), 1, rtol=rtol)


@pytest.mark.parametrize("c,dtype", [(3, np.int32),  # integer division truncates
                                     ([1.0, 0.0, 2.0], F),  # x/0 would be fine, but keep specials out
                                     (np.inf, F), (np.nan, F),
                                     (1e-39, F)])  # subnormal: 1/c overflows float32
def test_div_not_rewritten(c, dtype):
    check_pass(model(c, dtype), DivToMul(), feed(dtype), fires=False)


def test_runtime_or_numerator_constant_not_rewritten():
    check_pass(model(3.0, c_first=True), DivToMul(), {"x": feed()["x"] + 10}, fires=False)
    check_pass(model(3.0, c_input=True), DivToMul(), {**feed(), "c": np.array(3, F)}, fires=False)


def test_div_family_compiled(tmp_path):
    nodes = [helper.make_node("Div", ["x", "c"], ["d"]), helper.make_node("Div", ["d", "c2"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, None)],
                   {"c": np.array([3, 5, 7], F), "c2": np.array(0.5, F)})
    built = check_levels(m, feed(), tmp_path, levels=("none", "basic"))
    assert built["basic"].report["op_counts"] == {"Mul": 2}
