"""Invalid models (each passes onnx.checker) fail at compile time with a ModelError naming the
node, the op, the offending value and what was expected and found, with and without the
fallback provider; valid models at the edge of each rule still compile and match
onnxruntime; free dims written as -1 are free."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

import onnxc
from helpers import ort_run
from onnxc.errors import ModelError

F, I64 = TP.FLOAT, TP.INT64
R = np.random.default_rng(7)


def rnd(*shape):
    return R.standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=None, opset=18, check=True):
    """inputs: [(name, elem, shape)]; outputs: [(name, elem, rank)] with free dims (so a wrong
    declared shape never masks the node's own problem); inits: {name: array}."""
    g = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, [None] * r) for n, t, r in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    if check:
        onnx.checker.check_model(m)
    return m


def node(op, ins, outs, name, **attrs):
    return helper.make_node(op, ins, outs, name=name, **attrs)


def conv(w, b=None, x=(1, 3, 8, 8), **attrs):
    inits = {"W": w} if b is None else {"W": w, "B": b}
    return model([node("Conv", ["x", "W"] + ([] if b is None else ["B"]), ["y"], "conv1", **attrs)],
                 [("x", F, list(x))], [("y", F, 4)], inits)


def one(op, x_shape, inits, out_rank, ins=None, outs=("y",), name="n1", x_type=F, **attrs):
    ins = ins or ["x"] + list(inits)
    return model([node(op, ins, list(outs), name, **attrs)], [("x", x_type, list(x_shape))],
                 [(o, F if o != "i" else I64, out_rank) for o in outs], inits)


def opset99():
    m = one("Relu", (2, 3), {}, 2)
    m.opset_import[0].version = 99
    return m


def ml_opset99():
    m = one("Relu", (2, 3), {}, 2)
    m.opset_import.append(helper.make_opsetid("ai.onnx.ml", 99))
    return m


def if_model():
    """The invalid MatMul sits in a then-branch whose shapes are known."""
    then = helper.make_graph([node("MatMul", ["x", "W"], ["t"], "inner_mm")], "then_g", [],
                             [helper.make_tensor_value_info("t", F, None)])
    other = helper.make_graph([node("Identity", ["x"], ["e"], "inner_id")], "else_g", [],
                              [helper.make_tensor_value_info("e", F, None)])
    return model([node("If", ["c"], ["y"], "if1", then_branch=then, else_branch=other)],
                 [("x", F, [2, 3]), ("c", TP.BOOL, [])], [("y", F, 2)], {"W": rnd(4, 5)})


def two_bad_nodes():
    return model([node("Add", ["x", "b"], ["s"], "add1"), node("Transpose", ["s"], ["y"], "tr1", perm=[1, 1])],
                 [("x", F, [2, 3])], [("y", F, 2)], {"b": rnd(4)})


