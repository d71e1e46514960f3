"""Op facts (ops/registry.py facts/fact/ops_with): declared once in the op's family module and
read by ops/narrow.py (narrow types) and the NCHWc layout pass instead of hand-kept lists."""
import numpy as np
import pytest

from onnxc.ir import Node, Value
from onnxc.ops import registry
from onnxc.ops.narrow import needs_twin, twin_plan

F16 = np.dtype(np.float16)


def _node(op, dtype=F16, domain=""):
    return Node(op, [Value("x", dtype, (2, 3))], [Value("y", dtype, (2, 3))], domain=domain)


def test_unknown_fact_is_refused():
    with pytest.raises(ValueError, match="unknown op fact"):
        registry.facts("Relu", twin="bfloat16")
    with pytest.raises(ValueError, match="unknown op fact"):
        registry.facts("Relu", zero_preserving=True)


def test_facts_as_declared():
    assert registry.fact(_node("Relu"), "twin") is True
    assert registry.fact(_node("Relu"), "nchwc") == "map"
    assert registry.fact(_node("Add"), "nchwc") == "broadcast"
    assert registry.fact(_node("Attention"), "twin") == "float16"
    assert registry.fact(_node("Relu", domain="onnxc"), "twin") is None
    assert {"Reshape", "Transpose", "Gather", "Where"} <= registry.ops_with("bit_mover")
    assert not registry.ops_with("bit_mover") & registry.ops_with("twin")


def test_narrow_policy_reads_the_facts():
    assert needs_twin(_node("Relu")) and not needs_twin(_node("Reshape"))
    assert not needs_twin(_node("Relu", np.dtype(np.float32)))
    ins, outs = twin_plan(_node("Relu"))
    assert ins == [np.dtype(np.float32)] and outs == [np.dtype(np.float32)]
    assert "not verified" in twin_plan(_node("Det"))
