"""onnxc-domain NCHWc (channel-blocked) ops: layout helpers, shape rules and numpy references.

A blocked tensor of logical shape [N, C, H, W] is stored as [N, ceil(C/b), H, W, b] with the
padding channels (lanes past C in the last block) zero.  The ops (all carry ``block`` = b):

    onnxc.ReorderInput    [X]              NCHW -> blocked; optional ``channel_order``: blocked
                          channel j is X's channel channel_order[j] (a folded channel shuffle)
    onnxc.ReorderOutput   [X]              blocked -> NCHW (``channels`` = C)
    onnxc.NchwcConv       [X, W, B?, Z?]   Y = act(conv(X, W) + B + Z), Y and Z blocked;
                          ``kind``: "direct" (X blocked, W [Mb, Cbg, KH, KW, b_in, b_out]),
                          "winograd" (X blocked, 3x3 stride 1 dilation 1 group 1; ``tile``
                          2 or 4: W the F(tile x tile, 3x3) transform [(tile+2)^2, Mb, Cb,
                          b_in, b_out]),
                          "depthwise" (X blocked, W [Cb, KH, KW, b]) or "nchw" (X plain NCHW,
                          W [Mb, C, KH, KW, b]); B padded to Mb*b; ``channels`` = M,
                          ``input_channels`` = C, resolved ``pads`` [top, left, bottom, right],
                          strides, dilations, group, kernel_shape, activation(_params)
    onnxc.NchwcPool       [X]              ``mode`` MaxPool / AveragePool / GlobalMaxPool /
                          GlobalAveragePool; pools' attributes with resolved pads, ceil_mode,
                          count_include_pad, ``channels``; ``nchw_output`` (global pools: the
                          result as plain [N, C, 1, 1])
    onnxc.NchwcScaleShift [X, S, T]        Y = X * S[c] + T[c] (S, T padded to Cb*b with zeros)
    onnxc.NchwcChannelGather [X0, X1, ...] output channel j = channel ``source_channels[j]`` of
                          input ``sources[j]`` (``channels`` outputs; ``input_channels`` the
                          inputs' C): Concat, channel Slice/Split and channel shuffles, blocked

The references unblock, run the plain op, and block the result again, so testing a rewritten
graph against onnxruntime checks the layout conventions as well as the arithmetic.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from .fused_nn import apply_activation
from .registry import evaluate, get_attr, reference, shape_rule

DOMAIN = "onnxc"


def blocks(c: int, b: int) -> int:
    return -(-int(c) // int(b))


def blocked_shape(shape: Sequence[int], b: int) -> tuple:
    n, c = shape[0], shape[1]
    return (n, blocks(c, b)) + tuple(shape[2:]) + (b,)


def to_blocked(x: np.ndarray, b: int) -> np.ndarray:
    """[N, C, ...] -> [N, ceil(C/b), ..., b], padding channels zero."""
    n, c = x.shape[:2]
    cb = blocks(c, b)
    pad = np.zeros((n, cb * b) + x.shape[2:], x.dtype)
    pad[:, :c] = x
    y = pad.reshape((n, cb, b) + x.shape[2:])
    return np.ascontiguousarray(np.moveaxis(y, 2, -1))


def from_blocked(x: np.ndarray, channels: int) -> np.ndarray:
    """[N, Cb, ..., b] -> [N, channels, ...]."""
    n, cb, b = x.shape[0], x.shape[1], x.shape[-1]
    y = np.moveaxis(x, -1, 2).reshape((n, cb * b) + x.shape[2:-1])
    return np.ascontiguousarray(y[:, :channels])


def pad_channels(v: np.ndarray, b: int) -> np.ndarray:
    """A per-channel vector [C] zero-padded to ceil(C/b)*b (bias, scale, shift)."""
    out = np.zeros(blocks(v.shape[0], b) * b, v.dtype)
    out[:v.shape[0]] = v
    return out


# --- weight packing (compile time) ---------------------------------------------------------------
def pack_direct(w: np.ndarray, b: int, group: int = 1) -> np.ndarray:
    """W [M, C/group, KH, KW] -> [Mb, Cbg, KH, KW, b_in, b_out]; each group's output channels
    padded to whole blocks (groups other than 1 have M/group and C/group multiples of b)."""
    m, cg, kh, kw = w.shape
    mg = m // group
    mbg, cbg = blocks(mg, b), blocks(cg, b)
    full = np.zeros((group, mbg * b, cbg * b, kh, kw), w.dtype)
    full[:, :mg, :cg] = w.reshape(group, mg, cg, kh, kw)
    full = full.reshape(group * mbg, b, cbg, b, kh, kw)  # [ob, co, ib, ci, kh, kw]
    return np.ascontiguousarray(full.transpose(0, 2, 4, 5, 3, 1))


def unpack_direct(wp: np.ndarray, m: int, cg: int, group: int = 1) -> np.ndarray:
    mb, cbg, kh, kw, b, _ = wp.shape
    mbg = mb // group
    full = wp.transpose(0, 5, 1, 4, 2, 3).reshape(group, mbg * b, cbg * b, kh, kw)
    return np.ascontiguousarray(full[:, :m // group, :cg].reshape(m, cg, kh, kw))


def pack_depthwise(w: np.ndarray, b: int) -> np.ndarray:
    """W [C, 1, KH, KW] -> [Cb, KH, KW, b]."""
    c, _, kh, kw = w.shape
    full = np.zeros((blocks(c, b) * b, kh, kw), w.dtype)
    full[:c] = w[:, 0]
    return np.ascontiguousarray(full.reshape(-1, b, kh, kw).transpose(0, 2, 3, 1))


def unpack_depthwise(wp: np.ndarray, c: int) -> np.ndarray:
    cb, kh, kw, b = wp.shape
    return np.ascontiguousarray(wp.transpose(0, 3, 1, 2).reshape(cb * b, 1, kh, kw)[:c])


def pack_nchw(w: np.ndarray, b: int) -> np.ndarray:
    """W [M, C, KH, KW] -> [Mb, C, KH, KW, b_out] (the NCHW-input first-layer kernel)."""
    m, c, kh, kw = w.shape
    full = np.zeros((blocks(m, b) * b, c, kh, kw), w.dtype)
    full[:m] = w
    return np.ascontiguousarray(full.reshape(-1, b, c, kh, kw).transpose(0, 2, 3, 4, 1))


def unpack_nchw(wp: np.ndarray, m: int) -> np.ndarray:
    mb, c, kh, kw, b = wp.shape
    return np.ascontiguousarray(wp.transpose(0, 4, 1, 2, 3).reshape(mb * b, c, kh, kw)[:m])


# Winograd F(2x2, 3x3) / F(4x4, 3x3): U = G g G^T per channel pair
# (runtime_c/nchwc/conv_winograd_body.h has B^T and A^T).
WINOGRAD_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
WINOGRAD_G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
_WINOGRAD = {2: WINOGRAD_G, 4: WINOGRAD_G4}


def pack_winograd(w: np.ndarray, b: int, tile: int = 2) -> np.ndarray:
    """W [M, C, 3, 3] -> U [P, Mb, Cb, b_in, b_out] for F(tile x tile, 3x3) (P = (tile + 2)^2
    positions), U[xi] = (G g G^T)[xi // (tile + 2), xi % (tile + 2)] computed in float64,
    padding channels zero."""
    m, c, kh, kw = w.shape
    if (kh, kw) != (3, 3):
        raise ValueError(f"Winograd F(tile, 3x3) needs a 3x3 kernel, got {kh}x{kw}")
    if tile not in _WINOGRAD:
        raise ValueError(f"Winograd output tile {tile} not supported ({sorted(_WINOGRAD)})")
    g = _WINOGRAD[tile]
    a = tile + 2
    u = np.einsum("ik,mckl,jl->ijmc", g, w.astype(np.float64), g).reshape(a * a, m, c)
    mb, cb = blocks(m, b), blocks(c, b)
    full = np.zeros((a * a, mb * b, cb * b), np.float64)
    full[:, :m, :c] = u
    full = full.reshape(a * a, mb, b, cb, b)  # [xi, ob, co, ib, ci]
    return np.ascontiguousarray(full.transpose(0, 1, 3, 4, 2).astype(w.dtype))


def unpack_winograd(up: np.ndarray, m: int, c: int) -> np.ndarray:
    """U [P, Mb, Cb, b, b] -> W [M, C, 3, 3]: G has full column rank, so g = pinv(G) U pinv(G)^T
    (exact up to rounding); the tile follows from P."""
    p, mb, cb, b, _ = up.shape
    a = int(round(p ** 0.5))
    pinv = np.linalg.pinv(_WINOGRAD[a - 2])
    u = up.astype(np.float64).transpose(0, 1, 4, 2, 3).reshape(a, a, mb * b, cb * b)[:, :, :m, :c]
    w = np.einsum("ki,ijmc,lj->mckl", pinv, u, pinv)
    return np.ascontiguousarray(w.astype(up.dtype))


def winograd_scratch_bytes(n: int, c: int, m: int, oh: int, ow: int, b: int, tile: int = 2) -> int:
    """Scratch of onnxc_f32_nchwc_conv_winograd[_f4]_b<b> (the rule in onnxc_nchwc.h; constants there)."""
    cb, mb = blocks(c, b), blocks(m, b)
    p = (tile + 2) ** 2
    phases = cb * mb * b * b >= 32768
    budget, most = (4 << 20, 192) if phases else (384 << 10, 96)
    tiles = n * -(-oh // tile) * -(-ow // tile)
    t = min(tiles, max(1, min(most, budget // (4 * p * (cb + mb) * b))))
    if t <= 0:
        return 0
    slots = 1 if phases else min(-(-tiles // t), 4)
    return slots * 4 * p * (cb + mb) * b * t


def pool_output_hw(in_hw, kernel, strides, pads, dilations, ceil_mode) -> List[int]:
    """Output H, W of a 2-D pool/conv window grid (pads [top, left, bottom, right])."""
    out = []
    for i in range(2):
        eff = (kernel[i] - 1) * dilations[i] + 1
        num = in_hw[i] + pads[i] + pads[i + 2] - eff
        o = (-(-num // strides[i]) if ceil_mode else num // strides[i]) + 1
        if ceil_mode and (o - 1) * strides[i] >= in_hw[i] + pads[i]:
            o -= 1  # the last window would start in the end padding
        out.append(o)
    return out


# --- shape rules ---------------------------------------------------------------------------------
def _b(node) -> int:
    return int(node.attrs["block"])


@shape_rule("ReorderInput", DOMAIN)
def _reorder_input_shape(node):
    x = node.inputs[0]
    return [(x.dtype, blocked_shape(x.shape, _b(node)))]


@shape_rule("ReorderOutput", DOMAIN)
def _reorder_output_shape(node):
    x = node.inputs[0]
    return [(x.dtype, (x.shape[0], int(node.attrs["channels"])) + tuple(x.shape[2:-1]))]


def _conv_out_hw(node) -> List[int]:
    x = node.inputs[0]
    in_hw = list(x.shape[2:4])
    return pool_output_hw(in_hw, list(node.attrs["kernel_shape"]), list(node.attrs["strides"]),
                          list(node.attrs["pads"]), list(node.attrs["dilations"]), False)


@shape_rule("NchwcConv", DOMAIN)
def _nchwc_conv_shape(node):
    x, b = node.inputs[0], _b(node)
    oh, ow = _conv_out_hw(node)
    return [(x.dtype, (x.shape[0], blocks(node.attrs["channels"], b), oh, ow, b))]


@shape_rule("NchwcPool", DOMAIN)
def _nchwc_pool_shape(node):
    x, b = node.inputs[0], _b(node)
    c = int(node.attrs["channels"])
    if node.attrs["mode"].startswith("Global"):
        if node.attrs.get("nchw_output", 0):
            return [(x.dtype, (x.shape[0], c, 1, 1))]
        return [(x.dtype, (x.shape[0], x.shape[1], 1, 1, b))]
    oh, ow = pool_output_hw(list(x.shape[2:4]), list(node.attrs["kernel_shape"]), list(node.attrs["strides"]),
                            list(node.attrs["pads"]), list(node.attrs["dilations"]),
                            bool(node.attrs.get("ceil_mode", 0)))
    return [(x.dtype, (x.shape[0], x.shape[1], oh, ow, b))]


@shape_rule("NchwcScaleShift", DOMAIN)
def _scale_shift_shape(node):
    x = node.inputs[0]
    return [(x.dtype, tuple(x.shape))]


@shape_rule("NchwcChannelGather", DOMAIN)
def _channel_gather_shape(node):
    x, b = node.inputs[0], _b(node)
    return [(x.dtype, (x.shape[0], blocks(node.attrs["channels"], b)) + tuple(x.shape[2:-1]) + (b,))]


# --- references ----------------------------------------------------------------------------------
def _plain(op_type: str, attrs: dict, arrays: List, opset: int = 19):
    """Evaluate a standard op on plain arrays (through ops.evaluate: numpy or onnx.reference)."""
    from ..ir import Node, Value
    ins = [None if a is None else Value(f"in{i}", a.dtype, a.shape) for i, a in enumerate(arrays)]
    node = Node(op_type, ins, [Value("out0")], attrs, opset=opset)
    return evaluate(node, [a for a in arrays])[0]


@reference("ReorderInput", DOMAIN)
def _reorder_input_ref(node, x):
    order = node.attrs.get("channel_order")
    return [to_blocked(x if order is None else x[:, [int(c) for c in order]], _b(node))]


@reference("ReorderOutput", DOMAIN)
def _reorder_output_ref(node, x):
    return [from_blocked(x, int(node.attrs["channels"]))]


@reference("NchwcConv", DOMAIN)
def _nchwc_conv_ref(node, x, wp, bias=None, z=None):
    b, m, c = _b(node), int(node.attrs["channels"]), int(node.attrs["input_channels"])
    group, kind = int(node.attrs.get("group", 1)), node.attrs["kind"]
    if kind == "nchw":
        w, xs = unpack_nchw(wp, m), x
    elif kind == "depthwise":
        w, xs = unpack_depthwise(wp, c), from_blocked(x, c)
    elif kind == "winograd":
        w, xs = unpack_winograd(wp, m, c), from_blocked(x, c)
    else:
        w, xs = unpack_direct(wp, m, c // group, group), from_blocked(x, c)
    attrs = {k: list(node.attrs[k]) for k in ("kernel_shape", "strides", "pads", "dilations")}
    attrs["group"] = group
    y = _plain("Conv", attrs, [xs, w] + ([bias[:m]] if bias is not None else []))
    if z is not None:
        y = y + from_blocked(z, m)
    name = str(node.attrs.get("activation", "") or "")
    y = apply_activation(name, [float(v) for v in node.attrs.get("activation_params", []) or []], y)
    return [to_blocked(y.astype(x.dtype), b)]


@reference("NchwcPool", DOMAIN)
def _nchwc_pool_ref(node, x):
    b, c, mode = _b(node), int(node.attrs["channels"]), node.attrs["mode"]
    xs = from_blocked(x, c)
    if mode.startswith("Global"):
        y = (xs.max(axis=(2, 3), keepdims=True) if mode == "GlobalMaxPool"
             else xs.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(x.dtype))
        return [y if node.attrs.get("nchw_output", 0) else to_blocked(y, b)]
    attrs = {k: list(node.attrs[k]) for k in ("kernel_shape", "strides", "pads", "dilations")}
    attrs["ceil_mode"] = int(node.attrs.get("ceil_mode", 0))
    if mode == "AveragePool":
        attrs["count_include_pad"] = int(node.attrs.get("count_include_pad", 0))
    y = _plain(mode, attrs, [xs])
    return [to_blocked(np.asarray(y, x.dtype), b)]


@reference("NchwcChannelGather", DOMAIN)
def _channel_gather_ref(node, *xs):
    plain = [from_blocked(x, int(c)) for x, c in zip(xs, node.attrs["input_channels"])]
    y = np.stack([plain[int(i)][:, int(c)] for i, c in zip(node.attrs["sources"], node.attrs["source_channels"])],
                 axis=1)
    return [to_blocked(y, _b(node))]


@reference("NchwcScaleShift", DOMAIN)
def _scale_shift_ref(node, x, s, t):
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 3) + (x.shape[-1],)
    return [(x * s.reshape(shape) + t.reshape(shape)).astype(x.dtype)]


__all__ = ["blocks", "blocked_shape", "to_blocked", "from_blocked", "pad_channels", "pack_direct",
           "unpack_direct", "pack_depthwise", "unpack_depthwise", "pack_nchw", "unpack_nchw",
           "pack_winograd", "unpack_winograd", "winograd_scratch_bytes",
           "pool_output_hw", "get_attr"]
