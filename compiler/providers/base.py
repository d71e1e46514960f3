"""Execution providers: each states, per node, whether it can run it and why not."""
from __future__ import annotations

from typing import Dict, Optional

from .c import check_node
from .c.elementwise import has_scalar_expr


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
        return check_node(node)

    def scalar_expr(self, node) -> bool:
        """Whether ``node`` is one scalar C expression per element (the passes' capability
        interface, passes/capability.py: what an onnxc.ElementwiseChain may fuse)."""
        return has_scalar_expr(node)
