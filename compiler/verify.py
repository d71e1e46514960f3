"""Integrity of a build directory: what the compiler records about a build and what the loader
checks before any of the build's code runs, so a damaged or edited build is refused with a
ModelError instead of crashing the process (a truncated .so faults inside dlopen; a manifest that
promises a smaller output buffer than the C writes corrupts the heap).

The chain of trust starts at manifest.json:
  - ``module_bytes`` / ``module_checksum``: the .so, checked before it is opened;
  - the .so reports its own inputs and outputs (``<prefix>_num_inputs``, ``_input_bytes``,
    ``_input_dtype``, ...: generated from templates/model.c.j2), compared with the manifest's
    IO entries, which are what the loader allocates and checks feeds against;
  - a portable build (target "x86-64", compiler/portable.py) has a top manifest.json listing
    one build per ISA in subdirectories, with the size and CRC-32 of each of their files (their
    manifests included, so the chain continues into each build as above);
  - the .so also carries checksums of the manifest fields the loader acts on (BOUND, appended to
    the C by the driver: ``<prefix>_manifest_checksums``), so no field can be edited unnoticed;
  - those fields include ``weights_digest``, the blake2b digest in weights.bin's header (checked
    at every load), ``weights_checksum``, the payload's CRC-32, and the fallback models' ``bytes``
    / ``checksum`` (checked before an interpreter parses them).
The payload of weights.bin is only checked by ``verify="full"`` (its CRC-32, ``weights_checksum``):
that reads every page, as much as a first run does (measured on ResNet-50 in docs/performance.md).

Checksums are CRC-32 (zlib): they detect damage, not tampering (whoever can edit the .so can edit
the manifest), and CRC-32 of ResNet-50's 0.56 MB module costs ~0.1 ms in a warm process against
~0.6 ms for blake2b and ~3 ms just to import hashlib.  Light imports only: this runs in every
first load.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

from .errors import ModelError

MANIFEST = "manifest.json"  # the file that describes a build (and names its other files)

# 2: module/fallback checksums and the module's self-description (1: neither, refused at load)
FORMAT = 2
ALGO = "crc32"
# manifest fields the loader reads to allocate, bind and check; the module carries their checksums
BOUND = ("format", "cache_key", "prefix", "module_name", "arena_bytes", "weights_file", "weights_digest",
         "weights_checksum", "inputs", "outputs", "isa", "steps", "fallback")
MODES = ("fast", "full")

RECOMPILE = "the build is damaged or was edited: recompile it"


def mode(verify: Optional[str]) -> str:
    """The verification mode: the argument, else $ONNXC_VERIFY, else "fast"."""
    m = verify if verify is not None else (os.environ.get("ONNXC_VERIFY") or "fast")
    if m not in MODES:
        raise ValueError(f"verify must be one of {MODES}, got '{m}'")
    return m


def _crc32():
    try:
        from zlib import crc32
    except ImportError:  # a Python built without zlib: binascii has its own CRC-32
        from binascii import crc32
    return crc32


def checksum(data) -> str:
    return f"{ALGO}:{_crc32()(data) & 0xFFFFFFFF:08x}"


def record(data: bytes) -> Dict:
    """What the manifest records about a file the compiler wrote (fallback models)."""
    return {"bytes": len(data), "checksum": checksum(data)}


def file_record(path, offset: int = 0) -> Dict:
    """Size and checksum of a file (from byte ``offset``: weights.bin's payload after its header)."""
    crc, n = _file_crc(path, offset)
    return {"bytes": n, "checksum": f"{ALGO}:{crc:08x}"}


def _file_crc(path, offset: int = 0):
    """(CRC-32, bytes) of a file, read in 64 KiB pieces: a reused buffer that stays in cache
    instead of a fresh allocation the size of the file."""
    crc32 = _crc32()
    buf = bytearray(1 << 16)
    view = memoryview(buf)
    crc = n = 0
    with open(path, "rb", buffering=0) as f:
        f.seek(offset)
        while True:
            k = f.readinto(buf)
            if not k:
                break
            crc = crc32(view[:k], crc)
            n += k
    return crc & 0xFFFFFFFF, n


# files verified in this process, by identity and change time: a second load of one build skips
# the re-read (st_ctime changes with any write to the file, and cannot be set back by a user)
_VERIFIED: Dict[str, tuple] = {}


def _stamp(st) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def check_file(path: Path, expect_bytes, expect_checksum, what: str) -> None:
    """Refuse ``path`` unless its size and checksum are the recorded ones (size first: a
    truncated file is named as such without reading it)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ModelError(f"{path.parent}: {what} {path.name} cannot be read ({e.strerror}); {RECOMPILE}") from None
    if expect_bytes is None or expect_checksum is None:
        raise ModelError(f"{path.parent}: the manifest records no size or checksum for {what} {path.name}; "
                         f"{RECOMPILE}")
    if st.st_size != expect_bytes:
        raise ModelError(f"{path.parent}: {what} {path.name} is {st.st_size} bytes, the manifest records "
                         f"{expect_bytes} (truncated or replaced); {RECOMPILE}")
    key = os.fspath(path)
    if _VERIFIED.get(key) == (_stamp(st), expect_checksum):
        return
    try:
        crc, _ = _file_crc(path)
    except OSError as e:
        raise ModelError(f"{path.parent}: {what} {path.name} cannot be read ({e.strerror}); {RECOMPILE}") from None
    got = f"{ALGO}:{crc:08x}"
    if got != expect_checksum:
        raise ModelError(f"{path.parent}: {what} {path.name} has checksum {got}, the manifest records "
                         f"{expect_checksum} (damaged); {RECOMPILE}")
    _VERIFIED[key] = (_stamp(st), expect_checksum)


def check_payload(payload, expect_checksum, path: Path) -> None:
    """verify="full": the weights payload (the mapped array) against the manifest's checksum. Its
    header digest (blake2b) is checked at every load; this reads every page, ~2.5x faster with
    CRC-32 than re-hashing with blake2b."""
    got = checksum(payload)
    if got != expect_checksum:
        raise ModelError(f"{path.parent}: weights payload of {path.name} has checksum {got}, the manifest records "
                         f"{expect_checksum} (checksum mismatch: damaged); {RECOMPILE}")


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path.parent}: {what} {path.name} cannot be read ({e.strerror}); {RECOMPILE}") from None


def check_bytes(data: bytes, spec: Dict, path: Path, what: str) -> None:
    """``data`` (a file already read, e.g. a fallback model) against the manifest's record."""
    if spec.get("bytes") != len(data) or spec.get("checksum") != checksum(data):
        raise ModelError(f"{path.parent}: {what} {path.name} is {len(data)} bytes with checksum {checksum(data)}, "
                         f"the manifest records {spec.get('bytes')} bytes with {spec.get('checksum')} "
                         f"(damaged or edited); {RECOMPILE}")


def read_manifest(path: Path) -> Dict:
    try:
        m = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path.parent}: {path.name} is not valid JSON ({e}); {RECOMPILE}") from None
    if not isinstance(m, dict):
        raise ModelError(f"{path.parent}: {path.name} is not a JSON object; {RECOMPILE}")
    fmt = m.get("format")
    if fmt != FORMAT:
        raise ModelError(f"{path.parent}: manifest format {fmt} (onnxc {m.get('onnxc_version', '?')}); this onnxc "
                         f"loads format {FORMAT} (builds that record their module's checksum): recompile it")
    # a portable build's top manifest (compiler/portable.py) lists per-ISA builds, each with its own manifest
    required = (("prefix", "inputs", "outputs", "isas", "builds") if m.get("portable") else
                ("prefix", "module_name", "weights_file", "weights_digest", "inputs", "outputs", "steps", "fallback"))
    missing = [k for k in required if k not in m]
    if missing:
        raise ModelError(f"{path.parent}: {path.name} lacks {', '.join(missing)}; {RECOMPILE}")
    return m


