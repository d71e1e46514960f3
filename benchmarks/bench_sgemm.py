"""Single-thread SGEMM throughput of the runtime's kernels next to numpy's matmul, in one run.

    python benchmarks/bench_sgemm.py [--isa all|avx512,avx2,...] [--seconds 0.3]

For each float ISA of the microkernel list (compiler/kernels/gemm_f32.py) the host runs (or those
named), builds runtime_c/gemm with that ISA's compile flags (compiler.build.compile_flags) into
a scratch shared library, then times, per shape (M, N, K), the best of a few repetitions of
onnxc_sgemm (B packed at run time) and onnxc_sgemm_packed (B packed beforehand, as compile-time
weights are) with that build's microkernel, and numpy's A @ B. Each result is checked against
numpy before it is timed. Threads are pinned to one (OMP/OpenBLAS env vars set before numpy
loads). Some seconds in total: not a stress test.
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

from compiler.build import build_kernel_library, compile_flags  # noqa: E402
from compiler.cpu import runnable_isas  # noqa: E402
from compiler.kernels import gemm_f32  # noqa: E402

SHAPES = [(256, 256, 256), (1024, 1024, 1024), (3136, 64, 576), (49, 2048, 512), (1, 1000, 2048), (197, 1536, 384), (196, 1536, 384), (197, 384, 1536), (128, 512, 128), (128, 128, 512)]


def build(isa: str, out: Path):
    return build_kernel_library(out / f"libsgemm_{isa}.so", gemm_f32.SOURCES, compile_flags(isa))


def aligned(n: int) -> np.ndarray:
    buf = np.empty(n + 16, np.float32)
    s = (-buf.ctypes.data % 64) // 4
    return buf[s:s + n]


def best_time(fn, seconds: float) -> float:
    """Best CPU time of this thread per call, over batches of calls lasting >= 5 ms each
    (everything runs on this thread with one thread; CPU time rather than wall time keeps other
    processes on a shared machine out of it, and batches keep its tick accounting out)."""
    fn()  # warm-up
    t = time.thread_time()
    fn()
    once = max(time.thread_time() - t, 1e-6)
    batch = max(1, int(0.005 / once))
    best, spent, reps = float("inf"), 0.0, 0
    while spent < seconds or reps < 3:
        t = time.thread_time()
        for _ in range(batch):
            fn()
        dt = time.thread_time() - t
        best, spent, reps = min(best, dt / batch), spent + dt, reps + 1
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isa", default="all", help="comma-separated ISAs (rows of compiler/isa.py) or 'all': "
                    "every float ISA of the microkernel list the host runs")
    ap.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    args = ap.parse_args()
    run = runnable_isas()
    isas = ([k.isa for k in gemm_f32.KERNELS if k.isa in run] if args.isa == "all" else args.isa.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        libs = {isa: build(isa, Path(tmp)) for isa in isas}
        print("1 thread, GFLOP/s (best of repetitions); microkernels: "
              + ", ".join(f"{isa} {gemm_f32.for_isa(isa).name}" for isa in isas))
        cols = [(isa, kind) for isa in isas for kind in ("sgemm", "packed")]
        print(f"{'M':>5} {'N':>5} {'K':>5} | " + " ".join(f"{f'{i} {k}':>14}" for i, k in cols) + f" {'numpy':>7}")
        rng = np.random.default_rng(0)
        for M, N, K in SHAPES:
            A = rng.standard_normal((M, K)).astype(np.float32)
            B = rng.standard_normal((K, N)).astype(np.float32)
            C = np.empty((M, N), np.float32)
            want = A @ B
            gflops = {}
            for isa, (ffi, lib) in libs.items():
                f = lambda a: ffi.cast("float*", a.ctypes.data)  # noqa: E731
                P = aligned(lib.onnxc_sgemm_packed_floats(N, K))
                lib.onnxc_sgemm_pack_b(0, N, K, f(B), N, f(P))
                runs = {
                    "sgemm": lambda: lib.onnxc_sgemm(0, 0, M, N, K, 1.0, f(A), K, f(B), N, 0.0, f(C), N),
                    "packed": lambda: lib.onnxc_sgemm_packed(0, M, N, K, 1.0, f(A), K, f(P), 0.0, f(C), N),
                }
                for name, fn in runs.items():
                    fn()
                    np.testing.assert_allclose(C, want, rtol=1e-3, atol=1e-3 * np.sqrt(K))
                    gflops[isa, name] = 2e-9 * M * N * K / best_time(fn, args.seconds)
            numpy = 2e-9 * M * N * K / best_time(lambda: np.matmul(A, B, out=C), args.seconds)
            print(f"{M:>5} {N:>5} {K:>5} | " + " ".join(f"{gflops[c]:14.1f}" for c in cols) + f" {numpy:7.1f}")


if __name__ == "__main__":
    main()
