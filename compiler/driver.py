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
from . import install
from .errors import UnsupportedError
from .install import install_entry as _install  # noqa: F401 (tests/test_cache_install.py)
from .progress import stage
from .runtime import MANIFEST, CompiledModel, ForeignModule, cpu_mismatch

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
    from .portable import PORTABLE
    # the target is in ``options``; a portable one builds with each carried ISA's flags
    for t in PORTABLE.get(options["target"], (options["target"],)):
        h.update(" ".join(compile_flags(t, options["c_opt"], options["openmp"])).encode())
    h.update(c_compiler().encode())
    return h.hexdigest()[:24]


# Values of the winograd compile option (read by the NCHWc layout pass, passes/layout/winograd.py).
WINOGRAD_MODES = (0, 2, 4)


def check_winograd(mode) -> int:
    """The winograd compile option as an int, or a ValueError naming the choices."""
    if isinstance(mode, bool) or mode not in WINOGRAD_MODES:
        raise ValueError(f"winograd={mode!r}: expected one of {WINOGRAD_MODES} (0: off, 2: F(2x2) only, "
                         f"4: F(4x4) or F(2x2) by each layer's size)")
    return int(mode)


def optimize(graph, opt_level: str = DEFAULT_LEVEL, verify_each: bool = False, target: str = "native",
             winograd: int = 4, quantize=None):
    """Run the passes of ``opt_level`` on ``graph`` in place.  ``target`` (a row of isa.py or
    "native") and ``winograd`` (see onnxc.compile) are what the layout passes read; ``quantize``
    (a QuantizeOptions) adds the quantize step after the basic level, which quantizes as
    onnxc.quantize does; the basic level then runs again for the QDQ fusions (quantize/stage.py)."""
    from .passes import PassManager
    from .providers import CProvider
    from .target import resolve
    graph.metadata["target"] = resolve(target)  # layout passes pick the NCHWc block from it
    graph.metadata["winograd"] = check_winograd(winograd)
    stages = None
    if quantize is not None:
        from .quantize.stage import QuantizeStep
        stages = {"basic": [QuantizeStep(quantize)]}
    pm = PassManager(opt_level, verify_each=verify_each, stages=stages, capability=CProvider())
    pm.run(graph)
    return pm


def optimize_model(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, opt_level: str = DEFAULT_LEVEL,
                   target: str = "native", save_to=None, winograd: int = 4, quantize=None, input_values=None):
    """The model after the passes of ``opt_level`` as an onnx.ModelProto (original input and
    output names; fused ops in the ``onnxc`` domain, so Netron shows them as such); written to
    ``save_to`` when given.  Returns (model, PassManager)."""
    from . import frontend
    from .ir.onnx_export import optimized_model
    graph = frontend.load(model if not isinstance(model, (bytes, bytearray)) else bytes(model),
                          {k: list(map(int, v)) for k, v in (input_shapes or {}).items()} or None,
                          input_values=input_values)
    in_names, out_names = [v.name for v in graph.inputs], [v.name for v in graph.outputs]
    pm = optimize(graph, opt_level, target=target, winograd=winograd, quantize=quantize)
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


def _open(out: Path, num_threads, fallback_engine) -> CompiledModel:
    """The finished build, loaded; a ForeignModule when it is for an ISA this CPU lacks (compiling
    for another machine succeeds; only running it here is refused)."""
    from .verify import read_manifest
    man = read_manifest(out / MANIFEST)
    if man.get("portable"):  # the ISA builds it carries: only $ONNXC_ISA can ask for one this CPU lacks
        from .portable import pick
        why = pick(man, out)[1]
    else:
        why = cpu_mismatch(man, out)
    if why:
        log.info("onnxc: %s: built, not loaded: %s", out, why)
        return ForeignModule(out, why)
    return CompiledModel(out, num_threads=num_threads, fallback_engine=fallback_engine)


def _options(input_shapes, opt_level, target, prefix, c_opt, openmp, fallback, winograd, input_values=None) -> Dict:
    """The build options (manifest "options", part of the cache key)."""
    options = {"input_shapes": {k: list(map(int, v)) for k, v in (input_shapes or {}).items()},
               "opt_level": opt_level, "target": target, "prefix": prefix, "c_opt": c_opt, "openmp": bool(openmp),
               "fallback": bool(fallback), "winograd": check_winograd(winograd)}
    if input_values:  # only then: builds without bound values keep their cache keys
        options["input_values"] = encode_values(input_values)
    return options


