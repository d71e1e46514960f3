"""The compile pipeline, as one ordered list of named steps:

    frontend.load -> verify -> passes (by level) -> check static shapes -> legalize outputs
    -> partition -> codegen -> write files -> build (cffi) -> load

Results are cached by a content hash of (model bytes, options, onnxc version, templates and
runtime sources, compiler flags): compiling the same thing twice loads the first build.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from ._version import __version__
from .errors import UnsupportedError
from .runtime import MANIFEST, CompiledModel

DEFAULT_PREFIX = "model"
# like onnxruntime's default ORT_ENABLE_ALL: every level, NCHWc blocking included
DEFAULT_LEVEL = "layout"
log = logging.getLogger("onnxc")


def _model_bytes(model) -> bytes:
    import onnx
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    return Path(os.fspath(model)).read_bytes()


def cache_key(model_bytes: bytes, options: Dict) -> str:
    from .build import c_compiler, compile_flags
    from .resources import tree_digest
    h = hashlib.sha256()
    h.update(model_bytes)
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    h.update(__version__.encode())
    h.update(tree_digest().encode())
    h.update(" ".join(compile_flags(options["target"], options["c_opt"], options["openmp"])).encode())
    h.update(c_compiler().encode())
    if os.environ.get("ONNXC_WINOGRAD") is not None:  # read by the NCHWc layout pass
        h.update(("winograd=" + os.environ["ONNXC_WINOGRAD"]).encode())
    return h.hexdigest()[:24]


def optimize(graph, opt_level: str = DEFAULT_LEVEL, verify_each: bool = False, target: str = "native"):
    from .passes import PassManager
    from .target import resolve
    graph.metadata["target"] = resolve(target)  # layout passes pick the NCHWc block from it
    pm = PassManager(opt_level, verify_each=verify_each)
    pm.run(graph)
    return pm


def optimize_model(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, opt_level: str = DEFAULT_LEVEL,
                   target: str = "native", save_to=None):
    """The model after the passes of ``opt_level`` as an onnx.ModelProto (original input and
    output names; fused ops in the ``onnxc`` domain, so Netron shows them as such); written to
    ``save_to`` when given.  Returns (model, PassManager)."""
    from . import frontend
    from .ir.onnx_export import optimized_model
    graph = frontend.load(model if not isinstance(model, (bytes, bytearray)) else bytes(model),
                          {k: list(map(int, v)) for k, v in (input_shapes or {}).items()} or None)
    in_names, out_names = [v.name for v in graph.inputs], [v.name for v in graph.outputs]
    pm = optimize(graph, opt_level, target=target)
    proto = optimized_model(graph, in_names, out_names)
    if save_to is not None:
        _write_model(proto, save_to)
    return proto, pm


def _write_model(proto, path) -> None:
    Path(os.fspath(path)).parent.mkdir(parents=True, exist_ok=True)
    Path(os.fspath(path)).write_bytes(proto.SerializeToString())


def require_static(graph, values=None) -> None:
    missing = [v for v in (graph.values() if values is None else values) if not v.is_static]
    if missing:
        names = ", ".join(f"'{v.name}' {v.shape}" for v in missing[:10])
        raise UnsupportedError(
            f"{len(missing)} value(s) have no static shape after optimization ({names}"
            f"{' ...' if len(missing) > 10 else ''}); give input_shapes for the model's free dimensions")


# Linux user space on x86-64 and aarch64 (4-level page tables): no tensor or arena can be larger
ADDRESSABLE_BYTES = 1 << 47


def require_addressable(graph, arena_bytes: int = 0) -> None:
    """Refuse tensors (or an arena) no process could hold: a fuzzed Conv pad of 2^32 gave a
    406 TiB arena that only failed at the first run, with numpy's MemoryError."""
    big = [v for v in graph.values() if v.dtype is not None and v.is_static and v.nbytes >= ADDRESSABLE_BYTES]
    if big:
        v = big[0]
        raise UnsupportedError(f"value '{v.name}' {v.dtype}{list(v.shape)} takes {v.nbytes / 2**40:.0f} TiB, more than "
                               f"a process can address (2^47 bytes); {len(big)} such value(s)")
    if arena_bytes >= ADDRESSABLE_BYTES:
        raise UnsupportedError(f"the intermediates need an arena of {arena_bytes / 2**40:.0f} TiB, more than a process "
                               f"can address (2^47 bytes)")


