"""transformer_unit_transpose (compiler/passes/basic/unit_transpose.py): a Transpose that only
moves size-1 dims becomes a Reshape (an alias in C instead of a copy); checked with check_pass
(onnxruntime on the original vs the IR interpreter after the pass) and compiled at extended."""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc.passes.basic.unit_transpose import TransformerUnitTranspose

F = np.float32


def model_of(shape, perm, second=False):
    ns = [helper.make_node("Transpose", ["x"], ["t"], perm=perm), helper.make_node("Relu", ["t"], ["y"])]
    outs = [("y", F, None)]
    if second:  # the transposed value is also a graph output
        outs.append(("t", F, None))
    feed = {"x": np.random.default_rng(0).standard_normal(shape).astype(F)}
    return make_model(ns, [("x", F, list(shape))], outs), feed


@pytest.mark.parametrize("shape,perm", [((1, 5, 8), [1, 0, 2]), ((5, 1, 8), [1, 0, 2]), ((3, 1, 4, 1), [0, 3, 2, 1]),
                                        ((1, 6), [1, 0])])
def test_fires(shape, perm):
    for second in (False, True):  # the output Value is kept, so other readers do not matter
        model, feed = model_of(shape, perm, second)
        g, res = check_pass(model, TransformerUnitTranspose(), feed)
        assert res.rewrites == 1 and "Transpose" not in [n.op_type for n in g.nodes]
        (r,) = [n for n in g.nodes if n.op_type == "Reshape"]
        assert r.outputs[0].shape == tuple(np.transpose(feed["x"], perm).shape)


@pytest.mark.parametrize("shape,perm", [((2, 5, 8), [1, 0, 2]), ((1, 5, 8), [0, 1, 2]), ((5, 1, 8), [2, 1, 0]),
                                        ((0, 1, 3), [1, 0, 2])])
def test_does_not_fire(shape, perm):
    """Two dims larger than 1 swapped, the identity (left to the basic level), an empty tensor."""
    model, feed = model_of(shape, perm)
    check_pass(model, TransformerUnitTranspose(), feed, fires=False)


def test_compiled(tmp_path):
    model, feed = model_of((1, 7, 3), [1, 0, 2])
    check_levels(model, feed, tmp_path, levels=("none", "extended"))
    src = (tmp_path / "extended" / "model.c").read_text()
    assert "] Transpose " in (tmp_path / "none" / "model.c").read_text() and "] Transpose " not in src
