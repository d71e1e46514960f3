"""Pickling compiled models and sessions (compiler/pickling.py): by value a fresh interpreter with
its own cache runs the model after the build is gone; by path it loads the same directory and
refuses one rebuilt since; damaged bytes, another Python or a CPU without the build's ISA are
refused with a ModelError before any code of the build runs."""
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run
from onnxc.pickling import _restore_compiled, reduce_compiled

WORKER = r"""
import pickle, sys
import numpy as np
obj = pickle.loads(open(sys.argv[1], "rb").read())
feed = dict(np.load(sys.argv[2]))
before = len(obj.compiled_models) if hasattr(obj, "compiled_models") else -1
outs = obj.run(None, feed)
np.savez(sys.argv[3], *outs)
after = len(obj.compiled_models) if hasattr(obj, "compiled_models") else -1
where = getattr(obj, "output_dir", None) or [str(m.output_dir) for m in obj.compiled_models]
print(type(obj).__name__, before, after, where)
"""


def mlp(batch=2):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])]
    inits = {"w": rng.standard_normal((6, 8)).astype(np.float32), "b": rng.standard_normal(6).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [batch, 8])], [("y", np.float32, [batch, 6])], inits)


def dynamic_mlp():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    return make_model(nodes, [("x", np.float32, ["n", 8])], [("y", np.float32, ["n", 6])],
                      {"w": rng.standard_normal((8, 6)).astype(np.float32)})


def feed(batch=2, seed=1):
    return {"x": np.random.default_rng(seed).standard_normal((batch, 8)).astype(np.float32)}


def in_worker(obj_or_bytes, f, tmp_path, cache):
    """Unpickle in a fresh interpreter that writes unpickled builds to ``cache`` (the compile cache
    stays shared: a fresh one would rebuild the runtime kernels); (outputs, its stdout)."""
    blob = obj_or_bytes if isinstance(obj_or_bytes, bytes) else pickle.dumps(obj_or_bytes)
    (tmp_path / "obj.pkl").write_bytes(blob)
    np.savez(tmp_path / "feed.npz", **f)
    env = {**os.environ, "ONNXC_PICKLE_DIR": str(cache)}
    r = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "obj.pkl"), str(tmp_path / "feed.npz"),
                        str(tmp_path / "outs.npz")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    outs = np.load(tmp_path / "outs.npz")
    return [outs[k] for k in sorted(outs.files, key=lambda s: int(s.split("_")[1]))], r.stdout


def test_by_value_runs_in_a_fresh_process_after_the_build_is_gone(tmp_path):
    m = onnxc.compile(mlp(), output_dir=tmp_path / "build")
    ref = ort_run(mlp(), feed())
    blob = pickle.dumps(m)
    assert m.pickle_by == "value" and len(blob) > m.report["weights_bytes"]
    shutil.rmtree(tmp_path / "build")
    cache = tmp_path / "worker-cache"
    outs, out = in_worker(blob, feed(), tmp_path, cache)
    np.testing.assert_allclose(outs[0], ref[0], rtol=1e-5, atol=1e-6)
    entries = list(cache.iterdir())
    entry = [p for p in entries if p.name != "locks"]
    assert len(entry) == 1 and str(entry[0]) in out
    # a second worker on the machine reuses the entry instead of writing it again
    stamp = (entry[0] / "manifest.json").stat().st_mtime_ns
    outs2, _ = in_worker(blob, feed(seed=2), tmp_path, cache)
    assert (entry[0] / "manifest.json").stat().st_mtime_ns == stamp
    np.testing.assert_allclose(outs2[0], ort_run(mlp(), feed(seed=2))[0], rtol=1e-5, atol=1e-6)


