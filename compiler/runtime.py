"""Load and run a compiled module.  Needs only numpy and cffi's backend (no onnx)."""
from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError, ModelError, UnsupportedError
from .verify import MANIFEST  # noqa: F401  (re-exported: the name callers know)


class NodeArg:
    """What onnxruntime's get_inputs()/get_outputs() return: .name, .shape, .type."""

    def __init__(self, name: str, shape, type_: str):
        self.name, self.shape, self.type = name, list(shape), type_

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


def _ort_type(dtype: str) -> str:
    return {"float32": "tensor(float)", "float64": "tensor(double)"}.get(dtype, f"tensor({dtype})")


class _NoCode:
    """Stands in for the cffi lib of a module without C partitions."""

    def __init__(self, prefix: str, manifest: Dict):
        setattr(self, f"{prefix}_weights_bytes", lambda: 0)
        setattr(self, f"{prefix}_arena_bytes", lambda: int(manifest.get("arena_bytes", 0)))
        setattr(self, f"{prefix}_set_num_threads", lambda n: None)
        setattr(self, f"{prefix}_get_num_threads", lambda: 1)
        setattr(self, f"{prefix}_run", lambda *a: 3)  # ONNXC_ERR_FALLBACK


def cpu_mismatch(manifest: Dict, where) -> Optional[str]:
    """Why this CPU cannot execute a module compiled for the manifest's ISA (None: it can).  The
    manifest records the ISA the build resolved (also for target "native", which may have been
    built on another machine)."""
    from .cpu import REQUIRED_FLAGS, host_flags
    isa = manifest.get("isa") or manifest.get("options", {}).get("target")
    if isa not in REQUIRED_FLAGS:  # "native" in a manifest older than the isa key: unknown
        return None
    have = host_flags()
    if not have:  # no /proc/cpuinfo (not Linux): nothing to check against
        return None
    missing = [f for f in REQUIRED_FLAGS[isa] if f not in have]
    if not missing:
        return None
    target = manifest.get("options", {}).get("target", isa)
    return (f"{where}: compiled for target '{target}' (ISA {isa}), but this CPU lacks "
            f"{', '.join(missing)}; recompile it here with target='native' (or 'generic')")


def check_cpu(manifest: Dict, where) -> None:
    """Refuse, before its code is loaded, a module compiled for vector instructions this CPU
    lacks (running it would die with SIGILL)."""
    why = cpu_mismatch(manifest, where)
    if why:
        raise ModelError(why)


def _import_so(path: Path, module_name: str):
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, str(path))
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import compiled module {path}")
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except ImportError as e:  # checksums matched, yet the module does not load (e.g. a missing library)
        raise ModelError(f"cannot import compiled module {path}: {e}") from None
    sys.modules[module_name] = mod
    return mod


