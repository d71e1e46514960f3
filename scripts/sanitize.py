#!/usr/bin/env python3
"""Generated C and runtime_c under AddressSanitizer + UndefinedBehaviorSanitizer, and valgrind.

    .venv/bin/python scripts/sanitize.py                 # ASan+UBSan, then valgrind if installed
    .venv/bin/python scripts/sanitize.py --no-valgrind --only gather,int_math

For each model (tests/fuzz/corpus.py: convolutions, a BERT layer fused into MultiHeadAttention,
the opset-23 Attention op, indexing with out-of-range and extreme index feeds, shape ops, If and
Loop, reductions/TopK/CumSum, Resize, integer division/modulo with zero and INT_MIN/-1, RNNs,
QDQ, pools/norms) at opt levels none and layout: compile it C-only with onnxc, then build the
standalone program (a generated harness main, the model's C, the runtime sources: no Python,
no cffi, no preloading) with -fsanitize=address,undefined -fno-sanitize-recover=all and run it
on each feed, once at 1 thread and once at 2 (model_run twice per process: the second run
finds the arena as the first left it).  Weights, arena, inputs and outputs are heap
blocks of exactly their size, so any read or write past a tensor is reported.  Each program's
outputs must equal what onnxc's own (uninstrumented) module computes for the same feed.  Then
the same programs built without sanitizers (onnxc's cached -O0 runtime objects, target avx2 or
generic: valgrind does not decode AVX-512) run under valgrind memcheck, which also sees reads of
uninitialized memory.  The runtime sources a sanitized program needs are found by linking and
compiled at -O0 once per run (the NCHWc convolutions take minutes at -O1 with ASan).

Any sanitizer report, valgrind error, nonzero status or differing output is a finding; the
script prints one line per run and exits 1 if there was any.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))

import corpus  # noqa: E402

# -O0: ASan and UBSan see every access as written, and the NCHWc kernels compile 4x faster
SAN_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g", "-O0"]
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=86:strict_string_checks=1:"
                           "detect_stack_use_after_return=1:check_initialization_order=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=87"}


def _feeds_valid(sig, rng, hints=None) -> Dict[str, np.ndarray]:
    feed = {}
    for name, dt, shape in sig:
        h = (hints or {}).get(name)
        if h is not None:
            feed[name] = rng.integers(h[1], h[2], shape).astype(dt)
        elif dt.kind == "f":
            feed[name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feed[name] = np.asarray(rng.random(shape) < 0.5)
        else:
            v = rng.integers(1 if dt.kind == "u" else -4, 5, shape).astype(dt)
            feed[name] = v
    return feed


def feeds_for(seed: corpus.Seed, sig) -> List[Tuple[str, Dict[str, np.ndarray]]]:
    """A valid feed, then the hostile ones that apply: NaN/inf floats, out-of-range and extreme
    indices, zero and INT_MIN/-1 divisors, both If branches."""
    rng = np.random.default_rng(0)
    valid = _feeds_valid(sig, rng, seed.hints)
    out = [("valid", valid)]
    floats = [n for n, dt, s in sig if dt.kind == "f" and int(np.prod(s))]
    if floats:
        f = {k: v.copy() for k, v in valid.items()}
        for n in floats:
            flat = f[n].reshape(-1)
            flat[::3] = np.nan
            flat[1::5] = np.inf
            flat[2::7] = -np.inf
        out.append(("nan_inf", f))
    idx = [n for n, dt, s in sig if dt.kind in "iu" and n in seed.hints and seed.hints[n][0] == "index"]
    if idx:
        f = {k: v.copy() for k, v in valid.items()}
        for n in idx:
            lo, hi = seed.hints[n][1:]
            info = np.iinfo(f[n].dtype)
            flat = f[n].reshape(-1)
            flat[0::2] = min(hi + 3, info.max)
            flat[1::2] = max(lo - 7, info.min) if lo - 7 >= info.min else info.max
        out.append(("index_out_of_range", f))
        f = {k: v.copy() for k, v in valid.items()}
        for n in idx:
            info = np.iinfo(f[n].dtype)
            flat = f[n].reshape(-1)
            flat[0::2] = info.max
            flat[1::2] = info.min
        out.append(("index_extreme", f))
    ints = [n for n, dt, s in sig if dt.kind == "i" and n not in seed.hints and int(np.prod(s))]
    if ints:
        f = {k: v.copy() for k, v in valid.items()}
        for n in ints:
            info = np.iinfo(f[n].dtype)
            flat = f[n].reshape(-1)
            flat[:] = np.resize(np.array([0, -1, info.min, info.max, 1], f[n].dtype), flat.size)
        out.append(("int_extremes", f))
    bools = [n for n, dt, s in sig if dt.kind == "b"]
    if bools:
        f = {k: v.copy() for k, v in valid.items()}
        for n in bools:
            f[n] = ~f[n]
        out.append(("bools_flipped", f))
    return out


HARNESS = r"""/* generated by scripts/sanitize.py: runs model_run on raw tensor files, every buffer an
 * exact-size heap block (so ASan and valgrind see any access past a tensor) */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

