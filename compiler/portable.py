"""Portable targets: one output that carries a build per ISA and loads the best one the CPU runs.

``target="x86-64"`` compiles the model once per row of PORTABLE["x86-64"] (avx512, avx2,
generic: the distinct float code paths, isa.FLOAT_ISAS) into subdirectories of the output named
by the ISA, each a complete build of its own (manifest, module, weights packed for that ISA's
NCHWc block and GEMM tiles). The top manifest.json lists them, best first, with the size and
CRC-32 of every file of each, so one directory (or one pickle) serves a fleet of mixed CPUs.

Loading picks the first carried ISA the CPU runs (cpu.runnable_isas), or the one forced by the
``isa`` load option or $ONNXC_ISA (so every build can be tested on one host); a forced ISA the
build does not carry, or the CPU lacks, is refused with a ModelError. "fast" verification checks
the chosen build's small files by checksum and its weights by size (its own loader then checks the
weights header digest, module and manifest, as for any build); "full" checks every file of every
ISA's build, so a damaged build for other machines is found on any host.

Light imports only: runtime.py calls this on every load of a portable build.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from .errors import ModelError

# portable target -> the ISA builds it carries, in load preference (best first)
PORTABLE = {"x86-64": ("avx512", "avx2", "generic")}
ENV = "ONNXC_ISA"


def is_portable(target) -> bool:
    return target in PORTABLE


def sub_key(key: str, isa: str) -> str:
    """The cache key (and so the cffi module name) of one ISA's build of a portable build: unique
    per ISA, so the three modules never share a name in sys.modules."""
    return hashlib.sha256(f"{key}/{isa}".encode()).hexdigest()[:24]


def _carried(top: Dict, where) -> Tuple[str, ...]:
    """The ISAs a portable manifest lists, each a known row whose directory is its own name (a
    manifest naming another directory, e.g. '../x', is refused)."""
    from .isa import BY_NAME
    isas, builds = top.get("isas"), top.get("builds")
    if not isinstance(isas, list) or not isinstance(builds, dict) or not isas:
        raise ModelError(f"{where}: portable manifest lists no ISA builds; the build is damaged or was edited: "
                         f"recompile it")
    for i in isas:
        b = builds.get(i)
        if i not in BY_NAME or not isinstance(b, dict) or b.get("dir") != i or not isinstance(b.get("files"), dict):
            raise ModelError(f"{where}: portable manifest entry for ISA {i!r} is malformed; the build is damaged "
                             f"or was edited: recompile it")
        for name in b["files"]:
            if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
                raise ModelError(f"{where}: portable manifest names the file {name!r} in the {i} build: not a "
                                 f"plain file name; recompile it")
    return tuple(isas)


def pick(top: Dict, where, isa: Optional[str] = None) -> Tuple[Optional[str], Optional[str]]:
    """(ISA to load, None), or (None, why not): the ``isa`` asked for (else $ONNXC_ISA) if the build
    carries it and the CPU runs it, else the best carried ISA the CPU runs."""
    from .cpu import REQUIRED_FLAGS, host_flags, runnable_isas
    carried = _carried(top, where)
    runs = runnable_isas()
    source = "isa=" if isa else f"${ENV}="
    want = isa or os.environ.get(ENV) or None
    if want:
        if want not in carried:
            return None, (f"{where}: {source}{want} was asked for, but this portable build ('{top.get('portable')}') "
                          f"carries only {', '.join(carried)}")
        if want not in runs:
            missing = [f for f in REQUIRED_FLAGS[want] if f not in host_flags()]
            return None, (f"{where}: {source}{want} was asked for, but this CPU lacks {', '.join(missing)}; of the "
                          f"builds carried it runs {', '.join(i for i in carried if i in runs) or 'none'}")
        return want, None
    for i in carried:
        if i in runs:
            return i, None
    return None, f"{where}: this CPU runs none of the builds carried ({', '.join(carried)})"


def choose(top: Dict, where, isa: Optional[str] = None) -> str:
    chosen, why = pick(top, where, isa)
    if why:
        raise ModelError(why)
    return chosen


def check_build(top: Dict, root: Path, isa: str, full: bool) -> None:
    """The files of ``isa``'s build against the top manifest: sizes always; checksums of all of them
    when ``full``, else of all but the weights (whose header digest the build's own loader checks,
    and whose payload only "full" reads, as for a single build)."""
    from .verify import check_file
    b = top["builds"][isa]
    weights = b.get("weights_file", "weights.bin")
    for name, rec in b["files"].items():
        path = root / b["dir"] / name
        if name == weights and not full:
            try:
                size = os.stat(path).st_size
            except OSError as e:
                raise ModelError(f"{path.parent}: weights file {name} cannot be read ({e.strerror}); the build is "
                                 f"damaged or was edited: recompile it") from None
            if size != rec.get("bytes"):
                raise ModelError(f"{path.parent}: weights file {name} is {size} bytes, the manifest records "
                                 f"{rec.get('bytes')} (truncated or replaced); recompile it")
            continue
        check_file(path, rec.get("bytes"), rec.get("checksum"), f"{isa} build's file")


def check_all(top: Dict, root: Path) -> None:
    """Every ISA's build, every file, by checksum (verify="full", and unpickled builds)."""
    for isa in _carried(top, root):
        check_build(top, root, isa, full=True)


def files(top: Dict, root=None):
    """Paths (relative to the build directory, "<isa>/<name>") of every file the builds need to
    load, manifest.json of the top excluded: what a pickle by value carries."""
    return [f"{top['builds'][i]['dir']}/{name}" for i in _carried(top, root or "portable build")
            for name in top["builds"][i]["files"]]
