"""Constant folding: a node whose inputs are all constants is evaluated at compile time.

Covers ConstantOfShape weights and, once input shapes are bound, shape subgraphs
(Shape -> Gather -> Concat -> Reshape): Shape of a statically shaped value is folded from
its type even though its input is not a constant, as is any node whose other inputs are
constants and which reads only the type of that one (the ops' ``type_only_inputs`` fact:
CastLike's target_type, EyeLike).
"""
from __future__ import annotations

import numpy as np

from ...ops import evaluate, infer_graph
from ...ops.registry import fact
from ..manager import Pass, PassResult, register

# Nodes that must never be folded: random generators and ops with subgraphs (for now).
_NO_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
            "Bernoulli", "If", "Loop", "Scan",
            # their outputs are sequences, which a constant Value (one array) cannot hold;
            # lower_sequences.py turns static ones into tensor ops
            "SequenceEmpty", "SequenceConstruct", "SequenceInsert", "SequenceErase", "SplitToSequence",
            "SequenceMap"}
# Don't materialize huge constants from small ones (e.g. Expand to a big tensor) unless it is
# what the model stores anyway.
_MAX_FOLDED_BYTES = 64 << 20


def _foldable(node) -> bool:
    if node.op_type in _NO_FOLD or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in ("Shape", "Size") and node.inputs[0] is not None and node.inputs[0].is_static:
        return True
    typed = _type_only(node)
    return len(node.inputs) > 0 and all(v is None or v.is_const or (k in typed and _stand_in_ok(v))
                                        for k, v in enumerate(node.inputs))


def _type_only(node):
    """Indices of the inputs whose values the op never reads (CastLike's target_type, ...)."""
    return fact(node, "type_only_inputs") or ()


def _stand_in_ok(v) -> bool:
    return v.dtype is not None and v.dtype != np.dtype(object) and v.is_static and v.nbytes <= _MAX_FOLDED_BYTES


def _inputs_for_eval(node):
    """The constant inputs, and zeros of the right dtype and shape for a runtime input the op
    reads only the type of."""
    typed = _type_only(node)
    return [None if v is None else v.const if v.is_const else np.zeros(v.shape, v.dtype) if k in typed else None
            for k, v in enumerate(node.inputs)]


def _static_eval(node):
    x = node.inputs[0]
    if node.op_type == "Size":
        return [np.array(x.size, dtype=np.int64)]
    rank = len(x.shape)
    start = node.attrs.get("start", 0)
    end = node.attrs.get("end", rank)
    return [np.array(x.shape[start:end], dtype=np.int64)]


@register
class ConstantFolding(Pass):
    name = "constant_folding"
    level = "basic"
    always = True

    def run(self, graph) -> PassResult:
        count, details = 0, []
        for node in list(graph.nodes):
            if not _foldable(node):
                continue
            if node.op_type in ("Shape", "Size") and not node.inputs[0].is_const:
                outs = _static_eval(node)
            else:
                try:
                    outs = evaluate(node, _inputs_for_eval(node))
                except Exception:  # noqa: BLE001 - leave it to the kernels (and their errors)
                    continue
            if node.op_type != "ConstantOfShape" and sum(np.asarray(o).nbytes for o in outs) > _MAX_FOLDED_BYTES:
                continue  # ConstantOfShape is exempt: old models store their weights that way
            for out, arr in zip(node.outputs, outs):
                arr = np.asarray(arr)
                if out.dtype is not None and arr.dtype != out.dtype and out.dtype != np.dtype(object):
                    arr = arr.astype(out.dtype)
                const = graph.add_const(arr, hint=out.name)
                graph.replace_all_uses(out, const)
            graph.remove_node(node)
            count += 1
            details.append(node.label)
        graph.prune_constants()
        if count:
            infer_graph(graph)  # folded shape inputs make downstream shapes known
        return PassResult(count > 0, count, details)
