"""Golden C: the generated C of five small models (tests/golden/models.py) is checked in, so a
change that alters the generated code shows up as a diff here, and one meant to leave it alone
(a refactor) is seen to.  When the change is intended, regenerate and commit the new files:

    .venv/bin/python tests/golden/models.py

The models are built for a fixed target (avx2) with a C compiler nowhere involved, so the test
is the same on every host."""
import difflib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
import models  # noqa: E402


@pytest.mark.parametrize("name", list(models.MODELS))
def test_generated_c_matches_golden(name):
    want = models.golden_path(name).read_text()
    got = models.generated_c(name)
    if got != want:
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                 f"tests/golden/{name}.c", "generated now"))[:80])
        pytest.fail(f"the generated C of golden model '{name}' changed; if that is intended, run "
                    f".venv/bin/python tests/golden/models.py and commit tests/golden/:\n{diff}")


def test_golden_models_cover_distinct_paths():
    """Each model exercises the code generator path it was added for."""
    src = {name: models.golden_path(name).read_text() for name in models.MODELS}
    assert "onnxc_sgemm" in src["mlp"] and "onnxc_ep" in src["mlp"]  # Gemm + Relu in the epilogue
    assert "onnxc_f32_nchwc_conv_b8(" in src["convnet"]
    assert "ElementwiseChain" in src["chain"]
    assert "onnxc_layernorm(" in src["transformer"] and "onnxc_gelu_erff" in src["transformer"]
    assert "onnxc_f32_to_f16" in src["indexing"]