def _install(tmp: Path, out: Path, replace: bool) -> None:
    """Rename the finished build ``tmp`` to the cache entry ``out``. An entry another process
    installed meanwhile is kept (same key, same content; deleting it pulled a module from under
    a process about to load it: a conformance case once failed with "cannot open shared object
    file"); only a broken leftover, or any entry when ``replace``, is moved aside first."""
    try:
        os.replace(tmp, out)  # fails while out is a non-empty directory
        return
    except OSError:
        pass
    if replace or not (out / MANIFEST).exists():
        stale = out.with_name(f"{out.name}.stale{os.getpid()}")
        try:
            os.replace(out, stale)
            os.replace(tmp, out)
        except OSError:
            pass
        shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)


def compile_model(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, opt_level: str = DEFAULT_LEVEL,
                  num_threads: Optional[int] = None, output_dir=None, target: str = "native",
                  prefix: str = DEFAULT_PREFIX, force: bool = False, c_opt: str = "-O3", openmp: Optional[bool] = None,
                  verbose: bool = False, fallback: bool = True, fallback_engine: str = "auto",
                  save_optimized=None) -> CompiledModel:
    """See onnxc.compile.  ``fallback``: nodes no C kernel can run go to the Python fallback
    provider instead of failing the compile; ``fallback_engine`` ("auto", "onnxruntime",
    "reference") picks its interpreter when the module is loaded (not part of the build).
    ``save_optimized``: also write the optimized graph there as an ONNX model (fused ops in the
    onnxc domain), as ``onnxc.optimize`` does.  ``openmp``: build with -fopenmp (None: only where
    the runtime has no thread pool, see build.default_openmp)."""
    from .build import default_openmp
    from .codegen.cgen import c_identifier
    prefix = c_identifier(prefix)
    t0 = time.perf_counter()
    raw = _model_bytes(model)
    options = {"input_shapes": {k: list(map(int, v)) for k, v in (input_shapes or {}).items()},
               "opt_level": opt_level, "target": target, "prefix": prefix, "c_opt": c_opt,
               "openmp": default_openmp() if openmp is None else bool(openmp),
               "fallback": bool(fallback)}
    key = cache_key(raw, options)
    in_cache = output_dir is None
    if in_cache:
        from .build import cache_root
        output_dir = cache_root() / "models" / key
    out = Path(output_dir).resolve()  # cffi builds in a temporary directory: relative include paths break
    if not force and (out / MANIFEST).exists():
        try:
            if json.loads((out / MANIFEST).read_text()).get("cache_key") == key:
                if save_optimized is not None:  # a cached build: run the passes just for the file
                    optimize_model(model, input_shapes, opt_level, target, save_to=save_optimized)
                return CompiledModel(out, num_threads=num_threads, fallback_engine=fallback_engine)
        except (ValueError, OSError):
            pass
    src = raw if not hasattr(model, "SerializeToString") else model
    if in_cache:
        # build beside the cache entry and rename it into place: concurrent compiles of the
        # same model (parallel test workers) never see a half-written directory
        tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            report = build_into(src, tmp, key, options, verbose=verbose, save_optimized=save_optimized)
            report["seconds_total"] = round(time.perf_counter() - t0, 3)
            _update_report(tmp, report)
            _install(tmp, out, replace=force)
        finally:  # a failed build (unsupported op, compiler error) leaves nothing in the cache
            shutil.rmtree(tmp, ignore_errors=True)
        return CompiledModel(out, num_threads=num_threads, fallback_engine=fallback_engine)
    report = build_into(src, out, key, options, verbose=verbose, save_optimized=save_optimized)
    report["seconds_total"] = round(time.perf_counter() - t0, 3)
    _update_report(out, report)
    return CompiledModel(out, num_threads=num_threads, fallback_engine=fallback_engine)


def node_table(graph, partitions):
    """[[node number in the generated C, op, name, partition, provider]] for profiles."""
    number = {id(n): i for i, n in enumerate(graph.nodes)}
    return [[number[id(n)], n.op_type if not n.domain else f"{n.domain}.{n.op_type}", n.name, p.index, p.provider]
            for p in partitions for n in p.nodes]


def _update_report(out: Path, report: Dict) -> None:
    m = json.loads((out / MANIFEST).read_text())
    m["report"] = report
    (out / MANIFEST).write_text(json.dumps(m, indent=1))


