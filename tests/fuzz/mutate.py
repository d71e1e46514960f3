"""Mutations of a serialized model, of its structure and of its feeds, for tests/fuzz/fuzz.py.

Every mutator takes a ``random.Random`` and the thing to mutate (in place) and returns a short
description of what it did, or None when it does not apply (no such attribute, no initializer,
...).  Each step of a case draws from its own Random seeded by (case seed, step), so replaying a
subset of the steps (the minimiser) makes the same choices for the steps it keeps.

Structural mutators only use protobuf and numpy: the fuzzer's parent process never calls onnx's
C++ code (checker, shape inference), which is what the isolated child exercises.
"""
from __future__ import annotations

import random
from typing import Callable, Dict, List, Optional

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

INTS = [0, 1, -1, 2, 3, -2, 4, 7, 64, 255, 2 ** 31 - 1, -2 ** 31, 2 ** 31, 2 ** 32 + 1, 2 ** 62, 2 ** 63 - 1, -2 ** 63]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 1e-45, 1e-30, 3.4e38, -3.4e38, 1e30, float("nan"), float("inf"), float("-inf")]
DIMS = [0, 1, 1, 2, 3, 4, 5, 7, 8, 16, 33, 100, 4096, 2 ** 31 - 1, 2 ** 31, 2 ** 40]
STRINGS = ["", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "constant", "reflect", "edge", "wrap", "linear",
           "nearest", "cubic", "half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "tf_crop_and_resize",
           "round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "LEFT", "RIGHT", "forward", "reverse",
           "bidirectional", "none", "tanh", "mean", "sum", "add", "mul", "max", "min", "Sigmoid", "Tanh", "Relu",
           "HardSigmoid", "bilinear", "zeros", "border", "DCR", "CRD", "garbage"]
UNARY = ["Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Neg", "Identity", "Softplus", "Erf", "Floor", "Not",
         "IsNaN", "Round", "Reciprocal", "Sign", "Softmax", "Flatten", "Transpose", "ReduceSum", "ReduceMean", "Shape",
         "Size", "NonZero", "ArgMax", "GlobalAveragePool", "Dropout", "HardSwish", "Gelu", "Cos", "Ceil"]
BINARY = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Less", "Greater", "And", "Or", "MatMul", "Mod",
          "PRelu", "Gather", "Reshape", "Expand", "Tile", "Squeeze", "Unsqueeze", "TopK", "Concat", "Sum", "BitShift",
          "GatherElements", "GatherND", "Conv", "ConstantOfShape", "Range", "Where"]
TENSOR_TYPES = [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT8,
                TensorProto.UINT8, TensorProto.INT16, TensorProto.INT32, TensorProto.INT64, TensorProto.UINT64,
                TensorProto.BOOL, TensorProto.STRING, TensorProto.UNDEFINED, 0, 25, 99]
SAFE_TYPES = TENSOR_TYPES[:11]


def _pick(rng, seq):
    return seq[rng.randrange(len(seq))] if seq else None


def _graphs(g: onnx.GraphProto, out: List[onnx.GraphProto]):
    out.append(g)
    for n in g.node:
        for a in n.attribute:
            if a.type == AttributeProto.GRAPH:
                _graphs(a.g, out)
            for sub in a.graphs:
                _graphs(sub, out)
    return out


def _graph(rng, m: onnx.ModelProto) -> onnx.GraphProto:
    """The main graph most of the time, else a subgraph (If branch, Loop body) when there is one."""
    gs = _graphs(m.graph, [])
    return gs[0] if len(gs) == 1 or rng.random() < 0.6 else _pick(rng, gs[1:])


def _node(rng, g):
    return _pick(rng, list(g.node))


def _interesting_int(rng, base: Optional[int] = None) -> int:
    r = rng.random()
    if base is not None and r < 0.35:
        return base + rng.choice([-2, -1, 1, 2])
    if base is not None and r < 0.45:
        return -base
    return _pick(rng, INTS)


