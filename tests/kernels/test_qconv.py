"""int8 convolution family (runtime_c/qconv, compiler/kernels/qconv.py): every GEMM and depthwise
kernel the host runs, built with its ISA row's compiler flags, on every algorithm (DIRECT,
IMPLICIT, IM2COL) against an int64 numpy reference (int32 bit-exact, wrap-around included);
kernel sizes 1/3/5/7, strides 1/2, dilations 1/2, symmetric and asymmetric pads, groups (1,
grouped, depthwise), channel counts at vector and panel edges, odd spatial sizes, batches, input
and output pixel pitches wider than the channels, u8/s8 activations, int8/uint8 weights with
per-tensor or per-channel zero points; the requantize, float and fused-residual output stages
against numpy float32 references of their formulas; 1 vs 2 threads; the Python and C packers
byte for byte; the algorithm and workspace rules of Python and C; onnxruntime's QLinearConv and
ConvInteger (single-node models) bit for bit; every file compiled under every ISA row's flags.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
from onnx import helper

from onnxc import isa as isa_table
from onnxc.kernels import qconv as QC
from onnxc.kernels import qgemm as Q
from onnxc.resources import runtime_dir

from helpers import make_model, ort_run
from int8_lib import (F32, S8, S32, U8, Int8Lib, build_int8_lib, compiles_under_row, rand_zp, ref_requant,
                      wrap32)

HOST = Q.host_isas()


def gemm_kernels_of(row: str):
    """GEMM kernels a test of ISA row `row` runs: kernel_for for both activation types, the
    row's own, and the pair-safe AVX2 kernels on AVX2-class rows."""
    names = {Q.kernel_for(row, dt).name for dt in ("uint8", "int8")}
    names |= {k.name for k in Q.QGEMM if k.isa == row}
    if row in ("avx2", "avx512"):
        names |= {k.name for k in Q.QGEMM if k.kind == "gemmps"}
    return [Q.BY_NAME[n] for n in sorted(names)]


def dw_kernels_of(row: str):
    names = {QC.dw_kernel_for(row, dt).name for dt in ("uint8", "int8")}
    names |= {k.name for k in QC.DWCONV if k.isa == row}
    return [QC.BY_NAME[n] for n in sorted(names)]


