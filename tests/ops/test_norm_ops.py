"""InstanceNormalization, GroupNormalization, LpNormalization, MeanVarianceNormalization
compiled to C, against onnxruntime."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from helpers import compile_c, make_model, ort_run

RNG = np.random.default_rng(0)


def check(node, feed, inits, tmp_path, opset=18, rtol=1e-5, atol=1e-5, oracle="ort"):
    x = feed["x"]
    model = make_model([node], [(n, a.dtype, list(a.shape)) for n, a in feed.items()],
                       [("y", x.dtype, list(x.shape))], inits, opset=opset)
    ref = (ort_run(model, feed) if oracle == "ort" else ReferenceEvaluator(model).run(None, feed))[0]
    got = compile_c(model, tmp_path / "o").run(None, feed)[0]
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


def data(shape, dtype=np.float32, offset=3.0):
    # a non-zero mean checks that the variance is not lost to cancellation
    return (RNG.standard_normal(shape) * 2 + offset).astype(dtype)


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 4, 7), (2, 3, 2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_instance_norm(shape, dtype, tmp_path):
    c = shape[1]
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)
    oracle = "ort" if dtype == np.float32 else "reference"  # onnxruntime has no float64 kernel
    check(node, {"x": data(shape, dtype)}, {"s": data((c,), dtype), "b": data((c,), dtype)}, tmp_path,
          oracle=oracle, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_instance_norm_runtime_scale(tmp_path):
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"])
    check(node, {"x": data((2, 3, 4, 4)), "s": data((3,)), "b": data((3,))}, {}, tmp_path)


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_norm(groups, tmp_path):
    shape = (2, 6, 3, 5)
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], num_groups=groups, epsilon=1e-4)
    check(node, {"x": data(shape)}, {"s": data((6,)), "b": data((6,))}, tmp_path, opset=21)


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("p", [1, 2])
def test_lp_norm(axis, p, tmp_path):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    x[1, :, 2] = 0  # zero norms along every axis choice give 0
    x[:, 3, 4] = 0
    x[2, 1, :] = 0
    x[:, :, 0] = 0
    node = helper.make_node("LpNormalization", ["x"], ["y"], axis=axis, p=p)
    check(node, {"x": x}, {}, tmp_path)


@pytest.mark.parametrize("axes", [None, [2, 3], [0, 1, 2, 3], [1]])
def test_mvn(axes, tmp_path):
    attrs = {} if axes is None else {"axes": axes}
    node = helper.make_node("MeanVarianceNormalization", ["x"], ["y"], **attrs)
    check(node, {"x": data((2, 3, 4, 5))}, {}, tmp_path, rtol=1e-4)


def test_mvn_constant_input(tmp_path):
    # zero variance: the ONNX function gives (x - mean) / (0 + 1e-9) = 0 (onnxruntime's kernel
    # divides by 0 and returns NaN), so onnx.reference is the oracle
    node = helper.make_node("MeanVarianceNormalization", ["x"], ["y"])
    check(node, {"x": np.full((2, 3, 2, 2), 1.5, np.float32)}, {}, tmp_path, oracle="reference")
