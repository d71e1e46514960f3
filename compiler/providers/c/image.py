"""Image ops: Resize (and Upsample), ConvTranspose, GridSample, AffineGrid, Col2Im, MaxUnpool,
LpPool, GlobalLpPool, RoiAlign, MaxRoiPool.

Resize is separable: each output coordinate along an axis reads K source indices with K weights
that depend only on that axis' sizes and attributes.  Those per-axis index/weight tables are
computed here at compile time with the spec's coordinate math (float64, as the ONNX reference
does) and stored in the weights blob, so the generated C is a gather and a weighted sum.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from .registry import c_kernel

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_MAX_TABLE = 1 << 22  # entries of a per-axis coordinate table (built in Python, then a C array)


class Refuse(Exception):
    """A configuration the C path does not implement; the message is the reason."""


def refusal(plan_fn):
    """check() built from a planning function that raises Refuse."""
    def check(node):
        try:
            plan_fn(node)
        except Refuse as e:
            return str(e)
        return None
    return check


def _const_input(node, i, what: str) -> Optional[np.ndarray]:
    """A constant optional input as an array (None when absent or empty); refuses a runtime one."""
    v = node.input(i)
    if v is None or (v.shape is not None and 0 in v.shape):
        return None
    if not v.is_const:
        raise Refuse(f"{what} must be a compile-time constant")
    return None if v.const.size == 0 else np.asarray(v.const)


# --- Resize: per-axis tables ------------------------------------------------------------------
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
        scales, sizes, roi = _const_input(node, 1, "scales"), None, None
    else:
        roi = _const_input(node, 1, "roi") if p["ctm"] == "tf_crop_and_resize" else None
        scales = _const_input(node, 2, "scales")
        sizes = _const_input(node, 3, "sizes")
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


def _resize_check(node):
    if len(node.inputs[0].shape) == 0:
        return "scalar input"
    try:
        resize_plan(node)
    except Refuse as e:
        return str(e)
    return None


@c_kernel("Resize", "Upsample", check=_resize_check)
def resize(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    plan = resize_plan(node)
    p, tables = plan["params"], plan["tables"]
    ct = ctx.ctype(x)
    xs, ys = contiguous_strides(x.shape), contiguous_strides(y.shape)
    rank = len(y.shape)
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if not tables:
        return "\n".join(lines + [f"memcpy(Y, X, {y.nbytes});"])
    ii = [f"i{a}" for a in range(rank)]
    base_terms, taps, weighted, extrap = [], [], [], []
    for a in range(rank):
        if a not in tables:
            if y.shape[a] != 1:
                base_terms.append(f"{ii[a]}*{xs[a]}" if xs[a] != 1 else ii[a])
            continue
        idx, w, ex = tables[a]
        k = idx.shape[1]
        off = ctx.const_array((idx * xs[a]).astype(np.int64).reshape(-1))
        lines.append(f"const int64_t* ONNXC_RESTRICT O{a} = {off};")
        if ex.any():
            lines.append(f"const uint8_t* ONNXC_RESTRICT E{a} = {ctx.const_array(ex.astype(np.uint8))};")
            extrap.append(f"E{a}[{ii[a]}]")
        if w is None:  # one source index per output: a plain gather along this axis
            base_terms.append(f"O{a}[{ii[a]}]")
            continue
        lines.append(f"const double* ONNXC_RESTRICT W{a} = {ctx.const_array(w.astype(np.float64).reshape(-1))};")
        taps.append((a, k))
        weighted.append(a)
    loops = [("  " * d) + f"for (int64_t {ii[d]} = 0; {ii[d]} < {y.shape[d]}; ++{ii[d]})" for d in range(rank)]
    if y.size >= (1 << 16) and y.shape[0] > 1:
        loops.insert(0, "ONNXC_OMP_FOR")
    lines += loops
    pad = "  " * rank
    yoff = " + ".join(f"{ii[d]}*{ys[d]}" if ys[d] != 1 else ii[d] for d in range(rank) if y.shape[d] != 1) or "0"
    base = " + ".join(base_terms) or "0"
    body = [f"const {ct}* xb = X + {base};"]
    if extrap:
        body.append(f"if ({' | '.join(extrap)}) {{ Y[{yoff}] = {ctx.lit(p['extrapolation_value'], x.dtype)}; continue; }}")
    if not taps:
        body.append(f"Y[{yoff}] = xb[0];")
    else:
        body.append("double acc = 0.0;")
        ptr = "xb"
        for depth, (a, k) in enumerate(taps):
            t = f"t{a}"
            ind = "  " * depth
            body.append(ind + f"for (int64_t {t} = 0; {t} < {k}; ++{t}) {{")
            body.append(ind + f"  const {ct}* x{a} = {ptr} + O{a}[{ii[a]}*{k} + {t}];")
            body.append(ind + f"  const double w{a} = " + (f"w{taps[depth - 1][0]} * " if depth else "")
                        + f"W{a}[{ii[a]}*{k} + {t}];")
            ptr = f"x{a}"
        depth = len(taps)
        body.append("  " * depth + f"acc += w{taps[-1][0]} * (double){ptr}[0];")
        body += ["  " * (depth - 1 - d) + "}" for d in range(depth)]
        body.append(f"Y[{yoff}] = ({ct})acc;")
    lines.append(pad + "{")
    lines += [pad + "  " + b for b in body]
    lines.append(pad + "}")
    return "\n".join(lines)


# --- ConvTranspose ------------------------------------------------------------------------------
def _arr3(vals, fill=0) -> str:
    vals = [int(v) for v in vals] + [fill] * (3 - len(vals))
    return "{" + ", ".join(map(str, vals)) + "}"


def conv_transpose_plan(node) -> dict:
    """Geometry after auto_pad / output_shape resolution: pad_begin and output sizes.

    The ONNX definition, onnxruntime and onnx.reference agree when output_shape only extends the
    natural output (extra positions hold the bias) or, with SAME_*, crops it by a non-negative
    total padding; other combinations are refused."""
    x, w = node.inputs[0], node.inputs[1]
    rank = len(x.shape) - 2
    if not 1 <= rank <= 3:
        raise Refuse(f"{rank}-D ConvTranspose not supported (1 to 3 spatial dims)")
    if x.dtype != np.float32 or w.dtype != np.float32:
        raise Refuse(f"dtype {x.dtype} not supported (float32 only)")
    group = int(get_attr(node, "group", 1))
    kernel = [int(k) for k in w.shape[2:]]
    ks = get_attr(node, "kernel_shape", None)
    if ks is not None and [int(k) for k in ks] != kernel:
        raise Refuse("kernel_shape disagrees with the weight shape")
    if group < 1 or x.shape[1] != w.shape[0] or x.shape[1] % group:
        raise Refuse("channel counts do not match group")
    b = node.input(2)
    m = int(w.shape[1]) * group
    if b is not None and tuple(b.shape) != (m,):
        raise Refuse(f"bias shape {b.shape} is not ({m},)")
    ins = [int(d) for d in x.shape[2:]]
    strides = [int(s) for s in (get_attr(node, "strides", None) or [1] * rank)]
    dil = [int(d) for d in (get_attr(node, "dilations", None) or [1] * rank)]
    opad = [int(d) for d in (get_attr(node, "output_padding", None) or [0] * rank)]
    pads = [int(d) for d in (get_attr(node, "pads", None) or [0] * (2 * rank))]
    auto = get_attr(node, "auto_pad", "NOTSET")
    oshape = get_attr(node, "output_shape", None)
    if oshape is not None:
        oshape = [int(d) for d in oshape][-rank:]
    if min(strides + dil) < 1 or min(opad) < 0:
        raise Refuse("strides/dilations must be positive and output_padding non-negative")
    natural = [strides[i] * (ins[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1 for i in range(rank)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        target = oshape or [ins[i] * strides[i] for i in range(rank)]
        total = [natural[i] - target[i] for i in range(rank)]
        if min(total) < 0:
            raise Refuse("SAME_* padding with an output larger than the full transposed convolution")
        begin = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        out = target
    elif oshape is not None:
        if any(pads):
            raise Refuse("explicit pads together with output_shape are not supported")
        if any(o < n for o, n in zip(oshape, natural)):
            raise Refuse("output_shape smaller than the full output without auto_pad is ambiguous")
        if any(o - n >= s for o, n, s in zip(oshape, natural, strides)):
            raise Refuse("output_shape larger than the full output plus stride - 1 (no input maps there)")
        begin, out = [0] * rank, oshape
    else:
        if auto == "VALID":
            pads = [0] * (2 * rank)
        elif auto != "NOTSET":
            raise Refuse(f"auto_pad '{auto}' not supported")
        begin = pads[:rank]
        out = [natural[i] - pads[i] - pads[rank + i] for i in range(rank)]
    if min(out) <= 0:
        raise Refuse(f"non-positive output size {out}")
    if list(node.outputs[0].shape) != [x.shape[0], m] + list(out):
        raise Refuse(f"inferred output shape {node.outputs[0].shape} disagrees with the geometry {out}")
    return dict(rank=rank, group=group, m=m, kernel=kernel, ins=ins, out=out, strides=strides, dil=dil,
                begin=begin)


def _ct_scratch(node) -> int:
    g = conv_transpose_plan(node)
    return (g["m"] // g["group"]) * int(np.prod(g["kernel"])) * int(np.prod(g["ins"])) * 4


@c_kernel("ConvTranspose", check=refusal(conv_transpose_plan), scratch=_ct_scratch)
def conv_transpose(node, ctx):
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b = node.input(2)
    g = conv_transpose_plan(node)
    if y.size == 0:
        return "/* empty output */"
    return "\n".join([
        f"static const onnxc_conv_params p = {{{x.shape[0]}, {x.shape[1]}, {g['m']}, {g['group']}, {g['rank']}, "
        f"{_arr3(g['ins'], 1)}, {_arr3(g['kernel'], 1)}, {_arr3(g['out'], 1)}, {_arr3(g['strides'], 1)}, "
        f"{_arr3(g['begin'])}, {_arr3(g['dil'], 1)}}};",
        f"onnxc_conv_transpose(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {ctx.ptr(b) if b is not None else 'NULL'}, "
        f"{ctx.ptr(y)}, {ctx.scratch(node)});",
    ])


# --- Col2Im -------------------------------------------------------------------------------------
def col2im_plan(node) -> dict:
    x, y = node.inputs[0], node.outputs[0]
    image = _const_input(node, 1, "image_shape")
    block = _const_input(node, 2, "block_shape")
    if image is None or block is None:
        raise Refuse("image_shape and block_shape must be non-empty constants")
    image, block = [int(v) for v in image.reshape(-1)], [int(v) for v in block.reshape(-1)]
    rank = len(image)
    if not 1 <= rank <= 3 or len(block) != rank:
        raise Refuse(f"{rank}-D Col2Im not supported (1 to 3 spatial dims)")
    if x.dtype != np.float32 or len(x.shape) != 3:
        raise Refuse("float32 input of shape [N, C*prod(block_shape), L] only")
    strides = [int(v) for v in (get_attr(node, "strides", None) or [1] * rank)]
    dil = [int(v) for v in (get_attr(node, "dilations", None) or [1] * rank)]
    pads = [int(v) for v in (get_attr(node, "pads", None) or [0] * (2 * rank))]
    if min(strides + dil + block) < 1 or min(pads) < 0 or min(image) < 1:
        raise Refuse("strides, dilations, block_shape and image_shape must be positive, pads non-negative")
    grid = [(image[i] + pads[i] + pads[rank + i] - (dil[i] * (block[i] - 1) + 1)) // strides[i] + 1
            for i in range(rank)]
    kprod = int(np.prod(block))
    if min(grid) < 1 or int(np.prod(grid)) != x.shape[2] or x.shape[1] % kprod:
        raise Refuse(f"input shape {x.shape} does not match {grid} blocks of size {block}")
    channels = x.shape[1] // kprod
    if list(y.shape) != [x.shape[0], channels] + image:
        raise Refuse(f"inferred output shape {y.shape} disagrees with image_shape {image}")
    return dict(rank=rank, image=image, block=block, grid=grid, strides=strides, dil=dil,
                begin=pads[:rank], channels=channels)


@c_kernel("Col2Im", check=refusal(col2im_plan))
def col2im(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    g = col2im_plan(node)
    if y.size == 0:
        return "/* empty output */"
    per_x, per_y = x.shape[1] * x.shape[2], g["channels"] * int(np.prod(g["image"]))
    return "\n".join([
        f"static const onnxc_col2im_params p = {{{g['rank']}, {_arr3(g['image'], 1)}, {_arr3(g['block'], 1)}, "
        f"{_arr3(g['grid'], 1)}, {_arr3(g['strides'], 1)}, {_arr3(g['begin'])}, {_arr3(g['dil'], 1)}}};",
        f"for (int64_t n = 0; n < {x.shape[0]}; ++n)",
        f"  onnxc_col2im(&p, {g['channels']}, {ctx.ptr(x)} + n*{per_x}, {ctx.ptr(y)} + n*{per_y});",
    ])


# --- GridSample ---------------------------------------------------------------------------------
_GS_MODES = {"nearest": 0, "linear": 1, "bilinear": 1, "cubic": 2, "bicubic": 2}
_GS_PADS = {"zeros": 0, "border": 1, "reflection": 2}


def _gridsample_check(node) -> Optional[str]:
    x, grid, y = node.inputs[0], node.inputs[1], node.outputs[0]
    rank = len(x.shape) - 2
    if x.dtype != np.float32 or grid.dtype != np.float32:
        return "float32 input and grid only"
    if rank not in (2, 3):
        return f"{rank}-D GridSample not supported (2 or 3 spatial dims)"
    mode = get_attr(node, "mode", "linear")
    if mode not in _GS_MODES:
        return f"mode '{mode}' not supported"
    if _GS_MODES[mode] == 2 and rank != 2:
        return "cubic mode is defined for 2 spatial dims only"
    pad = get_attr(node, "padding_mode", "zeros")
    if pad not in _GS_PADS:
        return f"padding_mode '{pad}' not supported"
    if _GS_MODES[mode] == 2 and pad == "border":
        # PyTorch (and onnxruntime) clamp each cubic tap, onnx.reference clamps the sampling
        # point first: the definitions disagree
        return "cubic mode with border padding is ambiguous (onnx.reference and PyTorch differ)"
    if int(np.prod(x.shape[2:])) >= 2 ** 31:
        return "input planes of 2^31 elements or more not supported"
    if len(grid.shape) != rank + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != rank:
        return f"grid shape {grid.shape} does not match input {x.shape}"
    if list(y.shape) != [x.shape[0], x.shape[1]] + list(grid.shape[1:-1]):
        return "inferred output shape disagrees with the grid"
    return None


@c_kernel("GridSample", check=_gridsample_check)
def gridsample(node, ctx):
    x, grid, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    rank = len(x.shape) - 2
    mode = _GS_MODES[get_attr(node, "mode", "linear")]
    pad = _GS_PADS[get_attr(node, "padding_mode", "zeros")]
    ac = int(get_attr(node, "align_corners", 0))
    return "\n".join([
        f"static const onnxc_gridsample_params p = {{{x.shape[0]}, {x.shape[1]}, {rank}, "
        f"{_arr3(x.shape[2:], 1)}, {_arr3(y.shape[2:], 1)}, {mode}, {pad}, {ac}}};",
        f"onnxc_gridsample(&p, {ctx.ptr(x)}, {ctx.ptr(grid)}, {ctx.ptr(y)});",
    ])


# --- AffineGrid ---------------------------------------------------------------------------------
def _affine_base(n: int, align_corners: bool) -> np.ndarray:
    """Normalized coordinates of the n pixel centers along one axis."""
    k = np.arange(n, dtype=np.float64)
    if align_corners:
        return -1 + 2 * k / (n - 1)
    return -1 + (2 * k + 1) / n


def affine_grid_plan(node) -> dict:
    theta, y = node.inputs[0], node.outputs[0]
    size = _const_input(node, 1, "size")
    if size is None:
        raise Refuse("size must be a non-empty constant")
    size = [int(s) for s in size.reshape(-1)]
    r = len(size) - 2
    if r not in (2, 3) or min(size) < 0:
        raise Refuse(f"size {size} is not [N, C, H, W] or [N, C, D, H, W]")
    if theta.dtype not in FLOATS or y.dtype != theta.dtype:
        raise Refuse(f"dtype {theta.dtype} not supported (float32/float64)")
    if list(theta.shape) != [size[0], r, r + 1]:
        raise Refuse(f"theta shape {theta.shape} is not [{size[0]}, {r}, {r + 1}]")
    if list(y.shape) != [size[0]] + size[2:] + [r]:
        raise Refuse("inferred output shape disagrees with size")
    ac = bool(get_attr(node, "align_corners", 0))
    if ac and 1 in size[2:]:
        # the single coordinate is -1 in onnx.reference, +1 in onnxruntime, 0 in PyTorch
        raise Refuse("align_corners=1 with a spatial size of 1 is ambiguous")
    return dict(size=size, rank=r, ac=ac)


@c_kernel("AffineGrid", check=refusal(affine_grid_plan))
def affine_grid(node, ctx):
    """grid[n, ..., :] = theta[n] @ (x, y[, z], 1) with (x, y, z) the normalized W, H, D
    coordinates of the output position (computed in double, as the ONNX reference does)."""
    theta, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    g = affine_grid_plan(node)
    r, dims = g["rank"], g["size"][2:]
    ct = ctx.ctype(y)
    names = ["D", "H", "W"][-r:]
    lines = [f"const {ct}* ONNXC_RESTRICT T = {ctx.ptr(theta)};", f"{ct}* ONNXC_RESTRICT G = {ctx.ptr(y)};"]
    for nm, d in zip(names, dims):
        lines.append(f"const double* ONNXC_RESTRICT C{nm} = {ctx.const_array(_affine_base(d, g['ac']))};")
    sp = int(np.prod(dims))
    idx = [f"i{nm}" for nm in names]
    lines.append(f"for (int64_t n = 0; n < {g['size'][0]}; ++n) {{")
    lines.append(f"  const {ct}* t = T + n*{r * (r + 1)}; {ct}* q = G + n*{sp * r};")
    for k, (i, d) in enumerate(zip(idx, dims)):
        lines.append("  " * (k + 1) + f"for (int64_t {i} = 0; {i} < {d}; ++{i})")
    pad = "  " * (r + 1)
    src = [f"C{nm}[{i}]" for nm, i in zip(names, idx)][::-1]  # x (W) first
    pos = " + ".join(f"{i}*{int(np.prod(dims[k + 1:]))}" for k, i in enumerate(idx))
    lines.append(pad + "{")
    lines.append(pad + f"  {ct}* o = q + ({pos})*{r};")
    for row in range(r):
        terms = " + ".join(f"(double)t[{row * (r + 1) + c}] * {s}" for c, s in enumerate(src))
        lines.append(pad + f"  o[{row}] = ({ct})({terms} + (double)t[{row * (r + 1) + r}]);")
    lines.append(pad + "}")
    lines.append("}")
    return "\n".join(lines)


# --- MaxUnpool ----------------------------------------------------------------------------------
def _maxunpool_inferred(node):
    x = node.inputs[0]
    rank = len(x.shape) - 2
    kernel = [int(k) for k in get_attr(node, "kernel_shape")]
    strides = [int(s) for s in (get_attr(node, "strides", None) or [1] * rank)]
    pads = [int(p) for p in (get_attr(node, "pads", None) or [0] * (2 * rank))]
    return [x.shape[0], x.shape[1]] + [(x.shape[2 + i] - 1) * strides[i] - pads[i] - pads[rank + i] + kernel[i]
                                       for i in range(rank)]


def _maxunpool_check(node) -> Optional[str]:
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    rank = len(x.shape) - 2
    if rank < 1 or len(get_attr(node, "kernel_shape")) != rank:
        return "kernel_shape does not match the input rank"
    if ind.dtype != np.int64 or tuple(ind.shape) != tuple(x.shape):
        return "indices must be int64 with the input's shape"
    inferred = _maxunpool_inferred(node)
    # a larger output_shape: the indices address the unpooled (inferred) layout, which sits at the
    # output's origin, as onnx.reference and the node suite (onnxruntime addresses output_shape's)
    if len(y.shape) != len(inferred) or any(o < i for o, i in zip(y.shape, inferred)):
        return f"output shape {list(y.shape)} is smaller than the unpooled shape {inferred}"
    return None


@c_kernel("MaxUnpool", check=_maxunpool_check)
def maxunpool(node, ctx):
    """Y = 0, then Y[I[i] as a position in the unpooled shape] = X[i] in order; an index outside
    the unpooled shape fails the run (as in onnxruntime) and is skipped."""
    x, ind, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    inferred = _maxunpool_inferred(node)
    n = int(np.prod(inferred, dtype=np.int64))
    ct = ctx.ctype(x)
    fail = ctx.fail(node, f"index {{value}} out of range [0, {n - 1}] (the elements of the unpooled shape "
                          f"{tuple(inferred)})", "t", "i", tensor=ind)
    if list(y.shape) == inferred:
        store = "Y[t] = X[i];"
    else:  # the position in the unpooled shape, then its offset in the larger output
        ystr = [int(np.prod(y.shape[d + 1:], dtype=np.int64)) for d in range(len(y.shape))]
        parts = ["int64_t r = t, o = 0;"]
        for d in reversed(range(len(inferred))):
            parts.append(f"o += (r % {inferred[d]}) * {ystr[d]}; r /= {inferred[d]};")
        store = "{ " + " ".join(parts) + " Y[o] = X[i]; }"
    return "\n".join([
        f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};", f"const int64_t* ONNXC_RESTRICT I = {ctx.ptr(ind)};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"memset(Y, 0, {y.nbytes});",
        f"for (int64_t i = 0; i < {x.size}; ++i) {{ const int64_t t = I[i]; if (t >= 0 && t < {n}) {store} "
        f"else {{ {fail} }} }}",
    ])


# --- LpPool -------------------------------------------------------------------------------------
def _lppool_check(node) -> Optional[str]:
    from .nn import _pool_check
    if node.inputs[0].dtype != np.float32:
        return f"dtype {node.inputs[0].dtype} not supported (float32 only)"
    if int(get_attr(node, "p", 2)) < 1:
        return "p must be a positive integer"
    return _pool_check(node)


@c_kernel("LpPool", check=_lppool_check)
def lppool(node, ctx):
    from .nn import _pool_params
    if node.outputs[0].size == 0:
        return "/* empty output */"
    return (_pool_params(node, ctx) + f"\nonnxc_lppool(&p, {int(get_attr(node, 'p', 2))}, "
            f"{ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])});")


def _global_lppool_check(node) -> Optional[str]:
    x = node.inputs[0]
    if x.dtype != np.float32:
        return f"dtype {x.dtype} not supported (float32 only)"
    if len(x.shape) < 3:
        return "input rank < 3"
    return None if int(get_attr(node, "p", 2)) >= 1 else "p must be a positive integer"


@c_kernel("GlobalLpPool", check=_global_lppool_check)
def global_lppool(node, ctx):
    """LpPool over the spatial dims flattened into one window (any rank), no padding; an empty
    window gives 0 (the norm of no elements)."""
    x, y = node.inputs[0], node.outputs[0]
    nc, sp = x.shape[0] * x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))
    if nc == 0:
        return "/* empty output */"
    if sp == 0:
        return f"memset({ctx.ptr(y)}, 0, {y.nbytes});"
    return (f"static const onnxc_pool_params p = {{{x.shape[0]}, {x.shape[1]}, 1, {{{sp}, 1, 1}}, {{{sp}, 1, 1}}, "
            f"{{1, 1, 1}}, {{1, 1, 1}}, {{0, 0, 0}}, {{1, 1, 1}}, 0, {{0, 0, 0}}}};\n"
            f"onnxc_lppool(&p, {int(get_attr(node, 'p', 2))}, {ctx.ptr(x)}, {ctx.ptr(y)});")


# --- RoiAlign -----------------------------------------------------------------------------------
def _roialign_check(node) -> Optional[str]:
    x, rois, bi, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    if x.dtype != np.float32 or rois.dtype != np.float32:
        return "float32 input and rois only"
    if bi.dtype != np.int64:
        return f"batch_indices dtype {bi.dtype} not supported (int64)"
    if len(x.shape) != 4 or len(rois.shape) != 2 or rois.shape[1] != 4 or tuple(bi.shape) != (rois.shape[0],):
        return "shapes must be X[N,C,H,W], rois[R,4], batch_indices[R]"
    if get_attr(node, "mode", "avg") not in ("avg", "max"):
        return f"mode '{get_attr(node, 'mode', 'avg')}' not supported"
    if node.opset >= 16 and get_attr(node, "coordinate_transformation_mode", "half_pixel") not in (
            "half_pixel", "output_half_pixel"):
        return "coordinate_transformation_mode not supported"
    oh, ow = int(get_attr(node, "output_height", 1)), int(get_attr(node, "output_width", 1))
    if list(y.shape) != [rois.shape[0], x.shape[1], oh, ow]:
        return "inferred output shape disagrees with the attributes"
    return None


@c_kernel("RoiAlign", check=_roialign_check)
def roialign(node, ctx):
    x, rois, bi, y = node.inputs[0], node.inputs[1], node.inputs[2], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    half = node.opset >= 16 and get_attr(node, "coordinate_transformation_mode", "half_pixel") == "half_pixel"
    scale = ctx.lit(float(get_attr(node, "spatial_scale", 1.0)), np.float32)
    # the kernel gives zeros for a batch index outside X; the run fails there, as in onnxruntime
    fail = ctx.fail(node, f"batch index {{value}} out of range [0, {x.shape[0] - 1}] (the batch of input "
                          f"'{x.name}', shape {tuple(x.shape)})", f"{ctx.ptr(bi)}[r]", "r", tensor=bi)
    return "\n".join([
        f"for (int64_t r = 0; r < {bi.size}; ++r)",
        f"  if ({ctx.ptr(bi)}[r] < 0 || {ctx.ptr(bi)}[r] >= {x.shape[0]}) {{ {fail} break; }}",
        f"static const onnxc_roialign_params p = {{{rois.shape[0]}, {x.shape[0]}, {x.shape[1]}, {x.shape[2]}, "
        f"{x.shape[3]}, {y.shape[2]}, {y.shape[3]}, {int(get_attr(node, 'sampling_ratio', 0))}, {scale}, "
        f"{int(half)}, {int(get_attr(node, 'mode', 'avg') == 'max')}}};",
        f"onnxc_roialign(&p, {ctx.ptr(x)}, {ctx.ptr(rois)}, {ctx.ptr(bi)}, {ctx.ptr(y)});",
    ])


# --- MaxRoiPool ---------------------------------------------------------------------------------
def _maxroipool_check(node) -> Optional[str]:
    x, rois, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if x.dtype != np.float32 or rois.dtype != np.float32:
        return "float32 only"
    if len(x.shape) != 4 or len(rois.shape) != 2 or rois.shape[1] != 5:
        return "shapes must be X[N,C,H,W], rois[R,5]"
    ph, pw = (int(v) for v in get_attr(node, "pooled_shape"))
    if list(y.shape) != [rois.shape[0], x.shape[1], ph, pw]:
        return "inferred output shape disagrees with the attributes"
    return None


@c_kernel("MaxRoiPool", check=_maxroipool_check)
def maxroipool(node, ctx):
    x, rois, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    ph, pw = (int(v) for v in get_attr(node, "pooled_shape"))
    scale = ctx.lit(float(get_attr(node, "spatial_scale", 1.0)), np.float32)
    # batch ids are floats truncated toward zero (as onnxruntime); one outside [0, N) fails the
    # run as onnxruntime refuses it (the kernel gives zeros); NaN and huge ones show as -10^18
    fail = ctx.fail(node, f"batch id {{value}} out of range [0, {x.shape[0] - 1}] (column 0 of the rois, the "
                          f"batch of input '{x.name}', shape {tuple(x.shape)})",
                    "(b > -1e18f && b < 1e18f ? (int64_t)b : -1000000000000000000LL)", "r * 5", tensor=rois)
    return "\n".join([
        f"for (int64_t r = 0; r < {rois.shape[0]}; ++r) {{",
        f"  const float b = {ctx.ptr(rois)}[r * 5];",
        f"  if (!(b > -1.0f && b < {x.shape[0]}.0f)) {{ {fail} break; }}",
        "}",
        f"static const onnxc_maxroipool_params p = {{{rois.shape[0]}, {x.shape[0]}, {x.shape[1]}, {x.shape[2]}, "
        f"{x.shape[3]}, {ph}, {pw}, {scale}}};",
        f"onnxc_maxroipool(&p, {ctx.ptr(x)}, {ctx.ptr(rois)}, {ctx.ptr(y)});",
    ])
