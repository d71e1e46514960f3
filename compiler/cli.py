"""onnxc command line:  compile | run | inspect | quantize.  `onnxc <command> --help` explains each."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional

from .isa import ISAS
from .portable import PORTABLE

TARGETS = ["native"] + [i.name for i in ISAS]
# compile also takes the portable targets (one build per ISA, the best chosen at load)
COMPILE_TARGETS = TARGETS + list(PORTABLE)


class UsageError(Exception):
    """A bad command line found after parsing (reported like argparse's errors: exit 2)."""


# --- argument types: argparse reports their errors as "onnxc <command>: error: ..." (exit 2) ------
def shape_arg(item: str):
    """NAME=D0,D1,... (or D0xD1x...) -> (name, [dims])."""
    if "=" not in item:
        raise argparse.ArgumentTypeError(f"expected NAME=D0,D1,..., got '{item}'")
    name, dims = item.rsplit("=", 1)
    try:
        shape = [int(d) for d in dims.replace("x", ",").split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{item}': dimensions must be integers") from None
    if any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"'{item}': dimensions must be >= 0")
    return name, shape


def input_arg(item: str):
    """NAME=FILE.npy -> (name, path)."""
    if "=" not in item:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE.npy, got '{item}'")
    return tuple(item.split("=", 1))


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _parse_shapes(items) -> Dict[str, List[int]]:
    return dict(items or [])


def cmd_compile(args) -> int:
    import onnxc

    from .progress import reporting
    t0 = time.perf_counter()
    if args.embed_weights and args.emit != "c":
        raise UsageError("--embed-weights goes with --emit c")
    if args.emit == "c":
        from .emit_c import emit_c
        with reporting(verbose=args.verbose):
            e = emit_c(args.model, args.output, input_shapes=_parse_shapes(args.shape), opt_level=args.opt_level,
                       target=args.target, prefix=args.prefix, embed_weights=args.embed_weights, force=args.force)
        print(f"wrote a standalone C project for {args.model} to {args.output} in {time.perf_counter() - t0:.2f} s")
        print(f"  library {e.prefix}: {e.prefix}.c and {len(e.sources)} of {e.all_sources} runtime sources; weights "
              f"{'compiled in' if e.embedded else 'in weights.bin'}; ISA flags: {' '.join(e.isa_flags) or '(none)'}")
        print(f"  build: cmake -S {args.output} -B build && cmake --build build  (API: {e.prefix}.h)")
        return 0
    with reporting(verbose=args.verbose):
        model = onnxc.compile(args.model, input_shapes=_parse_shapes(args.shape), opt_level=args.opt_level,
                              output_dir=args.output, target=args.target, force=args.force, prefix=args.prefix,
                              fallback=not args.no_fallback, save_optimized=args.save_optimized,
                              winograd=args.winograd)
    r = model.report
    how = "found in the cache (not rebuilt)" if model.from_cache else "compiled"
    print(f"{how}: {args.model} -> {args.output} in {time.perf_counter() - t0:.2f} s")
    if not model.runnable and model.manifest.get("portable"):  # only a forced $ONNXC_ISA gets here
        print(f"  not loaded here: {model.reason}")
    elif not model.runnable:
        from .cpu import REQUIRED_FLAGS, host_flags
        isa = model.manifest.get("isa")
        missing = ", ".join(f for f in REQUIRED_FLAGS.get(isa, ()) if f not in host_flags())
        print(f"  built for ISA {isa}: this host cannot load it (this CPU lacks {missing}); copy {args.output} "
              "to a machine that has it and load it there")
    p = r.get("portable") if r else None
    if p:
        print(f"  portable target {p['portable']}: {len(p['isas'])} ISA builds, {p['bytes_total']:,} bytes in all; "
              f"this host loads {model.isa} ($ONNXC_ISA or onnxc.load(..., isa=) forces another)")
        for isa, v in p["isas"].items():
            print(f"    {isa:8s} {v['bytes']:>12,} bytes (module {v['module_bytes']:,}, "
                  f"weights {v['weights_bytes']:,}, "
                  f"NCHWc block {v['nchwc_block']}), built in {v['seconds']:.1f} s")
    if r:
        print(f"  nodes: {r['nodes_before']} -> {r['nodes_after']} after passes; partitions: {r['partitions']}")
        print(f"  arena: {r['arena_bytes']:,} bytes (intermediates without sharing: {r['intermediate_bytes']:,})")
        print(f"  weights: {r['weights_bytes']:,} bytes")
        fb = r.get("fallback_nodes", [])
        if fb:
            print(f"  {len(fb)} node(s) run in the Python fallback provider (the C alone cannot run this "
                  f"module; `onnxc inspect --partitions` shows where each node landed):")
            for n in fb:
                print(f"    {n['op']} '{n['name']}': {n['why']}")
    for i in model.get_inputs():
        print(f"  input  {i.name}: {i.type} {i.shape}")
    for o in model.get_outputs():
        print(f"  output {o.name}: {o.type} {o.shape}")
    return 0


def cmd_run(args) -> int:
    import numpy as np

    import onnxc
    model = onnxc.load(args.module, num_threads=args.threads, isa=args.isa)
    if model.portable_manifest:
        print(f"portable build {model.portable_manifest['portable']}: running its {model.isa} build")
    names = [spec.name for spec in model.get_inputs()]
    feed = {}
    for name, path in args.input or []:
        if name not in names:
            raise UsageError(f"--input {name}={path}: the model has no input '{name}'; its inputs are "
                             f"{', '.join(names) or '(none)'}")
        try:
            feed[name] = np.load(path)
        except ValueError as e:
            raise UsageError(f"--input {name}={path}: not a .npy array ({e})") from None
    for spec in model.get_inputs():
        if spec.name not in feed:
            if not args.random:
                raise UsageError(f"missing --input {spec.name}=FILE.npy (or pass --random); the model's inputs are "
                                 f"{', '.join(names)}")
            dt = np.dtype({"tensor(float)": "float32", "tensor(double)": "float64"}.get(
                spec.type, spec.type[7:-1]))
            rng = np.random.default_rng(0)
            feed[spec.name] = (rng.standard_normal(spec.shape).astype(dt) if dt.kind == "f"
                               else np.zeros(spec.shape, dt))
    outs = model.run(None, feed)
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        model.run(None, feed)
        times.append(time.perf_counter() - t)
    for spec, out in zip(model.get_outputs(), outs):
        print(f"{spec.name}: {out.dtype}{list(out.shape)}  min {out.min() if out.size else '-'} "
              f"max {out.max() if out.size else '-'}")
        if args.save:
            path = f"{args.save}_{spec.name.replace('/', '_')}.npy"
            np.save(path, out)
            print(f"  saved {spec.name} to {path}")
    if times:
        print(f"latency: median {sorted(times)[len(times) // 2] * 1e3:.3f} ms over {len(times)} runs")
    if args.profile:
        print_profile(model.profile(feed, repeat=max(args.repeat, 10)), args.top)
    return 0


def print_profile(rows, top: int = 25) -> None:
    """Per-node table (slowest first), then totals by op type and by partition."""
    total = sum(r["ms"] for r in rows) or 1e-12
    print(f"\nprofile: {total:.3f} ms per run in {len(rows)} nodes/partitions (mean of the profiled runs)")
    print(f"{'ms':>9} {'%':>6}  {'part':>4}  {'op':30} name")
    for r in sorted(rows, key=lambda r: -r["ms"])[:top]:
        print(f"{r['ms']:9.3f} {100 * r['ms'] / total:6.1f}  {r['partition']:4d}  {r['op']:30} {r['name']}")
    by_op, by_part = {}, {}
    for r in rows:
        by_op[r["op"]] = by_op.get(r["op"], 0.0) + r["ms"]
        key = (r["partition"], r["provider"])
        by_part[key] = by_part.get(key, 0.0) + r["ms"]
    print(f"\n{'ms':>9} {'%':>6}  op type")
    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"{ms:9.3f} {100 * ms / total:6.1f}  {op}")
    print(f"\n{'ms':>9} {'%':>6}  partition")
    for (part, prov), ms in sorted(by_part.items()):
        print(f"{ms:9.3f} {100 * ms / total:6.1f}  {part} ({prov})")


