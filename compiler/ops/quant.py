"""Quantized ops (issue 13): attribute defaults, shape/dtype rules with validity checks, and
numpy references that compute what onnxruntime's CPU kernels compute (users compare against
onnxruntime, so where its x86 kernels round differently from an op's formula, onnxc follows
onnxruntime and the op's entry below says so). The C emitters are providers/c/quant.py; they
take their lookup tables and constants from the helpers here, so each op is defined once.

Default domain: MatMulInteger, QLinearMatMul, DynamicQuantizeLinear (rules; QuantizeLinear and
DequantizeLinear keep onnx's rule, with the checks below in front).
com.microsoft: QGemm, MatMulIntegerToFloat, DynamicQuantizeMatMul, QLinearAdd, QLinearMul,
QLinearSigmoid, QLinearLeakyRelu, QLinearGlobalAveragePool, QLinearAveragePool, QLinearConcat,
QLinearSoftmax, MatMulNBits (4-bit weights; reference within tolerance, see its entry).

Numerics (float32 throughout, x86-64 with AVX2/FMA, the path onnxruntime takes on such CPUs):
  GEMM family   int32 accumulation of (A - za)(B - zb) (wrapping), then MLAS's requantize:
                y = sat(rint(float(acc) * s) + zy) with s = (a_scale * b_scale[n]) / y_scale
                (QGemm: ((alpha * a_scale) * b_scale[n]) / y_scale), or float(acc) * s (+ bias).
  QLinearAdd    MLAS's AVX2 kernel, not the formula: r_a = sa / sc, r_b = sb / sc,
                F = zc - fma(r_a, za, r_b * zb); y = cvt(fma(a, r_a, fma(b, r_b, F))) (a, b the
                raw integers). When A is broadcast along the innermost dimension the roles of A
                and B swap (onnxruntime passes the broadcast operand second).
  QLinearMul    MLAS's SSE2 kernel: y = cvt(float((a - za)(b - zb)) * ((sa * sb) / sc) + zc).
  cvt           round half to even, then saturate; NaN and |t| >= 2^31 give the type's minimum
                (cvtps2dq's "integer indefinite"), as onnxruntime.
  QLinearSigmoid, QLinearLeakyRelu, QLinearConcat (inputs whose scale/zero point differ from
                the output's)  a 256-entry table: each byte dequantized (x_scale * (x - zx)),
                transformed (Sigmoid: MLAS's FMA3 rational approximation, not exp), quantized
                by MLAS (x / y_scale, clamp, round half to even, + zy).
  QLinearGlobalAveragePool  sum(x) - zx * n in int32, requantized with sx / (sy * n).
  QLinearAveragePool        windows dequantized to float and summed in order, divided by the
                count, then rint(v / sy + zy) (the integer path above when the window is the
                whole image without padding, as onnxruntime does); count_include_pad counts
                the whole kernel even where ceil_mode runs it past the padding.
  QLinearSoftmax  onnxruntime's own scheme: a float table exp((i - 255 + shift) * sx), row sums
                in float, y = sat(rint(t * floor(1 / sy) / sum) + zy): the output scale is
                effectively 1 / floor(1 / sy), not sy (as onnxruntime).
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import ModelError
from .registry import facts, get_attr, reference, shape_rule

# Facts (registry.FACTS): QLinearMatMul's float32 twin is tested on narrow types; Q/DQ convert
# narrow values in their own kernels (providers/c/casts.py)
facts("QLinearMatMul", twin=True)
facts("QuantizeLinear", "DequantizeLinear", codec=True)

MS = "com.microsoft"
F32 = np.float32
QTYPES = (np.dtype(np.uint8), np.dtype(np.int8))

# Attribute defaults of the com.microsoft ops (onnx.defs does not know them).
ATTRS: Dict[str, Dict[str, object]] = {
    "QGemm": {"alpha": 1.0, "transA": 0, "transB": 0},
    "QLinearLeakyRelu": {"alpha": 0.01},
    "QLinearGlobalAveragePool": {"channels_last": 0},
    "QLinearAveragePool": {"auto_pad": "NOTSET", "ceil_mode": 0, "channels_last": 0, "count_include_pad": 0,
                           "pads": None, "strides": None},
    "QLinearConcat": {},
    "QLinearSoftmax": {"axis": -1},
    "MatMulNBits": {"bits": 4, "accuracy_level": 0},
}


def attr(node, name: str):
    """Attribute value, else the op's default (ATTRS for com.microsoft ops, onnx.defs else)."""
    return get_attr(node, name, ATTRS.get(node.op_type, {}).get(name))


# --- float32 arithmetic as the x86 kernels do it ----------------------------------------------
def fma32(a, b, c) -> np.ndarray:
    """float32 fused multiply-add a * b + c, rounded once (what vfmadd computes)."""
    a, b, c = (np.asarray(v, F32).astype(np.float64) for v in (a, b, c))
    p = a * b  # exact: two 24-bit significands
    s = p + c
    t = s - p  # TwoSum: s + e == p + c exactly
    e = (p - (s - t)) + (c - t)
    r = s.astype(F32)
    d = s - r.astype(np.float64)
    other = np.nextafter(r, np.where(d > 0, F32(np.inf), F32(-np.inf)))
    # s exactly halfway between two floats while the true sum is not: round toward e's side
    tie = (d != 0) & (s == (r.astype(np.float64) + other.astype(np.float64)) / 2) & (e != 0)
    return np.where(tie & ((e > 0) == (d > 0)), other, r).astype(F32)


def cvt_sat(t, dtype) -> np.ndarray:
    """cvtps2dq then saturation to ``dtype``: round half to even; NaN and |t| >= 2^31 become
    INT32_MIN, hence the type's minimum."""
    info = np.iinfo(dtype)
    t = np.asarray(t, F32).astype(np.float64)
    ok = np.abs(t) < 2.0 ** 31
    r = np.where(ok, np.rint(np.where(ok, t, 0)), info.min)
    return np.clip(r, info.min, info.max).astype(dtype)


def quantize_mlas(x, scale, zp: int, dtype) -> np.ndarray:
    """MlasQuantizeLinear: x / scale in float32, clamped to [qmin - zp, qmax - zp] (NaN to the
    lower bound), rounded half to even, plus zp."""
    info = np.iinfo(dtype)
    with np.errstate(all="ignore"):
        v = (np.asarray(x, F32) / F32(scale)).astype(F32)
    lo, hi = F32(info.min - int(zp)), F32(info.max - int(zp))
    v = np.where(v > lo, v, lo)
    v = np.where(v < hi, v, hi)
    return (np.rint(v).astype(np.int64) + int(zp)).astype(dtype)


