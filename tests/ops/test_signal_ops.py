"""DFT in C against numpy's float64 FFT (the exact transform) and onnx.reference: forward,
one-sided, inverse one-sided (irfft), real and complex inputs, dft_length padding and truncating,
any signal axis, opsets 17/19/20 (constant axis); the complex inverse through the kernel itself."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import compile_c, kernel_library, make_model

RNG = np.random.default_rng(17)


def _exact(x, n, axis, inverse, onesided):
    """float64 numpy FFT of the ONNX layout [..., signal, ..., 1 or 2]."""
    z = x[..., 0].astype(np.float64) + (1j * x[..., 1].astype(np.float64) if x.shape[-1] == 2 else 0)
    if inverse and onesided:
        return np.fft.irfft(z, n=n, axis=axis)[..., None]
    f = np.fft.ifft(z, n=n, axis=axis) if inverse else np.fft.fft(z, n=n, axis=axis)
    if onesided:
        f = np.take(f, range(n // 2 + 1), axis=axis)
    return np.stack([f.real, f.imag], axis=-1)


CASES = [  # (x shape, axis, dft_length, inverse, onesided, opset)
    ((2, 8, 1), 1, None, 0, 0, 17), ((2, 8, 2), 1, None, 0, 0, 17), ((3, 7, 4, 1), 1, None, 0, 1, 19),
    ((3, 4, 6, 1), 2, 9, 0, 1, 19), ((2, 5, 2), 1, 3, 0, 0, 17), ((1, 6, 2), 1, None, 1, 1, 19),
    ((2, 5, 3, 2), 1, 7, 1, 1, 19), ((2, 5, 2), 1, 8, 1, 1, 17), ((2, 3, 4, 2), -2, None, 0, 0, 20),
    ((4, 1, 1), 1, None, 0, 1, 20), ((2, 9, 2), 1, 16, 1, 1, 20), ((2, 6, 1), -2, 1, 0, 0, 20),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_dft(case, tmp_path):
    shape, axis, n, inverse, onesided, opset = CASES[case]
    x = RNG.standard_normal(shape).astype(np.float32)
    inits, names = {}, ["x"]
    if n is not None or opset >= 20:
        names.append("n" if n is not None else "")
        if n is not None:
            inits["n"] = np.array(n, np.int64)
    attrs = dict(inverse=inverse, onesided=onesided)
    if opset >= 20:
        names.append("axis")
        inits["axis"] = np.array(axis, np.int64)
    else:
        attrs["axis"] = axis
    model = make_model([helper.make_node("DFT", names, ["y"], **attrs)], [("x", np.float32, list(shape))],
                       [("y", np.float32, None)], inits, opset=opset)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    a = axis % len(shape)
    length = n if n is not None else (2 * (shape[a] - 1) if inverse and onesided else shape[a])
    exact = _exact(x, length, a, inverse, onesided)
    assert got.shape == exact.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(exact).max()))
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_dft_outside_c_says_why(tmp_path):
    """A runtime axis (opset 20) or dft_length, and the complex inverse (the node suite expects a
    float32 FFT's rounding near 0): the interpreter runs them."""
    x = RNG.standard_normal((2, 6, 2)).astype(np.float32)
    for names, inputs, attrs, why in [
            (["x", "", "axis"], [("axis", np.int64, [])], {}, "axis is a runtime value"),
            (["x", "n"], [("n", np.int64, [])], {}, "has no static shape"),  # a runtime dft_length
            (["x"], [], dict(inverse=1), "complex inverse")]:
        model = make_model([helper.make_node("DFT", names, ["y"], **attrs)], [("x", np.float32, [2, 6, 2])] + inputs,
                           [("y", np.float32, None if inputs else [2, 6, 2])], opset=20)
        m = onnxc.compile(model, output_dir=tmp_path / why.split()[0])
        assert why in m.fallback_nodes[0]["why"]


def test_dft_kernel_complex_inverse(tmp_path_factory):
    """The kernel's complex inverse path (not claimed by the compiler, see above) against numpy."""
    ffi, lib = kernel_library(tmp_path_factory, "dft", ["math/dft_ref.c"], ["-O2"])
    outer, length, inner, n = 2, 5, 3, 7
    x = RNG.standard_normal((outer, length, inner, 2)).astype(np.float32)
    y = np.zeros((outer, n, inner, 2), np.float32)
    j = np.arange(n) * (2 * np.pi / n)
    tw = np.ascontiguousarray(np.stack([np.cos(j), np.sin(j)], axis=1).reshape(-1))
    p = ffi.new("onnxc_dft_params*", dict(outer=outer, in_len=length, inner=inner, in_c=2, n=n, out_len=n, out_c=2,
                                          inverse=1, onesided=0))
    lib.onnxc_dft(p, ffi.cast("const double*", tw.ctypes.data), ffi.cast("const float*", x.ctypes.data),
                  ffi.cast("float*", y.ctypes.data))
    np.testing.assert_allclose(y, _exact(x, n, 1, 1, 0), rtol=1e-5, atol=1e-6)


def test_dft_invalid(tmp_path):
    node = helper.make_node("DFT", ["x"], ["y"], axis=2, name="dft")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2, 6, 2])],
                              [helper.make_tensor_value_info("y", 1, [2, 6, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    with pytest.raises(onnxc.ModelError, match=r"node 'dft' \(DFT\): axis is 2, expected a signal axis of "
                                               r"input 0 'x': in \[-3, 2\] but not the last"):
        onnxc.compile(model, output_dir=tmp_path / "o")


def test_dft_runtime_axis_and_length_are_specialized():
    """Opset 20's axis input and dft_length fed at run time: InferenceSession compiles the node for
    each value fed (the ``param_inputs`` fact), entirely in C; a signal axis the op refuses (the
    real/imaginary one) is an InputError naming the input."""
    model = make_model([helper.make_node("DFT", ["x", "n", "axis"], ["y"], onesided=1)],
                       [("x", np.float32, [2, 5, 6, 1]), ("n", np.int64, []), ("axis", np.int64, [])],
                       [("y", np.float32, None)], opset=20)
    s = onnxc.InferenceSession(model)
    assert sorted(s.value_inputs) == ["axis", "n"]
    x = RNG.standard_normal((2, 5, 6, 1)).astype(np.float32)
    ref = ReferenceEvaluator(model)
    for n, axis in [(5, 1), (8, 1), (6, -2), (3, 2), (4, -3), (5, 0)]:
        feed = {"x": x, "n": np.array(n, np.int64), "axis": np.array(axis, np.int64)}
        got = s.run(None, feed)[0]
        exact = _exact(x, n, axis % 4, 0, 1)
        assert got.shape == exact.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(exact).max()))
        np.testing.assert_allclose(got, ref.run(None, feed)[0], rtol=1e-4, atol=1e-4)
    assert s.fallback_nodes == [] and all(not cm.fallback_nodes for cm in s.compiled_models)
    for axis in (3, -1, 4):
        with pytest.raises(onnxc.InputError, match="axis"):
            s.run(None, {"x": x, "n": np.array(4, np.int64), "axis": np.array(axis, np.int64)})
    with pytest.raises(onnxc.InputError, match="dft_length"):
        s.run(None, {"x": x, "n": np.array(0, np.int64), "axis": np.array(1, np.int64)})


def _stft_exact(x, step, wlen, n, window, onesided):
    z = x[..., 0].astype(np.float64) + (1j * x[..., 1].astype(np.float64) if x.shape[-1] == 2 else 0)
    frames = (x.shape[1] - n) // step + 1
    w = np.ones(wlen) if window is None else window.astype(np.float64)
    out = []
    for f in range(frames):
        seg = np.zeros((x.shape[0], wlen), complex)
        part = z[:, f * step:f * step + wlen]
        seg[:, :part.shape[1]] = part
        spec = np.fft.fft(seg * w, n=n, axis=1)
        out.append(spec[:, :n // 2 + 1] if onesided else spec)
    s = np.stack(out, axis=1)
    return np.stack([s.real, s.imag], axis=-1)


STFT_CASES = [  # (signal shape, frame_step, window length or None, frame_length or None, onesided)
    ((1, 128, 1), 8, None, 16, 1), ((1, 128, 1), 8, 16, None, 1), ((2, 50, 1), 7, 12, 12, 0),
    ((2, 40, 2), 5, 9, None, 0), ((3, 33, 1), 4, None, 10, 1), ((1, 20, 1), 3, 8, 8, 1), ((1, 20, 1), 30, None, 20, 1),
]


@pytest.mark.parametrize("case", range(len(STFT_CASES)))
def test_stft(case, tmp_path):
    """STFT in C (frames windowed in float32, then the DFT kernel) against float64 numpy and
    onnx.reference: frame_step and frame_length constants, or graph inputs the session specializes
    on; with and without a window, onesided or not, real and complex signals, one frame."""
    shape, step, wlen, n, onesided = STFT_CASES[case]
    x = RNG.standard_normal(shape).astype(np.float32)
    window = None if wlen is None else (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(wlen) / wlen)).astype(np.float32)
    names, inits = ["x", "step", "window" if wlen else "", "n" if n else ""], {"step": np.array(step, np.int64)}
    if wlen:
        inits["window"] = window
    if n:
        inits["n"] = np.array(n, np.int64)
    while names[-1] == "":
        names.pop()
    model = make_model([helper.make_node("STFT", names, ["y"], onesided=onesided)], [("x", np.float32, list(shape))],
                       [("y", np.float32, None)], inits, opset=17)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})[0]
    length = n if n else wlen
    exact = _stft_exact(x, step, wlen or length, length, window, onesided)
    assert got.shape == exact.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(exact).max()))
    np.testing.assert_allclose(got, ReferenceEvaluator(model).run(None, {"x": x})[0], rtol=1e-4, atol=1e-4)


