"""Views, Transpose, Concat, Split, Slice, Gather, GatherElements, Expand against onnxruntime."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run

RNG = np.random.default_rng(0)


def check(nodes, inputs, inits, tmp_path, n_out=1):
    model = make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in inputs.items()],
                       [(f"y{i}" if n_out > 1 else "y", list(inputs.values())[0].dtype, None) for i in range(n_out)],
                       inits)
    ref = ort_run(model, inputs)
    out = onnxc.compile(model, output_dir=tmp_path / "o").run(None, inputs)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_array_equal(o, r)


DTYPES = [np.float32, np.int64, np.bool_]


def data(shape, dtype):
    return (RNG.standard_normal(shape) * 10).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_views(dtype, tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["a"]), helper.make_node("Unsqueeze", ["a", "ax"], ["b"]),
             helper.make_node("Squeeze", ["b", "ax"], ["c"]), helper.make_node("Flatten", ["c"], ["y"], axis=2)]
    check(nodes, {"x": data((2, 3, 4), dtype)}, {"s": np.array([4, 0, -1], np.int64), "ax": np.array([-1], np.int64)},
          tmp_path)


@pytest.mark.parametrize("perm", [[1, 0, 2], [2, 1, 0], [0, 2, 1], [2, 0, 1], None])
@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose(perm, dtype, tmp_path):
    attrs = {"perm": perm} if perm else {}
    check([helper.make_node("Transpose", ["x"], ["y"], **attrs)], {"x": data((2, 3, 4), dtype)}, {}, tmp_path)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat_split(axis, tmp_path):
    nodes = [helper.make_node("Concat", ["x", "z"], ["c"], axis=axis),
             helper.make_node("Split", ["c", "sp"], ["y0", "y1", "y2"], axis=axis)]
    x, z = data((2, 3, 4), np.float32), data((2, 3, 4), np.float32)
    total = 2 * x.shape[axis]
    check(nodes, {"x": x, "z": z}, {"sp": np.array([1, total - 3, 2], np.int64)}, tmp_path, n_out=3)


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [3], [0], [1]), ([0, -1], [10, -100], [1, 2], [2, -1]), ([-2], [100], [-1], [1]), ([5], [6], [2], [1]),
    ([3], [0], [1], [-2])])
def test_slice(starts, ends, axes, steps, tmp_path):
    inits = {k: np.array(v, np.int64) for k, v in dict(st=starts, en=ends, ax=axes, sp=steps).items()}
    check([helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": data((4, 5, 6), np.float32)},
          inits, tmp_path)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather(axis, tmp_path):
    ind = np.array([[0, -1], [2, 1]], np.int64)
    check([helper.make_node("Gather", ["x", "i"], ["y"], axis=axis)], {"x": data((3, 4, 5), np.float32)}, {"i": ind},
          tmp_path)


def test_gather_out_of_range_runtime_indices_are_refused(tmp_path):
    """An InputError naming the node and the index, as onnxruntime refuses it, never a crash
    (tests/test_runtime_index_checks.py covers every index op)."""
    model = make_model([helper.make_node("Gather", ["x", "i"], ["y"], axis=0, name="g")],
                       [("x", np.float32, [3, 2]), ("i", np.int64, [2])], [("y", np.float32, [2, 2])])
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=r"^node 'g' \(Gather\): index 1000000000000 out of range \[-3, 2\]"):
        m.run(None, {"x": np.ones((3, 2), np.float32), "i": np.array([1, 10**12], np.int64)})
    y = m.run(None, {"x": np.arange(6, dtype=np.float32).reshape(3, 2), "i": np.array([1, -3], np.int64)})[0]
    np.testing.assert_array_equal(y, [[2, 3], [0, 1]])


def test_gather_elements(tmp_path):
    ind = RNG.integers(-3, 3, (3, 2)).astype(np.int64)
    check([helper.make_node("GatherElements", ["x", "i"], ["y"], axis=0)], {"x": data((3, 2), np.float32)},
          {"i": ind}, tmp_path)


@pytest.mark.parametrize("shape", [[2, 3, 4], [3, 1], [1, 1, 4]])
def test_expand(shape, tmp_path):
    check([helper.make_node("Expand", ["x", "s"], ["y"])], {"x": data((3, 1), np.int64)},
          {"s": np.array(shape, np.int64)}, tmp_path)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
@pytest.mark.parametrize("pads", [[0, 1, 2, 0, 2, 1], [1, 0, 0, 1, 2, 2]])
def test_pad(mode, pads, tmp_path):
    inits = {"p": np.array(pads, np.int64), "v": np.array(1.5, np.float32)}
    check([helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)], {"x": data((2, 3, 4), np.float32)}, inits,
          tmp_path)


@pytest.mark.parametrize("op,attrs,inits,shape", [
    ("Tile", {}, {"r": np.array([2, 1, 3], np.int64)}, (2, 3, 4)),
    ("DepthToSpace", {"blocksize": 2, "mode": "CRD"}, {}, (1, 8, 2, 3)),
    ("DepthToSpace", {"blocksize": 2, "mode": "DCR"}, {}, (1, 8, 2, 3)),
    ("SpaceToDepth", {"blocksize": 2}, {}, (1, 2, 4, 6)),
    ("Trilu", {"upper": 0}, {"k": np.array(1, np.int64)}, (3, 4, 5)),
    ("Trilu", {"upper": 1}, {}, (4, 3)),
    ("Compress", {"axis": 1}, {"c": np.array([True, False, True])}, (2, 3, 4)),
])
def test_index_map_ops(op, attrs, inits, shape, tmp_path):
    check([helper.make_node(op, ["x"] + list(inits), ["y"], **attrs)], {"x": data(shape, np.float32)}, inits,
          tmp_path)


# --- Shape / Size -----------------------------------------------------------------------------
# (start, end) of Shape-21 on a rank-4 input: negative, clamped beyond either end, start >= end
SHAPE_SLICES = [(None, None), (1, None), (None, 1), (-1, None), (None, -1), (1, -1), (1, 2), (-10, None),
                (None, 10), (-10, 10), (3, 1), (2, 2), (-2, -3), (4, None), (None, -4)]


@pytest.mark.parametrize("opt_level", ["none", "layout"])
def test_shape_and_size_in_c(opt_level, tmp_path):
    """Shape (start/end negative, clamped, empty) and Size C-only against onnxruntime: folded at
    the default level, run by their C kernels (compile-time literals) at opt_level none; inputs of
    rank 0, with a zero dim, and float16 (never read: no twin)."""
    feed = {"x": RNG.standard_normal((2, 3, 5, 7)).astype(np.float32), "s": np.array(4.0, np.float32),
            "e": np.zeros((3, 0, 2), np.float32), "h": np.ones((4, 1), np.float16)}
    nodes, outs = [], []
    for k, (start, end) in enumerate(SHAPE_SLICES):
        attrs = {a: v for a, v in (("start", start), ("end", end)) if v is not None}
        nodes.append(helper.make_node("Shape", ["x"], [f"y{k}"], **attrs))
        outs.append((f"y{k}", np.int64, None))
    for name in ("s", "e", "h"):
        nodes += [helper.make_node("Shape", [name], [f"shape_{name}"]), helper.make_node("Size", [name], [f"size_{name}"]),
                  helper.make_node("Shape", [name], [f"tail_{name}"], start=-1)]
        outs += [(f"shape_{name}", np.int64, None), (f"size_{name}", np.int64, None), (f"tail_{name}", np.int64, None)]
    model = make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in feed.items()], outs, opset=21)
    ref = ort_run(model, feed)
    m = onnxc.compile(model, output_dir=tmp_path / "o", opt_level=opt_level, fallback=False)
    for (name, _, _), o, r in zip(outs, m.run(None, feed), ref):
        assert o.dtype == np.int64 and o.shape == r.shape, name
        np.testing.assert_array_equal(o, r, err_msg=name)


def test_shape_of_a_data_dependent_shape_names_the_reason(tmp_path):
    """Shape of a value whose shape only the data decides (NonZero) cannot be C: the reason says
    so instead of 'no C kernel'."""
    model = make_model([helper.make_node("NonZero", ["x"], ["nz"]), helper.make_node("Shape", ["nz"], ["y"])],
                       [("x", np.float32, [3, 4])], [("y", np.int64, [2])], opset=21)
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    why = {f["op"]: f["why"] for f in m.fallback_nodes}
    assert "data-dependent shape" in why["Shape"], why
    x = np.array([[0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 0, 4]], np.float32)
    np.testing.assert_array_equal(m.run(None, {"x": x})[0], [2, 4])
