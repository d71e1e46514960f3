import numpy as np
import pytest

from onnxc.errors import ModelError
from onnxc.ir import Graph, format_graph, verify


def small_graph():
    g = Graph("g")
    x = g.add_input("x", np.float32, (2, 3))
    c = g.add_const(np.ones((2, 3), np.float32), "c")
    add = g.add_node("Add", [x, c], name="add")
    add.outputs[0].dtype, add.outputs[0].shape = np.dtype(np.float32), (2, 3)
    relu = g.add_node("Relu", [add.outputs[0]], name="relu")
    relu.outputs[0].dtype, relu.outputs[0].shape = np.dtype(np.float32), (2, 3)
    g.outputs = [relu.outputs[0]]
    return g, x, c, add, relu


def test_use_lists_follow_edits():
    g, x, c, add, relu = small_graph()
    assert x.users == [add] and add.outputs[0].users == [relu]
    relu.set_input(0, x)
    assert add.outputs[0].uses == [] and relu in x.users
    verify(g)


def test_replace_all_uses_updates_outputs():
    g, x, c, add, relu = small_graph()
    g.replace_all_uses(relu.outputs[0], add.outputs[0])
    assert g.outputs == [add.outputs[0]]


def test_verifier_catches_use_before_def():
    g, x, c, add, relu = small_graph()
    g.nodes.reverse()
    with pytest.raises(ModelError, match="used before it is defined"):
        verify(g)


def test_verifier_catches_double_definition_and_missing_dtype():
    g, x, c, add, relu = small_graph()
    relu.outputs[0] = add.outputs[0]
    relu.outputs[0].dtype = None
    with pytest.raises(ModelError) as e:
        verify(g)
    assert "defined twice" in str(e.value) and "no dtype" in str(e.value)


def test_verifier_static_shapes():
    g, x, c, add, relu = small_graph()
    add.outputs[0].shape = ("N", 3)
    verify(g)
    with pytest.raises(ModelError, match="no static shape"):
        verify(g, require_static=True)


def test_toposort_restores_order():
    g, *_ = small_graph()
    g.nodes.reverse()
    g.toposort()
    verify(g)


def test_printer_shows_types_and_attrs():
    g, x, c, add, relu = small_graph()
    relu.attrs["alpha"] = 0.5
    text = format_graph(g)
    assert "%x: float32[2,3]" in text
    assert "= Relu(%add_out)" in text and "alpha=0.5" in text
    assert text.strip().endswith("}")
