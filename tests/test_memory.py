import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from onnxc.codegen.memory import Buffer, plan_buffers


def overlaps(a, b):
    live = not (a.end < b.start or b.end < a.start)
    mem = not (a.offset + a.size <= b.offset or b.offset + b.size <= a.offset)
    return live and mem


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 30), st.integers(0, 10)), min_size=1, max_size=40))
def test_live_buffers_never_share_bytes(specs):
    bufs = [Buffer(i, size, start, start + length) for i, (size, start, length) in enumerate(specs)]
    plan = plan_buffers(bufs)
    for i, a in enumerate(bufs):
        assert a.offset % 64 == 0 and a.offset + a.size <= plan.size
        for b in bufs[i + 1:]:
            assert not overlaps(a, b), (a, b)


def test_dead_buffers_are_reused():
    chain = [Buffer(i, 1000, i, i + 1) for i in range(10)]  # each lives across two steps
    plan = plan_buffers(chain)
    assert plan.total_unshared == 10 * 1024
    assert plan.size == 2 * 1024


def test_arena_reported_for_compiled_chain(tmp_path):
    from onnx import helper

    import onnxc
    from helpers import make_model
    nodes = [helper.make_node("Relu" if i % 2 else "Neg", [f"t{i}"], [f"t{i + 1}"]) for i in range(8)]
    model = make_model(nodes, [("t0", np.float32, [64, 64])], [("t8", np.float32, [64, 64])])
    m = onnxc.compile(model, output_dir=tmp_path / "o", opt_level="basic")  # keep the 8 nodes
    r = m.report
    assert r["intermediate_bytes"] == 7 * 64 * 64 * 4
    assert r["arena_bytes"] == 2 * 64 * 64 * 4  # ping-pong between two buffers
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    np.testing.assert_array_equal(m.run(None, {"t0": x})[0], _ref_chain(x))
    fused = onnxc.compile(model, output_dir=tmp_path / "f", opt_level="extended")  # one chain: no arena
    assert fused.report["arena_bytes"] == 0 and fused.report["op_counts"] == {"onnxc.ElementwiseChain": 1}
    np.testing.assert_array_equal(fused.run(None, {"t0": x})[0], _ref_chain(x))


def _ref_chain(x):
    for i in range(8):
        x = np.maximum(x, 0) if i % 2 else -x
    return x
