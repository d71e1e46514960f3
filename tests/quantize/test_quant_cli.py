"""onnxc quantize and onnxc inspect --quant-report from the command line."""
import numpy as np
import onnx

from onnxc.cli import main
from helpers import ort_run
from qmodels import cnn_feeds, mlp, small_cnn


def test_cli_quantize_static_and_report(tmp_path, capsys):
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    cal = tmp_path / "cal"
    cal.mkdir()
    for i, f in enumerate(cnn_feeds(4)):
        np.save(cal / f"{i}.npy", f["x"])
    out = tmp_path / "m.int8.onnx"
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calibration", str(cal), "-o", str(out),
                 "--method", "percentile", "--engine", "reference", "--exclude", "conv2", "-v"]) == 0
    o = capsys.readouterr()
    assert "quantized 2 layer(s)" in o.out and "percentile" in o.out and "Conv 'conv2' (excluded)" in o.out
    assert "calibration [" in o.err and "4/4" in o.err  # progress bar over the batches
    q = onnx.load(out)
    onnx.checker.check_model(q)
    ort_run(q, cnn_feeds(1)[0])
    assert main(["inspect", str(tmp_path / "m.onnx"), "--quant-report", "--calibration", str(cal),
                 "--engine", "reference"]) == 0
    o = capsys.readouterr().out
    lines = o.splitlines()
    assert lines[0].startswith("per-layer quantization error over 4 feed(s)")
    vals = [float(l.split()[2]) for l in lines[2:5]]
    assert vals == sorted(vals) and "model output 'y'" in o


def test_cli_dynamic_and_target(tmp_path, capsys):
    onnx.save(mlp(seq=3), tmp_path / "t.onnx")
    assert main(["quantize", str(tmp_path / "t.onnx"), "--dynamic", "-o", str(tmp_path / "t.int8.onnx")]) == 0
    assert "uint8 at run time, per token" in capsys.readouterr().out
    ops = [n.op_type for n in onnx.load(tmp_path / "t.int8.onnx").graph.node]
    assert ops.count("MatMulInteger") == 3 and "DynamicQuantizeLinear" not in ops
    assert main(["quantize", str(tmp_path / "t.onnx"), "--dynamic", "--per-tensor-activations", "-o",
                 str(tmp_path / "t2.int8.onnx")]) == 0
    assert "uint8 at run time, per tensor" in capsys.readouterr().out
    ops = [n.op_type for n in onnx.load(tmp_path / "t2.int8.onnx").graph.node]
    assert ops.count("MatMulInteger") == 3 and ops.count("DynamicQuantizeLinear") == 3
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    cal = tmp_path / "cal"
    cal.mkdir()
    for i, f in enumerate(cnn_feeds(3)):
        np.savez(cal / f"{i}.npz", **f)
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calibration", str(cal), "-o", str(tmp_path / "x.onnx"),
                 "--target", "sqnr:20", "--engine", "reference", "--report"]) == 0
    o = capsys.readouterr().out
    assert "accuracy target sqnr>=20: met" in o and "per-layer quantization error" in o


def test_cli_static_without_data_is_refused(tmp_path):
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    try:
        main(["quantize", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "y.onnx")])
    except SystemExit as e:
        assert "needs --calibration" in str(e)
    else:
        raise AssertionError("static quantization without data must be refused")


def test_cli_quantize_from_an_image_folder(tmp_path, capsys):
    """--calibration DIR of images with --preprocess: every image is one calibration batch, and
    the ranges are those of the preprocessed pixels (mean 0.5, std 0.25 on 0..1 pixels)."""
    import pytest
    pytest.importorskip("PIL")
    from PIL import Image
    onnx.save(small_cnn(), tmp_path / "m.onnx")
    cal = tmp_path / "images"
    cal.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8)).save(cal / f"{i}.png")
    out = tmp_path / "m.int8.onnx"
    assert main(["quantize", str(tmp_path / "m.onnx"), "--calibration", str(cal), "-o", str(out), "--engine",
                 "reference", "--preprocess", "resize=16x16 mean=0.5 std=0.25", "-v"]) == 0
    o = capsys.readouterr()
    assert "over 3 feed(s)" in o.out and "3/3" in o.err
    lo, hi = [float(x) for x in o.out.split("Conv 'conv1': uint8 asymmetric range [")[1].split("]")[0].split(",")]
    assert -2.0 <= lo < -1.0 and 1.0 < hi <= 2.0  # (0..1 - 0.5) / 0.25, as far as the pixels reach
    ort_run(onnx.load(out), cnn_feeds(1)[0])
