"""The generated C embeds in a plain C program: examples/embed_c/main.c is built with the C
compiler alone (no Python, no cffi) against a compiled model's directory and must print the
same output as onnxruntime; with cmake too when it is installed."""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run
from onnxc.build import c_compiler

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_c"


def small_cnn():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
             "fw": rng.standard_normal((10, 16)).astype(np.float32), "fb": rng.standard_normal(10).astype(np.float32)}
    model = make_model(nodes, [("x", np.float32, [1, 3, 12, 12])], [("y", np.float32, [1, 10])], inits)
    return model, rng.standard_normal((1, 3, 12, 12)).astype(np.float32)


@pytest.mark.skipif(shutil.which(c_compiler()) is None, reason="no C compiler")
@pytest.mark.parametrize("level", ["layout"])  # blocked kernels and packed GEMM: the most ISA-specific code
def test_generated_c_builds_and_runs_without_python(tmp_path, level):
    model, x = small_cnn()
    out = tmp_path / "out"
    onnxc.compile(model, output_dir=out, opt_level=level)
    srcs = sorted(str(p) for p in (out / "runtime_c").rglob("*.c"))
    exe = tmp_path / "infer"
    flags = (out / "cflags.txt").read_text().split()
    assert "-std=c99" in flags
    subprocess.run([c_compiler(), *flags, "-Wall", "-I", str(out), "-I",
                    str(out / "runtime_c" / "include"), str(EXAMPLE / "main.c"), str(out / "model.c"), *srcs,
                    "-lm", "-pthread", "-o", str(exe)], check=True, capture_output=True, text=True)
    x.tofile(tmp_path / "x.bin")
    r = subprocess.run([str(exe), str(out / "weights.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 10)
    np.testing.assert_allclose(y, ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)
    # a wrong-sized input file is refused with a message, not read out of bounds
    np.zeros(5, np.float32).tofile(tmp_path / "bad.bin")
    r = subprocess.run([str(exe), str(out / "weights.bin"), str(tmp_path / "bad.bin"), str(tmp_path / "y2.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "expected" in r.stderr


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed")
def test_cmake_example(tmp_path):
    model, x = small_cnn()
    out = tmp_path / "out"
    onnxc.compile(model, output_dir=out)
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(EXAMPLE), "-B", str(build), f"-DONNXC_OUT={out}"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    x.tofile(tmp_path / "x.bin")
    subprocess.run([str(build / "infer"), str(out / "weights.bin"), str(tmp_path / "x.bin"), str(tmp_path / "y.bin")],
                   check=True)
    np.testing.assert_allclose(np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 10),
                               ort_run(model, {"x": x})[0], rtol=1e-5, atol=1e-5)
