"""MatMulNBits (4-bit weights) throughput: onnxc's kernels against onnxc's fp32 GEMV and onnxruntime's
MatMulNBits, in one process.

    python benchmarks/bench_matmulnbits.py [--isa avx512vnni,avx2] [--threads 1,2] [--m 1]
        [--shapes 4096x4096,11008x4096,4096x11008] [--block 32] [--rounds 15]

Per ISA row (onnxc.isa; default: each runnable row with its own kernels), runtime_c/qnbits and
runtime_c/gemm are built with the row's flags into a scratch library. Per shape (N x K) and
thread count it takes the median and the best of calls timed in alternating blocks
(paired_median_us; the VM is noisy: compare ratios, not times; one thread is timed in CPU time of
the calling thread, so preemption by other processes does not count; more threads in wall time):
  q4 acc0     onnxc_matmulnbits, accuracy 0 (fp32 compute)
  q4 acc4     onnxc_matmulnbits, accuracy 4 (int8 activations)
  f32 gemv    onnxc_sgemm_packed with the fp32 weights packed beforehand, as a compiled MatMul
              runs (the baseline of the >= 4x target), and onnxc_sgemm on the unpacked [N, K]
              weights; the faster of the two is the baseline
  ort acc0/4  onnxruntime's com.microsoft MatMulNBits, same weights, intra_op_num_threads = threads
Each onnxc result is checked against onnxruntime's before timing. Prints the CPU model and flags.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler.build import build_kernel_library  # noqa: E402
from compiler.cpu import cpu_model, host_flags  # noqa: E402
from compiler.isa import BY_NAME, ISAS  # noqa: E402
from compiler.kernels import qnbits  # noqa: E402
from compiler.resources import kernels_cdef, runtime_dir  # noqa: E402


def runnable_rows():
    have = host_flags()
    return [r.name for r in ISAS if set(r.cpu_flags) <= have]


def distinct_rows(rows):
    """Rows whose (q4f32, q4s8) kernel pair differs from every earlier row's."""
    seen, out = set(), []
    for r in rows:
        key = tuple(qnbits.best([k for k in qnbits.KERNELS if k.kind == "gemm" and k.dtype == d], r).isa
                    for d in ("q4f32", "q4s8"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def build(isa: str, out: Path):
    srcs = sorted(str(p.relative_to(runtime_dir())) for d in ("qnbits", "gemm") for p in (runtime_dir() / d).glob("*.c"))
    flags = ["-O3", "-fno-math-errno", *BY_NAME[isa].cflags]
    return build_kernel_library(out / f"libq4_{isa}.so", srcs, flags,
                                extra_cdef=kernels_cdef("onnxc_quant.h") + "\nvoid onnxc_rt_set_num_threads(int n);\n")


def aligned(n, dtype=np.float32):
    item = np.dtype(dtype).itemsize
    buf = np.empty(n + 64 // item, dtype)
    s = (-buf.ctypes.data % 64) // item
    return buf[s:s + n]


def make_weights(rng, N, K, block):
    kb = -(-K // block)
    B = rng.integers(0, 256, (N, kb, block // 2), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.01, (N, kb)).astype(np.float32)
    zp = rng.integers(0, 256, (N, (kb + 1) // 2), dtype=np.uint8)
    return B, scales, zp


def dequant(B, scales, zp, K, block):
    N, kb, _ = B.shape
    q = np.stack([B & 15, B >> 4], -1).reshape(N, kb * block).astype(np.float32)
    z = np.stack([zp & 15, zp >> 4], -1).reshape(N, -1)[:, :kb].astype(np.float32)
    return ((q - np.repeat(z, block, 1)) * np.repeat(scales, block, 1))[:, :K].astype(np.float32)


def ort_session(B, scales, zp, M, N, K, block, accuracy, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node("MatMulNBits", ["A", "B", "S", "Z"], ["Y"], domain="com.microsoft", K=K, N=N, bits=4,
                            block_size=block, accuracy_level=accuracy)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [M, K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [M, N])],
                          initializer=[numpy_helper.from_array(B, "B"), numpy_helper.from_array(scales, "S"),
                                       numpy_helper.from_array(zp, "Z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def paired_median_us(fns, rounds, clock, per_block=5, settle_s=0.1):
    """Median time (us) of each function by ``clock``, timed in alternating blocks (benchmarks/
    bench_models.py's scheme: a noisy neighbour or a clock change hits all alike; each block
    starts after a pause, so the previous engine's spinning pool threads are asleep, and one
    untimed run)."""
    ts = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle_s)
            fn()
            for _ in range(per_block):
                t0 = clock()
                fn()
                ts[name].append(clock() - t0)
    return ({name: float(np.median(t)) * 1e6 for name, t in ts.items()},
            {name: float(np.min(t)) * 1e6 for name, t in ts.items()})


def bench_shape(ffi, lib, isa, M, N, K, block, threads_list, rounds, rng):
    B, scales, zp = make_weights(rng, N, K, block)
    A = aligned(M * K).reshape(M, K)
    A[:] = rng.standard_normal((M, K)).astype(np.float32)
    C = aligned(M * N).reshape(M, N)
    P = lambda a, t: ffi.cast(t, a.ctypes.data)  # noqa: E731
    ws_keep = {}

    def q4_call(acc):
        s = ffi.new("onnxc_q4_weights *")
        s.N, s.K, s.block, s.accuracy = N, K, block, acc
        s.B, s.scales, s.zp_u4 = P(B, "uint8_t *"), P(scales, "float *"), P(zp, "uint8_t *")
        s.zp_f32 = s.bias = ffi.NULL
        ws = aligned(lib.onnxc_matmulnbits_workspace(s, M), np.uint8)
        ws_keep[acc] = (s, ws)
        return lambda: lib.onnxc_matmulnbits(s, M, P(A, "float *"), K, P(C, "float *"), N, P(ws, "void *"))

    W = dequant(B, scales, zp, K, block)  # [N, K] fp32
    Wt = np.ascontiguousarray(W.T)  # [K, N]: MatMul's B
    packed = aligned(lib.onnxc_sgemm_packed_floats(N, K))
    lib.onnxc_sgemm_pack_b(0, N, K, P(Wt, "float *"), N, P(packed, "float *"))
    calls = {
        "q4 acc0": q4_call(0),
        "q4 acc4": q4_call(4),
        "f32 packed": lambda: lib.onnxc_sgemm_packed(0, M, N, K, 1.0, P(A, "float *"), K, P(packed, "float *"),
                                                     0.0, P(C, "float *"), N),
        "f32 sgemm": lambda: lib.onnxc_sgemm(0, 1, M, N, K, 1.0, P(A, "float *"), K, P(W, "float *"), K, 0.0,
                                             P(C, "float *"), N),
    }
    rows = []
    for threads in threads_list:
        lib.onnxc_rt_set_num_threads(threads)
        sessions = {}
        try:
            for acc in (0, 4):
                sessions[f"ort acc{acc}"] = ort_session(B, scales, zp, M, N, K, block, acc, threads)
        except Exception as e:  # noqa: BLE001 - onnxruntime missing or refusing: time onnxc alone
            print(f"  (onnxruntime not timed: {e})")
            sessions = {}
        # correctness first: each onnxc result against onnxruntime's (or numpy)
        want = {acc: (sessions[f"ort acc{acc}"].run(None, {"A": A})[0] if sessions else A @ W.T) for acc in (0, 4)}
        for acc in (0, 4):
            calls[f"q4 acc{acc}"]()
            err = float(np.max(np.abs(C - want[acc])) / max(float(np.max(np.abs(want[acc]))), 1e-30))
            assert err < 1e-4 if acc == 0 else err < 1e-3, f"q4 acc{acc} disagrees with the reference: {err}"
        for name in ("f32 packed", "f32 sgemm"):
            calls[name]()
            assert np.allclose(C, A @ W.T, rtol=1e-3, atol=1e-3 * float(np.abs(C).max())), name
        every = dict(calls)
        for name, sess in sessions.items():
            every[name] = (lambda s: (lambda: s.run(None, {"A": A})))(sess)
        # one thread: CPU time of the calling thread, which does all the work (onnxc's pool and
        # onnxruntime's intra-op pool run a 1-thread loop on the caller): a call preempted by the
        # other processes of a shared machine is not charged for the wait. More threads: wall time.
        clock = time.thread_time if threads == 1 else time.perf_counter
        med, best = paired_median_us(every, rounds, clock)
        for stat, t in (("median", med), ("best", best)):
            base = min(t["f32 packed"], t["f32 sgemm"])
            rows.append((threads, stat, t, base))
            print(f"  {isa:11s} M={M} N={N} K={K} block={block} threads={threads} "
                  f"({stat}, {'thread CPU' if threads == 1 else 'wall'} time): " +
                  ", ".join(f"{k} {v:.0f} us" for k, v in t.items()) +
                  f" | q4 acc0 {base / t['q4 acc0']:.2f}x, acc4 {base / t['q4 acc4']:.2f}x the fp32 GEMV" +
                  (f"; vs ort: acc0 {t['ort acc0'] / t['q4 acc0']:.2f}x, acc4 {t['ort acc4'] / t['q4 acc4']:.2f}x"
                   if sessions else ""), flush=True)
    lib.onnxc_rt_set_num_threads(1)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--isa", default="", help="comma-separated isa.py rows (default: each runnable row "
                                                 "with its own kernels)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--m", default="1", help="rows of A, comma-separated")
    ap.add_argument("--shapes", default="4096x4096,11008x4096,4096x11008", help="NxK, comma-separated")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=8, help="alternating blocks of 5 timed calls per method")
    args = ap.parse_args(argv)
    rows = [r for r in args.isa.split(",") if r] or distinct_rows(runnable_rows())
    have = runnable_rows()
    print(f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; runnable isa.py rows: {', '.join(have)}; "
          f"load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-q4-") as tmp:
        for isa in rows:
            if isa not in have:
                print(f"{isa}: this CPU cannot run it, skipped")
                continue
            ffi, lib = build(isa, Path(tmp))
            print(f"{isa}: q4f32 kernel {lib.onnxc_matmulnbits_isa(0) and ffi.string(lib.onnxc_matmulnbits_isa(0)).decode()}, "
                  f"q4s8 kernel {ffi.string(lib.onnxc_matmulnbits_isa(4)).decode()}")
            for shape in args.shapes.split(","):
                N, K = (int(v) for v in shape.lower().split("x"))
                for M in (int(v) for v in args.m.split(",")):
                    bench_shape(ffi, lib, isa, M, N, K, args.block, [int(t) for t in args.threads.split(",")],
                                args.rounds, rng)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
