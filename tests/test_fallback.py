"""The fallback provider: nodes without a C kernel run in an ONNX interpreter between C
partitions, with values passed through the arena, output arrays or Python."""
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper, numpy_helper

import onnxc
from onnxc.errors import UnsupportedOpError
from onnxc.providers.c import KERNELS
from helpers import make_model, ort_run

RNG = np.random.default_rng(7)


@pytest.fixture
def no_c_sigmoid(monkeypatch):
    """Take Sigmoid away from the C provider so it must fall back (whatever C covers later)."""
    monkeypatch.delitem(KERNELS, ("", "Sigmoid"))


def _chain_model():
    # C (Relu) -> fallback (Sigmoid) -> C (Mul, Add) -> fallback (Sigmoid, a graph output) ...
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Sigmoid", ["r"], ["s"]),
             helper.make_node("Mul", ["s", "x"], ["m"]),
             helper.make_node("Add", ["m", "r"], ["a"]),
             helper.make_node("Sigmoid", ["a"], ["y"]),
             helper.make_node("Neg", ["y"], ["z"])]
    return make_model(nodes, [("x", np.float32, [4, 5])], [("y", np.float32, None), ("z", np.float32, None)])


@pytest.mark.parametrize("engine", ["reference", "onnxruntime", "auto"])
def test_fallback_between_c_partitions(no_c_sigmoid, tmp_path, engine):
    model = _chain_model()
    cm = onnxc.compile(model, output_dir=tmp_path / "m", fallback_engine=engine)
    kinds = [k for k, _ in cm.manifest["steps"]]
    assert kinds == ["c", "fallback", "c", "fallback", "c"]
    assert [n["op"] for n in cm.fallback_nodes] == ["Sigmoid", "Sigmoid"]
    assert all(n["why"] == "no C kernel for this op" for n in cm.fallback_nodes)
    for _ in range(2):  # the arena is reused across runs
        x = RNG.standard_normal((4, 5)).astype(np.float32)
        for o, r in zip(cm.run(None, {"x": x}), ort_run(model, {"x": x})):
            np.testing.assert_allclose(o, r, rtol=1e-6, atol=1e-6)
    again = onnxc.load(tmp_path / "m", fallback_engine=engine)  # loads without recompiling
    x = RNG.standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_allclose(again.run(["z"], {"x": x})[0], ort_run(model, {"x": x})[1], rtol=1e-6, atol=1e-6)


def test_c_entry_point_refuses_fallback_models(no_c_sigmoid, tmp_path):
    cm = onnxc.compile(_chain_model(), output_dir=tmp_path / "m")
    header = (tmp_path / "m" / "model.h").read_text()
    assert "ONNXC_ERR_FALLBACK" in header and "model_partition0" in header
    ffi = cm._ffi
    rc = cm._run_fn(cm._wptr, cm._arena()[0], ffi.new("void*[]", [ffi.NULL]), ffi.new("void*[]", [ffi.NULL] * 2))
    assert rc == 3  # ONNXC_ERR_FALLBACK: the C alone cannot run this module


def test_no_fallback_lists_every_unsupported_node(no_c_sigmoid, tmp_path):
    with pytest.raises(UnsupportedOpError) as e:
        onnxc.compile(_chain_model(), output_dir=tmp_path / "m", fallback=False)
    assert len(e.value.nodes) == 2 and {n[0] for n in e.value.nodes} == {"Sigmoid"}


def test_data_dependent_shapes_stay_in_python(tmp_path):
    # NonZero's output shape depends on the data: C writes it into a buffer of its bound with
    # its actual dims beside it (providers/c/dynamic.py); its consumers cannot be C, they read it
    # in the fallback at its actual shape, whose output is returned from Python, and the C part
    # still runs around it. 'nz' is also a graph output: the fallback reads it from that array
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("NonZero", ["r"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["t"]),
             helper.make_node("Exp", ["r"], ["e"]),
             helper.make_node("NonZero", ["e"], ["nz2"]),
             helper.make_node("Neg", ["nz2"], ["n2"])]
    model = make_model(nodes, [("x", np.float32, [3, 4])], [("t", np.int64, None), ("e", np.float32, None),
                                                           ("nz", np.int64, None), ("n2", np.int64, None)])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    assert sorted(n["op"] for n in cm.fallback_nodes) == ["Neg", "Transpose"]
    for _ in range(2):
        x = RNG.standard_normal((3, 4)).astype(np.float32)
        out, ref = cm.run(None, {"x": x}), ort_run(model, {"x": x})
        for k in (0, 2, 3):
            np.testing.assert_array_equal(out[k], ref[k])
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-6)


