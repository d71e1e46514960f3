"""SGEMM: the microkernels, blocking and packed weights (runtime_c/gemm), the compile-time
packing of constant B (providers/c/linalg.py), and the load-time CPU check of ISA builds.

Kernel level: runtime_c/gemm (compiler/kernels/gemm_f32.SOURCES) is compiled once per float
ISA the host can run (generic always; avx2 and avx512 when present; the int8 rows run their
base's f32 kernels). Every microkernel of gemm_f32.KERNELS the build defines (the generic one
in every build) is called directly at its tile edges, and each driver entry point is compared
with a float64 numpy product. Model level: small Gemm/MatMul models are compiled with target
generic, native, avx2 and the host's best integer row (when the host has them) and compared
with onnxruntime.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

import onnxc
from onnxc.build import compile_flags
from onnxc.cpu import REQUIRED_FLAGS, host_isa, runnable_float_isas, runnable_isas
from onnxc.isa import BY_NAME
from onnxc.kernels import gemm_f32
from onnxc.providers.c.linalg import SGEMM_KC, SGEMM_TILE, pack_sgemm_b
from onnxc.resources import kernels_cdef

from helpers import kernel_library, make_model, ort_run

ISAS = runnable_float_isas()
TARGETS = (["generic", "native"] + (["avx2"] if "avx2" in ISAS else [])
           + [i for i in runnable_isas() if BY_NAME[i].base != i][-1:])  # e.g. amx: avx512's kernels


class Lib:
    def __init__(self, isa, ffi, lib):
        self.isa, self.ffi, self.lib = isa, ffi, lib

    def f(self, a):
        assert a.dtype == np.float32 and a.flags.c_contiguous
        return self.ffi.cast("float *", a.ctypes.data)


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    isa = request.param
    ffi, dl = kernel_library(tmp_path_factory, f"sgemm-{isa}", gemm_f32.SOURCES, compile_flags(isa),
                             extra_cdef=kernels_cdef("onnxc_isa.h"))
    out = Lib(isa, ffi, dl)
    out.lib.onnxc_sgemm  # noqa: B018 - resolves the symbol now
    return out


def aligned(n):
    """A float32 array of n elements at a 64-byte boundary (what the weights blob gives)."""
    buf = np.empty(n + 16, np.float32)
    s = (-buf.ctypes.data % 64) // 4
    return buf[s:s + n]


def run_gemm(k, rng, ta, tb, M, N, K, alpha=1.0, beta=0.0, pad=(0, 0, 0)):
    """onnxc_sgemm and onnxc_sgemm_packed (C-packed and Python-packed B) on the same operands,
    each checked against float64 numpy; A, B and C stored with padded rows."""
    pa, pb, pc = pad
    Abuf = rng.standard_normal((K if ta else M, (M if ta else K) + pa)).astype(np.float32)
    Bbuf = rng.standard_normal((N if tb else K, (K if tb else N) + pb)).astype(np.float32)
    A, B = Abuf[:, :Abuf.shape[1] - pa], Bbuf[:, :Bbuf.shape[1] - pb]
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    C0 = rng.standard_normal((M, N + pc)).astype(np.float32)
    if beta == 0.0:
        C0[:, :N] = np.nan  # never read
    want = alpha * (opA @ opB) + (beta * C0[:, :N].astype(np.float64) if beta else 0.0)
    scale = abs(alpha) * (np.abs(opA) @ np.abs(opB)) + (abs(beta) * np.abs(C0[:, :N]) if beta else 0.0)
    packed_c = aligned(k.lib.onnxc_sgemm_packed_floats(N, K))
    k.lib.onnxc_sgemm_pack_b(tb, N, K, k.f(Bbuf), Bbuf.shape[1], k.f(packed_c))
    packed_py = aligned(packed_c.size)
    packed_py[:] = pack_sgemm_b(opB.astype(np.float32), k.isa)
    np.testing.assert_array_equal(packed_py, packed_c, err_msg=f"{k.isa}: Python and C packing differ")
    calls = {
        "sgemm": lambda C: k.lib.onnxc_sgemm(ta, tb, M, N, K, alpha, k.f(Abuf), Abuf.shape[1], k.f(Bbuf),
                                             Bbuf.shape[1], beta, k.f(C), N + pc),
        "packed": lambda C: k.lib.onnxc_sgemm_packed(ta, M, N, K, alpha, k.f(Abuf), Abuf.shape[1],
                                                     k.f(packed_py), beta, k.f(C), N + pc),
    }
    for name, call in calls.items():
        C = C0.copy()
        call(C)
        what = f"[{k.isa} {name}] ta={ta} tb={tb} M={M} N={N} K={K} alpha={alpha} beta={beta} pad={pad}"
        err = np.abs(C[:, :N] - want)
        assert np.all(err <= 2e-6 * scale + 1e-6), f"{what}: max error {np.nanmax(err)}"
        np.testing.assert_array_equal(C[:, N:], C0[:, N:], err_msg=f"{what}: wrote past column N")


EDGE = [1, 2, 7, 13, 33, 64, 100, 257]


def test_tile_matches_target(lib):
    """The compiled microkernel is the one the compiler packs weights for."""
    assert (lib.lib.onnxc_sgemm_tile_m(), lib.lib.onnxc_sgemm_tile_n()) == SGEMM_TILE[lib.isa]
    assert gemm_f32.for_isa(lib.isa).isa == lib.isa


def test_microkernels_tile_edges(lib):
    """Each microkernel this build defines (its own and those of the rows it includes: the
    generic one everywhere), called directly (contract: runtime_c/gemm/f32_gemm.h) with mr and
    nr below, at and one under the tile (and half the columns, where the SIMD kernels skip their
    second vector), kc 1 / odd / a K block, A read row-major, column-major and as a packed
    k-major sliver, alpha and beta (0: C never read) against float64; nothing past the mr x nr
    corner is written."""
    rng = np.random.default_rng(60)
    kernels = [k for k in gemm_f32.KERNELS if k.built_for(lib.isa)]
    assert gemm_f32.for_isa(lib.isa) in kernels and gemm_f32.KERNELS[0] in kernels
    for k in kernels:
        fn = getattr(lib.lib, k.name)
        tm, tn = (int(v) for v in k.tile.split("x"))
        for kc in (1, 7, SGEMM_KC):
            for mr in sorted({1, 2, tm - 1, tm}):
                for nr in sorted({1, tn // 2, tn // 2 + 1, tn - 1, tn}):
                    bp = aligned(kc * tn)
                    bp[:] = 0.0
                    b = rng.standard_normal((kc, nr)).astype(np.float32)
                    bp.reshape(kc, tn)[:, :nr] = b
                    a = rng.standard_normal((mr, kc)).astype(np.float32)
                    lda = kc + 3
                    forms = {"rows": (np.zeros((mr, lda), np.float32), lda, 1),
                             "cols": (np.zeros((kc, mr + 5), np.float32), 1, mr + 5),
                             "sliver": (np.zeros((kc, tm), np.float32), 1, tm)}
                    forms["rows"][0][:, :kc] = a
                    forms["cols"][0][:, :mr] = a.T
                    forms["sliver"][0][:, :mr] = a.T
                    for form, (abuf, rsa, csa) in forms.items():
                        for alpha, beta in ((1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)):
                            c0 = rng.standard_normal((tm + 1, tn + 4)).astype(np.float32)
                            c = c0.copy()
                            if beta == 0.0:
                                c[:mr, :nr] = np.nan  # not read
                            fn(mr, nr, kc, lib.f(abuf), rsa, csa, lib.f(bp), lib.f(c), c.shape[1], alpha, beta)
                            want = alpha * (a.astype(np.float64) @ b) + beta * c0[:mr, :nr]
                            scale = abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(c0[:mr, :nr])
                            what = f"{k.name} in the {lib.isa} build: mr={mr} nr={nr} kc={kc} A {form} alpha={alpha} beta={beta}"
                            assert np.all(np.abs(c[:mr, :nr] - want) <= 2e-6 * scale + 1e-6), what
                            outside = np.ones(c.shape, bool)
                            outside[:mr, :nr] = False
                            np.testing.assert_array_equal(c[outside], c0[outside], err_msg=f"{what}: wrote outside")


def test_edge_sizes(lib):
    """Every M, N, K in EDGE: partial row and column tiles, narrow tiles, K blocks (257 = two)."""
    rng = np.random.default_rng(10)
    for M in EDGE:
        for N in EDGE:
            for K in EDGE:
                run_gemm(lib, rng, 0, 0, M, N, K)


@pytest.mark.parametrize("ta,tb", [(0, 1), (1, 0), (1, 1)])
def test_transposes(lib, ta, tb):
    rng = np.random.default_rng(20 + 2 * ta + tb)
    for M in (1, 2, 13, 33, 257):
        for N in (2, 7, 64, 100):
            for K in (1, 13, 257):
                run_gemm(lib, rng, ta, tb, M, N, K)


@pytest.mark.parametrize("ta,tb", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_alpha_beta_strides_blocks(lib, ta, tb):
    """alpha/beta, lda/ldb/ldc larger than the row, N past the column blocks (256/512), K past
    several K blocks, lda a multiple of 256 floats (A slivers copied: 512 and 256 with transA)."""
    rng = np.random.default_rng(30 + 2 * ta + tb)
    for (M, N, K), (alpha, beta), pad in [
            ((40, 600, 300), (1.0, 0.0), (0, 0, 0)), ((33, 1100, 70), (0.5, 1.0), (3, 5, 2)),
            ((100, 50, 800), (-1.5, 0.25), (1, 0, 7)), ((29, 520, 512), (2.0, 0.0), (0, 0, 0)),
            ((13, 64, 256), (1.0, -1.0), (0, 0, 16)), ((256, 40, 300), (1.0, 0.0), (0, 0, 0))]:
        run_gemm(lib, rng, ta, tb, M, N, K, alpha, beta, pad)


@pytest.mark.parametrize("ta,tb", [(0, 0), (1, 1)])
def test_gemv(lib, ta, tb):
    """M == 1 (packed: the GEMV over panels; unpacked: sgemv.c's) and N == 1 (sgemv.c)."""
    rng = np.random.default_rng(40 + ta)
    for M, N, K in [(1, 1, 1), (1, 7, 3000), (1, 1000, 37), (1, 130, 600), (1, 257, 257), (57, 1, 300)]:
        for alpha, beta, pad in [(1.0, 0.0, (0, 0, 0)), (0.75, -0.5, (2, 3, 1))]:
            run_gemm(lib, rng, ta, tb, M, N, K, alpha, beta, pad)


def test_threads_split(lib):
    """Products above the OpenMP threshold (split over rows, over panels, GEMV over panel
    groups) when the host has more than one core."""
    rng = np.random.default_rng(50)
    for M, N, K in [(300, 400, 200), (30, 2000, 100), (1, 4000, 600)]:
        run_gemm(lib, rng, 0, 0, M, N, K, 1.0, 0.5, (0, 0, 0))


def test_degenerate(lib):
    """Empty C is untouched; K == 0 gives beta * C (C never read when beta == 0); packing an
    empty B does nothing (it divided by zero once)."""
    for M, N, K in [(0, 5, 3), (5, 0, 3), (4, 5, 0), (1, 5, 0)]:
        for beta in (0.0, 0.5):
            A = np.ones((max(M, 1), max(K, 1)), np.float32)
            B = np.ones((max(K, 1), max(N, 1)), np.float32)
            P = aligned(max(1, lib.lib.onnxc_sgemm_packed_floats(N, K)))
            lib.lib.onnxc_sgemm_pack_b(0, N, K, lib.f(B), B.shape[1], lib.f(P))  # K = 0: no-op, no SIGFPE
            for packed in (0, 1):
                C = np.full((max(M, 1), max(N, 1)), np.nan if beta == 0.0 else 2.0, np.float32)
                C0 = C.copy()
                if packed:
                    lib.lib.onnxc_sgemm_packed(0, M, N, K, 1.0, lib.f(A), A.shape[1], lib.f(P), beta,
                                               lib.f(C), C.shape[1])
                else:
                    lib.lib.onnxc_sgemm(0, 0, M, N, K, 1.0, lib.f(A), A.shape[1], lib.f(B), B.shape[1],
                                        beta, lib.f(C), C.shape[1])
                if M == 0 or N == 0:
                    np.testing.assert_array_equal(C, C0)
                else:
                    np.testing.assert_array_equal(C, np.full(C.shape, 2.0 * beta, np.float32))


def test_pack_layout_python():
    """The documented layout, element by element, for each ISA (K = 600: blocks of 200)."""
    rng = np.random.default_rng(70)
    K, N = 600, 37
    B = rng.standard_normal((K, N)).astype(np.float32)
    for isa, (_, tn) in SGEMM_TILE.items():
        P = pack_sgemm_b(B, isa)
        npad = -(-N // tn) * tn
        assert P.size == K * npad
        assert SGEMM_KC == 256
        kb = 200  # 600 rows in 3 equal blocks of at most 256
        for k in range(K):
            pc = k // kb * kb
            for j in range(npad):
                got = P[pc * npad + (j // tn) * kb * tn + (k - pc) * tn + j % tn]
                assert got == (B[k, j] if j < N else 0.0), (isa, k, j)


# ---------------------------------------------------------------------------------------------
# Through compiled models, against onnxruntime
# ---------------------------------------------------------------------------------------------

def _linalg_model(rng):
    """Gemm and MatMul nodes side by side: constant B in every layout the emitters pack (transB,
    transA, alpha/beta with a bias, batched A, 1-D A = GEMV), and a non-constant B."""
    W0 = rng.standard_normal((100, 33)).astype(np.float32)     # Gemm transB: op(B) 33 x 100
    W1 = rng.standard_normal((13, 257)).astype(np.float32)     # Gemm transA, K = 13
    W2 = rng.standard_normal((33, 64)).astype(np.float32)      # MatMul, batched A
    W3 = rng.standard_normal((257, 7)).astype(np.float32)      # MatMul, 1-D A (M = 1)
    W4 = rng.standard_normal((64, 2)).astype(np.float32)       # Gemm, N = 2
    bias = rng.standard_normal((100,)).astype(np.float32)
    nodes = [
        helper.make_node("Gemm", ["x", "W0", "bias"], ["y0"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Gemm", ["xt", "W1"], ["y1"], transA=1),
        helper.make_node("MatMul", ["x3", "W2"], ["y2"]),
        helper.make_node("MatMul", ["v", "W3"], ["y3"]),
        helper.make_node("Gemm", ["x1", "W4"], ["y4"], alpha=-1.5),
        helper.make_node("MatMul", ["x", "b"], ["y5"]),
    ]
    inputs = [("x", np.float32, [7, 33]), ("xt", np.float32, [13, 2]), ("x3", np.float32, [2, 3, 33]),
              ("v", np.float32, [257]), ("x1", np.float32, [1, 64]), ("b", np.float32, [33, 13])]
    outputs = [("y0", np.float32, [7, 100]), ("y1", np.float32, [2, 257]), ("y2", np.float32, [2, 3, 64]),
               ("y3", np.float32, [7]), ("y4", np.float32, [1, 2]), ("y5", np.float32, [7, 13])]
    model = make_model(nodes, inputs, outputs, {"W0": W0, "W1": W1, "W2": W2, "W3": W3, "W4": W4,
                                                "bias": bias})
    feed = {n: rng.standard_normal(s).astype(np.float32) for n, _, s in inputs}
    return model, feed


@pytest.mark.parametrize("target", TARGETS)
def test_models_against_onnxruntime(target, tmp_path):
    rng = np.random.default_rng(80)
    model, feed = _linalg_model(rng)
    ref = ort_run(model, feed)
    m = onnxc.compile(model, output_dir=tmp_path / target, opt_level="none", target=target, fallback=False)
    for name, o, r in zip([o.name for o in m.get_outputs()], m.run(None, feed), ref):
        assert o.shape == r.shape
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-5, err_msg=f"{target}: {name}")
    src = (tmp_path / target / "model.c").read_text()
    # every constant B with N > 1 is packed (a Gemm with C adds beta*C in the SGEMM epilogue: _ep)
    assert src.count("onnxc_sgemm_packed(") + src.count("onnxc_sgemm_packed_ep(") == 5
    manifest = json.loads((tmp_path / target / "manifest.json").read_text())
    assert manifest["isa"] == (host_isa() if target == "native" else target)


# ---------------------------------------------------------------------------------------------
# Load-time CPU check
# ---------------------------------------------------------------------------------------------

def _tiny(tmp_path, target="generic"):
    rng = np.random.default_rng(90)
    W = rng.standard_normal((5, 6)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])], [("x", np.float32, [3, 5])],
                       [("y", np.float32, [3, 6])], {"W": W})
    out = tmp_path / f"tiny-{target}"
    onnxc.compile(model, output_dir=out, opt_level="none", target=target, fallback=False)
    return out


# the float rows and the host's top row (amx on Sapphire Rapids, whose features include the vnni
# rows'; avx512vnni on Zen 4): a row the host cannot run compiles the whole runtime once more for
# its flags (amx on an AMD host: 2.5 min of CI), and the flags are faked here anyway
@pytest.mark.parametrize("isa", sorted({"avx2", "avx512", runnable_isas()[-1]} - {"generic"}))
def test_load_refuses_missing_cpu_features(tmp_path, monkeypatch, isa):
    """A module built for an ISA the CPU lacks is refused before its code is imported (the
    manifest's ISA is what counts; the host's flags are faked). A manifest whose ISA was edited
    down is refused too, by the module's own record of it, before any kernel runs."""
    out = _tiny(tmp_path, isa)  # compiles on any x86 host; runs only where the CPU has the ISA
    import onnxc.cpu as cpu_mod
    monkeypatch.setattr(cpu_mod, "host_flags", lambda: frozenset({"sse2", "avx", "fma"}))
    with pytest.raises(onnxc.ModelError) as err:
        onnxc.CompiledModel(out)
    msg = str(err.value)
    assert f"ISA {isa}" in msg and "avx2" in msg and "f16c" in msg and "fma" not in msg.split("lacks")[1]
    # the same module on a CPU with every required flag loads (and runs, where this one has them)
    monkeypatch.setattr(cpu_mod, "host_flags", lambda: frozenset(REQUIRED_FLAGS[isa]))
    m = onnxc.CompiledModel(out)
    if isa in runnable_isas():
        assert m.run(None, {"x": np.ones((3, 5), np.float32)})[0].shape == (3, 6)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["isa"] = manifest["options"]["target"] = "generic"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(onnxc.ModelError, match="isa"):
        onnxc.CompiledModel(out)


def test_load_checks_native_builds(tmp_path, monkeypatch):
    """target="native" records the ISA it resolved to; that is checked like an explicit one."""
    out = _tiny(tmp_path, "native")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["isa"] == host_isa()
    if manifest["isa"] == "generic":
        pytest.skip("host has no AVX2: a native build needs nothing")
    import onnxc.cpu as cpu_mod
    monkeypatch.setattr(cpu_mod, "host_flags", lambda: frozenset({"sse2"}))
    with pytest.raises(onnxc.ModelError, match="target 'native'"):
        onnxc.CompiledModel(out)
