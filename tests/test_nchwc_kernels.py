"""The NCHWc convolution kernels (runtime_c/nchwc/conv_nchwc.c, onnxc_f32_nchwc_conv*_b8/_b16 of
compiler/kernels/nchwc_f32.py) called directly, against a float64 numpy convolution, for every
register-tile path the host can run.

conv_nchwc.c is compiled with the flags of each float ISA the host runs: generic (the plain-C
path at both blocks), avx2 (b=8 in intrinsics, b=16 plain C) and avx512 (both in intrinsics),
plus the best of these with tiny weight budgets (input blocks summed in chunks).
Each library runs both block sizes, so every microkernel variant (tile of output blocks x
pixels, remainder tiles, border pixels, chunked input-channel sums, plain-NCHW input) meets
shapes chosen to reach it: output-block counts that leave partial tiles and partial blocks,
widths below, at and past a tile, strides, dilation, asymmetric pads, groups, residual and
clamps (a clamp above 0 checks that padding lanes are still zeroed).
"""
from __future__ import annotations

import numpy as np
import pytest

from onnxc.build import compile_flags
from onnxc.cpu import runnable_float_isas
from onnxc.kernels import nchwc_f32
from onnxc.ops.nchwc import blocks, pack_depthwise, pack_direct, pack_nchw, pad_channels, to_blocked
from onnxc.resources import kernels_cdef

from helpers import kernel_library

ISAS = runnable_float_isas()
FLAGS = {isa: compile_flags(isa) for isa in ISAS}
# The best ISA again with weight budgets of 2 KiB, so that window convs too sum their input
# blocks in several chunks (partial sums in Y) at these small shapes.
FLAGS["chunked"] = FLAGS[ISAS[-1]] + ["-DNCHWC_WINDOW_CHUNK_WEIGHTS=2048", "-DNCHWC_PW_CHUNK_WEIGHTS=2048"]
ISAS.append("chunked")
RNG = np.random.default_rng(5)


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    return kernel_library(tmp_path_factory, f"nchwc-{request.param}", ["nchwc/conv_nchwc.c"], FLAGS[request.param],
                          extra_cdef=kernels_cdef("onnxc_nchwc.h") + kernels_cdef("onnxc_threads.h"))


