"""Runtime kernels read and write nothing outside the buffers they are given.

Every operand is placed so that it ends exactly at an inaccessible (PROT_NONE) page, and in a
second round so that it starts exactly after one: a vector load or store that runs past a
buffer's end (an unmasked tail, a whole block read where part is valid, an edge tile packed too
wide) or before its start faults instead of reading a neighbour's bytes. The results are
compared with the same call on ordinary arrays. This is what lets weights.bin be memory-mapped
(compiler/blob.py): the last constant of the blob may end where the file ends.

Kernels: SGEMM (run-time packed B, compile-time packed B, GEMV paths; tails in M, N and K),
the NCHWc convolutions (direct, pointwise, plain-NCHW input, depthwise; partial channel blocks),
NCHWc pools, softmax. Built for the generic ISA and for the host's best float ISA.
"""
from __future__ import annotations

import ctypes
import mmap
import os

import numpy as np
import pytest

from onnxc.build import build_kernel_library, compile_flags
from onnxc.kernels import gemm_f32, nchwc_f32
from onnxc.ops.nchwc import blocks, pack_depthwise, pack_direct, pack_nchw, to_blocked
from onnxc.resources import kernels_cdef
from onnxc.cpu import runnable_float_isas

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs mmap/mprotect")

PAGE = mmap.PAGESIZE
ISAS = sorted({"generic", runnable_float_isas()[-1]})
SOURCES = gemm_f32.SOURCES + ["nchwc/conv_nchwc.c", "nchwc/pool_nchwc.c", "math/softmax_ref.c", "math/layernorm_ref.c"]
LAYERNORM_CDEF = """void onnxc_layernorm(int64_t rows, int64_t n, const float* X, const float* skip, const float* bias,
                     const float* gamma, const float* beta, float eps, int rms, float* Y, float* sum);"""


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    so = tmp_path_factory.mktemp(f"guard-{request.param}") / "libguard.so"
    return build_kernel_library(so, SOURCES, compile_flags(request.param),
                                extra_cdef=kernels_cdef("onnxc_nchwc.h") + LAYERNORM_CDEF)


class Guarded:
    """Copies of arrays next to PROT_NONE (0) pages, kept mapped as long as this object lives."""

    def __init__(self, where: str):
        self.where = where  # "end": the array's last byte precedes a guard; "start": its first follows one
        self.keep = []
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def __call__(self, a):
        if a is None:
            return None
        a = np.ascontiguousarray(a)
        data = (a.nbytes + PAGE - 1) // PAGE * PAGE
        m = mmap.mmap(-1, data + 2 * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        for guard in (base, base + PAGE + data):
            assert self.libc.mprotect(guard, PAGE, 0) == 0, ctypes.get_errno()
        start = base + PAGE if self.where == "start" else base + PAGE + data - a.nbytes
        out = np.frombuffer(m, dtype=a.dtype, count=a.size, offset=start - base).reshape(a.shape)
        out[...] = a
        self.keep.append(m)
        return out


def fp(ffi, a):
    return ffi.NULL if a is None else ffi.cast("float *", a.ctypes.data)


def rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# (transA, transB, M, N, K, beta): tails in every dimension for the 14x32 and 6x16 tiles, a K
# past one K block, and the GEMV paths (M == 1, N == 1)
GEMMS = [(0, 0, 13, 37, 19, 0.0), (1, 0, 15, 33, 7, 1.0), (0, 1, 29, 17, 300, 0.5),
         (1, 1, 6, 16, 5, 0.0), (0, 0, 1, 45, 17, 1.0), (0, 1, 31, 1, 9, 0.0), (0, 0, 3, 5, 1, 0.0)]


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("case", GEMMS, ids=str)
def test_sgemm(lib, case, where):
    ffi, L = lib
    ta, tb, M, N, K, beta = case
    rng = np.random.default_rng(M * N + K)
    A = rand(rng, *((K, M) if ta else (M, K)))
    B = rand(rng, *((N, K) if tb else (K, N)))
    C0 = rand(rng, M, N)
    want = (A.T if ta else A).astype(np.float64) @ (B.T if tb else B).astype(np.float64) + beta * C0
    g = Guarded(where)
    Ag, Bg, Cg = g(A), g(B), g(C0)
    L.onnxc_sgemm(ta, tb, M, N, K, 1.0, fp(ffi, Ag), A.shape[1], fp(ffi, Bg), B.shape[1], beta, fp(ffi, Cg), N)
    np.testing.assert_allclose(Cg, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))
    # B packed (what the compiler stores in the weights blob); the packed size is whole 64-byte
    # multiples, so ending it at the guard keeps it 64-byte aligned as the kernel requires
    packed = np.zeros(L.onnxc_sgemm_packed_floats(N, K), np.float32)
    L.onnxc_sgemm_pack_b(tb, N, K, fp(ffi, B), B.shape[1], fp(ffi, packed))
    Pg, Cg2 = g(packed), g(C0)
    assert Pg.ctypes.data % 64 == 0
    L.onnxc_sgemm_packed(ta, M, N, K, 1.0, fp(ffi, Ag), A.shape[1], fp(ffi, Pg), beta, fp(ffi, Cg2), N)
    np.testing.assert_allclose(Cg2, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))