static const size_t in_bytes[] = {IN_BYTES};
static const size_t out_bytes[] = {OUT_BYTES};
enum { NIN = NUM_IN, NOUT = NUM_OUT };

static void* exact(size_t n, size_t align) {
    void* p = NULL;
    if (align) return posix_memalign(&p, align, n ? n : 1) == 0 ? p : NULL;
    return malloc(n ? n : 1);
}

static int read_file(const char* path, void* dst, size_t n, size_t skip) {
    FILE* f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return 1; }
    if (fseek(f, (long)skip, SEEK_SET) != 0 || fread(dst, 1, n, f) != n) {
        fprintf(stderr, "%s: short read\n", path); fclose(f); return 1;
    }
    fclose(f);
    return 0;
}

int main(int argc, char** argv) {
    /* argv: threads weights.bin in0 .. in{NIN-1} out0 .. out{NOUT-1} */
    const void* inputs[NIN + 1];
    void* outputs[NOUT + 1];
    void *weights, *arena;
    int i, rc, pass;
    if (argc != 3 + NIN + NOUT) { fprintf(stderr, "usage: threads weights inputs... outputs...\n"); return 2; }
    model_set_num_threads(atoi(argv[1]));
    weights = exact(MODEL_WEIGHTS_BYTES, 64);
    arena = exact(MODEL_ARENA_BYTES, 64);
    if (!weights || !arena) return 3;
    if (MODEL_WEIGHTS_BYTES && read_file(argv[2], weights, MODEL_WEIGHTS_BYTES, MODEL_WEIGHTS_HEADER_BYTES)) return 3;
    memset(arena, 0xA5, MODEL_ARENA_BYTES); /* stale data, as a reused arena holds */
    for (i = 0; i < NIN; i++) {
        void* p = exact(in_bytes[i], 0);
        if (!p || read_file(argv[3 + i], p, in_bytes[i], 0)) return 3;
        inputs[i] = p;
    }
    for (i = 0; i < NOUT; i++) {
        outputs[i] = exact(out_bytes[i], 0);
        if (!outputs[i]) return 3;
    }
    for (pass = 0; pass < 2; pass++) { /* twice: the second run finds the arena as the first left it */
        rc = model_run(weights, arena, inputs, outputs);
        /* 4, 5: ONNXC_ERR_VALUE, ONNXC_ERR_INDEX: the feed was refused (the run stopped cleanly) */
        if (rc != 0 && rc != 4 && rc != 5) { fprintf(stderr, "model_run returned %d\n", rc); return 4; }
    }
    for (i = 0; i < NOUT; i++) {
        FILE* f = fopen(argv[3 + NIN + i], "wb");
        if (rc != 0) memset(outputs[i], 0, out_bytes[i]); /* a refused run leaves them unspecified */
        if (!f || fwrite(outputs[i], 1, out_bytes[i], f) != out_bytes[i]) return 3;
        fclose(f);
        free(outputs[i]);
    }
    printf("status %d\n", rc);
    for (i = 0; i < NIN; i++) free((void*)inputs[i]);
    free(weights);
    free(arena);
    return 0;
}
"""


def probe_asan(work: Path, cc: str) -> str:
    """ASAN_OPTIONS that work here; raises RuntimeError when ASan cannot run at all.  LeakSanitizer
    needs ptrace-like access some containers refuse: then leaks are not checked (said so)."""
    src = work / "probe.c"
    src.write_text("#include <stdlib.h>\nint main(void) { void* p = malloc(8); free(p); return 0; }\n")
    exe = work / "probe"
    r = sh([cc, *SAN_FLAGS, str(src), "-o", str(exe)])
    if r.returncode:
        raise RuntimeError(f"the C compiler cannot build with {' '.join(SAN_FLAGS)}:\n{r.stdout[-2000:]}")
    r = sh([str(exe)], env=dict(os.environ, **SAN_ENV))
    if r.returncode == 0:
        return SAN_ENV["ASAN_OPTIONS"]
    no_leaks = SAN_ENV["ASAN_OPTIONS"].replace("detect_leaks=1", "detect_leaks=0")
    r2 = sh([str(exe)], env=dict(os.environ, **dict(SAN_ENV, ASAN_OPTIONS=no_leaks)))
    if r2.returncode == 0:
        print(f"note: LeakSanitizer does not run here, leaks not checked ({r.stdout.strip()[:200]})")
        return no_leaks
    raise RuntimeError(f"AddressSanitizer does not run here:\n{r2.stdout[-2000:]}")


def harness_source(manifest) -> str:
    ins = [i["nbytes"] for i in manifest["inputs"]]
    outs = [o["nbytes"] for o in manifest["outputs"]]
    return (HARNESS.replace("IN_BYTES", ", ".join(f"{n}u" for n in ins) or "0")
            .replace("OUT_BYTES", ", ".join(f"{n}u" for n in outs) or "0")
            .replace("NUM_IN", str(len(ins))).replace("NUM_OUT", str(len(outs))))


def sh(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


class Runtime:
    """runtime_c objects for the standalone programs.  Sanitized: only the sources a program
    needs (found by linking: each undefined symbol is looked up in onnxc's own cached objects
    of the same target), compiled once per flag set at -O0 (the NCHWc convolution source takes
    minutes at -O1 with ASan).  For valgrind: onnxc's own cached -O0 objects, as they are."""

    def __init__(self, work: Path, jobs: int):
        self.work, self.jobs = work, jobs
        self.compiled: Dict[Tuple[str, str], str] = {}  # (flags, source) -> object
        self.symbols: Dict[str, Dict[str, str]] = {}  # target -> symbol -> source

    def plain_objects(self, target: str) -> List[str]:
        from onnxc.build import compile_flags, runtime_objects
        return [str(o) for o in runtime_objects(compile_flags(target, "-O0", False))]

    def symbol_map(self, target: str) -> Dict[str, str]:
        if target not in self.symbols:
            from onnxc.build import runtime_sources
            table = {}
            for src, obj in zip(runtime_sources(), self.plain_objects(target)):
                r = sh(["nm", "-g", "--defined-only", obj])
                for line in r.stdout.splitlines():
                    parts = line.split()
                    if len(parts) == 3:
                        table[parts[2]] = str(src)
            self.symbols[target] = table
        return self.symbols[target]

    def compile(self, flags: List[str], srcs: List[str]) -> List[str]:
        from onnxc.build import c_compiler
        from onnxc.resources import runtime_dir
        key = " ".join(flags)
        d = self.work / f"rt-{abs(hash(key)) % 10 ** 8}"
        d.mkdir(parents=True, exist_ok=True)
        inc = str(runtime_dir() / "include")

        def one(src):
            if (key, src) not in self.compiled:
                obj = d / (str(Path(src).relative_to(runtime_dir())).replace(os.sep, "_")[:-2] + ".o")
                r = sh([c_compiler(), *flags, "-I", inc, "-c", src, "-o", str(obj)])
                if r.returncode:
                    raise RuntimeError(f"compiling {src}:\n{r.stdout[-3000:]}")
                self.compiled[(key, src)] = str(obj)
            return self.compiled[(key, src)]
        with ThreadPoolExecutor(self.jobs) as ex:
            return list(ex.map(one, srcs))


