"""Value specialization in onnxc.InferenceSession (compiler/session.py): a graph input that feeds a
parameter input (the ops' ``param_inputs`` fact: reduction axes, Resize scales, Slice starts, ...)
is compiled as a constant holding the value fed, once per distinct value, guarded by the
session's lookup and cached on disk under a key that holds the values."""
import json
import pickle

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import onnxc
from onnxc import session as session_mod
from onnxc.errors import InputError, ModelError
from onnxc.ops import registry

RNG = np.random.default_rng(7)


def _model(nodes, inputs, outputs, opset=18):
    m = h.make_model(h.make_graph(nodes, "g", inputs, outputs), opset_imports=[h.make_opsetid("", opset)])
    onnx.checker.check_model(m)
    return m.SerializeToString()


def reduce_sum_model(axes_len=1, x_shape=(2, 3, 4)):
    return _model([h.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)],
                  [h.make_tensor_value_info("x", T.FLOAT, list(x_shape)),
                   h.make_tensor_value_info("axes", T.INT64, [axes_len])],
                  [h.make_tensor_value_info("y", T.FLOAT, ["d0", "d1"][:len(x_shape) - axes_len])])


def _ort(model, feed):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)


def _close(got, want, tol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


def test_the_fact_names_the_parameter_inputs():
    def fact(op):
        return registry.fact(h.make_node(op, [], []), "param_inputs")
    assert fact("ReduceSum") == (1,) and fact("ReduceMean") == (1,)
    assert fact("Resize") == (1, 2, 3) and fact("Slice") == (1, 2, 3, 4) and fact("Trilu") == (1,)
    assert fact("Relu") is None and fact("ArgMax") is None  # ArgMax's axis is an attribute
    with pytest.raises(ValueError, match="unknown op fact"):
        registry.facts("Relu", param_inputs=(-1,))


def test_reduce_sum_runtime_axes_two_values_both_in_c():
    m = reduce_sum_model()
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["axes"]
    assert [i.name for i in s.get_inputs()] == ["x", "axes"]  # still an input of the session
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    for axes in ([1], [-1], [0]):
        feed = {"x": x, "axes": np.array(axes, np.int64)}
        _close(s.run(None, feed), _ort(m, feed))
    assert len(s.compiled_models) == 3  # one build per distinct value
    assert s.fallback_nodes == []  # every build runs entirely in C
    assert all(not cm.fallback_nodes for cm in s.compiled_models)


def test_the_value_is_guarded_not_stale():
    """Feeding another value after a first run computes with the new value, and an earlier
    value comes back to its own build (no new compile)."""
    m = reduce_sum_model(x_shape=(3, 3, 3))  # axes 0, 1 and 2 give the same output shape
    s = onnxc.InferenceSession(m)
    x = RNG.standard_normal((3, 3, 3)).astype(np.float32)
    outs = {}
    for a in (0, 1, 2, 0, 1):
        feed = {"x": x, "axes": np.array([a], np.int64)}
        got = s.run(None, feed)[0]
        _close([got], [x.sum(axis=a)])
        outs.setdefault(a, got)
        np.testing.assert_array_equal(got, outs[a])
    assert not np.allclose(outs[0], outs[1])  # the values really lead to different results
    assert len(s.compiled_models) == 3


def test_resize_runtime_scales():
    m = _model([h.make_node("Resize", ["x", "", "scales"], ["y"], mode="linear")],
               [h.make_tensor_value_info("x", T.FLOAT, [1, 2, 4, 4]),
                h.make_tensor_value_info("scales", T.FLOAT, [4])],
               [h.make_tensor_value_info("y", T.FLOAT, ["n", "c", "h", "w"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["scales"]
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    for scales in ([1, 1, 2, 2], [1, 1, 1.5, 3], [1, 1, 0.5, 0.5]):
        feed = {"x": x, "scales": np.array(scales, np.float32)}
        _close(s.run(None, feed), _ort(m, feed))
    assert s.fallback_nodes == [] and len(s.compiled_models) == 3


def test_slice_runtime_starts_with_free_dims():
    """Values and free dims specialize together: the key holds both."""
    m = _model([h.make_node("Slice", ["x", "starts", "ends", "axes"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, ["n", 6]),
                h.make_tensor_value_info("starts", T.INT64, [1]),
                h.make_tensor_value_info("ends", T.INT64, [1]),
                h.make_tensor_value_info("axes", T.INT64, [1])],
               [h.make_tensor_value_info("y", T.FLOAT, ["n", "k"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["axes", "ends", "starts"]
    ends, axes = np.array([100], np.int64), np.array([1], np.int64)
    for n, start in ((2, 1), (2, -2), (3, 1)):
        x = RNG.standard_normal((n, 6)).astype(np.float32)
        feed = {"x": x, "starts": np.array([start], np.int64), "ends": ends, "axes": axes}
        got = s.run(None, feed)
        _close(got, _ort(m, feed))
        np.testing.assert_array_equal(got[0], x[:, start:])
    assert s.fallback_nodes == [] and len(s.compiled_models) == 3


def test_trilu_runtime_k_through_a_cast():
    """The value reaches the parameter through a Cast: the graph input is specialized."""
    m = _model([h.make_node("Cast", ["k32"], ["k"], to=T.INT64), h.make_node("Trilu", ["x", "k"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [4, 5]), h.make_tensor_value_info("k32", T.INT32, [])],
               [h.make_tensor_value_info("y", T.FLOAT, [4, 5])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["k32"]
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    for k in (0, 2, -1):
        feed = {"x": x, "k32": np.array(k, np.int32)}
        _close(s.run(None, feed), [np.triu(x, k)])
    assert s.fallback_nodes == []


def test_values_are_part_of_the_disk_cache_key():
    m = reduce_sum_model()
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    dirs = {}
    for axes in ([1], [2]):
        s = onnxc.InferenceSession(m)
        s.run(None, {"x": x, "axes": np.array(axes, np.int64)})
        (cm,) = s.compiled_models
        dirs[axes[0]] = cm.output_dir
        man = json.loads((cm.output_dir / "manifest.json").read_text())
        bound = man["options"]["input_values"]["axes"]
        assert bound["shape"] == [1] and np.frombuffer(bytes.fromhex(bound["data"]), "<i8").tolist() == axes
        assert [i["name"] for i in man["inputs"]] == ["x"]  # the build has it as a constant
    assert dirs[1] != dirs[2]
    # a fresh session with a value seen before loads that build from the disk cache
    s = onnxc.InferenceSession(m)
    feed = {"x": x, "axes": np.array([2], np.int64)}
    _close(s.run(None, feed), _ort(m, feed))
    (cm,) = s.compiled_models
    assert cm.output_dir == dirs[2] and cm.from_cache
    # -0.0 and 0.0 are different keys (bytes, not numbers): the key never merges two values
    from onnxc.driver import encode_values
    assert encode_values({"a": np.array([0.0], np.float32)}) != encode_values({"a": np.array([-0.0], np.float32)})
    # compile() without input_values keeps its options (and cache keys) as before
    assert "input_values" not in json.loads((onnxc.compile(m, input_shapes=None).output_dir / "manifest.json")
                                            .read_text())["options"]


def test_compile_with_explicit_input_values():
    m = reduce_sum_model()
    cm = onnxc.compile(m, input_values={"axes": np.array([0], np.int64)})
    assert [i.name for i in cm.get_inputs()] == ["x"] and not cm.fallback_nodes
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    _close(cm.run(None, {"x": x}), [x.sum(axis=0)])
    with pytest.raises(ModelError, match=r"input_values\['axes'\] has dtype int32, expected int64"):
        onnxc.compile(m, input_values={"axes": np.array([0], np.int32)})
    with pytest.raises(ModelError, match="unknown input"):
        onnxc.compile(m, input_values={"nope": np.array([0], np.int64)})


def test_bad_feeds_are_input_errors():
    m = reduce_sum_model()
    s = onnxc.InferenceSession(m)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    with pytest.raises(InputError, match="input 'axes': expected dtype int64, got int32"):
        s.run(None, {"x": x, "axes": np.array([1], np.int32)})
    with pytest.raises(InputError, match="input 'axes': expected shape"):
        s.run(None, {"x": x, "axes": np.array([1, 2], np.int64)})
    with pytest.raises(InputError, match="missing input 'axes'"):
        s.run(None, {"x": x})
    # a value the op refuses: the feed's fault, named with the value
    with pytest.raises(InputError, match=r"'axes' = \[3\]"):
        s.run(None, {"x": x, "axes": np.array([3], np.int64)})
    with pytest.raises(InputError, match="expected dtype float32"):
        s.run(None, {"x": x.astype(np.float64), "axes": np.array([1], np.int64)})
    assert s.compiled_models  # the one good feed's build (float64 x was refused by it)
    # a byte-swapped value is the same value
    feed = {"x": x, "axes": np.array([1], ">i8")}
    _close(s.run(None, feed), [x.sum(axis=1)])


def test_off_keeps_the_input_at_run_time():
    m = reduce_sum_model()
    s = onnxc.InferenceSession(m, specialize_values=False)
    assert s.value_inputs == []
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    for axes in ([1], [2]):
        feed = {"x": x, "axes": np.array(axes, np.int64)}
        _close(s.run(None, feed), _ort(m, feed))
    assert len(s.compiled_models) == 1  # built at construction, as before
    assert [n["op"] for n in s.fallback_nodes] == ["ReduceSum"]
    # (its output shape depends on the runtime axes)
    assert "no static shape" in s.fallback_nodes[0]["why"]


def test_large_inputs_are_not_specialized():
    n = session_mod.MAX_VALUE_ELEMENTS + 1
    m = _model([h.make_node("Compress", ["x", "c"], ["y"], axis=0)],
               [h.make_tensor_value_info("x", T.FLOAT, [n]), h.make_tensor_value_info("c", T.BOOL, [n])],
               [h.make_tensor_value_info("y", T.FLOAT, ["k"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == []
    # a free-dim input decides by the value fed
    m = _model([h.make_node("Compress", ["x", "c"], ["y"], axis=0)],
               [h.make_tensor_value_info("x", T.FLOAT, ["n"]), h.make_tensor_value_info("c", T.BOOL, ["n"])],
               [h.make_tensor_value_info("y", T.FLOAT, ["k"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["c"]
    for size in (5, n):
        x = RNG.standard_normal(size).astype(np.float32)
        c = RNG.random(size) < 0.5
        _close(s.run(None, {"x": x, "c": c}), [x[c]])
    (small, large) = s.compiled_models
    assert not small.fallback_nodes and [f["op"] for f in large.fallback_nodes] == ["Compress"]


def test_shape_reads_are_not_parameters():
    """Shape(x) feeding a parameter reads x's shape, not its values: x is not specialized."""
    m = _model([h.make_node("Shape", ["x"], ["s"], start=1), h.make_node("ReduceSum", ["x", "s"], ["y"])],
               [h.make_tensor_value_info("x", T.INT64, [1, 1])],
               [h.make_tensor_value_info("y", T.INT64, [1, 1])], opset=18)
    assert onnxc.InferenceSession(m).value_inputs == []
    # CastLike reads only the dtype of its target_type input: a mask there is data, not a parameter
    m = _model([h.make_node("CastLike", ["v", "mask"], ["cv"]), h.make_node("Pad", ["x", "pads", "cv"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [2]), h.make_tensor_value_info("pads", T.INT64, [2]),
                h.make_tensor_value_info("v", T.DOUBLE, []), h.make_tensor_value_info("mask", T.FLOAT, [2])],
               [h.make_tensor_value_info("y", T.FLOAT, ["n"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["pads", "v"]
    x = np.array([1, 2], np.float32)
    feed = {"x": x, "pads": np.array([1, 2], np.int64), "v": np.array(-1.5), "mask": x}
    _close(s.run(None, feed), [np.array([-1.5, 1, 2, -1.5, -1.5], np.float32)])
    feed["mask"] = x + 1  # another mask: the same build
    _close(s.run(None, feed), [np.array([-1.5, 1, 2, -1.5, -1.5], np.float32)])
    assert len(s.compiled_models) == 1
    assert s.fallback_nodes == []  # CastLike(constant, mask) folds: it reads only mask's dtype


def test_a_value_read_inside_a_subgraph_is_a_parameter():
    """An If branch reads the input by name (as AffineGrid's expanded function does): the If's
    output, a Reshape shape, depends on it."""
    then = h.make_graph([h.make_node("Identity", ["shape"], ["s_then"])], "then", [],
                        [h.make_tensor_value_info("s_then", T.INT64, [2])])
    other = h.make_graph([h.make_node("Neg", ["shape"], ["s_else"])], "else", [],
                         [h.make_tensor_value_info("s_else", T.INT64, [2])])
    m = _model([h.make_node("If", ["c"], ["s"], then_branch=then, else_branch=other),
                h.make_node("Reshape", ["x", "s"], ["y"])],
               [h.make_tensor_value_info("x", T.FLOAT, [6]), h.make_tensor_value_info("c", T.BOOL, []),
                h.make_tensor_value_info("shape", T.INT64, [2])],
               [h.make_tensor_value_info("y", T.FLOAT, ["a", "b"])])
    s = onnxc.InferenceSession(m)
    assert s.value_inputs == ["c", "shape"]
    x = np.arange(6, dtype=np.float32)
    for c, shape, want in ((True, [2, 3], (2, 3)), (False, [-3, -2], (3, 2)), (True, [3, 2], (3, 2))):
        got = s.run(None, {"x": x, "c": np.array(c), "shape": np.array(shape, np.int64)})[0]
        np.testing.assert_array_equal(got, x.reshape(want))
    assert s.fallback_nodes == [] and len(s.compiled_models) == 3


def test_too_many_values_use_the_runtime_build(monkeypatch):
    monkeypatch.setattr(session_mod, "MAX_VALUE_SPECIALIZATIONS", 1)
    m = reduce_sum_model(x_shape=(3, 3, 3))
    s = onnxc.InferenceSession(m)
    x = RNG.standard_normal((3, 3, 3)).astype(np.float32)
    for a in (0, 1, 2, 0):
        _close(s.run(None, {"x": x, "axes": np.array([a], np.int64)}), [x.sum(axis=a)])
    assert len(s.compiled_models) == 2  # axes=[0] specialized, then one build reading axes at run time
    assert [n["op"] for n in s.compiled_models[1].fallback_nodes] == ["ReduceSum"]


def test_pickled_session_keeps_specializing():
    m = reduce_sum_model()
    s = onnxc.InferenceSession(m)
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    s.run(None, {"x": x, "axes": np.array([1], np.int64)})
    s2 = pickle.loads(pickle.dumps(s))
    assert s2.value_inputs == ["axes"]
    for a in (1, 2):
        _close(s2.run(None, {"x": x, "axes": np.array([a], np.int64)}), [x.sum(axis=a)])
    assert s2.fallback_nodes == []
