"""Elementwise-chain fusion: runs of elementwise ops -> one onnxc.ElementwiseChain node.

Each rewrite is checked before/after on the same random inputs (onnxruntime on the original
model vs the IR interpreter after the pass), plus the places it must not fire, a compile at
levels none and extended against onnxruntime, and the shape of the generated C."""
import re

import numpy as np
import pytest
from onnx import TensorProto, helper

from helpers import check_levels, check_pass, make_model, ort_run
from onnxc.passes.extended.elementwise_chain import ElementwiseChainFusion

RNG = np.random.default_rng(7)
F = np.float32


def rand(*shape, dtype=F):
    return RNG.standard_normal(shape).astype(dtype)


def chains(g):
    return [n for n in g.nodes if n.domain == "onnxc" and n.op_type == "ElementwiseChain"]


def body_ops(node):
    return [n.op_type for n in node.attrs["body"].nodes]


def plain_model(shape=(2, 3, 4, 5)):
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Mul", ["a", "w"], ["m"]),
             helper.make_node("Relu", ["m"], ["r"]), helper.make_node("Sigmoid", ["r"], ["z"])]
    ins = [(n, F, list(shape)) for n in ("x", "y", "w")]
    feed = {n: rand(*shape) for n in ("x", "y", "w")}
    return make_model(nodes, ins, [("z", F, list(shape))]), feed


def test_plain_chain_becomes_one_node():
    model, feed = plain_model()
    g, res = check_pass(model, ElementwiseChainFusion(), feed)
    assert res.rewrites == 1
    assert [n.op_type for n in g.nodes] == ["ElementwiseChain"]
    (node,) = chains(g)
    assert body_ops(node) == ["Add", "Mul", "Relu", "Sigmoid"]
    assert [v.name for v in node.inputs] == ["x", "y", "w"] and [v.name for v in node.outputs] == ["z"]


def test_broadcasting_chain_per_channel_scale_and_bias():
    c = 3
    nodes = [helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Add", ["m", "bias"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"])]
    inits = {"scale": rand(c, 1, 1), "bias": rand(c, 1, 1)}
    model = make_model(nodes, [("x", F, [2, c, 4, 4])], [("y", F, [2, c, 4, 4])], inits)
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(2, c, 4, 4)})
    (node,) = chains(g)
    assert body_ops(node) == ["Mul", "Add", "Relu"]
    # the [C,1,1] constants stay external inputs, read with their own (broadcast) strides
    assert [tuple(v.shape) for v in node.inputs] == [(2, c, 4, 4), (c, 1, 1), (c, 1, 1)]


def test_scalar_constants_move_into_the_body():
    nodes = [helper.make_node("Mul", ["x", "two"], ["m"]), helper.make_node("Add", ["m", "half"], ["a"]),
             helper.make_node("Tanh", ["a"], ["t"]), helper.make_node("Clip", ["t", "lo", "hi"], ["y"])]
    inits = {"two": np.array(2.0, F), "half": np.array([0.5], F), "lo": np.array(-0.25, F),
             "hi": np.array(0.75, F)}
    model = make_model(nodes, [("x", F, [3, 7])], [("y", F, [3, 7])], inits)
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 7)})
    (node,) = chains(g)
    assert [v.name for v in node.inputs] == ["x"]
    assert len(node.attrs["body"].constants) == 4


def test_diamond_reads_shared_values_once():
    # a feeds Sigmoid and Mul, x feeds Add and Sub: both are single body inputs/values
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Sigmoid", ["a"], ["s"]),
             helper.make_node("Mul", ["a", "s"], ["m"]), helper.make_node("Sub", ["m", "x"], ["z"])]
    model = make_model(nodes, [("x", F, [4, 6]), ("y", F, [6])], [("z", F, [4, 6])])
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(4, 6), "y": rand(6)})
    (node,) = chains(g)
    assert body_ops(node) == ["Add", "Sigmoid", "Mul", "Sub"]
    assert [v.name for v in node.inputs] == ["x", "y"]


def test_two_branches_join_into_one_run():
    # Relu(x) and Exp(y) start separate runs; Mul joins both
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Exp", ["y"], ["e"]),
             helper.make_node("Mul", ["r", "e"], ["z"])]
    model = make_model(nodes, [("x", F, [5, 3]), ("y", F, [5, 3])], [("z", F, [5, 3])])
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(5, 3), "y": rand(5, 3)})
    assert [n.op_type for n in g.nodes] == ["ElementwiseChain"]


