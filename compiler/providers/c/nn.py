"""Neural-net emitters: Conv, DeformConv, MaxPool, AveragePool, global pools, LRN (float32, runtime_c kernels).

Geometry (pads after auto_pad, output sizes) is resolved at compile time and written into the
kernel's params struct as literals.  Output sizes come from the node's inferred shape and are
cross-checked against our own formula; a disagreement is refused rather than guessed.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ops import get_attr
from ...ops.nn import resolve_pads  # noqa: F401  (the C emitters' name for it)
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


def _arr3(vals, fill=0) -> str:
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
            f"{get_attr(node, 'group', 1)}, {rank}, {_arr3(spatial, 1)}, {_arr3(kernel, 1)}, "
            f"{_arr3(node.outputs[0].shape[2:], 1)}, {_arr3(strides, 1)}, {_arr3(begin)}, {_arr3(dil, 1)}}};")


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
    return (f"static const onnxc_pool_params p = {{{x.shape[0]}, {x.shape[1]}, {rank}, {_arr3(spatial, 1)}, "
            f"{_arr3(kernel, 1)}, {_arr3(y.shape[2:], 1)}, {_arr3(strides, 1)}, {_arr3(begin)}, "
            f"{_arr3(dil, 1)}, {cip}, {_arr3(end)}}};")


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
    return (f"static const onnxc_pool_params p = {{{x.shape[0]}, {x.shape[-1]}, {len(spatial)}, {_arr3(spatial, 1)}, "
            f"{_arr3(k, 1)}, {_arr3(out, 1)}, {_arr3(s, 1)}, {_arr3(b)}, {_arr3(d, 1)}, 0, {_arr3(e)}}};\n"
            f"{fn}(&p, {ctx.ptr(x)}, {ctx.ptr(y)});")
