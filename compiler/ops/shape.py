"""Op knowledge for the shape family: numpy references, shape rules and validity rules (see
registry.py)."""
from __future__ import annotations

import numpy as np

from .registry import check, facts, get_attr, reference, shape_rule
from .validate import axis_problem, broadcast_problem, const_of, inp, known, shape_of, shape_str

# Facts (registry.FACTS)
facts("EyeLike", "Range", twin=True)
facts(*"""Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Expand Pad Tile DepthToSpace
           SpaceToDepth Trilu ReverseSequence CenterCropPad""".split(), bit_mover=True)
# Shape and Size read no element of their input: its narrow type needs no twin
facts("Shape", "Size", bit_mover=True)
facts("Slice", param_inputs=(1, 2, 3, 4))  # starts, ends, axes, steps
facts("Pad", param_inputs=(1, 2, 3))  # pads, constant_value, axes
facts("Tile", "Trilu", "CenterCropPad", "ReverseSequence", param_inputs=(1,))  # repeats, k, shape, lengths
facts("ConstantOfShape", param_inputs=(0,))  # its shape: constant, it folds away
# inputs that decide the output shape (a runtime value leaves it unknown at compile time)
facts("Reshape", "Expand", "Split", "Squeeze", "Unsqueeze", param_inputs=(1,))  # shape, split, axes
facts("Range", param_inputs=(0, 1, 2))  # start, limit, delta
# positions and splits: constant, the sequences lower to tensor ops (passes/basic/lower_sequences.py)
facts("SequenceAt", "SequenceErase", "SplitToSequence", param_inputs=(1,))
facts("SequenceInsert", param_inputs=(2,))
facts("Shape", "Size", "EyeLike", "RandomNormalLike", "RandomUniformLike", type_only_inputs=(0,))
facts("CastLike", type_only_inputs=(1,))  # target_type



@reference("ConstantOfShape")
def _constant_of_shape(node, shape):
    value = node.attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)[:1]
    return [np.full(tuple(int(d) for d in shape), fill[0], dtype=fill.dtype)]


@reference("Shape")
def _shape(node, x):
    # Python's slice is the spec's rule: a negative start/end counts from the back, then both
    # clamp to [0, rank]; start >= end gives no dims
    start, end = node.attrs.get("start", 0), node.attrs.get("end", None)
    return [np.array(x.shape[start:end], dtype=np.int64)]


@reference("Size")
def _size(node, x):
    return [np.array(x.size, dtype=np.int64)]


@reference("Unsqueeze")
def _unsqueeze(node, x, axes=None):
    axes = node.attrs.get("axes") if axes is None else axes.tolist()
    out_rank = x.ndim + len(axes)
    shape = list(x.shape)
    for a in sorted(int(a) % out_rank for a in axes):
        shape.insert(a, 1)
    return [x.reshape(shape)]


@reference("Concat")
def _concat(node, *xs):
    return [np.concatenate(xs, axis=node.attrs["axis"])]


@shape_rule("Compress")
def _compress_shape(node):
    """With a constant condition the output shape is known at compile time."""
    x, cond = node.inputs[0], node.inputs[1]
    if cond is None or not cond.is_const or x.shape is None:
        from .shapes import _onnx_infer
        return _onnx_infer(node)
    keep = int(np.count_nonzero(cond.const.reshape(-1)[: (x.shape[node.attrs["axis"]] if "axis" in node.attrs
                                                          else x.size)]))
    if "axis" not in node.attrs:
        return [(x.dtype, (keep,))]
    axis = node.attrs["axis"] % len(x.shape)
    return [(x.dtype, tuple(keep if i == axis else d for i, d in enumerate(x.shape)))]


# --- validity rules ---------------------------------------------------------------------------
def _ints(a) -> list:
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _input_or_attr(node, index, since, attr):
    """An op parameter that moved from an attribute to an input at opset ``since``: its
    constant value, or None when absent or not constant."""
    if node.opset >= since:
        c = const_of(node, index)
        return None if c is None else _ints(c)
    v = node.attrs.get(attr)
    return None if v is None else [int(x) for x in v]


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


