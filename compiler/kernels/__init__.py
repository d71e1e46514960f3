"""Microkernel lists, one module per family (e.g. gemm_f32.py, qgemm.py).

A kernel is named ``onnxc_<dtype>_<kind>_<tile>__<isa>`` (``onnxc_f32_gemm_14x32__avx512``,
``onnxc_u8s8_gemm_..__avx512vnni``; ``__generic`` is portable C only and exists for every family).
Each family's list feeds the C declarations, the provider's kernel choice, the kernel tests
(tile edges at every ISA the host runs) and the benchmarks: adding a kernel is one row plus its
C file.
"""
from __future__ import annotations


class Kernel:
    """One microkernel: its C symbol, what it computes and for which ISA (a row of onnxc.isa)."""
    __slots__ = ("dtype", "kind", "tile", "isa", "source")

    def __init__(self, dtype: str, kind: str, tile: str, isa: str, source: str):
        self.dtype, self.kind, self.tile, self.isa, self.source = dtype, kind, tile, isa, source

    @property
    def name(self) -> str:
        return f"onnxc_{self.dtype}_{self.kind}_{self.tile}__{self.isa}"

    def __repr__(self) -> str:
        return f"Kernel({self.name}, {self.source})"
