"""The ai.onnx.preview.training optimizers (Adagrad, Momentum standard/Nesterov, Adam) in C against
onnx.reference and the spec's formulas in float64: one and several tensors, float32 and float64,
the first step (T = 0: no bias correction, Momentum's gradient weight 1) and later ones, default
attributes, empty tensors; invalid nodes are ModelErrors.  onnxruntime's CPU build has no kernel
for these ops (training builds only), so it is not compared."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import tensor_info

RNG = np.random.default_rng(23)
TRAINING = "ai.onnx.preview.training"
STATE = {"Adagrad": ["H"], "Momentum": ["V"], "Adam": ["V", "H"]}


def _spec(op, attrs, r, t, x, g, *state):
    """The spec's update in float64: (X_new, new state...)."""
    r, x, g = float(r), x.astype(np.float64), g.astype(np.float64)
    attrs = {k: v if isinstance(v, str) else float(np.float32(v)) for k, v in attrs.items()}  # stored as float32
    d = {"epsilon": 1e-6, "alpha": 0.9, "beta": 0.999}
    attrs.update({k: float(np.float32(v)) for k, v in d.items() if k not in attrs})
    state = [s.astype(np.float64) for s in state]
    g = attrs.get("norm_coefficient", 0.0) * x + g
    if op == "Adagrad":
        h = state[0] + g * g
        lr = r / (1 + t * attrs.get("decay_factor", 0.0))
        return x - lr * g / (np.sqrt(h) + attrs.get("epsilon", 1e-6)), h
    if op == "Momentum":
        a, b = attrs["alpha"], attrs["beta"] if t > 0 else 1.0
        v = a * state[0] + b * g
        return x - r * ((g + a * v) if attrs["mode"] == "nesterov" else v), v
    a, b = attrs.get("alpha", 0.9), attrs.get("beta", 0.999)
    v = a * state[0] + (1 - a) * g
    h = b * state[1] + (1 - b) * g * g
    lr = r * np.sqrt(1 - b ** t) / (1 - a ** t) if t > 0 else r
    return (1 - attrs.get("norm_coefficient_post", 0.0)) * (x - lr * v / (np.sqrt(h) + attrs.get("epsilon", 1e-6))), v, h


def _model(op, attrs, shapes, dtype, r_dtype=np.float32):
    n, names = len(shapes), ["X", "G"] + STATE[op]
    ins = ["R", "T"] + [f"{nm}{j}" for nm in names for j in range(n)]
    outs = [f"{nm}{j}_new" for nm in ["X"] + STATE[op] for j in range(n)]
    node = helper.make_node(op, ins, outs, domain=TRAINING, **attrs)
    inputs = [("R", r_dtype, []), ("T", np.int64, [])] + [(f"{nm}{j}", dtype, list(shapes[j]))
                                                            for nm in names for j in range(n)]
    outputs = [(o, dtype, list(shapes[i % n])) for i, o in enumerate(outs)]
    graph = helper.make_graph([node], "g", [tensor_info(*i) for i in inputs], [tensor_info(*o) for o in outputs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(TRAINING, 1)])
    m.ir_version = 8
    return m, ins, outs


CASES = [  # (op, attrs)
    ("Adagrad", dict(decay_factor=0.1, epsilon=1e-5, norm_coefficient=1e-3)),
    ("Adagrad", {}),
    ("Momentum", dict(alpha=0.95, beta=0.1, mode="standard", norm_coefficient=1e-3)),
    ("Momentum", dict(alpha=0.9, beta=0.85, mode="nesterov", norm_coefficient=0.01)),
    ("Adam", dict(alpha=0.95, beta=0.1, epsilon=1e-7, norm_coefficient=1e-3)),
    ("Adam", dict(norm_coefficient_post=0.02)),
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_optimizer_step(case, dtype, tmp_path):
    op, attrs = CASES[case]
    shapes = [(3, 4), (1,), (0, 2)] if dtype == np.float32 else [(5,)]
    m, ins, outs = _model(op, attrs, shapes, dtype, r_dtype=np.float64 if dtype == np.float64 else np.float32)
    compiled = onnxc.compile(m, output_dir=tmp_path / "o", fallback=False)
    ref = ReferenceEvaluator(m)
    n = len(shapes)
    for t in (0, 1, 7):
        feed = {"R": np.array(0.1, np.float64 if dtype == np.float64 else np.float32), "T": np.array(t, np.int64)}
        for name in ins[2:]:
            j = int(name[-1])
            a = RNG.standard_normal(shapes[j]).astype(dtype)
            feed[name] = np.abs(a) if name.startswith("H") else a  # H accumulates squares
        got = compiled.run(None, feed)
        want = ref.run(None, feed)
        for j in range(n):
            group = [feed[f"{nm}{j}"] for nm in ["X", "G"] + STATE[op]]
            spec = _spec(op, attrs, feed["R"], t, *group)
            for q, s in enumerate(spec):
                o = got[q * n + j]
                assert o.dtype == dtype and o.shape == shapes[j], outs[q * n + j]
                tol = 1e-6 if dtype == np.float32 else 1e-12
                np.testing.assert_allclose(o, s, rtol=tol, atol=tol, err_msg=outs[q * n + j])
                np.testing.assert_allclose(o, want[q * n + j].astype(dtype), rtol=1e-5, atol=1e-6,
                                           err_msg=outs[q * n + j])


def test_invalid_optimizer_nodes(tmp_path):
    m, _, _ = _model("Adam", {}, [(3,)], np.float32)
    m.graph.node[0].input.pop()  # 5 inputs: not 2 + 4n
    with pytest.raises(onnxc.ModelError, match=r"Adam.*has 5 inputs, expected R, T and 4 per optimized tensor"):
        onnxc.compile(m, output_dir=tmp_path / "a")
    m, _, _ = _model("Adagrad", {}, [(3,)], np.float32)
    m.graph.input[4].type.tensor_type.shape.dim[0].dim_value = 2  # H0 [2] against X0 [3]
    with pytest.raises(onnxc.ModelError, match=r"input 4 'H0' \(H\) has shape \(2,\), expected X's \(3,\)"):
        onnxc.compile(m, output_dir=tmp_path / "b")
    m, _, _ = _model("Momentum", dict(alpha=0.9, beta=0.1, mode="heavy", norm_coefficient=0.0), [(3,)], np.float32)
    with pytest.raises(onnxc.ModelError, match=r"mode is 'heavy', expected 'standard' or 'nesterov'"):
        onnxc.compile(m, output_dir=tmp_path / "c")
