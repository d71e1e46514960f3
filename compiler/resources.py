"""Where the shipped templates/ and runtime_c/ live (installed package or source tree)."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _find(name: str) -> Path:
    for cand in (_HERE / name, _HERE.parent / name):
        if cand.is_dir():
            return cand
    raise FileNotFoundError(f"onnxc cannot find its '{name}' directory next to {_HERE}")


def templates_dir() -> Path:
    return _find("templates")


def runtime_dir() -> Path:
    return _find("runtime_c")


def runtime_sources():
    return sorted(p for p in runtime_dir().rglob("*.c"))


def kernels_cdef(header: str = "onnxc_kernels.h") -> str:
    """A runtime header's own declarations for cffi.cdef (preprocessor lines and extern "C"
    dropped), for tests and benchmarks that call runtime kernels directly: one source of truth
    instead of hand-copied prototypes."""
    text = (runtime_dir() / "include" / header).read_text().replace("\\\n", " ")  # join continued lines
    lines = [ln for ln in text.splitlines()
             if not ln.lstrip().startswith("#") and ln.strip() not in ('extern "C" {', "}")]
    return "\n".join(lines)


@functools.lru_cache(maxsize=None)
def tree_digest() -> str:
    """Hash of onnxc's own sources, templates and runtime: part of the build cache key, so a
    changed emitter or pass never reuses a build made by the old code."""
    h = hashlib.sha256()
    for root in (_HERE, templates_dir(), runtime_dir()):
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.suffix in (".c", ".h", ".j2", ".py"):
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()