def build_program(out: Path, flags: List[str], rt: Runtime, exe: Path, target: str, sanitized: bool):
    import json
    import re
    from onnxc.build import c_compiler
    from onnxc.resources import runtime_dir
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "harness.c").write_text(harness_source(manifest))
    allf = [*(out / "cflags.txt").read_text().split(), *flags]
    own = [str(out / "harness.c"), str(out / "model.c")]
    inc = ["-I", str(out), "-I", str(runtime_dir() / "include")]
    if not sanitized:
        r = sh([c_compiler(), *allf, "-Wall", *inc, *own, *rt.plain_objects(target), "-lm", "-pthread", "-o", str(exe)])
        if r.returncode:
            raise RuntimeError(f"building {exe}:\n{r.stdout[-3000:]}")
        return manifest
    table = rt.symbol_map(target)
    srcs: List[str] = []
    while True:
        objs = rt.compile(allf, srcs)
        r = sh([c_compiler(), *allf, "-Wall", *inc, *own, *objs, "-lm", "-pthread", "-o", str(exe)])
        if r.returncode == 0:
            return manifest
        missing = set(re.findall(r"undefined reference to `([^']+)'", r.stdout))
        new = sorted({table[m] for m in missing if m in table} - set(srcs))
        if not new:
            raise RuntimeError(f"building {exe}:\n{r.stdout[-3000:]}")
        srcs += new


