"""Epilogue fusions (compiler/passes/extended/epilogue.py) and the fused ops they build.

Every pattern: onnxruntime on the original model vs the IR interpreter after the pass on the same
random inputs (check_pass), plus the cases where it must not fire; compiled C at levels none and
extended against onnxruntime for each activation and for a small CNN and MLP.
"""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model, ort_run
from onnxc.ops import infer_node
from onnxc.passes import Pass, PassManager, PassResult
from onnxc.passes.extended.epilogue import (ActivationEpilogue, ConvResidual, MatMulBias, MatMulScale,
                                            MatMulTranspose)

F = np.float32


def rnd(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F)


class Epilogues(Pass):
    """All epilogue passes to their fixpoint, as the extended level runs them."""
    name = "epilogues"
    level = "extended"

    def run(self, graph):
        passes = [MatMulTranspose(), MatMulScale(), MatMulBias(), ConvResidual(), ActivationEpilogue()]
        pm = PassManager("extended", passes=passes)
        pm.run(graph)
        n = sum(st.rewrites for st in pm.stats.values())
        return PassResult(n > 0, n, [d for st in pm.stats.values() for d in st.details])


def fused(g, op):
    nodes = [n for n in g.nodes if n.domain == "onnxc" and n.op_type == op]
    for n in nodes:  # the shape rule agrees with the shapes the rewrite kept
        assert [(np.dtype(d), tuple(s)) for d, s in infer_node(n)] == [(o.dtype, o.shape) for o in n.outputs]
    return nodes


# --- activations -------------------------------------------------------------------------------------
# (nodes from "y" to "a", initializers, expected activation, params)
ACTS = {
    "Relu": ([helper.make_node("Relu", ["y"], ["a"])], {}, []),
    "LeakyRelu": ([helper.make_node("LeakyRelu", ["y"], ["a"], alpha=0.15)], {}, [0.15]),
    "Clip": ([helper.make_node("Clip", ["y", "lo", "hi"], ["a"])], {"lo": np.array(-0.5, F), "hi": np.array(0.75, F)},
             [-0.5, 0.75]),
    "Clip_max_only": ([helper.make_node("Clip", ["y", "", "hi2"], ["a"])], {"hi2": np.array(0.5, F)}, [-np.inf, 0.5]),
    "Sigmoid": ([helper.make_node("Sigmoid", ["y"], ["a"])], {}, []),
    "Tanh": ([helper.make_node("Tanh", ["y"], ["a"])], {}, []),
    "HardSigmoid": ([helper.make_node("HardSigmoid", ["y"], ["a"], alpha=0.3, beta=0.4)], {}, [0.3, 0.4]),
    "HardSwish": ([helper.make_node("HardSwish", ["y"], ["a"])], {}, []),
    "SiLU": ([helper.make_node("Sigmoid", ["y"], ["s"]), helper.make_node("Mul", ["y", "s"], ["a"])], {}, []),
    "SiLU_swapped": ([helper.make_node("Sigmoid", ["y"], ["s"]), helper.make_node("Mul", ["s", "y"], ["a"])], {}, []),
}


def _renamed(nodes, suffix):
    out = []
    for n in nodes:
        m = helper.make_node(n.op_type, [i if i in ("", "lo", "hi", "hi2") else i + suffix for i in n.input],
                             [o + suffix for o in n.output])
        m.attribute.extend(n.attribute)
        out.append(m)
    return out


