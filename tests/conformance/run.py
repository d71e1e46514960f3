"""ONNX conformance runner: the official node test cases (and the data suites shipped with
onnx) through onnxc.backend, each classified as pass / wrong / unsupported / error / crash /
timeout.  Cases run in worker subprocesses so a crash costs one case, not the run.

    python tests/conformance/run.py [--suite node|simple|pytorch-converted|pytorch-operator|all]
        [-k SUBSTRING ...] [--jobs N] [--timeout S] [--out results.json]
        [--check-floor tests/conformance/floor.json] [--update-floor]
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from undefined import undefined_outputs  # noqa: E402

DATA_SUITES = ("simple", "pytorch-converted", "pytorch-operator")
CRASH_ENV = "ONNXC_CONFORMANCE_CRASH_CASE"  # names a case whose worker aborts (runner tests only)


# --- cases ------------------------------------------------------------------------------------
def load_cases(suite: str):
    """[(name, model, data_sets, rtol, atol)] in a deterministic order."""
    if suite == "node":
        from onnx.backend.test.case.node import collect_testcases
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = collect_testcases()
        return [(c.name, c.model, c.data_sets, c.rtol, c.atol) for c in cases]
    import onnx
    from onnx import numpy_helper
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / suite
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        model = onnx.load(str(d / "model.onnx"))
        sets = []
        for ds in sorted(d.glob("test_data_set_*")):
            def read(prefix):
                files = sorted(ds.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
                arrs = []
                for f in files:
                    t = onnx.TensorProto()
                    t.ParseFromString(f.read_bytes())
                    arrs.append(numpy_helper.to_array(t))
                return arrs
            sets.append((read("input"), read("output")))
        out.append((d.name, model, sets, 1e-3, 1e-7))
    return out


def compare(outputs, refs, rtol, atol, undefined=None):
    """None if outputs match refs (as onnx's backend test runner compares), else a reason.
    ``undefined`` ({output index: (mask or None, why)}, see undefined.py): elements (None: the
    whole output) whose value the spec leaves undefined are not compared."""
    undefined = undefined or {}
    if len(outputs) != len(refs):
        return f"{len(outputs)} outputs, expected {len(refs)}"
    for i, (o, r) in enumerate(zip(outputs, refs)):
        if hasattr(r, "raw_data"):  # some cases store expected outputs as TensorProto
            from onnx import numpy_helper
            r = numpy_helper.to_array(r)
        if isinstance(r, (list, tuple)) or r is None:  # a sequence (or an empty optional)
            if r is None or o is None:
                if (r is None) != (o is None):
                    return f"output {i}: {o!r:.60}, expected {r!r:.60}"
                continue
            if not isinstance(o, (list, tuple)):
                return f"output {i}: a {type(o).__name__}, expected a sequence"
            why = compare(list(o), list(r), rtol, atol)
            if why:
                return f"output {i} (sequence): {why}"
            continue
        o, r = np.asarray(o), np.asarray(r)
        if o.shape != r.shape:
            return f"output {i}: shape {o.shape}, expected {r.shape}"
        if r.dtype == object or o.dtype == object:
            if not np.array_equal(o, r):
                return f"output {i}: values differ"
            continue
        if o.dtype != r.dtype:
            return f"output {i}: dtype {o.dtype}, expected {r.dtype}"
        if i in undefined:
            mask = undefined[i][0]
            if mask is None:
                continue
            o, r = o[~mask], r[~mask]
        try:
            np.testing.assert_allclose(o, r, rtol=rtol, atol=atol)
        except AssertionError as e:
            return f"output {i}: " + " ".join(str(e).split())[:300]
    return None


# Ops whose outputs are draws from a random generator: the case's expected values come from
# one particular generator (numpy's), so they are checked by property and distribution instead
# (distribution_check). Dropout draws only with a training_mode input.
RANDOM_OPS = {"Bernoulli", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial"}


def _walk(g):
    for n in g.node:
        yield n
        for a in n.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from _walk(sub)


def _is_random(n) -> bool:
    return n.op_type in RANDOM_OPS or (n.op_type == "Dropout" and len(n.input) > 2 and bool(n.input[2]))


def random_ops(model):
    return sorted({n.op_type for n in _walk(model.graph) if _is_random(n)})


# --- distribution check (random ops) ----------------------------------------------------------
DRAWS = 400
DISTRIBUTION_NOTE = "distribution check (draws compared with onnx.reference's, not values): "  # runs of the module and of onnx.reference compared per data set


def _unseeded(model):
    """A copy of ``model`` whose random nodes have no seed: every run draws afresh."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in _walk(m.graph):
        if _is_random(n):
            keep = [a for a in n.attribute if a.name != "seed"]
            del n.attribute[:]
            n.attribute.extend(keep)
    return m


def _draw_moments(samples: np.ndarray, ref: np.ndarray):
    """None if the module's draws ``samples`` [runs, ...] look like onnx.reference's ``ref``
    [runs, ...] element by element, else why not: the same support where the reference's is
    discrete (an output of at most 2 values, Bernoulli's {0, 1} or a mask: those; else per element
    at most 2, Dropout's {0, x/(1-r)}: that element's), per-element means within a chi-square bound
    (8 sigma of chi2 with one degree of freedom per element; variances pooled from both, so an
    element the reference rarely varies is not overweighted) and the pooled variance within 25%."""
    a, b = samples.reshape(len(samples), -1).astype(np.float64), ref.reshape(len(ref), -1).astype(np.float64)
    everywhere = np.unique(b)
    for j in range(b.shape[1]):
        vals = everywhere if len(everywhere) <= 2 else np.unique(b[:, j])
        if len(vals) <= 2 and not np.isin(a[:, j], vals).all():
            return f"element {j}: values {sorted(set(a[:, j]) - set(vals))[:3]} outside the reference's {vals.tolist()}"
    pooled = np.concatenate([a, b]).var(axis=0, ddof=1)
    vary = pooled > 0
    if vary.any():
        se2 = pooled[vary] * (1 / len(a) + 1 / len(b))
        chi2 = float(np.sum((a[:, vary].mean(0) - b[:, vary].mean(0)) ** 2 / se2))
        k = int(vary.sum())
        if chi2 > k + 8 * np.sqrt(2 * k):
            return f"means differ from the reference's: chi2 {chi2:.1f} over {k} elements"
        vb = b[:, vary].var(axis=0, ddof=1).sum()
        ratio = float(a[:, vary].var(axis=0, ddof=1).sum() / vb) if vb > 0 else np.inf
        if not 0.75 < ratio < 1.33:
            return f"variance {ratio:.2f} x the reference's"
    return None


def distribution_check(backend, rep, model, data_sets, options, builds):
    """DISTRIBUTION CHECK of a case with random ops (its expected values are one generator's
    draws): the outputs' shapes and dtypes are the case's; a node with a seed gives the same draws
    on every run; and DRAWS runs of the module (without the seeds, so that they differ) compare
    with DRAWS runs of onnx.reference (_draw_moments).  ``rep``: the case's prepared model;
    ``builds`` gets the extra one made here (unseeded), for the caller to delete.  (status, reason)."""
    from onnx.reference import ReferenceEvaluator
    unseeded = _unseeded(model)
    seeded = unseeded.SerializeToString() != model.SerializeToString()
    fresh = rep
    if seeded:
        fresh = backend.prepare(unseeded, **options)
        builds.append(fresh)
    ref = ReferenceEvaluator(unseeded)
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    for inputs, refs in data_sets:
        first = rep.run(inputs)
        for k, (o, r) in enumerate(zip(first, refs)):
            o, r = np.asarray(o), np.asarray(r)
            if o.shape != r.shape or o.dtype != r.dtype:
                return "wrong", f"output {k}: {o.dtype}{list(o.shape)}, expected {r.dtype}{list(r.shape)}"
        if seeded and any(not np.array_equal(o, p, equal_nan=True) for o, p in zip(first, rep.run(inputs))):
            return "wrong", "two runs with the same seed gave different draws"
        runs = [fresh.run(inputs) for _ in range(DRAWS)]
        feed = dict(zip(names, inputs))
        refruns = [ref.run(None, feed) for _ in range(DRAWS)]
        for k in range(len(refs)):
            why = _draw_moments(np.stack([np.asarray(r[k]) for r in runs]),
                                np.stack([np.asarray(r[k]) for r in refruns]))
            if why:
                return "wrong", f"distribution check, output {k}: {why}"
    return "pass", ""


def undefined_in_case(model, inputs):
    """undefined.undefined_outputs for one data set (inputs in the order of the graph's inputs
    that are not initializers, as the backend takes them)."""
    if model is None:
        return {}
    from onnx import numpy_helper
    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    feeds = {}
    for n, x in zip(names, inputs):
        x = numpy_helper.to_array(x) if hasattr(x, "raw_data") else x
        if isinstance(x, np.ndarray):
            feeds[n] = x
    if len(feeds) != len(names):
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return undefined_outputs(model, feeds)


def describe_undefined(undefined, refs) -> str:
    parts = []
    for i, (mask, why) in sorted(undefined.items()):
        n = "all" if mask is None else f"{int(mask.sum())} of {mask.size}"
        parts.append(f"output {i}: {n} elements ({why})")
    return "; ".join(parts)


def run_case(case, options):
    """(status, reason, note): ``note`` names the elements not compared because the spec leaves
    their value undefined (they count neither as right nor as wrong)."""
    import onnxc.backend as backend
    name, model, data_sets, rtol, atol = case
    if os.environ.get(CRASH_ENV) == name:
        os.abort()
    options = dict(options)
    keep = options.pop("keep_builds", False)
    rnd = random_ops(model) if model is not None else []
    with _build_in_use(model, keep) as may_delete:
        return _run_case(backend, model, data_sets, rtol, atol, options, may_delete, rnd)


@contextlib.contextmanager
def _build_in_use(model, keep):
    """Yields a function telling whether this worker may delete the case's build when done.
    Cases with byte-identical models (pytorch-converted's test_AvgPool2d and _stride) share one
    cache entry, and two workers may run them at once: one deleting it while the other loads it
    gave 'cannot open shared object file'. Each worker holds a shared flock on a file named by
    the model's digest while its case runs; the build is deleted only by a worker that then gets
    the lock exclusively (nobody else uses it; a worker that starts later just rebuilds)."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): keep the builds
        fcntl = None
    if keep or model is None or fcntl is None:
        yield lambda: False
        return
    from onnxc.build import cache_root
    d = cache_root() / "conformance-in-use"
    d.mkdir(parents=True, exist_ok=True)
    f = open(d / hashlib.sha256(model.SerializeToString()).hexdigest()[:32], "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_SH)

        def may_delete():
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:  # another worker holds it: that one deletes the build
                return False
        yield may_delete
    finally:
        f.close()


def _run_case(backend, model, data_sets, rtol, atol, options, may_delete, rnd=()):
    rep = None
    notes = []
    extra = []
    try:
        rep = backend.prepare(model, **options)
        if rnd:  # draws of a generator: compared by distribution, and said so
            status, why = distribution_check(backend, rep, model, data_sets, options, extra)
            if status != "pass":
                return status, why, ""
        for inputs, refs in data_sets if not rnd else ():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outs = rep.run(inputs)
            undefined = undefined_in_case(model, inputs)
            if undefined:
                notes.append(describe_undefined(undefined, refs))
            why = compare(outs, refs, rtol, atol, undefined)
            if why:
                return "wrong", why, " | ".join(notes)
        nodes = getattr(getattr(rep, "session", None), "fallback_nodes", [])
        fb = sorted({f"{n['op']}: {n['why'][:60]}" for n in nodes})
        if fb:
            return "pass", "fallback: " + " | ".join(fb), " | ".join(notes)
        return "pass", (DISTRIBUTION_NOTE + ", ".join(rnd)) if rnd else "", " | ".join(notes)
    except NotImplementedError as e:
        return "unsupported", str(e), ""
    except Exception as e:  # noqa: BLE001 - classified, the run goes on
        return "error", f"{type(e).__name__}: {e}", ""
    finally:
        if rep is not None and may_delete():  # ~2,000 cases of ~0.1-1 MB each: CI disks are small
            for r in [rep] + extra:
                for m in getattr(getattr(r, "session", None), "compiled_models", []):
                    shutil.rmtree(m.output_dir, ignore_errors=True)


# --- worker -----------------------------------------------------------------------------------
def worker_main(suite, options):
    import logging
    logging.getLogger("onnxc").setLevel(logging.ERROR)  # fallback warnings: counted in the summary
    cases = load_cases(suite)
    for line in sys.stdin:
        i = int(line)
        t = time.perf_counter()
        status, reason, undefined = run_case(cases[i], options)
        print(json.dumps({"i": i, "status": status, "reason": reason[:2000], "undefined": undefined[:1000],
                          "seconds": round(time.perf_counter() - t, 3)}), flush=True)


class Worker:
    def __init__(self, suite, options, extra_env=None):
        env = dict(os.environ, **(extra_env or {}))
        cmd = [sys.executable, __file__, "--worker", "--suite", suite, "--options", json.dumps(options)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     bufsize=1)
        self.case = None
        self.started = 0.0

    def send(self, i):
        self.case, self.started = i, time.perf_counter()
        self.proc.stdin.write(f"{i}\n")
        self.proc.stdin.flush()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def run_suite(suite, names, indices, jobs, timeout, options, extra_env=None, log=print):
    """Run the cases at ``indices``; returns {name: result dict}."""
    results = {}
    todo = list(indices)
    workers = [Worker(suite, options, extra_env) for _ in range(min(jobs, max(len(todo), 1)))]
    idle = list(workers)
    busy = {}
    while todo or busy:
        while todo and idle:
            w = idle.pop()
            w.send(todo.pop(0))
            busy[w.proc.stdout.fileno()] = w
        ready, _, _ = select.select(list(busy), [], [], 1.0)
        for fd in ready:
            w = busy.pop(fd)
            line = w.proc.stdout.readline()
            if line:
                r = json.loads(line)
                results[names[r["i"]]] = {k: r[k] for k in ("status", "reason", "undefined", "seconds")}
                idle.append(w)
                continue
            code = w.proc.wait()
            results[names[w.case]] = {"status": "crash", "reason": f"worker exited with code {code}",
                                      "seconds": round(time.perf_counter() - w.started, 3)}
            log(f"  crash: {names[w.case]} (exit {code})")
            idle.append(Worker(suite, options, extra_env))
        now = time.perf_counter()
        for fd, w in list(busy.items()):
            if now - w.started > timeout:
                w.kill()
                del busy[fd]
                results[names[w.case]] = {"status": "timeout", "reason": f"over {timeout} s", "seconds": timeout}
                idle.append(Worker(suite, options, extra_env))
    for w in idle:
        w.proc.stdin.close()
        w.kill()
    return results


# --- reporting --------------------------------------------------------------------------------
FAILED = ("wrong", "error", "crash", "timeout")


def unsupported_ops(reason: str):
    ops = re.findall(r"- (\w+) \([\w.]+, opset \d+\) node '[^']*': (.*)", reason)
    return [f"{op}: {why[:60]}" for op, why in ops] or [reason.splitlines()[0][:90]]


def uses_fallback(r) -> bool:
    return r["status"] == "pass" and r["reason"].startswith("fallback: ")


def summarize(suite, results, seconds):
    counts = collections.Counter(r["status"] for r in results.values())
    counts["pass_c"] = sum(1 for r in results.values() if r["status"] == "pass" and not uses_fallback(r))
    lines = [f"== {suite}: {len(results)} cases in {seconds:.0f} s: "
             + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "unsupported") + FAILED)
             + f" ({counts['pass_c']} pass entirely in C, {counts['pass'] - counts['pass_c']} with "
             "fallback nodes)"]
    for status in FAILED:
        for name, r in sorted(results.items()):
            if r["status"] == status:
                lines.append(f"  {status:8} {name}: {r['reason'][:300]}")
    dist = sorted(name for name, r in results.items() if r["reason"].startswith(DISTRIBUTION_NOTE))
    if dist:
        lines.append(f"  {len(dist)} case(s) with random ops passed a distribution check (support, mean, variance "
                     f"of {DRAWS} runs against onnx.reference's), not a comparison of values: {', '.join(dist)}")
    undefined = sorted((name, r["undefined"]) for name, r in results.items() if r.get("undefined"))
    if undefined:
        lines.append(f"  {len(undefined)} case(s) with elements the spec leaves undefined, not compared "
                     "(neither right nor wrong):")
        lines += [f"    {name}: {note[:200]}" for name, note in undefined[:8]]
        if len(undefined) > 8:
            lines.append(f"    ... and {len(undefined) - 8} more (--out has them all)")
    reasons = collections.Counter()
    for r in results.values():
        if r["status"] == "unsupported":
            reasons.update(set(unsupported_ops(r["reason"])))
    if reasons:
        lines.append("  top unsupported reasons (cases):")
        lines += [f"    {n:5d}  {why}" for why, n in reasons.most_common(40)]
    fallback = collections.Counter()
    for r in results.values():
        if uses_fallback(r):
            fallback.update(set(r["reason"][len("fallback: "):].split(" | ")))
    if fallback:
        lines.append("  top reasons for fallback nodes (cases):")
        lines += [f"    {n:5d}  {why}" for why, n in fallback.most_common(40)]
    return counts, "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="node", choices=("node",) + DATA_SUITES + ("all",))
    ap.add_argument("-k", action="append", default=[], help="run cases whose name contains this (repeatable)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--out", default="")
    ap.add_argument("--check-floor", default="")
    ap.add_argument("--update-floor", action="store_true")
    ap.add_argument("--c-opt", default="-O1", help="C optimization level for case builds")
    ap.add_argument("--fallback-engine", default="reference", choices=("reference", "onnxruntime", "auto"),
                    help="interpreter of fallback partitions (default: onnx.reference, the spec's own)")
    ap.add_argument("--no-fallback", action="store_true",
                    help="compile C-only: nodes without a C kernel make the case unsupported")
    ap.add_argument("--keep-builds", action="store_true",
                    help="keep each case's compiled module in the cache (default: deleted after the case)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.suite, json.loads(args.options))
        return 0
    os.environ.setdefault("ONNXC_CACHE_DIR", os.path.join(tempfile.gettempdir(), "onnxc-conformance-cache"))
    options = {"c_opt": args.c_opt, "fallback": not args.no_fallback, "fallback_engine": args.fallback_engine,
               "keep_builds": args.keep_builds}
    suites = ("node",) + DATA_SUITES if args.suite == "all" else (args.suite,)
    all_results, failed_total, passed_total = {}, 0, 0
    floor_path = Path(args.check_floor or Path(__file__).with_name("floor.json"))
    floor = json.loads(floor_path.read_text()) if floor_path.exists() else {}
    ok = True
    for suite in suites:
        names = [c[0] for c in load_cases(suite)]
        idx = [i for i, n in enumerate(names) if not args.k or any(k in n for k in args.k)]
        t = time.perf_counter()
        results = run_suite(suite, names, idx, args.jobs, args.timeout, options)
        counts, text = summarize(suite, results, time.perf_counter() - t)
        print(text)
        all_results[suite] = results
        passed_total += counts.get("pass", 0)
        failed_total += sum(counts.get(s, 0) for s in FAILED)
        if args.check_floor:
            for key, got in (("min_pass", counts.get("pass", 0)), ("min_pass_c", counts["pass_c"])):
                need = floor.get(suite, {}).get(key, 0)
                if got < need:
                    print(f"RATCHET: {suite} {key} {got} < floor {need}")
                    ok = False
            bad = counts.get("wrong", 0) + counts.get("crash", 0)
            if bad:
                print(f"RATCHET: {suite} has {bad} wrong/crash case(s); those are never allowed")
                ok = False
        if args.update_floor and not args.k:
            for key, got in (("min_pass", counts.get("pass", 0)), ("min_pass_c", counts["pass_c"])):
                floor.setdefault(suite, {})[key] = max(floor[suite].get(key, 0), got)
    if args.update_floor:
        floor_path.write_text(json.dumps(floor, indent=1) + "\n")
    if args.out:
        Path(args.out).write_text(json.dumps(all_results, indent=1))
    unsupported = sum(1 for res in all_results.values() for r in res.values() if r["status"] == "unsupported")
    print(f"unsupported: {unsupported}")
    print(f"conformance: {passed_total} passed, {failed_total} failed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
