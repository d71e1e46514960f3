"""Op knowledge for the nn family (Conv, ConvTranspose, pools, batch/instance norm): validity
rules (see registry.py) and the window geometry (pads after auto_pad) passes and emitters share."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np

from .registry import check, facts, get_attr, reference, shape_rule
from .validate import inp, known, shape_of, shape_str, unidirectional_problem

# Facts (registry.FACTS)
facts("BatchNormalization", "Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LRN",
      "GlobalLpPool", twin=True)
facts("AffineGrid", param_inputs=(1,))  # size (Resize and Upsample: ops/resize.py)
facts("Col2Im", param_inputs=(1, 2))  # image_shape, block_shape
facts("MaxUnpool", param_inputs=(2,))  # output_shape
# onnxruntime addresses MaxUnpool's indices in output_shape's layout rather than the unpooled shape's
facts("MaxUnpool", ort_deviates=True)


@shape_rule("MaxUnpool")
def _maxunpool_shape(node):
    """The constant output_shape when given (onnx infers no shape from it), else the unpooled
    shape (x - 1) * stride - pads + kernel."""
    x = node.inputs[0]
    if node.input(2) is not None:
        c = node.inputs[2].const
        return [(x.dtype, None if c is None else tuple(int(d) for d in np.asarray(c).reshape(-1)))]
    if x.shape is None or not all(known(d) for d in x.shape):
        return [(x.dtype, None)]
    rank = len(x.shape) - 2
    kernel = [int(k) for k in get_attr(node, "kernel_shape")]
    strides = [int(d) for d in (get_attr(node, "strides", None) or [1] * rank)]
    pads = [int(d) for d in (get_attr(node, "pads", None) or [0] * (2 * rank))]
    return [(x.dtype, tuple(x.shape[:2]) + tuple((x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[rank + i]
                                                 + kernel[i] for i in range(rank)))]


def resolve_pads(node, spatial: List[int], kernel: List[int], strides: List[int],
                 dilations: List[int]) -> Tuple[List[int], List[int]]:
    """(pad_begin, pad_end) per spatial dim after auto_pad."""
    rank = len(spatial)
    auto = get_attr(node, "auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(rank):
            eff = (kernel[i] - 1) * dilations[i] + 1
            out = -(-spatial[i] // strides[i])
            total = max(0, (out - 1) * strides[i] + eff - spatial[i])
            small = total // 2
            b = small if auto == "SAME_UPPER" else total - small
            begin.append(b)
            end.append(total - b)
        return begin, end
    if auto == "VALID":
        return [0] * rank, [0] * rank
    pads = list(get_attr(node, "pads", None) or [0] * (2 * rank))
    return pads[:rank], pads[rank:]


def _window_attrs(node, spatial, kernel=None):
    """kernel_shape/strides/dilations/pads/output_padding of a windowed op against its
    ``spatial`` rank; ``kernel``: W's spatial dims, when the op has a weight."""
    if spatial is None:
        return
    ks = node.attrs.get("kernel_shape")
    if ks is not None:
        if len(ks) != spatial:
            yield f"attribute 'kernel_shape' is {list(ks)}, expected {spatial} values (spatial rank)"
        elif kernel is not None and all(known(d) for d in kernel) and list(ks) != list(kernel):
            yield f"attribute 'kernel_shape' is {list(ks)}, expected {list(kernel)} (W's spatial dims)"
    for name, low in (("strides", 1), ("dilations", 1), ("output_padding", 0)):
        v = node.attrs.get(name)
        if v is None:
            continue
        if len(v) != spatial:
            yield f"attribute '{name}' is {list(v)}, expected {spatial} values (spatial rank)"
        elif min(v) < low:
            yield f"attribute '{name}' is {list(v)}, expected values >= {low}"
    pads = node.attrs.get("pads")
    if pads is not None:
        if len(pads) != 2 * spatial:
            yield f"attribute 'pads' is {list(pads)}, expected {2 * spatial} values (begin, end per spatial axis)"
        elif min(pads) < 0:
            yield f"attribute 'pads' is {list(pads)}, expected values >= 0"