def act_model(keys):
    """Per activation key: Conv, Gemm and batched MatMul, each followed by that activation."""
    nodes, inits, outs = [], {}, []
    for i, key in enumerate(keys):  # own weights per key (CSE would merge identical producers)
        act_nodes, act_inits, _ = ACTS[key]
        k = f"_{key}"
        nodes += [helper.make_node("Conv", ["x", "w" + k, "b" + k], ["y_c" + k], pads=[1, 1, 1, 1]),
                  helper.make_node("Gemm", ["ga", "gb" + k, "gc" + k], ["y_g" + k], transB=1),
                  helper.make_node("MatMul", ["ma", "mb" + k], ["y_m" + k])]
        for s in ("_c", "_g", "_m"):
            nodes += _renamed(act_nodes, s + k)
        inits.update(act_inits)
        inits.update({"w" + k: rnd(4, 3, 3, 3, seed=10 * i + 1), "b" + k: rnd(4, seed=10 * i + 2),
                      "gb" + k: rnd(5, 6, seed=10 * i + 3), "gc" + k: rnd(5, seed=10 * i + 4),
                      "mb" + k: rnd(6, 7, seed=10 * i + 5)})
        outs += [("a_c" + k, F, [1, 4, 6, 6]), ("a_g" + k, F, [3, 5]), ("a_m" + k, F, [2, 3, 7])]
    model = make_model(nodes, [("x", F, [1, 3, 6, 6]), ("ga", F, [3, 6]), ("ma", F, [2, 3, 6])], outs, inits)
    feed = {"x": rnd(1, 3, 6, 6, seed=6), "ga": rnd(3, 6, seed=7), "ma": rnd(2, 3, 6, seed=8)}
    return model, feed


@pytest.mark.parametrize("key", list(ACTS))
def test_activation_fuses_into_conv_gemm_matmul(key):
    model, feed = act_model([key])
    g, res = check_pass(model, ActivationEpilogue(), feed)
    name, params = key.split("_")[0], ACTS[key][2]
    assert res.rewrites == 3 and len(g.nodes) == 3
    for op in ("FusedConv", "FusedGemm", "FusedMatMul"):
        (n,) = fused(g, op)
        assert n.attrs["activation"] == name and n.attrs["activation_params"] == pytest.approx(params)


def test_every_activation_compiled(tmp_path):
    """All activations on Conv (runtime onnxc_activation), Gemm and MatMul (C expression table),
    one module, against onnxruntime on normal and on large inputs."""
    model, feed = act_model(list(ACTS))
    compiled = check_levels(model, feed, tmp_path, levels=("extended",))["extended"]
    counts = compiled.report["op_counts"]
    n = len(ACTS)
    assert counts == {"onnxc.FusedConv": n, "onnxc.FusedGemm": n, "onnxc.FusedMatMul": n}, counts
    # large inputs: exp overflow in Sigmoid/SiLU, saturation of Clip/HardSigmoid/HardSwish
    big = {k: v * F(40) for k, v in feed.items()}
    for o, r in zip(compiled.run(None, big), ort_run(model, big)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-4)


def test_activation_does_not_fire_with_second_user():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["a"]),
             helper.make_node("Neg", ["y"], ["n"])]
    model = make_model(nodes, [("x", F, [1, 2, 4, 4])], [("a", F, None), ("n", F, None)], {"w": rnd(3, 2, 3, 3)})
    check_pass(model, ActivationEpilogue(), {"x": rnd(1, 2, 4, 4)}, fires=False)


def test_activation_does_not_fire_on_graph_output():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["a"])]
    model = make_model(nodes, [("x", F, [1, 2, 4, 4])], [("a", F, None), ("y", F, None)], {"w": rnd(3, 2, 3, 3)})
    check_pass(model, ActivationEpilogue(), {"x": rnd(1, 2, 4, 4)}, fires=False)


def test_silu_does_not_fire_when_sigmoid_has_another_user():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Sigmoid", ["y"], ["s"]),
             helper.make_node("Mul", ["y", "s"], ["a"])]
    model = make_model(nodes, [("x", F, [3, 4])], [("a", F, None), ("s", F, None)], {"w": rnd(4, 5)})
    check_pass(model, ActivationEpilogue(), {"x": rnd(3, 4)}, fires=False)


def test_clip_with_runtime_bounds_does_not_fire():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Clip", ["y", "lo", "hi"], ["a"])]
    model = make_model(nodes, [("x", F, [1, 2, 4, 4]), ("lo", F, []), ("hi", F, [])], [("a", F, None)],
                       {"w": rnd(3, 2, 3, 3)})
    feed = {"x": rnd(1, 2, 4, 4), "lo": np.array(-0.2, F), "hi": np.array(0.3, F)}
    check_pass(model, ActivationEpilogue(), feed, fires=False)


