"""The ISA table (compiler/isa.py) and the kernel lists (compiler/kernels/) against the C side.

- runtime_c/include/onnxc_isa.h is what compiler/kernels/header.py writes from them;
- each row's compiler flags select that row in C (ONNXC_ISA_NAME), and the native flags select
  the row target.resolve("native") packs weights for;
- every kernel row's symbol is defined by its family's sources compiled for each float ISA the
  host runs exactly when the row says so (Kernel.built_for), and the NCHWc names are the ones
  declared in onnxc_nchwc.h;
- the Python side (cpu, target, build, linalg) reads the table.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from onnxc import build, cpu, isa, target
from onnxc.kernels import Kernel, gemm_f32, header, nchwc_f32
from onnxc.resources import runtime_dir

FAMILIES = {"gemm_f32": gemm_f32, "nchwc_f32": nchwc_f32}
needs_cc = pytest.mark.skipif(shutil.which(build.c_compiler()) is None, reason="no C compiler")


def test_generated_header_is_current():
    assert header.path().read_text() == header.render(), \
        "runtime_c/include/onnxc_isa.h is stale: run python -m onnxc.kernels.header"
    assert header.main(["--check"]) == 0


def _selected(flags) -> str:
    """ONNXC_ISA_NAME, ONNXC_SGEMM_KERNEL and ONNXC_NCHWC_BLOCK as the C preprocessor sees them
    with ``flags``."""
    src = '#include "onnxc_isa.h"\nONNXC_ISA_NAME ONNXC_SGEMM_KERNEL ONNXC_NCHWC_BLOCK\n'
    out = subprocess.run([build.c_compiler(), *flags, "-I", str(runtime_dir() / "include"), "-E", "-x", "c", "-"],
                         input=src, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


@needs_cc
@pytest.mark.parametrize("row", isa.ISAS, ids=lambda r: r.name)
def test_row_flags_select_the_row(row):
    """Preprocessing only: every row, whether or not the host runs it."""
    gemm = gemm_f32.for_isa(row.name)
    assert _selected(build.compile_flags(row.name)) == f'"{row.name}" {gemm.name} {row.nchwc_block}'


@needs_cc
def test_native_flags_select_the_resolved_row():
    t = target.resolve("native")
    assert t.isa == cpu.runnable_isas()[-1] == cpu.host_isa()
    assert _selected(build.compile_flags("native")).split()[0] == f'"{t.isa}"'


def test_runnable_rows_from_cpu_features():
    avx2 = {"sse2", "avx", "avx2", "fma", "f16c"}
    avx512 = avx2 | {"avx512f", "avx512bw", "avx512dq", "avx512vl"}
    assert isa.runnable(set()) == ["generic"]
    assert isa.runnable(avx2 - {"f16c"}) == ["generic"]
    assert isa.runnable(avx2 | {"avx_vnni"})[-1] == "avx2vnni"
    assert isa.runnable(avx512 - {"avx512bw"}) == ["generic", "avx2"]
    assert isa.runnable(avx512 | {"avx512_vnni"})[-1] == "avx512vnni"
    spr = avx512 | {"avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}
    assert isa.runnable(spr) == ["generic", "avx2", "avx2vnni", "avx512", "avx512vnni", "amx"]
    assert isa.runnable(spr - {"amx_int8"})[-1] == "avx512vnni"


def test_native_flags_drop_what_the_row_lacks(monkeypatch):
    """-march=native minus the table's features the CPU has beyond its row (AVX-512F without
    BW/DQ/VL counts as AVX2; the C side would select the avx512 row from -march=native's macros)."""
    import platform
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("x86 only")
    monkeypatch.setattr(cpu, "host_flags", lambda: frozenset({"avx2", "fma", "f16c", "avx512f", "avx512dq"}))
    assert build.native_flags() == ["-march=native", "-mno-avx512f", "-mno-avx512dq"]
    monkeypatch.setattr(cpu, "host_flags", lambda: frozenset(isa.BY_NAME["amx"].cpu_flags))
    assert build.native_flags() == ["-march=native"]


