"""Narrow types through the C path: float16, bfloat16, float8, float4, int4/uint4, int2/uint2.

* Cast between every pair of supported types, on special values (NaN, +-inf, +-0, subnormals,
  rounding ties, out of range), bit for bit against the onnx reference (ml_dtypes) and against
  onnxruntime where it implements the pair; for the 16-bit types also exhaustively, with and
  without F16C (target "generic" builds the portable conversions).  A cast rounds once from the
  source value: from float64 and wide integers the expected value is computed from a float32
  rounded to odd, whatever the installed ml_dtypes does.  Elements whose result the spec leaves
  undefined (a float out of an integer type's range, a negative value to E8M0) are not compared;
* other ops on float16 run through float32 (passes/legalize_half.py) and are compared with
  onnxruntime; on bfloat16, which onnxruntime's CPU provider mostly lacks, with the reference.
"""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from conformance.undefined import cast_defined
from helpers import make_model, ort_run

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # special values overflow on purpose

F16, BF16 = np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)
F8 = [np.dtype(getattr(ml_dtypes, n)) for n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")]
E8M0, F4 = np.dtype(ml_dtypes.float8_e8m0fnu), np.dtype(ml_dtypes.float4_e2m1fn)
SMALL_INTS = [np.dtype(getattr(ml_dtypes, n)) for n in ("int4", "uint4", "int2", "uint2")]
STANDARD = [np.dtype(t) for t in (np.float32, np.float64, np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.uint32, np.int64, np.uint64, np.bool_)]
NARROW = [F16, BF16] + F8 + [E8M0, F4] + SMALL_INTS
ALL = STANDARD + NARROW
FLOATS = {np.dtype(np.float32), np.dtype(np.float64), F16, BF16, E8M0, F4, *F8}
WIDE_SOURCES = {np.dtype(t) for t in (np.float64, np.int32, np.uint32, np.int64, np.uint64)}


def onnx_type(dt):
    return helper.np_dtype_to_tensor_dtype(np.dtype(dt))


def compile_c(model, out_dir, **options):
    """Compile with onnxc and make sure every node runs in C (no fallback partition)."""
    import onnxc
    cm = onnxc.compile(model, output_dir=out_dir, **options)
    assert not cm.report.get("fallback_nodes"), cm.report.get("fallback_nodes")
    return cm


def bits(a):
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}") if a.dtype != np.bool_ else a.view(np.uint8)


def is_nan(a):
    return np.isnan(a.astype(np.float64)) if np.dtype(a.dtype) in FLOATS else np.zeros(a.shape, bool)


def assert_same(got, want, valid=None, what=""):
    """Equal bits; NaN matches any NaN; elements where ``valid`` is False (results the spec leaves
    undefined) are neither right nor wrong: not compared."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    ok = (bits(got) == bits(want)) | (is_nan(got) & is_nan(want))
    if valid is not None:
        ok |= ~valid
        what += f" ({np.sum(~valid)} undefined elements not compared)"
    bad = np.flatnonzero(~ok)
    assert bad.size == 0, (f"{what}: {bad.size} differ, e.g. at {bad[:5]}: got {got.reshape(-1)[bad[:5]]} "
                           f"want {want.reshape(-1)[bad[:5]]}")


def assert_ulps(got, want, ulps, ulp):
    """Within ``ulps`` units of ``ulp`` (per element); infinities and NaN must match exactly."""
    g, w = got.astype(np.float32), want.astype(np.float32)
    with np.errstate(invalid="ignore"):
        ok = (bits(got) == bits(want)) | (is_nan(got) & is_nan(want)) | (np.abs(g - w) <= ulps * ulp)
    assert np.all(ok), f"{np.sum(~ok)} beyond {ulps} ulps: got {g[~ok][:5]} want {w[~ok][:5]}"


# --- Cast matrix -----------------------------------------------------------------------------------
def special_values():
    """float64 values that probe every format: ties, the edges of each range, subnormals."""
    v = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 2.5, -2.5, 3.5, 0.25, 0.75, 5.0, 7.0, -8.0, 9.0, 15.0, 16.0, 100.0,
         -100.0, 127.0, 128.0, 255.0, 256.0, -129.0, 1000.0, 32767.0, 65504.0, 65519.0, 65520.0, 65536.0,
         1e5, -1e5, 448.0, 464.0, 465.0, 480.0, 240.0, 248.0, 57344.0, 61440.0, 61441.0, 6.0, 6.5, 7.5,
         2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0001, 3 * 2.0 ** -26, 2.0 ** -14, 2.0 ** -15, 2.0 ** -9, 2.0 ** -10,
         2.0 ** -17, 2.0 ** -18, 2.0 ** -126, 2.0 ** -127, 2.0 ** -133, 2.0 ** -134, 1e-40, 1e-7, -1e-7,
         3.4e38, 3.3895e38, 1e300, -1e300, 2.0 ** 31, 2.0 ** 31 + 5, -(2.0 ** 31) - 3, 2.0 ** 53 + 1,
         np.nan, -np.nan, np.inf, -np.inf, 0.1, 1 / 3, np.pi,
         # rounded to nearest float32 first, these land on a tie (bfloat16) or on a power of two (E8M0)
         2.0 ** 24 + 2.0 ** 16 + 1, -(2.0 ** 24 + 2.0 ** 16 + 1), 1 + 2.0 ** -40, 2.0 ** 31 + 5]
    # ties and near-ties of float16 and bfloat16 around 1 and in the subnormals
    for ulp in (2.0 ** -10, 2.0 ** -7, 2.0 ** -3, 2.0 ** -2):
        for k in (0.5, 1.5, 2.5):
            v += [1 + k * ulp, -(1 + k * ulp), 1 + k * ulp * (1 + 2 ** -20), 1 + k * ulp * (1 - 2 ** -20)]
    v += [k * 2.0 ** -25 for k in range(1, 8)] + [k * 2.0 ** -134 for k in range(1, 6)]
    rng = np.random.default_rng(0)
    v += list(rng.standard_normal(64) * 10.0 ** rng.integers(-6, 6, 64))
    return np.array(v, np.float64)


def values_of(dt):
    """Every value of a narrow type, or the special values (and integer extremes) in ``dt``."""
    dt = np.dtype(dt)
    if dt in NARROW and dt.itemsize == 1:
        n = 4 if dt.name.endswith("2") else 16 if dt.name.endswith("4") or dt == F4 else 256
        return np.arange(n, dtype=np.uint8).view(dt)
    if dt in (F16, BF16):
        return np.arange(65536, dtype=np.uint16).view(dt)
    x = special_values()
    if dt == np.bool_:
        return np.array([True, False, True], np.bool_)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        ints = [0, 1, -1, 2, 7, 8, -8, -9, 15, 16, 100, -100, 127, 128, 255, 256, 1000, 65504, 65520, 70000,
                2 ** 24 + 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 53 + 1, 2 ** 62 + 2 ** 40 + 1, info.max, info.min,
                # double rounding through float32 would land on a bfloat16 tie
                2 ** 24 + 2 ** 16 + 1, -(2 ** 24 + 2 ** 16 + 1), 2 ** 62 + 2 ** 54 + 1, 2 ** 63 + 2 ** 55 + 1]
        return np.array([i for i in ints if info.min <= i <= info.max], dt)
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dt)


# formats with at most 22 mantissa bits that ml_dtypes (or the reference's E8M0 code) rounds to
ROUNDED_FROM_FLOAT32 = {BF16, E8M0, F4, *F8}


def float32_rounded_to_odd(x):
    """float32 values from which one more rounding to a format of at most 22 mantissa bits rounds
    ``x`` (float64 or integers) once: truncated toward zero, the last bit set when inexact.  Some
    ml_dtypes releases round float64 to nearest float32 first, and the reference's E8M0 always
    does: both round twice, which the spec's "rounded to the target mantissa width" is not."""
    if x.dtype.kind in "iu":
        out = []
        for v in x.tolist():
            m, shift, sticky = abs(v), 0, 0
            while m >= 1 << 24:
                sticky |= m & 1
                m, shift = m >> 1, shift + 1
            out.append((m | sticky) * 2.0 ** shift * (-1 if v < 0 else 1))
        return np.array(out, np.float32)
    x = x.astype(np.float64)
    with np.errstate(all="ignore"):
        f = x.astype(np.float32)
    inexact = np.isfinite(x) & (f.astype(np.float64) != x)
    away = inexact & (np.abs(f.astype(np.float64)) > np.abs(x))  # inf for x beyond FLT_MAX: steps back
    f[away] = np.nextafter(f[away], np.float32(0))
    f.view(np.uint32)[inexact] |= 1
    return f


