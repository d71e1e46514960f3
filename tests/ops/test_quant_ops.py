"""Quantized ops (issue 13) compiled C-only (``fallback=False``: a node without a C kernel fails
the compile) against onnxruntime 1.x on random data: integer outputs bit-exact, float outputs
(MatMulIntegerToFloat, DynamicQuantizeMatMul, QGemm without y) bit-exact as well (onnxc computes
float(acc) * scale + bias in the order onnxruntime does). Several nodes share one model so that
one compile covers many shapes; the GEMM family is compiled for every ISA row this host runs
(each row's int8 kernel: tile edges at M, K, N around the register tiles and K blocks), the
elementwise ops (plain C) for the host and the portable build.

The numpy references of ops/quant.py are checked against onnxruntime too (the interpreter runs
them), and the tests that pin onnxruntime's exact operation order (QLinearAdd's fused
multiply-adds) use parameters for which the plain formula gives a different answer.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxc
from helpers import ort_run
from onnxc.cpu import runnable_isas
from onnxc.errors import ModelError
from onnxc.ops import quant as Q

MS = "com.microsoft"
F32 = np.float32
RNG = np.random.default_rng(20261207)
U8, S8 = np.uint8, np.int8


def q(dt, shape):
    i = np.iinfo(dt)
    return RNG.integers(i.min, i.max + 1, shape).astype(dt)


def zp(dt):
    i = np.iinfo(dt)
    return np.array(RNG.integers(i.min, i.max + 1), dt)


def sc(lo=-5.0, hi=0.0, n=None):
    return np.exp(RNG.uniform(lo, hi, n)).astype(F32) if n else np.array(np.exp(RNG.uniform(lo, hi)), F32)


class Model:
    """Independent nodes in one graph: each node's inputs are graph inputs (fed) or initializers."""

    def __init__(self):
        self.nodes, self.inputs, self.outputs, self.inits, self.feed = [], [], [], [], {}

    def node(self, op, inputs, out_dtype, out_shape, domain=MS, n_out=1, out_specs=None, **attrs):
        """inputs: [(array, kind)] with kind 'in' (graph input), 'c' (initializer) or None
        (omitted input: array None)."""
        k = len(self.nodes)
        names = []
        for j, (arr, kind) in enumerate(inputs):
            if arr is None:
                names.append("")
                continue
            name = f"n{k}_i{j}"
            names.append(name)
            arr = np.asarray(arr)
            if kind == "in":
                elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
                self.inputs.append(helper.make_tensor_value_info(name, elem, list(arr.shape)))
                self.feed[name] = arr
            else:
                self.inits.append(numpy_helper.from_array(arr, name))
        specs = out_specs or [(out_dtype, out_shape)]
        outs = [f"n{k}_y{j}" for j in range(len(specs))]
        for o, (dt, shape) in zip(outs, specs):
            self.outputs.append(helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(dt)),
                                                              list(shape)))
        self.nodes.append(helper.make_node(op, names, outs, domain=domain, name=f"{op}_{k}", **attrs))
        return self

    def build(self, opset=18):
        g = helper.make_graph(self.nodes, "quant", self.inputs, self.outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(MS, 1)])
        m.ir_version = 8
        return m


def check(model: Model, tmp_path, target="native", opset=18):
    """Compile C-only for ``target`` and compare every output with onnxruntime, bit for bit;
    also the interpreter (the numpy references of ops/quant.py). Returns the compiled model."""
    m = model.build(opset)
    ref = ort_run(m, model.feed)
    c = onnxc.compile(m, output_dir=tmp_path / f"o_{target}", target=target, fallback=False)
    assert c.fallback_nodes == []
    out = c.run(None, model.feed)
    from onnxc import frontend
    from onnxc.ops.interp import run_graph
    interp = run_graph(frontend.load(m), model.feed)
    for name, o, r, i in zip([v.name for v in m.graph.output], out, ref, interp):
        assert o.dtype == r.dtype and o.shape == r.shape, (name, o.dtype, r.dtype, o.shape, r.shape)
        np.testing.assert_array_equal(o, r, err_msg=f"{name}: C vs onnxruntime")
        np.testing.assert_array_equal(i, r, err_msg=f"{name}: numpy reference vs onnxruntime")
    return c


# --- GEMM family --------------------------------------------------------------------------------
# (M, K, N) around the register tiles (4x16 .. 32x32), the packed panel (16), K groups (4, 64)
SHAPES = [(1, 1, 1), (7, 65, 17), (33, 130, 48), (12, 64, 32), (5, 300, 70), (1, 257, 1)]