def run_program(cmd_prefix, exe: Path, out: Path, manifest, feed, expected, threads: int, env, tag: str) -> List[str]:
    """Run once; return the problems found (empty: clean and equal to onnxc's outputs)."""
    d = Path(tempfile.mkdtemp(prefix="io-", dir=out))
    try:
        ins = []
        for k, spec in enumerate(manifest["inputs"]):
            p = d / f"in{k}.bin"
            np.ascontiguousarray(feed[spec["name"]], dtype=spec["dtype"]).tofile(p)
            ins.append(str(p))
        outs = [str(d / f"out{k}.bin") for k in range(len(manifest["outputs"]))]
        r = sh([*cmd_prefix, str(exe), str(threads), str(out / "weights.bin"), *ins, *outs], env=env, timeout=900)
        problems = []
        if r.returncode != 0:
            problems.append(f"{tag}: exit {r.returncode}\n{r.stdout[-6000:]}")
            return problems
        for marker in ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer", "Invalid read",
                       "Invalid write", "uninitialised", "definitely lost"):
            if marker in r.stdout:
                problems.append(f"{tag}: {marker}\n{r.stdout[-6000:]}")
                return problems
        for k, spec in enumerate(manifest["outputs"]):
            got = np.fromfile(outs[k], dtype=spec["dtype"]).reshape(spec["shape"])
            want = expected[k]
            if want is None:  # onnxc refused the feed at run time (ONNXC_ERR_VALUE or _INDEX): nothing to compare
                continue
            same = (np.allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True) if got.dtype.kind == "f"
                    else np.array_equal(got, want))
            if not same:
                problems.append(f"{tag}: output {spec['name']} differs from onnxc's module")
        return problems
    finally:
        shutil.rmtree(d, ignore_errors=True)


