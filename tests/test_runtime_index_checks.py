"""Runtime checks on data-dependent indices and values.

An index read from the data that is outside the tensor it addresses (Gather, GatherElements,
GatherND, ScatterElements, Scatter, ScatterND, and the index-like inputs of MaxUnpool, RoiAlign,
TensorScatter, RNN, the losses, Attention, RotaryEmbedding) makes onnxruntime refuse the run
(INVALID_ARGUMENT); a runtime k/depth/size/axis that disagrees with the compiled shapes cannot be
honoured either.  onnxc fails the run the same way: InputError naming the node, the op, the
offending value and where it was read, recorded in the caller's arena (two threads on one module
report their own errors).  In-range indices, negative ones included, still match onnxruntime.
"""
import re
import shutil
import subprocess
import threading

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import compile_c, make_model, ort_run
from onnxc.build import c_compiler

RNG = np.random.default_rng(7)
BAD64 = [16, 1000, 2**40, -17, -2**63]  # on an axis of length 10
BAD32 = [16, 1000, 2**31 - 1, -17, -2**31]  # 2^40 and INT64_MIN do not fit an int32 index


def f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def assert_ort_refuses(model, feed):
    with pytest.raises(Exception, match="INVALID_ARGUMENT|FAIL|out of|invalid"):
        ort_run(model, feed)


# --- the index ops: every bad value, int32 and int64 indices ------------------------------------
# name -> (node attrs, data shape, indices (in range, negatives too), updates shape or None, where the
# bad value goes, axis of length 10 it addresses, opset)
CASES = {
    "Gather_axis0": ("Gather", {"axis": 0}, (10, 4), [[0, -1, 9], [-10, 3, 5]], None, (1, 2), 0, 18),
    "Gather_axis1": ("Gather", {"axis": 1}, (3, 10), [-10, 9, 0, -3], None, (2,), 1, 18),
    "GatherElements": ("GatherElements", {"axis": 0}, (10, 4), [[0, -1, 9, 2], [-10, 3, 5, -5], [1, 1, 7, -2]],
                       None, (2, 1), 0, 18),
    "ScatterElements": ("ScatterElements", {"axis": 1}, (4, 10), [[0, -1], [3, 4], [-10, 9], [5, -4]], (4, 2),
                        (3, 1), 1, 18),
    "ScatterElements_add": ("ScatterElements", {"axis": 1, "reduction": "add"}, (4, 10),
                            [[0, -10], [3, 3], [-1, 9], [5, -4]], (4, 2), (0, 0), 1, 18),
    "Scatter": ("Scatter", {"axis": 0}, (10, 4), [[0, -1, 9, 2], [-9, 3, 5, -5]], (2, 4), (1, 3), 0, 10),
    "GatherND": ("GatherND", {}, (10, 4), [[0, 1], [-1, -4], [9, 3]], None, (1, 0), 0, 18),
    "ScatterND": ("ScatterND", {}, (10, 4), [[0], [-1], [5]], (3, 4), (2, 0), 0, 18),
    "ScatterND_mul": ("ScatterND", {"reduction": "mul"}, (10, 4), [[0], [-10], [0]], (3, 4), (1, 0), 0, 18),
}
INT64_ONLY = {"GatherND", "ScatterND"}  # the spec's index type for them


def _index_model(key, itype):
    op, attrs, dshape, ind, ushape, _, _, opset = CASES[key]
    ind = np.array(ind, itype)
    ins = ["d", "i"] + (["u"] if ushape else [])
    node = helper.make_node(op, ins, ["y"], name=f"{key}_7", **attrs)
    specs = [("d", np.float32, list(dshape)), ("i", itype, list(ind.shape))]
    feed = {"d": f32(*dshape), "i": ind}
    if ushape:
        specs.append(("u", np.float32, list(ushape)))
        feed["u"] = f32(*ushape)
    return make_model([node], specs, [("y", np.float32, None)], opset=opset), feed


