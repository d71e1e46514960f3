"""The Winograd F(2x2, 3x3) and F(4x4, 3x3) NCHWc convolutions (runtime_c/nchwc/conv_winograd*.c:
onnxc_f32_nchwc_conv_winograd[_f4]_b8/_b16 of compiler/kernels/nchwc_f32.py) called directly,
against a float64 numpy convolution, at every float ISA the host runs (generic: the portable path
at both blocks; avx2: b=8 in intrinsics; avx512: both), plus the weight transform and the scratch
rule that the emitter computes at compile time; a build with tiny chunk budgets runs both modes
(slots: a chunk per thread; phases: each step of a chunk split across threads) over many chunks.

Shapes reach: odd and even output sizes (half-outside last tile row/column), pads 0 and 1 (and
asymmetric), channels that are not block multiples (padding lanes zero in and out), output
block counts that leave partial register tiles, tile counts past one chunk and one register
tile, several images (chunks spanning images), bias/Z/clamp present and absent, 1 and 2 threads.
"""
from __future__ import annotations

import numpy as np
import pytest

from onnxc.build import compile_flags
from onnxc.cpu import runnable_float_isas
from onnxc.kernels import nchwc_f32
from onnxc.ops.nchwc import blocks, pack_winograd, pad_channels, to_blocked, unpack_winograd, winograd_scratch_bytes
from onnxc.resources import kernels_cdef

from helpers import kernel_library

ISAS = runnable_float_isas()
FLAGS = {isa: compile_flags(isa) for isa in ISAS}
# The best ISA again with tiny chunk budgets and phases mode from 64x64 channels on, so that
# these small shapes run both modes over many chunks (its scratch rule then differs from the
# compile-time one: the test asks the library).
FLAGS["chunked"] = FLAGS[ISAS[-1]] + ["-DONNXC_WINOGRAD_CHUNK_BYTES=8192", "-DONNXC_WINOGRAD_PHASES_BYTES=32768",
                                      "-DONNXC_WINOGRAD_PHASES_MIN_CM=4096"]
ISAS.append("chunked")
RNG = np.random.default_rng(11)


@pytest.fixture(scope="module", params=ISAS)
def lib(request, tmp_path_factory):
    ffi, L = kernel_library(tmp_path_factory, f"winograd-{request.param}", ["nchwc/conv_winograd.c"],
                            FLAGS[request.param], extra_cdef=kernels_cdef("onnxc_nchwc.h") + kernels_cdef("onnxc_threads.h"))
    return ffi, L, request.param != "chunked"


def conv_ref(x, w, pads):
    """float64 3x3 stride-1 convolution; pads [top, left, bottom, right]."""
    n, c, ih, iw = x.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh, ow = ih + pads[0] + pads[2] - 2, iw + pads[1] + pads[3] - 2
    y = np.zeros((n, w.shape[0], oh, ow))
    for i in range(3):
        for j in range(3):
            y += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + oh, j:j + ow], w[:, :, i, j].astype(np.float64))
    return y


