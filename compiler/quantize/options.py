"""The quantizer's options, checked once: onnxc.quantize, onnxc.compile(quantize=...) and the CLI
all build a QuantizeOptions."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

from ..errors import InputError

MODES = ("static", "dynamic")
METHODS = ("minmax", "percentile", "entropy")
ACTIVATION_TYPES = ("uint8", "int8")
ENGINES = ("onnxc", "reference", "onnxruntime")


@dataclass
class QuantizeOptions:
    """mode: "static" (activation ranges from calibration data; CNNs) or "dynamic" (activations
    quantized at run time per tensor, no data; transformers and RNNs).
    per_channel: one weight scale per output channel (else one per tensor).
    activation_type: "uint8" (asymmetric, zero point from the range) or "int8" (symmetric).
    method: how a calibrated range is chosen from the observed values (calibrate.py).
    percentile: for method="percentile", the share of values (per sign) kept inside the range.
    exclude: node names or op types left in float.
    op_types: restrict quantization to these op types (default: every supported one).
    per_token: dynamic mode: one activation scale and zero point per row of the quantized input
    (a token of a transformer; the last axis is the one reduced), computed at run time with
    standard ops, instead of one per tensor (onnxruntime's DynamicQuantizeLinear).  A few outlier
    values (one channel of one token) then coarsen only their own row: on MiniLM-L6 the worst
    sentence's cosine to float went from 0.988 to 0.999 (docs/quantize.md).  Costs a row
    reduction and a zero-point correction per quantized input; False writes onnxruntime's form,
    which onnxruntime fuses into DynamicQuantizeMatMul.  Ignored in static mode.
    reduce_range: 7-bit weights (|q| <= 63): no int16 saturation in u8 x s8 pair products on
    AVX2 without VNNI (vpmaddubsw), at a cost in weight precision.
    calibration: feeds (see data.py); preprocess: the image spec for a folder of images.
    target: accuracy-aware mode (tune.py), e.g. "sqnr:30", "top1:0.99", "cosine:0.99", or a
    Target; eval_data: the held-out feeds the target is measured on (default: calibration).
    engine: what runs the float model for calibration and measurement ("onnxc": the model
    compiled by onnxc with the tensors to observe exposed as outputs; "reference": the numpy IR
    interpreter; "onnxruntime": a test-only dependency).
    max_batches: use at most this many calibration feeds."""
    mode: str = "static"
    per_channel: bool = True
    activation_type: str = "uint8"
    method: str = "minmax"
    percentile: float = 99.999
    exclude: Tuple[str, ...] = ()
    op_types: Optional[Tuple[str, ...]] = None
    per_token: bool = True
    reduce_range: bool = False
    calibration: Any = None
    preprocess: Any = None
    target: Any = None
    eval_data: Any = None
    engine: str = "onnxc"
    max_batches: Optional[int] = None
    progress: Optional[Callable[[int, Optional[int], str], None]] = field(default=None, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"quantize: mode must be one of {MODES}, got {self.mode!r}")
        if self.method not in METHODS:
            raise InputError(f"quantize: method must be one of {METHODS}, got {self.method!r}")
        if self.activation_type not in ACTIVATION_TYPES:
            raise InputError(f"quantize: activation_type must be one of {ACTIVATION_TYPES}, "
                             f"got {self.activation_type!r}")
        if self.engine not in ENGINES:
            raise InputError(f"quantize: engine must be one of {ENGINES}, got {self.engine!r}")
        if not 50.0 < float(self.percentile) <= 100.0:
            raise InputError(f"quantize: percentile must be in (50, 100], got {self.percentile}")
        if isinstance(self.exclude, str):
            self.exclude = (self.exclude,)
        self.exclude = tuple(self.exclude or ())
        if isinstance(self.op_types, str):
            self.op_types = (self.op_types,)
        if self.op_types is not None:
            self.op_types = tuple(self.op_types)
        if self.mode == "static" and self.calibration is None:
            raise InputError("quantize: static mode needs calibration data (an iterable of feed dicts, a folder "
                             "of .npy/.npz files or of images); mode='dynamic' needs none")

    @classmethod
    def make(cls, value: Union[None, bool, str, Dict, "QuantizeOptions"] = None, **overrides) -> "QuantizeOptions":
        """From what onnxc.compile(quantize=...) accepts: True (dynamic), a mode string, a dict
        of options or a QuantizeOptions."""
        if isinstance(value, QuantizeOptions):
            base = {f.name: getattr(value, f.name) for f in fields(cls)}
        elif value is True:
            base = {"mode": "dynamic"}
        elif isinstance(value, str):
            base = {"mode": value}
        elif isinstance(value, dict):
            base = dict(value)
        elif value is None:
            base = {}
        else:
            raise InputError(f"quantize= expects True, 'static'/'dynamic', a dict of options or "
                             f"onnxc.QuantizeOptions, got {type(value).__name__}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(base) - known)
        if unknown:
            raise InputError(f"quantize: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**base)

    def describe(self) -> Dict[str, Any]:
        """JSON-able summary (cache keys, reports); data sources by what they are, not content."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("calibration", "eval_data", "progress", "target", "preprocess")}
        out["exclude"] = list(self.exclude)
        out["op_types"] = None if self.op_types is None else list(self.op_types)
        out["target"] = None if self.target is None else str(self.target)
        out["preprocess"] = None if self.preprocess is None else str(self.preprocess)
        return out


def matches(node, patterns: Sequence[str]) -> bool:
    """A node named by ``patterns``: its name, its op type or domain.op_type.  A node a pass
    rebuilt under a name already taken carries a ``__<n>`` suffix (MatMul 'fc' + Add -> Gemm
    'fc__0'); the name without it matches too."""
    if not patterns:
        return False
    op = node.op_type
    full = f"{node.domain}.{op}" if node.domain else op
    base = re.sub(r"__\d+$", "", node.name)
    return node.name in patterns or base in patterns or op in patterns or full in patterns
