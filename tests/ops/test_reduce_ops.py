"""Reductions and softmax family against onnxruntime."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import check_against_ort, make_model

RNG = np.random.default_rng(0)


def check(model, feed, tmp_path, rtol=1e-5, atol=1e-6):
    check_against_ort(model, feed, tmp_path / "o", rtol, atol)


REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
          "ReduceLogSumExp", "ReduceSumSquare"]


@pytest.mark.parametrize("op", REDUCE)
@pytest.mark.parametrize("axes,keepdims", [([1], 1), ([-1, 0], 0), (None, 1), ([0, 2], 0)])
def test_reduce_float(op, axes, keepdims, tmp_path):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    if op in ("ReduceProd",):
        x = (x * 0.3 + 1).astype(np.float32)
    inputs, inits = ["x"], {}
    if axes is not None:
        inputs.append("axes")
        inits["axes"] = np.array(axes, np.int64)
    ref_shape = np.sum(x, axis=tuple(axes) if axes else None, keepdims=bool(keepdims)).shape
    model = make_model([helper.make_node(op, inputs, ["y"], keepdims=keepdims)], [("x", np.float32, [3, 4, 5])],
                       [("y", np.float32, list(ref_shape))], inits)
    check(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin"])
def test_reduce_int64(op, tmp_path):
    x = RNG.integers(-100, 100, (4, 6)).astype(np.int64)
    model = make_model([helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)], [("x", np.int64, [4, 6])],
                       [("y", np.int64, [4])], {"axes": np.array([1], np.int64)})
    check(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, 1, 0), (-1, 0, 1), (1, 1, 1)])
def test_argmax(op, axis, keepdims, last, tmp_path):
    x = RNG.integers(0, 3, (3, 4, 5)).astype(np.float32)  # ties exercise select_last_index
    shape = list(x.shape)
    if keepdims:
        shape[axis] = 1
    else:
        shape.pop(axis)
    model = make_model([helper.make_node(op, ["x"], ["y"], axis=axis, keepdims=keepdims, select_last_index=last)],
                       [("x", np.float32, [3, 4, 5])], [("y", np.int64, shape)])
    check(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax(op, axis, dtype, tmp_path):
    if op == "Hardmax" and dtype == np.float64:
        pytest.skip("onnxruntime has no float64 Hardmax kernel to compare with")
    x = (RNG.standard_normal((2, 3, 4)) * 5).astype(dtype)
    model = make_model([helper.make_node(op, ["x"], ["y"], axis=axis)], [("x", dtype, [2, 3, 4])],
                       [("y", dtype, [2, 3, 4])])
    check(model, {"x": x}, tmp_path)


def test_softmax_opset11_coerces_to_2d(tmp_path):
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [("x", np.float32, [2, 3, 4])],
                       [("y", np.float32, [2, 3, 4])], opset=11)
    check(model, {"x": x}, tmp_path)


@pytest.mark.parametrize("axis", [-1, 1])
@pytest.mark.parametrize("with_bias", [True, False])
def test_layernorm(axis, with_bias, tmp_path):
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    tail = x.shape[axis:]
    inits = {"s": RNG.standard_normal(tail).astype(np.float32)}
    ins = ["x", "s"]
    if with_bias:
        inits["b"] = RNG.standard_normal(tail).astype(np.float32)
        ins.append("b")
    model = make_model([helper.make_node("LayerNormalization", ins, ["y"], axis=axis, epsilon=1e-3)],
                       [("x", np.float32, [2, 3, 8])], [("y", np.float32, [2, 3, 8])], inits)
    check(model, {"x": x}, tmp_path, rtol=1e-4, atol=1e-5)


def test_layernorm_mean_invstd_outputs(tmp_path):
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    model = make_model([helper.make_node("LayerNormalization", ["x", "s"], ["y", "mean", "inv"], axis=1)],
                       [("x", np.float32, [2, 3, 8])],
                       [("y", np.float32, [2, 3, 8]), ("mean", np.float32, [2, 1, 1]), ("inv", np.float32, [2, 1, 1])],
                       {"s": RNG.standard_normal((3, 8)).astype(np.float32)})
    check(model, {"x": x}, tmp_path, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1])
def test_rmsnorm_matches_numpy(axis, tmp_path):
    import onnxc
    x = RNG.standard_normal((2, 3, 8)).astype(np.float32)
    s = RNG.standard_normal(x.shape[axis:]).astype(np.float32)
    model = make_model([helper.make_node("RMSNormalization", ["x", "s"], ["y"], axis=axis, epsilon=1e-3)],
                       [("x", np.float32, [2, 3, 8])], [("y", np.float32, [2, 3, 8])], {"s": s}, opset=23)
    y = onnxc.compile(model, output_dir=tmp_path / "o").run(None, {"x": x})[0]
    axes = tuple(range(axis % 3, 3))
    ref = x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=axes, keepdims=True) + 1e-3) * s
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_reductions_wrap_like_numpy(dtype, tmp_path):
    # int64 accumulators overflowed (undefined in C) for int64 data and for products: integer
    # reductions accumulate in uint64_t and wrap as numpy does in the element type
    info = np.iinfo(dtype)
    x = np.array([[info.max, info.max, 3, -1], [info.min, -1, info.min, 5], [info.max, 2, 2, info.min]], dtype)
    ops = ["ReduceSum", "ReduceProd", "ReduceSumSquare", "ReduceL1"]
    nodes = [helper.make_node(op, ["x", "axes"], [op], keepdims=0) for op in ops]
    model = make_model(nodes, [("x", dtype, [3, 4])], [(op, dtype, [3]) for op in ops], {"axes": np.array([1], np.int64)})
    with np.errstate(over="ignore"):
        want = [x.sum(1, dtype=dtype), x.prod(1, dtype=dtype), (x * x).sum(1, dtype=dtype), np.abs(x).sum(1, dtype=dtype)]
    got = onnxc.compile(model, output_dir=tmp_path / "o").run(None, {"x": x})
    for op, g, w in zip(ops, got, want):
        np.testing.assert_array_equal(g, w, err_msg=op)


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("shape,axes,keepdims", [((4, 2), [1], 1), ((3, 4, 5), [-1, 0], 0), ((3, 4, 5), None, 1),
                                                 ((2, 0, 4), [1], 1), ((2, 0, 4), [0], 0), ((6,), [0], 0)])
def test_reduce_max_min_bool(op, shape, axes, keepdims, tmp_path):
    """Opset 20's bool ReduceMax (any) and ReduceMin (all), in C; an empty reduced set gives the
    type's lowest (False) / highest (True) value, as the spec says."""
    from onnx.reference import ReferenceEvaluator
    x = RNG.random(shape) < 0.5
    if len(shape) == 3 and 0 not in shape:
        x[0] = True  # some all-true and all-false rows
        x[1] = False
    inputs, inits = ["x"], {}
    if axes is not None:
        inputs.append("axes")
        inits["axes"] = np.array(axes, np.int64)
    fn = np.any if op == "ReduceMax" else np.all
    want = fn(x, axis=tuple(axes) if axes else None, keepdims=bool(keepdims))
    model = make_model([helper.make_node(op, inputs, ["y"], keepdims=keepdims)], [("x", np.bool_, list(shape))],
                       [("y", np.bool_, list(want.shape))], inits, opset=20)
    got = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False).run(None, {"x": x})[0]
    assert got.dtype == np.bool_
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x})[0])
