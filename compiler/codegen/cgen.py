"""Render a partitioned graph to C: <prefix>.c, <prefix>.h, weights blob, manifest data."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .._version import __version__
from ..dtypes import c_type, dtype_name
from ..fallback import c_carriable
from ..ir import type_str
from ..providers.c import KERNELS
from ..providers.c.registry import bounded_values
from .context import EmitContext
from .memory import ArenaPlan, plan_graph
from .templates import render
from .weights import HEADER, WeightsBlob


ERROR_RECORD_BYTES = 64  # sizeof(onnxc_error) rounded up to the arena's alignment


def _check_comment(check: Dict) -> str:
    """One line of model.h's list of runtime checks."""
    where = f" in {check['scope']}" if check["scope"] else ""
    text = f"node '{check['node']}' ({check['op']}){where}: {check['message']}"
    if check["tensor"] is not None:
        text += f"; pos indexes '{check['tensor']}' {tuple(check['shape'])}"
    return text.replace("*/", "* /")


def c_identifier(name: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z_]", "_", name)
    return s if s and not s[0].isdigit() else f"m_{s}"


def legalize_outputs(graph) -> int:
    """Give every graph output its own producing node: outputs that are graph inputs, constants,
    duplicates of another output, or aliases get an explicit copy (Identity) node."""
    seen = set()
    added = 0
    for i, v in enumerate(list(graph.outputs)):
        needs_copy = v.producer is None or id(v) in seen
        if needs_copy:
            node = graph.add_node("Identity", [v], name=f"output_copy_{i}",
                                  outputs=[graph.new_value(f"{v.name}_copy", v.dtype, v.shape)])
            graph.outputs[i] = node.outputs[0]
            added += 1
        seen.add(id(graph.outputs[i]))
    return added


def _kernel(node):
    return KERNELS[(node.domain, node.op_type)]


def _alias_of(graph, c_ids):
    outs = {id(v) for v in graph.outputs}

    def alias_of(node):
        if id(node) not in c_ids:
            return None
        k = _kernel(node)
        if k.alias is None or id(node.outputs[0]) in outs:
            return None
        if any(id(u) not in c_ids for u in node.outputs[0].users):
            return None  # a fallback reader needs its own buffer (a view may land in the weights)
        return k.alias(node)
    return alias_of


def _scratch_of(c_ids):
    def scratch_of(node) -> int:
        if id(node) not in c_ids:
            return 0
        k = _kernel(node)
        return int(k.scratch(node)) if k.scratch else 0
    return scratch_of


@dataclass
class CodegenResult:
    c_source: str
    header: str
    blob: WeightsBlob
    plan: ArenaPlan
    inputs: List[Dict]
    outputs: List[Dict]
    fallback: List[Dict]
    steps: List[List]
    checks: List[Dict]         # runtime checks (EmitContext.fail), numbered as the C reports them
    error_offset: Optional[int]  # arena offset of the onnxc_error record (None: no checks)


def _io(v, name, python_side: bool = False, bound=None, dims_offset=None) -> Dict:
    """Manifest/header entry of a graph input or output.  Values the C side never touches (data-
    dependent shapes of fallback nodes, non-tensors, types C does not carry) are marked
    ``python``.  A data-dependent output a C kernel writes has a ``bound`` (the shape its buffer
    has: nbytes is the bound's) and ``dims_offset``, where in the arena the run leaves its shape."""
    if bound is not None and not python_side:
        return {"name": name, "dtype": dtype_name(v.dtype), "ctype": c_type(v.dtype), "shape": list(v.shape),
                "nbytes": int(np.prod(bound, dtype=np.int64)) * v.dtype.itemsize, "bound": list(bound),
                "dims_offset": dims_offset}
    if python_side or not c_carriable(v):
        entry = {"name": name, "dtype": dtype_name(v.dtype) if v.dtype is not None else None, "ctype": None,
                 "shape": list(v.shape) if v.shape is not None else None, "nbytes": None, "python": True,
                 "value": v.name}
        if v.dtype is None:  # seq(...)/optional(...)/map(...), as onnxruntime spells it
            from ..frontend.onnx_import import ort_type_string
            from ..ir.onnx_export import value_info
            t = value_info(v).type
            entry["type"] = ort_type_string(t) if t.WhichOneof("value") else "unknown"
        return entry
    return {"name": name, "dtype": dtype_name(v.dtype), "ctype": c_type(v.dtype), "shape": list(v.shape),
            "nbytes": v.nbytes}


