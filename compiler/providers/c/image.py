"""Image ops: Resize (and Upsample), GridSample, AffineGrid, Col2Im, MaxUnpool, RoiAlign,
MaxRoiPool.  Resize's per-axis index/weight tables come from the op's coordinate math
(ops/resize.py) and are stored in the weights blob, so the generated C is a gather and a
weighted sum.  (ConvTranspose and LpPool are in nn.py.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from ...ops.plan import Refuse, const_input, refusal, why_refused
from ...ops.resize import FLOATS, resize_plan
from .nn import arr3
from .registry import c_kernel


def _resize_check(node):
    if len(node.inputs[0].shape) == 0:
        return "scalar input"
    return why_refused(resize_plan, node)


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




# --- Col2Im -------------------------------------------------------------------------------------
def col2im_plan(node) -> dict:
    x, y = node.inputs[0], node.outputs[0]
    image = const_input(node, 1, "image_shape")
    block = const_input(node, 2, "block_shape")
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
        f"static const onnxc_col2im_params p = {{{g['rank']}, {arr3(g['image'], 1)}, {arr3(g['block'], 1)}, "
        f"{arr3(g['grid'], 1)}, {arr3(g['strides'], 1)}, {arr3(g['begin'])}, {arr3(g['dil'], 1)}}};",
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
        f"{arr3(x.shape[2:], 1)}, {arr3(y.shape[2:], 1)}, {mode}, {pad}, {ac}}};",
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
    size = const_input(node, 1, "size")
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