def reference_cast(x, dst, saturate=1, round_mode="up"):
    """onnx.reference's Cast; pairs ml_dtypes cannot convert directly go through int64 (from an
    integer: only the low bits matter) or float32 (from a float: exact); from float64 and integers
    wider than float32's significand to the <= 8-bit-significand floats, through a float32
    rounded to odd (one rounding, see float32_rounded_to_odd)."""
    from onnx.reference.ops.op_cast import cast_to
    if np.dtype(dst) in ROUNDED_FROM_FLOAT32 and np.dtype(x.dtype) in WIDE_SOURCES:
        x = float32_rounded_to_odd(x)
    with np.errstate(all="ignore"):
        try:
            return cast_to(x, onnx_type(dst), bool(saturate), round_mode)
        except TypeError:
            wide = np.float32 if np.dtype(x.dtype) in FLOATS else np.int64
            return cast_to(x.astype(wide), onnx_type(dst), bool(saturate), round_mode)


def defined(x, dst, what):
    """(mask of the elements whose cast to ``dst`` the spec defines, or None: all; ``what`` with the
    reason for the others).  Undefined, so neither answer is right: a float out of a fixed-point
    type's range (int4/int2 included), a negative value to E8M0 (conformance/undefined.py, shared
    with the conformance runner)."""
    valid, why = cast_defined(x, dst)
    if valid is None or valid.all():
        return None, what
    assert valid.any(), f"{what}: nothing left to compare"
    return valid, f"{what} [undefined: {why}]"


def cast_model(src, dsts, n, **attrs):
    nodes = [helper.make_node("Cast", ["x"], [f"y{i}"], to=onnx_type(d), **attrs) for i, d in enumerate(dsts)]
    return make_model(nodes, [("x", src, [n])], [(f"y{i}", d, [n]) for i, d in enumerate(dsts)],
                      opset=24 if "round_mode" in attrs else 23)


@pytest.mark.parametrize("src", ALL, ids=lambda d: np.dtype(d).name)
def test_cast_matrix(src, tmp_path):
    x = values_of(src)
    dsts = [d for d in ALL if d != src]
    got = compile_c(cast_model(src, dsts, x.size), tmp_path / "o").run(None, {"x": x})
    for d, y in zip(dsts, got):
        assert_same(y, reference_cast(x, d), *defined(x, d, f"{np.dtype(src).name} -> {d.name}"))