def test_stft_default_onesided_and_runtime_parameters():
    """No onesided attribute (default 1: onnx's shape inference reads 0, so the frontend writes it
    out) with frame_step and frame_length fed at run time: specialized, entirely in C."""
    model = make_model([helper.make_node("STFT", ["x", "step", "", "n"], ["y"])],
                       [("x", np.float32, [2, 64, 1]), ("step", np.int64, []), ("n", np.int64, [])],
                       [("y", np.float32, ["b", "f", "k", 2])], opset=17)
    s = onnxc.InferenceSession(model.SerializeToString())
    x = RNG.standard_normal((2, 64, 1)).astype(np.float32)
    for step, n in ((8, 16), (5, 9)):
        feed = {"x": x, "step": np.array(step, np.int64), "n": np.array(n, np.int64)}
        got = s.run(None, feed)[0]
        exact = _stft_exact(x, step, n, n, None, 1)
        assert got.shape == exact.shape == ((2, (64 - n) // step + 1, n // 2 + 1, 2))
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-4)
    assert s.fallback_nodes == []


def test_melweightmatrix_is_specialized_and_folds():
    """MelWeightMatrix's inputs are all parameters: the session compiles each value set as
    constants, the node folds (onnx.reference's values) and nothing runs in the fallback."""
    model = make_model([helper.make_node("MelWeightMatrix", ["m", "n", "r", "lo", "hi"], ["y"])],
                       [("m", np.int32, []), ("n", np.int32, []), ("r", np.int32, []), ("lo", np.float32, []),
                        ("hi", np.float32, [])], [("y", np.float32, ["k", "b"])], opset=17)
    s = onnxc.InferenceSession(model.SerializeToString())
    ref = ReferenceEvaluator(model)
    for m, n, r, lo, hi in ((8, 16, 8192, 0.0, 4096.0), (5, 32, 16000, 20.0, 7000.0)):
        feed = {"m": np.array(m, np.int32), "n": np.array(n, np.int32), "r": np.array(r, np.int32),
                "lo": np.array(lo, np.float32), "hi": np.array(hi, np.float32)}
        got = s.run(None, feed)[0]
        assert got.shape == (n // 2 + 1, m) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref.run(None, feed)[0], rtol=1e-6, atol=1e-7)
    assert s.fallback_nodes == []
