"""Transformer runtime kernels at every float ISA the host runs (generic always, avx2 and avx512
when present), against float64 numpy: the inline transcendentals of onnxc_transformer.h (onnxc_expf,
onnxc_sigmoidf, onnxc_siluf, onnxc_gelu_erff, onnxc_gelu_tanhf; ulp bounds over dense sweeps and random bit
patterns), compiled with and without hardware FMA, the attention of
onnxc.MultiHeadAttention (onnxc_mha_attend: tiles, masks, NaN rows, sequence-first layout) and
onnxc_layernorm (LayerNorm, RMSNorm, SkipLayerNorm with bias and sum output, large means).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from onnxc.build import compile_flags
from onnxc.cpu import runnable_float_isas
from onnxc.resources import runtime_dir

from helpers import kernel_library

ISAS = runnable_float_isas()

# loops over the inline functions, compiled like generated code (the loops vectorize)
WRAPPERS = r"""
#include "onnxc_kernels.h"
void tk_expf(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_expf(x[i]); }
void tk_sigmoid(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_sigmoidf(x[i]); }
void tk_silu(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_siluf(x[i]); }
void tk_gelu_erf(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_gelu_erff(x[i]); }
void tk_gelu_tanh(const float* x, float* y, int64_t n) { int64_t i; for (i = 0; i < n; ++i) y[i] = onnxc_gelu_tanhf(x[i]); }
"""
WRAPPERS_CDEF = """
typedef struct { int64_t B, S, E, H, D; int seq_first; float scale; int has_mask; int64_t mask_str[4];
                 int nan_to_zero; int64_t tile_rows, slots; } onnxc_mha_params;
void onnxc_mha_attend(const onnxc_mha_params* p, const float* qkv, const float* mask, float* Y, float* tiles);
size_t onnxc_mha_scratch_floats(const onnxc_mha_params* p);
void onnxc_layernorm(int64_t rows, int64_t n, const float* X, const float* skip, const float* bias,
                     const float* gamma, const float* beta, float eps, int rms, float* Y, float* sum);
void tk_expf(const float* x, float* y, int64_t n);
void tk_sigmoid(const float* x, float* y, int64_t n);
void tk_silu(const float* x, float* y, int64_t n);
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
    isa = request.param
    srcs = sorted(str(p.relative_to(runtime_dir())) for d in ("gemm", "attention") for p in (runtime_dir() / d).glob("*.c"))
    srcs.append("math/layernorm_ref.c")
    ffi, dl = kernel_library(tmp_path_factory, f"tk-{isa}", srcs, compile_flags(isa), extra_c=WRAPPERS,
                             extra_cdef=WRAPPERS_CDEF)
    return Lib(isa, ffi, dl)


SPECIAL = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45, 60, -60, 3e38, -3e38]
TINY = float(np.finfo(np.float32).tiny)


