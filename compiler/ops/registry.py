"""Op knowledge in one place: attribute defaults, shape/dtype rules and numpy references.

Standard ONNX ops take their attribute defaults from onnx.defs and their shape rules from
onnx.shape_inference (run per node, with constant inputs visible for data propagation).
Family modules (elementwise.py, nn.py, ...) register:
  * ``@reference(op)``: a fast numpy reference ``fn(node, *arrays) -> list[array]`` used for
    constant folding and tests (anything else falls back to onnx.reference);
  * ``@shape_rule(op, domain)``: ``fn(node) -> list[(dtype, shape)]`` for ops onnx does not
    know (the onnxc domain of fused ops) or where onnx's rule is too weak;
  * ``facts(op, ..., name=value)``: facts other layers ask about the op instead of keeping their
    own lists (``fact(node, name)``, ``ops_with(name)``); see FACTS below for the names;
  * ``@check(op, ...)``: a validity rule ``fn(node) -> iterable of str``, each string one
    contradiction in the node as loaded (shapes, attributes, constant inputs), worded
    "<what> is <found>, expected <expected>"; validate.py runs them on every node at load and
    turns them into one ModelError. A rule only reports what is certainly wrong: symbolic or
    unknown dims never fail it, and what ONNX defines (clamped Slice bounds, negative indices
    in range, allowzero) is not an error.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import numpy as np

REFERENCES: Dict[Tuple[str, str], Callable] = {}
OP_FACTS: Dict[Tuple[str, str], Dict[str, object]] = {}

# The facts an op may declare (family modules: ``facts("Relu", twin=True, nchwc="map")``):
FACTS = {
    # narrow types (ops/narrow.py, passes/legalize_half.py): True when the op's float32 twin
    # (widen the inputs, round each output once) is tested on narrow types; "float16" when only
    # on float16 (a fused op whose reference rounds inner steps to bfloat16 differs)
    "twin": (True, "float16"),
    # its kernels only copy elements (or write zeros / literals of the element's own dtype), so
    # they run on narrow types as raw bits
    "bit_mover": (True,),
    # its kernels decode and encode narrow values themselves (QuantizeLinear, DequantizeLinear)
    "codec": (True,),
    # it runs as its ONNX function body (frontend/expand.py): True always (no kernel of its own),
    # "bfloat16" on bfloat16 (whose reference rounds each step of that body)
    "expand": (True, "bfloat16"),
    # passes through an NCHWc region elementwise (passes/layout/nchwc.py): "map", input 0 is the
    # image and the others scalar parameters; "broadcast", any input may be the image
    "nchwc": ("map", "broadcast"),
    # the indices of its parameter inputs (axes, pads, scales, sizes, k, shape, ...): small
    # tensors that decide output shapes or loop bounds, which the C kernels take as compile-time
    # constants (a runtime value sends the node to the fallback provider). InferenceSession
    # specializes on the value of a graph input fed to one (session.py, value specialization).
    "param_inputs": lambda v: isinstance(v, tuple) and bool(v) and all(type(i) is int and i >= 0 for i in v),
    # the indices of the inputs of which it reads only the shape or dtype, never the values
    # (Shape, CastLike's target_type): a parameter computed through them does not depend on them
    "type_only_inputs": lambda v: isinstance(v, tuple) and bool(v) and all(type(i) is int and i >= 0 for i in v),
    # onnxruntime's CPU kernel is known to answer differently from the spec for some attributes
    # or inputs: the fallback provider's default engine ("auto") runs a partition holding it in
    # onnx.reference, the spec's own, instead of onnxruntime (fallback.py, fallback_rt.py)
    "ort_deviates": (True,),
}
SHAPE_RULES: Dict[Tuple[str, str], Callable] = {}
CHECKS: Dict[Tuple[str, str], List[Callable]] = {}
_SCHEMA_DEFAULTS: Dict[Tuple[str, str, int], Dict[str, object]] = {}


def reference(op_type: str, domain: str = ""):
    def deco(fn):
        REFERENCES[(domain, op_type)] = fn
        return fn
    return deco


def shape_rule(op_type: str, domain: str = ""):
    def deco(fn):
        SHAPE_RULES[(domain, op_type)] = fn
        return fn
    return deco


def facts(*op_types: str, domain: str = "", **named):
    """Declare facts (FACTS) of each of ``op_types``."""
    for name, value in named.items():
        allowed = FACTS.get(name)
        if allowed is None or not (allowed(value) if callable(allowed) else value in allowed):
            raise ValueError(f"unknown op fact {name}={value!r} (known: {FACTS})")
    for op in op_types:
        OP_FACTS.setdefault((domain, op), {}).update(named)


def fact(node, name: str):
    """The value of fact ``name`` of ``node``'s op (None if it does not declare it)."""
    domain = "" if node.domain == "ai.onnx" else node.domain
    return OP_FACTS.get((domain, node.op_type), {}).get(name)


