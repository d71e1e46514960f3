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
from ...ops.control import always_true, trip_count
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

    def __init__(self, parent, sub: Graph, plan, base: int, extra: Optional[Dict[int, str]] = None,
                 scope: str = "a subgraph"):
        self.parent = parent
        self.graph = sub
        self.plan = plan
        self.blob = parent.blob
        self.options = parent.options
        self.helpers = parent.helpers  # file scope is the module's: one list for all nesting levels
        self.base = base
        self.extra = dict(extra or {})
        self.depth = getattr(parent, "depth", 0) + 1
        self.input_index = {}
        self.output_index = {id(v): i for i, v in enumerate(sub.outputs)}
        self.node_index = {id(n): i for i, n in enumerate(sub.nodes)}
        self._derived = parent._derived
        self.checks = parent.checks  # one numbering of runtime checks for the whole module
        self.scope = f"{scope} (in {parent.scope})" if parent.scope else scope

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


def _loop_body(body: Graph, sctx) -> str:
    """A Loop/Scan body; the loop is left once one of its runtime checks failed (the run fails
    after the node)."""
    before = len(sctx.checks)
    code = emit_nodes(body, sctx)
    if len(sctx.checks) > before:
        code += "\nif (status != ONNXC_OK) break;  /* a runtime check in the body failed */"
    return code


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
    sctx = SubContext(ctx, g, plan_subgraph(g), base, scope=f"the {key} of If '{node.name}'")
    lines = [emit_nodes(g, sctx)]
    for o, b in zip(node.outputs, g.outputs):
        lines.append(_copy(ctx.ptr(o), sctx.ptr(b), o.nbytes))
    return _indent("\n".join(l for l in lines if l))


@c_kernel("If", check=_if_check, scratch=_if_scratch)
def if_(node, ctx):
    base = region_base(ctx, node) if _if_scratch(node) else 0
    return "\n".join([f"if ({ctx.ptr(node.inputs[0])}[0]) {{", _branch_code(node, "then_branch", ctx, base),
                      "} else {", _branch_code(node, "else_branch", ctx, base), "}"])


# --- Loop and Scan: shared pieces --------------------------------------------------------------
def _restoring(check):
    """A Loop/Scan check that binds body types: when it refuses, the body's previous types are
    restored, so the fallback interpreter sees the model as it was (a body whose carried shapes
    change across iterations must not keep the first iteration's shapes)."""
    def wrapped(node):
        saved = [(v, v.dtype, v.shape) for v in node.attrs["body"].values() if not v.is_const]
        r = check(node)
        if r is not None:
            for v, dt, shape in saved:
                v.dtype, v.shape = dt, shape
        return r
    return wrapped


def _bind_body(body: Graph, types) -> Optional[str]:
    """Give the body inputs ``types`` [(dtype, shape)] and infer the body (see _restoring)."""
    for v, (dt, shape) in zip(body.inputs, types):
        if v.dtype is not None and v.dtype != dt:
            return f"body input '{v.name}' is {type_str(v)}, expected {np.dtype(dt).name}"
        if v.is_static and tuple(v.shape) != tuple(shape):
            return f"body input '{v.name}' is declared {type_str(v)}, the loop feeds it {tuple(shape)}"
        v.dtype, v.shape = np.dtype(dt), tuple(shape)
    _infer(body)
    bad = next((v for v in body.values() if not v.is_const and (v.dtype is None or not v.is_static)), None)
    if bad is not None:
        return f"body value '{bad.name}' has no static shape ({type_str(bad)})"
    return None


def _carried_reason(body_outs, inits, what="loop-carried") -> Optional[str]:
    for b, v in zip(body_outs, inits):
        if not _same_type(b, v):
            return (f"{what} value '{b.name}' is {type_str(b)} after one iteration but {type_str(v)} "
                    "initially (shapes must not change across iterations)")
    return None


