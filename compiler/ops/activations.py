"""The epilogue activations: one table that every layer reads.

A fused op (onnxc.FusedConv / FusedGemm / FusedMatMul / NchwcConv) applies one of these to the
block its kernel just produced, named by its ``activation`` attribute with ``activation_params``.
Each row gives

* ``params``: the names of its activation_params, in order (LeakyRelu alpha, Clip min/max, ...);
* ``attrs``: for an ONNX op of the same name whose attributes are the params, (attribute,
  default) per param: how the epilogue pass and the unfused op read them (``params_of``); None
  where the params come otherwise (Clip: its bound inputs; SiLU: a Mul(x, Sigmoid(x)) pattern);
* ``reference``: the numpy definition (the fused ops' references, ops/fused_nn.py);
* ``c_f32``: the float32 C expression, over a C variable ``{x}`` (a plain name: it may be read
  more than once) and the params as ``{a}`` and ``{b}``.  The C provider substitutes literals
  (providers/c/activations.py: epilogues it writes inline, and the float32 unfused ops of the
  same name); compiler/kernels/activations_header.py writes from it the ONNXC_ACT_* enum
  (runtime_c/include/onnxc_activations.h) and the switch the runtime kernels run
  (runtime_c/math/activation_switch.h, used by epilogue_ref.c).

Adding an activation is one row here, then ``python -m onnxc.kernels.activations_header``.
Rows append: a row's position is its C enum value (0 is "no activation").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .registry import get_attr


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _clip(x, lo, hi):
    # max then min (NaN propagates; min > max gives max), as ONNX Clip and the C kernels do
    return np.minimum(np.maximum(x, x.dtype.type(lo)), x.dtype.type(hi))


# min(1, max(0, e)) by comparisons, not fminf/fmaxf: those are libm calls without
# -ffinite-math-only (the loop does not vectorize) and drop a NaN operand, where the spec's
# max(0, min(1, .)) keeps it.  e is evaluated at most thrice, a pure expression computed once.
def _clamp01(e: str) -> str:
    return f"({e} < 0.0f ? 0.0f : {e} > 1.0f ? 1.0f : {e})"


@dataclass(frozen=True)
class Activation:
    name: str
    params: Tuple[str, ...]
    reference: Callable
    c_f32: str
    attrs: Optional[Tuple[Tuple[str, float], ...]] = ()
    doc: str = ""


TABLE: Tuple[Activation, ...] = (
    Activation("Relu", (), lambda x, p: np.maximum(x, x.dtype.type(0)),
               "({x} < 0.0f ? 0.0f : {x})", doc="keeps NaN"),
    Activation("LeakyRelu", ("alpha",), lambda x, p: np.where(x < 0, x.dtype.type(p[0]) * x, x),
               "({x} < 0.0f ? {a} * {x} : {x})", (("alpha", 0.01),)),
    Activation("Clip", ("min", "max"), lambda x, p: _clip(x, p[0], p[1]),
               "(({x} < {a} ? {a} : {x}) > {b} ? {b} : ({x} < {a} ? {a} : {x}))", None, "max then min"),
    # onnxc_sigmoidf / onnxc_siluf (onnxc_transformer.h): branch-free, so the loop vectorizes
    # (libm's expf is a scalar call: 2-3x slower on SiLU/Sigmoid epilogues); within ~3 ulp
    Activation("Sigmoid", (), lambda x, p: _sigmoid(x), "onnxc_sigmoidf({x})"),
    Activation("Tanh", (), lambda x, p: np.tanh(x), "tanhf({x})"),
    Activation("HardSigmoid", ("alpha", "beta"),
               lambda x, p: _clip(x.dtype.type(p[0]) * x + x.dtype.type(p[1]), 0, 1),
               _clamp01("({a} * {x} + {b})"), (("alpha", 0.2), ("beta", 0.5)), "keeps NaN"),
    Activation("HardSwish", (), lambda x, p: x * _clip(x / x.dtype.type(6) + x.dtype.type(0.5), 0, 1),
               "onnxc_hardswishf({x})", (), "x * 0, x or x * (x / 6 + 0.5) by bit masks: vectorizes"),
    Activation("SiLU", (), lambda x, p: x * _sigmoid(x), "onnxc_siluf({x})", None,
               "x / (1 + exp(-x)): one division, no product"),
)

BY_NAME: Dict[str, Activation] = {a.name: a for a in TABLE}


def c_enum(name: str) -> str:
    """The runtime's enum value of activation ``name`` ("" for none)."""
    return "ONNXC_ACT_" + (name.upper() if name else "NONE")


def params_of(node) -> Optional[List[float]]:
    """The activation_params of a default-domain node whose op is a row with ``attrs`` (its
    attributes, defaults filled in), else None."""
    a = BY_NAME.get(node.op_type)
    if a is None or a.attrs is None or node.domain not in ("", "ai.onnx"):
        return None
    return [float(get_attr(node, name, default)) for name, default in a.attrs]
