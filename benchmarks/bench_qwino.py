"""Integer Winograd F(2x2, 3x3) for int8 3x3 convolutions (runtime_c/qconv/qconv_wino.c) against
the direct int8 path, on CNNs quantized by onnxruntime's quantize_static (QDQ, per-channel int8
weights, uint8 activations: bench_qdq_models.quantize): onnxc fp32, onnxc int8 with Winograd and
onnxc int8 without (compiler/kernels/qwino.ENABLED switched off for that compile), all built for
``--target`` (default avx2, where the compiler uses it), 1 thread, same process, interleaved rounds
(one run of each per round, thread CPU time); prints each engine's median ms and the per-round
ratios' median and range, checks the two int8 outputs are identical, and with ``--nodes`` the
per-node times (min over profiled runs) of the 3x3 stride-1 convolutions in both int8 modules.

    .venv/bin/python benchmarks/bench_qwino.py [--models DIR] [--names resnet18] [--rounds 11]
        [--target avx2] [--nodes 7]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx

import onnxc
from onnxc.kernels import qwino as QW

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_qdq_models import interleaved_times, quantize  # noqa: E402
from onnxc.cpu import cpu_model  # noqa: E402


def node_min(model, feed, runs):
    best = {}
    for _ in range(runs):
        for r in model.profile(feed, repeat=1):
            if r["op"] in ("QLinearConv", "Conv") or "Conv" in r["op"]:
                best[r["name"]] = min(best.get(r["name"], float("inf")), r["ms"])
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="/work/main/models")
    ap.add_argument("--names", default="resnet18")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--target", default="avx2")
    ap.add_argument("--nodes", type=int, default=0, help="profiled runs per module for per-node times (0: none)")
    args = ap.parse_args()
    print(f"CPU {cpu_model()}, target {args.target}, 1 thread, {args.rounds} interleaved rounds")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names.split(","):
            path = os.path.join(args.models, f"{name}.onnx")
            feed = dict(np.load(os.path.join(args.models, f"{name}.inputs.npz")))
            qm = quantize(path, feed, os.path.join(tmp, f"{name}.q.onnx"))
            opts = dict(num_threads=1, fallback=False, target=args.target)
            cf = onnxc.compile(path, output_dir=os.path.join(tmp, name + "f"), **opts)
            cw = onnxc.compile(qm, output_dir=os.path.join(tmp, name + "w"), **opts)
            qd = onnx.ModelProto()
            qd.CopyFrom(qm)
            qd.doc_string += " (direct)"  # another cache key: the module name would be the Winograd build's
            QW.ENABLED = False
            try:
                cd = onnxc.compile(qd, output_dir=os.path.join(tmp, name + "d"), **opts)
            finally:
                QW.ENABLED = True
            n_wino = open(os.path.join(tmp, name + "w", "model.c")).read().count("onnxc_qconv_wino(")
            same = np.array_equal(cw.run(None, feed)[0], cd.run(None, feed)[0])
            t = interleaved_times({"fp32": lambda: cf.run(None, feed), "int8 wino": lambda: cw.run(None, feed),
                                   "int8 direct": lambda: cd.run(None, feed)}, args.rounds)
            t = {k: np.array(v) for k, v in t.items()}
            print(f"{name}: {n_wino} Winograd convolutions, int8 outputs identical: {same}")
            for k, v in t.items():
                print(f"  {k:12} median {np.median(v) * 1e3:7.2f} ms (min {v.min() * 1e3:.2f})")
            for a, b in (("fp32", "int8 wino"), ("fp32", "int8 direct"), ("int8 direct", "int8 wino")):
                r = t[a] / t[b]
                q1, q3 = np.percentile(r, [25, 75])
                print(f"  {a} / {b}: median {np.median(r):.3f}x (IQR {q1:.3f}-{q3:.3f}, range {r.min():.3f}-{r.max():.3f})")
            if args.nodes:
                nw, nd = node_min(cw, feed, args.nodes), node_min(cd, feed, args.nodes)
                nf = node_min(cf, feed, args.nodes)
                print("  fp32 conv nodes (min ms):", ", ".join(f"{k[:40]} {v:.3f}" for k, v in sorted(nf.items(), key=lambda kv: -kv[1])[:24]))
                print("  per node (min ms of profiled runs): name, direct, winograd, speed-up")
                for k in sorted(nw, key=lambda k: -nd.get(k, 0)):
                    if k in nd and nd[k] > 0.05:
                        print(f"    {k[:60]:60} {nd[k]:7.3f} {nw[k]:7.3f} {nd[k] / nw[k]:6.2f}x")


if __name__ == "__main__":
    main()