@check("Reshape")
def _reshape_rule(node):
    t = _input_or_attr(node, 1, 5, "shape")
    if t is None:
        return
    x = shape_of(node, 0)
    allowzero = int(get_attr(node, "allowzero", 0)) if node.opset >= 14 else 0
    what = f"{inp(node, 1)} = {t}" if node.opset >= 5 else f"attribute 'shape' = {t}"
    if t.count(-1) > 1:
        yield f"{what} has {t.count(-1)} entries -1, expected at most one"
        return
    if any(d < -1 for d in t):
        yield f"{what} has the entry {min(t)}, expected dims >= -1"
        return
    if allowzero and 0 in t and -1 in t:
        yield f"{what} has both 0 and -1 with allowzero=1, expected at most one of them"
        return
    if x is None:
        return
    dims = []
    for i, d in enumerate(t):
        if d == 0 and not allowzero:  # 0 copies the input's dim i
            if i >= len(x):
                yield f"{what}: entry {i} is 0 (copy dim {i}), but {inp(node, 0)} has rank {len(x)}"
                return
            dims.append(x[i])
        else:
            dims.append(d)
    if not all(known(d) for d in list(x) + dims):
        return
    size = _prod(x)
    if -1 in dims:
        rest = _prod(d for d in dims if d != -1)
        if (rest == 0 and size != 0) or (rest != 0 and size % rest):
            yield (f"{what} cannot hold the {size} elements of {inp(node, 0)} {shape_str(x)}: the other dims "
                   f"multiply to {rest}, expected a divisor of {size}")
    elif _prod(dims) != size:
        yield (f"{what} has {_prod(dims)} elements, expected {size} (the elements of {inp(node, 0)} "
               f"{shape_str(x)})")


@check("Transpose")
def _transpose_rule(node):
    perm = node.attrs.get("perm")
    if perm is None:
        return
    perm = [int(p) for p in perm]
    x = shape_of(node, 0)
    n = len(x) if x is not None else len(perm)
    if sorted(perm) != list(range(n)):
        yield (f"attribute 'perm' is {perm}, expected a permutation of 0..{n - 1}"
               + (f" (the axes of {inp(node, 0)} {shape_str(x)})" if x is not None else ""))


@check("Concat")
def _concat_rule(node):
    axis = int(get_attr(node, "axis", 0))
    shapes = [(i, s) for i, s in ((i, shape_of(node, i)) for i in range(len(node.inputs))) if s is not None]
    if not shapes:
        return
    i0, s0 = shapes[0]
    p = axis_problem("attribute 'axis'", axis, len(s0))
    if p:
        yield p
        return
    ax = axis % len(s0)
    for i, s in shapes[1:]:
        if len(s) != len(s0):
            yield f"{inp(node, i)} has rank {len(s)}, expected {len(s0)} (the rank of {inp(node, i0)} {shape_str(s0)})"
            return
        for d in range(len(s)):
            if d != ax and known(s[d]) and known(s0[d]) and s[d] != s0[d]:
                yield (f"{inp(node, i)} has shape {shape_str(s)}, expected {s0[d]} at axis {d} like {inp(node, i0)} "
                       f"{shape_str(s0)} (only axis {axis} may differ)")
                return


@check("Split")
def _split_rule(node):
    x = shape_of(node, 0)
    axis = int(get_attr(node, "axis", 0))
    p = axis_problem("attribute 'axis'", axis, None if x is None else len(x))
    if p:
        yield p
        return
    dim = x[axis % len(x)] if x is not None else None
    dim = dim if known(dim) else None
    where = inp(node, 1) if node.opset >= 13 else "attribute 'split'"
    split = _input_or_attr(node, 1, 13, "split")
    n_out = len(node.outputs)
    num_outputs = node.attrs.get("num_outputs") if node.opset >= 18 else None
    if split is not None and len(split) == 0:
        split = None
    if split is not None:
        if num_outputs is not None:
            yield f"has both {where} and attribute 'num_outputs', expected one of them"
        if len(split) != n_out:
            yield f"{where} = {split} has {len(split)} sizes, expected {n_out} (one per output)"
        elif min(split) < 0:
            yield f"{where} = {split} has a negative size"
        elif dim is not None and sum(split) != dim:
            yield (f"{where} = {split} sums to {sum(split)}, expected {dim} (dim {axis} of {inp(node, 0)} "
                   f"{shape_str(x)})")
    elif num_outputs is not None:
        if int(num_outputs) != n_out:
            yield f"attribute 'num_outputs' is {num_outputs}, expected {n_out} (the node's outputs)"
    elif dim is not None and dim % n_out:
        yield (f"{inp(node, 0)} {shape_str(x)} has {dim} elements along axis {axis}, expected a multiple of "
               f"{n_out} to split evenly into the node's outputs")