def test_narrow_float_to_int_out_of_range_as_float32(tmp_path):
    """NaN, infinities and out-of-range values of the narrow floats convert to integers exactly as
    the same float32 values do (defined, no C undefined behaviour)."""
    ints = [np.dtype(t) for t in (np.int8, np.uint8, np.int32, np.uint32, np.int64, np.uint64)]
    f = np.array([np.nan, -np.nan, np.inf, -np.inf, 60000.0, -300.0, 448.0, 2.0 ** 40, -(2.0 ** 70)], np.float32)
    for src in (F16, BF16, F8[0], F8[2]):
        x = f.astype(src)
        wide = x.astype(np.float32)
        got = compile_c(cast_model(src, ints, x.size), tmp_path / src.name).run(None, {"x": x})
        want = compile_c(cast_model(np.float32, ints, x.size), tmp_path / f"{src.name}32").run(None, {"x": wide})
        for d, g, w in zip(ints, got, want):
            assert_same(g, w, None, f"{src.name} -> {d.name}")


@pytest.mark.parametrize("src", [np.float32, np.float64, F16, BF16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_float8_saturate(src, saturate, tmp_path):
    x = values_of(src) if np.dtype(src).itemsize != 2 else special_values().astype(src)
    got = compile_c(cast_model(src, F8, x.size, saturate=saturate), tmp_path / "o").run(None, {"x": x})
    for d, y in zip(F8, got):
        assert_same(y, reference_cast(x, d, saturate), None, f"{np.dtype(src).name} -> {d.name}")


@pytest.mark.parametrize("src", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_e8m0(round_mode, saturate, src, tmp_path):
    """From float64 the rounding looks at the float64 value (1 + 2^-40 rounds up to 2, 1.5 +
    2^-40 to nearest 2), not at its float32 neighbour."""
    x = np.concatenate([np.abs(special_values()), 2.0 ** np.arange(-140, 129)]).astype(src)
    x = np.concatenate([x, np.array([1.5, 1.25, 1.75, 3.0, 2 ** 127 * 1.5, 2 ** 127 * 1.9], src)])
    if src == np.float64:
        x = np.concatenate([x, [1 + 2.0 ** -40, 1.5 - 2.0 ** -40, 1.5 + 2.0 ** -40, 2.0 ** -130 * (1 + 2.0 ** -30)]])
    model = cast_model(src, [E8M0], x.size, saturate=saturate, round_mode=round_mode)
    y = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    assert_same(y, reference_cast(x, E8M0, saturate, round_mode), None, round_mode)


@pytest.mark.parametrize("target", ["native", "generic"])
def test_float16_conversions_exhaustive(target, tmp_path):
    """Every float16 -> float32, and float32 -> float16 on every float16 value, the midpoints
    between neighbours (ties to even) and the floats just beside them; both with F16C (native
    on x86) and with the portable code (generic)."""
    h = np.arange(65536, dtype=np.uint16).view(np.float16)
    f = h.astype(np.float32)
    finite = np.sort(f[np.isfinite(f)])
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    x = np.concatenate([f, mids, np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf),
                        np.array([65519.99, 65520.0, 1e-45, -1e-45, 3e38], np.float32)])
    model = make_model([helper.make_node("Cast", ["h"], ["f"], to=onnx.TensorProto.FLOAT),
                        helper.make_node("Cast", ["x"], ["y"], to=onnx.TensorProto.FLOAT16),
                        helper.make_node("Cast", ["x"], ["b"], to=onnx.TensorProto.BFLOAT16)],
                       [("h", F16, [h.size]), ("x", np.float32, [x.size])],
                       [("f", np.float32, [h.size]), ("y", F16, [x.size]), ("b", BF16, [x.size])], opset=21)
    got_f, got_y, got_b = compile_c(model, tmp_path / "o", target=target).run(None, {"h": h, "x": x})
    assert_same(got_f, f, None, "float16 -> float32")
    assert_same(got_y, x.astype(np.float16), None, "float32 -> float16")
    assert_same(got_b, x.astype(BF16), None, "float32 -> bfloat16")


# types numpy can hand to onnxruntime and get back
ORT_TYPES = [np.dtype(t) for t in (np.float32, np.float64, np.float16, np.int8, np.uint8, np.int16, np.uint16,
                                   np.int32, np.uint32, np.int64, np.uint64, np.bool_)]


@pytest.mark.parametrize("src", ORT_TYPES, ids=lambda d: np.dtype(d).name)
def test_cast_against_onnxruntime(src, tmp_path):
    """The same casts through onnxruntime.  It rounds float64 -> float16 through float32 (twice),
    where numpy, the reference, rounds once: near-ties of that pair are left out."""
    x = values_of(src) if np.dtype(src) != F16 else special_values().astype(src)
    dsts = [d for d in ORT_TYPES if d != np.dtype(src)]
    got = compile_c(cast_model(src, dsts, x.size), tmp_path / "o").run(None, {"x": x})
    want = ort_run(cast_model(src, dsts, x.size), {"x": x})
    for d, y, w in zip(dsts, got, want):
        valid, what = defined(x, d, f"{np.dtype(src).name} -> {d.name}")
        if np.dtype(src) == np.float64 and d == F16:
            valid = (x.astype(np.float32).astype(np.float64) == x) | np.isnan(x)
        assert_same(y, w, valid, what)


def test_cast_round_trips_are_kept_or_dropped(tmp_path):
    """Cast(float32 -> float16 -> float32) rounds and stays; float16 -> float32 -> float16 is exact."""
    x = np.array([1 + 2 ** -12, 0.1, 70000.0, 1e-6, np.nan], np.float32)
    model = make_model([helper.make_node("Cast", ["x"], ["h"], to=onnx.TensorProto.FLOAT16),
                        helper.make_node("Cast", ["h"], ["y"], to=onnx.TensorProto.FLOAT),
                        helper.make_node("Cast", ["y"], ["h2"], to=onnx.TensorProto.FLOAT16),
                        helper.make_node("Neg", ["h2"], ["z"])],
                       [("x", np.float32, [5])], [("y", np.float32, [5]), ("z", F16, [5])])
    cm = compile_c(model, tmp_path / "o")
    y, z = cm.run(None, {"x": x})
    assert_same(y, x.astype(np.float16).astype(np.float32))
    assert_same(z, -x.astype(np.float16))
    assert cm.report["op_counts"]["Cast"] == 4  # x->h, h->y; Neg: widen h2 (=h), round the result


# --- ops on float16 against onnxruntime ------------------------------------------------------------
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _reseed():
    """The same data whichever tests run."""
    global RNG
    RNG = np.random.default_rng(0)


def rand(shape, dt=F16, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(dt)


def check_f16(nodes, inputs, outputs, feed, tmp_path, inits=None, opset=18, ulps=0):
    """onnxc (C only) against onnxruntime; ``ulps``: allowed float16 ulps (0: identical bits)."""
    model = make_model(nodes, inputs, outputs, initializers=inits, opset=opset)
    got = compile_c(model, tmp_path / "o").run(None, feed)
    want = ort_run(model, feed)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        if ulps == 0 or g.dtype != F16:
            assert_same(g, w)
        else:
            assert_ulps(g, w, ulps, np.spacing(np.abs(w.astype(np.float32)).astype(np.float16)).astype(np.float32))
    return got


UNARY = ["Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Exp", "Sqrt", "Log", "Sin", "Cos", "Erf", "Floor", "Ceil",
         "Round", "Reciprocal", "Softplus", "Sign", "Elu", "LeakyRelu", "HardSigmoid", "IsNaN", "IsInf"]


@pytest.mark.parametrize("op", UNARY)
def test_unary_float16(op, tmp_path):
    x = rand((3, 4, 5), scale=3)
    # NaN: onnxruntime's Sign gives 0 and the float32 HardSigmoid kernel 1 (fmin/fmax drop NaN)
    x.reshape(-1)[:4] = [np.inf, -np.inf, -0.0, np.nan if op not in ("Sign", "HardSigmoid") else 0.5]
    if op in ("Sqrt", "Log"):
        x = np.abs(x)
    out = np.bool_ if op in ("IsNaN", "IsInf") else F16
    nodes, io = [helper.make_node(op, ["x"], ["y"])], ([("x", F16, [3, 4, 5])], [("y", out, [3, 4, 5])])
    if op == "IsInf":  # onnxruntime has no float16 IsInf
        check_reference(nodes, *io, {"x": x}, tmp_path)
        return
    # libm and onnxruntime's vectorized exp/tanh/erf may differ by a float32 ulp: one float16 ulp
    ulps = 0 if op in ("Abs", "Neg", "Relu", "Floor", "Ceil", "Round", "Sign", "Sqrt", "Reciprocal",
                       "IsNaN") else 1
    check_f16(nodes, *io, {"x": x}, tmp_path, ulps=ulps)


MORE_UNARY = ["Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "Cosh", "Sinh", "Tan", "Gelu", "HardSwish", "Mish",
              "Selu", "Shrink", "Softsign", "ThresholdedRelu", "LogSoftmax", "Hardmax"]


@pytest.mark.parametrize("op", MORE_UNARY)
def test_more_unary_float16(op, tmp_path):
    x = np.tanh(rand((3, 4, 5), np.float32, 2)) * 0.99
    if op == "Acosh":
        x = np.abs(x) * 4 + 1
    elif op not in ("Acos", "Asin", "Atanh"):
        x = x * 3
    check_f16([helper.make_node(op, ["x"], ["y"])], [("x", F16, [3, 4, 5])], [("y", F16, [3, 4, 5])],
              {"x": x.astype(F16)}, tmp_path, opset=20, ulps=1)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Less", "GreaterOrEqual"])
def test_binary_float16_broadcast(op, tmp_path):
    a, b = rand((2, 3, 4), scale=100), rand((3, 1), scale=100)
    out = np.bool_ if op in ("Equal", "Less", "GreaterOrEqual") else F16
    check_f16([helper.make_node(op, ["a", "b"], ["y"])], [("a", F16, [2, 3, 4]), ("b", F16, [3, 1])],
              [("y", out, [2, 3, 4])], {"a": a, "b": b}, tmp_path)


def test_more_binary_and_variadic_float16(tmp_path):
    a, b, c = rand((2, 3, 4), scale=3), rand((3, 4), scale=3), rand((4,))
    nodes = [helper.make_node("PRelu", ["a", "c"], ["prelu"]), helper.make_node("Abs", ["a"], ["abs"]),
             helper.make_node("Pow", ["abs", "c"], ["pow"]), helper.make_node("LessOrEqual", ["a", "b"], ["le"]),
             helper.make_node("Mod", ["a", "b"], ["mod"], fmod=1), helper.make_node("Sum", ["a", "b", "c"], ["sum"]),
             helper.make_node("Mean", ["a", "b", "c"], ["mean"])]
    outs = [(n, F16 if n != "le" else np.bool_, [2, 3, 4]) for n in ("prelu", "pow", "le", "mod", "sum", "mean")]
    check_f16(nodes, [("a", F16, [2, 3, 4]), ("b", F16, [3, 4]), ("c", F16, [4])], outs,
              {"a": a, "b": b, "c": c}, tmp_path, ulps=1)


def test_elementwise_chain_with_constants(tmp_path):
    """Consecutive float16 ops, a float16 constant, Where and Clip with float16 scalars: each op
    rounds its result (the reference, bit for bit); onnxruntime rounds x*w + x once, so it agrees
    within an ulp of the terms (the sum itself may cancel)."""
    x = rand((4, 8), scale=4)
    nodes = [helper.make_node("Mul", ["x", "w"], ["t0"]), helper.make_node("Add", ["t0", "x"], ["t1"]),
             helper.make_node("Clip", ["t1", "lo", "hi"], ["t2"]),
             helper.make_node("Greater", ["t2", "zero"], ["c"]),
             helper.make_node("Where", ["c", "t2", "half"], ["y"])]
    inits = {"w": rand((8,)), "lo": np.array(-3.5, F16), "hi": np.array(2.75, F16),
             "zero": np.array(0, F16), "half": np.array(0.5, F16)}
    io = [("x", F16, [4, 8])], [("y", F16, [4, 8])]
    got = check_reference(nodes, *io, {"x": x}, tmp_path, inits=inits, opset=13)[0]
    want = ort_run(make_model(nodes, *io, initializers=inits, opset=13), {"x": x})[0]
    xf = x.astype(np.float32)
    terms = np.abs(xf * inits["w"].astype(np.float32)) + np.abs(xf)
    assert np.all(np.abs(got.astype(np.float32) - want.astype(np.float32)) <= terms * 2.0 ** -10)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "ReduceL1", "ReduceMin",
                                "ReduceProd", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"])
def test_reduce_float16(op, tmp_path):
    x = rand((3, 5, 6))
    if op == "ReduceLogSum":
        x = np.abs(x)
    check_f16([helper.make_node(op, ["x", "axes"], ["y"], keepdims=1)], [("x", F16, [3, 5, 6])],
              [("y", F16, [3, 1, 6])], {"x": x}, tmp_path, inits={"axes": np.array([1], np.int64)}, ulps=1)


def test_argmax_float16(tmp_path):
    x = rand((2, 3, 7), scale=3)
    check_f16([helper.make_node("ArgMax", ["x"], ["i"], axis=2), helper.make_node("ArgMin", ["x"], ["j"], axis=0)],
              [("x", F16, [2, 3, 7])], [("i", np.int64, [2, 3, 1]), ("j", np.int64, [1, 3, 7])], {"x": x}, tmp_path)


def test_matmul_gemm_float16(tmp_path):
    a, w, c = rand((2, 5, 16)), rand((16, 8)), rand((8,))
    check_f16([helper.make_node("MatMul", ["a", "w"], ["y"])], [("a", F16, [2, 5, 16])], [("y", F16, [2, 5, 8])],
              {"a": a}, tmp_path, inits={"w": w}, ulps=1)
    check_f16([helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=1, alpha=0.5)], [("a", F16, [5, 16])],
              [("y", F16, [5, 8])], {"a": rand((5, 16))}, tmp_path / "g", inits={"w": rand((8, 16)), "c": c},
              ulps=1)


def test_conv_pool_float16(tmp_path):
    x, w, b = rand((1, 3, 9, 9)), rand((4, 3, 3, 3), scale=0.3), rand((4,))
    check_f16([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["c"], ["r"]),
               helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
               helper.make_node("GlobalAveragePool", ["p"], ["y"])],
              [("x", F16, [1, 3, 9, 9])], [("p", F16, [1, 4, 4, 4]), ("y", F16, [1, 4, 1, 1])], {"x": x}, tmp_path,
              inits={"w": w, "b": b}, ulps=1)


def test_norm_pool_float16(tmp_path):
    x = rand((2, 3, 6, 6))
    stats = {"s": rand((3,)), "b": rand((3,)), "m": rand((3,)), "v": np.abs(rand((3,))) + 0.5}
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
             helper.make_node("AveragePool", ["x"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("LRN", ["x"], ["lrn"], size=3),
             helper.make_node("GlobalMaxPool", ["x"], ["gmp"])]
    outs = [(n, F16, [2, 3, 6, 6]) for n in ("bn", "ap", "lrn")] + [("gmp", F16, [2, 3, 1, 1])]
    check_f16(nodes, [("x", F16, [2, 3, 6, 6])], outs, {"x": x}, tmp_path, inits=stats, ulps=1)


def test_indexing_float16(tmp_path):
    """TopK, GatherND, ScatterND, ScatterElements, OneHot, EyeLike: exact selections."""
    x = rand((4, 6))
    nodes = [helper.make_node("TopK", ["x", "k"], ["tv", "ti"], axis=1),
             helper.make_node("GatherND", ["x", "gi"], ["gnd"]),
             helper.make_node("ScatterND", ["x", "si", "su"], ["snd"]),
             helper.make_node("ScatterElements", ["x", "ei", "eu"], ["sel"], axis=1),
             helper.make_node("OneHot", ["oi", "depth", "ov"], ["oh"]),
             helper.make_node("EyeLike", ["x"], ["eye"], k=1)]
    inits = {"k": np.array([3], np.int64), "gi": np.array([[0, 1], [3, 5]], np.int64),
             "si": np.array([[1], [2]], np.int64), "su": rand((2, 6)),
             "ei": np.array([[0, 5], [1, 1], [2, 3], [4, 0]], np.int64), "eu": rand((4, 2)),
             "depth": np.array(3, np.int64), "ov": rand((2,))}
    outs = [("tv", F16, [4, 3]), ("ti", np.int64, [4, 3]), ("gnd", F16, [2]), ("snd", F16, [4, 6]),
            ("sel", F16, [4, 6]), ("oh", F16, [3, 3]), ("eye", F16, [4, 6])]
    # the OneHot indices are an input: constant folding would use the reference's arithmetic formula
    check_f16(nodes, [("x", F16, [4, 6]), ("oi", np.int64, [3])], outs,
              {"x": x, "oi": np.array([0, 2, 1], np.int64)}, tmp_path, inits=inits)


def test_layernorm_float16(tmp_path):
    x = rand((2, 4, 16))
    check_f16([helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], axis=-1)], [("x", F16, [2, 4, 16])],
              [("y", F16, [2, 4, 16])], {"x": x}, tmp_path, inits={"s": rand((16,)), "b": rand((16,))}, ulps=2)


