"""onnx.backend implementation, so ONNX's backend test tooling can drive onnxc.

    import onnxc.backend as backend
    rep = backend.prepare(model, "CPU")
    outputs = rep.run([x])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
import onnx.numpy_helper
from onnx.backend.base import Backend, BackendRep

from .errors import InputError


_NP_OF_ORT = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32}


class OnnxcRep(BackendRep):
    def __init__(self, model: onnx.ModelProto, **options):
        from .session import InferenceSession
        self.session = InferenceSession(model, **options)
        self.input_names = [i.name for i in self.session._inputs]

    def run(self, inputs: Any, **kwargs) -> Sequence[np.ndarray]:
        if isinstance(inputs, dict):
            feed = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            inputs = list(inputs)
            if len(inputs) > len(self.input_names):
                raise InputError(f"got {len(inputs)} inputs, the model takes {len(self.input_names)}")
            feed = dict(zip(self.input_names, inputs))
        # onnx's test data sometimes stores numbers in object arrays: convert those to the
        # declared type (real object/string data stays as is and is rejected by the session)
        for spec in self.session._inputs:
            x = feed.get(spec.name)
            if isinstance(x, onnx.TensorProto):
                x = feed[spec.name] = onnx.numpy_helper.to_array(x)
            if isinstance(x, np.ndarray) and x.dtype == object:
                try:
                    feed[spec.name] = x.astype(_NP_OF_ORT.get(spec.type, object))
                except (TypeError, ValueError):
                    pass
        return self.session.run(None, feed)


class OnnxcBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> OnnxcRep:
        if not cls.supports_device(device):
            raise ValueError(f"onnxc runs on CPU only, not '{device}'")
        return OnnxcRep(model, **kwargs)

    @classmethod
    def run_model(cls, model, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node, inputs, device: str = "CPU", outputs_info=None, **kwargs):
        raise NotImplementedError("onnxc compiles whole models; wrap the node in a model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper().startswith("CPU")


prepare = OnnxcBackend.prepare
run_model = OnnxcBackend.run_model
run_node = OnnxcBackend.run_node
supports_device = OnnxcBackend.supports_device
is_compatible = OnnxcBackend.is_compatible