def test_subgraph_reads_of_c_values_outlive_arena_reuse(monkeypatch, tmp_path):
    # the If (made to fall back: its C kernel is taken away) reads 'big' only inside its
    # branches; the arena planner must keep 'big' alive until the If runs although later C
    # values could reuse its bytes
    monkeypatch.delitem(KERNELS, ("", "If"))
    then_g = helper.make_graph([helper.make_node("Mul", ["big", "big"], ["o"])], "then", [],
                               [helper.make_tensor_value_info("o", 1, [64])])
    else_g = helper.make_graph([helper.make_node("Neg", ["big"], ["o"])], "else", [],
                               [helper.make_tensor_value_info("o", 1, [64])])
    nodes = [helper.make_node("Exp", ["x"], ["big"]),
             helper.make_node("Relu", ["x"], ["r1"]),
             helper.make_node("Neg", ["r1"], ["r2"]),
             helper.make_node("Abs", ["r2"], ["r3"]),
             helper.make_node("If", ["c"], ["i"], then_branch=then_g, else_branch=else_g),
             helper.make_node("Add", ["i", "r3"], ["y"])]
    model = make_model(nodes, [("x", np.float32, [64]), ("c", np.bool_, [])], [("y", np.float32, None)])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    assert [n["op"] for n in cm.fallback_nodes] == ["If"]
    assert [k for k, _ in cm.manifest["steps"]] == ["c", "fallback", "c"]
    for c in (True, False):
        x = RNG.standard_normal(64).astype(np.float32)
        feed = {"x": x, "c": np.array(c)}
        np.testing.assert_allclose(cm.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)


def test_inspect_partitions_shows_fallback(no_c_sigmoid, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(_chain_model().SerializeToString())
    out = subprocess.run([sys.executable, "-m", "onnxc.cli", "inspect", str(path), "--partitions"],
                         capture_output=True, text=True)
    # the monkeypatch does not reach the subprocess: everything is C there
    assert out.returncode == 0, out.stderr
    assert "[c]" in out.stdout
    from onnxc import frontend
    from onnxc.partition import default_providers, partition
    g = frontend.load(_chain_model())
    text = partition(g, default_providers(True), strict=False).describe()
    assert "[fallback]" in text and "c: no C kernel for this op" in text


def test_sequence_inputs_and_outputs_go_through_the_interpreter(tmp_path):
    from onnx import TensorProto
    seq_t = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TensorProto.FLOAT, [2, 3]))
    nodes = [helper.make_node("SequenceAt", ["seq", "pos"], ["t"]),
             helper.make_node("Relu", ["t"], ["r"]),
             helper.make_node("SequenceInsert", ["seq", "r"], ["seq2"]),
             helper.make_node("SequenceLength", ["seq2"], ["n"])]
    g = helper.make_graph(nodes, "g", [helper.make_value_info("seq", seq_t),
                                       helper.make_tensor_value_info("pos", TensorProto.INT64, [])],
                          [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3]),
                           helper.make_value_info("seq2", seq_t),
                           helper.make_tensor_value_info("n", TensorProto.INT64, [])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    sess = onnxc.InferenceSession(model.SerializeToString())
    assert sess.get_inputs()[0].type == "seq(tensor(float))"
    seq = [RNG.standard_normal((2, 3)).astype(np.float32) for _ in range(3)]
    feed = {"seq": seq, "pos": np.array(1, np.int64)}
    out, ref = sess.run(None, feed), ort_run(model, feed)
    np.testing.assert_array_equal(out[0], ref[0])
    assert len(out[1]) == 4 and all(np.array_equal(a, b) for a, b in zip(out[1], ref[1]))
    assert int(out[2]) == 4 and "Relu" not in {n["op"] for n in sess.fallback_nodes}