def test_attention_float16(tmp_path):
    """Attention on float16 computes in float32 and rounds once: the float64 result rounded, where
    onnxruntime (float16 steps) is ~15 ulps off and the reference ~37.  On bfloat16 its twin is
    refused (test_attention_bfloat16_runs_its_function_body)."""
    feed = {"q": rand((2, 3, 4, 8)), "k": rand((2, 3, 6, 8)), "v": rand((2, 3, 6, 8))}
    node = helper.make_node("Attention", ["q", "k", "v"], ["y"], is_causal=1)

    def model(dt):
        return make_model([node], [(n, dt, list(a.shape)) for n, a in feed.items()], [("y", dt, [2, 3, 4, 8])],
                          opset=23)
    got = compile_c(model(F16), tmp_path / "o").run(None, feed)[0]
    exact = ReferenceEvaluator(model(np.float64)).run(None, {n: a.astype(np.float64) for n, a in feed.items()})[0]
    assert_ulps(got, exact.astype(F16), 1, np.spacing(np.abs(exact).astype(F16)).astype(np.float32))
    want = ort_run(model(F16), feed)[0]
    assert_ulps(got, want, 32, np.spacing(np.abs(want)).astype(np.float32))
    from onnxc.ir import Node, Value
    from onnxc.providers.c.registry import narrow_reason
    bf = Node("Attention", [Value(n, BF16, a.shape) for n, a in feed.items()], [Value("y", BF16, (2, 3, 4, 8))],
              {"is_causal": 1}, opset=23)
    assert "not verified" in narrow_reason(bf)


