"""Resize and Upsample: facts and the spec's coordinate math.

Resize is separable: each output coordinate along an axis reads K source indices with K weights
that depend only on that axis' sizes and attributes.  ``resize_plan`` computes those per-axis
index/weight tables at compile time with the spec's coordinate math (float64, as the ONNX
reference does); the C emitter (providers/c/image.py) stores them in the weights blob, so the
generated C is a gather and a weighted sum.
"""
from __future__ import annotations

import math

import numpy as np

from .plan import Refuse, const_input
from .registry import facts, get_attr

facts("Resize", param_inputs=(1, 2, 3))  # roi, scales, sizes (opset 10: scales is input 1)
facts("Upsample", param_inputs=(1,))  # scales
# onnxruntime differs from the spec on a downsampling Resize with align_corners and runtime scales
facts("Resize", ort_deviates=True)

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_TABLE = 1 << 22  # entries of a per-axis coordinate table (built in Python, then a C array)


def _source_coords(ctm: str, n_in: int, n_out: int, scale: float, roi) -> np.ndarray:
    """Source coordinate of every output index along one axis (ONNX coordinate_transformation_mode)."""
    y = np.arange(n_out, dtype=np.float64)
    out_len = scale * n_in  # the unrounded output length
    if ctm == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if ctm == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / out_len)
        return offset + (y + 0.5) / scale - 0.5
    if ctm == "pytorch_half_pixel":
        # a single output samples the first input ("length_resized > 1 ? ... : 0" in the spec
        # and onnxruntime; onnx.reference uses -0.5, which differs only for cubic/antialias)
        return np.zeros(n_out) if n_out == 1 else (y + 0.5) / scale - 0.5
    if ctm == "align_corners":
        return np.zeros(n_out) if out_len == 1 else y * (n_in - 1) / (out_len - 1)
    if ctm == "asymmetric":
        return y / scale
    if ctm == "tf_crop_and_resize":
        lo, hi = roi
        if out_len == 1:
            x = np.full(n_out, (hi - lo) * (n_in - 1) / 2)
        else:
            x = y * (hi - lo) * (n_in - 1) / (out_len - 1)
        return x + lo * (n_in - 1)
    raise Refuse(f"coordinate_transformation_mode '{ctm}' not supported")


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter a (support [-2, 2])."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _tap_weights(mode: str, ratio: np.ndarray, scale: float, p: dict) -> np.ndarray:
    """[n_out, K] weights of the K taps at offsets start..start+K-1 from the base index
    (x - ratio, with ratio in (0, 1]); K is even, so start = 1 - K/2."""
    r = ratio[:, None]
    if mode == "nearest":
        nm = p["nearest_mode"]
        integer = r == 1.0
        if nm == "round_prefer_floor":
            right = r > 0.5
        elif nm == "round_prefer_ceil":
            right = r >= 0.5
        elif nm == "floor":
            right = integer
        elif nm == "ceil":
            right = np.ones_like(integer)
        else:
            raise Refuse(f"nearest_mode '{nm}' not supported")
        return np.concatenate([~right, right], axis=1).astype(np.float64)
    s = min(scale, 1.0) if p["antialias"] else 1.0
    support = 1.0 if mode == "linear" else 2.0
    start = math.floor(-support / s) + 1  # first tap offset; K = 2 - 2*start taps
    offs = np.arange(start, 2 - start, dtype=np.float64)[None, :]
    if mode == "linear":
        w = np.clip(1 - np.abs((offs - r) * s), 0, 1)
    else:
        w = _cubic((offs - r) * s, p["cubic_coeff_a"])
    if p["antialias"]:
        w = w / w.sum(axis=1, keepdims=True)
    return w


