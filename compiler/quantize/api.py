"""onnxc.quantize and the graph-level step shared with onnxc.compile(quantize=...)."""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from . import data, qdq
from .calibrate import Collector
from .options import QuantizeOptions


@dataclass
class QuantizeResult:
    """What a quantization did: the options, the layers and how each was quantized, the
    calibration (tensors, feeds, seconds), the layers the accuracy-aware mode left in float."""
    options: Dict[str, Any]
    layers: List[qdq.LayerInfo] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)   # quantizable nodes left in float, and why
    tensors_calibrated: int = 0
    calibration_feeds: int = 0
    calibration_seconds: float = 0.0
    seconds: float = 0.0
    tune: Any = None
    report: Any = None

    def summary(self) -> str:
        ops: Dict[str, int] = {}
        for l in self.layers:
            ops[l.op] = ops.get(l.op, 0) + 1
        o = self.options
        by_op = ", ".join(f"{k} {v}" for k, v in sorted(ops.items())) or "-"
        lines = [f"quantized {len(self.layers)} layer(s) ({by_op})"
                 f", {o['mode']} mode, weights int8 {'per-channel' if o['per_channel'] else 'per-tensor'}"
                 f"{' (7-bit)' if o['reduce_range'] else ''}, activations "
                 + (f"{o['activation_type']} ({o['method']})" if o["mode"] == "static" else
                    f"uint8 at run time, {'per token' if o.get('per_token', True) else 'per tensor'}")]
        if self.tensors_calibrated:
            lines.append(f"calibration: {self.tensors_calibrated} tensor(s) over {self.calibration_feeds} feed(s) in "
                         f"{self.calibration_seconds:.2f} s")
        for s in self.skipped:
            lines.append(f"left in float: {s}")
        if self.tune is not None:
            lines.append(self.tune.format())
        lines.append(f"total {self.seconds:.2f} s")
        return "\n".join(lines)

    def as_dict(self) -> Dict[str, Any]:
        d = {"options": self.options, "layers": [asdict(l) for l in self.layers], "skipped": self.skipped,
             "tensors_calibrated": self.tensors_calibrated, "calibration_feeds": self.calibration_feeds,
             "calibration_seconds": round(self.calibration_seconds, 3), "seconds": round(self.seconds, 3)}
        if self.tune is not None:
            d["tune"] = asdict(self.tune)
        return d


def clone_graph(graph):
    """A deep copy of an IR graph that shares the constants' arrays (never written in place).

    Every Value and Node of the graph gets its new object in the memo before any is filled in:
    a plain deepcopy follows producer/uses links node after node, as deep as the graph (MiniLM-L6's
    669 nodes passed Python's recursion limit)."""
    from ..ir.core import Graph, Node, Value
    memo = {}
    for v in graph.constants.values():
        memo[id(v.const)] = v.const
    for n in graph.nodes:
        for a in n.attrs.values():
            if isinstance(a, np.ndarray):
                memo[id(a)] = a
    objs = {id(graph): graph}
    for v in list(graph.inputs) + list(graph.outputs) + list(graph.constants.values()):
        objs[id(v)] = v
    for n in graph.nodes:
        objs[id(n)] = n
        for v in list(n.inputs) + list(n.outputs):
            if v is not None:
                objs[id(v)] = v
    for k, o in objs.items():
        memo[k] = object.__new__(type(o))
    for k, o in objs.items():
        new = memo[k]
        if isinstance(o, Graph):
            new.__dict__.update(copy.deepcopy(o.__dict__, memo))
        else:
            assert isinstance(o, (Node, Value))
            for slot in type(o).__slots__:
                if hasattr(o, slot):
                    setattr(new, slot, copy.deepcopy(getattr(o, slot), memo))
    return memo[id(graph)]


def _reusable(source):
    """Calibration sources are read more than once (report, tuning): one-shot iterators are kept."""
    if source is None or isinstance(source, (str, os.PathLike, list, tuple)):
        return source
    return list(source)


def _progress(options, i, total, what):
    if options.progress is not None:
        options.progress(i, total, what)


def feeds_of(graph, source, options, limit=None):
    inputs = [(v.name, v.shape, v.dtype) for v in graph.inputs]
    return data.feeds(source, inputs, options.preprocess, limit)


def calibrate(graph, names: List[str], options: QuantizeOptions):
    """Ranges of ``names`` over the calibration feeds, running the float graph."""
    from .runner import Runner
    t = time.perf_counter()
    col = Collector(names, options.method)
    total = data.count(options.calibration)
    if total is not None and options.max_batches is not None:
        total = min(total, options.max_batches)
    n = 0
    with Runner(graph, names, options.engine) as r:
        for feed in feeds_of(graph, options.calibration, options, options.max_batches):
            for values in r.run(feed):
                col.add(values)
            n += 1
            _progress(options, n, total, "calibration")
    if n == 0:
        from ..errors import InputError
        raise InputError("calibration: the source held no feed")
    return col.ranges(options.percentile, options.activation_type), n, time.perf_counter() - t