@pytest.mark.parametrize("config", ["causal", "mask+gqa", "3d+softcap", "past+nonpad"])
def test_attention_bfloat16_runs_its_function_body(config, tmp_path):
    """Attention on bfloat16 runs as its ONNX function body (frontend/expand.py), each step
    rounded to bfloat16 as the body's types say (its float32 twin, rounded once, is ~1 ulp off on
    a quarter of the official cases' elements): identical bits to onnx.reference running that
    body (but where the order of a float32 matmul sum moved a rounding: none in these draws),
    and to the reference's Attention, except with softcap, where the reference divides by the
    attribute as a numpy float32 and so computes the rest in float32, against the body."""
    attrs, feed = {}, {}
    if config.startswith("3d"):
        feed = {"q": rand((2, 4, 24), BF16), "k": rand((2, 6, 24), BF16), "v": rand((2, 6, 24), BF16)}
        attrs = dict(q_num_heads=3, kv_num_heads=3, softcap=2.0)
    else:
        hk = 1 if "gqa" in config else 3
        feed = {"q": rand((2, 3, 4, 8), BF16), "k": rand((2, hk, 6, 8), BF16), "v": rand((2, hk, 6, 8), BF16)}
    names = ["q", "k", "v"]
    if config == "causal":
        attrs["is_causal"] = 1
    if "mask" in config:
        feed["mask"] = RNG.random((4, 6)) < 0.7
        names.append("mask")
    if "past" in config:
        feed["mask"] = rand((4, 6), BF16)
        feed["pk"], feed["pv"] = rand((2, 3, 2, 8), BF16), rand((2, 3, 2, 8), BF16)
        names += ["mask", "pk", "pv"]
        feed["mask"] = rand((4, 8), BF16)
    outs = ["y"] + (["pko", "pvo"] if "past" in config else [])
    node = helper.make_node("Attention", names, outs, **attrs)
    model = make_model([node], [(n, feed[n].dtype, list(feed[n].shape)) for n in names],
                       [(o, BF16, None) for o in outs], opset=23)
    cm = compile_c(model, tmp_path / "o")
    assert "Attention" not in cm.report["op_counts"]
    f = {n: feed[n] for n in names}
    got = cm.run(None, f)
    from onnx.backend.test.case.node import function_expand_helper
    body = onnx.FunctionProto()
    body.ParseFromString(onnx.defs.get_schema("Attention", 23).get_context_dependent_function(
        node.SerializeToString(), [i.type.SerializeToString() for i in model.graph.input]))
    expanded = onnx.ModelProto()
    expanded.CopyFrom(model)
    del expanded.graph.node[:]
    expanded.graph.node.extend(function_expand_helper(node, body, "body_"))
    for g, w in zip(got, ReferenceEvaluator(expanded).run(None, f)):
        assert_same(g, np.asarray(w))
    if "softcap" not in config:
        for g, w in zip(got, ReferenceEvaluator(model).run(None, f)):
            assert_same(g, np.asarray(w))


