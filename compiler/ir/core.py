"""The IR: a typed SSA graph of plain objects with automatic use lists.

* A ``Value`` is defined exactly once: by a node output, as a graph input, or as a
  constant (``value.const`` holds the numpy array).  It carries a numpy dtype and a shape
  (a tuple of ints; a ``str`` marks a symbolic dimension, ``None`` an unknown rank).
* A ``Node`` has an op type, a domain, positional inputs (``None`` for an omitted optional
  input), outputs and attributes (plain Python values, numpy arrays for tensors, ``Graph``
  for subgraphs).
* ``Value.uses`` is kept up to date by ``Node`` itself, so passes never edit it by hand.
"""
from __future__ import annotations

import itertools
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

Shape = Optional[Tuple[Any, ...]]


class Value:
    __slots__ = ("name", "dtype", "shape", "const", "producer", "uses", "graph")

    def __init__(self, name: str, dtype=None, shape: Shape = None, const: Optional[np.ndarray] = None):
        self.name = name
        self.const = None
        self.dtype = np.dtype(dtype) if dtype is not None else None
        self.shape = tuple(shape) if shape is not None else None
        self.producer: Optional[Node] = None
        self.uses: List[Tuple[Node, int]] = []
        self.graph: Optional[Graph] = None
        if const is not None:
            self.set_const(const)

    def set_const(self, array) -> None:
        array = np.asarray(array)
        if self.dtype is not None and array.dtype != self.dtype:
            array = array.astype(self.dtype)
        self.const = array
        self.dtype = array.dtype
        self.shape = tuple(array.shape)

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def is_static(self) -> bool:
        return self.shape is not None and all(isinstance(d, int) for d in self.shape)

    @property
    def size(self) -> int:
        assert self.is_static, f"value '{self.name}' has no static shape: {self.shape}"
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def users(self) -> List["Node"]:
        seen, out = set(), []
        for node, _ in self.uses:
            if id(node) not in seen:
                seen.add(id(node))
                out.append(node)
        return out

    def __repr__(self) -> str:
        return f"%{self.name}: {type_str(self)}"


def type_str(v: Value) -> str:
    from ..dtypes import dtype_name
    dt = dtype_name(v.dtype) if v.dtype is not None else "?"
    if v.shape is None:
        return f"{dt}[?]"
    return f"{dt}[{','.join(str(d) for d in v.shape)}]"


class Node:
    __slots__ = ("op_type", "domain", "name", "_inputs", "outputs", "attrs", "opset", "graph")

    def __init__(self, op_type: str, inputs: Sequence[Optional[Value]], outputs: Sequence[Value],
                 attrs: Optional[Dict[str, Any]] = None, name: str = "", domain: str = "", opset: int = 0):
        self.op_type = op_type
        self.domain = domain
        self.name = name
        self.attrs = dict(attrs or {})
        self.opset = opset
        self.graph: Optional[Graph] = None
        self._inputs: List[Optional[Value]] = []
        self.outputs: List[Value] = list(outputs)
        for v in self.outputs:
            v.producer = self
        for v in inputs:
            self._append_input(v)

    # --- inputs keep use lists in sync --------------------------------------------------
    @property
    def inputs(self) -> Tuple[Optional[Value], ...]:
        return tuple(self._inputs)

    def _append_input(self, v: Optional[Value]) -> None:
        idx = len(self._inputs)
        self._inputs.append(v)
        if v is not None:
            v.uses.append((self, idx))

    def set_input(self, idx: int, v: Optional[Value]) -> None:
        old = self._inputs[idx]
        if old is not None:
            old.uses.remove((self, idx))
        self._inputs[idx] = v
        if v is not None:
            v.uses.append((self, idx))

    def set_inputs(self, values: Sequence[Optional[Value]]) -> None:
        self.detach_inputs()
        for v in values:
            self._append_input(v)

    def detach_inputs(self) -> None:
        for idx, v in enumerate(self._inputs):
            if v is not None:
                v.uses.remove((self, idx))
        self._inputs = []

    def input(self, idx: int) -> Optional[Value]:
        """The idx-th input, or None when absent (optional inputs may be omitted or empty)."""
        return self._inputs[idx] if idx < len(self._inputs) else None

    def output_read(self, k: int) -> bool:
        """Output k exists and something reads it (a node, or its graph's outputs): optional
        outputs may be unread placeholders."""
        if k >= len(self.outputs):
            return False
        o = self.outputs[k]
        return bool(o.uses) or (self.graph is not None and self.graph.is_output(o))

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)

    @property
    def label(self) -> str:
        return f"{self.op_type} '{self.name}'" if self.name else self.op_type

    def __repr__(self) -> str:
        return f"<Node {self.label}>"


