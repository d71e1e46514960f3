#!/usr/bin/env python3
"""Seeded mutation fuzzer for onnxc: compile and run mutated models, each case in its own process.

    .venv/bin/python tests/fuzz/fuzz.py --seed 0 --cases 500 --out /tmp/fuzz
    .venv/bin/python tests/fuzz/fuzz.py --seed 0 --minutes 30 --light all --out /tmp/fuzz
    .venv/bin/python tests/fuzz/fuzz.py --replay /tmp/fuzz/findings/<category>/<signature>

Case ``i`` of seed ``s`` is a pure function of (s, i): a seed model (tests/fuzz/corpus.py), a
stack of mutations (tests/fuzz/mutate.py: bytes of the serialized model, its structure, or the
feed) and compile options.  The parent process (which imports onnxc, onnx and onnxruntime once
and never calls their native code on a mutated model) forks a child per case; the child compiles
(``onnxc.compile`` or ``onnxc.InferenceSession``, -O0 to keep cases cheap), runs a valid feed and
then each mutated feed, optionally runs onnxruntime on the same model and feed, and reports what
happened through a pipe.  Outcomes:

    ok         compiled and ran (or a mutated feed was accepted)
    clean      an onnxc error (ModelError, InputError, UnsupportedError, ...) at compile or run
    exception  any other Python exception (KeyError, IndexError, AssertionError, MemoryError, ...)
    crash      the child died of a signal or exited without a result
    hang       the child outlived --timeout (killed with its process group)
    bad_output a result whose shape or dtype differs from the compiled signature
The last four are failures.  Informational: ``mismatch`` (onnxc and onnxruntime both ran the
valid feed and disagree), ``accepted_invalid`` (onnxc ran a model onnxruntime refuses), and
crashes/hangs inside onnxruntime itself (not onnxc's).

Each failure is grouped by a signature (outcome, stage, exception type or signal, innermost
onnxc frame); the first case of each is minimised (its mutation steps dropped one at a time
while the signature stays) and saved under <out>/findings/ with the model bytes, the feeds and a
README naming the replay command.  <out>/summary.json and summary.md count outcomes by
category, seed model and mutator.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import select
import shutil
import signal
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

import corpus  # noqa: E402
import known  # noqa: E402
import mutate  # noqa: E402

FAILURES = ("exception", "crash", "hang", "bad_output")
LEVELS = ["none", "basic", "extended", "layout", "layout"]


@dataclass
class Case:
    index: int
    seed: str
    kind: str  # "bytes", "struct", "feed", "plain"
    steps: List[Tuple[str, int]] = field(default_factory=list)  # (mutator, step seed)
    feed_steps: List[Tuple[str, int]] = field(default_factory=list)
    options: Dict = field(default_factory=dict)
    api: str = "compile"  # or "session"


def plan_case(master: int, index: int, seeds: List[corpus.Seed]) -> Case:
    rng = random.Random(f"onnxc-fuzz:{master}:{index}")
    seed = rng.choices(seeds, weights=[s.weight for s in seeds])[0]
    r = rng.random()
    kind = "bytes" if r < 0.2 else "struct" if r < 0.82 else "feed" if r < 0.97 else "plain"
    steps: List[Tuple[str, int]] = []
    if kind == "bytes":
        names = list(mutate.BYTE_MUTATORS)
        steps = [(rng.choice(names), rng.getrandbits(32)) for _ in range(rng.choice([1, 1, 2]))]
    elif kind == "struct":
        names = list(mutate.STRUCT_WEIGHTS)
        weights = [mutate.STRUCT_WEIGHTS[n] for n in names]
        steps = [(rng.choices(names, weights)[0], rng.getrandbits(32)) for _ in range(rng.choice([1, 1, 1, 2, 2, 3]))]
    feed_steps: List[Tuple[str, int]] = []
    n_feed = (rng.choice([1, 1, 2]) if kind == "feed" else 1 if kind == "struct" and rng.random() < 0.2 else 0)
    for _ in range(n_feed):
        feed_steps.append((rng.choice(mutate.FEED_MUTATIONS), rng.getrandbits(32)))
    options = {"opt_level": rng.choice(LEVELS), "target": "generic" if rng.random() < 0.15 else "native",
               "num_threads": 2 if rng.random() < 0.2 else 1, "fallback": rng.random() < 0.85}
    api = "session" if rng.random() < 0.15 else "compile"
    return Case(index, seed.name, kind, steps, feed_steps, options, api)


def build_model(case: Case, seed: corpus.Seed, base: bytes) -> Tuple[bytes, List[str]]:
    """The case's model bytes and a description of each mutation step (None: did not apply)."""
    import onnx
    done: List[str] = []
    if case.kind == "struct":
        m = onnx.ModelProto()
        m.ParseFromString(base)
        for name, s in case.steps:
            try:
                d = mutate.STRUCT_MUTATORS[name](random.Random(s), m)
            except Exception as e:  # noqa: BLE001 - e.g. a value protobuf refuses: the step is skipped
                d = None
                done.append(f"{name}: not applied ({type(e).__name__})")
                continue
            done.append(f"{name}: {d}" if d else f"{name}: not applicable")
        return m.SerializeToString(), done
    if case.kind == "bytes":
        data = bytearray(base)
        for name, s in case.steps:
            if not data:
                break
            d = mutate.BYTE_MUTATORS[name](random.Random(s), data)
            done.append(f"{name}: {d}" if d else f"{name}: not applicable")
        return bytes(data), done
    return base, done