def test_by_value_carries_fallback_partitions(tmp_path):
    """A model with a node only the fallback interpreter runs (Neg of Unique's data-dependent
    output, which C writes with its actual shape beside it): its sub-model travels too."""
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Unique", ["r"], ["u"], sorted=1),
                           helper.make_node("Neg", ["u"], ["y"])],
                          "g", [helper.make_tensor_value_info("x", 1, [6])],
                          [helper.make_tensor_value_info("y", 1, ["n"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m = onnxc.compile(model, output_dir=tmp_path / "build")
    assert m.manifest["fallback"]
    blob = pickle.dumps(m)
    shutil.rmtree(tmp_path / "build")
    x = {"x": np.array([3, -1, 3, 2, -1, 5], np.float32)}
    outs, _ = in_worker(blob, x, tmp_path, tmp_path / "wc")
    np.testing.assert_array_equal(outs[0], [-0.0, -2, -3, -5])


def test_by_path_loads_the_same_directory_and_refuses_a_rebuilt_one(tmp_path):
    m = onnxc.compile(mlp(), output_dir=tmp_path / "build")
    m.pickle_by = "path"
    blob = pickle.dumps(m)
    assert len(blob) < 2000  # a path and checksums, not the build
    outs, out = in_worker(blob, feed(), tmp_path, tmp_path / "wc")
    np.testing.assert_allclose(outs[0], ort_run(mlp(), feed())[0], rtol=1e-5, atol=1e-6)
    assert str(tmp_path / "build") in out and not (tmp_path / "wc").exists()
    again = pickle.loads(blob)
    assert again.pickle_by == "path" and again.output_dir == m.output_dir
    # the directory now holds another build: the pickle no longer names it
    onnxc.compile(mlp(batch=3), output_dir=tmp_path / "build")
    with pytest.raises(onnxc.ModelError, match="now holds another build"):
        pickle.loads(blob)
    shutil.rmtree(tmp_path / "build")
    with pytest.raises(onnxc.ModelError, match="same file system"):
        pickle.loads(blob)
    m.pickle_by = "bytes"
    with pytest.raises(ValueError, match="pickle_by"):
        pickle.dumps(m)


@pytest.mark.parametrize("what", ["weights", "module"])
def test_damaged_bytes_are_refused(tmp_path, monkeypatch, what):
    monkeypatch.setenv("ONNXC_PICKLE_DIR", str(tmp_path / "wc"))
    m = onnxc.compile(mlp(), output_dir=tmp_path / "build")
    _, (state,) = reduce_compiled(m, onnxc.CompiledModel)
    name = m.manifest["weights_file"] if what == "weights" else m.manifest["module_file"]
    data = bytearray(state["files"][name])
    data[len(data) - 3] ^= 0x10  # in the weights payload / the module's last section
    state["files"][name] = bytes(data)
    with pytest.raises(onnxc.ModelError, match="checksum"):
        _restore_compiled(state)


def test_another_python_is_refused(tmp_path):
    m = onnxc.compile(mlp(), output_dir=tmp_path / "build")
    _, (state,) = reduce_compiled(m, onnxc.CompiledModel)
    state["python"] = "cpython-2.7"
    with pytest.raises(onnxc.ModelError, match="pickled on .* under cpython-2.7"):
        _restore_compiled(state)


def test_a_cpu_without_the_builds_isa_is_refused(tmp_path, monkeypatch):
    from onnxc import cpu
    if "avx2" not in cpu.runnable_isas():
        pytest.skip("needs a host that runs AVX2 builds")
    monkeypatch.setenv("ONNXC_PICKLE_DIR", str(tmp_path / "wc"))
    m = onnxc.compile(mlp(), output_dir=tmp_path / "build", target="avx2")
    blob = pickle.dumps(m)
    monkeypatch.setattr(cpu, "host_flags", lambda: frozenset({"sse2", "fpu"}))  # an older CPU
    with pytest.raises(onnxc.ModelError, match=r"lacks avx2.*\(a CompiledModel pickled on "):
        pickle.loads(blob)


def test_static_session_pickles_without_the_model(tmp_path):
    sess = onnxc.InferenceSession(mlp().SerializeToString())
    ref = sess.run(None, feed())
    blob = pickle.dumps(sess)
    # the compiled build (weights once), not the ONNX model as well
    assert len(blob) < len(pickle.dumps(sess.compiled_models[0])) + 4000
    outs, out = in_worker(blob, feed(), tmp_path, tmp_path / "wc")
    assert out.startswith("InferenceSession 1 1 ")
    np.testing.assert_allclose(outs[0], ref[0], rtol=1e-6)


def test_dynamic_session_carries_its_specializations_and_compiles_new_shapes(tmp_path):
    sess = onnxc.InferenceSession(dynamic_mlp().SerializeToString())
    sess.run(None, feed(batch=2))
    assert len(sess.compiled_models) == 1
    blob = pickle.dumps(sess)
    # batch 2 was compiled before pickling: the worker runs it without compiling
    outs, out = in_worker(blob, feed(batch=2), tmp_path, tmp_path / "wc")
    assert out.startswith("InferenceSession 1 1 ") and str(tmp_path / "wc") in out
    np.testing.assert_allclose(outs[0], ort_run(dynamic_mlp(), feed(batch=2))[0], rtol=1e-5, atol=1e-6)
    # batch 5 is new: the session carried the model, so the worker compiles it
    outs, out = in_worker(blob, feed(batch=5), tmp_path, tmp_path / "wc")
    assert out.startswith("InferenceSession 1 2 ")
    np.testing.assert_allclose(outs[0], ort_run(dynamic_mlp(), feed(batch=5))[0], rtol=1e-5, atol=1e-6)
    s2 = pickle.loads(blob)
    assert [i.name for i in s2.get_inputs()] == ["x"] and s2.get_providers() == sess.get_providers()