def test_intermediate_read_later_outside_becomes_second_output():
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["z"]),
             helper.make_node("ReduceSum", ["a", "axes"], ["s"], keepdims=0)]
    model = make_model(nodes, [("x", F, [3, 4]), ("y", F, [3, 4])], [("z", F, [3, 4]), ("s", F, [3])],
                       {"axes": np.array([1], np.int64)})
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 4), "y": rand(3, 4)})
    (node,) = chains(g)
    assert [v.name for v in node.outputs] == ["a", "z"]
    assert [n.op_type for n in g.nodes] == ["ElementwiseChain", "ReduceSum"]
    assert g.nodes[1].inputs[0] is node.outputs[0]


def test_intermediate_graph_output_becomes_second_output():
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Neg", ["sq"], ["n"]),
             helper.make_node("Exp", ["n"], ["z"])]
    model = make_model(nodes, [("x", F, [2, 5])], [("z", F, [2, 5]), ("sq", F, [2, 5])])
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(2, 5)})
    (node,) = chains(g)
    assert [v.name for v in node.outputs] == ["sq", "z"]


def test_intermediate_read_between_members_splits_the_run():
    # q = ReduceMax(a) sits between Add and Mul and Mul reads q: fusing Add with Mul would
    # need the fused node both before and after ReduceMax.  Add stays; Mul+Relu fuse.
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]),
             helper.make_node("ReduceMax", ["a", "axes"], ["q"], keepdims=1),
             helper.make_node("Mul", ["a", "q"], ["m"]), helper.make_node("Relu", ["m"], ["z"])]
    model = make_model(nodes, [("x", F, [3, 4]), ("y", F, [3, 4])], [("z", F, [3, 4])],
                       {"axes": np.array([1], np.int64)})
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 4), "y": rand(3, 4)})
    assert [n.op_type for n in g.nodes] == ["Add", "ReduceMax", "ElementwiseChain"]
    assert body_ops(chains(g)[0]) == ["Mul", "Relu"]


def test_two_op_run_with_early_outside_reader_does_not_fire():
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]),
             helper.make_node("ReduceSum", ["a", "axes"], ["s"], keepdims=1),
             helper.make_node("Sub", ["a", "s"], ["z"])]
    model = make_model(nodes, [("x", F, [3, 4]), ("y", F, [3, 4])], [("z", F, [3, 4])],
                       {"axes": np.array([1], np.int64)})
    check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 4), "y": rand(3, 4)}, fires=False)


def test_chain_interrupted_by_non_elementwise_op():
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
             helper.make_node("Mul", ["t", "w"], ["m"]), helper.make_node("Sigmoid", ["m"], ["z"])]
    model = make_model(nodes, [("x", F, [3, 4]), ("y", F, [3, 4]), ("w", F, [4, 3])], [("z", F, [4, 3])])
    g, res = check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 4), "y": rand(3, 4), "w": rand(4, 3)})
    assert res.rewrites == 2
    assert [n.op_type for n in g.nodes] == ["ElementwiseChain", "Transpose", "ElementwiseChain"]


def test_single_ops_between_non_elementwise_ops_do_not_fire():
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Softmax", ["a"], ["s"], axis=1),
             helper.make_node("Mul", ["s", "x"], ["z"])]
    model = make_model(nodes, [("x", F, [3, 4]), ("y", F, [3, 4])], [("z", F, [3, 4])])
    check_pass(model, ElementwiseChainFusion(), {"x": rand(3, 4), "y": rand(3, 4)}, fires=False)


def test_member_without_c_kernel_breaks_the_run():
    # Cast to string has no C kernel: Add and Relu are left as single ops, nothing fuses
    nodes = [helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Cast", ["a"], ["s"], to=TensorProto.STRING),
             helper.make_node("Cast", ["s"], ["b"], to=TensorProto.FLOAT), helper.make_node("Relu", ["b"], ["z"])]
    model = make_model(nodes, [("x", F, [2, 3]), ("y", F, [2, 3])], [("z", F, [2, 3])])
    x = np.array([[1, -2, 3.5], [0.25, 8, -1]], F)
    check_pass(model, ElementwiseChainFusion(), {"x": x, "y": x * 2}, fires=False)


