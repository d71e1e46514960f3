"""Transposes moved below element-wise ops (compiler/passes/basic/sink_transpose.py): the
NHWC-converted Conv blocks of TensorFlow exports (open_nsfw) lose their Transposes and their
batch norm (bias Add, Sub, Mul, Add) folds into the Conv."""
import collections

import numpy as np
from onnx import helper

from helpers import check_pass, make_model, ort_run
from onnxc.passes.basic.sink_transpose import SinkTranspose

F = np.float32
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def rnd(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(F)


def nhwc_block(batch=1):
    """x NHWC -> [T, Conv, T, Add b, Sub m, Mul s, Add beta, Relu] twice, the second with a
    residual Add of the first block's output (as open_nsfw's ResNet-50 blocks)."""
    nodes, inits = [], {}
    src = "x"
    for i in range(2):
        inits.update({f"W{i}": rnd(4, 4, 3, 3, seed=i) * 0.3, f"b{i}": rnd(4, seed=10 + i),
                      f"m{i}": rnd(4, seed=20 + i), f"s{i}": np.abs(rnd(4, seed=30 + i)) + 0.5,
                      f"beta{i}": rnd(4, seed=40 + i)})
        nodes += [helper.make_node("Transpose", [src], [f"t{i}"], perm=TO_NCHW),
                  helper.make_node("Conv", [f"t{i}", f"W{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Transpose", [f"c{i}"], [f"u{i}"], perm=TO_NHWC),
                  helper.make_node("Add", [f"u{i}", f"b{i}"], [f"a{i}"]),
                  helper.make_node("Sub", [f"a{i}", f"m{i}"], [f"d{i}"]),
                  helper.make_node("Mul", [f"d{i}", f"s{i}"], [f"e{i}"]),
                  helper.make_node("Add", [f"e{i}", f"beta{i}"], [f"n{i}"])]
        if i == 1:
            nodes.append(helper.make_node("Add", ["n1", "r0"], ["n1r"]))
            nodes.append(helper.make_node("Relu", ["n1r"], ["y"]))
        else:
            nodes.append(helper.make_node("Relu", ["n0"], ["r0"]))
            src = "r0"
    shape = [batch, 6, 6, 4]
    return make_model(nodes, [("x", F, shape)], [("y", F, shape)], inits)


def test_sinks_transposes_and_keeps_the_numbers():
    m = nhwc_block()
    g, res = check_pass(m, SinkTranspose(), {"x": rnd(1, 6, 6, 4, seed=5)}, rtol=1e-5, atol=1e-5)
    assert res.modified and res.rewrites >= 8


def test_basic_level_folds_the_batch_norm_into_the_conv():
    from onnxc.driver import optimize_model
    for batch in (1, "N"):  # a symbolic batch (most exports) does not stop the Conv folds
        m = nhwc_block(batch)
        opt, _ = optimize_model(m, opt_level="basic")
        ops = collections.Counter(n.op_type for n in opt.graph.node)
        # the input's and the output's Transposes remain; the block's ops fold into the Convs
        assert ops == {"Transpose": 2, "Conv": 2, "Add": 1, "Relu": 2}, (batch, ops)
        x = rnd(2 if batch == "N" else 1, 6, 6, 4, seed=6)
        np.testing.assert_allclose(ort_run(opt, {"x": x})[0], ort_run(m, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_not_when_the_transpose_has_another_reader():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=TO_NHWC),
             helper.make_node("Add", ["t", "c"], ["a"]),
             helper.make_node("Mul", ["t", "a"], ["y"])]
    m = make_model(nodes, [("x", F, [1, 4, 3, 3])], [("y", F, [1, 3, 3, 4])], {"c": rnd(4)})
    check_pass(m, SinkTranspose(), {"x": rnd(1, 4, 3, 3)}, fires=False)
