"""Exact integer Winograd F(2x2, 3x3) (runtime_c/qconv/qconv_wino.c, compiler/kernels/qwino.py):
every product kernel the host runs (generic always, avx2 where the host runs it; one library built
for the avx2 row, else the generic one), against the
int64 numpy reference and the direct path (onnxc_qconv) bit for bit: partial 2x2 output tiles
(odd OH / OW), pads 0 / 1 / asymmetric, C and M off the vector and panel widths, u8 and s8
activations, int8 weights (and uint8 with a zero point), per-tensor and per-channel requantize
with a narrowed (Relu) range, the fused residual stage, wider input pixel pitch, the bound at
C = ONNXC_QWINO_MAX_C with extreme values, 1 vs 2 threads; the rule of where the compiler uses
it; a compiled QLinearConv at target avx2 that must take it and match onnxruntime, and a QDQ
Conv + Relu quantized by onnxruntime whose avx2 build must take it and equal the direct build.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxc
from onnxc import isa as isa_table
from onnxc.kernels import qconv as QC
from onnxc.kernels import qgemm as Q
from onnxc.kernels import qwino as QW

from helpers import ort_run
from int8_lib import S8, S32, U8, compiles_under_row, ref_requant
from test_qconv import build_qclib, rand_q, ref_acc, ref_residual

# One build: the avx2 row's runtime also holds the __generic kernel (and the transforms are the
# same C in every build), so both kernels run in it; hosts without AVX2 build the generic row.
ROWS = ["avx2"] if "avx2" in Q.host_isas() else ["generic"]


@pytest.fixture(scope="module", params=ROWS)
def lib(request, tmp_path_factory):
    q = build_qclib(request.param, tmp_path_factory, "qwino")
    yield q
    q.lib.onnxc_rt_set_num_threads(0)


def wkernels(row):
    return [k for k in QW.WGEMM if Q.can_run(k.isa, row)]


def wino(q, k, g, x, xz, w, wz=None, bias=None, out=S32, scale=None, zp=0, qmin=None, qmax=None, res=None):
    """onnxc_qconv_wino with the output stage QCLib.conv uses (QCLib.output_stage)"""
    packed = QW.pack(w, wz)
    assert packed.size == q.lib.onnxc_qconv_wino_packed_elems(g.C, g.M)
    ffi = q.ffi
    y, o, rs, keep = q.output_stage(g, out, scale, zp, qmin, qmax, res=res)
    b = None if bias is None else np.ascontiguousarray(bias, np.int32)
    gc = q.geom(g)
    assert q.lib.onnxc_qconv_wino_ok(gc) == 1
    ws = np.zeros(q.lib.onnxc_qconv_wino_workspace_bytes(gc), np.uint8)
    assert ws.size == QW.workspace_bytes(g) > 0
    rc = q.lib.onnxc_qconv_wino(ffi.addressof(q.lib, k.name + "_info"), gc, q.ptr(x), int(x.dtype == np.int8), int(xz),
                                q.ptr(packed, "int16_t *"), q.ptr(b, "int32_t *"), o, rs, q.ptr(ws))
    assert rc == 0, f"{k.name}: returned {rc} for {g}"
    return y


# (N, H, W, C, M, pads, x_pitch)
CASES = [
    (1, 7, 9, 17, 33, (1, 1, 1, 1), 0),    # odd OH/OW: partial tiles, C odd, M past a panel
    (2, 5, 6, 16, 16, (0, 0, 0, 0), 0),    # unpadded, OH 3 / OW 4, batch
    (1, 4, 3, 64, 20, (1, 0, 0, 1), 0),    # asymmetric pads
    (1, 11, 12, 33, 47, (1, 1, 1, 1), 40),  # several tile blocks, wider pitch
    (1, 3, 3, 1, 1, (0, 0, 0, 0), 0),      # one output
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}x{c[2]}c{c[3]}m{c[4]}" for c in CASES])
def test_int32_every_kernel(lib, case):
    N, H, W, C, M, pads, pitch = case
    rng = np.random.default_rng(C * 131 + M)
    g = QC.Geom(N, H, W, C, M, 3, 3, pads=pads, x_pitch=pitch)
    for xdt in (np.uint8, np.int8):
        x = rand_q(rng, xdt, (N, H, W, pitch or C))
        xz = int(rng.integers(-128, 128)) if xdt == np.int8 else int(rng.integers(0, 256))
        w = rand_q(rng, np.int8, (M, C, 3, 3))
        bias = rng.integers(-2 ** 20, 2 ** 20, M).astype(np.int32)
        want = ref_acc(x, xz, w, None, bias, g)
        for k in wkernels(lib.row):
            got = wino(lib, k, g, x, xz, w, bias=bias)
            assert np.array_equal(got, want), f"[{lib.row}] {k.name} {g} x {np.dtype(xdt)}"
    # uint8 weights with per-channel zero points (|w - wz| <= 255)
    x = rand_q(rng, np.uint8, (N, H, W, pitch or C))
    w = rand_q(rng, np.uint8, (M, C, 3, 3))
    wz = rng.integers(0, 256, M)
    want = ref_acc(x, 7, w, wz, None, g)
    for k in wkernels(lib.row):
        assert np.array_equal(wino(lib, k, g, x, 7, w, wz), want), f"[{lib.row}] {k.name} uint8 weights"


def test_requantize_relu_residual_match_direct(lib):
    """The output stages on Winograd accumulators equal onnxc_qconv's (the direct path) bit for
    bit: per-channel and per-tensor scales, a Relu-narrowed range, the fused residual."""
    rng = np.random.default_rng(5)
    N, H, W, C, M = 1, 9, 7, 24, 40
    g = QC.Geom(N, H, W, C, M, 3, 3, pads=(1, 1, 1, 1))
    x = rand_q(rng, np.uint8, (N, H, W, C))
    w = rand_q(rng, np.int8, (M, C, 3, 3))
    bias = rng.integers(-5000, 5000, M).astype(np.int32)
    gk = QC.conv_kernel_for(lib.row, np.uint8, w)
    packed = QC.pack_w(w, gk, None)
    acc = ref_acc(x, 120, w, None, bias, g)
    r = rand_q(rng, np.uint8, (N, g.OH, g.OW, M))
    for scale in (np.float32(3e-4), (rng.random(M) * 4e-4 + 1e-4).astype(np.float32)):
        for qmin in (0, 100):  # 100: a fused Relu with y zero point 100
            direct = lib.conv(gk, g, x, 120, packed, bias, out=U8, scale=scale, zp=100, qmin=qmin)
            want = ref_requant(acc, scale, 100, qmin, 255, np.uint8)
            assert np.array_equal(direct, want)
            dres = lib.conv(gk, g, x, 120, packed, bias, out=U8, scale=scale, zp=100, qmin=qmin, res=(r, 128, 0.7))
            assert np.array_equal(dres, ref_residual(acc, scale, r, 128, 0.7, 100, qmin, 255, np.uint8))
            for k in wkernels(lib.row):
                got = wino(lib, k, g, x, 120, w, bias=bias, out=U8, scale=scale, zp=100, qmin=qmin)
                assert np.array_equal(got, direct), f"[{lib.row}] {k.name} requantize qmin {qmin}"
                got = wino(lib, k, g, x, 120, w, bias=bias, out=U8, scale=scale, zp=100, qmin=qmin,
                           res=(r, 128, 0.7))
                assert np.array_equal(got, dres), f"[{lib.row}] {k.name} residual qmin {qmin}"
    xs = rand_q(rng, np.int8, (N, H, W, C))
    d8 = lib.conv(QC.conv_kernel_for(lib.row, np.int8, w), g, xs, -3, QC.pack_w(w, QC.conv_kernel_for(lib.row, np.int8, w)),
                  bias, out=S8, scale=np.float32(2e-4), zp=-5)
    for k in wkernels(lib.row):
        assert np.array_equal(wino(lib, k, g, xs, -3, w, bias=bias, out=S8, scale=np.float32(2e-4), zp=-5), d8)


def test_extreme_values_at_channel_limit(lib):
    """|4Y| just under 2^31: C = ONNXC_QWINO_MAX_C, |x - xz| = 255 and |w| = 128 with matching
    signs (every product at its largest), one output pixel per tile position."""
    C, M = QW.MAX_C, 16
    g = QC.Geom(1, 4, 3, C, M, 3, 3)
    rng = np.random.default_rng(3)
    sign = rng.integers(0, 2, (1, 4, 3, C)).astype(bool)
    x = np.where(sign, 255, 0).astype(np.uint8)
    w = np.empty((M, C, 3, 3), np.int8)
    w[: M // 2] = -128  # at xz = 255: (0 - 255) * -128 > 0 where x = 0
    w[M // 2:] = rng.choice(np.array([-128, 127], np.int8), (M - M // 2, C, 3, 3))
    want = ref_acc(x, 255, w, None, None, g)
    assert np.abs(want.astype(np.int64)).max() > 2 ** 28
    for k in wkernels(lib.row):
        assert np.array_equal(wino(lib, k, g, x, 255, w), want), f"[{lib.row}] {k.name} extremes"


def test_threads_bit_identical(lib):
    rng = np.random.default_rng(9)
    g = QC.Geom(1, 30, 29, 32, 48, 3, 3, pads=(1, 1, 1, 1))
    x = rand_q(rng, np.uint8, (1, 30, 29, 32))
    w = rand_q(rng, np.int8, (48, 32, 3, 3))
    k = wkernels(lib.row)[-1]
    outs = []
    for t in (1, 2):
        lib.lib.onnxc_rt_set_num_threads(t)
        outs.append(wino(lib, k, g, x, 3, w))
    lib.lib.onnxc_rt_set_num_threads(0)
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], ref_acc(x, 3, w, None, None, g))


def test_geometry_refused(lib):
    for g in (QC.Geom(1, 8, 8, 16, 16, 3, 3, strides=(2, 2)), QC.Geom(1, 8, 8, 16, 16, 5, 5),
              QC.Geom(1, 8, 8, 16, 16, 3, 3, dilations=(2, 2)), QC.Geom(1, 8, 8, 16, 16, 3, 3, group=2),
              QC.Geom(1, 4, 4, QW.MAX_C + 1, 16, 3, 3)):
        assert lib.lib.onnxc_qconv_wino_ok(lib.geom(g)) == 0, g
        assert lib.lib.onnxc_qconv_wino_workspace_bytes(lib.geom(g)) == 0, g


def test_rule():
    rng = np.random.default_rng(1)
    w = rand_q(rng, np.int8, (64, 64, 3, 3))
    g = QC.Geom(1, 14, 14, 64, 64, 3, 3, pads=(1, 1, 1, 1))
    assert QW.applies("avx2", g, w) is None and QW.applies("avx512", g, w) is None
    for row in ("generic", "avx2vnni", "avx512vnni", "amx"):
        assert QW.applies(row, g, w) is not None, row
    assert QW.applies("avx2", QC.Geom(1, 14, 14, 64, 64, 3, 3, strides=(2, 2)), w) is not None
    assert QW.applies("avx2", QC.Geom(1, 14, 14, 8, 64, 3, 3), w[:, :8]) is not None
    assert QW.applies("avx2", g, None) is not None
    wu = rand_q(rng, np.uint8, (64, 64, 3, 3))
    assert QW.applies("avx2", g, wu, 128) is None
    assert QW.applies("avx2", QC.Geom(1, 4, 4, 1800, 16, 3, 3), np.full((16, 1800, 3, 3), 255, np.uint8), 0) \
        is not None  # 4 * 255 * sum|w| >= 2^31
    assert QW.kernel_for("avx2").name == "onnxc_s16_wgemm_6x16__avx2"
    assert QW.kernel_for("generic").name == "onnxc_s16_wgemm_6x16__generic"


def _qlinearconv_model(rng, N, C, H, W, M, per_channel, relu_zp):
    """QLinearConv 3x3 pad 1 whose y_zero_point = relu_zp and scales put many outputs at both ends."""
    x = rng.integers(0, 256, (N, C, H, W)).astype(np.uint8)
    w = rng.integers(-128, 128, (M, C, 3, 3)).astype(np.int8)
    ws = (rng.random(M) * 0.01 + 0.002).astype(np.float32) if per_channel else np.array(0.005, np.float32)
    wz = np.zeros(M, np.int8) if per_channel else np.array(0, np.int8)
    b = rng.integers(-3000, 3000, M).astype(np.int32)
    inits = [helper.make_tensor("xs", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("xz", TensorProto.UINT8, [], [130]),
             helper.make_tensor("w", TensorProto.INT8, w.shape, w.reshape(-1).tolist()),
             helper.make_tensor("ws", TensorProto.FLOAT, list(ws.shape), ws.reshape(-1).tolist()),
             helper.make_tensor("wz", TensorProto.INT8, list(wz.shape), wz.reshape(-1).tolist()),
             helper.make_tensor("ys", TensorProto.FLOAT, [], [0.5]), helper.make_tensor("yz", TensorProto.UINT8, [], [relu_zp]),
             helper.make_tensor("b", TensorProto.INT32, [M], b.tolist())]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [N, C, H, W])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [N, M, H, W])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), x


@pytest.mark.skipif("avx2" not in Q.host_isas(), reason="the host does not run the avx2 row")
def test_compiled_takes_winograd_and_matches_onnxruntime(tmp_path, monkeypatch):
    """At target avx2 the 3x3 QLinearConv calls onnxc_qconv_wino (the generated C names it) and
    equals onnxruntime; at target generic it keeps the direct path (and equals it too)."""
    rng = np.random.default_rng(2)
    for i, (per_channel, shape) in enumerate(((True, (1, 20, 9, 11, 36)), (False, (2, 16, 6, 5, 17)))):
        model, x = _qlinearconv_model(rng, *shape, per_channel, relu_zp=0)
        want = ort_run(model, {"x": x})[0]
        for target, expect in (("avx2", True), ("generic", False))[:2 - i]:
            d = tmp_path / f"{i}-{target}"
            sess = onnxc.compile(model, target=target, fallback=False, output_dir=str(d), num_threads=1)
            src = (d / "model.c").read_text()
            assert ("onnxc_qconv_wino(" in src) == expect, (target, per_channel)
            assert np.array_equal(sess.run(None, {"x": x})[0], want), (target, per_channel)


@pytest.mark.parametrize("row", [i.name for i in isa_table.ISAS])
def test_compiles_under_every_isa(row, tmp_path):
    """gcc -Wall -Wextra -Werror of qconv_wino.c with each row's flags: a product kernel is defined
    exactly where the row enables its ISA."""
    compiles_under_row(row, tmp_path, QW.sources(), QW.WGEMM)


@pytest.mark.skipif("avx2" not in Q.host_isas(), reason="the host does not run the avx2 row")
def test_qdq_model_takes_winograd_bit_identical(tmp_path):
    """A float Conv 3x3 + Relu quantized by onnxruntime's quantize_static (QDQ, per-channel int8
    weights, uint8 activations; the QDQ passes fuse it into the int8 convolution with the Relu's
    range): the avx2 build calls onnxc_qconv_wino and equals the direct build (qwino.ENABLED off)
    bit for bit, both within one output step of onnxruntime."""
    pytest.importorskip("onnxruntime.quantization")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from onnxc.quantize.data import FeedReader
    rng = np.random.default_rng(4)
    C, M, H, W = 24, 20, 9, 7
    w = (rng.standard_normal((M, C, 3, 3)) * 0.2).astype(np.float32)
    b = rng.standard_normal(M).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, W])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, M, H, W])],
                              [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.reshape(-1).tolist()),
                               helper.make_tensor("b", TensorProto.FLOAT, [M], b.tolist())])
    fm = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fpath, qpath = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(fm, str(fpath))
    feeds = [{"x": rng.standard_normal((1, C, H, W)).astype(np.float32)} for _ in range(4)]
    quantize_static(str(fpath), str(qpath), FeedReader(iter(feeds)), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    qm = onnx.load(str(qpath))
    x = feeds[0]
    want = ort_run(qm, x)[0]
    sess = onnxc.compile(qm, target="avx2", fallback=False, output_dir=str(tmp_path / "w"), num_threads=1)
    assert "onnxc_qconv_wino(" in (tmp_path / "w" / "model.c").read_text()
    got = sess.run(None, x)[0]
    qd = onnx.ModelProto()
    qd.CopyFrom(qm)
    qd.doc_string += " (direct)"  # another cache key
    QW.ENABLED = False
    try:
        direct = onnxc.compile(qd, target="avx2", fallback=False, output_dir=str(tmp_path / "d"), num_threads=1)
    finally:
        QW.ENABLED = True
    assert "onnxc_qconv_wino(" not in (tmp_path / "d" / "model.c").read_text()
    assert np.array_equal(got, direct.run(None, x)[0])
    step = float(np.abs(want).max()) / 255 * 1.01 + 1e-6
    assert np.abs(got - want).max() <= step