def test_activation_does_not_fire_when_c_refuses_the_fused_node():
    """4 spatial dims: the C provider has no such convolution, so no FusedConv is built."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["a"])]
    model = make_model(nodes, [("x", F, [1, 2, 3, 3, 3, 3])], [("a", F, None)], {"w": rnd(2, 2, 2, 2, 2, 2)})
    g, _ = check_pass(model, ActivationEpilogue(), {"x": rnd(1, 2, 3, 3, 3, 3, seed=1)}, fires=False)
    assert [n.op_type for n in g.nodes] == ["Conv", "Relu"]


def test_symbolic_shapes_are_left_alone():
    """Without static shapes there is no C kernel to fuse into: nothing fires, nothing raises."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Add", ["y", "c"], ["s"]),
             helper.make_node("Relu", ["s"], ["a"])]
    model = make_model(nodes, [("x", F, ["n", 4])], [("a", F, None)], {"w": rnd(4, 5), "c": rnd(5, seed=1)})
    check_pass(model, Epilogues(), {"x": rnd(3, 4, seed=2)}, fires=False)


def test_activation_skips_non_float32():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Relu", ["y"], ["a"])]
    model = make_model(nodes, [("x", np.float64, [3, 4])], [("a", np.float64, None)], {"w": rnd(4, 5).astype(np.float64)})
    check_pass(model, ActivationEpilogue(), {"x": rnd(3, 4).astype(np.float64)}, fires=False)


# --- Conv + residual Add --------------------------------------------------------------------------
def residual_model(order=0, act=True, z_shape=(1, 4, 5, 5), extra_out=False, z_const=False):
    add_in = ["y", "z"] if order == 0 else ["z", "y"]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", add_in, ["s"])]
    nodes += [helper.make_node("Relu", ["s"], ["out"])] if act else [helper.make_node("Identity", ["s"], ["out"])]
    inits = {"w": rnd(4, 3, 3, 3, seed=1), "b": rnd(4, seed=2)}
    inputs = [("x", F, [1, 3, 5, 5])]
    feed = {"x": rnd(1, 3, 5, 5, seed=3)}
    if z_const:
        inits["z"] = rnd(*z_shape, seed=4)
    else:
        inputs.append(("z", F, list(z_shape)))
        feed["z"] = rnd(*z_shape, seed=4)
    outs = [("out", F, None)] + ([("y", F, None)] if extra_out else [])
    return make_model(nodes, inputs, outs, inits), feed


@pytest.mark.parametrize("order", [0, 1])
def test_conv_residual_then_relu(order):
    model, feed = residual_model(order)
    g, res = check_pass(model, Epilogues(), feed)
    (n,) = fused(g, "FusedConv")
    assert n.inputs[3].name == "z" and n.attrs["activation"] == "Relu"
    assert [x.op_type for x in g.nodes] == ["FusedConv", "Identity"] or [x.op_type for x in g.nodes] == ["FusedConv"]


def test_conv_residual_without_activation_and_without_bias(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2]), helper.make_node("Add", ["z", "y"], ["s"])]
    model = make_model(nodes, [("x", F, [2, 3, 6, 6]), ("z", F, [2, 4, 2, 2])], [("s", F, None)],
                       {"w": rnd(4, 3, 3, 3)})
    feed = {"x": rnd(2, 3, 6, 6, seed=1), "z": rnd(2, 4, 2, 2, seed=2)}
    g, _ = check_pass(model, ConvResidual(), feed)
    (n,) = fused(g, "FusedConv")
    assert n.inputs[2] is None and n.attrs["activation"] == ""
    check_levels(model, feed, tmp_path, levels=("extended",))


@pytest.mark.parametrize("case", ["broadcast_z", "const_z", "second_user"])
def test_conv_residual_does_not_fire(case):
    if case == "broadcast_z":  # per-channel Z broadcasts over the image: not a residual
        model, feed = residual_model(act=False, z_shape=(1, 4, 1, 1))
    elif case == "const_z":
        model, feed = residual_model(act=False, z_const=True)
    else:  # the conv output is also a graph output
        model, feed = residual_model(act=False, extra_out=True)
    check_pass(model, ConvResidual(), feed, fires=False)