class CompiledModel:
    """A compiled model: ``run(output_names, input_feed)`` like onnxruntime."""

    runnable = True  # False: a ForeignModule, built for a CPU this one is not
    from_cache = False  # set by onnxc.compile when the build already existed (not rebuilt)

    def __init__(self, output_dir, num_threads: Optional[int] = None, fallback_engine: str = "auto",
                 verify: Optional[str] = None, isa: Optional[str] = None):
        from . import verify as V
        self.output_dir = Path(output_dir)
        mpath = self.output_dir / MANIFEST
        if not mpath.exists():
            raise FileNotFoundError(f"{self.output_dir} holds no compiled onnxc module ({MANIFEST} missing)")
        mode = V.mode(verify)
        self._fallback_engine = fallback_engine
        # how pickle ships it to another process (compiler/pickling.py): "value" or "path"
        self.pickle_by = "value"
        # nothing of the build runs before the manifest, the module and its self-description agree
        self.manifest = V.read_manifest(mpath)
        # a portable build (compiler/portable.py): load the best ISA build this CPU runs (or ``isa``,
        # else $ONNXC_ISA), from its subdirectory, after checking it against the top manifest
        self.portable_manifest = None
        self.build_dir = self.output_dir
        if self.manifest.get("portable"):
            from . import portable
            top = self.portable_manifest = self.manifest
            chosen = portable.choose(top, self.output_dir, isa)
            if mode == "full":
                portable.check_all(top, self.output_dir)
            else:
                portable.check_build(top, self.output_dir, chosen, full=False)
            self.build_dir = self.output_dir / top["builds"][chosen]["dir"]
            self.manifest = V.read_manifest(self.build_dir / MANIFEST)
            if self.manifest.get("cache_key") != top["builds"][chosen].get("cache_key"):
                raise ModelError(f"{self.build_dir}: holds another build than the portable manifest lists; "
                                 f"{V.RECOMPILE}")
        elif isa is not None and isa != self.manifest.get("isa"):
            target = self.manifest.get("options", {}).get("target")
            raise ModelError(f"{self.output_dir}: isa={isa!r} was asked for, but this is a build for the one ISA "
                             f"{self.manifest.get('isa')!r} (target '{target}'); "
                             f"only a portable build (target 'x86-64') carries several")
        m = self.manifest
        self.isa = m.get("isa")  # the ISA of the loaded code (for a portable build: the one chosen)
        self.prefix = m["prefix"]
        if m.get("module_file"):
            check_cpu(m, self.build_dir)
            so = self.build_dir / str(m["module_file"])
            V.check_file(so, m.get("module_bytes"), m.get("module_checksum"), "module")
            self._mod = _import_so(so, str(m["module_name"]))
            self._lib, self._ffi = self._mod.lib, self._mod.ffi
            V.check_module(self._lib, self._ffi, m, self.build_dir, _np_dtype)
        else:  # every node runs in the fallback interpreter: nothing was compiled
            import cffi
            self._lib, self._ffi = _NoCode(self.prefix, m), cffi.FFI()
        from .blob import read_blob
        try:
            self._weights = read_blob(self.build_dir / str(m["weights_file"]), m["weights_digest"])
        except ValueError as e:
            raise ModelError(f"{e}; {V.RECOMPILE}") from None
        except OSError as e:
            raise ModelError(f"{self.build_dir}: weights file {m['weights_file']} cannot be read ({e.strerror}); "
                             f"{V.RECOMPILE}") from None
        if self._weights.size != getattr(self._lib, f"{self.prefix}_weights_bytes")():
            raise ModelError(f"{self.build_dir}: weights file does not match the compiled module")
        if mode == "full":
            V.check_payload(self._weights, m.get("weights_checksum"), self.build_dir / str(m["weights_file"]))
        self._run_fn = getattr(self._lib, f"{self.prefix}_run")
        self._arena_bytes = int(getattr(self._lib, f"{self.prefix}_arena_bytes")())
        self._local = threading.local()
        self._inputs = m["inputs"]
        self._outputs = m["outputs"]
        self._in_dtypes = [_np_dtype(i["dtype"]) for i in self._inputs]
        self._out_dtypes = [_np_dtype(o["dtype"]) for o in self._outputs]
        self._bounded = [k for k, o in enumerate(self._outputs) if o.get("dims_offset") is not None]
        self.num_threads = num_threads
        if num_threads:
            getattr(self._lib, f"{self.prefix}_set_num_threads")(int(num_threads))
        self._wptr = self._ffi.cast("void*", self._weights.ctypes.data)
        # models with fallback partitions run step by step: C partitions and interpreted ones
        self._steps = None
        if m.get("fallback"):
            from .fallback_rt import FallbackPartition
            fb = {f["index"]: FallbackPartition(self.build_dir, f, fallback_engine, num_threads)
                  for f in m["fallback"]}
            self._steps = [(getattr(self._lib, f"{self.prefix}_partition{i}"), None) if kind == "c"
                           else (None, fb[i]) for kind, i in m["steps"]]

    # --- onnxruntime-like API ----------------------------------------------------------------
    def get_inputs(self) -> List[NodeArg]:
        return [NodeArg(i["name"], i["shape"] or [], i.get("type") or _ort_type(i["dtype"])) for i in self._inputs]

    def get_outputs(self) -> List[NodeArg]:
        return [NodeArg(o["name"], o["shape"] or [], o.get("type") or _ort_type(o["dtype"])) for o in self._outputs]

    @property
    def report(self) -> Dict:
        """The build's report; for a portable build, the loaded ISA's, with the portable build's
        (per-ISA sizes and compile times) under "portable"."""
        r = self.manifest.get("report", {})
        top = getattr(self, "portable_manifest", None)
        return {**r, "portable": top.get("report", {})} if top else r

    @property
    def fallback_nodes(self) -> List[Dict]:
        """Nodes that run in the Python fallback provider (op, name, why C did not take them)."""
        return list(self.report.get("fallback_nodes", []))

    def _arena(self):
        """(cffi pointer, numpy uint8 view) of this thread's 64-byte aligned arena."""
        a = getattr(self._local, "arena", None)
        if a is None:
            try:
                buf = np.empty(self._arena_bytes + 64, dtype=np.uint8)
            except MemoryError:
                raise UnsupportedError(f"{self.output_dir}: cannot allocate the {self._arena_bytes / 2**30:.1f} GiB "
                                       f"arena this model's intermediates need") from None
            start = (-buf.ctypes.data) % 64
            a = (self._ffi.cast("void*", buf.ctypes.data + start), buf[start:start + self._arena_bytes])
            self._local.arena = a
        return a

    def _check_inputs(self, input_feed: Dict) -> List[np.ndarray]:
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict of name -> array, got {type(input_feed).__name__}")
        names = [i["name"] for i in self._inputs]
        unknown = [k for k in input_feed if k not in names]
        missing = [n for n in names if n not in input_feed]
        if unknown or missing:
            raise InputError(f"input names do not match the model: unknown {unknown}, missing {missing}; "
                             f"expected {names}")
        arrays = []
        symbols: Dict[str, Tuple[str, int]] = {}  # free dim -> (input that bound it, its size)
        for spec, dt in zip(self._inputs, self._in_dtypes):
            x = input_feed[spec["name"]]
            if spec.get("python") and (dt is None or dt == np.dtype(object)):
                arrays.append(x)  # a string/sequence input only the fallback interpreter reads
                continue
            if not isinstance(x, np.ndarray):
                x = np.asarray(x)
            if x.dtype != dt:
                if x.dtype.byteorder in "<>" and x.dtype.newbyteorder("=") == dt:
                    x = x.astype(dt)  # byte-swapped (e.g. '>f4' read from a big-endian file): to native order
                else:
                    raise InputError(f"input '{spec['name']}': expected dtype {dt.name}, got {_dtype_text(x.dtype)}")
            if spec["shape"] is not None:
                _check_shape(spec["name"], spec["shape"], x.shape, symbols)
            arrays.append(np.asarray(x, order="C"))  # ascontiguousarray would make 0-d arrays 1-d
        return arrays

    def run(self, output_names: Optional[Sequence[str]], input_feed: Dict, run_options=None) -> List[np.ndarray]:
        arrays = self._check_inputs(input_feed)
        all_names = [o["name"] for o in self._outputs]
        if output_names is None:
            wanted = list(range(len(all_names)))
        else:
            bad = [n for n in output_names if n not in all_names]
            if bad:
                raise InputError(f"unknown output name(s) {bad}; the model's outputs are {all_names}")
            wanted = [all_names.index(n) for n in output_names]
        try:
            outs = [None if o.get("python") else np.empty(o.get("bound", o["shape"]), dtype=dt)
                    for o, dt in zip(self._outputs, self._out_dtypes)]
        except MemoryError:
            gib = sum(int(o.get("nbytes", 0)) for o in self._outputs) / 2**30
            raise UnsupportedError(f"{self.output_dir}: cannot allocate the outputs ({gib:.1f} GiB)") from None
        ffi = self._ffi

        def ptr(a):
            return ffi.cast("void*", a.ctypes.data) if isinstance(a, np.ndarray) else ffi.NULL
        in_ptrs = ffi.new("void*[]", [ptr(a) for a in arrays] or [ffi.NULL])
        out_ptrs = ffi.new("void*[]", [ptr(o) for o in outs] or [ffi.NULL])
        arena_ptr, arena_np = self._arena()

        def failed_check():  # read from this run's arena: concurrent runs have their own
            from .check_report import describe
            return describe(self.manifest.get("checks", []), self.manifest.get("error_offset"), arena_np)
        if self._steps is None:
            _check_status(self._run_fn(self._wptr, arena_ptr, in_ptrs, out_ptrs), failed_check)
        else:
            env: Dict = {}
            for c_fn, fb in self._steps:
                if c_fn is not None:
                    _check_status(c_fn(self._wptr, arena_ptr, in_ptrs, out_ptrs), failed_check)
                else:
                    fb.run(arena_np, arrays, outs, env)
            for k, o in enumerate(self._outputs):
                if o.get("python"):
                    outs[k] = env[o["value"]]
        if self._bounded:  # data-dependent shapes: the part of each buffer the run wrote
            from .fallback_rt import trimmed
            for k in self._bounded:
                outs[k] = trimmed(outs[k], arena_np, self._outputs[k])
        return [outs[i] for i in wanted]

    def profile(self, input_feed: Dict, repeat: int = 10) -> List[Dict]:
        """Run ``repeat`` times with the per-node counters on; rows of {node, op, name, partition,
        provider, ms} (mean per run), C nodes timed in C, fallback partitions as one row each."""
        lib, p = self._lib, self.prefix
        if not hasattr(lib, f"{p}_profile_enable"):
            raise ModelError(f"{self.output_dir}: module has no profile counters (compiled by an older onnxc)")
        fb_time: Dict[int, float] = {}
        steps = self._steps
        if steps is not None:  # time interpreter partitions from Python
            import time as _time

            def timed(fb):
                def run(*a):
                    t = _time.perf_counter()
                    fb.run(*a)
                    fb_time[fb.index] = fb_time.get(fb.index, 0.0) + _time.perf_counter() - t
                return type("Timed", (), {"run": staticmethod(run)})()
            self._steps = [(c, timed(fb) if fb is not None else None) for c, fb in steps]
        getattr(lib, f"{p}_profile_reset")()
        getattr(lib, f"{p}_profile_enable")(1)
        try:
            for _ in range(max(1, repeat)):
                self.run(None, input_feed)
        finally:
            getattr(lib, f"{p}_profile_enable")(0)
            self._steps = steps
        secs = getattr(lib, f"{p}_profile_seconds")()
        n_nodes = int(getattr(lib, f"{p}_profile_nodes")())
        n = max(1, repeat)
        rows = []
        for idx, op, name, part, provider in self.manifest.get("nodes", []):
            if provider == "c":
                if not (isinstance(idx, int) and 0 <= idx < n_nodes):  # secs is a raw C array
                    raise ModelError(f"{self.output_dir}: manifest node number {idx!r} ({op} '{name}') is outside "
                                     f"the module's {n_nodes} profiled nodes (edited manifest): recompile it")
                rows.append({"node": idx, "op": op, "name": name, "partition": part, "provider": provider,
                             "ms": secs[idx] * 1e3 / n})
        for part, t in fb_time.items():
            ops = [op for _, op, _, pi, prov in self.manifest.get("nodes", []) if pi == part and prov != "c"]
            rows.append({"node": None, "op": f"fallback partition ({len(ops)} nodes)", "name": ", ".join(ops[:6]),
                         "partition": part, "provider": "fallback", "ms": t * 1e3 / n})
        return rows

    def __reduce__(self):
        """Pickled by value (the build's files) or by path, per ``pickle_by`` (compiler/pickling.py)."""
        from .pickling import reduce_compiled
        return reduce_compiled(self, CompiledModel)

    def __repr__(self) -> str:
        where = f" isa={self.isa} of {self.portable_manifest.get('portable')}" if self.portable_manifest else ""
        return f"<onnxc.CompiledModel {self.output_dir}{where} inputs={[i['name'] for i in self._inputs]}>"


