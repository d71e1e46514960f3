"""NonZero, Unique, NonMaxSuppression in C (providers/c/dynamic.py): outputs whose shape depends on
the data, written into a buffer of a compile-time bound, the actual shape returned by the run
(Python: arrays of that shape; C: <prefix>_output_shape).  Bit-exact against onnx.reference (the
spec's) on many feeds through one build, plus onnxruntime where onnx.reference is wrong (Unique
sorted=0 takes its slices along axis 0 of the unflattened input, whatever the axis)."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from onnxc.errors import InputError, UnsupportedOpError

from helpers import compile_c, make_model, ort_run

RNG = np.random.default_rng(17)


def same(out, ref):
    for o, r in zip(out, ref):
        r = np.asarray(r)
        assert o.shape == r.shape and o.dtype == r.dtype, (o.shape, r.shape, o.dtype, r.dtype)
        np.testing.assert_array_equal(o, r)


def build(node, inputs, outputs, tmp_path, inits=None, opset=18):
    model = make_model([node], inputs, outputs, inits, opset=opset)
    m = compile_c(model, tmp_path / "o")
    assert m.fallback_nodes == []
    return model, m


# --- NonZero ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,shape", [(np.float32, [3, 4]), (np.float64, [7]), (np.int32, [2, 3, 4]),
                                         (np.bool_, [5, 2]), (np.uint8, [4, 1, 3]), (np.int64, [0, 3])])
def test_nonzero(dtype, shape, tmp_path):
    model, m = build(helper.make_node("NonZero", ["x"], ["y"]), [("x", dtype, shape)],
                     [("y", np.int64, [len(shape), "n"])], tmp_path)
    ref = ReferenceEvaluator(model)
    for density in (0.0, 0.3, 1.0):
        x = (RNG.uniform(size=shape) < density) * RNG.integers(1, 5, shape)
        x = x.astype(dtype)
        if dtype == np.float32 and x.size:  # NaN is nonzero, -0.0 is zero
            x.reshape(-1)[0], x.reshape(-1)[-1] = np.nan, -0.0
        same(m.run(None, {"x": x}), ref.run(None, {"x": x}))


def test_nonzero_scalar(tmp_path):
    model, m = build(helper.make_node("NonZero", ["x"], ["y"]), [("x", np.float32, [])],
                     [("y", np.int64, [0, "n"])], tmp_path)
    for v in (0.0, 2.5):
        x = np.array(v, np.float32)
        same(m.run(None, {"x": x}), ReferenceEvaluator(model).run(None, {"x": x}))


def test_nonzero_bfloat16_through_float32(tmp_path):
    import ml_dtypes
    model, m = build(helper.make_node("NonZero", ["x"], ["y"]), [("x", ml_dtypes.bfloat16, [6])],
                     [("y", np.int64, [1, "n"])], tmp_path)
    x = np.array([0, -0.0, 1e-30, 3, 0, -2], ml_dtypes.bfloat16)
    same(m.run(None, {"x": x}), [np.array([[2, 3, 5]], np.int64)])


def test_output_shape_in_the_c_api(tmp_path):
    """A C caller reads the actual shape with <prefix>_output_shape(arena, i, dims) after the run;
    the header documents the bound."""
    _, m = build(helper.make_node("NonZero", ["x"], ["y"]), [("x", np.float32, [3, 4])],
                 [("y", np.int64, [2, "n"])], tmp_path)
    assert "int64_t[2, <=12] (192 bytes, data-dependent shape" in (m.build_dir / "model.h").read_text()
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = x[2, 0] = x[2, 3] = 1
    y = np.full(24, -7, np.int64)
    ffi, lib = m._ffi, m._lib
    arena = np.zeros(lib.model_arena_bytes() + 64, np.uint8)
    a = ffi.cast("void*", arena.ctypes.data + (-arena.ctypes.data) % 64)
    rc = lib.model_run(ffi.cast("void*", m._weights.ctypes.data), a,
                       ffi.new("void*[]", [ffi.cast("void*", x.ctypes.data)]),
                       ffi.new("void*[]", [ffi.cast("void*", y.ctypes.data)]))
    dims = ffi.new("int64_t[2]")
    assert rc == 0 and lib.model_output_shape(a, 0, dims) == 2 and list(dims) == [2, 3]
    assert y[:6].tolist() == [1, 2, 2, 2, 0, 3] and (y[6:] == -7).all()  # nothing past the actual shape
    assert lib.model_output_shape(a, 1, dims) == -1


def test_readers_of_a_data_dependent_value_run_in_the_fallback(tmp_path):
    """C kernels are compiled for static shapes: the C partition ends at NonZero and its reader
    runs in the fallback provider on the actual shape; C-only, the compile refuses and says why."""
    nodes = [helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Transpose", ["nz"], ["y"])]
    model = make_model(nodes, [("x", np.int32, [4, 5])], [("y", np.int64, ["n", 2])])
    m = onnxc.compile(model, output_dir=tmp_path / "fb")
    assert [(n["op"], "data-dependent shape" in n["why"]) for n in m.fallback_nodes] == [("Transpose", True)]
    for _ in range(3):
        x = RNG.integers(0, 2, (4, 5)).astype(np.int32)
        same(m.run(None, {"x": x}), [np.vstack(np.nonzero(x)).T])
    with pytest.raises(UnsupportedOpError, match="data-dependent shape"):
        compile_c(model, tmp_path / "c")


def test_declared_static_shape_is_checked(tmp_path):
    """A model declaring the output's shape (as the ONNX test cases do) gets a buffer of that
    shape; data giving another count fail the run (InputError), nothing is written past it."""
    _, m = build(helper.make_node("NonZero", ["x"], ["y"]), [("x", np.int32, [2, 2])],
                 [("y", np.int64, [2, 3])], tmp_path)
    same(m.run(None, {"x": np.array([[1, 0], [1, 1]], np.int32)}), [np.array([[0, 1, 1], [0, 0, 1]])])
    with pytest.raises(InputError, match="the data give 4 along axis 1 of output 'y'"):
        m.run(None, {"x": np.ones((2, 2), np.int32)})


# --- Unique ----------------------------------------------------------------------------------
def unique_outputs(dtype, xshape, axis, n=4):
    y = ["u"] if axis is None else [d if k != axis % len(xshape) else "u" for k, d in enumerate(xshape)]
    return [("y", dtype, y), ("indices", np.int64, ["u"]), ("inverse", np.int64, [None]),
            ("counts", np.int64, ["u"])][:n]


def unique_unsorted(x, axis):
    """The spec's sorted=0: numpy.unique's groups in the order of their first occurrence."""
    xa = x.reshape(-1) if axis is None else np.moveaxis(x, axis, 0)
    y, idx, inv, cnt = np.unique(xa, True, True, True, axis=None if axis is None else 0)
    order = np.argsort(idx)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    y = y[order] if axis is None else np.moveaxis(y[order], 0, axis)
    return [y, idx[order], rank[inv.reshape(-1)], cnt[order]]


@pytest.mark.parametrize("sorted_", [1, 0])
@pytest.mark.parametrize("axis,shape", [(None, [12]), (None, [3, 4]), (0, [6, 3]), (1, [2, 7, 2]), (-1, [3, 8])])
@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint8])
def test_unique(sorted_, axis, shape, dtype, tmp_path):
    kw = {} if axis is None else {"axis": axis}
    node = helper.make_node("Unique", ["x"], ["y", "indices", "inverse", "counts"], sorted=sorted_, **kw)
    model, m = build(node, [("x", dtype, shape)], unique_outputs(dtype, shape, axis), tmp_path, opset=11)
    for hi in (2, 3, 100):
        x = RNG.integers(0, hi, shape).astype(dtype)
        if dtype == np.float32:
            x.reshape(-1)[:2] = [-0.0, 0.0]
        out = m.run(None, {"x": x})
        if sorted_:
            same(out, ReferenceEvaluator(model).run(None, {"x": x}))
        else:  # onnx.reference takes the unsorted slices along axis 0 of the unflattened input
            same(out, unique_unsorted(x, axis))
            if dtype != np.uint8:  # onnxruntime has no uint8 Unique
                same(out, ort_run(model, {"x": x}))


def test_unique_nan_and_fewer_outputs(tmp_path):
    """Without an axis NaN equals NaN (numpy.unique's equal_nan, onnx.reference), sorted last."""
    node = helper.make_node("Unique", ["x"], ["y", "indices"])
    model, m = build(node, [("x", np.float64, [7])], unique_outputs(np.float64, [7], None, 2), tmp_path,
                     opset=11)
    x = np.array([3, np.nan, -1, np.nan, 3, np.inf, -0.0])
    out = m.run(None, {"x": x})
    same(out, ReferenceEvaluator(model).run(None, {"x": x}))
    assert out[1].tolist() == [2, 6, 0, 5, 1]


def test_unique_bool_and_empty(tmp_path):
    node = helper.make_node("Unique", ["x"], ["y", "indices", "inverse", "counts"])
    model, m = build(node, [("x", np.bool_, [5])], unique_outputs(np.bool_, [5], None), tmp_path, opset=11)
    for x in ([True, True, False, True, False], [True] * 5):
        x = np.array(x)
        same(m.run(None, {"x": x}), ReferenceEvaluator(model).run(None, {"x": x}))
    model, m = build(node, [("x", np.int32, [0])], unique_outputs(np.int32, [0], None), tmp_path / "e", opset=11)
    out = m.run(None, {"x": np.zeros(0, np.int32)})
    assert [o.shape for o in out] == [(0,)] * 4


# --- NonMaxSuppression -----------------------------------------------------------------------
def nms_feed(b, c, n, scale=1.0):
    corners = RNG.uniform(0, 10, (b, n, 2)).astype(np.float32)
    size = RNG.uniform(0.5, 6, (b, n, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + size], axis=2).astype(np.float32)
    flip = RNG.uniform(size=(b, n)) < 0.3  # corners in either order
    boxes[flip] = boxes[flip][:, [2, 3, 0, 1]]
    scores = RNG.choice(np.float32([0.1, 0.5, 0.5, 0.7, 0.9]), (b, c, n)).astype(np.float32) * scale
    return boxes, scores


@pytest.mark.parametrize("center", [0, 1])
@pytest.mark.parametrize("const_max", [False, True])
@pytest.mark.parametrize("with_score", [False, True])
def test_nms(center, const_max, with_score, tmp_path):
    b, c, n = 2, 3, 9
    names = ["boxes", "scores", "max", "iou"] + (["st"] if with_score else [])
    node = helper.make_node("NonMaxSuppression", names, ["sel"], center_point_box=center)
    inputs = [("boxes", np.float32, [b, n, 4]), ("scores", np.float32, [b, c, n]), ("iou", np.float32, [1])]
    inits = {"max": np.array([4], np.int64)} if const_max else None
    if not const_max:
        inputs.append(("max", np.int64, [1]))
    if with_score:
        inputs.append(("st", np.float32, [1]))
    model, m = build(node, inputs, [("sel", np.int64, ["k", 3])], tmp_path, inits, opset=11)
    bound = b * c * (4 if const_max else n)
    assert m.manifest["outputs"][0]["bound"] == [bound, 3]
    ref = ReferenceEvaluator(model)
    for iou in (0.0, 0.2, 0.5, 1.0):
        for mx in (0, 2, 20):
            boxes, scores = nms_feed(b, c, n)
            feed = {"boxes": boxes, "scores": scores, "iou": np.array([iou], np.float32)}
            if not const_max:
                feed["max"] = np.array([mx], np.int64)
            if with_score:
                feed["st"] = np.array([0.5], np.float32)
            out = m.run(None, feed)
            same(out, ref.run(None, feed))
            assert out[0].shape[0] <= bound


def test_nms_iou_boundary_and_degenerate_boxes(tmp_path):
    """IoU exactly at the threshold keeps the box (the spec suppresses only above it); boxes of
    zero area and disjoint boxes never suppress."""
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "max", "iou", "st"], ["sel"])
    inputs = [("boxes", np.float32, [1, 5, 4]), ("scores", np.float32, [1, 1, 5]), ("max", np.int64, [1]),
              ("iou", np.float32, [1]), ("st", np.float32, [1])]
    model, m = build(node, inputs, [("sel", np.int64, ["k", 3])], tmp_path, opset=11)
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 0, 0, 0], [0, 0, 0, 0], [5, 5, 6, 6]]], np.float32)
    scores = np.array([[[0.9, 0.8, 0.7, 0.6, 0.6]]], np.float32)
    for iou in (0.5, np.nextafter(np.float32(0.5), np.float32(0)), 0.0):
        feed = {"boxes": boxes, "scores": scores, "max": np.array([10], np.int64),
                "iou": np.array([iou], np.float32), "st": np.array([0.65], np.float32)}
        same(m.run(None, feed), ReferenceEvaluator(model).run(None, feed))
    feed["iou"] = np.array([0.5], np.float32)
    assert m.run(None, feed)[0][:, 2].tolist() == [0, 1, 2]  # IoU 0.5 == threshold: kept; 0.6 < st
