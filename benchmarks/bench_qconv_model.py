"""Compiled single-layer models: onnxc QLinearConv (int8, what compiler/providers/c/quant_conv.py
emits: NCHW <-> NHWC transposes included) vs onnxc float Conv (the same layer, opt_level layout:
NCHWc / Winograd as the compiler picks) vs onnxruntime running the same QLinearConv model, one
thread, best thread CPU time of repeated runs (onnxruntime with one intra-op thread computes on
the calling thread). Every int8 output is checked against onnxruntime's first.

    .venv/bin/python benchmarks/bench_qconv_model.py [--target amx] [--seconds 0.5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper

import onnxc
from onnxc.cpu import host_isa

LAYERS = [  # name, C, H, W, M, K, stride, pad, group
    ("3x3 64->64 @56", 64, 56, 56, 64, 3, 1, 1, 1),
    ("1x1 256->64 @56", 256, 56, 56, 64, 1, 1, 0, 1),
    ("3x3/2 128->128 @56", 128, 56, 56, 128, 3, 2, 1, 1),
    ("3x3 256->256 @14", 256, 14, 14, 256, 3, 1, 1, 1),
    ("1x1 1024->256 @14", 1024, 14, 14, 256, 1, 1, 0, 1),
    ("dw3x3 144 @56", 144, 56, 56, 144, 3, 1, 1, 144),
]


def model(op, C, H, W, M, K, s, p, g, rng):
    attrs = dict(kernel_shape=[K, K], strides=[s, s], pads=[p] * 4, group=g)
    w = rng.standard_normal((M, C // g, K, K)).astype(np.float32)
    if op == "Conv":
        inits = {"w": w * 0.05, "b": rng.standard_normal(M).astype(np.float32)}
        node = helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)
        dt = onnx.TensorProto.FLOAT
    else:
        wq = np.round(w / np.abs(w).reshape(M, -1).max(1).reshape(M, 1, 1, 1) * 127).astype(np.int8)
        inits = {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8), "w": wq,
                 "ws": (rng.random(M) * 0.002 + 0.001).astype(np.float32), "wz": np.zeros(M, np.int8),
                 "ys": np.array(0.5, np.float32), "yz": np.array(128, np.uint8),
                 "b": rng.integers(-2000, 2000, M).astype(np.int32)}
        node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
        dt = onnx.TensorProto.UINT8
    graph = helper.make_graph([node], "layer", [helper.make_tensor_value_info("x", dt, [1, C, H, W])],
                              [helper.make_tensor_value_info("y", dt, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    return onnx.shape_inference.infer_shapes(m)


def best(fn, seconds):
    fn()
    t_end, b = time.perf_counter() + seconds, float("inf")
    while time.perf_counter() < t_end or b == float("inf"):
        t0 = time.thread_time()
        fn()
        b = min(b, time.thread_time() - t0)
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=host_isa())
    ap.add_argument("--seconds", type=float, default=0.5)
    args = ap.parse_args()
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    rng = np.random.default_rng(0)
    print(f"target {args.target}; {os.cpu_count()} CPUs; 1 thread, best thread CPU time")
    print(f"{'layer':<22} {'f32 ms':>8} {'int8 ms':>8} {'ort ms':>8} {'int8/f32':>9} {'ort/int8':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, *spec in LAYERS:
            mf, mq = model("Conv", *spec, rng), model("QLinearConv", *spec, rng)
            C, H, W = spec[0], spec[1], spec[2]
            xq = rng.integers(0, 256, (1, C, H, W)).astype(np.uint8)
            xf = ((xq.astype(np.float32) - 128) * 0.02)
            opts = dict(target=args.target, num_threads=1, fallback=False)
            cf = onnxc.compile(mf, output_dir=f"{tmp}/f{len(name)}{C}", **opts)
            cq = onnxc.compile(mq, output_dir=f"{tmp}/q{len(name)}{C}", **opts)
            sess = ort.InferenceSession(mq.SerializeToString(), so, providers=["CPUExecutionProvider"])
            want = sess.run(None, {"x": xq})[0]
            same = np.array_equal(cq.run(None, {"x": xq})[0], want)
            tf = best(lambda: cf.run(None, {"x": xf}), args.seconds)
            tq = best(lambda: cq.run(None, {"x": xq}), args.seconds)
            to = best(lambda: sess.run(None, {"x": xq}), args.seconds)
            print(f"{name:<22} {tf * 1e3:8.3f} {tq * 1e3:8.3f} {to * 1e3:8.3f} {tf / tq:9.2f} {to / tq:9.2f}"
                  + ("" if same else "  (int8 differs from onnxruntime!)"), flush=True)


if __name__ == "__main__":
    main()
