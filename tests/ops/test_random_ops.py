"""Random generators in C (providers/c/random.py, runtime_c/math/random_ref.c): Philox4x32-10 against
its published known-answer vectors, the distributions by statistical tests with fixed keys (and
thresholds that a biased generator fails, shown on one), and the compiled ops: seeded nodes give
the same draws on every run and load, unseeded ones fresh draws per run, every dtype accepted,
Dropout's training mode."""
import math

import numpy as np
import pytest
from onnx import helper

import onnxc

from helpers import compile_c, make_model

N = 100_000


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    from onnxc.build import build_kernel_library
    return build_kernel_library(tmp_path_factory.mktemp("rng") / "rng.so", ["math/random_ref.c"], ["-O2"])


def draw(lib, fn, *args, n=N, dtype=np.float64, elem=11):
    ffi, dl = lib
    y = np.empty(n, dtype)
    getattr(dl, fn)(elem, ffi.cast("void*", y.ctypes.data), n, *args)
    return y


@pytest.mark.parametrize("ctr,key,want", [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))])
def test_philox_known_answers(lib, ctr, key, want):
    """Random123's kat_vectors for philox4x32 with 10 rounds."""
    ffi, dl = lib
    out = ffi.new("uint32_t[4]")
    dl.onnxc_philox4x32_10(ffi.new("uint32_t[4]", list(ctr)), ffi.new("uint32_t[2]", list(key)), out)
    assert tuple(out) == want


def ks(u_sorted, cdf) -> float:
    n = len(u_sorted)
    f = cdf(u_sorted)
    return float(max(np.max(np.arange(1, n + 1) / n - f), np.max(f - np.arange(n) / n)))


KS_LIMIT = 1.95 / math.sqrt(N)  # Kolmogorov-Smirnov at alpha = 0.001


def chi2_bins(x, bins=20) -> float:
    counts = np.bincount(np.minimum((x * bins).astype(int), bins - 1), minlength=bins)
    e = len(x) / bins
    return float(((counts - e) ** 2 / e).sum())


CHI2_19 = 45.0  # chi-square with 19 degrees of freedom at alpha = 0.001 is 43.8


@pytest.mark.parametrize("key", [0, 1, 0xDEADBEEF12345678])
def test_uniform_is_uniform_and_a_biased_one_fails(lib, key):
    u = draw(lib, "onnxc_random_uniform", 0.0, 1.0, key)
    assert u.min() >= 0 and u.max() < 1
    assert ks(np.sort(u), lambda t: t) < KS_LIMIT and chi2_bins(u) < CHI2_19
    biased = u ** 1.05  # a 5% tilt: both tests notice
    assert ks(np.sort(biased), lambda t: t) > KS_LIMIT and chi2_bins(biased) > CHI2_19
    # neighbours are independent (element i and i+1 come from different Philox blocks)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 4 / math.sqrt(N)
    assert not np.array_equal(u, draw(lib, "onnxc_random_uniform", 0.0, 1.0, key + 1))


def test_normal_is_normal(lib):
    z = draw(lib, "onnxc_random_normal", 0.0, 1.0, 7)
    phi = np.vectorize(lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2))))
    assert ks(np.sort(z), phi) < KS_LIMIT
    assert abs(z.mean()) < 4 / math.sqrt(N) and abs(z.var() - 1) < 4 * math.sqrt(2 / N)
    assert ks(np.sort(z * 1.05), phi) > KS_LIMIT  # a 5% too wide one fails
    y = draw(lib, "onnxc_random_normal", 3.0, 0.5, 7, dtype=np.float32, elem=1)
    assert abs(y.mean() - 3) < 4 * 0.5 / math.sqrt(N) and abs(y.std() / 0.5 - 1) < 0.01


def test_bernoulli_and_multinomial_frequencies(lib):
    ffi, dl = lib
    p = np.repeat(np.array([0.0, 0.05, 0.5, 0.95, 1.0]), N // 5)
    y = np.empty(p.size, np.bool_)
    dl.onnxc_bernoulli(11, ffi.cast("void*", p.ctypes.data), 9, ffi.cast("void*", y.ctypes.data), p.size, 3)
    for q in np.unique(p):
        got = y[p == q].mean()
        assert abs(got - q) <= 4.5 * math.sqrt(q * (1 - q) / (N // 5)) + 1e-12, (q, got)
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]], np.float32)) + 5  # unnormalized
    s = N // 2
    out = np.empty((2, s), np.int64)
    scratch = np.empty(4)
    dl.onnxc_multinomial(1, ffi.cast("void*", logits.ctypes.data), 2, 4, s, 7, ffi.cast("void*", out.ctypes.data),
                         11, ffi.cast("double*", scratch.ctypes.data))
    for b, probs in enumerate(([0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1])):
        counts = np.bincount(out[b], minlength=4)
        e = np.array(probs) * s
        assert ((counts - e) ** 2 / e).sum() < 16.3  # chi2(3) at alpha = 0.001


