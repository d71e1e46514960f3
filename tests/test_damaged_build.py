"""A damaged or edited build never crashes the process (compiler/verify.py, compiler/install.py).

Each damage is loaded (and, where the code once trusted it, run or recompiled) in a subprocess:
before these checks a truncated .so died with SIGBUS in dlopen, flipped bytes with SIGSEGV, and a
manifest whose output shape was edited to [1] let the C write past a 4-byte buffer; here a crash
fails the test instead of killing pytest.  `onnxc.load` must raise ModelError naming what failed;
`onnxc.compile` of the same model into the damaged directory must rebuild it and say so.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import onnx
import pytest
from onnx import helper

import onnxc
from onnxc.providers.c import KERNELS
from helpers import damage_file, make_model

N = 24


def affine_model(seed, n=N):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
                       [("x", np.float32, [3, n])], [("y", np.float32, [3, n])], {"w": w, "b": b})
    return model, w, b


X = np.random.default_rng(100).standard_normal((3, N)).astype(np.float32)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A build of affine_model(0), its model file, and the expected output for X."""
    root = tmp_path_factory.mktemp("pristine")
    model, w, b = affine_model(0)
    onnx.save(model, str(root / "model.onnx"))
    onnxc.compile(model, output_dir=root / "build")
    np.save(root / "x.npy", X)
    return root, X @ w + b


@pytest.fixture
def build(pristine, tmp_path):
    """A fresh copy of the pristine build to damage; (dir, model path, expected output)."""
    root, expected = pristine
    d = tmp_path / "build"
    shutil.copytree(root / "build", d)
    return d, root / "model.onnx", expected


def module_file(d):
    return d / json.loads((d / "manifest.json").read_text())["module_file"]


def edit_manifest(d, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m, indent=1))


def python(code, env=None, timeout=600):
    """Run ``code`` in a fresh interpreter; a signal (crash) fails the test."""
    full_env = dict(os.environ)
    full_env.pop("ONNXC_VERIFY", None)
    full_env.update(env or {})
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                       env=full_env, timeout=timeout, cwd=os.path.dirname(__file__))
    assert r.returncode >= 0, f"the process crashed (signal {-r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


LOAD = """
    import numpy as np, onnxc
    try:
        m = onnxc.load(r"{d}"{verify})
    except onnxc.ModelError as e:
        print("MODELERROR", e)
    except FileNotFoundError as e:
        print("NOTFOUND", e)
    else:
        y = m.run(None, {{"x": np.load(r"{x}")}})[0]  # the old code crashed or over-read here
        print("LOADED", y.shape)
"""


def load_in_subprocess(d, verify=None, env=None):
    r = python(LOAD.format(d=d, x=_x_path(d), verify=f", verify={verify!r}" if verify else ""), env=env)
    return r.stdout.strip(), r.stderr


def _x_path(d):
    p = d.parent / "x.npy"
    if not p.exists():
        np.save(p, X)
    return p


COMPILE = """
    import numpy as np, onnxc
    m = onnxc.compile(r"{model}", output_dir={out})
    y = m.run(None, {{"x": np.load(r"{x}")}})[0]
    np.save(r"{y}", y)
    print("COMPILED", m.output_dir)
"""


