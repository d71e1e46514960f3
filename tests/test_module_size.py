"""A compiled module carries only the runtime kernels its model calls (build.GC_SECTIONS)."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from onnxc import build
from helpers import make_model


@pytest.mark.skipif(not build.GC_SECTIONS, reason="section garbage collection is used with GNU ld/lld only")
def test_unused_kernels_are_not_linked(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [2, 3])],
                       [("y", np.float32, [2, 3])])
    cm = onnxc.compile(model, output_dir=tmp_path / "m")
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    np.testing.assert_array_equal(cm.run(None, {"x": x})[0], np.maximum(x, 0))
    so = next((tmp_path / "m").glob("*.so")).read_bytes()
    # every runtime object is on the link line; a Relu needs none of the GEMM/conv/Winograd code
    for symbol in (b"onnxc_sgemm", b"onnxc_f32_gemm_", b"onnxc_f32_nchwc_conv_b", b"onnxc_f32_nchwc_conv_winograd"):
        assert symbol not in so, symbol
    assert len(so) < 256 * 1024, len(so)  # all kernels linked: ~0.9 MB
