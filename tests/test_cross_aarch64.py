"""Portability: the generic target's standalone C (onnxc compile --emit c --target generic) cross-
compiles for aarch64 with Debian's gcc-aarch64-linux-gnu, runs under qemu-user and matches the
x86 module within 1e-5. Skipped without the cross compiler or qemu-aarch64 (.ci/run installs
both: `apt-get install gcc-aarch64-linux-gnu qemu-user`)."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model
from onnxc.emit_c import emit_c

CROSS_CC = os.environ.get("ONNXC_AARCH64_CC", "aarch64-linux-gnu-gcc")
QEMU = os.environ.get("ONNXC_QEMU_AARCH64", "qemu-aarch64")
MODELS_DIR = Path(os.environ.get("ONNXC_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))

pytestmark = [
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed"),
    pytest.mark.skipif(shutil.which(CROSS_CC) is None, reason=f"no {CROSS_CC} (apt-get install gcc-aarch64-linux-gnu)"),
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"no {QEMU} (apt-get install qemu-user)"),
]


def cnn():
    """NCHWc convolutions (3x3, depthwise, pointwise), pooling, Gemm: the blocked kernels."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "wd"], ["c2"], pads=[1, 1, 1, 1], group=16),
             helper.make_node("Conv", ["c2", "wp"], ["c3"]),
             helper.make_node("MaxPool", ["c3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    inits = {"w1": rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3,
             "b1": rng.standard_normal(16).astype(np.float32),
             "wd": rng.standard_normal((16, 1, 3, 3)).astype(np.float32) * 0.3,
             "wp": rng.standard_normal((24, 16, 1, 1)).astype(np.float32) * 0.3,
             "fw": rng.standard_normal((10, 24)).astype(np.float32), "fb": rng.standard_normal(10).astype(np.float32)}
    model = make_model(nodes, [("x", np.float32, [2, 3, 20, 20])], [("y", np.float32, [2, 10])], inits, name="cnn")
    return model, {"x": rng.standard_normal((2, 3, 20, 20)).astype(np.float32)}


def attention_block():
    """LayerNormalization, MatMul, Softmax, Erf-GELU and an int64 Gather: the transformer kernels."""
    rng = np.random.default_rng(1)
    d, t = 32, 8
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"]),
             helper.make_node("LayerNormalization", ["e", "ln_s", "ln_b"], ["n"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["n", "wq"], ["q"]), helper.make_node("MatMul", ["n", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["s"]), helper.make_node("Mul", ["s", "scale"], ["ss"]),
             helper.make_node("Softmax", ["ss"], ["a"], axis=-1), helper.make_node("MatMul", ["a", "n"], ["o"]),
             helper.make_node("Div", ["o", "sqrt2"], ["od"]), helper.make_node("Erf", ["od"], ["er"]),
             helper.make_node("Add", ["er", "one"], ["e1"]), helper.make_node("Mul", ["o", "e1"], ["g2"]),
             helper.make_node("Mul", ["g2", "half"], ["y"])]
    inits = {"emb": rng.standard_normal((50, d)).astype(np.float32), "ln_s": rng.standard_normal(d).astype(np.float32),
             "ln_b": rng.standard_normal(d).astype(np.float32),
             "wq": rng.standard_normal((d, d)).astype(np.float32) * 0.2,
             "wk": rng.standard_normal((d, d)).astype(np.float32) * 0.2,
             "scale": np.array(d ** -0.5, np.float32), "sqrt2": np.array(2 ** 0.5, np.float32),
             "one": np.array(1, np.float32), "half": np.array(0.5, np.float32)}
    model = make_model(nodes, [("ids", np.int64, [1, t])], [("y", np.float32, [1, t, d])], inits, name="attn")
    return model, {"ids": rng.integers(0, 50, (1, t)).astype(np.int64)}


def cross_run(model, feed, tmp_path, prefix="m", threads=True):
    """Emit the generic C, cross-build it statically for aarch64, run it under qemu; returns
    (aarch64 outputs, x86 module outputs)."""
    e = emit_c(model, tmp_path / "src", target="generic", prefix=prefix)
    build = tmp_path / "build"
    cfg = ["cmake", "-S", str(e.path), "-B", str(build), "-DCMAKE_SYSTEM_NAME=Linux",
           "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_C_COMPILER={CROSS_CC}",
           "-DCMAKE_EXE_LINKER_FLAGS=-static", f"-DONNXC_THREADS={'ON' if threads else 'OFF'}"]
    for cmd in (cfg, ["cmake", "--build", str(build), "-j", "2"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    exe = build / f"{prefix}_example"
    assert b"\xb7\x00" == exe.read_bytes()[18:20]  # ELF e_machine EM_AARCH64
    ins = []
    for name, a in feed.items():
        ins.append(str(tmp_path / f"in_{name}.bin"))
        np.ascontiguousarray(a).tofile(ins[-1])
    # the x86 module of the same build (emit_c compiled it into the cache)
    ref = onnxc.compile(model, target="generic", prefix=prefix, fallback=False).run(None, feed)
    outs = [str(tmp_path / f"out{i}.bin") for i in range(len(ref))]
    r = subprocess.run([QEMU, str(exe), str(e.path / "weights.bin"), *ins, *outs], capture_output=True, text=True,
                       env={**os.environ, "ONNXC_NUM_THREADS": "2"}, timeout=900)
    assert r.returncode == 0, r.stderr
    got = [np.fromfile(p, r_.dtype).reshape(r_.shape) for p, r_ in zip(outs, ref)]
    return got, ref


def test_every_runtime_source_compiles_for_aarch64():
    """The generic target includes no x86 header outside the ISA guards: every runtime source,
    not only those the test models reach, compiles for aarch64 warning-free."""
    from onnxc.resources import runtime_dir, runtime_sources
    bad = []
    for src in runtime_sources():
        r = subprocess.run([CROSS_CC, "-std=c99", "-fsyntax-only", "-Wall", "-Werror", "-Wno-unused-function",
                            "-I", str(runtime_dir() / "include"), str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            bad.append(f"{src.relative_to(runtime_dir())}: {r.stderr.strip()[:300]}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("make", [cnn, attention_block], ids=["cnn", "attention"])
def test_generic_c_runs_on_aarch64_like_on_x86(make, tmp_path):
    model, feed = make()
    got, ref = cross_run(model, feed, tmp_path)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_serial_build_on_aarch64(tmp_path):
    model, feed = cnn()
    got, ref = cross_run(model, feed, tmp_path, threads=False)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.models
@pytest.mark.parametrize("name", ["mobilenet_v2"])
def test_real_model_on_aarch64(name, tmp_path):
    import onnx
    path = MODELS_DIR / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not built: run `bash scripts/setup_models.sh .venv/bin/python`")
    data = np.load(MODELS_DIR / f"{name}.inputs.npz")
    feed = {k: data[k] for k in data.files}
    got, ref = cross_run(onnx.load(str(path)), feed, tmp_path)
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
