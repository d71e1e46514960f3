"""Tests of the hand-written C kernels in runtime_c/ (GEMM, conv, pooling, LRN, softmax).

The kernels are compiled once per session into two shared libraries (plain -O2, and the native
target's flags with OpenMP) loaded with cffi in ABI mode, and compared with float64 numpy
references or with onnxruntime running a single-node ONNX model.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from onnxc.build import build_kernel_library, c_compiler, compile_flags
from onnxc.kernels import gemm_f32

SOURCES = gemm_f32.SOURCES + ["conv/conv_ref.c", "pool/pool_ref.c", "math/softmax_ref.c", "math/epilogue_ref.c"]

# Layout probe compiled into the test library: catches drift between the header's structs and
# the declarations cffi parsed from it.
PROBE_C = r"""
#include <stddef.h>
#include "onnxc_kernels.h"
size_t probe_conv_size(void) { return sizeof(onnxc_conv_params); }
size_t probe_conv_dilation(void) { return offsetof(onnxc_conv_params, dilation); }
size_t probe_pool_size(void) { return sizeof(onnxc_pool_params); }
size_t probe_pool_cip(void) { return offsetof(onnxc_pool_params, count_include_pad); }
size_t probe_pool_pad_end(void) { return offsetof(onnxc_pool_params, pad_end); }
"""
PROBE_CDEF = """
size_t probe_conv_size(void); size_t probe_conv_dilation(void); size_t probe_pool_size(void);
size_t probe_pool_cip(void); size_t probe_pool_pad_end(void);
"""

VARIANTS = {
    "serial": ["-O2"],
    "openmp": compile_flags("native"),
}


class Lib:
    def __init__(self, ffi, lib, name):
        self.ffi, self.lib, self.name = ffi, lib, name

    def f(self, a: np.ndarray):
        assert a.dtype == np.float32
        return self.ffi.cast("float *", a.ctypes.data)

    def i64(self, a: np.ndarray):
        assert a.dtype == np.int64
        return self.ffi.cast("int64_t *", a.ctypes.data)


def _build(tmp: Path, name: str, flags) -> Lib:
    if shutil.which(c_compiler()) is None:
        pytest.skip(f"no C compiler ({c_compiler()})")
    ffi, lib = build_kernel_library(tmp / f"libonnxc_kernels_{name}.so", SOURCES, flags,
                                    extra_c=PROBE_C, extra_cdef=PROBE_CDEF)
    return Lib(ffi, lib, name)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def k(request, tmp_path_factory) -> Lib:
    name = request.param
    return _build(tmp_path_factory.mktemp(f"kernels-{name}"), name, VARIANTS[name])


def test_struct_layout_matches_header(k):
    ffi, lib = k.ffi, k.lib
    assert ffi.sizeof("onnxc_conv_params") == lib.probe_conv_size()
    assert ffi.offsetof("onnxc_conv_params", "dilation") == lib.probe_conv_dilation()
    assert ffi.sizeof("onnxc_pool_params") == lib.probe_pool_size()
    assert ffi.offsetof("onnxc_pool_params", "count_include_pad") == lib.probe_pool_cip()
    assert ffi.offsetof("onnxc_pool_params", "pad_end") == lib.probe_pool_pad_end()


# ---------------------------------------------------------------------------------------------
# GEMM
# ---------------------------------------------------------------------------------------------

def _stored(rng, rows, cols, pad):
    """A rows x cols view of a (rows, cols + pad) float32 buffer; returns (buffer, view, ld)."""
    buf = rng.standard_normal((rows, cols + pad)).astype(np.float32)
    return buf, buf[:, :cols], cols + pad


def _check_gemm(k, rng, ta, tb, M, N, K, alpha=1.0, beta=0.0, pads=(0, 0, 0)):
    pa, pb, pc = pads
    Abuf, A, lda = _stored(rng, K if ta else M, M if ta else K, pa)
    Bbuf, B, ldb = _stored(rng, N if tb else K, K if tb else N, pb)
    Cbuf = np.full((M, N + pc), np.nan if beta == 0.0 else 0.0, np.float32)
    if beta != 0.0:
        Cbuf[:] = rng.standard_normal(Cbuf.shape)
    sentinel = np.float32(12345.0)
    Cbuf[:, N:] = sentinel
    C0 = Cbuf[:, :N].astype(np.float64)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    ref = alpha * (opA @ opB)
    scale = abs(alpha) * (np.abs(opA) @ np.abs(opB))
    if beta != 0.0:
        ref = ref + beta * C0
        scale = scale + abs(beta) * np.abs(C0)
    k.lib.onnxc_sgemm(ta, tb, M, N, K, alpha, k.f(Abuf), lda, k.f(Bbuf), ldb, beta, k.f(Cbuf),
                      N + pc)
    out = Cbuf[:, :N].astype(np.float64)
    what = f"[{k.name}] ta={ta} tb={tb} M={M} N={N} K={K} alpha={alpha} beta={beta} pads={pads}"
    assert np.all(np.isfinite(out)), what
    err = np.abs(out - ref)
    assert np.all(err <= 1e-5 * scale + 1e-6), f"{what}: max err {err.max()}"
    assert np.all(Cbuf[:, N:] == sentinel), f"{what}: wrote past N"


TRANS = [(0, 0), (0, 1), (1, 0), (1, 1)]


@pytest.mark.parametrize("ta,tb", TRANS)
def test_sgemm_tile_edges(k, ta, tb):
    """Every combination of small sizes around the 6x16 register tile (beta = 0, C is NaN)."""
    rng = np.random.default_rng(1 + 2 * ta + tb)
    sizes = [1, 2, 5, 6, 7, 15, 16, 17, 33]
    for M in sizes:
        for N in sizes:
            for K in sizes:
                _check_gemm(k, rng, ta, tb, M, N, K)


BIG_SHAPES = [(100, 300, 33), (300, 100, 257), (7, 300, 300), (300, 7, 300), (33, 17, 513),
              (300, 300, 1), (97, 257, 100), (100, 1000, 70), (2, 600, 300), (5, 33, 1000)]


@pytest.mark.parametrize("ta,tb", TRANS)
def test_sgemm_blocks(k, ta, tb):
    """Shapes crossing the KC/MC/NC cache blocks, with strides, alpha and beta."""
    rng = np.random.default_rng(10 + 2 * ta + tb)
    for i, (M, N, K) in enumerate(BIG_SHAPES):
        alpha, beta = [(1.0, 0.0), (0.5, 1.0), (-1.5, 0.25), (2.0, 0.0)][i % 4]
        pads = [(0, 0, 0), (3, 5, 2), (1, 0, 7), (16, 16, 16)][i % 4]
        _check_gemm(k, rng, ta, tb, M, N, K, alpha, beta, pads)


@pytest.mark.parametrize("ta,tb", TRANS)
def test_sgemm_gemv_paths(k, ta, tb):
    """M == 1 and N == 1 (dedicated GEMV loops): long K, many outputs, strided vectors."""
    rng = np.random.default_rng(20 + 2 * ta + tb)
    for M, N, K in [(1, 1, 1), (1, 1, 100), (1, 7, 3000), (1, 1100, 37), (1, 40, 2100),
                    (7, 1, 3000), (1100, 1, 37), (40, 1, 2100), (1, 16, 16), (33, 1, 5)]:
        for alpha, beta, pads in [(1.0, 0.0, (0, 0, 0)), (0.75, -0.5, (2, 3, 1)),
                                  (1.0, 1.0, (5, 0, 4))]:
            _check_gemm(k, rng, ta, tb, M, N, K, alpha, beta, pads)


def test_sgemm_degenerate(k):
    rng = np.random.default_rng(3)
    for M, N, K in [(0, 5, 3), (5, 0, 3), (0, 0, 0), (4, 5, 0), (1, 5, 0), (5, 1, 0)]:
        for beta in (0.0, 1.0, 0.5):
            A = np.ones((max(M, 1), max(K, 1)), np.float32)
            B = np.ones((max(K, 1), max(N, 1)), np.float32)
            C = np.full((max(M, 1), max(N, 1)), np.nan if beta == 0.0 else 2.0, np.float32)
            C0 = C.copy()
            k.lib.onnxc_sgemm(0, 0, M, N, K, 1.0, k.f(A), A.shape[1], k.f(B), B.shape[1], beta,
                              k.f(C), C.shape[1])
            if M == 0 or N == 0:
                np.testing.assert_array_equal(C, C0)
            else:
                np.testing.assert_array_equal(C, np.full(C.shape, 2.0 * beta, np.float32))
    # alpha == 0 scales C only (and never reads C when beta == 0).
    A = rng.standard_normal((9, 4)).astype(np.float32)
    B = rng.standard_normal((4, 20)).astype(np.float32)
    C = np.full((9, 20), np.nan, np.float32)
    k.lib.onnxc_sgemm(0, 0, 9, 20, 4, 0.0, k.f(A), 4, k.f(B), 20, 0.0, k.f(C), 20)
    np.testing.assert_array_equal(C, np.zeros_like(C))


def test_sgemm_large_parallel(k):
    """Big enough for the OpenMP grid split in both M and N."""
    rng = np.random.default_rng(4)
    _check_gemm(k, rng, 0, 0, 640, 770, 300, 1.0, 0.0, (0, 0, 0))
    _check_gemm(k, rng, 0, 1, 1030, 49, 600, 1.0, 1.0, (0, 0, 0))


# ---------------------------------------------------------------------------------------------
# onnxruntime oracle
# ---------------------------------------------------------------------------------------------

def _ort(op, inputs, n_outputs=1, **attrs):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper
    names = [f"in{i}" for i in range(len(inputs))]
    outs = [f"out{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, **attrs)
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape))
          for n, a in zip(names, inputs)]
    vo = [helper.make_tensor_value_info(o, TensorProto.INT64 if i else TensorProto.FLOAT, None)
          for i, o in enumerate(outs)]  # output 1 is only ever MaxPool's Indices here
    model = helper.make_model(helper.make_graph([node], op, vi, vo),
                              opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # ceil_mode: ORT's kernel drops a last window shape inference keeps
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs)))


def _arr3(vals, fill):
    vals = list(vals)
    return vals + [fill] * (3 - len(vals))


# ---------------------------------------------------------------------------------------------
# Convolution
# ---------------------------------------------------------------------------------------------

CONV_CASES = [
    # (N, C, M, group, in, kernel, stride, pads(begin+end), dilation, bias)
    (1, 3, 8, 1, [13, 11], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], True),
    (2, 4, 6, 1, [9, 10], [3, 2], [2, 1], [0, 1, 2, 0], [1, 1], False),
    (1, 3, 5, 1, [16, 16], [7, 7], [2, 2], [3, 3, 3, 3], [1, 1], True),     # ResNet stem-like
    (1, 8, 12, 1, [7, 9], [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], True),      # pointwise: no scratch
    (2, 8, 12, 1, [7, 9], [1, 1], [2, 2], [0, 0, 0, 0], [1, 1], False),     # 1x1 stride 2
    (2, 6, 9, 3, [10, 8], [3, 3], [1, 2], [1, 0, 1, 2], [1, 1], True),      # groups
    (1, 4, 4, 2, [11, 11], [3, 3], [1, 1], [2, 2, 2, 2], [2, 2], True),     # groups + dilation
    (2, 8, 8, 8, [12, 10], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], True),     # depthwise
    (1, 6, 6, 6, [15, 13], [3, 5], [2, 2], [1, 2, 0, 3], [1, 2], False),    # depthwise stride/dil
    (1, 4, 8, 4, [9, 9], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], True),       # channel multiplier 2
    (1, 1, 16, 1, [20, 20], [5, 5], [1, 1], [2, 2, 2, 2], [1, 1], True),    # single input channel
    (2, 5, 7, 1, [30], [4], [2], [1, 2], [1], True),                        # 1-d
    (1, 4, 6, 2, [25], [3], [1], [0, 0], [3], False),                       # 1-d groups dilation
    (1, 3, 4, 1, [6, 7, 5], [3, 3, 2], [1, 2, 1], [1, 1, 0, 1, 0, 1], [1, 1, 2], True),  # 3-d
    (1, 4, 4, 4, [5, 6, 7], [2, 3, 3], [1, 1, 2], [0, 1, 1, 1, 1, 0], [2, 1, 1], True),  # 3-d dw
    (1, 32, 40, 1, [14, 14], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], True),  # parallel GEMM
]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv_vs_onnxruntime(k, case):
    N, C, M, group, ins, ks, ss, pads, ds, has_bias = CONV_CASES[case]
    rank = len(ins)
    rng = np.random.default_rng(100 + case)
    X = rng.standard_normal((N, C, *ins)).astype(np.float32)
    W = rng.standard_normal((M, C // group, *ks)).astype(np.float32)
    Bv = rng.standard_normal(M).astype(np.float32)
    inputs = [X, W] + ([Bv] if has_bias else [])
    (ref,) = _ort("Conv", inputs, group=group, kernel_shape=ks, strides=ss, pads=pads,
                  dilations=ds)
    outs = list(ref.shape[2:])
    p = k.ffi.new("onnxc_conv_params *", {
        "N": N, "C": C, "M": M, "group": group, "rank": rank, "in": _arr3(ins, 1),
        "kernel": _arr3(ks, 1), "out": _arr3(outs, 1), "stride": _arr3(ss, 1),
        "pad_begin": _arr3(pads[:rank], 0), "dilation": _arr3(ds, 1)})
    nscratch = k.lib.onnxc_conv_scratch_floats(p)
    pointwise = all(x == 1 for x in ks) and all(s == 1 for s in ss) and not any(pads)
    depthwise = group > 1 and C == group
    if pointwise or depthwise:
        assert nscratch == 0
    guard = 64
    scratch = np.full(nscratch + guard, 777.0, np.float32)
    Y = np.full(ref.size + guard, np.nan, np.float32)
    Y[ref.size:] = 555.0
    k.lib.onnxc_conv(p, k.f(X), k.f(W), k.f(Bv) if has_bias else k.ffi.NULL, k.f(Y),
                     k.f(scratch) if nscratch else k.ffi.NULL)
    assert np.all(scratch[nscratch:] == 777.0), "scratch overrun"
    assert np.all(Y[ref.size:] == 555.0), "output overrun"
    out = Y[:ref.size].reshape(ref.shape)
    scale = np.abs(X).max() * np.abs(W).max() * (C // group) * np.prod(ks) + 1.0
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------

POOL_CASES = [
    # (N, C, in, kernel, stride, pads(begin+end), dilation, ceil_mode, count_include_pad)
    (2, 3, [12, 12], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, 0),    # ResNet maxpool
    (1, 2, [11, 9], [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1, 0),     # ceil_mode, exact fit
    (1, 2, [10, 11], [3, 2], [2, 3], [1, 0, 2, 1], [1, 1], 1, 1),    # ceil + asymmetric pads
    (1, 2, [10, 11], [3, 2], [2, 3], [1, 0, 2, 1], [1, 1], 1, 0),
    (1, 3, [13, 12], [2, 3], [1, 2], [1, 1, 0, 1], [2, 2], 0, 1),    # dilation
    (1, 3, [13, 12], [2, 3], [2, 2], [1, 1, 1, 0], [2, 1], 1, 0),    # dilation + ceil
    (2, 4, [17], [4], [3], [2, 1], [1], 1, 1),                       # 1-d
    (1, 2, [15], [3], [2], [1, 1], [2], 0, 0),                       # 1-d dilation
    (1, 2, [6, 7, 8], [2, 3, 2], [2, 2, 1], [0, 1, 1, 1, 0, 1], [1, 1, 1], 1, 1),  # 3-d
    (1, 2, [6, 7, 8], [3, 2, 2], [1, 2, 2], [1, 0, 1, 1, 1, 0], [1, 2, 1], 0, 0),  # 3-d dil
    (1, 2, [7, 7], [7, 7], [1, 1], [0, 0, 0, 0], [1, 1], 0, 0),      # whole-plane window
    (4, 32, [30, 30], [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 0, 1),   # parallel
    # ceil_mode windows running past the padded end (those positions never count):
    (1, 2, [10, 10], [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1, 1),
    (1, 2, [10, 10], [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, 1),
    (1, 2, [10, 12], [3, 4], [2, 3], [1, 2, 1, 0], [1, 1], 1, 1),
    (1, 2, [10, 12], [3, 4], [2, 3], [1, 2, 1, 0], [1, 1], 1, 0),
    (1, 3, [12], [4], [3], [1, 1], [1], 1, 1),
    (1, 1, [6, 6, 6], [3, 3, 3], [2, 2, 2], [1, 0, 1, 1, 0, 0], [1, 1, 1], 1, 1),
]


def _pool_params(k, N, C, ins, ks, ss, pads, ds, outs, cip):
    rank = len(ins)
    p = k.ffi.new("onnxc_pool_params *", {
        "N": N, "C": C, "rank": rank, "in": _arr3(ins, 1), "kernel": _arr3(ks, 1),
        "out": _arr3(outs, 1), "stride": _arr3(ss, 1), "pad_begin": _arr3(pads[:rank], 0),
        "dilation": _arr3(ds, 1), "count_include_pad": cip, "pad_end": _arr3(pads[rank:], 0)})
    return p


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_maxpool_vs_onnxruntime(k, case):
    N, C, ins, ks, ss, pads, ds, ceil, _ = POOL_CASES[case]
    rng = np.random.default_rng(200 + case)
    X = rng.standard_normal((N, C, *ins)).astype(np.float32)
    ref, ref_idx = _ort("MaxPool", [X], n_outputs=2, kernel_shape=ks, strides=ss, pads=pads,
                        dilations=ds, ceil_mode=ceil)
    p = _pool_params(k, N, C, ins, ks, ss, pads, ds, list(ref.shape[2:]), 0)
    Y = np.full(ref.shape, np.nan, np.float32)
    I = np.full(ref.shape, -7, np.int64)
    k.lib.onnxc_maxpool(p, k.f(X), k.f(Y), k.i64(I))
    np.testing.assert_array_equal(Y, ref)
    np.testing.assert_array_equal(I, ref_idx)
    np.testing.assert_array_equal(X.reshape(-1)[I], Y)
    Y2 = np.full(ref.shape, np.nan, np.float32)
    k.lib.onnxc_maxpool(p, k.f(X), k.f(Y2), k.ffi.NULL)
    np.testing.assert_array_equal(Y2, ref)


@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_avgpool_vs_onnxruntime(k, case):
    N, C, ins, ks, ss, pads, ds, ceil, cip = POOL_CASES[case]
    rng = np.random.default_rng(300 + case)
    X = rng.standard_normal((N, C, *ins)).astype(np.float32)
    (ref,) = _ort("AveragePool", [X], kernel_shape=ks, strides=ss, pads=pads, dilations=ds,
                  ceil_mode=ceil, count_include_pad=cip)
    p = _pool_params(k, N, C, ins, ks, ss, pads, ds, list(ref.shape[2:]), cip)
    Y = np.full(ref.shape, np.nan, np.float32)
    k.lib.onnxc_avgpool(p, k.f(X), k.f(Y))
    np.testing.assert_allclose(Y, ref, rtol=1e-5, atol=1e-6)


def test_global_pools(k):
    rng = np.random.default_rng(5)
    for nc, sp in [(1, 1), (3, 7), (64, 49), (300, 3136), (5, 17)]:
        X = rng.standard_normal((nc, sp)).astype(np.float32)
        Y = np.full(nc, np.nan, np.float32)
        k.lib.onnxc_global_avgpool(nc, sp, k.f(X), k.f(Y))
        np.testing.assert_allclose(Y, X.astype(np.float64).mean(axis=1), rtol=1e-5, atol=1e-6)
        k.lib.onnxc_global_maxpool(nc, sp, k.f(X), k.f(Y))
        np.testing.assert_array_equal(Y, X.max(axis=1))


# ---------------------------------------------------------------------------------------------
# LRN
# ---------------------------------------------------------------------------------------------

def _lrn_ref(X, size, alpha, beta, bias):
    x = X.astype(np.float64)
    C = x.shape[1]
    sq = np.zeros_like(x)
    lo, hi = (size - 1) // 2, (size - 1) - (size - 1) // 2
    for c in range(C):
        sq[:, c] = (x[:, max(0, c - lo):min(C, c + hi + 1)] ** 2).sum(axis=1)
    return x / (bias + alpha / size * sq) ** beta


@pytest.mark.parametrize("size,alpha,beta,bias", [(5, 1e-4, 0.75, 1.0), (3, 2e-2, 0.5, 2.0),
                                                  (4, 1e-1, 0.75, 1.0), (1, 0.5, 1.3, 0.7)])
def test_lrn(k, size, alpha, beta, bias):
    rng = np.random.default_rng(size)
    X = (3 * rng.standard_normal((2, 7, 5, 6))).astype(np.float32)
    Y = np.full_like(X, np.nan)
    k.lib.onnxc_lrn(2, 7, 30, size, alpha, beta, bias, k.f(X), k.f(Y))
    np.testing.assert_allclose(Y, _lrn_ref(X, size, alpha, beta, bias), rtol=2e-5, atol=1e-6)
    if size == 5:
        (ref,) = _ort("LRN", [X], size=size, alpha=alpha, beta=beta, bias=bias)
        np.testing.assert_allclose(Y, ref, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Softmax
# ---------------------------------------------------------------------------------------------

def _softmax_ref(x, axis, log):
    x = x.astype(np.float64)
    z = x - x.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z - lse if log else np.exp(z - lse)


@pytest.mark.parametrize("log", [0, 1])
@pytest.mark.parametrize("shape,axis", [((4, 10), 1), ((1, 1000), 1), ((3, 5, 7), 1),
                                        ((2, 3, 300), 1), ((600, 3), 0), ((2, 3, 4, 5), 2),
                                        ((1, 1), 1), ((7, 1), 0), ((64, 2000), 1)])
def test_softmax(k, log, shape, axis):
    rng = np.random.default_rng(len(shape) * 10 + axis)
    X = (5 * rng.standard_normal(shape)).astype(np.float32)
    X.reshape(-1)[:: 7] += 80.0  # large logits: needs the max subtraction
    outer = int(np.prod(shape[:axis]))
    inner = int(np.prod(shape[axis + 1:]))
    fn = k.lib.onnxc_logsoftmax if log else k.lib.onnxc_softmax
    Y = np.full_like(X, np.nan)
    fn(outer, shape[axis], inner, k.f(X), k.f(Y))
    ref = _softmax_ref(X, axis, log)
    np.testing.assert_allclose(Y, ref, rtol=1e-5, atol=1e-6 if not log else 1e-4)
    Z = X.copy()  # in place
    fn(outer, shape[axis], inner, k.f(Z), k.f(Z))
    np.testing.assert_array_equal(Z, Y)
