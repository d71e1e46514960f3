"""Compile-time side of the fallback provider: for each fallback partition, an ONNX sub-model
and the bindings that say where its inputs come from and where its outputs go.

Where a value lives at run time:
  ("input", k)          graph input k
  ("output", k)         graph output k (an array the caller receives)
  ("arena", offset)     bytes in the arena, written by a C partition or for one to read
  ("py", name)          a Python-side value: produced and consumed only by fallback partitions
                        (it may have a data-dependent shape or be a sequence)
Constants read by a fallback partition become initializers of its sub-model.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Set

from .dtypes import dtype_name, has_c_type
from .ops.registry import fact


def used_values(node) -> list:
    """Values ``node`` reads, including outer-scope values read inside its subgraphs."""
    from .ir.core import Graph
    vals = [v for v in node.inputs if v is not None]
    for a in node.attrs.values():
        subs = a if isinstance(a, list) else [a]
        for g in subs:
            if isinstance(g, Graph):
                vals.extend(_outer_reads(g))
    return vals


def _outer_reads(g) -> list:
    local = {id(v) for v in g.values()}
    out = []
    for n in g.nodes:
        for v in used_values(n):
            if id(v) not in local:
                out.append(v)
    return out


def c_carriable(v) -> bool:
    """Can this value be a C buffer (typed, a C element type, static shape)?"""
    return v.dtype is not None and has_c_type(v.dtype) and v.is_static


def python_values(graph, c_node_ids: Set[int]) -> Set[int]:
    """ids of values that live on the Python side only: produced by fallback nodes and never
    read by a C node (graph outputs of static shape are still written into output arrays)."""
    read_by_c = set()
    for n in graph.nodes:
        if id(n) in c_node_ids:
            read_by_c.update(id(v) for v in used_values(n))  # subgraphs of C nodes read in C too
    out_ids = {id(v) for v in graph.outputs}
    py = set()
    for n in graph.nodes:
        if id(n) in c_node_ids:
            continue
        for v in n.outputs:
            if id(v) in read_by_c:
                continue
            if id(v) in out_ids and c_carriable(v):
                continue
            py.add(id(v))
    return py


def static_required(graph, c_node_ids: Set[int], py_ids: Set[int], bounded=()) -> list:
    """Values that the C side touches and that must therefore have a static shape (``bounded``:
    ids of data-dependent values C kernels write into a buffer of a compile-time bound)."""
    return [v for v in graph.values() if id(v) not in py_ids and not v.is_const and id(v) not in bounded and
            ((v.producer is not None and id(v.producer) in c_node_ids) or
             any(id(u) in c_node_ids for u in v.users) or (graph.is_output(v) and v.producer is not None))]


def _location(v, graph, plan, py_ids) -> List:
    if id(v) in py_ids:
        return ["py", v.name]
    root = plan.root.get(id(v), v)
    for k, o in enumerate(graph.outputs):
        if o is root:
            return ["output", k]
    for k, i in enumerate(graph.inputs):
        if i is root:
            return ["input", k]
    return ["arena", plan.offset_of(id(root))]


def _binding(v, graph, plan, py_ids, dims_offset) -> Dict:
    b = {"name": v.name, "where": _location(v, graph, plan, py_ids),
         "dtype": dtype_name(v.dtype) if v.dtype is not None else None,
         "shape": list(v.shape) if v.is_static else None}
    if id(v) in dims_offset:  # written by a C kernel with a data-dependent shape: its dims are there
        b["dims_offset"], b["rank"] = dims_offset[id(v)], len(v.shape)
    return b


def build_fallback(graph, part, plan, py_ids: Set[int], later_reads: Set[int], dims_offset=None) -> Dict:
    """The sub-model (bytes) and bindings for fallback partition ``part`` (``dims_offset``: id of
    a data-dependent value a C kernel writes -> arena offset of its dims record)."""
    dims_offset = dims_offset or {}
    import onnx
    from onnx import helper, numpy_helper
    from .ir.onnx_export import node_to_proto, value_info

    produced = {id(v) for n in part.nodes for v in n.outputs}
    inputs, consts, seen = [], [], set()
    for n in part.nodes:
        for v in used_values(n):
            if id(v) in produced or id(v) in seen:
                continue
            seen.add(id(v))
            (consts if v.is_const else inputs).append(v)
    out_ids = {id(v) for v in graph.outputs}
    outputs = [v for n in part.nodes for v in n.outputs if id(v) in later_reads or id(v) in out_ids]

    def vi(v):  # non-tensors keep their declared type (value_info); tensors of unknown shape, none
        if v.dtype is None or v.is_static:
            return value_info(v)
        return helper.make_tensor_value_info(v.name, value_info(v).type.tensor_type.elem_type, None)

    g = helper.make_graph([node_to_proto(n) for n in part.nodes], f"fallback{part.index}",
                          [vi(v) for v in inputs], [vi(v) for v in outputs],
                          initializer=[numpy_helper.from_array(v.const, v.name) for v in consts])
    opsets = dict(graph.opset)
    for n in part.nodes:
        opsets.setdefault(n.domain, 1)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
                              producer_name="onnxc-fallback")
    model.ir_version = min(onnx.IR_VERSION, 10)
    return {"index": part.index, "file": f"fallback{part.index}.onnx", "model": model.SerializeToString(),
            "ops": sorted({n.op_type for n in part.nodes}),
            # the engine "auto" picks: the spec's own interpreter where onnxruntime is known to differ
            "prefer": "reference" if any(fact(n, "ort_deviates") for n in part.nodes) else "onnxruntime",
            "nodes": [n.name for n in part.nodes],
            "inputs": [_binding(v, graph, plan, py_ids, dims_offset) for v in inputs],
            "outputs": [_binding(v, graph, plan, py_ids, dims_offset) for v in outputs]}


def later_reads_by_partition(graph, partitions) -> Dict[int, Set[int]]:
    """For each partition index: ids of values read by any node outside that partition."""
    readers: Dict[int, Set[int]] = {}  # id(value) -> partition indices reading it
    for p in partitions:
        for n in p.nodes:
            for v in used_values(n):
                readers.setdefault(id(v), set()).add(p.index)
    out: Dict[int, Set[int]] = {}
    for p in partitions:
        out[p.index] = {vid for vid, ps in readers.items() if ps - {p.index}}
    return out