def _gemm_model(kind: int) -> Model:
    """Every GEMM-family op over the shapes above; ``kind`` varies which types and parameter
    forms meet which shapes, so that the model stays small."""
    m = Model()
    pairs = [(U8, S8), (U8, U8), (S8, S8)]
    for s, (M, K, N) in enumerate(SHAPES):
        at, bt = pairs[(s + kind) % 3]
        per_col = (s + kind) % 2 == 1 and N > 1
        a, b = q(at, [M, K]), q(bt, [K, N])
        bz = np.array([zp(bt) for _ in range(N)], bt) if per_col else zp(bt)
        bs = sc(-6, -2, N) if per_col else sc(-6, -2)
        b_kind = "in" if s % 3 == 2 else "c"  # runtime B packed by the C packer
        bz_kind = "c" if per_col or b_kind == "c" else "in"
        # MatMulInteger: int32 out; runtime A zero point on some shapes
        m.node("MatMulInteger", [(a, "in"), (b, b_kind), (zp(at), "in" if s % 2 else "c"), (bz, bz_kind)],
               np.int32, [M, N], domain="")
        # QLinearMatMul
        m.node("QLinearMatMul", [(a, "in"), (sc(), "c"), (zp(at), "c"), (b, b_kind), (bs, "c"), (bz, bz_kind),
                                 (np.array(sc() * 30, F32), "c"), (zp(at), "c")], at, [M, N], domain="")
        # QGemm: y quantized with a per-column int32 C, or float without y; transposes
        ta, tb = (s + kind) % 2, (s // 2 + kind) % 2
        aa, bb = (a.T.copy() if ta else a), (b.T.copy() if tb else b)
        c = RNG.integers(-20000, 20000, [N]).astype(np.int32)
        if (s + kind) % 3 == 0:
            m.node("QGemm", [(aa, "in"), (sc(), "c"), (zp(at), "c"), (bb, b_kind), (bs, "c"), (bz, bz_kind),
                             (c, "c"), (np.array(sc() * 30, F32), "c"), (zp(at), "c")], at, [M, N],
                   alpha=0.75, transA=ta, transB=tb)
        else:
            m.node("QGemm", [(aa, "in"), (sc(), "c"), (zp(at), "c"), (bb, b_kind), (bs, "c"), (bz, bz_kind),
                             (c if s % 2 else None, "c")], F32, [M, N], transA=ta, transB=tb)
        if (at, bt) != (S8, U8):
            bias = RNG.standard_normal(N).astype(F32)
            m.node("MatMulIntegerToFloat", [(a, "in"), (b, b_kind), (sc(), "c"), (bs, "c"), (zp(at), "c"),
                                            (bz, bz_kind), (bias if s % 2 else None, "c")], F32, [M, N])
            af = (RNG.standard_normal([M, K]) * 3).astype(F32)
            m.node("DynamicQuantizeMatMul", [(af, "in"), (b, b_kind), (bs, "c"), (bz, bz_kind),
                                             (bias if s % 2 == 0 else None, "c")], F32, [M, N])
    return m


@pytest.mark.parametrize("isa", runnable_isas())
@pytest.mark.parametrize("kind", [0, 1])
def test_gemm_family_every_isa(isa, kind, tmp_path):
    check(_gemm_model(kind), tmp_path, target=isa)


def test_gemm_batched_and_vectors(tmp_path):
    """numpy.matmul shapes: A with batch dims over a 2-D B (one product of all rows), batched A
    and B (constant B packed per batch slice, runtime B packed per call), broadcast batches,
    1-D operands."""
    m = Model()
    a3 = q(U8, [2, 5, 40])
    b2 = q(S8, [40, 19])
    m.node("MatMulInteger", [(a3, "in"), (b2, "c"), (zp(U8), "c"), (zp(S8), "c")], np.int32, [2, 5, 19], domain="")
    b3 = q(S8, [2, 40, 19])
    m.node("MatMulInteger", [(a3, "in"), (b3, "c"), (zp(U8), "c"), (zp(S8), "c")], np.int32, [2, 5, 19], domain="")
    m.node("MatMulInteger", [(a3, "in"), (b3, "in"), (zp(U8), "c"), (zp(S8), "c")], np.int32, [2, 5, 19], domain="")
    a4 = q(U8, [3, 1, 4, 40])
    b4 = q(S8, [2, 40, 9])
    m.node("QLinearMatMul", [(a4, "in"), (sc(), "c"), (zp(U8), "c"), (b4, "in"), (sc(), "c"), (zp(S8), "c"),
                             (np.array(0.3, F32), "c"), (zp(U8), "c")], U8, [3, 2, 4, 9], domain="")
    av, bv = q(U8, [40]), q(U8, [40])
    m.node("MatMulInteger", [(av, "in"), (b2.view(U8), "c")], np.int32, [19], domain="")
    m.node("MatMulInteger", [(a3, "in"), (bv, "c"), (zp(U8), "c"), (zp(U8), "c")], np.int32, [2, 5], domain="")
    m.node("MatMulIntegerToFloat", [(a3, "in"), (b3, "in"), (sc(), "c"), (sc(), "c")], F32, [2, 5, 19])
    check(m, tmp_path)


def test_qgemm_c_forms(tmp_path):
    """QGemm's C (int32) in every broadcast form: none, scalar, [N], [1, N], [M, 1], [M, N], a
    runtime scalar; quantized and float outputs."""
    m = Model()
    M, K, N = 9, 70, 21
    a, b = q(U8, [M, K]), q(S8, [K, N])
    for cshape in ([], [1], [N], [1, N], [M, 1], [M, N], [1, 1]):
        c = RNG.integers(-3000, 3000, cshape).astype(np.int32)
        for quant in (True, False):
            ins = [(a, "in"), (sc(), "c"), (zp(U8), "c"), (b, "c"), (sc(-6, -3), "c"), (zp(S8), "c"), (c, "c")]
            if quant:
                ins += [(np.array(0.5, F32), "c"), (zp(U8), "c")]
            m.node("QGemm", ins, U8 if quant else F32, [M, N], alpha=1.5)
    c = RNG.integers(-3000, 3000, [1]).astype(np.int32)
    m.node("QGemm", [(a, "in"), (sc(), "c"), (zp(U8), "c"), (b, "c"), (sc(-6, -3), "c"), (zp(S8), "c"), (c, "in"),
                     (np.array(0.5, F32), "c"), (zp(U8), "c")], U8, [M, N])
    check(m, tmp_path)


def test_gemm_runtime_scales(tmp_path):
    """Scales and zero points that are graph inputs (per tensor): the scale product is formed in
    the emitted C in onnxruntime's order."""
    m = Model()
    M, K, N = 6, 50, 20
    a, b = q(U8, [M, K]), q(S8, [K, N])
    m.node("QLinearMatMul", [(a, "in"), (sc(), "in"), (zp(U8), "in"), (b, "c"), (sc(-6, -2, N), "c"),
                             (np.array([zp(S8) for _ in range(N)], S8), "c"), (np.array(0.2, F32), "in"),
                             (zp(U8), "in")], U8, [M, N], domain="")
    m.node("QLinearMatMul", [(a, "in"), (sc(), "in"), (zp(U8), "in"), (b, "in"), (sc(-6, -2), "in"),
                             (zp(S8), "in"), (np.array(0.2, F32), "in"), (zp(U8), "in")], U8, [M, N], domain="")
    m.node("QGemm", [(a, "in"), (sc(), "in"), (zp(U8), "in"), (b, "c"), (sc(-6, -2, N), "c"),
                     (np.array([0] * N, S8), "c"), (None, None), (np.array(0.2, F32), "in"), (zp(U8), "in")],
           U8, [M, N], alpha=0.5)
    m.node("MatMulIntegerToFloat", [(a, "in"), (b, "c"), (sc(), "in"), (sc(-6, -2), "in"), (zp(U8), "in")],
           F32, [M, N])
    check(m, tmp_path)


def test_gemm_extremes(tmp_path):
    """Saturating operands: all 255 x all -128 (the AVX2 vpmaddubsw pair limit), zero points at
    both ends, outputs clamped at both ends of the range."""
    m = Model()
    M, K, N = 8, 96, 33
    a = np.full([M, K], 255, U8)
    b = np.full([K, N], -128, S8)
    m.node("MatMulInteger", [(a, "in"), (b, "c")], np.int32, [M, N], domain="")
    m.node("MatMulInteger", [(a, "in"), (b, "in"), (np.array(0, U8), "c"), (np.array(127, S8), "c")],
           np.int32, [M, N], domain="")
    for yz in (0, 255):
        m.node("QLinearMatMul", [(q(U8, [M, K]), "in"), (np.array(0.1, F32), "c"), (np.array(255, U8), "c"),
                                 (q(S8, [K, N]), "c"), (np.array(0.1, F32), "c"), (np.array(-128, S8), "c"),
                                 (np.array(0.01, F32), "c"), (np.array(yz, U8), "c")], U8, [M, N], domain="")
    check(m, tmp_path)


def test_gemm_declined_cases_fall_back(tmp_path):
    """Per-row A zero points (MatMulInteger's spec allows them) have no int8 kernel path: the node
    goes to the fallback with that reason. Neither onnxruntime nor onnx.reference runs them
    either, so running raises FallbackError naming the partition (not a wrong answer)."""
    from onnxc.errors import FallbackError
    mm = Model()
    a, b = q(U8, [4, 30]), q(U8, [30, 5])
    mm.node("MatMulInteger", [(a, "in"), (b, "c"), (np.array([1, 2, 3, 4], U8), "c")], np.int32, [4, 5], domain="")
    c = onnxc.compile(mm.build(), output_dir=tmp_path / "o")
    assert [n["op"] for n in c.fallback_nodes] == ["MatMulInteger"]
    assert "per-row A parameters" in c.fallback_nodes[0]["why"]
    with pytest.raises(FallbackError, match="MatMulInteger"):
        c.run(None, mm.feed)


# --- QLinearAdd / QLinearMul ----------------------------------------------------------------------
BROADCASTS = [([3, 40], [3, 40]), ([3, 40], [40]), ([3, 40], [3, 1]), ([3, 1], [1, 40]), ([1], [5, 7]),
              ([5, 7], [1]), ([], [4]), ([2, 1, 5], [1, 3, 1]), ([1], [1]), ([4, 1], [1, 1]), ([1, 1], [4, 1]),
              ([2, 3, 70], [2, 3, 70])]


@pytest.mark.parametrize("target", ["native", "generic", "avx2"])
def test_qlinear_add_mul(target, tmp_path):
    if target not in ("native", "generic") and target not in runnable_isas():
        pytest.skip(f"host cannot run {target}")
    m = Model()
    for op in ("QLinearAdd", "QLinearMul"):
        for dt in (U8, S8):
            for sa, sb in BROADCASTS:
                out = list(np.broadcast_shapes(tuple(sa), tuple(sb)))
                m.node(op, [(q(dt, sa), "in"), (sc(), "c"), (zp(dt), "c"), (q(dt, sb), "in"), (sc(), "c"),
                            (zp(dt), "c"), (sc(), "c"), (zp(dt), "c")], dt, out)
            # runtime scales and zero points (onnxruntime's type inference rejects omitted ones)
            m.node(op, [(q(dt, [6, 9]), "in"), (sc(), "in"), (zp(dt), "in"), (q(dt, [9]), "in"), (sc(), "in"),
                        (zp(dt), "in"), (sc(), "in"), (zp(dt), "in")], dt, [6, 9])
            # same shapes (QLinearAdd's vectorized runtime loop), runtime parameters, 2 tasks + a tail
            # (QLinearMul's loop split over tasks once failed to compile: it read the run-time zero
            # points from variables its task function is not given)
            m.node(op, [(q(dt, [2, 129, 67]), "in"), (sc(), "in"), (zp(dt), "in"), (q(dt, [2, 129, 67]), "in"),
                        (sc(), "in"), (zp(dt), "in"), (sc(), "in"), (zp(dt), "in")], dt, [2, 129, 67])
    check(m, tmp_path, target=target)


def _add_sensitive_params(dt, want: int):
    """QLinearAdd parameter sets for which MLAS's fused F = zc - fma(ra, za, rb * zb) differs
    from the unfused formula in at least one output over all 256 x 256 input pairs."""
    found, rng = [], np.random.default_rng(5)
    info = np.iinfo(dt)
    a = np.arange(256).astype(U8).view(dt).reshape(1, 256).repeat(256, 0)
    b = np.arange(256).astype(U8).view(dt).reshape(256, 1).repeat(256, 1)
    while len(found) < want:
        s = [F32(np.exp(rng.uniform(-6, 1))) for _ in range(3)]
        z = [int(rng.integers(info.min, info.max + 1)) for _ in range(3)]
        ra, rb, fused = Q.qladd_params(s[0], z[0], s[1], z[1], s[2], z[2])
        plain = F32(F32(z[2]) - F32(F32(ra * F32(z[0])) + F32(rb * F32(z[1]))))
        if fused == plain:
            continue
        y1 = Q.cvt_sat(Q.fma32(a.astype(F32), ra, Q.fma32(b.astype(F32), rb, fused)), dt)
        y2 = Q.cvt_sat(Q.fma32(a.astype(F32), ra, Q.fma32(b.astype(F32), rb, plain)), dt)
        if (y1 != y2).any():
            found.append((s, z, a, b, y2))
    return found


def test_qlinear_add_matches_onnxruntime_operation_order(tmp_path):
    """Parameters where onnxruntime's fused multiply-adds change the answer: onnxc agrees with
    onnxruntime, and the plain formula would not (so the test can fail)."""
    m = Model()
    plain_outputs = []
    for dt in (U8, S8):
        for s, z, a, b, y_plain in _add_sensitive_params(dt, 3):
            m.node("QLinearAdd", [(a, "in"), (np.array(s[0], F32), "c"), (np.array(z[0], dt), "c"), (b, "in"),
                                  (np.array(s[1], F32), "c"), (np.array(z[1], dt), "c"), (np.array(s[2], F32), "c"),
                                  (np.array(z[2], dt), "c")], dt, [256, 256])
            plain_outputs.append(y_plain)
    c = check(m, tmp_path)
    ref = ort_run(m.build(), m.feed)
    assert all((r != p).any() for r, p in zip(ref, plain_outputs))
    assert c is not None


# --- lookup-table ops, pools, concat, softmax ------------------------------------------------------
@pytest.mark.parametrize("target", ["native", "generic"])
def test_qlinear_lookup_ops(target, tmp_path):
    """QLinearSigmoid / QLinearLeakyRelu over every input byte (the whole table)."""
    m = Model()
    for dt in (U8, S8):
        x = np.arange(256).astype(U8).view(dt).reshape(4, 64)
        for k in range(4):
            ins = [(x, "in"), (sc(-6, 0), "c"), (zp(dt) if k else None, "c"), (sc(-9, -3), "c"), (zp(dt), "c")]
            m.node("QLinearSigmoid", ins, dt, [4, 64])
            m.node("QLinearLeakyRelu", ins, dt, [4, 64], alpha=float(RNG.uniform(0, 0.5)))
        m.node("QLinearLeakyRelu", [(x, "in"), (sc(), "c"), (zp(dt), "c"), (sc(), "c"), (zp(dt), "c")], dt, [4, 64])
    check(m, tmp_path, target=target)


def test_qlinear_global_average_pool(tmp_path):
    m = Model()
    for dt in (U8, S8):
        for cl in (0, 1):
            for shape in ([2, 3, 5, 7], [1, 16, 4], [2, 5, 3, 3, 2], [1, 64, 7, 7]):
                lo, hi = (2, len(shape)) if not cl else (1, len(shape) - 1)
                out = [1 if lo <= k < hi else d for k, d in enumerate(shape)]
                xs = sc()
                m.node("QLinearGlobalAveragePool", [(q(dt, shape), "in"), (xs, "c"), (zp(dt), "c"),
                                                    (np.array(xs * RNG.uniform(0.3, 3), F32), "c"), (zp(dt), "c")],
                       dt, out, channels_last=cl)
    check(m, tmp_path)


POOLS = [dict(kernel_shape=[3, 3]), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
         dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
         dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1),
         dict(kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1, count_include_pad=1, pads=[1, 0, 1, 1]),
         dict(kernel_shape=[3, 2], auto_pad="SAME_UPPER", strides=[2, 1]),
         dict(kernel_shape=[3, 2], auto_pad="SAME_LOWER", strides=[2, 2], count_include_pad=1),
         dict(kernel_shape=[7, 9]), dict(kernel_shape=[3]), dict(kernel_shape=[2, 2, 2], strides=[1, 2, 1])]


