"""Compile targets: which ISA a module is built for and what that means for layout choices.

``native`` resolves to the best ISA the build machine has (read from /proc/cpuinfo on Linux,
else ``generic``).  The NCHWc block is the number of float32 lanes in one vector register of
the target: 16 for AVX-512, 8 for AVX2; the portable build uses 8 (it vectorizes to whatever
the C compiler targets, and keeps the blocked code paths exercised on any CI machine).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

ISAS = ("generic", "avx2", "avx512")
# CPU flags (as /proc/cpuinfo spells them) a module built for the ISA executes.
REQUIRED_FLAGS = {"generic": (), "avx2": ("avx2", "fma", "f16c"),
                  "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "f16c")}
_BLOCK = {"generic": 8, "avx2": 8, "avx512": 16}


@dataclass(frozen=True)
class Target:
    name: str  # what the user asked for
    isa: str  # what it resolved to

    @property
    def nchwc_block(self) -> int:
        return _BLOCK[self.isa]


@functools.lru_cache(maxsize=1)
def host_flags() -> frozenset:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def host_isa() -> str:
    flags = host_flags()
    for isa in ("avx512", "avx2"):
        if all(f in flags for f in REQUIRED_FLAGS[isa]):
            return isa
    return "generic"


def resolve(target: str = "native") -> Target:
    if target == "native":
        return Target("native", host_isa())
    if target not in ISAS:
        raise ValueError(f"unknown target '{target}'; expected native or one of {list(ISAS)}")
    return Target(target, target)
