"""ai.onnx.ml ops in C: Binarizer and ArrayFeatureExtractor against onnxruntime and
onnx.reference, their edges (threshold ties, infinities, NaN; index shapes, ranks, out-of-range
indices) and what stays outside C."""
import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import compile_c, ort_run

RNG = np.random.default_rng(17)


def _model(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), s)
                                           for n, t, s in inputs],
                              [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), s)
                               for n, t, s in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [None, 0.5, -1e30, 0.1])
def test_binarizer(dtype, threshold, tmp_path):
    x = RNG.standard_normal((3, 4, 5)).astype(dtype)
    x.reshape(-1)[:6] = [0.5, 0.1, np.inf, -np.inf, 0.0, -0.0]
    attrs = {} if threshold is None else {"threshold": threshold}
    model = _model([helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", **attrs)],
                   [("x", dtype, [3, 4, 5])], [("y", dtype, [3, 4, 5])])
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    assert got.dtype == dtype
    if dtype == np.float32:  # onnxruntime's Binarizer is float32 only
        np.testing.assert_array_equal(got, ort_run(model, {"x": x})[0])
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])
    x[0, 0, 0] = np.nan  # onnxruntime refuses it; the comparison is false: 0, as the reference
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    assert got[0, 0, 0] == 0
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])


def test_binarizer_integers_stay_outside_c(tmp_path):
    model = _model([helper.make_node("Binarizer", ["x"], ["y"], domain="ai.onnx.ml", threshold=2.5)],
                   [("x", np.int64, [4])], [("y", np.int64, [4])])
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    assert m.fallback_nodes and "int64" in m.fallback_nodes[0]["why"]


AFE_CASES = [((3, 4), (2,), np.float32), ((5,), (3,), np.int64), ((2, 3, 6), (1, 4), np.float64),
             ((2, 3), (2, 2), np.int32), ((4, 1), (3,), np.float32)]


@pytest.mark.parametrize("xs,ishape,dtype", AFE_CASES)
def test_array_feature_extractor(xs, ishape, dtype, tmp_path):
    x = (RNG.standard_normal(xs) * 100).astype(dtype)
    idx = RNG.integers(0, xs[-1], ishape).astype(np.int64)
    k = int(np.prod(ishape))
    out = [1, k] if len(xs) == 1 else list(xs[:-1]) + [k]
    model = _model([helper.make_node("ArrayFeatureExtractor", ["x", "i"], ["y"], domain="ai.onnx.ml")],
                   [("x", dtype, list(xs)), ("i", np.int64, list(ishape))],
                   [("y", dtype, [f"d{j}" for j in range(len(out))])])  # symbolic: ops/ml.py's shape rule
    got = compile_c(model, tmp_path / "o").run(None, {"x": x, "i": idx})[0]
    assert list(got.shape) == out and got.dtype == dtype
    np.testing.assert_array_equal(got, ort_run(model, {"x": x, "i": idx})[0])
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x, "i": idx})[0])


@pytest.mark.parametrize("bad,pos", [([0, 4], 1), ([-1, 2], 0)])
def test_array_feature_extractor_bad_index(bad, pos, tmp_path):
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    node = helper.make_node("ArrayFeatureExtractor", ["x", "i"], ["y"], domain="ai.onnx.ml", name="afe")
    m = compile_c(_model([node], [("x", np.float32, [3, 4]), ("i", np.int64, [2])], [("y", np.float32, [3, 2])]),
                  tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=rf"^node 'afe' \(ArrayFeatureExtractor\): index {bad[pos]} out of "
                                               rf"range \[0, 3\] .*at i\[{pos}\]$"):
        m.run(None, {"x": x, "i": np.array(bad, np.int64)})
