"""QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear kernels (runtime_c/quant/).

runtime_c/quant is built once per ISA row with a distinct kernel (generic, avx2, avx512: the rows
this host runs) and every result is compared bit for bit with a numpy transcription of the ONNX
spec, with the portable __generic twins in the same library, and with onnxruntime single-node
models (opset 21: int4/uint4/int16/uint16, per-axis and blocked; DynamicQuantizeLinear).
Rows the host lacks are compiled only.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxc.build import compile_flags  # noqa: F401 (flags come from isa_rows)
from onnxc.kernels import quant, quant_header
from onnxc.resources import kernels_cdef, runtime_dir

from helpers import kernel_library, ort_run
from isa_rows import compile_only, flags, runnable

from onnxc.isa import ISAS as ROWS

QUANT_SOURCES = sorted(str(p.relative_to(runtime_dir())) for p in (runtime_dir() / "quant").glob("*.c"))
KERNEL_ISAS = runnable(quant.ISAS)
CDEF = kernels_cdef("onnxc_quant.h") + "\nvoid onnxc_rt_set_num_threads(int n);\n"

# ONNX type -> (numpy type of the carrier, qmin, qmax, 4-bit)
QT = {TensorProto.UINT8: (np.uint8, 0, 255, False), TensorProto.INT8: (np.int8, -128, 127, False),
      TensorProto.UINT16: (np.uint16, 0, 65535, False), TensorProto.INT16: (np.int16, -32768, 32767, False),
      TensorProto.UINT4: (np.uint8, 0, 15, True), TensorProto.INT4: (np.int8, -8, 7, True)}
MODES = {"tensor": 0, "axis": 1, "blocked": 2}


class Lib:
    def __init__(self, isa, ffi, lib):
        self.isa, self.ffi, self.lib = isa, ffi, lib

    def p(self, a, ctype="void *"):
        return self.ffi.cast(ctype, a.ctypes.data) if a is not None else self.ffi.NULL


@pytest.fixture(scope="module", params=KERNEL_ISAS)
def lib(request, tmp_path_factory):
    isa = request.param
    ffi, dl = kernel_library(tmp_path_factory, f"quant-{isa}", QUANT_SOURCES, flags(isa), extra_cdef=CDEF)
    out = Lib(isa, ffi, dl)
    assert ffi.string(dl.onnxc_quant_isa()).decode() == isa  # the driver calls this row's kernels
    yield out
    dl.onnxc_rt_set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# numpy transcription of the spec
# ---------------------------------------------------------------------------------------------

def expand(p, shape3, mode, block):
    """Scale / zero point broadcast to x viewed as [outer, axis, inner]."""
    outer, axis, inner = shape3
    if mode == "tensor":
        return np.broadcast_to(p.reshape(1, 1, 1), shape3)
    if mode == "axis":
        return np.broadcast_to(p.reshape(1, axis, 1), shape3)
    return np.repeat(p.reshape(outer, -1, inner), block, axis=1)[:, :axis, :]


def ref_quantize(x, scale, zp, qt):
    """y = saturate(round_half_even(x / scale) + zp), float32 division; NaN -> qmin (undefined by
    the spec; onnxruntime's choice too)."""
    _, lo, hi, _ = QT[qt]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        v = x.astype(np.float32) / scale.astype(np.float32)
        r = np.rint(v).astype(np.float64) + zp
        r = np.where(np.isnan(r), lo, r)
    return np.clip(r, lo, hi).astype(np.int64)


def ref_dequantize(q, scale, zp):
    return ((q.astype(np.float32) - zp.astype(np.float32)) * scale.astype(np.float32)).astype(np.float32)


def pack4(q):
    """4-bit integers -> ONNX's packed bytes (element 2i in the low nibble of byte i)."""
    flat = (np.asarray(q).reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
    if flat.size % 2:
        flat = np.append(flat, np.uint8(0))
    return (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)


def unpack4(b, n, signed):
    b = np.asarray(b, np.uint8)
    flat = np.stack([b & 0xF, b >> 4], axis=1).reshape(-1)[:n].astype(np.int64)
    return np.where(flat >= 8, flat - 16, flat) if signed else flat


def store(q, qt, packed4):
    """Integer values as the C drivers take them for qtype ``qt``."""
    npt, _, _, is4 = QT[qt]
    if is4 and packed4:
        return pack4(q)
    return np.ascontiguousarray(np.asarray(q).astype(npt))


def load(buf, qt, packed4, n):
    npt, _, _, is4 = QT[qt]
    if is4 and packed4:
        return unpack4(buf, n, qt == TensorProto.INT4)
    return buf.reshape(-1)[:n].astype(np.int64)


def awkward_x(rng, n, scale_full):
    """Values that hit the edges: exact ties k + 0.5 times the scale, far out of range, +-inf,
    NaN, signed zeros, plus ordinary noise."""
    x = rng.standard_normal(n).astype(np.float32) * 40
    s = scale_full.reshape(-1)[:n].astype(np.float32)
    k = rng.integers(-300, 300, n)
    ties = ((k + 0.5) * s).astype(np.float32)  # exact when it does not round: checked below
    pick = rng.random(n)
    x = np.where(pick < 0.3, ties, x)
    x = np.where((pick >= 0.3) & (pick < 0.35), np.float32(1e30) * np.sign(x), x)
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-30, 70000.0, -70000.0], np.float32)
    sel = pick > 0.97
    x[sel] = specials[rng.integers(0, len(specials), int(sel.sum()))]
    return x.astype(np.float32)