def test_python_side_reads_the_table():
    from onnxc.providers.c.linalg import SGEMM_KC, SGEMM_TILE
    names = [r.name for r in isa.ISAS]
    assert list(cpu.REQUIRED_FLAGS) == names == list(target.ISAS)
    assert list(build.TARGETS) == ["native"] + names
    for r in isa.ISAS:
        assert build.TARGETS[r.name] == r.cflags and set(r.cpu_flags) <= set(isa.FEATURES)
        assert isa.BY_NAME[r.base].base == r.base and r.includes(isa.BY_NAME[r.base])
        t = target.resolve(r.name)
        assert (t.base, t.nchwc_block) == (r.base, r.nchwc_block)
        k = gemm_f32.for_isa(r.name)
        assert k.isa == r.base and SGEMM_TILE[r.name] == gemm_f32.tile(r.name) == tuple(map(int, k.tile.split("x")))
    assert SGEMM_KC == gemm_f32.KC
    assert isa.FLOAT_ISAS == ("generic", "avx2", "avx512")
    with pytest.raises(ValueError, match="unknown target"):
        target.resolve("avx1024")


def test_kernel_names():
    for k in gemm_f32.KERNELS + nchwc_f32.KERNELS:
        assert Kernel.parse(k.name, k.source).name == k.name
        assert (runtime_dir() / k.source).is_file(), k.source
        assert k.isa is None or k.isa in isa.BY_NAME
    k = Kernel.parse("onnxc_f32_gemm_14x32__avx512", "gemm/f32_gemm_14x32__avx512.c")
    assert (k.dtype, k.kind, k.tile, k.isa) == ("f32", "gemm", "14x32", "avx512")
    k = Kernel.parse("onnxc_f32_nchwc_conv_winograd_f4_b16", "nchwc/conv_winograd.c")
    assert (k.dtype, k.kind, k.tile, k.isa) == ("f32", "nchwc_conv_winograd_f4", "b16", None)
    assert k.built_for("generic") and not gemm_f32.KERNELS[-1].built_for("avx2vnni")
    with pytest.raises(ValueError):
        Kernel.parse("sgemm_kernel", "x.c")
    # every kernel file's name is its symbol's (one kernel per file for the ISA-named ones)
    for k in gemm_f32.KERNELS:
        assert k.source == f"gemm/{k.name[len('onnxc_'):]}.c"
    # names appear literally where the C defines them, or in the macro lines that instantiate them
    for k in gemm_f32.KERNELS + nchwc_f32.KERNELS:
        assert k.name in (runtime_dir() / k.source).read_text(), (k.name, k.source)


def test_nchwc_names_are_the_declared_ones():
    declared = set(re.findall(r"\b(onnxc_f32_nchwc_\w+_b\d+)\(", (runtime_dir() / "include" / "onnxc_nchwc.h").read_text()))
    assert declared == {k.name for k in nchwc_f32.KERNELS}
    assert {nchwc_f32.name(k.kind[len("nchwc_"):], b) for k in nchwc_f32.KERNELS for b in nchwc_f32.BLOCKS} == declared


def _defined_symbols(objs) -> set:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("no nm")
    out = subprocess.run([nm, "--defined-only", *map(str, objs)], capture_output=True, text=True, check=True).stdout
    return {ln.split()[-1] for ln in out.splitlines() if re.match(r"^[0-9a-f]+ [TtDdRr] ", ln)}


@needs_cc
@pytest.mark.parametrize("row", cpu.runnable_float_isas())
def test_kernel_symbols_in_the_runtime(row, tmp_path):
    """The families' sources compiled as the runtime is for this ISA (its flags, at -O0: only the
    symbols matter) define every kernel built for it, and none built only for rows it does not
    include."""
    objs = []
    for src in sorted({k.source for fam in FAMILIES.values() for k in fam.KERNELS} | set(gemm_f32.SOURCES)):
        obj = tmp_path / (src.replace("/", "_") + ".o")
        subprocess.run([build.c_compiler(), *build.compile_flags(row, opt="-O0"), *build.RUNTIME_OBJECT_FLAGS,
                        "-I", str(runtime_dir() / "include"), "-c", str(runtime_dir() / src), "-o", str(obj)],
                       check=True, capture_output=True)
        objs.append(obj)
    syms = _defined_symbols(objs)
    for fam in FAMILIES.values():
        for k in fam.KERNELS:
            assert (k.name in syms) == k.built_for(row), (row, k.name)
