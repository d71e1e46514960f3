"""The C side of the epilogue activations (the table in ops/activations.py), a leaf shared by
every emitter that applies one (fused_nn.py, linalg.py, nchwc.py, and elementwise.py for the
float32 unfused ops of the same names).  The runtime kernels' enum and switch are generated from
the same table (compiler/kernels/activations_header.py), so that an epilogue computes the same
float operations inline and in a runtime kernel.
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence

import numpy as np

from ...codegen.context import c_literal
from ...ops.activations import BY_NAME, TABLE, c_enum
from ...ops.fused_nn import ACTIVATIONS  # noqa: F401  (re-exported: the fused ops' view of TABLE)


def _f(v) -> str:
    return c_literal(v, np.float32)


def _expr(name: str, x: str, params: Sequence[float]) -> str:
    p = [_f(v) for v in params] + ["", ""]
    return BY_NAME[name].c_f32.format(x=x, a=p[0], b=p[1])


# name -> fn(x, params) giving the float32 C expression of the C variable ``x``
C_ACTIVATIONS: Dict[str, Callable[[str, Sequence[float]], str]] = {
    a.name: (lambda x, p, _n=a.name: _expr(_n, x, p)) for a in TABLE}

# runtime_c enum (onnxc_activations.h) of each activation
ACT_KIND = {"": c_enum(""), **{a.name: c_enum(a.name) for a in TABLE}}


def c_activation(name: str, params: Sequence[float], x: str) -> str:
    """float32 C expression of activation ``name`` applied to the C variable ``x``."""
    return x if name == "" else _expr(name, x, list(params))


def activation_struct(name: str, params: Sequence[float]) -> str:
    """Initializer of an ``onnxc_activation`` for the runtime kernels."""
    p = list(params) + [0.0] * (2 - len(params))
    return f"{{{ACT_KIND[name]}, {_f(p[0])}, {_f(p[1])}}}"
