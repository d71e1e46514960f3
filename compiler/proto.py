"""Walks over ONNX protos shared by the frontend, the session and the fallback runtime: a node's
subgraphs (If branches, Loop/Scan bodies) and every node of a graph with its subgraphs'.  Base
layer (onnx only), so that the runtime may use it too."""
from __future__ import annotations

from typing import Iterator

import onnx


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for a in node.attribute:
        yield from ([a.g] if a.HasField("g") else []) + list(a.graphs)


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of ``graph``, each followed by the nodes of its subgraphs (depth first)."""
    for node in graph.node:
        yield node
        for g in subgraphs(node):
            yield from all_nodes(g)