# ---- the manifest fields the module vouches for -------------------------------------------------

def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def bound_checksums(manifest: Dict) -> str:
    """"crc32:<all>;key=<crc>;...": the checksum of the BOUND fields together (what the loader
    compares), then of each (to name the edited one), compiled into the module."""
    crc32 = _crc32()
    # through a JSON round trip, as the loader will see them (tuples become lists, ...)
    m = json.loads(json.dumps({k: manifest.get(k) for k in BOUND}))
    return ";".join([f"{ALGO}:{crc32(_canonical(m)) & 0xFFFFFFFF:08x}"] +
                    [f"{k}={crc32(_canonical(m[k])) & 0xFFFFFFFF:08x}" for k in BOUND])


def c_manifest_checksums(prefix: str, manifest: Dict) -> str:
    """C that returns bound_checksums(manifest), appended to the generated model source: the
    fields are known only once codegen has run (the weights digest, the fallback files)."""
    return (f"\n/* Checksums of the manifest.json fields onnxc's loader acts on (compiler/verify.py): a "
            f"manifest\n * edited after the build is refused before the module runs. */\n"
            f"const char* {prefix}_manifest_checksums(void) {{ return \"{bound_checksums(manifest)}\"; }}\n")


def check_module(lib, ffi, manifest: Dict, where, np_dtype) -> None:
    """Compare a freshly imported module's description of itself with the manifest: first its
    inputs and outputs (what the loader allocates; ``np_dtype``: dtype name -> numpy dtype),
    naming the first that differs, then the checksums of every BOUND field."""
    p = manifest["prefix"]
    fn = getattr(lib, f"{p}_manifest_checksums", None)
    if fn is None:
        raise ModelError(f"{where}: the module has no {p}_manifest_checksums (not built by this onnxc); {RECOMPILE}")
    for kind, entries in (("input", manifest["inputs"]), ("output", manifest["outputs"])):
        n = int(getattr(lib, f"{p}_num_{kind}s")())
        if n != len(entries):
            raise ModelError(f"{where}: the manifest lists {len(entries)} {kind}(s), the module was compiled for "
                             f"{n}; {RECOMPILE}")
        nbytes, dtype = getattr(lib, f"{p}_{kind}_bytes"), getattr(lib, f"{p}_{kind}_dtype")
        for i, e in enumerate(entries):
            _check_io(kind, i, e, int(nbytes(i)), ffi.string(dtype(i)).decode(), where, np_dtype)
    have = ffi.string(fn()).decode()
    if have.split(";", 1)[0] != checksum(_canonical({k: manifest.get(k) for k in BOUND})):
        want = bound_checksums(manifest)
        h = dict(x.split("=", 1) for x in have.split(";")[1:] if "=" in x)
        w = dict(x.split("=", 1) for x in want.split(";")[1:] if "=" in x)
        bad = [k for k in BOUND if h.get(k) != w.get(k)] or ["(checksum format)"]
        raise ModelError(f"{where}: manifest.json field(s) {', '.join(bad)} differ from what the module was "
                         f"built with (edited, or from another build); {RECOMPILE}")