def quantize_graph(graph, options: QuantizeOptions, form: str = "qdq", with_report: bool = False,
                   full: bool = False) -> QuantizeResult:
    """Quantize an IR graph in place (after whatever passes ran on it).  ``full``: static mode
    also quantizes outputs, residual Adds, pools and Concats (qdq.full_plan), for onnxc's QDQ
    fusions to run them in int8; the pass-manager step (after the extended fusions) does not."""
    t0 = time.perf_counter()
    options.calibration = _reusable(options.calibration)
    options.eval_data = _reusable(options.eval_data)
    res = QuantizeResult(options.describe())
    nodes = qdq.candidates(graph, options)
    for n in graph.nodes:
        if qdq.ROLES.get((n.domain, n.op_type)) and qdq.role_of(n) is None:
            res.skipped.append(f"{n.op_type} '{n.name}' (weight not a float constant of the supported rank)")
        elif qdq.role_of(n) is not None and n not in nodes:
            why = ("excluded" if any(p in options.exclude for p in (n.name, n.op_type)) else
                   "dynamic mode leaves convolutions in float" if n.op_type in ("Conv", "FusedConv") else
                   "not in op_types")
            res.skipped.append(f"{n.op_type} '{n.name}' ({why})")
    ranges = None
    if options.mode == "static" and nodes:
        names = qdq.calibration_tensors(graph, options, nodes)
        if full and form == "qdq":  # what the full placement reads; with a target, also the outputs
            extra = qdq.full_plan(graph, options, nodes).range_names()  # a smaller choice may quantize
            if options.target is not None:  # unfolded (a Relu read by a layer kept in float)
                extra += [n.outputs[0].name for n in graph.nodes
                          if (n in nodes or n.op_type in qdq.OWN_RANGE_OPS) and n.outputs and n.outputs[0].dtype == qdq.F32]
            names += [n for n in dict.fromkeys(extra) if n not in names]
        ranges, res.calibration_feeds, res.calibration_seconds = calibrate(graph, names, options)
        res.tensors_calibrated = len(names)
    if (options.target is not None or with_report) and nodes:
        from . import report as report_mod
        src = options.eval_data if options.eval_data is not None else options.calibration
        if src is None:
            from ..errors import InputError
            raise InputError("quantize: a target (or a report) needs feeds to measure on: give eval_data= (or "
                             "calibration=)")
        feeds = list(feeds_of(graph, src, options))
        res.report = report_mod.build(graph, options, ranges, feeds)
        if options.target is not None:
            from .tune import tune
            res.tune = tune(graph, options, ranges, nodes, form, res.report, feeds, options.progress, full=full)
            keep = set(res.tune.kept_float)
            nodes = [n for n in nodes if n.name not in keep]
    res.layers = qdq.apply(graph, options, ranges, form, nodes, full=full)
    res.seconds = time.perf_counter() - t0
    return res


def quantize(model, calibration=None, mode: str = "static", per_channel: bool = True, activation_type: str = "uint8",
             method: str = "minmax", exclude=(), save_to=None, target=None, eval_data=None, input_shapes=None,
             return_result: bool = False, **options):
    """Quantize a float ONNX model to int8 and return it as an onnx.ModelProto (QDQ format for
    static mode; DynamicQuantizeLinear + MatMulInteger for dynamic mode), which onnxruntime runs
    too.  The model first goes through onnxc's basic passes (BatchNormalization folded into
    Conv, MatMul+Add into Gemm, constants folded) so weights are quantized as they will run.

    calibration: an iterable of feed dicts, a folder of .npy/.npz files, or a folder of images
    (with preprocess=ImageSpec or its text form); static mode needs it, dynamic mode does not.
    exclude: node names or op types to leave in float.  target: accuracy-aware mode ("sqnr:30",
    "top1:0.99", "cosine:0.99"), measured on eval_data (default: the calibration feeds).
    Other options: see QuantizeOptions (percentile, reduce_range, op_types, engine, ...).
    With return_result=True, returns (model, QuantizeResult)."""
    import onnx

    from .. import frontend
    from ..driver import optimize
    from ..ir.onnx_export import optimized_model
    opts = QuantizeOptions.make(dict(mode=mode, per_channel=per_channel, activation_type=activation_type, method=method,
                                     exclude=exclude, calibration=calibration, target=target, eval_data=eval_data,
                                     **options))
    graph = frontend.load(model if not isinstance(model, (bytes, bytearray)) else bytes(model),
                          {k: list(map(int, v)) for k, v in (input_shapes or {}).items()} or None)
    in_names, out_names = [v.name for v in graph.inputs], [v.name for v in graph.outputs]
    optimize(graph, "basic")
    res = quantize_graph(graph, opts, form="integer" if opts.mode == "dynamic" else "qdq", full=True)
    proto = optimized_model(graph, in_names, out_names)
    proto.producer_name = "onnxc.quantize"
    entry = proto.metadata_props.add()
    entry.key = "onnxc.quantize"
    entry.value = json.dumps(res.as_dict(), default=str)
    onnx.checker.check_model(proto)
    if save_to is not None:
        Path(os.fspath(save_to)).parent.mkdir(parents=True, exist_ok=True)
        Path(os.fspath(save_to)).write_bytes(proto.SerializeToString())
    return (proto, res) if return_result else proto


def quant_report(model, calibration, mode: str = "static", input_shapes=None, **options):
    """Per-layer SQNR of the int8 graph against float on the calibration feeds (report.QuantReport)."""
    from .. import frontend
    from ..driver import optimize
    from . import report as report_mod
    opts = QuantizeOptions.make(dict(mode=mode, calibration=calibration, **options))
    graph = frontend.load(model, {k: list(map(int, v)) for k, v in (input_shapes or {}).items()} or None)
    optimize(graph, "basic")
    opts.calibration = _reusable(opts.calibration)
    nodes = qdq.candidates(graph, opts)
    ranges = None
    if opts.mode == "static":
        ranges, _, _ = calibrate(graph, qdq.calibration_tensors(graph, opts, nodes), opts)
    src = opts.eval_data if opts.eval_data is not None else opts.calibration
    if src is None:
        from ..errors import InputError
        raise InputError("quant report: needs feeds (calibration= or eval_data=)")
    return report_mod.build(graph, opts, ranges, list(feeds_of(graph, src, opts)))
