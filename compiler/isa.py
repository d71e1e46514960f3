"""The one table of instruction sets onnxc builds for.

Every ISA fact lives in a row here: the CPU features a module built for the ISA executes (as
/proc/cpuinfo spells them), the compiler flags that enable them, the float ISA whose f32 kernels
it uses (``base``) and the layout facts that follow (NCHWc block). Rows are ordered by
preference: the best ISA for a host is the last row whose CPU features it has, and the C build
selects the last row whose features its compiler flags enable (runtime_c/include/onnxc_isa.h,
generated from this table and the kernel lists by compiler/kernels/header.py). Kernel families
(compiler/kernels/) name their microkernels by these rows; the GEMM tiles live there, in the
kernels' names.

Adding an ISA: one row here (its features in FEATURES if new), its kernel files and their rows
in the family lists, then ``python -m onnxc.kernels.header`` (tests/test_isa.py checks the
checked-in header is current and that the row's compiler flags select the row in C).

Kept free of heavy imports: loading a compiled module checks the CPU through it.
"""
from __future__ import annotations

# CPU feature (/proc/cpuinfo name) -> (macro the C compiler defines when it may use the
# feature, compiler option that enables it)
FEATURES = {
    "avx2": ("__AVX2__", "-mavx2"),
    "fma": ("__FMA__", "-mfma"),
    "f16c": ("__F16C__", "-mf16c"),
    "avx512f": ("__AVX512F__", "-mavx512f"),
    "avx512bw": ("__AVX512BW__", "-mavx512bw"),
    "avx512dq": ("__AVX512DQ__", "-mavx512dq"),
    "avx512vl": ("__AVX512VL__", "-mavx512vl"),
    "avx_vnni": ("__AVXVNNI__", "-mavxvnni"),
    "avx512_vnni": ("__AVX512VNNI__", "-mavx512vnni"),
    "amx_tile": ("__AMX_TILE__", "-mamx-tile"),
    "amx_int8": ("__AMX_INT8__", "-mamx-int8"),
}


class Isa:
    """One row: ``cflags`` and ``macros`` follow from ``cpu_flags`` through FEATURES."""
    __slots__ = ("name", "base", "cpu_flags", "cflags", "macros", "nchwc_block", "doc")

    def __init__(self, name, base, cpu_flags, nchwc_block, doc):
        self.name, self.base, self.cpu_flags = name, base, tuple(cpu_flags)
        self.cflags = [FEATURES[f][1] for f in self.cpu_flags]
        self.macros = [FEATURES[f][0] for f in self.cpu_flags]
        self.nchwc_block, self.doc = nchwc_block, doc

    def includes(self, other: "Isa") -> bool:
        """Whether code built for ``other`` runs wherever this row's code runs."""
        return set(other.cpu_flags) <= set(self.cpu_flags)

    def __repr__(self) -> str:
        return f"Isa({self.name!r})"


_AVX2 = ("avx2", "fma", "f16c")
_AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl") + _AVX2

# name, base (float ISA), CPU features, NCHWc block (float32 lanes of one vector register of
# the base; the portable build uses 8 too, which keeps the blocked paths exercised anywhere)
ISAS = (
    Isa("generic", "generic", (), 8, "portable C only"),
    Isa("avx2", "avx2", _AVX2, 8, "AVX2 + FMA3 + F16C (Haswell, Zen 1-3)"),
    Isa("avx2vnni", "avx2", _AVX2 + ("avx_vnni",), 8, "AVX-VNNI: vpdpbusd on ymm (Alder Lake and later)"),
    Isa("avx512", "avx512", _AVX512, 16, "AVX-512 F/BW/DQ/VL (Skylake-SP, Zen 4)"),
    Isa("avx512vnni", "avx512", _AVX512 + ("avx512_vnni",), 16,
        "AVX512-VNNI: vpdpbusd on zmm (Cascade Lake, Ice Lake, Zen 4)"),
    Isa("amx", "avx512", _AVX512 + ("avx512_vnni", "amx_tile", "amx_int8"), 16,
        "AMX-INT8 tiles (Sapphire Rapids); needs the OS tile permission at load, else AVX512-VNNI"),
)
BY_NAME = {i.name: i for i in ISAS}
# The rows that are their own base: the distinct f32 code paths (what float kernel tests build).
FLOAT_ISAS = tuple(i.name for i in ISAS if i.base == i.name)


def runnable(flags) -> list:
    """Names of the rows whose code a CPU with these features runs, portable first."""
    return [i.name for i in ISAS if all(f in flags for f in i.cpu_flags)]
