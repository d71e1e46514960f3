"""scripts/sanitize.py's harness reports what it is there to report: the standalone program of a
model, given an output buffer smaller than what the kernel writes, is stopped by ASan with a
heap-buffer-overflow report.  The full run (sixteen models, valgrind too) is a CI step of its
own (.ci/run)."""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model
from onnxc.build import c_compiler

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


@pytest.mark.skipif(shutil.which(c_compiler()) is None, reason="no C compiler")
def test_harness_catches_a_heap_overflow(tmp_path):
    import sanitize
    try:
        asan_options = sanitize.probe_asan(tmp_path, c_compiler())
    except RuntimeError as e:
        pytest.skip(str(e))
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [3, 40])], [("y", np.float32, [3, 40])])
    out = tmp_path / "m"
    onnxc.compile(m, output_dir=out, opt_level="none", c_opt="-O0", fallback=False)
    rt = sanitize.Runtime(tmp_path / "rt", 2)
    feed = {"x": np.ones((3, 40), np.float32)}
    env = dict(os.environ, **dict(sanitize.SAN_ENV, ASAN_OPTIONS=asan_options))
    manifest = sanitize.build_program(out, sanitize.SAN_FLAGS, rt, out / "prog", "native", sanitized=True)
    assert sanitize.run_program([], out / "prog", out, manifest, feed, [np.ones((3, 40), np.float32)], 1, env,
                                "exact") == []
    spec = json.loads((out / "manifest.json").read_text())
    spec["outputs"][0]["nbytes"] -= 4  # the harness now gives the kernel one float too few
    (out / "manifest.json").write_text(json.dumps(spec))
    manifest = sanitize.build_program(out, sanitize.SAN_FLAGS, rt, out / "prog2", "native", sanitized=True)
    problems = sanitize.run_program([], out / "prog2", out, manifest, feed, [None], 1, env, "short")
    assert problems and "heap-buffer-overflow" in problems[0], problems