def _conv(node, xi, wi, bi, transposed=False):
    x, w = shape_of(node, xi), shape_of(node, wi)
    group = int(get_attr(node, "group", 1))
    if group < 1:
        yield f"attribute 'group' is {group}, expected >= 1"
        return
    if x is not None and len(x) < 3:
        yield f"{inp(node, xi)} has shape {shape_str(x)}, expected rank >= 3 (N, C, spatial...)"
        return
    if w is not None and len(w) < 3:
        yield f"{inp(node, wi)} has shape {shape_str(w)}, expected rank >= 3"
        return
    if x is not None and w is not None and len(x) != len(w):
        yield f"{inp(node, wi)} has rank {len(w)}, expected {len(x)} (the rank of {inp(node, xi)} {shape_str(x)})"
        return
    out_channels = None
    if w is not None:
        if transposed:  # W: (C, M / group, k...)
            if x is not None and known(x[1]) and known(w[0]) and w[0] != x[1]:
                yield (f"{inp(node, wi)} has shape {shape_str(w)}: {w[0]} input channels, expected {x[1]} "
                       f"(the channels of {inp(node, xi)} {shape_str(x)})")
            out_channels = w[1] * group if known(w[1]) else None
        else:  # W: (M, C / group, k...)
            if x is not None and known(x[1]) and known(w[1]) and w[1] * group != x[1]:
                yield (f"{inp(node, wi)} has shape {shape_str(w)}: {w[1]} input channels per group x group "
                       f"{group} = {w[1] * group}, expected {x[1]} (the channels of {inp(node, xi)} {shape_str(x)})")
            if known(w[0]) and w[0] % group:
                yield f"{inp(node, wi)} has {w[0]} output channels, expected a multiple of group {group}"
            out_channels = w[0] if known(w[0]) else None
    if bi is not None:
        b = shape_of(node, bi)
        if b is not None and len(b) != 1:
            yield f"{inp(node, bi)} has shape {shape_str(b)}, expected 1-D (one bias per output channel)"
        elif b is not None and known(b[0]) and out_channels is not None and b[0] != out_channels:
            yield f"{inp(node, bi)} has {b[0]} elements, expected {out_channels} (W's output channels)"
    spatial = len(w) - 2 if w is not None else (len(x) - 2 if x is not None else None)
    yield from _window_attrs(node, spatial, None if w is None else w[2:])


@check("Conv")
def _conv_rule(node):
    yield from _conv(node, 0, 1, 2)


@check("ConvInteger")
def _conv_integer_rule(node):
    yield from _conv(node, 0, 1, None)


@check("QLinearConv")
def _qlinear_conv_rule(node):
    yield from _conv(node, 0, 3, 8)


@check("ConvTranspose")
def _conv_transpose_rule(node):
    yield from _conv(node, 0, 1, 2, transposed=True)


@check("MaxPool", "AveragePool", "LpPool")
def _pool_rule(node):
    x = shape_of(node, 0)
    if x is None:
        return
    if len(x) < 3:
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected rank >= 3 (N, C, spatial...)"
        return
    yield from _window_attrs(node, len(x) - 2)


def _per_channel(node, x, indices, what):
    if x is None or len(x) < 2 or not known(x[1]):
        return
    for i in indices:
        s = shape_of(node, i)
        if s is None:
            continue
        if len(s) != 1:
            yield f"{inp(node, i)} has shape {shape_str(s)}, expected 1-D of {x[1]} ({what})"
        elif known(s[0]) and s[0] != x[1]:
            yield f"{inp(node, i)} has {s[0]} elements, expected {x[1]} ({what})"


@check("BatchNormalization")
def _batchnorm_rule(node):
    if node.opset < 9:  # spatial=0 took per-element statistics
        return
    yield from _per_channel(node, shape_of(node, 0), (1, 2, 3, 4), "the channels of input 0")


@check("InstanceNormalization")
def _instancenorm_rule(node):
    yield from _per_channel(node, shape_of(node, 0), (1, 2), "the channels of input 0")


@check("PRelu")
def _prelu_rule(node):
    if node.opset >= 7:
        yield unidirectional_problem(inp(node, 1), shape_of(node, 1), shape_of(node, 0), inp(node, 0))



# --- GlobalLpPool: y[n, c] = (sum over the spatial dims of |x|^p)^(1/p), spatial dims kept as 1 --
# (onnx.reference has no GlobalLpPool and onnxruntime only opset 2: this is the reference)
@reference("GlobalLpPool")
def _global_lppool(node, x):
    p = int(get_attr(node, "p", 2))
    if x.ndim < 3 or p < 1:
        return NotImplemented
    s = (np.abs(x.astype(np.float64)) ** p).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return [(s ** (1.0 / p)).astype(x.dtype)]


@check("GlobalLpPool")
def _global_lppool_rule(node):
    x = shape_of(node, 0)
    if x is not None and len(x) < 3:
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected rank >= 3 (N, C, spatial...)"
    p = get_attr(node, "p", 2)
    if int(p) < 1:
        yield f"attribute p is {p}, expected a positive integer (the norm's exponent)"


