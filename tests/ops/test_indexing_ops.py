"""CumSum/CumProd, TopK, ScatterElements/ScatterND, GatherND, OneHot, EyeLike against onnxruntime,
and out-of-range runtime indices (an InputError naming the node, as onnxruntime refuses them, never
a crash; tests/test_runtime_index_checks.py covers every op and value)."""
import numpy as np
import pytest

import onnxc
from onnx import helper

from helpers import check_c, compile_c, make_model, ort_run

RNG = np.random.default_rng(0)


def check(nodes, feed, outputs, tmp_path, inits=None, rtol=1e-6, **kw):
    """helpers.check_c with this file's tighter default rtol."""
    return check_c(nodes, feed, outputs, tmp_path, inits, rtol=rtol, **kw)


def ints(shape, lo, hi, dtype=np.int64):
    return RNG.integers(lo, hi, shape).astype(dtype)


# --- CumSum / CumProd ------------------------------------------------------------------------
@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_cumsum(exclusive, reverse, axis, dtype, tmp_path):
    x = (RNG.standard_normal((3, 4, 5)) * 10).astype(dtype)
    node = helper.make_node("CumSum", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse)
    check([node], {"x": x}, [("y", dtype)], tmp_path, {"ax": np.array(axis, np.int32)}, rtol=1e-5)