def ops_with(name: str, value=True, domain: str = "") -> frozenset:
    """Op types of ``domain`` whose fact ``name`` is ``value``."""
    return frozenset(op for (d, op), f in OP_FACTS.items() if d == domain and f.get(name) == value)


def check(*op_types: str, domain: str = ""):
    """Register a validity rule for each of ``op_types`` (several rules per op may stack)."""
    def deco(fn):
        for op in op_types:
            CHECKS.setdefault((domain, op), []).append(fn)
        return fn
    return deco


def schema_defaults(op_type: str, domain: str, opset: int) -> Dict[str, object]:
    key = (op_type, domain, opset)
    if key not in _SCHEMA_DEFAULTS:
        import onnx
        from onnx import helper
        out: Dict[str, object] = {}
        try:
            schema = onnx.defs.get_schema(op_type, max(opset, 1), domain)
            for name, a in schema.attributes.items():
                if a.default_value is not None and a.default_value.type != 0:
                    v = helper.get_attribute_value(a.default_value)
                    out[name] = v.decode() if isinstance(v, bytes) else v
        except Exception:  # noqa: BLE001 - op not in onnx.defs: no defaults
            pass
        _SCHEMA_DEFAULTS[key] = out
    return _SCHEMA_DEFAULTS[key]


def get_attr(node, name: str, default=None):
    """Attribute value, else the ONNX schema default, else ``default``."""
    if name in node.attrs:
        return node.attrs[name]
    d = schema_defaults(node.op_type, node.domain, node.opset)
    return d.get(name, default)


def evaluate(node, inputs: List[np.ndarray]) -> List[np.ndarray]:
    """Compute a node's outputs with numpy (fast path) or onnx.reference (everything else)."""
    fn = REFERENCES.get((node.domain, node.op_type))
    if fn is not None:
        outs = fn(node, *inputs)
        if outs is not NotImplemented:
            return [np.asarray(o) for o in outs]
    return _onnx_reference(node, inputs)


def _onnx_reference(node, inputs: List[np.ndarray]) -> List[np.ndarray]:
    import onnx
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    from ..ir.onnx_export import node_to_proto, value_info
    proto = node_to_proto(node)
    names_in = [f"in{i}" if v is not None else "" for i, v in enumerate(node.inputs)]
    names_out = [f"out{i}" for i in range(len(node.outputs))]
    del proto.input[:]
    proto.input.extend(names_in)
    del proto.output[:]
    proto.output.extend(names_out)
    g_in = [value_info(v, f"in{i}") for i, v in enumerate(node.inputs) if v is not None]
    g_out = [helper.make_tensor_value_info(n, 0, None) for n in names_out]
    graph = helper.make_graph([proto], "eval", g_in, g_out)
    opsets = [helper.make_opsetid(d, v) for d, v in (node.graph.opset.items() if node.graph else [("", node.opset)])]
    if node.domain and all(o.domain != node.domain for o in opsets):
        opsets.append(helper.make_opsetid(node.domain, node.opset or 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(onnx.IR_VERSION, 10)
    feeds = {f"in{i}": a for i, (a, v) in enumerate(zip(inputs, node.inputs)) if v is not None}
    return [o if isinstance(o, list) else np.asarray(o)  # a sequence stays a list
            for o in ReferenceEvaluator(model).run(None, feeds)]
