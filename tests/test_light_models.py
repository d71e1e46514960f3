"""The nine light models shipped with the onnx package (weights are ConstantOfShape nodes,
folded at compile time) against onnxruntime on the same seeded input."""
import os

import numpy as np
import onnx
import pytest

import onnxc
from helpers import rel_err

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
NAMES = sorted(f[:-5] for f in os.listdir(LIGHT) if f.endswith(".onnx"))


def test_all_nine_are_here():
    assert len(NAMES) == 9


@pytest.mark.parametrize("name", NAMES)
def test_light_model_matches_onnxruntime(name, tmp_path):
    import onnxruntime as ort
    path = os.path.join(LIGHT, name + ".onnx")
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}
    model = onnxc.compile(path, output_dir=tmp_path / name)
    ops = model.report["op_counts"]
    for op in ("ConstantOfShape", "Identity", "Dropout", "Shape"):  # folded or eliminated by the basic level
        assert ops.get(op, 0) == 0, f"{op} left after the passes: {ops}"
    assert model.fallback_nodes == []
    for o, r in zip(model.run(None, feed), sess.run(None, feed)):
        assert o.shape == r.shape
        assert rel_err(o, r) <= 1e-4