# id, builder, words the message must contain (node name, op, value name, expected, found)
INVALID = [
    ("conv_bias_short", lambda: conv(rnd(64, 3, 3, 3), rnd(32)),
     ["'conv1'", "(Conv)", "input 2 'B'", "32 elements", "expected 64"]),
    ("conv_bias_long", lambda: conv(rnd(8, 3, 3, 3), rnd(16)), ["'conv1'", "'B'", "16 elements", "expected 8"]),
    ("conv_w_channels", lambda: conv(rnd(8, 4, 3, 3)), ["'conv1'", "input 1 'W'", "(8, 4, 3, 3)", "= 4, expected 3"]),
    ("conv_w_group", lambda: conv(rnd(8, 3, 3, 3), x=(1, 4, 8, 8), group=2),
     ["'W'", "group 2 = 6", "expected 4"]),
    ("conv_kernel_shape", lambda: conv(rnd(8, 3, 3, 3), kernel_shape=[5, 5]),
     ["'kernel_shape'", "[5, 5]", "expected [3, 3]"]),
    ("conv_transpose_bias", lambda: model(
        [node("ConvTranspose", ["x", "W", "B"], ["y"], "ct1", group=2)], [("x", F, [1, 4, 5, 5])], [("y", F, 4)],
        {"W": rnd(4, 3, 3, 3), "B": rnd(3)}), ["'ct1'", "(ConvTranspose)", "'B'", "3 elements", "expected 6"]),
    ("batchnorm_mean", lambda: model(
        [node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], "bn1")], [("x", F, [1, 4, 2, 2])], [("y", F, 4)],
        {"s": rnd(4), "b": rnd(4), "m": rnd(5), "v": np.ones(4, np.float32)}),
     ["'bn1'", "input 3 'm'", "5 elements", "expected 4"]),
    ("reshape_impossible", lambda: one("Reshape", (2, 3), {"s": np.array([4, 2])}, 2),
     ["'n1'", "(Reshape)", "input 1 's' = [4, 2]", "8 elements", "expected 6"]),
    ("reshape_minus1_indivisible", lambda: one("Reshape", (2, 3), {"s": np.array([4, -1])}, 2),
     ["[4, -1]", "divisor of 6"]),
    ("reshape_two_minus1", lambda: one("Reshape", (2, 3), {"s": np.array([-1, -1])}, 2),
     ["'s' = [-1, -1]", "2 entries -1", "at most one"]),
    ("reshape_below_minus1", lambda: one("Reshape", (2, 3), {"s": np.array([-2, -3])}, 2), ["-3", "dims >= -1"]),
    ("matmul_inner", lambda: one("MatMul", (2, 3), {"W": rnd(4, 5)}, 2),
     ["(MatMul)", "input 0 'x' (2, 3)", "3 columns", "input 1 'W' (4, 5)", "4 rows"]),
    ("matmul_batch", lambda: one("MatMul", (2, 3, 4), {"W": rnd(5, 4, 2)}, 3), ["batch dims", "2 vs 5"]),
    ("gemm_k", lambda: one("Gemm", (2, 3), {"B": rnd(3, 4)}, 2, transB=1), ["(Gemm)", "K = 3", "K = 4"]),
    ("gemm_c_not_unidirectional", lambda: one("Gemm", (2, 3), {"B": rnd(3, 4), "C": rnd(3, 4)}, 2),
     ["input 2 'C'", "(3, 4)", "does not broadcast", "(2, 4)"]),
    ("add_broadcast", lambda: one("Add", (2, 3), {"b": rnd(4)}, 2),
     ["'n1'", "(Add)", "input 0 'x' (2, 3)", "input 1 'b' (4,)", "3 vs 4"]),
    ("where_broadcast", lambda: model([node("Where", ["c", "x", "z"], ["y"], "w1")],
                                      [("c", TP.BOOL, [2, 3]), ("x", F, [2, 3])], [("y", F, 2)], {"z": rnd(3, 3)}),
     ["(Where)", "'z' (3, 3)", "2 vs 3"]),
    ("prelu_slope", lambda: one("PRelu", (2, 3), {"slope": rnd(2)}, 2), ["(PRelu)", "'slope'", "does not broadcast"]),
    ("concat_mismatch", lambda: one("Concat", (2, 3), {"b": rnd(3, 3)}, 2, axis=1),
     ["(Concat)", "input 1 'b'", "(3, 3)", "expected 2 at axis 0"]),
    ("concat_rank", lambda: one("Concat", (2, 3), {"b": rnd(3)}, 2, axis=0), ["rank 1", "expected 2"]),
    ("transpose_perm", lambda: one("Transpose", (2, 3), {}, 2, perm=[0, 0]),
     ["(Transpose)", "'perm' is [0, 0]", "permutation of 0..1"]),
    ("transpose_perm_length", lambda: one("Transpose", (2, 3), {}, 3, perm=[2, 0, 1]), ["[2, 0, 1]", "0..1"]),
    ("slice_axis", lambda: one("Slice", (2, 3), {"st": np.array([0]), "en": np.array([1]), "ax": np.array([5])}, 2),
     ["(Slice)", "input 3 'ax'", "is 5", "[-2, 1]"]),
    ("slice_zero_step", lambda: one("Slice", (2, 3), {"st": np.array([0]), "en": np.array([1]), "ax": np.array([1]),
                                                      "sp": np.array([0])}, 2), ["input 4 'sp'", "0 step"]),
    ("softmax_axis", lambda: one("Softmax", (2, 3), {}, 2, axis=4),
     ["(Softmax)", "'axis' is 4", "[-2, 1]"]),
    ("squeeze_non_one", lambda: one("Squeeze", (2, 3), {"a": np.array([1])}, 1),
     ["(Squeeze)", "has 3 at axis 1", "expected 1"]),
    ("unsqueeze_axis", lambda: one("Unsqueeze", (2, 3), {"a": np.array([7])}, 3), ["(Unsqueeze)", "is 7", "[-3, 2]"]),
    ("expand_shape", lambda: one("Expand", (2, 3), {"s": np.array([2, 4])}, 2), ["(Expand)", "'s'", "3 vs 4"]),
    ("flatten_axis", lambda: one("Flatten", (2, 3), {}, 2, axis=3), ["(Flatten)", "is 3", "[-2, 2]"]),
    ("tile_repeats", lambda: one("Tile", (2, 3), {"r": np.array([2])}, 2), ["(Tile)", "'r'", "expected 2"]),
    ("pad_length", lambda: one("Pad", (2, 3), {"p": np.array([1, 1, 1])}, 2),
     ["(Pad)", "'p'", "3 values", "expected 4"]),
    ("depth_to_space", lambda: one("DepthToSpace", (1, 6, 2, 2), {}, 4, blocksize=2),
     ["(DepthToSpace)", "6 channels", "blocksize^2 = 4"]),
    ("topk_k", lambda: one("TopK", (2, 3), {"k": np.array([5])}, 2, outs=("y", "i")),
     ["(TopK)", "input 1 'k'", "is 5", "at most 3"]),
    ("topk_axis", lambda: one("TopK", (2, 3), {"k": np.array([1])}, 2, outs=("y", "i"), axis=2), ["'axis' is 2"]),
    ("split_sizes", lambda: one("Split", (2, 8), {"s": np.array([3, 9])}, 2, outs=("a", "b"), axis=1),
     ["(Split)", "input 1 's' = [3, 9]", "sums to 12", "expected 8"]),
    ("split_count", lambda: one("Split", (2, 8), {"s": np.array([3, 3, 2])}, 2, outs=("a", "b"), axis=1),
     ["3 sizes", "expected 2"]),
    ("split_uneven", lambda: one("Split", (2, 7), {}, 2, outs=("a", "b"), axis=1, num_outputs=3),
     ["'num_outputs' is 3", "expected 2"]),
    ("gather_oob", lambda: one("Gather", (4, 3), {"i": np.array([0, 7])}, 2),
     ["(Gather)", "input 1 'i'", "index 7", "[-4, 3]"]),
    ("gather_negative_oob", lambda: one("Gather", (4, 3), {"i": np.array([-5])}, 2, axis=0), ["index -5", "[-4, 3]"]),
    ("gather_elements_oob", lambda: one("GatherElements", (2, 3), {"i": np.array([[0, 3], [1, 0]])}, 2, axis=1),
     ["(GatherElements)", "index 3", "[-3, 2]"]),
    ("gather_nd_oob", lambda: one("GatherND", (2, 3), {"i": np.array([[1, 3]])}, 1),
     ["(GatherND)", "index 3", "[-3, 2]"]),
    ("scatter_elements_oob", lambda: one("ScatterElements", (2, 3), {"i": np.array([[0, 2]]), "u": rnd(1, 2)}, 2,
                                         axis=0),
     ["(ScatterElements)", "index 2", "[-2, 1]"]),
    ("scatter_nd_updates", lambda: one("ScatterND", (4, 3), {"i": np.array([[1], [2]]), "u": rnd(2, 4)}, 2),
     ["(ScatterND)", "'u'", "(2, 4)", "expected (2, 3)"]),
    ("reduce_axis", lambda: one("ReduceSum", (2, 3), {"a": np.array([2])}, 2), ["(ReduceSum)", "is 2", "[-2, 1]"]),
    ("argmax_axis", lambda: one("ArgMax", (2, 3), {}, 2, outs=("i",), axis=-3), ["(ArgMax)", "is -3"]),
    ("int32_into_float_matmul", lambda: one("MatMul", (2, 3), {"W": np.ones((3, 4), np.int32)}, 2),
     ["(MatMul)", "input 1 'W' is tensor(int32)", "expected tensor(float)", "input 0 'x'"]),
    ("int64_into_float_concat", lambda: one("Concat", (2,), {"b": np.arange(3)}, 1, axis=0),
     ["(Concat)", "input 1 'b' is tensor(int64)", "expected tensor(float) like input 0 'x'"]),
    ("huge_input_dim", lambda: one("Relu", (1 << 40, 2), {}, 2), ["graph input 'x'", "1099511627776", "2^40"]),
    ("constant_of_shape_4tib", lambda: model(
        [node("ConstantOfShape", ["s"], ["y"], "cos1")], [], [("y", F, 2)], {"s": np.array([1 << 20, 1 << 20])}),
     ["'cos1'", "(ConstantOfShape)", "output 0 'y'", "(1048576, 1048576)", "4.0 TiB", "at most 1.0 TiB"]),
    ("constant_of_shape_negative", lambda: model(
        [node("ConstantOfShape", ["s"], ["y"], "cos1")], [], [("y", F, 2)], {"s": np.array([-3, 2])}),
     ["'cos1'", "input 0 's' = [-3, 2]", "negative"]),
    ("expand_huge", lambda: one("Expand", (2, 1), {"s": np.array([2, 1 << 39])}, 2), ["output 0 'y'", "TiB"]),
    ("opset_99", opset99, ["opset 99", "'ai.onnx'", "at most 28"]),
    ("ml_opset_99", ml_opset99, ["opset 99", "'ai.onnx.ml'"]),
    ("in_subgraph", if_model, ["'inner_mm'", "(MatMul, in subgraph 'then_g')", "3 columns", "4 rows"]),
    ("two_nodes_listed", two_bad_nodes, ["2 problems", "'add1' (Add)", "'tr1' (Transpose)"]),
    # no own rule: onnx's strict inference catches it, confirmed on the node alone
    ("resize_scales_length", lambda: one("Resize", (1, 1, 2, 2), {"r": np.array([], np.float32),
                                                                  "sc": np.array([2, 2], np.float32)}, 4),
     ["'n1'", "(Resize)", "onnx shape inference", "scales"]),
]


