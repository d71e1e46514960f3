import os
import tempfile

import pytest

# Keep test builds out of the user's cache, shared across the session (content-hash keyed).
os.environ.setdefault("ONNXC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "onnxc-test-cache"))


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"