def _interesting_float(rng, base: Optional[float] = None) -> float:
    if base is not None and rng.random() < 0.3:
        return base * rng.choice([-1.0, 0.0, 2.0, 1e-3, 1e6])
    return _pick(rng, FLOATS)


# --- bytes ---------------------------------------------------------------------------------------
def truncate(rng, data: bytearray):
    n = rng.randrange(len(data)) if rng.random() < 0.5 else max(0, len(data) - rng.randint(1, 64))
    del data[n:]
    return f"truncate to {n} of {n + 0} bytes"


def flip_bytes(rng, data: bytearray):
    k = rng.choice([1, 1, 2, 4, 16])
    where = []
    for _ in range(k):
        i = rng.randrange(len(data))
        data[i] = (data[i] ^ (1 << rng.randrange(8))) if rng.random() < 0.6 else rng.randrange(256)
        where.append(i)
    return f"flip bytes at {sorted(where)}"


def insert_bytes(rng, data: bytearray):
    i = rng.randrange(len(data) + 1)
    chunk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 8, 40])))
    data[i:i] = chunk
    return f"insert {len(chunk)} bytes at {i}"


def delete_range(rng, data: bytearray):
    i = rng.randrange(len(data))
    n = rng.choice([1, 2, 8, 64, 512])
    del data[i:i + n]
    return f"delete {n} bytes at {i}"


def duplicate_range(rng, data: bytearray):
    i = rng.randrange(len(data))
    n = rng.choice([4, 16, 100])
    chunk = data[i:i + n]
    j = rng.randrange(len(data) + 1)
    data[j:j] = chunk
    return f"copy {len(chunk)} bytes from {i} to {j}"


def varint_edit(rng, data: bytearray):
    """Overwrite a byte that looks like a small length/varint with a large one (lengths in the
    protobuf wire format are varints)."""
    cands = [i for i in range(1, len(data)) if 0 < data[i] < 0x80 and data[i - 1] & 7 in (0, 2)]
    if not cands:
        return None
    i = _pick(rng, cands)
    data[i] = rng.choice([0x7f, 0x00, 0xff])
    return f"varint byte at {i} -> {data[i]:#x}"


BYTE_MUTATORS: Dict[str, Callable] = {f.__name__: f for f in (truncate, flip_bytes, insert_bytes, delete_range,
                                                              duplicate_range, varint_edit)}


# --- attributes ----------------------------------------------------------------------------------
def attr_value(rng, m):
    g = _graph(rng, m)
    cands = [(n, a) for n in g.node for a in n.attribute if a.type in
             (AttributeProto.INT, AttributeProto.INTS, AttributeProto.FLOAT, AttributeProto.FLOATS, AttributeProto.STRING,
              AttributeProto.TENSOR)]
    if not cands:
        return None
    n, a = _pick(rng, cands)
    if a.type == AttributeProto.INT:
        old, a.i = a.i, _interesting_int(rng, a.i)
        return f"{n.op_type}.{a.name}: {old} -> {a.i}"
    if a.type == AttributeProto.INTS:
        vals = list(a.ints)
        r = rng.random()
        if r < 0.5 and vals:
            k = rng.randrange(len(vals))
            vals[k] = _interesting_int(rng, vals[k])
        elif r < 0.7 and vals:
            del vals[rng.randrange(len(vals))]
        elif r < 0.9:
            vals.append(_interesting_int(rng, vals[-1] if vals else None))
        else:
            rng.shuffle(vals)
        del a.ints[:]
        a.ints.extend(vals)
        return f"{n.op_type}.{a.name} -> {vals}"
    if a.type == AttributeProto.FLOAT:
        old, a.f = a.f, _interesting_float(rng, a.f)
        return f"{n.op_type}.{a.name}: {old} -> {a.f}"
    if a.type == AttributeProto.FLOATS:
        vals = list(a.floats) or [1.0]
        vals[rng.randrange(len(vals))] = _interesting_float(rng)
        del a.floats[:]
        a.floats.extend(vals)
        return f"{n.op_type}.{a.name} -> {vals}"
    if a.type == AttributeProto.TENSOR:
        return _mutate_tensor(rng, a.t, f"{n.op_type}.{a.name}")
    old, a.s = a.s, _pick(rng, STRINGS).encode()
    return f"{n.op_type}.{a.name}: {old!r} -> {a.s!r}"


