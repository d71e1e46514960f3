"""Transformer runtime kernels at every ISA the host runs (generic always, AVX2 and AVX-512 when
present): the inline transcendentals of onnxc_transformer.h (onnxc_expf, onnxc_gelu_erff,
onnxc_gelu_tanhf), compiled with and without hardware FMA, against float64 numpy.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from onnxc.build import build_kernel_library, c_compiler, compile_flags
from onnxc.target import REQUIRED_FLAGS, host_flags

ISAS = [isa for isa in ("generic", "avx2", "avx512") if all(f in host_flags() for f in REQUIRED_FLAGS[isa])]

# loops over the inline functions, compiled like generated code (the loops vectorize)
WRAPPERS = r"""
#include "onnxc_kernels.h"
void tk_expf(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_expf(x[i]); }
void tk_gelu_erf(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_gelu_erff(x[i]); }
void tk_gelu_tanh(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_gelu_tanhf(x[i]); }
"""
WRAPPERS_CDEF = """
void tk_expf(const float* x, float* y, int64_t n);
void tk_gelu_erf(const float* x, float* y, int64_t n);
void tk_gelu_tanh(const float* x, float* y, int64_t n);
"""


class Lib:
    def __init__(self, isa, ffi, lib):
        self.isa, self.ffi, self.lib = isa, ffi, lib

    def f(self, a):
        assert a.dtype == np.float32 and a.flags.c_contiguous
        return self.ffi.cast("float *", a.ctypes.data)

    def unary(self, fn, x):
        x = np.ascontiguousarray(x, np.float32)
        y = np.full_like(x, np.nan)
        getattr(self.lib, fn)(self.f(x), self.f(y), x.size)
        return y


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    if shutil.which(c_compiler()) is None:
        pytest.skip("no C compiler")
    isa = request.param
    so = tmp_path_factory.mktemp(f"tk-{isa}") / f"libtk_{isa}.so"
    ffi, dl = build_kernel_library(so, [], compile_flags(isa), extra_c=WRAPPERS, extra_cdef=WRAPPERS_CDEF)
    return Lib(isa, ffi, dl)


SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 60, -60, 3e38, -3e38]


def test_expf(lib):
    """Within 2 ulp over the whole range, subnormal results included; overflow to inf, far
    underflow to 0, NaN kept."""
    x = np.concatenate([np.linspace(-110, 90, 200001), SPECIAL]).astype(np.float32)
    y = lib.unary("tk_expf", x)
    with np.errstate(all="ignore"):
        want = np.exp(x.astype(np.float64))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=lib.isa)
    ok = ~np.isnan(want)
    with np.errstate(over="ignore", invalid="ignore"):  # exp(90) is inf in float32
        wf = want[ok].astype(np.float32)
        ulp = np.spacing(np.maximum(np.abs(wf), np.finfo(np.float32).tiny))  # subnormals: absolute ulp
        err = np.abs(y[ok].astype(np.float64) - want[ok])
    finite = np.isfinite(wf)
    assert np.all(err[finite] <= 2 * ulp[finite]), f"{lib.isa}: max {np.max(err[finite] / ulp[finite]):.2f} ulp"
    np.testing.assert_array_equal(y[ok][~finite], wf[~finite])


@pytest.mark.parametrize("form", ["erf", "tanh"])
def test_gelu(lib, form):
    """Gelu (erf form) and FastGelu (tanh form) against float64 over the range, the tails and the
    special values, as tests/passes/test_transformer.py checks the compiled ops."""
    x = np.concatenate([np.linspace(-14, 14, 40001), SPECIAL]).astype(np.float32)
    y = lib.unary(f"tk_gelu_{form}", x)
    xd = x.astype(np.float64)
    with np.errstate(all="ignore"):
        if form == "erf":
            want = 0.5 * xd * np.vectorize(math.erfc)(-xd / math.sqrt(2))
        else:
            want = xd / (1 + np.exp(-2 * math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    want[np.isinf(xd) & (xd < 0)] = np.nan
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=lib.isa)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok].astype(np.float32), rtol=2e-6 if form == "erf" else 2e-5,
                               atol=1e-37, err_msg=lib.isa)