def test_qlinear_average_pool(tmp_path):
    """Windows clipped at the borders, padding counted or not, ceil_mode, auto_pad, 1-3 spatial
    dims, NCHW and channels_last; a window covering the whole image takes onnxruntime's integer
    global-pool path."""
    from onnxc.ir import Node, Value
    m = Model()
    for dt in (U8, S8):
        for cl in (0, 1):
            for kw in POOLS:
                sp = [7, 9, 5][:len(kw["kernel_shape"])]
                shape = [2] + sp + [3] if cl else [2, 3] + sp
                x = q(dt, shape)
                consts = [sc(), zp(dt), sc(), zp(dt)]
                probe = Node("QLinearAveragePool", [Value("x", dt, shape)] + [Value(f"c{i}", const=v)
                                                                           for i, v in enumerate(consts)],
                             [Value("y")], dict(kw, channels_last=cl), domain=MS, opset=1)
                out = Q._qavgpool_rule(probe)[0][1]
                m.node("QLinearAveragePool", [(x, "in")] + [(v, "c") for v in consts], dt, out, channels_last=cl, **kw)
    check(m, tmp_path)


def test_qlinear_concat(tmp_path):
    """Inputs requantized through their tables, or copied when their scale and zero point are
    the output's; every axis."""
    m = Model()
    for dt in (U8, S8):
        for axis in (0, 1, -1):
            for same in (False, True):
                xs = []
                for k in range(3):
                    shape = [2, 3, 4]
                    shape[axis] += k
                    xs.append(q(dt, shape))
                ys, yz = sc(), zp(dt)
                ins = [(ys, "c"), (yz, "c")]
                for k, x in enumerate(xs):
                    ins += [(x, "in"), (ys if same and k == 1 else sc(), "c"), (yz if same and k == 1 else zp(dt), "c")]
                m.node("QLinearConcat", ins, dt, list(np.concatenate(xs, axis=axis).shape), axis=axis)
    check(m, tmp_path)


