"""Pass framework: named passes registered by level, each level run in order to a fixpoint.

A pass is a class with ``name``, ``level`` and ``run(graph) -> PassResult``; ``@register``
adds it to the registry in definition order within its level.  ``PassManager`` runs the
levels up to the requested one in order (basic, extended, layout); within a level it repeats
the level's passes until none changes the graph, then moves on, so a later level sees the
earlier one's result and never has its own fusions undone.  It records per pass the number of
rewrites, the rewritten nodes and the time taken, and names the passes that ran when one fails.
Passes marked ``always`` (dead-code elimination) also run at the end of every later level.
``stages`` are one-shot steps keyed by the level they follow (the quantizer runs after
"basic", before "extended"); each runs once, before any group of a later level, or at the end,
and when one changed the graph the passes of the level it follows run again.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import ModelError, OnnxcError
from ..ir import Graph, verify
from .capability import Capability, using

LEVELS = ["none", "basic", "extended", "layout"]


@dataclass
class PassResult:
    modified: bool
    rewrites: int = 0
    details: List[str] = field(default_factory=list)
    # why a candidate was left alone (e.g. a QDQ Conv kept in float: `onnxc inspect --passes -v`)
    notes: List[str] = field(default_factory=list)


class Pass:
    name: str = ""
    level: str = "basic"
    always: bool = False  # also run within every later level (cleanup passes)

    def run(self, graph: Graph) -> PassResult:  # pragma: no cover - interface
        raise NotImplementedError


_REGISTRY: List[Pass] = []


def register(cls):
    """Class decorator: register a pass (instantiated once) at its level."""
    assert cls.level in LEVELS[1:], f"pass {cls.__name__} has unknown level {cls.level}"
    assert cls.name, f"pass {cls.__name__} has no name"
    _REGISTRY.append(cls())
    return cls


def passes_for(level: str) -> List[Pass]:
    if level not in LEVELS:
        raise ValueError(f"unknown optimization level '{level}'; expected one of {LEVELS}")
    upto = LEVELS.index(level)
    return [p for lvl in LEVELS[1:upto + 1] for p in _REGISTRY if p.level == lvl]


def level_groups(passes: List[Pass]) -> List[List[Pass]]:
    """Passes grouped by level in level order; ``always`` passes join every later group."""
    groups, sticky = [], []
    for lvl in LEVELS[1:]:
        own = [p for p in passes if p.level == lvl]
        if not own:
            continue
        groups.append(own + [p for p in sticky if p not in own])
        sticky += [p for p in own if p.always]
    return groups


@dataclass
class PassStats:
    name: str
    level: str
    runs: int = 0
    rewrites: int = 0
    seconds: float = 0.0
    details: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # every run's, each once


class PassFailure(OnnxcError):
    pass


class PassModelError(PassFailure, ModelError):
    """A pass found the model itself wrong (e.g. a constant position out of range): still a
    ModelError for callers that sort errors by kind."""


class PassManager:
    def __init__(self, level: str = "layout", passes: Optional[List[Pass]] = None,
                 verify_each: bool = False, max_iterations: int = 10,
                 stages: Optional[Dict[str, List[Pass]]] = None, capability: Optional[Capability] = None):
        self.level = level
        self.capability = capability  # what the backend runs (capability.py); None: the caller's
        self.passes = passes if passes is not None else passes_for(level)
        self.verify_each = verify_each
        self.max_iterations = max_iterations
        self.stages = {lvl: list(ps) for lvl, ps in (stages or {}).items()}
        for lvl in self.stages:
            if lvl not in LEVELS:
                raise ValueError(f"stage after unknown level '{lvl}'; expected one of {LEVELS}")
        self.stats: Dict[str, PassStats] = {p.name: PassStats(p.name, p.level) for p in self.passes}
        for ps in self.stages.values():
            self.stats.update({p.name: PassStats(p.name, "stage") for p in ps})
        self.history: List[str] = []

    def run(self, graph: Graph) -> Graph:
        with contextlib.ExitStack() as stack:
            if self.capability is not None:
                stack.enter_context(using(self.capability))
            pending = dict(self.stages)
            groups = {g[0].level: g for g in level_groups(self.passes)}
            for level, group in groups.items():
                rank = LEVELS.index(level)
                self._run_stages(graph, pending, groups, lambda lvl: LEVELS.index(lvl) < rank)
                self._fixpoint(graph, group)
            self._run_stages(graph, pending, groups, lambda lvl: True)
        return graph

    def _run_stages(self, graph: Graph, pending: Dict[str, List[Pass]], groups: Dict[str, List[Pass]], due) -> None:
        """The due stages; after a level's stages changed the graph, that level's passes run again
        (the quantize step's Q/DQ pairs are for the basic level's QDQ fusions)."""
        for lvl in [lvl for lvl in LEVELS if lvl in pending and due(lvl)]:
            changed = False
            for p in pending.pop(lvl):
                st = self.stats[p.name]
                t0 = time.perf_counter()
                res = p.run(graph)
                if self.verify_each:
                    verify(graph)
                st.seconds += time.perf_counter() - t0
                st.runs += 1
                self.history.append(p.name)
                st.notes += [n for n in res.notes if n not in st.notes]
                if res.modified:
                    changed = True
                    st.rewrites += res.rewrites
                    st.details.extend(res.details)
            if changed and lvl in groups:
                self._fixpoint(graph, groups[lvl])

    def _fixpoint(self, graph: Graph, passes: List[Pass]) -> None:
        for _ in range(self.max_iterations):
            changed = False
            for p in passes:
                st = self.stats[p.name]
                t0 = time.perf_counter()
                try:
                    res = p.run(graph)
                    if self.verify_each:
                        verify(graph)
                except OnnxcError as e:
                    if isinstance(e, NotImplementedError):
                        raise
                    kind = PassModelError if isinstance(e, ModelError) else PassFailure
                    raise kind(f"pass '{p.name}' failed after {self.history[-8:]}: {e}") from e
                st.seconds += time.perf_counter() - t0
                st.runs += 1
                self.history.append(p.name)
                st.notes += [n for n in res.notes if n not in st.notes]
                if res.modified:
                    changed = True
                    st.rewrites += res.rewrites
                    st.details.extend(res.details)
            if not changed:
                break

    def report(self) -> str:
        lines = [f"{'pass':32} {'level':9} {'runs':>4} {'rewrites':>8} {'ms':>8}"]
        for st in self.stats.values():
            lines.append(f"{st.name:32} {st.level:9} {st.runs:4d} {st.rewrites:8d} {st.seconds * 1e3:8.1f}")
        return "\n".join(lines)
