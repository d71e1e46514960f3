"""Planning helpers shared by op geometry (ops/) and the C emitters (providers/c/): a planning
function computes what a kernel needs from a node, or raises Refuse with the reason the
configuration is not implemented, which a C kernel's check reports (``refusal``)."""
from __future__ import annotations

from typing import Optional

import numpy as np


class Refuse(Exception):
    """A configuration the C path does not implement; the message is the reason."""


def why_refused(plan_fn, node) -> Optional[str]:
    """The reason ``plan_fn(node)`` raises Refuse, or None when it plans the node."""
    try:
        plan_fn(node)
    except Refuse as e:
        return str(e)
    return None


def refusal(plan_fn):
    """check() built from a planning function that raises Refuse."""
    return lambda node: why_refused(plan_fn, node)


def const_input(node, i, what: str) -> Optional[np.ndarray]:
    """A constant optional input as an array (None when absent or empty); refuses a runtime one."""
    v = node.input(i)
    if v is None or (v.shape is not None and 0 in v.shape):
        return None
    if not v.is_const:
        raise Refuse(f"{what} must be a compile-time constant")
    return None if v.const.size == 0 else np.asarray(v.const)


