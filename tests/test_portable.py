"""The portable target x86-64 (compiler/portable.py): one output carrying the avx512, avx2 and generic
builds of a model, the best the CPU runs loaded. Each build this host runs is loaded by force
(isa= and $ONNXC_ISA) and must match target="generic" (and onnxruntime); a CPU without an ISA is
simulated by replacing cpu.host_flags, so the refusal and the fallback to a lower build are tested on
an AVX-512 host too; damage to one ISA's build is found; pickles carry every build."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import damage_file, make_model, ort_run
from onnxc import cpu
from onnxc.portable import PORTABLE

CARRIED = PORTABLE["x86-64"]
HOST = [i for i in CARRIED if i in cpu.runnable_isas()]  # the builds this host can run
AVX2_CPU = frozenset(cpu.REQUIRED_FLAGS["avx2"]) | {"sse2", "ssse3", "sse4_2"}


def small_cnn():
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3,
             "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
             "w2": rng.standard_normal((24, 16, 3, 3)).astype(np.float32) * 0.1,
             "b2": rng.standard_normal(24).astype(np.float32) * 0.1,
             "wf": rng.standard_normal((10, 24)).astype(np.float32) * 0.2,
             "bf": rng.standard_normal(10).astype(np.float32) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    feed = {"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [2, 3, 16, 16])], [("y", np.float32, [2, 10])], inits), feed


def small_transformer():
    """One attention block: Q/K/V projections, scaled scores, softmax, context, output projection,
    residual and LayerNormalization, then a GELU-style MLP (MatMul, Erf)."""
    rng = np.random.default_rng(1)
    s, d, h = 8, 32, 64
    w = {n: (rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32)
         for n, shape in (("wq", (d, d)), ("wk", (d, d)), ("wv", (d, d)), ("wo", (d, d)), ("w1", (d, h)),
                          ("w2", (h, d)))}
    w.update(scale=np.float32(1 / np.sqrt(d)), gamma=np.ones(d, np.float32), beta=np.zeros(d, np.float32),
             half=np.float32(0.5), one=np.float32(1.0), rs2=np.float32(1 / np.sqrt(2)))
    nodes = [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
             helper.make_node("MatMul", ["x", "wv"], ["v"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s0"]), helper.make_node("Mul", ["s0", "scale"], ["s1"]),
             helper.make_node("Softmax", ["s1"], ["p"], axis=-1), helper.make_node("MatMul", ["p", "v"], ["ctx"]),
             helper.make_node("MatMul", ["ctx", "wo"], ["o"]), helper.make_node("Add", ["o", "x"], ["res"]),
             helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["ln"], axis=-1),
             helper.make_node("MatMul", ["ln", "w1"], ["m1"]), helper.make_node("Mul", ["m1", "rs2"], ["m2"]),
             helper.make_node("Erf", ["m2"], ["m3"]), helper.make_node("Add", ["m3", "one"], ["m4"]),
             helper.make_node("Mul", ["m1", "m4"], ["m5"]), helper.make_node("Mul", ["m5", "half"], ["m6"]),
             helper.make_node("MatMul", ["m6", "w2"], ["y"])]
    feed = {"x": rng.standard_normal((2, s, d)).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [2, s, d])], [("y", np.float32, [2, s, d])], w), feed


MODELS = {"cnn": small_cnn, "transformer": small_transformer}


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """name -> (portable build directory, feed, target=generic output, onnxruntime output)."""
    root = tmp_path_factory.mktemp("portable")
    out = {}
    for name, make in MODELS.items():
        model, feed = make()
        onnxc.compile(model, output_dir=root / name, target="x86-64")
        ref = onnxc.compile(model, output_dir=root / f"{name}-generic", target="generic").run(None, feed)[0]
        out[name] = (root / name, feed, ref, ort_run(model, feed)[0])
    return out


@pytest.fixture(autouse=True)
def _no_isa_env(monkeypatch):
    monkeypatch.delenv("ONNXC_ISA", raising=False)


def damaged_copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("name", list(MODELS))
def test_every_isa_build_matches_generic(builds, name, monkeypatch):
    d, feed, ref, ort = builds[name]
    top = json.loads((d / "manifest.json").read_text())
    assert top["isas"] == list(CARRIED) and top["portable"] == "x86-64"
    best = onnxc.load(d)
    assert best.isa == HOST[0] and best.build_dir == d / HOST[0]  # the best the host runs
    assert np.allclose(ref, ort, rtol=1e-4, atol=1e-5)
    for isa in HOST:
        for how in ("option", "env"):
            if how == "env":
                monkeypatch.setenv("ONNXC_ISA", isa)
                m = onnxc.load(d)
                monkeypatch.delenv("ONNXC_ISA")
            else:
                m = onnxc.load(d, isa=isa)
            assert m.isa == isa and m.manifest["isa"] == isa and m.manifest["options"]["target"] == isa
            assert f"isa={isa}" in repr(m)
            y = m.run(None, feed)[0]
            np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5, err_msg=f"{name}, {isa} build")
            if isa == "generic":
                np.testing.assert_array_equal(y, ref)  # the same C, the same compiler flags
    # the builds are distinct code: each ISA's module is its own file with its own weights packing;
    # avx2's and generic's packings agree (block 8, same GEMM panels): one file, hard-linked
    rep = top["report"]
    blocks = {i: rep["isas"][i]["nchwc_block"] for i in CARRIED}
    assert blocks == {"avx512": 16, "avx2": 8, "generic": 8}
    assert len({top["builds"][i]["cache_key"] for i in CARRIED}) == 3
    w = {i: d / i / "weights.bin" for i in CARRIED}
    assert rep["weights_shared"] == {"generic": "avx2"} and os.path.samefile(w["avx2"], w["generic"])
    assert w["avx512"].read_bytes() != w["avx2"].read_bytes()
    assert rep["bytes_stored"] == rep["bytes_total"] - rep["isas"]["generic"]["weights_bytes"]


def test_cpu_without_avx512_gets_the_avx2_build_and_forcing_avx512_is_refused(builds, monkeypatch):
    d, feed, ref, _ = builds["cnn"]
    monkeypatch.setattr(cpu, "host_flags", lambda: AVX2_CPU)  # an AVX2-only CPU (e.g. Zen 3)
    m = onnxc.load(d)
    assert m.isa == "avx2"
    np.testing.assert_allclose(m.run(None, feed)[0], ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(onnxc.ModelError, match=r"isa=avx512 was asked for, but this CPU lacks avx512f.*runs avx2, "
                                               r"generic"):
        onnxc.load(d, isa="avx512")
    monkeypatch.setenv("ONNXC_ISA", "avx512")
    with pytest.raises(onnxc.ModelError, match=r"\$ONNXC_ISA=avx512 was asked for, but this CPU lacks avx512f"):
        onnxc.load(d)
    # a CPU without AVX2 runs the generic build
    monkeypatch.delenv("ONNXC_ISA")
    monkeypatch.setattr(cpu, "host_flags", lambda: frozenset({"sse2"}))
    assert onnxc.load(d).isa == "generic"


def test_compile_with_a_forced_isa_the_cpu_lacks_returns_a_foreign_module(builds, monkeypatch):
    """Compiling succeeds; only loading the forced build here is refused (as for target=avx512 on an
    AVX2 host)."""
    model, _ = small_cnn()
    monkeypatch.setattr(cpu, "host_flags", lambda: AVX2_CPU)
    monkeypatch.setenv("ONNXC_ISA", "avx512")
    m = onnxc.compile(model, output_dir=builds["cnn"][0], target="x86-64")  # the existing build: from the cache
    assert m.from_cache and not m.runnable and "lacks avx512f" in m.reason
    with pytest.raises(onnxc.ModelError, match="lacks avx512f"):
        m.run(None, {"x": np.zeros((2, 3, 16, 16), np.float32)})


def test_isa_not_carried_is_refused(builds, monkeypatch):
    d = builds["cnn"][0]
    with pytest.raises(onnxc.ModelError, match=r"isa=amx was asked for, but this portable build \('x86-64'\) carries "
                                               r"only avx512, avx2, generic"):
        onnxc.load(d, isa="amx")
    monkeypatch.setenv("ONNXC_ISA", "neon")
    with pytest.raises(onnxc.ModelError, match=r"ONNXC_ISA=neon .* carries only"):
        onnxc.load(d)


def test_isa_option_on_a_single_build_is_refused(builds, tmp_path):
    generic = builds["cnn"][0].parent / "cnn-generic"
    assert onnxc.load(generic, isa="generic").isa == "generic"
    with pytest.raises(onnxc.ModelError, match="build for the one ISA 'generic'"):
        onnxc.load(generic, isa="avx2")


@pytest.mark.parametrize("isa", CARRIED)
def test_damaged_file_in_one_isa_build_is_detected(builds, tmp_path, isa):
    d = damaged_copy(builds["cnn"][0], tmp_path)
    b = json.loads((d / "manifest.json").read_text())["builds"][isa]
    so = next(n for n in b["files"] if n.endswith(".so"))
    data = bytearray((d / isa / so).read_bytes())
    data[len(data) // 2] ^= 0x40
    damage_file(d / isa / so, bytes(data))
    others = [i for i in HOST if i != isa]
    if isa in HOST:
        with pytest.raises(onnxc.ModelError, match=rf"{isa} build's file {so} has checksum .* \(damaged\)"):
            onnxc.load(d, isa=isa)
    for i in others:  # the other builds still load ("fast" reads only the chosen build)
        assert onnxc.load(d, isa=i).isa == i
    with pytest.raises(onnxc.ModelError, match=rf"{isa} build's file {so} has checksum"):
        onnxc.load(d, verify="full")  # "full" checks every ISA's build, whichever is loaded


def test_damaged_weights_and_edited_manifest_of_one_isa_build(builds, tmp_path):
    d = damaged_copy(builds["cnn"][0], tmp_path)
    w = d / "avx2" / "weights.bin"
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01  # a bit flip in the payload: the size is right, "full" finds it
    damage_file(w, bytes(data))
    with pytest.raises(onnxc.ModelError, match=r"avx2 build's file weights.bin has checksum"):
        onnxc.load(d, verify="full")
    with pytest.raises(onnxc.ModelError, match=r"checksum"):
        onnxc.load(d, isa="avx2", verify="full")
    damage_file(w, bytes(data[:-7]))  # truncated: found by size in "fast"
    with pytest.raises(onnxc.ModelError, match=r"avx2.*weights file weights.bin is \d+ bytes, the manifest records"):
        onnxc.load(d, isa="avx2")
    # a sub-build manifest edited (e.g. its output shape) no longer matches the top manifest's CRC-32
    d2 = damaged_copy(builds["cnn"][0], tmp_path / "2")
    man = json.loads((d2 / "generic" / "manifest.json").read_text())
    man["outputs"][0]["shape"] = [1]
    (d2 / "generic" / "manifest.json").write_text(json.dumps(man, indent=1))
    with pytest.raises(onnxc.ModelError, match=r"generic build's file manifest.json is \d+ bytes|generic build's file "
                                               r"manifest.json has checksum"):
        onnxc.load(d2, isa="generic")
    # a top manifest pointing a build outside its directory is refused
    d3 = damaged_copy(builds["cnn"][0], tmp_path / "3")
    top = json.loads((d3 / "manifest.json").read_text())
    top["builds"]["avx2"]["dir"] = "../avx2"
    (d3 / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(onnxc.ModelError, match=r"entry for ISA 'avx2' is malformed"):
        onnxc.load(d3)


WORKER = r"""
import pickle, sys
sys.modules["onnx"] = None  # a worker loads (and picks) a portable build without onnx
import numpy as np
m = pickle.loads(open(sys.argv[1], "rb").read())
np.save(sys.argv[3], m.run(None, dict(np.load(sys.argv[2])))[0])
print(m.isa, sorted(p.name for p in m.output_dir.iterdir() if p.is_dir()),
      (m.output_dir / "generic" / "weights.bin").stat().st_nlink)
