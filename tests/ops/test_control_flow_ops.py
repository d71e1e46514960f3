"""If / Loop / Scan compiled to C, against onnxruntime; each test also asserts where the node ran."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxc
from helpers import make_model, ort_run

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def vi(name, shape, elem=F):
    return helper.make_tensor_value_info(name, elem, shape)


def run_both(model, feed, tmp_path, in_c=(), rtol=1e-5, atol=1e-6):
    """Compile, compare with onnxruntime; ``in_c``: op types that must not be in fallback_nodes."""
    ref = ort_run(model, feed)
    cm = onnxc.compile(model, output_dir=tmp_path)
    out = cm.run(None, feed)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
    fb = {n["op"] for n in cm.fallback_nodes}
    assert not fb & set(in_c), cm.fallback_nodes
    return cm


# --- If ----------------------------------------------------------------------------------------
def _if_model(const_cond=None):
    # branches read outer 'h' (made by a C node) and graph input 'y'; each has local intermediates
    then = helper.make_graph([helper.make_node("Mul", ["h", "y"], ["t1"]),
                              helper.make_node("Relu", ["t1"], ["t2"]),
                              helper.make_node("Add", ["t2", "h"], ["a"])], "then", [], [vi("a", [2, 3])])
    els = helper.make_graph([helper.make_node("Sub", ["h", "y"], ["b"])], "else", [], [vi("b", [2, 3])])
    nodes = [helper.make_node("Tanh", ["x"], ["h"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=els),
             helper.make_node("Sigmoid", ["r"], ["z"])]
    inputs = [("x", np.float32, [2, 3]), ("y", np.float32, [2, 3])]
    inits = {}
    if const_cond is None:
        inputs.append(("cond", np.bool_, []))
    else:
        inits["cond"] = np.array(const_cond)
    return make_model(nodes, inputs, [("z", np.float32, [2, 3])], inits)


def _xy():
    return {"x": rng.standard_normal((2, 3)).astype(np.float32), "y": rng.standard_normal((2, 3)).astype(np.float32)}


@pytest.mark.parametrize("cond", [True, False])
def test_if_runtime_condition_in_c(cond, tmp_path):
    model = _if_model()
    feed = dict(_xy(), cond=np.array(cond))
    cm = run_both(model, feed, tmp_path, in_c=["If"])
    assert not cm.fallback_nodes
    feed["cond"] = np.array(not cond)  # the same build takes the other branch
    ref = ort_run(model, feed)
    np.testing.assert_allclose(cm.run(None, feed)[0], ref[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cond", [True, False])
def test_if_constant_condition_folded(cond, tmp_path):
    cm = run_both(_if_model(cond), _xy(), tmp_path, in_c=["If"])
    assert "If" not in cm.report["op_counts"]


def test_nested_if(tmp_path):
    inner_t = helper.make_graph([helper.make_node("Mul", ["t0", "x"], ["it"])], "it", [], [vi("it", [4])])
    inner_e = helper.make_graph([helper.make_node("Neg", ["t0"], ["ie"])], "ie", [], [vi("ie", [4])])
    then = helper.make_graph([helper.make_node("Add", ["x", "x"], ["t0"]),
                              helper.make_node("If", ["c2"], ["o"], then_branch=inner_t, else_branch=inner_e)],
                             "then", [], [vi("o", [4])])
    els = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [], [vi("e", [4])])
    model = make_model([helper.make_node("If", ["c1"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [4]), ("c1", np.bool_, []), ("c2", np.bool_, [])],
                       [("z", np.float32, [4])])
    x = rng.standard_normal(4).astype(np.float32)
    cm = None
    for c1 in (True, False):
        for c2 in (True, False):
            feed = {"x": x, "c1": np.array(c1), "c2": np.array(c2)}
            if cm is None:
                cm = run_both(model, feed, tmp_path, in_c=["If"])
            np.testing.assert_allclose(cm.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)


def test_if_branch_output_is_a_constant(tmp_path):
    then = helper.make_graph([helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kt", F, [3], [1, 2, 3]))],
                             "then", [], [vi("k", [3])])
    els = helper.make_graph([helper.make_node("Neg", ["x"], ["n"])], "else", [], [vi("n", [3])])
    model = make_model([helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [3]), ("c", np.bool_, [])], [("z", np.float32, [3])])
    for c in (True, False):
        run_both(model, {"x": rng.standard_normal(3).astype(np.float32), "c": np.array(c)},
                 tmp_path / str(c), in_c=["If"])


def test_if_different_branch_shapes_falls_back(tmp_path):
    then = helper.make_graph([helper.make_node("Identity", ["x"], ["a"])], "then", [], [vi("a", [4])])
    els = helper.make_graph([helper.make_node("Slice", ["x", "s", "e"], ["b"])], "else", [], [vi("b", [2])])
    model = make_model([helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=els)],
                       [("x", np.float32, [4]), ("c", np.bool_, [])], [("z", np.float32, None)],
                       {"s": np.array([0], np.int64), "e": np.array([2], np.int64)})
    feed = {"x": rng.standard_normal(4).astype(np.float32), "c": np.array(False)}
    ref = ort_run(model, feed)
    cm = onnxc.compile(model, output_dir=tmp_path)
    np.testing.assert_allclose(cm.run(None, feed)[0], ref[0])
    assert [n["op"] for n in cm.fallback_nodes] == ["If"]


# --- Loop --------------------------------------------------------------------------------------
def ti(name, dtype, shape):
    from helpers import tensor_info
    return tensor_info(name, dtype, shape)


def _loop_model(m_input=False, cond_expr=None, scan=True, swap=False):
    """Carried (a, b); body reads outer 'h' (a C node's output) and the iteration number.
    cond_expr: None -> cond passes through; else body cond = ReduceSum(a) < limit (early exit)."""
    nodes = [helper.make_node("Add", ["a", "h"], ["a2"]),
             helper.make_node("Cast", ["i"], ["fi"], to=F),
             helper.make_node("Mul", ["b", "fi"], ["b2"]),
             helper.make_node("Sub", ["a2", "b2"], ["s"])]
    if cond_expr is None:
        nodes.append(helper.make_node("Identity", ["cin"], ["cout"]))
    else:
        nodes += [helper.make_node("ReduceSum", ["a2"], ["tot"], keepdims=0),
                  helper.make_node("Less", ["tot", "limit"], ["cout"])]
    outs = ["b2", "a2"] if swap else ["a2", "b2"]
    body = helper.make_graph(nodes, "body", [ti("i", np.int64, []), ti("cin", np.bool_, []),
                                             ti("a", np.float32, None), ti("b", np.float32, None)],
                             [ti("cout", np.bool_, []), ti(outs[0], np.float32, None), ti(outs[1], np.float32, None)]
                             + ([ti("s", np.float32, None)] if scan else []))
    graph_nodes = [helper.make_node("Exp", ["x"], ["h"]),
                   helper.make_node("Loop", ["M", "" if cond_expr is None else "c0", "a0", "b0"],
                                    ["af", "bf"] + (["ss"] if scan else []), body=body)]
    inputs = [("x", np.float32, [2, 3]), ("a0", np.float32, [2, 3]), ("b0", np.float32, [2, 3])]
    inits = {}
    if m_input:
        inputs.append(("M", np.int64, []))
    else:
        inits["M"] = np.array(5, np.int64)
    if cond_expr is not None:
        inputs.append(("c0", np.bool_, []))
        inits["limit"] = np.array(cond_expr, np.float32)
    outputs = [("af", np.float32, [2, 3]), ("bf", np.float32, [2, 3])] + ([("ss", np.float32, [5, 2, 3])] if scan else [])
    return make_model(nodes=graph_nodes, inputs=inputs, outputs=outputs, initializers=inits)


def _loop_feed():
    return {k: rng.standard_normal((2, 3)).astype(np.float32) for k in ("x", "a0", "b0")}


@pytest.mark.parametrize("swap", [False, True])
def test_loop_carried_and_scan_outputs_in_c(swap, tmp_path):
    cm = run_both(_loop_model(swap=swap), _loop_feed(), tmp_path, in_c=["Loop"])
    assert not cm.fallback_nodes


@pytest.mark.parametrize("c0", [True, False])
def test_loop_runtime_condition_early_exit(c0, tmp_path):
    model = _loop_model(cond_expr=25.0, scan=False)
    feed = dict(_loop_feed(), c0=np.array(c0))
    feed["a0"] = np.abs(feed["a0"])
    cm = run_both(model, feed, tmp_path, in_c=["Loop"])
    assert not cm.fallback_nodes


def test_loop_scan_outputs_with_runtime_condition_fall_back(tmp_path):
    model = _loop_model(cond_expr=25.0, scan=True)
    cm = onnxc.compile(model, output_dir=tmp_path)
    why = [n["why"] for n in cm.fallback_nodes if n["op"] == "Loop"]
    assert why and "data-dependent length" in why[0]


def test_loop_runtime_trip_count_falls_back(tmp_path):
    model = _loop_model(m_input=True, scan=False)
    feed = dict(_loop_feed(), M=np.array(3, np.int64))
    cm = onnxc.compile(model, output_dir=tmp_path)
    for o, r in zip(cm.run(None, feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)
    assert [n["why"] for n in cm.fallback_nodes] == ["the trip count M is a runtime value"]


# --- Scan --------------------------------------------------------------------------------------
def _scan_model(in_axis=0, in_dir=0, out_axis=0, out_dir=0):
    """State 'sum' += slice; scan output = running sum * outer 'w'."""
    body = helper.make_graph([helper.make_node("Add", ["s_in", "xs"], ["s_out"]),
                              helper.make_node("Mul", ["s_out", "w"], ["y"])], "body",
                             [ti("s_in", np.float32, [3]), ti("xs", np.float32, [3])],
                             [ti("s_out", np.float32, [3]), ti("y", np.float32, [3])])
    node = helper.make_node("Scan", ["s0", "x"], ["sf", "ys"], body=body, num_scan_inputs=1,
                            scan_input_axes=[in_axis], scan_input_directions=[in_dir],
                            scan_output_axes=[out_axis], scan_output_directions=[out_dir])
    xshape = [4, 3] if in_axis == 0 else [3, 4]
    yshape = [4, 3] if out_axis == 0 else [3, 4]
    return make_model([node], [("s0", np.float32, [3]), ("x", np.float32, xshape), ("w", np.float32, [3])],
                      [("sf", np.float32, [3]), ("ys", np.float32, yshape)])


@pytest.mark.parametrize("in_axis,in_dir,out_axis,out_dir", [(0, 0, 0, 0), (1, 1, 0, 0), (0, 0, 1, 1), (1, 0, -1, 0)])
def test_scan_cumulative_sum_in_c(in_axis, in_dir, out_axis, out_dir, tmp_path):
    model = _scan_model(in_axis, in_dir, out_axis, out_dir)
    xshape = (4, 3) if in_axis == 0 else (3, 4)
    feed = {"s0": rng.standard_normal(3).astype(np.float32), "x": rng.standard_normal(xshape).astype(np.float32),
            "w": rng.standard_normal(3).astype(np.float32)}
    cm = run_both(model, feed, tmp_path, in_c=["Scan"])
    assert not cm.fallback_nodes


def test_loop_growing_carried_value_falls_back_unchanged(tmp_path):
    # the carried value grows every iteration: refused, and the body keeps its original types
    body = helper.make_graph([helper.make_node("Identity", ["cin"], ["cout"]),
                              helper.make_node("Concat", ["a", "x"], ["a2"], axis=0)], "body",
                             [ti("i", np.int64, []), ti("cin", np.bool_, []), ti("a", np.float32, None)],
                             [ti("cout", np.bool_, []), ti("a2", np.float32, None)])
    model = make_model([helper.make_node("Loop", ["M", "", "a0"], ["af"], body=body)],
                       [("x", np.float32, [1, 2]), ("a0", np.float32, [1, 2])], [("af", np.float32, [4, 2])],
                       {"M": np.array(3, np.int64)})
    feed = {"x": rng.standard_normal((1, 2)).astype(np.float32), "a0": rng.standard_normal((1, 2)).astype(np.float32)}
    cm = onnxc.compile(model, output_dir=tmp_path)
    np.testing.assert_allclose(cm.run(None, feed)[0], ort_run(model, feed)[0])
    assert [n["op"] for n in cm.fallback_nodes] == ["Loop"]
    assert "shapes must not change" in cm.fallback_nodes[0]["why"]


def test_if_in_c_reads_a_fallback_value(tmp_path):
    # an inverse two-sided DFT has no C kernel (providers/c/misc.py leaves it to the interpreter):
    # its output is made there and read inside the C If
    then = helper.make_graph([helper.make_node("Mul", ["d", "d"], ["a"])], "then", [], [vi("a", [1, 4, 2])])
    els = helper.make_graph([helper.make_node("Neg", ["d"], ["b"])], "else", [], [vi("b", [1, 4, 2])])
    nodes = [helper.make_node("DFT", ["x", "", "ax"], ["d"], onesided=0, inverse=1),
             helper.make_node("If", ["c"], ["z"], then_branch=then, else_branch=els)]
    model = make_model(nodes, [("x", np.float32, [1, 4, 1]), ("c", np.bool_, [])], [("z", np.float32, [1, 4, 2])],
                       {"ax": np.array(1, np.int64)}, opset=20)
    x = rng.standard_normal((1, 4, 1)).astype(np.float32)
    cm = run_both(model, {"x": x, "c": np.array(True)}, tmp_path, in_c=["If"], atol=1e-5)
    assert [n["op"] for n in cm.fallback_nodes] == ["DFT"]
    feed = {"x": x, "c": np.array(False)}
    np.testing.assert_allclose(cm.run(None, feed)[0], ort_run(model, feed)[0], atol=1e-5)


# --- body types from outer constants (ops/control.py) --------------------------------------------
# onnx infers a body without the values of outer constants: axes defined outside the body (as the
# expanded LinearAttention function does) leave the body's shapes, and the node's outputs, unknown
def _outer_axes_scan_model(dtype=np.float32):
    """A small linear attention: state += k v^T, y = q . state, with the Unsqueeze/Squeeze axes
    outer constants; outputs declared without shapes."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    body = helper.make_graph([
        helper.make_node("Cast", ["q"], ["qf"], to=F), helper.make_node("Cast", ["k"], ["kf"], to=F),
        helper.make_node("Cast", ["v"], ["vf"], to=F),
        helper.make_node("Unsqueeze", ["kf", "last"], ["kc"]), helper.make_node("Unsqueeze", ["vf", "second"], ["vr"]),
        helper.make_node("MatMul", ["kc", "vr"], ["kv"]), helper.make_node("Add", ["s_in", "kv"], ["s_out"]),
        helper.make_node("Unsqueeze", ["qf", "second"], ["qr"]), helper.make_node("MatMul", ["qr", "s_out"], ["yr"]),
        helper.make_node("Squeeze", ["yr", "second"], ["yf"]), helper.make_node("CastLike", ["yf", "q"], ["y"])],
        "body", [ti("s_in", np.float32, None), ti("q", dtype, None), ti("k", dtype, None), ti("v", dtype, None)],
        [ti("s_out", np.float32, None), ti("y", dtype, None)])
    nodes = [helper.make_node("Constant", [], ["last"], value=helper.make_tensor("l", TensorProto.INT64, [1], [-1])),
             helper.make_node("Constant", [], ["second"], value=helper.make_tensor("s", TensorProto.INT64, [1], [-2])),
             helper.make_node("Scan", ["s0", "q", "k", "v"], ["sf", "ys"], body=body, num_scan_inputs=3),
             helper.make_node("Transpose", ["ys"], ["z"], perm=[1, 0, 2])]
    model = make_model(nodes, [("s0", np.float32, [2, 4, 5]), ("q", dtype, [6, 2, 4]), ("k", dtype, [6, 2, 4]),
                               ("v", dtype, [6, 2, 5])], [("sf", np.float32, ["a", "b", "c"]), ("z", dtype, ["d", "e", "f"])])
    inferred = onnx.shape_inference.infer_shapes(model)
    ys = next(v for v in inferred.graph.value_info if v.name == "ys")
    assert not ys.type.tensor_type.HasField("shape")  # what onnx leaves
    return model


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_scan_body_with_outer_axes_in_c(dtype, tmp_path):
    from onnxc.frontend.load import load
    model = _outer_axes_scan_model(dtype)
    g = load(model)
    scan = next(n for n in g.nodes if n.op_type == "Scan")
    assert [tuple(o.shape) for o in scan.outputs] == [(2, 4, 5), (6, 2, 5)]
    assert not scan.attrs["body"].outputs[1].is_static  # the first iteration's types are not kept
    feed = {"s0": rng.standard_normal((2, 4, 5)).astype(np.float32)}
    feed.update({k: rng.standard_normal((6, 2, d)).astype(dtype) for k, d in (("q", 4), ("k", 4), ("v", 5))})
    # float16: the body computes in float32 and rounds once, as onnxruntime does
    cm = run_both(model, feed, tmp_path, rtol=1e-3 if dtype == np.float16 else 1e-5, atol=1e-3)
    assert not cm.fallback_nodes


