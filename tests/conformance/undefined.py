"""Results the ONNX spec leaves undefined: neither answer is right or wrong, so neither is compared.

Cast (and CastLike) says "Casting from floating point to fixed point: undefined if OOR (out of
range)", which covers int4/uint4/int2/uint2 as well (ml_dtypes releases disagree on them: some
wrap, some give 0), and "Casting negative values to FLOAT8E8M0 gives undefined behavior" (-0:
"unspecified").  ``cast_defined`` classifies the elements of one cast; ``undefined_outputs`` finds
such casts in a model and maps them to the model outputs they reach.  Used by
tests/conformance/run.py and tests/ops/test_half_ops.py.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

_NARROW_FLOATS = {"bfloat16", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz",
                  "float8_e8m0fnu", "float4_e2m1fn"}
_SMALL_INTS = {"int4": (-8, 7), "uint4": (0, 15), "int2": (-2, 1), "uint2": (0, 3)}


def is_float(dt) -> bool:
    dt = np.dtype(dt)
    return dt.kind == "f" or dt.name in _NARROW_FLOATS


def _int_range(dt) -> Optional[Tuple[int, int]]:
    dt = np.dtype(dt)
    if dt.name in _SMALL_INTS:
        return _SMALL_INTS[dt.name]
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min), int(info.max)
    return None


def cast_defined(x, to) -> Tuple[Optional[np.ndarray], str]:
    """(mask of the elements of ``x`` whose cast to ``to`` the spec defines, why the others are
    not); (None, "") when every element's result is defined."""
    x, to = np.asarray(x), np.dtype(to)
    if not is_float(x.dtype):
        return None, ""
    f = x.astype(np.float64)
    if to.name == "float8_e8m0fnu":
        return ~np.signbit(f) | np.isnan(f), f"{x.dtype.name} -> {to.name} of a negative value (or -0)"
    rng = _int_range(to)
    if rng is None:
        return None, ""
    lo, hi = rng
    with np.errstate(invalid="ignore"):  # the value truncated must fit; hi + 1 and lo are exact in float64
        ok = np.isfinite(f) & (np.trunc(f) >= lo) & (f < hi + 1)
    return ok, f"{x.dtype.name} -> {to.name} out of [{lo}, {hi}] (or NaN/inf)"


def undefined_outputs(model, feeds: Dict[str, np.ndarray]) -> Dict[int, Tuple[Optional[np.ndarray], str]]:
    """{output index: (mask of its undefined elements, or None: the whole output depends on an
    undefined value through other nodes; why)} for ``model`` run on ``feeds`` (top-level graph)."""
    import onnx
    from onnx import helper, numpy_helper
    g = model.graph
    casts = [n for n in g.node if n.op_type in ("Cast", "CastLike") and n.domain in ("", "ai.onnx")]
    if not casts:
        return {}
    known = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    known.update(feeds)
    types = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
                types[v.name] = helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)
    except Exception:  # noqa: BLE001 - without types every cast's source is evaluated
        pass

    def dtype_of(name):
        return np.asarray(known[name]).dtype if name in known else types.get(name)

    todo = []  # (cast node, target dtype)
    for n in casts:
        if n.op_type == "Cast":
            to = next((a.i for a in n.attribute if a.name == "to"), None)
            to = helper.tensor_dtype_to_np_dtype(to) if to else None
        else:
            to = dtype_of(n.input[1])
        src = dtype_of(n.input[0])
        if to is not None and (_int_range(to) or to.name == "float8_e8m0fnu") and (src is None or is_float(src)):
            todo.append((n, to))
    missing = sorted({n.input[0] for n, _ in todo} - set(known))
    if missing:
        try:
            from onnx.reference import ReferenceEvaluator
            known.update(zip(missing, ReferenceEvaluator(model).run(missing, feeds)))
        except Exception:  # noqa: BLE001 - no values, no classification: everything is compared
            todo = [(n, to) for n, to in todo if n.input[0] in known]
    outputs = [o.name for o in g.output]
    found: Dict[int, Tuple[Optional[np.ndarray], str]] = {}
    for n, to in todo:
        ok, why = cast_defined(known[n.input[0]], to)
        if ok is None or ok.all():
            continue
        why = f"{n.op_type} {repr(n.name) if n.name else 'to ' + repr(n.output[0])}: {why}, undefined by the spec"
        reached, frontier = {n.output[0]}, [n.output[0]]
        while frontier:  # every top-level value computed from the cast's output
            name = frontier.pop()
            for m in g.node:
                if name in m.input:
                    new = [o for o in m.output if o and o not in reached]
                    reached.update(new)
                    frontier += new
        for i, o in enumerate(outputs):
            if o == n.output[0]:
                prev = found.get(i, (np.zeros(ok.shape, bool), ""))[0]
                found[i] = (None if prev is None else prev | ~ok, why)
            elif o in reached:
                found[i] = (None, why)
    return found
