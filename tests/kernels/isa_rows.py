"""ISA rows (onnxc.isa) for kernel-family tests: which ones this host runs, and the flags a test
library of a row is built with (warnings as errors come from build_kernel_library)."""
from __future__ import annotations

import os
import shutil
import subprocess

from onnxc.build import c_compiler
from onnxc.cpu import host_flags
from onnxc.isa import BY_NAME, ISAS


def runnable(names=None) -> list:
    """Rows (of ``names``, default all) whose CPU flags this host has, in table order."""
    have = host_flags()
    return [r.name for r in ISAS if (names is None or r.name in names) and set(r.cpu_flags) <= have]


def flags(isa: str) -> list:
    return ["-O3", "-fno-math-errno", *BY_NAME[isa].cflags]


def compile_only(src_paths, isa: str, include_dir) -> str:
    """Compile ``src_paths`` to objects under ``isa``'s flags with -Wall -Wextra -Werror (at -O1: the
    warnings and the intrinsics' target checks, in a fraction of -O3's time); returns the compiler's
    complaint ('' when clean)."""
    cc = c_compiler()
    if shutil.which(cc) is None:
        return ""
    out = []
    for src in src_paths:
        p = subprocess.run([cc, "-std=c99", "-c", "-o", os.devnull, "-Wall", "-Wextra", "-Werror", *flags(isa), "-O1",
                            "-I", str(include_dir), str(src)], capture_output=True, text=True)
        if p.returncode:
            out.append(f"{src}:\n{p.stderr}")
    return "\n".join(out)
