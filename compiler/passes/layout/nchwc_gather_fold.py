"""NchwcGatherFold (layout level, after the NCHWc pass): chained channel gathers become one."""
from __future__ import annotations

from ...ir import Node
from ...ops import get_attr
from ..manager import Pass, PassResult, register
from ..util import c_supported
from .nchwc import target_block


def _channel_map(node, b: int):
    """(inputs, [(input index, channel)] per output channel, the inputs' channel counts) of a
    blocked channel gather or a blocked Concat (whole blocks per input), else None."""
    if node.domain == "onnxc" and node.op_type == "NchwcChannelGather" and node.attrs.get("block") == b:
        return (list(node.inputs), list(zip(node.attrs["sources"], node.attrs["source_channels"])),
                list(node.attrs["input_channels"]))
    if (node.domain in ("", "ai.onnx") and node.op_type == "Concat" and node.outputs[0].is_static
            and len(node.outputs[0].shape) == 5 and node.outputs[0].shape[-1] == b
            and int(get_attr(node, "axis", 1)) == 1 and all(v.is_static and len(v.shape) == 5 for v in node.inputs)):
        return (list(node.inputs), [(i, c) for i, v in enumerate(node.inputs) for c in range(v.shape[1] * b)],
                [v.shape[1] * b for v in node.inputs])
    return None


@register
class NchwcGatherFold(Pass):
    """A channel gather reading another gather (or a blocked Concat) reads that one's inputs
    instead: ShuffleNet's Concat -> shuffle -> Slice becomes one copy per Slice.  Gathers left
    without readers are removed."""
    name = "nchwc_gather_fold"
    level = "layout"

    def run(self, graph) -> PassResult:
        b = target_block(graph)
        details = []
        for node in list(graph.nodes):
            if not (node.domain == "onnxc" and node.op_type == "NchwcChannelGather" and node.graph is graph):
                continue
            inputs, pairs, channels = _channel_map(node, b)
            if not any(v.producer is not None and _channel_map(v.producer, b) for v in inputs):
                continue
            new_inputs, index, new_pairs, in_ch = [], {}, [], []
            for i, c in pairs:
                v, ch, cv = inputs[int(i)], int(c), channels[int(i)]
                m = _channel_map(v.producer, b) if v.producer is not None else None
                if m is not None:
                    src = int(m[1][ch][0])
                    v, ch, cv = m[0][src], int(m[1][ch][1]), m[2][src]
                if id(v) not in index:
                    index[id(v)] = len(new_inputs)
                    new_inputs.append(v)
                    in_ch.append(int(cv))
                new_pairs.append((index[id(v)], ch))
            attrs = dict(node.attrs, sources=[i for i, _ in new_pairs], source_channels=[c for _, c in new_pairs],
                         input_channels=in_ch)
            folded = Node(node.op_type, new_inputs, [], attrs, name=node.name, domain=node.domain, opset=node.opset)
            folded.outputs = list(node.outputs)
            if not c_supported(folded):
                folded.detach_inputs()
                continue
            for o in folded.outputs:
                o.producer = folded
            graph.insert(folded, before=node)
            graph.remove_node(node)
            details.append(node.label)
            _remove_dead_gathers(graph, inputs)
        return PassResult(bool(details), len(details), details)


def _remove_dead_gathers(graph, values) -> None:
    """Remove the gathers/Concats producing ``values`` that nothing reads any more (and so on
    up the chain)."""
    todo = list(values)
    while todo:
        v = todo.pop()
        p = v.producer
        if p is None or p.graph is not graph or v.uses or graph.is_output(v) or _channel_map(p, target_block(graph)) is None:
            continue
        if any(o.uses or graph.is_output(o) for o in p.outputs):
            continue
        todo.extend(p.inputs)
        graph.remove_node(p)
