"""`onnxc compile --emit c`: the standalone C project builds with CMake alone, and its example, a
find_package consumer, an add_subdirectory consumer (two models in one program), an embedded-
weights build without threads and a two-threads/two-arenas program all give onnxruntime's
results. The ISA guard refuses other vector flags."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run
from onnxc.build import c_compiler
from onnxc.cli import main as cli_main
from onnxc.emit_c import emit_c, export_c

C_DIR = Path(__file__).resolve().parent / "c"
pytestmark = [pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
              pytest.mark.skipif(shutil.which(c_compiler()) is None, reason="no C compiler")]


def small_cnn():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
             "fw": rng.standard_normal((10, 16)).astype(np.float32), "fb": rng.standard_normal(10).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [1, 3, 12, 12])], [("y", np.float32, [1, 10])], inits, name="cnn")


def two_input_mlp():
    """Two inputs (float32, int64) and two outputs of different types: the example's argument order."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Tanh", ["h"], ["y"]),
             helper.make_node("Mul", ["k", "k"], ["k2"])]
    inits = {"w": rng.standard_normal((24, 7)).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [5, 24]), ("k", np.int64, [3])],
                      [("y", np.float32, [5, 7]), ("k2", np.int64, [3])], inits, name="mlp")


def feeds(seed):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((1, 3, 12, 12)).astype(np.float32)}


