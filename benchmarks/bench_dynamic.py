"""Cost of shape specialization: a CNN with free batch/height/width run through
onnxc.InferenceSession without input_shapes.  Reports, per new input shape, the first-call
latency (compile + build + load), a warm call, a cold disk-cache hit from a fresh session, the
on-disk size of the specialization, and onnxruntime's call time for the same shape.

    python benchmarks/bench_dynamic.py [--cache DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper


def cnn_model():
    rng = np.random.default_rng(0)
    w = lambda *s: numpy_helper.from_array((rng.standard_normal(s) * 0.1).astype(np.float32))
    inits = [w(16, 3, 3, 3), w(16), w(32, 16, 3, 3), w(32), w(10, 32), w(10)]
    for t, n in zip(inits, ["w1", "b1", "w2", "b2", "wf", "bf"]):
        t.name = n
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "dyn_cnn", [helper.make_tensor_value_info("x", 1, ["N", 3, "H", "W"])],
                          [helper.make_tensor_value_info("y", 1, ["N", 10])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="", help="cache directory (default: a fresh temporary one)")
    args = ap.parse_args()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="onnxc-dyn-"))
    os.environ["ONNXC_CACHE_DIR"] = str(cache)
    import onnxc
    model = cnn_model().SerializeToString()
    try:
        import onnxruntime as ort
        ort_sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    except ImportError:
        ort_sess = None
    sess = onnxc.InferenceSession(model)
    print(f"{'shape':>18} {'first call ms':>14} {'warm ms':>9} {'disk hit ms':>12} {'cache MB':>9} {'ort ms':>8}")
    for shape in [(1, 3, 32, 32), (1, 3, 64, 48), (4, 3, 32, 32), (1, 3, 224, 224)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        before = set((cache / "models").iterdir()) if (cache / "models").exists() else set()
        t = time.perf_counter()
        out = sess.run(None, {"x": x})[0]
        first = time.perf_counter() - t
        t = time.perf_counter()
        sess.run(None, {"x": x})
        warm = time.perf_counter() - t
        new = [p for p in (cache / "models").iterdir() if p not in before]
        t = time.perf_counter()
        onnxc.InferenceSession(model).run(None, {"x": x})  # fresh session: loads the build from disk
        disk = time.perf_counter() - t
        ort_ms = ""
        if ort_sess is not None:
            ref = ort_sess.run(None, {"x": x})[0]
            err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-30))
            assert err < 1e-4, f"onnxc differs from onnxruntime by {err:.2e} for {shape}"
            t = time.perf_counter()
            ort_sess.run(None, {"x": x})
            ort_ms = f"{(time.perf_counter() - t) * 1e3:8.2f}"
        size = sum(du(p) for p in new) / 1e6
        print(f"{str(shape):>18} {first * 1e3:14.0f} {warm * 1e3:9.2f} {disk * 1e3:12.1f} {size:9.2f} {ort_ms:>8}")
    if not args.cache:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
