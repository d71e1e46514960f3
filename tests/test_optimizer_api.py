"""The optimizer's user-facing side: onnxc.optimize / --save-optimized write a valid ONNX model
that computes what the source computes, and `onnxc inspect --passes` explains the rewrites."""
import numpy as np
import onnx
from onnx import helper

import onnxc
from helpers import make_model, ort_run
from onnxc.cli import main as cli_main


def small_cnn():
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Identity", ["x"], ["xi"]),
             helper.make_node("Conv", ["xi", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["y"])]
    inits = {"w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "s": np.ones(8, np.float32) * 1.5,
             "b": np.full(8, 0.1, np.float32), "m": rng.standard_normal(8).astype(np.float32),
             "v": np.full(8, 2.0, np.float32)}
    model = make_model(nodes, [("x", np.float32, [1, 3, 8, 8])], [("y", np.float32, [1, 8, 8, 8])], inits)
    return model, {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32)}


def test_optimize_returns_valid_model_with_original_io_names(tmp_path):
    model, feed = small_cnn()
    for level in ("none", "basic", "extended", "layout"):
        opt = onnxc.optimize(model, opt_level=level, save_to=tmp_path / f"{level}.onnx")
        onnx.checker.check_model(opt)
        assert [i.name for i in opt.graph.input] == ["x"] and [o.name for o in opt.graph.output] == ["y"]
        assert onnx.load(str(tmp_path / f"{level}.onnx")).graph.node
        if level == "basic":  # standard ops only: onnxruntime runs the saved model
            assert "Identity" not in [n.op_type for n in opt.graph.node]
            np.testing.assert_allclose(ort_run(opt, feed)[0], ort_run(model, feed)[0], rtol=1e-5, atol=1e-5)
        if level != "none":
            assert len(opt.graph.node) < len(model.graph.node)


def test_cli_save_optimized_and_inspect_passes(tmp_path, capsys):
    model, feed = small_cnn()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    saved = tmp_path / "opt" / "m.opt.onnx"
    assert cli_main(["compile", str(path), "-o", str(tmp_path / "o"), "--save-optimized", str(saved)]) == 0
    onnx.checker.check_model(onnx.load(str(saved)))
    again = tmp_path / "again.onnx"  # the build is cached now: the passes run just for the file
    assert cli_main(["compile", str(path), "-o", str(tmp_path / "o"), "--save-optimized", str(again)]) == 0
    assert again.read_bytes() == saved.read_bytes()
    assert cli_main(["inspect", str(path), "--passes", "-v"]) == 0
    out = capsys.readouterr().out
    assert "constant_folding" in out and "dead_code_elimination" in out
    total = [line.split() for line in out.splitlines() if line.startswith("total")][0]
    assert int(total[1]) == 4 and int(total[2]) < 4


def test_saved_model_does_not_equate_unrelated_unknown_dims():
    """Two Range outputs of data-dependent lengths (3 and 5 here): shape inference names each
    unknown length, and the saved model must not give them one shared symbol, or onnxruntime
    plans them as equal ("Shape mismatch attempting to re-use buffer", seen on MiniLM)."""
    one = np.array(1.0, np.float32)
    nodes = [helper.make_node("Range", ["zero", "n", "one"], ["ra"]),
             helper.make_node("Range", ["zero", "m", "one"], ["rb"]),
             helper.make_node("Relu", ["ra"], ["a"]), helper.make_node("Relu", ["rb"], ["b"])]
    model = make_model(nodes, [("n", np.float32, []), ("m", np.float32, [])],
                       [("a", np.float32, None), ("b", np.float32, None)], {"zero": 0 * one, "one": one})
    opt = onnxc.optimize(model, opt_level="basic")
    dims = [d.dim_param for vi in list(opt.graph.value_info) + list(opt.graph.output)
            for d in vi.type.tensor_type.shape.dim if d.dim_param]
    assert len(dims) == len(set(dims)), dims
    feed = {"n": np.array(3, np.float32), "m": np.array(5, np.float32)}
    a, b = ort_run(opt, feed)
    np.testing.assert_array_equal(a, np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(b, np.arange(5, dtype=np.float32))
