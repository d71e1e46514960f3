"""Small builders shared by tests: single-graph models and an onnxruntime oracle."""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import helper, numpy_helper


def damage_file(p, data: bytes):
    """``p`` now holds ``data``, as a new file: a loader opening the path sees the damage, while a
    module or weights file this pytest worker mapped from it keeps its old pages. Rewriting a loaded
    .so or a mapped weights.bin in place (truncating it) makes a later touch of the old pages, e.g.
    the .so's destructor when the module is collected in another test, a SIGBUS that kills the
    worker (CI: 'Fatal Python error: Bus error' inside an unrelated hypothesis test)."""
    tmp = p.with_name(p.name + ".damaged")
    tmp.write_bytes(data)
    os.replace(tmp, p)


def tensor_info(name, dtype, shape):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if shape is None:
        vi = onnx.ValueInfoProto(name=name)
        vi.type.tensor_type.elem_type = elem
        return vi
    return helper.make_tensor_value_info(name, elem, shape)


def make_model(nodes, inputs, outputs, initializers=None, opset=18, name="test"):
    """inputs/outputs: [(name, dtype, shape)]; initializers: {name: array}."""
    inits = [numpy_helper.from_array(np.asarray(a), n) for n, a in (initializers or {}).items()]
    graph = helper.make_graph(nodes, name, [tensor_info(*i) for i in inputs],
                              [tensor_info(*o) for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    if any(o[2] is None for o in outputs):  # let onnx fill in output shapes left as None
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def ort_run(model, feed):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30)) if b.size else 0.0


def check_against_ort(model, feed, out_dir, rtol=1e-5, atol=1e-6):
    """Compile ``model`` with onnxc and compare every output with onnxruntime's."""
    import onnxc
    ref = ort_run(model, feed)
    out = onnxc.compile(model, output_dir=out_dir).run(None, feed)
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)


def compile_c(model, out_dir):
    """Compile with the C provider only (no fallback interpreter): a node without a C kernel
    fails the compile, hence the test."""
    import onnxc
    return onnxc.compile(model, output_dir=out_dir, fallback=False)


def check_c(nodes, feed, outputs, tmp_path, inits=None, opset=18, rtol=1e-5, atol=1e-6, exact=False):
    """Compile ``nodes`` C-only and compare every output with onnxruntime's; returns onnxc's.
    outputs: [(name, dtype)] (shapes from onnx shape inference) or [(name, dtype, shape)]."""
    outs = [o if len(o) == 3 else (o[0], o[1], None) for o in outputs]
    model = make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in feed.items()], outs, inits, opset=opset)
    ref = ort_run(model, feed)
    out = compile_c(model, tmp_path / "o").run(None, feed)
    for o, r in zip(out, ref):
        assert o.shape == r.shape and o.dtype == r.dtype
        if exact:
            np.testing.assert_array_equal(o, r)
        else:
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
    return out


def check_many(nodes, feed, inits, tmp_path, oracle="ort", rtol=1e-5, atol=1e-5, opset=19, out_dtype=None):
    """Build one model with all ``nodes`` (one output each) and compare every output with
    onnxruntime's (oracle="ort") or onnx.reference's."""
    from onnx.reference import ReferenceEvaluator
    ins = [(n, a.dtype, list(a.shape)) for n, a in feed.items()]
    dt = out_dtype or list(feed.values())[0].dtype
    outs = [(n.output[0], dt, None) for n in nodes]
    model = make_model(nodes, ins, outs, inits, opset=opset)
    ref = ort_run(model, feed) if oracle == "ort" else ReferenceEvaluator(model).run(None, feed)
    got = compile_c(model, tmp_path / "o").run(None, feed)
    for n, o, r in zip(nodes, got, ref):
        what = f"{n.op_type} {n.name or n.output[0]} " + str({a.name: helper.get_attribute_value(a) for a in n.attribute})
        assert o.shape == r.shape and o.dtype == r.dtype, what
        np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=what)


def check_pass(model, pass_, feed, fires=True, rtol=1e-5, atol=1e-6, target="native", winograd=4):
    """Run one pass on ``model``'s IR and check the graph computes the same before and after.

    The reference is onnxruntime on the original model; the rewritten graph runs in the IR
    interpreter (onnx ops through their references, onnxc-domain fused ops through theirs).
    ``fires``: whether the pattern must (True) or must not (False) rewrite anything; ``target``
    and ``winograd``: the compile options layout passes read (graph.metadata, as
    driver.optimize sets them); the passes ask the C provider's capability.  Returns (graph, PassResult)."""
    from onnxc import frontend
    from onnxc.ir import verify
    from onnxc.ops.interp import run_graph
    from onnxc.passes.capability import using
    from onnxc.providers import CProvider
    from onnxc.target import resolve
    g = frontend.load(model)
    g.metadata["target"] = resolve(target)
    g.metadata["winograd"] = winograd
    ref = ort_run(model, feed)
    before = run_graph(g, feed)
    for a, r in zip(before, ref):
        np.testing.assert_allclose(a, r, rtol=rtol, atol=atol, err_msg="interpreter disagrees before the pass")
    with using(CProvider()):  # as driver.optimize hands the passes the C provider's capability
        res = pass_.run(g)
    verify(g)
    assert res.modified == fires, f"{pass_.name}: expected fires={fires}, got {res}"
    after = run_graph(g, feed)
    assert len(after) == len(ref)
    for a, r in zip(after, ref):
        assert a.shape == r.shape and a.dtype == r.dtype, (a.shape, r.shape, a.dtype, r.dtype)
        np.testing.assert_allclose(a, r, rtol=rtol, atol=atol, err_msg=f"after {pass_.name}")
    return g, res


def check_levels(model, feed, out_dir, levels=("none", "basic", "extended", "layout"), rtol=1e-5, atol=1e-6,
                 target="native", fallback=False):
    """Compile ``model`` at each optimization level and compare every output with onnxruntime's.
    Returns {level: CompiledModel}."""
    import onnxc
    ref = ort_run(model, feed)
    built = {}
    for lvl in levels:
        m = onnxc.compile(model, output_dir=out_dir / lvl, opt_level=lvl, target=target, fallback=fallback)
        out = m.run(None, feed)
        for o, r in zip(out, ref):
            assert o.shape == r.shape and o.dtype == r.dtype, (lvl, o.shape, r.shape)
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol, err_msg=f"opt_level={lvl}")
        built[lvl] = m
    return built


def kernel_library(tmp_path_factory, tag: str, sources, flags, **kw):
    """(ffi, lib) of runtime_c ``sources`` built with ``flags`` into a fresh directory named after
    ``tag`` (onnxc.build.build_kernel_library; extra_c / extra_cdef pass through); skips the test
    without a C compiler."""
    import shutil

    import pytest

    from onnxc.build import build_kernel_library, c_compiler
    if shutil.which(c_compiler()) is None:
        pytest.skip(f"no C compiler ({c_compiler()})")
    return build_kernel_library(tmp_path_factory.mktemp(tag) / f"lib{tag}.so", sources, flags, **kw)
