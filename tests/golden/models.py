"""The small models whose generated C is checked in under tests/golden/ (tests/test_golden_c.py).

Each covers a different path of the code generator: GEMM epilogue fusion, NCHWc convolution with
a fused activation and pooling, an elementwise chain with broadcasting, a transformer block
(LayerNormalization, MatMul, Gelu, Softmax) and data movement with integer indices and a
float16 cast.  Weights come from fixed seeds; every model is built the same on every machine.

Regenerate the golden files after a change that is meant to alter the generated C:

    .venv/bin/python tests/golden/models.py          # rewrites tests/golden/*.c
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
TARGET = "avx2"   # fixed, so the C (NCHWc block, packed GEMM tiles) is the same on every host
F = TensorProto.FLOAT


def _w(seed, *shape):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset=18):
    g = helper.make_graph(nodes, "golden", inputs, outputs,
                          initializer=[numpy_helper.from_array(a, n) for n, a in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def mlp():
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["m"]),
             helper.make_node("Add", ["m", "b2"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [4, 32])],
                  [helper.make_tensor_value_info("y", F, [4, 10])],
                  {"w1": _w(1, 48, 32), "b1": _w(2, 48), "w2": _w(3, 48, 10), "b2": _w(4, 10)})


def convnet():
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]),
             helper.make_node("MaxPool", ["s"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 8, 12, 12])],
                  [helper.make_tensor_value_info("y", F, [1, 16, 1, 1])],
                  {"w1": _w(5, 16, 8, 3, 3), "b1": _w(6, 16), "w2": _w(7, 16, 16, 1, 1)})


def chain():
    nodes = [helper.make_node("Mul", ["a", "k"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["s"]),
             helper.make_node("Sigmoid", ["s"], ["g"]),
             helper.make_node("Mul", ["g", "a"], ["t"]),
             helper.make_node("Clip", ["t", "lo", "hi"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("a", F, [2, 3, 16]),
                          helper.make_tensor_value_info("b", F, [3, 1])],
                  [helper.make_tensor_value_info("y", F, [2, 3, 16])],
                  {"k": np.array([1.5], np.float32), "lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)})


def transformer():
    d = 16
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "be"], ["n"], axis=-1, epsilon=1e-5),
             helper.make_node("MatMul", ["n", "wq"], ["q"]),
             helper.make_node("MatMul", ["n", "wk"], ["k"]),
             helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["q", "kt"], ["qk"]),
             helper.make_node("Softmax", ["qk"], ["a"], axis=-1),
             helper.make_node("MatMul", ["a", "n"], ["o"]),
             helper.make_node("MatMul", ["o", "w1"], ["h"]),
             helper.make_node("Gelu", ["h"], ["y"])]
    return _model(nodes, [helper.make_tensor_value_info("x", F, [1, 6, d])],
                  [helper.make_tensor_value_info("y", F, [1, 6, 2 * d])],
                  {"g": np.ones(d, np.float32), "be": np.zeros(d, np.float32), "wq": _w(8, d, d), "wk": _w(9, d, d),
                   "w1": _w(10, d, 2 * d)}, opset=20)


def indexing():
    nodes = [helper.make_node("Gather", ["table", "ids"], ["e"], axis=0),
             helper.make_node("Reshape", ["e", "shape"], ["r"]),
             helper.make_node("Concat", ["r", "r"], ["c"], axis=1),
             helper.make_node("Slice", ["c", "st", "en", "ax"], ["s"]),
             helper.make_node("Cast", ["s"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Cast", ["h"], ["y"], to=TensorProto.FLOAT),
             helper.make_node("ArgMax", ["y"], ["i"], axis=1, keepdims=0)]
    return _model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
                  [helper.make_tensor_value_info("y", F, [2, 10]),
                   helper.make_tensor_value_info("i", TensorProto.INT64, [2])],
                  {"table": _w(11, 7, 4), "shape": np.array([2, 12], np.int64), "st": np.array([3], np.int64),
                   "en": np.array([13], np.int64), "ax": np.array([1], np.int64)})


MODELS = {"mlp": mlp, "convnet": convnet, "chain": chain, "transformer": transformer, "indexing": indexing}


def generated_c(name: str) -> str:
    """The C onnxc generates for model ``name`` today (its version number masked, so that a
    release does not count as a change of the generated code)."""
    from onnxc import __version__
    from onnxc.driver import generate_c
    return generate_c(MODELS[name](), target=TARGET, fallback=False).replace(
        f"generated by onnxc {__version__} ", "generated by onnxc <version> ")


def golden_path(name: str) -> Path:
    return HERE / f"{name}.c"


def main() -> int:
    for name in MODELS:
        golden_path(name).write_text(generated_c(name))
        print(f"wrote {golden_path(name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