# --- compiled ops ----------------------------------------------------------------------------
def random_model():
    f32, f64 = 1, 11
    nodes = [helper.make_node("RandomUniform", [], ["u_seed"], shape=[64, 64], low=-2.0, high=3.0, seed=5.0),
             helper.make_node("RandomUniform", [], ["u"], shape=[64, 64], dtype=f64),
             helper.make_node("RandomNormal", [], ["n_seed"], shape=[4096], mean=1.0, scale=2.0, seed=5.0,
                              dtype=f64),
             helper.make_node("RandomNormalLike", ["x"], ["nl"]),
             helper.make_node("RandomUniformLike", ["x"], ["ul"], dtype=f64, seed=1.0),
             helper.make_node("Bernoulli", ["p"], ["b_bool"], dtype=9),
             helper.make_node("Bernoulli", ["p"], ["b_i32"], dtype=6, seed=2.0),
             helper.make_node("Bernoulli", ["p"], ["b_f"]),
             helper.make_node("Multinomial", ["logits"], ["m64"], sample_size=2000, dtype=7),
             helper.make_node("Multinomial", ["logits"], ["m32"], sample_size=5, seed=4.0)]
    outs = [("u_seed", np.float32, [64, 64]), ("u", np.float64, [64, 64]), ("n_seed", np.float64, [4096]),
            ("nl", np.float32, [32, 32]), ("ul", np.float64, [32, 32]), ("b_bool", np.bool_, [1000]),
            ("b_i32", np.int32, [1000]), ("b_f", np.float64, [1000]), ("m64", np.int64, [2, 2000]),
            ("m32", np.int32, [2, 5])]
    return make_model(nodes, [("x", np.float32, [32, 32]), ("p", np.float64, [1000]), ("logits", np.float32, [2, 3])],
                      outs)


def test_random_ops_compiled(tmp_path):
    m = compile_c(random_model(), tmp_path / "m")
    assert m.fallback_nodes == []
    p = np.linspace(0, 1, 1000)
    feed = {"x": np.zeros((32, 32), np.float32), "p": p,
            "logits": np.array([[0, 0, np.log(2)], [-np.inf, 0, -np.inf]], np.float32)}
    a, b = m.run(None, feed), m.run(None, feed)
    names = ["u_seed", "u", "n_seed", "nl", "ul", "b_bool", "b_i32", "b_f", "m64", "m32"]
    r = dict(zip(names, a))
    seeded = {"u_seed", "n_seed", "ul", "b_i32", "m32"}
    for k, name in enumerate(names):  # a seed: the same draws; none: fresh ones every run
        assert np.array_equal(a[k], b[k]) == (name in seeded), name
    again = onnxc.load(tmp_path / "m").run(None, feed)  # and on another load
    assert all(np.array_equal(a[k], again[k]) for k, n in enumerate(names) if n in seeded)
    u = r["u_seed"]
    assert u.min() >= -2 and u.max() < 3 and abs(u.mean() - 0.5) < 0.1
    assert abs(r["n_seed"].mean() - 1) < 0.15 and abs(r["n_seed"].std() - 2) < 0.1
    assert abs(r["nl"].mean()) < 0.15 and abs(r["ul"].mean() - 0.5) < 0.05
    for name in ("b_bool", "b_i32", "b_f"):
        y = r[name].astype(np.float64)
        assert set(np.unique(y)) <= {0.0, 1.0} and y[0] == 0 and y[-1] == 1
        assert abs(y.mean() - 0.5) < 0.06  # mean of p
    m64 = r["m64"]
    assert np.bincount(m64[0], minlength=3).tolist()[2] > 700 and set(np.unique(m64[1])) == {1}
    assert r["m32"].dtype == np.int32 and r["m32"].min() >= 0 and r["m32"].max() <= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_training(dtype, tmp_path):
    nodes = [helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=3),
             helper.make_node("Dropout", ["x", "r", "t"], ["y2"])]
    model = make_model(nodes, [("x", dtype, [50, 40]), ("r", np.float32, []), ("t", np.bool_, [])],
                       [("y", dtype, [50, 40]), ("mask", np.bool_, [50, 40]), ("y2", dtype, [50, 40])])
    m = compile_c(model, tmp_path / "d")
    x = np.random.default_rng(0).standard_normal((50, 40)).astype(dtype)
    for ratio in (0.25, 0.75):
        feed = {"x": x, "r": np.array(ratio, np.float32), "t": np.array(True)}
        y, mask, y2 = m.run(None, feed)
        scale = dtype(np.float32(1) / (np.float32(1) - np.float32(ratio)))
        np.testing.assert_array_equal(y, np.where(mask, x * scale, 0).astype(dtype))
        assert abs(mask.mean() - (1 - ratio)) < 4.5 * math.sqrt(ratio * (1 - ratio) / mask.size)
        assert np.array_equal(m.run(None, feed)[1], mask)  # seeded
        assert abs((y2 != 0).mean() - (1 - ratio)) < 0.05 and not np.array_equal(m.run(None, feed)[2], y2)
    for feed in ({"x": x, "r": np.array(0.0, np.float32), "t": np.array(True)},
                 {"x": x, "r": np.array(0.5, np.float32), "t": np.array(False)}):
        y, mask, y2 = m.run(None, feed)  # ratio 0 or inference: the identity, all kept
        assert np.array_equal(y, x) and mask.all() and np.array_equal(y2, x)
