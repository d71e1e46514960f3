"""Op knowledge for the elementwise family: validity rules for the broadcasting ops (see
registry.py). Their dtype agreement (both operands of Add one type) is the generic schema rule
in validate.py."""
from __future__ import annotations

import numpy as np

from ..dtypes import dtype_name
from .registry import check, facts, get_attr, reference
from .validate import broadcast_problem, inp, shape_of

# Facts (registry.FACTS).  Narrow types run these through their float32 twin:
facts(*"""Abs Acos Acosh Add Asin Asinh Atan Atanh Ceil Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor
           Gelu Greater GreaterOrEqual HardSigmoid HardSwish IsInf IsNaN LeakyRelu Less LessOrEqual Log
           Max Mean Min Mish Mod Mul Neg PRelu Pow Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh
           Softplus Softsign Sqrt Sub Sum Swish Tan Tanh ThresholdedRelu""".split(), twin=True)
facts("Identity", "Dropout", "Where", bit_mover=True)
# pass through NCHWc regions: on the image (input 0) with scalar parameters, or broadcasting
facts(*"""Relu LeakyRelu Sigmoid Tanh Clip HardSigmoid HardSwish Elu Selu Softplus Softsign Neg Abs
           Identity Exp Sqrt Erf Gelu Mish ThresholdedRelu Celu""".split(), nchwc="map")
facts("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow", "PRelu", nchwc="broadcast")


# multidirectional (numpy) broadcasting, from the opset where it was introduced
_MULTI = {
    "Add": 7, "Sub": 7, "Mul": 7, "Div": 7, "Pow": 7, "And": 7, "Or": 7, "Xor": 7, "Equal": 7,
    "Less": 7, "Greater": 7, "LessOrEqual": 12, "GreaterOrEqual": 12, "Mod": 10, "BitShift": 11,
    "BitwiseAnd": 18, "BitwiseOr": 18, "BitwiseXor": 18, "Max": 8, "Min": 8, "Mean": 8, "Sum": 8,
    "Where": 9,
}


@check(*_MULTI)
def _broadcast_rule(node):
    if node.opset >= _MULTI[node.op_type]:
        yield broadcast_problem([(inp(node, i), shape_of(node, i)) for i in range(len(node.inputs))])


# --- BitCast (opset 26): the input's bytes reinterpreted as `to`, same shape -----------------
facts("BitCast", bit_mover=True)


@reference("BitCast")
def _bitcast(node, x):
    from onnx.helper import tensor_dtype_to_np_dtype
    to = np.dtype(tensor_dtype_to_np_dtype(get_attr(node, "to")))
    if bit_width(to) != 8 * to.itemsize or bit_width(x.dtype) != 8 * x.dtype.itemsize or to.itemsize != x.dtype.itemsize:
        return NotImplemented  # 4-bit/2-bit packed or strings: onnx.reference says what they do
    # little-endian bytes (the spec's), whatever the host's order
    return [np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<"), copy=False).view(to.newbyteorder("<"))
            .astype(to, copy=False)]


@check("BitCast")
def _bitcast_rule(node):
    x, y = node.input(0), node.outputs[0]
    if x is None or x.dtype is None or y.dtype is None:
        return
    bits_in, bits_out = bit_width(x.dtype), bit_width(y.dtype)
    if bits_in != bits_out:
        yield (f"output 0 '{y.name}' has {bits_out}-bit elements ({dtype_name(y.dtype)}), expected "
               f"{bits_in}-bit ones as {inp(node, 0)} ({dtype_name(x.dtype)}): BitCast keeps the bit width")
    if x.shape is not None and y.shape is not None and tuple(x.shape) != tuple(y.shape):
        yield f"output 0 '{y.name}' has shape {tuple(y.shape)}, expected {inp(node, 0)}'s {tuple(x.shape)}"


# sub-byte types are stored one element per byte (dtypes.py), so their bit width is not 8 * itemsize
_SUB_BYTE_BITS = {"int4": 4, "uint4": 4, "float4_e2m1fn": 4, "int2": 2, "uint2": 2}


def bit_width(dtype) -> int:
    """Bits of one element of ``dtype`` as ONNX counts them (int4: 4, float16: 16)."""
    return _SUB_BYTE_BITS.get(dtype_name(dtype), np.dtype(dtype).itemsize * 8)
