"""Static memory planning: one arena, offsets from value lifetimes.

Every intermediate value (not a graph input, output or constant) gets an offset in a single
arena.  Two values may share bytes only if their lifetimes [first def, last use] are disjoint.
Placement is greedy by size (largest first, lowest fitting offset), as TFLite's arena planner
does; kernels may also ask for per-node scratch that lives only while the node runs.
Aliases (Reshape-like ops) share their source's storage and extend its lifetime.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List

ALIGN = 64


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    key: object          # id of the storage root value, or ("scratch", node index)
    size: int
    start: int           # first node index where it must exist
    end: int             # last node index where it is read
    offset: int = -1
    label: str = ""


@dataclass
class ArenaPlan:
    size: int
    offsets: Dict[object, int] = field(default_factory=dict)
    buffers: List[Buffer] = field(default_factory=list)
    total_unshared: int = 0
    root: Dict[int, object] = field(default_factory=dict)  # id(alias value) -> storage root Value

    def offset_of(self, key) -> int:
        return self.offsets[key]


def plan_buffers(buffers: List[Buffer]) -> ArenaPlan:
    placed: List[Buffer] = []
    for b in sorted(buffers, key=lambda b: (-b.size, b.start)):
        live = sorted((p for p in placed if not (p.end < b.start or b.end < p.start)), key=lambda p: p.offset)
        offset = 0
        for p in live:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, _align(p.offset + p.size))
        b.offset = offset
        placed.append(b)
    size = max((_align(b.offset + b.size) for b in placed), default=0)
    return ArenaPlan(size=size, offsets={b.key: b.offset for b in placed}, buffers=placed,
                     total_unshared=sum(_align(b.size) for b in placed))


def plan_graph(graph, alias_of: Callable, scratch_of: Callable, external=(), reads: Callable = None,
               pin_outputs: bool = True, nbytes_of: Callable = None) -> ArenaPlan:
    """Plan the arena for ``graph`` (nodes in execution order).

    alias_of(node) -> input Value whose storage the node's single output reuses, or None.
    scratch_of(node) -> bytes of scratch the node's kernel needs while it runs.
    external: ids of values that live outside the arena (Python-side fallback values).
    reads(node) -> values the node reads (default: its inputs; subgraph nodes also read outer values).
    pin_outputs=False (subgraphs): outputs get arena space too, live until the last node.
    nbytes_of(v) -> bytes of value ``v`` (default v.nbytes; a data-dependent shape: its bound's).
    """
    pinned = {id(v) for v in graph.inputs} | {id(v) for v in graph.constants.values()}
    pinned |= ({id(v) for v in graph.outputs} if pin_outputs else set()) | set(external)
    reads = reads or (lambda n: n.inputs)
    nbytes_of = nbytes_of or (lambda v: v.nbytes)
    root: Dict[int, object] = {}

    def root_of(v):
        return root.get(id(v), v)

    start: Dict[int, int] = {}
    end: Dict[int, int] = {}
    size: Dict[int, int] = {}
    labels: Dict[int, str] = {}
    scratch: List[Buffer] = []
    for i, node in enumerate(graph.nodes):
        src = alias_of(node)
        if src is not None:
            root[id(node.outputs[0])] = root_of(src)
        for v in reads(node):
            if v is not None:
                r = root_of(v)
                if id(r) in start:
                    end[id(r)] = max(end[id(r)], i)
        for v in node.outputs:
            r = root_of(v)
            if r is v and id(v) not in pinned:
                start[id(v)], end[id(v)] = i, i
                size[id(v)] = nbytes_of(v)
                labels[id(v)] = v.name
            elif id(r) in end:
                end[id(r)] = max(end[id(r)], i)
        s = scratch_of(node)
        if s:
            scratch.append(Buffer(("scratch", i), s, i, i, label=f"scratch of {node.label}"))
    if not pin_outputs:
        for v in graph.outputs:
            if id(root_of(v)) in end:
                end[id(root_of(v))] = len(graph.nodes)
    buffers = [Buffer(k, size[k], start[k], end[k], label=labels[k]) for k in start] + scratch
    plan = plan_buffers(buffers)
    plan.root = root
    return plan