def _max_opset():
    return onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("fallback", [True, False], ids=["fallback", "c_only"])
@pytest.mark.parametrize("case", INVALID, ids=[c[0] for c in INVALID])
def test_invalid_model_is_refused_at_compile_time(case, fallback, tmp_path):
    _, build, words = case
    m = build()
    words = [w.replace("at most 28", f"at most {_max_opset()}") for w in words]
    with pytest.raises(ModelError) as e:
        onnxc.compile(m, output_dir=tmp_path / "m", fallback=fallback)
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in: {msg}"
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").glob("*.so"))


def test_every_invalid_model_passes_the_onnx_checker():
    for name, build, _ in INVALID:
        onnx.checker.check_model(build())  # the models are only wrong in ways the checker misses


def test_invalid_static_model_fails_when_the_session_is_made():
    with pytest.raises(ModelError, match="'conv1'.*32 elements, expected 64"):
        onnxc.InferenceSession(conv(rnd(64, 3, 3, 3), rnd(32)).SerializeToString())


def test_input_shapes_bind_an_invalid_shape():
    """Valid with a free dim, invalid once input_shapes makes the inner dims disagree."""
    m = model([node("MatMul", ["x", "W"], ["y"], "mm")], [("x", F, ["N", "K"])], [("y", F, 2)], {"W": rnd(3, 4)})
    with pytest.raises(ModelError, match="'mm'.*5 columns.*3 rows"):
        onnxc.compile(m, input_shapes={"x": [2, 5]})


