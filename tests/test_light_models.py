"""The nine light models shipped with the onnx package against onnxruntime.  They store every
weight as a ConstantOfShape fill of one value (0.02), which makes their output a uniform softmax
whatever the input: compared as shipped, "matches onnxruntime" would prove nothing.  So the fills
are replaced by seeded random weights (examples/quickstart.py's with_random_weights: He-scaled
for >= 2-D, U[0.5, 1.5] for 1-D), the logits (the last Softmax's input) become an output too
(the softmax of random weights saturates on most of them), and the inputs are smooth random
images of amplitude 10 (iid noise averages away in the final global pooling; a small amplitude
drowns under the biases).  Each test checks first that the outputs depend on the input, then
compares them and their difference between two inputs with onnxruntime."""
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import onnxc
from helpers import rel_err

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from quickstart import with_random_weights  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
NAMES = sorted(f[:-5] for f in os.listdir(LIGHT) if f.endswith(".onnx"))


def test_all_nine_are_here():
    assert len(NAMES) == 9


def image(seed, shape):
    """A smooth random image (32x32-pixel blocks of N(0, 1), a little noise on top) times 10."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    blocks = np.kron(rng.standard_normal((n, c, h // 32 + 1, w // 32 + 1)), np.ones((1, 1, 32, 32)))
    return (10 * (blocks[:, :, :h, :w] + 0.1 * rng.standard_normal(shape))).astype(np.float32)


def light_model(name):
    """The model with random weights and, if it ends in Softmax, its logits as a second output."""
    model = with_random_weights(onnx.load(os.path.join(LIGHT, name + ".onnx")))
    last = model.graph.node[-1]
    if last.op_type == "Softmax":
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        model.graph.output.append(next(v for v in inferred if v.name == last.input[0]))
    return model


def test_as_shipped_the_output_ignores_the_input():
    """Why the weights are replaced: with the fills, different inputs give the same uniform output."""
    import onnxruntime as ort
    sess = ort.InferenceSession(os.path.join(LIGHT, "light_squeezenet.onnx"), providers=["CPUExecutionProvider"])
    spec = sess.get_inputs()[0]
    a, b = (sess.run(None, {spec.name: image(s, spec.shape)})[0] for s in (0, 1))
    assert np.allclose(a, b) and np.allclose(a, a.reshape(-1)[0])


@pytest.mark.parametrize("name", NAMES)
def test_light_model_matches_onnxruntime(name, tmp_path):
    import onnxruntime as ort
    model = light_model(name)
    assert not any(n.op_type == "ConstantOfShape" for n in model.graph.node)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = [{i.name: image(seed, i.shape) for i in sess.get_inputs()} for seed in (0, 1)]
    compiled = onnxc.compile(model, output_dir=tmp_path / name)
    ops = compiled.report["op_counts"]
    for op in ("Constant", "Identity", "Dropout", "Shape"):  # folded or eliminated by the basic level
        assert ops.get(op, 0) == 0, f"{op} left after the passes: {ops}"
    assert compiled.fallback_nodes == []
    got = [compiled.run(None, feed) for feed in feeds]
    want = [sess.run(None, feed) for feed in feeds]
    assert len(got[0]) == len(want[0]) == len(sess.get_outputs()) == len(model.graph.output)
    # the comparison means something only if the (last) output depends on the input
    dependence = rel_err(want[0][-1], want[1][-1])
    assert dependence > 5e-3, f"{name}: the output hardly depends on the input ({dependence:.1e})"
    for k, (o0, o1, r0, r1) in enumerate(zip(*got, *want)):
        for o, r in ((o0, r0), (o1, r1)):
            assert o.shape == r.shape and o.dtype == r.dtype
            assert rel_err(o, r) <= 1e-4, f"output {k}: {rel_err(o, r):.1e}"
        if k == len(got[0]) - 1:  # what the input changes, computed alike
            assert rel_err(o0 - o1, r0 - r1) <= 1e-3, f"output {k}: difference {rel_err(o0 - o1, r0 - r1):.1e}"
