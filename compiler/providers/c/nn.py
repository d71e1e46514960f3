"""Neural-net emitters: Conv, DeformConv, ConvTranspose, MaxPool, AveragePool, LpPool, global
pools, LRN (float32, runtime_c kernels).

Geometry (pads after auto_pad, output sizes) is resolved at compile time and written into the
kernel's params struct as literals.  Output sizes come from the node's inferred shape and are
cross-checked against our own formula; a disagreement is refused rather than guessed.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ops import get_attr
from ...ops.nn import resolve_pads  # noqa: F401  (the C emitters' name for it)
from ...ops.plan import Refuse, refusal
from .registry import all_of, c_kernel, dtypes_in

F32 = dtypes_in("float32")


def geometry(node, kernel: List[int]):
    x = node.inputs[0]
    rank = len(x.shape) - 2
    spatial = list(x.shape[2:])
    strides = list(get_attr(node, "strides", None) or [1] * rank)
    dilations = list(get_attr(node, "dilations", None) or [1] * rank)
    begin, end = resolve_pads(node, spatial, kernel, strides, dilations)
    return rank, spatial, strides, dilations, begin, end


def _expected_out(spatial, kernel, strides, dilations, begin, end, ceil_mode=False) -> List[int]:
    out = []
    for i in range(len(spatial)):
        eff = (kernel[i] - 1) * dilations[i] + 1
        num = spatial[i] + begin[i] + end[i] - eff
        o = (-(-num // strides[i]) if ceil_mode else num // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= spatial[i] + begin[i]:
            o -= 1  # the last window would start in the end padding
        out.append(o)
    return out


def arr3(vals, fill=0) -> str:
    vals = list(vals) + [fill] * (3 - len(vals))
    return "{" + ", ".join(str(int(v)) for v in vals) + "}"


# --- Conv ---------------------------------------------------------------------------------
def _conv_parts(node):
    x, w = node.inputs[0], node.inputs[1]
    kernel = list(w.shape[2:])
    rank, spatial, strides, dil, begin, end = geometry(node, kernel)
    return x, w, kernel, rank, spatial, strides, dil, begin, end


def _conv_check(node) -> Optional[str]:
    x, w = node.inputs[0], node.inputs[1]
    rank = len(x.shape) - 2
    if not 1 <= rank <= 3:
        return f"{rank}-D convolution not supported (1 to 3 spatial dims)"
    x, w, kernel, rank, spatial, strides, dil, begin, end = _conv_parts(node)
    group = get_attr(node, "group", 1)
    if x.shape[1] != w.shape[1] * group or w.shape[0] % group:
        return "channel counts do not match group"
    if list(node.outputs[0].shape[2:]) != _expected_out(spatial, kernel, strides, dil, begin, end):
        return "inferred output shape disagrees with the convolution geometry"
    return None


def _conv_scratch(node) -> int:
    x, w, kernel, rank, spatial, strides, dil, begin, end = _conv_parts(node)
    out = node.outputs[0].shape[2:]
    pointwise = all(k == 1 for k in kernel) and all(s == 1 for s in strides) and not any(begin + end)
    depthwise = w.shape[1] == 1 and get_attr(node, "group", 1) > 1
    if pointwise or depthwise:
        return 0
    return int(w.shape[1] * np.prod(kernel) * np.prod(out)) * 4


def conv_params(node) -> str:
    """The `static const onnxc_conv_params p` declaration of a Conv-like node (also FusedConv)."""
    x, w, kernel, rank, spatial, strides, dil, begin, end = _conv_parts(node)
    return (f"static const onnxc_conv_params p = {{{x.shape[0]}, {x.shape[1]}, {w.shape[0]}, "
            f"{get_attr(node, 'group', 1)}, {rank}, {arr3(spatial, 1)}, {arr3(kernel, 1)}, "
            f"{arr3(node.outputs[0].shape[2:], 1)}, {arr3(strides, 1)}, {arr3(begin)}, {arr3(dil, 1)}}};")


@c_kernel("Conv", check=all_of(F32, _conv_check), scratch=_conv_scratch)
def conv(node, ctx):
    x, w, y, b = node.inputs[0], node.inputs[1], node.outputs[0], node.input(2)
    scratch = ctx.scratch(node) if _conv_scratch(node) else "NULL"
    return "\n".join([
        conv_params(node),
        f"onnxc_conv(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {ctx.ptr(b) if b is not None else 'NULL'}, "
        f"{ctx.ptr(y)}, {scratch});",
    ])


# --- DeformConv (2-D) ----------------------------------------------------------------------
def _deform_parts(node):
    x, w = node.inputs[0], node.inputs[1]
    kernel = [int(k) for k in (get_attr(node, "kernel_shape", None) or w.shape[2:])]
    strides = [int(s) for s in (get_attr(node, "strides", None) or [1, 1])]
    dil = [int(d) for d in (get_attr(node, "dilations", None) or [1, 1])]
    pads = [int(q) for q in (get_attr(node, "pads", None) or [0, 0, 0, 0])]
    return x, w, kernel, strides, dil, pads


def _deform_check(node) -> Optional[str]:
    x, w, kernel, strides, dil, pads = _deform_parts(node)
    if len(x.shape) != 4:
        return f"{len(x.shape) - 2}-D deformable convolution not supported (2-D only)"
    if list(kernel) != list(w.shape[2:]) or len(strides) != 2 or len(dil) != 2 or len(pads) != 4:
        return "kernel_shape, strides, dilations or pads do not match the 2-D weight"
    group, og = int(get_attr(node, "group", 1)), int(get_attr(node, "offset_group", 1))
    n, c, h, wd = x.shape
    m = w.shape[0]
    if c != w.shape[1] * group or m % group or c % og:
        return "channel counts do not match group / offset_group"
    out = _expected_out([h, wd], kernel, strides, dil, pads[:2], pads[2:])
    y, off, mask = node.outputs[0], node.inputs[2], node.input(4)
    if list(y.shape) != [n, m] + out or list(off.shape) != [n, og * kernel[0] * kernel[1] * 2] + out:
        return f"output {list(y.shape)} or offset {list(off.shape)} disagrees with the geometry (output {out})"
    if mask is not None and list(mask.shape) != [n, og * kernel[0] * kernel[1]] + out:
        return f"mask shape {list(mask.shape)} disagrees with the geometry"
    b = node.input(3)
    if b is not None and tuple(b.shape) != (m,):
        return f"bias shape {tuple(b.shape)}, expected ({m},)"
    return None


def _deform_scratch(node) -> int:
    x, w, kernel, *_ = _deform_parts(node)
    y = node.outputs[0]
    return int(x.shape[1] * kernel[0] * kernel[1] * y.shape[2] * y.shape[3]) * 4


@c_kernel("DeformConv", check=all_of(F32, _deform_check), scratch=_deform_scratch)
def deform_conv(node, ctx):
    x, w, kernel, strides, dil, pads = _deform_parts(node)
    y, off, b, mask = node.outputs[0], node.inputs[2], node.input(3), node.input(4)
    if y.size == 0:
        return "/* empty output */"
    n, c, h, wd = x.shape
    vals = [n, c, h, wd, w.shape[0], int(get_attr(node, "group", 1)), int(get_attr(node, "offset_group", 1)),
            kernel[0], kernel[1], y.shape[2], y.shape[3], strides[0], strides[1], pads[0], pads[1], dil[0], dil[1]]
    scratch = ctx.scratch(node) if _deform_scratch(node) else "NULL"
    return "\n".join([
        f"static const onnxc_deformconv_params p = {{{', '.join(str(int(v)) for v in vals)}}};",
        f"onnxc_deformconv(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {ctx.ptr(off)}, {ctx.ptr(b) if b is not None else 'NULL'}, "
        f"{ctx.ptr(mask) if mask is not None else 'NULL'}, {ctx.ptr(y)}, {scratch});",
    ])


# --- pools --------------------------------------------------------------------------------
def _pool_parts(node):
    kernel = list(get_attr(node, "kernel_shape"))
    rank, spatial, strides, dil, begin, end = geometry(node, kernel)
    return kernel, rank, spatial, strides, dil, begin, end


def _pool_check(node) -> Optional[str]:
    x = node.inputs[0]
    rank = len(x.shape) - 2
    if not 1 <= rank <= 3:
        return f"{rank}-D pooling not supported"
    if get_attr(node, "storage_order", 0) and node.op_type != "MaxPool":
        return "storage_order=1 not supported"
    kernel, rank, spatial, strides, dil, begin, end = _pool_parts(node)
    ceil_mode = bool(get_attr(node, "ceil_mode", 0))
    expect = _expected_out(spatial, kernel, strides, dil, begin, end, ceil_mode)
    if list(node.outputs[0].shape[2:]) != expect:
        return f"inferred output shape {node.outputs[0].shape[2:]} disagrees with pooling geometry {expect}"
    return None


def _pool_params(node, ctx) -> str:
    x, y = node.inputs[0], node.outputs[0]
    kernel, rank, spatial, strides, dil, begin, end = _pool_parts(node)
    cip = int(get_attr(node, "count_include_pad", 0)) if node.op_type == "AveragePool" else 0
    return (f"static const onnxc_pool_params p = {{{x.shape[0]}, {x.shape[1]}, {rank}, {arr3(spatial, 1)}, "
            f"{arr3(kernel, 1)}, {arr3(y.shape[2:], 1)}, {arr3(strides, 1)}, {arr3(begin)}, "
            f"{arr3(dil, 1)}, {cip}, {arr3(end)}}};")


MAXPOOL_FN = {np.dtype(np.float32): "onnxc_maxpool", np.dtype(np.int8): "onnxc_s8_maxpool",
              np.dtype(np.uint8): "onnxc_u8_maxpool"}  # 8-bit: quantized MaxPool (drop_qdq)


def _maxpool_dtype(node):
    return None if node.inputs[0].dtype in MAXPOOL_FN else f"dtype {node.inputs[0].dtype} not supported"


@c_kernel("MaxPool", check=all_of(_maxpool_dtype, _pool_check))
def maxpool(node, ctx):
    idx = ctx.ptr(node.outputs[1]) if len(node.outputs) > 1 else "NULL"
    code = _pool_params(node, ctx) + f"\n{MAXPOOL_FN[node.inputs[0].dtype]}(&p, {ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])}, {idx});"
    if idx != "NULL" and get_attr(node, "storage_order", 0) and node.outputs[1].size:
        # column-major indices: the kernel's row-major spatial position (a, b, c) over the spatial
        # dims padded in front to 3 (d0, d1, d2) becomes a + b * d0 + c * d0 * d1
        x = node.inputs[0]
        d = [1] * (5 - len(x.shape)) + list(x.shape[2:])
        sp = d[0] * d[1] * d[2]
        code += (f"\nfor (int64_t q = 0; q < {node.outputs[1].size}; ++q) {{ int64_t* v = {idx} + q; "
                 f"if (*v >= 0) {{ const int64_t r = *v % {sp}; "
                 f"*v = *v - r + r / {d[1] * d[2]} + (r / {d[2]} % {d[1]}) * {d[0]} + r % {d[2]} * {d[0] * d[1]}; }} }}")
    return code


@c_kernel("AveragePool", check=all_of(F32, _pool_check))
def avgpool(node, ctx):
    return _pool_params(node, ctx) + f"\nonnxc_avgpool(&p, {ctx.ptr(node.inputs[0])}, {ctx.ptr(node.outputs[0])});"


def _global_check(node):
    return None if len(node.inputs[0].shape) >= 3 else "input rank < 3"


@c_kernel("GlobalAveragePool", "GlobalMaxPool", check=all_of(F32, _global_check))
def global_pool(node, ctx):
    x = node.inputs[0]
    nc = x.shape[0] * x.shape[1]
    sp = int(np.prod(x.shape[2:], dtype=np.int64))
    fn = "onnxc_global_avgpool" if node.op_type == "GlobalAveragePool" else "onnxc_global_maxpool"
    return f"{fn}({nc}, {sp}, {ctx.ptr(x)}, {ctx.ptr(node.outputs[0])});"


def _lrn_check(node):
    return None if len(node.inputs[0].shape) >= 2 else "input rank < 2"


@c_kernel("LRN", check=all_of(F32, _lrn_check))
def lrn(node, ctx):
    x = node.inputs[0]
    sp = int(np.prod(x.shape[2:], dtype=np.int64))
    alpha, beta, bias = (float(get_attr(node, k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
    return (f"onnxc_lrn({x.shape[0]}, {x.shape[1]}, {sp}, {int(get_attr(node, 'size'))}, {ctx.lit(alpha, np.float32)}, "
            f"{ctx.lit(beta, np.float32)}, {ctx.lit(bias, np.float32)}, {ctx.ptr(x)}, {ctx.ptr(node.outputs[0])});")



# --- com.microsoft.NhwcMaxPool (8-bit, NHWC: the int8 layout pass) ---------------------------------
def _nhwc_maxpool_check(node) -> Optional[str]:
    from ...ops import nhwc_pool
    x, y = node.inputs[0], node.outputs[0]
    if x.dtype not in (np.dtype(np.uint8), np.dtype(np.int8)):
        return f"dtype {x.dtype} not supported (8-bit only)"
    if len(x.shape) not in (3, 4):
        return f"{len(x.shape) - 2}-D pooling not supported (1-D and 2-D)"
    if get_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        return "auto_pad not supported (the layout pass writes pads)"
    out = nhwc_pool.window(node, list(x.shape[1:-1]))[-1]
    if list(y.shape[1:-1]) != out:
        return f"inferred output shape {list(y.shape)} disagrees with pooling geometry {out}"
    return None


@c_kernel("NhwcMaxPool", domain="com.microsoft", check=_nhwc_maxpool_check)
def nhwc_maxpool(node, ctx):
    from ...ops import nhwc_pool
    x, y = node.inputs[0], node.outputs[0]
    spatial = list(x.shape[1:-1])
    k, s, d, b, e, out = nhwc_pool.window(node, spatial)
    fn = "onnxc_u8_maxpool_nhwc" if x.dtype == np.uint8 else "onnxc_s8_maxpool_nhwc"
    return (f"static const onnxc_pool_params p = {{{x.shape[0]}, {x.shape[-1]}, {len(spatial)}, {arr3(spatial, 1)}, "
            f"{arr3(k, 1)}, {arr3(out, 1)}, {arr3(s, 1)}, {arr3(b)}, {arr3(d, 1)}, 0, {arr3(e)}}};\n"
            f"{fn}(&p, {ctx.ptr(x)}, {ctx.ptr(y)});")


# --- ConvTranspose ------------------------------------------------------------------------------
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
        f"{arr3(g['ins'], 1)}, {arr3(g['kernel'], 1)}, {arr3(g['out'], 1)}, {arr3(g['strides'], 1)}, "
        f"{arr3(g['begin'])}, {arr3(g['dil'], 1)}}};",
        f"onnxc_conv_transpose(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {ctx.ptr(b) if b is not None else 'NULL'}, "
        f"{ctx.ptr(y)}, {ctx.scratch(node)});",
    ])



# --- LpPool -------------------------------------------------------------------------------------
def _lppool_check(node) -> Optional[str]:
    if node.inputs[0].dtype != np.float32:
        return f"dtype {node.inputs[0].dtype} not supported (float32 only)"
    if int(get_attr(node, "p", 2)) < 1:
        return "p must be a positive integer"
    return _pool_check(node)


@c_kernel("LpPool", check=_lppool_check)
def lppool(node, ctx):
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