class _Carried:
    """Double-buffered loop-carried values in the node's region: ``cur`` is what the body reads,
    the body's outputs are copied to ``nxt`` and the two are swapped after each iteration."""

    def __init__(self, values, offset: int, prefix: str):
        self.values, self.prefix, self.offs = values, prefix, []
        for v in values:
            self.offs.append((offset, offset + _align(v.nbytes)))
            offset += 2 * _align(v.nbytes)
        self.end = offset

    def name(self, k, which="cur"):
        return f"{self.prefix}_{which}{k}"

    def declare(self, ctx, base, inits) -> List[str]:
        out = []
        for k, (v, (a, b), init) in enumerate(zip(self.values, self.offs, inits)):
            out += [f"uint8_t* {self.name(k)} = arena + {base + a};",
                    f"uint8_t* {self.name(k, 'nxt')} = arena + {base + b};",
                    _copy(self.name(k), ctx.ptr(init), v.nbytes)]
        return [l for l in out if l]

    def advance(self, sctx, body_outs) -> List[str]:
        out = [_copy(self.name(k, "nxt"), sctx.ptr(b), b.nbytes) for k, b in enumerate(body_outs)]
        for k in range(len(self.values)):
            out.append(f"{{ uint8_t* t = {self.name(k)}; {self.name(k)} = {self.name(k, 'nxt')}; "
                       f"{self.name(k, 'nxt')} = t; }}")
        return [l for l in out if l]

    def finish(self, ctx, outs) -> List[str]:
        return [l for l in (_copy(ctx.ptr(o), self.name(k), o.nbytes) for k, o in enumerate(outs)) if l]


# --- Loop --------------------------------------------------------------------------------------
@_restoring
def _loop_check(node) -> Optional[str]:
    body = node.attrs.get("body")
    if node.input(0) is None:
        return "Loop without a trip count M (length decided by the runtime condition) is not compiled"
    m = trip_count(node)
    if m is None:
        return "the trip count M is a runtime value"
    if m < 0:
        return "negative trip count"
    c = node.input(1)
    if c is not None and c.size != 1:
        return "the condition must have exactly one element"
    inits = list(node.inputs[2:])
    n, k = len(inits), len(body.outputs) - 1 - len(inits)
    if len(body.inputs) != n + 2 or k < 0 or len(node.outputs) != n + k:
        return "body inputs/outputs do not match the Loop's"
    if any(v is None for v in inits):
        return "omitted loop-carried initial value"
    r = _bind_body(body, [(np.int64, ()), (np.bool_, ())] + [(v.dtype, v.shape) for v in inits])
    if r:
        return r
    if body.outputs[0].dtype != np.bool_ or body.outputs[0].size != 1:
        return "body condition output must be a one-element bool"
    r = _carried_reason(body.outputs[1:n + 1], inits) or _carried_reason(node.outputs[:n], inits, "Loop output")
    if r:
        return r
    for b, o in zip(body.outputs[n + 1:], node.outputs[n:]):
        if k and not always_true(node):
            return "scan outputs with a condition that may turn false have a data-dependent length"
        if o.dtype != b.dtype or tuple(o.shape) != (m,) + tuple(b.shape):
            return f"scan output '{o.name}' is {type_str(o)}, expected [{m}] + {type_str(b)}"
    return subgraph_reason(body, "Loop body")


def _loop_layout(node):
    body = node.attrs["body"]
    plan = plan_subgraph(body)
    iter_off = _align(plan.size)
    carried = _Carried(list(node.inputs[2:]), iter_off + 2 * 64, "")
    return plan, iter_off, carried


def _loop_scratch(node) -> int:
    return _loop_layout(node)[2].end


