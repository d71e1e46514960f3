"""Execution providers: each states, per node, whether it can run it and why not."""
from __future__ import annotations

from typing import Dict, Optional


class Provider:
    name = "base"

    def claim(self, node) -> Optional[str]:
        """None if this provider can run ``node``, else the reason it cannot."""
        raise NotImplementedError

    def get_capability(self, graph) -> Dict[int, Optional[str]]:
        """id(node) -> None (claimed) or the reason it is not claimed."""
        return {id(n): self.claim(n) for n in graph.nodes}


class CProvider(Provider):
    """Generated C code (runtime_c kernels + templates)."""
    name = "c"

    def claim(self, node):
        from .c import check_node
        return check_node(node)
