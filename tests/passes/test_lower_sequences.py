"""Static sequences lowered to tensor ops (compiler/passes/basic/lower_sequences.py): the ONNX
simple suite's test_sequence_model1..8 and variants run entirely in C and equal onnx.reference;
the graph computes the same before and after the pass in the IR interpreter; where a sequence
crosses the graph's boundary or a position is only known at run time, the pass leaves the graph
alone with a note and the fallback provider runs it."""
import glob
import os

import numpy as np
import onnx
import onnx.backend.test
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

import onnxc
from onnxc import frontend
from onnxc.errors import InputError, ModelError
from onnxc.ir import verify
from onnxc.ops.interp import run_graph
from onnxc.passes.basic.lower_sequences import LowerStaticSequences

SIMPLE = os.path.join(os.path.dirname(onnx.backend.test.__file__), "data", "simple")
SEQ_OPS = {"SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence",
           "SequenceAt", "SequenceLength", "ConcatFromSequence"}


def simple_case(i):
    d = os.path.join(SIMPLE, f"test_sequence_model{i}")
    feed = {}
    for f in sorted(glob.glob(os.path.join(d, "test_data_set_0", "input_*.pb"))):
        t = onnx.TensorProto()
        with open(f, "rb") as fh:
            t.ParseFromString(fh.read())
        feed[t.name] = numpy_helper.to_array(t)
    with open(os.path.join(d, "model.onnx"), "rb") as fh:
        return fh.read(), feed


def as_inputs(model, names):
    """The model with these initializers (the simple suite's positions are initializers listed
    as graph inputs) turned into plain graph inputs: InferenceSession then specializes on them."""
    m = onnx.load_from_string(model)
    keep = [t for t in m.graph.initializer if t.name not in names]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _ref(model, feed):
    return ReferenceEvaluator(onnx.load_from_string(model)).run(None, feed)


def _equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_array_equal(g, w)


def _in_c(model, feed):
    s = onnxc.InferenceSession(model, fallback=False)
    got = s.run(None, feed)
    assert s.fallback_nodes == []
    return got


@pytest.mark.parametrize("i", range(1, 9))
def test_simple_suite_models_entirely_in_c(i):
    model, feed = simple_case(i)
    _equal(_in_c(model, feed), _ref(model, feed))


def _i64(v):
    return np.array(v, np.int64)


# other positions: negative, insert at the end, the last element; each a new specialization
@pytest.mark.parametrize("i,values", [
    (1, {"pos": -1, "pos_at": 1}), (1, {"pos": 2, "pos_at": -1}), (1, {"pos": -2, "pos_at": -3}),
    (1, {"pos": 0, "pos_at": 0}),
    (2, {"pos_erase": -1, "pos_at": -2}), (2, {"pos_erase": 0, "pos_at": 1}),
    (3, {"pos_erase": -3, "pos_insert": 2, "pos_at": -1}), (3, {"pos_erase": 2, "pos_insert": -2, "pos_at": 0}),
    (7, {"pos_at": -1}), (7, {"pos_at": 1}),
])
def test_other_positions(i, values):
    model, feed = simple_case(i)
    model = as_inputs(model, list(values))
    rng = np.random.default_rng(i)
    feed = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in feed.items()}
    feed.update({k: _i64(v) for k, v in values.items()})
    s = onnxc.InferenceSession(model, fallback=False)
    assert sorted(s.value_inputs) == sorted(values)
    got = s.run(None, feed)
    assert s.fallback_nodes == []
    if values.get("pos", values.get("pos_insert")) == 2:
        # inserting at position n (the sequence's length) appends, as the spec says ("accepted
        # range [-n, n]") and onnxruntime does; onnx.reference takes the position modulo n and
        # inserts at the front instead
        import onnxruntime as ort
        _equal(got, ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed))
        assert _ref(model, feed)[0].shape != got[0].shape or not np.array_equal(_ref(model, feed)[0], got[0])
    else:
        _equal(got, _ref(model, feed))


def test_model8_other_splits_and_lengths():
    model, _ = simple_case(8)
    for n, splits in ((5, [1, 2, 2]), (4, [4, 0, 0])):
        feed = {"X": np.arange(n, dtype=np.float32), "Splits": _i64(splits)}
        _equal(_in_c(model, feed), _ref(model, feed))


