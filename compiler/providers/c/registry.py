"""The C provider's kernel table: which ops it can emit, under which conditions.

Each family module (elementwise.py, nn.py, ...) registers emitters with ``@c_kernel``:

    @c_kernel("Relu", check=float_only)
    def relu(node, ctx) -> str: ...      # C statements for this node

* ``check(node) -> str | None``: a reason the node is NOT supported, or None;
* ``scratch(node) -> int``: bytes of per-node scratch the kernel needs (im2col, packing);
* ``alias(node) -> Value | None``: the output is a view of that input (Reshape-like ops);
* ``bounds(node) -> [shape | None]``: per output, an upper bound of a data-dependent shape (NonZero,
  Unique, NonMaxSuppression): such an output may have no static shape; it gets a buffer of the
  bound, and the kernel writes the actual dims to ``ctx.dims(value)`` (an int64 record in the
  arena, exposed by ``<prefix>_output_shape`` and read by the Python runtime).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from ...dtypes import dtype_name, has_c_type
from ...ops.narrow import narrow_values, needs_twin, twin_plan, twin_reason


@dataclass
class CKernel:
    op_type: str
    domain: str
    emit: Callable
    check: Optional[Callable] = None
    scratch: Optional[Callable] = None
    alias: Optional[Callable] = None
    bounds: Optional[Callable] = None


KERNELS: Dict[Tuple[str, str], CKernel] = {}


def c_kernel(*op_types: str, domain: str = "", check=None, scratch=None, alias=None, bounds=None):
    def deco(fn):
        for op in op_types:
            KERNELS[(domain, op)] = CKernel(op, domain, fn, check, scratch, alias, bounds)
        return fn
    return deco


def bounded_outputs(node) -> Dict[int, tuple]:
    """{output index: upper-bound shape} of the outputs of ``node`` whose shape depends on the
    data (no static shape) and that its kernel writes into a buffer of a compile-time bound.
    Only at the top level: a subgraph's values live in its body's arena region, planned apart."""
    k = KERNELS.get((node.domain, node.op_type))
    if k is None or k.bounds is None or (node.graph is not None and node.graph.parent is not None):
        return {}
    if any(v is not None and not v.is_static for v in node.inputs):
        return {}
    out = {}
    for i, (v, b) in enumerate(zip(node.outputs, k.bounds(node))):
        if b is not None and not v.is_static and v.shape is not None and len(v.shape) == len(b):
            out[i] = tuple(int(d) for d in b)
    return out


def bounded_values(graph, c_node_ids) -> Dict[int, tuple]:
    """{id(value): upper-bound shape} of the data-dependent values C nodes of ``graph`` write."""
    out = {}
    for n in graph.nodes:
        if id(n) in c_node_ids:
            for i, b in bounded_outputs(n).items():
                out[id(n.outputs[i])] = b
    return out


def common_check(node) -> Optional[str]:
    """Conditions every C kernel relies on: known C dtypes and static shapes (a data-dependent
    output of a kernel with ``bounds`` excepted)."""
    bounded = bounded_outputs(node)
    for role, vals in (("input", node.inputs), ("output", node.outputs)):
        for i, v in enumerate(vals):
            if v is None:
                continue
            if v.dtype is None or not has_c_type(v.dtype):
                return f"{role} {i} '{v.name}' has dtype {v.dtype}, which the C path does not carry"
            if not v.is_static and not (role == "output" and i in bounded):
                if role == "input" and v.producer is not None and bounded_outputs(v.producer):
                    return (f"input {i} '{v.name}' has a data-dependent shape ({v.shape}, from "
                            f"{v.producer.op_type} '{v.producer.name}'): C kernels are compiled for static "
                            f"shapes, so its readers run in the fallback provider")
                return f"{role} {i} '{v.name}' has no static shape ({v.shape})"
    return None


def check_node(node) -> Optional[str]:
    k = KERNELS.get((node.domain, node.op_type))
    if k is None:
        return "no C kernel for this op"
    reason = common_check(node)
    if reason is None:  # narrow types (float16, ...) are raw bits: only casts and bit movers see them
        reason = narrow_reason(node)
    if reason is None and k.check is not None:
        reason = k.check(node)
    return reason


def narrow_reason(node) -> Optional[str]:
    """None if the C kernel of ``node`` may see its narrow-typed values (none, a cast, or a
    kernel that only moves bits), else why not."""
    if not needs_twin(node):
        return None
    v = narrow_values(node)[0]
    what = f"{dtype_name(v.dtype)} '{v.name}'"
    plan = twin_plan(node)
    if isinstance(plan, str):
        return f"{what}: {plan}"
    reason = twin_reason(node, plan, check_node)
    if reason:
        return f"{what}: narrow types run {node.op_type} in float32, where it is refused: {reason}"
    return f"{what}: {node.op_type} on narrow types needs the legalize_half pass (float32 twin)"


# --- small reusable checks -------------------------------------------------------------------
def dtypes_in(*allowed):
    """check: every input and output dtype is one of ``allowed`` (numpy dtype names)."""
    import numpy as np
    allowed_dt = {np.dtype(a) for a in allowed}

    def check(node):
        for v in list(node.inputs) + list(node.outputs):
            if v is not None and v.dtype not in allowed_dt:
                return f"dtype {v.dtype} of '{v.name}' not supported (supported: {', '.join(allowed)})"
        return None
    return check


def all_of(*checks):
    def check(node):
        for c in checks:
            r = c(node)
            if r:
                return r
        return None
    return check
