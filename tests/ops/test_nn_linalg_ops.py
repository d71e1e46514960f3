"""Conv, DeformConv, ConvTranspose, pools (LpPool, GlobalLpPool too), LRN, Gemm and MatMul against
onnxruntime."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import check_against_ort, check_many, compile_c, make_model, ort_run

RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def check(model, feed, tmp_path, rtol=1e-4, atol=1e-5):
    check_against_ort(model, feed, tmp_path / "o", rtol, atol)


CONV_CASES = [
    dict(x=(1, 3, 9, 9), w=(4, 3, 3, 3)),
    dict(x=(2, 4, 8, 7), w=(6, 2, 3, 3), group=2, strides=[2, 1], pads=[1, 0, 1, 2]),
    dict(x=(1, 6, 10, 10), w=(6, 1, 3, 3), group=6, dilations=[2, 2], pads=[2, 2, 2, 2]),
    dict(x=(1, 8, 5, 5), w=(16, 8, 1, 1)),
    dict(x=(1, 3, 11, 11), w=(5, 3, 3, 3), auto_pad="SAME_UPPER", strides=[2, 2]),
    dict(x=(1, 3, 11, 11), w=(5, 3, 4, 4), auto_pad="SAME_LOWER"),
    dict(x=(1, 2, 20), w=(3, 2, 5), strides=[3], pads=[2, 1]),
    dict(x=(1, 2, 5, 6, 7), w=(3, 2, 3, 2, 3), pads=[1, 0, 1, 1, 1, 0]),
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv(case, bias, tmp_path):
    case = dict(case)
    xs, ws = case.pop("x"), case.pop("w")
    inits = {"w": RNG.standard_normal(ws).astype(np.float32)}
    ins = ["x", "w"]
    if bias:
        inits["b"] = RNG.standard_normal(ws[0]).astype(np.float32)
        ins.append("b")
    node = helper.make_node("Conv", ins, ["y"], **case)
    model = make_model([node], [("x", np.float32, list(xs))], [("y", np.float32, None)], inits)
    check(model, {"x": RNG.standard_normal(xs).astype(np.float32)}, tmp_path)


POOL_CASES = [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2])),
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 2], dilations=[2, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1, strides=[2, 2], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[2, 3], auto_pad="SAME_UPPER", strides=[2, 2])),
]


@pytest.mark.parametrize("op,attrs", POOL_CASES)
def test_pool(op, attrs, tmp_path):
    model = make_model([helper.make_node(op, ["x"], ["y"], **attrs)], [("x", np.float32, [1, 3, 10, 9])],
                       [("y", np.float32, None)])
    check(model, {"x": RNG.standard_normal((1, 3, 10, 9)).astype(np.float32)}, tmp_path)


# dilated AveragePool with ceil_mode: (kernel, dilation, stride, pad begin, pad end, count_include_pad)
DILATED_CEIL = [(2, 2, 1, 0, 0, 0), (3, 2, 3, 0, 0, 1), (3, 2, 3, 1, 1, 1), (3, 2, 3, 1, 1, 0), (2, 3, 4, 1, 1, 0),
                (3, 2, 2, 2, 2, 1), (3, 3, 4, 2, 1, 1), (3, 3, 4, 2, 1, 0), (3, 2, 4, 0, 0, 0), (2, 3, 3, 1, 0, 1)]


def test_averagepool_dilated_ceil_mode(tmp_path):
    """ceil_mode windows that run past the end (count_include_pad counts only positions inside
    the explicit pads, not the ceil extension) and start in padding, dilated, against onnxruntime;
    against onnx.reference where the ceil extension is < 2: past that the reference pads the
    extension's first half at the beginning, which shifts every window (onnxruntime does not)."""
    from onnx.reference import ReferenceEvaluator
    length = 10
    nodes, outs, extras = [], [], []
    for i, (k, d, s, pb, pe, cip) in enumerate(DILATED_CEIL):
        nodes.append(helper.make_node("AveragePool", ["x"], [f"y{i}"], kernel_shape=[k], dilations=[d], strides=[s],
                                      pads=[pb, pe], ceil_mode=1, count_include_pad=cip))
        eff = (k - 1) * d + 1
        n_out = -(-(length + pb + pe - eff) // s) + 1
        n_out -= (n_out - 1) * s >= length + pb
        outs.append((f"y{i}", np.float32, [2, 3, n_out]))
        extras.append((n_out - 1) * s + eff - (length + pb + pe))
    model = make_model(nodes, [("x", np.float32, [2, 3, length])], outs, opset=19)
    x = RNG.standard_normal((2, 3, length)).astype(np.float32)
    got = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False).run(None, {"x": x})
    want, ref = ort_run(model, {"x": x}), ReferenceEvaluator(model).run(None, {"x": x})
    assert max(extras) >= 2 and min(extras) < 2
    for i, (g, w, r) in enumerate(zip(got, want, ref)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=str(DILATED_CEIL[i]))
        if extras[i] < 2:
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6, err_msg=str(DILATED_CEIL[i]))
    # 2-D and 3-D, as the node suite's cases
    for shape, k, d, s, cip in [((1, 2, 9, 11), [2, 3], [2, 2], [2, 3], 1), ((1, 1, 11, 8, 9), [3, 2, 2], [2, 3, 2], [3, 2, 2], 0)]:
        node = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=k, dilations=d, strides=s, ceil_mode=1,
                                count_include_pad=cip)
        model = make_model([node], [("x", np.float32, list(shape))], [("y", np.float32, None)], opset=19)
        check(model, {"x": RNG.standard_normal(shape).astype(np.float32)}, tmp_path / f"r{len(shape)}")


