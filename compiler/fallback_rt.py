"""Run-time side of the fallback provider: executes one fallback partition's ONNX sub-model
with onnxruntime (if installed and it accepts the sub-model) or onnx.reference, reading its
inputs from / writing its outputs to the locations the compiler bound them to."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .errors import FallbackError

ENGINES = ("auto", "onnxruntime", "reference")


def _has_optional(model_bytes: bytes) -> bool:
    if b"Optional" not in model_bytes:  # cheap test first: most partitions hold none
        return False
    import onnx

    from .proto import all_nodes
    return any(n.op_type.startswith("Optional") for n in all_nodes(onnx.load_from_string(model_bytes).graph))


def _make_engine(model_bytes: bytes, engine: str, num_threads: Optional[int]):
    """(name, run(feed) -> list of outputs)."""
    errors = []
    if engine == "reference" and _has_optional(model_bytes):
        # onnx.reference represents optional values as one-element lists, unlike the ONNX
        # runtime API; onnxruntime implements optional types as the spec defines them
        try:
            return _make_engine(model_bytes, "onnxruntime", num_threads)
        except FallbackError as e:
            errors.append(str(e))
    if engine in ("auto", "onnxruntime"):
        try:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            if num_threads:
                opts.intra_op_num_threads = int(num_threads)
            sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
            return "onnxruntime", lambda feed: sess.run(None, feed)
        except Exception as e:  # noqa: BLE001 - ImportError or ORT refusing the sub-model
            errors.append(f"onnxruntime: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            if engine == "onnxruntime":
                raise FallbackError(f"fallback engine onnxruntime cannot run this partition: {errors[-1]}") from None
    try:
        import onnx
        from onnx.reference import ReferenceEvaluator
        ev = ReferenceEvaluator(onnx.load_from_string(model_bytes))
        return "reference", lambda feed: ev.run(None, feed)
    except Exception as e:  # noqa: BLE001
        errors.append(f"onnx.reference: {e}")
        raise FallbackError("no fallback engine can run this partition (" + "; ".join(errors) + ")") from None


def actual_shape(arena: np.ndarray, b: Dict) -> List[int]:
    """The shape of a value a binding or output entry describes: its static shape, or, for a
    data-dependent one a C kernel wrote, the dims that kernel left in the arena this run."""
    off = b.get("dims_offset")
    if off is None:
        return b["shape"]
    rank = len(b["bound"]) if "bound" in b else int(b["rank"])
    return [int(d) for d in arena[off:off + 8 * rank].view(np.int64)]


def trimmed(buf: np.ndarray, arena: np.ndarray, b: Dict) -> np.ndarray:
    """The actual value in an output buffer (a data-dependent shape: the leading elements of
    its upper-bound buffer, which the kernel wrote densely)."""
    if b.get("dims_offset") is None:
        return buf
    shape = actual_shape(arena, b)
    count = int(np.prod(shape, dtype=np.int64))
    if len(shape) != buf.ndim or min(shape, default=0) < 0 or count > buf.size:
        raise RuntimeError(f"value '{b['name']}': the module reports shape {shape}, outside its buffer "
                           f"{list(buf.shape)}")
    return buf.reshape(-1)[:count].reshape(shape)


class FallbackPartition:
    def __init__(self, out_dir: Path, spec: Dict, engine: str = "auto", num_threads: Optional[int] = None):
        engine = os.environ.get("ONNXC_FALLBACK_ENGINE", engine)
        if engine not in ENGINES:
            raise ValueError(f"fallback engine must be one of {ENGINES}, got '{engine}'")
        self.spec = spec
        self.index = spec["index"]
        self._requested = engine
        from .verify import check_bytes, read_file
        path = out_dir / str(spec["file"])
        self._model_bytes = read_file(path, "fallback model")
        check_bytes(self._model_bytes, spec, path, "fallback model")  # before an interpreter parses it
        if engine == "auto" and spec.get("prefer") == "reference":
            try:  # an op onnxruntime answers differently from the spec (fact ort_deviates)
                self.engine, self._run = _make_engine(self._model_bytes, "reference", num_threads)
                return
            except FallbackError:
                pass
        self.engine, self._run = _make_engine(self._model_bytes, engine, num_threads)

    def _view(self, arena: np.ndarray, b: Dict) -> np.ndarray:
        dt = np.dtype(b["dtype"])
        shape = actual_shape(arena, b)
        count = int(np.prod(shape, dtype=np.int64))
        off = b["where"][1]
        return arena[off:off + count * dt.itemsize].view(dt).reshape(shape)

    def run(self, arena: np.ndarray, inputs: List, outputs: List, env: Dict) -> None:
        feed = {}
        for b in self.spec["inputs"]:
            kind, where = b["where"]
            if kind == "input":
                feed[b["name"]] = inputs[where]
            elif kind == "output":
                feed[b["name"]] = trimmed(outputs[where], arena, b).copy()
            elif kind == "arena":
                feed[b["name"]] = self._view(arena, b).copy()
            else:
                feed[b["name"]] = env[where]
        try:
            try:
                results = self._run(feed)
            except Exception:  # noqa: BLE001 - e.g. ORT cannot take bfloat16/float8 arrays
                if self.engine != "onnxruntime" or self._requested != "auto":
                    raise
                self.engine, self._run = _make_engine(self._model_bytes, "reference", None)
                results = self._run(feed)
        except Exception as e:  # noqa: BLE001 - name the partition and its ops
            raise FallbackError(f"fallback partition {self.index} ({', '.join(self.spec['ops'])}) failed in "
                                f"{self.engine}: {e}") from None
        for b, r in zip(self.spec["outputs"], results):
            kind, where = b["where"]
            if kind == "py":
                env[where] = r
                continue
            r = np.asarray(r)
            if r.dtype.byteorder in "<>" and r.dtype.newbyteorder("=") == np.dtype(b["dtype"]):
                r = r.astype(b["dtype"])  # byte-swapped: to native order
            if r.dtype != np.dtype(b["dtype"]) or list(r.shape) != list(b["shape"]):
                raise FallbackError(f"fallback partition {self.index}: value '{b['name']}' came back as "
                                   f"{r.dtype}{list(r.shape)}, the compiled code expects "
                                   f"{b['dtype']}{b['shape']}")
            if kind == "output":
                outputs[where][...] = r
            else:
                self._view(arena, b)[...] = r
