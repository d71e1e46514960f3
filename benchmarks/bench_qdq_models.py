"""Whole CNNs quantized by onnxruntime's quantize_static (QDQ format, per-channel int8 weights,
uint8 activations, random calibration data): onnxc int8 (the QDQ passes turn the graph into
QLinearConv / QLinearAdd / ... nodes) vs onnxc float32 (the same model before quantization) vs
onnxruntime on the same QDQ model (its own QDQ fusion) and on the float model; one thread, same
process, best thread CPU time of repeated runs.  Prints ratios, the host's ISA, the Q/DQ nodes
left after compiling and the int8 output's distance to onnxruntime's (in output steps).

    .venv/bin/python benchmarks/bench_qdq_models.py [--models DIR] [--names resnet18,mobilenet_v2]
        [--seconds 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnx

import onnxc
from onnxc.cpu import host_isa


def best(fn, seconds):
    fn()
    b, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.thread_time()
        fn()
        b = min(b, time.thread_time() - t0)
    return b


def quantize(path, feed, out):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    name, x = next(iter(feed.items()))

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.it = iter([{name: rng.standard_normal(x.shape).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.it, None)

    quantize_static(path, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/main/models")
    ap.add_argument("--names", default="resnet18,mobilenet_v2")
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    print(f"host ISA {host_isa()}, 1 thread, onnxruntime {ort.__version__}")
    print(f"{'model':14} {'onnxc fp32/int8':>16} {'ort int8/onnxc int8':>23} {'ort fp32/int8':>14} "
          f"{'Q/DQ left':>9} {'max steps vs ort':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            qm = quantize(path, feed, os.path.join(tmp, f"{name}.q.onnx"))
            cf = onnxc.compile(path, output_dir=os.path.join(tmp, name + "f"), num_threads=1, fallback=False)
            cq = onnxc.compile(qm, output_dir=os.path.join(tmp, name + "q"), num_threads=1, fallback=False)
            assert cq.fallback_nodes == []
            counts = cq.report["op_counts"]
            left = counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0)
            of = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            oq = ort.InferenceSession(qm.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out_dq = qm.graph.node[-1]
            step = [onnx.numpy_helper.to_array(i) for i in qm.graph.initializer if i.name == out_dq.input[1]]
            got, ref = cq.run(None, feed)[0], oq.run(None, feed)[0]
            steps = float(np.abs(got.astype(np.float64) - ref).max() / step[0]) if step else float("nan")
            t = {k: best(fn, args.seconds) for k, fn in (("cf", lambda: cf.run(None, feed)),
                                                          ("cq", lambda: cq.run(None, feed)),
                                                          ("of", lambda: of.run(None, feed)),
                                                          ("oq", lambda: oq.run(None, feed)))}
            print(f"{name:14} {t['cf'] / t['cq']:15.2f}x {t['oq'] / t['cq']:22.2f}x {t['of'] / t['oq']:13.2f}x "
                  f"{left:9d} {steps:16.1f}")


if __name__ == "__main__":
    main()
