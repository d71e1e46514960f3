"""Text form of the IR, one node per line:  %y: float32[1,64] = Relu(%x)  {attrs}."""
from __future__ import annotations

import numpy as np

from .core import Graph, type_str


def _attr_str(v) -> str:
    if isinstance(v, Graph):
        return f"<graph {v.name}>"
    if isinstance(v, np.ndarray):
        return f"tensor{list(v.shape)}" if v.size > 8 else repr(v.tolist())
    if isinstance(v, bytes):
        return repr(v.decode(errors="replace"))
    return repr(v)


def format_graph(graph: Graph, indent: str = "", max_consts: int = 20) -> str:
    lines = [f"{indent}graph {graph.name}("]
    for v in graph.inputs:
        lines.append(f"{indent}    %{v.name}: {type_str(v)},")
    lines.append(f"{indent}) {{")
    consts = list(graph.constants.values())
    for v in consts[:max_consts]:
        lines.append(f"{indent}  const %{v.name}: {type_str(v)}")
    if len(consts) > max_consts:
        lines.append(f"{indent}  ... {len(consts) - max_consts} more constants")
    for n in graph.nodes:
        outs = ", ".join(f"%{o.name}: {type_str(o)}" for o in n.outputs)
        ins = ", ".join("None" if i is None else f"%{i.name}" for i in n.inputs)
        op = n.op_type if not n.domain else f"{n.domain}.{n.op_type}"
        attrs = ""
        if n.attrs:
            attrs = "  {" + ", ".join(f"{k}={_attr_str(v)}" for k, v in sorted(n.attrs.items())) + "}"
        lines.append(f"{indent}  {outs} = {op}({ins}){attrs}  # {n.name}")
        for k, v in n.attrs.items():
            if isinstance(v, Graph):
                lines.append(format_graph(v, indent + "    "))
    lines.append(f"{indent}  return " + ", ".join(f"%{o.name}" for o in graph.outputs))
    lines.append(f"{indent}}}")
    return "\n".join(lines)
