"""What the int8 kernel-family tests (test_qgemm, test_qconv, test_qwino) share: a family's
library built with one ISA row's flags, kernel descriptors, numpy-to-C pointers, the
onnxc_qgemm_output stage every int8 GEMM and convolution entry point writes through, the
references of the output stage, and the compile-only pass of a family's files under every row."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from onnxc import isa as isa_table
from onnxc.build import build_kernel_library, c_compiler
from onnxc.kernels import qgemm as Q
from onnxc.resources import kernels_cdef, runtime_dir

S32, U8, S8, F32 = 0, 1, 2, 3  # onnxc_qgemm_output.type
ODT = {S32: np.int32, U8: np.uint8, S8: np.int8, F32: np.float32}
EXTRA_CDEF = "void onnxc_rt_set_num_threads(int n);\nint onnxc_rt_get_num_threads(void);\n"


class Int8Lib:
    """A kernel library of an int8 family built for one ISA row, with numpy-facing calls."""

    def __init__(self, row, ffi, lib, path=None):
        self.row, self.ffi, self.lib, self.path, self._keep = row, ffi, lib, path, []

    def info(self, k):
        """The descriptor of GEMM kernel ``k``: the library's own, or, for a kernel not in this
        build, one with its packing layout and tile (what the packers read)."""
        if not Q.can_run(k.isa, self.row):
            d = self.ffi.new("onnxc_qgemm_kernel *")
            d.pack_flags = k.pack_flags
            d.mr, d.nr = k.mr, k.nr
            self._keep.append(d)
            return d
        return self.ffi.addressof(self.lib, k.name + "_info")

    def ptr(self, a, ctype="void *"):
        return self.ffi.cast(ctype, self.ffi.from_buffer(a)) if a is not None else self.ffi.NULL

    def output(self, shape, out=S32, scale=None, zp=0, qmin=None, qmax=None, fbias=None):
        """(y: zeros of ``shape`` in the dtype of ``out``, rows of shape[-1] elements; its
        onnxc_qgemm_output; the arrays the struct points into, to keep alive).  scale per tensor
        or per column; uint8/int8 outputs clamp to [qmin, qmax] (default: the type's range)."""
        y = np.zeros(shape, ODT[out])
        o = self.ffi.new("onnxc_qgemm_output *")
        o.type, o.C, o.ldc = out, self.ptr(y), shape[-1]
        keep = []
        if scale is not None:
            sc = np.ascontiguousarray(np.asarray(scale, np.float32).reshape(-1))
            keep.append(sc)
            o.scale, o.scale_per_column = self.ptr(sc, "float *"), int(sc.size > 1)
        if out in (U8, S8):
            lo, hi = (0, 255) if out == U8 else (-128, 127)
            o.zero_point, o.qmin, o.qmax = zp, lo if qmin is None else qmin, hi if qmax is None else qmax
        if fbias is not None:
            fb = np.ascontiguousarray(fbias, np.float32)
            keep.append(fb)
            o.bias = self.ptr(fb, "float *")
        return y, o, keep


def build_int8_lib(cls, row, tmp_path_factory, name, sources, headers):
    """``cls`` over the library of ``sources`` built with ISA row ``row``'s flags, declaring the
    runtime headers ``headers`` (e.g. ["onnxc_qgemm.h"])."""
    if shutil.which(c_compiler()) is None:
        pytest.skip(f"no C compiler ({c_compiler()})")
    so = tmp_path_factory.mktemp(f"{name}-{row}") / f"lib{name}-{row}.so"
    cdef = "".join(kernels_cdef(h) for h in headers).replace("extern const ", "extern ")
    ffi, lib = build_kernel_library(so, sources, ["-O2", *isa_table.BY_NAME[row].cflags], extra_cdef=cdef + EXTRA_CDEF)
    return cls(row, ffi, lib, so)


def compiles_under_row(row, tmp_path, sources, kernels):
    """gcc -c -Wall -Wextra -Werror of each of ``sources`` with ISA row ``row``'s flags (as every
    module's runtime objects are built): the kernels (and descriptors) of ``kernels`` whose ISA the
    row enables are defined, the others compile to nothing; so CI without AMX or VNNI hardware
    still compiles them all."""
    if shutil.which(c_compiler()) is None:
        pytest.skip("no C compiler")
    flags = ["-std=c99", "-O1", "-fPIC", "-Wall", "-Wextra", "-Werror", *isa_table.BY_NAME[row].cflags]
    probe = subprocess.run([c_compiler(), *flags, "-x", "c", "-c", "-", "-o", "/dev/null"], input="int x;\n",
                           text=True, capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{c_compiler()} does not know the {row} flags")
    inc = str(runtime_dir() / "include")
    for src in sources:
        obj = tmp_path / (src.replace("/", "_") + ".o")
        proc = subprocess.run([c_compiler(), *flags, "-I", inc, "-c", str(runtime_dir() / src), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{src} under {row}: {proc.stderr[-3000:]}"
        nm = subprocess.run(["nm", "-g", "--defined-only", str(obj)], capture_output=True, text=True).stdout
        syms = {ln.split()[-1] for ln in nm.splitlines() if ln.strip()}
        for k in kernels:
            if k.source == src:
                present = k.name in syms and k.name + "_info" in syms
                assert present == Q.can_run(k.isa, row), f"{k.name} in the {row} build: {present}"


# --- references ----------------------------------------------------------------------------------

def wrap32(x):
    return ((np.asarray(x, np.int64) + 2 ** 31) % 2 ** 32 - 2 ** 31).astype(np.int32)


def ref_requant(acc, scale, zp, qmin, qmax, dtype):
    """MlasRequantizeOutput: float32(acc) * scale (per tensor or per output channel, the last
    axis), clamped in float to [qmin-zp, qmax-zp], rounded half to even, + zp."""
    f = acc.astype(np.float32) * np.asarray(scale, np.float32).reshape(-1)
    f = np.minimum(np.maximum(f, np.float32(qmin - zp)), np.float32(qmax - zp))
    return (np.rint(f).astype(np.int32) + zp).astype(dtype)


def rand_zp(rng, dtype, n=None):
    lo, hi = (-128, 128) if np.dtype(dtype) == np.int8 else (0, 256)
    return int(rng.integers(lo, hi)) if n is None else rng.integers(lo, hi, n)
