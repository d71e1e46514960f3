"""Whole CNNs quantized by onnxruntime's quantize_static (QDQ format, per-channel int8 weights,
uint8 activations, random calibration data): onnxc int8 (the QDQ passes turn the graph into
QLinearConv / QLinearAdd / ... nodes) vs onnxc float32 (the same model before quantization) vs
onnxruntime on the same QDQ model (its own QDQ fusion) and on the float model; same process,
interleaved rounds (one run of each engine per round).  Prints the ratios of the best times and,
per engine, the median and range in ms and the per-round ratios' median and range, the CPU model,
the host's ISA and the target, the Q/DQ nodes left after compiling and the int8 output's distance
to onnxruntime's (in output steps).  ``--target`` builds both onnxc models for that ISA row (e.g.
avx2); onnxruntime picks its own kernels.  ``--threads 1`` (default) times the calling thread's CPU
time; more threads time wall clock (the workers' time is not the caller's).

    .venv/bin/python benchmarks/bench_qdq_models.py [--models DIR] [--names resnet18,mobilenet_v2]
        [--rounds 10] [--target native] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import onnx

import onnxc
from onnxc.cpu import cpu_model, host_isa


def interleaved_times(fns, rounds, clock=time.thread_time):
    """{name: [seconds per round]}: ``rounds`` rounds of one run of each fn, after one warm-up run
    each (load changes hit every engine alike); ``clock``: thread CPU time (one thread) or
    time.perf_counter (several)."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for k, fn in fns.items():
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return times


def spread(times, pairs):
    """Lines: each engine's median ms (min..max), then for each (a, b) in pairs the per-round
    ratio a / b's median and range."""
    out = [f"    {k:11} median {statistics.median(v) * 1e3:8.2f} ms (min {min(v) * 1e3:.2f}, max {max(v) * 1e3:.2f})"
           for k, v in times.items()]
    for a, b in pairs:
        r = [x / y for x, y in zip(times[a], times[b])]
        out.append(f"    {a} / {b}: median {statistics.median(r):.2f}x (range {min(r):.2f}-{max(r):.2f}, "
                   f"{len(r)} rounds)")
    return out


def best_interleaved(fns, rounds):
    """{name: best thread CPU time} over interleaved_times' rounds."""
    return {k: min(v) for k, v in interleaved_times(fns, rounds).items()}


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
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"CPU {cpu_model()}, host ISA {host_isa()}, target {args.target}, {args.threads} thread(s) "
          f"({'thread CPU' if args.threads == 1 else 'wall'} time), {args.rounds} interleaved rounds, "
          f"onnxruntime {ort.__version__}")
    print(f"{'model':14} {'onnxc fp32/int8':>16} {'ort int8/onnxc int8':>23} {'ort fp32/int8':>14} "
          f"{'Q/DQ left':>9} {'max steps vs ort':>16}   ms: onnxc fp32, onnxc int8, ort fp32, ort int8")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            qm = quantize(path, feed, os.path.join(tmp, f"{name}.q.onnx"))
            cf = onnxc.compile(path, output_dir=os.path.join(tmp, name + "f"), num_threads=args.threads,
                               fallback=False, target=args.target)
            cq = onnxc.compile(qm, output_dir=os.path.join(tmp, name + "q"), num_threads=args.threads,
                               fallback=False, target=args.target)
            assert cq.fallback_nodes == []
            counts = cq.report["op_counts"]
            left = counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0)
            of = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            oq = ort.InferenceSession(qm.SerializeToString(), so, providers=["CPUExecutionProvider"])
            out_dq = qm.graph.node[-1]
            step = [onnx.numpy_helper.to_array(i) for i in qm.graph.initializer if i.name == out_dq.input[1]]
            got, ref = cq.run(None, feed)[0], oq.run(None, feed)[0]
            steps = float(np.abs(got.astype(np.float64) - ref).max() / step[0]) if step else float("nan")
            times = interleaved_times({"cf": lambda: cf.run(None, feed), "cq": lambda: cq.run(None, feed),
                                       "of": lambda: of.run(None, feed), "oq": lambda: oq.run(None, feed)},
                                      args.rounds, clock)
            t = {k: min(v) for k, v in times.items()}
            print(f"{name:14} {t['cf'] / t['cq']:15.2f}x {t['oq'] / t['cq']:22.2f}x {t['of'] / t['oq']:13.2f}x "
                  f"{left:9d} {steps:16.1f}   " + ", ".join(f"{t[k] * 1e3:.2f}" for k in ("cf", "cq", "of", "oq")))
            print("\n".join(spread(times, (("cf", "cq"), ("oq", "cq"), ("of", "oq")))))


if __name__ == "__main__":
    main()
