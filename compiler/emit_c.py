"""``onnxc compile --emit c``: a compiled model as a standalone C project that builds with CMake and
a C99 compiler alone (no Python, no cffi), for other programs to link (docs/deploy.md).

The folder holds:
  - ``<prefix>.c`` / ``<prefix>.h``: the build's generated C (model.h documents the C API), with a
    preamble that stops the compile (#error) when the vector ISA macros the runtime selects its
    kernels by differ from those of the flags the weights were packed for;
  - ``runtime_c/``: every runtime header and only the runtime sources the model calls (the
    closure of the model's undefined symbols over the runtime objects, read with ``nm``; all
    sources when ``nm`` is missing or the build's runtime differs from this onnxc's);
  - ``<prefix>_symbols.h``: renames the runtime's ``onnxc_*`` names to ``<prefix>__onnxc_*``
    (included first in every source of the library), so two models link into one program;
  - ``weights.bin`` (default), or ``<prefix>_weights.c`` / ``.h`` with ``embed_weights``: the
    payload as a 64-byte aligned C array of little-endian 64-bit words (a byte per element took
    gcc 8x longer: 46 s against 5.5 s of CPU for MobileNetV2's 14 MB);
  - ``CMakeLists.txt`` (static library ``<prefix>`` + alias ``<prefix>::<prefix>``, options
    ONNXC_THREADS and ``<PREFIX>_ISA_FLAGS``, install/export for find_package),
    ``cmake/<prefix>Config.cmake.in``, ``example/main.c`` and ``onnxc_emit.json`` (what was written).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ._version import __version__
from .errors import CompileError, UnsupportedError

log = logging.getLogger("onnxc")
MARKER = "onnxc_emit.json"
# vector-ISA macros (x86) that select kernels and packed layouts in the runtime and generated C
_BIG_ENDIAN = "defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__"
_ISA_MACRO = re.compile(r"\b__(?:AVX\w*|FMA\w*|F16C|AMX\w*|SSE\w*|VNNI\w*)__\b")
_PP_IF = re.compile(r"^\s*#\s*(?:if|ifdef|ifndef|elif)\b(.*)$", re.M)
_RT_NAME = re.compile(r"\bonnxc_\w+")


@dataclass
class EmittedC:
    """What ``emit_c`` wrote: the folder, the runtime sources it kept (relative to runtime_c/),
    the ISA flags recorded, whether the weights are compiled in."""
    path: Path
    prefix: str
    sources: List[str]
    isa_flags: List[str]
    embedded: bool
    all_sources: int = 0
    files: List[str] = field(default_factory=list)


def emit_c(model, output_dir, input_shapes=None, opt_level: Optional[str] = None, target: str = "native",
           prefix: str = "model", embed_weights: bool = False, c_opt: str = "-O3", force: bool = False) -> EmittedC:
    """Compile ``model`` (cached like onnxc.compile; no fallback: the C must run every node) and
    write it to ``output_dir`` as a standalone CMake project."""
    from .driver import DEFAULT_LEVEL, compile_model
    from .portable import PORTABLE
    if target in PORTABLE:
        raise UnsupportedError(f"target '{target}' is a portable target (one build per ISA, chosen when onnxc loads "
                               f"it); a standalone C project is built for one ISA: emit it with --target one of "
                               f"{', '.join(PORTABLE[target])} (or native)")
    m = compile_model(model, input_shapes=input_shapes, opt_level=opt_level or DEFAULT_LEVEL, target=target,
                      prefix=prefix, c_opt=c_opt, fallback=False, force=force)
    return export_c(m.output_dir, output_dir, embed_weights=embed_weights)


def export_c(build_dir, output_dir, embed_weights: bool = False) -> EmittedC:
    """Write the standalone C project of an existing build directory (onnxc.compile's output)."""
    from .runtime import MANIFEST
    from .verify import read_manifest
    build = Path(build_dir)
    man = read_manifest(build / MANIFEST)
    if man.get("portable"):
        raise UnsupportedError(f"{build}: a portable build (target '{man['portable']}') carries one build per ISA; a "
                               f"standalone C project takes one: emit it with target one of "
                               f"{', '.join(man['isas'])}")
    if man.get("fallback"):
        nodes = [f"{n['op']} '{n['name']}'" for n in man.get("report", {}).get("fallback_nodes", [])]
        raise UnsupportedError(f"{build}: the model has nodes only the Python fallback provider runs "
                               f"({', '.join(nodes) or 'see the compile log'}): a standalone C build cannot run it")
    prefix = man["prefix"]
    rt = build / "runtime_c"
    if not rt.is_dir():  # e.g. one ISA's build inside a portable build (compiler/portable.py)
        raise UnsupportedError(f"{build}: has no runtime_c/ to export (an ISA build of a portable build?): emit the "
                               f"model with target '{man.get('isa')}'")
    out = Path(output_dir)
    _prepare(out)
    model_c = (build / f"{prefix}.c").read_text()
    flags = (build / "cflags.txt").read_text().split()
    isa_flags = [f for f in flags if f.startswith("-m")]
    all_sources = sorted(str(p.relative_to(rt)).replace(os.sep, "/") for p in rt.rglob("*.c"))
    sources = _needed_sources(build, man, model_c, flags, all_sources)
    files: List[str] = []

    def write(rel: str, text=None, data=None, src: Path = None):
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if src is not None:
            shutil.copyfile(src, p)
        elif data is not None:
            p.write_bytes(data)
        else:
            p.write_text(text)
        files.append(rel)

    for h in sorted(rt.rglob("*.h")):
        write("runtime_c/" + str(h.relative_to(rt)).replace(os.sep, "/"), src=h)
    for s in sources:
        write(f"runtime_c/{s}", src=rt / s)
    header = (build / f"{prefix}.h").read_text()
    target = man.get("options", {}).get("target", "native")
    write(f"{prefix}.c", _isa_guard(prefix, target, man.get("isa"), isa_flags, flags, model_c, rt) + model_c)
    write(f"{prefix}.h", header)
    names = sorted({n for f in [model_c] + [(rt / s).read_text() for s in sources] +
                    [h.read_text() for h in rt.rglob("*.h")] for n in _RT_NAME.findall(f)}
                   - _macro_names(rt, model_c))
    write(f"{prefix}_symbols.h", _symbols_header(prefix, names))
    weights = build / str(man["weights_file"])
    from .blob import HEADER
    if embed_weights:
        c_src, h_src = _weights_c(prefix, weights, HEADER, int(man.get("report", {}).get("weights_bytes", -1)))
        write(f"{prefix}_weights.c", c_src)
        write(f"{prefix}_weights.h", h_src)
    else:
        write("weights.bin", src=weights)
    from .codegen.templates import render
    from .runtime import _np_dtype
    model_name = _model_name(header, prefix)
    ctx = dict(prefix=prefix, PREFIX=prefix.upper(), version=__version__, model_name=model_name, target=target,
               isa=man.get("isa", target), isa_flags=isa_flags, sources=[f"runtime_c/{s}" for s in sources],
               embedded=embed_weights, weights_header=HEADER, cmake_version=_cmake_version(),
               inputs=man["inputs"], outputs=man["outputs"],
               out_itemsize=[0 if o.get("python") else _np_dtype(o["dtype"]).itemsize for o in man["outputs"]])
    write("CMakeLists.txt", render("emit_c/CMakeLists.txt.j2", **ctx))
    write(f"cmake/{prefix}Config.cmake.in", render("emit_c/Config.cmake.in.j2", **ctx))
    write("example/main.c", render("emit_c/main.c.j2", **ctx))
    info = {"onnxc_version": __version__, "cache_key": man.get("cache_key"), "prefix": prefix, "target": target,
            "isa": man.get("isa"), "isa_flags": isa_flags, "embedded_weights": embed_weights,
            "runtime_sources": sources, "runtime_sources_available": len(all_sources),
            "arena_bytes": man.get("arena_bytes"), "inputs": man["inputs"], "outputs": man["outputs"],
            "files": files + [MARKER]}
    (out / MARKER).write_text(json.dumps(info, indent=1))
    return EmittedC(out, prefix, sources, isa_flags, embed_weights, len(all_sources), files + [MARKER])


def _prepare(out: Path) -> None:
    """An empty or new folder, or one an earlier emit wrote (its files are removed; anything else
    in it, e.g. a CMake build directory, stays)."""
    if out.exists() and not out.is_dir():
        raise CompileError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        marker = out / MARKER
        if not marker.exists():
            raise CompileError(f"{out} is not empty and holds no earlier `onnxc compile --emit c` output "
                               f"({MARKER}); write the C project into a new or empty folder")
        try:
            old = json.loads(marker.read_text()).get("files", [])
        except ValueError:
            old = []
        for rel in old:
            p = out / rel
            if os.path.basename(rel) and ".." not in Path(rel).parts and p.is_file():
                p.unlink()
        shutil.rmtree(out / "runtime_c", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _model_name(header: str, prefix: str) -> str:
    m = re.search(r'from model "(.*?)"', header)
    return m.group(1) if m else prefix


def _cmake_version() -> str:
    m = re.match(r"\d+(\.\d+){0,3}", __version__)
    return m.group(0) if m else "0"


# ---- which runtime sources ---------------------------------------------------------------------

def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".c", ".h"):
            h.update(str(p.relative_to(root)).replace(os.sep, "/").encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _nm(obj: Path, nm: str):
    """(global symbols defined, symbols referenced) of an object file, from ``nm -P``."""
    out = subprocess.run([nm, "-P", str(obj)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper() or kind in ("v", "w"):  # global (hidden visibility included), weak
            defined.add(name)
    return defined, undefined


def _needed_sources(build: Path, man: Dict, model_c: str, flags: Sequence[str], all_sources: List[str]) -> List[str]:
    """The runtime sources whose functions the model reaches: model.c compiled (at -O0, which
    keeps every call the optimized build makes) and its undefined symbols closed over the runtime
    objects compiled with the build's flags. All sources when that cannot be worked out (no nm,
    or the build's runtime is not this onnxc's); the linker then drops what is unused."""
    from .build import c_compiler, runtime_objects
    from .resources import runtime_dir, runtime_sources
    nm = os.environ.get("NM") or "nm"
    if shutil.which(nm) is None:
        log.info("onnxc: no %s: the standalone project keeps every runtime source", nm)
        return all_sources
    rt = build / "runtime_c"
    if _tree_hash(rt) != _tree_hash(runtime_dir()):
        log.info("onnxc: %s was built by another onnxc runtime: the standalone project keeps every runtime source",
                 build)
        return all_sources
    opts = man.get("options", {})
    from .build import compile_flags
    objs = runtime_objects(compile_flags(opts.get("target", "native"), opts.get("c_opt", "-O3"),
                                         bool(opts.get("openmp", False))))
    srcs = [str(p.relative_to(runtime_dir())).replace(os.sep, "/") for p in runtime_sources()]
    defs: Dict[str, str] = {}
    refs: Dict[str, set] = {}
    for src, obj in zip(srcs, objs):
        d, u = _nm(obj, nm)
        refs[src] = u
        for s in d:
            defs.setdefault(s, src)
    with tempfile.TemporaryDirectory(prefix="onnxc-emit-") as tmp:
        obj = Path(tmp) / "model.o"
        cflags = [f for f in flags if not f.startswith("-O") and f != "-fopenmp"]
        cmd = [c_compiler(), *cflags, "-O0", "-I", str(rt / "include"), "-I", str(build), "-c",
               str(build / f"{man['prefix']}.c"), "-o", str(obj)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise CompileError(f"compiling {man['prefix']}.c to find its runtime functions failed:\n"
                               f"{proc.stdout[-4000:]}")
        _, todo = _nm(obj, nm)
    needed, seen = set(), set()
    todo = list(todo)
    while todo:
        sym = todo.pop()
        if sym in seen:
            continue
        seen.add(sym)
        src = defs.get(sym)
        if src is not None and src not in needed:
            needed.add(src)
            todo.extend(refs[src])
    return sorted(needed)


# ---- generated pieces -------------------------------------------------------------------------

def _macros(cc: str, flags: Sequence[str]) -> Optional[set]:
    with tempfile.TemporaryDirectory(prefix="onnxc-emit-") as tmp:
        src = Path(tmp) / "empty.c"
        src.write_text("")
        proc = subprocess.run([cc, *flags, "-dM", "-E", str(src)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    if proc.returncode != 0:
        return None
    return {ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("#define ") and len(ln.split()) > 1}


def _watched(rt: Path, model_c: str) -> List[str]:
    """The x86 vector-ISA macros the runtime and the model's C test in #if lines."""
    found = set()
    for text in [model_c] + [p.read_text() for p in rt.rglob("*") if p.suffix in (".c", ".h")]:
        for cond in _PP_IF.findall(text):
            found.update(_ISA_MACRO.findall(cond))
    return sorted(found)


def _isa_guard(prefix: str, target: str, isa, isa_flags: List[str], flags: List[str], model_c: str, rt: Path) -> str:
    """Preprocessor checks put before the model's C: the ISA macros that pick kernels (and the
    packed weight layouts they read) must be the ones the build had."""
    from .build import c_compiler
    where = f"target {target}" + (f" (ISA {isa})" if isa and isa != target else "")
    want = " ".join(isa_flags) or "no vector ISA flags"
    lines = [f"/* onnxc --emit c: the weights of this model were packed for {where}, i.e. for the",
             f" * flags \"{want}\" ({prefix.upper()}_ISA_FLAGS in CMakeLists.txt); the runtime picks its",
             " * kernels (and the weight layouts they read) by the ISA macros these checks compare. */"]
    lines += [f"#if {_BIG_ENDIAN}",
              f"#error \"{prefix}: the weights are little-endian; this target is not\"", "#endif"]
    watched = _watched(rt, model_c)
    cc = c_compiler()
    have, base = _macros(cc, isa_flags), _macros(cc, [])
    if have is None or base is None:
        log.warning("onnxc: %s does not list its macros (-dM -E): %s.c gets no ISA check", cc, prefix)
        return "\n".join(lines) + "\n\n"
    required = [m for m in watched if m in have and m not in base]
    forbidden = [m for m in watched if m not in have]
    if required:
        lines += ["#if " + " || ".join(f"!defined({m})" for m in required),
                  f"#error \"{prefix}: compile with {want}: the weights were packed for {where}\"", "#endif"]
    for m in forbidden:
        lines += [f"#if defined({m})",
                  f"#error \"{prefix}: {m} is defined, but the weights were packed for {where} (flags: {want}); "
                  f"its kernels would read them in another layout\"", "#endif"]
    return "\n".join(lines) + "\n\n"


def _macro_names(rt: Path, model_c: str) -> set:
    """onnxc_* names defined as macros (renaming them would clash with their definition)."""
    found = set()
    for text in [model_c] + [p.read_text() for p in rt.rglob("*") if p.suffix in (".c", ".h")]:
        found.update(re.findall(r"^\s*#\s*define\s+(onnxc_\w+)", text, re.M))
    return found


def _symbols_header(prefix: str, names: List[str]) -> str:
    guard = f"{prefix.upper()}_SYMBOLS_H"
    body = "\n".join(f"#define {n} {prefix}__{n}" for n in names)
    return (f"/* {prefix}_symbols.h: generated by onnxc {__version__} (onnxc compile --emit c). Included before\n"
            f" * anything else in every source of the {prefix} library (CMakeLists.txt: -include), it renames the\n"
            f" * runtime's names to {prefix}__onnxc_*, so libraries of several models (each with its own kernels,\n"
            f" * ISA flags and thread pool) link into one program. Programs include {prefix}.h only. */\n"
            f"#ifndef {guard}\n#define {guard}\n{body}\n#endif\n")


def _weights_c(prefix: str, path: Path, header: int, expect: int):
    import numpy as np
    data = path.read_bytes()[header:]
    if expect >= 0 and len(data) != expect:
        raise CompileError(f"{path}: payload of {len(data)} bytes, the build reports {expect}")
    n = len(data)
    padded = data + b"\0" * (-n % 8)
    words = np.frombuffer(padded, dtype="<u8").tolist() if padded else []
    count = max(1, len(words))
    rows = [",".join(f"0x{w:x}u" for w in words[i:i + 8]) for i in range(0, len(words), 8)] or ["0u"]
    P = prefix.upper()
    h = (f"/* {prefix}_weights.h: the weights of {prefix}, compiled into the library (onnxc compile --emit c\n"
         f" * --embed-weights): pass {prefix}_embedded_weights as the weights argument of {prefix}_run. */\n"
         f"#ifndef {P}_WEIGHTS_H\n#define {P}_WEIGHTS_H\n#include <stdint.h>\n"
         f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n"
         f"/* {n} bytes of payload ({P}_WEIGHTS_BYTES), 64-byte aligned, as little-endian 64-bit words */\n"
         f"extern const uint64_t {prefix}_embedded_weights[{count}];\n"
         f"#ifdef __cplusplus\n}}\n#endif\n#endif\n")
    c = (f"/* {prefix}_weights.c: generated by onnxc {__version__}: the {n}-byte weights payload of {prefix}. */\n"
         f"#include \"{prefix}_weights.h\"\n\n"
         f"#if {_BIG_ENDIAN}\n"
         f"#error \"{prefix}: the weights are little-endian 64-bit words; this target is big-endian\"\n#endif\n"
         f"#if defined(_MSC_VER)\n__declspec(align(64))\n#endif\n"
         f"const uint64_t {prefix}_embedded_weights[{count}]\n"
         f"#if defined(__GNUC__) || defined(__clang__)\n    __attribute__((aligned(64)))\n#endif\n"
         f"    = {{\n" + ",\n".join(rows) + "\n};\n")
    return c, h
