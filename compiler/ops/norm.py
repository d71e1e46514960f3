"""Op knowledge for the normalization family (Softmax and its kin, LayerNormalization,
GroupNormalization, ...): validity rules (see registry.py). BatchNormalization and
InstanceNormalization sit with Conv in nn.py."""
from __future__ import annotations

from .registry import check, facts, get_attr
from .validate import axis_problem, inp, known, shape_of, shape_str

# Facts (registry.FACTS).  Softmax on narrow types is rewritten into its reference's rounded
# steps instead (passes/legalize_half.py).
facts("LogSoftmax", "Hardmax", "LayerNormalization", "RMSNormalization", twin=True)



@check("Softmax", "LogSoftmax", "Hardmax")
def _softmax_rule(node):
    x = shape_of(node, 0)
    if x is not None and len(x):
        yield axis_problem("attribute 'axis'", get_attr(node, "axis", -1 if node.opset >= 13 else 1), len(x))


@check("LayerNormalization", "LpNormalization")
def _axis_rule(node):
    x = shape_of(node, 0)
    if x is not None and len(x):
        yield axis_problem("attribute 'axis'", get_attr(node, "axis", -1), len(x))


@check("GroupNormalization")
def _groupnorm_rule(node):
    x, g = shape_of(node, 0), int(get_attr(node, "num_groups", 0))
    if g < 1:
        yield f"attribute 'num_groups' is {g}, expected >= 1"
    elif x is not None and len(x) >= 2 and known(x[1]) and x[1] % g:
        yield f"{inp(node, 0)} {shape_str(x)} has {x[1]} channels, expected a multiple of num_groups {g}"
