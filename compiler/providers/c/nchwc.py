"""C emitters of the NCHWc ops (onnxc.ReorderInput/ReorderOutput/NchwcConv/NchwcPool/
NchwcScaleShift/NchwcChannelGather) through runtime_c/nchwc/ (one kernel per block size, named
in compiler/kernels/nchwc_f32.py: onnxc_f32_nchwc_conv_b8, _b16, ...).

Weights arrive already packed by the layout pass (ops/nchwc.py), so an emitter only fills the
geometry struct.  NchwcConv clamps in the kernel epilogue (none, Relu, Clip); other fused
activations run right after the kernel, on the block it wrote, through the shared activation
table (providers/c/activations.c_activation), real channels only so padding stays zero.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...codegen.context import c_literal
from ...codegen.loops import pooled_loop
from ...kernels import nchwc_f32
from ...ops.nchwc import blocks, winograd_scratch_bytes
from .activations import c_activation
from .registry import all_of, c_kernel, dtypes_in

F32 = dtypes_in("float32")
BLOCKS = nchwc_f32.BLOCKS


def _block_check(node) -> Optional[str]:
    b = node.attrs.get("block")
    if b not in BLOCKS:
        return f"block {b} not supported (kernels exist for {BLOCKS})"
    return None


def _f(x) -> str:
    return c_literal(x, np.float32)


def _hw(shape) -> int:
    return int(np.prod(shape[2:4], dtype=np.int64))


# --- reorders ------------------------------------------------------------------------------------
def _reorder_check(node) -> Optional[str]:
    x, y = node.inputs[0], node.outputs[0]
    nchw = x if node.op_type == "ReorderInput" else y
    if len(nchw.shape) != 4:
        return f"rank {len(nchw.shape)} tensor (NCHWc reorders are 2-D images)"
    order = node.attrs.get("channel_order")
    if order is not None and (node.op_type != "ReorderInput" or sorted(int(c) for c in order) != list(range(x.shape[1]))):
        return "channel_order must be a permutation of the input channels (ReorderInput only)"
    return None


@c_kernel("ReorderInput", "ReorderOutput", domain="onnxc", check=all_of(F32, _block_check, _reorder_check))
def reorder(node, ctx):
    b = node.attrs["block"]
    x, y = node.inputs[0], node.outputs[0]
    nchw = x if node.op_type == "ReorderInput" else y
    order = node.attrs.get("channel_order")
    if order is not None:
        return "\n".join([f"static const int32_t chan[] = {{{', '.join(str(int(c)) for c in order)}}};",
                          f"{nchwc_f32.name('reorder_input_perm', b)}({nchw.shape[0]}, {nchw.shape[1]}, {_hw(nchw.shape)}, "
                          f"{ctx.ptr(x)}, chan, {ctx.ptr(y)});"])
    fn = nchwc_f32.name("reorder_input" if node.op_type == "ReorderInput" else "reorder_output", b)
    return f"{fn}({nchw.shape[0]}, {nchw.shape[1]}, {_hw(nchw.shape)}, {ctx.ptr(x)}, {ctx.ptr(y)});"


# --- convolution ---------------------------------------------------------------------------------
_CLAMPS = {"": lambda p: (-np.inf, np.inf), "Relu": lambda p: (0.0, np.inf), "Clip": lambda p: (p[0], p[1])}


def _act(node):
    return str(node.attrs.get("activation", "") or ""), [float(v) for v in node.attrs.get("activation_params", []) or []]


def _conv_check(node) -> Optional[str]:
    from ...ops.fused_nn import activation_error
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b, kind = node.attrs["block"], node.attrs.get("kind")
    m, c, group = int(node.attrs["channels"]), int(node.attrs["input_channels"]), int(node.attrs.get("group", 1))
    kh, kw = node.attrs["kernel_shape"]
    expect_w = {"direct": (blocks(m // group, b) * group, blocks(c // group, b), kh, kw, b, b),
                "depthwise": (blocks(c, b), kh, kw, b),
                "nchw": (blocks(m, b), c, kh, kw, b),
                "winograd": ((int(node.attrs.get("tile", 2)) + 2) ** 2, blocks(m, b), blocks(c, b), b, b)}.get(kind)
    if expect_w is None:
        return f"unknown NchwcConv kind '{kind}'"
    if tuple(w.shape) != expect_w:
        return f"packed weights {w.shape} do not match kind {kind} ({expect_w})"
    if kind == "depthwise" and not (group == c == m):
        return "depthwise NchwcConv needs group == input channels == output channels"
    if kind == "nchw" and group != 1:
        return "NCHW-input NchwcConv needs group 1"
    if kind == "winograd" and (group != 1 or (kh, kw) != (3, 3) or list(node.attrs["strides"]) != [1, 1]
                               or list(node.attrs["dilations"]) != [1, 1]):
        return "Winograd NchwcConv needs a 3x3 kernel, stride 1, dilation 1 and group 1"
    if kind == "winograd" and node.attrs.get("tile", 2) not in (2, 4):
        return f"Winograd output tile {node.attrs.get('tile')} not supported (2, 4)"
    if kind == "direct" and group > 1 and (c % (group * b) or m % (group * b)):
        return "grouped NchwcConv needs channels per group that are multiples of the block"
    xs = (x.shape[0], c) + tuple(x.shape[2:]) if kind == "nchw" else (x.shape[0], blocks(c, b) * b)
    if (kind == "nchw" and len(x.shape) != 4) or (kind != "nchw" and (len(x.shape) != 5 or x.shape[-1] != b
                                                                         or x.shape[1] * b != xs[1])):
        return f"input shape {x.shape} does not fit kind {kind}"
    bias, z = node.input(2), node.input(3)
    if bias is not None and tuple(bias.shape) != (blocks(m, b) * b,):
        return f"bias shape {bias.shape} is not the padded [{blocks(m, b) * b}]"
    if z is not None and tuple(z.shape) != tuple(y.shape):
        return f"residual Z shape {z.shape} differs from the output {y.shape}"
    return activation_error(*_act(node))


def _subsample(node) -> bool:
    """A strided 1x1 direct conv at b=8 whose sampled pixels all lie inside the input: runs as a
    gather into scratch plus the pointwise path (onnxc_f32_nchwc_conv_subsample_b8; twice the
    window path's speed on ResNet-50's downsample convs at AVX2).  b=16 keeps the window path."""
    x, y = node.inputs[0], node.outputs[0]
    sh, sw = node.attrs["strides"]
    return (node.attrs.get("kind") == "direct" and node.attrs["block"] == 8
            and tuple(node.attrs["kernel_shape"]) == (1, 1) and (sh, sw) != (1, 1)
            and list(node.attrs["pads"][:2]) == [0, 0]
            and (y.shape[2] - 1) * sh < x.shape[2] and (y.shape[3] - 1) * sw < x.shape[3])


def _conv_scratch(node) -> int:
    """Winograd's transform buffers (the rule of onnxc_nchwc.h), a subsampled 1x1 conv's gathered
    input ([N, Cb, OH, OW, b] floats); the other kinds need none."""
    if _subsample(node):
        x, y = node.inputs[0], node.outputs[0]
        return int(x.shape[0] * x.shape[1] * y.shape[2] * y.shape[3] * x.shape[4]) * 4
    if node.attrs.get("kind") != "winograd":
        return 0
    y = node.outputs[0]
    return winograd_scratch_bytes(y.shape[0], int(node.attrs["input_channels"]), int(node.attrs["channels"]),
                                  y.shape[2], y.shape[3], node.attrs["block"], int(node.attrs.get("tile", 2)))


@c_kernel("NchwcConv", domain="onnxc", check=all_of(F32, _block_check, _conv_check), scratch=_conv_scratch)
def nchwc_conv(node, ctx):
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    bias, z = node.input(2), node.input(3)
    b, kind = node.attrs["block"], node.attrs["kind"]
    m, c = int(node.attrs["channels"]), int(node.attrs["input_channels"])
    kh, kw = node.attrs["kernel_shape"]
    sh, sw = node.attrs["strides"]
    pt, pl = node.attrs["pads"][:2]
    dh, dw = node.attrs["dilations"]
    name, params = _act(node)
    lo, hi = _CLAMPS[name](params) if name in _CLAMPS else (-np.inf, np.inf)
    fn = {"direct": "conv", "depthwise": "conv_depthwise", "nchw": "conv_nchw", "winograd": "conv_winograd"}[kind]
    opt = lambda v: ctx.ptr(v) if v is not None else "NULL"  # noqa: E731
    scratch = f", {ctx.scratch(node)}" if kind == "winograd" or _subsample(node) else ""
    if _subsample(node):
        fn = "conv_subsample"
    if kind == "winograd" and int(node.attrs.get("tile", 2)) == 4:
        fn += "_f4"
    fn = nchwc_f32.name(fn, b)
    lines = [
        f"static const onnxc_nchwc_conv_params p = {{{x.shape[0]}, {c}, {m}, {node.attrs.get('group', 1)}, "
        f"{x.shape[2]}, {x.shape[3]}, {y.shape[2]}, {y.shape[3]}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, "
        f"{dh}, {dw}, {_f(lo)}, {_f(hi)}}};",
        f"{fn}(&p, {ctx.ptr(x)}, {ctx.ptr(w)}, {opt(bias)}, {opt(z)}, {ctx.ptr(y)}{scratch});",
    ]
    if name and name not in _CLAMPS:
        # act(0) may be nonzero and padding must stay 0: the loop re-zeroes the padding lanes
        lines += nchwc_activation_loop(ctx, node, ctx.ptr(y), y.shape, m, c_activation(name, params, "v"))
    return "\n".join(lines)


# Elements per task of the activation pass (64 KiB) and the size below which it stays serial.
ACT_TASK = 16384
ACT_PARALLEL_MIN = 65536


def nchwc_activation_loop(ctx, node, ptr: str, shape, channels: int, expr: str) -> list:
    """C lines applying ``expr`` (of the float ``v``) in place to blocked ``shape``: one flat
    loop over every lane (vectorizes), split into tasks for the runtime's thread pool
    (codegen/loops.py pooled_loop: a serial pass here was the part of the conv that did not
    scale with threads), then the padding lanes of a partial last block are zeroed again
    (expr(0) may be nonzero: HardSigmoid, Sigmoid)."""
    n, cb, b, hw = shape[0], shape[1], shape[-1], _hw(shape)
    total = n * cb * hw * b
    loop = pooled_loop(ctx, node, [("float*", "Yb", ptr)], [total], [("Yb", [total])],
                       lambda elems, oi: f"const float v = {elems[0]}; Yb[{oi}] = {expr};",
                       min_elems=ACT_PARALLEL_MIN, task_elems=ACT_TASK)
    lines = ["{", "    {"] + ["        " + line for line in loop.splitlines()] + ["    }"]
    if channels % b:
        lines += [f"    float* ONNXC_RESTRICT Yb = {ptr};",
                  f"    for (int64_t nb = 0; nb < {n}; ++nb)",
                  f"        for (int64_t s = 0; s < {hw}; ++s)",
                  f"            for (int64_t l = {channels % b}; l < {b}; ++l) Yb[((nb * {cb} + {cb - 1}) * {hw} + s) * {b} + l] = 0.0f;"]
    return lines + ["}"]


# --- pools ---------------------------------------------------------------------------------------
def _pool_check(node) -> Optional[str]:
    x, b = node.inputs[0], node.attrs["block"]
    mode = node.attrs.get("mode")
    if mode not in ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool"):
        return f"unknown NchwcPool mode '{mode}'"
    if len(x.shape) != 5 or x.shape[-1] != b or x.shape[1] != blocks(node.attrs["channels"], b):
        return f"input shape {x.shape} is not blocked [N, Cb, H, W, {b}]"
    if node.attrs.get("nchw_output", 0) and not mode.startswith("Global"):
        return "only global pools write NCHW output"
    return None


@c_kernel("NchwcPool", domain="onnxc", check=all_of(F32, _block_check, _pool_check))
def nchwc_pool(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    b, mode, c = node.attrs["block"], node.attrs["mode"], int(node.attrs["channels"])
    if mode.startswith("Global"):
        return (f"{nchwc_f32.name('global_pool', b)}({x.shape[0]}, {c}, {_hw(x.shape)}, {int(mode == 'GlobalMaxPool')}, "
                f"{int(node.attrs.get('nchw_output', 0))}, {ctx.ptr(x)}, {ctx.ptr(y)});")
    kh, kw = node.attrs["kernel_shape"]
    sh, sw = node.attrs["strides"]
    pt, pl, pb, pr = node.attrs["pads"]
    dh, dw = node.attrs["dilations"]
    cip = int(node.attrs.get("count_include_pad", 0))
    fn = nchwc_f32.name("maxpool" if mode == "MaxPool" else "avgpool", b)
    return "\n".join([
        f"static const onnxc_nchwc_pool_params p = {{{x.shape[0]}, {c}, {x.shape[2]}, {x.shape[3]}, {y.shape[2]}, "
        f"{y.shape[3]}, {kh}, {kw}, {sh}, {sw}, {pt}, {pl}, {pb}, {pr}, {dh}, {dw}, {cip}}};",
        f"{fn}(&p, {ctx.ptr(x)}, {ctx.ptr(y)});",
    ])


# --- per-channel scale and shift (BatchNormalization) --------------------------------------------
def _scale_shift_check(node) -> Optional[str]:
    x, s, t = node.inputs
    b = node.attrs["block"]
    if len(x.shape) != 5 or x.shape[-1] != b:
        return f"input shape {x.shape} is not blocked"
    if tuple(s.shape) != (x.shape[1] * b,) or tuple(t.shape) != (x.shape[1] * b,):
        return "scale/shift are not padded per-channel vectors"
    return None


@c_kernel("NchwcScaleShift", domain="onnxc", check=all_of(F32, _block_check, _scale_shift_check))
def nchwc_scale_shift(node, ctx):
    x, s, t = node.inputs
    y, b = node.outputs[0], node.attrs["block"]
    return (f"{nchwc_f32.name('scale_shift', b)}({x.shape[0]}, {x.shape[1]}, {_hw(x.shape)}, {ctx.ptr(x)}, "
            f"{ctx.ptr(s)}, {ctx.ptr(t)}, {ctx.ptr(y)});")


# --- channel gather (Concat / channel Slice / channel shuffle on blocked tensors) -----------------
def _gather_check(node) -> Optional[str]:
    b, xs, y = node.attrs["block"], node.inputs, node.outputs[0]
    srcs, chs = list(node.attrs.get("sources", [])), list(node.attrs.get("source_channels", []))
    in_ch = list(node.attrs.get("input_channels", []))
    c = int(node.attrs.get("channels", 0))
    if not xs or any(x is None for x in xs):
        return "channel gather needs at least one input"
    if len(in_ch) != len(xs) or len(srcs) != c or len(chs) != c or c <= 0:
        return "sources/source_channels must list every output channel, input_channels every input"
    for x, ci in zip(xs, in_ch):
        if len(x.shape) != 5 or x.shape[-1] != b or x.shape[1] != blocks(ci, b):
            return f"input shape {x.shape} is not blocked [N, ceil({ci}/{b}), H, W, {b}]"
        if tuple(x.shape[0:1]) + tuple(x.shape[2:]) != tuple(xs[0].shape[0:1]) + tuple(xs[0].shape[2:]):
            return "inputs differ in batch or spatial size"
    if any(not 0 <= int(i) < len(xs) or not 0 <= int(k) < in_ch[int(i)] for i, k in zip(srcs, chs)):
        return "a source channel lies outside its input"
    return None


def gather_tables(node):
    """(first, entries) of onnxc_f32_nchwc_channel_gather_b<b>: per output block the source vectors
    (input, block) it reads, each with the mask of output lanes it fills and their source lanes."""
    b, c = node.attrs["block"], int(node.attrs["channels"])
    srcs, chs = node.attrs["sources"], node.attrs["source_channels"]
    first, ent = [0], []
    for ob in range(blocks(c, b)):
        groups = {}
        for lane in range(min(b, c - ob * b)):
            i, k = int(srcs[ob * b + lane]), int(chs[ob * b + lane])
            g = groups.setdefault((i, k // b), [0, [0] * b])
            g[0] |= 1 << lane
            g[1][lane] = k % b
        for (i, blk), (mask, idx) in groups.items():
            ent += [i, blk, mask] + idx
        first.append(len(ent) // (3 + b))
    return first, ent


@c_kernel("NchwcChannelGather", domain="onnxc", check=all_of(F32, _block_check, _gather_check))
def nchwc_channel_gather(node, ctx):
    b, y = node.attrs["block"], node.outputs[0]
    first, ent = gather_tables(node)
    inb = [x.shape[1] for x in node.inputs]
    ints = lambda v: ", ".join(str(int(i)) for i in v)  # noqa: E731
    return "\n".join([
        f"static const int32_t first[] = {{{ints(first)}}};",
        f"static const int32_t ent[] = {{{ints(ent)}}};",
        f"static const int64_t inb[] = {{{ints(inb)}}};",
        f"const float* const xs[] = {{{', '.join(ctx.ptr(x) for x in node.inputs)}}};",
        f"{nchwc_f32.name('channel_gather', b)}({y.shape[0]}, {_hw(y.shape)}, {y.shape[1]}, xs, inb, first, ent, {ctx.ptr(y)});",
    ])