@c_kernel("Loop", check=_loop_check, scratch=_loop_scratch)
def loop(node, ctx):
    body = node.attrs["body"]
    plan, iter_off, carried = _loop_layout(node)
    base = region_base(ctx, node)
    d = getattr(ctx, "depth", 0)
    p = f"lp{d}"
    carried.prefix = p
    n = len(carried.values)
    extra = {id(body.inputs[0]): f"(arena + {base + iter_off})", id(body.inputs[1]): f"(arena + {base + iter_off + 64})"}
    extra.update({id(v): carried.name(k) for k, v in enumerate(body.inputs[2:])})
    sctx = SubContext(ctx, body, plan, base, extra, scope=f"the body of Loop '{node.name}'")
    c = node.input(1)
    lines = carried.declare(ctx, base, node.inputs[2:])
    lines.append(f"uint8_t {p}_cond = {ctx.ptr(c) + '[0] != 0' if c is not None else '1'};")
    lines.append(f"for (int64_t {p}_it = 0; {p}_it < {trip_count(node)} && {p}_cond; ++{p}_it) {{")
    inner = [f"*(int64_t*)(arena + {base + iter_off}) = {p}_it;",
             f"*(uint8_t*)(arena + {base + iter_off + 64}) = {p}_cond;",
             _loop_body(body, sctx)]
    for b, o in zip(body.outputs[n + 1:], node.outputs[n:]):
        inner.append(_copy(f"{ctx.ptr(o)} + {p}_it * {b.size}", sctx.ptr(b), b.nbytes))
    inner.append(f"{p}_cond = {sctx.ptr(body.outputs[0])}[0] != 0;")
    inner += carried.advance(sctx, body.outputs[1:n + 1])
    lines += [_indent("\n".join(l for l in inner if l)), "}"]
    lines += carried.finish(ctx, node.outputs[:n])
    return "\n".join(lines)


# --- Scan --------------------------------------------------------------------------------------
def _scan_attrs(node):
    body = node.attrs["body"]
    m = int(get_attr(node, "num_scan_inputs", 0))
    n = len(node.inputs) - m
    k = len(body.outputs) - n

    def axes(name, count, ranks):
        vals = list(get_attr(node, name, None) or [0] * count)
        return [a % r if r else a for a, r in zip(vals, ranks)] if len(vals) == count else None
    return body, n, m, k, axes


@_restoring
def _scan_check(node) -> Optional[str]:
    if node.opset < 9:
        return "Scan-8 (batch axis, sequence_lens) is not compiled"
    body, n, m, k, axes = _scan_attrs(node)
    ins, states = list(node.inputs[n:]), list(node.inputs[:n])
    if m < 1 or k < 0 or len(body.inputs) != n + m or len(node.outputs) != n + k or any(v is None for v in node.inputs):
        return "body inputs/outputs do not match the Scan's"
    in_axes = axes("scan_input_axes", m, [len(v.shape) for v in ins])
    dirs = list(get_attr(node, "scan_input_directions", None) or [0] * m)
    if in_axes is None or len(dirs) != m:
        return "scan_input_axes/directions do not match num_scan_inputs"
    lengths = {v.shape[a] for v, a in zip(ins, in_axes)}
    if len(lengths) != 1:
        return f"scan inputs have different lengths {sorted(lengths)}"
    length = lengths.pop()
    slices = [(v.dtype, tuple(d for i, d in enumerate(v.shape) if i != a)) for v, a in zip(ins, in_axes)]
    r = _bind_body(body, [(v.dtype, v.shape) for v in states] + slices)
    if r:
        return r
    r = _carried_reason(body.outputs[:n], states, "scan state") or _carried_reason(node.outputs[:n], states, "Scan output")
    if r:
        return r
    outs = body.outputs[n:]
    out_axes = axes("scan_output_axes", k, [len(b.shape) + 1 for b in outs])
    if out_axes is None or len(list(get_attr(node, "scan_output_directions", None) or [0] * k)) != k:
        return "scan_output_axes/directions do not match the scan outputs"
    for b, o, a in zip(outs, node.outputs[n:], out_axes):
        want = tuple(b.shape[:a]) + (length,) + tuple(b.shape[a:])
        if o.dtype != b.dtype or tuple(o.shape) != want:
            return f"scan output '{o.name}' is {type_str(o)}, expected {want}"
    return subgraph_reason(body, "Scan body")


