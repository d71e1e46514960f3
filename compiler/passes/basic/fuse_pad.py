"""Fold an explicit zero Pad of the spatial dims into the pads of the Conv or AveragePool that
reads it.

A Conv's implicit padding is zeros, so Pad(constant 0) + Conv(pads p) = Conv(pads p + pad).
AveragePool counts implicit padding in the divisor only with count_include_pad=1, which is what
the explicit zeros did; with ceil_mode=1 the rule that drops a last window starting in the end
padding depends on the begin pad alone, so only ceil_mode=0 is folded.  MaxPool pads with -inf,
not zeros: never folded.  Negative pads (crops), padded batch/channel dims, other modes or
values, and nodes with auto_pad set are left alone.  Pad-2 (pads/value attributes) and the
opset-18 ``axes`` input are read (common.pad_params).
"""
from __future__ import annotations

import numpy as np

from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import sole_user
from .common import fuse, pad_params, std_op


def _spatial_zero_pad(pad):
    """(begin, end) pads of the spatial dims when ``pad`` is a non-negative constant-zero Pad
    of those dims only; else None."""
    p = pad_params(pad)
    if p is None:
        return None
    pads, mode, value = p
    r = len(pads) // 2
    if mode != "constant" or r < 3 or value.size != 1:
        return None
    v = np.asarray(value).reshape(-1)[0]
    if v != 0 or np.signbit(v):
        return None  # -0.0 would differ from the implicit +0.0 in the sign of exact zeros
    if any(p < 0 for p in pads) or any(pads[i] or pads[r + i] for i in (0, 1)):
        return None
    return pads[2:r], pads[r + 2:]


def _fold(graph, op_types, accept):
    details = []
    for pad in list(graph.nodes):
        if pad.graph is not graph or not std_op(pad, "Pad"):
            continue
        user = sole_user(pad.outputs[0])
        if not std_op(user, *op_types) or user.inputs[0] is not pad.outputs[0]:
            continue
        if get_attr(user, "auto_pad", "NOTSET") not in ("NOTSET", "") or not accept(user):
            continue
        extra = _spatial_zero_pad(pad)
        if extra is None:
            continue
        begin, end = extra
        k = len(begin)
        old = [int(p) for p in user.attrs.get("pads", [0] * (2 * k))]
        if len(old) != 2 * k:
            continue
        attrs = dict(user.attrs)
        attrs["pads"] = [old[i] + begin[i] for i in range(k)] + [old[k + i] + end[i] for i in range(k)]
        attrs.pop("auto_pad", None)
        fuse(graph, [pad, user], user.op_type, [pad.inputs[0]] + list(user.inputs[1:]), attrs, name=user.name)
        details.append(f"{pad.label} + {user.label}")
    return PassResult(bool(details), len(details), details)


@register
class FusePadConv(Pass):
    name = "fuse_pad_conv"
    level = "basic"

    def run(self, graph) -> PassResult:
        return _fold(graph, ("Conv",), lambda n: True)


@register
class FusePadAveragePool(Pass):
    name = "fuse_pad_avgpool"
    level = "basic"

    def run(self, graph) -> PassResult:
        return _fold(graph, ("AveragePool",), lambda n: int(get_attr(n, "count_include_pad", 0)) == 1
                     and int(get_attr(n, "ceil_mode", 0)) == 0)
