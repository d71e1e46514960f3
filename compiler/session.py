"""onnxc.InferenceSession: a drop-in for onnxruntime.InferenceSession.

Models with free dimensions and no ``input_shapes`` are specialized on first sight of each
new input-shape signature: compiled for those shapes (cached on disk by content hash) and
kept in memory, so later runs with the same shapes cost nothing extra.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .runtime import CompiledModel, NodeArg, _ort_type


class InferenceSession:
    def __init__(self, path_or_bytes, sess_options=None, providers=None, input_shapes: Optional[Mapping] = None,
                 num_threads: Optional[int] = None, opt_level: str = "layout", **compile_options):
        from .frontend import read_model
        from .frontend.onnx_import import _type_of, ort_type_string
        from .dtypes import dtype_name
        self._model = read_model(path_or_bytes)
        self._num_threads = num_threads or getattr(sess_options, "intra_op_num_threads", None) or None
        self._opt_level = opt_level
        self._options = compile_options
        self._lock = threading.Lock()
        self._compiled: Dict[Tuple, CompiledModel] = {}
        inits = {i.name for i in self._model.graph.initializer}
        produced = {o for n in self._model.graph.node for o in n.output}
        self._inputs: List[NodeArg] = []
        for vi in self._model.graph.input:
            if vi.name in inits or vi.name in produced:
                continue
            dtype, shape = _type_of(vi)
            if dtype is None:  # sequence/optional/map: only the fallback interpreter reads it
                self._inputs.append(NodeArg(vi.name, [], ort_type_string(vi.type)))
                continue
            self._inputs.append(NodeArg(vi.name, list(shape or []), _ort_type(dtype_name(dtype))))
        self._outputs = []
        for vi in self._model.graph.output:
            dtype, shape = _type_of(vi)
            self._outputs.append(NodeArg(vi.name, list(shape or []),
                                         _ort_type(dtype_name(dtype)) if dtype is not None else "tensor(?)"))
        self._static = all(all(isinstance(d, int) for d in i.shape) for i in self._inputs)
        self._input_shapes = dict(input_shapes) if input_shapes else None
        if self._input_shapes or self._static:
            self._default = self._compile(self._input_shapes)
        else:
            self._default = None

    def _compile(self, shapes) -> CompiledModel:
        from .driver import compile_model
        return compile_model(self._model, input_shapes=shapes, opt_level=self._opt_level,
                             num_threads=self._num_threads, **self._options)

    def get_inputs(self) -> List[NodeArg]:
        return list(self._default.get_inputs() if self._default else self._inputs)

    def get_outputs(self) -> List[NodeArg]:
        return list(self._default.get_outputs() if self._default else self._outputs)

    @property
    def compiled_models(self) -> List[CompiledModel]:
        """The modules compiled so far: the one for the given or static shapes, then one per
        input shape seen by run()."""
        return ([self._default] if self._default else []) + list(self._compiled.values())

    @property
    def fallback_nodes(self) -> List[Dict]:
        """Nodes of the compiled specializations that run in the Python fallback provider."""
        seen, out = set(), []
        for m in self.compiled_models:
            for n in m.fallback_nodes:
                if n["name"] not in seen:
                    seen.add(n["name"])
                    out.append(n)
        return out

    def get_providers(self) -> List[str]:
        return ["OnnxcCompiledExecutionProvider"]

    def _for_feed(self, input_feed) -> CompiledModel:
        if self._default is not None:
            return self._default
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict of name -> array, got {type(input_feed).__name__}")
        shapes = {}
        for spec in self._inputs:
            if not spec.type.startswith("tensor("):
                continue
            if spec.name not in input_feed:
                raise InputError(f"missing input '{spec.name}'; expected {[i.name for i in self._inputs]}")
            x = np.asarray(input_feed[spec.name])
            if len(x.shape) != len(spec.shape) or any(isinstance(d, int) and d != s for d, s in zip(spec.shape, x.shape)):
                raise InputError(f"input '{spec.name}': expected shape {spec.shape}, got {list(x.shape)}")
            shapes[spec.name] = tuple(x.shape)
        key = tuple(sorted(shapes.items()))
        with self._lock:
            if key not in self._compiled:
                self._compiled[key] = self._compile(shapes)
            return self._compiled[key]

    def __reduce__(self):
        """Its options and compiled specializations (compiler/pickling.py); the ONNX model too when
        free dimensions may still need compiling on the worker."""
        from .pickling import reduce_session
        return reduce_session(self, InferenceSession)

    def run(self, output_names: Optional[Sequence[str]], input_feed: Dict, run_options=None) -> List[np.ndarray]:
        return self._for_feed(input_feed).run(output_names, input_feed)
