"""Pickling compiled models, so batch engines (Ray, Spark, Dask, multiprocessing) can ship them
to their workers (docs/deploy.md).

A CompiledModel pickles in one of two ways, chosen by its ``pickle_by`` attribute:

  - "value" (the default): the build itself travels, i.e. manifest.json, the module (.so),
    weights.bin and the fallback models as bytes. The worker writes them into its cache directory
    under the digest of the manifest (``<cache>/pickled/<digest>``, installed atomically; a worker
    that already has that build reuses it) and loads them through the usual checks, the weights
    payload's CRC-32 included the first time (the bytes crossed a process or a network). Works on
    any worker with the same Python version and a CPU with the build's ISA (a portable build,
    target "x86-64", carries every ISA's build and the worker loads the best its CPU runs). $ONNXC_PICKLE_DIR
    puts these entries elsewhere (e.g. an executor's local scratch disk).
  - "path": only the build directory's absolute path and the checksums of the build. The worker
    must see the same file system (a shared disk, or a single machine); it loads the directory
    and refuses it if it no longer holds the build that was pickled. A pickle of a few hundred
    bytes instead of the weights' size.

A worker whose CPU lacks the build's ISA refuses it with runtime.check_cpu's ModelError before
any of its code runs; one with another Python version is refused up front (the module is a
CPython extension). An InferenceSession pickles its options and its compiled specializations
(each as above); a session with free dimensions also carries the ONNX model, so the worker can
compile the shapes it has not seen.

The classes' ``__reduce__`` call in here and hand over the class to rebuild (it travels in the
pickle by name), so this module imports neither runtime.py nor session.py: the runtime stays at
the bottom of the import graph.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Dict

from . import install
from .errors import ModelError
from .verify import MANIFEST, read_file

MODES = ("value", "path")


def _python() -> str:
    return f"{sys.implementation.name}-{sys.version_info[0]}.{sys.version_info[1]}"


def _files(m):
    """The files a build needs to load: (name, what) pairs, manifest excluded; for a portable build
    every ISA's files ("<isa>/<name>"), so the worker picks the build its own CPU runs."""
    top = getattr(m, "portable_manifest", None)
    if top:
        from .portable import files
        return [(name, "portable build's file") for name in files(top, m.output_dir)]
    man = m.manifest
    out = []
    if man.get("module_file"):
        out.append((str(man["module_file"]), "module"))
    out.append((str(man["weights_file"]), "weights file"))
    for f in man.get("fallback", []):
        out.append((str(f["file"]), "fallback model"))
    return out


def _identity(m) -> Dict:
    """What names a build: the fields a path pickle checks on the worker (of a portable build: its
    key and every ISA's file records)."""
    top = getattr(m, "portable_manifest", None)
    if top:
        return {k: top.get(k) for k in ("cache_key", "builds")}
    return {k: m.manifest.get(k) for k in ("cache_key", "module_checksum", "weights_digest", "weights_checksum")}


def reduce_compiled(m, cls):
    """``m`` (a CompiledModel) as a pickle reduction that rebuilds a ``cls`` (CompiledModel)."""
    mode = getattr(m, "pickle_by", "value")
    if mode not in MODES:
        raise ValueError(f"CompiledModel.pickle_by must be one of {MODES}, got {mode!r}")
    state = {"cls": cls, "mode": mode, "python": _python(), "host": socket.gethostname(), "num_threads": m.num_threads,
             "fallback_engine": getattr(m, "_fallback_engine", "auto")}
    if mode == "path":
        state.update(path=str(m.output_dir.resolve()), identity=_identity(m))
    else:
        d = m.output_dir
        state["manifest"] = read_file(d / MANIFEST, "manifest")
        state["files"] = _read_files(d, _files(m))
    return (_restore_compiled, (state,))


def _read_files(d: Path, files) -> Dict[str, bytes]:
    """The files as bytes; hard links to one file (a portable build's shared weights) are read once
    and are one object, which pickle stores once and _write_entry links again."""
    out, seen = {}, {}
    for name, what in files:
        try:
            st = os.stat(d / name)
            ident = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        except OSError:
            ident = None  # read_file names the problem
        if ident is not None and ident in seen:
            out[name] = seen[ident]
            continue
        out[name] = read_file(d / name, what)
        if ident is not None:
            seen[ident] = out[name]
    return out


def _check_python(state: Dict) -> None:
    if state.get("python") != _python():
        raise ModelError(f"this onnxc module was pickled on {state.get('host')} under {state.get('python')}, this "
                         f"worker runs {_python()}: a compiled module is an extension of one Python version; run "
                         f"the workers on the same Python, or ship the ONNX model and compile it there")


def pickled_root() -> Path:
    """Where unpickled builds go: $ONNXC_PICKLE_DIR, else <onnxc cache>/pickled."""
    if os.environ.get("ONNXC_PICKLE_DIR"):
        return Path(os.environ["ONNXC_PICKLE_DIR"])
    from .build import cache_root
    return cache_root() / "pickled"


