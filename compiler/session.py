"""onnxc.InferenceSession: a drop-in for onnxruntime.InferenceSession.

Models with free dimensions and no ``input_shapes`` are specialized on first sight of each
new input-shape signature: compiled for those shapes (cached on disk by content hash) and
kept in memory, so later runs with the same shapes cost nothing extra.

Value specialization (``specialize_values=True``, the default): a graph input that feeds a
parameter input of an op (its ``param_inputs`` fact: reduction axes, Resize scales/sizes, Slice
starts/ends, Pad pads, Trilu k, ...), which the C kernels take as compile-time constants, is
compiled as a constant holding the value fed, when that is a small number or bool tensor (at
most MAX_VALUE_ELEMENTS elements). The values are part of the specialization's key, in memory
and on disk (driver.encode_values), so a feed with other values runs (or first compiles) another
build: the lookup is the guard. After MAX_VALUE_SPECIALIZATIONS distinct values, new ones run
the build that keeps the input at run time (those nodes in the fallback provider).
"""
from __future__ import annotations

import threading
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, ModelError
from .runtime import CompiledModel, NodeArg, _dtype_text, _ort_type

# Only inputs this small are specialized on their value (a parameter, not data)...
MAX_VALUE_ELEMENTS = 64
# ... and only for this many distinct values per session: values that keep changing then run
# the unspecialized build instead of compiling (~0.5 s) on every call
MAX_VALUE_SPECIALIZATIONS = 16


def param_fed_inputs(model, names) -> List[str]:
    """The graph inputs among ``names`` whose value reaches a parameter input (registry fact
    ``param_inputs``) of a node, directly or through the nodes that compute it (not through an
    input of which a node reads only the shape or dtype, fact ``type_only_inputs``: Shape, ...),
    subgraphs included (a node with subgraphs may compute its outputs from any value they read)."""
    from .proto import all_nodes, subgraphs
    from .ops import registry
    names = set(names)
    producer = {}
    for n in model.graph.node:
        for o in n.output:
            producer[o] = n
    found, seen, done = set(), set(), set()

    def reach(value):
        if value in seen or not value:
            return
        seen.add(value)
        if value in names:
            found.add(value)
        p = producer.get(value)
        if p is not None:
            read(p)

    def read(node):  # every value the node's outputs may be computed from
        if id(node) in done:
            return
        done.add(id(node))
        skip = registry.fact(node, "type_only_inputs") or ()
        for k, i in enumerate(node.input):
            if k not in skip:
                reach(i)
        for g in subgraphs(node):  # an If/Loop body reads outer values by name
            for n in g.node:
                read(n)

    for n in all_nodes(model.graph):
        for k in registry.fact(n, "param_inputs") or ():
            if k < len(n.input):
                reach(n.input[k])
    return sorted(found)