def _progress_bar(stream=None):
    """A callback(i, total, what) drawing one line on stderr: a bar when the total is known."""
    stream = stream or sys.stderr
    state = {"what": None}

    def show(i, total, what):
        if state["what"] is not None and not what.startswith(state["what"]):
            stream.write("\n")
        state["what"] = what.split(":")[0]
        if total:
            done = int(30 * i / total)
            stream.write(f"\r{what} [{'#' * done}{'.' * (30 - done)}] {i}/{total}")
        else:
            stream.write(f"\r{what} {i}")
        if total and i >= total:
            stream.write("\n")
            state["what"] = None
        stream.flush()
    return show


def _quant_options(args) -> dict:
    opts = {"mode": "dynamic" if args.dynamic else "static", "method": args.method, "calibration": args.calibration,
            "per_channel": not args.per_tensor, "activation_type": args.activation_type,
            "exclude": tuple(x for item in args.exclude or [] for x in item.split(",") if x),
            "per_token": not args.per_tensor_activations,
            "reduce_range": args.reduce_range, "preprocess": args.preprocess, "engine": args.engine,
            "max_batches": args.max_batches, "progress": _progress_bar()}
    if args.percentile is not None:
        opts["percentile"] = args.percentile
    if args.op_types:
        opts["op_types"] = tuple(x for x in args.op_types.split(",") if x)
    if not args.dynamic and not args.calibration:
        raise SystemExit("static quantization needs --calibration DIR (.npy/.npz files or images); "
                         "--dynamic needs no data")
    return opts


