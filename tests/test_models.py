"""Real exported models (built by scripts/export_models.py into models/, never committed)
compiled by onnxc and compared with onnxruntime on the same inputs."""
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import rel_err

MODELS_DIR = Path(os.environ.get("ONNXC_MODELS_DIR", Path(__file__).resolve().parent.parent / "models"))
MODELS = ["resnet18", "resnet50", "mobilenet_v2", "squeezenet1_1", "bert_tiny", "vit_s16"]

pytestmark = pytest.mark.models


def load_inputs(name, sess):
    npz = MODELS_DIR / f"{name}.inputs.npz"
    if npz.exists():
        data = np.load(npz)
        return {k: data[k] for k in data.files}
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}


@pytest.mark.parametrize("name", MODELS)
def test_model_matches_onnxruntime(name, tmp_path):
    path = MODELS_DIR / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not built: run `bash scripts/setup_models.sh .venv/bin/python`")
    import onnxruntime as ort

    import onnxc
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = load_inputs(name, sess)
    refs = sess.run(None, feed)
    model = onnxc.compile(str(path), output_dir=tmp_path / name)
    outs = model.run(None, feed)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.shape == r.shape and o.dtype == r.dtype
        assert rel_err(o, r) <= 1e-4, f"{name}: relative error {rel_err(o, r):.2e}"