def build_into(model, out: Path, key: str, options: Dict, verbose: bool = False, save_optimized=None) -> Dict:
    from . import frontend
    from .build import build_module
    from .codegen.cgen import generate, legalize_outputs
    from .blob import blob_digest
    from .ir import verify
    from .fallback import python_values, static_required
    from .partition import default_providers, partition
    from .resources import runtime_dir

    times = {}
    t = time.perf_counter()
    graph = frontend.load(model, options["input_shapes"] or None)
    in_names = [v.name for v in graph.inputs]
    out_names = [v.name for v in graph.outputs]
    nodes_before = len(graph.nodes)
    times["frontend"] = time.perf_counter() - t

    t = time.perf_counter()
    pm = optimize(graph, options["opt_level"], target=options["target"])
    if save_optimized is not None:  # the graph the build goes on with, before codegen legalizes it
        from .ir.onnx_export import optimized_model
        _write_model(optimized_model(graph, in_names, out_names), save_optimized)
    times["passes"] = time.perf_counter() - t
    legalize_outputs(graph)

    t = time.perf_counter()
    from .passes.legalize_half import legalize_half  # narrow types compute through float32
    legalize_half(graph)
    # lists every node no provider can run, dynamic shapes included
    parts = partition(graph, default_providers(options.get("fallback", False)))
    c_ids = {id(n) for n in parts.nodes_of("c")}
    require_static(graph, static_required(graph, c_ids, python_values(graph, c_ids)))
    require_addressable(graph)
    verify(graph, require_typed=not parts.nodes_of("fallback"))
    for n in parts.nodes_of("fallback"):
        log.warning("onnxc: %s node '%s' runs in the Python fallback provider (%s)", n.op_type, n.name,
                    parts.declined.get(id(n), {}).get("c", "no C kernel"))
    prefix = options["prefix"]
    result = generate(graph, parts.partitions, prefix=prefix, options=options, io_names=(in_names, out_names))
    require_addressable(graph, result.plan.size)
    times["codegen"] = time.perf_counter() - t

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{prefix}.c").write_text(result.c_source)
    (out / f"{prefix}.h").write_text(result.header)
    result.blob.write(out / "weights.bin")
    rt_copy = out / "runtime_c"
    if rt_copy.exists():
        shutil.rmtree(rt_copy)
    shutil.copytree(runtime_dir(), rt_copy, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    for old in out.glob("_onnxc_*.so"):
        old.unlink()
    for old in out.glob("fallback*.onnx"):
        old.unlink()
    fallback = []
    for fb in result.fallback:
        (out / fb["file"]).write_bytes(fb["model"])
        fallback.append({k: v for k, v in fb.items() if k != "model"})
    module_name = f"_onnxc_{key}"
    c_parts = [i for kind, i in result.steps if kind == "c"]
    from .build import compile_flags
    # the flags the C was generated for (ISA of prepacked weights): what an embedder compiles with
    (out / "cflags.txt").write_text(" ".join(compile_flags(options["target"], options["c_opt"], options["openmp"])) + "\n")
    so = None
    if c_parts or not fallback:  # a module of interpreter partitions only has nothing to compile
        so = build_module(out, prefix, module_name, target=options["target"], opt=options["c_opt"],
                          openmp=options["openmp"], partitions=c_parts if fallback else ())
    times["build"] = time.perf_counter() - t
    report = {
        "nodes_before": nodes_before, "nodes_after": len(graph.nodes), "op_counts": graph.op_counts(),
        "arena_bytes": result.plan.size, "intermediate_bytes": result.plan.total_unshared,
        "weights_bytes": result.blob.size, "partitions": len(parts.partitions),
        "fallback_nodes": [{"op": n.op_type, "name": n.name, "why": parts.declined.get(id(n), {}).get("c", "")}
                           for n in parts.nodes_of("fallback")],
        "passes": {name: {"rewrites": s.rewrites, "ms": round(s.seconds * 1e3, 2)} for name, s in pm.stats.items()},
        "seconds": {k: round(v, 3) for k, v in times.items()},
    }
    manifest = {
        "format": 1, "onnxc_version": __version__, "cache_key": key, "prefix": prefix,
        "module_name": module_name, "module_file": so.name if so else None,
        "arena_bytes": result.plan.size, "weights_file": "weights.bin",
        "weights_digest": blob_digest(out / "weights.bin"),
        "inputs": result.inputs, "outputs": result.outputs, "options": options, "report": report,
        "isa": graph.metadata["target"].isa,  # checked against the CPU at load (runtime.check_cpu)
        "steps": result.steps, "fallback": fallback,
        "nodes": node_table(graph, parts.partitions),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return report