# (kind, C, M, IH, IW, K, stride, pad): partial input and output blocks at both block sizes,
# borders, stride 2, the pointwise GEMM path and a single-pixel image
CONVS = [("direct", 20, 37, 7, 9, 3, 1, 1), ("direct", 13, 5, 6, 11, 3, 2, 0), ("direct", 40, 24, 5, 7, 1, 1, 0),
         ("direct", 8, 70, 1, 1, 3, 1, 1), ("nchw", 3, 21, 9, 10, 3, 2, 1),
         ("depthwise", 27, 27, 8, 13, 3, 1, 1), ("depthwise", 9, 9, 5, 5, 5, 2, 2)]


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", CONVS, ids=lambda c: "_".join(map(str, c)))
def test_nchwc_conv(lib, case, nb, where):
    ffi, L = lib
    kind, c, m, ih, iw, k, s, pad = case
    rng = np.random.default_rng(c * m + k)
    x = rand(rng, 2, c, ih, iw)
    w = rand(rng, m, 1 if kind == "depthwise" else c, k, k)
    oh, ow = (ih + 2 * pad - k) // s + 1, (iw + 2 * pad - k) // s + 1
    if kind == "nchw":
        xk, wk = x, pack_nchw(w, nb)
    elif kind == "depthwise":
        xk, wk = to_blocked(x, nb), pack_depthwise(w, nb)
    else:
        xk, wk = to_blocked(x, nb), pack_direct(w, nb, 1)
    bk = np.zeros(blocks(m, nb) * nb, np.float32)
    bk[:m] = rand(rng, m)
    zk = to_blocked(rand(rng, 2, m, oh, ow), nb)
    p = ffi.new("onnxc_nchwc_conv_params *", dict(
        N=2, C=c, M=m, group=c if kind == "depthwise" else 1, IH=ih, IW=iw, OH=oh, OW=ow, KH=k, KW=k,
        SH=s, SW=s, PT=pad, PL=pad, DH=1, DW=1, lo=-np.inf, hi=np.inf))
    fn = getattr(L, nchwc_f32.name({"direct": "conv", "nchw": "conv_nchw", "depthwise": "conv_depthwise"}[kind], nb))
    want = np.zeros((2, blocks(m, nb), oh, ow, nb), np.float32)
    fn(p, fp(ffi, xk), fp(ffi, wk), fp(ffi, bk), fp(ffi, zk), fp(ffi, want))
    g = Guarded(where)
    y = g(np.full_like(want, np.nan))
    fn(p, fp(ffi, g(xk)), fp(ffi, g(wk)), fp(ffi, g(bk)), fp(ffi, g(zk)), fp(ffi, y))
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("nb", [8, 16])
def test_nchwc_pools(lib, nb, where):
    ffi, L = lib
    rng = np.random.default_rng(nb)
    c, ih, iw = 19, 7, 9
    xk = to_blocked(rand(rng, 2, c, ih, iw), nb)
    g = Guarded(where)
    for name in ("maxpool", "avgpool"):
        p = ffi.new("onnxc_nchwc_pool_params *", dict(
            N=2, C=c, IH=ih, IW=iw, OH=4, OW=5, KH=3, KW=3, SH=2, SW=2, PT=1, PL=1, PB=1, PR=1, DH=1, DW=1,
            count_include_pad=0))
        want = np.zeros((2, blocks(c, nb), 4, 5, nb), np.float32)
        getattr(L, nchwc_f32.name(name, nb))(p, fp(ffi, xk), fp(ffi, want))
        y = g(np.full_like(want, np.nan))
        getattr(L, nchwc_f32.name(name, nb))(p, fp(ffi, g(xk)), fp(ffi, y))
        np.testing.assert_array_equal(y, want)
    for is_max in (0, 1):
        for nchw_out in (0, 1):
            shape = (2, c, 1, 1) if nchw_out else (2, blocks(c, nb), 1, 1, nb)
            want = np.zeros(shape, np.float32)
            getattr(L, nchwc_f32.name("global_pool", nb))(2, c, ih * iw, is_max, nchw_out, fp(ffi, xk), fp(ffi, want))
            y = g(np.full(shape, np.nan, np.float32))
            getattr(L, nchwc_f32.name("global_pool", nb))(2, c, ih * iw, is_max, nchw_out, fp(ffi, g(xk)), fp(ffi, y))
            np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("c,hw", [(19, 13), (8, 8), (37, 70), (3, 1)])