def requantize(acc, scale, zp: int, dtype, qmin: Optional[int] = None, qmax: Optional[int] = None) -> np.ndarray:
    """MlasRequantizeOutput (and onnxc_qgemm's U8/S8 stage): float(acc) * scale, clamped to
    [qmin - zp, qmax - zp], rounded half to even, plus zp. ``scale`` broadcasts over the last
    axis (per column)."""
    info = np.iinfo(dtype)
    qmin = info.min if qmin is None else qmin
    qmax = info.max if qmax is None else qmax
    with np.errstate(all="ignore"):
        f = (np.asarray(acc, np.int32).astype(F32) * np.asarray(scale, F32)).astype(F32)
    lo, hi = F32(qmin - int(zp)), F32(qmax - int(zp))
    f = np.where(f > lo, f, lo)
    f = np.where(f < hi, f, hi)
    return (np.rint(f).astype(np.int64) + int(zp)).astype(dtype)


def wrap_i32(x) -> np.ndarray:
    return np.asarray(x, np.int64).astype(np.uint64).astype(np.uint32).view(np.int32)


# MLAS's logistic (the Eigen rational approximation), in its FMA3 kernel's operation order
_LOGISTIC = dict(lo=-18.0, hi=18.0, a9=4.37031012579801e-11, a7=1.15627324459942e-07,
                 a5=6.08574864600143e-05, a3=8.51377133304701e-03, a1=2.48287947061529e-01,
                 b10=6.10247389755681e-13, b8=5.76102136993427e-09, b6=6.29106785017040e-06,
                 b4=1.70198817374094e-03, b2=1.16817656904453e-01, b0=9.93151921023180e-01)


def logistic_mlas(x) -> np.ndarray:
    c = {k: F32(v) for k, v in _LOGISTIC.items()}
    x = np.asarray(x, F32)
    x = np.where(x > c["lo"], x, np.where(np.isnan(x), x, c["lo"])).astype(F32)
    x = np.where(x < c["hi"], x, np.where(np.isnan(x), x, c["hi"])).astype(F32)
    x2 = (x * x).astype(F32)
    p = fma32(x2, c["a9"], c["a7"])
    for k in ("a5", "a3", "a1"):
        p = fma32(x2, p, c[k])
    p = (x * p).astype(F32)
    q = fma32(x2, c["b10"], c["b8"])
    for k in ("b6", "b4", "b2", "b0"):
        q = fma32(x2, q, c[k])
    with np.errstate(all="ignore"):
        r = ((p / q).astype(F32) + F32(0.5)).astype(F32)
    return np.where(r > 0, r, np.where(np.isnan(r), r, F32(0))).astype(F32)  # vmaxps(0, r)


def lookup_table(fn, x_scale, x_zp: int, y_scale, y_zp: int, dtype) -> np.ndarray:
    """onnxruntime's QLinear lookup table (256 entries, indexed by the input's raw byte): each
    value dequantized as x_scale * (x - x_zp) in float32, transformed by ``fn`` (float32 array
    -> float32 array), quantized by MlasQuantizeLinear. Returned as ``dtype``."""
    raw = np.arange(256, dtype=np.uint8).view(dtype).astype(np.int32)
    with np.errstate(all="ignore"):
        deq = (F32(x_scale) * (raw - int(x_zp)).astype(F32)).astype(F32)
    return quantize_mlas(np.asarray(fn(deq), F32), y_scale, y_zp, dtype)


def leaky_relu_f32(alpha):
    a = F32(alpha)
    return lambda v: np.where(v >= 0, v, (a * v).astype(F32)).astype(F32)


def softmax_exp_table(x_scale, reduce_len: int) -> np.ndarray:
    """QLinearSoftmax's float table, indexed by (x - max + 255) (uint8 input) or its int8 twin
    (see softmax_ref): exp((i - 255 + shift) * x_scale) in double, shift chosen so that a row's
    sum stays below FLT_MAX (onnxruntime's QlinearBuildLookupTableUint32 with float output)."""
    bit_shift = math.log(float(F32(np.finfo(F32).max) / F32(reduce_len)))
    bit_shift = max(0.0, bit_shift - 5.0) / float(F32(x_scale))
    xs = float(F32(x_scale))
    return np.array([math.exp((i - 255 + bit_shift) * xs) for i in range(256)], np.float64).astype(F32)


# --- validity ---------------------------------------------------------------------------------
def _fail(node, what: str, found, expected):
    raise ModelError(f"node '{node.name}' ({node.op_type}): {what} is {found}, expected {expected}")


def _name(node, i: int) -> str:
    v = node.input(i)
    return f"input {i} '{v.name}'" if v is not None else f"input {i}"


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, (int, np.integer)) for d in shape)


def _count(shape) -> Optional[int]:
    return int(np.prod(shape, dtype=np.int64)) if _known(shape) else None


def _need(node, i: int, what: str):
    v = node.input(i)
    if v is None:
        _fail(node, f"{_name(node, i)} ({what})", "missing", "a tensor")
    return v


def check_dtype(node, i: int, allowed, what: str):
    v = node.input(i)
    if v is not None and v.dtype is not None and v.dtype not in [np.dtype(a) for a in allowed]:
        _fail(node, f"the dtype of {_name(node, i)} ({what})", v.dtype,
              " or ".join(str(np.dtype(a)) for a in allowed))


def check_qparams(node, scale_i: int, zp_i: Optional[int], data_dtype, what: str,
                  per_axis: Optional[int] = None, zp_required: bool = False) -> None:
    """A (scale, zero point) pair: float scale; zero point of the data's dtype; one element
    each (per tensor), or ``per_axis`` elements in a 1-D tensor when that is allowed."""
    s = _need(node, scale_i, f"{what} scale")
    check_dtype(node, scale_i, (np.float32, np.float16), f"{what} scale")
    z = node.input(zp_i) if zp_i is not None else None
    if zp_required and z is None:
        _need(node, zp_i, f"{what} zero point")
    for i, v, kind in ((scale_i, s, "scale"), (zp_i, z, "zero point")):
        if v is None or not _known(v.shape):
            continue
        n = _count(v.shape)
        ok = n == 1 and len(v.shape) <= 1
        if per_axis is not None and len(v.shape) == 1 and v.shape[0] == per_axis:
            ok = True
        if not ok:
            expected = "a scalar or 1 element" + (f", or {per_axis} elements (1-D)" if per_axis is not None else "")
            _fail(node, f"the shape of {_name(node, i)} ({what} {kind})", tuple(v.shape), expected)
    if z is not None and data_dtype is not None and z.dtype is not None and z.dtype != data_dtype:
        _fail(node, f"the dtype of {_name(node, zp_i)} ({what} zero point)", z.dtype, f"{data_dtype} (the data's)")
    if z is not None and _known(s.shape) and _known(z.shape) and _count(s.shape) != _count(z.shape):
        _fail(node, f"the element count of {_name(node, zp_i)} ({what} zero point)", _count(z.shape),
              f"{_count(s.shape)} (as its scale)")


