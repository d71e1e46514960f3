"""Quickstart: compile a real model that ships inside the onnx package, run it, compare with
onnxruntime (if installed) and time both.

    python examples/quickstart.py [--model PATH] [--out DIR] [--repeat N]

Default model: onnx/backend/test/data/light/light_squeezenet.onnx (SqueezeNet; its weights are
ConstantOfShape nodes that onnxc folds at compile time).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

import onnxc


def default_model() -> str:
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light",
                        "light_squeezenet.onnx")


def median_ms(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=default_model())
    ap.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "onnxc-quickstart"))
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    t = time.perf_counter()
    model = onnxc.compile(args.model, output_dir=args.out)
    print(f"compiled {os.path.basename(args.model)} -> {args.out} in {time.perf_counter() - t:.2f} s "
          f"(cached builds load instantly)")
    spec = model.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
    feed = {spec.name: x}
    out = model.run(None, feed)[0].reshape(-1)
    top = np.argsort(-out)[:5]
    print("top-5 classes:", ", ".join(f"{i} ({out[i]:.4f})" for i in top))
    if np.allclose(out, out[0]):
        print("  (the onnx package's light models have constant weights, so every class scores the same)")
    ms = median_ms(lambda: model.run(None, feed), args.repeat)
    print(f"onnxc        : {ms:8.3f} ms/run (median of {args.repeat})")
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipping the side-by-side comparison")
        return 0
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    ref = sess.run(None, feed)[0].reshape(-1)
    err = float(np.max(np.abs(ref - out)) / max(float(np.max(np.abs(ref))), 1e-30))
    ort_ms = median_ms(lambda: sess.run(None, feed), args.repeat)
    print(f"onnxruntime  : {ort_ms:8.3f} ms/run   (speedup of onnxc over onnxruntime: {ort_ms / ms:.2f}x)")
    print(f"max |onnxc - onnxruntime| / max|ref| = {err:.2e}  {'OK' if err <= 1e-4 else 'MISMATCH'}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
