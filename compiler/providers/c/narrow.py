"""Narrow types in the C path: float16, bfloat16, float8 (E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ,
E8M0), float4 E2M1 and int4/uint4/int2/uint2.

C carries them as raw bits (uint16_t / uint8_t, see dtypes.py) and never computes in them:

* Cast/CastLike convert between every pair of supported types through onnxc_half.h: round to
  nearest even, once, from the source value (float64 and wide integers reach bfloat16 and E8M0
  through a float32 rounded to odd, never through a float32 rounded to nearest); float8
  ``saturate``, E8M0 ``round_mode``; float -> int4/int2 truncates to int32 and keeps the low bits
  (the spec leaves a float out of the target's range undefined);
* kernels that only move bits (BIT_MOVERS) run on them directly;
* every other op runs on its float32 twin: passes/legalize_half.py rewrites
  ``op(x16)`` into ``Cast(op(Cast(x16 -> float32)) -> float16)`` when ``twin_reason`` says the
  C provider supports the twin.  ``narrow_reason`` refuses whatever is left, so a kernel written
  for real arithmetic never sees raw bits.
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

import numpy as np

from ...dtypes import c_type, dtype_name, has_c_type, is_storage_only

# ops whose C kernels copy elements (or write zeros / literals of the element's own dtype)
BIT_MOVERS = frozenset({
    "Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat",
    "Split", "Slice", "Gather", "GatherElements", "Expand", "Where", "Pad", "Tile", "DepthToSpace",
    "SpaceToDepth", "Trilu", "Compress", "ReverseSequence", "CenterCropPad",
})

# ops whose float32 twin (widen the inputs, round each output once) is tested on narrow types
# (tests/ops/test_half_ops.py, the official cases); others are refused until they are: a fused op
# such as Attention rounds its intermediate steps in the reference and would differ.  Softmax is
# rewritten into its reference steps by the pass.
TWIN_OPS = frozenset("""
    Abs Acos Acosh Add Asin Asinh Atan Atanh Ceil Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor Gelu
    Greater GreaterOrEqual HardSigmoid HardSwish IsInf IsNaN LeakyRelu Less LessOrEqual Log Max Mean Min
    Mish Mod Mul Neg PRelu Pow Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign
    Sqrt Sub Sum Tan Tanh ThresholdedRelu BatchNormalization
    MatMul Gemm Conv MaxPool AveragePool GlobalAveragePool GlobalMaxPool LRN
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare ArgMax ArgMin LogSoftmax Hardmax LayerNormalization RMSNormalization
    TopK GatherND ScatterND ScatterElements Scatter OneHot EyeLike Range Einsum
    QLinearMatMul
""".split())
# fused ops whose float32 twin agrees with the official float16 cases (within their rtol, about an
# ulp) but not with the bfloat16 ones: the reference rounds every inner step to bfloat16's 8 bits
TWIN_OPS_FLOAT16 = frozenset({"Attention"})

MAX_ROUNDED_SUM = 256  # longest Softmax axis whose sum legalize_half unrolls into rounded Adds
_FLOAT_WIDE = np.dtype(np.float32)
_ROUND_MODES = {"up": 0, "down": 1, "nearest": 2}


def _narrow_values(node) -> list:
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
    float16_only = all(dtype_name(v.dtype) == "float16" for v in _narrow_values(node))
    if node.domain not in ("", "ai.onnx") or not (op in TWIN_OPS or (op in TWIN_OPS_FLOAT16 and float16_only)):
        return f"{op} on narrow types is not verified through float32 (providers/c/narrow.py TWIN_OPS)"
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


def twin_reason(node, plan) -> Optional[str]:
    """The C provider's verdict on the twin described by ``plan`` (None: supported)."""
    from ...ir import Node, Value
    from .registry import check_node
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
    twin = Node(node.op_type, ins, outs, dict(node.attrs), name=node.name, domain=node.domain, opset=node.opset)
    try:
        return check_node(twin)
    finally:
        twin.detach_inputs()  # the probe must not stay in the use lists of real values


# ops whose C kernels decode and encode narrow values themselves (through _decode / cast_expr)
CODECS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def needs_twin(node) -> bool:
    """Whether ``node`` touches narrow types in a way only its float32 twin can run."""
    return (bool(_narrow_values(node)) and not _is_cast(node)
            and not (node.domain in ("", "ai.onnx") and node.op_type in BIT_MOVERS | CODECS))


def narrow_reason(node) -> Optional[str]:
    """None if the C kernel of ``node`` may see its narrow-typed values (none, a cast, or a
    kernel that only moves bits), else why not."""
    if not needs_twin(node):
        return None
    v = _narrow_values(node)[0]
    what = f"{dtype_name(v.dtype)} '{v.name}'"
    plan = twin_plan(node)
    if isinstance(plan, str):
        return f"{what}: {plan}"
    reason = twin_reason(node, plan)
    if reason:
        return f"{what}: narrow types run {node.op_type} in float32, where it is refused: {reason}"
    return f"{what}: {node.op_type} on narrow types needs the legalize_half pass (float32 twin)"


