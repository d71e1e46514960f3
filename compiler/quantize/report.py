"""Per-layer quantization error on the calibration (or any) data: which layers cost accuracy.

For every quantized layer, one run of a "shadow" graph computes, next to the float graph, a copy
of the layer that reads the float graph's own input through the layer's quantization (Q/DQ of
the activation, int8 weight, int32 bias): its output against the float output is the error the
layer adds by itself (local SQNR).  The quantized graph, run on the same feeds with every
layer's output exposed, gives the error accumulated up to the layer (cumulative SQNR), and the
model outputs' SQNR.  Activation and weight SQNR say which of the two causes a layer's error.
SQNR = 10 log10(sum y^2 / sum (y - y_q)^2) over all feeds, in dB (higher is better; 6 dB per bit).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import qdq
from .options import QuantizeOptions


@dataclass
class LayerRow:
    name: str
    op: str
    local_sqnr: float
    cumulative_sqnr: Optional[float]
    activation_sqnr: float
    weight_sqnr: float
    act_range: Optional[Tuple[float, float]]
    observed: Optional[Tuple[float, float]]
    peak_to_rms: float = 0.0

    @property
    def cause(self) -> str:
        """What limits the layer. The weights alone would give about their own SQNR; a layer well
        below it while its input tensor's SQNR looks fine is one whose input has a few large values
        (outliers: one activation step, set by them, swamps the small values most channels hold)."""
        rng = ""
        if self.observed is not None:
            rng = f"values in [{self.observed[0]:.4g}, {self.observed[1]:.4g}], peak/rms {self.peak_to_rms:.0f}"
        if self.activation_sqnr <= self.weight_sqnr:
            return f"activation ({rng})" if rng else "activation"
        if self.local_sqnr < self.weight_sqnr - 6:
            return f"activation outliers ({rng})" if rng else "activation outliers"
        return "weights"

    def as_dict(self):
        d = asdict(self)
        d["cause"] = self.cause
        return d


@dataclass
class QuantReport:
    rows: List[LayerRow]
    output_sqnr: Dict[str, float]
    feeds: int

    def sorted(self) -> List[LayerRow]:
        return sorted(self.rows, key=lambda r: (r.local_sqnr, r.name))

    def format(self, top: Optional[int] = None) -> str:
        rows = self.sorted()[:top] if top else self.sorted()
        w = max([len(r.name) for r in rows] + [10])
        lines = [f"per-layer quantization error over {self.feeds} feed(s), worst first (SQNR in dB, higher is better)",
                 f"{'layer':{w}} {'op':18} {'local':>7} {'cumul.':>7} {'act':>7} {'weight':>7}  cause"]
        for r in rows:
            cum = "-" if r.cumulative_sqnr is None else f"{r.cumulative_sqnr:7.2f}"
            lines.append(f"{r.name:{w}} {r.op:18} {r.local_sqnr:7.2f} {cum:>7} {r.activation_sqnr:7.2f} "
                         f"{r.weight_sqnr:7.2f}  {r.cause}")
        for name, v in self.output_sqnr.items():
            lines.append(f"model output '{name}': SQNR {v:.2f} dB")
        return "\n".join(lines)


class _Acc:
    __slots__ = ("sig", "err")

    def __init__(self):
        self.sig = 0.0
        self.err = 0.0

    def add(self, ref, approx):
        ref = np.asarray(ref, np.float64)
        self.sig += float(np.sum(ref ** 2))
        self.err += float(np.sum((ref - np.asarray(approx, np.float64)) ** 2))

    @property
    def db(self) -> float:
        if self.err == 0:
            return float("inf")
        if self.sig == 0:
            return float("-inf")
        return 10.0 * np.log10(self.sig / self.err)


def dynamic_fake_quantize(x: np.ndarray, per_token: bool = False) -> np.ndarray:
    """DynamicQuantizeLinear then DequantizeLinear (uint8 over [min(x, 0), max(x, 0)]); per_token:
    the same over each row (last axis), as qdq.Rewriter writes it."""
    x = np.asarray(x, np.float32)
    if per_token and x.ndim >= 1 and x.size:
        lo = np.minimum(x.min(axis=-1, keepdims=True), np.float32(0))
        hi = np.maximum(x.max(axis=-1, keepdims=True), np.float32(0))
        s = np.maximum((hi - lo) / np.float32(255), np.finfo(np.float32).tiny).astype(np.float32)
        z = np.rint(-lo / s)
        return ((np.clip(np.rint(x / s) + z, 0, 255) - z) * s).astype(np.float32)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = np.float32((hi - lo) / 255.0) if hi > lo else np.float32(0)
    if scale == 0:
        return np.zeros_like(x)
    zp = np.clip(np.rint(-lo / scale), 0, 255)
    return qdq.fake_quantize(x, scale, np.asarray(zp, np.uint8))


def build(graph, options: QuantizeOptions, ranges, feeds_source, nodes_names=None, max_feeds=None) -> QuantReport:
    """Run the shadow and quantized graphs on ``feeds_source`` (a list of feed dicts)."""
    from .api import clone_graph
    from .runner import Runner
    shadow = clone_graph(graph)
    by_name = {n.name: n for n in shadow.nodes}
    nodes = qdq.candidates(shadow, options)
    if nodes_names is not None:
        nodes = [n for n in nodes if n.name in set(nodes_names)]
    from ..ir import Node
    pairs = []  # (layer name, op, float x name, float y name, shadow y name)
    clones = []
    for n in nodes:
        role = qdq.role_of(n)
        outs = [shadow.new_value(f"{o.name}_shadow", o.dtype, o.shape) for o in n.outputs]
        c = Node(n.op_type, n.inputs, outs, dict(n.attrs), name=shadow.fresh_name(f"{n.name}_shadow"),
                 domain=n.domain, opset=n.opset)
        shadow.insert(c, after=n)
        clones.append(c)
        pairs.append((n.name, n.op_type, n.inputs[role.act].name, n.outputs[0].name, outs[0].name))
    rw = qdq.Rewriter(shadow, options, ranges, form="qdq")
    for c in clones:
        rw.quantize_node(c)
    shadow.toposort()
    wsqnr = {c.name: info.weight_sqnr for c, info in zip(clones, rw.layers)}

    quant = clone_graph(graph)
    qnodes = [by for by in qdq.candidates(quant, options) if by.name in {p[0] for p in pairs}]
    qdq.apply(quant, options, ranges, form="qdq", nodes=qnodes)
    qy = {n.name: n.outputs[0].name for n in quant.nodes if n.name in {p[0] for p in pairs}}
    out_names = [v.name for v in graph.outputs]

    expose_s = sorted({p[2] for p in pairs} | {p[3] for p in pairs} | {p[4] for p in pairs})
    expose_q = sorted(set(qy.values()))
    local = {p[0]: _Acc() for p in pairs}
    cum = {p[0]: _Acc() for p in pairs}
    act = {p[0]: _Acc() for p in pairs}
    observed = {p[0]: [np.inf, -np.inf] for p in pairs}
    power = {p[0]: [0.0, 0] for p in pairs}
    outs = {o: _Acc() for o in out_names}
    count = 0
    with Runner(shadow, expose_s, options.engine) as rs, Runner(quant, expose_q, options.engine) as rq:
        for feed in feeds_source:
            if max_feeds is not None and count >= max_feeds:
                break
            for vs, vq in zip(rs.run(feed), rq.run(feed)):
                for name, op, xn, yn, sn in pairs:
                    local[name].add(vs[yn], vs[sn])
                    x = vs[xn]
                    if options.mode == "static":
                        s, z = qdq.activation_params(*ranges[xn], options.activation_type)
                        act[name].add(x, qdq.fake_quantize(x, s, z))
                    else:
                        act[name].add(x, dynamic_fake_quantize(x, options.per_token))
                    observed[name][0] = min(observed[name][0], float(np.min(x)))
                    observed[name][1] = max(observed[name][1], float(np.max(x)))
                    power[name][0] += float(np.sum(np.asarray(x, np.float64) ** 2))
                    power[name][1] += x.size
                    if name in qy:
                        cum[name].add(vs[yn], vq[qy[name]])
                for o in out_names:
                    if np.asarray(vs[o]).dtype.kind == "f":
                        outs[o].add(vs[o], vq[o])
            count += 1
    del by_name
    rows = []
    for (name, op, xn, yn, sn), c in zip(pairs, clones):
        rows.append(LayerRow(name, op, local[name].db, cum[name].db if name in qy else None, act[name].db,
                             wsqnr[c.name], tuple(ranges[xn]) if ranges and xn in ranges else None,
                             tuple(observed[name]) if count else None,
                             max(abs(observed[name][0]), abs(observed[name][1])) /
                             max(np.sqrt(power[name][0] / max(power[name][1], 1)), 1e-30) if count else 0.0))
    return QuantReport(rows, {o: a.db for o, a in outs.items() if a.sig or a.err}, count)
