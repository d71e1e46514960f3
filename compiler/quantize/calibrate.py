"""Activation ranges from calibration data: minmax, percentile and entropy (KL divergence).

Each observed tensor keeps its running min/max and, for percentile and entropy, a histogram of
magnitudes split by sign: BINS bins of width w over [0, BINS * w).  When a batch holds a value
past the last bin, w doubles and adjacent bins are summed (bin j then covers old bins 2j and
2j + 1 exactly), so the histogram never depends on the order of the batches beyond its width
and nothing is re-binned approximately; the data always fill more than half of the bins.

  minmax      [min, max] over all batches.
  percentile  per sign, the smallest bin edge below which ``percentile`` % of that sign's values
              lie (ties with the tail kept); then clipped to [min, max].
  entropy     TensorRT's method (as onnxruntime's Entropy calibrator): for each candidate
              threshold t, the histogram of |x| up to t (values past t added to the last bin)
              is compared with its quantization to L levels; t minimizing KL(P || Q) wins.
              L = 128 for values of both signs (the symmetric int8 grid; uint8 over [-t, t] has
              the same step) and for non-negative values into int8; 256 for non-negative values
              into uint8.  The range is [-t, t] (or [0, t]) clipped to [min, max].
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional, Tuple

import numpy as np

BINS = 2048


class TensorStats:
    __slots__ = ("min", "max", "width", "pos", "neg", "count", "hist")

    def __init__(self, hist: bool):
        self.min = np.inf
        self.max = -np.inf
        self.width: Optional[float] = None
        self.hist = hist
        self.pos = np.zeros(BINS, np.int64)  # values >= 0 by magnitude
        self.neg = np.zeros(BINS, np.int64)  # values < 0 by magnitude
        self.count = 0

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).ravel()
        if x.size == 0:
            return
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            return
        lo, hi = float(finite.min()), float(finite.max())
        self.min, self.max = min(self.min, lo), max(self.max, hi)
        self.count += finite.size
        if not self.hist:
            return
        amax = max(-lo, hi)
        if self.width is None:
            if amax == 0:
                self.pos[0] += finite.size
                return
            self.width = amax / (BINS - 1)  # the largest value falls into the last bin
        while amax >= self.width * BINS:
            self.pos = _halve(self.pos)
            self.neg = _halve(self.neg)
            self.width *= 2
        for arr, counts in ((finite[finite >= 0], self.pos), (-finite[finite < 0], self.neg)):
            if arr.size:
                idx = np.minimum((arr / self.width).astype(np.int64), BINS - 1)
                counts += np.bincount(idx, minlength=BINS)

    def range(self, method: str, percentile: float = 99.999, activation_type: str = "uint8") -> Tuple[float, float]:
        if self.count == 0:
            raise ValueError("no finite value observed")
        if method == "minmax" or self.width is None:
            return float(self.min), float(self.max)
        if method == "percentile":
            hi = _percentile_edge(self.pos, self.width, percentile) if self.max > 0 else 0.0
            lo = -_percentile_edge(self.neg, self.width, percentile) if self.min < 0 else 0.0
        elif method == "entropy":
            signed = self.min < 0
            hist = self.pos + self.neg if signed else self.pos
            levels = 128 if (signed or activation_type == "int8") else 256
            t = entropy_threshold(hist, self.width, levels)
            lo, hi = (-t, t) if signed else (0.0, t)
        else:
            raise ValueError(f"unknown calibration method {method!r}")
        return max(float(lo), float(self.min)), min(float(hi), float(self.max))


def _halve(counts: np.ndarray) -> np.ndarray:
    merged = counts.reshape(-1, 2).sum(axis=1)
    return np.concatenate([merged, np.zeros(counts.size - merged.size, counts.dtype)])


def _percentile_edge(counts: np.ndarray, width: float, percentile: float) -> float:
    total = counts.sum()
    if total == 0:
        return 0.0
    cdf = np.cumsum(counts)
    i = int(np.searchsorted(cdf, total * percentile / 100.0, side="left"))
    return (min(i, counts.size - 1) + 1) * width


def entropy_threshold(hist: np.ndarray, width: float, levels: int = 128, candidates: int = 160) -> float:
    """The threshold (a bin edge) whose clipped and quantized histogram is closest to the clipped
    one in KL divergence (TensorRT's int8 calibration)."""
    hist = np.asarray(hist, np.float64)
    used = int(np.nonzero(hist)[0].max()) + 1 if hist.any() else 0
    if used <= levels:
        return used * width  # fewer occupied bins than levels: nothing is lost at the maximum
    starts = np.unique(np.linspace(levels, used, min(candidates, used - levels + 1)).astype(np.int64))
    best, best_i = np.inf, used
    for i in starts:
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()
        # quantize hist[:i] into `levels` groups; each group's mass spread over its non-empty bins
        edges = np.linspace(0, i, levels + 1).astype(np.int64)
        src = hist[:i]
        nz = (src > 0).astype(np.float64)
        mass = np.add.reduceat(src, edges[:-1])
        nnz = np.add.reduceat(nz, edges[:-1])
        empty = edges[1:] == edges[:-1]  # reduceat returns the element at an empty group's start
        mass[empty] = 0
        nnz[empty] = 0
        per = np.divide(mass, nnz, out=np.zeros_like(mass), where=nnz > 0)
        q = np.repeat(per, np.diff(edges)) * nz
        kl = _kl(p, q)
        if kl < best:
            best, best_i = kl, int(i)
    return best_i * width


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    ps, qs = p.sum(), q.sum()
    if ps == 0 or qs == 0:
        return np.inf
    p = p / ps
    q = q / qs
    mask = p > 0
    if np.any(q[mask] == 0):
        # p has mass where q has none (the last bin's added tail): smooth q there as TensorRT does
        eps = 1e-4
        zero = (q == 0) & mask
        nzq = q > 0
        take = eps * zero.sum() / max(nzq.sum(), 1)
        q = q.copy()
        q[nzq] -= take
        q[zero] = eps
        if np.any(q[mask] <= 0):
            return np.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


class Collector:
    """Running statistics of many tensors, fed one calibration batch at a time."""

    def __init__(self, names: Iterable[str], method: str):
        self.method = method
        self.stats: Dict[str, TensorStats] = {n: TensorStats(method != "minmax") for n in names}
        self.batches = 0

    def add(self, values: Dict[str, np.ndarray]) -> None:
        for name, st in self.stats.items():
            st.add(values[name])
        self.batches += 1

    def ranges(self, percentile: float = 99.999, activation_type: str = "uint8") -> Dict[str, Tuple[float, float]]:
        out = {}
        for name, st in self.stats.items():
            if st.count == 0:
                from ..errors import InputError
                raise InputError(f"calibration: tensor '{name}' had no finite value in {self.batches} batch(es)")
            out[name] = st.range(self.method, percentile, activation_type)
        return out