def attr_drop(rng, m):
    g = _graph(rng, m)
    cands = [n for n in g.node if n.attribute]
    if not cands:
        return None
    n = _pick(rng, cands)
    a = n.attribute[rng.randrange(len(n.attribute))]
    n.attribute.remove(a)
    return f"{n.op_type}: drop attribute {a.name}"


def attr_add(rng, m):
    """Add an attribute the op's schema knows but the node leaves at its default (schema lookups
    are plain reads of onnx's registry)."""
    g = _graph(rng, m)
    n = _node(rng, g)
    if n is None:
        return None
    try:
        schema = onnx.defs.get_schema(n.op_type, 22, n.domain)
    except Exception:  # noqa: BLE001 - unknown op / domain
        return None
    have = {a.name for a in n.attribute}
    cands = [a for a in schema.attributes.values() if a.name not in have]
    if not cands:
        return None
    a = _pick(rng, cands)
    T = onnx.defs.OpSchema.AttrType
    if a.type == T.INT:
        val = _interesting_int(rng)
    elif a.type == T.INTS:
        val = [_interesting_int(rng) for _ in range(rng.choice([1, 2, 4]))]
    elif a.type == T.FLOAT:
        val = _interesting_float(rng)
    elif a.type == T.FLOATS:
        val = [_interesting_float(rng) for _ in range(rng.choice([1, 2, 4]))]
    elif a.type == T.STRING:
        val = _pick(rng, STRINGS)
    else:
        return None
    n.attribute.append(helper.make_attribute(a.name, val))
    return f"{n.op_type}: add {a.name}={val}"


# --- value types ---------------------------------------------------------------------------------
def _value_infos(g, which):
    inits = {i.name for i in g.initializer}
    if which == "input":
        return [v for v in g.input if v.name not in inits]
    return list(g.output) if which == "output" else list(g.value_info)


def vi_dim(rng, m):
    g = _graph(rng, m)
    which = rng.choice(["input", "input", "output"])
    vis = [v for v in _value_infos(g, which) if v.type.tensor_type.shape.dim]
    if not vis:
        return None
    v = _pick(rng, vis)
    what = _vi_dim(rng, v)
    return f"{which} {what}"


def _vi_dim(rng, v):
    dims = v.type.tensor_type.shape.dim
    d = dims[rng.randrange(len(dims))]
    r = rng.random()
    if r < 0.15:
        d.Clear()
        d.dim_param = _pick(rng, ["N", "batch", "unk"])
        return f"{v.name}: a dim -> symbol {d.dim_param}"
    if r < 0.2:
        d.Clear()
        return f"{v.name}: a dim -> unknown"
    old = d.dim_value if d.HasField("dim_value") else d.dim_param
    val = _pick(rng, DIMS) if rng.random() < 0.6 else max(0, (d.dim_value or 1) + rng.choice([-1, 1, 2]))
    d.Clear()
    d.dim_value = val
    return f"{v.name}: dim {old} -> {val}"


def vi_rank(rng, m):
    g = _graph(rng, m)
    which = rng.choice(["input", "output"])
    vis = [v for v in _value_infos(g, which) if v.type.HasField("tensor_type")]
    if not vis:
        return None
    v = _pick(rng, vis)
    return f"{which} {_vi_rank(rng, v)}"


