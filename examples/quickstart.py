"""Quickstart: compile a real model that ships inside the onnx package, run it, compare with
onnxruntime (if installed) and time both.

    python examples/quickstart.py [--model PATH] [--out DIR] [--repeat N]

Default model: onnx/backend/test/data/light/light_squeezenet.onnx (SqueezeNet). The onnx
package's light models store every weight as a ConstantOfShape fill of one value, which makes
every output the same whatever the input: a comparison on them would prove nothing, so the
fills are replaced by seeded random weights first (``with_random_weights``).
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


def with_random_weights(model, seed: int = 0):
    """``model`` (an onnx.ModelProto) with each ConstantOfShape weight fill replaced by a Constant
    of random values: He-scaled normal (std sqrt(2 / fan_in)) for tensors of 2 or more dimensions,
    U[0.5, 1.5] for 1-D ones (biases, and BatchNorm scales, means and variances, which must stay
    positive).  Used by tests/test_light_models.py too."""
    import onnx
    from onnx import helper, numpy_helper
    shapes = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input and node.input[0] in shapes:
            shape = [int(d) for d in shapes[node.input[0]]]
            fill = next((numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"),
                        np.zeros(1, np.float32))
            if len(shape) >= 2:
                w = rng.standard_normal(shape) * np.sqrt(2.0 / max(int(np.prod(shape[1:])), 1))
            else:
                w = rng.uniform(0.5, 1.5, shape)
            node = helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                    value=numpy_helper.from_array(w.astype(fill.dtype), node.output[0]))
        out.graph.node.append(node)
    used = {name for n in out.graph.node for name in n.input}
    unused = {t.name for t in model.graph.initializer} - used  # the fills' shapes
    keep_inits = [t for t in out.graph.initializer if t.name not in unused]
    keep_inputs = [i for i in out.graph.input if i.name not in unused]
    del out.graph.initializer[:], out.graph.input[:]
    out.graph.initializer.extend(keep_inits)
    out.graph.input.extend(keep_inputs)
    return out


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

    import onnx
    proto = onnx.load(args.model)
    if any(n.op_type == "ConstantOfShape" for n in proto.graph.node):
        proto = with_random_weights(proto)
        print("weights: ConstantOfShape fills replaced by seeded random weights (with_random_weights)")
    t = time.perf_counter()
    model = onnxc.compile(proto, output_dir=args.out)
    print(f"compiled {os.path.basename(args.model)} -> {args.out} in {time.perf_counter() - t:.2f} s "
          f"(cached builds load instantly)")
    spec = model.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(spec.shape).astype(np.float32)
    feed = {spec.name: x}
    out = model.run(None, feed)[0].reshape(-1)
    top = np.argsort(-out)[:5]
    print("top-5 classes:", ", ".join(f"{i} ({out[i]:.4f})" for i in top))
    ms = median_ms(lambda: model.run(None, feed), args.repeat)
    print(f"onnxc        : {ms:8.3f} ms/run (median of {args.repeat})")
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipping the side-by-side comparison")
        return 0
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feed)[0].reshape(-1)
    err = float(np.max(np.abs(ref - out)) / max(float(np.max(np.abs(ref))), 1e-30))
    ort_ms = median_ms(lambda: sess.run(None, feed), args.repeat)
    print(f"onnxruntime  : {ort_ms:8.3f} ms/run   (speedup of onnxc over onnxruntime: {ort_ms / ms:.2f}x)")
    print(f"max |onnxc - onnxruntime| / max|ref| = {err:.2e}  {'OK' if err <= 1e-4 else 'MISMATCH'}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
