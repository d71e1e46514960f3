"""The conformance runner itself: classification, crash isolation, the ratchet."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "conformance"))
import run as runner  # noqa: E402


def test_compare_classifies_mismatches():
    a = [np.array([1.0, 2.0], np.float32)]
    assert runner.compare(a, [np.array([1.0, 2.0], np.float32)], 1e-3, 1e-7) is None
    assert "output 0" in runner.compare(a, [np.array([1.0, 2.5], np.float32)], 1e-3, 1e-7)
    assert "shape" in runner.compare(a, [np.array([1.0], np.float32)], 1e-3, 1e-7)
    assert "dtype" in runner.compare(a, [np.array([1.0, 2.0], np.float64)], 1e-3, 1e-7)
    assert "outputs" in runner.compare(a, [], 1e-3, 1e-7)
    seq = [[np.ones(2, np.float32), np.zeros(3, np.float32)]]  # sequences of unequal shapes
    assert runner.compare(seq, [[np.ones(2, np.float32), np.zeros(3, np.float32)]], 1e-3, 1e-7) is None
    assert "sequence" in runner.compare(seq, [[np.ones(2, np.float32), np.ones(3, np.float32)]], 1e-3, 1e-7)
    assert "sequence" in runner.compare(seq, [[np.ones(2, np.float32)]], 1e-3, 1e-7)


def test_run_case_statuses(monkeypatch):
    import onnxc.backend as backend

    class Rep:
        def __init__(self, outs):
            self.outs = outs

        def run(self, inputs):
            return self.outs
    x = np.ones(2, np.float32)
    case = ("c", None, [([x], [x])], 1e-3, 1e-7)
    monkeypatch.setattr(backend, "prepare", lambda m, **k: Rep([x]))
    assert runner.run_case(case, {})[0] == "pass"
    monkeypatch.setattr(backend, "prepare", lambda m, **k: Rep([x * 2]))
    assert runner.run_case(case, {})[0] == "wrong"

    def unsupported(m, **k):
        raise NotImplementedError("no kernel")
    monkeypatch.setattr(backend, "prepare", unsupported)
    assert runner.run_case(case, {})[:2] == ("unsupported", "no kernel")

    def broken(m, **k):
        raise KeyError("oops")
    monkeypatch.setattr(backend, "prepare", broken)
    assert runner.run_case(case, {})[0] == "error"


def test_case_builds_are_deleted_unless_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path))
    case = next(c for c in runner.load_cases("node") if c[0] == "test_relu")
    models = tmp_path / "models"
    assert runner.run_case(case, {"c_opt": "-O1"})[0] == "pass"
    assert models.is_dir() and not list(models.iterdir())  # ~2,000 cases: nothing left behind
    assert runner.run_case(case, {"c_opt": "-O1", "keep_builds": True})[0] == "pass"
    assert [p.name for p in models.iterdir() if (p / "manifest.json").exists()]


def test_build_in_use_by_another_worker_is_not_deleted(monkeypatch, tmp_path):
    """Byte-identical models (pytorch-converted's test_AvgPool2d and test_AvgPool2d_stride) share
    one cache entry; CI saw a worker delete it while another loaded it ('cannot open shared
    object file'). A second holder of the case's in-use lock keeps the build; the last one
    deletes it."""
    import fcntl
    import hashlib
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path))
    case = next(c for c in runner.load_cases("node") if c[0] == "test_relu")
    models = tmp_path / "models"
    lock = tmp_path / "conformance-in-use" / hashlib.sha256(case[1].SerializeToString()).hexdigest()[:32]
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as other:  # the other worker, running the same model
        fcntl.flock(other, fcntl.LOCK_SH)
        assert runner.run_case(case, {"c_opt": "-O1"})[0] == "pass"
        kept = [p for p in models.iterdir() if (p / "manifest.json").exists()]
        assert kept
        assert runner.run_case(case, {"c_opt": "-O1"})[0] == "pass"  # loads the kept build
    assert runner.run_case(case, {"c_opt": "-O1"})[0] == "pass"
    assert not list(models.iterdir())


def test_random_ops_are_checked_by_distribution_and_fallback_is_counted():
    from onnx import helper
    g = helper.make_graph([helper.make_node("Bernoulli", ["x"], ["y"], seed=3.0)], "g",
                          [helper.make_tensor_value_info("x", 1, [6])], [helper.make_tensor_value_info("y", 1, [6])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    x = np.array([0, 0.1, 0.5, 0.5, 0.9, 1], np.float32)
    status, why, _ = runner.run_case(("b", model, [([x], [np.zeros(6, np.float32)])], 1e-3, 1e-7), {})
    assert status == "pass" and why.startswith(runner.DISTRIBUTION_NOTE) and "Bernoulli" in why
    status, why, _ = runner.run_case(("b", model, [([x], [np.zeros(5, np.float32)])], 1e-3, 1e-7), {})
    assert status == "wrong" and "expected float32[5]" in why
    results = {"a": {"status": "pass", "reason": "", "seconds": 0},
               "b": {"status": "pass", "reason": "fallback: Unique: no C kernel for this op", "seconds": 0},
               "c": {"status": "pass", "reason": runner.DISTRIBUTION_NOTE + "Bernoulli", "seconds": 0}}
    counts, text = runner.summarize("node", results, 1.0)
    assert counts["pass"] == 3 and counts["pass_c"] == 2
    assert "2 pass entirely in C, 1 with fallback nodes" in text and "Unique: no C kernel" in text
    assert "1 case(s) with random ops passed a distribution check" in text


def test_distribution_check_fails_a_wrong_generator():
    """_draw_moments passes draws of the reference's distribution and fails a biased or
    mis-scaled one (seeded, so the test is deterministic)."""
    rng = np.random.default_rng(5)
    p = np.array([0.0, 0.1, 0.3, 0.5, 0.5, 0.7, 0.9, 1.0])
    ref = rng.uniform(size=(400, 8)) < p
    assert runner._draw_moments(rng.uniform(size=(400, 8)) < p, ref) is None
    q = p[1:-1]  # no element fixed at 0 or 1: only the means can tell
    assert "means differ" in runner._draw_moments(rng.uniform(size=(400, 6)) < q + 0.1, ref[:, 1:-1])
    assert "means differ" in runner._draw_moments(rng.uniform(size=(400, 8)) < 1 - p, ref)  # P(1) = 1 - p
    assert "outside" in runner._draw_moments(np.full((400, 2), 7.0), np.full((400, 2), 6.0))
    # an element the reference rarely varies (p = 0.002) is neither a support nor a mean failure
    rare = np.array([0.002, 0.5, 0.998])
    for seed in range(20):
        r2 = np.random.default_rng(seed)
        assert runner._draw_moments(r2.uniform(size=(400, 3)) < rare, r2.uniform(size=(400, 3)) < rare) is None
    x = rng.standard_normal(20).astype(np.float32)
    drop = (lambda r, s: (rng.uniform(size=(400, 20)) >= r) * x * np.float32(s))
    ref = drop(0.5, 2.0)
    assert runner._draw_moments(drop(0.5, 2.0), ref) is None
    assert "outside the reference's" in runner._draw_moments(drop(0.5, 1.5), ref)
    assert runner._draw_moments(drop(0.3, 2.0), ref) is not None  # keeps too many
    normal = rng.standard_normal((400, 30))
    assert runner._draw_moments(rng.standard_normal((400, 30)), normal) is None
    assert "variance" in runner._draw_moments(1.4 * rng.standard_normal((400, 30)), normal)


def test_crash_costs_one_case_and_the_run_goes_on():
    names = [c[0] for c in runner.load_cases("node")]
    idx = [names.index("test_abs"), names.index("test_relu"), names.index("test_neg")]
    res = runner.run_suite("node", names, idx, jobs=1, timeout=120, options={"c_opt": "-O1"},
                           extra_env={runner.CRASH_ENV: "test_relu"}, log=lambda *a: None)
    assert res["test_relu"]["status"] == "crash"
    assert res["test_abs"]["status"] == "pass" and res["test_neg"]["status"] == "pass"


def test_unsupported_reasons_grouped_by_op():
    reason = ("2 node(s) cannot be compiled by onnxc:\n"
              "  - Unique (ai.onnx, opset 18) node 'u': no C kernel for this op\n"
              "  - Relu (ai.onnx, opset 18) node 'r': input 0 'x' has dtype float16")
    assert runner.unsupported_ops(reason) == ["Unique: no C kernel for this op",
                                              "Relu: input 0 'x' has dtype float16"]


def test_out_of_range_casts_are_undefined_not_wrong(monkeypatch):
    """Float -> int4 out of range is undefined by the spec: those elements count neither way (ml_dtypes
    releases disagree on them); the in-range ones are still compared."""
    case = next(c for c in runner.load_cases("node") if c[0] == "test_cast_FLOAT_to_INT4")
    from onnx import numpy_helper
    (x,), (want,) = case[2][0]
    x, want = numpy_helper.to_array(x), numpy_helper.to_array(want)
    undefined = runner.undefined_in_case(case[1], [x])
    mask, why = undefined[0]
    assert mask.tolist() == ((x < -8) | (x >= 8)).tolist() and "int4 out of [-8, 7]" in why
    status, reason, note = runner.run_case(case, {"c_opt": "-O1"})
    assert status == "pass" and "output 0: 9 of 25 elements" in note, (status, reason)

    import onnxc.backend as backend

    class Rep:
        def __init__(self, out):
            self.out = out

        def run(self, inputs):
            return [self.out]
    wrong_outside = want.copy()
    wrong_outside[mask] = 3  # any value where the spec defines none
    monkeypatch.setattr(backend, "prepare", lambda m, **k: Rep(wrong_outside))
    assert runner.run_case(case, {})[0] == "pass"
    wrong_inside = want.copy()
    wrong_inside[~mask] = 3
    monkeypatch.setattr(backend, "prepare", lambda m, **k: Rep(wrong_inside))
    assert runner.run_case(case, {})[0] == "wrong"


def test_undefined_values_reach_downstream_outputs():
    """An output computed from an undefined cast result is not compared at all; an output that
    does not depend on it is."""
    from onnx import TensorProto, helper
    nodes = [helper.make_node("Cast", ["x"], ["i"], to=TensorProto.INT8),
             helper.make_node("Add", ["i", "i"], ["y"]), helper.make_node("Neg", ["x"], ["z"]),
             helper.make_node("Cast", ["z"], ["e"], to=TensorProto.FLOAT8E8M0)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info(n, t, [3]) for n, t in
                           (("i", TensorProto.INT8), ("y", TensorProto.INT8), ("z", TensorProto.FLOAT),
                            ("e", TensorProto.FLOAT8E8M0))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 24)])
    und = runner.undefined_in_case(model, [np.array([1.0, 300.0, np.nan], np.float32)])
    assert und[0][0].tolist() == [False, True, True] and und[1][0] is None and 2 not in und
    assert und[3][0].tolist() == [True, True, False] and "negative" in und[3][1]  # -1, -300; -NaN gives NaN
    assert runner.undefined_in_case(model, [np.array([1.0, -3.0, 5.5], np.float32)]).keys() == {3}
