"""Accuracy-aware quantization: leave the most damaging layers in float until a target is met.

The layers are ranked by the error each adds by itself (report.py's local SQNR, worst first).
The quantized model with the k worst layers in float is measured against the float model on the
evaluation feeds for k = 0, 1, 2, 4, ... until the target is met, then the smallest such k is
found by bisection between the last two: O(log n) measurements of the whole model, each a build
and a run, reusing the calibrated ranges.  (Neural Compressor's fallback tuning does the same
kind of search over per-op sensitivities; this one ranks by one measured pass.)

Targets (the model's first output unless said otherwise):
  "sqnr:30"     SQNR of every float output, in dB, at least 30
  "top1:0.99"   the argmax over the last axis agrees with float on at least 99% of the rows
  "cosine:0.99" every row's cosine similarity with float is at least 0.99
  Target(metric=fn, min=x): fn(float_outputs, quant_outputs) -> float, where both are lists (one
                per feed) of lists of output arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np

from ..errors import InputError


@dataclass
class Target:
    metric: object  # "sqnr" | "top1" | "cosine" | callable
    min: float
    output: int = 0

    @classmethod
    def parse(cls, value) -> "Target":
        if isinstance(value, Target):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return cls(value[0], float(value[1]))
        if isinstance(value, str):
            for sep in (">=", ":", "="):
                if sep in value:
                    k, v = value.split(sep, 1)
                    k = k.strip().lower()
                    if k not in ("sqnr", "top1", "cosine"):
                        break
                    return cls(k, float(v))
        raise InputError(f"quantize target: expected 'sqnr:<dB>', 'top1:<fraction>', 'cosine:<min>' or "
                         f"Target(metric=fn, min=x), got {value!r}")

    def __str__(self):
        name = self.metric if isinstance(self.metric, str) else getattr(self.metric, "__name__", "metric")
        return f"{name}>={self.min:g}"

    def measure(self, ref: List[List[np.ndarray]], got: List[List[np.ndarray]]) -> float:
        if callable(self.metric):
            return float(self.metric(ref, got))
        if self.metric == "sqnr":
            vals = []
            for i in range(len(ref[0])):
                r = np.concatenate([np.asarray(f[i], np.float64).ravel() for f in ref])
                q = np.concatenate([np.asarray(g[i], np.float64).ravel() for g in got])
                if r.dtype.kind != "f":
                    continue
                err = float(np.sum((r - q) ** 2))
                vals.append(np.inf if err == 0 else 10 * np.log10(max(float(np.sum(r ** 2)), 1e-300) / err))
            return float(min(vals)) if vals else np.inf
        r = [np.asarray(f[self.output]) for f in ref]
        q = [np.asarray(g[self.output]) for g in got]
        if self.metric == "top1":
            agree = total = 0
            for a, b in zip(r, q):
                a2 = a.reshape(-1, a.shape[-1])
                b2 = b.reshape(-1, b.shape[-1])
                agree += int(np.sum(a2.argmax(-1) == b2.argmax(-1)))
                total += a2.shape[0]
            return agree / max(total, 1)
        if self.metric == "cosine":
            worst = 1.0
            for a, b in zip(r, q):
                a2 = a.reshape(a.shape[0], -1).astype(np.float64)
                b2 = b.reshape(b.shape[0], -1).astype(np.float64)
                na, nb = np.linalg.norm(a2, axis=1), np.linalg.norm(b2, axis=1)
                cos = np.sum(a2 * b2, axis=1) / np.maximum(na * nb, 1e-300)
                worst = min(worst, float(cos.min()))
            return worst
        raise InputError(f"quantize target: unknown metric {self.metric!r}")


@dataclass
class TuneResult:
    target: str
    met: bool
    kept_float: List[str]
    why: List[str]
    evaluations: List[Tuple[int, float]] = field(default_factory=list)
    value: Optional[float] = None

    def format(self) -> str:
        lines = [f"accuracy target {self.target}: {'met' if self.met else 'NOT met'} "
                 f"({self.value:.4g}) with {len(self.kept_float)} layer(s) left in float"]
        lines += [f"  {w}" for w in self.why]
        lines.append("  measured: " + ", ".join(f"{k} in float -> {v:.4g}" for k, v in self.evaluations))
        return "\n".join(lines)


def tune(graph, options, ranges, nodes, form, report, feeds: List, progress: Optional[Callable] = None,
         full: bool = False) -> TuneResult:
    """The smallest prefix of the ranking (worst local SQNR first) to leave in float."""
    from . import qdq
    from .api import clone_graph
    from .runner import Runner
    target = Target.parse(options.target)
    order = [r.name for r in report.sorted() if r.name in {n.name for n in nodes}]
    rows = {r.name: r for r in report.rows}
    out_names = [v.name for v in graph.outputs]
    with Runner(graph, (), options.engine) as rf:
        ref = [[v[o] for o in out_names] for feed in feeds for v in rf.run(feed)]
    cache = {}

    def measure(k: int) -> float:
        if k in cache:
            return cache[k]
        g = clone_graph(graph)
        skip = set(order[:k])
        qdq.apply(g, options, ranges, form, nodes=[n for n in qdq.candidates(g, options) if n.name not in skip],
                  full=full)
        with Runner(g, (), options.engine) as rq:
            got = [[v[o] for o in out_names] for feed in feeds for v in rq.run(feed)]
        cache[k] = target.measure(ref, got)
        if progress:
            progress(len(cache), None, f"tuning: {k} layer(s) in float -> {target.metric}={cache[k]:.4g}")
        return cache[k]

    n = len(order)
    k, good = 0, None
    while True:
        if measure(k) >= target.min:
            good = k
            break
        if k == n:
            break
        k = min(n, max(1, 2 * k))
    if good is None:
        return TuneResult(str(target), False, order[:n], _why(order[:n], rows), sorted(cache.items()), cache[n])
    lo = good // 2  # measure(lo) failed (or lo == 0 and good == 0)
    hi = good
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if measure(mid) >= target.min:
            hi = mid
        else:
            lo = mid
    kept = order[:hi]
    return TuneResult(str(target), True, kept, _why(kept, rows), sorted(cache.items()), cache[hi])


def _why(names, rows) -> List[str]:
    out = []
    for n in names:
        r = rows[n]
        out.append(f"{n} ({r.op}): local SQNR {r.local_sqnr:.1f} dB, activation {r.activation_sqnr:.1f} dB, "
                   f"weights {r.weight_sqnr:.1f} dB; limited by {r.cause}")
    return out