def cmake(src, build, *defs, env=None):
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(build), *defs], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["cmake", "--build", str(build), "-j", "2"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def write_inputs(feed, d, tag):
    paths = []
    for name, a in feed.items():
        p = d / f"{tag}_{name}.bin"
        np.ascontiguousarray(a).tofile(p)
        paths.append(str(p))
    return paths


@pytest.fixture(scope="module")
def cnn_project(tmp_path_factory):
    """The small CNN emitted (target native) and built once with its example."""
    d = tmp_path_factory.mktemp("emit")
    e = emit_c(small_cnn(), d / "cnn", prefix="cnn")
    log = cmake(e.path, d / "build")
    return e, d / "build", log


def test_example_builds_with_cmake_and_matches_onnxruntime(cnn_project, tmp_path):
    e, build, _ = cnn_project
    files = set(os.listdir(e.path))
    assert {"CMakeLists.txt", "cnn.c", "cnn.h", "cnn_symbols.h", "weights.bin", "runtime_c", "example", "cmake",
            "onnxc_emit.json"} <= files
    # only the runtime sources the model reaches, and the example links with nothing missing
    info = json.loads((e.path / "onnxc_emit.json").read_text())
    assert 0 < len(e.sources) < e.all_sources and info["runtime_sources"] == e.sources
    assert "common/threads.c" in e.sources and not any(s.startswith(("rnn/", "attention/")) for s in e.sources)
    assert sorted(str(p.relative_to(e.path / "runtime_c")) for p in (e.path / "runtime_c").rglob("*.c")) == e.sources
    for seed in (0, 1):
        feed = feeds(seed)
        x = write_inputs(feed, tmp_path, f"s{seed}")
        r = subprocess.run([str(build / "cnn_example"), str(e.path / "weights.bin"), *x, str(tmp_path / "y.bin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        y = np.fromfile(tmp_path / "y.bin", np.float32).reshape(1, 10)
        np.testing.assert_allclose(y, ort_run(small_cnn(), feed)[0], rtol=1e-5, atol=1e-5)
    # a wrong-sized input file and a wrong argument count are refused with a message
    np.zeros(5, np.float32).tofile(tmp_path / "bad.bin")
    r = subprocess.run([str(build / "cnn_example"), str(e.path / "weights.bin"), str(tmp_path / "bad.bin"),
                        str(tmp_path / "y2.bin")], capture_output=True, text=True)
    assert r.returncode == 1 and "expected 1728" in r.stderr
    r = subprocess.run([str(build / "cnn_example")], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_find_package_consumer_runs_two_threads_with_two_arenas(cnn_project, tmp_path):
    """Install the library, build a second project against it with find_package, and run the
    same model on two threads at once (two arenas): both equal their lone runs and onnxruntime."""
    e, build, _ = cnn_project
    prefix = tmp_path / "inst"
    r = subprocess.run(["cmake", "--install", str(build), "--prefix", str(prefix)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (prefix / "include" / "cnn" / "cnn.h").exists() and (prefix / "share" / "cnn" / "weights.bin").exists()
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(C_DIR / "two_arenas.c", app)
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\nfind_package(cnn REQUIRED)\n"
        "find_package(Threads REQUIRED)\nadd_executable(two_arenas two_arenas.c)\n"
        "target_compile_definitions(two_arenas PRIVATE MODEL_HEADER=\"cnn.h\" MODEL_PREFIX=cnn)\n"
        "target_link_libraries(two_arenas PRIVATE cnn::cnn Threads::Threads m)\n"
        "file(WRITE ${CMAKE_BINARY_DIR}/weights_path.txt ${CNN_WEIGHTS_FILE})\n")
    cmake(app, tmp_path / "app-build", f"-DCMAKE_PREFIX_PATH={prefix}")
    weights = (tmp_path / "app-build" / "weights_path.txt").read_text().strip()
    assert Path(weights) == prefix / "share" / "cnn" / "weights.bin"
    a, b = feeds(2), feeds(3)
    args = [weights, *write_inputs(a, tmp_path, "a"), *write_inputs(b, tmp_path, "b"),
            str(tmp_path / "ya.bin"), str(tmp_path / "yb.bin")]
    r = subprocess.run([str(tmp_path / "app-build" / "two_arenas"), *args], capture_output=True, text=True,
                       env={**os.environ, "ONNXC_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stdout + r.stderr
    for f, path in ((a, "ya.bin"), (b, "yb.bin")):
        np.testing.assert_allclose(np.fromfile(tmp_path / path, np.float32).reshape(1, 10),
                                   ort_run(small_cnn(), f)[0], rtol=1e-5, atol=1e-5)


def test_add_subdirectory_links_two_models_into_one_program(cnn_project, tmp_path):
    """Two emitted models (each with its runtime, renamed by <prefix>_symbols.h) in one program
    through add_subdirectory; the second has two inputs and two outputs of two types."""
    e, _, _ = cnn_project
    mlp = two_input_mlp()
    e2 = emit_c(mlp, tmp_path / "mlp", prefix="mlp")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text(r'''
#include <stdio.h>
#include <stdlib.h>
#include "cnn.h"
#include "mlp.h"
static void* rd(const char* p, size_t n) { FILE* f = fopen(p, "rb"); void* b = malloc(n ? n : 1);
  if (!f || fseek(f, -(long)n, SEEK_END) || fread(b, 1, n, f) != n) exit(3); fclose(f); return b; }
static void* al(size_t n) { void* p = NULL; return posix_memalign(&p, 64, n ? n : 64) ? NULL : p; }
static void* rd64(const char* p, size_t n) { void* a = al(n); void* b = rd(p, n); memcpy(a, b, n); free(b); return a; }
int main(int argc, char** argv) {
  const void* ci[1]; void* co[1]; const void* mi[2]; void* mo[2]; FILE* f; int rc;
  (void)argc;
  ci[0] = rd(argv[3], cnn_input_bytes(0)); co[0] = malloc(cnn_output_bytes(0));
  mi[0] = rd(argv[4], mlp_input_bytes(0)); mi[1] = rd(argv[5], mlp_input_bytes(1));
  mo[0] = malloc(mlp_output_bytes(0)); mo[1] = malloc(mlp_output_bytes(1));
  rc = cnn_run(rd64(argv[1], CNN_WEIGHTS_BYTES), al(CNN_ARENA_BYTES), ci, co);
  rc |= mlp_run(rd64(argv[2], MLP_WEIGHTS_BYTES), al(MLP_ARENA_BYTES), mi, mo);
  if (rc != ONNXC_OK) return 1;
  f = fopen(argv[6], "wb"); fwrite(co[0], 1, CNN_OUTPUT0_BYTES, f);
  fwrite(mo[0], 1, MLP_OUTPUT0_BYTES, f); fwrite(mo[1], 1, MLP_OUTPUT1_BYTES, f); fclose(f);
  return 0;
}
'''.replace("#include <stdlib.h>", "#define _POSIX_C_SOURCE 200112L\n#include <stdlib.h>\n#include <string.h>"))
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.13)\nproject(app C)\n"
        f"add_subdirectory({e.path} cnn)\nadd_subdirectory({e2.path} mlp)\n"
        "add_executable(app main.c)\ntarget_link_libraries(app PRIVATE cnn::cnn mlp::mlp)\n")
    cmake(app, tmp_path / "build")
    # the examples are not built inside another project
    assert not (tmp_path / "build" / "cnn" / "cnn_example").exists()
    feed_c = feeds(4)
    rng = np.random.default_rng(5)
    feed_m = {"x": rng.standard_normal((5, 24)).astype(np.float32), "k": np.array([3, -4, 1 << 20], np.int64)}
    args = [str(e.path / "weights.bin"), str(e2.path / "weights.bin"), *write_inputs(feed_c, tmp_path, "c"),
            *write_inputs(feed_m, tmp_path, "m"), str(tmp_path / "out.bin")]
    r = subprocess.run([str(tmp_path / "build" / "app"), *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    raw = (tmp_path / "out.bin").read_bytes()
    y = np.frombuffer(raw[:40], np.float32).reshape(1, 10)
    m_y = np.frombuffer(raw[40:40 + 140], np.float32).reshape(5, 7)
    m_k = np.frombuffer(raw[180:], np.int64)
    np.testing.assert_allclose(y, ort_run(small_cnn(), feed_c)[0], rtol=1e-5, atol=1e-5)
    ref = ort_run(mlp, feed_m)
    np.testing.assert_allclose(m_y, ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m_k, ref[1])


def test_embedded_weights_without_threads(tmp_path):
    """--embed-weights: one binary, no weights file; built with ONNXC_THREADS=OFF: no pthread."""
    mlp = two_input_mlp()
    out = tmp_path / "mlp"
    assert cli_main(["compile", _save(mlp, tmp_path), "-o", str(out), "--emit", "c", "--embed-weights",
                     "--prefix", "mlp"]) == 0
    assert not (out / "weights.bin").exists() and (out / "mlp_weights.c").exists()
    assert "aligned(64)" in (out / "mlp_weights.c").read_text()
    cmake(out, tmp_path / "build", "-DONNXC_THREADS=OFF")
    exe = tmp_path / "build" / "mlp_example"
    nm = subprocess.run(["nm", str(exe)], capture_output=True, text=True).stdout
    assert "pthread_create" not in nm and "mlp_embedded_weights" in nm
    rng = np.random.default_rng(6)
    feed = {"x": rng.standard_normal((5, 24)).astype(np.float32), "k": np.array([7, 0, -2], np.int64)}
    r = subprocess.run([str(exe), *write_inputs(feed, tmp_path, "i"), str(tmp_path / "y.bin"), str(tmp_path / "k.bin")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ref = ort_run(mlp, feed)
    np.testing.assert_allclose(np.fromfile(tmp_path / "y.bin", np.float32).reshape(5, 7), ref[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "k.bin", np.int64), ref[1])


def _save(model, d):
    p = d / f"{model.graph.name}.onnx"
    p.write_bytes(model.SerializeToString())
    return str(p)


def _preprocess(project, prefix, flags, extra_c=None):
    src = project / f"{prefix}.c"
    if extra_c is not None:
        src = project / "probe.c"
        src.write_text(extra_c)
    inc = ["-I", str(project), "-I", str(project / "runtime_c" / "include")]
    return subprocess.run([c_compiler(), "-std=c99", *flags, *inc, "-fsyntax-only", "-Wall", "-Werror", str(src)],
                          capture_output=True, text=True)


def test_isa_guard_refuses_other_vector_flags(tmp_path):
    """The weights are packed for the target's kernels: compiling the generic model's C with
    AVX2 flags, or an AVX2 model's without them, stops with #error."""
    e = emit_c(small_cnn(), tmp_path / "generic", target="generic", prefix="g")
    assert e.isa_flags == []
    assert _preprocess(e.path, "g", []).returncode == 0
    r = _preprocess(e.path, "g", ["-mavx2", "-mfma"])
    assert r.returncode != 0 and "__AVX2__ is defined, but the weights were packed for target generic" in r.stderr
    e2 = emit_c(small_cnn(), tmp_path / "avx2", target="avx2", prefix="a")
    assert "-mavx2" in e2.isa_flags
    assert "set(A_ISA_FLAGS \"" + " ".join(e2.isa_flags) in (e2.path / "CMakeLists.txt").read_text()
    assert _preprocess(e2.path, "a", e2.isa_flags).returncode == 0
    r = _preprocess(e2.path, "a", [])
    assert r.returncode != 0 and "compile with -mavx2" in r.stderr
    r = _preprocess(e2.path, "a", e2.isa_flags + ["-mavx512f"])
    assert r.returncode != 0 and "__AVX512F__ is defined" in r.stderr
    # model.h repeats onnxc_rt.h's status codes exactly: including both is no redefinition
    probe = '#include "g.h"\n#include "onnxc_rt.h"\nint probe(void) { return ONNXC_ERR_VALUE + ONNXC_OK; }\n'
    r = _preprocess(e.path, "g", [], extra_c=probe)
    assert r.returncode == 0, r.stderr


def test_emit_refuses_fallback_models_and_foreign_folders(monkeypatch, tmp_path, capsys):
    from onnxc.providers.c import KERNELS
    monkeypatch.delitem(KERNELS, ("", "Unique"))  # an op without a C kernel
    g = helper.make_graph([helper.make_node("Unique", ["x"], ["u"], sorted=1)], "g",
                          [helper.make_tensor_value_info("x", 1, [6])], [helper.make_tensor_value_info("u", 1, ["n"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    built = onnxc.compile(m, output_dir=tmp_path / "fb")
    with pytest.raises(onnxc.UnsupportedError, match="Unique"):
        export_c(built.output_dir, tmp_path / "c")
    with pytest.raises(onnxc.UnsupportedError):
        emit_c(m, tmp_path / "c2")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(onnxc.CompileError, match="not empty"):
        emit_c(small_cnn(), foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert cli_main(["compile", _save(small_cnn(), tmp_path), "-o", str(tmp_path / "x"), "--embed-weights"]) == 2
    assert "--embed-weights goes with --emit c" in capsys.readouterr().err


def test_emit_again_replaces_its_own_files(tmp_path):
    """Emitting into a folder an earlier emit wrote replaces those files and keeps the others
    (e.g. a build directory); switching to embedded weights removes weights.bin."""
    out = tmp_path / "p"
    emit_c(small_cnn(), out, prefix="cnn", target="generic")
    (out / "build").mkdir()
    (out / "build" / "keep.txt").write_text("x")
    e = emit_c(small_cnn(), out, prefix="cnn", target="generic", embed_weights=True)
    assert (out / "build" / "keep.txt").exists() and not (out / "weights.bin").exists()
    assert (out / "cnn_weights.c").exists() and e.embedded


def test_example_writes_the_actual_shape_of_a_data_dependent_output(tmp_path):
    """The example program writes only the elements a NonZero output has this run (its buffer
    has the bound's size; <prefix>_output_shape gives the actual shape)."""
    g = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, [3, 4])], [helper.make_tensor_value_info("y", 7, [2, "n"])])
    e = emit_c(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "nz", prefix="nz")
    main = (e.path / "example" / "main.c").read_text()
    assert "nz_output_shape(arena, i, dims)" in main and "static const size_t itemsize[] = { 8u, 0u };" in main
