"""Batch inference with Ray Data: a compiled model on a pool of actors (docs/deploy.md).

    pip install "onnxc[ray]"
    python examples/ray_batch_inference.py [model.onnx] [--n 4096] [--batch 32] [--actors 2]

Compiles the model once (on the driver) for a fixed batch size, starts a local Ray cluster, and
maps onnxc.BatchPredictor over the inputs: each actor unpickles the compiled model once (the
build travels by value and is verified on the worker) and runs batches of any size through it.
Without a model argument it uses a small CNN. Prints the time against one process and checks
that both give the same outputs (tests/test_batch_engines.py runs ray_predict).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import onnxc


def ray_predict(model, x: np.ndarray, actors: int = 2, batch_size: int = 100, predictor=onnxc.BatchPredictor,
                blocks: int = 8):
    """Outputs of ``model`` (a CompiledModel) over the rows of ``x``, computed by ``actors`` Ray actors
    (ray.init must have been called): a list of rows ({output name: array}) in input order."""
    import ray.data
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = ray.data.from_numpy(np.array_split(x, blocks))  # several blocks: work for every actor
    return ds.map_batches(predictor, fn_constructor_args=(model,), concurrency=actors, batch_size=batch_size,
                          batch_format="numpy").take_all()


def small_cnn(batch: int):
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w", (16, 3, 3, 3)), ("fw", (10, 16)), ("fb", (10,)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    g = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", help="an .onnx model with one input (default: a small CNN)")
    ap.add_argument("--n", type=int, default=4096, help="number of inputs")
    ap.add_argument("--batch", type=int, default=32, help="batch size the model is compiled for")
    ap.add_argument("--actors", type=int, default=2)
    args = ap.parse_args()
    import onnx
    import ray
    proto = onnx.load(args.model) if args.model else small_cnn(args.batch)
    inp = proto.graph.input[0]
    shape = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    shape[0] = args.batch
    model = onnxc.compile(proto, input_shapes={inp.name: shape}, num_threads=1)
    x = np.random.default_rng(0).standard_normal([args.n] + shape[1:]).astype(np.float32)
    t = time.perf_counter()
    ref = onnxc.BatchPredictor(model)({inp.name: x})
    t_one = time.perf_counter() - t
    ray.init(num_cpus=args.actors, include_dashboard=False)
    try:
        t = time.perf_counter()
        rows = ray_predict(model, x, args.actors)
        t_ray = time.perf_counter() - t
    finally:
        ray.shutdown()
    name = model.get_outputs()[0].name
    got = np.stack([r[name] for r in rows])
    print(f"{args.n} inputs: one process {t_one:.2f} s, Ray with {args.actors} actors {t_ray:.2f} s "
          f"(cluster start excluded); max |difference| {np.max(np.abs(got - ref[name])):.2e}")


if __name__ == "__main__":
    main()
