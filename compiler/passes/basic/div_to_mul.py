"""Div(x, c) -> Mul(x, 1/c) for a floating-point constant divisor.

The reciprocal is computed in float64 and rounded once to the divisor's type, so the product
can differ from the quotient by about one unit in the last place (exact when c is a power of
two).  Skipped when c holds zeros, infinities or NaN, or when 1/c overflows (a subnormal c), so
no quotient turns into a different special value.
"""
from __future__ import annotations

import numpy as np

from ..manager import Pass, PassResult, register
from ..util import const
from .common import fuse, std_op

_DIV_FLOATS = ("float16", "bfloat16", "float32", "float64")  # Div's floating-point types


def _float_type(dt) -> bool:
    from ...dtypes import dtype_name
    return dt is not None and dtype_name(dt) in _DIV_FLOATS


@register
class DivToMul(Pass):
    name = "div_to_mul"
    level = "basic"

    def run(self, graph) -> PassResult:
        details = []
        for node in list(graph.nodes):
            if not std_op(node, "Div") or node.graph is not graph:
                continue
            c = const(node.inputs[1])
            if c is None or not _float_type(c.dtype) or c.size == 0:
                continue
            c64 = c.astype(np.float64)
            if not np.all(np.isfinite(c64)) or np.any(c64 == 0):
                continue
            with np.errstate(over="ignore"):  # an overflowing reciprocal is refused just below
                r = (1.0 / c64).astype(c.dtype)
            if not np.all(np.isfinite(r.astype(np.float64))):
                continue
            rv = graph.add_const(r, hint=f"{node.inputs[1].name}_recip")
            fuse(graph, [node], "Mul", [node.inputs[0], rv], {}, name=node.name)
            details.append(node.label)
        return PassResult(bool(details), len(details), details)
