"""Validity of a loaded model: every node's rules (``@check`` in the family modules), dtypes
against the ONNX schema, value sizes, and onnx's strict shape inference, at compile time.

A model that onnx.checker accepts can still be impossible to run: a Conv bias shorter than its
output channels, a Reshape to a different element count, a constant Gather index past the end,
a 4 TiB ConstantOfShape. Such nodes must not reach the C kernels (out-of-bounds reads) or the
fallback interpreter (an error at run time, far from its cause), so ``validate_graph`` runs
after shapes are inferred and before any pass, on every node (those the fallback will run and
those inside subgraphs included), and raises one ModelError listing every invalid node:

    node 'conv1' (Conv): input 2 'b' has 32 elements, expected 64 (W's output channels)

Size limits (a documented rule rather than "whatever the machine can allocate", so a model
compiles the same everywhere): every dimension in [0, 2^40), every value (input, constant,
intermediate, output) at most ``MAX_VALUE_BYTES`` = 2^40 bytes (1 TiB), and so is the arena the
driver plans (``check_arena``).
"""
from __future__ import annotations

import logging
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError
from ..ir import subgraphs, type_str
from .registry import CHECKS
from .shapes import own_check

log = logging.getLogger("onnxc")

MAX_DIM = 1 << 40          # dims must be below this
MAX_VALUE_BYTES = 1 << 40  # one value may take at most this many bytes


# --- helpers for rules ----------------------------------------------------------------------
def inp(node, i: int) -> str:
    """How a message names input ``i``: input 2 'conv1.bias'."""
    v = node.input(i)
    return f"input {i} '{v.name}'" if v is not None else f"input {i}"


def outp(node, i: int) -> str:
    return f"output {i} '{node.outputs[i].name}'"