def test_qlinear_softmax(tmp_path):
    """opset 12 (rows from the axis on) and 13 (one axis, not necessarily the last), uint8 and
    int8, the usual 1/256 output scale and small ones where onnxruntime's product overflows to
    inf and saturates. Own generator: the rare inputs of test_qlinear_softmax_rare_mismatch must
    not turn up here depending on which tests ran before in the worker."""
    global RNG
    saved, RNG = RNG, np.random.default_rng(1207)
    try:
        _qlinear_softmax(tmp_path)
    finally:
        RNG = saved


@pytest.mark.xfail(reason="one element in 300 random uint8 nodes (y_scale ~1e-3, where the exact value is "
                          "far above 255): C and the numpy reference saturate to 255, onnxruntime gives 251; "
                          "onnxruntime's operation sequence there is not reproduced yet", strict=True)
def test_qlinear_softmax_rare_mismatch(tmp_path):
    x = np.array([[[47, 235, 225, 147, 228, 71, 175], [73, 158, 12, 221, 49, 93, 11], [205, 104, 184, 222, 14, 124, 25],
                   [48, 28, 93, 69, 207, 246, 164], [226, 213, 157, 149, 183, 91, 37]],
                  [[141, 167, 145, 138, 10, 244, 34], [136, 84, 116, 86, 128, 230, 133],
                   [222, 1, 187, 130, 230, 248, 225],
                   [60, 160, 213, 91, 64, 185, 148], [43, 62, 245, 46, 140, 48, 244]]], U8)
    m = Model()
    m.node("QLinearSoftmax", [(x, "in"), (np.array(0.016648689284920692, F32), "c"), (np.array(157, U8), "c"),
                              (np.array(0.0009639401105232537, F32), "c"), (np.array(0, U8), "c")],
           U8, [2, 5, 7], axis=1, opset=13)
    check(m, tmp_path)


