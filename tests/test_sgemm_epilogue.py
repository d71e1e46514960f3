"""SGEMM epilogues (onnxc_sgemm_ep, onnxc_sgemm_packed_ep): the driver calls the callback on
every element of C exactly once, after its last K block, with block coordinates that address
the bias; at every float ISA the host runs, on shapes that take each path of the driver (GEMV, K = 0,
alpha = 0, one and several K blocks, several column blocks, partial tiles)."""
from __future__ import annotations

import numpy as np
import pytest

from onnxc.build import compile_flags
from onnxc.cpu import runnable_float_isas
from onnxc.kernels import gemm_f32

from helpers import kernel_library

ISAS = runnable_float_isas()
GEMM_SOURCES = gemm_f32.SOURCES

# y = (y + bias[j])^2: not linear, so an epilogue run before the last K block, or twice, shows
EXTRA = r"""
#include "onnxc_kernels.h"
typedef struct { const float* bias; int* visits; int64_t ldv; } tk_arg;
static void tk_ep(const void* arg, float* c, int64_t ldc, int64_t i0, int64_t m, int64_t j0, int64_t n) {
    const tk_arg* a = (const tk_arg*)arg;
    int64_t i, j;
    for (i = 0; i < m; ++i)
        for (j = 0; j < n; ++j) {
            const float v = c[i * ldc + j] + a->bias[j0 + j];
            c[i * ldc + j] = v * v;
            a->visits[(i0 + i) * a->ldv + j0 + j] += 1;
        }
}
void tk_gemm(int packed, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
             const float* bias, int* visits) {
    tk_arg a;
    onnxc_sgemm_epilogue ep;
    a.bias = bias; a.visits = visits; a.ldv = N;
    ep.fn = tk_ep; ep.arg = &a;
    if (packed)
        onnxc_sgemm_packed_ep(ta, M, N, K, alpha, A, lda, B, beta, C, ldc, &ep);
    else
        onnxc_sgemm_ep(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, &ep);
}
"""
CDEF = """void tk_gemm(int packed, int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
             int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
             const float* bias, int* visits);"""


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    isa = request.param
    ffi, dl = kernel_library(tmp_path_factory, f"sgemm-ep-{isa}", GEMM_SOURCES, compile_flags(isa), extra_c=EXTRA,
                             extra_cdef=CDEF)
    return isa, ffi, dl


def aligned(n):
    buf = np.empty(n + 16, np.float32)
    s = (-buf.ctypes.data % 64) // 4
    return buf[s:s + n]


SHAPES = [(1, 33, 7), (13, 1, 9), (5, 7, 0), (14, 32, 256), (29, 70, 300), (100, 257, 513), (40, 600, 64),
          (3, 1100, 20)]


@pytest.mark.parametrize("packed", [0, 1])
@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("ta,tb,alpha,beta", [(0, 0, 1.0, 0.0), (1, 1, 0.5, 1.0), (0, 1, 0.0, 2.0)])
def test_epilogue(lib, packed, M, N, K, ta, tb, alpha, beta):
    isa, ffi, dl = lib
    rng = np.random.default_rng(M * 1000 + N + K)
    f = lambda a: ffi.cast("float *", a.ctypes.data)  # noqa: E731
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    opA, opB = (A.T if ta else A), (B.T if tb else B)
    ldc = N + 3
    C = rng.standard_normal((M, ldc)).astype(np.float32)
    C0 = C.copy()
    bias = rng.standard_normal(N).astype(np.float32)
    visits = np.zeros((M, N), np.int32)
    if packed:
        pb = aligned(max(dl.onnxc_sgemm_packed_floats(N, K), 1))
        if K:  # (onnxc_sgemm_pack_b divides by the K block count)
            dl.onnxc_sgemm_pack_b(tb, N, K, f(np.ascontiguousarray(B)), B.shape[1], f(pb))
        Bp, ldb = pb, 0
    else:
        Bp, ldb = B, B.shape[1]
    dl.tk_gemm(packed, ta, tb, M, N, K, alpha, f(A), max(A.shape[1], 1), f(Bp), max(ldb, 1), beta, f(C), ldc,
               f(bias), ffi.cast("int *", visits.ctypes.data))
    what = f"{isa} packed={packed} ta={ta} tb={tb} M={M} N={N} K={K} alpha={alpha} beta={beta}"
    np.testing.assert_array_equal(visits, 1, err_msg=f"{what}: epilogue visits")
    pre = alpha * (opA.astype(np.float64) @ opB.astype(np.float64)) + beta * C0[:, :N] + bias
    scale = abs(alpha) * (np.abs(opA) @ np.abs(opB)) + abs(beta) * np.abs(C0[:, :N]) + np.abs(bias)
    err = np.abs(C[:, :N] - pre ** 2)
    assert np.all(err <= (2e-6 * scale + 1e-6) * (2 * np.abs(pre) + 1)), f"{what}: max error {err.max()}"
    np.testing.assert_array_equal(C[:, N:], C0[:, N:], err_msg=f"{what}: wrote past column N")
