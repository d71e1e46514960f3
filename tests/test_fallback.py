"""The fallback provider: nodes without a C kernel run in an ONNX interpreter between C
partitions, with values passed through the arena, output arrays or Python."""
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

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
    # NonZero's output shape depends on the data: its consumers cannot be C, its graph output
    # is returned from Python, and the C part still runs around it
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("NonZero", ["r"], ["nz"]),
             helper.make_node("Transpose", ["nz"], ["t"]),
             helper.make_node("Exp", ["r"], ["e"])]
    model = make_model(nodes, [("x", np.float32, [3, 4])], [("t", np.int64, None), ("e", np.float32, None)])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    assert {n["op"] for n in cm.fallback_nodes} == {"NonZero", "Transpose"}
    for _ in range(2):
        x = RNG.standard_normal((3, 4)).astype(np.float32)
        out, ref = cm.run(None, {"x": x}), ort_run(model, {"x": x})
        np.testing.assert_array_equal(out[0], ref[0])
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-6)


def test_subgraph_reads_of_c_values_outlive_arena_reuse(tmp_path):
    # the If (fallback: no C kernel) reads 'big' only inside its branches; the arena planner
    # must keep 'big' alive until the If runs although later C values could reuse its bytes
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
    if "If" not in {n["op"] for n in cm.fallback_nodes}:
        pytest.skip("If runs in C now; the arena lifetime of subgraph reads is tested by the If tests")
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