def _qlinear_softmax(tmp_path):
    m = Model()
    for dt in (U8, S8):
        for opset in (12, 13):
            for shape, axis in (([3, 10], -1), ([2, 5, 7], 1), ([4, 300], 1), ([2, 3, 4], 0), ([6, 33], -1)):
                for ys in (np.array(1 / 256, F32), sc(-8, -2)):
                    yz = zp(dt) if RNG.uniform() < 0.5 else np.array(np.iinfo(dt).min, dt)
                    m.node("QLinearSoftmax", [(q(dt, shape), "in"), (sc(), "c"), (zp(dt), "c"), (ys, "c"), (yz, "c")],
                           dt, shape, axis=axis, opset=opset)
    check(m, tmp_path)


def test_lookup_ops_with_runtime_parameters_fall_back(tmp_path):
    """The tables are built at compile time: a runtime scale sends the node to the fallback with
    that reason (and the answer still matches onnxruntime)."""
    mm = Model()
    x = q(U8, [3, 8])
    mm.node("QLinearSigmoid", [(x, "in"), (sc(), "in"), (zp(U8), "c"), (sc(), "c"), (zp(U8), "c")], U8, [3, 8])
    model = mm.build()
    c = onnxc.compile(model, output_dir=tmp_path / "o")
    assert [n["op"] for n in c.fallback_nodes] == ["QLinearSigmoid"]
    assert "lookup table" in c.fallback_nodes[0]["why"]
    np.testing.assert_array_equal(c.run(None, mm.feed)[0], ort_run(model, mm.feed)[0])