class ForeignModule(CompiledModel):
    """What onnxc.compile returns for a module built for an ISA this CPU lacks (compiling for
    another machine, e.g. target="avx512" on an AVX2 host): the output directory, manifest,
    report, inputs and outputs are there; the code is not loaded, and ``run``/``profile`` raise
    ModelError saying why.  ``onnxc.load`` on a CPU that has the ISA runs it, and so does a
    worker that unpickles it there (pickled by value, it arrives as a CompiledModel)."""

    runnable = False

    def __init__(self, output_dir, reason: str):
        self.output_dir = Path(output_dir)
        self._fallback_engine, self.pickle_by = "auto", "value"
        from .verify import read_manifest
        self.manifest = read_manifest(self.output_dir / MANIFEST)
        self.build_dir, self.portable_manifest, self.isa = self.output_dir, None, self.manifest.get("isa")
        self.prefix = self.manifest["prefix"]
        self._inputs, self._outputs = self.manifest["inputs"], self.manifest["outputs"]
        self.num_threads = None
        self.reason = reason

    def run(self, output_names, input_feed, run_options=None):
        raise ModelError(self.reason)

    def profile(self, input_feed, repeat: int = 10):
        raise ModelError(self.reason)

    def __repr__(self) -> str:
        return f"<onnxc.ForeignModule {self.output_dir} isa={self.manifest.get('isa')} (not loadable here)>"


