"""EmitContext: what an emitter needs to write C for one node (pointers, types, literals)."""
from __future__ import annotations

import math
from typing import Dict, List

import numpy as np

from ..dtypes import c_type, is_storage_only
from .templates import render


def c_literal(x, dtype) -> str:
    """An exact C literal of scalar ``x`` in numpy ``dtype``."""
    dtype = np.dtype(dtype)
    if is_storage_only(dtype):  # float16, bfloat16, float8, int4, ...: C holds the raw bits
        bits = np.asarray(x).astype(dtype).reshape(1).view(f"u{dtype.itemsize}")[0]
        return f"{int(bits)}u"
    if dtype.kind == "f":
        x = float(dtype.type(x))
        suffix = "f" if dtype == np.float32 else ""
        if math.isnan(x):
            return "NAN" if dtype == np.float32 else "((double)NAN)"
        if math.isinf(x):
            inf = "INFINITY" if dtype == np.float32 else "((double)INFINITY)"
            return inf if x > 0 else f"(-{inf})"
        return f"{x.hex()}{suffix}" if x != int(x) or abs(x) > 1e15 else f"{x!r}{suffix}"
    if dtype == np.bool_:
        return "1" if bool(x) else "0"
    x = int(x)
    if dtype.kind == "u":
        return f"UINT64_C({x})" if dtype.itemsize == 8 else f"{x}u"
    if dtype.itemsize == 8:
        if x == -(1 << 63):
            return "(-INT64_C(9223372036854775807) - 1)"
        return f"INT64_C({x})"
    if x == -(1 << 31):
        return "(-2147483647 - 1)"
    return str(x)


class EmitContext:
    def __init__(self, graph, plan, blob, options: Dict):
        self.graph = graph
        self.plan = plan
        self.blob = blob
        self.options = options
        self.input_index = {id(v): i for i, v in enumerate(graph.inputs)}
        self.output_index = {id(v): i for i, v in enumerate(graph.outputs)}
        self.node_index = {id(n): i for i, n in enumerate(graph.nodes)}
        self._derived = []
        self.checks: List[Dict] = []  # runtime checks, numbered in emission order (see fail())
        self.scope = ""  # where the graph sits: "" at top level, else e.g. "the body of Loop 'L'"
        self.bounds: Dict[int, tuple] = {}  # id(value) -> upper-bound shape of a data-dependent value
        self.dims_offset: Dict[int, int] = {}  # id(value) -> arena offset of its int64 dims record
        self.helpers: List[str] = []  # file-scope C (includes, functions) emitters asked for, once each

    # --- file-scope C --------------------------------------------------------------------------
    def add_helper(self, text: str) -> None:
        """Place ``text`` (an #include line or a static function) at file scope in model.c, once
        however many nodes ask for it."""
        if text not in self.helpers:
            self.helpers.append(text)

    def include(self, header: str) -> None:
        """#include runtime header ``header`` (e.g. "onnxc_quant.h") in model.c, once."""
        self.add_helper(f'#include "{header}"')

    # --- types and locations ---------------------------------------------------------------
    @staticmethod
    def ctype(v) -> str:
        return c_type(v.dtype)

    def root(self, v):
        return self.plan.root.get(id(v), v)

    def ptr(self, v) -> str:
        """A typed C pointer expression to the first element of value ``v``."""
        ct = self.ctype(v)
        r = self.root(v)
        if r.is_const:
            return f"((const {ct}*)(weights + {self.blob.add(r)}))"
        if id(r) in self.input_index:
            return f"((const {ct}*)in[{self.input_index[id(r)]}])"
        if id(r) in self.output_index:
            return f"(({ct}*)out[{self.output_index[id(r)]}])"
        return f"(({ct}*)(arena + {self.plan.offset_of(id(r))}))"

    def dims(self, v) -> str:
        """int64_t* to the dims record of data-dependent value ``v`` (its kernel writes the actual
        shape there; model.h's <prefix>_output_shape and the Python runtime read it)."""
        return f"((int64_t*)(arena + {self.dims_offset[id(v)]}))"

    def bound(self, v) -> tuple:
        """The shape ``v``'s buffer has: its static shape, or the bound of a data-dependent one."""
        return self.bounds.get(id(v), v.shape)

    def const_array(self, array) -> str:
        """Pointer to compile-time data (e.g. folded BatchNorm scale) placed in the weights blob."""
        import numpy as _np
        from ..ir import Value
        arr = _np.ascontiguousarray(array)
        v = Value("derived", const=arr)
        self._derived.append(v)  # keep alive: the blob is keyed by id()
        return f"((const {c_type(arr.dtype)}*)(weights + {self.blob.add(v)}))"

    def scratch(self, node, ctype: str = "float") -> str:
        off = self.plan.offset_of(("scratch", self.node_index[id(node)]))
        return f"(({ctype}*)(arena + {off}))"

    def is_alias(self, node) -> bool:
        return id(node.outputs[0]) in self.plan.root

    def same_storage(self, a, b) -> bool:
        return self.root(a) is self.root(b)

    @staticmethod
    def lit(x, dtype) -> str:
        return c_literal(x, dtype)

    def scalar(self, v):
        """Literal of a constant size-1 value, or None."""
        if v is not None and v.is_const and v.const.size == 1:
            return c_literal(v.const.reshape(-1)[0], v.dtype)
        return None

    # --- runtime checks ----------------------------------------------------------------------
    def fail(self, node, message: str, value: str = "0", pos: str = "-1", tensor=None,
             code: str = "ONNXC_ERR_INDEX") -> str:
        """C statement reporting that a runtime check of ``node`` failed: it records, in the
        caller's arena, which check (a number registered here, listed in the header and the
        manifest), the offending ``value`` (a C expression converted to int64_t) and ``pos``,
        its flat position in ``tensor`` (the Value read, whose name and shape the message names).
        ``message`` says what is wrong, with "{value}" where the value goes.  The run returns
        ``code`` (ONNXC_ERR_INDEX or ONNXC_ERR_VALUE) after the node; only the first failure of
        a run is recorded.  The caller keeps the kernel safe (no read or write outside a tensor)."""
        site = len(self.checks)
        self.checks.append({
            "node": node.name, "op": node.op_type, "index": self.node_index.get(id(node)) if not self.scope else None,
            "scope": self.scope, "message": message, "status": code,
            "tensor": None if tensor is None else tensor.name,
            "shape": None if tensor is None else [int(d) for d in tensor.shape]})
        return f"onnxc_fail(err, &status, {code}, {site}, (int64_t)({value}), (int64_t)({pos}));"

    def render(self, template: str, **kw) -> str:
        return render(template, ctx=self, **kw)