@pytest.mark.parametrize("shape", [[-2, 3], [1 << 40, 3]])
def test_input_shapes_out_of_range(shape):
    m = model([node("Relu", ["x"], ["y"], "r")], [("x", F, ["N", 3])], [("y", F, 2)])
    with pytest.raises(ModelError, match=r"input_shapes\['x'\].*\[0, 2\^40\)"):
        onnxc.compile(m, input_shapes={"x": shape})


# --- valid models at the edge of the rules: still compile, still match onnxruntime -----------
VALID = [
    ("slice_clamps", lambda: one("Slice", (4, 3), {"st": np.array([-100, 1]), "en": np.array([100, 99]),
                                                   "ax": np.array([0, -1]), "sp": np.array([1, 1])}, 2)),
    ("slice_reverse", lambda: one("Slice", (4, 3), {"st": np.array([99]), "en": np.array([-99]),
                                                    "ax": np.array([0]), "sp": np.array([-2])}, 2)),
    ("gather_negative", lambda: one("Gather", (4, 3), {"i": np.array([-4, 3, -1])}, 2)),
    ("gather_elements_negative", lambda: one("GatherElements", (2, 3), {"i": np.array([[-3, 2], [1, -1]])}, 2, axis=1)),
    ("reshape_zero_copies", lambda: one("Reshape", (2, 3, 4), {"s": np.array([0, -1])}, 2)),
    ("reshape_allowzero", lambda: one("Reshape", (0, 3), {"s": np.array([3, 0])}, 2, allowzero=1)),
    ("split_num_outputs_uneven", lambda: one("Split", (2, 7), {}, 2, outs=("a", "b", "c"), axis=1, num_outputs=3)),
    ("split_zero_size", lambda: one("Split", (2, 5), {"s": np.array([0, 5])}, 2, outs=("a", "b"), axis=1)),
    ("gemm_c_row", lambda: one("Gemm", (2, 3), {"B": rnd(3, 4), "C": rnd(4)}, 2)),
    ("gemm_c_column", lambda: one("Gemm", (2, 3), {"B": rnd(4, 3), "C": rnd(2, 1)}, 2, transB=1)),
    ("matmul_vector", lambda: one("MatMul", (3,), {"W": rnd(2, 3, 4)}, 2)),
    ("matmul_batch_broadcast", lambda: one("MatMul", (2, 1, 3, 4), {"W": rnd(5, 4, 2)}, 4)),
    ("prelu_channel", lambda: one("PRelu", (2, 3, 4), {"slope": rnd(3, 1)}, 3)),
    ("add_three_way", lambda: one("Add", (2, 1, 3), {"b": rnd(4, 1)}, 3)),
    ("expand_with_ones", lambda: one("Expand", (2, 1), {"s": np.array([3, 1, 1])}, 3)),
    ("topk_whole_axis", lambda: one("TopK", (2, 3), {"k": np.array([3])}, 2, outs=("y", "i"))),
    ("pad_negative_crop", lambda: one("Pad", (2, 3), {"p": np.array([0, -1, 1, 0])}, 2)),
    ("conv_group_bias", lambda: conv(rnd(6, 1, 3, 3), rnd(6), x=(1, 3, 5, 5), group=3)),
    ("scatter_nd_negative", lambda: one("ScatterND", (4, 3), {"i": np.array([[-1], [0]]), "u": rnd(2, 3)}, 2)),
    ("concat_empty_input", lambda: one("Concat", (2, 3), {"b": rnd(0, 3)}, 2, axis=0)),
]


