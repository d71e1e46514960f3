"""Op knowledge for the reduce family (Reduce*, ArgMax/ArgMin, CumSum): validity rules (see
registry.py)."""
from __future__ import annotations

import numpy as np

from .registry import check, facts, get_attr
from .validate import axis_problem, const_of, inp, shape_of

# Facts (registry.FACTS)
facts(*"""ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
           ReduceSumSquare ArgMax ArgMin""".split(), twin=True)
facts(*"""ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
           ReduceSumSquare""".split(), param_inputs=(1,))  # axes


# the opset where axes moved from an attribute to input 1
_AXES_INPUT = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18, "ReduceProd": 18,
               "ReduceL1": 18, "ReduceL2": 18, "ReduceLogSum": 18, "ReduceLogSumExp": 18,
               "ReduceSumSquare": 18}


@check(*_AXES_INPUT)
def _reduce_rule(node):
    x = shape_of(node, 0)
    if x is None:
        return
    if node.opset >= _AXES_INPUT[node.op_type]:
        c = const_of(node, 1)
        axes, where = (None if c is None else [int(a) for a in np.asarray(c).reshape(-1)]), inp(node, 1)
    else:
        axes, where = node.attrs.get("axes"), "attribute 'axes'"
    for a in axes or ():
        p = axis_problem(f"{where} holds an axis that", a, len(x))
        if p:
            yield p
            return
    if axes and len({int(a) % max(len(x), 1) for a in axes}) != len(axes):
        yield f"{where} = {list(axes)} repeats an axis, expected distinct axes"


@check("ArgMax", "ArgMin")
def _arg_rule(node):
    x = shape_of(node, 0)
    yield axis_problem("attribute 'axis'", get_attr(node, "axis", 0), None if x is None else len(x))


@check("CumSum")
def _cumsum_rule(node):
    x, a = shape_of(node, 0), const_of(node, 1)
    if a is not None and a.size == 1:
        yield axis_problem(f"{inp(node, 1)} (axis)", int(a.reshape(-1)[0]), None if x is None else len(x))
