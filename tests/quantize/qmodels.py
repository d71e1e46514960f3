"""Small float models for the quantizer tests."""
import numpy as np
from onnx import helper

from helpers import make_model


def small_cnn(seed=0, batch=1):
    """Conv+Relu, Conv+Relu, GlobalAveragePool, Flatten, MatMul+Add (a Gemm after basic)."""
    rng = np.random.default_rng(seed)
    inits = {"W1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
             "B1": rng.standard_normal(8).astype(np.float32) * 0.1,
             "W2": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.2,
             "B2": rng.standard_normal(16).astype(np.float32) * 0.1,
             "WG": rng.standard_normal((16, 10)).astype(np.float32) * 0.3,
             "BG": rng.standard_normal(10).astype(np.float32) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "WG"], ["m"], name="fc"),
             helper.make_node("Add", ["m", "BG"], ["y"], name="fc_bias")]
    return make_model(nodes, [("x", np.float32, [batch, 3, 16, 16])], [("y", np.float32, [batch, 10])], inits)


def cnn_feeds(n, seed=1, batch=1):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((batch, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def mlp(outlier=None, seed=0, seq=None):
    """x [B, 16] -> MatMul W1 -> Relu -> MatMul W2 -> Relu -> MatMul W3 -> y [B, 8].
    outlier=k: hidden unit k of the first layer fires ~1000x larger than the others on every input,
    so the second MatMul's input range is dominated by it (the classic outlier-activation layer)."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.25
    b1 = np.full(32, 0.1, np.float32)
    w2 = rng.standard_normal((32, 32)).astype(np.float32) * 0.2
    w3 = rng.standard_normal((32, 8)).astype(np.float32) * 0.2
    if outlier is not None:
        b1[outlier] = 300.0
        w2[outlier, :] *= 1e-3  # the outlier unit still contributes normally to the output
    shape = [4, 16] if seq is None else [1, seq, 16]
    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h1"], name="mm1"),
             helper.make_node("Add", ["h1", "B1"], ["h1b"], name="add1"),
             helper.make_node("Relu", ["h1b"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "W2"], ["h2"], name="mm2"),
             helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
             helper.make_node("MatMul", ["a2", "W3"], ["y"], name="mm3")]
    out_shape = [4, 8] if seq is None else [1, seq, 8]
    return make_model(nodes, [("x", np.float32, shape)], [("y", np.float32, out_shape)],
                      {"W1": w1, "B1": b1, "W2": w2, "W3": w3})


def mlp_feeds(n, seed=1, seq=None):
    rng = np.random.default_rng(seed)
    shape = (4, 16) if seq is None else (1, seq, 16)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def sqnr(ref, got):
    ref = np.asarray(ref, np.float64)
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((ref - np.asarray(got, np.float64)) ** 2))
