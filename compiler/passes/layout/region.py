"""What the layout passes share that move regions of nodes into another memory layout (nchwc:
blocked NCHWc, int8_nhwc: NHWC).  One walk in topological order rewrites nodes to their forms in
the layout, each output getting a twin; a plain value a rewritten node reads enters through one
border node shared by all its readers (a constant is converted at compile time instead); at the
end the old nodes go and each twin still read as plain, or a graph output, leaves through one
border node that writes the original Value."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ...ir import Node


class RegionRewriter:
    """A subclass names its layout's suffix and its border nodes (const_in, enter, leave)."""
    suffix = ""  # of the names of twins and of converted constants

    def __init__(self, graph):
        self.g = graph
        self.twin: Dict[int, object] = {}  # id(plain value) -> its twin in the layout
        self.entered: Dict[int, object] = {}  # id(plain value) -> the output of its border node in
        self.converted: List[tuple] = []  # (old node, {id(plain output): twin})
        self.details: List[str] = []

    def const_in(self, array: np.ndarray) -> np.ndarray:
        """A constant in the layout."""
        raise NotImplementedError

    def enter(self, v, before):
        """Insert the border node that brings plain ``v`` into the layout before ``before``;
        its output."""
        raise NotImplementedError

    def leave(self, twin, plain) -> Node:
        """The border node that writes ``twin`` back to its plain Value ``plain``."""
        raise NotImplementedError

    def region_input(self, v, before):
        """``v`` in the layout: its twin, a converted constant, or a (shared) border node's output."""
        if id(v) in self.twin:
            return self.twin[id(v)]
        if v.is_const:
            return self.g.add_const(self.const_in(v.const), v.name + self.suffix)
        if id(v) not in self.entered:
            self.entered[id(v)] = self.enter(v, before)
        return self.entered[id(v)]

    def replace(self, old, nodes, twins) -> None:
        """Insert ``nodes`` (claimed by C) before ``old``, which they replace; ``twins``:
        id(output of old) -> its twin."""
        for node in nodes:
            self.g.insert(node, before=old)
        self.converted.append((old, twins))
        self.twin.update(twins)
        self.details.append(old.label)

    def finish(self) -> int:
        """After the walk: drop the border nodes in that nothing reads (made for a node C then
        refused), remove the replaced nodes and add the border nodes out; the number replaced."""
        for out in self.entered.values():
            if not out.uses:
                self.g.remove_node(out.producer)
        if not self.converted:
            return 0
        for old, _ in self.converted:
            self.g.remove_node(old)
        for old, outs in self.converted:
            for plain in list(old.outputs):
                twin = outs.get(id(plain))
                if twin is None or not (plain.uses or self.g.is_output(plain)):
                    continue
                self.g.insert(self.leave(twin, plain), after=twin.producer)
        return len(self.converted)
