"""Nodes that run as their op's ONNX function body (the op's ``expand`` fact, ops/registry.py).

onnx.defs defines some ops by a function: a graph of standard ops, built per node from its
attributes and input types (a context-dependent function). Where the op's own kernel cannot be
used, the node is replaced by that body, whose ops the C provider compiles one by one:

* FlexAttention (ai.onnx.preview) has no C kernel; its body is the spec's computation with the
  score_mod/prob_mod subgraphs inlined by onnx as plain nodes;
* Attention on bfloat16: the reference rounds every step of the body to bfloat16, which one
  float32 computation rounded at the end does not reproduce; the body's narrow nodes each run
  through their float32 twin and round where the body rounds.

This runs after validation, so a node's validity rules see it as written. The body's values are
typed by onnx's shape inference (with data propagation: the body computes shapes with Shape,
Concat, ...) on a model of the body alone, fed the node's input types and constant inputs. A node
that cannot be expanded (its function cannot be built, it reads a name no scope defines, an
output it must produce is missing) is left as it is, with a log line saying why.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Tuple, Union

import onnx
from onnx import helper, numpy_helper

from ..dtypes import dtype_name, is_storage_only
from ..ir import Graph, Node, Value, subgraphs
from ..ir.onnx_export import node_to_proto, value_info
from ..ops.registry import fact
from .onnx_import import _type_of, attr_value, constant_node_value
from .onnx_infer import infer_shapes

log = logging.getLogger("onnxc")

_MAX_CONST_FEED = 1 << 16  # larger constant inputs are typed inputs of the inference model


def wants_expansion(node) -> bool:
    """Whether ``node``'s op definition asks it to run as its function body."""
    how = fact(node, "expand")
    if how is True:
        return True
    if how == "bfloat16":
        return any(v is not None and v.dtype is not None and is_storage_only(v.dtype)
                   and dtype_name(v.dtype) == "bfloat16" for v in list(node.inputs) + list(node.outputs))
    return False


def function_body(node) -> Union[onnx.FunctionProto, str]:
    """The function onnx.defs builds for ``node`` (or why there is none)."""
    try:
        schema = onnx.defs.get_schema(node.op_type, max(node.opset, 1), node.domain)
    except onnx.defs.SchemaError:
        return f"onnx {onnx.__version__} has no schema for {node.domain or 'ai.onnx'}.{node.op_type}-{node.opset}"
    fp = onnx.FunctionProto()
    if schema.has_context_dependent_function:
        types = [value_info(v).type.SerializeToString() if v is not None else onnx.TypeProto().SerializeToString()
                 for v in node.inputs]
        if any(v is not None and v.dtype is None for v in node.inputs):
            return "an input has no tensor type"
        try:
            raw = schema.get_context_dependent_function(node_to_proto(node).SerializeToString(), types)
        except Exception as e:  # noqa: BLE001 - onnx raises several types
            return f"onnx could not build its function body: {e}"
        if not raw:
            return "onnx builds no function body for this node"
        fp.ParseFromString(raw)
    elif schema.has_function:
        fp.CopyFrom(schema.function_body)
    else:
        return f"{node.op_type} has no function body in onnx.defs"
    return fp


def _attrs(np_: onnx.NodeProto, node, graph, opset) -> Optional[dict]:
    """The attributes of body node ``np_`` (references to the expanded node's attributes
    resolved), or None when one is a subgraph (not expanded: its names would need the body's)."""
    out = {}
    for a in np_.attribute:
        if a.ref_attr_name:
            if a.ref_attr_name in node.attrs:
                out[a.name] = node.attrs[a.ref_attr_name]
            continue  # not set on the node: the body op's default
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            return None
        out[a.name] = attr_value(a, graph, opset)
    return out


def _outer(graph: Graph, name: str) -> Optional[Value]:
    g = graph
    while g is not None:
        v = g.value_map().get(name)
        if v is not None:
            return v
        g = g.parent
    return None