@check("Slice")
def _slice_rule(node):
    x = shape_of(node, 0)
    r = None if x is None else len(x)
    starts = _input_or_attr(node, 1, 10, "starts")
    ends = _input_or_attr(node, 2, 10, "ends")
    axes = _input_or_attr(node, 3, 10, "axes")
    steps = _input_or_attr(node, 4, 10, "steps") if node.opset >= 10 else None
    name = (lambda i, a: inp(node, i)) if node.opset >= 10 else (lambda i, a: f"attribute '{a}'")
    n = len(starts) if starts is not None else (len(ends) if ends is not None else None)
    for i, a, v in ((2, "ends", ends), (3, "axes", axes), (4, "steps", steps)):
        if v is not None and n is not None and len(v) != n:
            yield f"{name(i, a)} = {v} has {len(v)} values, expected {n} (one per entry of starts)"
            return
    if axes is not None:
        for a in axes:
            p = axis_problem(f"{name(3, 'axes')} holds an axis that", a, r)
            if p:
                yield p
                return
        if r is not None and len({a % r for a in axes}) != len(axes):
            yield f"{name(3, 'axes')} = {axes} repeats an axis, expected distinct axes"
    elif n is not None and r is not None and n > r:
        yield f"starts has {n} values, expected at most {r} (the rank of {inp(node, 0)} {shape_str(x)})"
    if steps is not None and 0 in steps:
        yield f"{name(4, 'steps')} = {steps} has a 0 step, expected nonzero steps"


@check("Squeeze")
def _squeeze_rule(node):
    axes = _input_or_attr(node, 1, 13, "axes")
    x = shape_of(node, 0)
    if axes is None or x is None:
        return
    for a in axes:
        p = axis_problem("axis", a, len(x))
        if p:
            yield p
            return
        d = x[a % len(x)]
        if known(d) and d != 1:
            yield f"{inp(node, 0)} {shape_str(x)} has {d} at axis {a}, expected 1 to squeeze it"


@check("Unsqueeze")
def _unsqueeze_rule(node):
    axes = _input_or_attr(node, 1, 13, "axes")
    x = shape_of(node, 0)
    if axes is None or x is None:
        return
    r = len(x) + len(axes)
    for a in axes:
        p = axis_problem("axis", a, r)
        if p:
            yield p + " of the output"
            return
    if len({a % r for a in axes}) != len(axes):
        yield f"axes {axes} repeat an axis, expected distinct axes"


@check("Expand")
def _expand_rule(node):
    shape = const_of(node, 1)
    if shape is None:
        return
    yield broadcast_problem([(inp(node, 0), shape_of(node, 0)), (f"{inp(node, 1)} =", tuple(_ints(shape)))])


@check("Flatten")
def _flatten_rule(node):
    x = shape_of(node, 0)
    yield axis_problem("attribute 'axis'", get_attr(node, "axis", 1), None if x is None else len(x), end_ok=True)


@check("Tile")
def _tile_rule(node):
    reps, x = const_of(node, 1), shape_of(node, 0)
    if reps is None:
        return
    reps = _ints(reps)
    if x is not None and len(reps) != len(x):
        yield f"{inp(node, 1)} = {reps} has {len(reps)} values, expected {len(x)} (the rank of {inp(node, 0)})"
    elif reps and min(reps) < 0:
        yield f"{inp(node, 1)} = {reps} has a negative repeat count"


@check("Pad")
def _pad_rule(node):
    pads, x = _input_or_attr(node, 1, 11, "pads"), shape_of(node, 0)
    if pads is None or x is None:
        return
    axes = _input_or_attr(node, 3, 18, "axes") if node.opset >= 18 else None
    axes = list(range(len(x))) if axes is None else [a % max(len(x), 1) for a in axes]
    where = inp(node, 1) if node.opset >= 11 else "attribute 'pads'"
    if len(pads) != 2 * len(axes):
        yield f"{where} = {pads} has {len(pads)} values, expected {2 * len(axes)} (begin and end per padded axis)"
        return
    for k, a in enumerate(axes):
        d = x[a]
        if known(d) and d + pads[k] + pads[k + len(axes)] < 0:
            yield (f"{where} = {pads} crops axis {a} of {inp(node, 0)} {shape_str(x)} below zero "
                   f"({d} + {pads[k]} + {pads[k + len(axes)]})")


@check("ConstantOfShape")
def _constant_of_shape_rule(node):
    shape = const_of(node, 0)
    if shape is not None and shape.size and shape.min() < 0:
        yield f"{inp(node, 0)} = {_ints(shape)} has a negative dim"


@check("DepthToSpace", "SpaceToDepth")
def _depth_space_rule(node):
    x, b = shape_of(node, 0), int(get_attr(node, "blocksize", 0))
    if b < 1:
        yield f"attribute 'blocksize' is {b}, expected >= 1"
        return
    if x is None or len(x) != 4:
        return
    if node.op_type == "DepthToSpace" and known(x[1]) and x[1] % (b * b):
        yield f"{inp(node, 0)} {shape_str(x)} has {x[1]} channels, expected a multiple of blocksize^2 = {b * b}"
    if node.op_type == "SpaceToDepth":
        for ax in (2, 3):
            if known(x[ax]) and x[ax] % b:
                yield f"{inp(node, 0)} {shape_str(x)} has {x[ax]} at axis {ax}, expected a multiple of blocksize {b}"