def test_position_out_of_range_is_an_error():
    model, feed = simple_case(2)
    m = onnx.load_from_string(model)  # a constant position: the model is wrong
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(_i64(-3), "pos_at"))
    with pytest.raises(ModelError, match=r"SequenceAt.*position -3 .*length 2"):
        onnxc.InferenceSession(m.SerializeToString(), fallback=False)
    # a fed position: the feed is wrong, and the error names the values fed
    model = as_inputs(model, ["pos_at", "pos_erase"])
    feed.update(pos_at=_i64(2), pos_erase=_i64(0))  # after one erase, 2 elements are left
    with pytest.raises(InputError, match=r"'pos_at' = 2.*SequenceAt.*position 2 .*length 2"):
        onnxc.InferenceSession(model, fallback=False).run(None, feed)


def _model(nodes, inputs, outputs, inits=(), opset=18):
    m = h.make_model(h.make_graph(nodes, "g", inputs, outputs, initializer=list(inits)),
                     opset_imports=[h.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m.SerializeToString()


def _split_concat(split=None, axis=1, keepdims=1, cat_axis=1, new_axis=0, opset=18, x_shape=(2, 7, 3)):
    """SplitToSequence(x) -> [SequenceErase] -> ConcatFromSequence, every parameter a constant."""
    inits, ins = [], ["x"]
    if split is not None:
        inits.append(numpy_helper.from_array(_i64(split), "split"))
        ins.append("split")
    nodes = [h.make_node("SplitToSequence", ins, ["s"], axis=axis, keepdims=keepdims),
             h.make_node("SequenceLength", ["s"], ["n"]),
             h.make_node("ConcatFromSequence", ["s"], ["y"], axis=cat_axis, new_axis=new_axis)]
    return _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, list(x_shape))],
                  [h.make_tensor_value_info("y", T.FLOAT, [f"d{i}" for i in range(len(x_shape) + new_axis)]),
                   h.make_tensor_value_info("n", T.INT64, [])], inits, opset)


@pytest.mark.parametrize("kw", [
    dict(split=3),                                  # chunks of 3: 3, 3, 1
    dict(split=7), dict(split=[2, 0, 5]),          # one chunk; sizes (with an empty part)
    dict(), dict(keepdims=0, cat_axis=0, new_axis=1),  # parts of 1, squeezed, stacked again
    dict(keepdims=0, split=[3, 4]),                 # keepdims ignored when split is given
    dict(axis=-1, cat_axis=-1, new_axis=1),         # new axis last: rank 4
    dict(axis=-2, cat_axis=-4, new_axis=1),         # new axis first through a negative axis
    dict(split=[1, 6], opset=12), dict(keepdims=0, cat_axis=-1, new_axis=1, opset=12),
])
def test_split_and_concat_variants(kw):
    model = _split_concat(**kw)
    feed = {"x": np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)}
    _equal(_in_c(model, feed), _ref(model, feed))
    check_before_after(model, feed, {})


def check_before_after(model, feed, values, fires=True):
    """The graph (``values`` bound as constants) in the interpreter before and after the pass,
    both equal to onnx.reference on the original model."""
    rest = {k: v for k, v in feed.items() if k not in values}
    g = frontend.load(model, {k: v.shape for k, v in rest.items()},
                      input_values={k: _i64(v) for k, v in values.items()})
    ref = _ref(model, {**feed, **{k: _i64(v) for k, v in values.items()}})
    _equal(run_graph(g, rest), ref)
    res = LowerStaticSequences().run(g)
    assert res.modified == fires, res
    verify(g)
    assert not fires or not SEQ_OPS & {n.op_type for n in g.nodes}
    _equal(run_graph(g, rest), ref)
    for o in g.outputs:
        assert o.dtype is not None and o.is_static
    return g, res


@pytest.mark.parametrize("i", range(1, 9))
def test_before_and_after_the_pass(i):
    model, feed = simple_case(i)
    values = {k: v for k, v in feed.items() if k == "Splits"}  # the positions are initializers
    check_before_after(model, feed, values)
    if i in (1, 2, 3, 7):  # positions as inputs bound to other values
        names = [t.name for t in onnx.load_from_string(model).graph.initializer]
        values = {k: -1 for k in names}
        check_before_after(as_inputs(model, names), feed, values)


