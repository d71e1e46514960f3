"""MatMul + Add -> Gemm (compiler/passes/basic/fuse_gemm.py)."""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc.passes.basic.fuse_gemm import FuseMatMulAdd

F = np.float32


def rnd(*shape, seed=0, dtype=F):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def ops(g):
    return [n.op_type for n in g.nodes]


def model(cshape=(5,), a_shape=(3, 4), c_first=False, c_input=False, b_input=False, extra=(), outputs=None,
          dtype=F):
    inits, inputs = {}, [("a", dtype, list(a_shape))]
    if c_input:
        inputs.append(("c", dtype, list(cshape)))
    else:
        inits["c"] = rnd(*cshape, seed=2, dtype=dtype)
    if b_input:
        inputs.append(("b", dtype, [4, 5]))
    else:
        inits["b"] = rnd(4, 5, seed=1, dtype=dtype)
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]),
             helper.make_node("Add", ["c", "m"] if c_first else ["m", "c"], ["y"])] + list(extra)
    return make_model(nodes, inputs, outputs or [("y", dtype, None)], inits)


def feed(a_shape=(3, 4), dtype=F, **more):
    return {"a": rnd(*a_shape, dtype=dtype), **more}


@pytest.mark.parametrize("cshape", [(5,), (3, 5), (1, 5), (3, 1), (), (1,)])
def test_matmul_add_to_gemm(cshape):
    g, _ = check_pass(model(cshape), FuseMatMulAdd(), feed())
    assert ops(g) == ["Gemm"] and g.outputs[0] is g.nodes[0].outputs[0]


def test_bias_first_or_at_run_time():
    g, _ = check_pass(model(c_first=True), FuseMatMulAdd(), feed())
    assert ops(g) == ["Gemm"]
    g, _ = check_pass(model(c_input=True), FuseMatMulAdd(), feed(c=rnd(5, seed=3)))
    assert ops(g) == ["Gemm"] and g.nodes[0].inputs[2] is g.inputs[1]


@pytest.mark.parametrize("kw,fd", [
    ({"b_input": True}, {"b": rnd(4, 5, seed=1)}),  # B not a constant
    ({"a_shape": (2, 3, 4)}, {}),  # batched MatMul
    ({"cshape": (2, 3, 5)}, {}),  # the bias broadcasts the product up
    ({"extra": [helper.make_node("Neg", ["m"], ["z"])], "outputs": [("y", F, None), ("z", F, None)]}, {}),
    ({"outputs": [("y", F, None), ("m", F, None)]}, {}),
])
def test_not_fused(kw, fd):
    m = model(**kw)
    check_pass(m, FuseMatMulAdd(), {**feed(kw.get("a_shape", (3, 4))), **fd}, fires=False)


def test_not_fused_for_float64():
    # only float32 Gemm runs in C; a float64 MatMul does as it is
    check_pass(model(dtype=np.float64), FuseMatMulAdd(), feed(dtype=np.float64), fires=False)


def test_gemm_family_compiled(tmp_path):
    nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Add", ["m", "c"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "b2"], ["m2"]),
             helper.make_node("Add", ["c2", "m2"], ["y"])]
    inits = {"b": rnd(4, 5, seed=1), "c": rnd(5, seed=2), "b2": rnd(5, 2, seed=3), "c2": rnd(3, 2, seed=4)}
    m = make_model(nodes, [("a", F, [3, 4])], [("y", F, None)], inits)
    built = check_levels(m, feed(), tmp_path, levels=("none", "basic"))
    assert built["basic"].report["op_counts"] == {"Gemm": 2, "Relu": 1}
