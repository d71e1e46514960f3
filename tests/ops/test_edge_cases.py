"""Edge cases against onnxruntime: empty tensors and zero-size dims, rank-6/7 tensors, scalars
(rank 0) through each op family, negative axes on every axis attribute, integer wrap-around and
bool logic.

Each model is compiled with the default options (fallback allowed), whose answer must equal
onnxruntime's, and every node must have run in C: a node that fell back (a C kernel lost or
refusing the case) fails the test with the C provider's reason, after the answer was checked.
A case C is not expected to run would say so with its own xfail."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run

RNG = np.random.default_rng(11)
F32 = np.float32


def check(model, feed, tmp_path, rtol=1e-5, atol=1e-6, exact=False):
    ref = ort_run(model, feed)
    cm = onnxc.compile(model, output_dir=tmp_path / "o")
    out = cm.run(None, feed)
    assert len(out) == len(ref)
    for o, r, info in zip(out, ref, model.graph.output):
        assert o.shape == r.shape and o.dtype == r.dtype, (info.name, o.shape, r.shape, o.dtype, r.dtype)
        if exact or r.dtype.kind in "biu":
            np.testing.assert_array_equal(o, r, err_msg=info.name)
        else:
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=info.name)
    assert not cm.fallback_nodes, "fell back: " + "; ".join(f"{n['op']}: {n['why']}" for n in cm.fallback_nodes)


def test_check_fails_when_a_node_falls_back(tmp_path):
    """The harness itself: a node C declines (Abs of NonZero's data-dependent shape) gives the
    right answer through the fallback, and check() still fails (it used to xfail, so a lost
    kernel read as expected)."""
    feed = {"x": np.array([[0, 1.5], [2, 0]], F32)}
    model = model_of([node("NonZero", ["x"], "n"), node("Abs", ["n"], "y")], feed, [("y", np.int64, None)])
    with pytest.raises(AssertionError, match="fell back: Abs"):
        check(model, feed, tmp_path)


def model_of(nodes, inputs, outputs, inits=None, opset=18):
    """inputs: {name: array}; outputs: names (dtype and shape inferred by onnx)."""
    return make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in inputs.items()],
                      [(o, F32, None) if isinstance(o, str) else o for o in outputs], inits, opset=opset)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs if isinstance(outs, list) else [outs], **attrs)


def randn(*shape, dtype=F32):
    return RNG.standard_normal(shape).astype(dtype)


def i64(*v):
    return np.array(v, np.int64)


# --- empty tensors / zero-size dims ---------------------------------------------------------
def test_empty_elementwise_and_broadcast(tmp_path):
    feed = {"a": randn(0, 3), "b": randn(3), "c": randn(2, 0, 1), "d": randn(1, 5), "e": randn(1, 0), "f": randn(3, 1)}
    nodes = [node("Relu", ["a"], "r"), node("Exp", ["a"], "ex"), node("Add", ["a", "b"], "ab"),
             node("Mul", ["c", "d"], "cd"), node("Sub", ["e", "f"], "ef"), node("Greater", ["a", "b"], "g"),
             node("Where", ["g", "a", "b"], "w")]
    outs = [(n, F32, None) for n in ("r", "ex", "ab", "cd", "ef", "w")] + [("g", np.bool_, None)]
    check(model_of(nodes, feed, outs), feed, tmp_path)


@pytest.mark.parametrize("shapes", [((3, 0), (0, 4)), ((0, 4), (4, 5)), ((2, 3, 0), (0, 5)), ((0,), (0,)),
                                    ((2, 0, 3), (3, 4))])
def test_empty_matmul(shapes, tmp_path):
    """K = 0 gives zeros; M = 0 or a zero batch dim gives an empty output."""
    feed = {"a": randn(*shapes[0]), "b": randn(*shapes[1])}
    check(model_of([node("MatMul", ["a", "b"], "y")], feed, ["y"]), feed, tmp_path)


def test_empty_gemm_k0(tmp_path):
    feed = {"a": randn(3, 0), "b": randn(0, 4), "c": randn(4)}
    check(model_of([node("Gemm", ["a", "b", "c"], "y", alpha=2.0, beta=0.5)], feed, ["y"]), feed, tmp_path)


def test_empty_concat_slice_gather_transpose(tmp_path):
    feed = {"a": randn(2, 0, 4), "b": randn(2, 3, 4)}
    inits = {"st": i64(3), "en": i64(1), "ax": i64(1), "st2": i64(1), "en2": i64(1), "ind": np.zeros((0,), np.int64),
             "ind2": np.zeros((2, 0), np.int64)}
    nodes = [node("Concat", ["a", "b"], "cat", axis=1), node("Concat", ["b", "a", "b"], "cat2", axis=1),
             node("Slice", ["b", "st", "en", "ax"], "sl"),  # start > end: empty
             node("Slice", ["b", "st2", "en2", "ax"], "sl2"),  # start == end: empty
             node("Gather", ["b", "ind"], "g0", axis=1), node("Gather", ["b", "ind2"], "g1", axis=2),
             node("Gather", ["a", "ind"], "g2", axis=1),
             node("Transpose", ["a"], "t", perm=[2, 0, 1])]
    check(model_of(nodes, feed, ["cat", "cat2", "sl", "sl2", "g0", "g1", "g2", "t"], inits), feed, tmp_path)


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_over_empty_axis(keepdims, tmp_path):
    """Per spec: Sum/L1/L2/SumSquare -> 0, Prod -> 1, Max -> -inf, Min -> +inf, LogSumExp -> -inf."""
    feed = {"x": randn(3, 0, 2)}
    ops = ["ReduceSum", "ReduceProd", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceSumSquare",
           "ReduceLogSumExp"]
    nodes = [node(op, ["x", "ax"], op, keepdims=keepdims) for op in ops]
    check(model_of(nodes, feed, ops, {"ax": i64(1)}), feed, tmp_path)


def test_reduce_mean_over_empty_axis(tmp_path):
    """The spec leaves the mean of nothing undefined: onnxruntime gives 0, onnxc 0/0 = NaN."""
    feed = {"x": randn(3, 0)}
    model = model_of([node("ReduceMean", ["x", "ax"], "y", keepdims=0)], feed, ["y"], {"ax": i64(-1)})
    cm = onnxc.compile(model, output_dir=tmp_path / "o")
    y = cm.run(None, feed)[0]
    assert y.shape == ort_run(model, feed)[0].shape == (3,) and cm.fallback_nodes == []


def test_reduce_int_over_empty_axis(tmp_path):
    """Max of nothing is the dtype's minimum for integers, Min its maximum."""
    feed = {"x": np.zeros((2, 0), np.int32)}
    ops = ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd"]
    nodes = [node(op, ["x", "ax"], op, keepdims=0) for op in ops]
    check(model_of(nodes, feed, [(op, np.int32, None) for op in ops], {"ax": i64(1)}), feed, tmp_path)


@pytest.mark.parametrize("omit_axes", [False, True])
def test_reduce_noop_with_empty_axes(omit_axes, tmp_path):
    """Nothing reduced: each element alone, so L1 gives |x|, L2 |x|, SumSquare x*x, LogSum log x."""
    feed = {"x": randn(2, 3), "p": np.abs(randn(2, 3)) + 0.1}
    ops = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
           "ReduceSumSquare", "ReduceLogSumExp"]
    ins = ["x"] if omit_axes else ["x", "ax"]
    nodes = [node(op, ins, op, noop_with_empty_axes=1) for op in ops]
    nodes.append(node("ReduceLogSum", ["p"] + ins[1:], "ls", noop_with_empty_axes=1))
    inits = {} if omit_axes else {"ax": np.zeros((0,), np.int64)}
    check(model_of(nodes, feed, ops + ["ls"], inits), feed, tmp_path)


