"""Per-layer report ordering and the accuracy-aware fallback on a model with one known-bad layer."""
import numpy as np
import pytest

import onnxc
from onnxc.quantize import Target
from helpers import ort_run
from qmodels import mlp, mlp_feeds, sqnr


def test_report_ranks_the_outlier_layer_first():
    model = mlp(outlier=5)
    rep = onnxc.quantize.quant_report(model, calibration=mlp_feeds(8), engine="reference")
    rows = rep.sorted()
    assert [r.local_sqnr for r in rows] == sorted(r.local_sqnr for r in rows)  # worst first
    assert rows[0].name == "mm2"
    assert rows[0].cause.startswith("activation")  # its input's range is the outlier's
    assert rows[0].observed[1] > 250
    assert rows[0].local_sqnr < rows[1].local_sqnr - 10
    # the local error is the layer's own; the cumulative one includes what came before
    first = [r for r in rows if r.op == "Gemm"][0]  # mm1 + add1 after the basic passes
    assert first.name.startswith("mm1")
    assert first.cumulative_sqnr == pytest.approx(first.local_sqnr, abs=1e-6)  # nothing quantized before it
    text = rep.format()
    assert text.splitlines()[2].startswith("mm2") and "model output 'y'" in text


def test_report_matches_a_direct_computation():
    """mm1's local SQNR equals numpy: x quantized with its calibrated range, W1 per column."""
    from onnxc.quantize import qdq
    model = mlp()
    feeds = mlp_feeds(3)
    rep = onnxc.quantize.quant_report(model, calibration=feeds, engine="reference")
    from onnx import numpy_helper
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w1, b1 = inits["W1"], inits["B1"]
    x = np.concatenate([f["x"] for f in feeds])
    s, z = qdq.activation_params(x.min(), x.max(), "uint8")
    q, ws = qdq.quantize_weight(w1, 1)
    bscale = (s * ws).astype(np.float32)
    ref = x @ w1 + b1
    got = qdq.fake_quantize(x, s, z) @ qdq.dequantize_weight(q, ws, 1) + np.rint(b1 / bscale) * bscale
    row = [r for r in rep.rows if r.op == "Gemm"][0]  # MatMul mm1 + Add add1 after the basic passes
    assert row.local_sqnr == pytest.approx(sqnr(ref, got), abs=0.05)
    assert row.weight_sqnr == pytest.approx(sqnr(w1, qdq.dequantize_weight(q, ws, 1)), abs=1e-6)


def test_accuracy_aware_keeps_the_damaging_layer_in_float():
    model = mlp(outlier=5)
    calib, held = mlp_feeds(8), mlp_feeds(6, seed=42)
    plain = onnxc.quantize(model, calibration=calib, engine="reference")
    base = min(sqnr(ort_run(model, f)[0], ort_run(plain, f)[0]) for f in held)
    q, res = onnxc.quantize(model, calibration=calib, target="sqnr:28", eval_data=held, engine="reference",
                            return_result=True)
    assert base < 15, base  # all-int8 misses the target ...
    assert res.tune.met and res.tune.kept_float == ["mm2"]  # ... the outlier layer alone explains it
    assert "mm2" in res.tune.why[0] and "activation" in res.tune.why[0]
    ref = np.concatenate([ort_run(model, f)[0] for f in held])
    got = sqnr(ref, np.concatenate([ort_run(q, f)[0] for f in held]))  # over the whole set, as the target
    assert got >= 28
    mm2 = [n for n in q.graph.node if n.name == "mm2"][0]
    assert mm2.input[1] == "W2"  # float weight
    assert len(res.layers) == 2
    assert "left in float" in res.summary() or "1 layer(s) left in float" in res.tune.format()


def test_accuracy_aware_met_without_fallback_and_unreachable():
    model = mlp()
    calib = mlp_feeds(4)
    _, res = onnxc.quantize(model, calibration=calib, target="sqnr:10", engine="reference", return_result=True)
    assert res.tune.met and res.tune.kept_float == [] and res.tune.evaluations[0][0] == 0
    _, res = onnxc.quantize(model, calibration=calib, target=Target("sqnr", 1e9), engine="reference",
                            return_result=True)
    assert res.tune.met and len(res.tune.kept_float) == 3 and res.tune.value == np.inf  # all float: exact
    _, res = onnxc.quantize(model, calibration=calib, target=Target(lambda ref, got: 0.0, 1.0), engine="reference",
                            return_result=True)
    assert not res.tune.met and len(res.tune.kept_float) == 3  # everything in float and still not met
    assert "NOT met" in res.tune.format()


def test_targets_parse_and_measure():
    assert str(Target.parse("top1:0.99")) == "top1>=0.99"
    assert Target.parse("sqnr>=30").min == 30
    with pytest.raises(onnxc.InputError):
        Target.parse("accuracy:0.9")
    ref = [[np.array([[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]])]]
    got = [[np.array([[1.0, 1.9, 0.0], [0.0, 3.0, 1.0]])]]
    assert Target.parse("top1:0.5").measure(ref, got) == 0.5
    cos = Target.parse("cosine:0.9").measure(ref, got)
    assert cos == pytest.approx(1 / np.sqrt(10) * 1 / np.sqrt(10) * 1.0 + 0, abs=1.0)  # finite
    assert Target(lambda r, g: 7.0, 5).measure(ref, got) == 7.0


def test_clone_graph_of_a_deep_graph():
    """The report and the tuner clone the graph; a chain of 3000 nodes (deeper than Python's
    recursion limit, as MiniLM-L6's 669 nodes were for a plain deepcopy) clones, and the clone
    is its own: linked within itself, the original untouched when it changes."""
    from onnx import helper

    from helpers import make_model
    from onnxc import frontend
    from onnxc.quantize.api import clone_graph
    n = 3000
    nodes = [helper.make_node("Relu" if i % 2 else "Neg", [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i in range(n)]
    g = frontend.load(make_model(nodes, [("t0", np.float32, [4])], [(f"t{n}", np.float32, [4])]))
    c = clone_graph(g)
    assert len(c.nodes) == len(g.nodes) == n
    assert all(a is not b and a.name == b.name for a, b in zip(c.nodes, g.nodes))
    ids = {id(x) for x in g.nodes} | {id(v) for x in g.nodes for v in x.outputs}
    pos = {id(x): i for i, x in enumerate(c.nodes)}
    for i, node in enumerate(c.nodes):
        assert node.graph is c and all(v.graph is c and id(v) not in ids for v in node.outputs)
        for v in node.inputs:
            assert v.producer is None or pos[id(v.producer)] < i
            assert any(u is node for u in v.users)
    c.remove_node(c.nodes[-1])
    assert len(g.nodes) == n and len(c.nodes) == n - 1