def test_optional_values_keep_their_type_in_the_interpreter(tmp_path):
    from onnx import TensorProto
    tt = helper.make_tensor_type_proto(TensorProto.FLOAT, [3])
    opt_t = helper.make_optional_type_proto(tt)
    then_g = helper.make_graph([helper.make_node("Optional", ["x"], ["o"])], "then", [],
                               [helper.make_value_info("o", opt_t)])
    else_g = helper.make_graph([helper.make_node("Optional", [], ["o"], type=tt)], "else", [],
                               [helper.make_value_info("o", opt_t)])
    nodes = [helper.make_node("If", ["c"], ["opt"], then_branch=then_g, else_branch=else_g),
             helper.make_node("OptionalHasElement", ["opt"], ["has"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                                       helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("has", TensorProto.BOOL, [])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    for engine in ("reference", "auto"):
        cm = onnxc.compile(model, output_dir=tmp_path / engine, fallback_engine=engine)
        for c in (True, False):
            feed = {"c": np.array(c), "x": np.ones(3, np.float32)}
            assert bool(cm.run(None, feed)[0]) == bool(ort_run(model, feed)[0]) == c


def test_runtime_value_guard_raises_instead_of_wrong_output(tmp_path):
    # TopK's k as a graph input, output shape declared: compiled for k=2; another k is refused
    from onnx import TensorProto
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4]),
                           helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
                          [helper.make_tensor_value_info("v", TensorProto.FLOAT, [3, 2]),
                           helper.make_tensor_value_info("i", TensorProto.INT64, [3, 2])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    feed = {"x": x, "k": np.array([2], np.int64)}
    assert cm.fallback_nodes == []  # the guard under test is the C kernel's
    np.testing.assert_array_equal(cm.run(None, feed)[0], ort_run(model, feed)[0])
    with pytest.raises(ValueError, match="disagrees with the compiled output shape"):
        cm.run(None, {"x": x, "k": np.array([3], np.int64)})


def test_interpreter_only_module_builds_no_c(monkeypatch, tmp_path):
    monkeypatch.delitem(KERNELS, ("", "Unique"))  # an op without a C kernel
    g = helper.make_graph([helper.make_node("Unique", ["x"], ["u"], sorted=1)], "g",
                          [helper.make_tensor_value_info("x", 1, [6])], [helper.make_tensor_value_info("u", 1, ["n"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.so")) and cm.manifest["module_file"] is None
    x = np.array([3, 1, 3, 2, 1, 5], np.float32)
    np.testing.assert_array_equal(cm.run(None, {"x": x})[0], ort_run(model, {"x": x})[0])
    np.testing.assert_array_equal(onnxc.load(tmp_path / "m").run(None, {"x": x})[0], [1, 2, 3, 5])


def test_view_of_a_constant_read_by_the_fallback_at_level_none(tmp_path):
    """At level none Identity(constant) is a C view into the weights; a fallback reader of it
    needs a real buffer (it used to fail the compile with a KeyError in the arena plan)."""
    nodes = [helper.make_node("Identity", ["c"], ["ci"]), helper.make_node("NonZero", ["ci"], ["nz"]),
             helper.make_node("Add", ["x", "ci"], ["y"])]
    model = make_model(nodes, [("x", np.float32, [4])], [("nz", np.int64, None), ("y", np.float32, [4])],
                       {"c": np.array([0, 2, 0, 3], np.float32)})
    feed = {"x": np.arange(4, dtype=np.float32)}
    m = onnxc.compile(model, output_dir=tmp_path / "o", opt_level="none")
    for o, r in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_array_equal(o, r)


def test_auto_engine_runs_the_spec_where_onnxruntime_deviates(tmp_path):
    """A partition holding an op whose onnxruntime kernel is known to differ from the spec (op
    fact ort_deviates: DFT, STFT, Resize, MaxUnpool) runs in onnx.reference under the default
    engine "auto"; other partitions keep onnxruntime. The complex inverse DFT has no C kernel."""
    from onnx import TensorProto
    from onnx.reference import ReferenceEvaluator
    g = helper.make_graph([helper.make_node("DFT", ["x", "", "axis"], ["d"], inverse=1, onesided=0),
                           helper.make_node("Relu", ["d"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6, 2])],
                          [numpy_helper.from_array(np.array(1, np.int64), "axis")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)])
    x = RNG.standard_normal((2, 6, 2)).astype(np.float32)
    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    engines = {}
    for engine in ("auto", "onnxruntime"):
        cm = onnxc.compile(model, output_dir=tmp_path / engine, fallback_engine=engine)
        assert [n["op"] for n in cm.fallback_nodes] == ["DFT"]
        engines[engine] = [fb.engine for _, fb in cm._steps if fb is not None]
        if engine == "auto":
            np.testing.assert_array_equal(cm.run(None, {"x": x})[0], want)
    assert engines == {"auto": ["reference"], "onnxruntime": ["onnxruntime"]}
