"""Loading weights by memory-mapping weights.bin (compiler/blob.py read_blob).

The mapping is read-only and private, 64-byte aligned, followed by zero-filled slack (reads past
the payload's end see zeros, never a fault), refused when the file is truncated, from another
build or (with verify) corrupted, released when the last array over it goes, and unaffected by a
rebuild of the directory; the plain-read fallback (no POSIX mmap) gives the same bytes.
"""
from __future__ import annotations

import ctypes
import gc
import os
import weakref

import numpy as np
import pytest
from onnx import helper

import onnxc
from onnxc import blob as W
from onnxc.codegen.weights import WeightsBlob

from helpers import damage_file, make_model

mmap_only = pytest.mark.skipif(W._libc() is None, reason="no POSIX mmap here")


def matmul_model(rng, n=24):
    w = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["t"]), helper.make_node("Add", ["t", "b"], ["y"])],
                       [("x", np.float32, [3, n])], [("y", np.float32, [3, n])], {"w": w, "b": b})
    return model, w, b


def blob_file(tmp_path, nbytes=1000):
    class V:
        const = np.arange(nbytes, dtype=np.uint8)
    b = WeightsBlob()
    b.add(V())
    path = tmp_path / "weights.bin"
    b.write(path)
    return path, V.const


@mmap_only
def test_mapped_blob_is_aligned_readonly_and_padded_with_zeros(tmp_path):
    path, payload = blob_file(tmp_path, 5000)  # the file ends inside a page
    a = W.read_blob(path, verify=True)
    assert isinstance(a.base, W._MappedBytes)
    assert a.ctypes.data % 64 == 0 and not a.flags.writeable
    np.testing.assert_array_equal(a, payload)
    # a kernel-style over-read: everything up to SLACK bytes past the payload reads as zero
    tail = (ctypes.c_uint8 * W.SLACK).from_address(a.ctypes.data + a.size)
    assert not any(bytes(tail))
    with pytest.raises(ValueError):
        a[0] = 1


def test_read_fallback_gives_the_same_bytes_and_slack(tmp_path):
    path, payload = blob_file(tmp_path, 4096 - 64)  # header + payload: exactly one page
    a = W.read_blob(path, use_mmap=False, verify=True)
    assert not isinstance(a.base, W._MappedBytes)
    assert a.ctypes.data % 64 == 0 and not a.flags.writeable
    np.testing.assert_array_equal(a, payload)
    assert not any(bytes((ctypes.c_uint8 * W.SLACK).from_address(a.ctypes.data + a.size)))
    np.testing.assert_array_equal(W.read_blob(path), a)


@mmap_only
def test_mapping_lives_as_long_as_the_array(tmp_path):
    path, payload = blob_file(tmp_path)
    a = W.read_blob(path)
    ref = weakref.ref(a.base.mapping)
    view = a[10:20]
    del a
    gc.collect()
    assert ref() is not None  # a view still holds it
    np.testing.assert_array_equal(view, payload[10:20])
    del view
    gc.collect()
    assert ref() is None  # unmapped


@pytest.mark.parametrize("use_mmap", [True, False])
def test_bad_files_are_refused(tmp_path, use_mmap):
    path, payload = blob_file(tmp_path)
    digest = W.blob_digest(path)
    data = path.read_bytes()
    damage_file(path, data[:-1])
    with pytest.raises(ValueError, match="header says"):
        W.read_blob(path, digest, use_mmap=use_mmap)
    damage_file(path, data + b"\0")
    with pytest.raises(ValueError, match="header says"):
        W.read_blob(path, digest, use_mmap=use_mmap)
    damage_file(path, b"NOTONNXC" + data[8:])
    with pytest.raises(ValueError, match="bad magic"):
        W.read_blob(path, digest, use_mmap=use_mmap)
    damage_file(path, data[:100] + bytes([data[100] ^ 1]) + data[101:])  # payload byte flipped
    W.read_blob(path, digest, use_mmap=use_mmap)  # the header digest alone does not see it
    with pytest.raises(ValueError, match="checksum mismatch"):
        W.read_blob(path, digest, verify=True, use_mmap=use_mmap)
    damage_file(path, data)
    with pytest.raises(ValueError, match="another build"):
        W.read_blob(path, "00" * 16, use_mmap=use_mmap)


def test_mapped_and_read_modules_agree(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    model, w, b = matmul_model(rng)
    x = rng.standard_normal((3, 24)).astype(np.float32)
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    y = m.run(None, {"x": x})[0]
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-5, atol=1e-5)
    if W._libc() is not None:
        assert isinstance(m._weights.base, W._MappedBytes)
    monkeypatch.setattr(W, "_LIBC", False)  # as on a platform without mmap
    r = onnxc.load(tmp_path / "o")
    assert not isinstance(r._weights.base, W._MappedBytes)
    np.testing.assert_array_equal(r.run(None, {"x": x})[0], y)


def test_truncated_weights_refuse_to_load(tmp_path):
    model, _, _ = matmul_model(np.random.default_rng(2))
    onnxc.compile(model, output_dir=tmp_path / "o")
    p = tmp_path / "o" / "weights.bin"
    damage_file(p, p.read_bytes()[:-4])
    with pytest.raises(onnxc.ModelError, match="header says"):
        onnxc.load(tmp_path / "o")


def test_loaded_module_survives_a_recompile_with_other_weights(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 24)).astype(np.float32)
    m1, w1, b1 = matmul_model(rng)
    m2, w2, b2 = matmul_model(rng)
    a = onnxc.compile(m1, output_dir=tmp_path / "o")
    ya = a.run(None, {"x": x})[0]
    old = os.stat(tmp_path / "o" / "weights.bin").st_ino
    b = onnxc.compile(m2, output_dir=tmp_path / "o", force=True)  # same shapes, new weights
    assert os.stat(tmp_path / "o" / "weights.bin").st_ino != old  # a new file, renamed into place
    np.testing.assert_allclose(b.run(None, {"x": x})[0], x @ w2 + b2, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(a.run(None, {"x": x})[0], ya)  # a still sees its own weights
    np.testing.assert_allclose(onnxc.load(tmp_path / "o").run(None, {"x": x})[0], x @ w2 + b2,
                               rtol=1e-5, atol=1e-5)