def test_smaller_intermediate_is_not_recomputed_per_element():
    # s = scale * 2 has shape [C,1,1]: it stays its own node (computed once), the run reads it
    c = 3
    nodes = [helper.make_node("Mul", ["scale", "two"], ["s"]), helper.make_node("Mul", ["x", "s"], ["m"]),
             helper.make_node("Relu", ["m"], ["z"])]
    model = make_model(nodes, [("x", F, [2, c, 2, 2]), ("scale", F, [c, 1, 1])], [("z", F, [2, c, 2, 2])],
                       {"two": np.array(2.0, F)})
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(2, c, 2, 2), "scale": rand(c, 1, 1)})
    assert [n.op_type for n in g.nodes] == ["Mul", "ElementwiseChain"]
    assert body_ops(chains(g)[0]) == ["Mul", "Relu"]


def test_integer_and_cast_chain():
    # float -> int32 -> integer Div/Mod (trap guards) -> bool compare -> Where -> float64
    nodes = [helper.make_node("Mul", ["x", "ten"], ["m"]), helper.make_node("Cast", ["m"], ["i"], to=TensorProto.INT32),
             helper.make_node("Mod", ["i", "seven"], ["r"]), helper.make_node("Div", ["r", "k"], ["d"]),
             helper.make_node("Greater", ["d", "zero"], ["g"]),
             helper.make_node("Where", ["g", "d", "r"], ["w"]), helper.make_node("Cast", ["w"], ["z"], to=TensorProto.DOUBLE)]
    inits = {"ten": np.array(10, F), "seven": np.array(7, np.int32), "zero": np.array(0, np.int32)}
    model = make_model(nodes, [("x", F, [4, 5]), ("k", np.int32, [5])], [("z", np.float64, [4, 5])], inits)
    feed = {"x": rand(4, 5) * 3, "k": np.array([1, -1, 2, -3, 3], np.int32)}
    g, _ = check_pass(model, ElementwiseChainFusion(), feed)
    (node,) = chains(g)
    assert len(body_ops(node)) == 7


def test_float64_chain():
    nodes = [helper.make_node("Sub", ["x", "y"], ["d"]), helper.make_node("Abs", ["d"], ["a"]),
             helper.make_node("Sqrt", ["a"], ["z"])]
    model = make_model(nodes, [("x", np.float64, [6]), ("y", np.float64, [6])], [("z", np.float64, [6])])
    g, _ = check_pass(model, ElementwiseChainFusion(), {"x": rand(6, dtype=np.float64), "y": rand(6, dtype=np.float64)})
    assert len(chains(g)) == 1


def levels_model():
    """A per-channel affine + Gelu-like tail with a scalar, a diamond and an escaping value."""
    c = 4
    nodes = [helper.make_node("Mul", ["x", "scale"], ["m"]), helper.make_node("Add", ["m", "bias"], ["a"]),
             helper.make_node("Mul", ["a", "k"], ["ak"]), helper.make_node("Sigmoid", ["ak"], ["s"]),
             helper.make_node("Mul", ["a", "s"], ["y"]),
             helper.make_node("ReduceMean", ["a", "axes"], ["mean"], keepdims=0)]
    inits = {"scale": rand(c, 1, 1), "bias": rand(c, 1, 1), "k": np.array(1.702, F),
             "axes": np.array([2, 3], np.int64)}
    model = make_model(nodes, [("x", F, [2, c, 3, 5])], [("y", F, [2, c, 3, 5]), ("mean", F, [2, c])], inits)
    return model, {"x": rand(2, c, 3, 5)}


def test_levels_none_and_extended_agree_with_onnxruntime(tmp_path):
    model, feed = levels_model()
    built = check_levels(model, feed, tmp_path, levels=("none", "extended"))
    c_src = (built["extended"].output_dir / f"{built['extended'].prefix}.c").read_text()
    assert "ElementwiseChain" in c_src
    assert "ElementwiseChain" not in (built["none"].output_dir / f"{built['none'].prefix}.c").read_text()


