"""Models quantized by onnxruntime's quantize_dynamic (int8 weights, activations quantized at run
time): onnxc int8 vs onnxc float32 (the same model before quantization) vs onnxruntime on the
same int8 model. One thread, same process, interleaved rounds (one run of each engine per round),
thread CPU time; prints the median and the spread (min..max) per engine and the ratios of the
medians, with the CPU model, the host's ISA and the target (``--target`` builds both onnxc models
for that ISA row, e.g. avx2; onnxruntime picks its own kernels).

``--ort-optimize``: run onnxruntime's transformer optimizer (model_type bert, its Python fusions;
needs sympy) before quantizing: SkipLayerNormalization / BiasGelu, and QAttention where it fuses
the attention (it does not fuse the torch exports of models/, whose attention carries a
Where(IsNaN) guard). Otherwise the exported MatMuls become DynamicQuantizeLinear + MatMulInteger.
``--profile N``: also the N most expensive nodes of onnxc int8 (mean over the profiled runs) and
the totals per op type.

    .venv/bin/python benchmarks/bench_dq_models.py [--models DIR] [--names bert_base]
        [--rounds 10] [--target native] [--ort-optimize] [--profile 12]
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

from bench_qdq_models import interleaved_times


def prepare(path, tmp, ort_optimize):
    """(float model path, int8 model path)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    src = path
    if ort_optimize:
        from onnxruntime.transformers.optimizer import optimize_model
        opt = optimize_model(path, model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
        src = os.path.join(tmp, "opt.onnx")
        opt.save_model_to_file(src)
    pre, out = os.path.join(tmp, "pre.onnx"), os.path.join(tmp, "q.onnx")
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    quantize_dynamic(pre, out, weight_type=QuantType.QInt8, per_channel=True)
    return src, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/main/models")
    ap.add_argument("--names", default="bert_base")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--target", default="native")
    ap.add_argument("--ort-optimize", action="store_true")
    ap.add_argument("--profile", type=int, default=0)
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    print(f"CPU {cpu_model()}, host ISA {host_isa()}, target {args.target}, 1 thread, onnxruntime {ort.__version__}"
          f"{', onnxruntime transformer optimizer first' if args.ort_optimize else ''}")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            fpath, qpath = prepare(path, tmp, args.ort_optimize)
            ops = sorted({n.op_type for n in onnx.load(qpath, load_external_data=False).graph.node
                          if n.domain == "com.microsoft" or "Integer" in n.op_type or "Quantize" in n.op_type})
            print(f"{name}: int8 ops {ops}")
            cf = onnxc.compile(fpath, output_dir=os.path.join(tmp, name + "f"), num_threads=1, fallback=False,
                               target=args.target)
            cq = onnxc.compile(qpath, output_dir=os.path.join(tmp, name + "q"), num_threads=1, fallback=False,
                               target=args.target)
            oq = ort.InferenceSession(qpath, so, providers=["CPUExecutionProvider"])
            of = ort.InferenceSession(fpath, so, providers=["CPUExecutionProvider"])
            got, ref, flt = cq.run(None, feed)[0], oq.run(None, feed)[0], of.run(None, feed)[0]
            span = float(np.abs(flt).max())
            print(f"  max |onnxc int8 - ort int8| / max|float| = {np.abs(got - ref).max() / span:.2e}, "
                  f"ort int8 vs float {np.abs(ref - flt).max() / span:.2e}")
            t = interleaved_times({"onnxc fp32": lambda: cf.run(None, feed), "onnxc int8": lambda: cq.run(None, feed),
                             "ort int8": lambda: oq.run(None, feed), "ort fp32": lambda: of.run(None, feed)},
                            args.rounds)
            med = {k: statistics.median(v) for k, v in t.items()}
            for k, v in t.items():
                print(f"  {k:11} median {med[k] * 1e3:8.1f} ms  (min {min(v) * 1e3:.1f}, max {max(v) * 1e3:.1f}, "
                      f"{len(v)} rounds)")
            print(f"  onnxc int8 speed-up over onnxc fp32: {med['onnxc fp32'] / med['onnxc int8']:.2f}x; "
                  f"over ort int8: {med['ort int8'] / med['onnxc int8']:.2f}x; "
                  f"ort int8 over ort fp32: {med['ort fp32'] / med['ort int8']:.2f}x")
            if args.profile:
                rows = cq.profile(feed, repeat=max(args.rounds, 5))
                from onnxc.cli import print_profile
                print_profile(rows, args.profile)


if __name__ == "__main__":
    main()