def test_depthwise_and_pointwise_conv_epilogues(tmp_path):
    """The direct (depthwise) and 1x1 (no im2col) paths of onnxc_conv_fused, with Z and activation."""
    nodes = [helper.make_node("Conv", ["x", "wd", "bd"], ["d"], group=4, pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["d", "x"], ["s"]), helper.make_node("Clip", ["s", "lo", "hi"], ["c"]),
             helper.make_node("Conv", ["c", "wp"], ["p"]), helper.make_node("Add", ["p", "z"], ["q"]),
             helper.make_node("Sigmoid", ["q"], ["sg"]), helper.make_node("Mul", ["q", "sg"], ["out"])]
    inits = {"wd": rnd(4, 1, 3, 3, seed=1), "bd": rnd(4, seed=2), "wp": rnd(6, 4, 1, 1, seed=3),
             "lo": np.array(0, F), "hi": np.array(6, F)}
    model = make_model(nodes, [("x", F, [2, 4, 7, 7]), ("z", F, [2, 6, 7, 7])], [("out", F, None)], inits)
    feed = {"x": rnd(2, 4, 7, 7, seed=4, scale=3), "z": rnd(2, 6, 7, 7, seed=5)}
    g, _ = check_pass(model, Epilogues(), feed, atol=1e-5)  # sums of terms of size ~10: absolute error
    assert [n.attrs["activation"] for n in fused(g, "FusedConv")] == ["Clip", "SiLU"] and len(g.nodes) == 2
    built = check_levels(model, feed, tmp_path, levels=("none", "extended"), atol=1e-5)
    assert built["extended"].report["op_counts"] == {"onnxc.FusedConv": 2}