def cmd_quantize(args) -> int:
    from .quantize import quantize
    t0 = time.perf_counter()
    opts = _quant_options(args)
    if args.target:
        opts["target"] = args.target
        opts["eval_data"] = args.eval_data
    _, res = quantize(args.model, save_to=args.output, input_shapes=_parse_shapes(args.shape) or None,
                      return_result=True, **opts)
    print(f"wrote {args.output} ({time.perf_counter() - t0:.2f} s)")
    print(res.summary())
    if args.verbose:
        for l in res.layers:
            rng = "" if l.act_range is None else f" range [{l.act_range[0]:.4g}, {l.act_range[1]:.4g}]"
            print(f"  {l.op} '{l.name}': {l.activation}{rng}, weights {l.weight} (SQNR {l.weight_sqnr:.1f} dB)"
                  f"{', bias int32' if l.bias_int32 else ''}")
    if args.report and res.report is not None:
        print(res.report.format())
    return 0


def cmd_quant_report(args) -> int:
    from .quantize import quant_report
    opts = _quant_options(args)
    rep = quant_report(args.model, input_shapes=_parse_shapes(args.shape) or None, **opts)
    print(rep.format(args.top or None))
    return 0


def _add_quant_args(p, shape: bool = True) -> None:
    p.add_argument("--calibration", metavar="DIR",
                   help="calibration data: a folder of .npz (one feed each) or .npy files (single-input models), "
                        "or of images (with --preprocess)")
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic quantization: int8 weights, activations quantized at run time, no calibration data "
                        "(transformers, RNNs); default: static (CNNs)")
    p.add_argument("--per-channel", action="store_true", default=True,
                   help="one weight scale per output channel (the default)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor")
    p.add_argument("--per-tensor-activations", action="store_true",
                   help="with --dynamic: one activation scale per tensor (onnxruntime's DynamicQuantizeLinear form, "
                        "which onnxruntime fuses) instead of one per token (row), the default")
    p.add_argument("--method", default="minmax", choices=["minmax", "percentile", "entropy"],
                   help="calibration method (default: minmax)")
    p.add_argument("--percentile", type=float, default=None, help="with --method percentile (default 99.999)")
    p.add_argument("--activation-type", default="uint8", choices=["uint8", "int8"],
                   help="uint8 asymmetric (default) or int8 symmetric activations")
    p.add_argument("--exclude", action="append", metavar="NAME|OP", help="leave these nodes or op types in float "
                   "(repeatable, comma-separated)")
    p.add_argument("--op-types", metavar="OP,OP", help="quantize only these op types")
    p.add_argument("--reduce-range", action="store_true", help="7-bit weights (AVX2 without VNNI)")
    p.add_argument("--preprocess", metavar="SPEC", help="for image folders, e.g. 'resize=256 crop=224 "
                   "mean=0.485,0.456,0.406 std=0.229,0.224,0.225 layout=nchw' (keys: resize, crop, pixels, mean, std, "
                   "order, layout, dtype)")
    p.add_argument("--max-batches", type=int, default=None, help="use at most this many calibration feeds")
    p.add_argument("--engine", default="onnxc", choices=["onnxc", "reference", "onnxruntime"],
                   help="what runs the float model during calibration (default: onnxc itself)")
    if shape:
        p.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", help="bind free dimensions")


