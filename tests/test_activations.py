"""The activation table (compiler/ops/activations.py) is the one definition of the epilogue
activations: the checked-in C it generates is current, and the runtime's switch, the inline C
expressions and the unfused float32 ops compute what the numpy references do.

Regenerate the C with ``python -m onnxc.kernels.activations_header``."""
import re

import numpy as np
import pytest

from helpers import kernel_library
from onnxc.build import compile_flags
from onnxc.cpu import runnable_float_isas
from onnxc.kernels import activations_header
from onnxc.ops.activations import TABLE, c_enum
from onnxc.ops.fused_nn import ACTIVATIONS
from onnxc.providers.c.activations import ACT_KIND, C_ACTIVATIONS

F = np.float32
PARAMS = {"LeakyRelu": [0.1], "Clip": [-0.5, 1.5], "HardSigmoid": [0.3, 0.4]}


def test_generated_c_is_current():
    for p, text in activations_header.outputs():
        assert p.read_text() == text, f"{p} is stale: run python -m onnxc.kernels.activations_header"
    assert activations_header.main(["--check"]) == 0


def test_every_layer_reads_the_one_table():
    names = [a.name for a in TABLE]
    assert list(ACTIVATIONS) == names and list(C_ACTIVATIONS) == names
    assert ACT_KIND == {"": "ONNXC_ACT_NONE", **{n: c_enum(n) for n in names}}
    enum = re.findall(r"(ONNXC_ACT_\w+) = (\d+)", activations_header.render_enum())
    assert [(e, int(v)) for e, v in enum] == [(c_enum(n), i) for i, n in enumerate([""] + names)]
    for a in TABLE:
        assert len(PARAMS.get(a.name, [])) == len(a.params), a.name


def _inputs():
    x = np.linspace(-8, 8, 203).astype(F)
    return np.concatenate([x, np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-40, -1e-40], F)])


@pytest.fixture(scope="module", params=runnable_float_isas())
def lib(request, tmp_path_factory):
    return kernel_library(tmp_path_factory, f"act_{request.param}", ["math/epilogue_ref.c"],
                          compile_flags(request.param))


@pytest.mark.parametrize("name", [a.name for a in TABLE])
def test_runtime_switch_matches_the_reference(lib, name):
    ffi, L = lib
    x = _inputs()
    p = PARAMS.get(name, [])
    act = ffi.new("onnxc_activation*", {"kind": getattr(L, c_enum(name)), "alpha": (p + [0, 0])[0],
                                        "beta": (p + [0, 0])[1]})
    y = x.copy()
    L.onnxc_activation_row(act, ffi.cast("float*", ffi.from_buffer(y)), y.size)
    with np.errstate(all="ignore"):
        want = ACTIVATIONS[name][1](x.astype(np.float64), p).astype(F)
    # Sigmoid/SiLU: the vectorizable onnxc_sigmoidf, within ~3 ulp; tanhf: libm's
    np.testing.assert_allclose(y, want, rtol=4e-7 * 4, atol=1e-37, equal_nan=True, err_msg=name)
    assert np.array_equal(np.isnan(y), np.isnan(want)), name