def test_integer_chain_compiles_with_trap_guards(tmp_path):
    # the chain's C keeps the unfused kernels' guards: x/0 gives 0, INT_MIN/-1 gives INT_MIN
    nodes = [helper.make_node("Div", ["a", "b"], ["d"]), helper.make_node("Sub", ["d", "b"], ["e"]),
             helper.make_node("Max", ["e", "a"], ["z"])]
    model = make_model(nodes, [("a", np.int32, [2, 3]), ("b", np.int32, [3])], [("z", np.int32, [2, 3])])
    import onnxc
    m = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False)
    assert "ElementwiseChain" in (m.output_dir / f"{m.prefix}.c").read_text()
    imin = np.iinfo(np.int32).min
    a = np.array([[7, -9, 100], [5, 6, imin]], np.int32)
    b = np.array([2, 0, -1], np.int32)
    z = m.run(None, {"a": a, "b": b})[0]
    np.testing.assert_array_equal(z, np.array([[7, 0, 100], [5, 6, imin + 1]], np.int32))


def _node_block(c_src, op):
    """The C of the (single) node ``op`` in the generated file."""
    start = c_src.index(f"] {op} ")
    end = c_src.index("\n    }\n", start)
    return c_src[start:end]


@pytest.mark.parametrize("broadcast", [False, True])
def test_generated_c_is_one_loop_nest(tmp_path, broadcast):
    shape = (2, 3, 4, 5)
    model, feed = plain_model(shape)
    if broadcast:  # per-channel w [3,1,1]: loops over N, C and H*W, still one nest
        nodes = list(model.graph.node)
        model = make_model(nodes, [("x", F, list(shape)), ("y", F, list(shape)), ("w", F, [3, 1, 1])],
                           [("z", F, list(shape))])
        feed["w"] = rand(3, 1, 1)
    built = check_levels(model, feed, tmp_path, levels=("extended",))
    c_src = (built["extended"].output_dir / f"{built['extended'].prefix}.c").read_text()
    assert c_src.count("] ElementwiseChain ") == 1 and "] Relu " not in c_src
    block = _node_block(c_src, "ElementwiseChain")
    lines = block.splitlines()
    loops = [i for i, line in enumerate(lines) if re.match(r"\s*for \(", line)]
    assert len(loops) == (3 if broadcast else 1)
    assert loops == list(range(loops[0], loops[0] + len(loops)))  # nested, not one after another
    assert c_src.count("for (") == len(loops)  # the whole model is this one nest
    assert block.count("y0[") == 1 and "onnxc_sigmoidf(" in block  # one store; Sigmoid computed in the loop


def test_expand_chain_restores_the_members():
    from onnxc import frontend
    from onnxc.ir import verify
    from onnxc.ops.interp import run_graph
    from onnxc.passes.extended.elementwise_chain import expand_chain
    nodes = [helper.make_node("Add", ["x", "one"], ["a"]), helper.make_node("Mul", ["a", "w"], ["m"]),
             helper.make_node("Relu", ["m"], ["z"]), helper.make_node("ReduceSum", ["a"], ["s"], keepdims=0)]
    model = make_model(nodes, [("x", F, [3, 4]), ("w", F, [4])], [("z", F, [3, 4]), ("s", F, [])],
                       {"one": np.array(1.0, F)})
    feed = {"x": rand(3, 4), "w": rand(4)}
    g, _ = check_pass(model, ElementwiseChainFusion(), feed)
    (node,) = chains(g)
    members = expand_chain(g, node)
    verify(g)
    assert [n.op_type for n in g.nodes] == ["Add", "Mul", "Relu", "ReduceSum"] and g.nodes[:3] == members
    for a, b in zip(run_graph(g, feed), run_graph(frontend.load(model), feed)):
        np.testing.assert_array_equal(a, b)


