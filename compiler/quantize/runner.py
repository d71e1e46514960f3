"""Running an IR graph on feeds with chosen intermediate tensors exposed as outputs.

engine "onnxc": the graph is exported to ONNX with those tensors added to its outputs and
compiled by onnxc (a graph output is never fused away, so they keep their values), one build per
input-shape signature in a temporary directory removed by close(); "reference": the numpy IR
interpreter (compiler/ops/interp.py's evaluation, slow, for small graphs); "onnxruntime": a test-
only dependency, for graphs of standard ops.
A feed whose first dimension is larger than the graph's static batch of 1 is run one row at a
time (calibration sets are often stored as one big batch).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import onnx
from onnx import helper

from ..dtypes import onnx_from_np_dtype
from ..errors import UnsupportedError


def export(graph, expose: Sequence[str]) -> onnx.ModelProto:
    """The graph as a model whose outputs are its own followed by ``expose`` (not repeated)."""
    from ..ir.onnx_export import to_model
    model = to_model(graph)
    values = graph.value_map()
    have = {o.name for o in model.graph.output}
    vis = {vi.name: vi for vi in model.graph.value_info}
    for name in expose:
        if name in have:
            continue
        have.add(name)
        if name in vis:
            model.graph.output.append(vis[name])
            continue
        v = values[name]
        shape = None if v.shape is None else [d if isinstance(d, int) else None for d in v.shape]
        model.graph.output.append(helper.make_tensor_value_info(name, onnx_from_np_dtype(v.dtype), shape))
    return model


class Runner:
    def __init__(self, graph, expose: Sequence[str] = (), engine: str = "onnxc", num_threads: Optional[int] = None):
        self.engine = engine
        self.graph = graph
        self.expose = list(expose)
        self.inputs = [(v.name, v.shape, v.dtype) for v in graph.inputs]
        self.num_threads = num_threads
        self._tmp: Optional[Path] = None
        self._sessions: Dict = {}
        self.compiles = 0
        if engine == "reference":
            self.out_names = [v.name for v in graph.outputs] + [n for n in self.expose
                                                                 if n not in {v.name for v in graph.outputs}]
            return
        self.model = export(graph, self.expose)
        self.out_names = [o.name for o in self.model.graph.output]
        if engine == "onnxruntime":
            try:
                import onnxruntime as ort
            except ImportError:
                raise UnsupportedError("engine='onnxruntime' needs onnxruntime installed") from None
            so = ort.SessionOptions()
            if num_threads:
                so.intra_op_num_threads = num_threads
            self._ort = ort.InferenceSession(self.model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def close(self) -> None:
        self._sessions.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _rows(self, feed: Dict[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """Split a feed along its first dimension where the graph's batch is a static 1."""
        split = None
        for name, shape, _ in self.inputs:
            x = feed[name]
            if shape is not None and len(shape) and shape[0] == 1 and x.ndim and x.shape[0] != 1:
                split = x.shape[0]
        if split is None:
            return [feed]
        return [{k: (v[i:i + 1] if v.ndim and v.shape[0] == split else v) for k, v in feed.items()}
                for i in range(split)]

    def run(self, feed: Dict[str, np.ndarray]) -> Iterator[Dict[str, np.ndarray]]:
        """{name: array} for the graph's outputs and the exposed tensors, per row group."""
        for part in self._rows(feed):
            yield dict(zip(self.out_names, self._run(part)))

    def _run(self, feed) -> List[np.ndarray]:
        if self.engine == "reference":
            return _interpret(self.graph, feed, self.out_names)
        if self.engine == "onnxruntime":
            return self._ort.run(self.out_names, feed)
        key = tuple(sorted((k, tuple(np.shape(v))) for k, v in feed.items()))
        m = self._sessions.get(key)
        if m is None:
            from ..driver import compile_model
            if self._tmp is None:
                self._tmp = Path(tempfile.mkdtemp(prefix="onnxc-quantize-"))
            shapes = {name: list(np.shape(feed[name])) for name, shape, _ in self.inputs
                      if shape is None or not all(isinstance(d, int) for d in shape)}
            m = compile_model(self.model, input_shapes=shapes or None, num_threads=self.num_threads,
                              output_dir=self._tmp / f"build{len(self._sessions)}")
            self._sessions[key] = m
            self.compiles += 1
        return m.run(self.out_names, feed)


def _axis_shape(x, scale, node):
    if scale.ndim == 0 or scale.size == 1:
        return scale.reshape(())
    axis = node.attrs.get("axis", 1) % x.ndim
    shape = [1] * x.ndim
    shape[axis] = -1
    return scale.reshape(shape)


def _qdq_numpy(node, args):
    """Q/DQ/DynamicQuantizeLinear for the interpreter (onnx.reference has no opset-18 Q/DQ);
    deliberately not registered as op references, which constant folding would then use."""
    op = node.op_type
    if op == "DynamicQuantizeLinear":
        x = np.asarray(args[0], np.float32)
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = np.float32((hi - lo) / 255.0)
        zp = np.uint8(np.clip(np.rint(-lo / scale), 0, 255)) if scale else np.uint8(0)
        q = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8) if scale else np.zeros(x.shape, np.uint8)
        return [q, np.asarray(scale, np.float32), np.asarray(zp, np.uint8)]
    x, scale = np.asarray(args[0]), np.asarray(args[1], np.float32)
    zp = np.asarray(args[2]) if len(args) > 2 and args[2] is not None else None
    s = _axis_shape(x, scale, node)
    z = 0 if zp is None else _axis_shape(x, zp, node).astype(np.float64)
    if op == "DequantizeLinear":
        return [((x.astype(np.float32) - np.asarray(z, np.float32)) * s).astype(np.float32)]
    dtype = zp.dtype if zp is not None else np.dtype(np.uint8)
    info = np.iinfo(dtype)
    q = np.clip(np.rint(x.astype(np.float32) / s).astype(np.float64) + z, info.min, info.max)
    return [q.astype(dtype)]


def _interpret(graph, feed, names) -> List[np.ndarray]:
    from ..ops import evaluate
    env = {id(v): v.const for v in graph.constants.values()}
    for v in graph.inputs:
        env[id(v)] = np.asarray(feed[v.name])
    by_name = {}
    for v in graph.inputs:
        by_name[v.name] = env[id(v)]
    for node in graph.nodes:
        args = [None if v is None else env[id(v)] for v in node.inputs]
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear") and not node.domain:
            outs = _qdq_numpy(node, args)
        else:
            outs = evaluate(node, args)
        for o, a in zip(node.outputs, outs):
            env[id(o)] = np.asarray(a)
            by_name[o.name] = env[id(o)]
    for v in graph.constants.values():
        by_name.setdefault(v.name, v.const)
    return [by_name[n] for n in names]
