"""BitCast (opset 26) in C: every pair of C-carried types of one size, bit for bit against the
onnx reference (onnxruntime 1.32 has no BitCast), NaN payloads included; sub-byte types are
refused by the C kernel, a width mismatch by the model check."""
import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import compile_c, make_model

RNG = np.random.default_rng(17)

F8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu")
BY_SIZE = {
    1: [np.dtype(t) for t in (np.int8, np.uint8, np.bool_)] + [np.dtype(getattr(ml_dtypes, n)) for n in F8],
    2: [np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)],
    4: [np.dtype(np.int32), np.dtype(np.uint32), np.dtype(np.float32)],
    8: [np.dtype(np.int64), np.dtype(np.uint64), np.dtype(np.float64)],
}
UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def _tag(dt):
    return str(dt).replace("float8_", "f8")


def _elem(dt):
    return helper.np_dtype_to_tensor_dtype(dt)


def _bits(size, shape):
    """Random bit patterns, with NaN payloads of both signs (quiet and signalling) for the
    float types of that size and all-zero / all-one words."""
    u = RNG.integers(0, np.iinfo(UINT[size]).max, shape, dtype=UINT[size], endpoint=True).reshape(-1)
    special = {4: [0x7FC00001, 0xFFA12345, 0x7F800001, 0xFF800000],
               8: [0x7FF8000000000001, 0xFFF4000000001234, 0x7FF0000000000001],
               2: [0x7E01, 0xFD55, 0x7F81, 0xFFC1]}.get(size, [0xFF, 0x80, 0x7F])
    special += [0, np.iinfo(UINT[size]).max]
    u[:len(special)] = np.array(special, dtype=UINT[size])
    return u.reshape(shape)


@pytest.mark.parametrize("size", sorted(BY_SIZE))
def test_bitcast_every_pair_of_one_size(size, tmp_path):
    """One model per element size: each carried type of that size BitCast to each (itself too)."""
    types, shape = BY_SIZE[size], (3, 7)
    nodes, outputs, sources, feed = [], [], [], {}
    for a in types:
        bits = _bits(size, shape)
        if a == np.bool_:
            bits = bits & 1  # a bool byte other than 0/1 is no bool value at all: not fed
        feed[f"x_{_tag(a)}"] = bits.view(a)
        for b in types:
            if b == np.bool_ and a != np.bool_:
                continue  # bytes other than 0/1 as bool are undefined: covered from uint8 0/1 below
            out = f"y_{_tag(a)}_{_tag(b)}"
            nodes.append(helper.make_node("BitCast", [f"x_{_tag(a)}"], [out], to=_elem(b)))
            outputs.append((out, b, list(shape)))
            sources.append(f"x_{_tag(a)}")
    if size == 1:  # uint8 holding only 0 and 1 as bool
        feed["x_bool01"] = (_bits(1, shape) & 1).astype(np.uint8)
        nodes.append(helper.make_node("BitCast", ["x_bool01"], ["y_bool01"], to=TensorProto.BOOL))
        outputs.append(("y_bool01", np.dtype(np.bool_), list(shape)))
        sources.append("x_bool01")
    model = make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in feed.items()], outputs, opset=26)
    m = compile_c(model, tmp_path / "o")
    got = m.run(None, feed)
    ref = ReferenceEvaluator(model).run(None, feed)
    for (name, dt, _), g, r in zip(outputs, got, ref):
        assert g.dtype == dt and g.shape == shape, name
        assert np.array_equal(g.view(UINT[size]), np.asarray(r).view(UINT[size])), name
    # and the bits are the input's own (the reference could be wrong the same way)
    for (name, _, _), src, g in zip(outputs, sources, got):
        assert np.array_equal(g.view(UINT[size]), feed[src].view(UINT[size])), name


@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 3, 4)])
def test_bitcast_nan_payload_round_trip(shape, tmp_path):
    """uint32 -> float32 -> (Identity) -> int32 -> uint32 in one C function: signalling NaNs keep
    their payload (no float load/store quiets them), scalars and empty tensors included."""
    n = int(np.prod(shape))
    u = np.array([0x7F800001, 0xFFBFFFFF, 0x7FC00000, 0x00000001, 0x80000000][:n] +
                 list(RNG.integers(0, 2**32, max(n - 5, 0), dtype=np.uint64)), dtype=np.uint32).reshape(shape)
    nodes = [helper.make_node("BitCast", ["u"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Neg", ["f"], ["g"]), helper.make_node("Neg", ["g"], ["h"]),
             helper.make_node("BitCast", ["f"], ["i"], to=TensorProto.INT32),
             helper.make_node("BitCast", ["i"], ["v"], to=TensorProto.UINT32)]
    model = make_model(nodes, [("u", np.uint32, list(shape))],
                       [("f", np.float32, list(shape)), ("v", np.uint32, list(shape))], opset=26)
    f, v = compile_c(model, tmp_path / "o").run(None, {"u": u})
    assert np.array_equal(f.view(np.uint32), u) and np.array_equal(v, u)


@pytest.mark.parametrize("src,dst", [(TensorProto.INT4, TensorProto.UINT4), (TensorProto.UINT2, TensorProto.INT2)])
def test_bitcast_sub_byte_types_are_not_c(src, dst, tmp_path):
    """Sub-byte types are carried one element per byte: copying bytes is not the bit cast."""
    model = make_model([helper.make_node("BitCast", ["x"], ["y"], to=dst)],
                       [("x", helper.tensor_dtype_to_np_dtype(src), [4])],
                       [("y", helper.tensor_dtype_to_np_dtype(dst), [4])], opset=26)
    with pytest.raises(onnxc.UnsupportedError, match="sub-byte"):
        compile_c(model, tmp_path / "o")


def test_bitcast_width_mismatch_is_a_model_error(tmp_path):
    # built by hand: make_model's strict shape inference would refuse it first
    node = helper.make_node("BitCast", ["x"], ["y"], to=TensorProto.INT16, name="bc")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT16, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26)])
    with pytest.raises(onnxc.ModelError, match=r"node .bc. \(BitCast\): output 0 .y. has 16-bit elements .*expected 32-bit"):
        onnxc.compile(model, output_dir=tmp_path / "o")