def _narrow_vs_exact(node, feed, outputs, opset, dt, tmp_path, exact_dt=np.float64):
    """(onnxc C result, onnx reference on ``dt``, the reference on ``exact_dt`` rounded to ``dt``)."""
    def model(t):
        return make_model([node], [(n, t, list(a.shape)) for n, a in feed.items()], [(o, t, s) for o, s in outputs],
                          opset=opset)
    f = {n: a.astype(dt) for n, a in feed.items()}
    got = compile_c(model(dt), tmp_path / dt.name).run(None, f)
    ref = ReferenceEvaluator(model(dt)).run(None, f)
    exact = ReferenceEvaluator(model(np.dtype(exact_dt))).run(None, {n: a.astype(exact_dt) for n, a in f.items()})
    return got, [np.asarray(r) for r in ref], [np.asarray(e).astype(dt) for e in exact]


def _spacing16(a):
    return np.spacing(np.abs(a).astype(F16)).astype(np.float32)


def test_swiglu_float16(tmp_path):
    """SwiGLU on float16 computes in float32 and rounds once: the exact result, rounded (within an
    ulp). The reference rounds the sigmoid, the -alpha*A it exponentiates and both products to
    float16: ours is within that rounding of it (4 roundings, and the sigmoid's sensitivity to its
    rounded argument). Refused on bfloat16, where those roundings exceed a case's rtol."""
    alpha = 1.5
    feed = {"a": RNG.standard_normal((64, 33)) * 3, "b": RNG.standard_normal((64, 33)) * 3}
    node = helper.make_node("SwiGLU", ["a", "b"], ["y"], alpha=alpha)
    (got,), (ref,), (exact,) = _narrow_vs_exact(node, feed, [("y", [64, 33])], 28, F16, tmp_path)
    assert_ulps(got, exact, 1, _spacing16(exact))
    a = feed["a"].astype(F16).astype(np.float64)
    b = feed["b"].astype(F16).astype(np.float64)
    bound = (6 + np.abs(alpha * a)) * 2.0 ** -11 * np.abs(exact.astype(np.float64)) + np.abs(a * b) / 65504 + 2.0 ** -24
    assert np.all(np.abs(got.astype(np.float64) - ref.astype(np.float64)) <= bound)
    from onnxc.ir import Node, Value
    from onnxc.providers.c.registry import narrow_reason
    bf = Node("SwiGLU", [Value(n, BF16, (64, 33)) for n in feed], [Value("y", BF16, (64, 33))], {}, opset=28)
    assert "not verified" in narrow_reason(bf)