def test_reduce_nonempty_axis_of_empty_tensor(tmp_path):
    feed = {"x": randn(0, 4)}
    nodes = [node("ReduceSum", ["x", "ax"], "s", keepdims=1), node("ReduceMax", ["x", "ax"], "m", keepdims=0),
             node("Softmax", ["x"], "sm", axis=-1), node("ArgMax", ["x"], "am", axis=1)]
    outs = ["s", "m", "sm", ("am", np.int64, None)]
    check(model_of(nodes, feed, outs, {"ax": i64(1)}), feed, tmp_path)


def test_reduce_all_of_empty_tensor(tmp_path):
    feed = {"x": randn(0, 4)}
    nodes = [node("ReduceSum", ["x"], "s", keepdims=0), node("ReduceMax", ["x"], "m", keepdims=1)]
    check(model_of(nodes, feed, ["s", "m"]), feed, tmp_path)


def test_slice_negative_step_start_below_dim(tmp_path):
    """ONNX clamps a negative-step start below -dim to 0 and takes element 0 (numpy's slice is
    empty); an end below -dim clamps to -1, i.e. through element 0."""
    feed = {"x": randn(4, 3)}
    inits = {"s1": i64(-1000), "e1": i64(-1000), "s2": i64(-5, 2), "e2": i64(-2**63, -10), "ax": i64(0, 1),
             "k1": i64(-1), "k2": i64(-2, -1), "a0": i64(0)}
    nodes = [node("Slice", ["x", "s1", "e1", "a0", "k1"], "y1"), node("Slice", ["x", "s2", "e2", "ax", "k2"], "y2")]
    check(model_of(nodes, feed, ["y1", "y2"], inits), feed, tmp_path)