def _vi_rank(rng, v):
    shape = v.type.tensor_type.shape
    if rng.random() < 0.5 and shape.dim:
        del shape.dim[rng.randrange(len(shape.dim))]
        return f"{v.name}: drop a dim"
    if rng.random() < 0.2:
        v.type.tensor_type.ClearField("shape")
        return f"{v.name}: shape removed"
    shape.dim.insert(rng.randrange(len(shape.dim) + 1), onnx.TensorShapeProto.Dimension(dim_value=rng.choice([1, 1, 2, 3])))
    return f"{v.name}: insert a dim"


def vi_dtype(rng, m):
    g = _graph(rng, m)
    which = rng.choice(["input", "input", "output"])
    vis = [v for v in _value_infos(g, which) if v.type.HasField("tensor_type")]
    if not vis:
        return None
    v = _pick(rng, vis)
    old = v.type.tensor_type.elem_type
    v.type.tensor_type.elem_type = _pick(rng, TENSOR_TYPES if rng.random() < 0.3 else SAFE_TYPES)
    return f"{which} {v.name}: elem_type {old} -> {v.type.tensor_type.elem_type}"


def vi_intermediate(rng, m):
    """Declare a type for an intermediate value (graph.value_info), usually a wrong one."""
    g = _graph(rng, m)
    outs = [o for n in g.node for o in n.output if o]
    if not outs:
        return None
    name = _pick(rng, outs)
    for v in g.value_info:
        if v.name == name:
            g.value_info.remove(v)
            break
    elem = TensorProto.FLOAT if rng.random() < 0.7 else _pick(rng, SAFE_TYPES)
    shape = None if rng.random() < 0.1 else [rng.choice([1, 2, 3, 4, 5, 7, 16]) for _ in range(rng.choice([0, 1, 2, 3, 4]))]
    g.value_info.append(helper.make_tensor_value_info(name, elem, shape))
    return f"value_info {name}: {elem} {shape}"


# --- nodes ---------------------------------------------------------------------------------------
def _value_names(g) -> List[str]:
    names = [v.name for v in g.input] + [i.name for i in g.initializer]
    for n in g.node:
        names.extend(o for o in n.output if o)
    return names


def node_inputs(rng, m):
    g = _graph(rng, m)
    n = _node(rng, g)
    if n is None:
        return None
    ins = list(n.input)
    r = rng.random()
    if r < 0.25 and len(ins) >= 2:
        i, j = rng.sample(range(len(ins)), 2)
        ins[i], ins[j] = ins[j], ins[i]
        what = f"swap inputs {i},{j}"
    elif r < 0.45 and ins:
        k = rng.randrange(len(ins))
        if rng.random() < 0.5:
            ins[k] = ""
            what = f"input {k} -> omitted"
        else:
            del ins[k]
            what = f"drop input {k}"
    elif r < 0.8 and ins:
        k = rng.randrange(len(ins))
        ins[k] = _pick(rng, _value_names(g)) or ins[k]
        what = f"input {k} -> {ins[k]}"
    elif r < 0.9:
        ins.append(_pick(rng, _value_names(g)) or "x")
        what = f"extra input {ins[-1]}"
    else:
        if not ins:
            return None
        ins[rng.randrange(len(ins))] = "no_such_value"
        what = "input -> no_such_value"
    del n.input[:]
    n.input.extend(ins)
    return f"{n.op_type} {n.name}: {what}"


def node_outputs(rng, m):
    g = _graph(rng, m)
    n = _node(rng, g)
    if n is None:
        return None
    outs = list(n.output)
    r = rng.random()
    if r < 0.3 and len(outs) > 1:
        outs[rng.randrange(len(outs))] = ""
        what = "an output omitted"
    elif r < 0.6:
        outs.append(f"extra_{rng.randrange(100)}")
        what = "extra output"
    else:
        outs[rng.randrange(len(outs))] = _pick(rng, _value_names(g))  # redefinition: breaks SSA
        what = f"output -> {outs[-1]}"
    del n.output[:]
    n.output.extend(outs)
    return f"{n.op_type} {n.name}: {what}"


