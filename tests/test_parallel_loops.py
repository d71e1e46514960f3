"""Generated elementwise loops split into thread-pool tasks (codegen/loops.py pooled_loop): the
elementwise ops and onnxc.ElementwiseChain above POOL_MIN output elements run as a file-scope
task function through onnxc_parallel_for; results at 2 threads are bit-identical to 1 thread and
match onnxruntime, including a partial last task; small loops stay inline and serial."""
import re

import numpy as np
import pytest
from onnx import helper

from helpers import make_model, ort_run
from onnxc.codegen import loops

RNG = np.random.default_rng(3)
F = np.float32


def rand(*shape):
    return RNG.standard_normal(shape).astype(F)


def _compile(model, out, level="none"):
    import onnxc
    onnxc.compile(model, output_dir=out, opt_level=level, fallback=False)
    return (out / "model.c").read_text()


def _run_both(out, feed):
    import onnxc
    r1 = onnxc.load(out, num_threads=1).run(None, feed)
    r2 = onnxc.load(out, num_threads=2).run(None, feed)
    for _ in range(3):  # several runs: the worker is awake for some, asleep for others
        r2 = onnxc.load(out, num_threads=2).run(None, feed)
        for a, b in zip(r1, r2):
            np.testing.assert_array_equal(a, b)
    return r1


def _tasks(code):
    """Task counts of the pooled loops in the generated C."""
    return [int(n) for n in re.findall(r"onnxc_parallel_for\((\d+), 1, onnxc_loop", code)]


