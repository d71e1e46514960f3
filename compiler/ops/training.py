"""Op knowledge for the ai.onnx.preview.training domain: the optimizers Adagrad, Momentum and Adam
(one update step of n tensors).  Inputs: R (learning rate, scalar), T (step count, int64 scalar),
then n of each of X, G (gradient) and the optimizer's state (Adagrad: H; Momentum: V; Adam: V, H);
outputs: the n new X, then the n of each new state.  The reference is onnx.reference's; onnx's
shape inference gives the outputs' types and shapes.  Validity rule below."""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .registry import check, get_attr
from .validate import inp, known, shape_of, shape_str

TRAINING = "ai.onnx.preview.training"

# op -> names of the tensors given per optimized tensor (X, G and the state), in input order
PER_TENSOR = {"Adagrad": ("X", "G", "H"), "Momentum": ("X", "G", "V"), "Adam": ("X", "G", "V", "H")}


def tensor_groups(node) -> Tuple[int, int]:
    """(n, k): n optimized tensors of k inputs each (X, G, state...), after R and T."""
    k = len(PER_TENSOR[node.op_type])
    return (len(node.inputs) - 2) // k, k


@check(*PER_TENSOR, domain=TRAINING)
def _optimizer_rule(node):
    names = PER_TENSOR[node.op_type]
    n, k = tensor_groups(node)
    if n < 1 or len(node.inputs) != 2 + n * k:
        yield (f"has {len(node.inputs)} inputs, expected R, T and {k} per optimized tensor "
               f"({', '.join(names)}): 2 + {k} * n")
        return
    if len(node.outputs) != n * (k - 1):
        yield f"has {len(node.outputs)} outputs, expected {k - 1} per optimized tensor: {n * (k - 1)}"
    for i in (0, 1):
        s = shape_of(node, i)
        if s is not None and all(known(d) for d in s) and int(np.prod(s, dtype=np.int64)) != 1:
            yield f"{inp(node, i)} has shape {shape_str(s)}, expected a scalar ({'R' if i == 0 else 'T'})"
    for j in range(n):
        x = shape_of(node, 2 + j)
        for q in range(1, k):
            s = shape_of(node, 2 + q * n + j)
            if x is None or s is None or len(x) != len(s):
                if x is not None and s is not None:
                    yield f"{inp(node, 2 + q * n + j)} ({names[q]}) has shape {shape_str(s)}, expected X's {shape_str(x)}"
                continue
            if any(known(a) and known(b) and a != b for a, b in zip(x, s)):
                yield f"{inp(node, 2 + q * n + j)} ({names[q]}) has shape {shape_str(s)}, expected X's {shape_str(x)}"
    if node.op_type == "Momentum" and get_attr(node, "mode") not in ("standard", "nesterov"):
        yield f"attribute mode is {get_attr(node, 'mode')!r}, expected 'standard' or 'nesterov'"