def test_conv_epilogue_on_a_large_output(tmp_path):
    """130 channels x 1800 positions: the epilogue rows run on several threads when OpenMP is on."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["y", "z"], ["s"]), helper.make_node("Tanh", ["s"], ["out"])]
    model = make_model(nodes, [("x", F, [1, 2, 40, 45]), ("z", F, [1, 130, 40, 45])], [("out", F, None)],
                       {"w": rnd(130, 2, 3, 3, seed=1, scale=0.3), "b": rnd(130, seed=2)})
    feed = {"x": rnd(1, 2, 40, 45, seed=3), "z": rnd(1, 130, 40, 45, seed=4)}
    built = check_levels(model, feed, tmp_path, levels=("extended",))
    assert built["extended"].report["op_counts"] == {"onnxc.FusedConv": 1}


# --- MatMul + bias ---------------------------------------------------------------------------------
@pytest.mark.parametrize("c_shape,swap", [((7,), False), ((1, 1, 7), True), ((1,), False), ((), True)])
def test_matmul_bias(c_shape, swap, tmp_path):
    add_in = ["c", "y"] if swap else ["y", "c"]
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Add", add_in, ["out"])]
    model = make_model(nodes, [("a", F, [2, 3, 6])], [("out", F, None)], {"b": rnd(6, 7, seed=1), "c": rnd(*c_shape, seed=2)})
    feed = {"a": rnd(2, 3, 6, seed=3)}
    g, _ = check_pass(model, MatMulBias(), feed)
    (n,) = fused(g, "FusedMatMul")
    assert n.inputs[2].shape == (7,) and n.inputs[2].name in g.constants
    check_levels(model, feed, tmp_path, levels=("extended",))


@pytest.mark.parametrize("case", ["other_axis", "full", "runtime", "vector_b", "second_user"])
def test_matmul_bias_does_not_fire(case):
    inputs, inits = [("a", F, [2, 3, 6])], {"b": rnd(6, 7, seed=1)}
    outs = [("out", F, None)]
    feed = {"a": rnd(2, 3, 6, seed=3)}
    if case == "other_axis":
        inits["c"] = rnd(3, 1, seed=2)
    elif case == "full":
        inits["c"] = rnd(2, 3, 7, seed=2)
    elif case == "runtime":
        inputs.append(("c", F, [7]))
        feed["c"] = rnd(7, seed=2)
    elif case == "vector_b":
        inits["b"], inits["c"] = rnd(6, seed=1), rnd(3, seed=2)
    else:
        inits["c"] = rnd(7, seed=2)
        outs.append(("y", F, None))
    nodes = [helper.make_node("MatMul", ["a", "b"], ["y"]), helper.make_node("Add", ["y", "c"], ["out"])]
    check_pass(make_model(nodes, inputs, outs, inits), MatMulBias(), feed, fires=False)


# --- MatMul + Transpose ----------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["A", "B", "both"])
def test_matmul_transpose_flags(which, tmp_path):
    nodes, inputs, feed, inits = [], [], {}, {}
    if which in ("A", "both"):
        nodes.append(helper.make_node("Transpose", ["at"], ["a"], perm=[0, 2, 1]))
        inputs.append(("at", F, [2, 6, 3]))
        feed["at"] = rnd(2, 6, 3, seed=1)
    else:
        inputs.append(("a", F, [2, 3, 6]))
        feed["a"] = rnd(2, 3, 6, seed=1)
    if which in ("B", "both"):
        nodes.append(helper.make_node("Transpose", ["bt"], ["b"]))  # default perm reverses: rank 2 swaps
        inputs.append(("bt", F, [5, 6]))
        feed["bt"] = rnd(5, 6, seed=2)
    else:  # constant weights: B packed at compile time, with a transposed A
        inits["b"] = rnd(6, 5, seed=2)
    nodes.append(helper.make_node("MatMul", ["a", "b"], ["y"]))
    model = make_model(nodes, inputs, [("y", F, None)], inits)
    g, _ = check_pass(model, MatMulTranspose(), feed)
    (n,) = fused(g, "FusedMatMul")
    assert (n.attrs["transA"], n.attrs["transB"]) == (int(which != "B"), int(which != "A")) and len(g.nodes) == 1
    check_levels(model, feed, tmp_path, levels=("extended",))


@pytest.mark.parametrize("case", ["other_perm", "second_user"])
def test_matmul_transpose_does_not_fire(case):
    perm = [1, 0, 2] if case == "other_perm" else [0, 2, 1]
    nodes = [helper.make_node("Transpose", ["at"], ["a"], perm=perm), helper.make_node("MatMul", ["a", "b"], ["y"])]
    shape = [3, 2, 6] if case == "other_perm" else [2, 6, 3]
    outs = [("y", F, None)] + ([("a", F, None)] if case == "second_user" else [])
    model = make_model(nodes, [("at", F, shape), ("b", F, [6, 5])], outs)
    check_pass(model, MatMulTranspose(), {"at": rnd(*shape, seed=1), "b": rnd(6, 5, seed=2)}, fires=False)


# --- MatMul scaled by a scalar ---------------------------------------------------------------------
@pytest.mark.parametrize("case", ["mul_a", "scalar_first", "div_b", "mul_out", "div_out"])
def test_matmul_scale(case, tmp_path):
    s = {"s": np.array([0.25], F)} if case != "scalar_first" else {"s": np.array(3.0, F)}
    if case == "mul_a":
        nodes = [helper.make_node("Mul", ["a", "s"], ["as"]), helper.make_node("MatMul", ["as", "b"], ["y"])]
    elif case == "scalar_first":
        nodes = [helper.make_node("Mul", ["s", "b"], ["bs"]), helper.make_node("MatMul", ["a", "bs"], ["y"])]
    elif case == "div_b":
        nodes = [helper.make_node("Div", ["b", "s"], ["bs"]), helper.make_node("MatMul", ["a", "bs"], ["y"])]
    elif case == "mul_out":
        nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Mul", ["m", "s"], ["y"])]
    else:
        nodes = [helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Div", ["m", "s"], ["y"])]
    model = make_model(nodes, [("a", F, [2, 3, 6]), ("b", F, [6, 5])], [("y", F, None)], s)
    feed = {"a": rnd(2, 3, 6, seed=1), "b": rnd(6, 5, seed=2)}
    g, _ = check_pass(model, MatMulScale(), feed)
    (n,) = fused(g, "FusedMatMul")
    expect = {"mul_a": 0.25, "scalar_first": 3.0, "div_b": 4.0, "mul_out": 0.25, "div_out": 4.0}[case]
    assert n.attrs["alpha"] == pytest.approx(expect) and len(g.nodes) == 1
    check_levels(model, feed, tmp_path, levels=("extended",))


@pytest.mark.parametrize("case", ["vector", "runtime_scalar", "scalar_over_x", "rank_growing"])
def test_matmul_scale_does_not_fire(case):
    inputs, inits = [("a", F, [3, 6]), ("b", F, [6, 5])], {}
    feed = {"a": rnd(3, 6, seed=1), "b": rnd(6, 5, seed=2)}
    op, mul_in = "Mul", ["a", "s"]
    if case == "vector":
        inits["s"] = rnd(6, seed=3)
    elif case == "runtime_scalar":
        inputs.append(("s", F, []))
        feed["s"] = np.array(0.5, F)
    elif case == "scalar_over_x":  # s / a is not a scale of a
        op, mul_in, inits["s"] = "Div", ["s", "a"], np.array(2.0, F)
    else:  # [1,1,1] scalar makes the product 3-D: alpha would lose that broadcast
        inits["s"] = np.ones((1, 1, 1), F) * F(0.5)
    nodes = [helper.make_node(op, mul_in, ["as"]), helper.make_node("MatMul", ["as", "b"], ["y"])]
    check_pass(make_model(nodes, inputs, [("y", F, None)], inits), MatMulScale(), feed, fires=False)


def test_matmul_chain_fuses_into_one_node(tmp_path):
    """Transpose + scale + bias + activation: one FusedMatMul at the end of the fixpoint."""
    nodes = [helper.make_node("Transpose", ["bt"], ["b"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["a", "b"], ["m"]), helper.make_node("Mul", ["m", "s"], ["ms"]),
             helper.make_node("Add", ["ms", "c"], ["mc"]), helper.make_node("LeakyRelu", ["mc"], ["y"], alpha=0.2)]
    model = make_model(nodes, [("a", F, [2, 3, 6]), ("bt", F, [2, 5, 6])], [("y", F, None)],
                       {"s": np.array(0.5, F), "c": rnd(5, seed=3)})
    feed = {"a": rnd(2, 3, 6, seed=1), "bt": rnd(2, 5, 6, seed=2)}
    g, _ = check_pass(model, Epilogues(), feed)
    (n,) = fused(g, "FusedMatMul")
    assert len(g.nodes) == 1 and n.attrs["transB"] == 1 and n.attrs["alpha"] == 0.5
    assert n.attrs["activation"] == "LeakyRelu" and n.inputs[2] is not None
    built = check_levels(model, feed, tmp_path, levels=("none", "extended"))
    assert built["extended"].report["op_counts"] == {"onnxc.FusedMatMul": 1}


# --- small models, compiled ------------------------------------------------------------------------
def test_small_cnn_levels(tmp_path):
    """Conv-BN-Relu, Conv-BN + residual + Relu, then a head: levels none and extended agree with ORT."""
    def bn(name, c, seed):
        r = np.random.default_rng(seed)
        return {f"{name}_s": r.uniform(0.5, 1.5, c).astype(F), f"{name}_b": r.standard_normal(c).astype(F),
                f"{name}_m": r.standard_normal(c).astype(F), f"{name}_v": r.uniform(0.5, 1.5, c).astype(F)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "bn1_s", "bn1_b", "bn1_m", "bn1_v"], ["n1"]),
             helper.make_node("Relu", ["n1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "bn2_s", "bn2_b", "bn2_m", "bn2_v"], ["n2"]),
             helper.make_node("Add", ["r1", "n2"], ["s2"]), helper.make_node("Relu", ["s2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["g"], transB=1), helper.make_node("Relu", ["g"], ["y"])]
    inits = {"w1": rnd(8, 3, 3, 3, seed=1, scale=0.4), "w2": rnd(8, 8, 3, 3, seed=2, scale=0.2),
             "fw": rnd(4, 8, seed=3), "fb": rnd(4, seed=4), **bn("bn1", 8, 5), **bn("bn2", 8, 6)}
    model = make_model(nodes, [("x", F, [2, 3, 8, 8])], [("y", F, None)], inits)
    built = check_levels(model, {"x": rnd(2, 3, 8, 8, seed=7)}, tmp_path, levels=("none", "extended"))
    counts = built["extended"].report["op_counts"]
    assert counts.get("onnxc.FusedConv") == 2 and counts.get("onnxc.FusedGemm") == 1, counts
    assert "Relu" not in counts and "Add" not in counts, counts


def test_small_mlp_levels(tmp_path):
    """Batched MatMul-Add-Relu, MatMul-Add-SiLU, then scaled scores against a transposed operand."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"]), helper.make_node("Add", ["h1", "b1"], ["a1"]),
             helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("MatMul", ["r1", "w2"], ["h2"]), helper.make_node("Add", ["b2", "h2"], ["a2"]),
             helper.make_node("Sigmoid", ["a2"], ["g2"]), helper.make_node("Mul", ["a2", "g2"], ["r2"]),
             helper.make_node("Transpose", ["r2"], ["r2t"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["x", "r2t"], ["sc"]), helper.make_node("Div", ["sc", "d"], ["y"])]
    inits = {"w1": rnd(8, 16, seed=1, scale=0.3), "b1": rnd(16, seed=2), "w2": rnd(16, 8, seed=3, scale=0.3),
             "b2": rnd(8, seed=4), "d": np.array(2.0, F)}
    model = make_model(nodes, [("x", F, [2, 5, 8])], [("y", F, None)], inits)
    built = check_levels(model, {"x": rnd(2, 5, 8, seed=5)}, tmp_path, levels=("none", "extended"))
    assert built["extended"].report["op_counts"] == {"onnxc.FusedMatMul": 3}, built["extended"].report["op_counts"]


