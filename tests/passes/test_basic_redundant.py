"""Redundant-node elimination (compiler/passes/basic/redundant.py): each rewrite is checked
against onnxruntime on the original model, and where it must not fire, that it does not."""
import sys

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc import frontend
from onnxc.passes.basic.redundant import (CancelUnsqueezeSqueeze, EliminateIdentity, EliminateNoop,
                                         FuseReshapeChain, FuseTransposeChain)

F = np.float32


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def ops(g):
    return [n.op_type for n in g.nodes]


@pytest.fixture
def keep_opset(monkeypatch):
    """Import old-opset models as they are (the frontend would convert them to opset 18)."""
    monkeypatch.setattr(sys.modules["onnxc.frontend.load"], "normalize_opset", lambda m, *a, **k: m)


# --- Identity / Dropout -------------------------------------------------------------------
def test_identity_removed():
    m = make_model([helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Relu", ["i"], ["y"])],
                   [("x", F, [2, 3])], [("y", F, [2, 3])])
    g, res = check_pass(m, EliminateIdentity(), {"x": rnd(2, 3)})
    assert ops(g) == ["Relu"] and g.nodes[0].inputs[0] is g.inputs[0]


def test_identity_graph_output_of_graph_input_and_duplicate_outputs(tmp_path):
    # y1 = Identity(x) becomes the graph input itself, y3 = Identity(r) a duplicate of output r:
    # the compiled model must still return every output under its own name
    nodes = [helper.make_node("Identity", ["x"], ["y1"]), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Identity", ["r"], ["y3"])]
    m = make_model(nodes, [("x", F, [4])], [("y1", F, [4]), ("r", F, [4]), ("y3", F, [4])])
    feed = {"x": rnd(4)}
    g, res = check_pass(m, EliminateIdentity(), feed)
    assert ops(g) == ["Relu"] and g.outputs[0] is g.inputs[0] and g.outputs[1] is g.outputs[2]
    built = check_levels(m, feed, tmp_path, levels=("none", "basic"))
    assert [o.name for o in built["basic"].get_outputs()] == ["y1", "r", "y3"]


def _dropout(training=None, mask=False, ratio=None, inits=None):
    ins = ["x", "ratio" if ratio is not None else "", "t" if training is not None else ""]
    while ins and not ins[-1]:
        ins.pop()
    outs = ["d", "mask"] if mask else ["d"]
    nodes = [helper.make_node("Dropout", ins, outs), helper.make_node("Relu", ["d"], ["y"])]
    outputs = [("y", F, [2, 3])]
    if mask:
        nodes.append(helper.make_node("Not", ["mask"], ["nm"]))
        outputs.append(("nm", np.bool_, [2, 3]))
    inits = dict(inits or {})
    if ratio is not None:
        inits["ratio"] = np.array(ratio, F)
    if isinstance(training, bool):
        inits["t"] = np.array(training)
    inputs = [("x", F, [2, 3])] + ([("t", np.bool_, [])] if training == "input" else [])
    return make_model(nodes, inputs, outputs, inits)


def test_dropout_inference_removed():
    g, _ = check_pass(_dropout(), EliminateIdentity(), {"x": rnd(2, 3)})
    assert ops(g) == ["Relu"]
    g, _ = check_pass(_dropout(training=False, ratio=0.3), EliminateIdentity(), {"x": rnd(2, 3)})
    assert ops(g) == ["Relu"]


def test_dropout_mask_used_becomes_all_true_constant():
    g, _ = check_pass(_dropout(training=False, mask=True), EliminateIdentity(), {"x": rnd(2, 3)})
    assert ops(g) == ["Relu", "Not"] and g.nodes[1].inputs[0].is_const


def test_dropout_training_or_runtime_mode_kept():
    # ratio 0 keeps training mode deterministic, so onnxruntime can still be compared with
    check_pass(_dropout(training=True, ratio=0.0), EliminateIdentity(), {"x": rnd(2, 3)}, fires=False)
    check_pass(_dropout(training="input", ratio=0.0), EliminateIdentity(),
               {"x": rnd(2, 3), "t": np.array(False)}, fires=False)


def test_dropout_opset6_is_test(keep_opset):
    def model(is_test):
        nodes = [helper.make_node("Dropout", ["x"], ["d"], is_test=is_test, ratio=0.0),
                 helper.make_node("Relu", ["d"], ["y"])]
        return make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])], opset=6)
    g = frontend.load(model(1))
    assert g.nodes[0].opset == 6 and EliminateIdentity().run(g).modified and ops(g) == ["Relu"]
    assert not EliminateIdentity().run(frontend.load(model(0))).modified