@pytest.mark.parametrize("itype", [np.int32, np.int64])
@pytest.mark.parametrize("key", list(CASES))
def test_index_out_of_range(key, itype, tmp_path):
    if itype == np.int32 and CASES[key][0] in INT64_ONLY:
        pytest.skip("indices are int64 by the spec")
    model, feed = _index_model(key, itype)
    op, _, dshape, _, _, at, axis, _ = CASES[key]
    shown = "ScatterElements" if op == "Scatter" else op  # the frontend upgrades opset 10 to 18
    m = compile_c(model, tmp_path / "o")
    for got, want in zip(m.run(None, feed), ort_run(model, feed)):  # in range, negatives wrap
        np.testing.assert_allclose(got, want, rtol=1e-6)
    for bad in (BAD32 if itype == np.int32 else BAD64):
        i = feed["i"].copy()
        i[at] = bad
        bad_feed = dict(feed, i=i)
        assert_ort_refuses(model, bad_feed)
        where = ", ".join(map(str, at))
        with pytest.raises(onnxc.InputError) as e:
            m.run(None, bad_feed)
        msg = str(e.value)
        assert msg == (f"node '{key}_7' ({shown}): index {bad} out of range [-10, 9] on axis {axis} of input 'd' "
                       f"(shape {dshape}), at i[{where}]"), msg
    # the module stays usable after a failed run
    for got, want in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_first_bad_index_is_reported(tmp_path):
    """Two nodes with bad indices: the run stops at the first, the one reported."""
    nodes = [helper.make_node("Gather", ["d", "i"], ["g"], name="first"),
             helper.make_node("GatherElements", ["g", "j"], ["y"], name="second", axis=1)]
    model = make_model(nodes, [("d", np.float32, [10, 4]), ("i", np.int64, [3]), ("j", np.int64, [3, 2])],
                       [("y", np.float32, None)])
    m = compile_c(model, tmp_path / "o")
    feed = {"d": f32(10, 4), "i": np.array([1, 2, 3], np.int64), "j": np.array([[0, 3]] * 3, np.int64)}
    np.testing.assert_array_equal(m.run(None, feed)[0], ort_run(model, feed)[0])
    with pytest.raises(onnxc.InputError, match=r"^node 'second' \(GatherElements\): index 4 .* at j\[1, 1\]$"):
        m.run(None, dict(feed, j=np.array([[0, 3], [1, 4], [0, 0]], np.int64)))
    with pytest.raises(onnxc.InputError, match=r"^node 'first' \(Gather\): index 10 .* at i\[2\]$"):
        m.run(None, dict(feed, i=np.array([1, 2, 10], np.int64), j=np.array([[0, 9]] * 3, np.int64)))


@pytest.mark.parametrize("op", ["Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND"])
def test_constant_indices(op, tmp_path):
    """Constant indices in range need no runtime check (none is compiled in); out of range the
    model is invalid: a ModelError at compile time naming the node and the index (issue 11 §3)."""
    key = {"Gather": "Gather_axis0", "GatherElements": "GatherElements", "GatherND": "GatherND",
           "ScatterElements": "ScatterElements", "ScatterND": "ScatterND"}[op]
    _, attrs, dshape, ind, ushape, at, _, _ = CASES[key]
    for bad in (False, True):
        i = np.array(ind, np.int64)
        if bad:
            i[at] = 10
        ins = ["d", "i"] + (["u"] if ushape else [])
        specs = [("d", np.float32, list(dshape))] + ([("u", np.float32, list(ushape))] if ushape else [])
        feed = {"d": f32(*dshape)} | ({"u": f32(*ushape)} if ushape else {})
        model = make_model([helper.make_node(op, ins, ["y"], name="const_idx", **attrs)], specs,
                           [("y", np.float32, None)], {"i": i})
        if bad:
            with pytest.raises(onnxc.ModelError, match=r"node 'const_idx' .*index 10\b"):
                compile_c(model, tmp_path / str(bad))
        else:
            m = compile_c(model, tmp_path / str(bad))
            assert m.manifest["checks"] == [] and m.manifest["error_offset"] is None
            np.testing.assert_allclose(m.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)