# --- high rank --------------------------------------------------------------------------------
@pytest.mark.parametrize("rank", [6, 7])
def test_high_rank_transpose_and_broadcast(rank, tmp_path):
    shape = [2, 3, 1, 2, 3, 2, 2][:rank]
    perm = [int(p) for p in RNG.permutation(rank)]
    other = [1 if i % 2 else d for i, d in enumerate(shape)][1:]  # lower rank, broadcast dims
    feed = {"x": randn(*shape), "b": randn(*other), "c": randn(*([shape[0]] + [1] * (rank - 2) + [shape[-1]]))}
    nodes = [node("Transpose", ["x"], "t", perm=perm), node("Add", ["x", "b"], "ab"), node("Mul", ["x", "c"], "xc"),
             node("Greater", ["x", "c"], "m"), node("Where", ["m", "x", "b"], "w"),
             node("ReduceSum", ["x", "ax"], "rs", keepdims=0)]
    check(model_of(nodes, feed, ["t", "ab", "xc", "w", "rs"], {"ax": i64(-1, 1, -3)}), feed, tmp_path)


# --- scalars (rank 0) -----------------------------------------------------------------------
def test_scalar_elementwise(tmp_path):
    feed = {"s": np.array(0.7, F32), "t": np.array(-1.5, F32), "v": randn(3, 2), "k": np.array(True)}
    nodes = [node("Exp", ["s"], "e"), node("Add", ["s", "t"], "st"), node("Mul", ["s", "v"], "sv"),
             node("Where", ["k", "s", "v"], "w"), node("Clip", ["v", "t", "s"], "c"), node("Cast", ["s"], "ci", to=7),
             node("Less", ["s", "t"], "lt"), node("Not", ["k"], "nk"), node("Max", ["s", "t", "v"], "mx"),
             node("Pow", ["v", "s"], "pw"), node("Sigmoid", ["t"], "sg")]
    outs = ["e", "st", "sv", "w", "c", ("ci", np.int64, None), ("lt", np.bool_, None), ("nk", np.bool_, None), "mx",
            "sg"]
    check(model_of(nodes[:-2] + nodes[-1:], feed, outs), feed, tmp_path)


def test_scalar_shape_ops(tmp_path):
    feed = {"s": np.array(2.5, F32), "v": randn(1)}
    inits = {"one": i64(1), "empty": np.zeros((0,), np.int64), "ax0": i64(0), "shp": i64(2, 3)}
    nodes = [node("Reshape", ["s", "one"], "r1"), node("Reshape", ["v", "empty"], "r0"),
             node("Unsqueeze", ["s", "ax0"], "u"), node("Squeeze", ["v", "ax0"], "q"), node("Squeeze", ["v"], "q2"),
             node("Identity", ["s"], "id"), node("Expand", ["s", "shp"], "ex"), node("Shape", ["s"], "sh"),
             node("Size", ["s"], "sz"), node("Flatten", ["s"], "fl", axis=0),
             node("Concat", ["u", "v"], "cat", axis=0)]
    outs = ["r1", "r0", "u", "q", "q2", "id", "ex", ("sh", np.int64, None), ("sz", np.int64, None), "fl", "cat"]
    nodes = [n for n in nodes if n.output[0] != "fl"]  # Flatten needs rank >= 1 (onnx checker)
    outs = [o for o in outs if o != "fl"]
    check(model_of(nodes, feed, outs, inits), feed, tmp_path)