def compile_in_subprocess(model_path, out, tmp_path, env=None):
    y = tmp_path / f"y-{uuid.uuid4().hex}.npy"
    r = python(COMPILE.format(model=model_path, out=f'r"{out}"' if out is not None else "None",
                              x=_x_path(tmp_path / "sub"), y=y), env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return np.load(y), r.stderr


def assert_refused(stdout, *words):
    assert stdout.startswith("MODELERROR"), stdout
    for w in words:
        assert w.lower() in stdout.lower(), (w, stdout)


# ---- the module (.so) ---------------------------------------------------------------------------

def truncate(p):
    damage_file(p, p.read_bytes()[: p.stat().st_size // 2])


def flip(p):
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + 4096):  # code and data in the middle of the file
        data[i] ^= 0xA5
    damage_file(p, bytes(data))


@pytest.mark.parametrize("damage, words", [(truncate, ["bytes", "truncated"]), (flip, ["checksum", "damaged"])],
                         ids=["truncated", "flipped"])
def test_damaged_module_is_refused_and_rebuilt(build, tmp_path, damage, words):
    d, model_path, expected = build
    so = module_file(d)
    damage(so)
    out, _ = load_in_subprocess(d)
    assert_refused(out, so.name, *words)
    y, log = compile_in_subprocess(model_path, d, tmp_path)  # a cache hit that fails verification rebuilds
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert "rebuilding" in log and so.name in log
    assert load_in_subprocess(d)[0].startswith("LOADED")


def test_damaged_cache_entry_is_rebuilt(tmp_path):
    """The same through the build cache (no output_dir): the entry is replaced."""
    model, w, b = affine_model(int(uuid.uuid4().int % 2**31))  # a cache entry of its own
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    m = onnxc.compile(model)
    d = m.output_dir
    truncate(module_file(d))
    y, log = compile_in_subprocess(path, None, tmp_path)
    np.testing.assert_allclose(y, X @ w + b, rtol=1e-5, atol=1e-5)
    assert "rebuilding" in log and "truncated" in log
    assert load_in_subprocess(d)[0].startswith("LOADED")


# ---- the manifest ------------------------------------------------------------------------------

def _set(path, value):
    def fn(m):
        obj = m
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return fn


EDITS = {
    # the C writes 3*24 floats: a 1-element output buffer was heap corruption
    "output shape": (_set(["outputs", 0, "shape"], [1]), ["output 0 'y'", "(4 bytes)", "(288 bytes)"]),
    # feeds are checked against the manifest: a smaller shape let the C read past the feed
    "input shape": (_set(["inputs", 0, "shape"], [1, N]), ["input 0 'x'", "(96 bytes)", "(288 bytes)"]),
    "input dtype": (_set(["inputs", 0, "dtype"], "int32"), ["input 0 'x'", "int32", "float32"]),
    "output dtype": (_set(["outputs", 0, "dtype"], "float64"), ["output 0 'y'", "float64", "(576 bytes)"]),
    "output python": (_set(["outputs", 0, "python"], True), ["output 0 'y'", "Python-side"]),
    "outputs removed": (_set(["outputs"], []), ["0 output(s)", "compiled for 1"]),
    "steps": (_set(["steps"], [["c", 0], ["c", 0]]), ["steps"]),
    "isa": (lambda m: m.update(isa="generic" if m["isa"] != "generic" else "avx2"), ["isa"]),
    "arena": (_set(["arena_bytes"], 1), ["arena_bytes"]),
    "weights digest": (_set(["weights_digest"], "00" * 16), ["weights_digest"]),
    "weights checksum": (_set(["weights_checksum"], "crc32:00000000"), ["weights_checksum"]),
    "module checksum": (_set(["module_checksum"], "crc32:00000000"), ["checksum crc32:", "crc32:00000000"]),
    "module bytes": (_set(["module_bytes"], 12), ["the manifest records 12"]),
    "old format": (_set(["format"], 1), ["manifest format 1", "recompile"]),
}


@pytest.mark.parametrize("what", list(EDITS))
def test_edited_manifest_is_refused(build, what):
    d, _, _ = build
    edit, words = EDITS[what]
    edit_manifest(d, edit)
    out, _ = load_in_subprocess(d)
    assert_refused(out, *words)


def test_unreadable_manifest_is_refused(build):
    d, _, _ = build
    text = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(text[: len(text) // 2])
    assert_refused(load_in_subprocess(d)[0], "not valid JSON")


def test_edited_profile_node_number_is_refused(build):
    """The manifest's node table indexes the module's C array of counters (not a bound field:
    only profile() reads it, and checks it)."""
    d, _, _ = build
    edit_manifest(d, lambda m: m["nodes"][0].__setitem__(0, 10 ** 9))
    r = python(f"""
        import numpy as np, onnxc
        m = onnxc.load(r"{d}")
        try:
            m.profile({{"x": np.zeros((3, {N}), np.float32)}}, repeat=1)
        except onnxc.ModelError as e:
            print("MODELERROR", e)
    """)
    assert_refused(r.stdout.strip(), "1000000000", "outside")


# ---- weights.bin --------------------------------------------------------------------------------

def test_weights_bit_flip(build, tmp_path):
    """The default check reads weights.bin's header only (size against the file, digest against
    the manifest: truncated, extended or swapped files), so a flipped payload byte loads and runs
    (wrong numbers, no crash); verify="full" (or ONNXC_VERIFY=full) checks the payload's CRC-32."""
    d, model_path, expected = build
    p = d / "weights.bin"
    data = bytearray(p.read_bytes())
    data[64 + 5] ^= 0x40  # in w[0, 1]: exponent bit
    damage_file(p, bytes(data))
    assert load_in_subprocess(d)[0].startswith("LOADED")
    assert_refused(load_in_subprocess(d, verify="full")[0], "checksum mismatch", "weights.bin")
    assert_refused(load_in_subprocess(d, env={"ONNXC_VERIFY": "full"})[0], "checksum mismatch")
    # a cache hit under ONNXC_VERIFY=full rebuilds
    y, log = compile_in_subprocess(model_path, d, tmp_path, env={"ONNXC_VERIFY": "full"})
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert "rebuilding" in log and "checksum mismatch" in log


def test_truncated_or_swapped_weights(build, pristine, tmp_path):
    d, _, _ = build
    p = d / "weights.bin"
    good = p.read_bytes()
    damage_file(p, good[:-4])
    assert_refused(load_in_subprocess(d)[0], "header says")
    other = tmp_path / "other"
    onnxc.compile(affine_model(1)[0], output_dir=other)  # same size, other weights
    damage_file(p, (other / "weights.bin").read_bytes())
    assert_refused(load_in_subprocess(d)[0], "another build")


# ---- deleted files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["module", "weights.bin", "manifest.json", "runtime_c"])
def test_deleted_file(build, tmp_path, name):
    d, model_path, expected = build
    p = module_file(d) if name == "module" else d / name
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    out, _ = load_in_subprocess(d)
    if name == "runtime_c":  # the C sources for embedding: loading does not need them
        assert out.startswith("LOADED")
        return
    if name == "manifest.json":
        assert out.startswith("NOTFOUND") and "holds no compiled onnxc module" in out
    else:
        assert_refused(out, p.name, "cannot be read")
    y, _ = compile_in_subprocess(model_path, d, tmp_path)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


# ---- fallback models ----------------------------------------------------------------------------

@pytest.fixture
def fallback_build(tmp_path, monkeypatch):
    """A build with a fallback partition (Sigmoid taken away from the C provider)."""
    monkeypatch.delitem(KERNELS, ("", "Sigmoid"))
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["r"], ["s"]),
                        helper.make_node("Neg", ["s"], ["y"])], [("x", np.float32, [3, N])], [("y", np.float32, [3, N])])
    m = onnxc.compile(model, output_dir=tmp_path / "build")
    assert m.manifest["fallback"]
    d = tmp_path / "build"
    return d, d / m.manifest["fallback"][0]["file"]


def test_edited_fallback_model_is_refused(fallback_build):
    d, fb = fallback_build
    assert load_in_subprocess(d)[0].startswith("LOADED")
    sub = onnx.load(str(fb))
    sub.graph.node[0].op_type = "Tanh"  # a valid model that computes something else
    onnx.save(sub, str(fb))
    assert_refused(load_in_subprocess(d)[0], "fallback model", fb.name, "checksum")
    fb.unlink()
    assert_refused(load_in_subprocess(d)[0], "fallback model", fb.name, "cannot be read")


# ---- concurrent compiles ------------------------------------------------------------------------

CONCURRENT = """
    import numpy as np, onnxc
    m = onnxc.compile(r"{model}", output_dir={out})
    x = np.load(r"{x}")
    w, b = np.load(r"{w}"), np.load(r"{b}")
    np.testing.assert_allclose(m.run(None, {{"x": x}})[0], x @ w + b, rtol=1e-5, atol=1e-5)
    print("OK")
"""


def _concurrent(tmp_path, seeds, out, procs_per_model):
    codes = []
    for s in seeds:
        model, w, b = affine_model(s)
        onnx.save(model, str(tmp_path / f"m{s}.onnx"))
        np.save(tmp_path / f"w{s}.npy", w)
        np.save(tmp_path / f"b{s}.npy", b)
        codes.append(CONCURRENT.format(model=tmp_path / f"m{s}.onnx", out=f'r"{out}"' if out else "None",
                                       x=_x_path(tmp_path / "sub"), w=tmp_path / f"w{s}.npy",
                                       b=tmp_path / f"b{s}.npy"))
    full_env = dict(os.environ)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(c)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=full_env, cwd=os.path.dirname(__file__))
             for _ in range(procs_per_model) for c in codes]
    results = [(p.wait(timeout=900), p.stdout.read(), p.stderr.read()) for p in procs]
    failed = [(rc, err[-3000:]) for rc, out_, err in results if rc != 0 or "OK" not in out_]
    assert not failed, f"{len(failed)} of {len(results)} processes failed; first: {failed[0]}"


