"""Calibration sources: feed iterables, .npy/.npz folders, per-input sub-folders, image folders."""
import builtins

import numpy as np
import pytest

import onnxc
from onnxc.quantize import ImageSpec
from onnxc.quantize.data import count, digest, feeds

X = [("x", (1, 3, 8, 8), np.dtype(np.float32))]


def test_iterables_arrays_and_generators():
    a = [np.full((1, 3, 8, 8), i, np.float32) for i in range(3)]
    got = list(feeds([{"x": v} for v in a], X))
    assert [float(f["x"][0, 0, 0, 0]) for f in got] == [0, 1, 2]
    assert len(list(feeds(iter(a), X))) == 3  # bare arrays for a one-input model
    assert len(list(feeds(a, X, limit=2))) == 2
    with pytest.raises(onnxc.InputError, match="one dict"):
        list(feeds({"x": a[0]}, X))
    with pytest.raises(onnxc.InputError, match="float32"):
        list(feeds([{"x": np.zeros((1, 3, 8, 8), np.int64)}], X))
    # float64 feeds are cast to the input's float32
    assert list(feeds([{"x": np.zeros((1, 3, 8, 8))}], X))[0]["x"].dtype == np.float32


def test_npy_npz_and_subfolders(tmp_path):
    d = tmp_path / "npy"
    d.mkdir()
    for i in range(3):
        np.save(d / f"{i}.npy", np.full((1, 3, 8, 8), i, np.float32))
    assert count(d) == 3
    assert [float(f["x"].flat[0]) for f in feeds(d, X)] == [0, 1, 2]
    z = tmp_path / "npz"
    z.mkdir()
    for i in range(2):
        np.savez(z / f"{i}.npz", a=np.full((2, 4), i, np.float32), b=np.arange(4, dtype=np.int64)[None])
    two = [("a", (2, 4), np.dtype(np.float32)), ("b", (1, 4), np.dtype(np.int64))]
    got = list(feeds(z, two))
    assert len(got) == 2 and got[1]["a"][0, 0] == 1 and got[0]["b"].dtype == np.int64
    with pytest.raises(onnxc.InputError, match="one .npy array"):
        list(feeds(d, two))
    s = tmp_path / "sub"
    for name in ("a", "b"):
        (s / name).mkdir(parents=True)
        for i in range(2):
            np.save(s / name / f"{i}.npy", np.zeros((2, 4) if name == "a" else (1, 4),
                                                    np.float32 if name == "a" else np.int64))
    assert len(list(feeds(s, two))) == 2
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", np.zeros(3))
    np.savez(mixed / "b.npz", x=np.zeros(3))
    with pytest.raises(onnxc.InputError, match="mixes"):
        list(feeds(mixed, X))
    with pytest.raises(onnxc.InputError, match="does not exist"):
        list(feeds(tmp_path / "nope", X))
    # digests follow the content
    before = digest(d)[1]
    assert before == digest(d)[1] != digest(z)[1]
    np.save(d / "0.npy", np.full((1, 3, 8, 8), 7, np.float32))
    assert digest(d)[1] != before


def _images(tmp_path):
    from PIL import Image
    d = tmp_path / "img"
    d.mkdir()
    rng = np.random.default_rng(0)
    arrs = []
    for i, size in enumerate([(40, 30), (20, 50)]):  # (h, w)
        a = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        Image.fromarray(a).save(d / f"{i}.png")
        arrs.append(a)
    return d, arrs


def test_image_folder_with_spec(tmp_path):
    pytest.importorskip("PIL")
    from PIL import Image
    d, arrs = _images(tmp_path)
    spec = ImageSpec.parse("resize=24 crop=16 mean=0.5,0.4,0.3 std=0.2,0.25,0.3 layout=nchw")
    got = list(feeds(d, [("x", (1, 3, 16, 16), np.dtype(np.float32))], spec))
    assert len(got) == 2 and got[0]["x"].shape == (1, 3, 16, 16)
    # by hand for the first image: shorter side 30 -> 24 (h 40 -> 32), center crop, normalize, NCHW
    im = Image.fromarray(arrs[0]).resize((24, 32), Image.BILINEAR)
    a = np.asarray(im, np.float32)[8:24, 4:20] / 255.0
    ref = ((a - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.3]).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got[0]["x"], ref, rtol=1e-5, atol=1e-5)
    # Caffe style: exact resize, BGR, 0..255 pixels, NHWC (open_nsfw's preprocessing)
    caffe = ImageSpec.parse("resize=20x20 crop=16 pixels=255 mean=104,117,123 order=bgr layout=NHWC")
    g2 = list(feeds(d, [("x", (1, 16, 16, 3), np.dtype(np.float32))], caffe))
    im = np.asarray(Image.fromarray(arrs[1]).resize((20, 20), Image.BILINEAR), np.float32)[2:18, 2:18, ::-1]
    np.testing.assert_allclose(g2[1]["x"][0], im - [104, 117, 123], atol=1e-4)
    with pytest.raises(onnxc.InputError, match="model input is"):
        list(feeds(d, [("x", (1, 3, 16, 16), np.dtype(np.float32))], ImageSpec(resize=(20, 20))))
    with pytest.raises(onnxc.InputError, match="unknown key"):
        ImageSpec.parse("size=3")


def test_images_without_pillow_are_refused_clearly(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    d, _ = _images(tmp_path)
    real = builtins.__import__

    def no_pil(name, *a, **k):
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(onnxc.UnsupportedError, match="needs Pillow"):
        list(feeds(d, [("x", (1, 3, 16, 16), np.dtype(np.float32))]))


def test_quantize_from_an_image_folder(tmp_path):
    pytest.importorskip("PIL")
    from qmodels import small_cnn
    d, _ = _images(tmp_path)
    q, res = onnxc.quantize(small_cnn(), calibration=d, preprocess="resize=16x16", engine="reference",
                            return_result=True)
    assert res.calibration_feeds == 2 and len(res.layers) == 3


def test_feed_reader_drives_onnxruntimes_quantize_static(tmp_path):
    """FeedReader: onnxruntime's CalibrationDataReader protocol over feed dicts (the tests and
    benchmarks give onnxruntime's quantizer the same data as onnxc's through it)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from onnxc.quantize.data import FeedReader
    from qmodels import cnn_feeds, small_cnn
    fs = cnn_feeds(4)
    r = FeedReader(iter(fs))  # a one-shot generator is kept
    assert isinstance(r, CalibrationDataReader) and len(r) == 4
    assert [f["x"] is g["x"] for f, g in zip(r, fs)] == [True] * 4 and r.get_next() is None
    r.set_range(1, 3)
    assert [f["x"] is g["x"] for f, g in zip(r, fs[1:3])] == [True] * 2 and r.get_next() is None
    r.rewind()
    model = small_cnn()
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    quantize_static(str(path), str(tmp_path / "q.onnx"), r, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    import onnx
    q = onnx.load(tmp_path / "q.onnx")
    assert sum(n.op_type == "QuantizeLinear" for n in q.graph.node) >= 3 and r.get_next() is None
    # its ranges are the feeds': the input's QuantizeLinear covers every calibration value
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    ql = next(n for n in q.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x")
    lo = min(float(f["x"].min()) for f in fs)
    assert abs(float(inits[ql.input[1]]) * -float(inits[ql.input[2]]) - lo) <= float(inits[ql.input[1]])