def _bcast(node, shapes: Sequence[tuple], what: str) -> tuple:
    """numpy broadcasting of possibly symbolic shapes (a symbol broadcasts like a dim > 1)."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for k in range(rank):
        dims = [s[len(s) - rank + k] for s in shapes if len(s) - rank + k >= 0]
        known = {d for d in dims if isinstance(d, (int, np.integer)) and d != 1}
        sym = [d for d in dims if not isinstance(d, (int, np.integer))]
        if len(known) > 1:
            _fail(node, what, " and ".join(str(tuple(s)) for s in shapes), "shapes that broadcast")
        out.append(int(known.pop()) if known else (sym[0] if sym else 1))
    return tuple(out)


def matmul_shape(node, a_i: int, b_i: int) -> tuple:
    """numpy.matmul's output shape for inputs a_i, b_i, with the inner dimensions checked."""
    a, b = node.inputs[a_i].shape, node.inputs[b_i].shape
    for i, s in ((a_i, a), (b_i, b)):
        if len(s) == 0:
            _fail(node, f"the rank of {_name(node, i)}", 0, ">= 1")
    ka, kb = a[-1], (b[0] if len(b) == 1 else b[-2])
    if isinstance(ka, (int, np.integer)) and isinstance(kb, (int, np.integer)) and ka != kb:
        _fail(node, f"the inner dimension of {_name(node, b_i)} {tuple(b)}", kb,
              f"{ka} (the last dimension of {_name(node, a_i)} {tuple(a)})")
    batch = _bcast(node, [tuple(a[:-2]), tuple(b[:-2])], "the batch dimensions of A and B")
    return batch + (tuple(a[-2:-1]) if len(a) > 1 else ()) + (tuple(b[-1:]) if len(b) > 1 else ())


def _n_columns(node, b_i: int, trans: bool = False):
    b = node.inputs[b_i].shape
    if len(b) == 1:
        return 1
    n = b[-2] if trans else b[-1]
    return int(n) if isinstance(n, (int, np.integer)) else None


def _qtype(node, i: int, what: str):
    check_dtype(node, i, QTYPES, what)
    return node.inputs[i].dtype


# --- the GEMM family --------------------------------------------------------------------------
@shape_rule("MatMulInteger")
def _matmul_integer_rule(node):
    at, bt = _qtype(node, 0, "A"), _qtype(node, 1, "B")
    check_qparams_zp_only(node, 2, at, "A", per_axis=None)
    check_qparams_zp_only(node, 3, bt, "B", per_axis=_n_columns(node, 1))
    return [(np.dtype(np.int32), matmul_shape(node, 0, 1))]


def check_qparams_zp_only(node, zp_i: int, data_dtype, what: str, per_axis=None) -> None:
    z = node.input(zp_i)
    if z is None:
        return
    if z.dtype is not None and z.dtype != data_dtype:
        _fail(node, f"the dtype of {_name(node, zp_i)} ({what} zero point)", z.dtype, f"{data_dtype} (the data's)")
    if _known(z.shape) and not (_count(z.shape) == 1 and len(z.shape) <= 1) and not (
            per_axis is not None and tuple(z.shape) == (per_axis,)):
        # MatMulInteger's spec also allows a zero point per row of A ([M]); it is valid
        if what == "A" and len(z.shape) == 1 and len(node.inputs[0].shape) >= 2 and \
                z.shape[0] == node.inputs[0].shape[-2]:
            return
        expected = "a scalar or 1 element" + (f", or {per_axis} elements (1-D)" if per_axis is not None else "")
        _fail(node, f"the shape of {_name(node, zp_i)} ({what} zero point)", tuple(z.shape), expected)


@shape_rule("QLinearMatMul")
def _qlinear_matmul_rule(node):
    at, bt = _qtype(node, 0, "a"), _qtype(node, 3, "b")
    check_qparams(node, 1, 2, at, "a", zp_required=True)
    check_qparams(node, 4, 5, bt, "b", per_axis=_n_columns(node, 3), zp_required=True)
    yz = _need(node, 7, "y zero point")
    check_qparams(node, 6, 7, yz.dtype, "y", zp_required=True)
    check_dtype(node, 7, QTYPES, "y zero point")
    return [(yz.dtype, matmul_shape(node, 0, 3))]


def gemm_mnk(node, a_i=0, b_i=3):
    a, b = node.inputs[a_i].shape, node.inputs[b_i].shape
    ta, tb = int(attr(node, "transA") or 0), int(attr(node, "transB") or 0)
    M, K = (a[1], a[0]) if ta else (a[0], a[1])
    Kb, N = (b[1], b[0]) if tb else (b[0], b[1])
    return M, N, K, Kb


@shape_rule("QGemm", MS)
def _qgemm_rule(node):
    at, bt = _qtype(node, 0, "A"), _qtype(node, 3, "B")
    for i in (0, 3):
        if len(node.inputs[i].shape) != 2:
            _fail(node, f"the rank of {_name(node, i)}", len(node.inputs[i].shape), 2)
    M, N, K, Kb = gemm_mnk(node)
    if all(isinstance(d, (int, np.integer)) for d in (K, Kb)) and K != Kb:
        _fail(node, f"K of {_name(node, 3)} {tuple(node.inputs[3].shape)} (transB={attr(node, 'transB')})", Kb,
              f"{K} (from {_name(node, 0)} {tuple(node.inputs[0].shape)}, transA={attr(node, 'transA')})")
    check_qparams(node, 1, 2, at, "A", zp_required=True)
    check_qparams(node, 4, 5, bt, "B", per_axis=N if isinstance(N, (int, np.integer)) else None,
                  zp_required=True)
    c = node.input(6)
    if c is not None:
        check_dtype(node, 6, (np.int32,), "C")
        if len(c.shape) > 2:
            _fail(node, f"the rank of {_name(node, 6)} (C)", len(c.shape), "<= 2")
        _bcast(node, [tuple(c.shape), (M, N)], "C against (M, N)")
        full = (1,) * (2 - len(c.shape)) + tuple(c.shape)
        if any(isinstance(d, (int, np.integer)) and isinstance(o, (int, np.integer)) and d not in (1, o)
               for d, o in zip(full, (M, N))):
            _fail(node, f"the shape of {_name(node, 6)} (C)", tuple(c.shape), f"one that broadcasts to ({M}, {N})")
    ys, yz = node.input(7), node.input(8)
    if ys is not None:
        check_qparams(node, 7, 8, yz.dtype if yz is not None else None, "y")
    if yz is not None:
        check_dtype(node, 8, QTYPES, "y zero point")
        if ys is None:
            _fail(node, "input 7 (y scale)", "missing while the y zero point is given", "both or neither")
    out = yz.dtype if yz is not None else np.dtype(np.float32)
    return [(out, (M, N))]


