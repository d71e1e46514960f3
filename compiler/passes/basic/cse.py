"""Constant sharing and common-subexpression elimination.

Constant sharing makes identical constants (dtype, shape and bytes) one Value, so that nodes
reading equal weights through different initializers become identical for CSE.  CSE keeps the
first of several nodes with the same op, domain, opset, attributes and input Values and reroutes
the readers of the others to it.  Random ops are never merged (two draws differ), nor are ops
with subgraphs (comparing bodies is not worth it) or Dropout (random in training mode).
"""
from __future__ import annotations

import hashlib
import weakref
from typing import Dict, List

import numpy as np

from ..manager import Pass, PassResult, register
from .common import has_subgraph

_NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                     "Bernoulli", "Dropout"}


# digest of a constant's bytes by id(array), so that every fixpoint round does not hash the
# weights again; a weak reference drops the entry with the array (and guards id reuse)
_DIGESTS: Dict[int, tuple] = {}


def _digest(a: np.ndarray) -> bytes:
    hit = _DIGESTS.get(id(a))
    if hit is not None and hit[0]() is a:
        return hit[1]
    flat = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
    d = hashlib.blake2b(flat.data, digest_size=32).digest()  # 256 bits: equal digests, equal bytes
    key = id(a)
    _DIGESTS[key] = (weakref.ref(a, lambda _r, k=key: _DIGESTS.pop(k, None)), d)
    return d


def _const_key(a: np.ndarray):
    if a.dtype == object:
        return None  # strings: no byte image to compare
    return (a.dtype.str, tuple(a.shape), _digest(a))


@register
class ConstantSharing(Pass):
    name = "constant_sharing"
    level = "basic"

    def run(self, graph) -> PassResult:
        by_type: Dict[tuple, List] = {}
        for v in graph.constants.values():
            if v.const.dtype != object:
                by_type.setdefault((v.const.dtype.str, tuple(v.const.shape)), []).append(v)
        details = []
        for group in by_type.values():
            if len(group) < 2:
                continue  # only constants of the same type and shape are hashed
            first: Dict[bytes, object] = {}
            for v in group:
                keep = first.setdefault(_digest(v.const), v)
                if keep is not v:
                    graph.replace_all_uses(v, keep)
                    details.append(f"{v.name} -> {keep.name}")
        if details:
            graph.prune_constants()
        return PassResult(bool(details), len(details), details)


def _attr_key(value):
    """A hashable image of an attribute value; raises TypeError for what CSE does not compare."""
    if isinstance(value, np.ndarray):
        k = _const_key(value)
        if k is None:
            return ("objarray", value.shape, tuple(value.reshape(-1).tolist()))
        return ("array",) + k
    if isinstance(value, (list, tuple)):
        return ("list",) + tuple(_attr_key(x) for x in value)
    if isinstance(value, float):
        return ("float", np.float64(value).tobytes())  # NaN equals itself, -0.0 differs from 0.0
    if isinstance(value, (int, str, bytes, bool)) or value is None:
        return (type(value).__name__, value)
    raise TypeError(type(value).__name__)


def _node_key(node):
    if node.op_type in _NONDETERMINISTIC or has_subgraph(node) or not node.outputs:
        return None
    try:
        attrs = tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items()))
    except TypeError:
        return None
    return (node.domain, node.op_type, node.opset, len(node.outputs),
            tuple(None if v is None else id(v) for v in node.inputs), attrs)


@register
class CommonSubexpressionElimination(Pass):
    name = "common_subexpression_elimination"
    level = "basic"

    def run(self, graph) -> PassResult:
        seen: Dict[tuple, object] = {}
        details = []
        for node in list(graph.nodes):  # topological order: a kept node precedes its duplicates
            key = _node_key(node)
            if key is None:
                continue
            keep = seen.get(key)
            if keep is None:
                seen[key] = node
                continue
            for old, new in zip(node.outputs, keep.outputs):
                if new.shape is None or (not new.is_static and old.is_static):
                    new.shape = old.shape
                if new.dtype is None:
                    new.dtype = old.dtype
                graph.replace_all_uses(old, new)
            graph.remove_node(node)
            details.append(f"{node.label} -> {keep.label}")
        return PassResult(bool(details), len(details), details)