# --- invalid models ---------------------------------------------------------------------------------
def _compile_invalid(model: Model, tmp_path):
    with pytest.raises(ModelError) as e:
        onnxc.compile(model.build(), output_dir=tmp_path / "o", fallback=False)
    return str(e.value)


@pytest.mark.parametrize("fallback", [False, True])
def test_custom_domain_rule_refuses_at_compile_time(fallback, tmp_path):
    """A com.microsoft op has no onnx schema: its shape rule's checks are the only ones, and they
    refuse the model at compile time even with the fallback on (onnxruntime's quantize_static
    once wrote a QGemm whose C was another tensor's int8 initializer; onnxruntime rejects it too)."""
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (sc(), "sa"), (zp(U8), "za"), (q(S8, [5, 4]), "b"), (sc(), "sb"), (zp(S8), "zb"), (q(S8, [4]), "c"),
        (sc(), "sy"), (zp(U8), "zy"))]
    g = helper.make_graph(
        [helper.make_node("QGemm", ["a", "sa", "za", "b", "sb", "zb", "c", "sy", "zy"], ["t"], domain=MS, name="qg"),
         helper.make_node("Identity", ["t"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 5])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [3, 4])], inits)  # 't' untyped, as the quantizer wrote it
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    with pytest.raises(ModelError, match=r"QGemm.*input 6 'c' \(C\) is int8, expected int32"):
        onnxc.compile(model, output_dir=tmp_path / "o", fallback=fallback)


def test_custom_domain_rule_refuses_inside_a_subgraph(tmp_path):
    """The same refusal for a QGemm inside an If branch: shape inference checks the ops outside
    onnx's domains in subgraphs too (shapes.infer_graph with ``refused``), validation names the
    branch."""
    inits = [numpy_helper.from_array(a, n) for a, n in (
        (sc(), "sa"), (zp(U8), "za"), (q(S8, [5, 4]), "b"), (sc(), "sb"), (zp(S8), "zb"), (q(S8, [4]), "c"),
        (sc(), "sy"), (zp(U8), "zy"))]
    qgemm = helper.make_node("QGemm", ["a", "sa", "za", "b", "sb", "zb", "c", "sy", "zy"], ["t"], domain=MS,
                             name="qg")
    then = helper.make_graph([qgemm], "then", [], [helper.make_tensor_value_info("t", TensorProto.UINT8, [3, 4])],
                             inits)
    other = helper.make_graph([helper.make_node("Identity", ["a"], ["e"])], "else", [],
                              [helper.make_tensor_value_info("e", TensorProto.UINT8, [3, 4])])
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)], "g",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [3, 5]),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [3, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid(MS, 1)])
    model.ir_version = 8
    with pytest.raises(ModelError, match=r"QGemm, in subgraph 'then'.*input 6 'c' \(C\) is int8, expected int32"):
        onnxc.compile(model, output_dir=tmp_path / "o")


def test_invalid_nodes_are_model_errors(tmp_path):
    cases = []
    m = Model()  # zero point dtype differs from the data's
    m.node("QLinearAdd", [(q(U8, [4]), "in"), (sc(), "c"), (zp(S8), "c"), (q(U8, [4]), "in"), (sc(), "c"),
                          (zp(U8), "c"), (sc(), "c"), (zp(U8), "c")], U8, [4])
    cases.append((m, ["QLinearAdd_0", "zero point", "int8", "uint8"]))
    m = Model()  # inner dimensions
    m.node("QGemm", [(q(U8, [3, 5]), "in"), (sc(), "c"), (zp(U8), "c"), (q(S8, [6, 4]), "c"), (sc(), "c"),
                     (zp(S8), "c")], F32, [3, 4])
    cases.append((m, ["QGemm_0", "6", "5"]))
    m = Model()  # tuple count
    m.node("QLinearConcat", [(sc(), "c"), (zp(U8), "c"), (q(U8, [2]), "in"), (sc(), "c")], U8, [2], axis=0)
    cases.append((m, ["QLinearConcat_0", "input count", "2 + 3k"]))
    m = Model()  # a scale per column of a tensor-only parameter
    m.node("QLinearMul", [(q(U8, [2, 3]), "in"), (sc(n=3), "c"), (zp(U8), "c"), (q(U8, [2, 3]), "in"),
                          (sc(), "c"), (zp(U8), "c"), (sc(), "c"), (zp(U8), "c")], U8, [2, 3])
    cases.append((m, ["QLinearMul_0", "(3,)", "a scalar or 1 element"]))
    m = Model()  # per-column B scale of the wrong length
    m.node("QLinearMatMul", [(q(U8, [2, 3]), "in"), (sc(), "c"), (zp(U8), "c"), (q(S8, [3, 4]), "c"),
                             (sc(n=3), "c"), (zp(S8), "c"), (sc(), "c"), (zp(U8), "c")], U8, [2, 4], domain="")
    cases.append((m, ["QLinearMatMul_0", "(3,)", "4 elements"]))
    for k, (m, words) in enumerate(cases):
        msg = _compile_invalid(m, tmp_path / str(k))
        for w in words:
            assert w in msg, (w, msg)