def test_scalar_reductions_and_indexing(tmp_path):
    feed = {"s": np.array(-3.0, F32), "v": randn(5), "m": randn(4, 3), "i": np.array(-2, np.int64)}
    nodes = [node("ReduceSum", ["s"], "rs", keepdims=1), node("ReduceMax", ["s"], "rm", keepdims=0),
             node("ReduceL1", ["s"], "r1", keepdims=0), node("ReduceSumSquare", ["s"], "rsq", keepdims=1),
             node("ReduceL2", ["s"], "rl2", keepdims=0), node("ReduceLogSum", ["a"], "rls"),
             node("ReduceL2", ["v"], "rl", keepdims=0),  # vector -> scalar
             node("Gather", ["v", "i"], "g"),  # scalar index: output rank drops
             node("Gather", ["m", "i"], "gm", axis=1), node("MatMul", ["v", "v"], "dot"),
             node("ArgMax", ["v"], "am", keepdims=0)]
    outs = ["rs", "rm", "r1", "rsq", "rl2", "rls", "rl", "g", "gm", "dot", ("am", np.int64, None)]
    nodes.insert(0, node("Abs", ["s"], "a"))
    check(model_of(nodes, feed, outs), feed, tmp_path)


def test_scalar_integer_and_bool(tmp_path):
    feed = {"a": np.array(7, np.int32), "b": np.array(-3, np.int32), "p": np.array(True), "q": np.array(False)}
    nodes = [node("Add", ["a", "b"], "add"), node("Div", ["a", "b"], "div"), node("Mod", ["a", "b"], "mod"),
             node("Abs", ["b"], "abs"), node("And", ["p", "q"], "and"), node("Xor", ["p", "q"], "xor"),
             node("Cast", ["a"], "cf", to=1)]
    outs = [(o, np.int32, None) for o in ("add", "div", "mod", "abs")] + [("and", np.bool_, None),
                                                                          ("xor", np.bool_, None), "cf"]
    check(model_of(nodes, feed, outs), feed, tmp_path)


# --- negative axes ----------------------------------------------------------------------------
@pytest.mark.parametrize("op,axis", [(op, ax) for op in ("Softmax", "LogSoftmax", "Hardmax") for ax in (-1, -2, -3)])
def test_negative_axis_softmax(op, axis, tmp_path):
    feed = {"x": randn(2, 3, 4)}
    check(model_of([node(op, ["x"], "y", axis=axis)], feed, ["y"]), feed, tmp_path)


def test_negative_axis_data_movement(tmp_path):
    feed = {"x": randn(2, 3, 4), "z": randn(2, 1, 4), "ge": RNG.integers(-4, 4, (2, 3, 2)).astype(np.int64)}
    inits = {"ind": np.array([[-1, 0], [2, -3]], np.int64), "ind2": i64(-1, 0, -2), "sp": i64(1, 3), "ax": i64(-2), "pads": i64(1, 2),
             "pax": i64(-1)}
    nodes = [node("Concat", ["x", "z"], "cat", axis=-2), node("Gather", ["x", "ind"], "g", axis=-1),
             node("Gather", ["x", "ind2"], "g2", axis=-3),
             node("GatherElements", ["x", "ge"], "ge_out", axis=-1),
             node("Split", ["x", "sp"], ["s0", "s1"], axis=-1), node("Split", ["x"], ["t0", "t1", "t2"], axis=-2, num_outputs=3),
             node("Flatten", ["x"], "f1", axis=-1), node("Flatten", ["x"], "f3", axis=-3),
             node("Unsqueeze", ["x", "ax"], "u"), node("Squeeze", ["z", "ax"], "q"),
             node("Pad", ["x", "pads", "", "pax"], "pad")]
    outs = ["cat", "g", "g2", "ge_out", "s0", "s1", "t0", "t1", "t2", "f1", "f3", "u", "q", "pad"]
    check(model_of(nodes, feed, outs, inits), feed, tmp_path)


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_negative_axis_cumsum(exclusive, reverse, tmp_path):
    feed = {"x": randn(2, 3, 4)}
    nodes = [node("CumSum", ["x", "a1"], "c1", exclusive=exclusive, reverse=reverse),
             node("CumSum", ["x", "a2"], "c2", exclusive=exclusive, reverse=reverse)]
    check(model_of(nodes, feed, ["c1", "c2"], {"a1": i64(-1), "a2": np.array(-3, np.int32)}), feed, tmp_path)