# --- Cast ---------------------------------------------------------------------------------------
# narrow source -> (C expression decoding the bits exactly, class of the result)
_DECODE = {
    "float16": ("onnxc_f16_to_f32({})", "f"),
    "bfloat16": ("onnxc_bf16_to_f32({})", "f"),
    "float8_e4m3fn": ("onnxc_f8e4m3fn_to_f32({})", "f"),
    "float8_e4m3fnuz": ("onnxc_f8e4m3fnuz_to_f32({})", "f"),
    "float8_e5m2": ("onnxc_f8e5m2_to_f32({})", "f"),
    "float8_e5m2fnuz": ("onnxc_f8e5m2fnuz_to_f32({})", "f"),
    "float8_e8m0fnu": ("onnxc_e8m0_to_f32({})", "f"),
    "float4_e2m1fn": ("onnxc_f4e2m1_to_f32({})", "f"),
    "int4": ("onnxc_i4_to_i32({})", "i"),
    "uint4": ("((int32_t)(({}) & 15u))", "i"),
    "int2": ("onnxc_i2_to_i32({})", "i"),
    "uint2": ("((int32_t)(({}) & 3u))", "i"),
}
_F8_ENCODE = {"float8_e4m3fn": "onnxc_f64_to_f8e4m3fn", "float8_e4m3fnuz": "onnxc_f64_to_f8e4m3fnuz",
              "float8_e5m2": "onnxc_f64_to_f8e5m2", "float8_e5m2fnuz": "onnxc_f64_to_f8e5m2fnuz"}
_LOW_BITS = {"int4": 15, "uint4": 15, "int2": 3, "uint2": 3}
_STANDARD = {"float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
             "bool"}


def castable(dtype) -> bool:
    return dtype is not None and has_c_type(dtype) and (dtype_name(dtype) in _STANDARD or dtype_name(dtype) in _DECODE)


def _decode(x: str, src) -> Tuple[str, str]:
    """(C expression of the exact source value, its class): f float, d double, i integer."""
    name = dtype_name(src)
    if name in _DECODE:
        tmpl, kind = _DECODE[name]
        return tmpl.format(x), kind
    return x, {"float32": "f", "float64": "d"}.get(name, "i")


def _as_double(e: str, kind: str) -> str:
    return e if kind == "d" else f"(double)({e})"


def _as_float32_odd(e: str, kind: str, src) -> str:
    """A float32 from which one more rounding to bfloat16/E8M0 rounds the source value once:
    exact sources as they are, float64 and integers wider than 24 bits rounded to odd."""
    if kind == "f" or dtype_name(src) in ("int8", "uint8", "int16", "uint16", "bool", *_LOW_BITS):
        return e if kind == "f" else f"(float)({e})"
    if kind == "d":
        return f"onnxc_f64_to_f32_odd({e})"
    if dtype_name(src) in ("uint32", "uint64"):
        return f"onnxc_u64_to_f32_odd((uint64_t)({e}))"
    return f"onnxc_i64_to_f32_odd((int64_t)({e}))"


def cast_expr(x: str, src, dst, saturate: int = 1, round_mode: str = "up") -> str:
    """C expression converting element ``x`` of ``src`` to ``dst`` when either is narrow."""
    e, kind = _decode(x, src)
    name = dtype_name(dst)
    sat = 1 if saturate else 0
    if name == "float16":  # integers beyond 2^53 overflow float16 however they round
        return f"onnxc_f32_to_f16({e})" if kind == "f" else f"onnxc_f64_to_f16({_as_double(e, kind)})"
    if name in _F8_ENCODE:  # from double, rounded once; every integer beyond 2^53 overflows them
        return f"{_F8_ENCODE[name]}({_as_double(e, kind)}, {sat})"
    if name == "float4_e2m1fn":
        return f"onnxc_f64_to_f4e2m1({_as_double(e, kind)})"
    f = _as_float32_odd(e, kind, src)
    if name == "bfloat16":
        return f"onnxc_f32_to_bf16({f})"
    if name == "float8_e8m0fnu":
        return f"onnxc_f32_to_e8m0({f}, {sat}, {_ROUND_MODES[round_mode]})"
    if name in _LOW_BITS:
        mask = _LOW_BITS[name]
        if kind in ("f", "d"):
            return f"onnxc_f64_to_lowbits({_as_double(e, kind)}, {mask}u)"
        return f"(uint8_t)((uint64_t)({e}) & {mask}u)"
    if name == "bool":
        return f"(({e}) != 0)"
    if kind == "f":  # a decoded float: the float32 cast, whose float -> integer has no undefined behaviour
        from .elementwise import _cast_expr
        return _cast_expr(e, np.float32, dst)
    return f"({c_type(dst)})({e})"  # an int4/int2 value to a standard type


def cast_reason(node) -> Optional[str]:
    """Why a Cast/CastLike touching narrow types is not supported (None: it is)."""
    from ...ops import get_attr
    src, dst = node.inputs[0].dtype, node.outputs[0].dtype
    for role, t in (("from", src), ("to", dst)):
        if not castable(t):
            return f"cast {role} {t} not supported"
    if dtype_name(dst) == "float8_e8m0fnu" and get_attr(node, "round_mode", "up") not in _ROUND_MODES:
        return f"round_mode '{get_attr(node, 'round_mode', 'up')}' not supported"
    return None
