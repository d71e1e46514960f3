"""Side-by-side latency of onnxc and onnxruntime on the same inputs, in one process.

    python benchmarks/bench_models.py [--models resnet50,...] [--threads 1] [--repeat 20] [--json out.json]

Models: the nine light models shipped with the onnx package, plus whatever
scripts/export_models.py built in models/.  Reports compile time, load time vs ORT session
creation, arena size vs the sum of intermediates, median latency of both and their ratio.
A model whose outputs differ from onnxruntime's beyond 1e-4 relative gets no speed reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def model_paths():
    import onnx
    light = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
    paths = {p.stem.replace("light_", "light-"): p for p in sorted(light.glob("*.onnx"))}
    for p in sorted((ROOT / "models").glob("*.onnx")):
        paths[p.stem] = p
    return paths


def inputs_for(path: Path, sess):
    npz = path.with_suffix(".inputs.npz")
    if npz.exists():
        d = np.load(npz)
        return {k: d[k] for k in d.files}
    rng = np.random.default_rng(0)
    return {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in sess.get_inputs()}


def median_ms(fn, repeat, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def paired_median_ms(fns, repeat, warmup=1, rounds=10, settle_s=0.12):
    """Medians (ms) of several functions timed in alternating blocks, so that a noisy neighbour
    or a change of clock hits them alike (10 short rounds, not 5 long ones: this VM has slow
    spells of a second or more in which both vCPUs run at up to half speed: light SqueezeNet at 2
    threads gave block ratios of 0.5-0.9 inside such spells and 1.0-1.25 outside, and measured
    0.88 in one suite run of 5 rounds, 1.12 in the run before).  Each block starts after a pause
    of ``settle_s`` and ``warmup`` untimed runs: the other engine's idle pool threads must be asleep, or they take the
    cores this one is timed on, and the first runs after a pause are slow for both engines
    (sleeping workers and vCPUs wake up).  onnxruntime's worker spins on a whole core for ~50 ms
    after its last run (measured: 52 ms of CPU time burnt during the 100 ms after a run of
    MobileNetV2 at 2 threads); with a 50 ms pause, onnxc's MobileNetV2 at 2 threads measured
    5-8 ms in the block after onnxruntime's and 3.8-4.0 ms alone.  onnxc's workers spin 1 ms."""
    ts = paired_rounds(fns, repeat, warmup, rounds, settle_s)
    return [statistics.median(t for r in acc for t in r) * 1e3 for acc in ts]


def paired_rounds(fns, repeat, warmup=1, rounds=10, settle_s=0.12):
    """The timings (s) of paired_median_ms per function and round: ts[f][r] = the block of
    function f in round r, so the caller can form per-round ratios (both engines of a round ran
    within a second of each other, so a slow spell of the VM hits both).  The functions run in
    the given order in even rounds and reversed in odd ones, so neither always follows the
    other's idle-spinning pool."""
    per_block = max(1, -(-repeat // rounds))
    ts = [[] for _ in fns]
    for r in range(rounds):
        order = list(zip(fns, ts))
        for fn, acc in (order if r % 2 == 0 else order[::-1]):  # who runs first alternates
            time.sleep(settle_s)
            for _ in range(max(1, warmup)):
                fn()
            block = []
            for _ in range(per_block):
                t = time.perf_counter()
                fn()
                block.append(time.perf_counter() - t)
            acc.append(block)
    return ts


def rel_err(outs, refs) -> float:
    """Largest max-abs difference relative to the reference's max-abs, over all outputs."""
    return max(float(np.max(np.abs(o.astype(np.float64) - r)) / max(float(np.max(np.abs(r))), 1e-30))
               for o, r in zip(outs, refs))


def bench(name, path, threads, repeat, out_root):
    import onnxruntime as ort

    import onnxc
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    t = time.perf_counter()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ort_create = time.perf_counter() - t
    feed = inputs_for(path, sess)
    out_dir = out_root / name
    t = time.perf_counter()
    onnxc.compile(str(path), output_dir=out_dir, force=True)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    model = onnxc.load(out_dir, num_threads=threads)
    load_s = time.perf_counter() - t
    refs, outs = sess.run(None, feed), model.run(None, feed)
    err = rel_err(outs, refs)
    row = {"model": name, "compile_s": round(compile_s, 2), "load_ms": round(load_s * 1e3, 2),
           "ort_session_ms": round(ort_create * 1e3, 2), "rel_err": err,
           "arena_bytes": model.report.get("arena_bytes"), "intermediate_bytes": model.report.get("intermediate_bytes")}
    if err <= 1e-4:
        row["onnxc_ms"] = round(median_ms(lambda: model.run(None, feed), repeat), 3)
        row["ort_ms"] = round(median_ms(lambda: sess.run(None, feed), repeat), 3)
        row["speedup"] = round(row["ort_ms"] / row["onnxc_ms"], 3)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="", help="comma-separated subset")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    paths = model_paths()
    wanted = [m for m in args.models.split(",") if m] or list(paths)
    out_root = Path(tempfile.mkdtemp(prefix="onnxc-bench-"))
    rows = []
    hdr = f"{'model':22} {'compile s':>9} {'load ms':>8} {'ort new ms':>10} {'arena MB':>8} {'interm MB':>9} " \
          f"{'onnxc ms':>9} {'ort ms':>8} {'speedup':>7}  rel err"
    print(hdr)
    for name in wanted:
        if name not in paths:
            print(f"{name}: not found (run scripts/export_models.py)", file=sys.stderr)
            continue
        try:
            r = bench(name, paths[name], args.threads, args.repeat, out_root)
        except Exception as e:  # noqa: BLE001 - report and go on with the other models
            print(f"{name:22} FAILED: {type(e).__name__}: {str(e).splitlines()[0][:100]}")
            rows.append({"model": name, "error": str(e)})
            continue
        rows.append(r)
        mb = lambda b: f"{(b or 0) / 2**20:8.1f}"  # noqa: E731
        print(f"{name:22} {r['compile_s']:9.2f} {r['load_ms']:8.1f} {r['ort_session_ms']:10.1f} "
              f"{mb(r['arena_bytes'])} {mb(r['intermediate_bytes'])} {r.get('onnxc_ms', float('nan')):9.2f} "
              f"{r.get('ort_ms', float('nan')):8.2f} {r.get('speedup', float('nan')):7.2f}  {r['rel_err']:.1e}")
    ratios = [r["speedup"] for r in rows if "speedup" in r]
    if ratios:
        print(f"geometric mean speedup (ort ms / onnxc ms): {float(np.exp(np.mean(np.log(ratios)))):.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