# --- MaxRoiPool: Fast R-CNN ROI max pooling (runtime_c/image/maxroipool_ref.c has the geometry) --
# (onnx.reference has none and onnxruntime only opset 1: this is the reference)
def _round_half_away(v):
    a = np.floor(np.abs(v.astype(np.float64)) + 0.5)
    return np.where(v < 0, -a, a)


@reference("MaxRoiPool")
def _max_roi_pool(node, x, rois):
    ph_n, pw_n = (int(v) for v in get_attr(node, "pooled_shape"))
    scale = np.float32(get_attr(node, "spatial_scale", 1.0))
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 5 or x.dtype != np.float32:
        return NotImplemented
    n_b, c_n, h_n, w_n = x.shape
    y = np.zeros((rois.shape[0], c_n, ph_n, pw_n), x.dtype)
    for n, roi in enumerate(rois.astype(np.float32)):
        if not -1 < roi[0] < n_b:
            raise ValueError(f"MaxRoiPool: batch id {roi[0]} of roi {n} outside [0, {n_b})")
        x0, y0, x1, y1 = (int(np.clip(_round_half_away(roi[k] * scale), -2.0**40, 2.0**40)) for k in (1, 2, 3, 4))
        bh = np.float32(max(y1 - y0 + 1, 1)) / np.float32(ph_n)
        bw = np.float32(max(x1 - x0 + 1, 1)) / np.float32(pw_n)
        for i in range(ph_n):
            hs = min(max(int(np.floor(np.float32(i) * bh)) + y0, 0), h_n)
            he = min(max(int(np.ceil(np.float32(i + 1) * bh)) + y0, 0), h_n)
            for j in range(pw_n):
                ws = min(max(int(np.floor(np.float32(j) * bw)) + x0, 0), w_n)
                we = min(max(int(np.ceil(np.float32(j + 1) * bw)) + x0, 0), w_n)
                if he > hs and we > ws:
                    y[n, :, i, j] = x[int(roi[0]), :, hs:he, ws:we].max(axis=(1, 2))  # NaN propagates
    return [y]


@check("MaxRoiPool")
def _max_roi_pool_rule(node):
    x, rois = shape_of(node, 0), shape_of(node, 1)
    if x is not None and len(x) != 4:
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected rank 4 (N, C, H, W)"
    if rois is not None and (len(rois) != 2 or (known(rois[1]) and rois[1] != 5)):
        yield f"{inp(node, 1)} has shape {shape_str(rois)}, expected (num_rois, 5): batch_id, x1, y1, x2, y2"
    pooled = get_attr(node, "pooled_shape")
    if pooled is None or len(pooled) != 2 or any(int(v) < 1 for v in pooled):
        yield f"attribute pooled_shape is {None if pooled is None else list(pooled)}, expected 2 positive ints"


# --- DeformConv: Conv whose taps sample X bilinearly at offset positions --------------------------
@check("DeformConv")
def _deform_conv_rule(node):
    x, w, off, mask = shape_of(node, 0), shape_of(node, 1), shape_of(node, 2), shape_of(node, 4)
    if x is None or w is None or len(x) < 3 or len(w) != len(x) or not all(known(d) for d in list(x[1:2]) + list(w)):
        return
    group, og = int(get_attr(node, "group", 1)), int(get_attr(node, "offset_group", 1))
    if x[1] != w[1] * group:
        yield f"{inp(node, 1)} has {w[1]} input channels per group, expected {x[1]} / group {group}"
    if w[0] % group:
        yield f"{inp(node, 1)} has {w[0]} output channels, expected a multiple of group {group}"
    if og < 1 or x[1] % og:
        yield f"attribute offset_group is {og}, expected a divisor of the {x[1]} input channels"
        return
    taps = 1
    for d in w[2:]:
        taps *= int(d)
    rank = len(x) - 2
    if off is not None and len(off) >= 2 and known(off[1]) and off[1] != og * taps * rank:
        yield f"{inp(node, 2)} has {off[1]} channels, expected offset_group * kernel taps * {rank} = {og * taps * rank}"
    if mask is not None and len(mask) >= 2 and known(mask[1]) and mask[1] != og * taps:
        yield f"{inp(node, 4)} has {mask[1]} channels, expected offset_group * kernel taps = {og * taps}"
    b = shape_of(node, 3)
    if b is not None and (len(b) != 1 or (known(b[0]) and b[0] != w[0])):
        yield f"{inp(node, 3)} has shape {shape_str(b)}, expected ({w[0]},)"