def test_nchwc_reorders(lib, nb, c, hw, where):
    """NCHW <-> blocked (8x8 in-register transposes with pixel and channel tails), and the
    channel-permuting reorder."""
    ffi, L = lib
    rng = np.random.default_rng(c * hw)
    x = rand(rng, 2, c, hw)
    g = Guarded(where)
    blocked = np.zeros((2, blocks(c, nb), hw, nb), np.float32)
    getattr(L, nchwc_f32.name("reorder_input", nb))(2, c, hw, fp(ffi, x), fp(ffi, blocked))
    np.testing.assert_array_equal(blocked, to_blocked(x.reshape(2, c, hw, 1), nb).reshape(blocked.shape))
    y = g(np.full_like(blocked, np.nan))
    getattr(L, nchwc_f32.name("reorder_input", nb))(2, c, hw, fp(ffi, g(x)), fp(ffi, y))
    np.testing.assert_array_equal(y, blocked)
    back = g(np.full_like(x, np.nan))
    getattr(L, nchwc_f32.name("reorder_output", nb))(2, c, hw, fp(ffi, g(blocked)), fp(ffi, back))
    np.testing.assert_array_equal(back, x)
    chan = rng.permutation(c).astype(np.int32)
    yp = g(np.full_like(blocked, np.nan))
    getattr(L, nchwc_f32.name("reorder_input_perm", nb))(2, c, hw, fp(ffi, g(x)), ffi.cast("int32_t *", g(chan).ctypes.data),
                                                          fp(ffi, yp))
    np.testing.assert_array_equal(yp, to_blocked(x[:, chan].reshape(2, c, hw, 1), nb).reshape(blocked.shape))


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("shape", [(3, 37, 1), (2, 5, 7), (1, 1000, 1)])
def test_softmax(lib, shape, where):
    ffi, L = lib
    x = rand(np.random.default_rng(0), *shape)
    g = Guarded(where)
    for fn in (L.onnxc_softmax, L.onnxc_logsoftmax):
        want = np.zeros_like(x)
        fn(*shape, fp(ffi, x), fp(ffi, want))
        y = g(np.full_like(x, np.nan))
        fn(*shape, fp(ffi, g(x)), fp(ffi, y))
        np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("where", ["end", "start"])
@pytest.mark.parametrize("rows,n", [(3, 37), (1, 768), (5, 8)])
def test_layernorm(lib, rows, n, where):
    ffi, L = lib
    rng = np.random.default_rng(n)
    x, skip, bias, gamma, beta = rand(rng, rows, n), rand(rng, rows, n), rand(rng, n), rand(rng, n), rand(rng, n)
    g = Guarded(where)
    for rms in (0, 1):
        want, want_sum = np.zeros_like(x), np.zeros_like(x)
        L.onnxc_layernorm(rows, n, fp(ffi, x), fp(ffi, skip), fp(ffi, bias), fp(ffi, gamma), fp(ffi, beta), 1e-5,
                          rms, fp(ffi, want), fp(ffi, want_sum))
        y, s = g(np.full_like(x, np.nan)), g(np.full_like(x, np.nan))
        L.onnxc_layernorm(rows, n, fp(ffi, g(x)), fp(ffi, g(skip)), fp(ffi, g(bias)), fp(ffi, g(gamma)),
                          fp(ffi, g(beta)), 1e-5, rms, fp(ffi, y), fp(ffi, s))
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(s, want_sum)


def test_guard_page_faults():
    """The guard really is inaccessible: reading one float past an "end" array kills a child."""
    import subprocess
    import sys
    code = ("import sys; sys.path.insert(0, %r); import numpy as np, ctypes; from test_guard_pages import Guarded; "
            "a = Guarded('end')(np.ones(5, np.float32)); print(float(a[-1]), flush=True); "
            "ctypes.c_float.from_address(a.ctypes.data + 20).value" % os.path.dirname(__file__))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # killed by SIGSEGV, or exit code 1 when a sanitizer's handler reports the fault
    assert r.stdout.strip() == "1.0" and r.returncode != 0, (r.returncode, r.stderr[-2000:])


OMP_PROBE = """
#include <omp.h>
double onnxc_test_omp_sum(int n) {
    double s = 0.0;
    int i;
#pragma omp parallel for reduction(+ : s) num_threads(2)
    for (i = 0; i < n; ++i) s += 0.5 * i;
    return s;
}
"""


def test_kernel_library_with_openmp_survives_dlclose_and_exit(tmp_path):
    """A kernel library whose OpenMP region started libgomp worker threads, closed by cffi (as
    at interpreter exit): unloading it used to unload libgomp under those threads (SIGSEGV at
    exit, seen once in a generic-ISA SGEMM harness); build_kernel_library links it nodelete."""
    import subprocess
    import sys
    code = f"""
import sys, time
sys.path.insert(0, {os.path.dirname(__file__)!r})
from onnxc.build import build_kernel_library, compile_flags
ffi, lib = build_kernel_library({str(tmp_path / 'libomp_probe.so')!r}, ["math/softmax_ref.c"], compile_flags("generic"),
                                extra_c={OMP_PROBE!r}, extra_cdef="double onnxc_test_omp_sum(int n);")
print(lib.onnxc_test_omp_sum(2000000), flush=True)
ffi.dlclose(lib)
time.sleep(0.3)
print("alive", flush=True)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stdout, r.stderr[-2000:])