def test_loop_body_with_outer_axes_in_c(tmp_path):
    body = helper.make_graph([helper.make_node("Identity", ["cin"], ["cout"]),
                              helper.make_node("Unsqueeze", ["x", "ax"], ["xu"]),
                              helper.make_node("Add", ["a", "xu"], ["a2"]),
                              helper.make_node("Squeeze", ["a2", "ax"], ["s"])], "body",
                             [ti("i", np.int64, []), ti("cin", np.bool_, []), ti("a", np.float32, None)],
                             [ti("cout", np.bool_, []), ti("a2", np.float32, None), ti("s", np.float32, None)])
    nodes = [helper.make_node("Constant", [], ["ax"], value=helper.make_tensor("t", TensorProto.INT64, [1], [0])),
             helper.make_node("Loop", ["M", "", "a0"], ["af", "ss"], body=body),
             helper.make_node("Relu", ["ss"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [3]), ("a0", np.float32, [1, 3])],
                       [("af", np.float32, ["a", "b"]), ("z", np.float32, ["c", "d"])], {"M": np.array(4, np.int64)})
    feed = {"x": rng.standard_normal(3).astype(np.float32), "a0": rng.standard_normal((1, 3)).astype(np.float32)}
    cm = run_both(model, feed, tmp_path)
    assert not cm.fallback_nodes