# --- the C provider's checks of the fused ops -------------------------------------------------------
def _fused_node(op, in_shapes, attrs, out_shape):
    from onnxc.ir import Graph
    g = Graph()
    g.opset["onnxc"] = 1
    ins = [g.add_input(f"i{k}", F, s) if s is not None else None for k, s in enumerate(in_shapes)]
    n = g.add_node(op, ins, attrs=attrs, domain="onnxc")
    n.outputs[0].dtype, n.outputs[0].shape = np.dtype(F), tuple(out_shape)
    return n


@pytest.mark.parametrize("op,shapes,attrs,out,reason", [
    ("FusedMatMul", [(2, 3, 4), (4, 5), (3,)], {}, (2, 3, 5), "bias shape"),
    ("FusedMatMul", [(3, 4), (4,), (1,)], {}, (3,), "1-D B"),
    ("FusedMatMul", [(3, 4), (5, 4)], {"transB": 0}, (3, 4), "inner dims"),
    ("FusedMatMul", [(4,), (4, 5)], {"transA": 1}, (5,), "rank < 2"),
    ("FusedMatMul", [(3, 4), (4, 5)], {"activation": "Gelu"}, (3, 5), "unknown activation"),
    ("FusedGemm", [(3, 4), (4, 5)], {"activation": "Clip", "activation_params": [0.0]}, (3, 5), "takes 2"),
    ("FusedConv", [(1, 2, 5, 5), (3, 2, 3, 3), None, (1, 3, 1, 1)], {}, (1, 3, 3, 3), "residual Z shape"),
    ("FusedConv", [(1, 2, 5, 5), (3, 2, 3, 3), (2,)], {}, (1, 3, 3, 3), "bias shape"),
    ("FusedConv", [(1, 2, 5, 5), (3, 2, 3, 3)], {"activation_params": [1.0]}, (1, 3, 3, 3), "without an activation"),
])
def test_c_provider_refuses_inconsistent_fused_nodes(op, shapes, attrs, out, reason):
    from onnxc.providers.c import check_node
    msg = check_node(_fused_node(op, shapes, attrs, out))
    assert msg is not None and reason in msg, msg


def test_c_provider_accepts_well_formed_fused_nodes():
    from onnxc.providers.c import check_node
    assert check_node(_fused_node("FusedMatMul", [(2, 4, 3), (5, 4), (5,)], {"transA": 1, "transB": 1,
                                  "activation": "HardSigmoid", "activation_params": [0.2, 0.5]}, (2, 3, 5))) is None
    assert check_node(_fused_node("FusedConv", [(1, 2, 5, 5), (3, 2, 3, 3), None, (1, 3, 3, 3)],
                                  {"activation": "SiLU"}, (1, 3, 3, 3))) is None