def cmd_inspect(args) -> int:
    if args.quant_report:
        return cmd_quant_report(args)
    from . import frontend
    from .codegen.cgen import legalize_outputs
    from .driver import optimize
    from .ir import format_graph
    from .partition import default_providers, partition
    graph = frontend.load(args.model, _parse_shapes(args.shape) or None)
    before = graph.op_counts()
    if args.passes or args.partitions or args.optimized:
        pm = optimize(graph, args.opt_level, target=args.target, winograd=args.winograd)
        if args.passes:
            print(pm.report())
            print()
            print(f"{'op':28} {'before':>7} {'after':>7}")
            after = graph.op_counts()
            for op in sorted(set(before) | set(after)):
                print(f"{op:28} {before.get(op, 0):7d} {after.get(op, 0):7d}")
            print(f"{'total':28} {sum(before.values()):7d} {sum(after.values()):7d}")
            if args.verbose:
                for name, st in pm.stats.items():
                    for d in st.details:
                        print(f"  {name}: {d}")
                for name, st in pm.stats.items():
                    for d in st.notes:
                        print(f"  {name}: {d}")
        if args.partitions:
            from .passes.capability import using
            from .passes.legalize_half import legalize_half  # as the compile does before partitioning
            from .providers import CProvider
            legalize_outputs(graph)
            with using(CProvider()):
                legalize_half(graph)
            print(partition(graph, default_providers(not args.no_fallback), strict=False).describe())
    if args.ir or not (args.passes or args.partitions):
        print(format_graph(graph))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="onnxc", description="Compile ONNX models ahead of time into native C modules.",
        epilog="examples:\n  onnxc compile model.onnx -o out/ --shape input=1,3,224,224\n"
               "  onnxc run out/ --input input=x.npy\n  onnxc inspect model.onnx --passes",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="compile a model to C and build it into a loadable module")
    c.add_argument("model", help="path to an .onnx model")
    c.add_argument("-o", "--output", required=True, help="output directory (C sources, weights, .so)")
    c.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", type=shape_arg,
                   help="bind an input's free dimensions (repeatable)")
    c.add_argument("-O", "--opt-level", default="layout", choices=["none", "basic", "extended", "layout"],
                   help="graph optimization level (default: layout, i.e. all levels)")
    c.add_argument("--target", default="native", choices=COMPILE_TARGETS,
                   help="instruction set the C is compiled for (default: this machine); any target builds "
                        "on any machine, a module loads only on a CPU that has its ISA; x86-64: one build "
                        "each for avx512, avx2 and generic, the best the CPU runs chosen at load")
    c.add_argument("--winograd", type=int, default=4, choices=[0, 2, 4],
                   help="Winograd 3x3 convolutions: 4 F(4x4) or F(2x2) by layer size (default), "
                        "2 F(2x2) only, 0 none")
    c.add_argument("--prefix", default="model", help="C symbol prefix of the generated API (default: model)")
    c.add_argument("--force", action="store_true", help="rebuild even if a cached build matches")
    c.add_argument("--save-optimized", metavar="FILE.onnx", default=None,
                   help="also write the optimized graph as an ONNX model (fused ops in the onnxc domain)")
    c.add_argument("--no-fallback", action="store_true",
                   help="refuse (listing them all) nodes without a C kernel instead of running them in the "
                        "Python fallback provider")
    c.add_argument("--emit", choices=["module", "c"], default="module",
                   help="module: a module onnxc loads (default); c: a standalone C project (CMake, no Python) "
                        "for other programs to link")
    c.add_argument("--embed-weights", action="store_true",
                   help="with --emit c: the weights as a C array in the library instead of weights.bin")
    c.add_argument("-v", "--verbose", action="store_true",
                   help="print every stage and C unit (default: a status line on a terminal, else long stages)")
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run a compiled module on .npy inputs")
    r.add_argument("module", help="output directory of `onnxc compile`")
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy", type=input_arg,
                   help="an input tensor (repeatable)")
    r.add_argument("--random", action="store_true", help="fill missing inputs with seeded random data")
    r.add_argument("--repeat", type=_int_at_least(0), default=0, help="time this many extra runs")
    r.add_argument("--threads", type=_int_at_least(1), default=None, help="number of threads")
    r.add_argument("--isa", default=None,
                   help="of a portable build (--target x86-64): run this ISA's build (default: $ONNXC_ISA, else "
                        "the best this CPU runs)")
    r.add_argument("--save", metavar="PREFIX", help="save outputs as PREFIX_<name>.npy")
    r.add_argument("--profile", action="store_true",
                   help="time every node (C) and fallback partition; print the slowest and totals by op type")
    r.add_argument("--top", type=_int_at_least(1), default=25, help="with --profile: how many nodes to list (default 25)")
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("inspect", help="print the IR, the passes' work or the partitions")
    i.add_argument("model", help="path to an .onnx model")
    i.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", type=shape_arg,
                   help="bind free dimensions")
    i.add_argument("-O", "--opt-level", default="layout", choices=["none", "basic", "extended", "layout"])
    i.add_argument("--passes", action="store_true", help="run the passes and report what each rewrote")
    i.add_argument("--target", default="native", choices=TARGETS,
                   help="target ISA the layout passes block for (default: this machine)")
    i.add_argument("--winograd", type=int, default=4, choices=[0, 2, 4],
                   help="Winograd convolutions the layout pass may use (as for compile)")
    i.add_argument("--partitions", action="store_true", help="show which provider runs each node")
    i.add_argument("--no-fallback", action="store_true",
                   help="with --partitions: C provider only (show what a C-only build would refuse)")
    i.add_argument("--ir", action="store_true", help="print the IR (after passes if --passes)")
    i.add_argument("--optimized", action="store_true", help=argparse.SUPPRESS)
    i.add_argument("-v", "--verbose", action="store_true", help="with --passes: list the rewritten nodes")
    i.add_argument("--quant-report", action="store_true",
                   help="per-layer SQNR of the int8 model against float on --calibration, worst first")
    i.add_argument("--top", type=int, default=0, help="with --quant-report: list only the worst N layers")
    _add_quant_args(i, shape=False)
    i.set_defaults(func=cmd_inspect)

    q = sub.add_parser("quantize", help="quantize a float model to int8 (a QDQ ONNX model onnxruntime runs too)")
    q.add_argument("model", help="path to a float .onnx model")
    q.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="where to write the int8 model")
    _add_quant_args(q)
    q.add_argument("--target", metavar="METRIC:VALUE",
                   help="accuracy-aware: leave the most damaging layers in float until e.g. sqnr:30, top1:0.99 or "
                        "cosine:0.99 holds on --eval-data (default: the calibration data)")
    q.add_argument("--eval-data", metavar="DIR", help="held-out feeds for --target")
    q.add_argument("--report", action="store_true", help="with --target: print the per-layer table too")
    q.add_argument("-v", "--verbose", action="store_true", help="list every quantized layer")
    q.set_defaults(func=cmd_quantize)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import OnnxcError
    try:
        return args.func(args)
    except (OnnxcError, OSError, UsageError) as e:  # usage, model and file errors alike: exit 2
        print(f"onnxc {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
