"""int8 GEMM family (runtime_c/qgemm, compiler/kernels/qgemm.py): every kernel the host can run,
built with its ISA row's compiler flags, against an int64 numpy reference (int32 results
bit-exact, wrap-around included), the requantize and float output stages against numpy float32
references of the same formula, the Python and C packers byte for byte, 1 vs 2 threads, the AMX
permission and its fallback, onnxruntime's MatMulInteger and QLinearMatMul, and a compile-only
pass of every kernel file under every ISA row's flags (kernels for ISAs the host lacks included).
"""
from __future__ import annotations

import subprocess
import zlib

import numpy as np
import pytest
from onnx import helper

from onnxc import isa as isa_table
from onnxc.kernels import qgemm as Q
from onnxc.resources import runtime_dir

from helpers import make_model, ort_run
from int8_lib import (F32, S8, S32, U8, Int8Lib, build_int8_lib, compiles_under_row, rand_zp, ref_requant,
                      wrap32)

HOST = Q.host_isas()


def kernels_of(row: str):
    """Kernels a test of ISA row `row` exercises: the row's own and what kernel_for gives it."""
    names = {k.name for k in Q.QGEMM if k.isa == row}
    names |= {Q.kernel_for(row, dt).name for dt in ("uint8", "int8")}
    if row in ("avx2", "avx512"):
        names |= {k.name for k in Q.QGEMM if k.kind == "gemmps"}
    return [Q.BY_NAME[n] for n in sorted(names)]


class QLib(Int8Lib):
    """The GEMM family's library for one ISA row, with numpy-facing calls."""

    def pack_c(self, k, b, zb=None, trans=False):
        """onnxc_qgemm_pack_b of B [K, N] (stored transposed when trans)."""
        K, N = b.shape
        stored = np.ascontiguousarray(b.T if trans else b)
        zbs = None if zb is None else np.ascontiguousarray(np.asarray(zb, np.int32).reshape(-1))
        nbytes = self.lib.onnxc_qgemm_packed_bytes(self.info(k), K, N, self.ptr(stored), stored.shape[1],
                                                   int(trans), int(b.dtype == np.int8))
        out = np.full(nbytes, 0xA5, np.uint8)  # the packer must write every byte
        self.lib.onnxc_qgemm_pack_b(self.info(k), K, N, self.ptr(stored), stored.shape[1], int(trans),
                                    int(b.dtype == np.int8), self.ptr(zbs, "int32_t *"),
                                    int(zbs is not None and zbs.size > 1), self.ptr(out))
        return out

    def gemm(self, k, A, za, packed, N, bias=None, out=S32, scale=None, zp=0, qmin=None, qmax=None,
             fbias=None, lda=None):
        """C = out(A * B); A [M, K] (or a wider array sliced to K columns with lda)."""
        M = A.shape[0]
        K = A.shape[1] if lda is None else lda[1]
        ld = A.shape[1]
        C, o, keep = self.output((M, N), out, scale, zp, qmin, qmax, fbias)
        bias_arr = None if bias is None else np.ascontiguousarray(bias, np.int32)
        rc = self.lib.onnxc_qgemm(self.info(k), M, N, K, self.ptr(A), ld, int(za), self.ptr(packed),
                                  self.ptr(bias_arr, "int32_t *"), o)
        assert rc == 0, f"{k.name}: onnxc_qgemm returned {rc}"
        return C


@pytest.fixture(scope="module", params=HOST)
def qlib(request, tmp_path_factory):
    q = build_int8_lib(QLib, request.param, tmp_path_factory, "qgemm", Q.sources(), ["onnxc_qgemm.h"])
    yield q
    q.lib.onnxc_qgemm_set_amx(1)
    q.lib.onnxc_rt_set_num_threads(0)


# ---------------------------------------------------------------------------------------------
# references and data
# ---------------------------------------------------------------------------------------------

