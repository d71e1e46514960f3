"""Models quantized by onnxruntime's quantize_dynamic (int8 weights, activations quantized at run
time): onnxc int8 vs onnxc float32 (the same model before quantization) vs onnxruntime on the
same int8 model. Same process, interleaved rounds (one run of each engine per round), thread CPU
time at ``--threads 1`` (default), wall time with more; prints the median and the spread (min..max) per engine and the ratios of the
medians, with the CPU model, the host's ISA and the target (``--target`` builds both onnxc models
for that ISA row, e.g. avx2; onnxruntime picks its own kernels).

``--ort-optimize``: run onnxruntime's transformer optimizer (model_type bert, its Python fusions;
needs sympy) before quantizing: SkipLayerNormalization / BiasGelu, and QAttention where it fuses
the attention (it does not fuse the torch exports of models/, whose attention carries a
Where(IsNaN) guard). Otherwise the exported MatMuls become DynamicQuantizeLinear + MatMulInteger.
``--profile N``: also the N most expensive nodes of onnxc int8 (mean over the profiled runs) and
the totals per op type. ``--without-pass NAME``: also onnxc int8 built without that pass (an A/B
of one rewrite in the same interleaved rounds; e.g. fuse_matmul_integer_to_float, which also
keeps the attention unfused).

    .venv/bin/python benchmarks/bench_dq_models.py [--models DIR] [--names bert_base]
        [--rounds 10] [--target native] [--threads 1] [--ort-optimize] [--profile 12] [--without-pass NAME]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import numpy as np
import onnx

import onnxc
from onnxc.cpu import cpu_model, host_isa

from bench_qdq_models import interleaved_times, spread


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


@contextlib.contextmanager
def without_pass(name):
    """The pass registry without pass ``name`` (for a build to compare against)."""
    from onnxc.passes import manager
    saved = list(manager._REGISTRY)
    manager._REGISTRY[:] = [p for p in saved if p.name != name]
    if len(manager._REGISTRY) == len(saved):
        raise SystemExit(f"no pass named {name!r}")
    try:
        yield
    finally:
        manager._REGISTRY[:] = saved


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/main/models")
    ap.add_argument("--names", default="bert_base")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--target", default="native")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ort-optimize", action="store_true")
    ap.add_argument("--profile", type=int, default=0)
    ap.add_argument("--without-pass", default=None)
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = args.threads, 1
    so.log_severity_level = 3
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    print(f"CPU {cpu_model()}, host ISA {host_isa()}, target {args.target}, {args.threads} thread(s) "
          f"({'thread CPU' if args.threads == 1 else 'wall'} time), onnxruntime {ort.__version__}"
          f"{', onnxruntime transformer optimizer first' if args.ort_optimize else ''}")
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            fpath, qpath = prepare(path, tmp, args.ort_optimize)
            ops = sorted({n.op_type for n in onnx.load(qpath, load_external_data=False).graph.node
                          if n.domain == "com.microsoft" or "Integer" in n.op_type or "Quantize" in n.op_type})
            print(f"{name}: int8 ops {ops}")
            cf = onnxc.compile(fpath, output_dir=os.path.join(tmp, name + "f"), num_threads=args.threads,
                               fallback=False, target=args.target)
            cq = onnxc.compile(qpath, output_dir=os.path.join(tmp, name + "q"), num_threads=args.threads,
                               fallback=False, target=args.target)
            engines = {"onnxc fp32": lambda: cf.run(None, feed), "onnxc int8": lambda: cq.run(None, feed)}
            if args.without_pass:
                with without_pass(args.without_pass):  # its own directory: never the other build
                    cb = onnxc.compile(qpath, output_dir=os.path.join(tmp, name + "b"), num_threads=args.threads,
                                       fallback=False, target=args.target, force=True,
                                       prefix="onnxc_ab")  # another key and module name
                engines["int8 -pass"] = lambda: cb.run(None, feed)
            oq = ort.InferenceSession(qpath, so, providers=["CPUExecutionProvider"])
            of = ort.InferenceSession(fpath, so, providers=["CPUExecutionProvider"])
            got, ref, flt = cq.run(None, feed)[0], oq.run(None, feed)[0], of.run(None, feed)[0]
            span = float(np.abs(flt).max())
            print(f"  max |onnxc int8 - ort int8| / max|float| = {np.abs(got - ref).max() / span:.2e}, "
                  f"ort int8 vs float {np.abs(ref - flt).max() / span:.2e}")
            if args.without_pass:
                prev = cb.run(None, feed)[0]
                print(f"  without {args.without_pass}: ops {cb.report['op_counts']}\n  with it: ops "
                      f"{cq.report['op_counts']}\n  max |int8 without - ort int8| / max|float| = "
                      f"{np.abs(prev - ref).max() / span:.2e}, with vs without {np.abs(got - prev).max() / span:.2e}")
            engines.update({"ort int8": lambda: oq.run(None, feed), "ort fp32": lambda: of.run(None, feed)})
            t = interleaved_times(engines, args.rounds, clock)
            med = {k: statistics.median(v) for k, v in t.items()}
            print("\n".join(spread(t, (("onnxc fp32", "onnxc int8"), ("ort int8", "onnxc int8"),
                                       ("ort fp32", "ort int8")))))
            print(f"  onnxc int8 speed-up over onnxc fp32: {med['onnxc fp32'] / med['onnxc int8']:.2f}x; "
                  f"over ort int8: {med['ort int8'] / med['onnxc int8']:.2f}x; "
                  f"ort int8 over ort fp32: {med['ort fp32'] / med['ort int8']:.2f}x")
            if args.without_pass:
                r = sorted(a / b for a, b in zip(t["int8 -pass"], t["onnxc int8"]))
                print(f"  onnxc int8 over int8 without {args.without_pass}: {med['int8 -pass'] / med['onnxc int8']:.2f}x "
                      f"(per-round ratios {r[0]:.2f}..{r[-1]:.2f}, IQR {r[len(r) // 4]:.2f}..{r[(3 * len(r)) // 4]:.2f})")
            if args.profile:
                rows = cq.profile(feed, repeat=max(args.rounds, 5))
                from onnxc.cli import print_profile
                print_profile(rows, args.profile)


if __name__ == "__main__":
    main()