def make_params(rng, qt, shape3, mode, block, with_zp):
    outer, axis, inner = shape3
    if mode == "tensor":
        pshape = (1,)
    elif mode == "axis":
        pshape = (axis,)
    else:
        pshape = (outer, -(-axis // block), inner)
    scale = (2.0 ** rng.integers(-6, 3, pshape) * rng.choice([1.0, 0.75, 1.25], pshape)).astype(np.float32)
    _, lo, hi, _ = QT[qt]
    zp = rng.integers(lo, hi + 1, pshape) if with_zp else None
    return scale, zp


SHAPES = [((1, 1, 1), 1), ((1, 37, 1), 4), ((3, 17, 5), 4), ((2, 64, 1), 16), ((4, 33, 3), 32),
          ((1, 1000, 1), 128), ((5, 7, 9), 2), ((2, 3, 1001), 2), ((1, 5, 1), 1)]


def run_quantize(k, x3, qt, packed4, scale, zp, mode, block):
    outer, axis, inner = x3.shape
    n = x3.size
    _, _, _, is4 = QT[qt]
    nbytes = (n + 1) // 2 if (is4 and packed4) else n * np.dtype(QT[qt][0]).itemsize
    y = np.full(nbytes, 0xA5, np.uint8)  # garbage: every byte must be written
    zs = store(zp, qt, packed4) if zp is not None else None
    xc = np.ascontiguousarray(x3, np.float32)
    sc = np.ascontiguousarray(scale, np.float32)
    k.lib.onnxc_quantize_linear(k.p(xc, "float *"), k.p(y), qt, packed4, k.p(sc, "float *"),
                                k.p(zs), MODES[mode], outer, axis, inner, block)
    if is4 and packed4 and n % 2:
        assert y[-1] >> 4 == 0, "odd element count: the last high nibble must be zero"
    return load(y.view(QT[qt][0]) if not (is4 and packed4) else y, qt, packed4, n)


@pytest.mark.parametrize("qt", list(QT))
@pytest.mark.parametrize("mode", list(MODES))
def test_quantize_driver_matches_spec(lib, qt, mode):
    rng = np.random.default_rng(qt * 10 + MODES[mode])
    for shape3, block in SHAPES:
        for with_zp in (False, True):
            for packed4 in ((0, 1) if QT[qt][3] else (0,)):
                scale, zp = make_params(rng, qt, shape3, mode, block, with_zp)
                sfull = expand(scale, shape3, mode, block)
                zfull = expand(zp, shape3, mode, block) if zp is not None else np.zeros(shape3)
                x = awkward_x(rng, int(np.prod(shape3)), sfull).reshape(shape3)
                got = run_quantize(lib, x, qt, packed4, scale, zp, mode, block)
                want = ref_quantize(x, sfull, zfull, qt).reshape(-1)
                np.testing.assert_array_equal(got, want, err_msg=f"{lib.isa} {shape3} blk={block} zp={with_zp} "
                                                                 f"packed4={packed4}")


@pytest.mark.parametrize("qt", list(QT))
@pytest.mark.parametrize("mode", list(MODES))
def test_dequantize_driver_matches_spec(lib, qt, mode):
    rng = np.random.default_rng(qt * 7 + MODES[mode])
    _, lo, hi, is4 = QT[qt]
    for shape3, block in SHAPES:
        for with_zp in (False, True):
            for packed4 in ((0, 1) if is4 else (0,)):
                scale, zp = make_params(rng, qt, shape3, mode, block, with_zp)
                sfull = expand(scale, shape3, mode, block)
                zfull = expand(zp, shape3, mode, block) if zp is not None else np.zeros(shape3)
                n = int(np.prod(shape3))
                q = rng.integers(lo, hi + 1, n)
                q[: min(n, 2)] = [lo, hi][: min(n, 2)]
                qs = store(q, qt, packed4)
                zs = store(zp, qt, packed4) if zp is not None else None
                y = np.full(n, np.nan, np.float32)
                lib.lib.onnxc_dequantize_linear(lib.p(qs), lib.p(y, "float *"), qt, packed4,
                                                lib.p(np.ascontiguousarray(scale, np.float32), "float *"),
                                                lib.p(zs), MODES[mode], *shape3, block)
                want = ref_dequantize(q.reshape(shape3), sfull, zfull).reshape(-1)
                np.testing.assert_array_equal(y, want, err_msg=f"{lib.isa} {shape3} zp={with_zp} packed4={packed4}")


ROW_TYPES = {"u8": np.uint8, "s8": np.int8, "u16": np.uint16, "s16": np.int16}


@pytest.mark.parametrize("t", list(ROW_TYPES))
def test_row_kernels_match_generic_twin(lib, t):
    """Each row kernel of this ISA against its __generic twin and the spec, step 0 and 1, every
    length up to a few vectors (tails)."""
    rng = np.random.default_rng(3)
    npt = ROW_TYPES[t]
    lo, hi = np.iinfo(npt).min, np.iinfo(npt).max
    q_isa = getattr(lib.lib, f"onnxc_f32{t}_quantize_row__{lib.isa}")
    q_gen = getattr(lib.lib, f"onnxc_f32{t}_quantize_row__generic")
    d_isa = getattr(lib.lib, f"onnxc_{t}f32_dequantize_row__{lib.isa}")
    d_gen = getattr(lib.lib, f"onnxc_{t}f32_dequantize_row__generic")
    for n in list(range(0, 50)) + [255, 1024 + 7]:
        for step in (0, 1):
            m = max(n, 1)
            s = (2.0 ** rng.integers(-4, 3, m)).astype(np.float32)
            z = rng.integers(lo, hi + 1, m).astype(np.float32)
            x = awkward_x(rng, m, s)
            ya, yb = np.zeros(m, npt), np.ones(m, npt)
            args = (lib.p(s, "float *"), lib.p(z, "float *"), step, float(lo), float(hi))
            q_isa(lib.p(x, "float *"), lib.p(ya), n, *args)
            q_gen(lib.p(x, "float *"), lib.p(yb), n, *args)
            np.testing.assert_array_equal(ya[:n], yb[:n], err_msg=f"{lib.isa} quantize n={n} step={step}")
            sf = s if step else np.full(m, s[0])
            zf = z if step else np.full(m, z[0])
            np.testing.assert_array_equal(ya[:n].astype(np.int64), ref_quantize(x[:n], sf[:n], zf[:n], {
                "u8": TensorProto.UINT8, "s8": TensorProto.INT8, "u16": TensorProto.UINT16,
                "s16": TensorProto.INT16}[t]))
            q = rng.integers(lo, hi + 1, m).astype(npt)
            fa, fb = np.full(m, np.nan, np.float32), np.full(m, np.nan, np.float32)
            d_isa(lib.p(q), lib.p(fa, "float *"), n, lib.p(s, "float *"), lib.p(z, "float *"), step)
            d_gen(lib.p(q), lib.p(fb, "float *"), n, lib.p(s, "float *"), lib.p(z, "float *"), step)
            np.testing.assert_array_equal(fa[:n], fb[:n])
            np.testing.assert_array_equal(fa[:n], ref_dequantize(q[:n], sf[:n], zf[:n]))


def test_threads_split_packed_int4(lib):
    """Large tensors go over the thread pool in tasks of even length: packed int4 with odd rows
    must come out whole."""
    rng = np.random.default_rng(5)
    shape3, block = (3, 20001, 3), 7
    lib.lib.onnxc_rt_set_num_threads(2)
    for qt in (TensorProto.INT4, TensorProto.UINT8, TensorProto.INT16):
        scale, zp = make_params(rng, qt, shape3, "blocked", block, True)
        sfull = expand(scale, shape3, "blocked", block)
        x = awkward_x(rng, int(np.prod(shape3)), sfull).reshape(shape3)
        got = run_quantize(lib, x, qt, 1, scale, zp, "blocked", block)
        np.testing.assert_array_equal(got, ref_quantize(x, sfull, expand(zp, shape3, "blocked", block), qt).reshape(-1))
    lib.lib.onnxc_rt_set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Dynamic quantization
# ---------------------------------------------------------------------------------------------

def ref_dynamic_u8(x):
    """DynamicQuantizeLinear as the spec (scale 1 for an all-zero input, as onnxruntime)."""
    x = x.astype(np.float32)
    mx = np.float32(max(0.0, float(x.max()))) if x.size else np.float32(0)
    mn = np.float32(min(0.0, float(x.min()))) if x.size else np.float32(0)
    scale = np.float32(1.0) if mx == mn else np.float32((mx - mn) / np.float32(255))
    zp = np.float32(np.rint(np.clip(np.float32(0) - mn / scale, 0, 255)))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, scale, np.uint8(zp)


@pytest.mark.parametrize("n", [1, 5, 16, 33, 4096, 4097, 100003])
def test_dynamic_quantize_linear(lib, n):
    rng = np.random.default_rng(n)
    lib.lib.onnxc_rt_set_num_threads(2 if n > 4096 else 1)
    for case in range(4):
        x = (rng.standard_normal(n) * 3).astype(np.float32)
        if case == 1:
            x = np.abs(x) + 0.5  # all positive: min clamps to 0
        elif case == 2:
            x = -np.abs(x)  # all negative: zp 255
        elif case == 3:
            x[:] = 0.0  # empty range (the spec's 0/0)
        y = np.zeros(n, np.uint8)
        s = np.zeros(1, np.float32)
        z = np.zeros(1, np.uint8)
        lib.lib.onnxc_dynamic_quantize_linear(lib.p(x, "float *"), n, lib.p(y), lib.p(s, "float *"), lib.p(z))
        wy, ws, wz = ref_dynamic_u8(x)
        assert s[0] == ws and z[0] == wz, (case, s[0], ws, z[0], wz)
        np.testing.assert_array_equal(y, wy)
    lib.lib.onnxc_rt_set_num_threads(1)


def test_dynamic_quantize_rows(lib):
    rng = np.random.default_rng(11)
    for M, K in [(1, 1), (3, 17), (7, 64), (2, 1000), (64, 300)]:
        lda, ldq = K + 3, K + 5
        a = (rng.standard_normal((M, lda)) * rng.uniform(0.1, 10, (M, 1))).astype(np.float32)
        a[0, :K] = 0.0  # an all-zero row
        if M > 2:
            a[2, :K] = np.abs(a[2, :K])
        q = np.zeros((M, ldq), np.uint8)
        scale = np.zeros(M, np.float32)
        zp = np.zeros(M, np.int32)
        rs = np.zeros(M, np.int32)
        lib.lib.onnxc_dynamic_quantize_rows_u8(lib.p(a, "float *"), M, K, lda, lib.p(q), ldq,
                                               lib.p(scale, "float *"), lib.p(zp, "int32_t *"), lib.p(rs, "int32_t *"))
        for m in range(M):
            wy, ws, wz = ref_dynamic_u8(a[m, :K])
            assert scale[m] == ws and zp[m] == wz
            np.testing.assert_array_equal(q[m, :K], wy)
            assert rs[m] == int(wy.astype(np.int64).sum())
        qs = np.zeros((M, ldq), np.int8)
        lib.lib.onnxc_dynamic_quantize_rows_s8(lib.p(a, "float *"), M, K, lda, lib.p(qs), ldq,
                                               lib.p(scale, "float *"), lib.p(rs, "int32_t *"))
        for m in range(M):
            amax = np.float32(np.abs(a[m, :K]).max())
            ws = np.float32(amax / np.float32(127)) if amax > 0 else np.float32(1)
            wq = np.clip(np.rint(a[m, :K] / ws), -127, 127).astype(np.int8)
            assert scale[m] == ws
            np.testing.assert_array_equal(qs[m, :K], wq)
            assert rs[m] == int(wq.astype(np.int64).sum())


# ---------------------------------------------------------------------------------------------
# Against onnxruntime (opset 21)
# ---------------------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits):
    from onnx import checker, numpy_helper  # noqa: F401
    g = helper.make_graph(nodes, "q", inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    checker.check_model(m)
    return m


ORT_CASES = [  # (qtype, x shape, axis, mode, block)
    (TensorProto.INT4, (4, 37), 1, "blocked", 8), (TensorProto.UINT4, (6, 5, 3), 1, "blocked", 2),
    (TensorProto.INT16, (3, 40), 1, "blocked", 16), (TensorProto.UINT16, (5, 7, 2), 2, "axis", 0),
    (TensorProto.INT8, (8, 33), 0, "blocked", 4), (TensorProto.UINT8, (2, 9, 4), 1, "axis", 0),
    (TensorProto.INT4, (3, 11), 1, "axis", 0), (TensorProto.UINT4, (17,), 0, "tensor", 0),
    (TensorProto.INT16, (4, 8), 0, "tensor", 0), (TensorProto.UINT8, (5, 64), -1, "blocked", 32),
]


def _split(shape, axis, mode):
    if mode == "tensor":
        return 1, 1, int(np.prod(shape))
    axis %= len(shape)
    return int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))


def _param_shape(shape, axis, mode, block):
    if mode == "tensor":
        return []
    axis %= len(shape)
    if mode == "axis":
        return [shape[axis]]
    s = list(shape)
    s[axis] = -(-shape[axis] // block)
    return s


@pytest.mark.parametrize("case", range(len(ORT_CASES)))
def test_quantize_dequantize_vs_onnxruntime(lib, case):
    qt, shape, axis, mode, block = ORT_CASES[case]
    rng = np.random.default_rng(case)
    shape3 = _split(shape, axis, mode)
    pshape = _param_shape(shape, axis, mode, block)
    scale, zp = make_params(rng, qt, shape3, mode, block, True)
    scale, zp = scale.reshape(pshape), zp.reshape(pshape)
    x = awkward_x(rng, int(np.prod(shape)), expand(scale.reshape(-1), shape3, mode, block)).reshape(shape)
    attrs = {"axis": axis} if mode != "tensor" else {}
    if mode == "blocked":
        attrs["block_size"] = block
    # int4 cannot leave onnxruntime through numpy: Cast the quantized tensor to int32 / feed int8
    q_node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["yq"], **attrs)
    cast = helper.make_node("Cast", ["yq"], ["y"], to=TensorProto.INT32)
    inits = [helper.make_tensor("s", TensorProto.FLOAT, pshape, scale.reshape(-1).tolist()),
             helper.make_tensor("z", qt, pshape, zp.reshape(-1).astype(np.int64).tolist())]
    mq = _model([q_node, cast], [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                [helper.make_tensor_value_info("y", TensorProto.INT32, list(shape))], inits)
    want_q = ort_run(mq, {"x": x})[0].reshape(-1)
    for packed4 in ((0, 1) if QT[qt][3] else (0,)):
        got = run_quantize(lib, x.reshape(shape3), qt, packed4, scale.reshape(-1), zp.reshape(-1), mode, block)
        np.testing.assert_array_equal(got, want_q, err_msg=f"quantize packed4={packed4}")
    # DequantizeLinear of the same integers
    _, lo, hi, _ = QT[qt]
    q = rng.integers(lo, hi + 1, int(np.prod(shape)))
    cast_in = helper.make_node("Cast", ["qi"], ["qq"], to=qt)
    dq = helper.make_node("DequantizeLinear", ["qq", "s", "z"], ["y"], **attrs)
    md = _model([cast_in, dq], [helper.make_tensor_value_info("qi", TensorProto.INT32, list(shape))],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))], inits)
    want_d = ort_run(md, {"qi": q.reshape(shape).astype(np.int32)})[0].reshape(-1)
    for packed4 in ((0, 1) if QT[qt][3] else (0,)):
        y = np.zeros(q.size, np.float32)
        lib.lib.onnxc_dequantize_linear(lib.p(store(q, qt, packed4)), lib.p(y, "float *"), qt, packed4,
                                        lib.p(np.ascontiguousarray(scale.reshape(-1)), "float *"),
                                        lib.p(store(zp.reshape(-1), qt, packed4)), MODES[mode], *shape3, block)
        np.testing.assert_array_equal(y, want_d, err_msg=f"dequantize packed4={packed4}")