def node_op_type(rng, m):
    g = _graph(rng, m)
    n = _node(rng, g)
    if n is None:
        return None
    old = n.op_type
    n.op_type = _pick(rng, UNARY if len(n.input) <= 1 else BINARY)
    if rng.random() < 0.3:
        del n.attribute[:]
    return f"{old} -> {n.op_type}"


def node_delete(rng, m):
    g = _graph(rng, m)
    if len(g.node) < 2:
        return None
    k = rng.randrange(len(g.node))
    n = g.node[k]
    if rng.random() < 0.5 and n.input and n.output:  # bypass: consumers read its first input
        src, dst = n.input[0], n.output[0]
        for other in g.node:
            for i, x in enumerate(other.input):
                if x == dst:
                    other.input[i] = src
        for o in g.output:
            if o.name == dst:
                o.name = src
        what = "bypassed"
    else:
        what = "deleted"
    del g.node[k]
    return f"{n.op_type} {n.name} {what}"


def node_duplicate(rng, m):
    g = _graph(rng, m)
    n = _node(rng, g)
    if n is None:
        return None
    dup = onnx.NodeProto()
    dup.CopyFrom(n)
    if rng.random() < 0.5:  # a second consumer-less copy with fresh names: valid, dead code
        del dup.output[:]
        dup.output.extend(f"{o}_dup" for o in n.output)
        dup.name = (n.name or n.op_type) + "_dup"
    g.node.insert(rng.randrange(len(g.node) + 1), dup)
    return f"{n.op_type} {n.name} duplicated"


def node_reorder(rng, m):
    g = _graph(rng, m)
    if len(g.node) < 2:
        return None
    i, j = rng.sample(range(len(g.node)), 2)
    a, b = onnx.NodeProto(), onnx.NodeProto()
    a.CopyFrom(g.node[i])
    b.CopyFrom(g.node[j])
    g.node[i].CopyFrom(b)
    g.node[j].CopyFrom(a)
    return f"swap nodes {i} and {j}"


def node_domain(rng, m):
    n = _node(rng, _graph(rng, m))
    if n is None:
        return None
    n.domain = _pick(rng, ["com.microsoft", "onnxc", "ai.onnx.ml", "bogus", "ai.onnx.preview"])
    return f"{n.op_type} domain -> {n.domain}"


# --- initializers and constants ------------------------------------------------------------------
def _mutate_tensor(rng, t: onnx.TensorProto, what: str):
    try:
        arr = numpy_helper.to_array(t).copy()
    except Exception:  # noqa: BLE001 - already inconsistent
        arr = None
    r = rng.random()
    if arr is not None and arr.size and r < 0.5:
        flat = arr.reshape(-1)
        k = rng.randrange(flat.size)
        if arr.dtype.kind == "f":
            flat[k] = _interesting_float(rng, float(flat[k]))
        elif arr.dtype.kind in "iu":
            info = np.iinfo(arr.dtype)
            v = _interesting_int(rng, int(flat[k]))
            flat[k] = np.clip(v, info.min, info.max)
        elif arr.dtype.kind == "b":
            flat[k] = not flat[k]
        else:
            return None
        new = numpy_helper.from_array(arr, t.name)
        t.CopyFrom(new)
        return f"{what}[{k}] -> {flat[k]!r}"
    if r < 0.65:  # dims no longer match the data
        if t.dims and rng.random() < 0.6:
            k = rng.randrange(len(t.dims))
            t.dims[k] = _pick(rng, DIMS) if rng.random() < 0.4 else max(0, t.dims[k] + rng.choice([-1, 1]))
        else:
            t.dims.append(rng.choice([1, 2, 3]))
        return f"{what} dims -> {list(t.dims)}"
    if r < 0.8:
        if t.HasField("raw_data") and t.raw_data:
            t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data))]
            return f"{what} raw_data truncated to {len(t.raw_data)}"
        return None
    if r < 0.9:
        old, t.data_type = t.data_type, _pick(rng, TENSOR_TYPES)
        return f"{what} data_type {old} -> {t.data_type}"
    if arr is not None and arr.size > 1:  # a reshaped copy: the same data, another shape
        shape = list(arr.shape)
        rng.shuffle(shape)
        t.CopyFrom(numpy_helper.from_array(arr.reshape(shape[::-1] if shape == list(arr.shape) else shape), t.name))
        return f"{what} reshaped to {list(t.dims)}"
    return None