@pytest.mark.parametrize("act", ["none", "silu"])
def test_causal_conv_with_state_float16(act, tmp_path):
    """CausalConvWithState on float16 sums in float and rounds once (the exact result rounded).
    The reference convolves in float16 arithmetic: within its rounding of each of the k products,
    the k - 1 sums and the bias (relative to the sum of the terms' magnitudes), and after SiLU one
    more rounding. The state output is a copy: identical bits."""
    feed = {"x": RNG.standard_normal((3, 16, 40)), "w": RNG.standard_normal((16, 1, 4)),
            "bias": RNG.standard_normal(16), "ps": RNG.standard_normal((3, 16, 3))}
    node = helper.make_node("CausalConvWithState", list(feed), ["y", "st"], activation=act)
    outs = [("y", [3, 16, 40]), ("st", [3, 16, 3])]
    (y, st), (ry, rst), (ey, est) = _narrow_vs_exact(node, feed, outs, 27, F16, tmp_path)
    assert_ulps(y, ey, 1, _spacing16(ey))
    assert_same(st, rst)
    assert_same(st, est)
    mags = {n: np.abs(a.astype(F16).astype(np.float64)) for n, a in feed.items()}
    plain = helper.make_node("CausalConvWithState", list(feed), ["y", "st"])
    terms = ReferenceEvaluator(make_model([plain], [(n, np.float64, list(a.shape)) for n, a in mags.items()],
                                          [(o, np.float64, s) for o, s in outs], opset=27)).run(None, mags)[0]
    bound = (4 + 2) * 2.0 ** -11 * terms + 2.0 ** -24  # k=4 products and sums, the bias, the silu
    assert np.all(np.abs(y.astype(np.float64) - ry.astype(np.float64)) <= bound)


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
def test_linear_attention_narrow(dt, tmp_path):
    """LinearAttention's reference widens to float32 and rounds the outputs once, as its twin does:
    within an ulp on either type (the order of the float32 sums may differ)."""
    feed = {"q": RNG.standard_normal((2, 5, 32)), "k": RNG.standard_normal((2, 5, 16)) * 0.5,
            "v": RNG.standard_normal((2, 5, 16)), "st": RNG.standard_normal((2, 2, 8, 8)) * 0.3,
            "dec": -np.abs(RNG.standard_normal((2, 5, 2))), "beta": RNG.uniform(0, 1, (2, 5, 2))}
    node = helper.make_node("LinearAttention", list(feed), ["y", "ps"], q_num_heads=4, kv_num_heads=2)
    got, ref, _ = _narrow_vs_exact(node, feed, [("y", [2, 5, 32]), ("ps", [2, 2, 8, 8])], 27, dt, tmp_path,
                                   exact_dt=np.float32)
    rel = 2.0 ** -7 if dt == BF16 else 2.0 ** -10
    for g, r in zip(got, ref):
        assert_ulps(g, r, 1, np.abs(r.astype(np.float32)) * rel + 1e-30)


def test_data_movement_float16_moves_bits(tmp_path):
    """Reshape/Transpose/Slice/Concat/Gather/Pad/Expand copy the 16-bit storage: no casts."""
    x = rand((2, 3, 4))
    x.reshape(-1)[:3] = [np.nan, -0.0, np.inf]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[2, 0, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["r"]),
             helper.make_node("Slice", ["r", "st", "en"], ["s"]),
             helper.make_node("Concat", ["s", "s"], ["c"], axis=0),
             helper.make_node("Gather", ["c", "idx"], ["g"], axis=1),
             helper.make_node("Pad", ["g", "pads", "pv"], ["p"]),
             helper.make_node("Expand", ["p", "eshape"], ["y"])]
    inits = {"shape": np.array([4, 6], np.int64), "st": np.array([1], np.int64), "en": np.array([3], np.int64),
             "idx": np.array([5, 0, 2], np.int64), "pads": np.array([0, 1, 0, 1], np.int64),
             "pv": np.array(-1.5, F16), "eshape": np.array([2, 4, 5], np.int64)}
    cm_got = check_f16(nodes, [("x", F16, [2, 3, 4])], [("y", F16, [2, 4, 5])], {"x": x}, tmp_path, inits=inits)
    assert cm_got[0].dtype == F16
    import onnxc
    report = onnxc.load(tmp_path / "o").report
    assert "Cast" not in report["op_counts"]