@pytest.mark.parametrize("case", VALID, ids=[c[0] for c in VALID])
def test_valid_edge_case_still_compiles(case, tmp_path):
    m = case[1]()
    x = m.graph.input[0].type.tensor_type
    feed = {"x": rnd(*[d.dim_value for d in x.shape.dim])}
    ref = ort_run(m, feed)
    out = onnxc.compile(m, output_dir=tmp_path / "m").run(None, feed)
    for o, r in zip(out, ref):
        assert o.shape == r.shape
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_declared_value_info_onnx_cannot_merge_is_only_a_warning(tmp_path, caplog):
    """onnx's strict inference refuses a declared intermediate shape that disagrees with the
    inferred one; onnxruntime only warns and runs it, and so does onnxc."""
    m = model([node("Relu", ["x"], ["h"], "r1"), node("Neg", ["h"], ["y"], "n1")], [("x", F, [2, 3])], [("y", F, 2)])
    m.graph.value_info.append(helper.make_tensor_value_info("h", F, [2, 4]))
    feed = {"x": rnd(2, 3)}
    ref = ort_run(m, feed)
    out = onnxc.compile(m, output_dir=tmp_path / "m").run(None, feed)
    np.testing.assert_allclose(out[0], ref[0])


# --- free dims written as -1 (Paddle2ONNX, older converters) ------------------------------------
def minus_one_model():
    return model([node("Relu", ["x"], ["h"], "r1"), node("Add", ["h", "b"], ["y"], "a1")],
                 [("x", F, [-1, 3])], [("y", F, 2)], {"b": rnd(3)})