DEFAULT = ["conv_cnn", "conv_bn_dw", "matmul_mlp", "bert_layer", "attention_op", "gather_scatter", "shape_ops",
           "if_model", "loop_c", "reduce_topk", "resize_model", "int_math", "int_reduce", "rnn_model", "qdq_model",
           "norm_pool"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated substrings of model names")
    ap.add_argument("--levels", default="none,layout")
    ap.add_argument("--no-asan", dest="asan", action="store_false")
    ap.add_argument("--no-valgrind", dest="valgrind", action="store_false")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compiles of the runtime sources")
    ap.add_argument("--keep", default=None, help="keep the builds in this directory")
    args = ap.parse_args(argv)
    os.environ.setdefault("ONNXC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "onnxc-sanitize-cache"))
    import onnxc
    from onnxc.build import c_compiler
    from onnxc.cpu import runnable_isas
    cc = shutil.which(c_compiler())
    if cc is None:
        print("no C compiler: nothing to do")
        return 0
    seeds = {s.name: s for s in corpus.seeds("none")}
    names = [n for n in DEFAULT if not args.only or any(o in n for o in args.only.split(","))]
    work = Path(args.keep or tempfile.mkdtemp(prefix="onnxc-sanitize-"))
    work.mkdir(parents=True, exist_ok=True)
    valgrind = shutil.which("valgrind") if args.valgrind else None
    vg_target = "avx2" if "avx2" in runnable_isas() else "generic"
    rt = Runtime(work, args.jobs)
    problems, runs = [], 0
    t0 = time.monotonic()
    env = dict(os.environ, **SAN_ENV)
    if args.asan:
        env["ASAN_OPTIONS"] = probe_asan(work, cc)
    try:
        for name in names:
            seed = seeds[name]
            model = seed.build()
            for level in args.levels.split(","):
                builds = []
                if args.asan:
                    builds.append(("asan", "native", SAN_FLAGS, []))
                if valgrind:
                    builds.append(("valgrind", vg_target, ["-g"],
                                   [valgrind, "--error-exitcode=88", "--leak-check=full", "--errors-for-leak-kinds=definite",
                                    "--track-origins=yes", "-q"]))
                for kind, target, flags, prefix in builds:
                    out = work / f"{name}-{level}-{target}"
                    tag = f"{name} {level} {kind}"
                    try:
                        cm = onnxc.compile(model, output_dir=out, opt_level=level, target=target, fallback=False,
                                           input_shapes=seed.input_shapes, num_threads=1, c_opt="-O0")
                        exe = out / "prog"
                        manifest = build_program(out, flags, rt, exe, target, sanitized=kind == "asan")
                    except Exception as e:  # noqa: BLE001 - a model that does not build is a finding too
                        problems.append(f"{tag}: build failed: {e}")
                        print(f"FAIL {tag}: build: {str(e)[:400]}", flush=True)
                        continue
                    sig = [(i["name"], np.dtype(i["dtype"]), i["shape"]) for i in manifest["inputs"]]
                    for label, feed in feeds_for(seed, sig):
                        try:
                            expected = cm.run(None, feed)
                        except onnxc.InputError:  # a refused value (TopK k, ...): the C must refuse too
                            expected = [None] * len(manifest["outputs"])
                        for threads in ((1, 2) if kind == "asan" else (1,)):  # valgrind serializes threads
                            runs += 1
                            p = run_program(prefix, exe, out, manifest, feed, expected, threads, env,
                                            f"{tag} feed={label} threads={threads}")
                            problems += p
                            print(("FAIL " if p else "ok   ") + f"{tag} feed={label} threads={threads}", flush=True)
                            for x in p:
                                print("    " + x.replace("\n", "\n    ")[:4000], flush=True)
                    if not args.keep:
                        shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{runs} runs of {len(names)} models ({'ASan+UBSan' if args.asan else ''}"
          f"{' + valgrind (' + vg_target + ')' if valgrind else ', no valgrind'}) in {time.monotonic() - t0:.0f} s: "
          f"{len(problems)} finding(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
