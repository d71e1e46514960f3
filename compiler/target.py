"""Compile targets: which ISA a module is built for and what that means for layout choices.

``native`` resolves to the best ISA the build machine has (read from /proc/cpuinfo on Linux,
else ``generic``); the others are the rows of isa.py.  A row's facts (float ISA, NCHWc block)
come from there.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cpu import REQUIRED_FLAGS, host_flags, host_isa  # noqa: F401 (re-exported)
from .isa import BY_NAME
from .isa import ISAS as _ROWS

ISAS = tuple(i.name for i in _ROWS)


@dataclass(frozen=True)
class Target:
    name: str  # what the user asked for
    isa: str  # what it resolved to (a row of isa.py)

    @property
    def row(self):
        return BY_NAME[self.isa]

    @property
    def base(self) -> str:
        """The float ISA: whose f32 kernels (and packed-weight layouts) the module uses."""
        return BY_NAME[self.isa].base

    @property
    def nchwc_block(self) -> int:
        return BY_NAME[self.isa].nchwc_block


def resolve(target: str = "native") -> Target:
    if target == "native":
        return Target("native", host_isa())
    from .portable import PORTABLE
    if target in PORTABLE:  # several builds: the passes run once per carried ISA (driver.build_portable)
        raise ValueError(f"target '{target}' is a portable target: onnxc.compile builds it once per ISA it carries "
                         f"({', '.join(PORTABLE[target])}); the passes and the C take one of those")
    if target not in ISAS:
        raise ValueError(f"unknown target '{target}'; expected native or one of {list(ISAS)}")
    return Target(target, target)
