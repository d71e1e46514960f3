"""Narrow types through the C path: float16, bfloat16, float8, float4, int4/uint4, int2/uint2.

* Cast between every pair of supported types, on special values (NaN, +-inf, +-0, subnormals,
  rounding ties, out of range), bit for bit against the onnx reference (ml_dtypes) and against
  onnxruntime where it implements the pair; for the 16-bit types also exhaustively, with and
  without F16C (target "generic" builds the portable conversions);
* ops other than casts and data movement are refused on narrow types, with a reason.
"""
import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import helper

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
    """Equal bits; NaN matches any NaN; ``valid`` masks elements whose result is undefined."""
    assert got.dtype == want.dtype and got.shape == want.shape, what
    ok = (bits(got) == bits(want)) | (is_nan(got) & is_nan(want))
    if valid is not None:
        ok |= ~valid
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
         np.nan, -np.nan, np.inf, -np.inf, 0.1, 1 / 3, np.pi]
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
                2 ** 24 + 1, 2 ** 31 - 1, -(2 ** 31), 2 ** 53 + 1, 2 ** 62 + 2 ** 40 + 1, info.max, info.min]
        return np.array([i for i in ints if info.min <= i <= info.max], dt)
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dt)


def reference_cast(x, dst, saturate=1, round_mode="up"):
    """onnx.reference's Cast; pairs ml_dtypes cannot convert directly go through int64 (from an
    integer: only the low bits matter) or float32 (from a float: exact)."""
    from onnx.reference.ops.op_cast import cast_to
    with np.errstate(all="ignore"):
        try:
            return cast_to(x, onnx_type(dst), bool(saturate), round_mode)
        except TypeError:
            wide = np.float32 if np.dtype(x.dtype) in FLOATS else np.int64
            return cast_to(x.astype(wide), onnx_type(dst), bool(saturate), round_mode)


def defined(x, dst):
    """Elements whose cast to ``dst`` the spec defines: float -> integer only within range."""
    dst = np.dtype(dst)
    if np.dtype(x.dtype) not in FLOATS or dst.kind not in "iu":
        return None
    f = x.astype(np.float64)
    info = np.iinfo(dst)
    return np.isfinite(f) & (f > info.min - 1) & (f < info.max + 1)


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
        assert_same(y, reference_cast(x, d), defined(x, d), f"{np.dtype(src).name} -> {d.name}")


@pytest.mark.parametrize("src", [np.float32, np.float64, F16, BF16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_float8_saturate(src, saturate, tmp_path):
    x = values_of(src) if np.dtype(src).itemsize != 2 else special_values().astype(src)
    got = compile_c(cast_model(src, F8, x.size, saturate=saturate), tmp_path / "o").run(None, {"x": x})
    for d, y in zip(F8, got):
        assert_same(y, reference_cast(x, d, saturate), None, f"{np.dtype(src).name} -> {d.name}")


@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
def test_cast_to_e8m0(round_mode, saturate, tmp_path):
    x = np.concatenate([np.abs(special_values()), 2.0 ** np.arange(-140, 129)]).astype(np.float32)
    x = np.concatenate([x, np.array([1.5, 1.25, 1.75, 3.0, 2 ** 127 * 1.5, 2 ** 127 * 1.9], np.float32)])
    model = cast_model(np.float32, [E8M0], x.size, saturate=saturate, round_mode=round_mode)
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
        valid = defined(x, d)
        if np.dtype(src) == np.float64 and d == F16:
            valid = (x.astype(np.float32).astype(np.float64) == x) | np.isnan(x)
        assert_same(y, w, valid, f"{np.dtype(src).name} -> {d.name}")


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