ERR_VALUE, ERR_INDEX = 4, 5  # ONNXC_ERR_VALUE, ONNXC_ERR_INDEX in onnxc_rt.h


def _check_status(rc: int, failed_check=None) -> None:
    """Raise for a nonzero status; ``failed_check()`` describes the recorded failed check."""
    if rc in (ERR_VALUE, ERR_INDEX):
        why = failed_check() if failed_check is not None else None
        if why:
            raise InputError(why)
        raise InputError("a runtime input value is out of what this module was compiled for (TopK's k, "
                         "OneHot's depth, Range's bounds or a window size that disagrees with the compiled "
                         "output shape, or an index outside the tensor it addresses); the outputs are not "
                         "valid")
    if rc != 0:
        raise RuntimeError(f"compiled model returned error code {rc}")


def _check_shape(name: str, want, got, symbols: Dict[str, Tuple[str, int]]) -> None:
    """A fixed dim must match; a free one (only left where every reader of the input runs in the
    fallback, compiled without input_shapes) takes any size, the same for one symbol across inputs."""
    bad = len(want) != len(got) or any(isinstance(w, int) and w != g for w, g in zip(want, got))
    if bad:
        raise InputError(f"input '{name}': expected shape {tuple(want)}, got {tuple(got)} (recompile with "
                         f"input_shapes to change it)")
    for w, g in zip(want, got):
        if isinstance(w, str) and w:
            first = symbols.setdefault(w, (name, int(g)))
            if first[1] != g:
                raise InputError(f"input '{name}': dim '{w}' is {g} here but {first[1]} in input '{first[0]}'")


