"""Control flow in C: If, Loop (constant trip count) and Scan (opset 9+, static length).

A subgraph's nodes are emitted by their normal emitters inside the control-flow statement.
Its values live in a region of the arena reserved as the node's scratch (live for the whole
node, so it never overlaps anything the node reads or writes): the subgraph is planned on its
own (``plan_graph`` with its outputs planned too) and a ``SubContext`` resolves a subgraph
value to ``arena + region + its offset``, an outer-scope value through the parent context.

* If: both branches must be entirely C and produce the If's static shapes and dtypes; each
  branch's outputs are copied into the If's outputs.
* Loop: the trip count must be a constant and the loop-carried values keep their shapes
  (checked on the body inferred from the initial values).  Carried values are double-buffered
  (a body may permute them); scan outputs need a condition that provably stays true, since an
  early exit would give them a data-dependent length.
* Scan: slices of the scan inputs are gathered into the region before each body run and the
  body's scan outputs scattered into the outputs (any axis, either direction).
Everything else is refused with its reason and runs in the fallback interpreter.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np

from ...codegen.context import EmitContext
from ...codegen.memory import _align, plan_graph
from ...ir import Graph, type_str
from ...ops import get_attr
from .registry import KERNELS, c_kernel, check_node


# --- subgraph planning and emission ----------------------------------------------------------
def _kernel(node):
    return KERNELS[(node.domain, node.op_type)]


def plan_subgraph(sub: Graph):
    """Arena plan of a subgraph's own values (inputs and constants are not in it)."""
    from ...fallback import used_values
    local = {id(v) for n in sub.nodes for v in n.outputs}
    outs = {id(v) for v in sub.outputs}

    def alias_of(node):  # views only of the subgraph's own values: the region holds their bytes
        k = _kernel(node)
        if k.alias is None or id(node.outputs[0]) in outs:
            return None
        src = k.alias(node)
        return src if src is not None and id(src) in local else None

    def scratch_of(node):
        k = _kernel(node)
        return int(k.scratch(node)) if k.scratch else 0
    return plan_graph(sub, alias_of, scratch_of, reads=used_values, pin_outputs=False)


class SubContext(EmitContext):
    """EmitContext of a subgraph whose planned values start at arena offset ``base``.
    ``extra``: id(value) -> C pointer expression for values the control-flow code provides
    (loop-carried inputs, iteration number, scan slices)."""

    def __init__(self, parent, sub: Graph, plan, base: int, extra: Optional[Dict[int, str]] = None):
        self.parent = parent
        self.graph = sub
        self.plan = plan
        self.blob = parent.blob
        self.options = parent.options
        self.base = base
        self.extra = dict(extra or {})
        self.depth = getattr(parent, "depth", 0) + 1
        self.input_index = {}
        self.output_index = {id(v): i for i, v in enumerate(sub.outputs)}
        self.node_index = {id(n): i for i, n in enumerate(sub.nodes)}
        self._derived = parent._derived

    def root(self, v):
        r = self.plan.root.get(id(v))
        return r if r is not None else self.parent.root(v)

    def ptr(self, v) -> str:
        ct = self.ctype(v)
        r = self.plan.root.get(id(v), v)
        if id(r) in self.extra:
            return f"(({ct}*){self.extra[id(r)]})"
        if id(r) in self.plan.offsets:
            return f"(({ct}*)(arena + {self.base + self.plan.offsets[id(r)]}))"
        return self.parent.ptr(v)

    def scratch(self, node, ctype: str = "float") -> str:
        off = self.plan.offset_of(("scratch", self.node_index[id(node)]))
        return f"(({ctype}*)(arena + {self.base + off}))"


def region_base(ctx, node) -> int:
    """Arena offset of ``node``'s scratch region in context ``ctx`` (top level or nested)."""
    return getattr(ctx, "base", 0) + ctx.plan.offset_of(("scratch", ctx.node_index[id(node)]))


def emit_nodes(sub: Graph, sctx) -> str:
    out = []
    for n in sub.nodes:
        code = _kernel(n).emit(n, sctx).strip()
        name = n.name.replace("*/", "* /")
        out.append(f"/* {n.op_type} \"{name}\" */\n{{\n{_indent(code)}\n}}")
    return "\n".join(out)


def _indent(code: str, n: int = 4) -> str:
    return "\n".join((" " * n + line) if line else line for line in code.splitlines())


def _copy(dst: str, src: str, nbytes: int) -> str:
    return f"memcpy({dst}, {src}, {nbytes});" if nbytes else ""


def subgraph_reason(sub: Graph, what: str) -> Optional[str]:
    """Why the subgraph cannot be emitted in C (a node the C provider refuses), or None."""
    for n in sub.nodes:
        r = check_node(n)
        if r is not None:
            return f"{what}: {n.op_type} '{n.name}' is not supported in C ({r})"
    return None


def _same_type(a, b) -> bool:
    return a.dtype == b.dtype and a.is_static and b.is_static and tuple(a.shape) == tuple(b.shape)


def _infer(sub: Graph) -> None:
    from ...ops import infer_graph
    infer_graph(sub)


# --- If ----------------------------------------------------------------------------------------
def _if_check(node) -> Optional[str]:
    if node.inputs[0].size != 1:
        return "the condition must have exactly one element"
    for key in ("then_branch", "else_branch"):
        g = node.attrs.get(key)
        if not isinstance(g, Graph):
            return f"{key} is missing"
        _infer(g)
        if len(g.outputs) != len(node.outputs):
            return f"{key} has {len(g.outputs)} outputs, the If {len(node.outputs)}"
        for o, b in zip(node.outputs, g.outputs):
            if not _same_type(o, b):
                return (f"{key} output '{b.name}' is {type_str(b)} but the If output is {type_str(o)} "
                        "(branches must produce the same static shapes)")
        r = subgraph_reason(g, key)
        if r:
            return r
    return None


def _if_scratch(node) -> int:
    return max(plan_subgraph(node.attrs[k]).size for k in ("then_branch", "else_branch"))


def _branch_code(node, key, ctx, base) -> str:
    g = node.attrs[key]
    sctx = SubContext(ctx, g, plan_subgraph(g), base)
    lines = [emit_nodes(g, sctx)]
    for o, b in zip(node.outputs, g.outputs):
        lines.append(_copy(ctx.ptr(o), sctx.ptr(b), o.nbytes))
    return _indent("\n".join(l for l in lines if l))


@c_kernel("If", check=_if_check, scratch=_if_scratch)
def if_(node, ctx):
    base = region_base(ctx, node) if _if_scratch(node) else 0
    return "\n".join([f"if ({ctx.ptr(node.inputs[0])}[0]) {{", _branch_code(node, "then_branch", ctx, base),
                      "} else {", _branch_code(node, "else_branch", ctx, base), "}"])
