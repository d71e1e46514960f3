"""int8 GEMM (runtime_c/qgemm) against onnxc's float32 SGEMM (runtime_c/gemm), in one process.

    python benchmarks/bench_qgemm.py [--isa avx2,amx] [--threads 1,2] [--seconds 0.3] [--shapes resnet,bert,gemv]

Per ISA row the host runs (onnxc.kernels.qgemm.host_isas), the family's kernel for the row
(kernel_for) is built with the row's compiler flags and timed with B packed beforehand (as the
compiler packs weights), A uint8, B realistic int8 weights (per-column symmetric quantization of
Gaussian weights: full-range, so the AVX2 row runs its exact vpmaddwd kernel; the vpmaddubsw
"gemmps" kernel is timed on 7-bit weights too, as onnxruntime's reduce_range makes them) and a
requantized uint8 output (the output stage included). The float32 reference is onnxc_sgemm_packed
built for the float ISA of the row (generic, avx2 or avx512). Shapes: ResNet-50 convolutions as
GEMMs (M = output pixels, N = output channels, K = C*kh*kw), BERT-base projections at 128 tokens,
and a 4096 x 4096 GEMV. Every result is checked (int8 against int64 numpy, float32 against
float64) before it is timed. One thread: best CPU time of the calling thread; two threads: best
wall time (noisier on a shared machine). Prints GOPS (2*M*N*K / s) and the int8/fp32 ratio.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler import isa as isa_table  # noqa: E402
from compiler.build import build_kernel_library  # noqa: E402
from compiler.cpu import cpu_model, host_flags  # noqa: E402
from compiler.kernels import qgemm as Q  # noqa: E402
from compiler.resources import kernels_cdef, runtime_dir  # noqa: E402

SHAPES = {
    "resnet": [(3136, 64, 576), (784, 128, 1152), (196, 256, 2304), (49, 512, 4608), (3136, 256, 64)],
    "bert": [(128, 768, 768), (128, 3072, 768), (128, 768, 3072)],
    "gemv": [(1, 4096, 4096)],
}
THREAD_CDEF = "void onnxc_rt_set_num_threads(int n);\n"


def best_time(fn, seconds: float, wall: bool) -> float:
    clock = time.perf_counter if wall else time.thread_time
    fn()
    t = clock()
    fn()
    once = max(clock() - t, 1e-6)
    batch = max(1, int(0.005 / once))
    best, spent, reps = float("inf"), 0.0, 0
    while spent < seconds or reps < 3:
        t = clock()
        for _ in range(batch):
            fn()
        dt = clock() - t
        best, spent, reps = min(best, dt / batch), spent + dt, reps + 1
    return best


def aligned(n: int, dtype) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    buf = np.zeros(n + 64 // size, dtype)
    s = (-buf.ctypes.data % 64) // size
    return buf[s:s + n]


def weights(rng, K, N, bits=8):
    w = rng.standard_normal((K, N))
    q = (1 << (bits - 1)) - 1
    return np.round(w / np.abs(w).max(axis=0) * q).astype(np.int8)


class Sgemm:
    def __init__(self, target, out):
        flags = {"generic": [], "avx2": isa_table.BY_NAME["avx2"].cflags,
                 "avx512": isa_table.BY_NAME["avx512"].cflags}[target]
        srcs = sorted(str(p.relative_to(runtime_dir())) for p in (runtime_dir() / "gemm").glob("*.c"))
        self.ffi, self.lib = build_kernel_library(out / f"libsgemm_{target}.so", srcs, ["-O3", *flags],
                                                  extra_cdef=THREAD_CDEF)

    def prepare(self, M, N, K, rng):
        f = lambda a: self.ffi.cast("float *", a.ctypes.data)  # noqa: E731
        A = rng.standard_normal((M, K)).astype(np.float32)
        B = rng.standard_normal((K, N)).astype(np.float32)
        C = np.zeros((M, N), np.float32)
        P = aligned(self.lib.onnxc_sgemm_packed_floats(N, K), np.float32)
        self.lib.onnxc_sgemm_pack_b(0, N, K, f(B), N, f(P))
        call = lambda: self.lib.onnxc_sgemm_packed(0, M, N, K, 1.0, f(A), K, f(P), 0.0, f(C), N)  # noqa: E731
        call()
        ref = A.astype(np.float64) @ B.astype(np.float64)
        assert np.max(np.abs(C - ref)) <= 1e-3 * np.max(np.abs(ref)) + 1e-3, "sgemm result wrong"
        return call, (A, B, C, P)


class Qgemm:
    def __init__(self, row, out):
        cdef = kernels_cdef("onnxc_qgemm.h").replace("extern const ", "extern ") + THREAD_CDEF
        self.ffi, self.lib = build_kernel_library(out / f"libqgemm_{row}.so", Q.sources(),
                                                  ["-O3", *isa_table.BY_NAME[row].cflags], extra_cdef=cdef)
        self.row = row

    def prepare(self, kernel, M, N, K, rng, B):
        ffi = self.ffi
        A = rng.integers(0, 256, (M, K)).astype(np.uint8)
        blob = Q.pack_b(B, kernel)
        packed = aligned(blob.size, np.uint8)
        packed[:] = blob
        C = np.zeros((M, N), np.uint8)
        acc = (A.astype(np.int64) - 3) @ B.astype(np.int64)
        scale = np.float32(1.0 / max(1.0, float(np.abs(acc).max())) * 100)
        o = ffi.new("onnxc_qgemm_output *")
        sc = np.array([scale], np.float32)
        o.type, o.C, o.ldc = 1, ffi.cast("void *", C.ctypes.data), N
        o.scale, o.scale_per_column, o.zero_point, o.qmin, o.qmax = ffi.cast("float *", sc.ctypes.data), 0, 128, 0, 255
        info = ffi.addressof(self.lib, kernel.name + "_info")
        pa, pb = ffi.cast("void *", A.ctypes.data), ffi.cast("void *", packed.ctypes.data)
        call = lambda: self.lib.onnxc_qgemm(info, M, N, K, pa, K, 3, pb, ffi.NULL, o)  # noqa: E731
        assert call() == 0
        want = np.clip(np.rint((acc.astype(np.float32) * scale)) + 128, 0, 255).astype(np.uint8)
        assert np.array_equal(C, want), f"{kernel.name}: wrong result"
        used = ffi.string(self.lib.onnxc_qgemm_resolve(info, M).name).decode()
        return call, (A, packed, C, sc, o), used


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isa", default=",".join(Q.host_isas()), help="ISA rows, comma separated")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    ap.add_argument("--shapes", default="resnet,bert,gemv")
    args = ap.parse_args()
    rows = [r for r in args.isa.split(",") if r]
    missing = [r for r in rows if r not in Q.host_isas()]
    if missing:
        sys.exit(f"this host cannot run {missing}")
    threads = [int(t) for t in args.threads.split(",")]
    shapes = [s for name in args.shapes.split(",") for s in SHAPES[name]]
    flags = host_flags()
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs")
    print("ISA flags: " + " ".join(sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))))
    print("int8: A uint8, B int8 weights, requantized uint8 output; fp32: onnxc_sgemm_packed; GOPS = 2*M*N*K/s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sg = {}
        for row in rows:
            base = isa_table.BY_NAME[row].base
            if base not in sg:
                sg[base] = Sgemm(base, tmp)
            q = Qgemm(row, tmp)
            kern = Q.kernel_for(row, "uint8")
            variants = [(kern, 8)]
            if kern.isa == "avx2":
                variants.append((Q.BY_NAME["onnxc_u8s8_gemmps_6x16__avx2"], 7))
            for nthreads in threads:
                q.lib.onnxc_rt_set_num_threads(nthreads)
                sg[base].lib.onnxc_rt_set_num_threads(nthreads)
                print(f"\n[{row}] {nthreads} thread{'s' if nthreads > 1 else ''}: fp32 sgemm ({base}) vs " +
                      ", ".join(f"{k.name} ({bits}-bit B)" for k, bits in variants))
                print(f"{'M':>5} {'N':>5} {'K':>5} | {'fp32':>7} | " +
                      " | ".join(f"{'int8':>7} {'ratio':>5}" for _ in variants))
                for M, N, K in shapes:
                    rng = np.random.default_rng(M * 7 + N * 3 + K)
                    call, keep = sg[base].prepare(M, N, K, rng)
                    tf = best_time(call, args.seconds, nthreads > 1)
                    line = f"{M:5d} {N:5d} {K:5d} | {2 * M * N * K / tf / 1e9:7.1f} |"
                    for k, bits in variants:
                        qcall, qkeep, used = q.prepare(k, M, N, K, rng, weights(rng, K, N, bits))
                        tq = best_time(qcall, args.seconds, nthreads > 1)
                        line += f" {2 * M * N * K / tq / 1e9:7.1f} {tf / tq:5.2f} |"
                        if used != k.name:
                            line += f" (ran {used})"
                    print(line, flush=True)
                q.lib.onnxc_rt_set_num_threads(0)
                sg[base].lib.onnxc_rt_set_num_threads(0)


if __name__ == "__main__":
    main()