def shape_str(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def shape_of(node, i: int) -> Optional[tuple]:
    v = node.input(i)
    return None if v is None else v.shape


def const_of(node, i: int) -> Optional[np.ndarray]:
    v = node.input(i)
    return None if v is None or v.const is None else v.const


def known(d) -> bool:
    return isinstance(d, (int, np.integer))


def axis_problem(what: str, axis, rank: Optional[int], end_ok: bool = False) -> Optional[str]:
    """Problem text when ``axis`` is outside [-rank, rank-1] (``end_ok``: [-rank, rank])."""
    if rank is None:
        return None
    if rank == 0:
        return f"{what} is {int(axis)}, expected no axis at all (the input is a scalar)"
    hi = rank if end_ok else rank - 1
    if not -rank <= int(axis) <= hi:
        return f"{what} is {int(axis)}, expected an axis in [{-rank}, {hi}] (rank {rank})"
    return None


def broadcast_problem(named_shapes: Sequence[Tuple[str, tuple]]) -> Optional[str]:
    """Multidirectional (numpy) broadcasting: at each trailing position the known dims other
    than 1 must agree."""
    shapes = [(n, s) for n, s in named_shapes if s is not None]
    if len(shapes) < 2:
        return None
    r = max(len(s) for _, s in shapes)
    for k in range(1, r + 1):
        seen = None
        for name, s in shapes:
            if k > len(s) or not known(s[-k]) or s[-k] == 1:
                continue
            if seen is None:
                seen = (name, s)
            elif seen[1][-k] != s[-k]:
                return (f"{seen[0]} {shape_str(seen[1])} and {name} {shape_str(s)} do not broadcast: "
                        f"{seen[1][-k]} vs {s[-k]} at axis {-k}")
    return None


def unidirectional_problem(name: str, shape, target, target_name: str) -> Optional[str]:
    """``shape`` must broadcast to ``target`` (each trailing dim 1 or equal; rank not larger)."""
    if shape is None or target is None:
        return None
    if len(shape) > len(target):
        return (f"{name} has shape {shape_str(shape)}, expected rank <= {len(target)} to broadcast to "
                f"{target_name} {shape_str(target)}")
    for k in range(1, len(shape) + 1):
        d, t = shape[-k], target[-k]
        if known(d) and known(t) and d not in (1, t):
            return (f"{name} has shape {shape_str(shape)}, which does not broadcast to {target_name} "
                    f"{shape_str(target)}: {d} vs {t} at axis {-k}")
    return None


# --- generic rules --------------------------------------------------------------------------
def _size_text(nbytes: int) -> str:
    for unit, s in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= s:
            return f"{nbytes / s:.1f} {unit}"
    return f"{nbytes} bytes"


def size_problem(what: str, v) -> Optional[str]:
    """Negative or huge dims, or more than MAX_VALUE_BYTES in one value."""
    if v.shape is None:
        return None
    dims = [d for d in v.shape if known(d)]
    for i, d in enumerate(v.shape):
        if known(d) and d < 0:
            return f"{what} has shape {shape_str(v.shape)}: dim {i} is negative"
        if known(d) and d >= MAX_DIM:
            return f"{what} has shape {shape_str(v.shape)}: dim {i} = {d} is at or above the limit 2^40"
    if v.dtype is None or len(dims) != len(v.shape):
        return None
    n = 1
    for d in dims:
        n *= int(d)  # Python ints: no overflow
    nbytes = n * (v.dtype.itemsize if v.dtype != object else 8)
    if nbytes > MAX_VALUE_BYTES:
        return (f"{what} has shape {shape_str(v.shape)} of {v.dtype}: {n} elements, {_size_text(nbytes)}, "
                f"expected at most {_size_text(MAX_VALUE_BYTES)} per value")
    return None


_SCHEMAS = {}
_TYPE_STRINGS = {}


def _schema(node):
    """(formal inputs, {type var: allowed type strings}, since_version) of the node's ONNX
    schema, or None for ops onnx does not define."""
    key = (node.op_type, node.domain, node.opset)
    if key not in _SCHEMAS:
        import onnx
        try:
            s = onnx.defs.get_schema(node.op_type, max(node.opset, 1), node.domain)
            allowed = {tc.type_param_str: frozenset(tc.allowed_type_strs) for tc in s.type_constraints}
            formals = [(f.type_str, f.option.name == "Variadic", f.is_homogeneous) for f in s.inputs]
            _SCHEMAS[key] = (formals, allowed, s.since_version) if formals else None
        except Exception:  # noqa: BLE001 - not an onnx op (custom domain, onnxc fused op)
            _SCHEMAS[key] = None
    return _SCHEMAS[key]


def _type_string(dtype) -> Optional[str]:
    if dtype not in _TYPE_STRINGS:
        from onnx import TensorProto

        from ..dtypes import onnx_from_np_dtype
        try:
            _TYPE_STRINGS[dtype] = f"tensor({TensorProto.DataType.Name(onnx_from_np_dtype(dtype)).lower()})"
        except Exception:  # noqa: BLE001 - a dtype onnx has no name for
            _TYPE_STRINGS[dtype] = None
    return _TYPE_STRINGS[dtype]


def schema_type_problems(node) -> Iterable[str]:
    """Input dtypes against the op's ONNX schema: the inputs of one type variable (T, T1, ...)
    must share one dtype (an int32 weight feeding a float MatMul). Which dtypes a variable
    allows is left to the providers: onnxc computes some beyond the schema (float64
    CausalConvWithState), and a provider refuses what it cannot run exactly."""
    schema = _schema(node)
    if schema is None:
        return
    formals, allowed, since = schema
    variadic = formals[-1][1]
    bound = {}
    for i, v in enumerate(node.inputs):
        if v is None or v.dtype is None:
            continue
        if i >= len(formals) and not variadic:
            break
        var, _, homogeneous = formals[min(i, len(formals) - 1)]
        if var not in allowed or not (homogeneous or i < len(formals) - 1 or not variadic):
            continue  # a fixed type, or one element of a heterogeneous variadic list
        if not any(t.startswith("tensor(") for t in allowed[var]):
            continue  # sequence/optional parameters: the IR carries no dtype for those
        ts = _type_string(v.dtype)
        if ts is None:
            continue
        if var in bound and bound[var][0] != ts:
            yield (f"{inp(node, i)} is {ts}, expected {bound[var][0]} like {inp(node, bound[var][1])} "
                   f"(both are type {var} of {node.op_type}-{since})")
        bound.setdefault(var, (ts, i))


# --- onnx's own strict inference --------------------------------------------------------------
_ONNX_NODE = re.compile(r"\(op_type:([^,]*), node name: ([^)]*)\)")


def onnx_suspects(error: str) -> List[Tuple[str, str]]:
    """(op_type, node name) pairs named in an onnx strict shape inference error."""
    return [(m.group(1), m.group(2)) for m in _ONNX_NODE.finditer(error or "")]


def onnx_problem(node) -> Optional[str]:
    """onnx's strict shape/type inference of this node alone (constant inputs visible)."""
    from .shapes import _onnx_infer
    try:
        _onnx_infer(node)
    except ModelError as e:
        text = str(e)
        text = text[text.rfind("): ") + 3:] if "): " in text else text
        text = re.sub(r"\[\w+Error\]\s*", "", text).strip()
        ins = ", ".join(f"'{v.name}' {type_str(v)}" for v in node.inputs if v is not None)
        return f"onnx shape inference: {text} (inputs: {ins})"
    except Exception:  # noqa: BLE001 - inference could not be run at all: no verdict
        return None
    return None


def check_arena(plan) -> None:
    """The planned arena (intermediates live at the same time) holds at most MAX_VALUE_BYTES:
    values each within the limit can still add up to more than any machine allocates."""
    if plan.size > MAX_VALUE_BYTES:
        big = sorted(plan.buffers, key=lambda b: -b.size)[:3]
        names = ", ".join(f"'{b.label or b.key}' {_size_text(b.size)}" for b in big)
        raise ModelError(f"invalid model: the arena needs {_size_text(plan.size)} for values live at the same "
                         f"time, expected at most {_size_text(MAX_VALUE_BYTES)} (largest: {names})")


# --- the runner -------------------------------------------------------------------------------
def _node_label(node, graph) -> str:
    op = node.op_type if not node.domain else f"{node.domain}.{node.op_type}"
    where = f", in subgraph '{graph.name}'" if graph.parent is not None else ""
    return f"node '{node.name}' ({op}{where})"


def custom_rule_problems(node, refused: Dict) -> Iterable[str]:
    """Ops outside the standard domain (com.microsoft's quantized ops, onnxc's own): onnx has no
    schema to check them against, so their shape rule's checks are the only ones. Shape
    inference ran the rule and kept its refusal in ``refused`` (``shapes.infer_graph``)."""
    e = refused.get(node)
    if e is None or not own_check(node):
        return
    msg, own = str(e), f"node '{node.name}' ({node.op_type}): "  # the caller names the node
    yield msg[len(own):] if msg.startswith(own) else msg


def node_problems(node, refused: Dict) -> List[str]:
    """Every contradiction found in ``node`` by the generic rules and its op's rules."""
    out = list(schema_type_problems(node)) + list(custom_rule_problems(node, refused))
    for rule in CHECKS.get((node.domain, node.op_type), ()):
        try:
            out.extend(p for p in rule(node) if p)
        except Exception as e:  # noqa: BLE001 - a rule's own bug must not refuse a valid model
            log.warning("onnxc: validity rule %s failed on %s: %s: %s", rule.__name__, node.label,
                        type(e).__name__, e)
    for i, o in enumerate(node.outputs):
        p = size_problem(outp(node, i), o)
        if p:
            out.append(p)
    return out


def graph_problems(graph, suspects=(), refused: Optional[Dict] = None) -> List[str]:
    problems = []
    if graph.parent is None:
        for v in graph.inputs:
            p = size_problem(f"graph input '{v.name}'", v)
            if p:
                problems.append(p)
    for v in graph.constants.values():
        p = size_problem(f"constant '{v.name}'", v)
        if p:
            problems.append(p)
    suspects = list(suspects)
    for node in graph.nodes:
        found = node_problems(node, refused or {})
        if not found and any(op == node.op_type and (not name or name == node.name) for op, name in suspects):
            p = onnx_problem(node)
            found = [p] if p else []
        problems.extend(f"{_node_label(node, graph)}: {p}" for p in found)
        for sub in subgraphs(node):
            problems.extend(graph_problems(sub, suspects, refused))
    return problems


def validate_graph(graph, onnx_error: Optional[str] = None, refused: Optional[Dict] = None) -> None:
    """Raise one ModelError listing every invalid node of ``graph`` (subgraphs included).
    ``refused``: the shape rules' refusals kept by ``infer_graph(graph, refused=...)``.
    ``onnx_error``: what onnx's strict whole-model inference reported; the nodes it names are
    re-inferred alone and refused only if that confirms it (onnx also complains about declared
    value_info it cannot merge, which onnxruntime only warns about)."""
    problems = graph_problems(graph, onnx_suspects(onnx_error) if onnx_error else (), refused)
    if problems:
        if len(problems) == 1:
            raise ModelError(f"invalid model: {problems[0]}")
        raise ModelError(f"invalid model, {len(problems)} problems:\n  " + "\n  ".join(problems))
    if onnx_error:
        log.warning("onnxc: onnx strict shape inference reports a problem no node confirms alone "
                    "(compiling on): %s", onnx_error.strip().splitlines()[0][:300])
