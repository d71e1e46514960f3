"""The fallback provider: nodes no C provider can run are executed from Python by an ONNX
interpreter (onnxruntime if installed, else onnx.reference), one ONNX sub-model per fallback
partition.  It claims only what those interpreters can express: standard-domain ops and
ai.onnx.ml; onnxc's own fused ops never reach it (they exist only for the C provider).
"""
from __future__ import annotations

from typing import Optional

from .base import Provider

INTERPRETED_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview", "ai.onnx.preview.training",
                       "com.microsoft")


class FallbackProvider(Provider):
    name = "fallback"

    def claim(self, node) -> Optional[str]:
        if node.domain not in INTERPRETED_DOMAINS:
            return f"domain '{node.domain}' has no interpreter"
        try:
            import onnx.defs
        except ImportError:
            return "onnx is not installed"
        if node.domain != "com.microsoft" and not onnx.defs.has(node.op_type, node.domain or ""):
            return "not an ONNX operator"
        return None