def conv_ref(x, w, b, stride, pads, dil, group):
    """float64 2-D convolution; pads [top, left, bottom, right]."""
    n, c, ih, iw = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (ih + pads[0] + pads[2] - (kh - 1) * dil[0] - 1) // stride[0] + 1
    ow = (iw + pads[1] + pads[3] - (kw - 1) * dil[1] - 1) // stride[1] + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        wg = w[g * mg:(g + 1) * mg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                r0, c0 = i * dil[0], j * dil[1]
                patch = xp[:, g * cg:(g + 1) * cg, r0:r0 + (oh - 1) * stride[0] + 1:stride[0],
                           c0:c0 + (ow - 1) * stride[1] + 1:stride[1]]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wg[:, :, i, j])
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def run(lib, nb, kind, x, w, bias, z, stride, pads, dil, group, lo, hi):
    ffi, L = lib
    x, w = x.astype(np.float32), w.astype(np.float32)
    n, c, ih, iw = x.shape
    m, _, kh, kw = w.shape
    ref = conv_ref(x, w, bias, stride, pads, dil, group)
    oh, ow = ref.shape[2:]
    if z is not None:
        ref = ref + z
    ref = np.clip(ref, lo, hi)
    if kind == "nchw":
        xk, wk = np.ascontiguousarray(x), pack_nchw(w, nb)
    elif kind == "depthwise":
        xk, wk = to_blocked(x, nb), pack_depthwise(w, nb)
    else:
        xk, wk = to_blocked(x, nb), pack_direct(w, nb, group)
    bk = pad_channels(bias.astype(np.float32), nb) if bias is not None else None
    zk = to_blocked(z.astype(np.float32), nb) if z is not None else None
    y = np.full((n, blocks(m, nb), oh, ow, nb), np.nan, np.float32)  # every lane must be written
    p = ffi.new("onnxc_nchwc_conv_params *", dict(
        N=n, C=c, M=m, group=group, IH=ih, IW=iw, OH=oh, OW=ow, KH=kh, KW=kw, SH=stride[0],
        SW=stride[1], PT=pads[0], PL=pads[1], DH=dil[0], DW=dil[1], lo=lo, hi=hi))
    fp = lambda a: ffi.NULL if a is None else ffi.cast("float *", a.ctypes.data)  # noqa: E731
    fn = nchwc_f32.name({"direct": "conv", "nchw": "conv_nchw", "depthwise": "conv_depthwise",
                         "subsample": "conv_subsample"}[kind], nb)
    if kind == "subsample":  # scratch for the gathered pixels, NaN so that unwritten ones show
        s = np.full((n, blocks(c, nb), oh, ow, nb), np.nan, np.float32)
        getattr(L, fn)(p, fp(xk), fp(wk), fp(bk), fp(zk), fp(y), fp(s))
    else:
        getattr(L, fn)(p, fp(xk), fp(wk), fp(bk), fp(zk), fp(y))
    got = np.moveaxis(y, -1, 2).reshape(n, blocks(m, nb) * nb, oh, ow)
    scale = 1 + np.abs(ref).max()
    np.testing.assert_allclose(got[:, :m], ref, rtol=1e-4, atol=1e-4 * scale)
    assert not got[:, m:].any(), "padding lanes must be zero"
    return got


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# (C, M, group, IH, IW, K, stride, pads, dilation): 3x3 and 1x1 shapes that reach partial
# output-block tiles (M blocks 1..7 at both blocks), partial blocks, interior runs below/at/past
# a tile, single-pixel rows, strides, dilation, asymmetric pads, grouped tiles.
DIRECT = [
    (16, 16, 1, 6, 6, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (16, 40, 1, 7, 7, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (24, 72, 1, 5, 13, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (32, 112, 1, 9, 14, 3, (1, 1), (0, 1, 2, 0), (1, 1)),
    (48, 64, 1, 11, 11, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
    (40, 20, 1, 12, 15, 3, (1, 2), (2, 2, 2, 2), (2, 2)),
    (16, 48, 1, 1, 1, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (8, 24, 1, 3, 20, 5, (1, 1), (2, 2, 2, 2), (1, 1)),
    (64, 96, 2, 6, 9, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (96, 80, 1, 4, 4, 1, (2, 2), (0, 0, 0, 0), (1, 1)),
    # 7-pixel border tiles of two output blocks at b=16 (whole, and with a partial last block)
    (48, 32, 1, 5, 14, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    (48, 24, 1, 4, 7, 3, (1, 1), (1, 1, 1, 1), (1, 1)),
    # pointwise (1x1, stride 1, no pads): pixels not a tile multiple, past one work chunk; input
    # blocks past one chunk's worth of weights
    (48, 72, 1, 9, 11, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (160, 56, 1, 3, 5, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (64, 128, 4, 5, 7, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (20, 7, 1, 2, 3, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    # pointwise tiles of 2 output blocks x 6 pixels (b=8 in vector builds): every pixel
    # remainder 1..5 after whole tiles, a 61-pixel row past one 60-pixel work chunk, a partial
    # last block inside a 2-block tile, odd block counts (a lone last block per group), groups
    (16, 12, 1, 1, 61, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (24, 40, 1, 7, 7, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (8, 30, 1, 4, 5, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (96, 48, 2, 3, 9, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (16, 24, 1, 2, 5, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    (16, 16, 1, 1, 11, 1, (1, 1), (0, 0, 0, 0), (1, 1)),
    # window convs whose weights are small next to their input, which b=8 runs in row-range-
    # major task order (several row ranges x several output-block tiles): 1x1 and 3x3 stride 2
    (16, 64, 1, 40, 40, 1, (2, 2), (0, 0, 0, 0), (1, 1)),
    (8, 32, 1, 40, 40, 3, (2, 2), (1, 1, 1, 1), (1, 1)),
]


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", DIRECT, ids=lambda c: "c{}m{}g{}_{}x{}_k{}s{}{}p{}d{}".format(
    c[0], c[1], c[2], c[3], c[4], c[5], *c[6], "".join(map(str, c[7])), c[8][0]))
def test_direct(lib, nb, case):
    c, m, group, ih, iw, k, stride, pads, dil = case
    if group > 1 and ((c // group) % nb or (m // group) % nb):
        pytest.skip("grouped kernels need channels per group that are multiples of the block")
    x = rand(2, c, ih, iw)
    w = rand(m, c // group, k, k) / np.sqrt(c // group * k * k)
    run(lib, nb, "direct", x, w, rand(m), None, stride, pads, dil, group, -np.inf, np.inf)


# (C, M, group, IH, IW, stride, pads): strided 1x1 convs through onnxc_f32_nchwc_conv_subsample
# (gather the sampled pixels, then the pointwise path): odd sizes, channel counts off the block,
# strides 2 and 3 and unequal, rows shorter than a tile, groups; pads, which fall back to the
# window path (a leading pad, or a trailing one that a sampled pixel reads)
SUBSAMPLE = [
    (16, 64, 1, 40, 40, (2, 2), (0, 0, 0, 0)),
    (20, 36, 1, 15, 15, (2, 2), (0, 0, 0, 0)),
    (24, 40, 1, 13, 14, (2, 2), (0, 0, 0, 0)),
    (7, 13, 1, 9, 23, (3, 2), (0, 0, 0, 0)),
    (40, 24, 1, 5, 17, (1, 3), (0, 0, 0, 0)),
    (64, 96, 2, 14, 14, (2, 2), (0, 0, 0, 0)),
    (96, 80, 1, 4, 4, (2, 2), (0, 0, 0, 0)),
    (48, 16, 1, 3, 3, (2, 2), (0, 0, 1, 1)),   # trailing pad never sampled: still a subsample
    (48, 16, 1, 4, 4, (2, 2), (0, 0, 1, 1)),   # sampled trailing pad: window path
    (48, 16, 1, 6, 7, (2, 2), (1, 1, 0, 0)),   # leading pad: window path
]


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", SUBSAMPLE, ids=lambda c: "c{}m{}g{}_{}x{}_s{}{}p{}".format(
    *c[:5], *c[5], "".join(map(str, c[6]))))
def test_subsample(lib, nb, case):
    c, m, group, ih, iw, stride, pads = case
    if group > 1 and ((c // group) % nb or (m // group) % nb):
        pytest.skip("grouped kernels need channels per group that are multiples of the block")
    x = rand(2, c, ih, iw)
    w = rand(m, c // group, 1, 1) / np.sqrt(c // group)
    run(lib, nb, "subsample", x, w, rand(m), None, stride, pads, (1, 1), group, -np.inf, np.inf)
    # residual and a clamp above 0 (padding lanes stay zero)
    y0 = conv_ref(x, w, None, stride, pads, (1, 1), group)
    run(lib, nb, "subsample", x, w, None, rand(*y0.shape), stride, pads, (1, 1), group, 0.1, 1.5)


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("k", [1, 3])
def test_direct_epilogue(lib, nb, k):
    """Residual Z, no bias, and Relu / Clip with a floor above 0 (padding lanes stay 0)."""
    c, m, hw = 40, 52, (7, 10)
    pads = (k // 2,) * 4
    x = rand(1, c, *hw)
    w = rand(m, c, k, k) / np.sqrt(c * k * k)
    z = rand(1, m, *hw).astype(np.float64)
    run(lib, nb, "direct", x, w, None, z, (1, 1), pads, (1, 1), 1, 0.0, np.inf)
    run(lib, nb, "direct", x, w, rand(m), z, (1, 1), pads, (1, 1), 1, 0.25, 1.0)


# Plain-NCHW-input first layers (C, M, IH, IW, K, stride, pads): the interior runs in tiles
# over a flat table of the row's taps, the border columns pixel by pixel over their valid taps.
# M spans 1..5 output blocks (whole and partial tiles of blocks at both blocks); widths leave
# interior runs of every tile width 1..7 (and none: 3 wide with pad 2), border pixels on one or
# both sides (asymmetric pads), border rows (fewer kernel rows in the table); C x K x K past
# the table (15 x 5 x 5 = 375 taps) runs the nested loops.
NCHW = [
    (3, 64, 23, 23, 7, 2, (3, 3, 3, 3)),
    (3, 20, 9, 14, 3, 1, (1, 1, 1, 1)),
    (1, 40, 5, 5, 3, 1, (0, 0, 0, 0)),
    (3, 16, 30, 30, 3, 2, (1, 1, 1, 1)),
    (3, 32, 13, 24, 3, 2, (0, 1, 1, 0)),
    (3, 72, 6, 17, 3, 1, (1, 0, 2, 2)),
    (2, 8, 5, 3, 3, 1, (2, 2, 2, 2)),
    (3, 24, 4, 9, 1, 1, (0, 0, 0, 0)),
    (15, 36, 8, 11, 5, 1, (2, 2, 2, 2)),
    (4, 48, 7, 12, 3, 2, (1, 1, 1, 1)),
] + [(3, 40, 5, w, 3, 1, (1, 1, 1, 1)) for w in range(2, 11)]


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", NCHW, ids=lambda c: "c{}m{}_{}x{}_k{}s{}p{}".format(
    *c[:6], "".join(map(str, c[6]))))
def test_nchw_input(lib, nb, case):
    c, m, ih, iw, k, s, pads = case
    x = rand(2, c, ih, iw)
    w = rand(m, c, k, k) / np.sqrt(c * k * k)
    run(lib, nb, "nchw", x, w, rand(m), None, (s, s), pads, (1, 1), 1, 0.0, np.inf)
    # residual and a clamp above 0: the epilogue of lone border pixels and of the tiles
    oh = (ih + pads[0] + pads[2] - k) // s + 1
    ow = (iw + pads[1] + pads[3] - k) // s + 1
    run(lib, nb, "nchw", x, w, None, rand(2, m, oh, ow).astype(np.float64), (s, s), pads, (1, 1),
        1, 0.25, 1.5)


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", [
    (24, 11, 13, 3, 1, 1), (40, 9, 9, 5, 2, 2),
    # rows with no full interior tile, border tiles before/after 8-pixel interior tiles, every
    # width 1..12 remainder, stride 2, no pads, pads wider than the kernel's half (b=8 runs
    # border pixels in tiles that read zeros outside the input)
    (24, 7, 7, 5, 1, 2), (16, 14, 14, 5, 1, 2), (16, 14, 13, 5, 2, 2), (40, 5, 21, 3, 2, 1),
    (16, 6, 19, 3, 1, 0), (8, 4, 10, 5, 1, 3), (8, 2, 2, 5, 1, 2)] + [(8, 3, w, 3, 1, 1) for w in range(1, 13)])
def test_depthwise(lib, nb, case):
    c, ih, iw, k, s, pd = case
    x = rand(1, c, ih, iw)
    w = rand(c, 1, k, k)
    run(lib, nb, "depthwise", x, w, rand(c), rand(1, c, (ih + 2 * pd - k) // s + 1,
                                                 (iw + 2 * pd - k) // s + 1).astype(np.float64),
        (s, s), (pd,) * 4, (1, 1), c, -np.inf, 6.0)


# Window convs with small outputs, whose row ranges per task change with the thread count (the
# split balances the pool's chunks): 7x7 and 14x14 outputs, several images, groups, a
# plain-input first layer.  (C, M, group, N, IH, IW, K, stride, pads, kind)
SPLIT = [
    (32, 64, 1, 1, 28, 28, 3, 2, 1, "direct"),
    (64, 96, 1, 1, 14, 14, 3, 2, 1, "direct"),
    (48, 48, 1, 3, 9, 7, 3, 1, 1, "direct"),
    (64, 64, 2, 1, 11, 13, 3, 1, 1, "direct"),
    (3, 48, 1, 1, 30, 30, 3, 2, 1, "nchw"),
    (16, 64, 1, 2, 40, 40, 1, 2, 0, "direct"),  # row-range-major task order at b=8
    # pointwise, pixel-chunk-major task order at b=8: 2 images x 2 groups x 2 pixel chunks x
    # 3 output-block tiles (one a lone block)
    (64, 96, 2, 2, 8, 9, 1, 1, 0, "direct"),
]


@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", SPLIT, ids=lambda c: "c{}m{}g{}n{}_{}x{}_k{}s{}_{}".format(*c[:8], c[9]))
def test_window_threads(lib, nb, case):
    """1 and 2 threads give bit-identical outputs (each correct)."""
    ffi, L = lib
    c, m, group, n, ih, iw, k, s, pd, kind = case
    if group > 1 and ((c // group) % nb or (m // group) % nb):
        pytest.skip("grouped kernels need channels per group that are multiples of the block")
    x = rand(n, c, ih, iw)
    w = rand(m, c // group, k, k) / np.sqrt(c // group * k * k)
    b = rand(m)
    out = {}
    try:
        for threads in (1, 2):
            L.onnxc_rt_set_num_threads(threads)
            assert L.onnxc_rt_threads_usable() == threads
            out[threads] = run(lib, nb, kind, x, w, b, None, (s, s), (pd,) * 4, (1, 1), group,
                               -np.inf, np.inf)
    finally:
        L.onnxc_rt_set_num_threads(1)
    np.testing.assert_array_equal(out[1], out[2])
