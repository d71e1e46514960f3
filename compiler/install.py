"""Installing a finished build: every build is made in a temporary directory and moved into place
under a lock, so concurrent compiles into one directory (or one cache entry) never see each other's
half-written files (ten processes compiling into one output_dir failed with shutil.Error from the
runtime_c copy racing) and a loader never opens a half-written module.

Lock files: ``<cache>/locks/<key>.lock`` for cache entries (beside the entries, so a failed build
leaves nothing in ``models/``), ``<output_dir>/.onnxc.lock`` for an explicit output directory.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .verify import MANIFEST

log = logging.getLogger("onnxc")
BUILD_PREFIX = ".onnxc-build-"
LOCK_NAME = ".onnxc.lock"


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock on ``path`` (created if missing) for the ``with`` block: flock on POSIX,
    msvcrt.locking on Windows; held per open file, so threads of one process exclude each other
    too, and released by the OS if the process dies. A file system without locks runs unlocked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+b")
    try:
        try:
            import fcntl
        except ImportError:
            fcntl = None
        try:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            else:
                import msvcrt
                f.seek(0)
                while True:
                    try:
                        msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)  # gives up after ~10 s: retry
                        break
                    except OSError:
                        continue
        except OSError as e:  # e.g. ENOLCK on some network file systems
            log.debug("onnxc: cannot lock %s (%s); installing without a lock", path, e)
        yield
    finally:
        f.close()  # releases the lock


def cache_lock(root: Path, key: str) -> Path:
    return root / "locks" / f"{key}.lock"


def build_dir(out: Path, in_cache: bool) -> Path:
    """A fresh temporary directory on the file system of ``out`` (so the install is a rename):
    beside a cache entry, inside an explicit output directory (hidden; the caller holds the lock,
    so any older one is a leftover of a killed process and is removed)."""
    if in_cache:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp", dir=out.parent))
    for old in out.glob(BUILD_PREFIX + "*"):
        shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=BUILD_PREFIX, dir=out))


def install_entry(tmp: Path, out: Path, replace: bool) -> None:
    """Rename the finished build ``tmp`` to the cache entry ``out``. An entry another process
    installed meanwhile is kept (same key, same content; deleting it pulled a module from under
    a process about to load it: a conformance case once failed with "cannot open shared object
    file"); only a broken leftover, or any entry when ``replace``, is moved aside first."""
    try:
        os.replace(tmp, out)  # fails while out is a non-empty directory
        return
    except OSError:
        pass
    if replace or not (out / MANIFEST).exists():
        stale = out.with_name(f"{out.name}.stale{os.getpid()}")
        try:
            os.replace(out, stale)
            os.replace(tmp, out)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def install_files(tmp: Path, out: Path) -> None:
    """Move the build ``tmp`` into the explicit output directory ``out`` entry by entry (the
    directory may hold the user's own files), each by rename, the manifest last; then remove the
    modules and fallback models of an earlier build that this one does not have. A process that
    loaded the earlier build keeps its files (they are renamed over, never written in place)."""
    names = [p.name for p in tmp.iterdir() if p.name != MANIFEST]
    for name in names + [MANIFEST]:
        src, dst = tmp / name, out / name
        if src.is_dir() and not src.is_symlink():
            old = None
            if dst.exists() or dst.is_symlink():
                old = out / f"{BUILD_PREFIX}old-{os.getpid()}-{name}"
                os.replace(dst, old)
            os.replace(src, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
        else:
            if dst.is_dir() and not dst.is_symlink():
                shutil.rmtree(dst)
            os.replace(src, dst)
    keep = set(names)
    for pattern in ("_onnxc_*.so", "_onnxc_*.pyd", "fallback*.onnx"):
        for old in out.glob(pattern):
            if old.name not in keep:
                old.unlink()
    from .isa import BY_NAME  # the ISA builds of an earlier portable build (compiler/portable.py)
    for name in BY_NAME:
        old = out / name
        if name not in keep and (old / MANIFEST).is_file() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