def encode_values(values: Mapping) -> Dict:
    """Arrays bound to graph inputs (value specialization) as JSON: dtype, shape and the bytes
    in hex, so the cache key holds every bit (-0.0 and NaN payloads included)."""
    import numpy as np
    out = {}
    for name in sorted(values):
        a = np.asarray(values[name], order="C")  # (ascontiguousarray makes a 0-d array 1-d)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"input_values['{name}']: dtype {a.dtype} cannot be bound (numbers and bool only)")
        a = a.astype(a.dtype.newbyteorder("<"))
        out[name] = {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes().hex()}
    return out


def decode_values(encoded: Optional[Mapping]) -> Optional[Dict]:
    """encode_values' arrays back (native byte order)."""
    if not encoded:
        return None
    import numpy as np
    out = {}
    for name, e in encoded.items():
        a = np.frombuffer(bytes.fromhex(e["data"]), dtype=np.dtype(e["dtype"])).reshape(e["shape"])
        out[name] = a.astype(a.dtype.newbyteorder("="))
    return out


def compile_model(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, opt_level: str = DEFAULT_LEVEL,
                  num_threads: Optional[int] = None, output_dir=None, target: str = "native",
                  prefix: str = DEFAULT_PREFIX, force: bool = False, c_opt: str = "-O3", openmp: Optional[bool] = None,
                  verbose: bool = False, fallback: bool = True, fallback_engine: str = "auto",
                  save_optimized=None, winograd: int = 4, quantize=None,
                  input_values: Optional[Mapping] = None) -> CompiledModel:
    """See onnxc.compile.  ``fallback``: nodes no C kernel can run go to the Python fallback
    provider instead of failing the compile; ``fallback_engine`` ("auto", "onnxruntime",
    "reference") picks its interpreter when the module is loaded (not part of the build).
    ``save_optimized``: also write the optimized graph there as an ONNX model (fused ops in the
    onnxc domain), as ``onnxc.optimize`` does.  ``openmp``: build with -fopenmp (None: only where
    the runtime has no thread pool, see build.default_openmp).  ``winograd``: which Winograd
    convolutions the NCHWc layout pass may use for 3x3 stride-1 convs (4: F(4x4) or F(2x2) by
    its rule, 2: F(2x2) only, 0: none; part of the cache key like every option).  ``target``
    "x86-64" builds the model once per ISA it carries (compiler/portable.py, build_portable).
    ``quantize``: int8 quantization inside the pass manager, as onnxc.quantize then compile (True,
    "dynamic", "static", a dict of onnxc.quantize's options or a QuantizeOptions; compiler/quantize/).
    ``input_values``: {input name: array}, graph inputs compiled as these constants (no longer
    inputs of the build; the values are part of the cache key): InferenceSession's value
    specialization."""
    from .build import default_openmp
    from .codegen.cgen import c_identifier
    prefix = c_identifier(prefix)
    t0 = time.perf_counter()
    raw = _model_bytes(model)
    options = _options(input_shapes, opt_level, target, prefix, c_opt,
                       default_openmp() if openmp is None else bool(openmp), fallback, winograd, input_values)
    qopts = None
    if quantize is not None and quantize is not False:
        from .quantize.options import QuantizeOptions
        from .quantize.data import digest
        qopts = QuantizeOptions.make(quantize)
        qopts.calibration, cal_digest = digest(qopts.calibration)
        qopts.eval_data, eval_digest = digest(qopts.eval_data)
        # the build depends on the data: its digest is part of the cache key
        options["quantize"] = {**qopts.describe(), "calibration": cal_digest, "eval_data": eval_digest}
    key = cache_key(raw, options)
    in_cache = output_dir is None
    if in_cache:
        from .build import cache_root
        output_dir = cache_root() / "models" / key
        lock = install.cache_lock(cache_root(), key)
    out = Path(output_dir).resolve()  # cffi builds in a temporary directory: relative include paths break
    if not in_cache:
        out.mkdir(parents=True, exist_ok=True)
        lock = out / install.LOCK_NAME
    # one compile at a time per directory: the others wait, then find the finished build
    with install.locked(lock):
        replace = force
        if not force and (out / MANIFEST).exists():
            try:
                if json.loads((out / MANIFEST).read_text()).get("cache_key") == key:
                    m = _open(out, num_threads, fallback_engine)
                    m.from_cache = True
                    log.info("onnxc: %s already holds this build (same model, options, onnxc and C compiler): "
                             "not rebuilt (force=True / --force rebuilds)", out)
                    if save_optimized is not None:  # a cached build: run the passes just for the file
                        from .portable import PORTABLE  # a portable build saves its first ISA's graph
                        optimize_model(model, input_shapes, opt_level, PORTABLE.get(target, (target,))[0],
                                       save_to=save_optimized,
                                       winograd=options["winograd"], quantize=qopts, input_values=input_values)
                    return m
            except (ValueError, OSError) as e:  # ModelError: the build failed verification
                log.warning("onnxc: rebuilding %s: %s", out, e)
                replace = True
        # a path stays a path: errors name the file, and onnx.load finds external data beside it
        src = model if hasattr(model, "SerializeToString") or isinstance(model, (str, os.PathLike)) else raw
        # built in a temporary directory and moved into place: nobody sees a half-written build
        tmp = install.build_dir(out, in_cache)
        try:
            from .portable import is_portable
            build = build_portable if is_portable(target) else build_into
            report = build(src, tmp, key, options, verbose=verbose, save_optimized=save_optimized,
                           quantize=qopts)
            report["seconds_total"] = round(time.perf_counter() - t0, 3)
            _update_report(tmp, report)
            if in_cache:
                _install(tmp, out, replace=replace)
            else:
                install.install_files(tmp, out)
        finally:  # a failed build (unsupported op, compiler error) leaves nothing behind
            shutil.rmtree(tmp, ignore_errors=True)
        return _open(out, num_threads, fallback_engine)