def test_dropout10_mask_used_kept(keep_opset):
    # onnxruntime's Dropout-10 mask is all false, the reference's all true: not rewritten
    nodes = [helper.make_node("Dropout", ["x"], ["d", "mask"]), helper.make_node("Not", ["mask"], ["nm"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("d", F, [2, 3]), ("nm", np.bool_, [2, 3])], opset=10)
    g = frontend.load(m)
    assert g.nodes[0].opset == 10 and not EliminateIdentity().run(g).modified


# --- no-op Cast / Expand / Reshape / Slice / Transpose ------------------------------------
def _unary(op, inputs, inits, out_shape=(2, 3), attrs=None, out_dtype=F, opset=18):
    nodes = [helper.make_node(op, ["x"] + inputs, ["o"], **(attrs or {})), helper.make_node("Neg", ["o"], ["y"])]
    return make_model(nodes, [("x", F, [2, 3])], [("y", out_dtype, list(out_shape))], inits, opset=opset)


@pytest.mark.parametrize("model,fires", [
    (lambda: _unary("Cast", [], {}, attrs={"to": 1}), True),
    (lambda: _unary("Cast", [], {}, attrs={"to": 11}, out_dtype=np.float64), False),
    (lambda: _unary("CastLike", ["t"], {"t": np.zeros(1, F)}), True),
    (lambda: _unary("Expand", ["s"], {"s": np.array([1, 3], np.int64)}), True),
    (lambda: _unary("Expand", ["s"], {"s": np.array([2, 2, 3], np.int64)}, out_shape=(2, 2, 3)), False),
    (lambda: _unary("Reshape", ["s"], {"s": np.array([2, -1], np.int64)}), True),
    (lambda: _unary("Reshape", ["s"], {"s": np.array([3, 2], np.int64)}, out_shape=(3, 2)), False),
    (lambda: _unary("Transpose", [], {}, attrs={"perm": [0, 1]}), True),
    (lambda: _unary("Transpose", [], {}, attrs={"perm": [1, 0]}, out_shape=(3, 2)), False),
])
def test_noop_ops(model, fires):
    g, _ = check_pass(model(), EliminateNoop(), {"x": rnd(2, 3)}, fires=fires)
    assert (ops(g) == ["Neg"]) == fires


BIG = np.iinfo(np.int64).max


@pytest.mark.parametrize("starts,ends,axes,steps,fires", [
    ([0], [BIG], [1], None, True),
    ([-2, -100], [2, 3], None, None, True),  # clamps to the whole of both axes
    ([0, 0], [BIG, BIG], [0, -1], [1, 1], True),
    ([0], [2], [1], None, False),  # drops a column
    ([1], [BIG], [0], None, False),
    ([-1], [-BIG], [1], [-1], False),  # reverses the axis
    ([0], [BIG], [1], [2], False),
])
def test_slice_noop(starts, ends, axes, steps, fires):
    names, inits = ["st", "en"], {"st": np.array(starts, np.int64), "en": np.array(ends, np.int64)}
    if axes is not None or steps is not None:
        names.append("ax")
        inits["ax"] = np.array(axes if axes is not None else list(range(len(starts))), np.int64)
    if steps is not None:
        names.append("sp")
        inits["sp"] = np.array(steps, np.int64)
    nodes = [helper.make_node("Slice", ["x"] + names, ["o"]), helper.make_node("Neg", ["o"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, None)], inits)
    check_pass(m, EliminateNoop(), {"x": rnd(2, 3)}, fires=fires)


def test_slice_runtime_bounds_kept():
    nodes = [helper.make_node("Slice", ["x", "st", "en"], ["o"]), helper.make_node("Neg", ["o"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3]), ("st", np.int64, [1])], [("y", F, None)],
                   {"en": np.array([BIG], np.int64)})
    check_pass(m, EliminateNoop(), {"x": rnd(2, 3), "st": np.array([0], np.int64)}, fires=False)