class InferenceSession:
    def __init__(self, path_or_bytes, sess_options=None, providers=None, input_shapes: Optional[Mapping] = None,
                 num_threads: Optional[int] = None, opt_level: str = "layout", specialize_values: bool = True,
                 **compile_options):
        """``specialize_values``: compile a graph input that feeds a parameter input (axes, scales,
        pads, ...) for each value fed (module docstring); False keeps such inputs at run time,
        where those nodes run in the fallback provider."""
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
        # inputs specialized on their value: numbers or bool, and not declared larger than the limit
        self._value_inputs = []
        if specialize_values:
            small = [i.name for i in self._inputs if i.type in _VALUE_TYPES and
                     not (all(isinstance(d, int) for d in i.shape) and int(np.prod(i.shape)) > MAX_VALUE_ELEMENTS)]
            self._value_inputs = param_fed_inputs(self._model, small)
        self._value_builds = 0
        self._default = None
        if self._input_shapes or self._static:
            if not self._value_inputs:
                self._default = self._compile(self._input_shapes)
            else:  # compiled on first run, for the values fed; a bad model is still refused here
                from .frontend import load
                load(self._model, self._input_shapes)

    def _compile(self, shapes, values=None) -> CompiledModel:
        from .driver import compile_model
        if values:
            try:
                return compile_model(self._model, input_shapes=shapes, opt_level=self._opt_level,
                                     num_threads=self._num_threads, input_values=values, **self._options)
            except ModelError as e:  # a value the op refuses (an axis out of range, ...)
                fed = ", ".join(f"'{k}' = {v.tolist()}" for k, v in values.items())
                raise InputError(f"the model is invalid with the values fed ({fed}): {e}") from None
        return compile_model(self._model, input_shapes=shapes, opt_level=self._opt_level,
                             num_threads=self._num_threads, **self._options)

    def get_inputs(self) -> List[NodeArg]:
        return list(self._default.get_inputs() if self._default else self._inputs)

    @property
    def value_inputs(self) -> List[str]:
        """The inputs this session specializes on their values (empty: none, or specialize_values=False)."""
        return list(self._value_inputs)

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

    def _for_feed(self, input_feed) -> Tuple[CompiledModel, Dict]:
        """The build for this feed, and the feed without the inputs it has as constants."""
        if self._default is not None:
            return self._default, input_feed
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict of name -> array, got {type(input_feed).__name__}")
        shapes, values = {}, {}
        for spec in self._inputs:
            if not spec.type.startswith("tensor("):
                continue
            if spec.name not in input_feed:
                raise InputError(f"missing input '{spec.name}'; expected {[i.name for i in self._inputs]}")
            x = np.asarray(input_feed[spec.name])
            if len(x.shape) != len(spec.shape) or any(isinstance(d, int) and d != s for d, s in zip(spec.shape, x.shape)):
                raise InputError(f"input '{spec.name}': expected shape {spec.shape}, got {list(x.shape)}")
            shapes[spec.name] = tuple(x.shape)
            if spec.name in self._value_inputs and x.size <= MAX_VALUE_ELEMENTS:
                values[spec.name] = _checked_value(spec, x)
        if self._input_shapes or self._static:  # the shapes the default build would have had
            shapes = dict(self._input_shapes or {})
        key = (tuple(sorted((k, tuple(v)) for k, v in shapes.items())),
               tuple((k, v.dtype.str, v.shape, v.tobytes()) for k, v in sorted(values.items())))
        with self._lock:
            m = self._compiled.get(key)
            if m is None and values and self._value_builds >= MAX_VALUE_SPECIALIZATIONS:
                values = {}  # too many distinct values: the build that reads them at run time
                key = (key[0], ())
                m = self._compiled.get(key)
            if m is None:
                m = self._compiled[key] = self._compile(shapes or None, values)
                self._value_builds += bool(values)
        if values:
            input_feed = {k: v for k, v in input_feed.items() if k not in values}
        return m, input_feed

    def __reduce__(self):
        """Its options and compiled specializations (compiler/pickling.py); the ONNX model too when
        free dimensions may still need compiling on the worker."""
        from .pickling import reduce_session
        return reduce_session(self, InferenceSession)

    def run(self, output_names: Optional[Sequence[str]], input_feed: Dict, run_options=None) -> List[np.ndarray]:
        m, feed = self._for_feed(input_feed)
        return m.run(output_names, feed)


# the input types value specialization binds: numbers and bool, by ORT type string
_VALUE_TYPES = {_ort_type(t): np.dtype(t) for t in ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16",
                                                    "uint32", "uint64", "float16", "float32", "float64")}


def _checked_value(spec: NodeArg, x: np.ndarray) -> np.ndarray:
    """A fed value to specialize on, contiguous and in native byte order; the InputError the
    build would raise when its dtype is not the input's."""
    want = _VALUE_TYPES[spec.type]
    if x.dtype != want:
        if x.dtype.byteorder in "<>" and x.dtype.newbyteorder("=") == want:
            return np.asarray(x.astype(want), order="C")
        raise InputError(f"input '{spec.name}': expected dtype {want.name}, got {_dtype_text(x.dtype)}")
    return np.asarray(x, order="C")  # ascontiguousarray would make a 0-d array 1-d
