"""Op knowledge for the indexing family (Gather*, Scatter*, TopK): validity rules (see
registry.py). Constant indices are checked against the dims they index; negative indices in
[-n, n-1] are valid ONNX. Indices computed at run time are the kernels' business."""
from __future__ import annotations

import numpy as np

from .registry import check, facts, get_attr
from .validate import axis_problem, const_of, inp, known, shape_of, shape_str

# Facts (registry.FACTS)
facts("TopK", "GatherND", "ScatterND", "ScatterElements", "Scatter", "OneHot", twin=True)
facts("Gather", "GatherElements", "Compress", bit_mover=True)
# data-dependent output shapes (providers/c/dynamic.py); float32 keeps order, equality and zeros
facts("NonZero", "Unique", twin=True)
facts("Compress", "TopK", "OneHot", param_inputs=(1,))  # condition, k, depth: they decide the output shape



def _index_problem(node, i, idx, n, what):
    """Text for the first constant index outside [-n, n-1], or None."""
    if idx is None or not known(n) or idx.size == 0:
        return None
    idx = np.asarray(idx).astype(np.int64, copy=False)
    bad = idx[(idx < -n) | (idx > n - 1)]
    if bad.size:
        more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
        return (f"{inp(node, i)} holds the index {int(bad.reshape(-1)[0])}{more}, expected indices in "
                f"[{-n}, {n - 1}] ({what})")
    return None


def _axis(node, x, default=0):
    axis = int(get_attr(node, "axis", default))
    return axis, axis_problem("attribute 'axis'", axis, None if x is None else len(x))


@check("Gather")
def _gather_rule(node):
    x = shape_of(node, 0)
    axis, p = _axis(node, x)
    if p or x is None:
        yield p
        return
    ax = axis % len(x)
    yield _index_problem(node, 1, const_of(node, 1), x[ax], f"dim {ax} of {inp(node, 0)} {shape_str(x)}")


def _elements(node, data_i, index_i, updates_i=None):
    x, ind = shape_of(node, data_i), shape_of(node, index_i)
    axis, p = _axis(node, x)
    if p or x is None:
        yield p
        return
    ax = axis % len(x)
    if ind is not None:
        if len(ind) != len(x):
            yield f"{inp(node, index_i)} has rank {len(ind)}, expected {len(x)} (the rank of {inp(node, data_i)})"
            return
        if updates_i is None:  # GatherElements: indices may not be larger than data off the axis
            for d, (a, b) in enumerate(zip(ind, x)):
                if d != ax and known(a) and known(b) and a > b:
                    yield (f"{inp(node, index_i)} {shape_str(ind)} has {a} at axis {d}, expected at most {b} "
                           f"(dim {d} of {inp(node, data_i)} {shape_str(x)})")
                    return
    if updates_i is not None:
        upd = shape_of(node, updates_i)
        if upd is not None and ind is not None and (len(upd) != len(ind) or any(
                known(a) and known(b) and a != b for a, b in zip(upd, ind))):
            yield f"{inp(node, updates_i)} has shape {shape_str(upd)}, expected {shape_str(ind)} (the indices' shape)"
    yield _index_problem(node, index_i, const_of(node, index_i), x[ax],
                         f"dim {ax} of {inp(node, data_i)} {shape_str(x)}")


@check("GatherElements")
def _gather_elements_rule(node):
    yield from _elements(node, 0, 1)


@check("ScatterElements", "Scatter")
def _scatter_elements_rule(node):
    yield from _elements(node, 0, 1, 2)


def _nd(node, updates_i=None):
    x, ind = shape_of(node, 0), shape_of(node, 1)
    if x is None or ind is None or not ind or not known(ind[-1]):
        return
    b = int(get_attr(node, "batch_dims", 0)) if updates_i is None else 0
    k = int(ind[-1])
    if b >= min(len(x), len(ind)):
        yield f"attribute 'batch_dims' is {b}, expected less than the ranks of data ({len(x)}) and indices ({len(ind)})"
        return
    if k > len(x) - b:
        yield (f"{inp(node, 1)} {shape_str(ind)} indexes {k} axes, expected at most {len(x) - b} (the rank of "
               f"{inp(node, 0)} {shape_str(x)}{f' after {b} batch dims' if b else ''})")
        return
    if updates_i is not None:
        upd, want = shape_of(node, updates_i), tuple(ind[:-1]) + tuple(x[k:])
        if upd is not None and (len(upd) != len(want) or any(
                known(a) and known(c) and a != c for a, c in zip(upd, want))):
            yield (f"{inp(node, updates_i)} has shape {shape_str(upd)}, expected {shape_str(want)} "
                   f"(indices[:-1] + data[{k}:])")
    idx = const_of(node, 1)
    if idx is not None and idx.size:
        for j in range(k):
            p = _index_problem(node, 1, idx[..., j], x[b + j], f"dim {b + j} of {inp(node, 0)} {shape_str(x)}")
            if p:
                yield p
                return


@check("GatherND")
def _gather_nd_rule(node):
    yield from _nd(node)


@check("ScatterND")
def _scatter_nd_rule(node):
    yield from _nd(node, 2)


@check("TopK")
def _topk_rule(node):
    x = shape_of(node, 0)
    axis, p = _axis(node, x, -1)
    if p:
        yield p
        return
    if node.opset >= 10:
        k = const_of(node, 1)
        if k is None:
            return
        if k.size != 1:
            yield f"{inp(node, 1)} has {k.size} values, expected one k"
            return
        k, where = int(k.reshape(-1)[0]), f"{inp(node, 1)} (k)"
    else:
        k, where = int(get_attr(node, "k", 0)), "attribute 'k'"
    if k < 0:
        yield f"{where} is {k}, expected k >= 0"
    elif x is not None and known(x[axis % len(x)]) and k > x[axis % len(x)]:
        yield f"{where} is {k}, expected at most {x[axis % len(x)]} (dim {axis} of {inp(node, 0)} {shape_str(x)})"
