"""Image ops (Resize/Upsample, GridSample, AffineGrid, Col2Im, MaxUnpool, RoiAlign, MaxRoiPool)
compiled to C, against onnxruntime (ConvTranspose and LpPool: test_nn_linalg_ops.py).

Several configurations go into one model (one build) and every output is compared; where
onnxruntime departs from the ONNX definition (noted per test), onnx.reference is the oracle.
"""
import numpy as np
import pytest
from onnx import helper

import onnxc
from onnx.reference import ReferenceEvaluator

from helpers import check_many, compile_c, make_model, ort_run

RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# --- Resize ---------------------------------------------------------------------------------
def resize_node(name, attrs, scales=None, sizes=None, roi=None, x="x"):
    """A Resize node plus its constant inputs."""
    inits, ins = {}, [x, "", "", ""]
    if roi is not None:
        inits[f"{name}_roi"] = np.asarray(roi, np.float32)
        ins[1] = f"{name}_roi"
    if scales is not None:
        inits[f"{name}_scales"] = np.asarray(scales, np.float32)
        ins[2] = f"{name}_scales"
    if sizes is not None:
        inits[f"{name}_sizes"] = np.asarray(sizes, np.int64)
        ins[3] = f"{name}_sizes"
    while ins[-1] == "":
        ins.pop()
    return helper.make_node("Resize", ins, [name], name=name, **attrs), inits


def resize_models(cfgs):
    nodes, inits = [], {}
    for k, (attrs, kw) in enumerate(cfgs):
        n, i = resize_node(f"r{k}", attrs, **kw)
        nodes.append(n)
        inits.update(i)
    return nodes, inits


