"""Elementwise family against onnxruntime: unary math and activations, broadcasting binary ops
over several dtypes, variadic ops, Where, Clip, Cast, BatchNormalization."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxc
from helpers import check_against_ort, make_model, ort_run

RNG = np.random.default_rng(0)

UNARY = ["Abs", "Neg", "Relu", "Sigmoid", "Tanh", "Exp", "Sqrt", "Log", "Sin", "Cos", "Atan", "Erf", "Floor",
         "Ceil", "Round", "Reciprocal", "Softsign", "Softplus", "Sign", "Elu", "Selu", "LeakyRelu", "HardSigmoid",
         "HardSwish", "Celu", "ThresholdedRelu", "Mish", "Gelu"]


def unary_input(op):
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32) * 3
    if op in ("Sqrt", "Log"):
        x = np.abs(x) + 0.1
    if op == "Round":
        x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.4, 2.6, -2.6] * 7 + [3.5, -3.5, 0.0, 1.0], np.float32).reshape(3, 4, 5)
    return x


@pytest.mark.parametrize("op", UNARY)
def test_unary_float32(op, tmp_path):
    x = unary_input(op)
    opset = 20 if op == "Gelu" else 18
    model = make_model([helper.make_node(op, ["x"], ["y"])], [("x", np.float32, [3, 4, 5])],
                       [("y", np.float32, [3, 4, 5])], opset=opset)
    check_against_ort(model, {"x": x}, tmp_path / "o", rtol=1e-5, atol=1e-6)


BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Max",
          "Min"]
SHAPES = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((2, 3, 4), ())]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("shapes", SHAPES)
def test_binary_broadcast_float32(op, shapes, tmp_path):
    a = RNG.standard_normal(shapes[0]).astype(np.float32)
    b = RNG.standard_normal(shapes[1]).astype(np.float32)
    if op == "Pow":
        a = np.abs(a) + 0.5
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(np.float32)
    out_dtype = np.bool_ if op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual") else np.float32
    out_shape = list(np.broadcast_shapes(shapes[0], shapes[1]))
    model = make_model([helper.make_node(op, ["a", "b"], ["y"])], [("a", np.float32, list(a.shape)),
                       ("b", np.float32, list(b.shape))], [("y", out_dtype, out_shape)])
    check_against_ort(model, {"a": a, "b": b}, tmp_path / "o", rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Mod", "Max", "Min"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.float64])
def test_binary_dtypes(op, dtype, tmp_path):
    a = RNG.integers(-50, 50, (3, 4)).astype(dtype)
    b = RNG.integers(1, 9, (4,)).astype(dtype)
    attrs = {"fmod": 1} if op == "Mod" and dtype == np.float64 else {}
    model = make_model([helper.make_node(op, ["a", "b"], ["y"], **attrs)], [("a", dtype, [3, 4]), ("b", dtype, [4])],
                       [("y", dtype, [3, 4])])
    check_against_ort(model, {"a": a, "b": b}, tmp_path / "o")


def test_integer_division_by_zero_does_not_crash(tmp_path):
    import onnxc
    model = make_model([helper.make_node("Div", ["a", "b"], ["y"])], [("a", np.int32, [3]), ("b", np.int32, [3])],
                       [("y", np.int32, [3])])
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    y = m.run(None, {"a": np.array([7, -2**31, 5], np.int32), "b": np.array([0, -1, 2], np.int32)})[0]
    assert y[2] == 2  # the trapping cases give defined values instead of SIGFPE


def test_logic_where_clip_cast_variadic(tmp_path):
    nodes = [helper.make_node("Greater", ["a", "b"], ["g"]), helper.make_node("Not", ["g"], ["ng"]),
             helper.make_node("And", ["g", "ng"], ["z"]), helper.make_node("Or", ["z", "g"], ["o"]),
             helper.make_node("Where", ["o", "a", "b"], ["w"]), helper.make_node("Clip", ["w", "lo", "hi"], ["c"]),
             helper.make_node("Sum", ["c", "a", "b"], ["s"]), helper.make_node("Mean", ["s", "a"], ["m"]),
             helper.make_node("Cast", ["m"], ["y"], to=7)]
    a = RNG.standard_normal((2, 5)).astype(np.float32) * 4
    b = RNG.standard_normal((5,)).astype(np.float32) * 4
    model = make_model(nodes, [("a", np.float32, [2, 5]), ("b", np.float32, [5])], [("y", np.int64, [2, 5])],
                       {"lo": np.array(-1.0, np.float32), "hi": np.array(2.5, np.float32)})
    check_against_ort(model, {"a": a, "b": b}, tmp_path / "o")


def test_batchnorm_inference(tmp_path):
    c = 4
    inits = {"s": RNG.standard_normal(c).astype(np.float32), "b": RNG.standard_normal(c).astype(np.float32),
             "m": RNG.standard_normal(c).astype(np.float32), "v": RNG.random(c).astype(np.float32) + 0.5}
    model = make_model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
                       [("x", np.float32, [2, c, 3, 3])], [("y", np.float32, [2, c, 3, 3])], inits)
    check_against_ort(model, {"x": RNG.standard_normal((2, c, 3, 3)).astype(np.float32)}, tmp_path / "o",
                      rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,dtype,outs", [((2, 3, 4, 5), np.float32, 3), ((4, 2), np.float64, 3),
                                              ((3, 4, 6), np.float32, 1), ((1, 2, 1, 1), np.float32, 3)])
def test_batchnorm_training_mode(shape, dtype, outs, tmp_path):
    """training_mode=1 (opset 15): normalized with the batch's mean and population variance per
    channel; running mean/var = input * momentum + batch * (1 - momentum); against float64 numpy
    and onnx.reference."""
    from onnx.reference import ReferenceEvaluator
    c = shape[1]
    x = RNG.standard_normal(shape).astype(dtype) * 2 + 0.5
    inits = {"s": RNG.standard_normal(c).astype(dtype), "b": RNG.standard_normal(c).astype(dtype),
             "m": RNG.standard_normal(c).astype(dtype), "v": RNG.random(c).astype(dtype) + 0.5}
    names = ["y", "rm", "rv"][:outs]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], names, epsilon=1e-2, momentum=0.8,
                            training_mode=1)
    model = make_model([node], [("x", dtype, list(shape))], [(n, dtype, list(shape) if n == "y" else [c]) for n in names],
                       inits, opset=15)
    got = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False).run(None, {"x": x})
    axes = tuple(i for i in range(len(shape)) if i != 1)
    xd = x.astype(np.float64)
    bm, bv = xd.mean(axis=axes), xd.var(axis=axes)
    bshape = [1, c] + [1] * (len(shape) - 2)
    y = (xd - bm.reshape(bshape)) / np.sqrt(bv.reshape(bshape) + np.float32(1e-2)) * inits["s"].reshape(bshape) \
        + inits["b"].reshape(bshape)
    mom = float(np.float32(0.8))
    want = [y, inits["m"] * mom + bm * (1 - mom), inits["v"] * mom + bv * (1 - mom)][:outs]
    ref = ReferenceEvaluator(model).run(None, {"x": x})
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for g, w, r in zip(got, want, ref):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


dims = st.integers(1, 4)


@settings(max_examples=15, deadline=None)
@given(st.lists(dims, min_size=1, max_size=4), st.data())
def test_broadcast_property_against_numpy(tmp_path_factory, out_shape, data):
    """Random broadcast-compatible shapes: onnxc's Add/Mul equal numpy's."""
    import onnxc
    b_shape = [d if data.draw(st.booleans()) else 1 for d in out_shape[data.draw(st.integers(0, len(out_shape))):]]
    a = RNG.standard_normal(out_shape).astype(np.float32)
    b = RNG.standard_normal(b_shape).astype(np.float32)
    nodes = [helper.make_node("Mul", ["a", "b"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])]
    model = make_model(nodes, [("a", np.float32, out_shape), ("b", np.float32, b_shape)], [("y", np.float32, out_shape)])
    y = onnxc.compile(model, output_dir=tmp_path_factory.mktemp("p")).run(None, {"a": a, "b": b})[0]
    np.testing.assert_allclose(y, a * b + b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("to", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
@pytest.mark.parametrize("src", [np.float32, np.float64])
def test_cast_float_to_int_out_of_range_is_defined(to, src, tmp_path):
    # The spec leaves NaN/out-of-range float->int undefined, and so does C; onnxc defines it as
    # x86's truncating convert does (INT_MIN of the 32/64-bit convert, narrowed), so the
    # generated code has no undefined behaviour.  In-range values match onnxruntime exactly.
    from onnx import helper as h
    inside = np.array([300.7, -300.7, -1.5, 0.9, 127.9, -128.9, 65535.5, 4294967295.0], dtype=src)
    info = np.iinfo(to)
    inside = inside[(np.trunc(inside) >= info.min) & (np.trunc(inside) <= info.max)]
    outside = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30], dtype=src)
    x = np.concatenate([inside, outside])
    model = make_model([h.make_node("Cast", ["x"], ["y"], to=h.np_dtype_to_tensor_dtype(np.dtype(to)))],
                       [("x", src, [x.size])], [("y", to, [x.size])])
    got = onnxc.compile(model, output_dir=tmp_path / "o").run(None, {"x": x})[0]
    np.testing.assert_array_equal(got[:inside.size], ort_run(model, {"x": x})[0][:inside.size])
    bits = 32 if np.dtype(to).itemsize < 4 or to == np.int32 else 64
    indefinite = np.array(-(1 << (bits - 1)), np.int64).astype(to) if to != np.uint64 else np.uint64(1 << 63)
    assert (got[inside.size:] == indefinite).all()


def test_hardsigmoid_propagates_nan(tmp_path):
    from onnx import helper as h
    x = np.array([np.nan, -10, -1, 0, 1, 10, np.inf, -np.inf], np.float32)
    model = make_model([h.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.4)],
                       [("x", np.float32, [8])], [("y", np.float32, [8])])
    np.testing.assert_array_equal(onnxc.compile(model, output_dir=tmp_path / "o").run(None, {"x": x})[0],
                                  ort_run(model, {"x": x})[0])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.int8])
def test_integer_overflow_wraps_like_numpy(dtype, tmp_path):
    # signed overflow is undefined in C (UBSan flagged -INT32_MIN in scripts/sanitize.py): the
    # kernels compute in unsigned types and give numpy's two's-complement results
    info = np.iinfo(dtype)
    a = np.array([info.max, info.min, info.min, -1 if info.min else 3, info.max, 7], dtype)
    b = np.array([1, -1 if info.min else 1, info.min, info.min, info.max, -3 if info.min else 3], dtype)
    ops = [("Add", "ad"), ("Sub", "sb"), ("Mul", "ml")]
    nodes = [helper.make_node(op, ["a", "b"], [o]) for op, o in ops]
    outs = [(o, dtype, [6]) for _, o in ops]
    if info.min:
        nodes += [helper.make_node("Neg", ["a"], ["ng"]), helper.make_node("Abs", ["a"], ["ab"])]
        outs += [("ng", dtype, [6]), ("ab", dtype, [6])]
    model = make_model(nodes, [("a", dtype, [6]), ("b", dtype, [6])], outs)
    with np.errstate(over="ignore"):
        want = [a + b, a - b, a * b] + ([-a, np.abs(a)] if info.min else [])
    for level in ("none", "extended"):  # extended fuses the chain into one onnxc.ElementwiseChain
        got = onnxc.compile(model, output_dir=tmp_path / level, opt_level=level).run(None, {"a": a, "b": b})
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


SWISH_EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 100.0, -100.0, 88.0, -88.0, 1e-30, -1e-30, 3.0, -3.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("alpha", [None, 0.5, -2.0])
def test_swish(dtype, alpha, tmp_path):
    """Swish (opset 24, which onnxruntime 1.32 lacks) C-only against the onnx reference; edges:
    +-inf (-inf gives NaN, -inf * 0, as the spec's x * sigmoid(alpha x)), NaN, exp overflow on
    both sides, signed zeros; float16 runs the float32 twin (rounded once)."""
    from onnx.reference import ReferenceEvaluator
    from helpers import compile_c
    x = np.concatenate([np.array(SWISH_EDGES), RNG.standard_normal(47) * 6]).astype(dtype).reshape(4, 15)
    attrs = {} if alpha is None else {"alpha": alpha}
    model = make_model([helper.make_node("Swish", ["x"], ["y"], **attrs)], [("x", dtype, [4, 15])],
                       [("y", dtype, [4, 15])], opset=24)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    ref = ReferenceEvaluator(model).run(None, {"x": x.astype(np.float64)} if dtype == np.float16 else {"x": x})[0]
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(np.float64), ref.astype(dtype).astype(np.float64),
                               rtol={np.float16: 1e-3, np.float32: 1e-5, np.float64: 1e-12}[dtype], atol=1e-30)
    assert np.array_equal(np.isnan(got), np.isnan(ref.astype(dtype)))


POW_EXPONENTS = [np.int8, np.int32, np.int64, np.uint8, np.uint64, np.float32, np.float64]


@pytest.mark.parametrize("base", [np.int32, np.int64])
@pytest.mark.parametrize("exp", POW_EXPONENTS)
def test_pow_integer_base(base, exp, tmp_path):
    """Pow with an int32/int64 base (output: the base's type), any exponent type, in C.
    Defined by the spec (x^e in the base's type) and asserted: results that fit, against the
    exact integer power (integer exponents are computed exactly; a float exponent through double,
    truncated toward 0 as the reference's astype), and against onnx.reference and onnxruntime
    where they are exact (|result| <= 2^53: onnxruntime computes integer powers through double,
    numpy for a uint64 exponent too) and onnxruntime has a kernel.
    Not defined, so not asserted either way: a negative integer exponent (onnx.reference refuses
    it; onnxc gives onnxruntime's truncation 1/x^|e|), results outside the type (numpy wraps,
    onnxruntime gives INT_MIN) and float results that are NaN or out of range."""
    from onnx.reference import ReferenceEvaluator
    info = np.iinfo(base)
    a = np.array([2, -2, 3, -3, 0, 1, -1, 7, 5, 2, 10, 0, 1, 3], base)
    e = np.array([3, 3, 4, 5, 0, 9, 7, 2, 0, 30, 9, 3, 0, 19], np.float64)
    if base == np.int64:
        a, e = np.append(a, [3, -3, 2]), np.append(e, [39, 39, 62])  # beyond 2^53: exact
    if np.dtype(exp).kind == "f":
        a, e = np.append(a, [4, 9, 2, 3, 10, -8]), np.append(e, [0.5, 0.5, 2.9, -1.0, 1.5, 3.0])
    if np.dtype(exp).kind in "iu" and e.max() > np.iinfo(exp).max:
        a, e = a[e <= np.iinfo(exp).max], e[e <= np.iinfo(exp).max]
    a, e = a.astype(base), e.astype(exp)
    model = make_model([helper.make_node("Pow", ["a", "e"], ["y"]), helper.make_node("Add", ["y", "one"], ["z"])],
                       [("a", base, [a.size]), ("e", exp, [a.size])], [("y", base, [a.size]), ("z", base, [a.size])],
                       {"one": np.array(1, base)}, opset=15)
    if np.dtype(exp).kind == "f":
        want = np.trunc(np.power(a.astype(np.float64), e.astype(np.float64)))
    else:
        want = np.array([int(x) ** int(k) for x, k in zip(a, e)], dtype=object)
    fits = np.array([info.min <= w <= info.max for w in want])
    assert fits.all()  # the inputs above are all defined
    want = want.astype(base)
    pow_only = make_model([helper.make_node("Pow", ["a", "e"], ["y"])], [("a", base, [a.size]), ("e", exp, [a.size])],
                          [("y", base, [a.size])], opset=15)
    ref = ReferenceEvaluator(pow_only).run(None, {"a": a, "e": e})[0]
    try:
        ort_y = ort_run(model, {"a": a, "e": e})[0]
    except Exception as err:  # onnxruntime has no kernel for some exponent types (int8, uint8)
        assert "NOT_IMPLEMENTED" in str(err)
        ort_y = None
    exact_in_double = np.abs(want.astype(np.float64)) <= 2.0 ** 53
    for level in ("none", "extended"):  # extended fuses Pow and Add into one ElementwiseChain
        m = onnxc.compile(model, output_dir=tmp_path / level, opt_level=level, fallback=False)
        y, z = m.run(None, {"a": a, "e": e})
        assert y.dtype == base and z.dtype == base
        np.testing.assert_array_equal(y, want)
        np.testing.assert_array_equal(y[exact_in_double], ref[exact_in_double])
        if ort_y is not None:
            np.testing.assert_array_equal(y[exact_in_double], ort_y[exact_in_double])
        np.testing.assert_array_equal(z, want + base(1))


@pytest.mark.parametrize("base", [np.int32, np.int64])
def test_pow_integer_base_undefined_results_do_not_crash(base, tmp_path):
    """The parts the spec leaves undefined (see above) run without a trap or undefined C, and
    give onnxruntime's values where it has one on x86 (not asserted: not the spec's)."""
    info = np.iinfo(base)
    a = np.array([2, -2, 0, 1, -1, -1, 3, 2, info.max, info.min, -3], base)
    e = np.array([-1, -3, -2, -7, -3, -4, 45, 64, 2, 3, 41], np.int64)
    model = make_model([helper.make_node("Pow", ["a", "e"], ["y"])], [("a", base, [a.size]), ("e", np.int64, [a.size])],
                       [("y", base, [a.size])], opset=15)
    y = onnxc.compile(model, output_dir=tmp_path / "i", fallback=False).run(None, {"a": a, "e": e})[0]
    assert y.dtype == base and y.shape == a.shape
    ef = np.array([np.nan, np.inf, -np.inf, 1e300, 0.5], np.float64)
    model = make_model([helper.make_node("Pow", ["a", "e"], ["y"])], [("a", base, [5]), ("e", np.float64, [5])],
                       [("y", base, [5])], opset=15)
    y = onnxc.compile(model, output_dir=tmp_path / "f", fallback=False).run(
        None, {"a": np.array([2, 2, 2, 3, -4], base), "e": ef})[0]
    assert y.dtype == base and y.shape == (5,)
