"""Elementwise chains: a connected run of elementwise ops becomes one onnxc.ElementwiseChain
node, which the C provider emits as one loop nest: one pass over memory instead of one per op,
and no intermediate buffers.

Which nodes may join (members): default-domain ops with a scalar C expression (unary math and
activations, binary arithmetic/comparison/logic with broadcasting, Sum/Mean/Max/Min, Where,
Clip, Cast: the capability's ``scalar_expr``), that the C provider runs on their own, with one output of static shape.

Runs are grown greedily in graph order: a node joins the runs of the members whose outputs it
reads (all of them if possible, else the largest that works), provided
* its output has the run's shape: every member writes the same loop shape, so broadcasting
  happens only at the run's external inputs and nothing is recomputed per element that the
  unfused graph computes once (a [C,1,1] intermediate stays its own node, the run reads it);
* every member output read outside the run (or a graph output) is read only by nodes after the
  run's last member.  Such a value becomes an extra output of the fused node, which takes the
  last member's place; this ordering rule is what keeps the rewrite acyclic and the node order
  topological without moving any other node.
A run of two or more members is rewritten if the C provider claims the fused node.

Size-1 constants move into the body (inlined as C literals); larger constants stay external
inputs (one copy in the weights blob, shared with other readers).

At the layout level the chains are expanded before NCHWc blocking and fused again after it
(elementwise_chain_expand / elementwise_chain_layout, see the end of this module).
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ...ir import Graph, Node
from ...ops.chain import DOMAIN, OP
from ...ops.narrow import touches_narrow
from ..capability import current
from ..manager import Pass, PassResult, register
from ..util import c_supported, remove_chain

MAX_MEMBERS = 64  # bounds the per-element code of one node and the pass's quadratic checks


def _member_candidate(graph, node) -> bool:
    if node.graph is not graph or not current().scalar_expr(node) or len(node.outputs) != 1:
        return False
    out = node.outputs[0]
    if out.dtype is None or not out.is_static:
        return False
    # a value read inside a subgraph has a reader whose position in this graph we do not see
    if any(u.graph is not graph for u, _ in out.uses):
        return False
    # a fused node with a float16/bfloat16/float8 input or output is refused (narrow types are
    # legalized per op, later): a Cast from or to one stays outside so the rest can fuse
    return not touches_narrow(node) and c_supported(node)


class _Runs:
    """Greedy grouping of candidate nodes (in graph order) into runs."""

    def __init__(self, graph):
        self.graph = graph
        self.pos = {id(n): i for i, n in enumerate(graph.nodes)}
        self.run_of: Dict[int, List[Node]] = {}  # id(member) -> its run (shared list object)

    def _valid(self, members: List[Node], last: Node) -> bool:
        if len(members) > MAX_MEMBERS:
            return False
        shape = tuple(last.outputs[0].shape)
        ids = {id(m) for m in members}
        for m in members:
            out = m.outputs[0]
            if tuple(out.shape) != shape:
                return False
            for u, _ in out.uses:
                if id(u) not in ids and self.pos.get(id(u), -1) <= self.pos[id(last)]:
                    return False  # an outside reader before the fused node's place
        return True

    def add(self, node: Node) -> None:
        runs: List[List[Node]] = []
        for v in node.inputs:
            r = self.run_of.get(id(v.producer)) if v is not None and v.producer is not None else None
            if r is not None and all(r is not q for q in runs):
                runs.append(r)
        choices = ([[m for r in runs for m in r]] if len(runs) > 1 else []) + sorted(runs, key=len, reverse=True)
        chosen: Optional[List[Node]] = None
        for members in choices:
            if self._valid(members + [node], node):
                chosen = members + [node]
                break
        if chosen is None:
            chosen = [node]
        for m in chosen:
            self.run_of[id(m)] = chosen

    def runs(self) -> List[List[Node]]:
        seen, out = set(), []
        for r in self.run_of.values():
            if id(r) not in seen:
                seen.add(id(r))
                out.append(sorted(r, key=lambda n: self.pos[id(n)]))
        return out


def _escaping(graph, members: List[Node]) -> List:
    """Member outputs the fused node must produce: read outside the run or graph outputs."""
    ids = {id(m) for m in members}
    return [m.outputs[0] for m in members
            if graph.is_output(m.outputs[0]) or any(id(u) not in ids for u, _ in m.outputs[0].uses)]


def build_body(graph, members: List[Node], results: List) -> tuple:
    """(body Graph, external input Values) for ``members``, whose values ``results`` escape.
    Body names are fresh in the outer graph too: ONNX forbids a subgraph shadowing outer names."""
    body = Graph(graph.fresh_name("chain_body"))
    body.opset = dict(graph.opset)
    inner: Dict[int, object] = {}
    external = []
    for m in members:
        ins = []
        for v in m.inputs:
            if v is None:
                ins.append(None)
                continue
            if id(v) not in inner:
                if v.is_const and v.const.size == 1:
                    inner[id(v)] = body.add_const(v.const, hint=graph.fresh_name(f"{v.name}_c"))
                else:
                    inner[id(v)] = body.add_input(graph.fresh_name(f"{v.name}_in"), v.dtype, v.shape)
                    external.append(v)
            ins.append(inner[id(v)])
        outs = [body.new_value(graph.fresh_name(f"{o.name}_b"), o.dtype, o.shape) for o in m.outputs]
        body.insert(Node(m.op_type, ins, outs, dict(m.attrs), name=body.fresh_name(m.name or m.op_type),
                         domain=m.domain, opset=m.opset))
        inner.update((id(o), b) for o, b in zip(m.outputs, outs))
    body.outputs = [inner[id(v)] for v in results]
    return body, external


def fuse_run(graph, members: List[Node]) -> Optional[Node]:
    """Replace ``members`` (in graph order) by one ElementwiseChain node if the C provider
    claims it; return the node, or None with the graph untouched."""
    results = _escaping(graph, members)
    body, external = build_body(graph, members, results)
    last = members[-1]
    node = Node(OP, external, [], {"body": body}, name=graph.fresh_name(f"chain_{last.name or last.op_type}"),
                domain=DOMAIN, opset=graph.opset.get(DOMAIN, 1))
    node.outputs = results  # not yet owning them: the members still do until removed
    if not c_supported(node):
        node.detach_inputs()
        return None
    taken = {id(v) for v in results}
    for m in members:
        m.outputs = [o for o in m.outputs if id(o) not in taken]
    for v in results:
        v.producer = node
    graph.insert(node, after=last)
    remove_chain(graph, members)
    return node


def fuse_runs(graph) -> List[Node]:
    """Fuse every run of two or more members the C provider accepts; returns the new nodes."""
    grouping = _Runs(graph)
    for node in graph.nodes:
        if _member_candidate(graph, node):
            grouping.add(node)
    return [n for n in (fuse_run(graph, members) for members in grouping.runs() if len(members) >= 2)
            if n is not None]


def _details(nodes) -> List[str]:
    return [f"{n.label} <- " + ", ".join(body_n.op_type for body_n in n.attrs["body"].nodes) for n in nodes]


@register
class ElementwiseChainFusion(Pass):
    name = "elementwise_chain"
    level = "extended"

    def run(self, graph) -> PassResult:
        fused = fuse_runs(graph)
        return PassResult(bool(fused), len(fused), _details(fused))


# --- layout level ------------------------------------------------------------------------------
# The NCHWc pass blocks elementwise ops one by one after a blocked conv; a chain it does not
# know would cost a reorder out of and back into the blocked layout around it.  So at the
# layout level the chains are taken apart before it runs and the runs fused again after it
# (blocked elementwise ops are ordinary ops on 5-D shapes, so they fuse like any others).
_LAYOUT_MADE = "elementwise_chain.layout_made"  # graph.metadata: {id: node} of chains fused at layout


@register
class ElementwiseChainExpandForLayout(Pass):
    """Runs first at the layout level (registered with the extended passes' module, i.e. before
    the layout package's passes)."""
    name = "elementwise_chain_expand"
    level = "layout"

    def run(self, graph) -> PassResult:
        keep = graph.metadata.get(_LAYOUT_MADE, {})
        todo = [n for n in graph.nodes if n.domain == DOMAIN and n.op_type == OP and id(n) not in keep]
        for n in todo:
            expand_chain(graph, n)
        return PassResult(bool(todo), len(todo), [n.label for n in todo])


class ElementwiseChainFusionLayout(Pass):
    """Registered by the layout package after the NCHWc pass (see layout/__init__.py)."""
    name = "elementwise_chain_layout"
    level = "layout"

    def run(self, graph) -> PassResult:
        fused = fuse_runs(graph)
        graph.metadata.setdefault(_LAYOUT_MADE, {}).update((id(n), n) for n in fused)  # holding n keeps ids unique
        return PassResult(bool(fused), len(fused), _details(fused))


def expand_chain(graph, node) -> List[Node]:
    """Undo one fusion: put ``node``'s body members back in its place (for a later pass that
    rewrites single ops, e.g. the NCHWc layout pass blocking elementwise ops one by one).
    The node's output Values are kept (readers need no rewiring); returns the members."""
    body = node.attrs["body"]
    outer: Dict[int, object] = {id(b): v for b, v in zip(body.inputs, node.inputs)}
    for c in body.constants.values():
        outer[id(c)] = graph.add_const(c.const, hint=c.name)
    produced = {id(b): v for b, v in zip(body.outputs, node.outputs)}
    members = []
    for n in body.nodes:
        outs = [produced.get(id(o)) or graph.new_value(o.name, o.dtype, o.shape) for o in n.outputs]
        ins = [None if v is None else outer[id(v)] for v in n.inputs]
        m = Node(n.op_type, ins, [], dict(n.attrs), name=graph.fresh_name(n.name or n.op_type), domain=n.domain,
                 opset=n.opset)
        m.outputs = outs
        outer.update((id(o), v) for o, v in zip(n.outputs, outs))
        members.append(m)
    node.outputs = []
    for m in members:
        for o in m.outputs:
            o.producer = m
        graph.insert(m, before=node)
    graph.remove_node(node)
    return members