def init_tensor(rng, m):
    g = _graph(rng, m)
    ts = list(g.initializer) + [a.t for n in g.node if n.op_type == "Constant" for a in n.attribute
                                if a.type == AttributeProto.TENSOR]
    if not ts:
        return None
    # small integer tensors (shapes, axes, pads, indices) decide the most: favour them
    small = [t for t in ts
             if t.data_type in (TensorProto.INT64, TensorProto.INT32) and np.prod(t.dims, dtype=np.int64) <= 16]
    t = _pick(rng, small) if small and rng.random() < 0.6 else _pick(rng, ts)
    return _mutate_tensor(rng, t, f"initializer {t.name or 'Constant'}")


def init_drop(rng, m):
    g = _graph(rng, m)
    if not g.initializer:
        return None
    k = rng.randrange(len(g.initializer))
    name = g.initializer[k].name
    del g.initializer[k]
    return f"initializer {name} dropped"


# --- graph and model -----------------------------------------------------------------------------
def graph_io(rng, m):
    g = _graph(rng, m)
    r = rng.random()
    if r < 0.3 and len(g.output) > 1:
        k = rng.randrange(len(g.output))
        name = g.output[k].name
        del g.output[k]
        return f"graph output {name} dropped"
    if r < 0.6 and g.node:  # an intermediate becomes a graph output (with or without a type)
        n = _node(rng, g)
        out = _pick(rng, [o for o in n.output if o])
        if out is None:
            return None
        vi = g.output.add()
        vi.name = out
        if rng.random() < 0.6:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
        return f"graph output + {out}"
    if r < 0.75:
        inputs = _value_infos(g, "input")
        if not inputs:
            return None
        v = _pick(rng, inputs)
        g.input.remove(v)
        return f"graph input {v.name} dropped"
    if r < 0.9 and g.output:  # an output also listed twice
        vi = g.output.add()
        vi.CopyFrom(g.output[0])
        return f"graph output {vi.name} listed twice"
    inits = list(g.initializer)
    if not inits:
        return None
    t = _pick(rng, inits)  # an initializer that is also a graph input (IR v3 style)
    g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return f"initializer {t.name} also a graph input"


def opset(rng, m):
    r = rng.random()
    ops = [o for o in m.opset_import if o.domain in ("", "ai.onnx")]
    if r < 0.7 and ops:
        old = ops[0].version
        ops[0].version = rng.choice([1, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 30, 1000])
        return f"opset {old} -> {ops[0].version}"
    if r < 0.8 and ops:
        m.opset_import.remove(ops[0])
        return "default opset import removed"
    if r < 0.9:
        m.ir_version = rng.choice([0, 1, 3, 4, 7, 8, 9, 10, 11, 12, 99])
        return f"ir_version -> {m.ir_version}"
    m.opset_import.append(helper.make_opsetid(_pick(rng, ["com.microsoft", "onnxc", "bogus", ""]), rng.choice([1, 2, 99])))
    return f"extra opset import {m.opset_import[-1].domain}"


STRUCT_MUTATORS: Dict[str, Callable] = {f.__name__: f for f in (
    attr_value, attr_drop, attr_add, vi_dim, vi_rank, vi_dtype, vi_intermediate, node_inputs, node_outputs,
    node_op_type, node_delete, node_duplicate, node_reorder, node_domain, init_tensor, init_drop, graph_io, opset)}
