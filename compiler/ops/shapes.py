"""Per-node shape and dtype inference on the IR (onnx.shape_inference + registered rules)."""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from ..ir import subgraphs
from .registry import SHAPE_RULES

_MAX_PROPAGATED_CONST = 1 << 16  # larger constants are passed as typed inputs, not data


def infer_node(node) -> List[Tuple[Optional[np.dtype], Optional[tuple]]]:
    """[(dtype, shape)] for each output of ``node``, from its inputs' types (and constants)."""
    rule = SHAPE_RULES.get((node.domain, node.op_type))
    if rule is not None:
        return rule(node)
    return _onnx_infer(node)


def _onnx_infer(node):
    import onnx
    from onnx import helper, numpy_helper

    from ..frontend.onnx_import import _type_of
    from ..frontend.onnx_infer import infer_shapes
    from ..ir.onnx_export import node_to_proto, value_info
    proto = node_to_proto(node)
    inputs, inits = [], []
    for v in node.inputs:
        if v is None:
            continue
        if v.const is not None and v.const.size <= _MAX_PROPAGATED_CONST and v.const.dtype != object:
            inits.append(numpy_helper.from_array(v.const, v.name))
        inputs.append(value_info(v))
    outs = [helper.make_value_info(o.name, onnx.TypeProto()) for o in node.outputs]
    graph = helper.make_graph([proto], "infer", inputs, outs, initializer=inits)
    opsets = [helper.make_opsetid(d, v) for d, v in (node.graph.opset.items() if node.graph else [("", node.opset)])]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = min(onnx.IR_VERSION, 10)
    try:
        inferred = infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        raise ModelError(f"shape inference failed for {node.label}: {e}") from None
    found = {vi.name: _type_of(vi) for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    return [found.get(o.name, (None, None)) for o in node.outputs]


def own_check(node) -> bool:
    """The node's shape rule is its only validity check: an op outside onnx's domains
    (com.microsoft's quantized ops, onnxc's own), for which onnx has no schema."""
    return node.domain not in ("", "ai.onnx") and (node.domain, node.op_type) in SHAPE_RULES


def _typed_inputs(node) -> bool:
    return all(v is None or (v.dtype is not None and v.shape is not None) for v in node.inputs)


def infer_graph(graph, only_missing: bool = True, refused: Optional[Dict] = None) -> None:
    """Fill dtype/shape of node outputs in topological order.  Known shapes are kept.

    A rule that refuses its node (ModelError) leaves the outputs untyped.  With ``refused``
    (a dict) given, the error is kept there under the node, and the nodes whose rule is their
    only validity check (``own_check``) are run even when their outputs are typed, those inside
    subgraphs too (as the loader typed them, without typing anything there): validation
    reports what they refuse (a QGemm bias C of int8, not int32) from this one run."""
    for node in graph.nodes:
        checked = refused is not None and own_check(node)
        if only_missing and not checked and all(o.dtype is not None and o.is_static for o in node.outputs):
            continue
        if not _typed_inputs(node):
            continue
        try:
            results = infer_node(node)
        except ModelError as e:
            if refused is not None:
                refused[node] = e
            continue
        for o, (dtype, shape) in zip(node.outputs, results):
            if dtype is not None and o.dtype is None:
                o.dtype = dtype
            if shape is not None and (o.shape is None or not o.is_static):
                if o.shape is None or all(isinstance(d, int) for d in shape) or len(shape) == len(o.shape):
                    o.shape = tuple(shape)
    if refused is not None:
        for node in graph.nodes:
            for sub in subgraphs(node):
                _check_only(sub, refused)


def _check_only(graph, refused: Dict) -> None:
    """Run the ``own_check`` rules of ``graph`` (and its subgraphs) and keep their refusals."""
    for node in graph.nodes:
        if own_check(node) and _typed_inputs(node):
            try:
                infer_node(node)
            except ModelError as e:
                refused[node] = e
        for sub in subgraphs(node):
            _check_only(sub, refused)