def test_slice_opset9_attributes(keep_opset):
    def model(ends):
        nodes = [helper.make_node("Slice", ["x"], ["o"], starts=[0], ends=ends, axes=[1]),
                 helper.make_node("Neg", ["o"], ["y"])]
        return make_model(nodes, [("x", F, [2, 3])], [("y", F, None)], opset=9)
    g, _ = check_pass(model([BIG]), EliminateNoop(), {"x": rnd(2, 3)})
    assert g.nodes[0].opset == 9 and ops(g) == ["Neg"]
    check_pass(model([2]), EliminateNoop(), {"x": rnd(2, 3)}, fires=False)


def test_noop_reshape_as_graph_output(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "s"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3])], [("y", F, [2, 3])], {"s": np.array([2, 3], np.int64)})
    g, _ = check_pass(m, EliminateNoop(), {"x": rnd(2, 3)})
    assert ops(g) == ["Relu"] and g.outputs[0] is g.nodes[0].outputs[0]
    built = check_levels(m, {"x": rnd(2, 3)}, tmp_path, levels=("none", "basic"))
    assert built["basic"].get_outputs()[0].name == "y"


# --- Unsqueeze / Squeeze -------------------------------------------------------------------
def _pair(first, a1, second, a2, shape, opset=18, extra_user=False):
    inits = {}
    if opset >= 13:
        n1 = helper.make_node(first, ["x", "a1"] if a1 is not None else ["x"], ["m"])
        n2 = helper.make_node(second, ["m", "a2"] if a2 is not None else ["m"], ["o"])
        if a1 is not None:
            inits["a1"] = np.array(a1, np.int64)
        if a2 is not None:
            inits["a2"] = np.array(a2, np.int64)
    else:
        n1 = helper.make_node(first, ["x"], ["m"], **({"axes": a1} if a1 is not None else {}))
        n2 = helper.make_node(second, ["m"], ["o"], **({"axes": a2} if a2 is not None else {}))
    nodes = [n1, n2, helper.make_node("Neg", ["o"], ["y"])]
    outs = [("y", F, None)]
    if extra_user:
        nodes.append(helper.make_node("Abs", ["m"], ["z"]))
        outs.append(("z", F, None))
    return make_model(nodes, [("x", F, list(shape))], outs, inits, opset=opset)


@pytest.mark.parametrize("first,a1,second,a2,shape,fires", [
    ("Unsqueeze", [0, 3], "Squeeze", [0, -1], (2, 3), True),
    ("Unsqueeze", [1], "Squeeze", None, (2, 3), True),  # the only unit dim is the new one
    ("Unsqueeze", [1], "Squeeze", None, (2, 1), False),  # also squeezes x's own unit dim
    ("Unsqueeze", [0, 3], "Squeeze", [0], (2, 3), False),
    ("Squeeze", [1], "Unsqueeze", [-2], (2, 1, 3), True),
    ("Squeeze", None, "Unsqueeze", [1, 3], (2, 1, 3, 1), True),
    ("Squeeze", [1], "Unsqueeze", [0], (2, 1, 3), False),
])
def test_unsqueeze_squeeze(first, a1, second, a2, shape, fires):
    feed = {"x": rnd(*shape)}
    g, _ = check_pass(_pair(first, a1, second, a2, shape), CancelUnsqueezeSqueeze(), feed, fires=fires)
    if fires:
        assert g.nodes[-1].inputs[0] is g.inputs[0]


