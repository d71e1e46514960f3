"""Build: generated C + runtime_c -> a cffi extension module (.so), cached by content hash.

The runtime kernels are compiled once per (sources, flags) into object files kept in the
cache directory; a model build then compiles only its own C file and links those objects.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import List

from .errors import CompileError
from .isa import BY_NAME as ISA_BY_NAME, FEATURES
from .isa import ISAS as ISA_ROWS
from .progress import stage, step
from .resources import runtime_dir, runtime_sources

# Compiler flags per target: the rows of isa.py, plus "native". The C side selects its row
# (runtime_c/include/onnxc_isa.h: microkernels, tiles, NCHWc block) from the feature macros
# these define, and the compiler packs weights for target.resolve()'s row of the same target:
# the two must agree (see native_flags).
TARGETS = {"native": ["-march=native"], **{i.name: list(i.cflags) for i in ISA_ROWS}}


def native_flags() -> List[str]:
    """-march=native, minus the features of the table (isa.FEATURES) this CPU has but
    target.host_isa()'s row lacks (e.g. AVX-512F without BW/DQ/VL, or AVX2 without F16C): the
    row the C build selects must be the one the weights were packed for."""
    import platform
    from .cpu import host_flags
    from .target import host_isa
    flags = ["-march=native"]
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return flags
    row = ISA_BY_NAME[host_isa()]
    have = host_flags()
    return flags + ["-mno-" + opt[2:] for f, (_, opt) in FEATURES.items() if f in have and f not in row.cpu_flags]


def cache_root() -> Path:
    root = os.environ.get("ONNXC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "onnxc")
    return Path(root)


def c_compiler() -> str:
    return os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"


def compile_flags(target: str = "native", opt: str = "-O3", openmp: bool = True) -> List[str]:
    if target not in TARGETS:
        raise ValueError(f"unknown target '{target}'; expected one of {sorted(TARGETS)}")
    flags = ["-std=c99", opt, "-fPIC", "-fno-math-errno", "-Wno-unused-variable", "-Wno-unused-parameter",
             "-Wno-unused-function"] + (native_flags() if target == "native" else TARGETS[target])
    if openmp:
        flags.append("-fopenmp")
    return flags + extra_cflags()


def default_openmp() -> bool:
    """Whether a module is built with -fopenmp when the caller does not say.  Not where the runtime
    has its pthread pool (POSIX): a pool build never forks an OpenMP team (onnxc_rt_omp_ok), so
    -fopenmp would only link libgomp, whose loading was a third of a small model's first load."""
    return os.name != "posix"


def extra_cflags() -> List[str]:
    """ONNXC_EXTRA_CFLAGS: test-only flags appended to every compile and link of generated C and
    runtime_c (e.g. "-fsanitize=address -fno-omit-frame-pointer -O1"; a later -O wins). They are
    part of the build cache keys, so instrumented and plain builds never mix. A sanitized module
    loaded by an uninstrumented python needs the sanitizer runtime preloaded (docs/performance.md,
    Measuring)."""
    return shlex.split(os.environ.get("ONNXC_EXTRA_CFLAGS", ""))


def _run(cmd: List[str], what: str) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise CompileError(f"{what} failed ({' '.join(cmd[:3])} ...):\n{proc.stdout[-4000:]}")


# A module links every runtime object but calls a handful of kernels: with each function in its
# own section and not exported from the .so, the linker drops the rest (a one-node model's .so
# went from 0.9 MB to 42 KB; less to map at load and less disk per build). GNU ld and lld only.
GC_SECTIONS = sys.platform.startswith("linux")
RUNTIME_OBJECT_FLAGS = ["-ffunction-sections", "-fdata-sections", "-fvisibility=hidden"] if GC_SECTIONS else []
MODULE_LINK_FLAGS = ["-Wl,--gc-sections"] if GC_SECTIONS else []


def runtime_objects(flags: List[str]) -> List[Path]:
    """Object files of runtime_c compiled with ``flags``, cached; safe for concurrent builders."""
    srcs = runtime_sources()
    flags = [*flags, *RUNTIME_OBJECT_FLAGS]
    h = hashlib.sha256(" ".join(flags).encode() + c_compiler().encode())
    for p in srcs + sorted(runtime_dir().rglob("*.h")):
        h.update(str(p.relative_to(runtime_dir())).encode())
        h.update(p.read_bytes())
    dest = cache_root() / "runtime" / h.hexdigest()[:16]
    objs = [dest / (str(p.relative_to(runtime_dir())).replace(os.sep, "_")[:-2] + ".o") for p in srcs]
    if all(o.exists() for o in objs):
        return objs
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rt-", dir=dest.parent))
    inc = str(runtime_dir() / "include")
    stage(f"compiling the runtime C (once per compiler and flags, then cached): {len(srcs)} units")
    for k, (src, obj) in enumerate(zip(srcs, objs)):
        step(k, len(srcs), str(src.relative_to(runtime_dir())))
        _run([c_compiler(), *flags, "-I", inc, "-c", str(src), "-o", str(tmp / obj.name)],
             f"compiling runtime {src.name}")
    step(len(srcs), len(srcs), "done")
    try:
        os.replace(tmp, dest)
    except OSError:  # another process won the race; its objects are identical
        shutil.rmtree(tmp, ignore_errors=True)
    return objs


