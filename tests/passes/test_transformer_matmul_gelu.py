"""transformer_matmul_gelu (compiler/passes/extended/transformer.py): MatMul with constant 2-D
weights feeding an onnxc.Gelu / FastGelu -> onnxc.MatMulGelu (bias + Gelu in the SGEMM epilogue).

The graphs are written with the standard ops (MatMul, Add, Gelu of opset 20) so onnxruntime can
run the original; TransformerFusion first turns Add + Gelu into onnxc.Gelu with a bias, as the
extended level does, then the pass under test runs (check_pass: onnxruntime on the original vs
the IR interpreter after both, on the same random inputs)."""
import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc.passes.extended.transformer import TransformerFusion, TransformerMatMulGelu
from onnxc.passes.manager import Pass

F = np.float32


def rnd(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F)


class GelusThenMatMulGelu(Pass):
    """TransformerFusion (not reported), then the pass under test (its result)."""
    name = "transformer_matmul_gelu"
    level = "extended"

    def run(self, graph):
        TransformerFusion().run(graph)
        return TransformerMatMulGelu().run(graph)


def mlp(approx="none", bias=True, extra_out=None, second_user=False, w_input=False, x_shape=(2, 5, 8)):
    ns = [helper.make_node("MatMul", ["x", "w"], ["mm"])]
    g_in = "mm"
    if bias:
        ns.append(helper.make_node("Add", ["mm", "b"], ["mb"]))
        g_in = "mb"
    ns.append(helper.make_node("Gelu", [g_in], ["y"], approximate=approx))
    outs = [("y", F, None)]
    if second_user:
        ns.append(helper.make_node("Relu", ["mm"], ["r"]))
        outs.append(("r", F, None))
    if extra_out:
        outs.append((extra_out, F, None))
    inits = {"b": rnd(16, seed=2)} if bias else {}
    inputs = [("x", F, list(x_shape))]
    feed = {"x": rnd(*x_shape, scale=2)}
    if w_input:
        inputs.append(("w", F, [8, 16]))
        feed["w"] = rnd(8, 16, seed=1)
    else:
        inits["w"] = rnd(8, 16, seed=1)
    return make_model(ns, inputs, outs, inits, opset=20), feed


def matmul_gelus(g):
    return [n for n in g.nodes if n.domain == "onnxc" and n.op_type == "MatMulGelu"]


@pytest.mark.parametrize("approx", ["none", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_fires(approx, bias):
    model, feed = mlp(approx, bias)
    g, res = check_pass(model, GelusThenMatMulGelu(), feed, rtol=1e-5, atol=1e-5)
    (n,) = matmul_gelus(g)
    assert res.rewrites == 1 and [x.op_type for x in g.nodes] == ["MatMulGelu"]
    assert n.attrs["approximate"] == approx and (n.input(2) is not None) == bias


def test_rank2_activations():
    model, feed = mlp(x_shape=(7, 8))
    g, _ = check_pass(model, GelusThenMatMulGelu(), feed, rtol=1e-5, atol=1e-5)
    assert len(matmul_gelus(g)) == 1


@pytest.mark.parametrize("case", ["mm_is_output", "mm_second_user", "w_not_constant", "a_1d"])
def test_does_not_fire(case):
    kw = {"mm_is_output": dict(bias=False, extra_out="mm"), "mm_second_user": dict(second_user=True),
          "w_not_constant": dict(w_input=True), "a_1d": dict(x_shape=(8,))}[case]
    model, feed = mlp(**kw)
    g, _ = check_pass(model, GelusThenMatMulGelu(), feed, fires=False, rtol=1e-5, atol=1e-5)
    assert not matmul_gelus(g)


@pytest.mark.parametrize("approx", ["none", "tanh"])
def test_compiled(approx, tmp_path):
    """Compiled C at none and extended (MatMulGelu through onnxc_sgemm_packed_ep) against
    onnxruntime; a row count that is no multiple of the SGEMM tile and N past one panel."""
    model, feed = mlp(approx, x_shape=(3, 11, 8))
    built = check_levels(model, feed, tmp_path, levels=("none", "extended"), rtol=1e-5, atol=1e-5)
    src = (tmp_path / "extended" / "model.c").read_text()
    assert "onnxc_sgemm_packed_ep" in src and ("onnxc_gelu_tanhf" if approx == "tanh" else "onnxc_gelu_erff") in src
    assert built["extended"] is not None
