"""Per-node profiling: CompiledModel.profile and `onnxc run --profile`."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model
from onnxc.cli import main as cli_main


def model_with(nodes, outputs, inits=None):
    return make_model(nodes, [("x", np.float32, [64, 64])], outputs, inits)


def test_profile_times_every_c_node_and_leaves_results_unchanged(tmp_path):
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Exp", ["a"], ["b"]),
             helper.make_node("ReduceSum", ["b"], ["y"], keepdims=0)]
    m = onnxc.compile(model_with(nodes, [("y", np.float32, None)], {"w": w * 0.01}), output_dir=tmp_path / "o",
                      opt_level="none")
    feed = {"x": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}
    want = m.run(None, feed)[0]
    rows = m.profile(feed, repeat=3)
    assert [r["op"] for r in rows] == ["MatMul", "Exp", "ReduceSum"]
    assert all(r["provider"] == "c" and r["ms"] >= 0 for r in rows) and sum(r["ms"] for r in rows) > 0
    np.testing.assert_array_equal(m.run(None, feed)[0], want)
    secs = getattr(m._lib, "model_profile_seconds")()
    getattr(m._lib, "model_profile_reset")()
    assert [secs[i] for i in range(3)] == [0.0, 0.0, 0.0]
    m.run(None, feed)  # profiling is off again after profile(): counters stay zero
    assert [secs[i] for i in range(3)] == [0.0, 0.0, 0.0]


def test_profile_reports_fallback_partitions(tmp_path, capsys):
    # Abs reads NonZero's data-dependent shape: it runs in the fallback
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("NonZero", ["r"], ["nz"]),
             helper.make_node("Abs", ["nz"], ["nza"]), helper.make_node("Neg", ["r"], ["y"])]
    m = onnxc.compile(model_with(nodes, [("nza", np.int64, None), ("y", np.float32, [64, 64])]),
                      output_dir=tmp_path / "o")
    rows = m.profile({"x": np.ones((64, 64), np.float32)}, repeat=2)
    assert any(r["provider"] == "fallback" and "Abs" in r["name"] for r in rows)
    assert {r["op"] for r in rows if r["provider"] == "c"} == {"Relu", "NonZero", "Neg"}
    assert cli_main(["run", str(tmp_path / "o"), "--random", "--profile"]) == 0
    out = capsys.readouterr().out
    assert "op type" in out and "fallback partition" in out and "Relu" in out


@pytest.mark.slow  # the extra flag rebuilds the whole runtime (1-2 min cold on the 2-vCPU VM)
def test_profile_thread_cputime_clock(tmp_path, monkeypatch):
    # -DONNXC_PROFILE_THREAD_CPUTIME (runtime_c/common/timer.c): the counters read the thread's CPU
    # time; at 1 thread that never exceeds the wall time of the runs, and the results are unchanged
    import time
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Exp", ["a"], ["y"])]
    model = model_with(nodes, [("y", np.float32, None)], {"w": w * 0.01})
    feed = {"x": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}
    plain = onnxc.compile(model, output_dir=tmp_path / "plain", opt_level="none", num_threads=1)
    monkeypatch.setenv("ONNXC_EXTRA_CFLAGS", "-DONNXC_PROFILE_THREAD_CPUTIME")
    m = onnxc.compile(model, output_dir=tmp_path / "cpu", opt_level="none", num_threads=1)
    np.testing.assert_array_equal(m.run(None, feed)[0], plain.run(None, feed)[0])
    t = time.perf_counter()
    rows = m.profile(feed, repeat=20)
    wall_ms = (time.perf_counter() - t) * 1e3 / 20
    assert [r["op"] for r in rows] == ["MatMul", "Exp"]
    assert all(r["ms"] >= 0 for r in rows) and 0 < sum(r["ms"] for r in rows) <= wall_ms