def test_minus_one_dims_are_free_with_input_shapes(tmp_path):
    m = minus_one_model()
    m.graph.output[0].type.tensor_type.shape.dim[0].dim_value = -1
    for n in (2, 5):
        x = rnd(n, 3)
        cm = onnxc.compile(m, input_shapes={"x": [n, 3]}, output_dir=tmp_path / str(n))
        assert cm.get_inputs()[0].shape == [n, 3]
        np.testing.assert_allclose(cm.run(None, {"x": x})[0], ort_run(m, {"x": x})[0], rtol=1e-6)


def test_minus_one_dims_are_free_in_a_session(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path / "cache"))
    m = minus_one_model()
    sess = onnxc.InferenceSession(m.SerializeToString())
    assert not isinstance(sess.get_inputs()[0].shape[0], int)
    for n in (2, 5, 2):
        x = rnd(n, 3)
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], ort_run(m, {"x": x})[0], rtol=1e-6)
    assert len(sess.compiled_models) == 2
    with pytest.raises(onnxc.errors.InputError, match="expected shape"):
        sess.run(None, {"x": rnd(2, 4)})  # the fixed dim is still checked


def test_minus_one_dims_with_input_shapes_in_a_session(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path / "cache"))
    m = minus_one_model()
    sess = onnxc.InferenceSession(m.SerializeToString(), input_shapes={"x": [4, 3]})
    x = rnd(4, 3)
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ort_run(m, {"x": x})[0], rtol=1e-6)


def test_minus_one_dims_without_input_shapes_ask_for_them():
    """Like any free dim: C code needs static shapes, so compile names the value and asks."""
    with pytest.raises(onnxc.errors.UnsupportedError, match="input_shapes"):
        onnxc.compile(minus_one_model(), fallback=False)


def test_declared_output_shape_onnx_cannot_merge_is_only_a_warning(tmp_path):
    m = model([node("Relu", ["x"], ["y"], "r1")], [("x", F, [2, 3])], [("y", F, 2)])
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 4
    x = rnd(2, 3)
    out = onnxc.compile(m, output_dir=tmp_path / "m").run(None, {"x": x})
    np.testing.assert_allclose(out[0], ort_run(m, {"x": x})[0])


def compile_error_in_small_process(m, tmp_path, **options) -> str:
    """onnxc.compile(m) in a child with 8 GiB of address space; returns "Type: message" of what
    it raised. A regression that allocates a huge model's sizes then fails with MemoryError
    there, instead of waking the OOM killer on the test machine (as onnx's data propagation did
    before frontend/onnx_infer.py guarded it)."""
    import json
    import resource
    import subprocess
    import sys
    path = tmp_path / "model.onnx"
    path.write_bytes(m.SerializeToString())
    code = ("import json, sys, onnxc\n"
            "try:\n"
            f"    onnxc.compile({str(path)!r}, output_dir={str(tmp_path / 'm')!r}, **json.loads(sys.argv[1]))\n"
            "    print('compiled')\n"
            "except Exception as e:\n"
            "    print(f'{type(e).__name__}: {e}')\n")
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # noqa: E731
    r = subprocess.run([sys.executable, "-c", code, json.dumps(options)], capture_output=True, text=True,
                       preexec_fn=limit, timeout=600)
    return r.stdout.strip() + "\n" + r.stderr.strip()[-2000:]


def test_arena_beyond_the_limit_is_refused(tmp_path):
    """Three values of 768 GiB each, live at once: each within the per-value limit, together
    beyond it."""
    n = 3 << 36
    m = model([node("Expand", ["x", "s"], ["a"], "e1"), node("Expand", ["x2", "s"], ["b"], "e2"),
               node("Mul", ["a", "b"], ["c"], "m1"), node("ReduceSum", ["c"], ["y"], "r1", keepdims=0)],
              [("x", F, [1]), ("x2", F, [1])], [("y", F, 0)], {"s": np.array([n])})
    out = compile_error_in_small_process(m, tmp_path, opt_level="none", fallback=False)
    assert out.startswith("ModelError") and "arena needs 2.2 TiB" in out and "at most 1.0 TiB" in out, out
    assert "'a' 768.0 GiB" in out and "bad_alloc" not in out, out

