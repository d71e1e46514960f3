"""onnxc.BatchPredictor: a compiled model as a function of batches of any size, the shape batch
engines hand out (Ray Data's map_batches, Spark's mapInPandas, Dask's map_partitions; recipes in
docs/deploy.md). No engine code here: the predictor is a plain picklable callable.

A module compiled for a fixed batch size B runs a batch of n rows as ceil(n / B) runs; the last
partial chunk is padded to B by repeating its last row (zeros could make a model divide by zero
or take a log of 0; repeated real rows cannot) and the padded outputs are dropped. A session
with a free batch dimension gets the batch whole (it specializes on each new size).
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np

from .errors import InputError


class BatchPredictor:
    """``predictor(batch) -> {output column: array}``.

    model: a CompiledModel, an InferenceSession, or the path of a compiled build directory
        (loaded on first use, e.g. on the worker: the pickle then carries only the path).
    inputs: {batch column: model input name}; default: the columns named like the inputs, or,
        for a single-input model, the batch's only column (Ray's from_numpy calls it "data").
    outputs: model outputs to return (default: all), under their own names.
    batch_axis: the axis of the inputs and outputs that runs over rows (default 0).
    """

    def __init__(self, model, inputs: Optional[Mapping[str, str]] = None, outputs: Optional[Sequence[str]] = None,
                 batch_axis: int = 0, num_threads: Optional[int] = None):
        self._model = model
        self._inputs = dict(inputs) if inputs else None
        self._outputs = list(outputs) if outputs else None
        self._axis = batch_axis
        self._num_threads = num_threads

    @property
    def model(self):
        if isinstance(self._model, (str, bytes)) or hasattr(self._model, "__fspath__"):
            from .runtime import load
            self._model = load(self._model, num_threads=self._num_threads)
        return self._model

    def _columns(self, batch) -> Dict[str, str]:
        names = [i.name for i in self.model.get_inputs()]
        if self._inputs is not None:
            return self._inputs
        cols = list(batch.keys())
        if all(n in cols for n in names):
            return {n: n for n in names}
        if len(names) == 1 and len(cols) == 1:
            return {cols[0]: names[0]}
        raise InputError(f"batch columns {cols} do not name the model's inputs {names}: pass inputs={{column: input}}")

    def _fixed_batch(self) -> Optional[int]:
        """The batch size every input was compiled for, or None (a free batch dimension)."""
        sizes = set()
        for i in self.model.get_inputs():
            d = i.shape[self._axis] if len(i.shape) > self._axis else None
            if not isinstance(d, int):
                return None
            sizes.add(d)
        return sizes.pop() if len(sizes) == 1 else None

    def __call__(self, batch) -> Dict[str, np.ndarray]:
        feed = {}
        for col, name in self._columns(batch).items():
            a = np.asarray(batch[col])
            if a.dtype == object:  # a pandas column of arrays
                a = np.stack(list(a))
            feed[name] = a
        rows = {a.shape[self._axis] for a in feed.values()}
        if len(rows) != 1:
            raise InputError(f"the batch's inputs have different row counts {sorted(rows)} on axis {self._axis}")
        n = rows.pop()
        names = self._outputs or [o.name for o in self.model.get_outputs()]
        b = self._fixed_batch()
        if b is None or b == n:
            return dict(zip(names, self.model.run(names, feed)))
        if n == 0:  # outputs with no rows: one run of zeros gives their other dimensions and types
            outs = self.model.run(names, {k: np.zeros(a.shape[:self._axis] + (b,) + a.shape[self._axis + 1:], a.dtype)
                                          for k, a in feed.items()})
            return {name: np.take(o, np.arange(0), axis=self._axis) for name, o in zip(names, outs)}
        parts: List[List[np.ndarray]] = []
        for start in range(0, n, b):
            stop = min(start + b, n)
            chunk = {k: _rows(a, start, stop, b, self._axis) for k, a in feed.items()}
            outs = self.model.run(names, chunk)
            for name, o in zip(names, outs):
                if o.ndim <= self._axis or o.shape[self._axis] != b:
                    raise InputError(f"output '{name}' has shape {list(o.shape)}: no axis {self._axis} of the "
                                     f"compiled batch size {b} to split a batch of {n} rows by")
            parts.append([np.take(o, np.arange(stop - start), axis=self._axis) if stop - start < b else o
                          for o in outs])
        return {name: np.concatenate([p[k] for p in parts], axis=self._axis) for k, name in enumerate(names)}


def _rows(a: np.ndarray, start: int, stop: int, size: int, axis: int) -> np.ndarray:
    """Rows [start, stop) of ``a`` along ``axis``, padded to ``size`` by repeating the last one."""
    idx = np.arange(start, stop)
    if stop - start < size:
        idx = np.concatenate([idx, np.full(size - (stop - start), stop - 1)])
    return np.ascontiguousarray(np.take(a, idx, axis=axis))