def test_unsqueeze_squeeze_intermediate_with_other_user():
    g, _ = check_pass(_pair("Unsqueeze", [0], "Squeeze", [0], (2, 3), extra_user=True),
                      CancelUnsqueezeSqueeze(), {"x": rnd(2, 3)})
    assert ops(g) == ["Unsqueeze", "Neg", "Abs"]


def test_unsqueeze_squeeze_opset11_attributes(keep_opset):
    g, _ = check_pass(_pair("Unsqueeze", [1], "Squeeze", [1], (2, 3), opset=11), CancelUnsqueezeSqueeze(),
                      {"x": rnd(2, 3)})
    assert g.nodes[0].opset == 11
    check_pass(_pair("Unsqueeze", [0, 1], "Squeeze", [0], (2, 3), opset=11), CancelUnsqueezeSqueeze(),
               {"x": rnd(2, 3)}, fires=False)


# --- Reshape chains ------------------------------------------------------------------------
def _reshapes(s1, s2, allowzero=0, extra_user=False, out2=None):
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["m"]),
             helper.make_node("Reshape", ["m", "s2"], ["o"], allowzero=allowzero),
             helper.make_node("Neg", ["o"], ["y"])]
    outs = [("y", F, None)]
    if extra_user:
        nodes.append(helper.make_node("Abs", ["m"], ["z"]))
        outs.append(("z", F, None))
    inits = {"s1": np.array(s1, np.int64), "s2": np.array(s2, np.int64)}
    return make_model(nodes, [("x", F, [2, 3, 4])], outs, inits)


@pytest.mark.parametrize("s1,s2", [([6, 4], [4, -1]), ([4, 6], [0, 3, 2]), ([24], [2, 12])])
def test_reshape_chain(s1, s2):
    g, _ = check_pass(_reshapes(s1, s2), FuseReshapeChain(), {"x": rnd(2, 3, 4)})
    r = g.nodes[-1].inputs[0].producer
    assert r.inputs[0] is g.inputs[0]
    assert 0 not in r.inputs[1].const.tolist()  # a 0 (copy) entry would now copy from x


def test_reshape_chain_keeps_intermediate_for_other_user():
    g, _ = check_pass(_reshapes([6, 4], [4, 6], extra_user=True), FuseReshapeChain(), {"x": rnd(2, 3, 4)})
    assert ops(g).count("Reshape") == 2


def test_reshape_chain_runtime_shape_with_copy_dim_kept():
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["m"]), helper.make_node("Reshape", ["m", "s2"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3, 4]), ("s2", np.int64, [2])], [("y", F, None)],
                   {"s1": np.array([6, 4], np.int64)})
    check_pass(m, FuseReshapeChain(), {"x": rnd(2, 3, 4), "s2": np.array([0, -1], np.int64)}, fires=False)


# --- Transpose chains ----------------------------------------------------------------------
def _transposes(p1, p2, extra_user=False, mid_output=False):
    nodes = [helper.make_node("Transpose", ["x"], ["m"], perm=p1),
             helper.make_node("Transpose", ["m"], ["o"], perm=p2), helper.make_node("Neg", ["o"], ["y"])]
    outs = [("y", F, None)]
    if extra_user:
        nodes.append(helper.make_node("Abs", ["m"], ["z"]))
        outs.append(("z", F, None))
    if mid_output:
        outs.append(("m", F, None))
    return make_model(nodes, [("x", F, [2, 3, 4])], outs)


def test_transpose_pair_cancels_even_with_other_user():
    g, _ = check_pass(_transposes([1, 2, 0], [2, 0, 1], extra_user=True), FuseTransposeChain(),
                      {"x": rnd(2, 3, 4)})
    assert ops(g) == ["Transpose", "Neg", "Abs"] and g.nodes[1].inputs[0] is g.inputs[0]


def test_transpose_pair_composes():
    g, _ = check_pass(_transposes([1, 2, 0], [1, 0, 2]), FuseTransposeChain(), {"x": rnd(2, 3, 4)})
    assert ops(g) == ["Transpose", "Neg"] and g.nodes[0].inputs[0] is g.inputs[0]


