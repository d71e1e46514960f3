"""int8 convolution (runtime_c/qconv) against onnxc's float32 NCHWc convolution kernels and
onnxruntime's QLinearConv, layer by layer, in one process.

    python benchmarks/bench_qconv.py [--isa avx2,amx] [--threads 1,2] [--seconds 0.3] [--layers resnet,mobilenet]
                                     [--no-ort] [--algo auto|implicit|im2col|direct] [--only NAME]

Layers: the ResNet-50 v1.5 and MobileNetV2 convolutions named in docs/qconv.md (batch 1). Per ISA
row the host runs, the family's kernels for the row (onnxc.kernels.qconv: conv_kernel_for /
dw_kernel_for) are built with the row's compiler flags and timed with packed weights, uint8
NHWC activations, realistic int8 weights (per-channel symmetric quantization of Gaussian
weights) and a requantized uint8 output (the output stage included). The float32 references
are onnxc's NCHWc kernels (runtime_c/nchwc) built for the row's float ISA with its block: the
kind onnxc's layout pass picks for the layer (Winograd F(4x4)/F(2x2) for big 3x3 stride-1 convs,
the NCHW-input kernel for the 3-channel first layer, else direct / depthwise) and, for 3x3
layers Winograd takes, the direct kernel too. onnxruntime: a single-node com.microsoft
QLinearConv with channels_last=1 (the NHWC form its NhwcTransformer gives int8 models), with
intra-op threads = the thread count. Every int8 result is checked against an int64 numpy
reference before it is timed (onnxruntime's against ours, bit for bit). One thread: best CPU
time of the calling thread (onnxruntime with one intra-op thread computes on it too); two
threads: best wall time (noisy on a shared machine). Prints GOPS (2 * MACs / s) and the ratios.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler import isa as isa_table  # noqa: E402
from compiler.build import build_kernel_library, compile_flags  # noqa: E402
from compiler.cpu import cpu_model, host_flags  # noqa: E402
from compiler.kernels import qconv as QC  # noqa: E402
from compiler.kernels import qgemm as Q  # noqa: E402
from compiler.ops import nchwc as L  # noqa: E402
from compiler.passes.layout.winograd import winograd_tile  # noqa: E402
from compiler.resources import kernels_cdef  # noqa: E402

# name: (C, H, W, M, K, stride, pad, group)
LAYERS = {
    "resnet": [
        ("conv1 7x7/2 3->64 @224", (3, 224, 224, 64, 7, 2, 3, 1)),
        ("3x3 64->64 @56", (64, 56, 56, 64, 3, 1, 1, 1)),
        ("1x1 256->64 @56", (256, 56, 56, 64, 1, 1, 0, 1)),
        ("1x1 64->256 @56", (64, 56, 56, 256, 1, 1, 0, 1)),
        ("3x3/2 128->128 @56", (128, 56, 56, 128, 3, 2, 1, 1)),
        ("1x1/2 256->512 @56", (256, 56, 56, 512, 1, 2, 0, 1)),
        ("3x3 128->128 @28", (128, 28, 28, 128, 3, 1, 1, 1)),
        ("3x3 256->256 @14", (256, 14, 14, 256, 3, 1, 1, 1)),
        ("1x1 1024->256 @14", (1024, 14, 14, 256, 1, 1, 0, 1)),
        ("3x3 512->512 @7", (512, 7, 7, 512, 3, 1, 1, 1)),
    ],
    "mobilenet": [
        ("dw 3x3 32 @112", (32, 112, 112, 32, 3, 1, 1, 32)),
        ("dw 3x3/2 96 @112", (96, 112, 112, 96, 3, 2, 1, 96)),
        ("dw 3x3 144 @56", (144, 56, 56, 144, 3, 1, 1, 144)),
        ("dw 3x3/2 144 @56", (144, 56, 56, 144, 3, 2, 1, 144)),
        ("dw 3x3 960 @7", (960, 7, 7, 960, 3, 1, 1, 960)),
        ("1x1 24->144 @56", (24, 56, 56, 144, 1, 1, 0, 1)),
        ("1x1 144->24 @56", (144, 56, 56, 24, 1, 1, 0, 1)),
    ],
}
# Every convolution of ResNet-50 v1.5 at 224 x 224, batch 1: (name, spec, count). The totals
# weigh each shape by how often the model runs it (the convolutions are ~97% of its work).
RESNET50 = [
    ("conv1 7x7/2 3->64", (3, 224, 224, 64, 7, 2, 3, 1), 1),
    ("1x1 64->64 @56", (64, 56, 56, 64, 1, 1, 0, 1), 1),
    ("3x3 64->64 @56", (64, 56, 56, 64, 3, 1, 1, 1), 3),
    ("1x1 64->256 @56", (64, 56, 56, 256, 1, 1, 0, 1), 4),
    ("1x1 256->64 @56", (256, 56, 56, 64, 1, 1, 0, 1), 2),
    ("1x1 256->128 @56", (256, 56, 56, 128, 1, 1, 0, 1), 1),
    ("3x3/2 128->128 @56", (128, 56, 56, 128, 3, 2, 1, 1), 1),
    ("1x1/2 256->512 @56", (256, 56, 56, 512, 1, 2, 0, 1), 1),
    ("1x1 128->512 @28", (128, 28, 28, 512, 1, 1, 0, 1), 4),
    ("1x1 512->128 @28", (512, 28, 28, 128, 1, 1, 0, 1), 3),
    ("3x3 128->128 @28", (128, 28, 28, 128, 3, 1, 1, 1), 3),
    ("1x1 512->256 @28", (512, 28, 28, 256, 1, 1, 0, 1), 1),
    ("3x3/2 256->256 @28", (256, 28, 28, 256, 3, 2, 1, 1), 1),
    ("1x1/2 512->1024 @28", (512, 28, 28, 1024, 1, 2, 0, 1), 1),
    ("1x1 256->1024 @14", (256, 14, 14, 1024, 1, 1, 0, 1), 6),
    ("1x1 1024->256 @14", (1024, 14, 14, 256, 1, 1, 0, 1), 5),
    ("3x3 256->256 @14", (256, 14, 14, 256, 3, 1, 1, 1), 5),
    ("1x1 1024->512 @14", (1024, 14, 14, 512, 1, 1, 0, 1), 1),
    ("3x3/2 512->512 @14", (512, 14, 14, 512, 3, 2, 1, 1), 1),
    ("1x1/2 1024->2048 @14", (1024, 14, 14, 2048, 1, 2, 0, 1), 1),
    ("1x1 512->2048 @7", (512, 7, 7, 2048, 1, 1, 0, 1), 3),
    ("1x1 2048->512 @7", (2048, 7, 7, 512, 1, 1, 0, 1), 2),
    ("3x3 512->512 @7", (512, 7, 7, 512, 3, 1, 1, 1), 2),
]
THREAD_CDEF = "void onnxc_rt_set_num_threads(int n);\n"


def best_time(fn, seconds: float, wall: bool) -> float:
    clock = time.perf_counter if wall else time.thread_time
    fn()
    t = clock()
    fn()
    once = max(clock() - t, 1e-6)
    batch = max(1, int(0.005 / once))
    best, spent, reps = float("inf"), 0.0, 0
    while spent < seconds or reps < 3:
        t = clock()
        for _ in range(batch):
            fn()
        dt = clock() - t
        best, spent, reps = min(best, dt / batch), spent + dt, reps + 1
    return best


def aligned(n: int, dtype) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    buf = np.zeros(n + 64 // size, dtype)
    s = (-buf.ctypes.data % 64) // size
    return buf[s:s + n]


def int8_weights(rng, shape, bits=8):
    w = rng.standard_normal(shape)
    m = np.abs(w.reshape(shape[0], -1)).max(axis=1).reshape(-1, *([1] * (len(shape) - 1)))
    return np.round(w / m * ((1 << (bits - 1)) - 1)).astype(np.int8)


class Layer:
    def __init__(self, name, spec, count=1):
        C, H, W, M, K, s, p, grp = spec
        self.name, self.C, self.H, self.W, self.M, self.K, self.s, self.p, self.group = name, C, H, W, M, K, s, p, grp
        self.count = count
        self.geom = QC.Geom(1, H, W, C, M, K, K, (s, s), (1, 1), (p, p, p, p), grp)
        self.dw = QC.is_depthwise(grp, C, M)
        self.macs = self.geom.OH * self.geom.OW * M * (C // grp) * K * K


class F32Conv:
    """onnxc's float32 NCHWc kernels for one float ISA (runtime_c/nchwc)."""

    def __init__(self, base, out):
        self.b = isa_table.BY_NAME[base].nchwc_block
        cdef = kernels_cdef("onnxc_nchwc.h") + THREAD_CDEF
        self.ffi, self.lib = build_kernel_library(out / f"libnchwc_{base}.so",
                                                  ["nchwc/conv_nchwc.c", "nchwc/conv_winograd.c"],
                                                  [f for f in compile_flags(base) if f != "-fopenmp"],
                                                  extra_cdef=cdef)

    def kinds(self, ly: Layer):
        """(kind onnxc picks, tile) and the direct kernel as well when that is Winograd."""
        b, g = self.b, ly.geom
        if ly.dw:
            return [("depthwise", 0)]
        if ly.C < b:
            return [("nchw", 0)]
        tile = winograd_tile(ly.C, ly.M, ly.group, [ly.K, ly.K], [ly.s, ly.s], [1, 1], [1, ly.M, g.OH, g.OW])
        return [("winograd", tile), ("direct", 0)] if tile else [("direct", 0)]

    def prepare(self, ly: Layer, kind, tile, rng):
        ffi, b, g = self.ffi, self.b, ly.geom
        x = rng.standard_normal((1, ly.C, ly.H, ly.W)).astype(np.float32)
        w = (rng.standard_normal((ly.M, ly.C // ly.group, ly.K, ly.K)) / np.sqrt(ly.C // ly.group * ly.K * ly.K)).astype(np.float32)
        bias = L.pad_channels(rng.standard_normal(ly.M).astype(np.float32), b)
        xk = x if kind == "nchw" else L.to_blocked(x, b)
        wk = {"direct": lambda: L.pack_direct(w, b, ly.group), "depthwise": lambda: L.pack_depthwise(w, b),
              "nchw": lambda: L.pack_nchw(w, b), "winograd": lambda: L.pack_winograd(w, b, tile)}[kind]()
        xk, wk = np.ascontiguousarray(xk, np.float32), np.ascontiguousarray(wk, np.float32)
        y = np.zeros((1, L.blocks(ly.M, b), g.OH, g.OW, b), np.float32)
        p = ffi.new("onnxc_nchwc_conv_params *", dict(
            N=1, C=ly.C, M=ly.M, group=ly.group, IH=ly.H, IW=ly.W, OH=g.OH, OW=g.OW, KH=ly.K, KW=ly.K, SH=ly.s, SW=ly.s,
            PT=ly.p, PL=ly.p, DH=1, DW=1, lo=-np.inf, hi=np.inf))
        f = lambda a: ffi.cast("float *", a.ctypes.data)  # noqa: E731
        keep = [x, xk, wk, bias, y, p]
        if kind == "winograd":
            sfn = getattr(self.lib, f"onnxc_f32_nchwc_conv_winograd_scratch{'_f4' if tile == 4 else ''}_b{b}")
            scratch = aligned(int(sfn(p)) // 4 + 16, np.float32)
            keep.append(scratch)
            fn = getattr(self.lib, f"onnxc_f32_nchwc_conv_winograd{'_f4' if tile == 4 else ''}_b{b}")
            call = lambda: fn(p, f(xk), f(wk), f(bias), ffi.NULL, f(y), f(scratch))  # noqa: E731
        else:
            name = {"direct": "onnxc_f32_nchwc_conv", "depthwise": "onnxc_f32_nchwc_conv_depthwise",
                    "nchw": "onnxc_f32_nchwc_conv_nchw"}[kind]
            fn = getattr(self.lib, f"{name}_b{b}")
            call = lambda: fn(p, f(xk), f(wk), f(bias), ffi.NULL, f(y))  # noqa: E731
        call()
        got = np.moveaxis(y, -1, 2).reshape(1, -1, g.OH, g.OW)[:, :ly.M]
        # spot check against float64 on a few output pixels
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ly.p, ly.p), (ly.p, ly.p)))
        cg, mg = ly.C // ly.group, ly.M // ly.group
        for oh, ow, m in ((0, 0, 0), (g.OH - 1, g.OW - 1, ly.M - 1), (g.OH // 2, g.OW // 3, ly.M // 2)):
            grp = m // mg
            patch = xp[0, grp * cg:(grp + 1) * cg, oh * ly.s:oh * ly.s + ly.K, ow * ly.s:ow * ly.s + ly.K]
            want = float((patch * w[m]).sum() + bias[m])
            assert abs(got[0, m, oh, ow] - want) <= 1e-3 * (1 + abs(want)), f"f32 {kind} wrong at {ly.name}"
        return call, keep


class QConvLib:
    def __init__(self, row, out):
        cdef = (kernels_cdef("onnxc_qgemm.h") + kernels_cdef("onnxc_qconv.h")).replace("extern const ", "extern ") + THREAD_CDEF
        self.ffi, self.lib = build_kernel_library(out / f"libqconv_{row}.so", QC.sources(),
                                                  ["-O3", *isa_table.BY_NAME[row].cflags], extra_cdef=cdef)
        self.row = row

    def prepare(self, ly: Layer, rng, algo=QC.AUTO, check=True, bits=8):
        ffi, lib, g = self.ffi, self.lib, ly.geom
        x = aligned(ly.H * ly.W * ly.C, np.uint8).reshape(1, ly.H, ly.W, ly.C)  # 64-byte aligned as in the arena
        x[:] = rng.integers(0, 256, x.shape)
        w = int8_weights(rng, (ly.M, ly.C // ly.group, ly.K, ly.K), bits)
        xz = 3
        ptr = lambda a: ffi.cast("void *", a.ctypes.data)  # noqa: E731
        y = np.zeros((1, g.OH, g.OW, ly.M), np.uint8)
        o = ffi.new("onnxc_qgemm_output *")
        gc = ffi.new("onnxc_qconv_geom *", dict(zip(QC.Geom.FIELDS, g.values())))
        keep = [x, y, o, gc]
        if ly.dw:
            k = QC.dw_kernel_for(self.row, "uint8")
            blob = QC.pack_dw(w)
        else:
            k = QC.conv_kernel_for(self.row, "uint8", w, ly.group)
            blob = QC.pack_w(w, k, None, ly.group)
            gc.algo = algo
        packed = aligned(blob.size, np.uint8)
        packed[:] = blob
        # scale so that the outputs spread over the uint8 range
        sample = self._ref_acc(ly, x, xz, w, rows=min(g.OH, 4))
        ys = np.float32(max(1.0, float(np.abs(sample).max())) / 100.0)  # onnxruntime's y_scale (x, w scales 1)
        scale = np.float32(1.0) / ys  # the multiplier as onnxruntime computes it
        sc = np.array([scale], np.float32)
        o.type, o.C, o.ldc = 1, ptr(y), ly.M
        o.scale, o.scale_per_column, o.zero_point, o.qmin, o.qmax = ffi.cast("float *", sc.ctypes.data), 0, 128, 0, 255
        keep += [packed, sc]
        info = ffi.addressof(lib, k.name + "_info")
        if ly.dw:
            call = lambda: lib.onnxc_qconv_dw(info, gc, ptr(x), xz, ptr(packed), ffi.NULL, o, ffi.NULL)  # noqa: E731
            used = k.name
        else:
            ws = aligned(max(1, lib.onnxc_qconv_workspace_bytes(info, gc)), np.uint8)
            keep.append(ws)
            call = lambda: lib.onnxc_qconv(info, gc, ptr(x), xz, ptr(packed), ffi.NULL, o, ffi.NULL, ptr(ws))  # noqa: E731
            a = algo or lib.onnxc_qconv_choose_algo(info, gc)
            used = f"{ffi.string(lib.onnxc_qgemm_resolve(info, g.OH * g.OW).name).decode()} {QC.ALGO_NAMES[a]}"
        assert call() == 0
        if check:
            rows = min(g.OH, 4)
            want = np.clip(np.rint(sample.astype(np.float32) * scale) + 128, 0, 255).astype(np.uint8)
            assert np.array_equal(y[:, :rows], want), f"{k.name}: wrong result on {ly.name}"
        return call, keep, used, (x, xz, w, ys)

    @staticmethod
    def _ref_acc(ly, x, xz, w, rows):
        g = ly.geom
        xs = np.pad(x.astype(np.int64) - xz, ((0, 0), (ly.p, ly.p), (ly.p, ly.p), (0, 0)))
        acc = np.zeros((1, rows, g.OW, ly.M), np.int64)
        cg, mg = ly.C // ly.group, ly.M // ly.group
        for kh in range(ly.K):
            for kw in range(ly.K):
                patch = xs[:, kh:kh + (rows - 1) * ly.s + 1:ly.s, kw:kw + (g.OW - 1) * ly.s + 1:ly.s]
                for grp in range(ly.group):
                    acc[..., grp * mg:(grp + 1) * mg] += patch[..., grp * cg:(grp + 1) * cg] @ \
                        w[grp * mg:(grp + 1) * mg, :, kh, kw].astype(np.int64).T
        return acc


def ort_session(ly: Layer, x, xz, w, ys, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    g = ly.geom
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], domain="com.microsoft",
                            kernel_shape=[ly.K, ly.K], strides=[ly.s, ly.s], pads=[ly.p] * 4, group=ly.group,
                            channels_last=1)
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "xs"), numpy_helper.from_array(np.array(xz, np.uint8), "xz"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(1.0, np.float32), "ws"),
             numpy_helper.from_array(np.array(0, np.int8), "wz"),
             numpy_helper.from_array(np.array(ys, np.float32), "ys"),
             numpy_helper.from_array(np.array(128, np.uint8), "yz")]
    graph = helper.make_graph([node], "qconv", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, g.OH, g.OW, ly.M])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isa", default=",".join(Q.host_isas()), help="ISA rows, comma separated")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=0.3, help="time budget per measurement")
    ap.add_argument("--layers", default="resnet,mobilenet", help="resnet, mobilenet (sample layers), resnet50 (all "
                    "of its convolutions, with the model totals)")
    ap.add_argument("--no-ort", action="store_true")
    ap.add_argument("--only", default="", help="run the layers whose name contains this")
    ap.add_argument("--algo", default="auto", choices=["auto", "implicit", "im2col", "direct"])
    args = ap.parse_args()
    rows = [r for r in args.isa.split(",") if r]
    missing = [r for r in rows if r not in Q.host_isas()]
    if missing:
        sys.exit(f"this host cannot run {missing}")
    algo = {"auto": QC.AUTO, "implicit": QC.IMPLICIT, "im2col": QC.IM2COL, "direct": QC.DIRECT}[args.algo]
    threads = [int(t) for t in args.threads.split(",")]
    sets = {**{k: [(n, sp, 1) for n, sp in v] for k, v in LAYERS.items()}, "resnet50": RESNET50}
    layers = [Layer(n, sp, c) for name in args.layers.split(",") for n, sp, c in sets[name] if args.only in n]
    flags = host_flags()
    print(f"CPU: {cpu_model()}; {os.cpu_count()} CPUs")
    print("ISA flags: " + " ".join(sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))))
    print("int8: uint8 NHWC activations, int8 weights, requantized uint8 output; GOPS = 2 * MACs / s (direct MACs)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f32 = {}
        for row in rows:
            base = isa_table.BY_NAME[row].base
            if base not in f32:
                f32[base] = F32Conv(base, tmp)
            q = QConvLib(row, tmp)
            for nthreads in threads:
                q.lib.onnxc_rt_set_num_threads(nthreads)
                f32[base].lib.onnxc_rt_set_num_threads(nthreads)
                print(f"\n[{row}] {nthreads} thread{'s' if nthreads > 1 else ''}: f32 NCHWc b{f32[base].b} ({base}) "
                      f"vs int8 qconv{'' if args.no_ort else ' vs onnxruntime QLinearConv (NHWC)'}")
                seven = Q.kernel_for(row, "uint8").isa == "avx2"
                print(f"{'layer':<22} | {'f32 kind':<10} {'GOPS':>6} | {'int8':>6} {'x f32':>5} "
                      f"{'x dir':>5} |" + (f" {'7-bit':>6} {'x f32':>5} |" if seven else "") +
                      f" {'ort':>6} {'x ort':>5} | kernel")
                total = {"f32": 0.0, "int8": 0.0, "ort": 0.0, "int8_7": 0.0}
                for ly in layers:
                    rng = np.random.default_rng(ly.macs % 100003)
                    kinds = f32[base].kinds(ly)
                    tf = {}
                    for kind, tile in kinds:
                        call, keep = f32[base].prepare(ly, kind, tile, rng)
                        tf[kind] = best_time(call, args.seconds, nthreads > 1)
                        del keep
                    chosen = kinds[0][0]
                    qcall, qkeep, used, (x, xz, w, ys) = q.prepare(ly, rng, algo if not ly.dw else QC.AUTO)
                    tq = best_time(qcall, args.seconds, nthreads > 1)
                    gops = lambda t: 2 * ly.macs / t / 1e9  # noqa: E731
                    label = chosen + (f"{kinds[0][1]}" if chosen == "winograd" else "")
                    line = (f"{ly.name:<22} | {label:<10} {gops(tf[chosen]):6.1f} | {gops(tq):6.1f} {tf[chosen] / tq:5.2f} "
                            f"{(tf['direct'] / tq if 'direct' in tf and chosen != 'direct' else float('nan')):5.2f} |")
                    if seven and not ly.dw:  # the pair-safe vpmaddubsw kernel on 7-bit (reduce_range) weights
                        c7, k7, used7, _ = q.prepare(ly, rng, algo, bits=7)
                        t7 = best_time(c7, args.seconds, nthreads > 1)
                        total["int8_7"] += ly.count * t7
                        del k7
                        line += f" {gops(t7):6.1f} {tf[chosen] / t7:5.2f} |"
                    elif seven:
                        total["int8_7"] += ly.count * tq
                        line += f" {'':>6} {'':>5} |"
                    if not args.no_ort:
                        sess = ort_session(ly, x, xz, w, ys, nthreads)
                        feed = {"x": x}
                        want = sess.run(None, feed)[0]
                        y = np.asarray(qkeep[1])
                        same = "" if np.array_equal(want, y) else " (differs!)"
                        # one intra-op thread: onnxruntime computes on the calling thread (its CPU time)
                        to = best_time(lambda: sess.run(None, feed), args.seconds, nthreads > 1)
                        line += f" {gops(to):6.1f} {to / tq:5.2f} |{same}"
                        del sess
                    else:
                        line += f" {'':>6} {'':>5} |"
                    line += f" {used}"
                    print(line, flush=True)
                    total["f32"] += ly.count * tf[chosen]
                    total["int8"] += ly.count * tq
                    if not args.no_ort:
                        total["ort"] += ly.count * to
                if "resnet50" in args.layers and not args.only:
                    print(f"ResNet-50 convolutions (x count): f32 {total['f32'] * 1e3:.2f} ms, int8 {total['int8'] * 1e3:.2f} ms "
                          f"({total['f32'] / total['int8']:.2f}x f32)" +
                          (f", int8 on 7-bit weights {total['int8_7'] * 1e3:.2f} ms ({total['f32'] / total['int8_7']:.2f}x)"
                           if seven else "") +
                          ("" if args.no_ort else f", onnxruntime QLinearConv {total['ort'] * 1e3:.2f} ms "
                           f"({total['ort'] / total['int8']:.2f}x)"))
                q.lib.onnxc_rt_set_num_threads(0)
                f32[base].lib.onnxc_rt_set_num_threads(0)


if __name__ == "__main__":
    main()
