"""Partitioning: providers claim nodes; runs of consecutive nodes of one provider become
partitions.

Providers are asked in priority order (C first, then the fallback interpreter when allowed);
the first that claims a node gets it, and the reasons of the providers that declined are kept
so reports can say why a node did not land in C.  Nodes nobody claims are reported all at once
(UnsupportedOpError), never dropped silently.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .errors import UnsupportedOpError
from .providers import CProvider, FallbackProvider, Provider


@dataclass
class Partition:
    index: int
    provider: str
    nodes: list = field(default_factory=list)


@dataclass
class PartitionResult:
    partitions: List[Partition]
    unclaimed: list  # [(node, {provider: reason})]
    declined: Dict[int, Dict[str, str]] = field(default_factory=dict)  # id(node) -> reasons

    def describe(self) -> str:
        lines = []
        for p in self.partitions:
            lines.append(f"partition {p.index} [{p.provider}]: {len(p.nodes)} nodes")
            for n in p.nodes:
                why = self.declined.get(id(n))
                note = "  <- " + "; ".join(f"{k}: {v}" for k, v in why.items()) if why else ""
                lines.append(f"    {n.op_type:24} {n.name}{note}")
        for n, reasons in self.unclaimed:
            why = "; ".join(f"{k}: {v}" for k, v in reasons.items())
            lines.append(f"unclaimed {n.op_type} '{n.name}': {why}")
        return "\n".join(lines)

    def nodes_of(self, provider: str) -> list:
        return [n for p in self.partitions if p.provider == provider for n in p.nodes]


def default_providers(fallback: bool = True) -> List[Provider]:
    return [CProvider(), FallbackProvider()] if fallback else [CProvider()]


def partition(graph, providers: Optional[Sequence[Provider]] = None, strict: bool = True) -> PartitionResult:
    providers = list(providers or [CProvider()])
    caps = [(p, p.get_capability(graph)) for p in providers]
    parts: List[Partition] = []
    unclaimed = []
    declined: Dict[int, Dict[str, str]] = {}
    for node in graph.nodes:
        owner, reasons = None, {}
        for p, cap in caps:
            reason = cap[id(node)]
            if reason is None:
                owner = p.name
                break
            reasons[p.name] = reason
        if reasons:
            declined[id(node)] = reasons
        if owner is None:
            unclaimed.append((node, reasons))
            continue
        if not parts or parts[-1].provider != owner:
            parts.append(Partition(len(parts), owner))
        parts[-1].nodes.append(node)
    if unclaimed and strict:
        raise UnsupportedOpError([(n.op_type, n.domain, n.opset, n.name, "; ".join(r.values()))
                                  for n, r in unclaimed])
    return PartitionResult(parts, unclaimed, declined)