@shape_rule("MatMulIntegerToFloat", MS)
def _mmi2f_rule(node):
    at, bt = _qtype(node, 0, "A"), _qtype(node, 1, "B")
    n = _n_columns(node, 1)
    check_qparams(node, 2, 4, at, "A")
    check_qparams(node, 3, 5, bt, "B", per_axis=n)
    check_dtype(node, 2, (np.float32,), "A scale")
    _bias_check(node, 6, n)
    return [(node.inputs[2].dtype, matmul_shape(node, 0, 1))]


def _bias_check(node, i: int, n):
    bias = node.input(i)
    if bias is None:
        return
    check_dtype(node, i, (np.float32,), "bias")
    if _known(bias.shape) and n is not None and tuple(bias.shape) != (n,):
        _fail(node, f"the shape of {_name(node, i)} (bias)", tuple(bias.shape), f"({n},) (B's columns)")


@shape_rule("DynamicQuantizeMatMul", MS)
def _dqmm_rule(node):
    check_dtype(node, 0, (np.float32,), "A")
    bt = _qtype(node, 1, "B")
    n = _n_columns(node, 1)
    check_qparams(node, 2, 3, bt, "B", per_axis=n)
    _bias_check(node, 4, n)
    return [(np.dtype(np.float32), matmul_shape(node, 0, 1))]


@shape_rule("DynamicQuantizeLSTM", MS)
def _dq_lstm_rule(node):
    """onnxruntime's LSTM with int8/uint8 weights W [D, I, 4H] and R [D, H, 4H] (transposed from
    LSTM's), each with a scale and zero point per direction ([D]) or per column ([D, 4H])."""
    x = _need(node, 0, "X")
    check_dtype(node, 0, (np.float32,), "X")
    wt, rt = _qtype(node, 1, "W"), _qtype(node, 2, "R")
    w, r = node.inputs[1], node.inputs[2]
    D = 2 if node.attrs.get("direction", "forward") == "bidirectional" else 1
    if not (_known(x.shape) and _known(w.shape) and _known(r.shape)):
        return [(np.dtype(np.float32), None)] * len(node.outputs)
    if len(x.shape) != 3:
        _fail(node, f"the rank of {_name(node, 0)} (X)", len(x.shape), 3)
    T, N, I = x.shape
    if len(r.shape) != 3 or r.shape[0] != D or r.shape[2] != 4 * r.shape[1]:
        _fail(node, f"the shape of {_name(node, 2)} (R)", tuple(r.shape), f"[{D}, hidden, 4 * hidden]")
    H = int(r.shape[1])
    if tuple(w.shape) != (D, I, 4 * H):
        _fail(node, f"the shape of {_name(node, 1)} (W)", tuple(w.shape), (D, I, 4 * H))
    for si, zi, t, what in ((8, 9, wt, "W"), (10, 11, rt, "R")):
        check_dtype(node, si, (np.float32,), f"{what} scale")
        check_dtype(node, zi, (t,), f"{what} zero point")
        for i in (si, zi):
            v = node.input(i)
            if v is not None and _known(v.shape) and tuple(v.shape) not in ((D,), (D, 4 * H)):
                _fail(node, f"the shape of {_name(node, i)}", tuple(v.shape), f"({D},) or ({D}, {4 * H})")
    state = (D, N, H)
    return [(np.dtype(np.float32), s) for s in ((T, D, N, H), state, state)][:len(node.outputs)]


@shape_rule("DynamicQuantizeLinear")
def _dql_rule(node):
    check_dtype(node, 0, (np.float32,), "x")
    return [(np.dtype(np.uint8), tuple(node.inputs[0].shape)), (np.dtype(np.float32), ()),
            (np.dtype(np.uint8), ())]


def _q_dq_rule(node):
    from .shapes import _onnx_infer
    s = node.input(1)
    z = node.input(2)
    if s is not None and z is not None and _known(s.shape) and _known(z.shape) and tuple(s.shape) != tuple(z.shape) \
            and not (_count(s.shape) == 1 and _count(z.shape) == 1):
        _fail(node, f"the shape of {_name(node, 2)} (zero point)", tuple(z.shape), f"{tuple(s.shape)} (the scale's)")
    x = node.inputs[0]
    if s is not None and _known(s.shape) and _known(x.shape) and len(s.shape) == 1 and _count(s.shape) > 1 \
            and not get_attr(node, "block_size", 0):
        rank = len(x.shape)
        axis = int(get_attr(node, "axis", 1))
        if not -rank <= axis < rank:
            _fail(node, "attribute axis", axis, f"an axis in [{-rank}, {rank - 1}]")
        if x.shape[axis % rank] != s.shape[0]:
            _fail(node, f"the length of {_name(node, 1)} (per-axis scale)", s.shape[0],
                  f"{x.shape[axis % rank]} (input dimension {axis % rank})")
    return _onnx_infer(node)


shape_rule("QuantizeLinear")(_q_dq_rule)
shape_rule("DequantizeLinear")(_q_dq_rule)


# --- elementwise and pooling (com.microsoft) --------------------------------------------------
@shape_rule("QLinearAdd", MS)
@shape_rule("QLinearMul", MS)
def _qbinary_rule(node):
    at = _qtype(node, 0, "A")
    _need(node, 3, "B")
    bt = _qtype(node, 3, "B")
    if bt != at:
        _fail(node, f"the dtype of {_name(node, 3)} (B)", bt, f"{at} (A's)")
    check_qparams(node, 1, 2, at, "A")
    check_qparams(node, 4, 5, at, "B")
    check_qparams(node, 6, 7, at, "C")
    return [(at, _bcast(node, [tuple(node.inputs[0].shape), tuple(node.inputs[3].shape)], "the shapes of A and B"))]


@shape_rule("QLinearSigmoid", MS)
@shape_rule("QLinearLeakyRelu", MS)
def _qunary_rule(node):
    xt = _qtype(node, 0, "X")
    check_qparams(node, 1, 2, xt, "X")
    check_qparams(node, 3, 4, xt, "Y")
    return [(xt, tuple(node.inputs[0].shape))]


def _spatial(node, rank: int):
    """(first, end) of the spatial dims: NCHW [2, rank), channels_last [1, rank - 1)."""
    return (1, rank - 1) if attr(node, "channels_last") else (2, rank)


@shape_rule("QLinearGlobalAveragePool", MS)
def _qgap_rule(node):
    xt = _qtype(node, 0, "X")
    check_qparams(node, 1, 2, xt, "X", zp_required=True)
    check_qparams(node, 3, 4, xt, "Y", zp_required=True)
    shape = tuple(node.inputs[0].shape)
    if len(shape) < 3:
        _fail(node, f"the rank of {_name(node, 0)}", len(shape), ">= 3")
    lo, hi = _spatial(node, len(shape))
    return [(xt, tuple(1 if lo <= k < hi else d for k, d in enumerate(shape)))]


