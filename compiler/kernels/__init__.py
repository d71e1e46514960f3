"""Microkernel lists, one module per family (gemm_f32.py, nchwc_f32.py; qgemm.py, ...).

A kernel is named ``onnxc_<dtype>_<kind>_<tile>__<isa>`` (``onnxc_f32_gemm_14x32__avx512``,
``onnxc_u8s8_gemm_..__avx512vnni``; ``__generic`` is portable C only and exists for every family).
Kernels compiled for every row of the ISA table, whose code follows the build's ISA (the NCHWc
entry points: vector code when their block matches the build's registers, plain C otherwise),
have no ISA part: ``onnxc_f32_nchwc_conv_b16``.

Each family's list feeds the C declarations (compiler/kernels/header.py writes them into
runtime_c/include/onnxc_isa.h), the provider's kernel choice, the kernel tests (tile edges at
every ISA the host runs; tests/test_isa.py checks every row's symbol is in the runtime built for
its ISA) and the benchmarks: adding a kernel is one row plus its C file. Rows are written with
their full symbol names (``Kernel.parse``) so that grep finds them here.
"""
from __future__ import annotations

from typing import Optional

from ..isa import BY_NAME


class Kernel:
    """One microkernel: its C symbol, what it computes and for which ISA (a row of onnxc.isa;
    None: built for every row)."""
    __slots__ = ("dtype", "kind", "tile", "isa", "source")

    def __init__(self, dtype: str, kind: str, tile: str, isa: Optional[str], source: str):
        self.dtype, self.kind, self.tile, self.isa, self.source = dtype, kind, tile, isa, source

    @classmethod
    def parse(cls, name: str, source: str) -> "Kernel":
        """The row of symbol ``name`` (onnxc_<dtype>_<kind>_<tile>[__<isa>]) defined in
        ``source`` (a path under runtime_c/)."""
        stem, _, isa = name.partition("__")
        parts = stem.split("_")
        if parts[0] != "onnxc" or len(parts) < 4 or (isa == "" and "__" in name):
            raise ValueError(f"kernel name {name!r} is not onnxc_<dtype>_<kind>_<tile>[__<isa>]")
        k = cls(parts[1], "_".join(parts[2:-1]), parts[-1], isa or None, source)
        assert k.name == name, (k.name, name)
        return k

    @property
    def name(self) -> str:
        stem = f"onnxc_{self.dtype}_{self.kind}_{self.tile}"
        return stem if self.isa is None else f"{stem}__{self.isa}"

    def built_for(self, isa: str) -> bool:
        """Whether the runtime built for ISA row ``isa`` defines this kernel (a kernel for a row
        is compiled wherever that row's features are enabled: the generic twin everywhere)."""
        return self.isa is None or BY_NAME[isa].includes(BY_NAME[self.isa])

    def __repr__(self) -> str:
        return f"Kernel({self.name}, {self.source})"