def test_flat_loop_partial_last_task(tmp_path):
    # 21000 elements, one flat loop: tasks of POOL_TASK elements, the last one 520
    shape = (7, 3, 1000)
    assert loops.POOL_MIN <= 21000 and 21000 % loops.POOL_TASK
    model = make_model([helper.make_node("Add", ["x", "y"], ["a"]), helper.make_node("Tanh", ["a"], ["z"])],
                       [("x", F, list(shape)), ("y", F, list(shape))], [("z", F, list(shape))])
    feed = {"x": rand(*shape), "y": rand(*shape)}
    code = _compile(model, tmp_path / "m")
    assert _tasks(code) == [-(-21000 // loops.POOL_TASK)] * 2
    assert "ONNXC_OMP_FOR" not in code
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_broadcast_loop_split_on_outer_dim(tmp_path):
    # [9, 3, 700] * [3, 1]: the nest stays 3-D (the bias breaks the merge), 2 rows of 2100 per
    # task, 5 tasks, the last with one row
    model = make_model([helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Sub", ["m", "b"], ["z"])],
                       [("x", F, [9, 3, 700]), ("s", F, [3, 1]), ("b", F, [700])], [("z", F, [9, 3, 700])])
    feed = {"x": rand(9, 3, 700), "s": rand(3, 1), "b": rand(700)}
    code = _compile(model, tmp_path / "m")
    assert _tasks(code) == [5, 5]
    assert re.search(r"const int64_t b0 = t0 \* 2, e0 = t1 \* 2 < 9 \? t1 \* 2 : 9;", code)
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_int_and_bool_loops(tmp_path):
    # integer division guards and a comparison (bool output) through the task function
    shape = [5, 4100]
    model = make_model([helper.make_node("Div", ["p", "q"], ["d"]), helper.make_node("Greater", ["p", "q"], ["g"])],
                       [("p", np.int32, shape), ("q", np.int32, shape)],
                       [("d", np.int32, shape), ("g", np.bool_, shape)])
    feed = {"p": RNG.integers(-1000, 1000, shape).astype(np.int32),
            "q": RNG.integers(1, 50, shape).astype(np.int32)}
    code = _compile(model, tmp_path / "m")
    assert _tasks(code) == [-(-20500 // loops.POOL_TASK)] * 2  # same shapes: one flat loop each
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_array_equal(o, r)


def test_elementwise_chain_pooled(tmp_path):
    # at extended the four ops become one ElementwiseChain with a per-channel scale: one pooled
    # loop with two outputs (a chain intermediate that is also a graph output)
    shape = [2, 12, 30, 30]
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "y"], ["a"]),
             helper.make_node("Sigmoid", ["a"], ["g"]), helper.make_node("Mul", ["a", "g"], ["z"])]
    model = make_model(nodes, [("x", F, shape), ("y", F, shape)], [("z", F, shape), ("a", F, shape)],
                       {"s": rand(12, 1, 1)})
    feed = {"x": rand(*shape), "y": rand(*shape)}
    code = _compile(model, tmp_path / "m", level="extended")
    assert "ElementwiseChain" in code and len(_tasks(code)) == 1
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_small_loops_stay_inline(tmp_path):
    shape = [4, 1000]  # below POOL_MIN
    model = make_model([helper.make_node("Relu", ["x"], ["z"])], [("x", F, shape)], [("z", F, shape)])
    code = _compile(model, tmp_path / "m")
    assert "onnxc_parallel_for" not in code and "onnxc_loop" not in code
    feed = {"x": rand(*shape)}
    np.testing.assert_array_equal(_run_both(tmp_path / "m", feed)[0], np.maximum(feed["x"], 0))


@pytest.mark.parametrize("shape", [[2, 3000], [1, 1, 20000]])
def test_outer_dim_too_short_or_flat(tmp_path, shape):
    # [2, 3000] is below POOL_MIN: inline; [1, 1, 20000] coalesces to one flat loop: 5 tasks
    model = make_model([helper.make_node("Neg", ["x"], ["z"])], [("x", F, shape)], [("z", F, shape)])
    code = _compile(model, tmp_path / "m")
    total = int(np.prod(shape))
    assert _tasks(code) == ([-(-total // loops.POOL_TASK)] if total >= loops.POOL_MIN else [])
    feed = {"x": rand(*shape)}
    np.testing.assert_array_equal(_run_both(tmp_path / "m", feed)[0], -feed["x"])


@pytest.mark.parametrize("fused", [False, True])
def test_grouped_pointwise_conv_groups_as_tasks(tmp_path, fused):
    """conv_ref.c: a 1x1 grouped Conv above CONV_GROUP_PARALLEL_MIN_MACS runs its (image, group)
    GEMMs as pool tasks (2 images x 3 groups: 6 tasks, an odd split for 2 threads); at level
    "none" it stays a plain Conv (onnxc_conv), at "extended" Conv + Add + Relu become
    FusedConv (the epilogue inside each task).  Bit-identical at 1 and 2 threads."""
    n, c, m, hw, g = 2, 96, 96, 20, 3  # 96 * 32 * 400 * 2 = 2.5M multiply-adds
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=g)]
    outs = [("c", F, [n, m, hw, hw])]
    if fused:
        nodes += [helper.make_node("Add", ["c", "z"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
        outs = [("y", F, [n, m, hw, hw])]
    ins = [("x", F, [n, c, hw, hw])] + ([("z", F, [n, m, hw, hw])] if fused else [])
    model = make_model(nodes, ins, outs, {"w": rand(m, c // g, 1, 1) * 0.2, "b": rand(m)})
    feed = {"x": rand(n, c, hw, hw)}
    if fused:
        feed["z"] = rand(n, m, hw, hw)
    code = _compile(model, tmp_path / "m", level="extended" if fused else "none")
    assert ("onnxc_conv_fused(" if fused else "onnxc_conv(") in code
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m, k, n", [(64, 96, 128), (1, 512, 600), (37, 100, 70)])
def test_gemm_between_old_and_new_split_threshold(tmp_path, m, k, n):
    """sgemm_driver.c splits from 2 * SGEMM_PARALLEL_MIN_MACS (512K) on 2 threads: a 786K MAC
    MatMul (grid), a 307K MAC GEMV with packed B (column groups) split now; 259K stays serial.
    Either way 1 and 2 threads give the same bits."""
    model = make_model([helper.make_node("MatMul", ["a", "b"], ["y"])], [("a", F, [m, k])], [("y", F, [m, n])],
                       {"b": rand(k, n)})
    feed = {"a": rand(m, k)}
    _compile(model, tmp_path / "m")
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)


def test_pooled_loops_inside_if_branches(tmp_path):
    """Branch subgraphs emit their task functions into the same file (SubContext shares the
    helpers); the same node index in both branches gets distinct functions (body hash)."""
    shape = [4, 5000]

    def vi(name):
        return helper.make_tensor_value_info(name, 1, shape)
    then = helper.make_graph([helper.make_node("Mul", ["h", "y"], ["a"])], "then", [], [vi("a")])
    els = helper.make_graph([helper.make_node("Sub", ["h", "y"], ["b"])], "else", [], [vi("b")])
    nodes = [helper.make_node("Tanh", ["x"], ["h"]),
             helper.make_node("If", ["cond"], ["r"], then_branch=then, else_branch=els)]
    model = make_model(nodes, [("x", F, shape), ("y", F, shape), ("cond", np.bool_, [])], [("r", F, shape)])
    code = _compile(model, tmp_path / "m")
    assert len(_tasks(code)) == 3 and len(set(re.findall(r"static void (onnxc_loop\w+)", code))) == 3
    for cond in (True, False):
        feed = {"x": rand(*shape), "y": rand(*shape), "cond": np.array(cond)}
        for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
            np.testing.assert_allclose(o, r, rtol=1e-5, atol=1e-6)


def test_layernorm_rows_split_from_8k_elements(tmp_path):
    """layernorm_ref.c splits rows from 8K elements (BERT-tiny's 128 x 128); 100 rows of 96
    (9600 elements) over 2 threads: an odd row count per task, same bits as 1 thread."""
    shape = [100, 96]
    model = make_model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-5)],
                       [("x", F, shape)], [("y", F, shape)], {"g": rand(96), "b": rand(96)}, opset=17)
    feed = {"x": rand(*shape)}
    code = _compile(model, tmp_path / "m", level="extended")  # onnxc.LayerNormalization
    assert "onnxc_layernorm(" in code
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-5)



def test_small_nchwc_depthwise_and_channel_shuffle_split(tmp_path):
    """NCHWc depthwise convs split from 2^15 multiply-adds and channel gathers from 2^13
    elements (a serial one at 2 threads reads half its input from the other core's cache): a
    ShuffleNet-like unit (1x1 conv, 3x3 depthwise of 48 channels at 16x16: 110K multiply-adds,
    channel shuffle of 12K elements) gives the same bits at 1 and 2 threads and matches ORT."""
    c, hw = 48, 16
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["d"], group=c, pads=[1, 1, 1, 1]),
             helper.make_node("Reshape", ["d", "s1"], ["t0"]),
             helper.make_node("Transpose", ["t0"], ["t1"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t1", "s2"], ["t2"]),
             helper.make_node("Conv", ["t2", "w3"], ["y"])]
    inits = {"w1": rand(c, c, 1, 1) * 0.2, "b1": rand(c), "w2": rand(c, 1, 3, 3) * 0.3, "b2": rand(c),
             "s1": np.array([1, 2, c // 2, hw, hw], np.int64), "s2": np.array([1, c, hw, hw], np.int64),
             "w3": rand(c, c, 1, 1) * 0.2}
    model = make_model(nodes, [("x", F, [1, c, hw, hw])], [("y", F, [1, c, hw, hw])], inits)
    feed = {"x": rand(1, c, hw, hw)}
    code = _compile(model, tmp_path / "m", level="layout")
    assert "onnxc_f32_nchwc_conv_depthwise" in code
    assert "NchwcChannelGather" in code
    for o, r in zip(_run_both(tmp_path / "m", feed), ort_run(model, feed)):
        np.testing.assert_allclose(o, r, rtol=1e-4, atol=1e-4)

def _tasks_cpu():
    import glob
    import os
    out = {}
    for t in glob.glob(f"/proc/{os.getpid()}/task/*/stat"):
        try:
            out[int(t.split("/")[-2])] = int(open(t).read().rsplit(")", 1)[1].split()[36])
        except (OSError, IndexError, ValueError):
            pass
    return out


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity") or len(__import__("os").sched_getaffinity(0)) < 2
                    or not __import__("os").path.exists("/proc/self/task"), reason="needs Linux and 2 CPUs")
def test_worker_leaves_the_callers_cpu(tmp_path, monkeypatch):
    """threads.c: a worker that finds itself on the CPU of the thread that published the loop
    moves to another one (wake-affine placement had both time-sharing one vCPU).  The worker,
    made to spin for long after each loop (ONNXC_SPIN_US, read when the pool starts), is moved
    onto the caller's CPU by hand (mask narrowed, then widened again: a running thread migrates
    at once and stays until something moves it)."""
    import os
    import threading
    import time

    import onnxc
    shape = [8, 8192]
    model = make_model([helper.make_node("Tanh", ["x"], ["z"])], [("x", F, shape)], [("z", F, shape)])
    _compile(model, tmp_path / "m")
    feed = {"x": rand(*shape)}
    me = threading.get_native_id()
    mask = os.sched_getaffinity(me)
    cpu0 = min(mask)
    before = set(_tasks_cpu())
    monkeypatch.setenv("ONNXC_SPIN_US", "300000")
    m = onnxc.load(tmp_path / "m", num_threads=2)
    try:
        os.sched_setaffinity(me, {cpu0})
        m.run(None, feed)  # starts the worker; the loop is published from cpu0
        monkeypatch.delenv("ONNXC_SPIN_US")
        workers = set(_tasks_cpu()) - before
        if len(workers) != 1:
            pytest.skip("the pool's worker thread was not identified")
        (w,) = workers
        for _ in range(3):
            m.run(None, feed)  # the worker spins for 300 ms from here
            os.sched_setaffinity(w, {cpu0})
            moved = _tasks_cpu()[w] == cpu0
            os.sched_setaffinity(w, mask)
            if not moved:
                continue  # the worker was not running: its CPU shows only when it next runs
            time.sleep(0.005)
            assert _tasks_cpu()[w] != cpu0
            return
        pytest.skip("could not place the worker on the caller's CPU")
    finally:
        os.sched_setaffinity(me, mask)