@pytest.mark.parametrize("n", [1, 7, 1000, 65537])
def test_dynamic_quantize_linear_vs_onnxruntime(lib, n):
    rng = np.random.default_rng(n + 1)
    node = helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"])
    m = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
               [helper.make_tensor_value_info("y", TensorProto.UINT8, [n]),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
                helper.make_tensor_value_info("z", TensorProto.UINT8, [])], [])
    for case in range(3):
        x = (rng.standard_normal(n) * 5).astype(np.float32)
        if case == 1:
            x = np.abs(x)
        if case == 2:
            x = np.round(x * 4) / 4  # many ties
        wy, ws, wz = ort_run(m, {"x": x})
        y = np.zeros(n, np.uint8)
        s = np.zeros(1, np.float32)
        z = np.zeros(1, np.uint8)
        lib.lib.onnxc_dynamic_quantize_linear(lib.p(x, "float *"), n, lib.p(y), lib.p(s, "float *"), lib.p(z))
        assert s[0] == ws and z[0] == wz
        np.testing.assert_array_equal(y, wy)


# ---------------------------------------------------------------------------------------------
# The kernel list, the header and the ISA rows
# ---------------------------------------------------------------------------------------------

def test_header_is_generated_from_the_lists():
    path = runtime_dir() / "include" / "onnxc_quant.h"
    assert quant_header.render(path.read_text()) == path.read_text(), \
        "onnxc_quant.h is stale: python -m onnxc.kernels.quant_header"


def test_best_kernel_per_row():
    want = {"generic": "generic", "avx2": "avx2", "avx2vnni": "avx2", "avx512": "avx512",
            "avx512vnni": "avx512", "amx": "avx512"}
    ks = [k for k in quant.KERNELS if k.dtype == "f32u8" and k.kind == "quantize"]
    for row in ROWS:
        assert quant.best(ks, row.name).isa == want[row.name]


@pytest.mark.parametrize("isa", [r.name for r in ROWS])
def test_compiles_clean_under_every_row(isa):
    """Every row's flags (runtime objects are built with the target's flags): -Wall -Wextra clean,
    including rows the host cannot run."""
    if isa in KERNEL_ISAS:
        pytest.skip("built with -Wall -Wextra -Werror and run by the lib fixture")
    srcs = [runtime_dir() / s for s in QUANT_SOURCES]
    err = compile_only(srcs, isa, runtime_dir() / "include")
    assert not err, err