def _scan_layout(node):
    body, n, m, k, axes = _scan_attrs(node)
    plan = plan_subgraph(body)
    off = _align(plan.size)
    slice_offs = []
    for b in body.inputs[n:]:
        slice_offs.append(off)
        off += _align(b.nbytes)
    return plan, slice_offs, _Carried(list(node.inputs[:n]), off, "")


def _scan_scratch(node) -> int:
    return _scan_layout(node)[2].end


def _strided(shape, axis):
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    return outer, inner


def _slice_copy(p, tensor, full_shape, axis, pos, buf, itemsize, gather: bool) -> str:
    """Copy slice ``pos`` along ``axis`` of ``tensor`` to (gather) or from (scatter) ``buf``."""
    outer, inner = _strided(full_shape, axis)
    length = full_shape[axis]
    if outer * inner == 0:
        return ""
    t = f"((uint8_t*){tensor}) + ({p}_o * {length} + {pos}) * {inner * itemsize}"
    b = f"((uint8_t*){buf}) + {p}_o * {inner * itemsize}"
    dst, src = (b, t) if gather else (t, b)
    return (f"for (int64_t {p}_o = 0; {p}_o < {outer}; ++{p}_o) "
            f"memcpy({dst}, {src}, {inner * itemsize});")


@c_kernel("Scan", check=_scan_check, scratch=_scan_scratch)
def scan(node, ctx):
    body, n, m, k, axes = _scan_attrs(node)
    plan, slice_offs, carried = _scan_layout(node)
    base = region_base(ctx, node)
    p = f"sc{getattr(ctx, 'depth', 0)}"
    carried.prefix = p
    ins = list(node.inputs[n:])
    in_axes = axes("scan_input_axes", m, [len(v.shape) for v in ins])
    in_dirs = list(get_attr(node, "scan_input_directions", None) or [0] * m)
    outs = body.outputs[n:]
    out_axes = axes("scan_output_axes", k, [len(b.shape) + 1 for b in outs])
    out_dirs = list(get_attr(node, "scan_output_directions", None) or [0] * k)
    length = ins[0].shape[in_axes[0]]
    extra = {id(v): carried.name(j) for j, v in enumerate(body.inputs[:n])}
    extra.update({id(v): f"(arena + {base + off})" for v, off in zip(body.inputs[n:], slice_offs)})
    sctx = SubContext(ctx, body, plan, base, extra, scope=f"the body of Scan '{node.name}'")
    lines = carried.declare(ctx, base, node.inputs[:n])
    lines.append(f"for (int64_t {p}_it = 0; {p}_it < {length}; ++{p}_it) {{")
    inner = []
    for v, a, dr, b in zip(ins, in_axes, in_dirs, body.inputs[n:]):
        pos = f"({length - 1} - {p}_it)" if dr else f"{p}_it"
        inner.append(_slice_copy(p, ctx.ptr(v), v.shape, a, pos, sctx.ptr(b), v.dtype.itemsize, True))
    inner.append(_loop_body(body, sctx))
    for b, o, a, dr in zip(outs, node.outputs[n:], out_axes, out_dirs):
        pos = f"({length - 1} - {p}_it)" if dr else f"{p}_it"
        inner.append(_slice_copy(p, ctx.ptr(o), o.shape, a, pos, sctx.ptr(b), o.dtype.itemsize, False))
    inner += carried.advance(sctx, body.outputs[:n])
    lines += [_indent("\n".join(l for l in inner if l)), "}"]
    lines += carried.finish(ctx, node.outputs[:n])
    return "\n".join(lines)