# --- bfloat16 and float8 against the reference -----------------------------------------------------
def check_reference(nodes, inputs, outputs, feed, tmp_path, inits=None, opset=18, ulps=0):
    model = make_model(nodes, inputs, outputs, initializers=inits, opset=opset)
    got = compile_c(model, tmp_path / "o").run(None, feed)
    want = ReferenceEvaluator(model).run(None, feed)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape
        if ulps == 0:
            assert_same(g, w)
        else:  # an ulp of the narrow type at the value's magnitude (bfloat16: 2^-7 relative)
            rel = 2.0 ** -7 if g.dtype == BF16 else 2.0 ** -10
            assert_ulps(g, w, ulps, np.abs(w.astype(np.float32)) * rel + 1e-30)
    return got


@pytest.mark.parametrize("op", ["Add", "Mul", "Div", "Max"])
def test_binary_bfloat16(op, tmp_path):
    a, b = rand((3, 4), BF16, 10), rand((4,), BF16, 10)
    check_reference([helper.make_node(op, ["a", "b"], ["y"])], [("a", BF16, [3, 4]), ("b", BF16, [4])],
                    [("y", BF16, [3, 4])], {"a": a, "b": b}, tmp_path)


@pytest.mark.parametrize("op", ["Relu", "Exp", "Tanh", "Sqrt", "Neg", "Celu"])
def test_unary_bfloat16(op, tmp_path):
    x = rand((5, 6), BF16, 2)
    if op == "Sqrt":
        x = np.abs(x)
    check_reference([helper.make_node(op, ["x"], ["y"])], [("x", BF16, [5, 6])], [("y", BF16, [5, 6])],
                    {"x": x}, tmp_path, ulps=0 if op != "Celu" else 1)


@pytest.mark.parametrize("dt", [F16, BF16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_rounds_like_the_reference(dt, axis, tmp_path):
    """Narrow Softmax rounds after x - max, exp, the sum and the division, as the reference does
    (bfloat16: identical bits; float16: the reference sums in float, within an ulp)."""
    x = rand((3, 5, 6), dt, 3)
    check_reference([helper.make_node("Softmax", ["x"], ["y"], axis=axis)], [("x", dt, [3, 5, 6])],
                    [("y", dt, [3, 5, 6])], {"x": x}, tmp_path, opset=13, ulps=0 if dt == BF16 else 1)


def test_matmul_bfloat16(tmp_path):
    a, b = rand((4, 8), BF16), rand((8, 3), BF16)
    check_reference([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", BF16, [4, 8]), ("b", BF16, [8, 3])],
                    [("y", BF16, [4, 3])], {"a": a, "b": b}, tmp_path, ulps=1)


def test_float8_and_int4_data_movement_and_widening(tmp_path):
    """float8 and int4 move as bytes; ops read them widened (float32, int8) exactly."""
    e4, i4 = F8[0], SMALL_INTS[0]
    x = np.arange(256, dtype=np.uint8).view(e4).reshape(16, 16)
    q = np.arange(16, dtype=np.uint8).view(i4).reshape(4, 4)
    nodes = [helper.make_node("Transpose", ["x"], ["t"]), helper.make_node("Reshape", ["q", "s"], ["r"]),
             helper.make_node("Cast", ["t"], ["f"], to=onnx.TensorProto.FLOAT),
             helper.make_node("Cast", ["r"], ["i"], to=onnx.TensorProto.INT8)]
    check_reference(nodes, [("x", e4, [16, 16]), ("q", i4, [4, 4])],
                    [("t", e4, [16, 16]), ("f", np.float32, [16, 16]), ("r", i4, [16]), ("i", np.int8, [16])],
                    {"x": x, "q": q}, tmp_path, inits={"s": np.array([16], np.int64)})


# --- what is refused -------------------------------------------------------------------------------
def test_unverified_op_on_float16_is_refused_with_reason(tmp_path):
    """An op whose float32 twin is not verified on narrow types is refused, never approximated."""
    import inspect

    import onnxc
    from onnxc.driver import compile_model
    model = make_model([helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear")],
                       [("x", F16, [1, 1, 2, 2])], [("y", F16, [1, 1, 4, 4])],
                       initializers={"sc": np.array([1, 1, 2, 2], np.float32)})
    options = {"fallback": False} if "fallback" in inspect.signature(compile_model).parameters else {}
    with pytest.raises(NotImplementedError, match="float16 'x'"):
        onnxc.compile(model, output_dir=tmp_path / "o", **options)


def test_load_in_a_fresh_process(tmp_path):
    """A compiled module with bfloat16/float8 inputs and outputs loads without onnx imported."""
    import subprocess
    import sys
    x = np.array([1.5, -2.0, np.nan, 448.0], np.float32)
    model = make_model([helper.make_node("Cast", ["x"], ["b"], to=onnx.TensorProto.BFLOAT16),
                        helper.make_node("Cast", ["b"], ["f"], to=onnx.TensorProto.FLOAT8E4M3FN)],
                       [("x", np.float32, [4])], [("b", BF16, [4]), ("f", F8[0], [4])], opset=21)
    compile_c(model, tmp_path / "o")
    code = ("import sys, numpy as np, onnxc; m = onnxc.load(sys.argv[1]); "
            "b, f = m.run(None, {'x': np.array([1.5, -2.0, np.nan, 448.0], np.float32)}); "
            "assert 'onnx' not in sys.modules; print(b.dtype, f.dtype, f.astype(np.float32).tolist())")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["bfloat16", "float8_e4m3fn"]
    assert "448.0" in out.stdout
