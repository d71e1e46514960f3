"""Frontend: read, check, normalize opset, bind free dims, infer shapes, import to IR, validate."""
from __future__ import annotations

import logging
import os
import warnings
from typing import Dict, Mapping, Optional, Sequence, Union

import onnx

from ..errors import ModelError
from ..ir import Graph
from ..ops.validate import MAX_DIM
from .onnx_import import _type_of, import_graph
from .onnx_infer import check_safe, infer_shapes
from ..proto import all_nodes

# Models older than this are brought up to it (version_converter); newer ones are kept.
CANONICAL_OPSET = 18

log = logging.getLogger("onnxc")

ModelLike = Union[str, os.PathLike, bytes, onnx.ModelProto]


def read_model(model: ModelLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_model_from_string(bytes(model))
        return onnx.load(os.fspath(model))
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 - protobuf decode errors have many types
        raise ModelError(f"cannot read ONNX model from {model if not isinstance(model, bytes) else 'bytes'}: {e}") from None


def check_model(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"the model fails onnx.checker: {e}") from None
    except UnicodeDecodeError as e:  # a ValueError too, but not the > 2 GB one below
        raise ModelError(f"the model holds a string that is not UTF-8 (an op type, name or attribute): {e}") from None
    except ValueError:
        pass  # > 2 GB models can only be checked by path; the importer still validates SSA


def check_opsets(model: onnx.ModelProto) -> None:
    """Refuse opsets newer than the installed onnx knows (it has no schema, shape rule or
    reference for them: a node would be read with the wrong semantics)."""
    known = onnx.defs.C.schema_version_map()  # domain -> (first, last) opset
    for o in model.opset_import:
        domain = "" if o.domain == "ai.onnx" else o.domain
        if domain in known and o.version > known[domain][1]:
            raise ModelError(f"the model imports opset {o.version} of domain '{o.domain or 'ai.onnx'}', "
                             f"expected at most {known[domain][1]} (the newest the installed onnx "
                             f"{onnx.__version__} knows)")


def free_negative_dims(model: onnx.ModelProto) -> None:
    """Negative dim_values on the graph's inputs, outputs and value_info become free dims (some
    exporters write free dims as -1; onnxruntime reads them so), bound by input_shapes or
    specialized at run time like any free dim."""
    g = model.graph
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.type.WhichOneof("value") != "tensor_type" or not vi.type.tensor_type.HasField("shape"):
            continue
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value < 0:
                d.ClearField("dim_value")


def default_opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1


def normalize_opset(model: onnx.ModelProto, target: int = CANONICAL_OPSET) -> onnx.ModelProto:
    """Bring models older than ``target`` up to it; if the converter cannot, keep the original
    (op handlers read each node's opset and refuse versions they do not know)."""
    if default_opset(model) >= target:
        return model
    from onnx import version_converter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converted = version_converter.convert_version(model, target)
        onnx.checker.check_model(converted)
        if _signature(converted) != _signature(model):
            return model  # e.g. Scan-8 -> 9 drops the batch axis: the model's interface changed
        if not _keep_legacy_resize_semantics(model, converted):
            return model
        if not _keep_legacy_prelu_semantics(model, converted):
            return model
        _restore_node_names(model, converted)
        return converted
    except Exception:  # noqa: BLE001 - the converter lacks adapters for some ops
        return model


# attributes whose schema default onnx's shape inference reads as another value: written out so
# that the inferred shapes are the op's (STFT's onesided is 1 by default; its rule assumes 0 and
# gave frame_length bins instead of frame_length // 2 + 1, which the fallback's result then missed)
_MISREAD_DEFAULTS = {("", "STFT"): ("onesided", 1)}


def write_misread_defaults(model: onnx.ModelProto) -> None:
    for node in all_nodes(model.graph):
        attr = _MISREAD_DEFAULTS.get((node.domain if node.domain != "ai.onnx" else "", node.op_type))
        if attr is not None and not any(a.name == attr[0] for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute(*attr))


def _restore_node_names(model: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """The converter's adapters replace nodes without their names (Scatter-10 becomes an unnamed
    ScatterElements): give a replacement the name of the node whose output it produces, so
    messages (a failed runtime check, an unsupported node) name the node the user knows."""
    names = {o: n.name for n in all_nodes(model.graph) if n.name for o in n.output if o}
    for n in all_nodes(converted.graph):
        if not n.name and n.output and n.output[0] in names:
            n.name = names[n.output[0]]


def _signature(model: onnx.ModelProto):
    """What a caller feeds (input names and types) and reads (output names)."""
    g = model.graph
    return ([(v.name, v.type.SerializeToString(deterministic=True)) for v in g.input],
            [v.name for v in g.output])


def _keep_legacy_prelu_semantics(old: onnx.ModelProto, new: onnx.ModelProto) -> bool:
    """PRelu before opset 7 applied a 1-D slope of C values per channel (axis 1, as PyTorch
    exports it); the version converter keeps that slope, which numpy broadcasting then aligns
    with the last axis (a different, usually invalid, model). Reshape such constant slopes to
    (C, 1, ..., 1); False (keep the model unconverted) when the slope or the input's rank is
    not known."""
    if default_opset(old) >= 7:
        return True
    prelus = [n for n in new.graph.node if n.op_type == "PRelu" and n.domain in ("", "ai.onnx")]
    if not prelus:
        return True
    from onnx import numpy_helper
    inits = {i.name: i for i in new.graph.initializer}
    try:
        typed = onnx.shape_inference.infer_shapes(old)
    except Exception:  # noqa: BLE001
        return False
    ranks = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in
             list(typed.graph.input) + list(typed.graph.value_info) + list(typed.graph.output)
             if vi.type.tensor_type.HasField("shape")}
    for n in prelus:
        slope = inits.get(n.input[1])
        if slope is None or n.input[0] not in ranks:
            return False
        rank = ranks[n.input[0]]
        if len(slope.dims) != 1 or slope.dims[0] == 1 or rank < 3:
            continue  # a shared scalar slope, or (N, C) where the last axis is the channel axis
        arr = numpy_helper.to_array(slope)
        name = f"{slope.name}__per_channel"
        if name not in inits:
            inits[name] = numpy_helper.from_array(arr.reshape((-1,) + (1,) * (rank - 2)), name)
            new.graph.initializer.append(inits[name])
        n.input[1] = name
    return True


def _keep_legacy_resize_semantics(old: onnx.ModelProto, new: onnx.ModelProto) -> bool:
    """The version converter turns Upsample and Resize-10 into Resize with the opset-11 defaults
    (half_pixel), which changes results: the old ops sample at x = y / scale ("asymmetric") and
    round nearest down when upsampling, up when downsampling (onnxruntime's legacy rule).  Write
    that into the converted nodes; False (keep the model unconverted) when a nearest node mixes
    up- and downsampling or its scales are not constants."""
    if default_opset(old) >= 11:
        return True
    from onnx import helper, numpy_helper
    consts = {i.name: numpy_helper.to_array(i) for i in old.graph.initializer}
    for n in old.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    legacy = {}
    for n in old.graph.node:
        if n.op_type in ("Upsample", "Resize") and n.domain in ("", "ai.onnx"):
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            mode = attrs.get("mode", b"nearest")
            scales = attrs.get("scales") if len(n.input) < 2 else consts.get(n.input[1])
            legacy[n.output[0]] = (mode, None if scales is None else [float(s) for s in scales])
    for n in new.graph.node:
        if n.op_type != "Resize" or n.output[0] not in legacy:
            continue
        mode, scales = legacy[n.output[0]]
        attrs = [helper.make_attribute("coordinate_transformation_mode", "asymmetric")]
        if mode == b"nearest":
            if scales is None or (min(scales) < 1 < max(scales)):
                return False
            attrs.append(helper.make_attribute("nearest_mode", "ceil" if max(scales) <= 1 else "floor"))
        keep = [a for a in n.attribute if a.name not in ("coordinate_transformation_mode", "nearest_mode")]
        del n.attribute[:]
        n.attribute.extend(keep + attrs)
    return True


def _named_inputs(model: onnx.ModelProto, names, what: str) -> Dict[str, onnx.ValueInfoProto]:
    """The model's graph inputs (initializers excluded) by name; a ModelError listing every one of
    ``names`` (the keys of the user's ``what`` mapping) that is not among them."""
    inits = {i.name for i in model.graph.initializer}
    graph_inputs = {i.name: i for i in model.graph.input if i.name not in inits}
    unknown = [n for n in names if n not in graph_inputs]
    if unknown:
        raise ModelError(f"{what} names unknown input(s) {unknown}; the model's inputs are "
                         f"{sorted(graph_inputs)}")
    return graph_inputs


def bind_input_shapes(model: onnx.ModelProto, input_shapes: Optional[Mapping[str, Sequence[int]]]) -> None:
    """Write user-given shapes into the graph inputs; symbolic dims with the same name are bound
    everywhere they appear among the inputs."""
    if not input_shapes:
        return
    graph_inputs = _named_inputs(model, input_shapes, "input_shapes")
    symbols: Dict[str, int] = {}
    for name, shape in input_shapes.items():
        vi = graph_inputs[name]
        dims = vi.type.tensor_type.shape.dim
        shape = [int(d) for d in shape]
        if any(not 0 <= s < MAX_DIM for s in shape):
            raise ModelError(f"input_shapes['{name}'] = {shape}: expected dims in [0, 2^40)")
        if len(dims) and len(dims) != len(shape):
            raise ModelError(f"input_shapes['{name}'] has rank {len(shape)} but the model declares "
                             f"rank {len(dims)} ({_type_of(vi)[1]})")
        if not len(dims):
            for _ in shape:
                vi.type.tensor_type.shape.dim.add()
            dims = vi.type.tensor_type.shape.dim
        for d, s in zip(dims, shape):
            if d.HasField("dim_value") and d.dim_value != s:
                raise ModelError(f"input_shapes['{name}'] = {shape} conflicts with the model's fixed "
                                 f"shape {_type_of(vi)[1]}")
            if d.HasField("dim_param") and d.dim_param:
                symbols[d.dim_param] = s
            d.dim_value = s
    for vi in graph_inputs.values():
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param") and d.dim_param in symbols:
                d.dim_value = symbols[d.dim_param]


def bind_input_values(model: onnx.ModelProto, input_values: Optional[Mapping[str, "np.ndarray"]]) -> None:
    """Make each named graph input a constant initializer holding the given array (value
    specialization, session.py): the build is for these values only. Called after
    bind_input_shapes, so the array must match the input's declared dtype and shape exactly."""
    if not input_values:
        return
    import numpy as np
    from onnx import numpy_helper
    graph_inputs = _named_inputs(model, input_values, "input_values")
    for name, value in input_values.items():
        value = np.asarray(value)
        dtype, shape = _type_of(graph_inputs[name])
        if dtype is None or value.dtype != dtype:
            raise ModelError(f"input_values['{name}'] has dtype {value.dtype}, expected {dtype} (the input's "
                             f"declared type)")
        if shape is not None and (len(shape) != value.ndim or
                                  any(isinstance(d, int) and d != s for d, s in zip(shape, value.shape))):
            raise ModelError(f"input_values['{name}'] has shape {list(value.shape)}, expected {list(shape)}")
        model.graph.initializer.append(numpy_helper.from_array(value, name))
    keep = [i for i in model.graph.input if i.name not in input_values]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def infer_model_shapes(model: onnx.ModelProto):
    """(model with inferred shapes, None) or, when onnx's strict inference (types checked)
    fails, (the lenient inference's model, the strict error text for ops/validate.py)."""
    try:
        return infer_shapes(model, check_type=True, strict_mode=True), None
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        error = str(e)
    inferred = _infer_over_declared_shapes(model)
    if inferred is not None:
        return inferred, None
    try:
        return infer_shapes(model, check_type=False, strict_mode=False), error
    except Exception:  # noqa: BLE001 - fall back to per-node inference in the IR
        return model, error


def _infer_over_declared_shapes(model: onnx.ModelProto) -> Optional[onnx.ModelProto]:
    """Strict inference without the declared value_info and output shapes, which some
    exporters get wrong; onnxruntime only warns about those and computes the real shapes (a
    declared shape kept over the inferred one once made onnxc run Relu in the fallback, whose
    result then disagreed with the compiled code). None when that fails too."""
    g = model.graph
    if not g.value_info and not any(o.type.tensor_type.HasField("shape") for o in g.output):
        return None
    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    del bare.graph.value_info[:]
    for o in bare.graph.output:
        if o.type.WhichOneof("value") == "tensor_type":
            o.type.tensor_type.ClearField("shape")
    try:
        inferred = infer_shapes(bare, check_type=True, strict_mode=True)
    except Exception:  # noqa: BLE001 - a real problem (or an onnx limit): the caller decides
        return None
    have = {vi.name for vi in inferred.graph.value_info}
    inferred.graph.value_info.extend(vi for vi in g.value_info if vi.name not in have)  # custom ops' outputs
    for o, declared in zip(inferred.graph.output, g.output):
        if declared.type.WhichOneof("value") == "tensor_type" and not o.type.tensor_type.HasField("shape"):
            o.type.CopyFrom(declared.type)
    log.warning("onnxc: the model's declared shapes disagree with onnx shape inference; using the "
                "inferred ones, as onnxruntime does")
    return inferred


def load(model: ModelLike, input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
         check: bool = True, input_values: Optional[Mapping] = None) -> Graph:
    """ONNX model (path, bytes or ModelProto) -> IR Graph with dtypes and (where known) shapes.
    ``input_values``: graph inputs bound to constant arrays (bind_input_values)."""
    proto = read_model(model)
    proto_copy = onnx.ModelProto()
    proto_copy.CopyFrom(proto)
    proto = proto_copy
    free_negative_dims(proto)
    if check:
        check_model(proto)
        check_opsets(proto)
    check_safe(proto)  # attribute values that would crash onnx's own shape inference
    proto = normalize_opset(proto)
    write_misread_defaults(proto)
    bind_input_shapes(proto, input_shapes)
    bind_input_values(proto, input_values)
    # Initializers listed as inputs (IR v3) and inputs redefined by nodes confuse inference.
    produced = {o for n in proto.graph.node for o in n.output}
    inits = {i.name for i in proto.graph.initializer}
    keep = [i for i in proto.graph.input if i.name not in produced]
    if len(keep) != len(proto.graph.input):
        del proto.graph.input[:]
        proto.graph.input.extend(keep)
    # value_info naming a graph input or output repeats the interface, which wins (onnx's strict
    # inference does not compare the two: a fuzzed [16] on a [4, 5] output made the C write 20
    # floats into a 16-float output buffer)
    interface = {v.name for v in list(proto.graph.input) + list(proto.graph.output)}
    if any(vi.name in interface for vi in proto.graph.value_info):
        kept = [vi for vi in proto.graph.value_info if vi.name not in interface]
        del proto.graph.value_info[:]
        proto.graph.value_info.extend(kept)
    proto, onnx_error = infer_model_shapes(proto)
    opset = {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in proto.opset_import}
    infos = {vi.name: _type_of(vi) for vi in proto.graph.value_info}
    graph = import_graph(proto.graph, opset, value_info=infos)
    graph.metadata["producer"] = proto.producer_name
    graph.metadata["initializer_inputs"] = sorted(inits & {i.name for i in keep})
    from .contrib import rewrite_contrib
    rewrite_contrib(graph)  # onnxruntime's fused com.microsoft ops -> onnxc's (before typing)
    from ..ops import infer_graph, validate_graph
    refused = {} if check else None  # the shape rules' refusals, for validation to report
    infer_graph(graph, refused=refused)
    if check:  # invalid nodes fail here, at compile time, not in a kernel or the fallback
        validate_graph(graph, onnx_error, refused)
    from .expand import expand_functions
    if expand_functions(graph):  # after validation: the rules see the nodes as written
        infer_graph(graph)
    return graph
