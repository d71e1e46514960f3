"""IR Graph -> ONNX ModelProto, for --save-optimized, pass tests and per-node inference."""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..dtypes import onnx_from_np_dtype
from .core import Graph, Node, Value, subgraphs

ONNXC_DOMAIN = "onnxc"


def value_info(v: Value, name: Optional[str] = None) -> onnx.ValueInfoProto:
    if v.dtype is None:  # sequence/optional/map: the type the model declared, if it did
        p = onnx.ValueInfoProto(name=name or v.name)
        g = v.graph
        while g is not None:
            t = g.metadata.get("types", {}).get(v.name)
            if t is not None:
                p.type.CopyFrom(t)
                break
            g = g.parent
        return p
    elem = onnx_from_np_dtype(v.dtype) if v.dtype is not None else 0
    shape = None if v.shape is None else [d if isinstance(d, int) else (None if _invented(d) else d) for d in v.shape]
    return helper.make_tensor_value_info(name or v.name, elem, shape)


def _invented(dim) -> bool:
    """A dim no one named: "?" or onnx shape inference's "unk__N", which is unique within one
    inference run only (per-node inference starts each at unk__0).  Written as a named symbol it
    would tell onnxruntime that unrelated dims are equal (MiniLM's Range outputs of batch and
    sequence length both became unk__0: "Shape mismatch attempting to re-use buffer")."""
    return dim == "?" or (isinstance(dim, str) and dim.startswith("unk__"))


def _schema_attr_type(node: Node, key: str):
    try:
        schema = onnx.defs.get_schema(node.op_type, max(node.opset, 1), node.domain)
        return schema.attributes[key].type if key in schema.attributes else None
    except Exception:  # noqa: BLE001 - unknown op/domain: let helper guess
        return None


def make_attr(node: Node, key: str, value) -> onnx.AttributeProto:
    if isinstance(value, Graph):
        return helper.make_attribute(key, graph_to_proto(value))
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, list) and value and isinstance(value[0], Graph):
        return helper.make_attribute(key, [graph_to_proto(g) for g in value])
    if isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        return helper.make_attribute(key, [numpy_helper.from_array(a) for a in value])
    atype = _schema_attr_type(node, key)
    if atype is not None:
        return helper.make_attribute(key, value, attr_type=atype)
    if isinstance(value, (list, tuple)) and not value:
        return helper.make_attribute(key, [], attr_type=onnx.AttributeProto.INTS)
    return helper.make_attribute(key, value)


def node_to_proto(node: Node) -> onnx.NodeProto:
    p = helper.make_node(node.op_type, ["" if v is None else v.name for v in node.inputs],
                         [v.name for v in node.outputs], name=node.name, domain=node.domain)
    p.attribute.extend(make_attr(node, k, v) for k, v in sorted(node.attrs.items()))
    return p


def graph_to_proto(g: Graph, with_value_info: bool = True) -> onnx.GraphProto:
    inits = [numpy_helper.from_array(v.const, v.name) for v in g.constants.values()]
    nodes = [node_to_proto(n) for n in g.nodes]
    outs_seen = {id(v) for v in g.outputs}
    vis: List[onnx.ValueInfoProto] = []
    if with_value_info:
        for n in g.nodes:
            for o in n.outputs:
                if id(o) not in outs_seen and o.dtype is not None:
                    vis.append(value_info(o))
    return helper.make_graph(nodes, g.name, [value_info(v) for v in g.inputs],
                             [value_info(v) for v in g.outputs], initializer=inits, value_info=vis)


def to_model(g: Graph, ir_version: Optional[int] = None) -> onnx.ModelProto:
    """A standalone ModelProto of the graph; onnxc-domain fused ops keep their domain."""
    opsets = dict(g.opset)
    for n in _all_nodes(g):
        if n.domain and n.domain not in opsets:
            opsets[n.domain] = 1
    model = helper.make_model(graph_to_proto(g),
                              opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="onnxc")
    model.ir_version = ir_version or min(onnx.IR_VERSION, 10)
    return model


def optimized_model(g: Graph, in_names: List[str], out_names: List[str]) -> onnx.ModelProto:
    """The optimized graph as a model with the original model's input and output names: an
    output whose value a pass replaced (or that became a constant or an input) is re-exposed
    under its old name through an Identity node, so the saved model is a drop-in for the source."""
    model = to_model(g)
    graph = model.graph
    for vi, name in zip(graph.input, in_names):
        if vi.name != name:  # inputs are never renamed by passes; guard the assumption loudly
            raise ValueError(f"graph input '{vi.name}' was renamed from '{name}'")
    for vi, name in zip(graph.output, out_names):
        if vi.name != name:
            graph.node.append(helper.make_node("Identity", [vi.name], [name], name=f"output_{name}"))
            vi.name = name
    onnx.checker.check_model(model)
    return model


def _all_nodes(g: Graph):
    for n in g.nodes:
        yield n
        for a in subgraphs(n):
            yield from _all_nodes(a)
