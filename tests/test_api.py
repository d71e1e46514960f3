"""Public API: compile/load/cache, InferenceSession, backend, and clear errors on bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run


def add_relu_model(shape=(2, 3)):
    nodes = [helper.make_node("Add", ["x", "b"], ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    return make_model(nodes, [("x", np.float32, list(shape))], [("y", np.float32, list(shape))],
                      {"b": np.linspace(-1, 1, shape[-1]).astype(np.float32)})


def feed(shape=(2, 3)):
    return {"x": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}


def test_compile_from_proto_bytes_and_path(tmp_path):
    model = add_relu_model()
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    ref = ort_run(model, feed())[0]
    for i, src in enumerate([model, model.SerializeToString(), str(path), path]):
        out = onnxc.compile(src, output_dir=tmp_path / f"o{i}").run(None, feed())[0]
        np.testing.assert_allclose(out, ref, rtol=1e-6)


def test_second_compile_is_cached_and_load_needs_no_rebuild(tmp_path):
    model = add_relu_model()
    m1 = onnxc.compile(model, output_dir=tmp_path / "o")
    so = next((tmp_path / "o").glob("_onnxc_*.so"))
    mtime = so.stat().st_mtime_ns
    m2 = onnxc.compile(model, output_dir=tmp_path / "o")
    assert next((tmp_path / "o").glob("_onnxc_*.so")).stat().st_mtime_ns == mtime
    m3 = onnxc.load(tmp_path / "o")
    for m in (m1, m2, m3):
        np.testing.assert_array_equal(m.run(None, feed())[0], m1.run(None, feed())[0])
    # a different option is a different build
    onnxc.compile(model, output_dir=tmp_path / "o", opt_level="none")
    assert next((tmp_path / "o").glob("_onnxc_*.so")).stat().st_mtime_ns != mtime


def test_load_in_fresh_process_without_onnx(tmp_path):
    onnxc.compile(add_relu_model(), output_dir=tmp_path / "o")
    code = ("import sys; sys.modules['onnx'] = None\n"  # importing onnx would now fail
            "import numpy as np, onnxc\n"
            f"m = onnxc.load({str(tmp_path / 'o')!r})\n"
            "print(m.run(None, {'x': np.zeros((2, 3), np.float32)})[0].tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]"


@pytest.mark.parametrize("bad_feed, match", [
    ({"nope": np.zeros((2, 3), np.float32)}, r"unknown \['nope'\], missing \['x'\]"),
    ({"x": np.zeros((2, 3), np.float64)}, r"input 'x': expected dtype float32, got float64"),
    ({"x": np.zeros((3, 2), np.float32)}, r"input 'x': expected shape \(2, 3\), got \(3, 2\)"),
    ({"x": np.zeros((2, 3, 1), np.float32)}, r"expected shape"),
])
def test_bad_inputs_raise_value_error(tmp_path, bad_feed, match):
    m = onnxc.compile(add_relu_model(), output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match=match):
        m.run(None, bad_feed)


def test_output_names_select_and_validate(tmp_path):
    m = onnxc.compile(add_relu_model(), output_dir=tmp_path / "o")
    assert len(m.run(["y"], feed())) == 1
    with pytest.raises(ValueError, match="unknown output name"):
        m.run(["z"], feed())


def test_unsupported_ops_are_all_listed(monkeypatch, tmp_path):
    from onnxc.providers.c import KERNELS
    monkeypatch.delitem(KERNELS, ("", "Unique"))  # an op without a C kernel
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Unique", ["a"], ["u"], name="uniq"),
             helper.make_node("StringNormalizer", ["s"], ["s2"], name="strnorm")]
    from onnx import TensorProto
    model = helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                     helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("u", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("s2", TensorProto.STRING, [2])]),
        opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(NotImplementedError) as e:
        onnxc.compile(model, output_dir=tmp_path / "o", fallback=False)
    msg = str(e.value)
    assert "Unique" in msg and "uniq" in msg and "StringNormalizer" in msg and "strnorm" in msg
    # by default the same nodes run in the fallback provider, strings included
    cm = onnxc.compile(model, output_dir=tmp_path / "fb")
    assert {n["op"] for n in cm.fallback_nodes} == {"Unique", "StringNormalizer"}
    feed = {"x": np.array([1, -2, 1, 3], np.float32), "s": np.array(["a", "b"], dtype=object)}
    for o, r in zip(cm.run(None, feed), ort_run(model, feed)):
        np.testing.assert_array_equal(o, r)


def test_malformed_model_is_model_error(tmp_path):
    with pytest.raises(onnxc.ModelError):
        onnxc.compile(b"this is not a model", output_dir=tmp_path / "o")
    bad = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [2])], [("y", np.float32, [2])])
    bad.graph.node[0].input[0] = "missing"
    with pytest.raises(onnxc.ModelError):
        onnxc.compile(bad, output_dir=tmp_path / "o2")


def test_inference_session_is_ort_compatible(tmp_path):
    model = add_relu_model()
    sess = onnxc.InferenceSession(model.SerializeToString())
    i, o = sess.get_inputs()[0], sess.get_outputs()[0]
    assert (i.name, i.shape, i.type) == ("x", [2, 3], "tensor(float)")
    assert (o.name, o.shape, o.type) == ("y", [2, 3], "tensor(float)")
    np.testing.assert_allclose(sess.run(None, feed())[0], ort_run(model, feed())[0], rtol=1e-6)


def test_session_specializes_free_dims(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    model = make_model(nodes, [("x", np.float32, ["N", 4])], [("y", np.float32, ["N", 4])])
    sess = onnxc.InferenceSession(model)
    assert sess.get_inputs()[0].shape == ["N", 4]
    for n in (1, 3, 1):
        x = np.random.default_rng(n).standard_normal((n, 4)).astype(np.float32)
        np.testing.assert_array_equal(sess.run(None, {"x": x})[0], np.maximum(x, 0))
    assert len(sess._compiled) == 2
    with pytest.raises(ValueError, match="expected shape"):
        sess.run(None, {"x": np.zeros((2, 5), np.float32)})


def test_input_shapes_bind_free_dims(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"])]
    model = make_model(nodes, [("x", np.float32, ["N", 4])], [("y", np.float32, ["N", 4])])
    m = onnxc.compile(model, input_shapes={"x": [5, 4]}, output_dir=tmp_path / "o")
    assert m.get_inputs()[0].shape == [5, 4]
    with pytest.raises(ValueError, match="unknown input"):
        onnxc.compile(model, input_shapes={"y": [5, 4]}, output_dir=tmp_path / "o2")
    with pytest.raises(ValueError, match="conflicts"):
        onnxc.compile(make_model(nodes, [("x", np.float32, [2, 4])], [("y", np.float32, [2, 4])]),
                      input_shapes={"x": [5, 4]}, output_dir=tmp_path / "o3")


def test_backend_api():
    import onnxc.backend as backend
    model = add_relu_model()
    assert backend.supports_device("CPU") and not backend.supports_device("CUDA")
    out = backend.run_model(model, [feed()["x"]])
    np.testing.assert_allclose(out[0], ort_run(model, feed())[0], rtol=1e-6)


def test_outputs_that_are_inputs_or_constants_or_duplicates(tmp_path):
    nodes = [helper.make_node("Identity", ["x"], ["y1"]), helper.make_node("Identity", ["c"], ["y2"]),
             helper.make_node("Relu", ["x"], ["y3"]), helper.make_node("Identity", ["y3"], ["y4"])]
    c = np.arange(3, dtype=np.float32)
    model = make_model(nodes, [("x", np.float32, [3])],
                       [("y1", np.float32, [3]), ("y2", np.float32, [3]), ("y3", np.float32, [3]),
                        ("y4", np.float32, [3])], {"c": c})
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    x = np.array([-1, 2, -3], np.float32)
    y1, y2, y3, y4 = m.run(None, {"x": x})
    np.testing.assert_array_equal(y1, x)
    np.testing.assert_array_equal(y2, c)
    np.testing.assert_array_equal(y3, np.maximum(x, 0))
    np.testing.assert_array_equal(y4, y3)
    assert [o.name for o in m.get_outputs()] == ["y1", "y2", "y3", "y4"]


def test_cli_compile_run_inspect(tmp_path):
    model = add_relu_model()
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    exe = [sys.executable, "-m", "onnxc"]
    env = dict(os.environ)
    r = subprocess.run(exe + ["compile", str(path), "-o", str(tmp_path / "o")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "arena" in r.stdout
    np.save(tmp_path / "x.npy", feed()["x"])
    r = subprocess.run(exe + ["run", str(tmp_path / "o"), "--input", f"x={tmp_path / 'x.npy'}"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "y: float32[2, 3]" in r.stdout, r.stderr
    r = subprocess.run(exe + ["inspect", str(path), "--passes"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "constant_folding" in r.stdout
    r = subprocess.run(exe + ["compile", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "o2")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "error" in r.stderr


def test_relative_output_dir(tmp_path, monkeypatch):
    """A relative output directory (as `onnxc compile m.onnx -o out/` gives) used to break the cffi
    build, which compiles in a temporary directory."""
    monkeypatch.chdir(tmp_path)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [3])], [("y", np.float32, [3])])
    m = onnxc.compile(model, output_dir="rel/out")
    assert (tmp_path / "rel" / "out" / "cflags.txt").exists()
    np.testing.assert_array_equal(m.run(None, {"x": np.array([-1, 0, 2], np.float32)})[0], [0, 0, 2])


def test_weights_are_checked_and_survive_a_rebuild(tmp_path):
    """A weights file from another build is refused by its digest; recompiling into the same
    directory leaves an already loaded module working."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)

    def model(scale):
        w = (rng.standard_normal((8, 8)) * scale).astype(np.float32)
        return make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", np.float32, [4, 8])],
                          [("y", np.float32, [4, 8])], {"w": w}), w
    m1, w1 = model(1.0)
    a = onnxc.compile(m1, output_dir=tmp_path / "o")
    np.testing.assert_allclose(a.run(None, {"x": x})[0], x @ w1, rtol=1e-5, atol=1e-5)
    m2, w2 = model(2.0)
    b = onnxc.compile(m2, output_dir=tmp_path / "o2")
    np.testing.assert_allclose(b.run(None, {"x": x})[0], x @ w2, rtol=1e-5, atol=1e-5)
    import shutil
    # same size, another build
    shutil.copy(tmp_path / "o2" / "weights.bin", tmp_path / "w.tmp")
    os.replace(tmp_path / "w.tmp", tmp_path / "o" / "weights.bin")
    with pytest.raises(onnxc.ModelError, match="another build"):
        onnxc.load(tmp_path / "o")
    np.testing.assert_allclose(a.run(None, {"x": x})[0], x @ w1, rtol=1e-5, atol=1e-5)  # old map intact
    c = onnxc.compile(m1, output_dir=tmp_path / "o", force=True)  # rebuild in place while a is loaded
    np.testing.assert_allclose(a.run(None, {"x": x})[0], x @ w1, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(c.run(None, {"x": x})[0], x @ w1, rtol=1e-5, atol=1e-5)
