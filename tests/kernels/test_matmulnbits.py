"""MatMulNBits kernels (runtime_c/qnbits/): 4-bit weights, fp32 (accuracy 0/1) and int8-activation
(accuracy 4) compute.

runtime_c/qnbits (+ gemm for the many-row path) is built once per ISA row this host runs; the
driver of each build must call that row's kernels. Every result is compared with a numpy float64
reference of the op (accuracy 0: A times the exactly dequantized weights; accuracy 4: the same
with A quantized per block as MLAS does, whose numpy twin is also checked bit for bit against the
C quantizers), with the portable __generic microkernels, and with onnxruntime's com.microsoft
MatMulNBits. Edge sizes: K not a multiple of the block, N not a multiple of the tile, M = 1, 2,
odd; every block size 16..256; zero points none / packed uint4 / fp32; bias.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxc.isa import ISAS as ROWS
from onnxc.kernels import qnbits
from onnxc.resources import kernels_cdef, runtime_dir

from helpers import kernel_library
from isa_rows import compile_only, flags, runnable

SOURCES = sorted(str(p.relative_to(runtime_dir())) for d in ("qnbits", "gemm")
                 for p in (runtime_dir() / d).glob("*.c"))
BUILD_ISAS = runnable(("generic", "avx2", "avx2vnni", "avx512", "avx512vnni"))
CDEF = kernels_cdef("onnxc_quant.h") + "\nvoid onnxc_rt_set_num_threads(int n);\n"
BLOCKS = qnbits.BLOCK_SIZES
ZPS = ("none", "u4", "f32")

# |got - want| <= TOL * (|A| @ |W|^T) + TINY, W the dequantized weights, A as the kernel sees it
# (quantized at accuracy 4): fp32 sums of up to a few thousand products in any order
TOL, TINY = 2e-6, 1e-30


class Lib:
    def __init__(self, isa, ffi, lib):
        self.isa, self.ffi, self.lib = isa, ffi, lib

    def p(self, a, ctype):
        return self.ffi.cast(ctype, a.ctypes.data) if a is not None else self.ffi.NULL


@pytest.fixture(scope="module", params=BUILD_ISAS)
def lib(request, tmp_path_factory):
    isa = request.param
    ffi, dl = kernel_library(tmp_path_factory, f"qnbits-{isa}", SOURCES, flags(isa), extra_cdef=CDEF)
    out = Lib(isa, ffi, dl)
    for acc in (0, 4):  # the driver of a row's build calls that row's kernels
        want = qnbits.best([k for k in qnbits.KERNELS if k.kind == "gemm" and k.dtype == ("q4s8" if acc == 4 else "q4f32")], isa)
        assert ffi.string(dl.onnxc_matmulnbits_isa(acc)).decode() == want.isa
    dl.onnxc_rt_set_num_threads(1)
    yield out
    dl.onnxc_rt_set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Operands and references
# ---------------------------------------------------------------------------------------------

class Q4:
    """One MatMulNBits weight in the op's layout, random (padding nibbles too: they must not count)."""

    def __init__(self, rng, N, K, block, zp="u4", bias=False):
        self.N, self.K, self.block = N, K, block
        self.kb = kb = -(-K // block)
        self.B = rng.integers(0, 256, (N, kb, block // 2), dtype=np.uint8)
        self.scales = (rng.uniform(0.5, 1.5, (N, kb)) * 2.0 ** rng.integers(-8, -2, (N, kb))).astype(np.float32)
        self.zp_kind = zp
        self.zp_u4 = rng.integers(0, 256, (N, (kb + 1) // 2), dtype=np.uint8) if zp == "u4" else None
        self.zp_f32 = rng.integers(0, 16, (N, kb)).astype(np.float32) if zp == "f32" else None
        if zp == "f32":
            self.zp_f32 += rng.choice([0.0, 0.25, 0.5], (N, kb)).astype(np.float32)  # non-integer zero points
        self.bias = rng.standard_normal(N).astype(np.float32) if bias else None

    def zp_blocks(self):
        if self.zp_u4 is not None:
            return np.stack([self.zp_u4 & 15, self.zp_u4 >> 4], -1).reshape(self.N, -1)[:, :self.kb].astype(np.float32)
        if self.zp_f32 is not None:
            return self.zp_f32
        return np.full((self.N, self.kb), 8.0, np.float32)

    def codes(self):
        return np.stack([self.B & 15, self.B >> 4], -1).reshape(self.N, self.kb * self.block)

    def dequant(self):
        """(q - zp) * scale in fp32, as the spec's dequantization; [N, K]."""
        rep = lambda v: np.repeat(v, self.block, axis=1)  # noqa: E731
        w = (self.codes().astype(np.float32) - rep(self.zp_blocks())) * rep(self.scales)
        return w[:, :self.K].astype(np.float32)

    def struct(self, k, accuracy):
        ffi = k.ffi
        s = ffi.new("onnxc_q4_weights *")
        s.N, s.K, s.block, s.accuracy = self.N, self.K, self.block, accuracy
        s.B = k.p(self.B, "uint8_t *")
        s.scales = k.p(self.scales, "float *")
        s.zp_u4 = k.p(self.zp_u4, "uint8_t *")
        s.zp_f32 = k.p(self.zp_f32, "float *")
        s.bias = k.p(self.bias, "float *")
        return s


def reference(A, w: Q4, accuracy):
    """float64 result and the error scale |A'| @ |W|^T, with A' = A (accuracy 0) or A quantized per
    block and dequantized (accuracy 4, the MLAS scheme)."""
    W = w.dequant().astype(np.float64)
    if accuracy == 4:
        q, s, _ = qnbits.quantize_a_blocks(A, w.block)
        a = (q.reshape(A.shape[0], w.kb, w.block).astype(np.float64) * s[:, :, None]).reshape(A.shape[0], -1)[:, :w.K]
    else:
        a = A.astype(np.float64)
    out = a @ W.T + (w.bias.astype(np.float64) if w.bias is not None else 0.0)
    return out, np.abs(a) @ np.abs(W).T + (np.abs(w.bias) if w.bias is not None else 0.0)


def run(k, A, w: Q4, accuracy, lda_pad=0, ldc_pad=0):
    M, K = A.shape
    Abuf = np.zeros((M, K + lda_pad), np.float32)
    Abuf[:, :K] = A
    C = np.full((M, w.N + ldc_pad), np.nan, np.float32)
    s = w.struct(k, accuracy)
    ws = np.zeros(k.lib.onnxc_matmulnbits_workspace(s, M) + 1, np.uint8)[1:]  # misaligned on purpose
    k.lib.onnxc_matmulnbits(s, M, k.p(Abuf, "float *"), K + lda_pad, k.p(C, "float *"), w.N + ldc_pad,
                            k.p(ws, "void *"))
    if ldc_pad:
        assert np.isnan(C[:, w.N:]).all(), "wrote past N"
    return C[:, :w.N]


def check(got, want, scale, what):
    err = np.abs(got.astype(np.float64) - want)
    bound = TOL * scale + TINY
    bad = err > bound
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} off, worst err/scale {np.max(err / (scale + TINY)):.3g}"


# ---------------------------------------------------------------------------------------------
# A preparation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", BLOCKS)
def test_permute_a_matches_numpy(lib, block):
    rng = np.random.default_rng(block)
    for K in (1, block - 1, block, block + 5, 3 * block + 17):
        kp = -(-(-(-K // block) * block) // 32) * 32  # whole blocks, then whole groups of 32
        a = rng.standard_normal(K).astype(np.float32)
        out = np.full(kp, np.nan, np.float32)
        lib.lib.onnxc_q4_permute_a(lib.p(a, "void *"), K, lib.p(out, "void *"), kp, 4)
        want = qnbits.permute_a(a[None], block)[0]
        assert want.size == kp
        np.testing.assert_array_equal(out, want)
        q = rng.integers(-127, 128, kp).astype(np.int8)
        want = qnbits.permute_a(q[None], block)[0]
        lib.lib.onnxc_q4_permute_a(lib.p(q, "void *"), kp, lib.p(q, "void *"), kp, 1)  # in place
        np.testing.assert_array_equal(q, want)


@pytest.mark.parametrize("block", BLOCKS)
def test_qblock_matches_mlas_scheme(lib, block):
    """The int8 quantizer of A, this ISA's and the generic one, bit for bit against the numpy twin
    of MLAS's QuantizeARow_CompInt8 (ties, all-zero blocks, one huge value, a partial last block)."""
    rng = np.random.default_rng(block + 1)
    isas = sorted({"generic", lib.isa.replace("vnni", "")})
    for K in (1, 7, block, block + 3, 5 * block - 1, 1000):
        a = rng.standard_normal(K).astype(np.float32) * 3
        a[: min(K, block)] = np.round(a[: min(K, block)] * 2) / 2  # ties after scaling are likely
        if K > block:
            a[block: min(K, 2 * block)] = 0.0  # an all-zero block
        if K > 3:
            a[K // 2] = 1e30
        kb = -(-K // block)
        want = qnbits.quantize_a_blocks(a[None], block)
        for isa in isas:
            q = np.full(kb * block, 77, np.int8)
            s = np.zeros(kb, np.float32)
            bsum = np.zeros(kb, np.float32)
            getattr(lib.lib, f"onnxc_f32s8_qblock_row__{isa}")(lib.p(a, "float *"), K, block, lib.p(q, "int8_t *"),
                                                                lib.p(s, "float *"), lib.p(bsum, "float *"))
            np.testing.assert_array_equal(q, want[0][0], err_msg=f"{isa} K={K}")
            np.testing.assert_array_equal(s, want[1][0])
            np.testing.assert_array_equal(bsum, want[2][0])


# ---------------------------------------------------------------------------------------------
# The driver and the microkernels
# ---------------------------------------------------------------------------------------------

SHAPES = [(1, 1, 1), (1, 5, 17), (2, 4, 33), (3, 7, 100), (1, 19, 257), (5, 9, 64), (4, 16, 512),
          (7, 3, 1000), (17, 6, 300), (130, 35, 129)]  # M >= 128: the fp32 many-row path


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("accuracy", [0, 4])
def test_matmulnbits_vs_reference(lib, block, accuracy):
    rng = np.random.default_rng(block * 10 + accuracy)
    for i, (M, N, K) in enumerate(SHAPES):
        zp = ZPS[i % 3]
        w = Q4(rng, N, K, block, zp=zp, bias=bool(i % 2))
        A = rng.standard_normal((M, K)).astype(np.float32)
        got = run(lib, A, w, accuracy, lda_pad=i % 3, ldc_pad=(i + 1) % 2)
        want, scale = reference(A, w, accuracy)
        check(got, want, scale, f"{lib.isa} acc={accuracy} M={M} N={N} K={K} block={block} zp={zp}")


def _kernel_args(k, w: Q4, s, A, accuracy, C, keep):
    """onnxc_q4_args for a direct microkernel call, A prepared as the driver does (numpy twins)."""
    M = A.shape[0]
    g = k.ffi.new("onnxc_q4_args *")
    g.w, g.M, g.C, g.ldc = s, M, k.p(C, "float *"), C.shape[1]
    if accuracy == 4:
        q, sa, bsum = qnbits.quantize_a_blocks(A, w.block)
        q = np.ascontiguousarray(qnbits.permute_a(q, w.block))
        keep += [q, sa, bsum]
        g.qa, g.qa_scale, g.qa_bsum = k.p(q, "int8_t *"), k.p(sa, "float *"), k.p(bsum, "float *")
        g.lda_p = q.shape[1]
    else:
        a = np.ascontiguousarray(qnbits.permute_a(A, w.block))
        keep.append(a)
        g.a = k.p(a, "float *")
        g.lda_p = a.shape[1]
    return g


@pytest.mark.parametrize("block", BLOCKS)
def test_microkernels_against_generic_twin(lib, block):
    """Every microkernel of this build's row (and the ones below it in the same family that the
    build compiles), called on column ranges that start and end off the tile, against __generic."""
    rng = np.random.default_rng(block + 7)
    from onnxc.isa import BY_NAME
    have = set(BY_NAME[lib.isa].cpu_flags)
    kernels = [k for k in qnbits.KERNELS if k.kind == "gemm" and set(BY_NAME[k.isa].cpu_flags) <= have]
    for M, N, K in [(1, 13, 3 * block + 5), (2, 9, 2 * block), (5, 11, block + 1), (4, 8, 4 * block)]:
        for zp in ZPS:
            w = Q4(rng, N, K, block, zp=zp, bias=zp == "u4")
            s = w.struct(lib, 0)
            A = rng.standard_normal((M, K)).astype(np.float32)
            for dtype, acc in (("q4f32", 0), ("q4s8", 4)):
                gen = None
                for kern in [k for k in kernels if k.dtype == dtype]:
                    C = np.full((M, N), np.nan, np.float32)
                    keep = []
                    g = _kernel_args(lib, w, s, A, acc, C, keep)
                    fn = getattr(lib.lib, kern.name)
                    fn(g, 0, 3)  # column ranges as the driver's tasks might cut them
                    fn(g, 3, N)
                    if kern.isa == "generic":
                        gen = C.copy()
                    want, scale = reference(A, w, acc)
                    check(C, want, scale, f"{kern.name} M={M} N={N} K={K} zp={zp}")
                    if gen is not None:
                        check(C, gen.astype(np.float64), scale, f"{kern.name} vs generic")


def test_threads_give_identical_results(lib):
    """Columns are split over the pool; each column is computed the same way whatever the split."""
    rng = np.random.default_rng(99)
    w = Q4(rng, 300, 1024, 32, zp="u4", bias=True)
    for M, acc in ((1, 0), (1, 4), (3, 4), (5, 0), (130, 0)):
        A = rng.standard_normal((M, 1024)).astype(np.float32)
        lib.lib.onnxc_rt_set_num_threads(1)
        one = run(lib, A, w, acc)
        lib.lib.onnxc_rt_set_num_threads(2)
        two = run(lib, A, w, acc)
        lib.lib.onnxc_rt_set_num_threads(1)
        np.testing.assert_array_equal(one, two)


def test_workspace_is_enough(lib):
    """The workspace size covers what the driver touches (guarded by a canary after it)."""
    rng = np.random.default_rng(5)
    for M, acc, block in ((1, 0, 16), (3, 4, 256), (20, 0, 64), (9, 4, 16), (128, 0, 32)):
        w = Q4(rng, 37, 333, block)
        s = w.struct(lib, acc)
        n = lib.lib.onnxc_matmulnbits_workspace(s, M)
        buf = np.full(n + 256, 0x5A, np.uint8)
        A = rng.standard_normal((M, 333)).astype(np.float32)
        C = np.zeros((M, 37), np.float32)
        lib.lib.onnxc_matmulnbits(s, M, lib.p(A, "float *"), 333, lib.p(C, "float *"), 37, lib.p(buf, "void *"))
        assert (buf[n:] == 0x5A).all()


# ---------------------------------------------------------------------------------------------
# Against onnxruntime
# ---------------------------------------------------------------------------------------------

def ort_matmulnbits(A, w: Q4, accuracy):
    import onnxruntime as ort
    M, K = A.shape
    ins = ["A", "B", "S"]
    inits = [numpy_helper.from_array(w.B, "B"), numpy_helper.from_array(w.scales, "S")]
    zp = w.zp_u4 if w.zp_u4 is not None else w.zp_f32
    if zp is not None or w.bias is not None:
        ins.append("Z" if zp is not None else "")
        if zp is not None:
            inits.append(numpy_helper.from_array(zp, "Z"))
    if w.bias is not None:
        ins += ["", "bias"]  # g_idx absent
        inits.append(numpy_helper.from_array(w.bias, "bias"))
    node = helper.make_node("MatMulNBits", ins, ["Y"], domain="com.microsoft", K=K, N=w.N, bits=4,
                            block_size=w.block, accuracy_level=accuracy)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [M, K])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [M, w.N])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    m.ir_version = 10
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"A": A})[0]


# onnxruntime vs onnxc, as a fraction of |A'| @ |W|^T (A' = A quantized at accuracy 4). Accuracy 0:
# both are fp32 sums of the same exactly dequantized weights. Accuracy 4: the same int8 A (MLAS's
# rounding, reproduced bit for bit), int32 block dots, fp32 scaling: only the fp32 summation order
# differs. Float zero points: onnxruntime computes those in fp32 at any accuracy_level, so they
# are compared against accuracy 0.
ORT_TOL = {0: 4e-6, 4: 4e-6}


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("accuracy", [0, 4])
def test_matmulnbits_vs_onnxruntime(lib, block, accuracy):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(block * 3 + accuracy)
    for i, (M, N, K) in enumerate([(1, 64, 256), (1, 37, 100), (2, 16, 3 * block + 7), (3, 40, 512), (130, 17, 130)]):
        zp = ZPS[i % 3]
        w = Q4(rng, N, K, block, zp=zp, bias=i % 2 == 0)
        A = rng.standard_normal((M, K)).astype(np.float32)
        ref_acc = 0 if zp == "f32" else accuracy
        want = ort_matmulnbits(A, w, accuracy).astype(np.float64)
        got = run(lib, A, w, ref_acc)
        _, scale = reference(A, w, ref_acc)
        err = np.abs(got - want) / (scale + TINY)
        assert err.max() <= ORT_TOL[ref_acc], (f"{lib.isa} acc={accuracy} M={M} N={N} K={K} block={block} zp={zp}: "
                                               f"max |onnxc - ort| / scale = {err.max():.3g}")


# ---------------------------------------------------------------------------------------------
# The kernel list and the ISA rows
# ---------------------------------------------------------------------------------------------

def test_best_kernel_per_row():
    want = {"q4f32": {"generic": "generic", "avx2": "avx2", "avx2vnni": "avx2", "avx512": "avx512",
                      "avx512vnni": "avx512", "amx": "avx512"},
            "q4s8": {"generic": "generic", "avx2": "avx2", "avx2vnni": "avx2vnni", "avx512": "avx512",
                     "avx512vnni": "avx512vnni", "amx": "avx512vnni"}}
    for dtype, rows in want.items():
        ks = [k for k in qnbits.KERNELS if k.kind == "gemm" and k.dtype == dtype]
        for row in ROWS:
            assert qnbits.best(ks, row.name).isa == rows[row.name]


@pytest.mark.parametrize("isa", [r.name for r in ROWS])
def test_compiles_clean_under_every_row(isa):
    if isa in BUILD_ISAS:
        pytest.skip("built with -Wall -Wextra -Werror and run by the lib fixture")
    srcs = sorted((runtime_dir() / "qnbits").glob("*.c"))
    err = compile_only(srcs, isa, runtime_dir() / "include")
    assert not err, err
