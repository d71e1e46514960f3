"""Op knowledge for the elementwise family: validity rules for the broadcasting ops (see
registry.py). Their dtype agreement (both operands of Add one type) is the generic schema rule
in validate.py."""
from __future__ import annotations

from .registry import check, facts
from .validate import broadcast_problem, inp, shape_of

# Facts (registry.FACTS).  Narrow types run these through their float32 twin:
facts(*"""Abs Acos Acosh Add Asin Asinh Atan Atanh Ceil Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor
           Gelu Greater GreaterOrEqual HardSigmoid HardSwish IsInf IsNaN LeakyRelu Less LessOrEqual Log
           Max Mean Min Mish Mod Mul Neg PRelu Pow Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin Sinh
           Softplus Softsign Sqrt Sub Sum Tan Tanh ThresholdedRelu""".split(), twin=True)
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