def conv_hardswish_model(c=16):
    """Conv -> x * Clip(x + 3, 0, 6) / 6 (a decomposed HardSwish, not an epilogue) -> Conv."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c1", "three"], ["a"]), helper.make_node("Clip", ["a", "zero", "six"], ["cl"]),
             helper.make_node("Mul", ["c1", "cl"], ["m"]), helper.make_node("Div", ["m", "six"], ["hs"]),
             helper.make_node("Conv", ["hs", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    inits = {"w1": rand(c, c, 3, 3) * 0.3, "b1": rand(c), "w2": rand(c, c, 3, 3) * 0.3, "b2": rand(c),
             "three": np.array(3, F), "zero": np.array(0, F), "six": np.array(6, F)}
    model = make_model(nodes, [("x", F, [1, c, 6, 6])], [("y", F, [1, c, 6, 6])], inits)
    return model, {"x": rand(1, c, 6, 6)}


@pytest.mark.parametrize("target", ["generic", "avx2", "avx512"])
def test_layout_level_fuses_the_blocked_ops_without_extra_reorders(target):
    # a chain made at the extended level is taken apart before NCHWc blocking and fused again
    # after it: the run stays blocked between the two convs (no reorder pair around it)
    from onnxc import frontend
    from onnxc.driver import optimize
    from onnxc.ops.interp import run_graph
    model, feed = conv_hardswish_model()
    g = frontend.load(model)
    optimize(g, "layout", target=target)
    counts = g.op_counts()
    assert counts["onnxc.ElementwiseChain"] == 1 and counts["onnxc.NchwcConv"] == 2
    assert counts["onnxc.ReorderInput"] == 1 and counts["onnxc.ReorderOutput"] == 1  # model input/output only
    (node,) = chains(g)
    assert len(node.outputs[0].shape) == 5
    np.testing.assert_allclose(run_graph(g, feed)[0], ort_run(model, feed)[0], rtol=1e-4, atol=1e-4)


def test_levels_extended_and_layout_with_conv_agree_with_onnxruntime(tmp_path):
    model, feed = conv_hardswish_model()
    check_levels(model, feed, tmp_path, levels=("extended", "layout"), rtol=1e-4, atol=1e-4)


def test_c_kernel_refuses_bodies_it_cannot_emit():
    from onnxc.providers.c import check_node
    model, feed = plain_model((2, 3))
    g, _ = check_pass(model, ElementwiseChainFusion(), feed)
    (node,) = chains(g)
    body = node.attrs["body"]
    assert check_node(node) is None
    relu = body.nodes[2]
    relu.op_type = "Softmax"
    assert "not a one-output elementwise op" in check_node(node)
    relu.op_type = "Relu"
    node.outputs[0].shape = (1, 2, 3)  # a node claiming another shape than its body computes
    assert "the body computes" in check_node(node)
    node.outputs[0].shape = (2, 3)
    inner = body.nodes[0].inputs[0]
    body.nodes[0].set_input(0, g.inputs[0])  # the outer x instead of the body's input
    assert "outside the body" in check_node(node)
    body.nodes[0].set_input(0, inner)
    assert check_node(node) is None


def test_casts_from_and_to_float16_stay_outside_the_run(tmp_path):
    # a fused node touching a narrow type would be refused as a whole; the float32 middle fuses
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Mul", ["r", "w"], ["m"]), helper.make_node("Sigmoid", ["m"], ["s"]),
             helper.make_node("Cast", ["s"], ["y"], to=TensorProto.FLOAT16)]
    model = make_model(nodes, [("x", np.float16, [3, 4]), ("w", F, [4])], [("y", np.float16, [3, 4])])
    feed = {"x": rand(3, 4, dtype=np.float16), "w": rand(4)}
    g, _ = check_pass(model, ElementwiseChainFusion(), feed)
    assert [n.op_type for n in g.nodes] == ["Cast", "ElementwiseChain", "Cast"]
    assert body_ops(chains(g)[0]) == ["Relu", "Mul", "Sigmoid"]
    check_levels(model, feed, tmp_path, levels=("extended",), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", [[], [0, 3]], ids=["scalar", "empty"])
def test_scalar_and_empty_chains_compile(tmp_path, shape):
    nodes = [helper.make_node("Sub", ["x", "y"], ["d"]), helper.make_node("Relu", ["d"], ["r"]),
             helper.make_node("Neg", ["r"], ["z"])]
    model = make_model(nodes, [("x", F, shape), ("y", F, shape)], [("z", F, shape)])
    feed = {"x": rand(*shape), "y": rand(*shape)}
    built = check_levels(model, feed, tmp_path, levels=("extended",))
    assert "ElementwiseChain" in (built["extended"].output_dir / f"{built['extended'].prefix}.c").read_text()
