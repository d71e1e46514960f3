"""A reference interpreter for the IR: every node through ``registry.evaluate`` (numpy references,
onnxc-domain references, onnx.reference for the rest).  Slow and simple on purpose: passes are
tested by running a graph with it before and after the rewrite on the same inputs.  It lives with
the ops, not in ir/, so that the IR imports no op knowledge."""
from __future__ import annotations

from typing import Dict, List, Mapping

import numpy as np

from .registry import evaluate


def run_graph(graph, feed: Mapping[str, np.ndarray]) -> List[np.ndarray]:
    env: Dict[int, np.ndarray] = {id(v): v.const for v in graph.constants.values()}
    for v in graph.inputs:
        if v.name not in feed:
            raise KeyError(f"run_graph: no value for input '{v.name}'")
        env[id(v)] = np.asarray(feed[v.name])
    for node in graph.nodes:
        args = [None if v is None else env[id(v)] for v in node.inputs]
        outs = evaluate(node, args)
        for o, a in zip(node.outputs, outs):
            env[id(o)] = a if isinstance(a, list) else np.asarray(a)  # a sequence stays a list
    return [env[id(v)] for v in graph.outputs]