def nchw_shape(node, shape) -> tuple:
    """The NCHW view of an input (channels_last moves the last dim to position 1)."""
    shape = tuple(shape)
    return (shape[0], shape[-1]) + shape[1:-1] if attr(node, "channels_last") else shape


def avgpool_geometry(node, x_nchw):
    """(kernel, strides, pads (begins then ends), output spatial dims) of QLinearAveragePool on
    the NCHW shape ``x_nchw``, by onnxruntime's PoolAttributes (auto_pad, ceil_mode; with
    ceil_mode a last window that would start past the input and its leading pad is dropped)."""
    k = [int(v) for v in attr(node, "kernel_shape")]
    nd = len(k)
    strides = [int(v) for v in (attr(node, "strides") or [1] * nd)]
    pads = [int(v) for v in (attr(node, "pads") or [0] * (2 * nd))]
    auto = attr(node, "auto_pad") or "NOTSET"
    ceil_mode = int(attr(node, "ceil_mode") or 0)
    out = []
    for d in range(nd):
        size = int(x_nchw[2 + d])
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            need = ((size + strides[d] - 1) // strides[d] - 1) * strides[d] + k[d] - size
            head = (need + 1) // 2 if auto == "SAME_LOWER" else need // 2
            pads[d], pads[nd + d] = head, need - head
        elif auto == "VALID":
            pads[d] = pads[nd + d] = 0
        span = float(F32(size + pads[d] + pads[nd + d] - k[d]) / F32(strides[d]))
        o = int(math.ceil(span + 1)) if ceil_mode else int(span + 1)
        if ceil_mode and (o - 1) * strides[d] >= size + pads[d]:
            o -= 1
        out.append(o)
    return k, strides, pads, tuple(out)


@shape_rule("QLinearAveragePool", MS)
def _qavgpool_rule(node):
    xt = _qtype(node, 0, "X")
    check_qparams(node, 1, 2, xt, "X")
    check_qparams(node, 3, 4, xt, "Y")
    shape = tuple(node.inputs[0].shape)
    k = attr(node, "kernel_shape")
    if not k:
        _fail(node, "attribute kernel_shape", "missing", "one size per spatial dimension")
    if len(shape) != len(k) + 2:
        _fail(node, f"the rank of {_name(node, 0)}", len(shape), f"{len(k) + 2} (kernel_shape {list(k)} + 2)")
    if not 1 <= len(k) <= 3:
        _fail(node, "the length of kernel_shape", len(k), "1, 2 or 3 (onnxruntime's QLinearAveragePool)")
    if not _known(shape):
        return [(xt, None)]
    _, strides, _, out = avgpool_geometry(node, nchw_shape(node, shape))
    if any(st < 1 for st in strides) or any(o < 1 for o in out):
        _fail(node, "the pooled output size", tuple(out), "at least 1 per spatial dimension (kernel, strides, pads)")
    y = (shape[0], shape[1]) + tuple(out)
    return [(xt, (y[0],) + tuple(out) + (shape[-1],) if attr(node, "channels_last") else y)]


def concat_inputs(node):
    """[(x index, scale index, zero point index)] of QLinearConcat's tuples."""
    n = len(node.inputs)
    return [(i, i + 1, i + 2) for i in range(2, n, 3)]


@shape_rule("QLinearConcat", MS)
def _qconcat_rule(node):
    n = len(node.inputs)
    if n < 5 or (n - 2) % 3:
        _fail(node, "the input count", n, "2 + 3k (Y scale, Y zero point, then (X, scale, zero point) tuples)")
    yz = _need(node, 1, "Y zero point")
    check_dtype(node, 1, QTYPES, "Y zero point")
    check_qparams(node, 0, 1, yz.dtype, "Y", zp_required=True)
    shapes = []
    for xi, si, zi in concat_inputs(node):
        _need(node, xi, "X")
        check_dtype(node, xi, (yz.dtype,), "X (the Y zero point's dtype)")
        check_qparams(node, si, zi, yz.dtype, f"X{(xi - 2) // 3}", zp_required=True)
        shapes.append(tuple(node.inputs[xi].shape))
    if "axis" not in node.attrs:
        _fail(node, "attribute axis", "missing", "an axis (required)")
    rank = len(shapes[0])
    axis = int(node.attrs["axis"])
    if not -rank <= axis < rank:
        _fail(node, "attribute axis", axis, f"an axis in [{-rank}, {rank - 1}]")
    axis %= rank
    out = list(shapes[0])
    for k, s in enumerate(shapes[1:], 1):
        if len(s) != rank:
            _fail(node, f"the rank of {_name(node, 2 + 3 * k)}", len(s), f"{rank} (X0's)")
        for d in range(rank):
            if d == axis:
                continue
            if isinstance(s[d], (int, np.integer)) and isinstance(out[d], (int, np.integer)) and s[d] != out[d]:
                _fail(node, f"dimension {d} of {_name(node, 2 + 3 * k)} {s}", s[d], f"{out[d]} (X0's)")
    ax = [s[axis] for s in shapes]
    out[axis] = sum(ax) if all(isinstance(d, (int, np.integer)) for d in ax) else None
    return [(yz.dtype, tuple(out) if out[axis] is not None else None)]


@shape_rule("QLinearSoftmax", MS)
def _qsoftmax_rule(node):
    xt = _qtype(node, 0, "X")
    check_qparams(node, 1, 2, xt, "X")
    check_qparams(node, 3, 4, xt, "Y", zp_required=True)
    if "opset" not in node.attrs:
        _fail(node, "attribute opset", "missing", "the opset of the Softmax it replaces (required)")
    rank = len(node.inputs[0].shape)
    axis = int(attr(node, "axis") if "axis" in node.attrs else (-1 if int(node.attrs["opset"]) >= 13 else 1))
    if rank and not -rank <= axis < rank:
        _fail(node, "attribute axis", axis, f"an axis in [{-rank}, {rank - 1}]")
    return [(xt, tuple(node.inputs[0].shape))]


# --- numpy references -------------------------------------------------------------------------
def _scalar(a, default=0):
    return default if a is None else np.asarray(a).reshape(-1)[0]


def _zp_int(a) -> int:
    return int(_scalar(a, 0))


def _centered(x, zp):
    """x - zp in int64; zp a scalar, or per column (a trailing vector) when it has N elements."""
    x = np.asarray(x).astype(np.int64)
    if zp is None:
        return x
    z = np.asarray(zp).astype(np.int64)
    return x - (z.reshape(-1) if z.size > 1 else z.reshape(()))


def _matmul_acc(a, a_zp, b, b_zp) -> np.ndarray:
    """int32 (wrapped) matmul of (A - a_zp)(B - b_zp); a per-row A zero point is 1-D [M]."""
    A = np.asarray(a).astype(np.int64)
    if a_zp is not None:
        z = np.asarray(a_zp).astype(np.int64)
        A = A - (z.reshape(-1, 1) if z.size > 1 else z.reshape(()))
    return wrap_i32(np.matmul(A, _centered(b, b_zp)))


@reference("MatMulInteger")
def _matmul_integer_ref(node, a, b, a_zp=None, b_zp=None):
    return [_matmul_acc(a, a_zp, b, b_zp)]


def out_scale(*factors, divisor=None) -> np.ndarray:
    """float32 product of the factors left to right (each a scalar or per column), then divided
    by ``divisor``: onnxruntime's requantization scale."""
    s = F32(1)
    first = True
    for f in factors:
        f = np.asarray(f, F32).reshape(-1)
        f = f if f.size > 1 else f.reshape(())
        s = f if first else (s * f).astype(F32)
        first = False
    if divisor is not None:
        s = (s / F32(_scalar(divisor))).astype(F32)
    return np.asarray(s, F32)


@reference("QLinearMatMul")
def _qlinear_matmul_ref(node, a, a_s, a_zp, b, b_s, b_zp, y_s, y_zp):
    if np.asarray(a_s).size > 1 or np.asarray(a_zp).size > 1:
        return NotImplemented  # per-row A parameters: onnx.reference
    acc = _matmul_acc(a, _zp_int(a_zp), b, b_zp)
    return [requantize(acc, out_scale(a_s, b_s, divisor=y_s), _zp_int(y_zp), np.asarray(y_zp).dtype)]


def broadcast_c(c, M: int, N: int) -> np.ndarray:
    c = np.asarray(c, np.int64)
    return np.broadcast_to(c.reshape((1,) * (2 - c.ndim) + c.shape), (M, N))


@reference("QGemm", MS)
def _qgemm_ref(node, a, a_s, a_zp, b, b_s, b_zp, c=None, y_s=None, y_zp=None):
    if attr(node, "transA"):
        a = np.asarray(a).T
    if attr(node, "transB"):
        b = np.asarray(b).T
    acc = _matmul_acc(a, _zp_int(a_zp), b, b_zp)
    if c is not None:
        acc = wrap_i32(acc.astype(np.int64) + broadcast_c(c, *acc.shape))
    alpha = F32(attr(node, "alpha"))
    scale = out_scale(np.asarray(alpha * F32(_scalar(a_s)), F32), b_s, divisor=y_s)
    if y_zp is None:
        return [(acc.astype(F32) * scale).astype(F32)]
    return [requantize(acc, scale, _zp_int(y_zp), np.asarray(y_zp).dtype)]


def _to_float(acc, scale, bias=None):
    y = (np.asarray(acc, np.int32).astype(F32) * np.asarray(scale, F32)).astype(F32)
    return (y + np.asarray(bias, F32)).astype(F32) if bias is not None else y


@reference("MatMulIntegerToFloat", MS)
def _mmi2f_ref(node, a, b, a_s, b_s, a_zp=None, b_zp=None, bias=None):
    acc = _matmul_acc(a, None if a_zp is None else _zp_int(a_zp), b, b_zp)
    return [_to_float(acc, out_scale(a_s, b_s), bias)]


def dynamic_qparams(x):
    """DynamicQuantizeLinear's (scale, zero point) as onnxruntime: the range widened to include
    0, scale = (max - min) / 255 (1 when the range is empty), zero point = rint(clamp(-min /
    scale)) (round half to even)."""
    x = np.asarray(x, F32)
    mn = F32(min(F32(0), F32(x.min()) if x.size else F32(0)))
    mx = F32(max(F32(0), F32(x.max()) if x.size else F32(0)))
    scale = F32(1) if mx == mn else F32((mx - mn) / F32(255))
    izp = F32(F32(0) - F32(mn / scale))
    zp = np.rint(np.clip(izp, F32(0), F32(255)))
    return scale, int(zp)


@reference("DynamicQuantizeLinear")
def _dql_ref(node, x):
    scale, zp = dynamic_qparams(x)
    return [quantize_mlas(x, scale, zp, np.uint8), np.array(scale, F32), np.array(zp, np.uint8)]


@reference("DynamicQuantizeMatMul", MS)
def _dqmm_ref(node, a, b, b_s, b_zp=None, bias=None):
    scale, zp = dynamic_qparams(a)
    qa = quantize_mlas(a, scale, zp, np.uint8)
    acc = _matmul_acc(qa, zp, b, b_zp)
    return [_to_float(acc, out_scale(np.asarray(scale, F32), b_s), bias)]


def add_swapped(a_shape, b_shape) -> bool:
    """Whether onnxruntime runs QLinearAdd with A and B's roles swapped: when A is broadcast along
    the innermost dimension that is not 1 in the output (its per-span scalar goes second)."""
    out = np.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    r = len(out)
    a = (1,) * (r - len(a_shape)) + tuple(a_shape)
    b = (1,) * (r - len(b_shape)) + tuple(b_shape)
    for k in range(r - 1, -1, -1):
        if out[k] != 1:
            return a[k] == 1 and b[k] != 1
    return False


def qladd_params(sa, za, sb, zb, sc, zc):
    """(r_a, r_b, F) of MLAS's AVX2 QLinearAdd for (A, B) in that role order."""
    ra, rb = F32(F32(sa) / F32(sc)), F32(F32(sb) / F32(sc))
    fixed = F32(F32(zc) - fma32(ra, F32(za), F32(rb * F32(zb))))
    return ra, rb, fixed


@reference("QLinearAdd", MS)
def _qladd_ref(node, a, sa, za, b, sb, zb, sc, zc=None):
    dtype = np.asarray(a).dtype
    za, zb, zc = _zp_int(za), _zp_int(zb), _zp_int(zc)
    sa, sb, sc = F32(_scalar(sa)), F32(_scalar(sb)), F32(_scalar(sc))
    A, B = np.asarray(a).astype(F32), np.asarray(b).astype(F32)
    if add_swapped(np.shape(a), np.shape(b)):
        A, B, sa, za, sb, zb = B, A, sb, zb, sa, za
    ra, rb, fixed = qladd_params(sa, za, sb, zb, sc, zc)
    A, B = np.broadcast_arrays(A, B)
    return [cvt_sat(fma32(A, ra, fma32(B, rb, fixed)), dtype)]


@reference("QLinearMul", MS)
def _qlmul_ref(node, a, sa, za, b, sb, zb, sc, zc=None):
    dtype = np.asarray(a).dtype
    ratio = F32(F32(F32(_scalar(sa)) * F32(_scalar(sb))) / F32(_scalar(sc)))
    p = (np.asarray(a).astype(np.int32) - _zp_int(za)) * (np.asarray(b).astype(np.int32) - _zp_int(zb))
    t = ((p.astype(F32) * ratio).astype(F32) + F32(_zp_int(zc))).astype(F32)
    return [cvt_sat(t, dtype)]


def _table_apply(x, table):
    return table[np.asarray(x).view(np.uint8).astype(np.intp)]


def sigmoid_table(x_s, x_zp, y_s, y_zp, dtype):
    return lookup_table(logistic_mlas, _scalar(x_s), _zp_int(x_zp), _scalar(y_s), _zp_int(y_zp), dtype)


def leaky_relu_table(node, x_s, x_zp, y_s, y_zp, dtype):
    return lookup_table(leaky_relu_f32(attr(node, "alpha")), _scalar(x_s), _zp_int(x_zp), _scalar(y_s),
                        _zp_int(y_zp), dtype)


@reference("QLinearSigmoid", MS)
def _qsigmoid_ref(node, x, x_s, x_zp=None, y_s=None, y_zp=None):
    return [_table_apply(x, sigmoid_table(x_s, x_zp, y_s, y_zp, np.asarray(x).dtype))]


@reference("QLinearLeakyRelu", MS)
def _qleaky_ref(node, x, x_s, x_zp=None, y_s=None, y_zp=None):
    return [_table_apply(x, leaky_relu_table(node, x_s, x_zp, y_s, y_zp, np.asarray(x).dtype))]


def gap_scale(x_s, y_s, n: int):
    """QLinearGlobalAveragePool's requantization scale x_scale / (y_scale * n) in float32."""
    return F32(F32(_scalar(x_s)) / F32(F32(_scalar(y_s)) * F32(n)))


def global_avg(xn, x_s, x_zp, y_s, y_zp, dtype):
    """xn: [N, C, image] -> [N, C] by the integer path (sum - zp * n, requantized)."""
    n = xn.shape[-1]
    acc = wrap_i32(xn.astype(np.int64).sum(-1) - _zp_int(x_zp) * n)
    return requantize(acc, gap_scale(x_s, y_s, n), _zp_int(y_zp), dtype)


@reference("QLinearGlobalAveragePool", MS)
def _qgap_ref(node, x, x_s, x_zp, y_s, y_zp):
    x = np.asarray(x)
    if attr(node, "channels_last"):
        x = np.moveaxis(x, -1, 1)
    N, C = x.shape[:2]
    y = global_avg(x.reshape(N, C, -1), x_s, x_zp, y_s, y_zp, x.dtype).reshape((N, C) + (1,) * (x.ndim - 2))
    return [np.moveaxis(y, 1, -1) if attr(node, "channels_last") else y]


def avgpool_is_global(node, x_nchw) -> bool:
    k, _, pads, _ = avgpool_geometry(node, x_nchw)
    return tuple(k) == tuple(x_nchw[2:]) and not any(pads)


def pool_windows(k, strides, pads, in_sp, out_sp):
    """Per spatial dim, per output index: (start, end) clipped to the input, onnxruntime's way
    (start = o * stride - pad_begin, end = min(start + k, size), start = max(start, 0))."""
    res = []
    for d in range(len(k)):
        w = []
        for o in range(out_sp[d]):
            s = o * strides[d] - pads[d]
            e = min(s + k[d], in_sp[d])
            w.append((max(s, 0), e))
        res.append(w)
    return res


@reference("QLinearAveragePool", MS)
def _qavgpool_ref(node, x, x_s, x_zp=None, y_s=None, y_zp=None):
    x = np.asarray(x)
    dtype = x.dtype
    if attr(node, "channels_last"):
        x = np.moveaxis(x, -1, 1)
    k, strides, pads, out_sp = avgpool_geometry(node, x.shape)
    N, C = x.shape[:2]
    if avgpool_is_global(node, x.shape):
        y = global_avg(x.reshape(N, C, -1), x_s, x_zp, y_s, y_zp, dtype).reshape((N, C) + (1,) * len(k))
    else:
        deq = (F32(_scalar(x_s)) * (x.astype(np.int32) - _zp_int(x_zp)).astype(F32)).astype(F32)
        wins = pool_windows(k, strides, pads, x.shape[2:], out_sp)
        y = np.zeros((N, C) + tuple(out_sp), dtype)
        ys, yz = F32(_scalar(y_s)), F32(_zp_int(y_zp))
        full = F32(int(np.prod(k)))
        for o in np.ndindex(*out_sp):
            ranges = [wins[d][o[d]] for d in range(len(k))]
            acc = np.zeros((N, C), F32)
            for p in np.ndindex(*[max(0, e - s) for s, e in ranges]):
                idx = tuple(s + q for (s, _), q in zip(ranges, p))
                acc = (acc + deq[(slice(None), slice(None)) + idx]).astype(F32)
            cnt = full if attr(node, "count_include_pad") else F32(int(np.prod([e - s for s, e in ranges])))
            v = (acc / cnt).astype(F32)
            y[(slice(None), slice(None)) + o] = cvt_sat(((v / ys).astype(F32) + yz).astype(F32), dtype)
    return [np.moveaxis(y, 1, -1) if attr(node, "channels_last") else y]


def concat_table(x_s, x_zp, y_s, y_zp, dtype) -> Optional[np.ndarray]:
    """The requantization table of one QLinearConcat input, or None when it is a plain copy
    (same scale and zero point as the output)."""
    if F32(_scalar(x_s)) == F32(_scalar(y_s)) and _zp_int(x_zp) == _zp_int(y_zp):
        return None
    return lookup_table(lambda v: v, _scalar(x_s), _zp_int(x_zp), _scalar(y_s), _zp_int(y_zp), dtype)


@reference("QLinearConcat", MS)
def _qconcat_ref(node, y_s, y_zp, *rest):
    dtype = np.asarray(y_zp).dtype
    parts = []
    for j in range(0, len(rest), 3):
        x, s, z = rest[j:j + 3]
        t = concat_table(s, z, y_s, y_zp, dtype)
        parts.append(np.asarray(x) if t is None else _table_apply(x, t))
    return [np.concatenate(parts, axis=int(node.attrs["axis"]))]


def softmax_axis(node, rank: int) -> int:
    opset = int(node.attrs.get("opset", 13))
    axis = int(node.attrs["axis"]) if "axis" in node.attrs else (-1 if opset >= 13 else 1)
    return axis % rank if rank else 0


def softmax_rows(node, shape):
    """(rows, D, moved): the softmax runs over rows of D elements; opset < 13 flattens from the
    axis on, opset >= 13 reduces one axis (``moved``: that axis is not the last)."""
    rank = len(shape)
    axis = softmax_axis(node, rank)
    if int(node.attrs.get("opset", 13)) < 13:
        D = int(np.prod(shape[axis:], dtype=np.int64))
        return int(np.prod(shape, dtype=np.int64)) // max(D, 1), D, False
    D = int(shape[axis]) if rank else 1
    return int(np.prod(shape, dtype=np.int64)) // max(D, 1), D, axis != rank - 1


def softmax_y_scale(y_s) -> np.float32:
    return F32(math.floor(float(F32(1.0) / F32(_scalar(y_s)))))


@reference("QLinearSoftmax", MS)
def _qsoftmax_ref(node, x, x_s, x_zp=None, y_s=None, y_zp=None):
    x = np.asarray(x)
    dtype = x.dtype
    rows, D, moved = softmax_rows(node, x.shape)
    axis = softmax_axis(node, x.ndim)
    xm = np.moveaxis(x, axis, -1) if moved else x
    flat = xm.reshape(rows, D)
    table = softmax_exp_table(_scalar(x_s), D)
    ysc, yz = softmax_y_scale(y_s), _zp_int(y_zp)
    info = np.iinfo(dtype)
    out = np.zeros_like(flat)
    for r in range(rows):
        v = flat[r].astype(np.int32)
        t = table[v - int(v.max()) + 255]
        s = F32(0)
        for e in t:
            s = F32(s + e)
        with np.errstate(all="ignore"):
            v = np.rint(((t * ysc).astype(F32) / s).astype(F32)) + F32(yz)
        out[r] = np.clip(v, info.min, info.max).astype(dtype)  # inf (t * ysc overflowed) saturates
    y = out.reshape(xm.shape)
    return [np.moveaxis(y, -1, axis) if moved else y]


# --- MatMulNBits (com.microsoft) ----------------------------------------------------------------
def nbits_geometry(node):
    """(K, N, block, kb): MatMulNBits's attributes and the blocks per column."""
    K, N, block = (int(node.attrs[a]) for a in ("K", "N", "block_size"))
    return K, N, block, -(-K // block)


def nbits_int8_compute(node) -> bool:
    """Whether onnxruntime's CPU provider computes with int8 activations: accuracy_level 4 and
    no float zero points (those run in fp32 at any level; levels 2 and 3, fp16/bf16 compute, run
    in fp32 on x86 too)."""
    z = node.input(3)
    return int(attr(node, "accuracy_level")) == 4 and not (z is not None and z.dtype != np.uint8)


@shape_rule("MatMulNBits", MS)
def _matmulnbits_rule(node):
    for a in ("K", "N", "block_size"):
        if a not in node.attrs:
            _fail(node, f"attribute {a}", "missing", "a positive integer (required)")
    K, N, block, kb = nbits_geometry(node)
    bits = int(attr(node, "bits"))
    if K < 1 or N < 1:
        _fail(node, "attributes K, N", (K, N), "positive integers")
    if block < 16 or block & (block - 1):
        _fail(node, "attribute block_size", block, "a power of two >= 16")
    if not 2 <= bits <= 8:
        _fail(node, "attribute bits", bits, "in [2, 8]")
    check_dtype(node, 0, (np.float32, np.float16), "A")
    a = node.inputs[0].shape
    if len(a) < 1:
        _fail(node, f"the rank of {_name(node, 0)}", 0, ">= 1")
    if isinstance(a[-1], (int, np.integer)) and a[-1] != K:
        _fail(node, f"the last dimension of {_name(node, 0)} {tuple(a)}", a[-1], f"{K} (attribute K)")
    check_dtype(node, 1, (np.uint8,), "B")
    blob = block * bits // 8
    b = node.inputs[1].shape
    if _known(b) and (tuple(b) != (N, kb, blob) and _count(b) != N * kb * blob):
        _fail(node, f"the shape of {_name(node, 1)} (B)", tuple(b), f"({N}, {kb}, {blob})")
    s = _need(node, 2, "scales")
    check_dtype(node, 2, (node.inputs[0].dtype,), "scales (A's dtype)")
    if _known(s.shape) and _count(s.shape) != N * kb:
        _fail(node, f"the element count of {_name(node, 2)} (scales)", _count(s.shape), f"{N * kb} (N * blocks)")
    z = node.input(3)
    if z is not None and _known(z.shape):
        if z.dtype == np.uint8:
            want = N * (-(-kb * bits // 8))
        else:
            check_dtype(node, 3, (np.uint8, s.dtype), "zero points (uint8 packed, or the scales' dtype)")
            want = N * kb
        if _count(z.shape) != want:
            _fail(node, f"the element count of {_name(node, 3)} (zero points)", _count(z.shape), want)
    bias = node.input(5)
    if bias is not None:
        check_dtype(node, 5, (node.inputs[0].dtype,), "bias (A's dtype)")
        if _known(bias.shape) and tuple(bias.shape) != (N,):
            _fail(node, f"the shape of {_name(node, 5)} (bias)", tuple(bias.shape), f"({N},)")
    return [(node.inputs[0].dtype, tuple(a[:-1]) + (N,))]


def nbits_dequantize(node, b, scales, zp) -> np.ndarray:
    """The dequantized weights [N, K] in float32: (q - zp) * scale, zp 2^(bits-1) when omitted
    (4-bit only here)."""
    K, N, block, kb = nbits_geometry(node)
    b = np.asarray(b, np.uint8).reshape(N, kb, block // 2)
    q = np.stack([b & 15, b >> 4], -1).reshape(N, kb * block).astype(F32)
    if zp is None:
        z = np.full((N, kb), 8, F32)
    elif np.asarray(zp).dtype == np.uint8:
        zb = np.asarray(zp).reshape(N, -1)
        z = np.stack([zb & 15, zb >> 4], -1).reshape(N, -1)[:, :kb].astype(F32)
    else:
        z = np.asarray(zp, F32).reshape(N, kb)
    s = np.asarray(scales, F32).reshape(N, kb)
    w = ((q - np.repeat(z, block, 1)).astype(F32) * np.repeat(s, block, 1)).astype(F32)
    return w[:, :K]


@reference("MatMulNBits", MS)
def _matmulnbits_ref(node, a, b, scales, zp=None, g_idx=None, bias=None):
    """float64 sum of the products of the (accuracy 4: per-block int8-quantized, as MLAS) A and
    the dequantized weights, rounded to float32: within the kernels' documented tolerance of
    onnxruntime (fp32 sums in another order), not bit-equal to it."""
    if int(attr(node, "bits")) != 4 or g_idx is not None or np.asarray(a).dtype != np.float32:
        return NotImplemented
    K, N, block, kb = nbits_geometry(node)
    a = np.asarray(a, F32)
    a2 = a.reshape(-1, K)
    if nbits_int8_compute(node):
        from ..kernels.qnbits import quantize_a_blocks
        qa, sa, _ = quantize_a_blocks(a2, block)
        a64 = (qa.reshape(-1, kb, block).astype(np.float64) * sa[:, :, None]).reshape(len(a2), -1)[:, :K]
    else:
        a64 = a2.astype(np.float64)
    y = a64 @ nbits_dequantize(node, b, scales, zp).astype(np.float64).T
    if bias is not None:
        y = y + np.asarray(bias, np.float64)
    return [y.astype(F32).reshape(a.shape[:-1] + (N,))]
