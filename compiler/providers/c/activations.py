"""The C side of the epilogue activations (ops/fused_nn.ACTIVATIONS), a leaf shared by every
emitter that applies one in a kernel epilogue (fused_nn.py, linalg.py, nchwc.py).

C_ACTIVATIONS: name -> fn(x, params) giving a float32 C expression of the C variable ``x`` (a
plain name: it may be read more than once).  The runtime kernels implement the same formulas
(runtime_c/math/epilogue_ref.c, ONNXC_ACT_*); ACT_KIND names their enum values.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from ...codegen.context import c_literal
from ...ops.fused_nn import ACTIVATIONS


def _f(v) -> str:
    return c_literal(v, np.float32)


def _clamp01(e: str) -> str:
    """min(1, max(0, e)) by comparisons (NaN passes through); e is evaluated at most thrice,
    a pure expression the compiler computes once."""
    return f"({e} < 0.0f ? 0.0f : {e} > 1.0f ? 1.0f : {e})"


C_ACTIVATIONS: Dict[str, Callable[[str, Sequence[float]], str]] = {
    "Relu": lambda x, p: f"({x} < 0.0f ? 0.0f : {x})",
    "LeakyRelu": lambda x, p: f"({x} < 0.0f ? {_f(p[0])} * {x} : {x})",
    "Clip": lambda x, p: f"(({x} < {_f(p[0])} ? {_f(p[0])} : {x}) > {_f(p[1])} ? {_f(p[1])} : "
                         f"({x} < {_f(p[0])} ? {_f(p[0])} : {x}))",
    # onnxc_sigmoidf (onnxc_transformer.h): branch-free, so the epilogue loop vectorizes (libm's
    # expf is a scalar call: 2-3x slower on SiLU/Sigmoid epilogues); within ~3 ulp
    "Sigmoid": lambda x, p: f"onnxc_sigmoidf({x})",
    "Tanh": lambda x, p: f"tanhf({x})",
    # clamps as comparisons, not fminf/fmaxf: those are libm calls without -ffinite-math-only
    # (the loop does not vectorize) and drop a NaN operand, where the spec's max(0, min(1, .))
    # keeps it
    "HardSigmoid": lambda x, p: _clamp01(f"({_f(p[0])} * {x} + {_f(p[1])})"),
    "HardSwish": lambda x, p: f"({x} * {_clamp01(f'({x} / 6.0f + 0.5f)')})",
    "SiLU": lambda x, p: f"onnxc_siluf({x})",  # x / (1 + exp(-x)): one division, no product
}
assert set(C_ACTIVATIONS) == set(ACTIVATIONS)

# runtime_c enum (onnxc_kernels.h) of each activation
ACT_KIND = {"": "ONNXC_ACT_NONE", "Relu": "ONNXC_ACT_RELU", "LeakyRelu": "ONNXC_ACT_LEAKYRELU",
            "Clip": "ONNXC_ACT_CLIP", "Sigmoid": "ONNXC_ACT_SIGMOID", "Tanh": "ONNXC_ACT_TANH",
            "HardSigmoid": "ONNXC_ACT_HARDSIGMOID", "HardSwish": "ONNXC_ACT_HARDSWISH", "SiLU": "ONNXC_ACT_SILU"}


def c_activation(name: str, params: Sequence[float], x: str) -> str:
    """float32 C expression of activation ``name`` applied to the C variable ``x``."""
    return x if name == "" else C_ACTIVATIONS[name](x, list(params))


def activation_struct(name: str, params: Sequence[float]) -> str:
    """Initializer of an ``onnxc_activation`` for the runtime kernels."""
    p = list(params) + [0.0] * (2 - len(params))
    return f"{{{ACT_KIND[name]}, {_f(p[0])}, {_f(p[1])}}}"
