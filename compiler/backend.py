"""onnx.backend implementation, so ONNX's backend test tooling can drive onnxc.

    import onnxc.backend as backend
    rep = backend.prepare(model, "CPU")
    outputs = rep.run([x])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .errors import InputError


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
