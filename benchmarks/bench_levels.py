"""What each optimization level buys: node count and latency per level, next to onnxruntime.

    python benchmarks/bench_levels.py [--models resnet50,mobilenet_v2,bert_tiny,vit_s16]
                                      [--levels none,basic,extended,layout] [--threads 1]
                                      [--repeat 10] [--json out.json] [--markdown]

For every model and level: nodes after the passes, fused (onnxc-domain) nodes, compile time,
median latency of the compiled module, and onnxruntime's median latency (ORT_ENABLE_ALL, same
inputs, same process, same thread count) with the ratio.  A level whose outputs differ from
onnxruntime's beyond 1e-4 relative gets no speed reported.  Models come from models/
(scripts/export_models.py) and the onnx package's light models (name "light-<model>").
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import inputs_for, median_ms, model_paths, rel_err  # noqa: E402

DEFAULT_MODELS = "resnet50,mobilenet_v2,bert_tiny,vit_s16"
LEVELS = "none,basic,extended,layout"


def bench_model(name, path, levels, threads, repeat, out_root):
    import onnxruntime as ort

    import onnxc
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    feed = inputs_for(path, sess)
    refs = sess.run(None, feed)
    ort_ms = median_ms(lambda: sess.run(None, feed), repeat)
    rows = []
    for lvl in levels:
        t = time.perf_counter()
        m = onnxc.compile(str(path), opt_level=lvl, output_dir=out_root / f"{name}-{lvl}", force=True,
                          num_threads=threads)
        compile_s = time.perf_counter() - t
        ops = m.report.get("op_counts", {})
        row = {"model": name, "level": lvl, "nodes": sum(ops.values()),
               "fused_nodes": sum(c for op, c in ops.items() if op.startswith("onnxc.")),
               "fallback_nodes": len(m.report.get("fallback_nodes", [])),
               "compile_s": round(compile_s, 2), "ort_ms": round(ort_ms, 3), "threads": threads}
        err = rel_err(m.run(None, feed), refs)
        row["rel_err"] = err
        if err <= 1e-4:
            row["onnxc_ms"] = round(median_ms(lambda: m.run(None, feed), repeat), 3)
            row["speedup"] = round(ort_ms / row["onnxc_ms"], 3)
        rows.append(row)
        print(f"{name:16} {lvl:9} {row['nodes']:6d} {row['fused_nodes']:6d} {compile_s:8.2f} "
              f"{row.get('onnxc_ms', float('nan')):9.2f} {ort_ms:8.2f} {row.get('speedup', float('nan')):7.2f}  "
              f"{err:.1e}", flush=True)
    return rows


def markdown(rows) -> str:
    lines = ["| model | level | nodes | fused | onnxc ms | ORT ms | ORT/onnxc | rel err |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ms = f"{r['onnxc_ms']:.2f}" if "onnxc_ms" in r else "—"
        sp = f"{r['speedup']:.2f}" if "speedup" in r else "—"
        lines.append(f"| {r['model']} | {r['level']} | {r['nodes']} | {r['fused_nodes']} | {ms} | "
                     f"{r['ort_ms']:.2f} | {sp} | {r['rel_err']:.1e} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--levels", default=LEVELS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--json", default="")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    args = ap.parse_args()
    paths = model_paths()
    out_root = Path(tempfile.mkdtemp(prefix="onnxc-levels-"))
    print(f"{'model':16} {'level':9} {'nodes':>6} {'fused':>6} {'compile':>8} {'onnxc ms':>9} {'ort ms':>8} "
          f"{'ORT/us':>7}  rel err")
    rows = []
    for name in [m for m in args.models.split(",") if m]:
        if name not in paths:
            print(f"{name}: not found (run scripts/export_models.py)", file=sys.stderr)
            continue
        rows += bench_model(name, paths[name], args.levels.split(","), args.threads, args.repeat, out_root)
    if args.markdown:
        print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