def test_maxpool_indices(tmp_path):
    model = make_model([helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])],
                       [("x", np.float32, [2, 3, 6, 6])], [("y", np.float32, None), ("i", np.int64, None)])
    check(model, {"x": RNG.standard_normal((2, 3, 6, 6)).astype(np.float32)}, tmp_path)


@pytest.mark.parametrize("shape,attrs", [
    ((2, 3, 5, 5), dict(kernel_shape=[2, 2], strides=[2, 2])),
    ((1, 2, 7, 6), dict(kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1], ceil_mode=1)),
    ((1, 2, 6, 7), dict(kernel_shape=[2, 2], dilations=[2, 1])),
    ((2, 2, 4, 5, 3), dict(kernel_shape=[2, 2, 2], strides=[1, 2, 1])),
    ((2, 3, 9), dict(kernel_shape=[3], strides=[2])),
])
def test_maxpool_indices_column_major(shape, attrs, tmp_path):
    """storage_order=1: each index is n*C*spatial + c*spatial + the spatial position linearized
    column-major (first spatial axis fastest), against onnx.reference and onnxruntime (where it
    runs the rank)."""
    from onnx.reference import ReferenceEvaluator
    model = make_model([helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=1, **attrs)],
                       [("x", np.float32, list(shape))], [("y", np.float32, None), ("i", np.int64, None)])
    x = RNG.standard_normal(shape).astype(np.float32)
    y, i = onnxc.compile(model, output_dir=tmp_path / "o", fallback=False).run(None, {"x": x})
    ry, ri = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(i, ri)
    # the index addresses the max in x read column-major within its plane
    planes = x.reshape(shape[0] * shape[1], -1)
    sp = planes.shape[1]
    col = np.stack([p.reshape(shape[2:]).reshape(-1, order="F") for p in planes]).reshape(-1)
    np.testing.assert_array_equal(col[i.reshape(-1)], y.reshape(-1))
    assert ((i.reshape(shape[0] * shape[1], -1) // sp) == np.arange(shape[0] * shape[1])[:, None]).all()
    try:
        oy, oi = ort_run(model, {"x": x})
    except Exception as e:  # onnxruntime's column-major indices are 2-D only
        assert len(shape) != 4, e
    else:
        np.testing.assert_array_equal(i, oi)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool(op, tmp_path):
    model = make_model([helper.make_node(op, ["x"], ["y"])], [("x", np.float32, [2, 5, 4, 3])], [("y", np.float32, None)])
    check(model, {"x": RNG.standard_normal((2, 5, 4, 3)).astype(np.float32)}, tmp_path)


def test_lrn(tmp_path):
    model = make_model([helper.make_node("LRN", ["x"], ["y"], size=3, alpha=1e-3, beta=0.7, bias=2.0)],
                       [("x", np.float32, [1, 7, 4, 4])], [("y", np.float32, None)])
    check(model, {"x": RNG.standard_normal((1, 7, 4, 4)).astype(np.float32)}, tmp_path)


@pytest.mark.parametrize("ta,tb,alpha,beta,cshape", [(0, 0, 1.0, 1.0, (5,)), (1, 0, 0.5, 2.0, (3, 5)),
                                                       (0, 1, 1.0, 1.0, (3, 1)), (1, 1, 2.0, 0.0, None)])
def test_gemm(ta, tb, alpha, beta, cshape, tmp_path):
    a = RNG.standard_normal((4, 3) if ta else (3, 4)).astype(np.float32)
    b = RNG.standard_normal((5, 4) if tb else (4, 5)).astype(np.float32)
    inits = {"b": b}
    ins = ["a", "b"]
    if cshape:
        inits["c"] = RNG.standard_normal(cshape).astype(np.float32)
        ins.append("c")
    model = make_model([helper.make_node("Gemm", ins, ["y"], transA=ta, transB=tb, alpha=alpha, beta=beta)],
                       [("a", np.float32, list(a.shape))], [("y", np.float32, [3, 5])], inits)
    check(model, {"a": a}, tmp_path)


@pytest.mark.parametrize("ash,bsh", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 6)),
                                     ((4,), (4, 5)), ((3, 4), (4,)), ((1, 7), (7, 33))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_matmul(ash, bsh, dtype, tmp_path):
    a = (RNG.standard_normal(ash) * 3).astype(dtype)
    b = (RNG.standard_normal(bsh) * 3).astype(dtype)
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", dtype, list(ash)), ("b", dtype, list(bsh))],
                       [("y", dtype, None)])
    check(model, {"a": a, "b": b}, tmp_path)