@pytest.mark.parametrize("keepdims,last", [(0, 0), (1, 1)])
def test_negative_axis_arg_topk(keepdims, last, tmp_path):
    feed = {"x": RNG.integers(0, 3, (2, 3, 4)).astype(F32)}  # ties
    nodes = [node("ArgMax", ["x"], "amx", axis=-1, keepdims=keepdims, select_last_index=last),
             node("ArgMin", ["x"], "amn", axis=-2, keepdims=keepdims, select_last_index=last),
             node("ArgMax", ["x"], "am3", axis=-3, keepdims=keepdims, select_last_index=last)]
    outs = [(o, np.int64, None) for o in ("amx", "amn", "am3")]
    check(model_of(nodes, feed, outs), feed, tmp_path)


def test_negative_axis_topk(tmp_path):
    feed = {"x": randn(2, 3, 4)}
    nodes = [node("TopK", ["x", "k"], ["v", "i"], axis=-2), node("TopK", ["x", "k"], ["v2", "i2"], axis=-1, largest=0)]
    outs = ["v", ("i", np.int64, None), "v2", ("i2", np.int64, None)]
    check(model_of(nodes, feed, outs, {"k": i64(2)}), feed, tmp_path)


@pytest.mark.parametrize("axis", [-1, -2, -3])
def test_negative_axis_layernorm(axis, tmp_path):
    feed = {"x": randn(2, 3, 4)}
    inits = {"w": randn(*(2, 3, 4)[axis:]), "b": randn(*(2, 3, 4)[axis:])}
    nodes = [node("LayerNormalization", ["x", "w", "b"], "y", axis=axis, epsilon=1e-5),
             node("LpNormalization", ["x"], "lp", axis=axis, p=2)]
    check(model_of(nodes, feed, ["y", "lp"], inits), feed, tmp_path, rtol=1e-4, atol=1e-5)


def test_negative_axis_scatter_onehot(tmp_path):
    feed = {"x": randn(2, 3, 4), "u": randn(2, 3, 2), "ind": np.array([[[-1, 0]] * 3] * 2, np.int64),
            "oh": np.array([[0, -1, 2]], np.int64)}
    nodes = [node("ScatterElements", ["x", "ind", "u"], "sc", axis=-1),
             node("OneHot", ["oh", "depth", "vals"], "o1", axis=-1), node("OneHot", ["oh", "depth", "vals"], "o2",
                                                                         axis=-2)]
    inits = {"depth": i64(4), "vals": np.array([0.0, 1.0], F32)}
    check(model_of(nodes, feed, ["sc", "o1", "o2"], inits), feed, tmp_path)


# --- integer wrap-around --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_integer_wraparound(dtype, tmp_path):
    """Add/Sub/Mul wrap modulo 2^bits like onnxruntime; Neg/Abs of the minimum stay the minimum."""
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, info.max, info.min, info.max // 2 + 1, 3, 0, info.max], dtype)
    b = np.array([1, -1 if info.min < 0 else info.max, info.max, info.min, 2, info.max, 0, info.min], dtype)
    feed = {"a": a, "b": b}
    nodes = [node("Add", ["a", "b"], "add"), node("Sub", ["a", "b"], "sub"), node("Mul", ["a", "b"], "mul")]
    outs = ["add", "sub", "mul"]
    if info.min < 0 and np.dtype(dtype).itemsize >= 4:  # onnxruntime has Neg/Abs only for these
        nodes += [node("Neg", ["a"], "neg"), node("Abs", ["a"], "abs")]
        outs += ["neg", "abs"]
    check(model_of(nodes, feed, [(o, dtype, None) for o in outs]), feed, tmp_path)