def _typed(node, fp: onnx.FunctionProto, opsets: Dict[str, int],
           outer: Dict[str, Value]) -> Union[Dict[str, Tuple], str]:
    """Types of every value the body defines, by onnx's inference on the body alone."""
    known: Dict[str, Value] = dict(outer)
    for formal, v in zip(fp.input, node.inputs):
        if v is not None:
            known[formal] = v
    inputs, inits = [], []
    for name, v in known.items():
        if v.dtype is None:
            return f"'{v.name}' has no tensor type"
        if v.const is not None and v.const.size <= _MAX_CONST_FEED and v.const.dtype != object:
            inits.append(numpy_helper.from_array(v.const, name))
        inputs.append(value_info(v, name))
    outs = [helper.make_value_info(o, onnx.TypeProto()) for o in fp.output]
    graph = helper.make_graph(list(fp.node), "body", inputs, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = min(onnx.IR_VERSION, 10)
    try:
        inferred = infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        return f"onnx's shape inference fails on the body: {e}"
    return {vi.name: _type_of(vi) for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}


def expand_node(graph: Graph, node: Node) -> Optional[str]:
    """Replace ``node`` by its function body; None when done, else why not (nothing changed)."""
    fp = function_body(node)
    if isinstance(fp, str):
        return fp
    opsets = dict(graph.opset)
    opsets.update({o.domain if o.domain != "ai.onnx" else "": o.version for o in fp.opset_import})
    opsets.setdefault("", graph.opset.get("", 18))
    defined = set(fp.input) | {o for n in fp.node for o in n.output if o}
    outer: Dict[str, Value] = {}
    for n in fp.node:
        for name in n.input:
            if name and name not in defined and name not in outer:
                v = _outer(graph, name)
                if v is None:
                    return f"its function body reads '{name}', which no scope defines"
                outer[name] = v
    produced = {o for n in fp.node for o in n.output if o}
    for formal, v in zip(fp.output, node.outputs):
        if formal not in produced and (v.uses or graph.is_output(v)):
            return f"its function body does not produce output '{formal}' ('{v.name}'), which is used"
    types = _typed(node, fp, opsets, outer)
    if isinstance(types, str):
        return types
    plan: List[tuple] = []
    for n in fp.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            plan.append((n, None))
            continue
        attrs = _attrs(n, node, graph, opsets)
        if attrs is None:
            return f"its function body has a subgraph attribute (node {n.op_type} '{n.name}')"
        plan.append((n, attrs))

    names: Dict[str, Optional[Value]] = dict(outer)
    names.update({formal: v for formal, v in zip(fp.input, node.inputs)})
    finals = {formal: v for formal, v in zip(fp.output, node.outputs)}
    stem = node.name or node.op_type
    for n, attrs in plan:
        if attrs is None:  # Constant
            names[n.output[0]] = graph.add_const(constant_node_value(n), hint=f"{stem}_{n.output[0]}")
            continue
        ins = [names[i] if i else None for i in n.input]
        outs = []
        for o in n.output:
            if not o:
                outs.append(graph.new_value(f"{stem}_{n.op_type}_unused"))
                continue
            v = finals.get(o)
            if v is None:
                dtype, shape = types.get(o, (None, None))
                v = graph.new_value(f"{stem}_{o}", dtype, shape)
            names[o] = v
            outs.append(v)
        domain = n.domain if n.domain != "ai.onnx" else ""
        graph.insert(Node(n.op_type, ins, outs, attrs, name=graph.fresh_name(f"{stem}_{n.name or n.op_type}"),
                          domain=domain, opset=opsets.get(domain, 1)), before=node)
    graph.remove_node(node)
    return None


def expand_functions(graph: Graph) -> int:
    """Expand every node (in ``graph`` and its subgraphs) whose op asks for it; returns how many."""
    count = 0
    for node in list(graph.nodes):
        for sub in subgraphs(node):
            count += expand_functions(sub)
        if not wants_expansion(node):
            continue
        why = expand_node(graph, node)
        if why is None:
            count += 1
        else:
            log.warning("onnxc: %s node '%s' is not expanded into its ONNX function body: %s",
                        node.op_type, node.name, why)
    return count