def run(lib, nb, tile, x, w, bias, z, pads, lo=-np.inf, hi=np.inf, threads=1):
    ffi, L, default_rule = lib
    x, w = x.astype(np.float32), w.astype(np.float32)
    L.onnxc_rt_set_num_threads(threads)
    n, c, ih, iw = x.shape
    m = w.shape[0]
    ref = conv_ref(x, w, pads)
    oh, ow = ref.shape[2:]
    if bias is not None:
        ref += bias.astype(np.float64)[None, :, None, None]
    if z is not None:
        ref = ref + z
    ref = np.clip(ref, lo, hi)
    xk, uk = to_blocked(x, nb), pack_winograd(w, nb, tile)
    f4 = "_f4" if tile == 4 else ""
    bk = pad_channels(bias.astype(np.float32), nb) if bias is not None else None
    zk = to_blocked(z.astype(np.float32), nb) if z is not None else None
    y = np.full((n, blocks(m, nb), oh, ow, nb), np.nan, np.float32)  # every lane must be written
    p = ffi.new("onnxc_nchwc_conv_params *", dict(
        N=n, C=c, M=m, group=1, IH=ih, IW=iw, OH=oh, OW=ow, KH=3, KW=3, SH=1, SW=1, PT=pads[0],
        PL=pads[1], DH=1, DW=1, lo=lo, hi=hi))
    nbytes = getattr(L, nchwc_f32.name("conv_winograd_scratch" + f4, nb))(p)
    if default_rule:
        assert nbytes == winograd_scratch_bytes(n, c, m, oh, ow, nb, tile)
    # a guard past the end: the kernel must stay inside the scratch it asked for
    scratch = np.full(nbytes // 4 + 64, 7.0, np.float32)
    fp = lambda a: ffi.NULL if a is None else ffi.cast("float *", a.ctypes.data)  # noqa: E731
    try:
        getattr(L, nchwc_f32.name("conv_winograd" + f4, nb))(p, fp(xk), fp(uk), fp(bk), fp(zk), fp(y), fp(scratch))
    finally:
        L.onnxc_rt_set_num_threads(1)
    assert (scratch[nbytes // 4:] == 7.0).all(), "wrote past the scratch"
    got = np.moveaxis(y, -1, 2).reshape(n, blocks(m, nb) * nb, oh, ow)
    scale = 1 + np.abs(ref).max()
    np.testing.assert_allclose(got[:, :m], ref, rtol=1e-4, atol=1e-5 * scale)
    assert not got[:, m:].any(), "padding lanes must be zero"


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# (N, C, M, IH, IW, pads)
CASES = [
    (1, 16, 16, 6, 6, (1, 1, 1, 1)),      # even output
    (1, 16, 40, 7, 7, (1, 1, 1, 1)),      # odd output: half-outside last tile row and column
    (2, 24, 72, 5, 13, (1, 1, 1, 1)),     # two images, partial blocks in and out
    (1, 32, 112, 9, 14, (0, 1, 2, 0)),    # asymmetric pads
    (1, 20, 7, 8, 9, (0, 0, 0, 0)),       # no pads, M < b, odd width
    (1, 48, 64, 2, 3, (1, 1, 1, 1)),      # fewer tiles than a register tile
    (1, 8, 24, 3, 3, (0, 0, 0, 0)),       # a single output pixel
    (2, 64, 96, 15, 17, (1, 1, 1, 1)),    # tiles past one chunk
    (1, 3, 5, 4, 4, (1, 1, 1, 1)),        # C, M below the block
    (1, 200, 180, 6, 7, (1, 1, 1, 1)),    # phases mode (C*M >= ONNXC_WINOGRAD_PHASES_MIN_CM)
]


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "n{}c{}m{}_{}x{}_p{}".format(*c[:5], "".join(map(str, c[5]))))
def test_winograd(lib, nb, tile, case):
    n, c, m, ih, iw, pads = case
    x = rand(n, c, ih, iw)
    w = rand(m, c, 3, 3) / np.sqrt(c * 9)
    run(lib, nb, tile, x, w, rand(m), None, pads)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("nb", [8, 16])
@pytest.mark.parametrize("threads", [1, 2])
def test_winograd_epilogue_threads(lib, nb, threads, tile):
    """Residual Z, no bias, Relu / Clip with a floor above 0 (padding lanes stay 0), at 1 and 2
    threads on a shape big enough to be split (several chunks)."""
    c, m, hw = 40, 52, (23, 26)
    x = rand(2, c, *hw)
    w = rand(m, c, 3, 3) / np.sqrt(c * 9)
    z = rand(2, m, *hw).astype(np.float64)
    run(lib, nb, tile, x, w, None, z, (1, 1, 1, 1), 0.0, np.inf, threads=threads)
    run(lib, nb, tile, x, w, rand(m), z, (1, 1, 1, 1), 0.25, 1.0, threads=threads)
    run(lib, nb, tile, rand(1, 136, 14, 14), rand(140, 136, 3, 3) / 35.0, rand(140), None, (1, 1, 1, 1),
        threads=threads)
    # phases mode: each step split across the threads
    run(lib, nb, tile, rand(1, 184, 9, 12), rand(196, 184, 3, 3) / 40.0, rand(196), None, (1, 1, 1, 1), 0.0,
        threads=threads)


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("b", [8, 16])
def test_pack_roundtrip(b, tile):
    w = rand(20, 13, 3, 3)
    u = pack_winograd(w, b, tile)
    p = (tile + 2) ** 2
    assert u.shape == (p, blocks(20, b), blocks(13, b), b, b)
    np.testing.assert_allclose(unpack_winograd(u, 20, 13), w, rtol=1e-5, atol=1e-5)
    full = u.transpose(0, 1, 4, 2, 3).reshape(p, blocks(20, b) * b, blocks(13, b) * b)
    assert not full[:, 20:].any() and not full[:, :, 13:].any(), "padding channels must be zero"
    with pytest.raises(ValueError, match="3x3"):
        pack_winograd(rand(4, 4, 5, 5), b)
    with pytest.raises(ValueError, match="tile 3"):
        pack_winograd(w, b, 3)