# Output lengths that are whole multiples of the scale (or given as sizes), where onnxruntime
# follows the ONNX definition for every coordinate_transformation_mode.
CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]
SIZES = [dict(scales=[1, 1, 2, 2]), dict(scales=[1, 1, 0.5, 0.25]), dict(sizes=[2, 3, 7, 5]),
         dict(sizes=[2, 3, 3, 13]), dict(sizes=[2, 3, 1, 6])]


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_modes_and_coordinates(mode, tmp_path):
    cfgs = [(dict(mode=mode, coordinate_transformation_mode=c), kw) for c in CTMS for kw in SIZES]
    if mode == "nearest":
        cfgs = [(dict(a, nearest_mode=nm), kw) for a, kw in cfgs
                for nm in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")]
    nodes, inits = resize_models(cfgs)
    check_many(nodes, {"x": randn(2, 3, 4, 8)}, inits, tmp_path)


def test_resize_cubic_parameters_and_antialias(tmp_path):
    cfgs = [(dict(mode="cubic", cubic_coeff_a=a, exclude_outside=e), dict(scales=[1, 1, s, s]))
            for a in (-0.5, -0.75) for e in (0, 1) for s in (0.5, 2.0)]
    cfgs += [(dict(mode=m, antialias=1), kw) for m in ("linear", "cubic")
             for kw in (dict(sizes=[1, 2, 5, 3]), dict(scales=[1, 1, 0.5, 0.25]), dict(scales=[1, 1, 2, 0.5]))]
    nodes, inits = resize_models(cfgs)
    check_many(nodes, {"x": randn(1, 2, 12, 16)}, inits, tmp_path)


def test_resize_axes_keep_aspect_ratio_and_crop(tmp_path):
    cfgs = [(dict(mode="linear", axes=[3, 2]), dict(scales=[2, 0.5])),
            (dict(mode="nearest", axes=[2]), dict(sizes=[9])),
            (dict(mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger"), dict(sizes=[7, 7])),
            (dict(mode="nearest", axes=[2, 3], keep_aspect_ratio_policy="not_smaller"), dict(sizes=[7, 7])),
            (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
             dict(sizes=[1, 2, 5, 5], roi=[0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2])),
            (dict(mode="nearest", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-3.0),
             dict(sizes=[1, 2, 4, 7], roi=[0, 0, -0.4, 0.35, 1, 1, 0.8, 1.45]))]
    nodes, inits = resize_models(cfgs)
    check_many(nodes, {"x": randn(1, 2, 6, 8)}, inits, tmp_path)


def test_resize_trilinear(tmp_path):
    nodes, inits = resize_models([(dict(mode="linear"), dict(scales=[1, 1, 2, 0.5, 2])),
                                  (dict(mode="nearest"), dict(sizes=[1, 2, 3, 5, 9]))])
    check_many(nodes, {"x": randn(1, 2, 3, 4, 5)}, inits, tmp_path)


def test_resize_beyond_onnxruntime(tmp_path):
    # configurations onnxruntime's CPU kernel does not implement (1-D and 3-D linear/cubic,
    # channel-axis resizing, float64/int64) or computes differently (cubic tf_crop_and_resize,
    # tf_crop_and_resize with axes): onnx.reference is the oracle
    cfgs = [(dict(mode="cubic", coordinate_transformation_mode="tf_crop_and_resize", axes=[3, 2]),
             dict(sizes=[6, 6], roi=[0.1, 0.3, 0.9, 0.6])),
            (dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize", axes=[3, 2]),
             dict(sizes=[6, 6], roi=[0.1, 0.3, 0.9, 0.6])),
            (dict(mode="cubic", axes=[1]), dict(scales=[1.5])),
            (dict(mode="linear", axes=[1, 3]), dict(sizes=[3, 5]))]
    nodes, inits = resize_models(cfgs)
    check_many(nodes, {"x": randn(1, 2, 6, 8)}, inits, tmp_path, oracle="reference")
    nodes, inits = resize_models([(dict(mode="cubic"), dict(sizes=[13])), (dict(mode="linear"), dict(scales=[0.5]))])
    check_many(nodes, {"x": randn(10)}, inits, tmp_path / "b", oracle="reference")
    nodes, inits = resize_models([(dict(mode="linear"), dict(scales=[1, 1, 2, 0.5])),
                                  (dict(mode="cubic", antialias=1), dict(scales=[1, 1, 0.5, 0.5]))])
    check_many(nodes, {"x": randn(1, 2, 6, 8, dtype=np.float64)}, inits, tmp_path / "c", oracle="reference",
               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.int64, np.float64])
def test_resize_nearest_other_dtypes(dtype, tmp_path):
    x = (RNG.standard_normal((1, 2, 5, 6)) * 50).astype(dtype)
    nodes, inits = resize_models([(dict(mode="nearest"), dict(scales=[1, 1, 2, 1.5])),
                                  (dict(mode="nearest", nearest_mode="floor"), dict(sizes=[1, 2, 3, 4]))])
    oracle = "reference" if dtype in (np.int64, np.float64) else "ort"  # not in onnxruntime's kernel
    check_many(nodes, {"x": x}, inits, tmp_path, oracle=oracle)


def test_resize_fractional_output_length_follows_onnx(tmp_path):
    # scale * length is not whole: the ONNX definition (and its conformance cases) use the
    # fractional output length in align_corners / half_pixel_symmetric / tf_crop_and_resize,
    # onnxruntime the integer one; onnx.reference is the oracle here.
    cfgs = [(dict(mode=m, coordinate_transformation_mode=c), dict(scales=[1, 1, 0.6, 1.3]))
            for m in ("linear", "cubic") for c in ("align_corners", "half_pixel_symmetric")]
    cfgs.append((dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize"),
                 dict(scales=[1, 1, 0.6, 1.3], roi=[0, 0, 0.1, 0.2, 1, 1, 0.7, 0.9])))
    nodes, inits = resize_models(cfgs)
    check_many(nodes, {"x": randn(1, 2, 5, 7)}, inits, tmp_path, oracle="reference")


@pytest.mark.parametrize("op,opset,mode,scales", [
    ("Upsample", 9, "linear", [1, 1, 2, 3]), ("Upsample", 9, "nearest", [1, 1, 2, 3]),
    ("Resize", 10, "linear", [1, 1, 0.6, 1.5]), ("Resize", 10, "nearest", [1, 1, 0.6, 0.35]),
    ("Resize", 10, "nearest", [1, 1, 0.6, 1.5])])
def test_resize_legacy_opsets(op, opset, mode, scales, tmp_path):
    # asymmetric coordinates; nearest rounds down when upsampling and up when downsampling
    node = helper.make_node(op, ["x", "s"], ["y"], mode=mode)
    check_many([node], {"x": randn(1, 2, 9, 11)}, {"s": np.array(scales, np.float32)}, tmp_path, opset=opset)


def test_upsample7_attribute_scales(tmp_path):
    node = helper.make_node("Upsample", ["x"], ["y"], mode="linear", scales=[1.0, 1.0, 2.0, 3.0])
    check_many([node], {"x": randn(1, 2, 3, 4)}, {}, tmp_path, opset=7)


def test_resize_runtime_scales_refused(tmp_path):
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode="linear")
    model = make_model([node], [("x", np.float32, [1, 1, 4, 4]), ("s", np.float32, [4])],
                       [("y", np.float32, [1, 1, 8, 8])])
    with pytest.raises(NotImplementedError, match="scales must be a compile-time constant"):
        compile_c(model, tmp_path / "o")


# --- Col2Im -----------------------------------------------------------------------------------
def test_col2im(tmp_path):
    cases = [(dict(), [5, 5], [2, 2], (2, 3 * 4, 16)),
             (dict(strides=[2, 1], pads=[1, 0, 1, 1], dilations=[1, 2]), [6, 5], [3, 2], (1, 2 * 6, 3 * 4)),
             (dict(strides=[2]), [9], [3], (2, 3, 4))]
    nodes, inits, feed = [], {}, {}
    for k, (attrs, image, block, xs) in enumerate(cases):
        feed[f"x{k}"] = randn(*xs)
        inits[f"i{k}"], inits[f"b{k}"] = np.array(image, np.int64), np.array(block, np.int64)
        nodes.append(helper.make_node("Col2Im", [f"x{k}", f"i{k}", f"b{k}"], [f"y{k}"], **attrs))
    check_many(nodes, feed, inits, tmp_path, opset=18)


# --- GridSample / AffineGrid ------------------------------------------------------------------
def grid_values(shape):
    g = RNG.uniform(-1.4, 1.4, shape).astype(np.float32)
    flat = g.reshape(-1)
    flat[: flat.size // 3] = np.round(flat[: flat.size // 3] * 4) / 4  # pixel centers, edges, ties
    return g


@pytest.mark.parametrize("rank", [2, 3])
def test_gridsample(rank, tmp_path):
    x = randn(2, 3, 5, 6) if rank == 2 else randn(2, 2, 3, 4, 5)
    feed, nodes = {"x": x}, []
    modes = ["nearest", "linear", "cubic"] if rank == 2 else ["nearest", "linear"]
    for mode in modes:
        for pad in ("zeros", "border", "reflection"):
            if mode == "cubic" and pad == "border":
                continue  # refused: the definitions disagree
            for ac in (0, 1):
                name = f"{mode}_{pad}_{ac}"
                feed[f"g_{name}"] = grid_values((2,) + tuple(RNG.integers(2, 5, rank)) + (rank,))
                nodes.append(helper.make_node("GridSample", ["x", f"g_{name}"], [name], name=name, mode=mode,
                                              padding_mode=pad, align_corners=ac))
    check_many(nodes, feed, {}, tmp_path, opset=20)


def test_gridsample_opset16_names(tmp_path):
    feed = {"x": randn(1, 2, 4, 5), "g": grid_values((1, 3, 3, 2))}
    nodes = [helper.make_node("GridSample", ["x", "g"], [f"y{m}"], mode=m, padding_mode="reflection")
             for m in ("bilinear", "bicubic", "nearest")]
    check_many(nodes, feed, {}, tmp_path, opset=16)


def test_gridsample_cubic_border_refused(tmp_path):
    node = helper.make_node("GridSample", ["x", "g"], ["y"], mode="cubic", padding_mode="border")
    model = make_model([node], [("x", np.float32, [1, 1, 4, 4]), ("g", np.float32, [1, 2, 2, 2])],
                       [("y", np.float32, None)], opset=20)
    with pytest.raises(NotImplementedError, match="ambiguous"):
        compile_c(model, tmp_path / "o")


@pytest.mark.parametrize("size", [[2, 3, 4, 5], [1, 2, 3, 4, 2], [2, 1, 1, 3]])
def test_affine_grid(size, tmp_path):
    r = len(size) - 2
    corners = (0, 1) if 1 not in size[2:] else (0,)  # align_corners=1 on a size-1 dim is refused
    nodes = [helper.make_node("AffineGrid", ["theta", "size"], [f"y{ac}"], align_corners=ac) for ac in corners]
    check_many(nodes, {"theta": randn(size[0], r, r + 1)}, {"size": np.array(size, np.int64)}, tmp_path,
               opset=20)


# --- MaxUnpool / LpPool -----------------------------------------------------------------------
def test_maxunpool_after_maxpool(tmp_path):
    # indices from MaxPool (flat over the whole tensor), unpooled back to the input's shape
    nodes = [helper.make_node("MaxPool", ["x"], ["v", "i"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MaxUnpool", ["v", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = make_model(nodes, [("x", np.float32, [2, 3, 6, 4])], [("y", np.float32, None)])
    feed = {"x": randn(2, 3, 6, 4)}
    np.testing.assert_array_equal(compile_c(model, tmp_path / "o").run(None, feed)[0], ort_run(model, feed)[0])


def test_maxunpool_indices(tmp_path):
    # duplicates keep the last value; an out-of-range index is refused, as onnxruntime does
    x = randn(1, 2, 2, 3)
    ind = RNG.integers(0, 2 * 4 * 6, x.shape).astype(np.int64)
    ind[0, 0, 0, 0] = ind[0, 1, 1, 2]
    node = helper.make_node("MaxUnpool", ["x", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    check_many([node], {"x": x, "i": ind}, {}, tmp_path, out_dtype=np.float32)
    node = helper.make_node("MaxUnpool", ["x", "i"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    bad = ind.copy()
    bad[0, 0, 0, 1], bad[0, 1, 0, 0] = -5, 10 ** 9
    model = make_model([node], [("x", np.float32, [1, 2, 2, 3]), ("i", np.int64, [1, 2, 2, 3])],
                       [("y", np.float32, None)])
    m = compile_c(model, tmp_path / "b")
    with pytest.raises(onnxc.InputError, match=r"\(MaxUnpool\): index -5 out of range \[0, 47\] .*at i\[0, 0, 0, 1\]$"):
        m.run(None, {"x": x, "i": bad})
    bad[0, 0, 0, 1] = 0
    with pytest.raises(onnxc.InputError, match=r"index 1000000000 out of range \[0, 47\] .*at i\[0, 1, 0, 0\]$"):
        m.run(None, {"x": x, "i": bad})


def test_maxunpool_with_output_shape(tmp_path):
    """A larger output_shape (constant, or a graph input the session specializes on): the indices
    address the unpooled shape, which sits at the output's origin, the rest is 0 (onnx.reference
    and the node suite; onnxruntime addresses output_shape's layout instead, so it is not
    compared); an index outside the unpooled shape fails the run."""
    from onnx.reference import ReferenceEvaluator
    x = randn(2, 3, 2, 3)
    ind = np.stack([RNG.permutation(4 * 6)[:6].reshape(2, 3) for _ in range(6)]).reshape(2, 3, 2, 3).astype(np.int64)
    ind += (np.arange(6) * 24).reshape(2, 3, 1, 1)  # flat over (N, C, 4, 6), as MaxPool gives
    for out_shape in ([2, 3, 5, 7], [2, 3, 4, 8], [3, 4, 5, 6]):
        node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
        model = make_model([node], [("x", np.float32, [2, 3, 2, 3]), ("i", np.int64, [2, 3, 2, 3])],
                           [("y", np.float32, out_shape)], {"s": np.array(out_shape, np.int64)})
        got = compile_c(model, tmp_path / "_".join(map(str, out_shape))).run(None, {"x": x, "i": ind})[0]
        want = np.zeros(out_shape, np.float32)
        unpooled = np.zeros((2, 3, 4, 6), np.float32)
        unpooled.reshape(-1)[ind.reshape(-1)] = x.reshape(-1)
        want[:2, :3, :4, :6] = unpooled
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, ReferenceEvaluator(model).run(None, {"x": x, "i": ind})[0])
    node = helper.make_node("MaxUnpool", ["x", "i", "s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])
    model = make_model([node], [("x", np.float32, [2, 3, 2, 3]), ("i", np.int64, [2, 3, 2, 3]), ("s", np.int64, [4])],
                       [("y", np.float32, ["n", "c", "h", "w"])])
    sess = onnxc.InferenceSession(model.SerializeToString())
    got = sess.run(None, {"x": x, "i": ind, "s": np.array([2, 3, 5, 7], np.int64)})[0]
    np.testing.assert_array_equal(got[:, :, :4, :6], unpooled)
    assert got.shape == (2, 3, 5, 7) and not got[:, :, 4:].any() and not got[:, :, :, 6:].any()
    assert sess.fallback_nodes == []
    bad = ind.copy()
    bad[1, 2, 1, 2] = 2 * 3 * 4 * 6  # inside the 5x7 output, outside the unpooled 4x6 shape
    with pytest.raises(onnxc.InputError, match=r"index 144 out of range \[0, 143\] .*at i\[1, 2, 1, 2\]$"):
        sess.run(None, {"x": x, "i": bad, "s": np.array([2, 3, 5, 7], np.int64)})


# --- RoiAlign ---------------------------------------------------------------------------------
def roi_inputs(n_rois=6, batches=2, size=(10, 12)):
    h, w = size
    x1, y1 = RNG.uniform(-2, w, n_rois), RNG.uniform(-2, h, n_rois)
    rois = np.stack([x1, y1, x1 + RNG.uniform(-1, 8, n_rois), y1 + RNG.uniform(-1, 8, n_rois)], 1)
    rois[0] = [1.0, 2.0, 1.0, 2.0]  # degenerate
    rois[1] = [-5.0, -5.0, w + 5.0, h + 5.0]  # beyond the image
    return rois.astype(np.float32), RNG.integers(0, batches, n_rois).astype(np.int64)


@pytest.mark.parametrize("opset", [10, 16])
def test_roialign(opset, tmp_path):
    rois, bi = roi_inputs()
    feed = {"x": randn(2, 3, 10, 12), "rois": rois, "bi": bi}
    nodes = []
    for mode in ("avg", "max"):
        for ratio in (0, 2):
            for ctm in (("half_pixel", "output_half_pixel") if opset >= 16 else (None,)):
                attrs = dict(mode=mode, sampling_ratio=ratio, output_height=3, output_width=4, spatial_scale=0.8)
                if ctm:
                    attrs["coordinate_transformation_mode"] = ctm
                name = f"{mode}_{ratio}_{ctm}"
                nodes.append(helper.make_node("RoiAlign", ["x", "rois", "bi"], [name], name=name, **attrs))
    check_many(nodes, feed, {}, tmp_path, opset=opset, rtol=1e-4, atol=1e-5, out_dtype=np.float32)


def test_roialign_bad_batch_index(tmp_path):
    # an index outside the batch is refused (as onnxruntime does), never read outside X
    rois, _ = roi_inputs(3)
    node = helper.make_node("RoiAlign", ["x", "rois", "bi"], ["y"], output_height=2, output_width=2, name="roi")
    model = make_model([node], [("x", np.float32, [2, 3, 10, 12]), ("rois", np.float32, [3, 4]),
                                ("bi", np.int64, [3])], [("y", np.float32, None)], opset=16)
    feed = {"x": randn(2, 3, 10, 12), "rois": rois, "bi": np.array([1, 7, -1], np.int64)}
    m = compile_c(model, tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=r"^node 'roi' \(RoiAlign\): batch index 7 out of range \[0, 1\] .*"
                                               r"at bi\[1\]$"):
        m.run(None, feed)
    good = dict(feed, bi=np.array([1, 0, 0], np.int64))
    np.testing.assert_allclose(m.run(None, good)[0], ort_run(model, good)[0], rtol=1e-5, atol=1e-6)


# --- MaxRoiPool -------------------------------------------------------------------------------
def _rois(n_batch, h, w, count, scale):
    """ROIs in image coordinates / scale: random, ties of the corner rounding (k + 0.5 after
    scaling, both signs), malformed (x2 < x1), partly and wholly outside the image."""
    r = RNG.integers(-4, int(max(h, w) / scale) + 4, (count, 4)).astype(np.float32)
    b = RNG.integers(0, n_batch, (count, 1)).astype(np.float32)
    fixed = np.array([[0, 0, 0, (w - 1) / scale, (h - 1) / scale],
                      [0, 5 / scale * 0.5, 3 / scale * 0.5, 9 / scale * 0.5, 7 / scale * 0.5],
                      [n_batch - 1, -5 / scale * 0.5, -3 / scale * 0.5, 1, 1], [0, 6, 5, 2, 1],
                      [n_batch - 1, 3 * w / scale, 3 * h / scale, 4 * w / scale, 4 * h / scale],
                      [0.9, -30, -30, 1000, 1000]], np.float32)
    return np.concatenate([fixed, np.concatenate([b, r], axis=1)]).astype(np.float32)


@pytest.mark.parametrize("pooled,scale,shape", [((3, 2), 0.5, (2, 3, 9, 11)), ((1, 1), 1.0, (1, 2, 5, 4)),
                                                ((4, 5), 0.0625, (2, 2, 6, 7)), ((7, 3), 2.0, (3, 1, 4, 12))])
def test_maxroipool_against_onnxruntime(pooled, scale, shape, tmp_path):
    """MaxRoiPool-1 C-only against onnxruntime on positive data (where its max, which starts at
    FLT_MIN, is the max): corner rounding ties, malformed and outside ROIs (empty bins give 0),
    bins finer than the ROI, fractional batch ids (truncated)."""
    x = RNG.uniform(0.5, 4, shape).astype(np.float32)
    rois = _rois(shape[0], shape[2], shape[3], 20, scale)
    model = make_model([helper.make_node("MaxRoiPool", ["x", "r"], ["y"], pooled_shape=list(pooled), spatial_scale=scale)],
                       [("x", np.float32, list(shape)), ("r", np.float32, list(rois.shape))],
                       [("y", np.float32, [len(rois), shape[1], *pooled])], opset=1)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x, "r": rois})[0]
    np.testing.assert_array_equal(got, ort_run(model, {"x": x, "r": rois})[0])
    assert (got == 0).any() and (got > 0).any()  # empty bins and full ones both met


def test_maxroipool_negative_and_nan_opset22(tmp_path):
    """MaxRoiPool-22, which neither onnxruntime (opset 1 only) nor onnx.reference runs: the bin's
    maximum, negative values and NaN included, against the numpy reference, for a whole-image 1x1
    pooling against x.max itself, and without the NaN against onnxruntime at opset 1."""
    from onnxc.ops.nn import _max_roi_pool
    x = RNG.standard_normal((2, 3, 8, 10)).astype(np.float32) - 3
    x[1, 2, 4, 5] = np.nan
    rois = _rois(2, 8, 10, 16, 0.5)
    attrs = dict(pooled_shape=[2, 3], spatial_scale=0.5)
    model = make_model([helper.make_node("MaxRoiPool", ["x", "r"], ["y"], **attrs),
                        helper.make_node("MaxRoiPool", ["x", "w"], ["z"], pooled_shape=[1, 1])],
                       [("x", np.float32, [2, 3, 8, 10]), ("r", np.float32, list(rois.shape)), ("w", np.float32, [2, 5])],
                       [("y", np.float32, [len(rois), 3, 2, 3]), ("z", np.float32, [2, 3, 1, 1])], opset=22)
    whole = np.array([[0, 0, 0, 9, 7], [1, -2, -2, 20, 20]], np.float32)
    y, z = compile_c(model, tmp_path / "o").run(None, {"x": x, "r": rois, "w": whole})
    node = type("Node", (), {"attrs": attrs, "op_type": "MaxRoiPool", "domain": "", "opset": 22})()
    np.testing.assert_array_equal(y, _max_roi_pool(node, x, rois)[0])
    assert (y < -1).any() and np.isnan(y).any()
    np.testing.assert_array_equal(z[:, :, 0, 0], x.max(axis=(2, 3)))
    ort_model = make_model([helper.make_node("MaxRoiPool", ["x", "w"], ["z"], pooled_shape=[1, 1])],
                           [("x", np.float32, [2, 3, 8, 10]), ("w", np.float32, [2, 5])],
                           [("z", np.float32, [2, 3, 1, 1])], opset=1)
    x[1, 2, 4, 5] = -7.0
    np.testing.assert_array_equal(compile_c(ort_model, tmp_path / "p").run(None, {"x": x, "w": whole})[0],
                                  ort_run(ort_model, {"x": x, "w": whole})[0])


@pytest.mark.parametrize("bid,shown", [(2.0, 2), (-1.0, -1), (np.nan, -10**18)])
def test_maxroipool_bad_batch_id(bid, shown, tmp_path):
    x = RNG.standard_normal((2, 1, 4, 4)).astype(np.float32)
    rois = np.array([[0, 0, 0, 3, 3], [bid, 0, 0, 1, 1]], np.float32)
    model = make_model([helper.make_node("MaxRoiPool", ["x", "r"], ["y"], pooled_shape=[2, 2], name="mrp")],
                       [("x", np.float32, [2, 1, 4, 4]), ("r", np.float32, [2, 5])], [("y", np.float32, [2, 1, 2, 2])],
                       opset=22)
    m = compile_c(model, tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=rf"^node 'mrp' \(MaxRoiPool\): batch id {shown} out of range \[0, 1\] "
                                               r".*at r\[1, 0\]$"):
        m.run(None, {"x": x, "r": rois})
    rois[1, 0] = 0.99  # truncated to 0: valid
    y = m.run(None, {"x": x, "r": rois})[0]
    assert y[1, 0, 0, 0] == x[0, 0, 0, 0]


@pytest.mark.parametrize("attrs,rois_shape,msg", [
    (dict(pooled_shape=[2, 0]), [3, 5], r"attribute pooled_shape is \[2, 0\], expected 2 positive ints"),
    (dict(pooled_shape=[2, 2]), [3, 4], r"input 1 'r' has shape \(3, 4\), expected \(num_rois, 5\)")])
def test_maxroipool_invalid(attrs, rois_shape, msg, tmp_path):
    node = helper.make_node("MaxRoiPool", ["x", "r"], ["y"], name="mrp", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1, 2, 5, 5]),
                                            helper.make_tensor_value_info("r", 1, rois_shape)],
                              [helper.make_tensor_value_info("y", 1, [3, 2, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises(onnxc.ModelError, match=r"node 'mrp' \(MaxRoiPool\): .*" + msg):
        onnxc.compile(model, output_dir=tmp_path / "o")