def sweep(lo, hi, step=2.0 ** -11, n_random=1 << 19, seed=0):
    """float32 inputs: every multiple of ``step`` in [lo, hi], random bit patterns in that range
    and over the whole float range (both signs, all exponents), the neighbours of every power of
    two up to 2^127, and the special values."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 1 << 32, n_random * 4, dtype=np.uint64).astype(np.uint32).view(np.float32)
    inside = bits[(bits >= lo) & (bits <= hi)][:n_random]
    p2 = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)
    p2 = np.concatenate([p2, np.nextafter(p2, np.float32(0)), np.nextafter(p2, np.float32(np.inf))])
    return np.concatenate([np.arange(lo, hi, step, dtype=np.float64).astype(np.float32), inside, bits[:n_random],
                           p2, -p2, np.array(SPECIAL, np.float32)])


def f64(x):
    """float64 copy of float32 x (the random patterns include signaling NaNs)"""
    with np.errstate(invalid="ignore"):
        return x.astype(np.float64)


def ulp_error(y, want):
    """|y - want| in units of the last place of the float32 nearest to want (subnormal spacing
    2^-149 below FLT_MIN); want float64."""
    _, e = np.frexp(np.abs(want))
    return np.abs(f64(y) - want) / np.ldexp(1.0, np.maximum(e - 24, -149))


def test_expf(lib):
    """Within 1.5 ulp over the whole range, subnormal results included (absolute ulp 2^-149);
    overflow to inf from x > 88.7228, far underflow to 0, NaN kept."""
    x = sweep(-110, 90)
    y = lib.unary("tk_expf", x)
    xd = f64(x)
    with np.errstate(all="ignore"):
        want = np.exp(xd)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(xd), err_msg=lib.isa)
    big = ~np.isnan(xd) & (want > np.finfo(np.float32).max)
    assert np.all(y[big] == np.inf), lib.isa
    ok = ~np.isnan(xd) & ~big
    err = ulp_error(y[ok], want[ok])
    assert err.max() <= 1.5, f"{lib.isa}: max {err.max():.2f} ulp at x={x[ok][np.argmax(err)]!r}"
    assert y[x == -np.inf][0] == 0.0 and y[x == 0][0] == 1.0 and y[x == np.inf][0] == np.inf


def sigmoid64(xd):
    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(xd))
        return np.where(xd >= 0, 1 / (1 + e), e / (1 + e))


def test_sigmoid(lib):
    """Within 2.5 ulp wherever the result is at least FLT_MIN (x >= -87.336); below, the result
    (subnormal, then 0 from x <= -88.38) is within FLT_MIN of it; exact limits; NaN kept."""
    x = sweep(-100, 100)
    y = lib.unary("tk_sigmoid", x)
    xd = f64(x)
    want = sigmoid64(xd)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(xd), err_msg=lib.isa)
    ok = ~np.isnan(xd)
    normal = ok & (want >= TINY)
    err = ulp_error(y[normal], want[normal])
    assert err.max() <= 2.5, f"{lib.isa}: max {err.max():.2f} ulp at x={x[normal][np.argmax(err)]!r}"
    below = ok & (want < TINY)
    assert np.all((y[below] >= 0) & (np.abs(y[below] - want[below]) <= TINY)), lib.isa
    assert np.all(y[ok & (x < -88.4)] == 0), lib.isa
    assert y[x == np.inf][0] == 1.0 and y[x == -np.inf][0] == 0.0 and y[x == 0][0] == 0.5
    assert np.all((y[ok] >= 0) & (y[ok] <= 1)), lib.isa


def test_silu(lib):
    """x * sigmoid(x) within 2.5 ulp for x >= -88.37 (results down to ~-4e-37); -0 below (|exact|
    < 4e-37); x itself for large x; NaN kept, NaN at -inf (x * sigmoid(x) = -inf * 0)."""
    x = sweep(-100, 100)
    y = lib.unary("tk_silu", x)
    xd = f64(x)
    with np.errstate(all="ignore"):
        want = xd * sigmoid64(xd)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=lib.isa)
    ok = ~np.isnan(want)
    main = ok & np.isfinite(xd) & (xd >= -88.37) & (np.abs(want) >= TINY)
    err = ulp_error(y[main], want[main])
    assert err.max() <= 2.5, f"{lib.isa}: max {err.max():.2f} ulp at x={x[main][np.argmax(err)]!r}"
    tail = ok & np.isfinite(xd) & ~main
    assert np.all(np.abs(y[tail] - want[tail]) <= 4e-37), lib.isa
    assert y[x == np.inf][0] == np.inf and np.isnan(y[x == -np.inf][0]) and y[x == 3e38][0] == np.float32(3e38)


def test_gelu_erf(lib):
    """Gelu (erf form) within 6 ulp (7 without FMA) wherever the result is at least FLT_MIN, within
    FLT_MIN below it (x < -13.15: subnormal, then 0); x itself from x = 6; gelu(inf) = inf,
    gelu(-inf) = NaN (-inf * 0, as the decomposed graph and onnxruntime), NaN kept, -0 kept."""
    x = sweep(-16, 16, step=2.0 ** -12)
    y = lib.unary("tk_gelu_erf", x)
    xd = f64(x)
    with np.errstate(all="ignore"):
        want = 0.5 * xd * np.vectorize(math.erfc, otypes=[np.float64])(-xd / math.sqrt(2))
    want[np.isinf(xd) & (xd < 0)] = np.nan
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=lib.isa)
    ok = ~np.isnan(want) & np.isfinite(xd)
    normal = ok & (np.abs(want) >= TINY)
    err = ulp_error(y[normal], want[normal])
    bound = 6 if lib.isa != "generic" else 7
    assert err.max() <= bound, f"{lib.isa}: max {err.max():.2f} ulp at x={x[normal][np.argmax(err)]!r}"
    assert np.all(np.abs(y[ok & ~normal] - want[ok & ~normal]) <= TINY), lib.isa
    assert np.all(y[ok & (x >= 6)] == x[ok & (x >= 6)]), lib.isa
    assert y[x == np.inf][0] == np.inf and np.signbit(y[(x == 0) & np.signbit(x)][0])


def test_gelu_tanh(lib):
    """FastGelu (tanh form) against float64 over the range, the tails and the special values: the
    float32 rounding of u is amplified 2|u|-fold by exp(-2u) in the negative tail."""
    x = np.concatenate([np.linspace(-14, 14, 40001), SPECIAL]).astype(np.float32)
    y = lib.unary("tk_gelu_tanh", x)
    xd = f64(x)
    with np.errstate(all="ignore"):
        want = xd / (1 + np.exp(-2 * math.sqrt(2 / math.pi) * (xd + 0.044715 * xd ** 3)))
    want[np.isinf(xd) & (xd < 0)] = np.nan
    np.testing.assert_array_equal(np.isnan(y), np.isnan(want), err_msg=lib.isa)
    ok = ~np.isnan(want)
    np.testing.assert_allclose(y[ok], want[ok].astype(np.float32), rtol=2e-5, atol=1e-37, err_msg=lib.isa)


@pytest.mark.parametrize("isa", ISAS)
def test_transcendentals_vectorize(isa, tmp_path):
    """Each wrapper loop (as generated code calls these functions) is vectorized by GCC at every
    ISA: a loop GCC leaves scalar (e.g. over a select whose arm is a computed float, which it will
    not if-convert without AVX-512 masks) is 5-10x slower yet still passes the accuracy tests."""
    import re
    import subprocess

    from onnxc.build import c_compiler
    cc = c_compiler()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"no C compiler ({cc})")
    if "gcc" not in version.lower() and "free software foundation" not in version.lower():
        pytest.skip("-fopt-info is GCC's")
    src = tmp_path / "wrappers.c"
    src.write_text(WRAPPERS)
    flags = [f for f in compile_flags(isa) if f != "-fopenmp"]
    out = subprocess.run([cc, *flags, "-I", str(runtime_dir() / "include"), "-c", str(src), "-o", str(tmp_path / "w.o"),
                          "-fopt-info-vec-optimized"], capture_output=True, text=True, check=True).stderr
    lines = WRAPPERS.splitlines()
    vectorized = {lines[int(m.group(1)) - 1].split("(")[0].split()[-1]
                  for m in re.finditer(r"wrappers\.c:(\d+):\d+: optimized: loop vectorized", out)}
    wanted = {line.split("(")[0].split()[-1] for line in lines if line.startswith("void tk_")}
    assert wanted <= vectorized, f"{isa}: not vectorized: {sorted(wanted - vectorized)}"


def mha_reference(qkv, B, S, H, D, scale, mask, nan_to_zero, seq_first):
    """float64 attention of the projected qkv rows ([B*S, 3*H*D], X's token order)."""
    x = qkv.astype(np.float64).reshape(*((S, B) if seq_first else (B, S)), 3, H, D)
    if seq_first:
        x = x.transpose(1, 0, 2, 3, 4)
    q, k, v = (x[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # [B, H, S, D]
    s = q @ k.transpose(0, 1, 3, 2) * scale
    if mask is not None:
        s = s + mask
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(s - s.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
    if nan_to_zero:
        p = np.where(np.isnan(p), 0.0, p)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(B, S, H * D)
    return (y.transpose(1, 0, 2) if seq_first else y).reshape(B * S, H * D)


@pytest.mark.parametrize("B,S,H,D,tile_rows,slots,seq_first,mask_kind,nan_to_zero", [
    (1, 37, 2, 16, 37, 2, 0, None, 0),        # one tile per head, tail past the lanes
    (2, 50, 3, 8, 16, 4, 0, "keys", 1),       # several tiles per head, [B, 1, 1, S] padding mask
    (2, 33, 2, 32, 33, 4, 1, "full", 0),      # sequence-first, [B, H, S, S] mask with -inf rows
    (1, 40, 2, 16, 13, 3, 0, "full", 1),      # -inf rows guarded to 0, tiles not dividing S
    (1, 24, 1, 8, 24, 1, 0, "bcast", 0),      # mask broadcast along the keys (stride 0)
])
def test_mha_attend(lib, B, S, H, D, tile_rows, slots, seq_first, mask_kind, nan_to_zero):
    rng = np.random.default_rng(S * 7 + B)
    qkv = rng.standard_normal((B * S, 3 * H * D)).astype(np.float32)
    mask, strides = None, [0, 0, 0, 0]
    if mask_kind == "keys":
        mask = np.where(rng.random((B, 1, 1, S)) < 0.3, -np.inf, 0.0).astype(np.float32)
        strides = [S, 0, 0, 1]
    elif mask_kind == "full":
        mask = rng.standard_normal((B, H, S, S)).astype(np.float32)
        mask[:, :, ::7, :] = -np.inf  # whole rows masked: NaN, or 0 with nan_to_zero
        strides = [H * S * S, S * S, S, 1]
    elif mask_kind == "bcast":
        mask = rng.standard_normal((1, 1, S, 1)).astype(np.float32)
        strides = [0, 0, 1, 0]
    p = lib.ffi.new("onnxc_mha_params*")
    p.B, p.S, p.E, p.H, p.D, p.seq_first, p.scale = B, S, H * D, H, D, seq_first, 0.3
    p.has_mask, p.mask_str, p.nan_to_zero = int(mask is not None), strides, nan_to_zero
    p.tile_rows, p.slots = tile_rows, slots
    tiles = np.full(lib.lib.onnxc_mha_scratch_floats(p) - B * S * 3 * H * D, np.nan, np.float32)
    Y = np.full((B * S, H * D), np.nan, np.float32)
    m = np.ascontiguousarray(mask) if mask is not None else np.zeros(1, np.float32)
    lib.lib.onnxc_mha_attend(p, lib.f(qkv), lib.f(m), lib.f(Y), lib.f(tiles))
    want = mha_reference(qkv, B, S, H, D, 0.3, mask, nan_to_zero, seq_first)
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(want), err_msg=lib.isa)
    np.testing.assert_allclose(Y, want, rtol=1e-5, atol=1e-5, err_msg=lib.isa)


@pytest.mark.parametrize("n", [1, 37, 384])
@pytest.mark.parametrize("kind", ["ln", "rms", "skip", "skip_bias_sum", "ln_plain"])
@pytest.mark.parametrize("offset", [0.0, 300.0])
def test_layernorm(lib, n, kind, offset):
    """onnxc_layernorm against float64: rows of spread ~1 around a mean of 0 or 300 (a float32
    ulp at 300 is 3e-5: statistics must not cancel), n below, at and past the lane count."""
    rng = np.random.default_rng(n)
    rows, eps = 5, 1e-5
    x = (rng.standard_normal((rows, n)) + offset).astype(np.float32)
    skip = rng.standard_normal((rows, n)).astype(np.float32) if kind.startswith("skip") else None
    bias = rng.standard_normal(n).astype(np.float32) if kind == "skip_bias_sum" else None
    gamma = None if kind == "ln_plain" else rng.standard_normal(n).astype(np.float32)
    beta = rng.standard_normal(n).astype(np.float32) if kind in ("ln", "skip", "skip_bias_sum") else None
    y = np.full((rows, n), np.nan, np.float32)
    total = np.full((rows, n), np.nan, np.float32) if kind == "skip_bias_sum" else None
    ptr = lambda a: lib.f(a) if a is not None else lib.ffi.NULL  # noqa: E731
    lib.lib.onnxc_layernorm(rows, n, ptr(x), ptr(skip), ptr(bias), ptr(gamma), ptr(beta), eps, int(kind == "rms"),
                            ptr(y), ptr(total))
    s = x.astype(np.float64)
    if skip is not None:  # the float32 sum, as the kernel forms it
        s = ((x + bias if bias is not None else x) + skip).astype(np.float32).astype(np.float64)
    if total is not None:
        np.testing.assert_array_equal(total, s.astype(np.float32), err_msg=lib.isa)
    d = s if kind == "rms" else s - s.mean(-1, keepdims=True)
    want = d / np.sqrt((d * d).mean(-1, keepdims=True) + eps)
    if gamma is not None:
        want = want * gamma
    if beta is not None:
        want = want + beta
    # the output is rounded from x - mean with x at |x| ~ offset: half an ulp of x per unit std
    atol = 1e-6 + 2 * np.spacing(np.float32(offset + 4)) * (np.abs(gamma).max() if gamma is not None else 1)
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=atol, err_msg=f"{lib.isa} {kind}")
