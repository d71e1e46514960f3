"""Whole CNNs quantized by onnxruntime's quantize_static (QDQ format, per-channel int8 weights,
uint8 activations, random calibration data): onnxc int8 (the QDQ passes turn the graph into
QLinearConv / QLinearAdd / ... nodes) vs onnxc float32 (the same model before quantization) vs
onnxruntime on the same QDQ model (its own QDQ fusion) and on the float model; one thread, same
process, interleaved rounds (one run of each engine per round), best thread CPU time per engine
and the median, IQR and range of the per-round ratios.  Prints milliseconds and ratios, the CPU
model, the host's ISA and the target, the Q/DQ nodes left after compiling and the int8 output's
distance to onnxruntime's (in output steps).  ``--target``
builds both onnxc models for that ISA row (e.g. avx2); onnxruntime picks its own kernels.

    .venv/bin/python benchmarks/bench_qdq_models.py [--models DIR] [--names resnet18,mobilenet_v2]
        [--rounds 10] [--target native]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnx

import onnxc
from onnxc.cpu import cpu_model, host_isa


def interleaved_times(fns, rounds):
    """{name: [thread CPU seconds per round]}: ``rounds`` rounds of one run of each fn, after one
    warm-up run each (load changes hit every engine alike)."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = time.thread_time()
            fn()
            times[k].append(time.thread_time() - t0)
    return times


def best_interleaved(fns, rounds):
    """{name: best thread CPU time} over interleaved_times' rounds."""
    return {k: min(v) for k, v in interleaved_times(fns, rounds).items()}


def _spread(r):
    """'median (IQR lo-hi, min..max)' of per-round ratios."""
    q = np.percentile(r, [25, 50, 75])
    return f"{q[1]:.2f}x (IQR {q[0]:.2f}-{q[2]:.2f}, {min(r):.2f}..{max(r):.2f})"


def quantize(path, feed, out):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from onnxc.quantize.data import FeedReader
    name, x = next(iter(feed.items()))
    rng = np.random.default_rng(0)
    reader = FeedReader({name: rng.standard_normal(x.shape).astype(np.float32)} for _ in range(4))
    quantize_static(path, out, reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/main/models")
    ap.add_argument("--names", default="resnet18,mobilenet_v2")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--target", default="native")
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    print(f"CPU {cpu_model()}, host ISA {host_isa()}, target {args.target}, 1 thread, onnxruntime {ort.__version__}")
    print(f"{'model':14} {'onnxc fp32/int8':>16} {'ort int8/onnxc int8':>23} {'ort fp32/int8':>14} "
          f"{'Q/DQ left':>9} {'max steps vs ort':>16}   ms: onnxc fp32, onnxc int8, ort fp32, ort int8")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            qm = quantize(path, feed, os.path.join(tmp, f"{name}.q.onnx"))
            cf = onnxc.compile(path, output_dir=os.path.join(tmp, name + "f"), num_threads=1, fallback=False,
                               target=args.target)
            cq = onnxc.compile(qm, output_dir=os.path.join(tmp, name + "q"), num_threads=1, fallback=False,
                               target=args.target)
            assert cq.fallback_nodes == []
            counts = cq.report["op_counts"]
            left = counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0)
            of = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            oq = ort.InferenceSession(qm.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out_dq = qm.graph.node[-1]
            step = [onnx.numpy_helper.to_array(i) for i in qm.graph.initializer if i.name == out_dq.input[1]]
            got, ref = cq.run(None, feed)[0], oq.run(None, feed)[0]
            steps = float(np.abs(got.astype(np.float64) - ref).max() / step[0]) if step else float("nan")
            ts = interleaved_times({"cf": lambda: cf.run(None, feed), "cq": lambda: cq.run(None, feed),
                                    "of": lambda: of.run(None, feed), "oq": lambda: oq.run(None, feed)}, args.rounds)
            t = {k: min(v) for k, v in ts.items()}
            print(f"{name:14} {t['cf'] / t['cq']:15.2f}x {t['oq'] / t['cq']:22.2f}x {t['of'] / t['oq']:13.2f}x "
                  f"{left:9d} {steps:16.1f}   " + ", ".join(f"{t[k] * 1e3:.2f}" for k in ("cf", "cq", "of", "oq")))
            print(f"{'':14} per-round ratio median (IQR, min..max) of {args.rounds} rounds: "
                  + "; ".join(f"{lbl} {_spread([a / b for a, b in zip(ts[x], ts[y])])}"
                              for lbl, x, y in (("onnxc fp32/int8", "cf", "cq"), ("ort int8/onnxc int8", "oq", "cq"))))


if __name__ == "__main__":
    main()
