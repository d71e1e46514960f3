"""The benchmark suite of issue 5: onnxc against onnxruntime, same process, same inputs.

    python benchmarks/bench_suite.py [--models a,b] [--threads 1,2] [--repeat 20] [--rounds 10]
                                     [--warmup 3] [--target native] [--opt-level layout]
                                     [--out benchmarks/results/suite]

Models: the issue's list (exported by `scripts/export_models.py --bench` into models/) and the
nine light models of the onnx package.  For each model: compile once, time loading the compiled
module (weights included) against onnxruntime's session creation, each in a fresh process
(fresh_load_ms); then for each thread count ``rounds`` interleaved rounds, each a short block
of both engines (warm-up, then ``repeat / rounds`` timed runs; who goes first alternates),
reporting the median times, the ratio ORT/onnxc (> 1: onnxc is faster) as the median of the
per-round ratios with its spread (quartiles and min-max over the rounds: on a shared VM a slow
spell hits both engines of a round, so the per-round ratio moves far less than either time),
GFLOP/s from the model's MAC count, and the fraction of the measured machine peak (a
single-thread numpy/BLAS SGEMM, times the thread count).  Speed is only reported for a model
whose outputs match onnxruntime's within 1e-4 relative.  ``--target`` compiles for an ISA row
of compiler/isa.py (e.g. avx2 on an AVX-512 host measures onnxc's AVX2 code path; onnxruntime
still picks its kernels from the CPU, so there it runs AVX-512).  The JSON records the CPU
model, its ISA flags, the onnxc target and the ISA it resolved to.  Writes <out>.json, <out>.md
and, when matplotlib is installed, <out>.png.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_models import inputs_for, model_paths, paired_rounds, rel_err  # noqa: E402

SUITE = ["resnet50", "resnet18", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x1_0",
         "squeezenet1_1", "vit_s16", "bert_base", "bert_tiny"]
PEAK_SCRIPT = """
import time, numpy as np
a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
a @ a
best = min((lambda t: (a @ a, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
print(2 * 2048 ** 3 / best / 1e9)
"""


def measure_peak_gflops() -> float:
    """Single-core SGEMM GFLOP/s of numpy's BLAS, measured in a subprocess pinned to one thread."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


FRESH_SCRIPT = """
import sys, time
import numpy as np
engine, target, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
if engine == "onnxc":
    import onnxc
    t = time.perf_counter()
    onnxc.load(target, num_threads=threads)
else:
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    t = time.perf_counter()
    ort.InferenceSession(target, so, providers=["CPUExecutionProvider"])
print((time.perf_counter() - t) * 1e3)
"""


def fresh_load_ms(out_dir, model_path, threads: int, reps: int = 3):
    """(onnxc load ms, ORT session ms): each the median of ``reps`` fresh processes that import
    their package untimed, then time loading the compiled module (dlopen, weights mapped, thread
    pool) or creating the session: what a user's process pays to get ready.  One untimed run
    first writes the bytecode caches (as an installed package has them) and warms the page cache."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once(engine, target):
        out = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, engine, str(target), str(threads)], env=env,
                             capture_output=True, text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    res = []
    for engine, target in (("onnxc", out_dir), ("ort", model_path)):
        once(engine, target)
        res.append(float(np.median([once(engine, target) for _ in range(reps)])))
    return tuple(res)


# /proc/cpuinfo flags that decide which kernels either engine runs
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def host_info(target: str) -> dict:
    """The machine and code path a result belongs to: CPU model, its ISA flags, core count, the
    onnxc target asked for and the ISA row it resolved to, the package versions, and the load
    average (other processes on a shared VM slow both engines)."""
    import onnxruntime as ort

    import onnxc
    from onnxc.cpu import cpu_model, host_flags, host_isa
    from onnxc.target import resolve
    flags = host_flags()
    return {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "isa_flags": [f for f in ISA_FLAGS if f in flags],
            "host_isa": host_isa(), "onnxc_target": target, "onnxc_isa": resolve(target).isa,
            "onnxc_version": onnxc.__version__, "onnxruntime_version": ort.__version__,
            "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def spread(xs) -> dict:
    """Median, quartiles and range of per-round values."""
    q1, med, q3 = np.percentile(xs, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3), "min": float(min(xs)), "max": float(max(xs))}


def model_gflop(path) -> float:
    """Multiply-adds x 2 of Conv, ConvTranspose, Gemm and MatMul nodes, from onnxc's typed IR after
    the basic level (shape subgraphs folded, so every product has static shapes; no fusions yet)."""
    from onnxc import frontend
    from onnxc.driver import optimize
    g = frontend.load(str(path))
    optimize(g, "basic")
    macs = 0
    for n in g.nodes:
        if n.op_type in ("Conv", "ConvTranspose") and n.outputs[0].is_static:
            w = n.inputs[1]
            per_out = int(np.prod(w.shape[1:]))  # C/group * kernel
            if n.op_type == "Conv":
                macs += n.outputs[0].size * per_out
            else:
                macs += n.inputs[0].size * int(np.prod(w.shape[1:]))
        elif n.op_type in ("Gemm", "MatMul") and n.outputs[0].is_static and n.inputs[0].is_static:
            a = n.inputs[0]
            k = a.shape[0] if (n.op_type == "Gemm" and n.attrs.get("transA", 0)) else a.shape[-1]
            macs += n.outputs[0].size * int(k)
    return 2 * macs / 1e9


def bench_model(name, path, threads, warmup, repeat, rounds, opt_level, target, out_root, peak):
    import onnxruntime as ort

    import onnxc
    t = time.perf_counter()
    onnxc.compile(str(path), output_dir=out_root / name, opt_level=opt_level, target=target, force=True)
    compile_s = time.perf_counter() - t
    gflop = model_gflop(path)
    rows = []
    for th in threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads = th
        so.inter_op_num_threads = 1
        t = time.perf_counter()
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        ort_create_ms = (time.perf_counter() - t) * 1e3
        t = time.perf_counter()
        m = onnxc.load(out_root / name, num_threads=th)  # its code was imported by compile already
        load_ms = (time.perf_counter() - t) * 1e3
        fresh, fresh_ort = fresh_load_ms(out_root / name, path, th)
        feed = inputs_for(path, sess)
        err = rel_err(m.run(None, feed), sess.run(None, feed))
        row = {"model": name, "threads": th, "gflop": round(gflop, 3), "compile_s": round(compile_s, 2),
               "load_ms": round(fresh, 2), "ort_session_ms": round(fresh_ort, 2),
               "load_ratio": round(fresh / fresh_ort, 3),
               "load_ms_in_process": round(load_ms, 2), "ort_session_ms_in_process": round(ort_create_ms, 2),
               "rel_err": err,
               "fallback_nodes": len(m.fallback_nodes)}
        if err <= 1e-4:
            ts_c, ts_o = paired_rounds([lambda: m.run(None, feed), lambda: sess.run(None, feed)],
                                       repeat, warmup, rounds)
            onnxc_ms = float(np.median([t for blk in ts_c for t in blk])) * 1e3
            ort_ms = float(np.median([t for blk in ts_o for t in blk])) * 1e3
            ratios = [float(np.median(o) / np.median(c)) for c, o in zip(ts_c, ts_o)]
            sp = spread(ratios)
            row["onnxc_ms"], row["ort_ms"] = round(onnxc_ms, 3), round(ort_ms, 3)
            row["speedup"] = round(sp["median"], 3)  # median of the per-round ORT/onnxc ratios
            row["speedup_spread"] = {k: round(v, 3) for k, v in sp.items() if k != "median"}
            row["rounds"] = rounds
            row["onnxc_gflops"] = round(gflop / row["onnxc_ms"] * 1e3, 1)
            row["ort_gflops"] = round(gflop / row["ort_ms"] * 1e3, 1)
            row["onnxc_peak_frac"] = round(row["onnxc_gflops"] / (peak * th), 3)
            row["ort_peak_frac"] = round(row["ort_gflops"] / (peak * th), 3)
        rows.append(row)
        print(fmt_row(row), flush=True)
    return rows


HEADER = (f"{'model':22} {'thr':>3} {'onnxc ms':>9} {'ort ms':>8} {'ORT/us':>7} {'IQR':>11} {'GFLOP/s':>8} "
          f"{'%peak':>6} "
          f"{'ort %pk':>7} {'load ms':>8} {'ort new':>8}  rel err")


def fmt_row(r) -> str:
    nan = float("nan")
    sp = r.get("speedup_spread", {})
    return (f"{r['model']:22} {r['threads']:3d} {r.get('onnxc_ms', nan):9.2f} {r.get('ort_ms', nan):8.2f} "
            f"{r.get('speedup', nan):7.2f} {sp.get('q1', nan):5.2f}-{sp.get('q3', nan):<5.2f} "
            f"{r.get('onnxc_gflops', nan):8.1f} {100 * r.get('onnxc_peak_frac', nan):6.1f} "
            f"{100 * r.get('ort_peak_frac', nan):7.1f} {r['load_ms']:8.1f} {r['ort_session_ms']:8.1f}  "
            f"{r['rel_err']:.1e}" + ("" if "speedup" in r else "  (outputs differ: no speed reported)"))


def geomeans(rows):
    out = {}
    for th in sorted({r["threads"] for r in rows}):
        rs = [r["speedup"] for r in rows if r["threads"] == th and "speedup" in r]
        if rs:
            out[th] = float(np.exp(np.mean(np.log(rs))))
    return out


def markdown(rows, peak, host) -> str:
    lines = [f"CPU: {host['cpu_model']} ({host['cpu_count']} logical CPUs; {' '.join(host['isa_flags'])}); "
             f"onnxc target {host['onnxc_target']} -> {host['onnxc_isa']}; onnxruntime {host['onnxruntime_version']}",
             f"Machine peak (1-thread numpy SGEMM): {peak:.0f} GFLOP/s", "",
             "| model | threads | onnxc ms | ORT ms | ORT/onnxc | IQR (min-max) | onnxc GFLOP/s | % peak | "
             "ORT % peak | "
             "load ms | ORT session ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = lambda k, s="{:.2f}": s.format(r[k]) if k in r else "—"  # noqa: E731
        sp = r.get("speedup_spread")
        spr = f"{sp['q1']:.2f}-{sp['q3']:.2f} ({sp['min']:.2f}-{sp['max']:.2f})" if sp else "—"
        lines.append(f"| {r['model']} | {r['threads']} | {f('onnxc_ms')} | {f('ort_ms')} | {f('speedup')} | {spr} | "
                     f"{f('onnxc_gflops', '{:.1f}')} | {f('onnxc_peak_frac', '{:.1%}')} | "
                     f"{f('ort_peak_frac', '{:.1%}')} | {r['load_ms']:.1f} | {r['ort_session_ms']:.1f} |")
    for th, g in geomeans(rows).items():
        lines.append(f"\nGeometric mean ORT/onnxc at {th} thread(s): {g:.3f}")
    return "\n".join(lines)


def plot(rows, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    threads = sorted({r["threads"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(8, len(models) * 0.6), 4.5))
    width = 0.8 / len(threads)
    for i, th in enumerate(threads):
        vals = [next((r.get("speedup", 0) for r in rows if r["model"] == m and r["threads"] == th), 0) for m in models]
        ax.bar(np.arange(len(models)) + i * width, vals, width, label=f"{th} thread(s)")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(models)) + width * (len(threads) - 1) / 2)
    ax.set_xticklabels(models, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("onnxruntime ms / onnxc ms (higher: onnxc faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated subset (default: the suite + light models)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (per-round ratios give the spread)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--target", default="native",
                    help="onnxc target: native or an ISA row (generic, avx2, avx512, ...); see compiler/isa.py")
    ap.add_argument("--opt-level", default="layout", help="onnxc optimization level (default: layout, onnxc's default)")
    ap.add_argument("--out", default=str(HERE / "results" / "suite"))
    ap.add_argument("--keep-builds", action="store_true",
                    help="keep the compiled modules (default: each is deleted after its model; ~2 GB in all)")
    args = ap.parse_args()
    paths = model_paths()
    wanted = [m for m in args.models.split(",") if m] or SUITE + sorted(p for p in paths if p.startswith("light-"))
    threads = [int(t) for t in args.threads.split(",")]
    host = host_info(args.target)
    print(f"CPU: {host['cpu_model']}; flags: {' '.join(host['isa_flags'])}; "
          f"onnxc target {args.target} -> {host['onnxc_isa']}")
    peak = measure_peak_gflops()
    print(f"machine peak (1-thread numpy SGEMM): {peak:.1f} GFLOP/s")
    print(HEADER)
    out_root = Path(tempfile.mkdtemp(prefix="onnxc-suite-"))
    rows = []
    for name in wanted:
        if name not in paths:
            print(f"{name}: not found (run `scripts/export_models.py --bench`)", file=sys.stderr)
            continue
        try:
            rows += bench_model(name, paths[name], threads, args.warmup, args.repeat, args.rounds, args.opt_level,
                                args.target, out_root, peak)
        except Exception as e:  # noqa: BLE001 - report and go on with the other models
            print(f"{name:22} FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            rows.append({"model": name, "error": str(e)[:2000]})
        finally:
            if not args.keep_builds:
                shutil.rmtree(out_root / name, ignore_errors=True)
    if args.keep_builds:
        print(f"compiled modules kept in {out_root}")
    else:
        shutil.rmtree(out_root, ignore_errors=True)
    ok = [r for r in rows if "error" not in r]
    for th, g in geomeans(ok).items():
        print(f"geometric mean ORT/onnxc at {th} thread(s): {g:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    host["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out.with_suffix(".json").write_text(json.dumps({"host": host, "peak_gflops_1thread": peak, "rows": rows,
                                                    "geomean": geomeans(ok)}, indent=1))
    out.with_suffix(".md").write_text(markdown(ok, peak, host) + "\n")
    if not plot(ok, out.with_suffix(".png")):
        print("matplotlib not installed: no chart (pip install matplotlib)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