def cdef(prefix: str, partitions=()) -> str:
    """cffi declarations; ``partitions``: indices of C partitions exported for the Python
    runtime (models with fallback partitions)."""
    parts = "".join(f"int {prefix}_partition{i}(const uint8_t* weights, uint8_t* arena, "
                    f"const void* const* in, void* const* out);\n" for i in partitions)
    return parts + (f"size_t {prefix}_arena_bytes(void);\n"
            f"size_t {prefix}_weights_bytes(void);\n"
            f"int {prefix}_run(const void* weights, void* arena, const void* const* inputs, "
            f"void* const* outputs);\n"
            f"void {prefix}_set_num_threads(int n);\n"
            f"int {prefix}_get_num_threads(void);\n"
            f"void {prefix}_profile_enable(int on);\n"
            f"void {prefix}_profile_reset(void);\n"
            f"const double* {prefix}_profile_seconds(void);\n"
            f"int {prefix}_profile_nodes(void);\n"
            # self-description and manifest checksums, checked at load (compiler/verify.py)
            f"int {prefix}_num_inputs(void);\n"
            f"int {prefix}_num_outputs(void);\n"
            f"size_t {prefix}_input_bytes(int i);\n"
            f"size_t {prefix}_output_bytes(int i);\n"
            f"const char* {prefix}_input_dtype(int i);\n"
            f"const char* {prefix}_output_dtype(int i);\n"
            f"int {prefix}_output_shape(const void* arena, int i, int64_t* dims);\n"
            f"const char* {prefix}_manifest_checksums(void);\n")


def build_module(out_dir: Path, prefix: str, module_name: str, target: str = "native",
                 opt: str = "-O3", openmp: bool = True, partitions=()) -> Path:
    """Compile <out_dir>/<prefix>.c into the cffi module ``module_name``; return the .so path."""
    import cffi
    flags = compile_flags(target, opt, openmp)
    objs = runtime_objects(flags)
    ffi = cffi.FFI()
    ffi.cdef(cdef(prefix, partitions))
    ffi.set_source(module_name, f'#include "{prefix}.h"', sources=[str(out_dir / f"{prefix}.c")],
                   include_dirs=[str(out_dir), str(runtime_dir() / "include")],
                   extra_compile_args=flags, extra_objects=[str(o) for o in objs],
                   extra_link_args=(["-fopenmp"] if openmp else []) + MODULE_LINK_FLAGS + extra_cflags())
    build_tmp = Path(tempfile.mkdtemp(prefix="build-", dir=out_dir))
    old_cc = os.environ.get("CC")
    stage(f"compiling {prefix}.c and linking {module_name}")
    try:
        so = ffi.compile(tmpdir=str(build_tmp), verbose=False)
        final = out_dir / Path(so).name
        os.replace(so, final)
    except Exception as e:  # noqa: BLE001 - distutils raises CompileError/LinkError
        raise CompileError(f"building {module_name} failed: {e}") from None
    finally:
        if old_cc is None:
            os.environ.pop("CC", None)
        shutil.rmtree(build_tmp, ignore_errors=True)
    return final


def python_tag() -> str:
    return f"{sys.implementation.cache_tag}-{sysconfig.get_config_var('SOABI')}"


def build_kernel_library(so: Path, sources, flags: List[str], extra_c: str = "", extra_cdef: str = ""):
    """Runtime kernels alone as a plain shared library, for tests and benchmarks that call them
    through cffi: ``sources`` (paths relative to runtime_c/) compiled with ``flags`` (e.g.
    compile_flags(target)) and -Wall -Wextra -Werror, with runtime_c/common (threads, timers:
    what every kernel may call), plus ``extra_c`` (e.g. a layout probe).
    Returns (ffi, lib) with the declarations of onnxc_kernels.h (and ``extra_cdef``)."""
    import cffi
    from .resources import kernels_cdef
    so = Path(so)
    common = sorted(str(p.relative_to(runtime_dir())) for p in (runtime_dir() / "common").glob("*.c"))
    srcs = [str(runtime_dir() / s) for s in dict.fromkeys([*sources, *common])]
    if extra_c:
        probe = so.with_suffix(".extra.c")
        probe.write_text(extra_c)
        srcs.append(str(probe))
    cmd = [c_compiler(), "-std=c99", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", *flags,
           "-I", str(runtime_dir() / "include"), *srcs, "-o", str(so), "-lm", "-Wl,-Bsymbolic",
           # never unmapped by dlclose (cffi closes a library when its lib object is collected,
           # at the latest at interpreter exit): unloading it would also unload libgomp under its
           # idle worker threads, which then crash the process (SIGSEGV at exit, test_guard_pages)
           "-Wl,-z,nodelete"]
    _run(cmd, f"building {so.name}")
    ffi = cffi.FFI()
    ffi.cdef(kernels_cdef("onnxc_activations.h") + kernels_cdef())  # the first declares onnxc_activation
    if extra_cdef:
        ffi.cdef(extra_cdef)
    return ffi, ffi.dlopen(str(so))
