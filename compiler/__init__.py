"""onnxc: an ahead-of-time compiler from ONNX models to native C modules.

    import onnxc
    model = onnxc.compile("model.onnx", output_dir="out/")
    outputs = model.run(None, {"input": x})
    sess = onnxc.InferenceSession("model.onnx")   # drop-in for onnxruntime.InferenceSession
    onnxc.quantize("model.onnx", calibration="calib/", save_to="model.int8.onnx")  # int8 QDQ

Running a compiled module (``onnxc.load``) needs only numpy and cffi; compiling needs onnx.
"""
from ._version import __version__
from .errors import (CompileError, InputError, ModelError, OnnxcError, UnsupportedError,
                     UnsupportedOpError)
from .runtime import CompiledModel, load


def compile(model, input_shapes=None, opt_level="layout", num_threads=None, output_dir=None, **options):
    """Compile an ONNX model (path, bytes or ModelProto) to a native module; see compiler.driver."""
    from .driver import compile_model
    return compile_model(model, input_shapes=input_shapes, opt_level=opt_level, num_threads=num_threads,
                         output_dir=output_dir, **options)


def optimize(model, input_shapes=None, opt_level="layout", target="native", save_to=None, winograd=4):
    """Run onnxc's graph passes and return the optimized model as an onnx.ModelProto (fused ops
    in the ``onnxc`` domain); also written to ``save_to`` when given."""
    from .driver import optimize_model
    return optimize_model(model, input_shapes, opt_level, target, save_to=save_to, winograd=winograd)[0]


def __getattr__(name):
    if name == "InferenceSession":
        from .session import InferenceSession
        return InferenceSession
    if name == "BatchPredictor":
        from .batch import BatchPredictor
        return BatchPredictor
    if name == "quantize":  # the package is callable: onnxc.quantize(model, ...) (compiler/quantize/)
        import importlib
        return importlib.import_module(".quantize", __name__)
    if name in ("QuantizeOptions", "ImageSpec"):
        from . import quantize
        return getattr(quantize, name)
    if name == "backend":
        import importlib
        return importlib.import_module(".backend", __name__)
    raise AttributeError(name)


__all__ = ["__version__", "compile", "optimize", "quantize", "QuantizeOptions", "load", "CompiledModel", "InferenceSession", "BatchPredictor",
           "OnnxcError", "ModelError", "InputError", "CompileError", "UnsupportedError", "UnsupportedOpError"]
