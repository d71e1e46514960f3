"""onnx.shape_inference with data propagation, where that is safe to call.

onnx's data propagation (which carries Shape values through Slice/Concat/Gather so Reshape
targets get known shapes) crashes the process with SIGSEGV on a Slice whose start + step leaves
the int32 range (seen with onnx 1.23: start 3, step 2^31-1 on a length-4 input; start 0 is
fine; found by tests/test_properties.py in CI, reproduced by fuzzing). A crash cannot be caught,
so such models are inferred without data propagation; onnxc's own per-node inference and
constant folding cover what it would add.

Data propagation also treats every 1-D value feeding Add, Mul, Concat, ... as a shape and
builds one proto dim per element: 13 s and 2 GB for a 10^7-element vector, std::bad_alloc (or
the OOM killer) for the 2^37-element vectors of the invalid-model tests. Models with a 1-D value
longer than ``_MAX_SHAPE_LENGTH`` (no shape is) are therefore inferred without it; telling
needs one cheap inference pass without data propagation first.

Some attribute values crash onnx's shape inference itself, with or without data propagation:
those models are refused with a ModelError before onnx sees them (``check_safe``; found by
tests/fuzz/fuzz.py and a sweep of every int attribute of the fuzzer's seed models over
negative, int32-edge and int64-edge values: GatherND's batch_dims < 0 reads dims at negative
indices, SIGSEGV with onnx 1.23).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import ModelError
from ..proto import subgraphs

# start is clamped to the sliced length, so |step| < 2^30 keeps start + step inside int32 for
# any length below 2^30 (a fuzz of 50,000 Slice models with steps up to the int64 limits and
# starts/ends at them found no crash with this rule)
_SAFE_STEP = 2 ** 30


def _graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from _graphs(sub)


def data_prop_is_safe(model: onnx.ModelProto) -> bool:
    """False when a Slice has a step that is not a small constant."""
    for g in _graphs(model.graph):
        consts = {i.name: i for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value":
                        consts[n.output[0]] = a.t
        for n in g.node:
            if n.op_type != "Slice" or len(n.input) < 5 or not n.input[4]:
                continue
            t = consts.get(n.input[4])
            if t is None:
                return False
            steps = numpy_helper.to_array(t)
            if steps.size and np.abs(steps.astype(np.float64)).max() >= _SAFE_STEP:
                return False
    return True


_MAX_SHAPE_LENGTH = 1 << 16


def _has_long_vectors(model: onnx.ModelProto) -> bool:
    """A value of rank <= 1 (typed, or an initializer) with more than _MAX_SHAPE_LENGTH elements."""
    for g in _graphs(model.graph):
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            t = vi.type.tensor_type
            if vi.type.WhichOneof("value") == "tensor_type" and t.HasField("shape") and len(t.shape.dim) <= 1:
                if any(d.HasField("dim_value") and d.dim_value > _MAX_SHAPE_LENGTH for d in t.shape.dim):
                    return True
        if any(len(i.dims) == 1 and i.dims[0] > _MAX_SHAPE_LENGTH for i in g.initializer):
            return True
    return False


def data_prop_is_cheap(model: onnx.ModelProto) -> bool:
    """False when the model (after an inference pass without data propagation) has a 1-D value
    too long to be a shape."""
    if _has_long_vectors(model):
        return False
    try:
        typed = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=False)
    except Exception:  # noqa: BLE001 - the caller's own call reports it
        return False
    return not _has_long_vectors(typed)


def unsafe_reason(model: onnx.ModelProto):
    """Why onnx's shape inference would crash on ``model`` (None: it would not)."""
    for g in _graphs(model.graph):
        for n in g.node:
            if n.op_type == "GatherND" and n.domain in ("", "ai.onnx"):
                for a in n.attribute:
                    if a.name == "batch_dims" and helper.get_attribute_value(a) < 0:
                        return (f"GatherND node '{n.name}': batch_dims must be >= 0 (the number of leading "
                                f"batch dims shared by data and indices), got {a.i}")
    return None


def check_safe(model: onnx.ModelProto) -> None:
    reason = unsafe_reason(model)
    if reason is not None:
        raise ModelError(reason)


def infer_shapes(model: onnx.ModelProto, check_type: bool, strict_mode: bool) -> onnx.ModelProto:
    check_safe(model)
    data_prop = data_prop_is_safe(model) and data_prop_is_cheap(model)
    return onnx.shape_inference.infer_shapes(model, check_type=check_type, strict_mode=strict_mode,
                                             data_prop=data_prop)
