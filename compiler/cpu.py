"""What the host CPU can execute: the flags a module's ISA needs and the host's flags.

Kept apart from target.py (and free of heavy imports) because loading a compiled module checks
the CPU first: importing target.py's dataclass machinery cost ~2 ms of a first load."""
from __future__ import annotations

import functools

# CPU flags (as /proc/cpuinfo spells them) a module built for the ISA executes.
REQUIRED_FLAGS = {"generic": (), "avx2": ("avx2", "fma", "f16c"),
                  "avx512": ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "f16c")}


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


def runnable_isas() -> list:
    """The ISAs whose modules this CPU executes, portable first (what kernel tests build)."""
    flags = host_flags()
    return [isa for isa in ("generic", "avx2", "avx512") if all(f in flags for f in REQUIRED_FLAGS[isa])]


def host_isa() -> str:
    """The best of them (each ISA's flags include the one before's)."""
    return runnable_isas()[-1]
