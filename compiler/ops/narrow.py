"""How ops meet narrow types: float16, bfloat16, float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ,
E8M0), float4 E2M1 and int4/uint4/int2/uint2.

Code generators carry them as raw bits (uint16_t / uint8_t, see dtypes.py) and never compute in
them:

* Cast/CastLike convert between every pair of supported types (providers/c/casts.py);
* kernels that only move bits (the ops' ``bit_mover`` fact) run on them directly;
* every other op runs on its float32 twin: passes/legalize_half.py rewrites
  ``op(x16)`` into ``Cast(op(Cast(x16 -> float32)) -> float16)`` when the backend supports the
  ``twin_node``.  The C provider's ``narrow_reason`` (providers/c/registry.py) refuses whatever
  is left, so a kernel written for real arithmetic never sees raw bits.

These are facts about the ops, shared by the pass and the provider; neither imports the other.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np

from ..dtypes import dtype_name, is_storage_only
from ..ir import Node, Value
from .registry import fact

# Which ops run how on narrow types are facts of the ops (registry.FACTS, declared in the family
# modules): "bit_mover" ops run on the bits, "codec" ops decode and encode them in their own
# kernels; "twin" ops through float32, where their twin is
# tested on narrow types (tests/ops/test_half_ops.py, the official cases); others are refused
# until they are.

MAX_ROUNDED_SUM = 256  # longest Softmax axis whose sum legalize_half unrolls into rounded Adds
_FLOAT_WIDE = np.dtype(np.float32)


def narrow_values(node) -> list:
    return [v for v in list(node.inputs) + list(node.outputs)
            if v is not None and v.dtype is not None and is_storage_only(v.dtype)]


def touches_narrow(node) -> bool:
    """For Cast/CastLike: whether input 0 or output 0 (the converted types) is narrow."""
    return any(v is not None and v.dtype is not None and is_storage_only(v.dtype)
               for v in (node.inputs[0], node.outputs[0]))


def _is_cast(node) -> bool:
    return node.domain in ("", "ai.onnx") and node.op_type in ("Cast", "CastLike")


# --- float32 twins ------------------------------------------------------------------------------
def _wide(dtype) -> Optional[np.dtype]:
    """Type that holds every value of a narrow type exactly: float32 for the floats, int8/uint8
    for the small integers."""
    name = dtype_name(dtype)
    if name in ("int4", "int2"):
        return np.dtype(np.int8)
    if name in ("uint4", "uint2"):
        return np.dtype(np.uint8)
    return _FLOAT_WIDE


def twin_plan(node) -> Union[str, Tuple[List[Optional[np.dtype]], List[Optional[np.dtype]]]]:
    """Wide dtypes for the twin's inputs and outputs (None: unchanged), or why there is no twin.
    Inputs widen exactly; only float16/bfloat16 outputs come back, by a rounding Cast (every
    other narrow output type has op-specific rounding/saturation a Cast would not reproduce)."""
    op = node.op_type
    if node.domain in ("", "ai.onnx") and op == "Softmax":
        return ("Softmax on narrow types runs as the reference's rounded steps: opset >= 13, a static "
                f"shape and at most {MAX_ROUNDED_SUM} elements along an axis summed one rounding at a time")
    float16_only = all(dtype_name(v.dtype) == "float16" for v in narrow_values(node))
    twin = fact(node, "twin") if node.domain in ("", "ai.onnx") else None
    if not (twin is True or (twin == "float16" and float16_only)):
        return f"{op} on narrow types is not verified through float32 (its op definition has no 'twin' fact)"
    impossible = f"{op} cannot run through float32"
    for name in ("to", "dtype", "output_dtype"):
        if name in node.attrs:
            return f"{impossible}: its output type is the attribute '{name}'"
    for name, a in node.attrs.items():
        if isinstance(a, np.ndarray) and is_storage_only(a.dtype):
            return f"{impossible}: attribute '{name}' is a {dtype_name(a.dtype)} tensor"
        if not isinstance(a, (int, float, str, bytes, list, tuple, np.ndarray)) and a is not None:
            return f"{impossible}: attribute '{name}' is a {type(a).__name__}"
    ins = [_wide(v.dtype) if v is not None and is_storage_only(v.dtype) else None for v in node.inputs]
    outs = []
    for v in node.outputs:
        if not is_storage_only(v.dtype):
            outs.append(None)
        elif dtype_name(v.dtype) in ("float16", "bfloat16"):
            outs.append(_FLOAT_WIDE)
        else:
            return f"{impossible}: output '{v.name}' is {dtype_name(v.dtype)} (its rounding is op-specific)"
    return ins, outs


def twin_node(node, plan) -> Node:
    """A detached probe: ``node`` with its narrow values widened as ``plan`` (twin_plan) says.
    Call ``detach_inputs()`` on it once asked about, so that it leaves no use on real values."""
    in_types, out_types = plan
    ins = []
    for v, t in zip(node.inputs, in_types):
        if v is None or t is None:
            ins.append(v)
        elif v.is_const:
            ins.append(Value(v.name, const=v.const.astype(t)))
        else:
            ins.append(Value(v.name, t, v.shape))
    outs = [Value(v.name, v.dtype if t is None else t, v.shape) for v, t in zip(node.outputs, out_types)]
    return Node(node.op_type, ins, outs, dict(node.attrs), name=node.name, domain=node.domain, opset=node.opset)


def twin_reason(node, plan, check) -> Optional[str]:
    """``check``'s verdict (a reason, or None: supported) on the twin described by ``plan``."""
    twin = twin_node(node, plan)
    try:
        return check(twin)
    finally:
        twin.detach_inputs()  # the probe must not stay in the use lists of real values


def needs_twin(node) -> bool:
    """Whether ``node`` touches narrow types in a way only its float32 twin can run."""
    return (bool(narrow_values(node)) and not _is_cast(node)
            and not (node.domain in ("", "ai.onnx") and (fact(node, "bit_mover") or fact(node, "codec"))))
