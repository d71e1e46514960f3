"""Blocked 4-bit QDQ weights -> MatMulNBits (compiler/passes/basic/fuse_dq_nbits.py): the graph
before and after the pass against onnxruntime on the original model, and the compiled module
(fallback=False) on both.  int4 and uint4, with and without zero points, K not a multiple of the
block (the last block padded), a batched A."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from helpers import check_pass, ort_run
from onnxc.passes.basic.fuse_dq_nbits import FuseDQMatMulNBits

F32 = np.float32


def _model(K, N, block, signed=True, zp=True, a_shape=None, axis=0, seed=0):
    rng = np.random.default_rng(seed)
    kb = -(-K // block)
    lo, hi = (-8, 8) if signed else (0, 16)
    t = TensorProto.INT4 if signed else TensorProto.UINT4
    w = rng.integers(lo, hi, (K, N))
    inits = [helper.make_tensor("w", t, [K, N], w.reshape(-1).tolist()),
             numpy_helper.from_array((rng.uniform(0.5, 1.5, (kb, N)) * 0.02).astype(F32), "s")]
    ins = ["w", "s"]
    if zp:
        inits.append(helper.make_tensor("z", t, [kb, N], rng.integers(lo, hi, (kb, N)).reshape(-1).tolist()))
        ins.append("z")
    a_shape = a_shape or [3, K]
    nodes = [helper.make_node("DequantizeLinear", ins, ["wd"], axis=axis, block_size=block),
             helper.make_node("MatMul", ["a", "wd"], ["y"])]
    g = helper.make_graph(nodes, "nbits", [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, a_shape[:-1] + [N])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    onnx.checker.check_model(m, full_check=True)
    feed = {"a": rng.standard_normal(a_shape).astype(F32)}
    return m, feed


CASES = [dict(K=64, N=24, block=32), dict(K=70, N=9, block=16, signed=False),
         dict(K=128, N=16, block=64, zp=False), dict(K=48, N=8, block=16, signed=False, zp=False),
         dict(K=256, N=5, block=256, a_shape=[2, 3, 256])]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_fuse_dq_matmul_nbits(case, tmp_path):
    m, feed = _model(**case)
    g, res = check_pass(m, FuseDQMatMulNBits(), feed, fires=True, rtol=1e-5, atol=1e-5)
    assert [n.op_type for n in g.nodes] == ["MatMulNBits"]
    c = onnxc.compile(m, output_dir=tmp_path / "m", opt_level="basic", fallback=False)
    assert c.report["op_counts"] == {"com.microsoft.MatMulNBits": 1}, c.report["op_counts"]
    np.testing.assert_allclose(c.run(None, feed)[0], ort_run(m, feed)[0], rtol=1e-5, atol=1e-5)


def test_per_axis_int4_is_kept_with_the_reason():
    m, feed = _model(K=64, N=8, block=32)
    dq = m.graph.node[0]
    del dq.attribute[:]  # per-column: axis 1, one scale per column
    dq.attribute.extend([helper.make_attribute("axis", 1)])
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.full(8, 0.02, F32), "s"))
    m.graph.initializer[2].CopyFrom(helper.make_tensor("z", TensorProto.INT4, [8], [1] * 8))
    g, res = check_pass(m, FuseDQMatMulNBits(), feed, fires=False, rtol=1e-5, atol=1e-5)
    assert "not blocked along K" in res.notes[0]
