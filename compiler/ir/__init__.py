from .core import Graph, Node, Value, subgraphs, type_str
from .printer import format_graph
from .verify import verify

__all__ = ["Graph", "Node", "Value", "subgraphs", "type_str", "format_graph", "verify"]