def _check_io(kind: str, i: int, e: Dict, c_bytes: int, c_dtype: str, where, np_dtype) -> None:
    name = e.get("name")
    if e.get("python"):
        if c_dtype:
            raise ModelError(f"{where}: {kind} {i} '{name}' is marked as Python-side in the manifest, the module "
                             f"reads/writes it as {c_dtype} ({c_bytes} bytes); {RECOMPILE}")
        return
    dtype, shape = e.get("dtype"), e.get("bound", e.get("shape"))  # a data-dependent shape: its bound
    try:
        itemsize = np_dtype(dtype).itemsize
        count = 1
        for d in shape:
            if not isinstance(d, int) or isinstance(d, bool) or d < 0:
                raise TypeError(d)
            count *= d
    except (TypeError, ValueError, KeyError, AttributeError):
        raise ModelError(f"{where}: {kind} {i} '{name}' has dtype {dtype!r} shape {shape!r} in the manifest; the "
                         f"module was compiled for {c_dtype} ({c_bytes} bytes); {RECOMPILE}") from None
    if dtype != c_dtype or count * itemsize != c_bytes:
        raise ModelError(f"{where}: {kind} {i} '{name}' is {dtype}{list(shape)} ({count * itemsize} bytes) in the "
                         f"manifest, the module was compiled for {c_dtype or 'no C buffer'} ({c_bytes} bytes); "
                         f"{RECOMPILE}")
