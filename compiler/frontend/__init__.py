from .load import CANONICAL_OPSET, load, read_model

__all__ = ["load", "read_model", "CANONICAL_OPSET"]
