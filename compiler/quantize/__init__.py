"""onnxc's int8 quantizer (docs/quantize.md).

    model_int8 = onnxc.quantize("model.onnx", calibration="calib/", save_to="model.int8.onnx")
    model_int8 = onnxc.quantize("bert.onnx", mode="dynamic")
    module = onnxc.compile("model.onnx", quantize={"mode": "static", "calibration": feeds})

The package is callable: ``onnxc.quantize(...)`` is ``onnxc.quantize.quantize(...)``.

options.py   QuantizeOptions (one checked set of options for the API, compile and the CLI)
data.py      calibration sources: feed iterables, .npy/.npz folders, image folders + ImageSpec
calibrate.py activation ranges: minmax, percentile, entropy (KL divergence)
runner.py    running a graph with intermediate tensors exposed (onnxc itself by default)
qdq.py       which nodes are quantized and the Q/DQ (or dynamic) nodes written around them
report.py    per-layer SQNR of the int8 graph against float
tune.py      accuracy-aware mode: the most damaging layers left in float until a target is met
stage.py     the quantize step of the pass manager (onnxc.compile(quantize=...))
"""
import sys
import types

from .api import QuantizeResult, quant_report, quantize, quantize_graph
from .data import ImageSpec
from .options import QuantizeOptions
from .tune import Target

__all__ = ["quantize", "quant_report", "quantize_graph", "QuantizeOptions", "QuantizeResult", "ImageSpec", "Target"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