# --- the child -----------------------------------------------------------------------------------
_ORT_TYPES = {"float": np.float32, "double": np.float64, "float16": np.float16, "int64": np.int64, "int32": np.int32,
              "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
              "uint64": np.uint64, "bool": np.bool_}


def _signature(inputs, symbols, rng):
    """[(name, dtype, shape)] from get_inputs() (free dims bound to small sizes, one per symbol)."""
    out = []
    for i in inputs:
        t = re.match(r"tensor\((\w+)\)", i.type)
        dt = _ORT_TYPES.get(t.group(1)) if t else None
        if dt is None:
            continue
        shape = []
        for d in i.shape:
            if isinstance(d, int) and d >= 0:
                shape.append(d)
            else:
                shape.append(symbols.setdefault(str(d), rng.choice([1, 2, 3])))
        out.append((i.name, np.dtype(dt), shape))
    return out


def make_feed(signature, hints, rng: np.random.Generator) -> Dict[str, np.ndarray]:
    feed = {}
    for name, dt, shape in signature:
        if int(np.prod(shape, dtype=np.float64)) > 1 << 24:
            raise MemoryError(f"the fuzzer will not make a {shape} feed")  # reported as the fuzzer's, below
        h = hints.get(name)
        if h is not None:
            feed[name] = rng.integers(h[1], h[2], shape).astype(dt)
        elif dt.kind == "f":
            feed[name] = rng.standard_normal(shape).astype(dt)
        elif dt.kind == "b":
            feed[name] = np.asarray(rng.random(shape) < 0.5)
        elif dt.kind in "iu":
            lo = 0 if dt.kind == "u" else -4
            v = rng.integers(lo, 5, shape).astype(dt)
            if dt.kind == "i":
                v[v == 0] = 1  # integer divisors (x/0 is defined as 0 by onnxc, an exception by numpy)
            feed[name] = v
        else:
            feed[name] = np.zeros(shape, dt)
    return feed


def _frame_of(tb_frames) -> str:
    """The innermost frame in onnxc's own sources (else the innermost one) as file:function."""
    pick = None
    for f in tb_frames:
        if "/compiler/" in f.filename or "/onnxc/" in f.filename:
            pick = f
    pick = pick or (tb_frames[-1] if tb_frames else None)
    if pick is None:
        return "?"
    return f"{Path(pick.filename).name}:{pick.name}"


def _exc_record(e: BaseException, stage: str) -> Dict:
    frames = traceback.extract_tb(e.__traceback__)
    return {"stage": stage, "type": type(e).__name__, "message": str(e)[:2000], "where": _frame_of(frames),
            "traceback": "".join(traceback.format_exception(type(e), e, e.__traceback__))[-6000:]}


def _check_outputs(outs, expected) -> Optional[str]:
    if len(outs) != len(expected):
        return f"{len(outs)} outputs, expected {len(expected)}"
    for o, e in zip(outs, expected):
        if e is None:  # produced by the fallback interpreter: any shape
            continue
        dt, shape = e
        if not isinstance(o, np.ndarray):
            return f"output of type {type(o).__name__}"
        if o.dtype != dt or list(o.shape) != list(shape):
            return f"output {o.dtype}{list(o.shape)}, compiled for {dt}{list(shape)}"
    return None