# --- DeformConv -------------------------------------------------------------------------------
DEFORM_CASES = [  # (x shape, w shape, attrs, bias, mask)
    ((1, 2, 5, 6), (3, 2, 3, 3), {}, False, False),
    ((2, 4, 6, 5), (4, 2, 2, 3), dict(group=2, offset_group=2, pads=[1, 0, 2, 1]), True, True),
    ((1, 4, 7, 7), (2, 4, 3, 3), dict(strides=[2, 1], dilations=[1, 2], pads=[1, 1, 1, 1], offset_group=4), True, False),
    ((1, 1, 1, 4), (1, 1, 1, 2), dict(pads=[0, 1, 0, 1]), False, True),  # one row: H - 1 = 0 in the reference's scale
]


def _deform_out(xs, ws, attrs):
    s, d, p = attrs.get("strides", [1, 1]), attrs.get("dilations", [1, 1]), attrs.get("pads", [0, 0, 0, 0])
    return [(xs[2 + i] + p[i] + p[2 + i] - (ws[2 + i] - 1) * d[i] - 1) // s[i] + 1 for i in range(2)]


@pytest.mark.parametrize("case", range(len(DEFORM_CASES)))
def test_deform_conv(case, tmp_path):
    """DeformConv C-only against onnxruntime: fractional offsets reaching past every border (the
    outside neighbours count 0), integer offsets, one huge offset, groups, offset groups, strides,
    dilations, asymmetric pads, bias and mask."""
    xs, ws, attrs, bias, mask = DEFORM_CASES[case]
    out = _deform_out(xs, ws, attrs)
    og, taps = attrs.get("offset_group", 1), ws[2] * ws[3]
    feed = {"x": RNG.standard_normal(xs).astype(np.float32), "w": RNG.standard_normal(ws).astype(np.float32),
            "off": (RNG.uniform(-3, 3, (xs[0], og * taps * 2, *out))).astype(np.float32)}
    feed["off"].reshape(-1)[::7] = np.round(feed["off"].reshape(-1)[::7])
    feed["off"].reshape(-1)[3] = 1e6
    names = ["x", "w", "off"]
    if bias or mask:
        names.append("b" if bias else "")
        if bias:
            feed["b"] = RNG.standard_normal(ws[0]).astype(np.float32)
    if mask:
        names.append("m")
        feed["m"] = RNG.uniform(0, 1, (xs[0], og * taps, *out)).astype(np.float32)
    model = make_model([helper.make_node("DeformConv", names, ["y"], kernel_shape=list(ws[2:]), **attrs)],
                       [(n, a.dtype, list(a.shape)) for n, a in feed.items()], [("y", np.float32, [xs[0], ws[0], *out])],
                       opset=22)
    got = compile_c(model, tmp_path / "o").run(None, feed)[0]
    np.testing.assert_allclose(got, ort_run(model, feed)[0], rtol=1e-5, atol=1e-5)
    if xs[2] > 1:  # the reference divides by H - 1
        from onnx.reference import ReferenceEvaluator
        np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, feed)[0], rtol=1e-5, atol=1e-5)