def ref_acc(A, za, B, zb, bias=None):
    zb = np.zeros(B.shape[1], np.int64) if zb is None else np.broadcast_to(np.asarray(zb, np.int64).reshape(-1), (B.shape[1],))
    acc = (A.astype(np.int64) - int(za)) @ (B.astype(np.int64) - zb[None, :])
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)[None, :]
    return wrap32(acc)


def rand_a(rng, k, shape):
    return rng.integers(-128, 128, shape).astype(np.int8) if k.a_signed else rng.integers(0, 256, shape).astype(np.uint8)


def rand_b(rng, dtype, shape):
    return rng.integers(-128, 128, shape).astype(np.int8) if dtype == np.int8 else rng.integers(0, 256, shape).astype(np.uint8)


def check_int32(q, k, A, za, B, zb, bias=None, what=""):
    """Python-packed and C-packed B give identical bytes and the exact int32 result."""
    packed = Q.pack_b(B, k, zb)
    np.testing.assert_array_equal(packed, q.pack_c(k, B, zb), err_msg=f"{k.name}: packers differ {what}")
    got = q.gemm(k, A, za, packed, B.shape[1], bias)
    want = ref_acc(A, za, B, zb, bias)
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        raise AssertionError(f"[{q.row}] {k.name} {what}: {len(bad)} wrong, first {bad[:3].tolist()}: "
                             f"{got[tuple(bad[0])]} != {want[tuple(bad[0])]}")


# ---------------------------------------------------------------------------------------------
# the family list and the header
# ---------------------------------------------------------------------------------------------

def test_header_declarations_current():
    """The declarations in onnxc_qgemm.h are c_declarations() of the family list."""
    text = (runtime_dir() / "include" / "onnxc_qgemm.h").read_text()
    block = text.split("/* BEGIN GENERATED", 1)[1].split("\n", 1)[1].split("/* END GENERATED */", 1)[0]
    assert block.strip() == Q.c_declarations().strip(), "run: python -m onnxc.kernels.qgemm"


def test_kernel_for_rows():
    for row in isa_table.ISAS:
        for dt in ("uint8", "int8"):
            k = Q.kernel_for(row, dt)
            assert k.kind == "gemm" and Q.can_run(k.isa, row.name) and k.a_dtype == np.dtype(dt)
    assert Q.kernel_for("amx").isa == "amx" and Q.kernel_for("avx512").isa == "avx2"
    assert Q.kernel_for("generic", "int8").name == "onnxc_s8s8_gemm_4x16__generic"
    seven_bit = np.random.default_rng(0).integers(-64, 64, (64, 32)).astype(np.int8)
    assert Q.kernel_for("avx2", "uint8", seven_bit).kind == "gemmps"
    assert Q.kernel_for("avx2", "uint8", np.full((64, 32), -128, np.int8)).kind == "gemm"
    assert Q.kernel_for("avx512vnni", "uint8", seven_bit).kind == "gemm"


def test_descriptors_match_family(qlib):
    for k in Q.QGEMM:
        if not Q.can_run(k.isa, qlib.row):
            continue
        d = qlib.info(k)
        assert qlib.ffi.string(d.name).decode() == k.name
        assert (d.mr, d.nr, bool(d.a_signed), bool(d.a_xor), d.pack_flags, bool(d.amx)) == \
            (k.mr, k.nr, k.a_signed, k.a_xor, k.pack_flags, k.isa == "amx"), k.name
        assert d.kc % 64 == 0 and d.kc > 0
        if k.fallback:
            assert qlib.ffi.string(d.fallback.name).decode() == k.fallback


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", sorted({k.pack_flags for k in Q.QGEMM}))
def test_packers_identical(qlib, flags):
    """Python (compile time) and C (run time) packing: same bytes, for B int8/uint8, row-major or
    transposed, zero point none/per tensor/per column, edges of K and N (the C packer reads only
    the descriptor's pack_flags, so every layout is checked in every build)."""
    k = next(k for k in Q.QGEMM if k.pack_flags == flags)
    rng = np.random.default_rng(flags)
    for K, N in [(1, 1), (3, 17), (4, 16), (63, 15), (64, 33), (65, 32), (130, 47), (257, 5)]:
        for bdt in (np.int8, np.uint8):
            B = rand_b(rng, bdt, (K, N))
            for zb in (None, rand_zp(rng, bdt), rand_zp(rng, bdt, N)):
                py = Q.pack_b(B, k, zb)
                for trans in (False, True):
                    np.testing.assert_array_equal(py, qlib.pack_c(k, B, zb, trans),
                                                  err_msg=f"{k.name} K={K} N={N} {bdt.__name__} zb={zb} T={trans}")