# --- the references alone -----------------------------------------------------------------------
def test_fma32_is_one_rounding():
    """fma32 (the emulation of vfmadd in the references) against exact rational arithmetic."""
    from fractions import Fraction
    a = (RNG.standard_normal(2000) * 10).astype(F32)
    b = (RNG.standard_normal(2000) * 10).astype(F32)
    c = (RNG.standard_normal(2000) * 100).astype(F32)
    got = Q.fma32(a, b, c)
    for x, y, z, g in zip(a[:300], b[:300], c[:300], got[:300]):
        exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
        lo, hi = np.nextafter(g, F32(-np.inf)), np.nextafter(g, F32(np.inf))
        err = abs(Fraction(float(g)) - exact)
        assert err <= abs(Fraction(float(lo)) - exact) and err <= abs(Fraction(float(hi)) - exact)


# --- MatMulNBits --------------------------------------------------------------------------------
# |onnxc - onnxruntime| <= NBITS_TOL * (|A'| @ |W|^T): both are fp32 sums of the same products
# (A' = A, or at accuracy 4 A quantized per block to int8 exactly as MLAS does) in different
# orders; docs/quant_kernels.md measured 4e-6 for the kernels alone.
NBITS_TOL = 4e-6


def _nbits_node(m: Model, A, N, block, zp_kind, bias, acc, a_kind="in"):
    K = A.shape[-1]
    kb = -(-K // block)
    B = RNG.integers(0, 256, (N, kb, block // 2), dtype=np.uint8)
    S = (RNG.uniform(0.5, 1.5, N * kb) * 2.0 ** RNG.integers(-8, -2, N * kb)).astype(F32)
    Z = {"none": None, "u4": RNG.integers(0, 256, N * ((kb + 1) // 2), dtype=np.uint8),
         "f32": (RNG.integers(0, 16, N * kb) + RNG.choice([0.0, 0.5], N * kb)).astype(F32)}[zp_kind]
    bb = RNG.standard_normal(N).astype(F32) if bias else None
    ins = [(A, a_kind), (B, "c"), (S, "c"), (Z, "c"), (None, None), (bb, "c")]
    while ins[-1][0] is None:
        ins.pop()
    m.node("MatMulNBits", ins, F32, list(A.shape[:-1]) + [N], K=K, N=N, bits=4, block_size=block,
           accuracy_level=acc)
    return B, S, Z, bb


def _nbits_scale(node, A, B, S, Z, bb):
    """|A'| @ |W|^T (+ |bias|), the error scale."""
    from onnxc.kernels.qnbits import quantize_a_blocks
    K, N, block, kb = Q.nbits_geometry(node)
    a = A.reshape(-1, K)
    if Q.nbits_int8_compute(node):
        qa, sa, _ = quantize_a_blocks(a, block)
        a = (qa.reshape(len(a), kb, block).astype(np.float64) * sa[:, :, None]).reshape(len(a), -1)[:, :K]
    W = np.abs(Q.nbits_dequantize(node, B, S, Z).astype(np.float64))
    if Q.nbits_int8_compute(node):
        # MLAS subtracts the zero point's term (zp * scale * sum of the A block) in float: its
        # rounding scales with |zp * scale|, not |W| (W = 0 gave onnxruntime 9e-10 for exact 0)
        W += np.abs(Q.nbits_dequantize(node, np.zeros_like(B), S, Z).astype(np.float64))
    s = np.abs(a.astype(np.float64)) @ W.T + (np.abs(bb) if bb is not None else 0.0)
    return s.reshape(A.shape[:-1] + (N,))


@pytest.mark.parametrize("isa", runnable_isas() + ["generic"])
def test_matmulnbits_every_isa(isa, tmp_path):
    """M = 1, 2, 5, 130 (the many-row SGEMM route), K off the block and the 32-group, N off the
    tiles, every block size, zero points none / packed uint4 / float, bias, accuracy 0 and 4, A of
    rank 3 folded into M: C-only vs onnxruntime within NBITS_TOL, and the numpy reference too."""
    from onnxc import frontend
    from onnxc.ops.interp import run_graph
    m = Model()
    params = []
    cases = [((1, 100), 37, 32), ((2, 3 * 64 + 7), 16, 64), ((5, 256), 33, 16), ((1, 3, 257), 17, 128),
             ((130, 130), 17, 32), ((1, 1), 1, 256), ((4, 512), 40, 256)]
    for i, (ashape, N, block) in enumerate(cases):
        for acc in (0, 4):
            A = RNG.standard_normal(ashape).astype(F32)
            params.append((A, _nbits_node(m, A, N, block, ("none", "u4", "f32")[(i + acc) % 3], (i + acc) % 2 == 0,
                                          acc)))
    model = m.build(21)
    ref = ort_run(model, m.feed)
    c = onnxc.compile(model, output_dir=tmp_path / isa, target=isa, fallback=False)
    assert c.fallback_nodes == []
    out = c.run(None, m.feed)
    interp = run_graph(frontend.load(model), m.feed)
    g = frontend.load(model)
    for node, (A, w), o, r, ip in zip(g.nodes, params, out, ref, interp):
        assert o.shape == r.shape and o.dtype == r.dtype
        scale = _nbits_scale(node, A, *w) + 1e-30
        for what, got in (("C", o), ("numpy reference", ip)):
            err = np.abs(got.astype(np.float64) - r) / scale
            assert err.max() <= NBITS_TOL, f"{node.name} {what}: max |diff| / scale = {err.max():.3g}"


def test_matmulnbits_declined_cases_fall_back(tmp_path):
    """bits != 4 is left to the fallback (onnxruntime runs it), with the reason logged."""
    m = Model()
    A = RNG.standard_normal((2, 64)).astype(F32)
    B = RNG.integers(0, 256, (8, 2, 32), dtype=np.uint8)
    S = np.full(16, 0.01, F32)
    m.node("MatMulNBits", [(A, "in"), (B, "c"), (S, "c")], F32, [2, 8], K=64, N=8, bits=8, block_size=32)
    c = onnxc.compile(m.build(21), output_dir=tmp_path / "o")
    assert [(n["op"], "bits=8" in n["why"]) for n in c.fallback_nodes] == [("MatMulNBits", True)]
    np.testing.assert_allclose(c.run(None, m.feed)[0], ort_run(m.build(21), m.feed)[0], rtol=1e-5, atol=1e-6)


# --- QuantizeLinear / DequantizeLinear on 4-bit types -----------------------------------------
@pytest.mark.parametrize("target", ["native", "generic"])
@pytest.mark.parametrize("qtype", ["int4", "uint4"])
def test_qdq_4bit(qtype, target, tmp_path):
    """Q then DQ (per tensor, per axis, blocked; ties, saturation) at opset 21, C-only: the
    float result bit-equal to onnxruntime's, the 4-bit one to onnx.reference's."""
    from onnx import TensorProto
    from onnx.reference import ReferenceEvaluator
    elem = getattr(TensorProto, qtype.upper())
    lo, hi = (-8, 7) if qtype == "int4" else (0, 15)
    shape = (3, 8, 4)
    x = (RNG.standard_normal(shape) * 6).astype(F32)
    # ties, saturation; NaN is undefined by the spec, and values beyond int32 are left out: onnx.reference
    # wraps them (1e30 -> 0 for uint4) where the spec saturates (as C and onnxruntime do)
    x.reshape(-1)[:7] = [0.5, 1.5, 2.5, -0.5, -2.5, 1e6, -1e6]
    nodes, inits, outs = [], [], []
    for k, (sshape, attrs) in enumerate([((), {}), ((8,), {"axis": 1}), ((3, 2, 4), {"axis": 1, "block_size": 4})]):
        s = np.full(sshape, 1.0, F32) if k == 0 else RNG.uniform(0.3, 2, sshape).astype(F32)
        z = RNG.integers(lo, hi + 1, sshape)
        inits += [numpy_helper.from_array(s, f"s{k}"),
                  helper.make_tensor(f"z{k}", elem, list(sshape), z.reshape(-1).tolist())]
        nodes += [helper.make_node("QuantizeLinear", ["x", f"s{k}", f"z{k}"], [f"q{k}"], **attrs),
                  helper.make_node("DequantizeLinear", [f"q{k}", f"s{k}", f"z{k}"], [f"d{k}"], **attrs)]
        outs += [helper.make_tensor_value_info(f"q{k}", elem, list(shape)),
                 helper.make_tensor_value_info(f"d{k}", TensorProto.FLOAT, list(shape))]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    g = helper.make_graph(nodes, "qdq4", [x_info], outs, inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    c = onnxc.compile(model, output_dir=tmp_path / "o", target=target, fallback=False)
    assert c.fallback_nodes == []
    got = c.run(None, {"x": x})
    ref = ReferenceEvaluator(model).run(None, {"x": x})
    ort_model = onnx.ModelProto()  # onnxruntime cannot hand 4-bit outputs to numpy: floats only
    ort_model.CopyFrom(model)
    for o in [o for o in ort_model.graph.output if o.name.startswith("q")]:
        ort_model.graph.output.remove(o)
    ort_out = ort_run(ort_model, {"x": x})
    for k in range(3):
        q, r = got[2 * k], ref[2 * k]
        np.testing.assert_array_equal(q.astype(np.int8), r.astype(np.int8), err_msg=f"q{k} vs onnx.reference")
        np.testing.assert_array_equal(got[2 * k + 1], ort_out[k], err_msg=f"d{k} vs onnxruntime")