def _compare(outs, refs) -> Optional[str]:
    if len(outs) != len(refs):
        return f"{len(outs)} outputs vs onnxruntime's {len(refs)}"
    for k, (o, r) in enumerate(zip(outs, refs)):
        o, r = np.asarray(o), np.asarray(r)
        if o.shape != r.shape or o.dtype != r.dtype:
            return f"output {k}: {o.dtype}{list(o.shape)} vs onnxruntime {r.dtype}{list(r.shape)}"
        if o.dtype.kind in "fc":
            a, b = o.astype(np.float64), r.astype(np.float64)
            scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isinf(b), 0, b)), initial=0)))
            if not np.allclose(a, b, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
                diff = float(np.nanmax(np.abs(a - b), initial=0))
                return f"output {k}: values differ (max abs diff {diff:.3g}; NaN in one only: " \
                       f"{int(np.sum(np.isnan(a) != np.isnan(b)))})"
        elif o.dtype.kind in "iub" and not np.array_equal(o, r):
            return f"output {k}: values differ at {int(np.sum(o != r))} of {o.size}"
    return None


class Reporter:
    def __init__(self, fd):
        self.fd = fd

    def send(self, **msg):
        data = (json.dumps(msg, default=str) + "\n").encode()
        while data:
            n = os.write(self.fd, data)
            data = data[n:]


class _NoBuild(Exception):
    pass


def run_case_here(case: Case, model: bytes, seed: corpus.Seed, work: Path, rep, diff: bool, feeds_from=None,
                  no_build: bool = False):
    """Compile and run one case in this process; ``rep.send`` reports stages and the result.
    ``feeds_from``: replay the pickled feeds of a saved case instead of making new ones."""
    import onnxc
    from onnxc.errors import InputError, OnnxcError
    cm = sess = None
    stage = "compile"
    rep.send(stage=stage)
    if no_build:  # frontend, passes, partition and codegen only: no C compiler, ~10x more cases
        import onnxc.build

        def no_build_module(*a, **k):
            raise _NoBuild()
        onnxc.build.build_module = no_build_module
    opts = dict(case.options)
    threads = opts.pop("num_threads")
    out_dir = work / "out"
    try:
        if case.api == "session":
            sess = onnxc.InferenceSession(model, c_opt="-O0", num_threads=threads, input_shapes=seed.input_shapes,
                                          **opts)
            runner = sess
            inputs = sess.get_inputs()
        else:
            cm = onnxc.compile(model, input_shapes=seed.input_shapes, output_dir=out_dir, c_opt="-O0",
                               num_threads=threads, force=True, **opts)
            runner = cm
            inputs = cm.get_inputs()
    except _NoBuild:
        rep.send(result={"outcome": "ok", "note": "generated C, not built"})
        return
    except OnnxcError as e:
        rep.send(result={"outcome": "clean", **_exc_record(e, stage)})
        return
    except Exception as e:  # noqa: BLE001 - anything else is a finding
        rep.send(result={"outcome": "exception", **_exc_record(e, stage)})
        return
    rng = np.random.default_rng(2 * abs(case.index) + (case.index < 0))
    symbols: Dict[str, int] = {}
    if feeds_from is not None:
        feeds = pickle.loads(Path(feeds_from).read_bytes())
    else:
        try:
            valid = make_feed(_signature(inputs, symbols, rng), seed.hints, rng)
        except MemoryError as e:
            rep.send(result={"outcome": "ok", "note": f"not run: {e}"})
            return
        feeds = [("valid", valid)]
        for kind, s in case.feed_steps:
            f = {k: v.copy() for k, v in valid.items()}
            d = mutate.mutate_feed(random.Random(s), f, kind, seed.hints)
            if d:
                feeds.append((f"{kind}: {d}", f))
        (work / "feeds.pkl").write_bytes(pickle.dumps(feeds))
    outcomes = []
    valid_out = None
    for label, feed in feeds:
        stage = "run" if label == "valid" else "run_mutated_feed"
        rep.send(stage=stage, feed=label)
        try:
            outs = runner.run(None, feed)
        except _NoBuild:  # an InferenceSession compiles on first sight of free dims
            rep.send(result={"outcome": "ok", "note": "generated C, not built"})
            return
        except (InputError, OnnxcError) as e:
            outcomes.append({"outcome": "clean", "feed": label, **_exc_record(e, stage)})
            continue
        except Exception as e:  # noqa: BLE001
            rep.send(result={"outcome": "exception", "feed": label, **_exc_record(e, stage)})
            return
        if case.api != "session" and label == "valid":
            expected = [None if o.get("python") else (np.dtype(o["dtype"]), o["shape"]) for o in cm._outputs]
            bad = _check_outputs(outs, expected)
            if bad:
                rep.send(result={"outcome": "bad_output", "stage": stage, "feed": label, "type": "shape",
                                 "message": bad, "where": "run"})
                return
        if label == "valid":
            valid_out = outs
        outcomes.append({"outcome": "ok", "feed": label, "stage": stage})
    result = {"outcome": "ok", "runs": outcomes}
    if feeds and feeds[0][0] == "valid" and outcomes and outcomes[0]["outcome"] == "clean":
        result = {**outcomes[0], "runs": outcomes}  # the valid feed was refused (a bad model at run time)
    rep.send(stage="release")  # destructors (module, thread pool, fallback sessions) run here
    runner = cm = sess = None  # noqa: F841
    import gc
    gc.collect()
    rep.send(result=result)  # onnxc's part is done: what onnxruntime does below is only compared
    if diff and valid_out is not None and feeds_from is None:
        rep.send(stage="ort")
        rep.send(ort=_ort_check(model, feeds[0][1], valid_out))


def _ort_check(model: bytes, feed, outs) -> Dict:
    import onnxruntime as ort
    try:
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.log_severity_level = 4
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        refs = sess.run(None, {k: v for k, v in feed.items() if k in names})
    except Exception as e:  # noqa: BLE001 - onnxruntime refuses the model or the feed
        return {"status": "refused", "message": str(e)[:300]}
    bad = _compare(outs, refs)
    return {"status": "mismatch", "message": bad} if bad else {"status": "agree"}


def _child(case: Case, model: bytes, seed: corpus.Seed, work: Path, wfd: int, diff: bool, mem_gb: float,
           no_build: bool, timeout: float):
    os.setpgid(0, 0)  # the parent kills the whole group (the C compiler too) on a timeout
    import faulthandler
    import resource
    log = os.open(work / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    fh = open(work / "faulthandler.txt", "w")
    faulthandler.enable(file=fh)
    faulthandler.dump_traceback_later(max(1.0, timeout - 3), file=fh)  # where a hang is, before the kill
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails instead of killing
    lim = int(mem_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    rep = Reporter(wfd)
    try:
        run_case_here(case, model, seed, work, rep, diff, no_build=no_build)
    except BaseException as e:  # noqa: BLE001 - a bug in the harness itself
        rep.send(result={"outcome": "exception", **_exc_record(e, "harness")})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def run_isolated(case: Case, model: bytes, seed: corpus.Seed, work: Path, timeout: float, diff: bool,
                 mem_gb: float, no_build: bool = False) -> Dict:
    """Fork, run the case in the child, collect its messages; classify deaths and timeouts."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "model.onnx").write_bytes(model)
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(case, model, seed, work, w, diff, mem_gb, no_build, timeout)
    os.close(w)
    t0 = time.monotonic()
    buf = b""
    msgs: List[Dict] = []
    timed_out = False
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([r], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            msgs.extend(json.loads(x) for x in lines if x)
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.close(r)
    _, status = os.waitpid(pid, 0)
    seconds = time.monotonic() - t0
    stage = next((m["stage"] for m in reversed(msgs) if "stage" in m), "start")
    result = next((m["result"] for m in msgs if "result" in m), None)
    code = os.waitstatus_to_exitcode(status)
    ort = next((m["ort"] for m in msgs if "ort" in m), None)
    if result is not None and (stage == "ort" or (not timed_out and code == 0)):
        result["seconds"] = round(seconds, 2)
        if ort is not None:
            result["ort"] = ort
        elif stage == "ort":  # onnxruntime itself died or hung on the model: not onnxc's failure
            fh = (work / "faulthandler.txt").read_text(errors="replace") if (work / "faulthandler.txt").exists() else ""
            result["ort"] = {"status": "hang" if timed_out else "crash",
                             "message": "timeout" if timed_out else f"exit {code}", "where": _faulthandler_frame(fh)}
        return result
    fh = (work / "faulthandler.txt").read_text(errors="replace") if (work / "faulthandler.txt").exists() else ""
    where = _faulthandler_frame(fh)
    if timed_out:
        return {"outcome": "hang", "stage": stage, "type": "timeout",
                "message": f"no result after {timeout:.0f} s", "where": where, "traceback": fh[-6000:],
                "seconds": round(seconds, 2)}
    what = signal.Signals(-code).name if code < 0 else f"exit status {code}"
    return {"outcome": "crash", "stage": stage, "type": what,
            "message": f"child died ({what}) in stage {stage}", "where": where, "traceback": fh[-6000:],
            "seconds": round(seconds, 2)}


def _faulthandler_frame(text: str) -> str:
    """Where a faulthandler dump of the main thread stopped: the innermost onnxc frame, and the
    innermost frame when that is elsewhere (onnx, onnxruntime), as file:function."""
    block = text.split("most recent call first):", 1)[1].split("\n\n")[0] if "most recent call first" in text else ""
    frames = [(Path(f).name, fn, f) for f, fn in re.findall(r'File "([^"]+)", line \d+ in (\S+)', block)]
    frames = [x for x in frames if "/tests/fuzz/" not in x[2]]  # the harness's own frames
    if not frames:
        return "?"
    ours = next((f"{a}:{b}" for a, b, f in frames if "/compiler/" in f or "/onnxc/" in f), None)
    inner = f"{frames[0][0]}:{frames[0][1]}"
    return inner if ours in (None, inner) else f"{ours} > {inner}"


def signature(res: Dict) -> str:
    msg = ""
    if res["outcome"] in ("exception", "bad_output"):  # numbers vary between cases of one bug
        msg = re.sub(r"\d+", "N", (res.get("message") or "").split("\n")[0])[:80]
    key = f"{res['outcome']}|{res.get('stage')}|{res.get('type')}|{res.get('where')}|{msg}"
    return key


def sig_slug(sig: str) -> str:
    parts = sig.split("|")
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(p for p in parts[1:4] if p))[:80]
    return f"{base}-{hashlib.sha1(sig.encode()).hexdigest()[:8]}"


# --- driver --------------------------------------------------------------------------------------
class Fuzzer:
    def __init__(self, args):
        self.args = args
        self.out = Path(args.out).resolve()
        self.work = self.out / "work"
        self.seeds = {s.name: s for s in corpus.seeds(args.light)}
        if args.only:
            self.seeds = {k: v for k, v in self.seeds.items() if any(o in k for o in args.only.split(","))}
        self.base: Dict[str, bytes] = {}
        self.counts: Dict[str, int] = {}
        self.by_seed: Dict[str, Dict[str, int]] = {}
        self.by_mutator: Dict[str, Dict[str, int]] = {}
        self.clean_kinds: Dict[str, int] = {}
        self.info_counts: Dict[str, int] = {}
        self.findings: Dict[str, Dict] = {}
        self.info: Dict[str, Dict] = {}
        self.cases_run = 0
        self.t0 = time.monotonic()

    def base_bytes(self, name: str) -> bytes:
        if name not in self.base:
            self.base[name] = self.seeds[name].build().SerializeToString()
        return self.base[name]

    def execute(self, case: Case, timeout: Optional[float] = None) -> Tuple[Dict, bytes, List[str], Path]:
        seed = self.seeds[case.seed]
        model, done = build_model(case, seed, self.base_bytes(case.seed))
        work = self.work / f"case-{case.index}"
        shutil.rmtree(work, ignore_errors=True)
        res = run_isolated(case, model, seed, work, timeout or self.args.timeout, self.args.diff, self.args.mem_gb,
                           self.args.no_build and case.kind != "plain")
        self._clear_session_cache()
        return res, model, done, work

    def _clear_session_cache(self):
        # InferenceSession builds land here; the directory is this run's own (private_model_cache)
        models = Path(os.environ["ONNXC_CACHE_DIR"]) / "models"
        if models.exists():
            shutil.rmtree(models, ignore_errors=True)

    def check_seeds(self):
        """Every seed compiles and runs unmutated (also builds the runtime objects, untimed)."""
        bad = []
        for i, name in enumerate(sorted(self.seeds)):
            for target in sorted({"native", "generic"}) if i == 0 else ["native"]:
                case = Case(-1 - i, name, "plain", options={"opt_level": "layout", "target": target, "num_threads": 1,
                                                            "fallback": True})
                res, _, _, work = self.execute(case, timeout=max(self.args.timeout, 900))
                shutil.rmtree(work, ignore_errors=True)
                ort = res.get("ort", {}).get("status")
                if res["outcome"] != "ok" or ort not in (None, "agree"):
                    bad.append(f"{name} ({target}): {res['outcome']} {res.get('type', '')} {res.get('message', '')[:300]} "
                               f"ort={res.get('ort')}")
        if bad:
            raise SystemExit("seed models that do not compile, run and agree with onnxruntime unmutated:\n  "
                             + "\n  ".join(bad))

    def record(self, case: Case, res: Dict, model: bytes, done: List[str], work: Path):
        outcome = res["outcome"]
        ort = res.get("ort") or {}
        info = {"mismatch": "mismatch", "crash": "ort_crash", "hang": "ort_hang"}.get(ort.get("status"))
        if outcome == "ok" and ort.get("status") == "refused" and case.kind != "feed":
            info = "accepted_invalid"
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if info:
            self.info_counts[info] = self.info_counts.get(info, 0) + 1
        self.by_seed.setdefault(case.seed, {}).setdefault(outcome, 0)
        self.by_seed[case.seed][outcome] += 1
        for name, _ in case.steps + case.feed_steps:
            self.by_mutator.setdefault(name, {}).setdefault(outcome, 0)
            self.by_mutator[name][outcome] += 1
        if outcome == "clean":
            k = f"{res.get('stage')}: {res.get('type')}"
            self.clean_kinds[k] = self.clean_kinds.get(k, 0) + 1
        cause = self.attribute(case, model) if outcome in FAILURES and self.args.attribute else ""
        for keep in self._entries(case, res, outcome, info, ort):
            keep["count"] += 1
            if cause and keep["outcome"] in FAILURES:
                keep.setdefault("causes", {}).setdefault(cause, 0)
                keep["causes"][cause] += 1
            if len(keep["cases"]) < 20:
                keep["cases"].append(case.index)
            if keep["example"] is None:
                keep["example"] = self.save(case, res, model, done, work, keep)
                if keep["outcome"] in FAILURES and self.args.minimize and not known.explain(keep):
                    self.minimize(case, keep)
        shutil.rmtree(work, ignore_errors=True)
        return outcome

    def _entries(self, case, res, outcome, info, ort):
        if outcome in FAILURES:
            sig = signature(res)
            yield self.findings.setdefault(sig, {"signature": sig, "outcome": outcome, "count": 0, "cases": [],
                                                 "example": None})
        if info:
            msg = re.sub(r"\d+", "N", str(ort.get("message") or ""))[:60]
            sig = f"{info}|{case.seed}|{ort.get('where', '')}|{msg}"
            yield self.info.setdefault(sig, {"signature": sig, "outcome": info, "count": 0, "cases": [],
                                             "example": None})

    def attribute(self, case: Case, model: bytes) -> str:
        """Re-run a failing case without one suspected cause; the failure going away names it.
        declared_shapes: every dim of the graph outputs made symbolic (the checker wants a
        shape) and every value_info removed (onnxc trusts declared shapes, issue 11 §3)."""
        import onnx
        m = onnx.ModelProto()
        try:
            m.ParseFromString(model)
        except Exception:  # noqa: BLE001 - a byte-mutated model protobuf cannot parse
            return ""
        changed = False
        for g in mutate._graphs(m.graph, []):
            for o in g.output:
                for k, dim in enumerate(o.type.tensor_type.shape.dim if o.type.HasField("tensor_type") else []):
                    if not dim.dim_param.startswith("fz_"):
                        dim.Clear()
                        dim.dim_param = f"fz_{o.name}_{k}"
                        changed = True
            if len(g.value_info):
                del g.value_info[:]
                changed = True
        if not changed:
            return ""
        stripped = Case(case.index, case.seed, "plain", [], case.feed_steps, case.options, case.api)
        seed = self.seeds[case.seed]
        work = self.work / f"case-{case.index}-attr"
        res = run_isolated(stripped, m.SerializeToString(), seed, work, self.args.timeout, False, self.args.mem_gb,
                           self.args.no_build)
        shutil.rmtree(work, ignore_errors=True)
        # only a clean compile and run counts: losing the declared shapes can also just stop the
        # compile early (no static shape), which would hide an unrelated bug
        return "declared_shapes" if res["outcome"] == "ok" else ""

    def save(self, case: Case, res: Dict, model: bytes, done: List[str], work: Path, entry: Dict) -> str:
        d = self.out / "findings" / entry["outcome"] / sig_slug(entry["signature"])
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        (d / "model.onnx").write_bytes(model)
        for f in ("feeds.pkl", "log.txt", "faulthandler.txt"):
            if (work / f).exists() and (work / f).stat().st_size:
                shutil.copy(work / f, d / f)
        (d / "case.json").write_text(json.dumps({"case": asdict(case), "fuzz_seed": self.args.seed, "mutations": done,
                                                 "result": res}, indent=1, default=str))
        (d / "README.md").write_text(
            f"# {entry['outcome']}: {entry['signature']}\n\nseed model `{case.seed}`, case {case.index} of fuzz seed "
            f"{self.args.seed}, options {case.options}, api {case.api}\n\nmutations:\n" +
            "".join(f"- {x}\n" for x in done) + "".join(f"- feed {k}\n" for k, _ in case.feed_steps) +
            f"\n{res.get('type')}: {res.get('message')}\n\n```\n{res.get('traceback', '')}\n```\n\n"
            f"replay: `.venv/bin/python tests/fuzz/fuzz.py --replay {d}`\n")
        return str(d)

    def minimize(self, case: Case, entry: Dict):
        """Drop mutation steps one at a time while the failure keeps its signature."""
        steps, feed_steps = list(case.steps), list(case.feed_steps)
        changed = True
        tries = 0
        while changed and tries < 8:
            changed = False
            for which in ("steps", "feed_steps"):
                cur = steps if which == "steps" else feed_steps
                for k in range(len(cur)):
                    if which == "steps" and len(cur) == 1:
                        break
                    trial = cur[:k] + cur[k + 1:]
                    c = Case(case.index, case.seed, case.kind, trial if which == "steps" else steps,
                             trial if which == "feed_steps" else feed_steps, case.options, case.api)
                    tries += 1
                    res, model, done, work = self.execute(c)
                    same = res["outcome"] in FAILURES and signature(res) == entry["signature"]
                    if same:
                        if which == "steps":
                            steps = trial
                        else:
                            feed_steps = trial
                        entry["example"] = self.save(c, res, model, done, work, entry)
                        entry["minimized"] = {"steps": len(steps), "feed_steps": len(feed_steps)}
                        changed = True
                    shutil.rmtree(work, ignore_errors=True)
                    if same:
                        break
                if changed:
                    break
        if case.options["opt_level"] != "none":  # does it need the passes?
            c = Case(case.index, case.seed, case.kind, steps, feed_steps, dict(case.options, opt_level="none"), case.api)
            res, model, done, work = self.execute(c)
            entry["needs_passes"] = not (res["outcome"] in FAILURES and signature(res) == entry["signature"])
            shutil.rmtree(work, ignore_errors=True)

    def run(self):
        seeds = [self.seeds[k] for k in sorted(self.seeds)]
        if self.args.check_seeds:
            t = time.monotonic()
            self.check_seeds()
            print(f"seed models ok ({len(seeds)}), {time.monotonic() - t:.0f} s", flush=True)
        deadline = self.t0 + self.args.minutes * 60 if self.args.minutes else None
        i = self.args.start
        while True:
            if self.args.cases is not None and self.cases_run >= self.args.cases:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            case = plan_case(self.args.seed, i, seeds)
            if self.args.no_build and case.kind in ("feed", "plain"):  # nothing to do without a run
                i += 1
                continue
            res, model, done, work = self.execute(case)
            outcome = self.record(case, res, model, done, work)
            self.cases_run += 1
            if self.args.verbose or outcome in FAILURES:
                print(f"case {i} {case.seed} {case.kind} {case.options['opt_level']}: {outcome} "
                      f"{res.get('stage', '')} {res.get('type', '')} {str(res.get('message', ''))[:150]!r} "
                      f"({res.get('seconds')} s)",
                      flush=True)
            if self.cases_run % 50 == 0:
                print(f"{self.cases_run} cases, {time.monotonic() - self.t0:.0f} s: {self.counts}", flush=True)
                self.write_summary()
            i += 1
        shutil.rmtree(self.work, ignore_errors=True)
        return self.write_summary()

    def write_summary(self) -> Dict:
        s = {"seed": self.args.seed, "start": self.args.start, "cases": self.cases_run,
             "seconds": round(time.monotonic() - self.t0, 1), "counts": self.counts,
             "failures": sum(self.counts.get(k, 0) for k in FAILURES), "info_counts": self.info_counts,
             "clean_errors": self.clean_kinds,
             "by_seed": self.by_seed, "by_mutator": self.by_mutator,
             "findings": sorted(self.findings.values(), key=lambda e: -e["count"]),
             "info": sorted(self.info.values(), key=lambda e: -e["count"])}
        self.out.mkdir(parents=True, exist_ok=True)
        lines = [f"# onnxc fuzz: seed {s['seed']}, {s['cases']} cases, {s['seconds']} s", "",
                 "| outcome | cases |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(self.counts.items())]
        lines += ["", "## Failures (crash, hang, uncaught exception, bad output)", ""]
        for e in s["findings"]:
            e["known"] = known.explain(e)
        lines += [f"- **{e['outcome']}** x{e['count']} `{e['signature']}` cases {e['cases'][:5]}"
                  + (f" causes {e['causes']}" if e.get("causes") else "")
                  + (f" [known, {e['known'][:40]}...]" if e["known"] else "") + f" -> {e['example']}"
                  for e in s["findings"]] or ["none"]
        s["unknown_failures"] = sum(e["count"] for e in s["findings"] if not e["known"])
        lines += ["", "## Informational (onnxruntime comparison)", "", f"counts: {self.info_counts}", ""]
        lines += [f"- {e['outcome']} x{e['count']} `{e['signature']}` -> {e['example']}" for e in s["info"]] or ["none"]
        lines += ["", "## Clean errors by stage and class", ""]
        lines += [f"- {k}: {v}" for k, v in sorted(self.clean_kinds.items(), key=lambda kv: -kv[1])]
        lines += ["", "## By seed model", "", "| seed | " + " | ".join(sorted(self.counts)) + " |",
                  "|---" * (len(self.counts) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in sorted(self.counts)) + " |"
                  for name, c in sorted(self.by_seed.items())]
        lines += ["", "## By mutator", "", "| mutator | " + " | ".join(sorted(self.counts)) + " |",
                  "|---" * (len(self.counts) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(str(c.get(k, 0)) for k in sorted(self.counts)) + " |"
                  for name, c in sorted(self.by_mutator.items())]
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        (self.out / "summary.json").write_text(json.dumps(s, indent=1, default=str))
        return s


def replay(path: Path, diff: bool):
    """Run a saved case in this process (no fork): a crash or traceback shows up directly."""
    meta = json.loads((path / "case.json").read_text())
    c = meta["case"]
    case = Case(c["index"], c["seed"], c["kind"], [tuple(x) for x in c["steps"]], [tuple(x) for x in c["feed_steps"]],
                c["options"], c["api"])
    seed = {s.name: s for s in corpus.seeds("all")}[case.seed]
    print(f"replaying case {case.index} ({case.seed}, {case.options}, api {case.api}); mutations:")
    for m in meta["mutations"]:
        print("  ", m)

    class Echo:
        def send(self, **msg):
            print(json.dumps(msg, default=str)[:3000], flush=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"onnxc-fuzz-replay-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        feeds = path / "feeds.pkl"
        run_case_here(case, (path / "model.onnx").read_bytes(), seed, work, Echo(), diff,
                      feeds_from=feeds if feeds.exists() else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def private_model_cache(own: Path) -> None:
    """Points ONNXC_CACHE_DIR at a directory of this run, whose runtime/ is the shared cache's
    (the runtime objects are compiled once): the run deletes its model builds after every case,
    and in the test suite the shared cache's models/ holds other pytest workers' builds in use."""
    shared = Path(os.environ["ONNXC_CACHE_DIR"]).resolve()
    own = own.resolve()
    if own == shared:
        return
    own.mkdir(parents=True, exist_ok=True)
    (shared / "runtime").mkdir(parents=True, exist_ok=True)
    link = own / "runtime"
    if not link.exists():
        link.symlink_to(shared / "runtime", target_is_directory=True)
    os.environ["ONNXC_CACHE_DIR"] = str(own)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="fuzz seed: case i of seed s is always the same case")
    ap.add_argument("--start", type=int, default=0, help="first case index")
    ap.add_argument("--cases", type=int, default=None, help="number of cases (default: until --minutes)")
    ap.add_argument("--minutes", type=float, default=None, help="stop starting new cases after this long")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case before it counts as a hang")
    ap.add_argument("--light", choices=["none", "ci", "cheap", "all"], default="cheap",
                    help="which of onnx's light models to use as seeds")
    ap.add_argument("--only", default=None, help="comma-separated substrings of seed names to keep")
    ap.add_argument("--out", default=None, help="output directory (summary, findings)")
    ap.add_argument("--mem-gb", type=float, default=6.0, help="address-space limit of each case")
    ap.add_argument("--no-diff", dest="diff", action="store_false", help="do not compare with onnxruntime")
    ap.add_argument("--no-minimize", dest="minimize", action="store_false")
    ap.add_argument("--no-attribute", dest="attribute", action="store_false",
                    help="do not re-run failures to attribute them to known causes (tests/fuzz/known.py)")
    ap.add_argument("--no-check-seeds", dest="check_seeds", action="store_false")
    ap.add_argument("--no-build", action="store_true",
                    help="stop each case after code generation (no C compiler, no run): many more cases")
    ap.add_argument("--replay", type=Path, default=None, help="run a saved finding in this process")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("ONNXC_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "onnxc-fuzz-cache"))
    if args.replay:
        return replay(args.replay, args.diff)
    if args.cases is None and args.minutes is None:
        args.cases = 100
    args.out = args.out or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"onnxc-fuzz-{args.seed}")
    private_model_cache(Path(args.out) / "cache")
    # imported once here, before any fork: each case then starts in milliseconds
    import onnx  # noqa: F401
    import onnx.reference  # noqa: F401
    import onnxc  # noqa: F401
    from onnxc import driver, frontend, passes, partition, build, runtime, session  # noqa: F401
    from onnxc.codegen import cgen  # noqa: F401
    import cffi  # noqa: F401
    if args.diff:
        import onnxruntime  # noqa: F401
    fz = Fuzzer(args)
    s = fz.run()
    print(f"{s['cases']} cases in {s['seconds']} s: {s['counts']}; {s['failures']} failures "
          f"({s['unknown_failures']} not known, tests/fuzz/known.py), {len(s['findings'])} distinct; "
          f"summary in {fz.out}/summary.md")
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