class Graph:
    """An ordered (topologically sorted) list of nodes plus graph inputs/outputs."""

    def __init__(self, name: str = "main"):
        self.name = name
        self.nodes: List[Node] = []
        self.inputs: List[Value] = []
        self.outputs: List[Value] = []
        self.constants: Dict[str, Value] = {}
        self.opset: Dict[str, int] = {"": 18}
        self.parent: Optional[Graph] = None  # for subgraphs: outer scope
        self.metadata: Dict[str, Any] = {}
        self._names = set()
        self._counter = itertools.count()

    # --- naming -------------------------------------------------------------------------
    def reserve(self, name: str) -> str:
        self._names.add(name)
        return name

    def fresh_name(self, hint: str) -> str:
        hint = hint or "v"
        if hint not in self._names:
            return self.reserve(hint)
        while True:
            name = f"{hint}__{next(self._counter)}"
            if name not in self._names:
                return self.reserve(name)

    # --- building -----------------------------------------------------------------------
    def new_value(self, hint: str, dtype=None, shape: Shape = None) -> Value:
        v = Value(self.fresh_name(hint), dtype, shape)
        v.graph = self
        return v

    def add_input(self, name: str, dtype, shape: Shape) -> Value:
        v = Value(self.reserve(name), dtype, shape)
        v.graph = self
        self.inputs.append(v)
        return v

    def add_const(self, array, hint: str = "const") -> Value:
        v = Value(self.fresh_name(hint), const=np.asarray(array))
        v.graph = self
        self.constants[v.name] = v
        return v

    def add_node(self, op_type: str, inputs: Sequence[Optional[Value]], num_outputs: int = 1,
                 attrs: Optional[Dict[str, Any]] = None, name: str = "", domain: str = "",
                 outputs: Optional[Sequence[Value]] = None, before: Optional[Node] = None,
                 after: Optional[Node] = None) -> Node:
        """Create a node and insert it (at the end, or before/after a given node)."""
        if outputs is None:
            base = name or op_type.lower()
            outputs = [self.new_value(f"{base}_out{i}" if num_outputs > 1 else f"{base}_out")
                       for i in range(num_outputs)]
        node = Node(op_type, inputs, outputs, attrs, name=self.fresh_name(name or op_type), domain=domain,
                    opset=self.opset.get(domain, 1))
        self.insert(node, before=before, after=after)
        return node

    def insert(self, node: Node, before: Optional[Node] = None, after: Optional[Node] = None) -> None:
        node.graph = self
        for v in node.outputs:
            v.graph = self
        if before is not None:
            self.nodes.insert(self.nodes.index(before), node)
        elif after is not None:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        else:
            self.nodes.append(node)

    def remove_node(self, node: Node) -> None:
        """Remove a node whose outputs are unused (or about to be replaced)."""
        node.detach_inputs()
        self.nodes.remove(node)
        node.graph = None

    def replace_all_uses(self, old: Value, new: Value) -> None:
        for node, idx in list(old.uses):
            node.set_input(idx, new)
        self.outputs = [new if o is old else o for o in self.outputs]

    # --- queries ------------------------------------------------------------------------
    def is_output(self, v: Value) -> bool:
        return any(o is v for o in self.outputs)

    def values(self) -> Iterable[Value]:
        yield from self.inputs
        yield from self.constants.values()
        for n in self.nodes:
            yield from n.outputs

    def value_map(self) -> Dict[str, Value]:
        return {v.name: v for v in self.values()}

    def op_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for n in self.nodes:
            key = n.op_type if not n.domain or n.domain == "ai.onnx" else f"{n.domain}.{n.op_type}"
            counts[key] = counts.get(key, 0) + 1
        return dict(sorted(counts.items()))

    def prune_constants(self) -> int:
        """Drop constants nobody reads. Returns how many were dropped."""
        dead = [k for k, v in self.constants.items() if not v.uses and not self.is_output(v)]
        for k in dead:
            del self.constants[k]
        return len(dead)

    def toposort(self) -> None:
        """Re-order nodes topologically (stable w.r.t. the current order)."""
        ready = {id(v) for v in self.inputs} | {id(v) for v in self.constants.values()}
        ready |= _outer_ids(self)
        pending, order = list(self.nodes), []
        while pending:
            rest = []
            for n in pending:
                if all(v is None or id(v) in ready for v in n.inputs):
                    order.append(n)
                    ready.update(id(v) for v in n.outputs)
                else:
                    rest.append(n)
            if len(rest) == len(pending):
                from ..errors import ModelError
                raise ModelError(f"graph '{self.name}' has a cycle or reads undefined values near "
                                 f"{rest[0].label}")
            pending = rest
        self.nodes = order


def _outer_ids(g: Graph) -> set:
    ids = set()
    p = g.parent
    while p is not None:
        ids |= {id(v) for v in p.values()}
        p = p.parent
    return ids


def subgraphs(node: Node):
    """The graphs among ``node``'s attributes (If branches, Loop/Scan bodies)."""
    for a in node.attrs.values():
        if isinstance(a, Graph):
            yield a
        elif isinstance(a, list) and a and isinstance(a[0], Graph):
            yield from a