def test_if_branches_with_outer_axes_in_c(tmp_path):
    then = helper.make_graph([helper.make_node("Unsqueeze", ["x", "ax"], ["a"])], "then", [], [vi("a", None)])
    els = helper.make_graph([helper.make_node("Neg", ["x"], ["n"]), helper.make_node("Unsqueeze", ["n", "ax"], ["b"])],
                            "else", [], [vi("b", None)])
    nodes = [helper.make_node("Constant", [], ["ax"], value=helper.make_tensor("t", TensorProto.INT64, [1], [1])),
             helper.make_node("If", ["c"], ["r"], then_branch=then, else_branch=els),
             helper.make_node("Relu", ["r"], ["z"])]
    model = make_model(nodes, [("x", np.float32, [2, 3]), ("c", np.bool_, [])], [("z", np.float32, ["a", "b", "c"])])
    for c in (True, False):
        feed = {"x": rng.standard_normal((2, 3)).astype(np.float32), "c": np.array(c)}
        cm = run_both(model, feed, tmp_path / str(c))
        assert not cm.fallback_nodes


def test_loop_outputs_left_unknown_when_carried_shape_changes():
    # a carried value that grows: one iteration's types say nothing of the last one's
    from onnxc.frontend.load import load
    body = helper.make_graph([helper.make_node("Identity", ["cin"], ["cout"]),
                              helper.make_node("Concat", ["a", "x"], ["a2"], axis=0),
                              helper.make_node("Unsqueeze", ["a2", "ax"], ["s"])], "body",
                             [ti("i", np.int64, []), ti("cin", np.bool_, []), ti("a", np.float32, None)],
                             [ti("cout", np.bool_, []), ti("a2", np.float32, None), ti("s", np.float32, None)])
    nodes = [helper.make_node("Constant", [], ["ax"], value=helper.make_tensor("t", TensorProto.INT64, [1], [0])),
             helper.make_node("Loop", ["M", "", "a0"], ["af", "ss"], body=body)]
    model = make_model(nodes, [("x", np.float32, [1, 2]), ("a0", np.float32, [1, 2])],
                       [("af", np.float32, ["a", "b"]), ("ss", np.float32, ["c", "d", "e"])], {"M": np.array(3, np.int64)})
    loop = next(n for n in load(model).nodes if n.op_type == "Loop")
    assert not any(o.is_static for o in loop.outputs), [o.shape for o in loop.outputs]
    assert all(v.shape is None or not v.is_static for v in loop.attrs["body"].outputs[1:])
