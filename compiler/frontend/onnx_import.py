"""ONNX ModelProto/GraphProto -> IR Graph (no checking or shape inference here; see load.py)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..dtypes import np_dtype_from_onnx
from ..errors import ModelError, UnsupportedError
from ..ir import Graph, Node, Value


def _type_of(vi) -> tuple:
    """(dtype, shape) from a ValueInfoProto/TypeProto; shape dims: int, str (symbolic) or None.
    A negative dim_value is a free dim ("?"): some exporters (Paddle2ONNX, older converters)
    write free dims as -1, and onnxruntime reads them so."""
    t = vi.type if hasattr(vi, "type") else vi
    kind = t.WhichOneof("value")
    if kind != "tensor_type":
        return None, None
    tt = t.tensor_type
    try:
        dtype = np_dtype_from_onnx(tt.elem_type) if tt.elem_type else None
    except KeyError:
        raise ModelError(f"value '{getattr(vi, 'name', '?')}': unknown tensor elem_type {tt.elem_type}") from None
    if not tt.HasField("shape"):
        return dtype, None
    dims = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value >= 0:
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append("?")
    return dtype, tuple(dims)


def ort_type_string(t) -> str:
    """onnxruntime's spelling of a type: tensor(float), seq(tensor(int64)), optional(...)."""
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        try:
            return f"tensor({helper.tensor_dtype_to_string(t.tensor_type.elem_type).split('.')[-1].lower()})"
        except KeyError:
            raise ModelError(f"unknown tensor elem_type {t.tensor_type.elem_type}") from None
    if kind == "sequence_type":
        return f"seq({ort_type_string(t.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({ort_type_string(t.optional_type.elem_type)})"
    if kind == "map_type":
        key = helper.tensor_dtype_to_string(t.map_type.key_type).split('.')[-1].lower()
        return f"map({key},{ort_type_string(t.map_type.value_type)})"
    return str(kind)


def attr_value(a: onnx.AttributeProto, graph: Graph, opset: Dict[str, int]):
    if a.type == onnx.AttributeProto.GRAPH:
        return import_graph(a.g, opset, parent=graph)
    if a.type == onnx.AttributeProto.GRAPHS:
        return [import_graph(g, opset, parent=graph) for g in a.graphs]
    v = helper.get_attribute_value(a)
    if isinstance(v, onnx.TensorProto):
        return numpy_helper.to_array(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [s.decode("utf-8", errors="replace") for s in v]
    if isinstance(v, list) and v and isinstance(v[0], onnx.TensorProto):
        return [numpy_helper.to_array(t) for t in v]
    if isinstance(v, onnx.SparseTensorProto):
        raise UnsupportedError(f"sparse tensor attribute '{a.name}' is not supported")
    return v


def constant_node_value(node: onnx.NodeProto) -> np.ndarray:
    """The value of an ONNX Constant node as a numpy array."""
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if a.name == "value":
            return numpy_helper.to_array(v)
        if a.name == "value_float":
            return np.array(v, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(v, dtype=np.float32)
        if a.name == "value_int":
            return np.array(v, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(v, dtype=np.int64)
        if a.name == "value_string":
            return np.array(v.decode() if isinstance(v, bytes) else v, dtype=object)
        if a.name == "value_strings":
            return np.array([s.decode() for s in v], dtype=object)
        if a.name == "sparse_value":
            raise UnsupportedError(f"Constant node '{node.name}' with sparse_value is not supported")
    raise ModelError(f"Constant node '{node.name}' has no value attribute")


def import_graph(gp: onnx.GraphProto, opset: Dict[str, int], parent: Optional[Graph] = None,
                 value_info: Optional[Dict[str, tuple]] = None) -> Graph:
    g = Graph(gp.name or "main")
    g.parent = parent
    g.opset = dict(opset)
    scope: Dict[str, Value] = {}
    infos = dict(value_info or {})
    for vi in list(gp.value_info) + list(gp.output):
        infos.setdefault(vi.name, _type_of(vi))
    # sequence/optional/map types, kept whole: only the fallback interpreter carries such values
    g.metadata["types"] = {vi.name: vi.type for vi in list(gp.input) + list(gp.value_info) + list(gp.output)
                           if vi.type.WhichOneof("value") not in (None, "tensor_type")}

    def lookup(name: str) -> Value:
        if name in scope:
            return scope[name]
        p = parent
        while p is not None:
            vm = p.metadata.get("scope")
            if vm is not None and name in vm:
                return vm[name]
            p = p.parent
        raise ModelError(f"graph '{g.name}': value '{name}' is used but never defined")

    produced = {o for n in gp.node for o in n.output if o}
    for init in gp.initializer:
        try:
            arr = numpy_helper.to_array(init)
        except (ValueError, KeyError, TypeError) as e:  # the checker only checks for too little data
            raise ModelError(f"graph '{g.name}': initializer '{init.name}' (data_type {init.data_type}, dims "
                             f"{list(init.dims)}): its data does not match its type and dims "
                             f"({'unknown data_type' if isinstance(e, KeyError) else e})") from None
        v = Value(g.reserve(init.name), const=arr)
        v.graph = g
        g.constants[init.name] = v
        scope[init.name] = v
    for vi in gp.input:
        if vi.name in scope or vi.name in produced:
            continue  # an initializer listed as input (IR v3) or a value a node produces
        dtype, shape = _type_of(vi)  # (None, None) for non-tensors: the fallback reads those
        scope[vi.name] = g.add_input(vi.name, dtype, shape)
    g.metadata["scope"] = scope

    for i, np_ in enumerate(gp.node):
        if np_.op_type == "Constant" and np_.domain in ("", "ai.onnx"):
            arr = constant_node_value(np_)
            v = Value(g.reserve(np_.output[0]), const=arr)
            v.graph = g
            g.constants[v.name] = v
            scope[v.name] = v
            continue
        inputs = [lookup(n) if n else None for n in np_.input]
        outputs = []
        for o in np_.output:
            if not o:
                outputs.append(Value(g.fresh_name(f"{np_.name or np_.op_type}_unused")))
            else:
                if o in scope:
                    raise ModelError(f"value '{o}' is defined twice (second time by node "
                                     f"'{np_.name}' {np_.op_type}): the model is not in SSA form")
                dtype, shape = infos.get(o, (None, None))
                outputs.append(Value(g.reserve(o), dtype, shape))
        attrs = {a.name: attr_value(a, g, opset) for a in np_.attribute}
        node = Node(np_.op_type, inputs, outputs, attrs, name=g.reserve(np_.name) if np_.name else
                    g.fresh_name(f"{np_.op_type}_{i}"), domain=np_.domain if np_.domain != "ai.onnx" else "",
                    opset=opset.get(np_.domain if np_.domain != "ai.onnx" else "", 1))
        g.insert(node)
        for v in outputs:
            v.graph = g
            scope[v.name] = v
    for vo in gp.output:
        if vo.name not in scope:
            raise ModelError(f"graph output '{vo.name}' is never produced")
        g.outputs.append(scope[vo.name])
        out = scope[vo.name]
        if out.dtype is None or out.shape is None:
            dtype, shape = _type_of(vo)
            out.dtype = out.dtype or dtype
            out.shape = out.shape if out.shape is not None else shape
    return g