"""


@pytest.mark.parametrize("isa", HOST)
def test_pickle_by_value_carries_every_isa_build(builds, tmp_path, isa):
    """A worker unpickles all three builds and loads the one it runs (here forced by its
    $ONNXC_ISA, as a worker on an AVX2 host would pick avx2)."""
    d, feed, ref, _ = builds["transformer"]
    m = onnxc.load(d)
    blob = pickle.dumps(m)
    rep = m.portable_manifest["report"]
    sizes = sum(r["bytes"] for i in CARRIED for r in m.portable_manifest["builds"][i]["files"].values())
    assert sizes == rep["bytes_total"]
    # every ISA's files travel, weights shared by two builds once
    assert rep["bytes_stored"] < len(blob) < rep["bytes_stored"] + 20000
    assert rep["weights_shared"] == {"generic": "avx2"}
    (tmp_path / "m.pkl").write_bytes(blob)
    np.savez(tmp_path / "feed.npz", **feed)
    env = {**os.environ, "ONNXC_PICKLE_DIR": str(tmp_path / "pickled"), "ONNXC_ISA": isa}
    r = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "m.pkl"), str(tmp_path / "feed.npz"),
                        str(tmp_path / "y.npy")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[0] == isa and "'avx2', 'avx512', 'generic'" in r.stdout
    assert r.stdout.split()[-1] == "2"  # the shared weights linked again on the worker
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, rtol=1e-4, atol=1e-5)


def test_pickle_by_path_and_refused_when_rebuilt(builds, tmp_path):
    d = damaged_copy(builds["cnn"][0], tmp_path)
    m = onnxc.load(d, isa=HOST[-1])
    m.pickle_by = "path"
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.portable_manifest["cache_key"] == m.portable_manifest["cache_key"] and m2.isa == HOST[0]
    blob = pickle.dumps(m)
    top = json.loads((d / "manifest.json").read_text())
    top["cache_key"] = "0" * 24  # as if recompiled since
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(onnxc.ModelError, match="another build"):
        pickle.loads(blob)


def test_cache_key_includes_the_target(tmp_path):
    from onnxc.driver import cache_key
    model, feed = small_cnn()
    opts = {"input_shapes": {}, "opt_level": "layout", "prefix": "model", "c_opt": "-O3", "openmp": False,
            "fallback": True, "winograd": 4}
    keys = {t: cache_key(model.SerializeToString(), {**opts, "target": t}) for t in ("x86-64", *CARRIED)}
    assert len(set(keys.values())) == len(keys)
    a = onnxc.compile(model, target="x86-64")  # into the compile cache
    b = onnxc.compile(model, target="x86-64")
    assert b.from_cache and a.output_dir == b.output_dir and a.portable_manifest is not None
    assert onnxc.compile(model, target="generic").output_dir != a.output_dir


def test_single_build_over_a_portable_one_removes_the_isa_builds(tmp_path):
    model, feed = small_cnn()
    onnxc.compile(model, output_dir=tmp_path / "o", target="x86-64")
    assert all((tmp_path / "o" / i / "manifest.json").exists() for i in CARRIED)
    m = onnxc.compile(model, output_dir=tmp_path / "o", target="generic")
    assert m.portable_manifest is None and not any((tmp_path / "o" / i).exists() for i in CARRIED)
    assert onnxc.load(tmp_path / "o").isa == "generic"


def test_emit_c_and_passes_refuse_the_portable_target(tmp_path, capsys):
    from onnxc.cli import main
    from onnxc.emit_c import emit_c, export_c
    model, _ = small_cnn()
    with pytest.raises(onnxc.UnsupportedError, match="portable target .* --target one of avx512, avx2, generic"):
        emit_c(model, tmp_path / "c", target="x86-64")
    with pytest.raises(ValueError, match="portable target"):
        onnxc.optimize(model, target="x86-64")
    import onnx
    onnx.save(model, str(tmp_path / "m.onnx"))
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "c"), "--emit", "c",
                 "--target", "x86-64"]) == 2
    assert "portable target" in capsys.readouterr().err
    d = tmp_path / "p"
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(d), "--target", "x86-64"]) == 0
    out = capsys.readouterr().out
    assert "portable target x86-64: 3 ISA builds" in out and f"this host loads {HOST[0]}" in out
    with pytest.raises(onnxc.UnsupportedError, match="carries one build per ISA"):
        export_c(d, tmp_path / "c2")
    assert main(["run", str(d), "--random", "--isa", HOST[-1]]) == 0
    assert f"running its {HOST[-1]} build" in capsys.readouterr().out


def test_inference_session_with_the_portable_target(builds):
    model, feed = small_transformer()
    sess = onnxc.InferenceSession(model.SerializeToString(), target="x86-64")
    (m,) = sess.compiled_models
    assert m.isa == HOST[0] and m.portable_manifest["portable"] == "x86-64"
    np.testing.assert_allclose(sess.run(None, feed)[0], builds["transformer"][2], rtol=1e-4, atol=1e-5)
