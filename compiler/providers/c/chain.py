"""C kernel of onnxc.ElementwiseChain: one broadcast loop nest over the output computing the
whole chain per element.

Each body input is loaded once per element (indexed with its own broadcast strides; a size-1
constant becomes a literal), each body node becomes one local of its output's C type built from
elementwise.scalar_expr (the same expressions the unfused kernels use), and every output is
stored from the same iteration.  Converting each node's result to its own C type keeps the
rounding and integer wrap-around of the unfused graph: float32 math stays float32 even where
an expression has double literals, int8 sums wrap at every step as they would when stored.
"""
from __future__ import annotations

import numpy as np

from ...codegen.loops import pooled_loop
from ...errors import ModelError
from ...ir import type_str
from ...ops.chain import DOMAIN, OP, body_of
from .elementwise import has_scalar_expr, scalar_expr
from .registry import c_kernel, check_node


def _broadcasts_to(shape, loop) -> bool:
    try:
        return tuple(np.broadcast_shapes(tuple(shape), tuple(loop))) == tuple(loop)
    except ValueError:
        return False


def _chain_check(node):
    try:
        body = body_of(node)
    except ModelError as e:
        return str(e)
    if not node.outputs:
        return "the chain has no outputs"
    loop = tuple(node.outputs[0].shape)
    for o, b in zip(node.outputs, body.outputs):
        if tuple(o.shape) != loop:
            return f"outputs have different shapes ({o.shape} vs {loop}): one loop nest cannot write them"
        if o.dtype != b.dtype or b.shape is None or tuple(b.shape) != loop:
            return f"output '{o.name}' is {type_str(o)}, the body computes {type_str(b)}"
    if len({id(b) for b in body.outputs}) != len(body.outputs):
        return "the body returns one value twice"
    local = {id(v) for v in body.values()}
    produced = {id(o) for n in body.nodes for o in n.outputs}
    for b in body.outputs:
        if id(b) not in produced:
            return f"body output '{b.name}' is not computed by a body node"
    for v in list(body.inputs) + list(body.constants.values()):
        if v.shape is None or not _broadcasts_to(v.shape, loop):
            return f"body value '{v.name}' of shape {v.shape} does not broadcast to {loop}"
    for n in body.nodes:
        if not has_scalar_expr(n) or len(n.outputs) != 1:
            return f"body node {n.label} is not a one-output elementwise op"
        if any(v is not None and id(v) not in local for v in n.inputs):
            return f"body node {n.label} reads a value from outside the body"
        if n.outputs[0].shape is None or not _broadcasts_to(n.outputs[0].shape, loop):
            return f"body node {n.label} output shape {n.outputs[0].shape} does not broadcast to {loop}"
        reason = check_node(n)  # each member must be one the C provider runs on its own
        if reason is not None:
            return f"body node {n.label}: {reason}"
    return None


@c_kernel(OP, domain=DOMAIN, check=_chain_check)
def _emit_chain(node, ctx):
    body = body_of(node)
    names = {}     # id(body value) -> C expression of its element (local name or literal)
    ptrs, loaded = [], []  # ptrs: (C pointer type, name, expression); loaded: (C type, local name) per operand
    operands = []
    for v, b in zip(node.inputs, body.inputs):
        if not b.uses:
            continue
        lit = ctx.scalar(v)
        if lit is not None:
            names[id(b)] = lit
            continue
        k = len(operands)
        ptrs.append((f"const {ctx.ctype(v)}*", f"x{k}", ctx.ptr(v)))
        operands.append((f"x{k}", v.shape))
        loaded.append((ctx.ctype(b), f"a{k}"))
        names[id(b)] = f"a{k}"
    for c in body.constants.values():
        if not c.uses:
            continue
        if c.const.size == 1:
            names[id(c)] = ctx.lit(c.const.reshape(-1)[0], c.dtype)
            continue
        k = len(operands)
        ptrs.append((f"const {ctx.ctype(c)}*", f"x{k}", ctx.const_array(c.const)))
        operands.append((f"x{k}", c.shape))
        loaded.append((ctx.ctype(c), f"a{k}"))
        names[id(c)] = f"a{k}"
    for j, o in enumerate(node.outputs):
        ptrs.append((f"{ctx.ctype(o)}*", f"y{j}", ctx.ptr(o)))
    steps = []
    for k, n in enumerate(body.nodes):
        out = n.outputs[0]
        expr = scalar_expr(n, [None if v is None else names[id(v)] for v in n.inputs], ctx)
        steps.append(f"const {ctx.ctype(out)} t{k} = ({ctx.ctype(out)})({expr});")
        names[id(out)] = f"t{k}"

    def element(elems, oi):
        lines = [f"const {ct} {nm} = {e};" for (ct, nm), e in zip(loaded, elems)] + steps
        lines += [f"y{j}[{oi}] = {names[id(b)]};" for j, b in enumerate(body.outputs)]
        return "\n".join(lines)
    return pooled_loop(ctx, node, ptrs, node.outputs[0].shape, operands, element, block=True)