@pytest.mark.parametrize("exclusive,reverse", [(0, 0), (1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_cumprod(exclusive, reverse, dtype, tmp_path):
    x = (RNG.uniform(0.5, 1.5, (3, 6)) if dtype == np.float32 else RNG.integers(-3, 4, (3, 6))).astype(dtype)
    node = helper.make_node("CumProd", ["x", "ax"], ["y"], exclusive=exclusive, reverse=reverse)
    model = make_model([node], [("x", dtype, [3, 6])], [("y", dtype, None)], {"ax": np.array(1, np.int64)},
                       opset=26)
    ref = np.cumprod(x[:, ::-1] if reverse else x, axis=1)
    if exclusive:
        ref = np.concatenate([np.ones((3, 1), dtype), ref[:, :-1]], axis=1)
    ref = ref[:, ::-1] if reverse else ref
    out = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    np.testing.assert_allclose(out, ref.astype(dtype), rtol=1e-6)  # onnxruntime has no CumProd yet


def test_cumsum_int_overflow_wraps(tmp_path):
    x = np.array([2**31 - 1, 1, 1], np.int32)
    model = make_model([helper.make_node("CumSum", ["x", "ax"], ["y"])], [("x", np.int32, [3])],
                       [("y", np.int32, None)], {"ax": np.array(0, np.int64)})
    out = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    np.testing.assert_array_equal(out, np.cumsum(x, dtype=np.int32))


# --- TopK ------------------------------------------------------------------------------------
@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("axis,k", [(-1, 3), (0, 2), (1, 5), (1, 0)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_topk(largest, axis, k, dtype, tmp_path):
    x = RNG.integers(0, 4, (4, 5, 6)).astype(dtype)  # many ties: lower index first
    if dtype == np.float32:
        x[0, 1, 2] = x[2, 0, 0] = np.nan
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)
    check([node], {"x": x}, [("v", dtype), ("i", np.int64)], tmp_path, {"k": np.array([k], np.int64)},
          exact=True)


def test_topk_large(tmp_path):
    x = RNG.standard_normal((3, 1000)).astype(np.float32)
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"])
    check([node], {"x": x}, [("v", np.float32), ("i", np.int64)], tmp_path, {"k": np.array([100], np.int64)},
          exact=True)


# --- ScatterElements / ScatterND -------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_scatter_elements(reduction, axis, dtype, tmp_path):
    data = (RNG.standard_normal((4, 5, 3)) * 5).astype(dtype)
    ishape = [3, 4, 2]
    n = data.shape[axis]
    if reduction == "none":  # unique targets per line, so the order of writes does not matter
        ind = np.argsort(RNG.random([*ishape[:axis % 3], n, *ishape[axis % 3 + 1:]]), axis=axis)
        ind = np.take(ind, np.arange(ishape[axis]), axis=axis) - (n if axis == 1 else 0)  # negatives too
    else:
        ind = RNG.integers(-n, n, ishape)
    upd = (RNG.standard_normal(ishape) * 5).astype(dtype)
    node = helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=axis, reduction=reduction)
    check([node], {"d": data, "i": ind.astype(np.int64), "u": upd}, [("y", dtype)], tmp_path, rtol=1e-5)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_scatter_nd(reduction, dtype, tmp_path):
    data = (RNG.standard_normal((4, 3, 5)) * 5).astype(dtype)
    ind = np.array([[[0, 1], [-1, 2]], [[2, 0], [1, -3]]], np.int64)  # unique targets
    if reduction != "none":
        ind[1, 1] = ind[0, 0]  # a repeated target accumulates
    upd = (RNG.standard_normal((2, 2, 5)) * 5).astype(dtype)
    node = helper.make_node("ScatterND", ["d", "i", "u"], ["y"], reduction=reduction)
    check([node], {"d": data, "i": ind, "u": upd}, [("y", dtype)], tmp_path, rtol=1e-5)


def test_scatter_out_of_range_is_refused(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    upd = -np.ones((1, 4), np.float32)
    model = make_model([helper.make_node("ScatterElements", ["d", "i", "u"], ["y"], axis=0, name="se")],
                       [("d", np.float32, [3, 4]), ("i", np.int64, [1, 4]), ("u", np.float32, [1, 4])],
                       [("y", np.float32, None)])
    m = compile_c(model, tmp_path / "a")
    for ind, bad in (([[0, -9, 1, 2]], "-9 .* at i\\[0, 1\\]"), ([[0, 1, 2, 2**40]], f"{2**40} .* at i\\[0, 3\\]")):
        with pytest.raises(onnxc.InputError, match=f"^node 'se' \\(ScatterElements\\): index {bad}$"):
            m.run(None, {"d": data, "i": np.array(ind, np.int64), "u": upd})
    model = make_model([helper.make_node("ScatterND", ["d", "i", "u"], ["y"], name="snd")],
                       [("d", np.float32, [3, 4]), ("i", np.int64, [3, 1]), ("u", np.float32, [3, 4])],
                       [("y", np.float32, None)])
    with pytest.raises(onnxc.InputError, match="^node 'snd' \\(ScatterND\\): index -4 out of range \\[-3, 2\\]"):
        compile_c(model, tmp_path / "b").run(None, {"d": data, "i": np.array([[0], [-4], [-1]], np.int64),
                                                    "u": -np.ones((3, 4), np.float32)})


# --- GatherND --------------------------------------------------------------------------------
@pytest.mark.parametrize("dshape,ishape,batch_dims", [
    ((4, 5, 6), (3, 2), 0), ((4, 5, 6), (2, 3, 3), 0), ((4, 5, 6), (7, 1), 0),
    ((2, 5, 6), (2, 3, 1), 1), ((2, 3, 5, 6), (2, 3, 4, 2), 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_])
def test_gather_nd(dshape, ishape, batch_dims, dtype, tmp_path):
    data = (RNG.standard_normal(dshape) * 5).astype(dtype)
    dims = dshape[batch_dims:batch_dims + ishape[-1]]
    ind = np.stack([RNG.integers(-d, d, ishape[:-1]) for d in dims], axis=-1).astype(np.int64)
    node = helper.make_node("GatherND", ["d", "i"], ["y"], batch_dims=batch_dims)
    check([node], {"d": data, "i": ind}, [("y", dtype)], tmp_path, exact=True)


def test_gather_nd_out_of_range_is_refused(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    model = make_model([helper.make_node("GatherND", ["d", "i"], ["y"], name="gnd")],
                       [("d", np.float32, [3, 4]), ("i", np.int64, [3, 2])], [("y", np.float32, None)])
    m = compile_c(model, tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=r"^node 'gnd' \(GatherND\): index 4 out of range \[-4, 3\] on axis 1 "
                                               r"of input 'd' \(shape \(3, 4\)\), at i\[2, 1\]$"):
        m.run(None, {"d": data, "i": np.array([[0, 0], [-1, -4], [2, 4]], np.int64)})
    out = m.run(None, {"d": data, "i": np.array([[0, 0], [-1, -4], [2, 3]], np.int64)})[0]
    np.testing.assert_array_equal(out, np.array([0, 8, 11], np.float32))


# --- OneHot / EyeLike ------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("idtype,vdtype,ddtype", [  # combinations onnxruntime implements
    (np.int64, np.float32, np.int64), (np.float32, np.float32, np.float32), (np.int32, np.float32, np.int32),
    (np.int64, np.int64, np.int64)])
def test_onehot(axis, idtype, vdtype, ddtype, tmp_path):
    ind = RNG.integers(-12, 12, (3, 4)).astype(idtype)  # some out of [-depth, depth-1]
    node = helper.make_node("OneHot", ["i", "depth", "v"], ["y"], axis=axis)
    feed = {"i": ind, "v": np.array([2, 7], vdtype)}
    check([node], feed, [("y", vdtype)], tmp_path, {"depth": np.array(10, ddtype)}, exact=True)


@pytest.mark.parametrize("shape,k", [((4, 4), 0), ((3, 5), 2), ((5, 3), -1), ((3, 3), 7)])
@pytest.mark.parametrize("dtype", [None, 6, 11])
def test_eyelike(shape, k, dtype, tmp_path):
    attrs = {"k": k} | ({"dtype": dtype} if dtype else {})
    out_dt = {None: np.float32, 6: np.int32, 11: np.float64}[dtype]
    check([helper.make_node("EyeLike", ["x"], ["y"], **attrs)], {"x": np.zeros(shape, np.float32)},
          [("y", out_dt)], tmp_path, exact=True)


# --- runtime axis / k / depth ------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -2, 5])
def test_cumsum_runtime_axis(axis, tmp_path):
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    model = make_model([helper.make_node("CumSum", ["x", "ax"], ["y"], reverse=1)],
                       [("x", np.float32, [3, 4]), ("ax", np.int64, [])], [("y", np.float32, [3, 4])])
    feed = {"x": x, "ax": np.array(axis, np.int64)}
    m = compile_c(model, tmp_path / "o")
    if axis == 5:  # invalid axis: refused, as onnxruntime does
        with pytest.raises(onnxc.InputError, match=r"axis 5 out of range \[-2, 1\] for input 'x' of rank 2"):
            m.run(None, feed)
    else:
        np.testing.assert_allclose(m.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)


def test_topk_and_onehot_runtime_k_depth(tmp_path):
    x = RNG.standard_normal((3, 6)).astype(np.float32)
    nodes = [helper.make_node("TopK", ["x", "k"], ["v", "i"], largest=0),
             helper.make_node("OneHot", ["i", "depth", "vals"], ["h"])]
    model = make_model(nodes, [("x", np.float32, [3, 6]), ("k", np.int64, [1]), ("depth", np.int64, [])],
                       [("v", np.float32, [3, 2]), ("i", np.int64, [3, 2]), ("h", np.float32, [3, 2, 6])],
                       {"vals": np.array([0, 1], np.float32)})
    m = compile_c(model, tmp_path / "o")
    feed = {"x": x, "k": np.array([2], np.int64), "depth": np.array(6, np.int64)}
    for o, r in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_array_equal(o, r)
    # values that disagree with the compiled shapes are refused at run time, never a crash
    with pytest.raises(onnxc.InputError, match="disagrees with the compiled"):
        m.run(None, {"x": x, "k": np.array([4], np.int64), "depth": np.array(9, np.int64)})


# --- TensorScatter -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["linear", "circular"])
@pytest.mark.parametrize("axis,with_indices", [(-2, True), (1, True), (2, False)])
def test_tensor_scatter(mode, axis, with_indices, tmp_path):
    cache = RNG.standard_normal((2, 3, 5, 4)).astype(np.float32)
    ushape = list(cache.shape)
    ushape[axis] = 2
    feed = {"c": cache, "u": RNG.standard_normal(ushape).astype(np.float32)}
    if with_indices:
        n = cache.shape[axis]
        feed["w"] = np.array([n - 1, 1] if mode == "circular" else [n - 2, 0], np.int64)
    node = helper.make_node("TensorScatter", list(feed), ["y"], mode=mode, axis=axis)
    check([node], feed, [("y", np.float32)], tmp_path, opset=24, exact=True)


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter_out_of_range_is_refused(mode, tmp_path):
    """As onnxruntime: a negative write index fails, and so does one whose rows run past the end
    in linear mode (circular mode wraps it)."""
    cache = np.zeros((2, 4, 3), np.float32)
    model = make_model([helper.make_node("TensorScatter", ["c", "u", "w"], ["y"], axis=1, mode=mode)],
                       [("c", np.float32, [2, 4, 3]), ("u", np.float32, [2, 2, 3]), ("w", np.int64, [2])],
                       [("y", np.float32, None)], opset=24)
    m = compile_c(model, tmp_path / "o")
    feed = {"c": cache, "u": np.ones((2, 2, 3), np.float32)}
    bad = [[0, -1], [-2**63, 0]] + ([[3, 0], [0, 2**62]] if mode == "linear" else [])
    for w in bad:
        with pytest.raises(onnxc.InputError, match=r"TensorScatter\): write index -?\d+ (out of range|negative)"):
            m.run(None, dict(feed, w=np.array(w, np.int64)))
    good = dict(feed, w=np.array([2, 0] if mode == "linear" else [3, 2**62], np.int64))
    np.testing.assert_array_equal(m.run(None, good)[0], ort_run(model, good)[0])
