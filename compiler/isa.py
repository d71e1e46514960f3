"""The one table of instruction sets onnxc builds for.

Every ISA fact lives in a row here: the CPU flags a module built for the ISA executes (as
/proc/cpuinfo spells them), the compiler flags that select it, the float ISA whose f32 kernels
it uses, and the layout facts that follow (NCHWc block). Rows are ordered by preference: the
best ISA for a host is the last row whose CPU flags it has. Kernel families (compiler/kernels/)
name their microkernels by these rows.

Kept free of heavy imports: loading a compiled module checks the CPU through it.
"""
from __future__ import annotations


class Isa:
    __slots__ = ("name", "base", "cpu_flags", "cflags", "nchwc_block", "doc")

    def __init__(self, name, base, cpu_flags, cflags, nchwc_block, doc):
        self.name, self.base, self.cpu_flags, self.cflags = name, base, tuple(cpu_flags), list(cflags)
        self.nchwc_block, self.doc = nchwc_block, doc

    def __repr__(self) -> str:
        return f"Isa({self.name!r})"


_AVX2 = ("avx2", "fma", "f16c")
_AVX512 = ("avx512f", "avx512bw", "avx512dq", "avx512vl") + _AVX2
_AVX2_CFLAGS = ["-mavx2", "-mfma", "-mf16c"]
_AVX512_CFLAGS = ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl"] + _AVX2_CFLAGS

# name, base (float ISA), CPU flags, compiler flags, NCHWc block, what it adds
ISAS = (
    Isa("generic", "generic", (), [], 8, "portable C only"),
    Isa("avx2", "avx2", _AVX2, _AVX2_CFLAGS, 8, "AVX2 + FMA3 + F16C (Haswell, Zen 1-3)"),
    Isa("avx2vnni", "avx2", _AVX2 + ("avx_vnni",), _AVX2_CFLAGS + ["-mavxvnni"], 8,
        "AVX-VNNI: vpdpbusd on ymm (Alder Lake and later)"),
    Isa("avx512", "avx512", _AVX512, _AVX512_CFLAGS, 16, "AVX-512 F/BW/DQ/VL (Skylake-SP, Zen 4)"),
    Isa("avx512vnni", "avx512", _AVX512 + ("avx512_vnni",), _AVX512_CFLAGS + ["-mavx512vnni"], 16,
        "AVX512-VNNI: vpdpbusd on zmm (Cascade Lake, Ice Lake, Zen 4)"),
    Isa("amx", "avx512", _AVX512 + ("avx512_vnni", "amx_tile", "amx_int8"),
        _AVX512_CFLAGS + ["-mavx512vnni", "-mamx-tile", "-mamx-int8"], 16,
        "AMX-INT8 tiles (Sapphire Rapids); needs the OS tile permission at load, else AVX512-VNNI"),
)
BY_NAME = {i.name: i for i in ISAS}
