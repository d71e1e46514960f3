"""Compile targets: which ISA a module is built for and what that means for layout choices.

``native`` resolves to the best ISA the build machine has (read from /proc/cpuinfo on Linux,
else ``generic``).  The NCHWc block is the number of float32 lanes in one vector register of
the target: 16 for AVX-512, 8 for AVX2; the portable build uses 8 (it vectorizes to whatever
the C compiler targets, and keeps the blocked code paths exercised on any CI machine).
"""
from __future__ import annotations

from dataclasses import dataclass

from .cpu import REQUIRED_FLAGS, host_flags, host_isa  # noqa: F401 (re-exported)

ISAS = ("generic", "avx2", "avx512")
_BLOCK = {"generic": 8, "avx2": 8, "avx512": 16}


@dataclass(frozen=True)
class Target:
    name: str  # what the user asked for
    isa: str  # what it resolved to

    @property
    def nchwc_block(self) -> int:
        return _BLOCK[self.isa]


def resolve(target: str = "native") -> Target:
    if target == "native":
        return Target("native", host_isa())
    if target not in ISAS:
        raise ValueError(f"unknown target '{target}'; expected native or one of {list(ISAS)}")
    return Target(target, target)