# --- threads: each arena reports its own error ---------------------------------------------------
def test_two_threads_report_their_own_errors(tmp_path):
    model, feed = _index_model("Gather_axis0", np.int64)
    m = compile_c(model, tmp_path / "o")
    want = ort_run(model, feed)[0]
    rounds, barrier, problems = 300, threading.Barrier(3), []

    def good():
        barrier.wait()
        for _ in range(rounds):
            out = m.run(None, feed)[0]
            if not np.array_equal(out, want):
                problems.append("a good run returned wrong values")

    def bad(value, at):
        i = feed["i"].copy()
        i[at] = value
        barrier.wait()
        for _ in range(rounds):
            try:
                m.run(None, dict(feed, i=i))
                problems.append(f"index {value} was not refused")
            except onnxc.InputError as e:
                expect = (f"index {value} out of range [-10, 9] on axis 0 of input 'd' (shape (10, 4)), "
                          f"at i[{at[0]}, {at[1]}]")
                if not str(e).endswith(expect):
                    problems.append(f"thread with index {value} got: {e}")
    threads = [threading.Thread(target=good), threading.Thread(target=bad, args=(16, (0, 1))),
               threading.Thread(target=bad, args=(-2**63, (1, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems[:5]


# --- subgraphs -------------------------------------------------------------------------------------
def _loop_model():
    """acc += Gather(d, i) three times, in a Loop body reading the outer d and i."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["d", "i"], ["g"], name="body_gather"),
         helper.make_node("Add", ["acc", "g"], ["acc_out"]),
         helper.make_node("Identity", ["cond"], ["cond_out"])],
        "body",
        [helper.make_tensor_value_info("it", 7, []), helper.make_tensor_value_info("cond", 9, []),
         helper.make_tensor_value_info("acc", 1, [4])],
        [helper.make_tensor_value_info("cond_out", 9, []), helper.make_tensor_value_info("acc_out", 1, [4])])
    loop = helper.make_node("Loop", ["M", "c", "acc0"], ["acc"], name="the_loop", body=body)
    return make_model([loop], [("d", np.float32, [10, 4]), ("i", np.int64, []), ("acc0", np.float32, [4])],
                      [("acc", np.float32, [4])], {"M": np.array(3, np.int64), "c": np.array(True)})


def _if_model():
    then = helper.make_graph([helper.make_node("GatherND", ["d", "i"], ["y_then"], name="then_gathernd")], "then", [],
                             [helper.make_tensor_value_info("y_then", 1, [2, 4])])
    other = helper.make_graph([helper.make_node("Identity", ["z"], ["y_else"])], "else", [],
                              [helper.make_tensor_value_info("y_else", 1, [2, 4])])
    node = helper.make_node("If", ["c"], ["y"], name="the_if", then_branch=then, else_branch=other)
    return make_model([node], [("c", np.bool_, []), ("d", np.float32, [10, 4]), ("i", np.int64, [2, 1]),
                               ("z", np.float32, [2, 4])], [("y", np.float32, [2, 4])])


def test_bad_index_in_loop_body(tmp_path):
    model = _loop_model()
    m = compile_c(model, tmp_path / "o")  # C only: the Loop and its body are compiled
    feed = {"d": f32(10, 4), "i": np.array(-3, np.int64), "acc0": f32(4)}
    np.testing.assert_allclose(m.run(None, feed)[0], ort_run(model, feed)[0], rtol=1e-6)
    for bad in BAD64:
        bad_feed = dict(feed, i=np.array(bad, np.int64))
        assert_ort_refuses(model, bad_feed)
        with pytest.raises(onnxc.InputError) as e:
            m.run(None, bad_feed)
        assert str(e.value) == (f"node 'body_gather' (Gather) in the body of Loop 'the_loop': index {bad} out of "
                                "range [-10, 9] on axis 0 of input 'd' (shape (10, 4))")


def test_bad_index_in_scan_body(tmp_path):
    """acc += d[id] for each id of a scanned sequence: the bad id stops the Scan."""
    body = helper.make_graph(
        [helper.make_node("Gather", ["d", "id"], ["g"], name="scan_gather"),
         helper.make_node("Add", ["acc", "g"], ["acc_out"]), helper.make_node("Identity", ["g"], ["row"])],
        "body", [helper.make_tensor_value_info("acc", 1, [4]), helper.make_tensor_value_info("id", 7, [])],
        [helper.make_tensor_value_info("acc_out", 1, [4]), helper.make_tensor_value_info("row", 1, [4])])
    scan = helper.make_node("Scan", ["acc0", "ids"], ["acc", "rows"], name="the_scan", body=body, num_scan_inputs=1)
    model = make_model([scan], [("d", np.float32, [10, 4]), ("acc0", np.float32, [4]), ("ids", np.int64, [5])],
                       [("acc", np.float32, [4]), ("rows", np.float32, [5, 4])])
    m = compile_c(model, tmp_path / "o")
    feed = {"d": f32(10, 4), "acc0": f32(4), "ids": np.array([0, -1, 9, -10, 4], np.int64)}
    for got, want in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    bad_feed = dict(feed, ids=np.array([0, -1, 9, -2**63, 4], np.int64))
    assert_ort_refuses(model, bad_feed)
    with pytest.raises(onnxc.InputError) as e:
        m.run(None, bad_feed)
    assert str(e.value) == ("node 'scan_gather' (Gather) in the body of Scan 'the_scan': index -9223372036854775808 "
                            "out of range [-10, 9] on axis 0 of input 'd' (shape (10, 4))")


def test_bad_index_in_if_branch(tmp_path):
    model = _if_model()
    m = compile_c(model, tmp_path / "o")
    feed = {"c": np.array(True), "d": f32(10, 4), "i": np.array([[9], [-10]], np.int64), "z": f32(2, 4)}
    np.testing.assert_array_equal(m.run(None, feed)[0], ort_run(model, feed)[0])
    bad_feed = dict(feed, i=np.array([[9], [1000]], np.int64))
    assert_ort_refuses(model, bad_feed)
    with pytest.raises(onnxc.InputError, match=re.escape(
            "node 'then_gathernd' (GatherND) in the then_branch of If 'the_if': index 1000 out of range [-10, 9] "
            "on axis 0 of input 'd' (shape (10, 4)), at i[1, 0]")):
        m.run(None, bad_feed)
    # the branch not taken reads nothing: no error, as in onnxruntime
    out = m.run(None, dict(bad_feed, c=np.array(False)))[0]
    np.testing.assert_array_equal(out, feed["z"])


def test_bad_index_with_fallback_partitions(tmp_path):
    """C partitions called one by one from Python (a node in the fallback interpreter between
    them) report their failed check too."""
    nodes = [helper.make_node("Gather", ["d", "i"], ["g"], name="c_gather"),
             helper.make_node("NonZero", ["g"], ["nz0"]),
             helper.make_node("Abs", ["nz0"], ["nz"]),  # reads a data-dependent shape: fallback
             helper.make_node("Gather", ["d", "j"], ["y"], name="c_gather_2")]
    model = make_model(nodes, [("d", np.float32, [10, 4]), ("i", np.int64, [2]), ("j", np.int64, [2])],
                       [("nz", np.int64, None), ("y", np.float32, None)])
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    assert m.fallback_nodes
    feed = {"d": f32(10, 4), "i": np.array([1, -1], np.int64), "j": np.array([0, 2], np.int64)}
    for got, want in zip(m.run(None, feed), ort_run(model, feed)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(onnxc.InputError, match=r"^node 'c_gather_2' \(Gather\): index -11 .* at j\[0\]$"):
        m.run(None, dict(feed, j=np.array([-11, 0], np.int64)))


# --- the C API: the record in the caller's arena, as model.h documents ------------------------------
def test_c_api_error_record(tmp_path):
    model, feed = _index_model("GatherElements", np.int64)
    m = compile_c(model, tmp_path / "o")
    header = (tmp_path / "o" / "model.h").read_text()
    offset = int(re.search(r"#define MODEL_ERROR_OFFSET (\d+)", header).group(1))
    assert "check 0: node 'GatherElements_7' (GatherElements): index {value} out of range [-10, 9]" in header
    assert m.manifest["error_offset"] == offset and len(m.manifest["checks"]) == 1
    lib, ffi = m._lib, m._ffi
    arena = np.zeros(lib.model_arena_bytes() + 64, np.uint8)
    start = (-arena.ctypes.data) % 64
    i = feed["i"].copy()
    i[1, 3] = 1000
    y = np.empty((3, 4), np.float32)
    ins = ffi.new("void*[]", [ffi.cast("void*", a.ctypes.data) for a in (feed["d"], i)])
    outs = ffi.new("void*[]", [ffi.cast("void*", y.ctypes.data)])
    rc = lib.model_run(m._wptr, ffi.cast("void*", arena.ctypes.data + start), ins, outs)
    assert rc == 5  # ONNXC_ERR_INDEX
    check, value, pos, status = arena[start + offset:start + offset + 32].view(np.int64)
    assert (check, value, pos, status) == (0, 1000, 7, 5)


@pytest.mark.skipif(shutil.which("cmake") is None or shutil.which(c_compiler()) is None, reason="no cmake / C compiler")
def test_standalone_build_reports_the_check(tmp_path):
    """`--emit c`: the example program, built with CMake alone, reports the failed check from the
    arena (model.h's record) and still runs good inputs."""
    from onnxc.emit_c import emit_c
    emb = np.arange(40, dtype=np.float32).reshape(10, 4)
    model = make_model([helper.make_node("Gather", ["emb", "ids"], ["y"], name="embed")], [("ids", np.int64, [3])],
                       [("y", np.float32, [3, 4])], {"emb": emb}, name="emb")
    e = emit_c(model, tmp_path / "emb", prefix="emb")
    for step in (["cmake", "-S", str(e.path), "-B", str(tmp_path / "b"), "-DONNXC_THREADS=OFF"],
                 ["cmake", "--build", str(tmp_path / "b"), "-j", "2"]):
        r = subprocess.run(step, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    exe, weights = str(tmp_path / "b" / "emb_example"), str(e.path / "weights.bin")
    for ids, rc in (([1, -1, 3], 0), ([1, 16, 3], 1)):
        np.array(ids, np.int64).tofile(tmp_path / "ids.bin")
        r = subprocess.run([exe, weights, str(tmp_path / "ids.bin"), str(tmp_path / "y.bin")], capture_output=True,
                           text=True)
        assert r.returncode == rc, r.stderr
        if rc == 0:
            np.testing.assert_array_equal(np.fromfile(tmp_path / "y.bin", np.float32).reshape(3, 4), emb[ids])
    assert "failed with status 5" in r.stderr and "check 0 failed (value 16 at position 1" in r.stderr, r.stderr
    header = (e.path / "emb.h").read_text()
    assert "check 0: node 'embed' (Gather): index {value} out of range [-10, 9]" in header


# --- the other runtime values: one module, the node named ------------------------------------------
def _value_cases():
    """(name, model, good feed, bad feed, message regex, whether onnxruntime refuses the bad feed:
    it does for every index; a k/depth/size that disagrees with the declared output shape only
    changes the shape of its output)."""
    cases = []
    x = f32(3, 6)
    m = make_model([helper.make_node("TopK", ["x", "k"], ["v", "ix"], name="topk")],
                   [("x", np.float32, [3, 6]), ("k", np.int64, [1])],
                   [("v", np.float32, [3, 2]), ("ix", np.int64, [3, 2])])
    cases.append(("TopK", m, {"x": x, "k": np.array([2], np.int64)}, {"x": x, "k": np.array([7], np.int64)},
                  r"^node 'topk' \(TopK\): k = 7 disagrees with the compiled output shape \(3, 2\)", True))
    m = make_model([helper.make_node("OneHot", ["i", "depth", "vals"], ["h"], name="onehot")],
                   [("i", np.int64, [3]), ("depth", np.int64, [])], [("h", np.float32, [3, 10])],
                   {"vals": np.array([0, 1], np.float32)})
    i = np.array([0, 16, -17], np.int64)  # out of [-depth, depth-1]: all off_value, valid
    cases.append(("OneHot", m, {"i": i, "depth": np.array(10, np.int64)}, {"i": i, "depth": np.array(12, np.int64)},
                  r"^node 'onehot' \(OneHot\): depth 12 disagrees with the compiled", False))
    m = make_model([helper.make_node("Range", ["a", "b", "s"], ["r"], name="range")],
                   [("a", np.int64, []), ("b", np.int64, []), ("s", np.int64, [])], [("r", np.int64, [5])])
    sc = lambda v: np.array(v, np.int64)  # noqa: E731
    cases.append(("Range", m, {"a": sc(0), "b": sc(10), "s": sc(2)}, {"a": sc(0), "b": sc(10), "s": sc(3)},
                  r"^node 'range' \(Range\): element count 4 .* disagrees with the compiled output shape \(5,\)",
                  False))
    m = make_model([helper.make_node("CumSum", ["x", "ax"], ["y"], name="cumsum")],
                   [("x", np.float32, [3, 6]), ("ax", np.int64, [])], [("y", np.float32, [3, 6])])
    cases.append(("CumSum", m, {"x": x, "ax": sc(-1)}, {"x": x, "ax": sc(2)},
                  r"^node 'cumsum' \(CumSum\): axis 2 out of range \[-2, 1\] for input 'x' of rank 2$", True))
    m = make_model([helper.make_node("TensorScatter", ["c", "u", "w"], ["y"], name="tscatter", axis=1)],
                   [("c", np.float32, [2, 10, 3]), ("u", np.float32, [2, 2, 3]), ("w", np.int64, [2])],
                   [("y", np.float32, None)], opset=24)
    feed = {"c": f32(2, 10, 3), "u": f32(2, 2, 3), "w": np.array([8, 0], np.int64)}
    cases.append(("TensorScatter", m, feed, dict(feed, w=np.array([0, 9], np.int64)),
                  r"^node 'tscatter' \(TensorScatter\): write index 9 out of range \[0, 8\] .* at w\[1\]$", True))
    m = make_model([helper.make_node("MaxUnpool", ["x", "i"], ["y"], name="unpool", kernel_shape=[2, 2],
                                     strides=[2, 2])],
                   [("x", np.float32, [1, 1, 2, 2]), ("i", np.int64, [1, 1, 2, 2])], [("y", np.float32, None)])
    feed = {"x": f32(1, 1, 2, 2), "i": np.array([0, 5, 10, 15], np.int64).reshape(1, 1, 2, 2)}
    cases.append(("MaxUnpool", m, feed, dict(feed, i=np.array([0, 5, 16, 15], np.int64).reshape(1, 1, 2, 2)),
                  r"^node 'unpool' \(MaxUnpool\): index 16 out of range \[0, 15\] .* at i\[0, 0, 1, 0\]$", True))
    m = make_model([helper.make_node("RoiAlign", ["x", "r", "b"], ["y"], name="roi", output_height=2,
                                     output_width=2)],
                   [("x", np.float32, [2, 1, 4, 4]), ("r", np.float32, [2, 4]), ("b", np.int64, [2])],
                   [("y", np.float32, None)])
    feed = {"x": f32(2, 1, 4, 4), "r": np.array([[0, 0, 2, 2], [1, 0, 3, 3]], np.float32),
            "b": np.array([1, 0], np.int64)}
    cases.append(("RoiAlign", m, feed, dict(feed, b=np.array([0, -1], np.int64)),
                  r"^node 'roi' \(RoiAlign\): batch index -1 out of range \[0, 1\] .* at b\[1\]$", True))
    m = make_model([helper.make_node("RNN", ["x", "w", "r", "", "s"], ["y"], name="rnn", hidden_size=2)],
                   [("x", np.float32, [3, 2, 4]), ("w", np.float32, [1, 2, 4]), ("r", np.float32, [1, 2, 2]),
                    ("s", np.int32, [2])], [("y", np.float32, None)])
    feed = {"x": f32(3, 2, 4), "w": f32(1, 2, 4), "r": f32(1, 2, 2), "s": np.array([3, 1], np.int32)}
    cases.append(("RNN", m, feed, dict(feed, s=np.array([3, 4], np.int32)),
                  r"^node 'rnn' \(RNN\): sequence length 4 out of range \[0, 3\] .* at s\[1\]$", True))
    m = make_model([helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"], ["y"], name="nll", ignore_index=-100)],
                   [("x", np.float32, [3, 10]), ("t", np.int64, [3])], [("y", np.float32, None)])
    feed = {"x": f32(3, 10), "t": np.array([0, -100, 9], np.int64)}
    cases.append(("NLL", m, feed, dict(feed, t=np.array([0, 16, 9], np.int64)),
                  r"^node 'nll' \(NegativeLogLikelihoodLoss\): target 16 out of range \[0, 9\] .* at t\[1\]$", True))
    q = f32(1, 1, 2, 4)
    m = make_model([helper.make_node("Attention", ["q", "k", "v", "", "", "", "n"], ["y"], name="attn")],
                   [("q", np.float32, [1, 1, 2, 4]), ("k", np.float32, [1, 1, 2, 4]), ("v", np.float32, [1, 1, 2, 4]),
                    ("n", np.int64, [1])], [("y", np.float32, None)], opset=24)
    feed = {"q": q, "k": f32(1, 1, 2, 4), "v": f32(1, 1, 2, 4), "n": np.array([1], np.int64)}
    cases.append(("Attention", m, feed, dict(feed, n=np.array([5], np.int64)),
                  r"^node 'attn' \(Attention\): nonpad_kv_seqlen 5 out of range \[0, 2\] .* at n\[0\]$", True))
    m = make_model([helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], name="rope")],
                   [("x", np.float32, [1, 2, 3, 8]), ("cos", np.float32, [10, 4]), ("sin", np.float32, [10, 4]),
                    ("pos", np.int64, [1, 3])], [("y", np.float32, None)], opset=23)
    feed = {"x": f32(1, 2, 3, 8), "cos": f32(10, 4), "sin": f32(10, 4), "pos": np.array([[0, 9, 4]], np.int64)}
    cases.append(("RotaryEmbedding", m, feed, dict(feed, pos=np.array([[0, 10, 4]], np.int64)),
                  r"^node 'rope' \(RotaryEmbedding\): position id 10 out of range \[0, 9\] .* at pos\[0, 1\]$", True))
    return cases


VALUE_CASES = {c[0]: c[1:] for c in _value_cases()}


@pytest.mark.parametrize("name", list(VALUE_CASES))
def test_runtime_value_names_node(name, tmp_path):
    model, good, bad, pattern, ort_refuses = VALUE_CASES[name]
    m = compile_c(model, tmp_path / "o")
    for got, want in zip(m.run(None, good), ort_run(model, good)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if ort_refuses:
        assert_ort_refuses(model, bad)
    with pytest.raises(onnxc.InputError, match=pattern):
        m.run(None, bad)


def test_loss_target_outside_classes_is_refused(tmp_path):
    """The spec leaves a target outside [0, C) (other than ignore_index) undefined; onnxruntime
    wraps [-C, -1] like an index and refuses the rest.  onnxc refuses them all: neither answer
    for -1 is right."""
    model, good = VALUE_CASES["NLL"][:2]
    m = compile_c(model, tmp_path / "o")
    with pytest.raises(onnxc.InputError, match=r"target -1 out of range \[0, 9\]"):
        m.run(None, dict(good, t=np.array([0, -1, 9], np.int64)))
