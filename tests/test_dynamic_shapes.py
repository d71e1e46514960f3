"""Models with symbolic dimensions: specialization on first sight of a shape (no input_shapes),
and shape subgraphs folding away completely once input_shapes bind the dimensions."""
import numpy as np
from onnx import helper

import onnxc
from helpers import make_model, ort_run

RNG = np.random.default_rng(3)


def shape_subgraph_model():
    """y = Reshape(x, [N, H*W... ]) built from Shape/Gather/Concat, plus Range/Expand/
    ConstantOfShape driven by the input's shape, as exporters write them."""
    c = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, 7, [len(v)] if isinstance(v, list) else [], v))
    nodes = [
        helper.make_node("Shape", ["x"], ["shp"]),
        c("i0", [0]), c("i1", [1]), c("m1", [-1]),
        helper.make_node("Gather", ["shp", "i0"], ["n"], axis=0),
        helper.make_node("Gather", ["shp", "i1"], ["c"], axis=0),
        helper.make_node("Concat", ["n", "m1"], ["newshape"], axis=0),
        helper.make_node("Reshape", ["x", "newshape"], ["flat"]),
        # Range over the channel count, expanded to the batch: [N, C] positions
        c("zero", 0), c("one", 1),
        helper.make_node("Squeeze", ["c"], ["cs"]),
        helper.make_node("Range", ["zero", "cs", "one"], ["pos"]),
        helper.make_node("Concat", ["n", "c"], ["nc"], axis=0),
        helper.make_node("Expand", ["pos", "nc"], ["pos2"]),
        helper.make_node("Cast", ["pos2"], ["posf"], to=1),
        helper.make_node("ConstantOfShape", ["nc"], ["ones"], value=helper.make_tensor("v", 1, [1], [1.0])),
        helper.make_node("Add", ["posf", "ones"], ["bias"]),
        helper.make_node("ReduceSum", ["x", "m1"], ["xs"], keepdims=0),
        helper.make_node("Mul", ["xs", "bias"], ["y"]),
        helper.make_node("Relu", ["flat"], ["z"]),
    ]
    return make_model(nodes, [("x", np.float32, ["N", "C", "L"])],
                      [("y", np.float32, ["N", "C"]), ("z", np.float32, ["N", None])])


def test_shape_subgraphs_fold_away_with_input_shapes(tmp_path):
    model = shape_subgraph_model()
    cm = onnxc.compile(model, input_shapes={"x": [2, 3, 5]}, output_dir=tmp_path / "m")
    ops = set(cm.report["op_counts"])
    assert not ops & {"Shape", "Gather", "Concat", "Range", "Expand", "ConstantOfShape", "Squeeze", "Cast"}, ops
    assert cm.fallback_nodes == []
    x = RNG.standard_normal((2, 3, 5)).astype(np.float32)
    for o, r in zip(cm.run(None, {"x": x}), ort_run(model, {"x": x})):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_session_without_input_shapes_specializes_and_caches_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path / "cache"))
    model = shape_subgraph_model()
    sess = onnxc.InferenceSession(model.SerializeToString())
    assert sess.get_inputs()[0].shape == ["N", "C", "L"]
    for shape in [(1, 2, 3), (4, 3, 2), (1, 2, 3)]:
        x = RNG.standard_normal(shape).astype(np.float32)
        for o, r in zip(sess.run(None, {"x": x}), ort_run(model, {"x": x})):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)
    assert len(sess._compiled) == 2  # one specialization per distinct shape signature
    entries = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir())
    assert len(entries) == 2
    # a new session (a new process would do the same) finds both builds on disk
    again = onnxc.InferenceSession(model.SerializeToString())
    again.run(None, {"x": np.zeros((4, 3, 2), np.float32)})
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == entries


def test_compile_without_input_shapes_runs_free_dims_in_the_fallback(tmp_path, caplog):
    """onnxc.compile (not a session) of a model with free dims and no input_shapes: the nodes that
    read them fall back (warned), and the module takes any size for a free dim (it refused every
    feed before: 'batch' != 1), the same size for one symbol across inputs, fixed dims checked."""
    import pytest
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    m = make_model(nodes, [("a", np.float32, ["N", 4]), ("b", np.float32, ["N", 4])], [("y", np.float32, ["N", 4])])
    cm = onnxc.compile(m, output_dir=tmp_path / "m")
    assert "Relu node 'Relu_1' runs in the Python fallback provider" in caplog.text
    for n in (1, 3):
        feed = {"a": RNG.standard_normal((n, 4)).astype(np.float32), "b": RNG.standard_normal((n, 4)).astype(np.float32)}
        np.testing.assert_array_equal(cm.run(None, feed)[0], ort_run(m, feed)[0])
    with pytest.raises(onnxc.errors.InputError, match=r"dim 'N' is 2 here but 3 in input 'a'"):
        cm.run(None, {"a": np.zeros((3, 4), np.float32), "b": np.zeros((2, 4), np.float32)})
    with pytest.raises(onnxc.errors.InputError, match=r"input 'a': expected shape \('N', 4\), got \(3, 5\)"):
        cm.run(None, {"a": np.zeros((3, 5), np.float32), "b": np.zeros((3, 5), np.float32)})