class QCLib(Int8Lib):
    """The convolution family's library for one ISA row, with numpy-facing calls."""

    def geom(self, g: QC.Geom):
        return self.ffi.new("onnxc_qconv_geom *", dict(zip(QC.Geom.FIELDS, g.values())))

    def pack_c(self, k, w, group, wz=None):
        M, Cg, KH, KW = w.shape
        w = np.ascontiguousarray(w)
        scratch = np.zeros(KH * KW * Cg * (M // group), np.uint8)
        n = self.lib.onnxc_qconv_packed_bytes(self.info(k), M, Cg, KH, KW, group, self.ptr(w), int(w.dtype == np.int8),
                                              self.ptr(scratch))
        out = np.full(n, 0xA5, np.uint8)
        z = None if wz is None else np.ascontiguousarray(np.asarray(wz, np.int32).reshape(-1))
        self.lib.onnxc_qconv_pack_w(self.info(k), M, Cg, KH, KW, group, self.ptr(w), int(w.dtype == np.int8),
                                    self.ptr(z, "int32_t *"), int(z is not None and z.size > 1), self.ptr(scratch),
                                    self.ptr(out))
        return out

    def pack_dw_c(self, w, wz=None):
        C, _, KH, KW = w.shape
        w = np.ascontiguousarray(w)
        out = np.full(self.lib.onnxc_qconv_dw_packed_bytes(C, KH, KW), 0xA5, np.uint8)
        z = None if wz is None else np.ascontiguousarray(np.asarray(wz, np.int32).reshape(-1))
        self.lib.onnxc_qconv_pack_dw(C, KH, KW, self.ptr(w), int(w.dtype == np.int8), self.ptr(z, "int32_t *"),
                                     int(z is not None and z.size > 1), self.ptr(out))
        return out

    def output_stage(self, g: QC.Geom, out=S32, scale=None, zp=0, qmin=None, qmax=None, fbias=None, res=None,
                     ldc=None):
        """(y [N, OH, OW, ldc], its onnxc_qgemm_output, the onnxc_qconv_residual or NULL, the
        arrays the structs point into, to keep alive): every convolution entry point's output."""
        y, o, keep = self.output((g.N, g.OH, g.OW, ldc or g.M), out, scale, zp, qmin, qmax, fbias)
        rs = self.ffi.NULL
        if res is not None:
            r, rz, rsc = res
            rs = self.ffi.new("onnxc_qconv_residual *")
            rs.r, rs.ldr, rs.r_signed, rs.zero_point, rs.scale = self.ptr(r), r.shape[-1], int(r.dtype == np.int8), rz, rsc
            keep.append(rs)
        return y, o, rs, keep

    def conv(self, k, g: QC.Geom, x, xz, packed, bias=None, out=S32, scale=None, zp=0, qmin=None, qmax=None,
             fbias=None, res=None, ldc=None, dw=False):
        """y [N, OH, OW, M] = out(conv); x [N, H, W, pitch] (channels [0, C) used); res =
        (r [N, OH, OW, ldr], r_zero_point, r_scale)."""
        assert x.shape[-1] == (g.x_pitch or g.C)
        y, o, rs, keep = self.output_stage(g, out, scale, zp, qmin, qmax, fbias, res, ldc)
        b = None if bias is None else np.ascontiguousarray(bias, np.int32)
        gc = self.geom(g)
        if dw:
            rc = self.lib.onnxc_qconv_dw(self.ffi.addressof(self.lib, k.name + "_info"), gc, self.ptr(x), int(xz),
                                         self.ptr(packed), self.ptr(b, "int32_t *"), o, rs)
        else:
            info = self.info(k)
            ws = self.lib.onnxc_qconv_workspace_bytes(info, gc)
            assert ws == QC.workspace_bytes(k, g), f"workspace C {ws} != Python {QC.workspace_bytes(k, g)} for {g}"
            w = np.zeros(max(ws, 1), np.uint8)
            rc = self.lib.onnxc_qconv(info, gc, self.ptr(x), int(xz), self.ptr(packed), self.ptr(b, "int32_t *"), o,
                                      rs, self.ptr(w))
        assert rc == 0, f"[{self.row}] {k.name}: returned {rc} for {g}"
        return y[..., :g.M]


def build_qclib(row, tmp_path_factory, name="qconv") -> QCLib:
    """The convolution kernel library (QC.sources()) built with ISA row ``row``'s flags."""
    return build_int8_lib(QCLib, row, tmp_path_factory, name, QC.sources(), ["onnxc_qgemm.h", "onnxc_qconv.h"])


@pytest.fixture(scope="module", params=HOST)
def qc(request, tmp_path_factory):
    q = build_qclib(request.param, tmp_path_factory)
    yield q
    q.lib.onnxc_qgemm_set_amx(1)
    q.lib.onnxc_rt_set_num_threads(0)


# ---------------------------------------------------------------------------------------------
# references and data
# ---------------------------------------------------------------------------------------------

def ref_acc(x, xz, w, wz, bias, g: QC.Geom):
    """int32 (wrapped) accumulators [N, OH, OW, M] of the convolution, int64 numpy: x NHWC (first C
    channels used), w [M, Cg, KH, KW], padding = the zero point (adds 0)."""
    x = x[..., :g.C].astype(np.int64) - int(xz)
    xp = np.pad(x, ((0, 0), (g.pad_t, g.pad_b), (g.pad_l, g.pad_r), (0, 0)))
    wz = np.zeros(g.M, np.int64) if wz is None else np.broadcast_to(np.asarray(wz, np.int64).reshape(-1), (g.M,))
    wd = w.astype(np.int64) - wz[:, None, None, None]
    acc = np.zeros((g.N, g.OH, g.OW, g.M), np.int64)
    Cg, Mg = g.Cg, g.Mg
    for kh in range(g.KH):
        for kw in range(g.KW):
            r0, c0 = kh * g.dil_h, kw * g.dil_w
            patch = xp[:, r0:r0 + (g.OH - 1) * g.stride_h + 1:g.stride_h, c0:c0 + (g.OW - 1) * g.stride_w + 1:g.stride_w]
            for grp in range(g.group):
                acc[..., grp * Mg:(grp + 1) * Mg] += patch[..., grp * Cg:(grp + 1) * Cg] @ wd[grp * Mg:(grp + 1) * Mg, :, kh, kw].T
    if bias is not None:
        acc += np.asarray(bias, np.int64)
    return wrap32(acc)


def ref_residual(acc, scale, r, rz, rs, zp, qmin, qmax, dtype):
    """The fused residual stage: t1 = f32(acc) * scale, t2 = f32(r - rz) * rs, f = t1 + t2 (each
    rounded to float32), clamped, rounded half to even, + zp."""
    t1 = acc.astype(np.float32) * np.asarray(scale, np.float32).reshape(-1)
    t2 = (r.astype(np.int32) - rz).astype(np.float32) * np.float32(rs)
    f = (t1 + t2).astype(np.float32)
    f = np.minimum(np.maximum(f, np.float32(qmin - zp)), np.float32(qmax - zp))
    return (np.rint(f).astype(np.int32) + zp).astype(dtype)


def rand_q(rng, dtype, shape):
    lo, hi = (-128, 128) if np.dtype(dtype) == np.int8 else (0, 256)
    return rng.integers(lo, hi, shape).astype(dtype)


def check_conv(qc, k, g, x, xz, w, wz, bias, algo=QC.AUTO, what="", ldc=None):
    g.algo = algo
    packed = QC.pack_w(w, k, wz, g.group)
    got = qc.conv(k, g, x, xz, packed, bias, ldc=ldc)
    want = ref_acc(x, xz, w, wz, bias, g)
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        raise AssertionError(f"[{qc.row}] {k.name} {QC.ALGO_NAMES.get(algo, 'auto')} {g} {what}: {len(bad)} wrong, "
                             f"first {bad[:3].tolist()}: {got[tuple(bad[0])]} != {want[tuple(bad[0])]}")


def algos_for(k, g):
    """Algorithms that apply to this geometry and kernel (AUTO included)."""
    out = [QC.AUTO, QC.IM2COL]
    if QC._pointwise(g):
        out.append(QC.DIRECT)
    if g.stride_h == g.stride_w == 1 and QC._implicit_kernel(k, g.Cg) is not None:
        out.append(QC.IMPLICIT)
    return out


# (N, H, W, C, M, KH, KW, strides, dilations, pads, group)
CONV_CASES = [
    (1, 5, 7, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 5, 7, 3, 17, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (2, 6, 5, 16, 33, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 9, 9, 65, 15, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1),
    (1, 7, 6, 17, 16, 1, 1, (1, 1), (1, 1), (1, 0, 0, 1), 1),
    (1, 9, 7, 4, 16, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 8, 9, 15, 17, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (2, 7, 9, 16, 40, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 6, 7, 64, 65, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (1, 9, 8, 17, 31, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 1),
    (1, 11, 10, 64, 33, 3, 3, (2, 1), (1, 1), (0, 1, 2, 0), 1),
    (1, 9, 9, 32, 16, 3, 3, (1, 1), (2, 2), (2, 2, 2, 2), 1),
    (1, 10, 11, 16, 24, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), 1),
    (1, 9, 9, 20, 16, 5, 5, (2, 2), (1, 1), (2, 2, 2, 2), 1),
    (1, 15, 13, 3, 64, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),
    (1, 6, 7, 8, 12, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 2),
    (2, 7, 7, 12, 8, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 4),
    (1, 5, 6, 15, 9, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 3),
    (1, 6, 5, 7, 7, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 7),
    (1, 3, 4, 128, 32, 3, 3, (1, 1), (1, 1), (0, 0, 0, 0), 1),
]


def geom_of(case, x_pitch=0):
    N, H, W, C, M, KH, KW, s, d, p, grp = case
    return QC.Geom(N, H, W, C, M, KH, KW, s, d, p, grp, x_pitch=x_pitch)


# ---------------------------------------------------------------------------------------------
# the family list, the header, the rules shared with Python
# ---------------------------------------------------------------------------------------------

def test_header_declarations_current():
    text = (runtime_dir() / "include" / "onnxc_qconv.h").read_text()
    block = text.split("/* BEGIN GENERATED", 1)[1].split("\n", 1)[1].split("/* END GENERATED */", 1)[0]
    assert block.strip() == QC.c_declarations().strip(), "run: python -m onnxc.kernels.qconv"


def test_kernel_choice_rows():
    for row in isa_table.ISAS:
        for dt in ("uint8", "int8"):
            k = QC.dw_kernel_for(row, dt)
            assert Q.can_run(k.isa, row.name) and k.a_dtype == np.dtype(dt)
            assert QC.conv_kernel_for(row, dt).name == Q.kernel_for(row, dt).name
    assert QC.dw_kernel_for("amx").isa == "avx512vnni" and QC.dw_kernel_for("avx512").isa == "avx512"
    assert QC.dw_kernel_for("generic", "int8").name == "onnxc_s8s8_dwconv_1x1__generic"
    seven_bit = np.random.default_rng(0).integers(-64, 64, (32, 16, 3, 3)).astype(np.int8)
    assert QC.conv_kernel_for("avx2", "uint8", seven_bit).kind == "gemmps"


def test_algo_and_workspace_rules_match_c(qc):
    """onnxc_qconv_choose_algo / _workspace_bytes and their Python mirrors agree."""
    for k in gemm_kernels_of(qc.row):
        for case in CONV_CASES + [(1, 56, 56, 64, 64, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
                                  (1, 7, 7, 512, 512, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
                                  (1, 14, 14, 96, 96, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1)]:
            g = geom_of(case)
            gc = qc.geom(g)
            assert qc.lib.onnxc_qconv_choose_algo(qc.info(k), gc) == QC.choose_algo(k, g), (k.name, g)
            assert qc.lib.onnxc_qconv_workspace_bytes(qc.info(k), gc) == QC.workspace_bytes(k, g), (k.name, g)


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags", sorted({k.pack_flags for k in Q.QGEMM}))
def test_packers_identical(qc, flags):
    """Python (compile time) and C (run time) packing of conv weights: same bytes, for int8/uint8
    weights, zero point none / per tensor / per channel, groups, kernel sizes."""
    k = next(k for k in Q.QGEMM if k.pack_flags == flags)
    rng = np.random.default_rng(flags)
    for M, Cg, KH, KW, grp in [(1, 1, 1, 1, 1), (17, 3, 3, 3, 1), (64, 16, 1, 1, 1), (12, 5, 3, 3, 2),
                               (9, 1, 3, 3, 9), (33, 65, 5, 5, 1), (8, 4, 7, 7, 4)]:
        for wdt in (np.int8, np.uint8):
            w = rand_q(rng, wdt, (M, Cg, KH, KW))
            for wz in (None, rand_zp(rng, wdt), rand_zp(rng, wdt, M)):
                np.testing.assert_array_equal(QC.pack_w(w, k, wz, grp), qc.pack_c(k, w, grp, wz),
                                              err_msg=f"{k.name} {w.shape} g={grp} {wdt.__name__} wz={wz}")


def test_dw_packers_identical(qc):
    rng = np.random.default_rng(2)
    for C, KH, KW in [(1, 3, 3), (15, 3, 3), (16, 5, 5), (33, 3, 3), (64, 7, 7), (17, 1, 1)]:
        for wdt in (np.int8, np.uint8):
            w = rand_q(rng, wdt, (C, 1, KH, KW))
            for wz in (None, rand_zp(rng, wdt), rand_zp(rng, wdt, C)):
                np.testing.assert_array_equal(QC.pack_dw(w, wz), qc.pack_dw_c(w, wz), err_msg=f"{C} {KH}x{KW} {wz}")


# ---------------------------------------------------------------------------------------------
# int32 results
# ---------------------------------------------------------------------------------------------

def test_conv_int32_every_algo(qc):
    """Every case of CONV_CASES through every algorithm that applies, every GEMM kernel of the
    row: int32 bit-exact; weights int8/uint8, zero points none / per tensor / per channel, bias."""
    for k in gemm_kernels_of(qc.row):
        rng = np.random.default_rng(zlib.crc32(k.name.encode()))
        for i, case in enumerate(CONV_CASES):
            g = geom_of(case)
            wdt = (np.int8, np.uint8)[i % 2]
            x = rand_q(rng, k.a_dtype, (g.N, g.H, g.W, g.C))
            w = rand_q(rng, wdt, (g.M, g.Cg, g.KH, g.KW))
            wz = (None, rand_zp(rng, wdt), rand_zp(rng, wdt, g.M))[i % 3]
            bias = rng.integers(-2 ** 20, 2 ** 20, g.M) if i % 2 == 0 else None
            xz = rand_zp(rng, k.a_dtype)
            for algo in algos_for(k, g):
                check_conv(qc, k, g, x, xz, w, wz, bias, algo, f"w {wdt.__name__} wz={wz}")


def test_conv_pitches(qc):
    """Input pixels wider than C (a channel slice of a wider tensor) and output pixels wider than M
    (writing into a slice), every algorithm."""
    for k in (Q.kernel_for(qc.row, "uint8"), Q.kernel_for(qc.row, "int8")):
        rng = np.random.default_rng(6)
        for case in ((1, 6, 7, 16, 20, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
                     (2, 5, 5, 12, 8, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 2),
                     (1, 9, 8, 8, 16, 3, 3, (2, 2), (1, 1), (0, 1, 1, 0), 1)):
            g = geom_of(case, x_pitch=case[3] + 13)
            x = rand_q(rng, k.a_dtype, (g.N, g.H, g.W, g.x_pitch))
            w = rand_q(rng, np.int8, (g.M, g.Cg, g.KH, g.KW))
            for algo in algos_for(k, g):
                check_conv(qc, k, g, x, rand_zp(rng, k.a_dtype), w, rand_zp(rng, np.int8, g.M), None, algo,
                           "pitches", ldc=g.M + 5)


def test_conv_extremes(qc):
    """All-extreme activations and weights with zero points at the other end (int16 pair sums
    that vpmaddubsw would saturate), long K (3x3x512), every algorithm; and int32 wrap-around."""
    for k in gemm_kernels_of(qc.row):
        amin, amax = (-128, 127) if k.a_signed else (0, 255)
        g = QC.Geom(1, 5, 6, 512, 20, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
        for wdt, (bmin, bmax) in ((np.int8, (-128, 127)), (np.uint8, (0, 255))):
            for av, bv, xz, wz in ((amax, bmin, amin, bmax), (amax, bmax, amin, bmin), (amin, bmin, amax, None)):
                x = np.full((1, 5, 6, 512), av, k.a_dtype)
                w = np.full((20, 512, 3, 3), bv, wdt)
                for algo in algos_for(k, g):
                    check_conv(qc, k, g, x, xz, w, wz, None, algo, f"x={av} w={bv} xz={xz} wz={wz}")
        # |sum| > 2^31: 7x7x1024 taps of 255 * -128 (K = 50176)
        g = QC.Geom(1, 7, 7, 1024, 3, 7, 7)
        x = np.full((1, 7, 7, 1024), amin, k.a_dtype)
        w = np.full((3, 1024, 7, 7), 127, np.int8)
        check_conv(qc, k, g, x, amax, w, -128, None, QC.IM2COL, "int32 wrap-around")


# (N, H, W, C, K, stride, dilation, pads)
DW_CASES = [
    (1, 5, 7, 1, 3, 1, 1, (1, 1, 1, 1)),
    (1, 9, 11, 3, 3, 1, 1, (1, 1, 1, 1)),
    (2, 12, 13, 15, 3, 2, 1, (1, 1, 1, 1)),
    (1, 20, 21, 16, 3, 1, 1, (1, 1, 1, 1)),
    (1, 11, 19, 17, 3, 2, 1, (0, 1, 1, 0)),
    (1, 13, 9, 32, 5, 1, 1, (2, 2, 2, 2)),
    (1, 17, 18, 33, 5, 2, 1, (2, 2, 2, 2)),
    (1, 10, 10, 48, 3, 1, 2, (2, 2, 2, 2)),
    (1, 4, 4, 64, 3, 1, 1, (1, 1, 1, 1)),
    (1, 2, 3, 65, 3, 1, 1, (1, 1, 1, 1)),
    (1, 9, 10, 24, 7, 1, 1, (3, 3, 3, 3)),
    (1, 8, 8, 16, 3, 1, 1, (0, 0, 0, 0)),
    (1, 7, 7, 40, 1, 1, 1, (0, 0, 0, 0)),
    (1, 30, 40, 600, 3, 1, 1, (1, 1, 1, 1)),
    # AVX2 pairs kernel rows per lane: odd top pad (row pairs half outside the image), dilation
    # down only (paired rows 2 apart), 5x5 stride 2 with a channel tail
    (1, 7, 13, 23, 5, 1, 1, (1, 2, 3, 2)),
    (1, 11, 12, 9, 3, 1, (2, 1), (2, 1, 2, 1)),
    (1, 6, 19, 40, 5, 2, 1, (0, 2, 1, 2)),
    # AVX2 band form (rows widened once, column pairs): channel chunks of 32 + a tail of 8 (wide
    # rows), rows too wide for it (the row form runs), an even kernel with odd pads, fewer output
    # columns than a register block
    (1, 4, 300, 40, 3, 1, 1, (1, 1, 1, 1)),
    (1, 3, 1200, 16, 3, 1, 1, (1, 1, 1, 1)),
    (1, 9, 14, 20, 4, 1, 1, (1, 2, 2, 1)),
    (2, 5, 5, 24, 5, 1, 1, (2, 1, 2, 3)),
]


def dw_geom(case, x_pitch=0):
    N, H, W, C, K, s, d, p = case
    return QC.Geom(N, H, W, C, C, K, K, (s, s), d if isinstance(d, tuple) else (d, d), p, C, x_pitch=x_pitch)


def test_depthwise_int32(qc):
    """Depthwise kernels of the row: 1/3/5/7 wide, strides 1/2, dilation 2, pads (asymmetric and
    none), channel counts around the vectors, borders and interior blocks; int32 bit-exact. The
    same cases through the GEMM path (group = C) agree."""
    for k in dw_kernels_of(qc.row):
        rng = np.random.default_rng(zlib.crc32(k.name.encode()))
        for i, case in enumerate(DW_CASES):
            g = dw_geom(case)
            wdt = (np.int8, np.uint8)[i % 2]
            x = rand_q(rng, k.a_dtype, (g.N, g.H, g.W, g.C))
            w = rand_q(rng, wdt, (g.C, 1, g.KH, g.KW))
            wz = (None, rand_zp(rng, wdt), rand_zp(rng, wdt, g.C))[i % 3]
            bias = rng.integers(-2 ** 20, 2 ** 20, g.C) if i % 2 == 0 else None
            xz = rand_zp(rng, k.a_dtype)
            got = qc.conv(k, g, x, xz, QC.pack_dw(w, wz), bias, dw=True)
            want = ref_acc(x, xz, w, wz, bias, g)
            if not np.array_equal(got, want):
                bad = np.argwhere(got != want)
                raise AssertionError(f"[{qc.row}] {k.name} {g}: {len(bad)} wrong, first {bad[:3].tolist()}")
            if i < 4:  # grouped GEMM path, Mg = 1
                gk = Q.kernel_for(qc.row, k.a_dtype)
                check_conv(qc, gk, g, x, xz, w, wz, bias, QC.AUTO, "depthwise as groups")


def test_depthwise_pitches_and_extremes(qc):
    for k in dw_kernels_of(qc.row):
        amin, amax = (-128, 127) if k.a_signed else (0, 255)
        rng = np.random.default_rng(8)
        g = dw_geom((1, 9, 10, 19, 3, 1, 1, (1, 1, 1, 1)), x_pitch=30)
        x = rand_q(rng, k.a_dtype, (1, 9, 10, 30))
        w = rand_q(rng, np.int8, (19, 1, 3, 3))
        got = qc.conv(k, g, x, 3, QC.pack_dw(w, 5), None, dw=True, ldc=25)
        np.testing.assert_array_equal(got, ref_acc(x, 3, w, 5, None, g))
        for wdt, (bmin, bmax) in ((np.int8, (-128, 127)), (np.uint8, (0, 255))):
            for av, bv, xz, wz in ((amax, bmin, amin, bmax), (amin, bmax, amax, bmin)):
                g = dw_geom((1, 6, 9, 33, 5, 1, 1, (2, 2, 2, 2)))
                x = np.full((1, 6, 9, 33), av, k.a_dtype)
                w = np.full((33, 1, 5, 5), bv, wdt)
                got = qc.conv(k, g, x, xz, QC.pack_dw(w, wz), None, dw=True)
                np.testing.assert_array_equal(got, ref_acc(x, xz, w, wz, None, g), err_msg=f"{k.name} {av} {bv}")


# ---------------------------------------------------------------------------------------------
# output stages
# ---------------------------------------------------------------------------------------------

def test_requantize_float_residual(qc):
    """uint8/int8 outputs (per-tensor and per-channel scales, ties, fused Relu/Clip ranges), float
    output, and the fused residual add: bit-exact with the numpy references, on the GEMM path
    (IMPLICIT and IM2COL) and the depthwise path."""
    rng = np.random.default_rng(7)
    gk = Q.kernel_for(qc.row, "uint8")
    dk = QC.dw_kernel_for(qc.row, "uint8")
    g1 = QC.Geom(1, 9, 8, 32, 40, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
    g2 = dw_geom((1, 9, 8, 40, 3, 1, 1, (1, 1, 1, 1)))
    for g, k, dw in ((g1, gk, False), (g2, dk, True)):
        x = rand_q(rng, np.uint8, (g.N, g.H, g.W, g.C))
        w = rand_q(rng, np.int8, (g.M, g.Cg, g.KH, g.KW))
        xz, wz = 121, rand_zp(rng, np.int8, g.M)
        bias = rng.integers(-5000, 5000, g.M)
        packed = QC.pack_dw(w, wz) if dw else QC.pack_w(w, k, wz)
        acc = ref_acc(x, xz, w, wz, bias, g)
        algos = [QC.AUTO] if dw else [QC.IMPLICIT, QC.IM2COL]
        for algo in algos:
            g.algo = algo
            for out, dt, (lo, hi) in ((U8, np.uint8, (0, 255)), (S8, np.int8, (-128, 127))):
                for scale in (np.float32(0.5), np.float32(0.25), np.float32(1.7e-4), (rng.random(g.M) * 3e-3).astype(np.float32)):
                    for zp, qmin, qmax in ((int(rng.integers(lo, hi)), lo, hi), (lo + 10, lo + 10, hi), (lo + 3, lo + 20, hi - 30)):
                        got = qc.conv(k, g, x, xz, packed, bias, out=out, scale=scale, zp=zp, qmin=qmin, qmax=qmax, dw=dw)
                        np.testing.assert_array_equal(got, ref_requant(acc, scale, zp, qmin, qmax, dt),
                                                      err_msg=f"{k.name} {dt.__name__} scale={scale} zp={zp}")
                        for rdt in (np.uint8, np.int8):
                            r = rand_q(rng, rdt, (g.N, g.OH, g.OW, g.M + 3))
                            rz, rs = rand_zp(rng, rdt), np.float32(0.37)
                            got = qc.conv(k, g, x, xz, packed, bias, out=out, scale=scale, zp=zp, qmin=qmin, qmax=qmax,
                                          res=(r, rz, rs), dw=dw)
                            want = ref_residual(acc, scale, r[..., :g.M], rz, rs, zp, qmin, qmax, dt)
                            np.testing.assert_array_equal(got, want, err_msg=f"residual {k.name} {dt.__name__} {rdt.__name__}")
            assert np.any(acc % 2 == 1)  # ties at scale 0.5 are really there
            for scale in (np.float32(0.013), (rng.random(g.M) * 0.01).astype(np.float32)):
                fb = rng.standard_normal(g.M).astype(np.float32)
                got = qc.conv(k, g, x, xz, packed, bias, out=F32, scale=scale, fbias=fb, dw=dw)
                want = acc.astype(np.float32) * np.asarray(scale, np.float32).reshape(-1) + fb
                np.testing.assert_array_equal(got, want, err_msg=f"float {k.name}")


# ---------------------------------------------------------------------------------------------
# threads, AMX
# ---------------------------------------------------------------------------------------------

def test_threads_bit_identical(qc):
    """1 and 2 threads: the same bytes on every algorithm and the depthwise path."""
    lib = qc.lib
    rng = np.random.default_rng(5)
    k = Q.kernel_for(qc.row, "uint8")
    g = QC.Geom(1, 21, 20, 32, 48, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
    x = rand_q(rng, np.uint8, (1, 21, 20, 32))
    w = rand_q(rng, np.int8, (48, 32, 3, 3))
    packed = QC.pack_w(w, k, 0)
    gd = dw_geom((1, 40, 41, 48, 3, 1, 1, (1, 1, 1, 1)))
    xd = rand_q(rng, np.uint8, (1, 40, 41, 48))
    dk = QC.dw_kernel_for(qc.row, "uint8")
    wd = QC.pack_dw(rand_q(rng, np.int8, (48, 1, 3, 3)), 0)
    try:
        res = []
        for t in (1, 2):
            lib.onnxc_rt_set_num_threads(t)
            one = []
            for algo in (QC.IMPLICIT, QC.IM2COL):
                g.algo = algo
                one.append(qc.conv(k, g, x, 9, packed, out=U8, scale=np.float32(2e-4), zp=3))
            one.append(qc.conv(dk, gd, xd, 9, wd, out=U8, scale=np.float32(2e-3), zp=3, dw=True))
            res.append(one)
    finally:
        lib.onnxc_rt_set_num_threads(0)
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(res[0][0], res[0][1])


@pytest.mark.skipif("amx" not in HOST, reason="host lacks AMX-INT8")
def test_amx_and_fallback(qc):
    """AMX kernels on IMPLICIT (Cg % 64 == 0: tiles; else the VNNI fallback), IM2COL and DIRECT,
    with the tiles allowed and withheld: identical, exact."""
    if qc.row != "amx":
        pytest.skip("AMX kernels are only in the amx build")
    rng = np.random.default_rng(9)
    for k in (Q.BY_NAME["onnxc_u8s8_gemm_32x32__amx"], Q.BY_NAME["onnxc_s8s8_gemm_32x32__amx"]):
        for C in (64, 96):
            g = QC.Geom(1, 12, 11, C, 50, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
            x = rand_q(rng, k.a_dtype, (1, 12, 11, C))
            w = rand_q(rng, np.int8, (50, C, 3, 3))
            try:
                for allow in (1, 0):
                    qc.lib.onnxc_qgemm_set_amx(allow)
                    for algo in algos_for(k, g):
                        check_conv(qc, k, g, x, 7, w, 3, None, algo, f"amx allowed={allow}")
            finally:
                qc.lib.onnxc_qgemm_set_amx(1)


def test_bad_arguments_refused(qc):
    """Packed weights for another layout, K or group count, and impossible geometries are refused."""
    k = Q.kernel_for(qc.row, "uint8")
    other = next(o for o in Q.QGEMM if o.pack_flags != k.pack_flags)
    g = QC.Geom(1, 5, 5, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
    x = np.zeros((1, 5, 5, 8), np.uint8)
    w = np.ones((8, 8, 3, 3), np.int8)
    y, o, keep = qc.output((1, 5, 5, 8), S32)
    ws = np.zeros(4096, np.uint8)
    for packed in (QC.pack_w(w, other), QC.pack_w(w[:, :4], k), np.zeros(256, np.uint8)):
        assert qc.lib.onnxc_qconv(qc.info(k), qc.geom(g), qc.ptr(x), 0, qc.ptr(packed), qc.ffi.NULL, o, qc.ffi.NULL,
                                  qc.ptr(ws)) == 1
    bad = qc.geom(g)
    bad.OW = 4
    assert qc.lib.onnxc_qconv(qc.info(k), bad, qc.ptr(x), 0, qc.ptr(QC.pack_w(w, k)), qc.ffi.NULL, o, qc.ffi.NULL,
                              qc.ptr(ws)) == 2
    dk = QC.dw_kernel_for(qc.row)
    assert qc.lib.onnxc_qconv_dw(qc.ffi.addressof(qc.lib, dk.name + "_info"), qc.geom(g), qc.ptr(x), 0,
                                 qc.ptr(QC.pack_dw(w[:, :1])), qc.ffi.NULL, o, qc.ffi.NULL) == 2  # not depthwise
    gd = QC.Geom(1, 5, 5, 8, 8, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 8)
    assert qc.lib.onnxc_qconv_dw(qc.ffi.addressof(qc.lib, dk.name + "_info"), qc.geom(gd), qc.ptr(x), 0,
                                 qc.ptr(QC.pack_dw(w[:, :1, :1, :1])), qc.ffi.NULL, o, qc.ffi.NULL) == 1  # 1x1 pack


# ---------------------------------------------------------------------------------------------
# onnxruntime
# ---------------------------------------------------------------------------------------------

# (N, C, H, W, M, KH, KW, strides, dilations, pads, group)
ORT_CASES = [
    (1, 16, 9, 9, 24, 1, 1, (1, 1), (1, 1), (0, 0, 0, 0), 1),
    (1, 32, 11, 10, 40, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 1),
    (2, 17, 9, 8, 16, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 1),
    (1, 3, 15, 15, 32, 7, 7, (2, 2), (1, 1), (3, 3, 3, 3), 1),
    (1, 64, 8, 8, 32, 1, 1, (2, 2), (1, 1), (0, 0, 0, 0), 1),
    (1, 24, 9, 9, 16, 5, 5, (1, 1), (2, 2), (4, 4, 4, 4), 1),
    (1, 16, 10, 9, 32, 3, 3, (1, 1), (1, 1), (1, 0, 2, 1), 4),
    (1, 32, 13, 13, 32, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1), 32),
    (1, 48, 12, 11, 48, 3, 3, (2, 2), (1, 1), (1, 1, 1, 1), 48),
    (1, 40, 9, 9, 40, 5, 5, (1, 1), (1, 1), (2, 2, 2, 2), 40),
]


def _ort_qlinearconv(x, xs, xz, w, ws, wz, ys, yz, bias, attrs):
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"] + (["b"] if bias is not None else []),
                            ["y"], **attrs)
    inits = {"xs": np.array(xs, np.float32), "xz": np.array(xz, x.dtype), "w": w, "ws": np.asarray(ws, np.float32),
             "wz": np.asarray(wz, w.dtype), "ys": np.array(ys, np.float32), "yz": np.array(yz, x.dtype)}
    if bias is not None:
        inits["b"] = bias.astype(np.int32)
    model = make_model([node], [("x", x.dtype, list(x.shape))], [("y", x.dtype, None)], inits)
    return ort_run(model, {"x": x})[0]


_ORT_CACHE = {}


def test_qlinearconv_matches_onnxruntime(qc):
    """QLinearConv (uint8 activations with int8 or uint8 weights, int8 with int8), per-tensor and
    per-channel weight scales, the weight zero point 0 (onnxruntime's symmetric kernels) or not
    (the same for every channel: onnxruntime refuses different ones), bias, groups, depthwise,
    strides, dilations, asymmetric pads: outputs identical to onnxruntime's, with the multiplier
    computed as it does (x_scale * w_scale / y_scale in float32)."""
    rng = np.random.default_rng(31)
    for ci, case in enumerate(ORT_CASES):
        N, C, H, W, M, KH, KW, s, d, p, grp = case
        g = QC.Geom(N, H, W, C, M, KH, KW, s, d, p, grp)
        attrs = dict(kernel_shape=[KH, KW], strides=list(s), dilations=list(d), pads=[p[0], p[1], p[2], p[3]], group=grp)
        for xdt, wdt in ((np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)):
            for per_ch in (False, True):
                key = (ci, xdt, wdt, per_ch)
                if key not in _ORT_CACHE:
                    r = np.random.default_rng(zlib.crc32(repr(key).encode()))
                    x = rand_q(r, xdt, (N, C, H, W))
                    w = rand_q(r, wdt, (M, C // grp, KH, KW))
                    xs, ys = np.float32(0.02), np.float32(0.07 if grp < C else 0.03)
                    ws = (r.random(M) * 0.01 + 0.002).astype(np.float32) if per_ch else np.float32(0.005)
                    wz0 = 0 if (ci + per_ch) % 2 == 0 and wdt == np.int8 else rand_zp(r, wdt)
                    wz = np.full(M, wz0, wdt) if per_ch else np.array(wz0, wdt)
                    xz, yz = rand_zp(r, xdt), rand_zp(r, xdt)
                    bias = r.integers(-3000, 3000, M) if ci % 2 == 0 else None
                    want = _ort_qlinearconv(x, xs, xz, w, ws, wz, ys, yz, bias, attrs)
                    _ORT_CACHE[key] = (x, xs, xz, w, ws, wz0, ys, yz, bias, want)
                x, xs, xz, w, ws, wz0, ys, yz, bias, want = _ORT_CACHE[key]
                mult = (xs * np.asarray(ws, np.float32)) / ys  # float32, onnxruntime's order
                out = U8 if xdt == np.uint8 else S8
                xn = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
                if QC.is_depthwise(grp, C, M):
                    k = QC.dw_kernel_for(qc.row, xdt)
                    got = qc.conv(k, g, xn, xz, QC.pack_dw(w, wz0), bias, out=out, scale=mult, zp=yz, dw=True)
                    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want, err_msg=f"{k.name} {case}")
                k = QC.conv_kernel_for(qc.row, xdt, w, grp)
                for algo in algos_for(k, g):
                    g.algo = algo
                    got = qc.conv(k, g, xn, xz, QC.pack_w(w, k, wz0, grp), bias, out=out, scale=mult, zp=yz)
                    np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want,
                                                  err_msg=f"{k.name} {QC.ALGO_NAMES.get(algo)} {case} {xdt.__name__}x{wdt.__name__} per_ch={per_ch}")


def test_convinteger_matches_onnxruntime(qc):
    """ConvInteger (uint8 x uint8 / uint8 x int8 where onnxruntime has it): int32 identical."""
    rng = np.random.default_rng(33)
    N, C, H, W, M = 1, 12, 8, 9, 20
    for wdt in (np.uint8,):
        x = rand_q(rng, np.uint8, (N, C, H, W))
        w = rand_q(rng, wdt, (M, C, 3, 3))
        xz, wz = 17, 133
        node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
        model = make_model([node], [("x", np.uint8, list(x.shape))], [("y", np.int32, None)],
                           {"w": w, "xz": np.array(xz, np.uint8), "wz": np.array(wz, wdt)})
        want = ort_run(model, {"x": x})[0]
        g = QC.Geom(N, H, W, C, M, 3, 3, (1, 1), (1, 1), (1, 1, 1, 1))
        k = Q.kernel_for(qc.row, "uint8")
        for algo in algos_for(k, g):
            g.algo = algo
            got = qc.conv(k, g, np.ascontiguousarray(x.transpose(0, 2, 3, 1)), xz, QC.pack_w(w, k, wz), None)
            np.testing.assert_array_equal(got.transpose(0, 3, 1, 2), want)


# ---------------------------------------------------------------------------------------------
# every file compiles under every ISA row's flags
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", [i.name for i in isa_table.ISAS])
def test_every_file_compiles_under_every_isa(row, tmp_path):
    """gcc -c -Wall -Wextra -Werror of each runtime_c/qconv file with the row's flags: kernels of
    ISAs the row enables are defined, the others compile to nothing."""
    compiles_under_row(row, tmp_path, sorted({k.source for k in QC.DWCONV} | set(QC.SUPPORT_SOURCES)), QC.DWCONV)