def test_concurrent_compiles_into_one_directory(tmp_path):
    """Ten processes compile one model into one output_dir at once: all succeed and the result loads
    (before: shutil.Error from the runtime_c copy racing, 8 of 10 failed in one probe)."""
    out = tmp_path / "shared"
    _concurrent(tmp_path, [11], out, 10)
    m = onnxc.load(out)
    w, b = np.load(tmp_path / "w11.npy"), np.load(tmp_path / "b11.npy")
    np.testing.assert_allclose(m.run(None, {"x": X})[0], X @ w + b, rtol=1e-5, atol=1e-5)
    assert not list(out.glob(".onnxc-build-*"))  # no temporary directory left behind


def test_concurrent_compiles_of_different_models_into_one_directory(tmp_path):
    """Two models, three processes each, one output_dir: each process runs the model it compiled;
    the directory ends up holding one of them, whole."""
    out = tmp_path / "shared"
    _concurrent(tmp_path, [21, 22], out, 3)
    m = onnxc.load(out)
    y = m.run(None, {"x": X})[0]
    matches = [np.allclose(y, X @ np.load(tmp_path / f"w{s}.npy") + np.load(tmp_path / f"b{s}.npy"), rtol=1e-5,
                           atol=1e-5) for s in (21, 22)]
    assert sum(matches) == 1
    assert len(list(out.glob("_onnxc_*"))) == 1


