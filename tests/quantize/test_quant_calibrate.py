"""Calibration methods against hand-computed ranges; the numbers of quantization."""
import numpy as np
import pytest

from onnxc.quantize import calibrate, qdq
from onnxc.quantize.calibrate import BINS, Collector, TensorStats, entropy_threshold


def test_minmax_over_batches():
    c = Collector(["t"], "minmax")
    c.add({"t": np.array([0.5, -1.0, 2.0], np.float32)})
    c.add({"t": np.array([[3.0, -0.25]], np.float32)})
    c.add({"t": np.array([np.nan, np.inf, 1.0], np.float32)})  # non-finite values are not ranges
    assert c.ranges() == {"t": (-1.0, 3.0)}


def test_histogram_doubling_is_exact():
    """Bins merged as the range grows equal binning everything at the final width."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(1000).astype(np.float32) * s for s in (0.1, 1.0, 7.0, 0.5)]
    st = TensorStats(hist=True)
    for b in batches:
        st.add(b)
    allv = np.concatenate(batches)
    assert st.width == pytest.approx(np.abs(batches[0]).max() / (BINS - 1) * 2 ** round(np.log2(
        st.width / (np.abs(batches[0]).max() / (BINS - 1)))))
    for sign, counts in ((allv >= 0, st.pos), (allv < 0, st.neg)):
        idx = np.minimum((np.abs(allv[sign]) / st.width).astype(np.int64), BINS - 1)
        direct = np.bincount(idx, minlength=BINS)
        # floor(floor(v / w0) / 2^k) == floor(v / (w0 2^k)): at most float rounding at bin edges
        assert np.abs(direct - counts).sum() <= 2
    assert st.pos.sum() + st.neg.sum() == allv.size
    assert (st.pos[BINS // 2:] > 0).any() or (st.neg[BINS // 2:] > 0).any()  # more than half the bins used


def test_percentile_hand_computed():
    # 100000 values 0..99999 (uniform), one huge outlier: the 99.9th percentile edge is ~99900
    v = np.arange(100000, dtype=np.float32)
    st = TensorStats(hist=True)
    st.add(np.concatenate([v, [1e7]]).astype(np.float32))
    lo, hi = st.range("percentile", 99.9)
    assert lo == 0.0
    assert abs(hi - 99900) <= 2 * st.width
    lo2, hi2 = st.range("minmax")
    assert (lo2, hi2) == (0.0, 1e7)
    # both signs: each side keeps its own share
    st2 = TensorStats(hist=True)
    st2.add(np.concatenate([v, -v[:50000] * 2, [5e6, -5e6]]).astype(np.float32))
    lo, hi = st2.range("percentile", 99.9)
    assert abs(hi - 99900) <= 2 * st2.width
    assert abs(lo + 99900) <= 2 * st2.width  # 99.9% of 0..99998 step 2


def test_entropy_clips_outliers_not_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(200000).astype(np.float32)
    st = TensorStats(hist=True)
    st.add(np.concatenate([x, [60.0, -60.0]]).astype(np.float32))
    lo, hi = st.range("entropy")
    assert 2.5 < hi < 12 and lo == -hi  # far inside the outliers, past most of the mass
    # uniform data without outliers: nothing to clip, the threshold stays at the maximum
    u = TensorStats(hist=True)
    u.add(rng.uniform(0, 1, 100000).astype(np.float32))
    lo, hi = u.range("entropy")
    assert 0.0 <= lo < 1e-3 and hi > 0.97  # lo: the smallest value seen (the range is widened to 0 later)


def test_entropy_threshold_few_bins():
    h = np.zeros(BINS)
    h[:100] = 5
    assert entropy_threshold(h, 0.5, 128) == 50.0  # fewer occupied bins than levels: keep all


@pytest.mark.parametrize("lo,hi,kind,scale,zp", [
    (-1.0, 3.0, "uint8", 4.0 / 255, 64),     # zp = round(1 / (4/255)) = round(63.75)
    (0.5, 2.0, "uint8", 2.0 / 255, 0),       # widened to hold 0
    (-2.0, -0.5, "uint8", 2.0 / 255, 255),
    (-1.0, 3.0, "int8", 3.0 / 127, 0),
    (0.0, 0.0, "uint8", 1.0, 0),
])
def test_activation_params(lo, hi, kind, scale, zp):
    s, z = qdq.activation_params(lo, hi, kind)
    assert s.dtype == np.float32 and z.dtype == np.dtype(kind)
    assert float(s) == pytest.approx(scale, rel=1e-6)
    assert int(z) == zp


def test_weight_quantization_per_channel_and_tensor():
    w = np.array([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [-2.0, 4.0, 1.0]], np.float32)
    q, s = qdq.quantize_weight(w, 0)
    np.testing.assert_allclose(s, [1 / 127, 1.0, 4 / 127], rtol=1e-6)
    np.testing.assert_array_equal(q[0], [127, -64, 32])  # -63.5 rounds to even (-64), 31.75 -> 32
    np.testing.assert_array_equal(q[1], [0, 0, 0])
    np.testing.assert_array_equal(q[2], [-64, 127, 32])
    q1, s1 = qdq.quantize_weight(w, 1)
    np.testing.assert_allclose(s1, [2 / 127, 4 / 127, 1 / 127], rtol=1e-6)
    np.testing.assert_array_equal(q1[:, 1], [-16, 0, 127])
    qt, st = qdq.quantize_weight(w, None)
    assert st.shape == () and float(st) == pytest.approx(4 / 127)
    qr, sr = qdq.quantize_weight(w, 0, reduce_range=True)
    assert np.abs(qr).max() == 63 and float(sr[2]) == pytest.approx(4 / 63)
    # dequantized error is at most half a step per channel
    d = qdq.dequantize_weight(q, s, 0)
    assert np.all(np.abs(d - w) <= s[:, None] / 2 + 1e-7)


def test_fake_quantize_matches_onnx_semantics():
    s, z = qdq.activation_params(-1.0, 3.0, "uint8")
    x = np.array([-2.0, -1.0, 0.0, 0.01, 1.5, 3.0, 9.0], np.float32)
    got = qdq.fake_quantize(x, s, z)
    q = np.clip(np.rint(x / s) + 64, 0, 255)
    np.testing.assert_array_equal(got, ((q - 64) * s).astype(np.float32))
    assert got[2] == 0.0  # zero is exact


def test_collector_rejects_empty_tensor():
    c = Collector(["t"], "entropy")
    c.add({"t": np.array([np.nan], np.float32)})
    with pytest.raises(ValueError, match="no finite value"):
        c.ranges()


def test_methods_differ_on_outliers():
    rng = np.random.default_rng(3)
    vals = np.concatenate([np.abs(rng.standard_normal(50000)), [80.0]]).astype(np.float32)
    ranges = {}
    for m in ("minmax", "percentile", "entropy"):
        c = calibrate.Collector(["t"], m)
        c.add({"t": vals})
        ranges[m] = c.ranges(99.99)["t"]
    assert ranges["minmax"] == (float(vals.min()), 80.0)
    assert ranges["percentile"][1] < 10 and ranges["entropy"][1] < 20