def _shape_text(entry: Dict) -> str:
    """A header's dims of an input or output: a data-dependent dim as <=bound."""
    if "bound" not in entry:
        return ", ".join(map(str, entry["shape"]))
    return ", ".join(str(d) if isinstance(d, int) else f"<={b}" for d, b in zip(entry["shape"], entry["bound"]))


def generate(graph, partitions, prefix: str = "model", options: Dict = None,
             io_names=None) -> CodegenResult:
    from ..fallback import build_fallback, later_reads_by_partition, python_values, used_values
    options = dict(options or {})
    c_ids = {id(n) for p in partitions if p.provider == "c" for n in p.nodes}
    py_ids = python_values(graph, c_ids)
    bounds = bounded_values(graph, c_ids)
    itemsize = {id(v): v.dtype.itemsize for v in graph.values() if id(v) in bounds}

    def nbytes_of(v):
        b = bounds.get(id(v))
        return v.nbytes if b is None else int(np.prod(b, dtype=np.int64)) * itemsize[id(v)]
    plan = plan_graph(graph, _alias_of(graph, c_ids), _scratch_of(c_ids), external=py_ids, reads=used_values,
                      nbytes_of=nbytes_of)
    blob = WeightsBlob()
    ctx = EmitContext(graph, plan, blob, options)
    # the dims records of data-dependent values follow the plan (per arena, so per caller)
    ctx.bounds = bounds
    for v in graph.values():
        if id(v) in bounds:
            ctx.dims_offset[id(v)] = plan.size
            plan.size += 8 * len(bounds[id(v)])
    plan.size = -(-plan.size // 64) * 64
    parts, fallback, steps = [], [], []
    later = later_reads_by_partition(graph, partitions) if len(c_ids) < len(graph.nodes) else {}
    for p in partitions:
        steps.append([p.provider, p.index])
        if p.provider != "c":
            fallback.append(build_fallback(graph, p, plan, py_ids, later[p.index], ctx.dims_offset))
            continue
        nodes = []
        for node in p.nodes:
            before = len(ctx.checks)
            code = _kernel(node).emit(node, ctx)
            sig = (", ".join("-" if v is None else type_str(v) for v in node.inputs) + " -> " +
                   ", ".join(type_str(v) for v in node.outputs))
            nodes.append({"index": ctx.node_index[id(node)], "op": node.op_type,
                          "name": node.name.replace("*/", "* /"), "signature": sig, "code": code.strip(),
                          "fails": len(ctx.checks) > before})
        parts.append({"index": p.index, "provider": p.provider, "nodes": nodes,
                      "fails": any(n["fails"] for n in nodes)})
    # the error record sits after everything the plan placed: one per arena, so per caller
    error_offset = plan.size if ctx.checks else None
    if ctx.checks:
        plan.size += ERROR_RECORD_BYTES
    in_names, out_names = io_names or ([v.name for v in graph.inputs], [v.name for v in graph.outputs])
    inputs = [_io(v, n) for v, n in zip(graph.inputs, in_names)]
    outputs = [_io(v, n, id(v) in py_ids, bounds.get(id(v)), ctx.dims_offset.get(id(v)))
               for v, n in zip(graph.outputs, out_names)]
    common = dict(prefix=prefix, shape_text=_shape_text, PREFIX=prefix.upper(), version=__version__,
                  model_name=graph.name.replace("*/", "* /"), arena_bytes=plan.size,
                  arena_unshared=plan.total_unshared, weights_bytes=blob.size, weights_header=HEADER,
                  inputs=inputs, outputs=outputs, has_fallback=bool(fallback),
                  c_partitions=[p["index"] for p in parts], error_offset=error_offset,
                  checks=[_check_comment(c) for c in ctx.checks])
    c_source = render("model.c.j2", partitions=parts, num_nodes=len(graph.nodes),
                      helpers=sorted(ctx.helpers), **common)
    header = render("model.h.j2", **common)
    return CodegenResult(c_source, header, blob, plan, inputs, outputs, fallback, steps, ctx.checks, error_offset)