def axis_table(n_in: int, n_out: int, scale: float, roi, p: dict):
    """(idx [n_out, K] int64 in [0, n_in), weights [n_out, K] float64, extrapolate [n_out] bool)
    for one resized axis.  Mirrors the ONNX Resize definition: source coordinate x, ratio =
    x - floor(x) (1 when x is an integer, so the left pixel is preferred), the K nearest source
    indices with edge clamping, optional exclude_outside renormalization, and the
    tf_crop_and_resize extrapolation flags."""
    ctm = p["ctm"]
    trivial_roi = roi is None or (math.isclose(roi[0], 0.0) and math.isclose(roi[1], 1.0))
    if math.isclose(scale, 1.0) and n_out == n_in and trivial_roi:
        return np.arange(n_in)[:, None], np.ones((n_in, 1)), np.zeros(n_in, bool)  # identity
    x = _source_coords(ctm, n_in, n_out, scale, roi)
    # rounding noise of the coordinate formulas (e.g. half_pixel_symmetric's offset) must not
    # turn an integer coordinate into "just past it": that flips which neighbours are taken
    xr = np.round(x)
    x = np.where(np.abs(x - xr) <= 1e-10 * np.maximum(1.0, np.abs(x)), xr, x)
    base = np.floor(x)
    ratio = np.where(x == base, 1.0, x - base)
    base = base - (ratio == 1.0)  # an integer x is the right end of its window's middle pair
    w = _tap_weights(p["mode"], ratio, scale, p)
    k = w.shape[1]
    # taps at base + 1 - K/2 .. base + K/2: the K nearest indices to x, ties to the smaller one
    idx = (base.astype(np.int64) + 1 - k // 2)[:, None] + np.arange(k)[None, :]
    if p["exclude_outside"]:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    extrap = (x < 0) | (x > n_in - 1) if ctm == "tf_crop_and_resize" else np.zeros(n_out, bool)
    return np.clip(idx, 0, n_in - 1), w, extrap


def _resize_params(node) -> dict:
    legacy = node.op_type == "Upsample" or node.opset < 11
    mode = get_attr(node, "mode", "nearest")
    if mode == "bilinear" and node.op_type == "Upsample":
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic"):
        raise Refuse(f"mode '{mode}' not supported")
    p = {"mode": mode, "legacy": legacy}
    if legacy:
        # Upsample and Resize-10: asymmetric coordinates; nearest rounds down when upsampling
        p.update(ctm="asymmetric", nearest_mode="floor", cubic_coeff_a=-0.75, exclude_outside=0,
                 extrapolation_value=0.0, antialias=0, keep="stretch")
        return p
    p.update(ctm=get_attr(node, "coordinate_transformation_mode", "half_pixel"),
             nearest_mode=get_attr(node, "nearest_mode", "round_prefer_floor"),
             cubic_coeff_a=float(get_attr(node, "cubic_coeff_a", -0.75)),
             exclude_outside=int(get_attr(node, "exclude_outside", 0)),
             extrapolation_value=float(get_attr(node, "extrapolation_value", 0.0)),
             antialias=int(get_attr(node, "antialias", 0)) if node.opset >= 18 else 0,
             keep=get_attr(node, "keep_aspect_ratio_policy", "stretch") if node.opset >= 18 else "stretch")
    if p["antialias"] and mode == "nearest":
        raise Refuse("antialias with mode 'nearest' is not defined")
    return p


def resize_plan(node) -> dict:
    """Everything the emitter needs: per-axis tables for the axes that change."""
    x, y = node.inputs[0], node.outputs[0]
    rank = len(x.shape)
    p = _resize_params(node)
    if node.op_type == "Upsample" and node.opset < 9:
        scales, sizes, roi = np.asarray(get_attr(node, "scales"), np.float32), None, None
    elif p["legacy"]:
        scales, sizes, roi = const_input(node, 1, "scales"), None, None
    else:
        roi = const_input(node, 1, "roi") if p["ctm"] == "tf_crop_and_resize" else None
        scales = const_input(node, 2, "scales")
        sizes = const_input(node, 3, "sizes")
    if (scales is None) == (sizes is None):
        raise Refuse("exactly one of scales and sizes must be given")
    axes = list(range(rank))
    if node.opset >= 18 and node.op_type == "Resize" and get_attr(node, "axes", None):
        axes = [int(a) % rank for a in get_attr(node, "axes")]
        if len(set(axes)) != len(axes):
            raise Refuse("repeated axes")
    n = len(axes)
    if (scales if scales is not None else sizes).size != n:
        raise Refuse(f"scales/sizes must have {n} entries")
    if p["ctm"] == "tf_crop_and_resize":
        if roi is None or roi.size != 2 * n:
            raise Refuse(f"tf_crop_and_resize needs a constant roi with {2 * n} entries")
        roi = [float(r) for r in roi.reshape(-1)]
    in_shape = list(x.shape)
    scale = [1.0] * rank
    out = list(in_shape)
    if scales is not None:
        sc = scales.reshape(-1)
        if np.any(~np.isfinite(sc)) or np.any(sc <= 0):
            raise Refuse("scales must be positive and finite")
        for k, a in enumerate(axes):
            scale[a] = float(sc[k])  # a float32 value, used in double as the spec's reference does
            out[a] = int(math.floor(scale[a] * in_shape[a]))
    else:
        sz = [int(s) for s in sizes.reshape(-1)]
        if any(s < 0 for s in sz) or any(in_shape[a] == 0 for a in axes):
            raise Refuse("sizes must be non-negative and resized dims non-empty")
        for k, a in enumerate(axes):
            out[a] = sz[k]
            scale[a] = sz[k] / in_shape[a]
        if p["keep"] != "stretch":
            pick = {"not_larger": min, "not_smaller": max}.get(p["keep"])
            if pick is None:
                raise Refuse(f"keep_aspect_ratio_policy '{p['keep']}' not supported")
            common = pick(scale[a] for a in axes)
            for a in axes:
                scale[a] = common
                out[a] = int(common * in_shape[a] + 0.5)
    if out != list(y.shape):
        raise Refuse(f"inferred output shape {list(y.shape)} disagrees with the resize geometry {out}")
    if p["mode"] != "nearest" and x.dtype not in FLOATS:
        raise Refuse(f"{p['mode']} resize of {x.dtype} not supported (float32/float64 only)")
    if p["mode"] == "nearest" and p["exclude_outside"]:
        raise Refuse("exclude_outside with mode 'nearest' not supported")
    if any(max(in_shape[a], out[a]) > _MAX_TABLE for a in axes):
        raise Refuse("a resized dim too large for the coordinate tables")  # (they are built in Python)
    tables = {}
    for k, a in enumerate(axes):
        r = (roi[k], roi[k + n]) if roi is not None else None
        if p["legacy"] and p["mode"] == "nearest":
            # onnxruntime's rule for the opset<11 ops: x = y / scale rounded down when
            # upsampling, up when downsampling, clamped
            src = np.arange(out[a]) / scale[a]
            src = np.ceil(src) if scale[a] < 1 else np.floor(src)
            idx = np.clip(src, 0, in_shape[a] - 1).astype(np.int64)
            tab = (idx[:, None], np.ones((out[a], 1)), np.zeros(out[a], bool))
        elif out[a] == 0:
            continue
        else:
            tab = axis_table(in_shape[a], out[a], scale[a], r, p)
        idx, w, ex = tab
        if out[a] == in_shape[a] and idx.shape[1] == 1 and np.all(w == 1) and not ex.any() \
                and np.array_equal(idx[:, 0], np.arange(in_shape[a])):
            continue  # identity along this axis
        tables[a] = _compact(idx, w, ex, p["mode"])
    return {"tables": tables, "params": p, "out": out}


def _compact(idx, w, ex, mode):
    """Drop taps whose weight is zero in every row; a one-hot nearest table becomes K=1."""
    if mode == "nearest":
        hot = w.argmax(axis=1)
        if np.all(w.sum(axis=1) == 1) and np.all(w.max(axis=1) == 1):
            rows = np.arange(len(idx))
            return idx[rows, hot][:, None], None, ex
        return idx, w, ex
    keep = np.any(w != 0, axis=0)
    if keep.any() and not keep.all():
        idx, w = idx[:, keep], w[:, keep]
    return idx, w, ex