def test_deform_conv_invalid(tmp_path):
    node = helper.make_node("DeformConv", ["x", "w", "off"], ["y"], kernel_shape=[2, 2], offset_group=2, name="dc")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [1, 2, 4, 4]),
                                            helper.make_tensor_value_info("w", 1, [1, 2, 2, 2]),
                                            helper.make_tensor_value_info("off", 1, [1, 8, 3, 3])],
                              [helper.make_tensor_value_info("y", 1, [1, 1, 3, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises(onnxc.ModelError, match=r"node 'dc' \(DeformConv\): input 2 'off' has 8 channels, expected "
                                               r"offset_group \* kernel taps \* 2 = 16"):
        onnxc.compile(model, output_dir=tmp_path / "o")


# --- ConvTranspose ----------------------------------------------------------------------------
CONV_T_CASES = [
    dict(x=(1, 3, 5, 5), w=(3, 2, 3, 3)),
    dict(x=(2, 4, 4, 5), w=(4, 3, 3, 2), strides=[2, 3], pads=[1, 0, 2, 1], output_padding=[1, 2]),
    dict(x=(1, 6, 4, 4), w=(6, 2, 3, 3), group=3, strides=[2, 2], dilations=[2, 1]),
    dict(x=(1, 4, 4, 4), w=(4, 1, 3, 3), group=4, strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(x=(1, 2, 3, 4), w=(2, 3, 3, 3), strides=[2, 2], auto_pad="SAME_UPPER"),
    dict(x=(1, 2, 3, 4), w=(2, 3, 3, 3), strides=[2, 2], auto_pad="SAME_LOWER"),
    dict(x=(1, 2, 3, 4), w=(2, 3, 3, 3), strides=[2, 2], auto_pad="VALID", output_padding=[1, 1]),
    dict(x=(1, 2, 3, 4), w=(2, 3, 3, 3), strides=[3, 2], output_shape=[9, 10]),
    dict(x=(1, 2, 3, 4), w=(2, 3, 3, 3), strides=[2, 2], output_shape=[6, 8], auto_pad="SAME_UPPER"),
    dict(x=(2, 3, 7), w=(3, 4, 3), strides=[3], pads=[1, 2], dilations=[2]),
    dict(x=(1, 2, 3, 4, 3), w=(2, 2, 2, 3, 2), strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 0], group=2),
    dict(x=(1, 8, 6, 6), w=(8, 4, 1, 1)),
]


@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose(bias, tmp_path):
    nodes, inits, feed = [], {}, {}
    for k, case in enumerate(CONV_T_CASES):
        case = dict(case)
        xs, ws = case.pop("x"), case.pop("w")
        feed[f"x{k}"] = randn(*xs)
        inits[f"w{k}"] = randn(*ws)
        ins = [f"x{k}", f"w{k}"]
        if bias:
            inits[f"b{k}"] = randn(ws[1] * case.get("group", 1))
            ins.append(f"b{k}")
        nodes.append(helper.make_node("ConvTranspose", ins, [f"y{k}"], name=f"ct{k}", **case))
    check_many(nodes, feed, inits, tmp_path, rtol=1e-4, atol=1e-5, opset=18)


@pytest.mark.parametrize("attrs", [dict(output_shape=[5, 7]),  # smaller than the full output
                                   dict(output_shape=[9, 11]),  # beyond full output + stride - 1
                                   dict(output_shape=[8, 10], pads=[1, 1, 1, 1]),
                                   dict(output_shape=[10, 12], auto_pad="SAME_UPPER")])
def test_conv_transpose_refused(attrs, tmp_path):
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], **attrs)
    model = make_model([node], [("x", np.float32, [1, 2, 3, 4])], [("y", np.float32, None)],
                       {"w": randn(2, 3, 3, 3)})
    with pytest.raises(NotImplementedError, match="ConvTranspose"):
        compile_c(model, tmp_path / "o")


# --- LpPool / GlobalLpPool ----------------------------------------------------------------------
LPPOOL_CASES = [dict(kernel_shape=[3, 3], p=2), dict(kernel_shape=[2, 3], p=1, strides=[2, 1], pads=[1, 0, 1, 2]),
                dict(kernel_shape=[3, 3], p=3, auto_pad="SAME_UPPER", strides=[2, 2]),
                dict(kernel_shape=[2, 2], p=4, dilations=[2, 1], ceil_mode=1, strides=[2, 2])]


def test_lppool(tmp_path):
    nodes = [helper.make_node("LpPool", ["x"], [f"y{k}"], **a) for k, a in enumerate(LPPOOL_CASES)]
    nodes.append(helper.make_node("LpPool", ["x1"], ["z"], kernel_shape=[3], p=2, pads=[1, 1]))
    nodes.append(helper.make_node("LpPool", ["x3"], ["w"], kernel_shape=[2, 2, 2], p=2, strides=[1, 2, 2]))
    check_many(nodes, {"x": randn(2, 3, 7, 8), "x1": randn(1, 2, 9), "x3": randn(1, 2, 4, 5, 6)}, {}, tmp_path,
               rtol=1e-5, atol=1e-5)


GLOBAL_LPPOOL_CASES = [((2, 3, 7), 2), ((1, 4, 5, 6), 1), ((2, 2, 3, 4, 5), 3), ((1, 2, 2, 3, 2, 2), 2),
                       ((3, 1, 1, 1), 4), ((0, 3, 4, 4), 2), ((2, 3, 0, 4), 2)]


def _global_lppool_ref(x, p):
    s = (np.abs(x.astype(np.float64)) ** p).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return s ** (1.0 / p)


def test_global_lppool(tmp_path):
    """GlobalLpPool-22, which neither onnxruntime (opset 2 only) nor onnx.reference runs: C-only
    against numpy float64; spatial ranks 1 to 4, p 1 to 4, an empty batch and an empty window
    (the norm of no elements, 0); large and tiny values (sums in double: no overflow of |x|^p)."""
    feed, nodes, outs = {}, [], []
    for k, (shape, p) in enumerate(GLOBAL_LPPOOL_CASES):
        x = (RNG.standard_normal(shape) * 3).astype(np.float32)
        if k == 1:
            x.reshape(-1)[:3] = [3e38, -1e-30, 0.0]
        feed[f"x{k}"] = x
        nodes.append(helper.make_node("GlobalLpPool", [f"x{k}"], [f"y{k}"], p=p))
        outs.append((f"y{k}", np.float32, None))
    model = make_model(nodes, [(n, np.float32, list(a.shape)) for n, a in feed.items()], outs, opset=22)
    got = compile_c(model, tmp_path / "o").run(None, feed)
    for (shape, p), x, g in zip(GLOBAL_LPPOOL_CASES, feed.values(), got):
        ref = _global_lppool_ref(x, p)
        assert g.shape == ref.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, ref.astype(np.float32), rtol=1e-6, atol=0)