def test_concurrent_compiles_into_the_cache(tmp_path):
    seed = int(uuid.uuid4().int % 2**31)  # a fresh cache entry
    _concurrent(tmp_path, [seed], None, 6)


def test_existing_files_in_output_dir_are_kept(tmp_path):
    """An explicit output_dir is installed into file by file: the user's own files stay."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    onnxc.compile(affine_model(3)[0], output_dir=out)
    onnxc.compile(affine_model(4)[0], output_dir=out)  # another model over it
    assert (out / "notes.txt").read_text() == "mine"
    assert len(list(out.glob("_onnxc_*"))) == 1 and not list(out.glob(".onnxc-build-*"))


# ---- what the module says about itself; byte order of feeds -------------------------------------

def test_module_describes_its_inputs_and_outputs(pristine):
    root, _ = pristine
    m = onnxc.load(root / "build")
    lib, ffi = m._lib, m._ffi
    assert (lib.model_num_inputs(), lib.model_num_outputs()) == (1, 1)
    assert lib.model_input_bytes(0) == lib.model_output_bytes(0) == 3 * N * 4
    assert ffi.string(lib.model_input_dtype(0)) == ffi.string(lib.model_output_dtype(0)) == b"float32"
    assert lib.model_input_bytes(1) == 0 and ffi.string(lib.model_output_dtype(-1)) == b""
    assert "#define MODEL_INPUT0_BYTES 288" in (root / "build" / "model.h").read_text()


def test_byte_swapped_feeds_are_converted(pristine):
    root, expected = pristine
    m = onnxc.load(root / "build")
    swapped = X.astype(X.dtype.newbyteorder())  # '>f4' on little-endian hosts
    assert swapped.dtype != np.float32
    np.testing.assert_array_equal(m.run(None, {"x": swapped})[0], m.run(None, {"x": X})[0])
    other = X.astype(np.float64).astype(np.dtype(np.float64).newbyteorder())
    with pytest.raises(onnxc.InputError, match="expected dtype float32, got float64 \\((big|little)-endian\\)"):
        m.run(None, {"x": other})