def _dtype_text(dt: np.dtype) -> str:
    """A dtype's name, with its byte order when that is not the native one."""
    if dt.byteorder in "<>":
        return f"{dt.name} ({'big' if dt.byteorder == '>' else 'little'}-endian)"
    return dt.name


_NUMPY_NAMES = frozenset("float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64 bool".split())


def _np_dtype(name):
    if name is None:
        return None
    if name in _NUMPY_NAMES:  # without importing ml_dtypes (~20 ms of a first load)
        return np.dtype(name)
    from .dtypes import np_dtype_from_name  # bfloat16, float8, int4, ...: ml_dtypes names too
    return np_dtype_from_name(name)


def load(output_dir, num_threads: Optional[int] = None, fallback_engine: str = "auto",
         verify: Optional[str] = None, isa: Optional[str] = None) -> CompiledModel:
    """Load a compiled module from its output directory without recompiling.  ``fallback_engine``
    picks the interpreter of fallback partitions: "auto" (onnxruntime if it accepts the
    partition, else onnx.reference), "onnxruntime" or "reference".

    A damaged or edited build raises ModelError naming what failed, before any of its code runs.
    ``verify`` (default: $ONNXC_VERIFY, else "fast"): "fast" checks the manifest, the module's
    size and checksum, its inputs and outputs against the manifest, and weights.bin's size and
    header digest (a truncated or swapped file), not its payload; "full" also checks the payload's
    CRC-32 (a bit flip in a weight), which reads every page of it (compiler/verify.py).

    A portable build (target "x86-64", compiler/portable.py) loads the best ISA build this CPU
    runs; ``isa`` (default: $ONNXC_ISA) forces one of those it carries, e.g. "avx2" to run the AVX2
    build on an AVX-512 host; ``.isa`` names the one loaded. "full" checks every ISA's files."""
    return CompiledModel(output_dir, num_threads=num_threads, fallback_engine=fallback_engine, verify=verify,
                         isa=isa)
