"""What the host CPU can execute: the rows of the ISA table (isa.py) its features cover.

Kept apart from target.py (and free of heavy imports) because loading a compiled module checks
the CPU first: importing target.py's dataclass machinery cost ~2 ms of a first load."""
from __future__ import annotations

import functools

from .isa import BY_NAME, ISAS, runnable

# CPU flags (as /proc/cpuinfo spells them) a module built for the ISA executes.
REQUIRED_FLAGS = {i.name: i.cpu_flags for i in ISAS}


def _cpuinfo(key: str):
    """The value of the first ``key`` line of /proc/cpuinfo, or None (no such line, not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def host_flags() -> frozenset:
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    """The CPU's model name, as every benchmark records it beside its numbers."""
    import platform
    return _cpuinfo("model name") or platform.processor() or "unknown"


def runnable_isas() -> list:
    """The ISAs whose modules this CPU executes, portable first, in the table's order."""
    return runnable(host_flags())


def runnable_float_isas() -> list:
    """Those that are their own float ISA (generic, avx2, avx512): the distinct f32 code paths,
    what f32 kernel tests build (avx512vnni's f32 kernels are avx512's)."""
    return [i for i in runnable_isas() if BY_NAME[i].base == i]


def host_isa() -> str:
    """The best of them: the last runnable row of the table."""
    return runnable_isas()[-1]