def test_integer_reduce_and_cumsum(tmp_path):
    feed = {"x": RNG.integers(-2**20, 2**20, (3, 200)).astype(np.int32), "v": RNG.integers(-9, 9, (3, 5), np.int32)}
    nodes = [node("ReduceSum", ["x", "ax"], "s", keepdims=0), node("ReduceProd", ["v", "ax0"], "p", keepdims=0),
             node("ReduceMax", ["x", "ax"], "mx", keepdims=1), node("CumSum", ["x", "cax"], "cs")]
    outs = [(o, np.int32, None) for o in ("s", "p", "mx", "cs")]
    check(model_of(nodes, feed, outs, {"ax": i64(-1), "ax0": i64(0), "cax": i64(-1)}), feed, tmp_path)


def test_integer_reduce_overflow_wraps(tmp_path):
    """Overflow is undefined by the spec: onnxruntime saturates int32 ReduceSum (but wraps in
    CumSum); onnxc wraps modulo 2^32 everywhere, like numpy."""
    x = np.full((2, 5), np.iinfo(np.int32).max, np.int32)
    x[0] = [1, 2, 3, -4, 5]
    model = model_of([node("ReduceSum", ["x", "ax"], "s", keepdims=0), node("CumSum", ["x", "ax"], "cs")], {"x": x},
                     [("s", np.int32, None), ("cs", np.int32, None)], {"ax": i64(-1)})
    cm = onnxc.compile(model, output_dir=tmp_path / "o")
    s, cs = cm.run(None, {"x": x})
    assert cm.fallback_nodes == []
    np.testing.assert_array_equal(s, x.sum(axis=-1, dtype=np.int32))
    np.testing.assert_array_equal(cs, np.cumsum(x, axis=-1, dtype=np.int32))
    np.testing.assert_array_equal(cs, ort_run(model, {"x": x})[1])


# --- bool -------------------------------------------------------------------------------------
def test_bool_ops_broadcast(tmp_path):
    feed = {"p": RNG.random((2, 3, 4)) > 0.5, "q": RNG.random((3, 1)) > 0.5, "r": RNG.random((4,)) > 0.5,
            "x": randn(3, 4), "y": randn(2, 1, 1)}
    nodes = [node("And", ["p", "q"], "and"), node("Or", ["q", "r"], "or"), node("Xor", ["p", "r"], "xor"),
             node("Not", ["p"], "not"), node("Where", ["q", "x", "y"], "w"),
             node("Equal", ["p", "r"], "eq"), node("Cast", ["p"], "cf", to=1), node("Cast", ["x"], "cb", to=9)]
    outs = [(o, np.bool_, None) for o in ("and", "or", "xor", "not")] + ["w",
                                                                         ("eq", np.bool_, None), "cf",
                                                                         ("cb", np.bool_, None)]
    check(model_of(nodes, feed, outs), feed, tmp_path)


def test_bool_reduce_and_data_movement(tmp_path):
    feed = {"p": RNG.random((2, 3, 4)) > 0.5}
    inits = {"ind": i64(2, -1), "st": i64(-1), "en": i64(-100), "ax": i64(2), "stp": i64(-2)}
    nodes = [node("Transpose", ["p"], "t", perm=[2, 0, 1]), node("Gather", ["p", "ind"], "g", axis=-1),
             node("Slice", ["p", "st", "en", "ax", "stp"], "s"), node("Concat", ["p", "p"], "c", axis=-1)]
    check(model_of(nodes, feed, [(o, np.bool_, None) for o in ("t", "g", "s", "c")], inits), feed, tmp_path)


def test_bool_where(tmp_path):
    """Where on bool values (onnxruntime has no kernel for it: numpy is the oracle)."""
    feed = {"p": RNG.random((2, 3, 4)) > 0.5, "q": RNG.random((3, 1)) > 0.5, "r": RNG.random((4,)) > 0.5}
    model = model_of([node("Where", ["p", "q", "r"], "w")], feed, [("w", np.bool_, None)])
    cm = onnxc.compile(model, output_dir=tmp_path / "o")
    np.testing.assert_array_equal(cm.run(None, feed)[0], np.where(feed["p"], feed["q"], feed["r"]))
    assert cm.fallback_nodes == []