@pytest.mark.parametrize("kw", [{"extra_user": True}, {"mid_output": True}])
def test_transpose_pair_not_composed_when_intermediate_is_needed(kw):
    check_pass(_transposes([1, 2, 0], [1, 0, 2], **kw), FuseTransposeChain(), {"x": rnd(2, 3, 4)}, fires=False)


def test_transpose_default_perm_pair_cancels():
    nodes = [helper.make_node("Transpose", ["x"], ["m"]), helper.make_node("Transpose", ["m"], ["y"])]
    m = make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, [2, 3, 4])])
    g, _ = check_pass(m, FuseTransposeChain(), {"x": rnd(2, 3, 4)})
    assert g.outputs[0] is g.inputs[0]


# --- the family through the compiler at levels none and basic ------------------------------
def test_redundant_family_compiled(tmp_path):
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Dropout", ["a"], ["b"]),
        helper.make_node("Cast", ["b"], ["c"], to=1),
        helper.make_node("Unsqueeze", ["c", "ax"], ["d"]),
        helper.make_node("Squeeze", ["d", "ax"], ["e"]),
        helper.make_node("Reshape", ["e", "s1"], ["f"]),
        helper.make_node("Reshape", ["f", "s2"], ["g"]),
        helper.make_node("Transpose", ["g"], ["h"], perm=[1, 0, 2]),
        helper.make_node("Transpose", ["h"], ["i"], perm=[0, 2, 1]),
        helper.make_node("Slice", ["i", "st", "en"], ["j"]),
        helper.make_node("Expand", ["j", "es"], ["y"]),
    ]
    inits = {"ax": np.array([0], np.int64), "s1": np.array([6, 4], np.int64), "s2": np.array([3, 2, 4], np.int64),
             "st": np.array([0], np.int64), "en": np.array([BIG], np.int64), "es": np.array([1], np.int64)}
    m = make_model(nodes, [("x", F, [2, 3, 4])], [("y", F, None)], inits)
    built = check_levels(m, {"x": rnd(2, 3, 4)}, tmp_path, levels=("none", "basic"))
    assert built["basic"].report["op_counts"] == {"Reshape": 1, "Transpose": 1}
    assert built["basic"].report["passes"]["eliminate_identity"]["rewrites"] == 2


# --- properties: random permutations and axes ----------------------------------------------
PROPS = settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def _transposes_shaped(p1, p2, shape):
    nodes = [helper.make_node("Transpose", ["x"], ["m"], perm=p1),
             helper.make_node("Transpose", ["m"], ["o"], perm=p2), helper.make_node("Neg", ["o"], ["y"])]
    return make_model(nodes, [("x", F, shape)], [("y", F, None)])


@PROPS
@given(st.integers(1, 4).flatmap(lambda r: st.tuples(st.permutations(range(r)), st.permutations(range(r)))))
def test_transpose_pairs_property(perms):
    p1, p2 = list(perms[0]), list(perms[1])
    shape = [2, 3, 4, 5][:len(p1)]
    g, _ = check_pass(_transposes_shaped(p1, p2, shape), FuseTransposeChain(), {"x": rnd(*shape)})
    assert ops(g).count("Transpose") <= 1


_RANK_AXES = st.tuples(st.integers(0, 3), st.integers(1, 2)).flatmap(
    lambda rk: st.tuples(st.just(rk[0]), st.sets(st.integers(0, rk[0] + rk[1] - 1), min_size=rk[1], max_size=rk[1])))


@PROPS
@given(_RANK_AXES, st.booleans())
def test_unsqueeze_squeeze_property(case, negative):
    r, axes = case  # Unsqueeze axes of the rank r + len(axes) output
    axes = sorted(axes)
    out_rank = r + len(axes)
    sq = [a - out_rank for a in axes] if negative else axes
    shape = [2, 3, 4][:r]
    g, _ = check_pass(_pair("Unsqueeze", axes, "Squeeze", sq, shape), CancelUnsqueezeSqueeze(), {"x": rnd(*shape)})
    assert g.nodes[-1].inputs[0] is g.inputs[0]