def node_table(graph, partitions):
    """[[node number in the generated C, op, name, partition, provider]] for profiles."""
    number = {id(n): i for i, n in enumerate(graph.nodes)}
    return [[number[id(n)], n.op_type if not n.domain else f"{n.domain}.{n.op_type}", n.name, p.index, p.provider]
            for p in partitions for n in p.nodes]


def _update_report(out: Path, report: Dict) -> None:
    m = json.loads((out / MANIFEST).read_text())
    m["report"] = report
    (out / MANIFEST).write_text(json.dumps(m, indent=1))


def build_portable(model, out: Path, key: str, options: Dict, verbose: bool = False, save_optimized=None,
                   quantize=None) -> Dict:
    """A portable target (compiler/portable.py): one complete build per carried ISA in ``out/<isa>``
    (each packs its weights for its own NCHWc block and GEMM tiles), then the top manifest listing
    them best first with the size and CRC-32 of each file they need to load."""
    from .portable import PORTABLE, sub_key
    from .verify import FORMAT, file_record
    out.mkdir(parents=True, exist_ok=True)
    builds, sizes, first = {}, {}, None
    for isa in PORTABLE[options["target"]]:
        t = time.perf_counter()
        stage(f"portable target {options['target']}: the {isa} build")
        sub = out / isa
        report = build_into(model, sub, sub_key(key, isa), {**options, "target": isa}, verbose=verbose,
                            save_optimized=save_optimized if first is None else None, copy_runtime=False,
                            quantize=quantize)
        m = json.loads((sub / MANIFEST).read_text())
        names = ([m["module_file"]] if m.get("module_file") else []) + [m["weights_file"]] + \
                [f["file"] for f in m.get("fallback", [])] + [MANIFEST]
        files = {n: file_record(sub / n) for n in names}
        builds[isa] = {"dir": isa, "cache_key": m["cache_key"], "weights_file": m["weights_file"], "files": files}
        shared = _share_weights(out, builds, isa)
        if shared:
            builds[isa]["weights_same_as"] = shared
        sizes[isa] = {"bytes": sum(r["bytes"] for r in files.values()), "module_bytes": m.get("module_bytes", 0),
                      "weights_bytes": files[m["weights_file"]]["bytes"], "seconds": round(time.perf_counter() - t, 3),
                      "nchwc_block": _nchwc_block(isa)}
        if first is None:
            first = m
    # what the output holds: files shared by hard link count once (what a pickle or tar carries)
    stored = sum(v["bytes"] - (v["weights_bytes"] if "weights_same_as" in builds[i] else 0) for i, v in sizes.items())
    report = {"portable": options["target"], "isas": sizes, "bytes_total": sum(v["bytes"] for v in sizes.values()),
              "bytes_stored": stored,
              "weights_shared": {i: b["weights_same_as"] for i, b in builds.items() if "weights_same_as" in b}}
    manifest = {
        "format": FORMAT, "onnxc_version": __version__, "cache_key": key, "portable": options["target"],
        "prefix": first["prefix"], "inputs": first["inputs"], "outputs": first["outputs"], "options": options,
        "isas": list(builds), "builds": builds, "report": report,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return report


def _share_weights(out: Path, builds: Dict, isa: str) -> Optional[str]:
    """When ``isa``'s weights.bin is byte for byte an earlier build's (same NCHWc block and GEMM
    packing: avx2 and generic for most models), make it a hard link to that file: stored once on
    disk, and once in a pickle (pickling.py reads it once). Returns the ISA it shares with."""
    import filecmp
    w = builds[isa]["weights_file"]
    mine = builds[isa]["files"][w]
    for other, b in builds.items():
        theirs = b["files"].get(b["weights_file"])
        if other == isa or theirs != mine:
            continue
        a, p = out / b["dir"] / b["weights_file"], out / isa / w
        if not filecmp.cmp(a, p, shallow=False):
            continue
        tmp = p.with_name(p.name + ".link")
        try:
            os.link(a, tmp)
            os.replace(tmp, p)
        except OSError:  # no hard links on this file system: two copies
            return None
        return other
    return None


def _nchwc_block(isa: str) -> int:
    from .isa import BY_NAME
    return BY_NAME[isa].nchwc_block


def lower(model, options: Dict, save_optimized=None, quantize=None):
    """The model through the frontend, the passes, partitioning and code generation (no C
    compiler): (graph, partitions, PassManager, CodegenResult, input names, output names, node
    count before the passes, seconds per stage).  ``options`` as compile_model makes them."""
    from . import frontend
    from .codegen.cgen import generate, legalize_outputs
    from .ir import verify
    from .fallback import python_values, static_required
    from .partition import default_providers, partition

    times = {}
    t = time.perf_counter()
    stage("loading the model (onnx checker, shape inference)")
    graph = frontend.load(model, options["input_shapes"] or None,
                          input_values=decode_values(options.get("input_values")))
    in_names = [v.name for v in graph.inputs]
    out_names = [v.name for v in graph.outputs]
    nodes_before = len(graph.nodes)
    times["frontend"] = time.perf_counter() - t

    t = time.perf_counter()
    stage(f"optimizing ({len(graph.nodes)} nodes, level {options['opt_level']})")
    pm = optimize(graph, options["opt_level"], target=options["target"], winograd=options["winograd"],
                  quantize=quantize)
    if save_optimized is not None:  # the graph the build goes on with, before codegen legalizes it
        from .ir.onnx_export import optimized_model
        _write_model(optimized_model(graph, in_names, out_names), save_optimized)
    times["passes"] = time.perf_counter() - t
    legalize_outputs(graph)

    t = time.perf_counter()
    stage(f"generating C ({len(graph.nodes)} nodes)")
    from .passes.capability import using
    from .passes.legalize_half import legalize_half  # narrow types compute through float32
    from .providers import CProvider
    with using(CProvider()):
        legalize_half(graph)
    # lists every node no provider can run, dynamic shapes included
    parts = partition(graph, default_providers(options.get("fallback", False)))
    c_ids = {id(n) for n in parts.nodes_of("c")}
    from .providers.c.registry import bounded_values
    require_static(graph, static_required(graph, c_ids, python_values(graph, c_ids), bounded_values(graph, c_ids)))
    verify(graph, require_typed=not parts.nodes_of("fallback"))
    for n in parts.nodes_of("fallback"):
        log.warning("onnxc: %s node '%s' runs in the Python fallback provider (%s)", n.op_type, n.name,
                    parts.declined.get(id(n), {}).get("c", "no C kernel"))
    prefix = options["prefix"]
    result = generate(graph, parts.partitions, prefix=prefix, options=options, io_names=(in_names, out_names))
    from .ops.validate import check_arena
    check_arena(result.plan)  # values within the size limit can still add up beyond it
    times["codegen"] = time.perf_counter() - t

    return graph, parts, pm, result, in_names, out_names, nodes_before, times


def generate_c(model, input_shapes: Optional[Mapping[str, Sequence[int]]] = None, opt_level: str = DEFAULT_LEVEL,
               target: str = "native", prefix: str = DEFAULT_PREFIX, fallback: bool = True, winograd: int = 4) -> str:
    """The C a compile of ``model`` generates (``<prefix>.c`` without the manifest checksums
    compile_model appends), without building it: what tests/test_golden_c.py compares."""
    from .codegen.cgen import c_identifier
    options = _options(input_shapes, opt_level, target, c_identifier(prefix), "-O3", False, fallback, winograd)
    return lower(_model_bytes(model), options)[3].c_source


def build_into(model, out: Path, key: str, options: Dict, verbose: bool = False, save_optimized=None,
               copy_runtime: bool = True, quantize=None) -> Dict:
    from .build import build_module
    from .blob import HEADER, blob_digest
    from .resources import runtime_dir
    from .verify import FORMAT, c_manifest_checksums, file_record, record

    graph, parts, pm, result, in_names, out_names, nodes_before, times = lower(model, options, save_optimized,
                                                                                quantize)
    prefix = options["prefix"]

    t = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)  # a fresh directory (compile_model installs it)
    result.blob.write(out / "weights.bin")
    if copy_runtime:  # for embedders (examples/embed_c); the module is built from the installed runtime_c
        shutil.copytree(runtime_dir(), out / "runtime_c", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    fallback = []
    for fb in result.fallback:
        (out / fb["file"]).write_bytes(fb["model"])
        fallback.append({**{k: v for k, v in fb.items() if k != "model"}, **record(fb["model"])})
    module_name = f"_onnxc_{key}"
    c_parts = [i for kind, i in result.steps if kind == "c"]
    manifest = {
        "format": FORMAT, "onnxc_version": __version__, "cache_key": key, "prefix": prefix,
        "module_name": module_name, "module_file": None,
        "arena_bytes": result.plan.size, "weights_file": "weights.bin",
        "weights_digest": blob_digest(out / "weights.bin"),
        "weights_checksum": file_record(out / "weights.bin", HEADER)["checksum"],  # for verify="full"
        "inputs": result.inputs, "outputs": result.outputs, "options": options,
        "isa": graph.metadata["target"].isa,  # checked against the CPU at load (runtime.check_cpu)
        "steps": result.steps, "fallback": fallback,
        "checks": result.checks, "error_offset": result.error_offset,  # runtime checks (check_report.py)
        "nodes": node_table(graph, parts.partitions),
    }
    # the module vouches for the manifest fields the loader acts on (compiler/verify.py)
    (out / f"{prefix}.c").write_text(result.c_source + c_manifest_checksums(prefix, manifest))
    (out / f"{prefix}.h").write_text(result.header)
    from .build import compile_flags
    # the flags the C was generated for (ISA of prepacked weights): what an embedder compiles with
    (out / "cflags.txt").write_text(" ".join(compile_flags(options["target"], options["c_opt"], options["openmp"])) + "\n")
    if c_parts or not fallback:  # a module of interpreter partitions only has nothing to compile
        so = build_module(out, prefix, module_name, target=options["target"], opt=options["c_opt"],
                          openmp=options["openmp"], partitions=c_parts if fallback else ())
        rec = file_record(so)
        manifest.update(module_file=so.name, module_bytes=rec["bytes"], module_checksum=rec["checksum"])
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
    if "quantize" in graph.metadata:
        report["quantize"] = graph.metadata["quantize"].as_dict()
    manifest["report"] = report
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return report
