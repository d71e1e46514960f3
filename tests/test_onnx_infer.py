"""onnx's shape inference is called without data propagation where that would crash the process
(frontend/onnx_infer.py): a Slice whose start + step leaves the int32 range."""
import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model
from onnxc.frontend.onnx_infer import data_prop_is_safe, unsafe_reason


def slice_model(step, constant=True, start=3):
    inits = {"s": np.array([start], np.int64), "e": np.array([6], np.int64), "a": np.array([0], np.int64)}
    inputs = [("x", np.float32, [4])]
    if constant:
        inits["k"] = np.array([step], np.int64)
    else:
        inputs.append(("k", np.int64, [1]))
    return make_model([helper.make_node("Slice", ["x", "s", "e", "a", "k"], ["y"])], inputs,
                      [("y", np.float32, None)], inits)


def test_rule():
    assert data_prop_is_safe(slice_model(1)) and data_prop_is_safe(slice_model(-2**30 + 1))
    for step in (2**31 - 1, 2**63 - 1, -2**63 + 1, 2**30):
        assert not data_prop_is_safe(slice_model(step))
    assert not data_prop_is_safe(slice_model(1, constant=False))


@pytest.mark.parametrize("step", [2**31 - 1, 2**63 - 1, -2**63 + 1])
def test_huge_slice_step_compiles(tmp_path, step):
    # with data propagation, onnx 1.23's shape inference segfaulted on these (the CI failure)
    x = np.arange(4, dtype=np.float32)
    cm = onnxc.compile(slice_model(step), output_dir=tmp_path / "m")
    np.testing.assert_array_equal(cm.run(None, {"x": x})[0], x[3:6:step])


def test_long_vectors_rule():
    from onnxc.frontend.onnx_infer import data_prop_is_cheap
    add = lambda n: make_model([helper.make_node("Add", ["x", "x"], ["y"])], [("x", np.float32, [n])],
                               [("y", np.float32, [n])])
    assert data_prop_is_cheap(add(4)) and data_prop_is_cheap(add(1 << 16))
    assert not data_prop_is_cheap(add((1 << 16) + 1))
    # known only after inference: the Expand output
    expand = make_model([helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("Add", ["e", "e"], ["y"])],
                        [("x", np.float32, [1])], [("y", np.float32, None)], {"s": np.array([1 << 20], np.int64)})
    assert not data_prop_is_cheap(expand)


@pytest.mark.parametrize("batch_dims", [-2, -3, -2**31])
def test_negative_gathernd_batch_dims_is_refused(tmp_path, batch_dims):
    # onnx 1.23's GatherND shape inference reads dims at negative indices: SIGSEGV (found by
    # tests/fuzz/fuzz.py); refused before onnx sees the model, with the node and value named
    model = make_model([helper.make_node("GatherND", ["x", "i"], ["y"], batch_dims=0)],
                       [("x", np.float32, [2, 3]), ("i", np.int64, [2, 1])], [("y", np.float32, [2, 3])])
    model.graph.node[0].attribute[0].i = batch_dims
    assert unsafe_reason(model) is not None
    with pytest.raises(onnxc.ModelError, match=f"batch_dims must be >= 0.*got {batch_dims}"):
        onnxc.compile(model, output_dir=tmp_path / "m")
