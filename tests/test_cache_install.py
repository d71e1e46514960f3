"""The build cache's install step (driver._install): concurrent compiles of one model must never
delete an entry another process installed (it may be loading it)."""
import numpy as np
from onnx import helper

from onnxc.driver import _install
from onnxc.runtime import MANIFEST


def _entry(path, tag, manifest=True):
    path.mkdir()
    (path / "tag").write_text(tag)
    if manifest:
        (path / MANIFEST).write_text("{}")
    return path


def test_fresh_install(tmp_path):
    _install(_entry(tmp_path / "t", "new"), tmp_path / "out", replace=False)
    assert (tmp_path / "out" / "tag").read_text() == "new" and not (tmp_path / "t").exists()


def test_installed_entry_is_kept(tmp_path):
    out = _entry(tmp_path / "out", "first")
    _install(_entry(tmp_path / "t", "second"), out, replace=False)
    assert (out / "tag").read_text() == "first" and not (tmp_path / "t").exists()


def test_broken_leftover_or_force_is_replaced(tmp_path):
    out = _entry(tmp_path / "out", "broken", manifest=False)
    _install(_entry(tmp_path / "t", "new"), out, replace=False)
    assert (out / "tag").read_text() == "new"
    _install(_entry(tmp_path / "t2", "forced"), out, replace=True)
    assert (out / "tag").read_text() == "forced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_build_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    import pytest
    import onnxc
    from onnxc.errors import CompileError
    from helpers import make_model
    monkeypatch.setenv("ONNXC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # the C compiler fails after the C files are written
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", np.float32, [4])], [("y", np.float32, [4])])
    with pytest.raises(CompileError):
        onnxc.compile(model)
    assert not list((tmp_path / "models").iterdir())