def test_global_lppool_against_onnxruntime_opset2(tmp_path):
    x = RNG.standard_normal((2, 5, 6, 7)).astype(np.float32)
    model = make_model([helper.make_node("GlobalLpPool", ["x"], ["y"], p=3)], [("x", np.float32, [2, 5, 6, 7])],
                       [("y", np.float32, [2, 5, 1, 1])], opset=2)
    np.testing.assert_allclose(compile_c(model, tmp_path / "o").run(None, {"x": x})[0], ort_run(model, {"x": x})[0],
                               rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float16, "bfloat16"])
def test_global_lppool_narrow_types(dtype, tmp_path):
    """float16/bfloat16 through the float32 twin: each output rounded once from float32."""
    import ml_dtypes
    dt = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
    x = RNG.standard_normal((2, 3, 4, 5)).astype(dt)
    model = make_model([helper.make_node("GlobalLpPool", ["x"], ["y"])], [("x", dt, [2, 3, 4, 5])],
                       [("y", dt, [2, 3, 1, 1])], opset=22)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    assert got.dtype == dt
    ref = _global_lppool_ref(x.astype(np.float32), 2).astype(np.float32).astype(dt)
    np.testing.assert_array_equal(got.astype(np.float32), ref.astype(np.float32))


@pytest.mark.parametrize("shape,p,msg", [((2, 3), 2, r"expected rank >= 3"), ((1, 2, 3), 0, r"attribute p is 0")])
def test_global_lppool_invalid(shape, p, msg, tmp_path):
    node = helper.make_node("GlobalLpPool", ["x"], ["y"], p=p, name="glp")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, list(shape))],
                              [helper.make_tensor_value_info("y", 1, list(shape[:2]) + [1] * (len(shape) - 2))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    with pytest.raises(onnxc.ModelError, match=r"node 'glp' \(GlobalLpPool\): .*" + msg):
        onnxc.compile(model, output_dir=tmp_path / "o")