def _runtime_notes(model, feed):
    g = frontend.load(model)
    res = LowerStaticSequences().run(g)
    assert not res.modified
    assert any(op in {n.op_type for n in g.nodes} for op in SEQ_OPS)
    return res.notes


def test_runtime_position_falls_back_with_a_note():
    model, feed = simple_case(1)
    model = as_inputs(model, ["pos", "pos_at"])
    feed.update(pos=_i64(-1), pos_at=_i64(2))
    notes = _runtime_notes(model, feed)
    assert any("not a compile-time constant" in n for n in notes), notes
    s = onnxc.InferenceSession(model, specialize_values=False)  # the positions stay inputs
    _equal(s.run(None, feed), _ref(model, feed))
    assert {n["op"] for n in s.fallback_nodes} & SEQ_OPS


def test_sequence_graph_output_and_input_fall_back_with_a_note():
    seq_t = h.make_tensor_sequence_value_info("s", T.FLOAT, None)
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    out = _model([h.make_node("SequenceConstruct", ["x", "x"], ["s"]),
                  h.make_node("SequenceLength", ["s"], ["n"])],
                 [x], [seq_t, h.make_tensor_value_info("n", T.INT64, [])])
    assert any("graph output" in n for n in _runtime_notes(out, {}))
    inp = _model([h.make_node("SequenceInsert", ["s", "x"], ["t"]),
                  h.make_node("ConcatFromSequence", ["t"], ["y"], axis=0)],
                 [seq_t, x], [h.make_tensor_value_info("y", T.FLOAT, ["a", 3])])
    assert any("not built in this graph" in n for n in _runtime_notes(inp, {}))
    feed = {"x": np.ones((2, 3), np.float32)}
    s = onnxc.InferenceSession(out)
    assert {n["op"] for n in s.fallback_nodes} & SEQ_OPS
    got = s.run(None, feed)
    assert len(got[0]) == 2 and int(got[1]) == 2


def test_sequence_read_by_a_subgraph_falls_back_with_a_note():
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    branch = [h.make_graph([h.make_node("SequenceAt", ["s", k], [f"b{k}"])], f"branch{k}", [],
                           [h.make_tensor_value_info(f"b{k}", T.FLOAT, [2, 3])]) for k in ("zero", "one")]
    nodes = [h.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(_i64(0))),
             h.make_node("Constant", [], ["one"], value=numpy_helper.from_array(_i64(1))),
             h.make_node("Relu", ["x"], ["r"]),
             h.make_node("SequenceConstruct", ["x", "r"], ["s"]),
             h.make_node("If", ["c"], ["y"], then_branch=branch[0], else_branch=branch[1])]
    model = _model(nodes, [x, h.make_tensor_value_info("c", T.BOOL, [])],
                   [h.make_tensor_value_info("y", T.FLOAT, [2, 3])])
    assert any("read by a subgraph" in n for n in _runtime_notes(model, {}))
    feed = {"x": np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32), "c": np.array(False)}
    _equal(onnxc.InferenceSession(model, specialize_values=False).run(None, feed), _ref(model, feed))


@pytest.mark.parametrize("b_shape", [(2, 3), (1, 3)])
def test_sequence_of_constants_is_lowered_not_folded(b_shape):
    # constant folding would stack same-shaped elements into one tensor (a sequence is no
    # array) and fail on different shapes: the builders are not folded, the pass lowers them
    a = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "a")
    b = numpy_helper.from_array(np.full(b_shape, 2, np.float32), "b")
    p = numpy_helper.from_array(_i64(-1), "p")
    nodes = [h.make_node("SequenceConstruct", ["a", "b"], ["s"]), h.make_node("SequenceAt", ["s", "p"], ["e"]),
             h.make_node("Add", ["e", "x"], ["y"]), h.make_node("SequenceLength", ["s"], ["n"])]
    model = _model(nodes, [h.make_tensor_value_info("x", T.FLOAT, list(b_shape))],
                   [h.make_tensor_value_info("y", T.FLOAT, list(b_shape)), h.make_tensor_value_info("n", T.INT64, [])],
                   [a, b, p])
    feed = {"x": np.random.default_rng(2).standard_normal(b_shape).astype(np.float32)}
    _equal(_in_c(model, feed), _ref(model, feed))