# how often each is drawn (valid-but-odd values reach the compiler; broken wiring mostly stops at
# the checker, which is cheap, so it is drawn less)
STRUCT_WEIGHTS = {"attr_value": 5, "attr_drop": 1, "attr_add": 2, "vi_dim": 4, "vi_rank": 1, "vi_dtype": 2,
                  "vi_intermediate": 1, "node_inputs": 2, "node_outputs": 1, "node_op_type": 2, "node_delete": 2, "node_duplicate": 1,
                  "node_reorder": 1, "node_domain": 1, "init_tensor": 6, "init_drop": 1, "graph_io": 2, "opset": 2}


# --- feeds (applied in the child to the feed built for the compiled signature) -------------------
FEED_MUTATIONS = ["shape", "dtype", "index_out_of_range", "index_extreme", "nan_inf", "missing", "extra",
                  "non_contiguous", "empty", "scalar", "not_array"]


def mutate_feed(rng: random.Random, feed: Dict[str, np.ndarray], kind: str, hints: Dict) -> Optional[str]:
    """Mutate ``feed`` in place; returns a description, or None when ``kind`` does not apply."""
    if not feed and kind != "extra":
        return None
    name = _pick(rng, sorted(feed)) if feed else None
    x = feed.get(name)
    if kind == "shape":
        shape = list(np.shape(x)) or [1]
        k = rng.randrange(len(shape))
        shape[k] = max(0, shape[k] + rng.choice([-1, 1, 3]))
        if rng.random() < 0.3:
            shape.append(1)
        feed[name] = np.zeros(shape, x.dtype)
        return f"{name}: shape -> {shape}"
    if kind == "dtype":
        dt = _pick(rng, [np.float64, np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_, object])
        feed[name] = np.asarray(x).astype(dt)
        return f"{name}: dtype -> {np.dtype(dt).name}"
    if kind in ("index_out_of_range", "index_extreme"):
        ints = [k for k, v in feed.items() if v.dtype.kind in "iu" and v.size and hints.get(k, ("index",))[0] == "index"]
        if not ints:
            return None
        name = _pick(rng, ints)
        x = feed[name].copy()
        flat = x.reshape(-1)
        k = rng.randrange(flat.size)
        info = np.iinfo(x.dtype)
        if kind == "index_extreme":
            v = rng.choice([info.max, info.min, info.min + 1, info.max - 1])
        else:
            lo, hi = hints[name][1:] if name in hints else (-8, 8)
            v = rng.choice([hi, hi + 1, lo - 1, hi * 2 + 7, lo * 3 - 5])
        flat[k] = np.clip(v, info.min, info.max)
        feed[name] = x
        return f"{name}[{k}] -> {flat[k]}"
    if kind == "nan_inf":
        fl = [k for k, v in feed.items() if v.dtype.kind == "f" and v.size]
        if not fl:
            return None
        name = _pick(rng, fl)
        x = feed[name].copy()
        flat = x.reshape(-1)
        for _ in range(rng.choice([1, 3, flat.size])):
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45])
        feed[name] = x
        return f"{name}: nan/inf"
    if kind == "missing":
        del feed[name]
        return f"{name} missing"
    if kind == "extra":
        feed["not_an_input"] = np.zeros(3, np.float32)
        return "extra input"
    if kind == "non_contiguous":
        if x.ndim == 0 or x.size == 0:
            return None
        big = np.repeat(x, 2, axis=-1)
        feed[name] = big[..., ::2]
        return f"{name}: strided view"
    if kind == "empty":
        feed[name] = np.zeros((0,) + tuple(np.shape(x))[1:], x.dtype)
        return f"{name}: empty"
    if kind == "scalar":
        feed[name] = np.asarray(x).reshape(-1)[:1].reshape(()) if np.size(x) else np.zeros((), x.dtype)
        return f"{name}: scalar"
    if kind == "not_array":
        feed[name] = rng.choice([None, 3, [1.0, 2.0], "text"])
        return f"{name}: {type(feed[name]).__name__}"
    raise ValueError(kind)