def test_pairsafe_packing_extremes():
    """Adversarial B for the pair-safe layout: every pair beyond the bound is corrected, the
    stored pairs respect |b0| + |b1| <= 128, and stored + corrections == B."""
    import struct
    k = Q.BY_NAME["onnxc_u8s8_gemmps_6x16__avx2"]
    for fill in (-128, 127, None):
        B = np.full((67, 19), fill, np.int8) if fill is not None else \
            np.where(np.arange(67)[:, None] % 2, 127, -128).astype(np.int8).repeat(19, 1)
        blob = Q.pack_b(B, k)
        hdr = struct.unpack_from(Q.HEADER_FMT, blob)
        K, N, Kp, Np, ncorr, panels, corr = hdr[2], hdr[3], hdr[4], hdr[5], hdr[6], hdr[9], hdr[10]
        P = blob[panels:corr].reshape(Np // 16, Kp // 4, 16, 4).transpose(1, 3, 0, 2).reshape(Kp, Np)[:K, :N]
        vals = P.view(np.int8).astype(np.int64)
        pairs = K // 2
        assert np.all(np.abs(vals[0:2 * pairs:2]) + np.abs(vals[1:2 * pairs:2]) <= 128)
        ent = blob[corr + 4 * (Np // 16 + 1):corr + 4 * (Np // 16 + 1) + 12 * ncorr].view(np.int32).reshape(-1, 3)
        rebuilt = vals.copy()
        for kk, n, e in ent:
            rebuilt[kk, n] += e
        np.testing.assert_array_equal(rebuilt, B.astype(np.int64))
        assert ncorr == Q.pair_corrections(B)


# ---------------------------------------------------------------------------------------------
# int32 results at tile edges
# ---------------------------------------------------------------------------------------------

def edge_sizes(k):
    Ms = sorted({1, 2, k.mr - 1, k.mr, k.mr + 1, 2 * k.mr + 3, 97} - {0})
    Ns = sorted({1, 15, 16, 17, k.nr - 1, k.nr, k.nr + 1, 2 * k.nr + 5, 257} - {0})
    Ks = [1, 3, 4, 5, 24, 27, 63, 64, 65, 130, 513, 1100]  # 24, 27: the AVX2 kernel's 16 + 8 (+ 3) widening
    return Ms, Ns, Ks


def test_edges_int32(qlib):
    """M, N, K around the tile, the panel, the 96 x 256 block and the K block; full-range random
    data; A zero point random, B zero point none / per tensor / per column; bias; B int8 and
    uint8. Python-packed and C-packed B agree; results are the int64 reference wrapped to int32."""
    for k in kernels_of(qlib.row):
        rng = np.random.default_rng(zlib.crc32(k.name.encode()))
        Ms, Ns, Ks = edge_sizes(k)
        cases = [(M, N, K) for M in Ms for N in Ns for K in (5, 67)]
        cases += [(M, N, K) for M in (1, k.mr, 97) for N in (k.nr + 1, 33) for K in Ks]
        for i, (M, N, K) in enumerate(cases):
            bdt = (np.int8, np.uint8)[i % 2]
            A = rand_a(rng, k, (M, K))
            B = rand_b(rng, bdt, (K, N))
            zb = (None, rand_zp(rng, bdt), rand_zp(rng, bdt, N))[i % 3]
            bias = rng.integers(-2 ** 20, 2 ** 20, N) if i % 4 == 0 else None
            check_int32(qlib, k, A, rand_zp(rng, A.dtype), B, zb, bias, f"M={M} N={N} K={K} B {bdt.__name__} zb={zb}")


def test_extremes_int32(qlib):
    """All-extreme operands (the int16 saturation of vpmaddubsw, int32 wrap-around at large K),
    zero points at both ends of their ranges."""
    for k in kernels_of(qlib.row):
        amin, amax = (-128, 127) if k.a_signed else (0, 255)
        for bdt, (bmin, bmax) in ((np.int8, (-128, 127)), (np.uint8, (0, 255))):
            for av in (amin, amax):
                for bv in (bmin, bmax):
                    for za, zb in ((0, None), (amin, bmax), (amax, bmin)):
                        A = np.full((k.mr + 1, 1029), av, k.a_dtype)
                        B = np.full((1029, k.nr + 3), bv, bdt)
                        check_int32(qlib, k, A, za, B, zb, None, f"A={av} B={bv} za={za} zb={zb}")
            # alternating columns/rows of extremes, per-column zero points at the extremes
            A = np.where(np.arange(2 * 515)[None, :] % 3 == 0, amin, amax).astype(k.a_dtype).repeat(7, 0)
            B = np.where((np.arange(2 * 515)[:, None] + np.arange(21)[None, :]) % 2, bmin, bmax).astype(bdt)
            zb = np.where(np.arange(21) % 2, bmin, bmax)
            check_int32(qlib, k, A, amax, B, zb, None, "alternating extremes")
        # int32 wrap-around: |sum| > 2^31 (onnxruntime accumulates in int32 too)
        K = 33000
        A = np.full((3, K), amin, k.a_dtype)
        B = np.full((K, 5), 127, np.int8)
        check_int32(qlib, k, A, amax, B, -128, None, "int32 wrap-around")


def test_strided_a_and_k0(qlib):
    """A with a row stride wider than K (a view into a bigger buffer), and K = 0 (the output is the
    bias alone)."""
    for k in kernels_of(qlib.row):
        rng = np.random.default_rng(3)
        M, N, K = 37, 45, 131
        big = rand_a(rng, k, (M, K + 29))
        B = rand_b(rng, np.int8, (K, N))
        zb = rand_zp(rng, np.int8, N)
        za = rand_zp(rng, big.dtype)
        got = qlib.gemm(k, big, za, Q.pack_b(B, k, zb), N, lda=(K + 29, K))
        np.testing.assert_array_equal(got, ref_acc(big[:, :K], za, B, zb))
        bias = rng.integers(-1000, 1000, N)
        got = qlib.gemm(k, np.zeros((4, 0), k.a_dtype), za, Q.pack_b(np.zeros((0, N), np.int8), k), N, bias)
        np.testing.assert_array_equal(got, np.broadcast_to(bias.astype(np.int32), (4, N)))


# ---------------------------------------------------------------------------------------------
# output stages
# ---------------------------------------------------------------------------------------------

def test_requantize(qlib):
    """uint8 / int8 outputs: bit-exact with the numpy reference of MlasRequantizeOutput's
    formula; scale per tensor and per column; ties (scale 0.5, 0.25: x.5 exactly) rounded half to
    even; a fused Relu / Clip as a narrowed output range."""
    for k in kernels_of(qlib.row):
        rng = np.random.default_rng(7)
        M, N, K = 53, 77, 300
        A = rand_a(rng, k, (M, K))
        B = rand_b(rng, np.int8, (K, N))
        za, zb = rand_zp(rng, A.dtype), rand_zp(rng, np.int8, N)
        bias = rng.integers(-5000, 5000, N)
        packed = Q.pack_b(B, k, zb)
        acc = ref_acc(A, za, B, zb, bias)
        for out, dt, (lo, hi) in ((U8, np.uint8, (0, 255)), (S8, np.int8, (-128, 127))):
            for scale in (np.float32(0.5), np.float32(0.25), np.float32(1.7e-4),
                          (rng.random(N) * 3e-4).astype(np.float32)):
                for zp, qmin, qmax in ((int(rng.integers(lo, hi)), lo, hi), (lo + 10, lo + 10, hi),
                                       (lo + 3, lo + 20, hi - 30)):
                    got = qlib.gemm(k, A, za, packed, N, bias, out=out, scale=scale, zp=zp, qmin=qmin, qmax=qmax)
                    want = ref_requant(acc, scale, zp, qmin, qmax, dt)
                    np.testing.assert_array_equal(got, want, err_msg=f"{k.name} out={dt.__name__} scale={scale} zp={zp}")
        # the ties are really there
        assert np.any(acc % 2 == 1)


def test_float_output(qlib):
    """float32 output (MatMulIntegerToFloat): float32(acc) * scale[n] + bias[n], multiply then add."""
    for k in kernels_of(qlib.row):
        rng = np.random.default_rng(11)
        M, N, K = 29, 70, 513
        A = rand_a(rng, k, (M, K))
        B = rand_b(rng, np.uint8, (K, N))
        za, zb = rand_zp(rng, A.dtype), rand_zp(rng, np.uint8)
        packed = Q.pack_b(B, k, zb)
        acc = ref_acc(A, za, B, zb)
        for scale in (np.float32(0.013), (rng.random(N) * 0.01).astype(np.float32)):
            for fb in (None, rng.standard_normal(N).astype(np.float32)):
                got = qlib.gemm(k, A, za, packed, N, out=F32, scale=scale, fbias=fb)
                want = acc.astype(np.float32) * np.asarray(scale, np.float32).reshape(1, -1)
                if fb is not None:
                    want = want + fb[None, :]
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=k.name)


def test_output_hook(qlib):
    """The hook sees every output element once, after the built-in stage (here: uint8)."""
    k = Q.kernel_for(qlib.row if qlib.row != "avx512" else "avx2", "uint8")
    ffi, lib = qlib.ffi, qlib.lib
    rng = np.random.default_rng(4)
    M, N, K = 101, 83, 70
    A = rand_a(rng, k, (M, K))
    B = rand_b(rng, np.int8, (K, N))
    seen = np.zeros((M, N), np.int32)
    copies = np.zeros((M, N), np.uint8)

    @ffi.callback("void(const void *, void *, int64_t, int64_t, int64_t, int64_t, int64_t)")
    def hook(arg, c, ldc, i0, m, j0, n):
        block = np.frombuffer(ffi.buffer(c, int((m - 1) * ldc + n)), np.uint8)
        for i in range(m):
            copies[i0 + i, j0:j0 + n] = block[i * ldc:i * ldc + n]
        seen[i0:i0 + m, j0:j0 + n] += 1

    sc = np.array([2e-3], np.float32)
    C, o, keep = qlib.output((M, N), U8, sc, 9, 0, 255)
    o.hook = hook
    lib.onnxc_rt_set_num_threads(1)
    try:
        assert lib.onnxc_qgemm(qlib.info(k), M, N, K, qlib.ptr(A), K, 0, qlib.ptr(Q.pack_b(B, k)), ffi.NULL, o) == 0
    finally:
        lib.onnxc_rt_set_num_threads(0)
    np.testing.assert_array_equal(seen, 1)
    np.testing.assert_array_equal(copies, C)
    np.testing.assert_array_equal(C, ref_requant(ref_acc(A, 0, B, None), sc, 9, 0, 255, np.uint8))


def test_bad_pack_refused(qlib):
    """A packed B for another layout or another K/N is refused, not misread."""
    for k in kernels_of(qlib.row):
        B = np.ones((40, 20), np.int8)
        other = next(o for o in Q.QGEMM if o.pack_flags != k.pack_flags)
        C, o, keep = qlib.output((4, 20), S32)
        A = np.ones((4, 40), k.a_dtype)
        for packed, K, N in ((Q.pack_b(B, other), 40, 20), (Q.pack_b(B, k), 41, 20), (Q.pack_b(B, k), 40, 21),
                             (np.zeros(256, np.uint8), 40, 20)):
            assert qlib.lib.onnxc_qgemm(qlib.info(k), 4, N, K, qlib.ptr(A), 40, 0, qlib.ptr(packed),
                                        qlib.ffi.NULL, o) == 1


# ---------------------------------------------------------------------------------------------
# threads, AMX
# ---------------------------------------------------------------------------------------------

def test_threads_bit_identical(qlib):
    """1 and 2 threads: the same bytes (int32 and requantized), GEMV included."""
    lib = qlib.lib
    for k in kernels_of(qlib.row):
        rng = np.random.default_rng(5)
        for M, N, K in ((301, 203, 517), (1, 1000, 3000)):
            A = rand_a(rng, k, (M, K))
            B = rand_b(rng, np.int8, (K, N))
            zb = rand_zp(rng, np.int8, N)
            packed = Q.pack_b(B, k, zb)
            res = []
            for t in (1, 2):
                lib.onnxc_rt_set_num_threads(t)
                res.append((qlib.gemm(k, A, 3, packed, N), qlib.gemm(k, A, 3, packed, N, out=U8, scale=np.float32(1e-3), zp=7)))
            lib.onnxc_rt_set_num_threads(0)
            np.testing.assert_array_equal(res[0][0], res[1][0])
            np.testing.assert_array_equal(res[0][1], res[1][1])
            np.testing.assert_array_equal(res[0][0], ref_acc(A, 3, B, zb))


@pytest.mark.skipif("amx" not in HOST, reason="host lacks AMX-INT8")
def test_amx_permission_and_fallback(qlib):
    """The AMX kernels run tiles when Linux grants the permission, their AVX512-VNNI fallback when
    it is withheld (onnxc_qgemm_set_amx(0), as after a refusal) and for M < 8; both exact."""
    if qlib.row != "amx":
        pytest.skip("AMX kernels are only in the amx build")
    lib, ffi = qlib.lib, qlib.ffi
    assert lib.onnxc_qgemm_amx_ready() == 1, "this host has AMX: the OS should grant the tiles"
    rng = np.random.default_rng(9)
    for k in (Q.BY_NAME["onnxc_u8s8_gemm_32x32__amx"], Q.BY_NAME["onnxc_s8s8_gemm_32x32__amx"]):
        info = qlib.info(k)
        A = rand_a(rng, k, (70, 300))
        B = rand_b(rng, np.int8, (300, 50))
        want = ref_acc(A, 5, B, 3)
        packed = Q.pack_b(B, k, 3)
        try:
            for allow in (1, 0):
                lib.onnxc_qgemm_set_amx(allow)
                used = ffi.string(lib.onnxc_qgemm_resolve(info, 70).name).decode()
                assert used == (k.name if allow else k.fallback)
                assert ffi.string(lib.onnxc_qgemm_resolve(info, 7).name).decode() == k.fallback
                np.testing.assert_array_equal(qlib.gemm(k, A, 5, packed, 50), want)
        finally:
            lib.onnxc_qgemm_set_amx(1)


@pytest.mark.skipif("amx" not in HOST, reason="host lacks AMX-INT8")
def test_amx_env_switch(qlib):
    """ONNXC_NO_AMX=1 in the environment keeps the tiles off from the first use (a fresh process
    loading the same library)."""
    import sys
    if qlib.row != "amx":
        pytest.skip("AMX kernels are only in the amx build")
    code = ("import cffi; ffi = cffi.FFI(); ffi.cdef('int onnxc_qgemm_amx_ready(void);'); "
            f"print(ffi.dlopen({str(qlib.path)!r}).onnxc_qgemm_amx_ready())")
    for env, want in (("1", "0"), ("0", "1")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**__import__("os").environ, "ONNXC_NO_AMX": env})
        assert out.returncode == 0 and out.stdout.strip() == want, (env, out.stdout, out.stderr)


# ---------------------------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------------------------

def run_ort_node(op, A, B, extra_inits, inputs, out_dtype):
    node = helper.make_node(op, inputs, ["y"])
    inits = {"b": B, **extra_inits}
    model = make_model([node], [("a", A.dtype, list(A.shape))], [("y", out_dtype, None)], inits)
    return ort_run(model, {"a": A})[0]


def test_matmulinteger_matches_onnxruntime(qlib):
    """MatMulInteger (u8 x s8 / u8 x u8 / s8 x s8, per-tensor and per-column B zero points): int32
    results identical to onnxruntime's."""
    rng = np.random.default_rng(21)
    M, K, N = 33, 200, 45
    for k in kernels_of(qlib.row):
        for bdt in ((np.int8,) if k.a_signed else (np.int8, np.uint8)):
            A = rand_a(rng, k, (M, K))
            B = rand_b(rng, bdt, (K, N))
            za = np.array(rand_zp(rng, A.dtype), A.dtype)
            for zb in (np.array(rand_zp(rng, bdt), bdt), rand_zp(rng, bdt, N).astype(bdt)):
                want = run_ort_node("MatMulInteger", A, B, {"az": za, "bz": zb}, ["a", "b", "az", "bz"], np.int32)
                got = qlib.gemm(k, A, int(za), Q.pack_b(B, k, zb.astype(np.int64)), N)
                np.testing.assert_array_equal(got, want, err_msg=f"{k.name} B {bdt.__name__} zb {zb.shape}")


def test_qlinearmatmul_matches_onnxruntime(qlib):
    """QLinearMatMul (uint8: B int8 or uint8; int8: all int8), per-tensor and per-column B scale
    and zero point: outputs identical to onnxruntime's, with the multiplier computed as it does
    (a_scale * b_scale / y_scale in float32)."""
    rng = np.random.default_rng(22)
    M, K, N = 37, 300, 50
    for k in kernels_of(qlib.row):
        combos = ((np.int8, np.int8),) if k.a_signed else ((np.int8, np.uint8), (np.uint8, np.uint8))
        for bdt, ydt in combos:
            A = rand_a(rng, k, (M, K))
            B = rand_b(rng, bdt, (K, N))
            a_s, y_s = np.float32(0.02), np.float32(0.9)
            za = np.array(rand_zp(rng, A.dtype), A.dtype)
            yz = np.array(rand_zp(rng, ydt), ydt)
            for per_col in (False, True):
                b_s = (rng.random(N) * 0.01 + 0.001).astype(np.float32) if per_col else np.float32(0.004)
                zb = (rand_zp(rng, bdt, N) if per_col else np.array(rand_zp(rng, bdt))).astype(bdt)
                want = run_ort_node("QLinearMatMul", A, B,
                                    {"as": np.array(a_s), "az": za, "bs": np.asarray(b_s), "bz": zb,
                                     "ys": np.array(y_s), "yz": yz},
                                    ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ydt)
                mult = (a_s * np.asarray(b_s, np.float32)) / y_s  # float32, onnxruntime's order
                lo, hi = (0, 255) if ydt == np.uint8 else (-128, 127)
                got = qlib.gemm(k, A, int(za), Q.pack_b(B, k, zb.astype(np.int64)), N,
                                out=U8 if ydt == np.uint8 else S8, scale=mult, zp=int(yz), qmin=lo, qmax=hi)
                np.testing.assert_array_equal(got, want, err_msg=f"{k.name} B {bdt.__name__} per_col={per_col}")


# ---------------------------------------------------------------------------------------------
# every kernel file compiles under every ISA row's flags
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", [i.name for i in isa_table.ISAS])
def test_every_file_compiles_under_every_isa(row, tmp_path):
    """gcc -c -Wall -Wextra -Werror of each runtime_c/qgemm file with the row's flags (as every
    module's runtime objects are built): kernels of ISAs the row enables are defined, the others
    compile to nothing; so CI without AMX or VNNI hardware still compiles them all."""
    compiles_under_row(row, tmp_path, Q.sources(), Q.QGEMM)
