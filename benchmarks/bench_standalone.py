"""Code size of standalone C builds (onnxc compile --emit c): for each model, the runtime sources
the library keeps, the .text of the static library (all its members) and of the example program
linked with --gc-sections, and that the program's output equals the onnxc module's.

    python benchmarks/bench_standalone.py [--models-dir models] [--target native generic]
                                          [mobilenet_v2 resnet50 bert_tiny ...]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np


def text_bytes(path: Path) -> int:
    """Bytes in .text sections (`size -A`; a static library: summed over its members)."""
    out = subprocess.run(["size", "-A", str(path)], capture_output=True, text=True, check=True).stdout
    return sum(int(ln.split()[1]) for ln in out.splitlines() if ln.split() and ln.split()[0].startswith(".text"))


def run(name: str, models: Path, target: str, work: Path) -> dict:
    import onnxc
    from onnxc.emit_c import emit_c
    data = np.load(models / f"{name}.inputs.npz")
    feed = {k: data[k] for k in data.files}
    t = time.perf_counter()
    e = emit_c(str(models / f"{name}.onnx"), work / name / target / "src", target=target, prefix="model")
    t_emit = time.perf_counter() - t
    build = work / name / target / "build"
    t = time.perf_counter()
    for cmd in (["cmake", "-S", str(e.path), "-B", str(build)], ["cmake", "--build", str(build), "-j", "2"]):
        subprocess.run(cmd, check=True, capture_output=True)
    t_build = time.perf_counter() - t
    ins = []
    for k, a in feed.items():
        ins.append(str(work / f"{k}.bin"))
        np.ascontiguousarray(a).tofile(ins[-1])
    ref = onnxc.compile(str(models / f"{name}.onnx"), target=target, fallback=False).run(None, feed)
    outs = [str(work / f"out{i}.bin") for i in range(len(ref))]
    subprocess.run([str(build / "model_example"), str(e.path / "weights.bin"), *ins, *outs], check=True)
    diff = max(float(np.max(np.abs(np.fromfile(p, r.dtype).reshape(r.shape) - r))) for p, r in zip(outs, ref))
    return {"model": name, "target": target, "sources": f"{len(e.sources)}/{e.all_sources}",
            "lib_text_kb": text_bytes(build / "libmodel.a") / 1024, "exe_text_kb": text_bytes(build / "model_example") / 1024,
            "emit_s": t_emit, "build_s": t_build, "max_diff": diff}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=["mobilenet_v2", "resnet50", "bert_tiny"])
    ap.add_argument("--models-dir", default=str(Path(__file__).resolve().parent.parent / "models"))
    ap.add_argument("--target", nargs="*", default=["native", "generic"])
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="onnxc-standalone-"))
    try:
        rows = [run(m, Path(args.models_dir), t, work) for m in args.models for t in args.target]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'model':14} {'target':8} {'sources':>8} {'lib .text KB':>13} {'exe .text KB':>13} "
          f"{'emit s':>7} {'build s':>8} {'max |diff|':>10}")
    for r in rows:
        print(f"{r['model']:14} {r['target']:8} {r['sources']:>8} {r['lib_text_kb']:13.1f} {r['exe_text_kb']:13.1f} "
              f"{r['emit_s']:7.1f} {r['build_s']:8.1f} {r['max_diff']:10.2e}")
    print(f"host: {os.uname().machine}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
