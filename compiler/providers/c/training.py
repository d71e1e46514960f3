"""ai.onnx.preview.training emitters: one update step of the optimizers Adagrad, Momentum (standard
and Nesterov) and Adam over each of their n tensors, as the spec's formulas (ops/training.py) per
element, computed in double and rounded once to the tensor's type.  R and T are read at run time
(the learning rate and step count change every step); attributes are literals."""
from __future__ import annotations

import numpy as np

from ...codegen.context import c_literal
from ...ops import get_attr
from ...ops.training import PER_TENSOR, TRAINING, tensor_groups
from .registry import c_kernel

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _check(node):
    if node.inputs[0].dtype not in FLOATS or node.inputs[1].dtype != np.int64:
        return "R must be float32/float64 and T int64"
    if any(v.dtype not in FLOATS for v in list(node.inputs[2:]) + list(node.outputs)):
        return "X, G and the state must be float32/float64"
    n, k = tensor_groups(node)
    for j in range(n):
        x = node.inputs[2 + j]
        group = [node.inputs[2 + q * n + j] for q in range(k)] + [node.outputs[q * n + j] for q in range(k - 1)]
        if any(tuple(v.shape) != tuple(x.shape) or v.dtype != x.dtype for v in group):
            return f"tensor {j}: X, G, state and outputs must have one shape and dtype"
    if node.inputs[0].size != 1 or node.inputs[1].size != 1:
        return "R and T must be scalars"
    return None


def _d(x: float) -> str:
    return c_literal(float(x), np.float64)


# per op: (C computing the step's scalars from r and t, C per element from x, g (regularized) and
# the state s0 (s1) giving the new state values n0 (n1) and the new x as xn)
def _formulas(node):
    a = get_attr
    if node.op_type == "Adagrad":
        return (f"const double lr = r / (1.0 + (double)t * {_d(a(node, 'decay_factor', 0.0))});",
                ["double n0 = s0 + g * g;",
                 f"double xn = x - lr * g / (sqrt(n0) + {_d(a(node, 'epsilon', 1e-6))});"])
    if node.op_type == "Momentum":
        alpha, beta = _d(a(node, "alpha")), _d(a(node, "beta"))
        upd = f"(g + {alpha} * n0)" if a(node, "mode") == "nesterov" else "n0"
        return (f"const double bt = t > 0 ? {beta} : 1.0;  /* the gradient's weight is 1 at the first step */",
                [f"double n0 = {alpha} * s0 + bt * g;", f"double xn = x - r * {upd};"])
    alpha, beta = _d(a(node, "alpha", 0.9)), _d(a(node, "beta", 0.999))
    post = _d(1.0 - a(node, "norm_coefficient_post", 0.0))
    return (f"const double lr = t > 0 ? r * sqrt(1.0 - pow({beta}, (double)t)) / (1.0 - pow({alpha}, (double)t)) : r;",
            [f"double n0 = {alpha} * s0 + (1.0 - {alpha}) * g;",
             f"double n1 = {beta} * s1 + (1.0 - {beta}) * g * g;",
             f"double xn = {post} * (x - lr * n0 / (sqrt(n1) + {_d(a(node, 'epsilon', 1e-6))}));"])


def _emit(node, ctx):
    n, k = tensor_groups(node)
    step, body = _formulas(node)
    norm = _d(get_attr(node, "norm_coefficient", 0.0))
    lines = [f"const double r = (double){ctx.ptr(node.inputs[0])}[0];",
             f"const int64_t t = {ctx.ptr(node.inputs[1])}[0];", step]
    for j in range(n):
        x = node.inputs[2 + j]
        if x.size == 0:
            continue
        ct = ctx.ctype(x)
        ins = [ctx.ptr(node.inputs[2 + q * n + j]) for q in range(k)]  # X, G, state...
        outs = [ctx.ptr(node.outputs[q * n + j]) for q in range(k - 1)]  # X_new, state_new...
        loads = ["double x = X[i], g = " + norm + " * x + G[i];"] + [f"double s{q} = S{q}[i];" for q in range(k - 2)]
        stores = ["XN[i] = (" + ct + ")xn;"] + [f"SN{q}[i] = ({ct})n{q};" for q in range(k - 2)]
        decl = [f"const {ct}* X = {ins[0]};", f"const {ct}* G = {ins[1]};"]
        decl += [f"const {ct}* S{q} = {ins[2 + q]};" for q in range(k - 2)]
        decl += [f"{ct}* XN = {outs[0]};"] + [f"{ct}* SN{q} = {outs[1 + q]};" for q in range(k - 2)]
        lines += ["{"] + ["  " + d for d in decl]
        lines.append(f"  for (int64_t i = 0; i < {x.size}; ++i) {{")
        lines += ["    " + s for s in loads + body + stores] + ["  }", "}"]
    return "\n".join(lines)


for _op in PER_TENSOR:
    c_kernel(_op, domain=TRAINING, check=_check)(_emit)