def _restore_compiled(state: Dict):
    _check_python(state)
    CompiledModel = state["cls"]
    kw = {"num_threads": state.get("num_threads"), "fallback_engine": state.get("fallback_engine", "auto")}
    if state["mode"] == "path":
        path = Path(state["path"])
        where = f"{path} (a CompiledModel pickled by path on {state.get('host')})"
        if not (path / MANIFEST).exists():
            raise ModelError(f"{where}: no build there; a model pickled by path needs the same file system on "
                             f"every worker (pickle it by value: pickle_by='value')")
        m = CompiledModel(path, **kw)
        if _identity(m) != state["identity"]:
            raise ModelError(f"{where}: the directory now holds another build (recompiled since it was "
                             f"pickled); pickle it again, or by value")
        m.pickle_by = "path"
        return m
    man = state["manifest"]
    digest = hashlib.sha256(man).hexdigest()[:24]
    entry = pickled_root() / digest
    damaged = False
    if (entry / MANIFEST).exists() and (entry / MANIFEST).read_bytes() == man:
        try:  # this worker unpickled the same build before
            m = CompiledModel(entry, **kw)
            m.pickle_by = "value"
            return m
        except ModelError:  # damaged since: written anew below
            damaged = True
    _write_entry(entry, man, state["files"], damaged)
    # bytes that crossed a process or a network: the first load checks the weights payload too
    try:
        m = CompiledModel(entry, verify="full", **kw)
    except ModelError as e:  # e.g. a CPU without the build's ISA: say where the build came from
        raise ModelError(f"{e} (a CompiledModel pickled on {state.get('host')})") from None
    m.pickle_by = "value"
    return m


def _write_entry(entry: Path, manifest: bytes, files: Dict[str, bytes], damaged: bool) -> None:
    """The build's files into a temporary directory beside ``entry``, then renamed into place
    under the entry's lock (compiler/install.py): concurrent workers never see a partial build.
    An entry another worker wrote while this one waited for the lock is kept, unless ``damaged``."""
    root = entry.parent
    root.mkdir(parents=True, exist_ok=True)
    with install.locked(root / "locks" / f"{entry.name}.lock"):
        if not damaged and (entry / MANIFEST).exists() and (entry / MANIFEST).read_bytes() == manifest:
            return
        tmp = Path(tempfile.mkdtemp(prefix=f"{entry.name}.tmp", dir=root))
        try:
            written = {}  # id of a bytes object -> its first file: shared weights are linked again
            for name, data in files.items():
                path = tmp / _entry_path(name)
                path.parent.mkdir(exist_ok=True)
                first = written.get(id(data))
                if first is not None:
                    try:
                        os.link(first, path)
                        continue
                    except OSError:
                        pass
                path.write_bytes(data)
                written[id(data)] = path
            (tmp / MANIFEST).write_bytes(manifest)
            install.install_entry(tmp, entry, replace=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _entry_path(name: str) -> str:
    """A file name of a pickled build, refused unless it is a plain name, or "<isa>/<plain name>" (a
    portable build's ISA subdirectory, made here); never a path out of the entry."""
    from .isa import BY_NAME
    parts = name.split("/") if isinstance(name, str) else [None]
    ok = 1 <= len(parts) <= 2 and all(isinstance(p, str) and os.path.basename(p) == p and p not in ("", ".", "..")
                                      for p in parts)
    if not ok or (len(parts) == 1 and name == MANIFEST) or (len(parts) == 2 and parts[0] not in BY_NAME):
        raise ModelError(f"a pickled onnxc build names the file {name!r}: not a plain file name")
    return name


def reduce_session(s, cls):
    """An InferenceSession: its options, specializations and (only if it may still compile new
    shapes) the model; rebuilt as a ``cls`` (InferenceSession)."""
    state = {"cls": cls, "options": dict(s._options), "opt_level": s._opt_level, "num_threads": s._num_threads,
             "input_shapes": s._input_shapes, "inputs": s._inputs, "outputs": s._outputs, "static": s._static,
             "default": s._default, "compiled": dict(s._compiled),
             "value_inputs": s._value_inputs, "value_builds": s._value_builds,
             "model": s._model.SerializeToString() if s._default is None else None}
    return (_restore_session, (state,))


def _restore_session(state: Dict):
    import threading

    cls = state["cls"]
    s = cls.__new__(cls)
    s._options, s._opt_level, s._num_threads = state["options"], state["opt_level"], state["num_threads"]
    s._input_shapes, s._inputs, s._outputs = state["input_shapes"], state["inputs"], state["outputs"]
    s._static, s._default, s._compiled = state["static"], state["default"], state["compiled"]
    s._value_inputs, s._value_builds = state.get("value_inputs", []), state.get("value_builds", 0)
    s._lock = threading.Lock()
    s._model = None
    if state["model"] is not None:
        import onnx
        s._model = onnx.load_from_string(state["model"])
    return s
