"""NCHWc layout pass (compiler/passes/layout/nchwc.py): blocked convs, pools, elementwise ops,
concat, BatchNorm, Resize; reorders only at region borders; block size from the target.

Each rewrite runs before/after on the same random inputs (onnxruntime on the original model vs
the IR interpreter, which runs the onnxc NCHWc ops through their numpy references), plus cases
where it must not fire, and compiles at levels none and layout against onnxruntime for the
targets avx2 (b=8), generic (b=8) and avx512 (b=16, when the host has it)."""
import re

import numpy as np
import pytest
from onnx import helper

from helpers import check_levels, check_pass, make_model
from onnxc.passes.layout.nchwc import NchwcLayout
from onnxc.passes.layout.nchwc_gather_fold import NchwcGatherFold
from onnxc.passes.capability import using
from onnxc.providers import CProvider
from onnxc.cpu import runnable_float_isas
from onnxc.isa import BY_NAME
from onnxc.kernels import nchwc_f32

RNG = np.random.default_rng(11)
F = np.float32
TARGETS = ["avx2", "generic"] + (["avx512"] if "avx512" in runnable_float_isas() else [])
BLOCK = {name: row.nchwc_block for name, row in BY_NAME.items()}


def rand(*shape):
    return RNG.standard_normal(shape).astype(F)


def ops(g, op, domain="onnxc"):
    return [n for n in g.nodes if n.op_type == op and n.domain == domain]


class Net:
    """A tiny model builder: convs with random weights, anything else by hand."""

    def __init__(self, x_shape, name="x"):
        self.nodes, self.inits, self.n = [], {}, 0
        self.inputs = [(name, F, list(x_shape))]
        self.feed = {name: rand(*x_shape)}

    def conv(self, x, cin, cout, k=3, pads=None, group=1, strides=(1, 1), bias=True, **attrs):
        self.n += 1
        w, b = f"w{self.n}", f"b{self.n}"
        self.inits[w] = (rand(cout, cin // group, k, k) / np.sqrt(cin * k * k / group)).astype(F)
        ins = [x, w]
        if bias:
            self.inits[b] = rand(cout)
            ins.append(b)
        p = [k // 2] * 4 if pads is None else pads
        out = f"c{self.n}"
        self.nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=[k, k], pads=p, group=group,
                                           strides=list(strides), **attrs))
        return out

    def op(self, op_type, ins, **attrs):
        self.n += 1
        out = f"{op_type.lower()}{self.n}"
        self.nodes.append(helper.make_node(op_type, ins, [out], **attrs))
        return out

    def const(self, arr):
        self.n += 1
        self.inits[f"k{self.n}"] = arr
        return f"k{self.n}"

    def model(self, outs):
        return make_model(self.nodes, self.inputs, [(o, F, None) for o in outs], self.inits), self.feed


def run_pass(model, feed, target="avx2", fires=True, rtol=1e-4, atol=1e-5, winograd=4):
    return check_pass(model, NchwcLayout(), feed, fires=fires, target=target, rtol=rtol, atol=atol,
                      winograd=winograd)


def levels(model, feed, tmp_path, targets=("avx2",), rtol=1e-4, atol=1e-5):
    """Compile at level none (once) and at level layout per target, each against onnxruntime;
    the layout build must call the NCHWc kernels of the target's block size.  Returns
    {target: generated C}.  (Compiles cost ~1 s each: tests pass all TARGETS only where the
    block size matters to what they check.)"""
    sources = {}
    for i, t in enumerate(targets):
        lv = ("none", "layout") if i == 0 else ("layout",)
        check_levels(model, feed, tmp_path / t, levels=lv, target=t, rtol=rtol, atol=atol)
        src = (tmp_path / t / "layout" / "model.c").read_text()
        calls = set(re.findall(r"onnxc_f32_nchwc_\w+_b(\d+)\(", src))
        assert calls == {str(BLOCK[t])}, (t, calls)
        sources[t] = src
    return sources


# --- chains and borders ---------------------------------------------------------------------------
def conv_chain():
    net = Net((1, 16, 9, 10))
    a = net.conv("x", 16, 24)
    r = net.op("Relu", [a])
    c = net.conv(r, 24, 16, k=1, bias=False)
    d = net.conv(c, 16, 16, k=3, pads=[0, 1, 2, 1], strides=(2, 1), dilations=[1, 2])
    return net.model([d])


def test_chain_has_one_reorder_each_way():
    model, feed = conv_chain()
    g, res = run_pass(model, feed)
    assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    assert len(ops(g, "NchwcConv")) == 3 and not ops(g, "Conv", "")
    relu = ops(g, "Relu", "")[0]
    assert relu.inputs[0].producer.op_type == "NchwcConv" and len(relu.outputs[0].shape) == 5
    # the only plain tensors are the graph's own input and output
    five_d = [n for n in g.nodes if n.op_type not in ("ReorderInput",)]
    assert all(len(v.shape) == 5 for n in five_d for v in n.inputs[:1]), [n.label for n in five_d]
    assert res.rewrites == 4


@pytest.mark.parametrize("target", ["avx2", "generic", "avx512"])
def test_block_follows_target(target):
    model, feed = conv_chain()
    g, _ = run_pass(model, feed, target=target)
    blocks = {n.attrs["block"] for n in g.nodes if n.domain == "onnxc"}
    assert blocks == {BLOCK[target]}
    assert ops(g, "NchwcConv")[0].outputs[0].shape[-1] == BLOCK[target]


def test_chain_compiles(tmp_path):
    model, feed = conv_chain()
    for t, src in levels(model, feed, tmp_path, TARGETS).items():
        assert src.count(nchwc_f32.name("conv", BLOCK[t]) + "(") == 3
        assert src.count("onnxc_f32_nchwc_reorder_input") == 1 and src.count("onnxc_f32_nchwc_reorder_output") == 1


def test_shared_reorder_output_for_plain_readers():
    # c1 is read by a blocked conv and by two plain readers (a Reshape and the graph output)
    net = Net((1, 8, 6, 6))
    a = net.conv("x", 8, 16)
    b = net.conv(a, 16, 16)
    shape = net.const(np.array([1, -1], np.int64))
    flat = net.op("Reshape", [a, shape])
    model, feed = net.model([b, flat, a])
    g, _ = run_pass(model, feed)
    outs = ops(g, "ReorderOutput")
    assert len(outs) == 2  # one for a (shared by Reshape and the output), one for b
    a_plain = [o for o in outs if o.inputs[0].producer is ops(g, "NchwcConv")[0]]
    assert len(a_plain) == 1
    assert ops(g, "Reshape", "")[0].inputs[0] is a_plain[0].outputs[0]


# --- conv variants --------------------------------------------------------------------------------
def test_first_layer_reads_nchw_directly(tmp_path):
    net = Net((2, 3, 11, 12))
    a = net.conv("x", 3, 16, k=3, strides=(2, 2))
    b = net.conv(a, 16, 8, k=3)
    model, feed = net.model([b])
    g, _ = run_pass(model, feed)
    first = ops(g, "NchwcConv")[0]
    assert first.attrs["kind"] == "nchw" and first.inputs[0].name == "x" and not ops(g, "ReorderInput")
    assert first.inputs[1].shape == (2, 3, 3, 3, 8)
    levels(model, feed, tmp_path, TARGETS)


def test_depthwise_and_pointwise(tmp_path):
    net = Net((1, 24, 7, 12))  # a row interior of 10: one 8-pixel tile and single pixels
    a = net.conv("x", 24, 24, k=3, group=24)
    r = net.op("Clip", [a, net.const(np.array(0, F)), net.const(np.array(6, F))])
    b = net.conv(r, 24, 32, k=1)
    model, feed = net.model([b])
    g, _ = run_pass(model, feed)
    kinds = [n.attrs["kind"] for n in ops(g, "NchwcConv")]
    assert kinds == ["depthwise", "direct"]
    assert ops(g, "NchwcConv")[0].inputs[1].shape == (3, 3, 3, 8)
    levels(model, feed, tmp_path, TARGETS)


def test_channels_not_multiple_of_block(tmp_path):
    # 20 and 12 channels: padded blocks; Sigmoid(0) != 0 must not be blocked on padded data
    net = Net((1, 12, 6, 7))
    a = net.conv("x", 12, 20, k=3)
    r = net.op("LeakyRelu", [a], alpha=0.1)
    s = net.op("Sigmoid", [r])
    b = net.conv(r, 20, 12, k=3)
    model, feed = net.model([b, s])
    g, _ = run_pass(model, feed)
    assert len(ops(g, "NchwcConv")) == 2 and ops(g, "LeakyRelu", "")[0].outputs[0].shape == (1, 3, 6, 7, 8)
    sig = ops(g, "Sigmoid", "")[0]
    assert len(sig.inputs[0].shape) == 4 and sig.inputs[0].producer.op_type == "ReorderOutput"
    levels(model, feed, tmp_path, TARGETS)


def test_reorders_partial_blocks_and_pixel_tails(tmp_path):
    # the reorders move 8x8 tiles (AVX2 transposes) with scalar tails: 20 input channels (a
    # partial last block), 2 images, 9x9 and 5x7 pixels (not multiples of 8); 24 / 20 outputs
    for shape, cout in (((2, 20, 9, 9), 24), ((1, 20, 5, 7), 20)):
        net = Net(shape)
        a = net.conv("x", 20, cout, k=1)
        model, feed = net.model([a])
        g, _ = run_pass(model, feed)
        assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
        levels(model, feed, tmp_path / f"c{cout}", TARGETS)


def test_grouped_conv_with_aligned_groups(tmp_path):
    net = Net((1, 32, 6, 6))
    a = net.conv("x", 32, 32, k=3, group=2)
    model, feed = net.model([a])
    g, _ = run_pass(model, feed, target="avx2")
    assert ops(g, "NchwcConv")[0].attrs["group"] == 2
    levels(model, feed, tmp_path, targets=["avx2"])


def test_fused_conv_epilogue_and_residual(tmp_path):
    # extended fuses Add + activation into FusedConv; layout keeps both in the blocked kernel
    net = Net((1, 16, 8, 8))
    a = net.conv("x", 16, 16)
    r = net.op("Relu", [a])
    b = net.conv(r, 16, 16)
    s = net.op("Add", [b, r])
    h = net.op("HardSigmoid", [s], alpha=0.3, beta=0.4)
    model, feed = net.model([h])
    levels(model, feed, tmp_path)
    from onnxc import frontend
    from onnxc.driver import optimize
    g = frontend.load(model)
    optimize(g, "layout", target="avx2")
    convs = ops(g, "NchwcConv")
    assert len(convs) == 2 and len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    assert any(len(n.inputs) == 4 and n.attrs["activation"] for n in convs), [n.attrs for n in convs]


def test_strided_pointwise_downsample(tmp_path):
    # ResNet's downsample branch: a strided 1x1 conv (b=8: gathered into scratch and run as a
    # pointwise conv, onnxc_f32_nchwc_conv_subsample_b8) added to the 3x3 stride-2 branch, then
    # Relu; 20 channels (a partial block), odd 11x13 input; and a strided 1x1 with a leading pad
    # (the window path)
    net = Net((1, 20, 11, 13))
    a = net.conv("x", 20, 24, k=3, strides=(2, 2))
    d = net.conv("x", 20, 24, k=1, strides=(2, 2))
    r = net.op("Relu", [net.op("Add", [a, d])])
    e = net.conv(r, 24, 12, k=1, strides=(2, 1), pads=[1, 0, 0, 0])
    model, feed = net.model([r, e])
    g, _ = run_pass(model, feed)
    assert len(ops(g, "NchwcConv")) == 3
    src = levels(model, feed, tmp_path, TARGETS)
    assert src["avx2"].count("onnxc_f32_nchwc_conv_subsample_b8(") == 1
    assert all("conv_subsample" not in c for t, c in src.items() if BLOCK[t] == 16)


def test_residual_add_between_blocked_convs(tmp_path):
    net = Net((1, 16, 7, 7))
    a = net.conv("x", 16, 16)
    b = net.conv(a, 16, 16)
    s = net.op("Add", [a, b])
    r = net.op("Relu", [s])
    c = net.conv(r, 16, 16, k=1)
    model, feed = net.model([c])
    g, _ = run_pass(model, feed)
    add = ops(g, "Add", "")[0]
    assert all(v.producer.op_type == "NchwcConv" for v in add.inputs)
    assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    levels(model, feed, tmp_path)


# --- pools, BatchNorm, concat, resize, global pool ------------------------------------------------
def test_conv_pools(tmp_path):
    net = Net((1, 8, 11, 11))
    a = net.conv("x", 8, 16, k=3)
    m = net.op("MaxPool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    p = net.op("AveragePool", [m], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 0, 0], ceil_mode=1,
               count_include_pad=1)
    q = net.op("AveragePool", [m], kernel_shape=[2, 2], strides=[1, 1], auto_pad="SAME_UPPER")
    s = net.op("MaxPool", [q], kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 1])
    model, feed = net.model([p, s])
    g, res = run_pass(model, feed)
    assert len(ops(g, "NchwcPool")) == 4
    levels(model, feed, tmp_path, TARGETS)


def test_batchnorm_concat_resize(tmp_path):
    net = Net((1, 8, 5, 6))
    a = net.conv("x", 8, 16, k=3)
    b = net.conv("x", 8, 16, k=1)
    cat = net.op("Concat", [a, b], axis=1)
    bn = net.op("BatchNormalization", [cat] + [net.const(v) for v in
                                                (rand(32), rand(32), rand(32), np.abs(rand(32)) + 0.5)])
    up = net.op("Resize", [bn, "", net.const(np.array([1, 1, 2, 3], F))], mode="nearest")
    c = net.conv(up, 32, 8, k=3)
    model, feed = net.model([c])
    g, _ = run_pass(model, feed)
    assert len(ops(g, "Concat", "")) == 1 and ops(g, "Concat", "")[0].outputs[0].shape == (1, 4, 5, 6, 8)
    assert len(ops(g, "NchwcScaleShift")) == 1 and ops(g, "Resize", "")[0].outputs[0].shape == (1, 4, 10, 18, 8)
    assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    levels(model, feed, tmp_path)


def test_concat_with_padded_channels_is_a_gather(tmp_path):
    # 12 + 16 channels: padding lanes inside the result, so a channel gather instead of Concat
    net = Net((1, 8, 5, 5))
    a = net.conv("x", 8, 12, k=3)
    b = net.conv("x", 8, 16, k=3)
    cat = net.op("Concat", [a, b], axis=1)
    model, feed = net.model([cat])
    g, _ = run_pass(model, feed)
    (ga,) = ops(g, "NchwcChannelGather")
    assert ga.attrs["input_channels"] == [12, 16] and not ops(g, "Concat", "")
    levels(model, feed, tmp_path, TARGETS)


# --- channel shuffles (ShuffleNet) ----------------------------------------------------------------
def shuffle_unit(c=20, transpose_out=False, perm=(0, 2, 1, 3, 4), slice_axis=1):
    """ShuffleNetV2's unit: Concat of two c-channel branches, channel shuffle (Reshape,
    Transpose, Reshape), Slice into halves, a conv on the second, Concat again, a last conv."""
    net = Net((1, 8, 6, 5))
    a = net.conv("x", 8, c, k=3)
    b = net.conv("x", 8, c, k=1)
    cat = net.op("Concat", [a, b], axis=1)
    r = net.op("Reshape", [cat, net.const(np.array([1, 2, c, 6, 5], np.int64))])
    t = net.op("Transpose", [r], perm=list(perm))
    sh = net.op("Reshape", [t, net.const(np.array([1, 2 * c, 6, 5], np.int64))])
    i64 = lambda v: net.const(np.array([v], np.int64))  # noqa: E731
    half = c if slice_axis == 1 else 3
    s1 = net.op("Slice", [sh, i64(0), i64(half), i64(slice_axis)])
    s2 = net.op("Slice", [sh, i64(half), i64(2 * half), i64(slice_axis)])
    outs = [t] if transpose_out else []
    if slice_axis != 1:
        return net.model([s1, s2] + outs)
    d = net.conv(s2, c, c, k=1)
    cat2 = net.op("Concat", [s1, d], axis=1)
    e = net.conv(cat2, 2 * c, 16, k=1)
    return net.model([e] + outs)


def test_channel_shuffle_stays_blocked(tmp_path):
    model, feed = shuffle_unit()
    g, _ = run_pass(model, feed)
    assert not [n for n in g.nodes if n.op_type in ("Transpose", "Reshape", "Slice", "Concat")]
    assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    gathers = ops(g, "NchwcChannelGather")
    assert len(gathers) == 5  # Concat, shuffle, two Slices, Concat
    (shuffle,) = [n for n in gathers if n.attrs["input_channels"] == [40] and n.attrs["channels"] == 40]
    assert shuffle.attrs["source_channels"][:4] == [0, 20, 1, 21]
    levels(model, feed, tmp_path, TARGETS)


def test_gather_fold_composes_the_copies():
    from onnxc import frontend
    from onnxc.ir import verify
    from onnxc.ops.interp import run_graph
    from onnxc.target import resolve
    from helpers import ort_run
    model, feed = shuffle_unit()
    ref = ort_run(model, feed)
    for target in ("avx2", "avx512"):
        g = frontend.load(model)
        g.metadata["target"] = resolve(target)
        with using(CProvider()):
            assert NchwcLayout().run(g).modified
            res = NchwcGatherFold().run(g)
        verify(g)
        assert res.modified
        # the Concat/shuffle/Slice copies fold into the last Concat's gather, which now reads
        # the three convs' outputs; the second half's Slice remains as the conv's input
        gathers = ops(g, "NchwcChannelGather")
        assert len(gathers) == 2, [n.name for n in gathers]
        assert all(v.producer.op_type == "NchwcConv" for n in gathers for v in n.inputs)
        np.testing.assert_allclose(run_graph(g, feed)[0], ref[0], rtol=1e-4, atol=1e-5)
        with using(CProvider()):
            assert not NchwcGatherFold().run(g).modified


@pytest.mark.parametrize("variant", [dict(transpose_out=True), dict(perm=(0, 1, 2, 4, 3)), dict(slice_axis=2)])
def test_channel_shuffle_must_not_fire(variant):
    # the Transpose also a graph output, a Transpose that is no channel shuffle: the shuffle
    # stays plain, reading the blocked Concat through a ReorderOutput; Slices on H stay plain
    model, feed = shuffle_unit(**variant)
    g, _ = run_pass(model, feed)
    if variant.get("slice_axis"):
        slices = ops(g, "Slice", "")
        assert len(slices) == 2 and all(n.inputs[0].producer.op_type == "ReorderOutput" for n in slices)
    else:
        (tr,) = ops(g, "Transpose", "")
        assert tr.inputs[0].producer.op_type == "Reshape" and ops(g, "ReorderOutput")


@pytest.mark.parametrize("axis", [1, 2])
def test_split_on_channels(tmp_path, axis):
    # channels 20 -> [8, 12]: two gathers, the second half's conv and a Concat stay blocked;
    # a Split on H stays plain (reading the conv through a ReorderOutput)
    net = Net((1, 8, 6, 5))
    a = net.conv("x", 8, 20, k=3)
    sizes = [8, 12] if axis == 1 else [2, 4]
    net.nodes.append(helper.make_node("Split", [a, net.const(np.array(sizes, np.int64))], ["s1", "s2"], axis=axis))
    if axis == 1:
        b = net.conv("s2", 12, 16, k=1)
        cat = net.op("Concat", ["s1", b], axis=1)
        model, feed = net.model([cat])
    else:
        model, feed = net.model(["s1", "s2"])
    g, _ = run_pass(model, feed)
    if axis == 1:
        # b = 8: the Concat of 8 + 16 channels is whole blocks, a blocked Concat
        assert not ops(g, "Split", "") and ops(g, "Concat", "")[0].outputs[0].shape == (1, 3, 6, 5, 8)
        assert [n.attrs["source_channels"][0] for n in ops(g, "NchwcChannelGather")] == [0, 8]
        levels(model, feed, tmp_path, TARGETS)
    else:
        (sp,) = ops(g, "Split", "")
        assert sp.inputs[0].producer.op_type == "ReorderOutput" and not ops(g, "NchwcChannelGather")


def test_shuffle_of_a_plain_tensor_folds_into_the_reorder(tmp_path):
    # ShuffleNet v1: a grouped conv the blocked kernels do not take (20 channels per group),
    # shuffled, then a depthwise conv: one ReorderInput with the shuffled channel order
    net = Net((1, 40, 5, 6))
    a = net.conv("x", 40, 40, k=1, group=2)
    r = net.op("Reshape", [a, net.const(np.array([1, 2, 20, 5, 6], np.int64))])
    t = net.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
    sh = net.op("Reshape", [t, net.const(np.array([1, 40, 5, 6], np.int64))])
    d = net.conv(sh, 40, 40, k=3, group=40)
    model, feed = net.model([d])
    g, _ = run_pass(model, feed)
    (ri,) = ops(g, "ReorderInput")
    assert ri.attrs["channel_order"][:3] == [0, 20, 1] and not ops(g, "Transpose", "")
    levels(model, feed, tmp_path, TARGETS)
    # no blocked reader: the shuffle stays as it is
    net = Net((1, 40, 5, 6))
    a = net.conv("x", 40, 40, k=1, group=2)
    r = net.op("Reshape", [a, net.const(np.array([1, 2, 20, 5, 6], np.int64))])
    t = net.op("Transpose", [r], perm=[0, 2, 1, 3, 4])
    sh = net.op("Reshape", [t, net.const(np.array([1, 40, 5, 6], np.int64))])
    model, feed = net.model([net.op("Relu", [sh])])
    run_pass(model, feed, fires=False)


def test_slice_with_dynamic_bounds_stays_plain():
    net = Net((1, 8, 4, 4))
    a = net.conv("x", 8, 16, k=3)
    net.inputs.append(("start", np.int64, [1]))
    net.feed["start"] = np.array([2], np.int64)
    s = net.op("Slice", [a, "start", net.const(np.array([10], np.int64)), net.const(np.array([1], np.int64))])
    model, feed = net.model([s])
    g, _ = run_pass(model, feed)
    assert len(ops(g, "Slice", "")) == 1 and not ops(g, "NchwcChannelGather")


def test_global_pool_flatten_gemm(tmp_path):
    net = Net((2, 8, 6, 6))
    a = net.conv("x", 8, 24, k=3)
    gp = net.op("GlobalAveragePool", [a])
    mx = net.op("GlobalMaxPool", [a])
    s = net.op("Add", [gp, mx])
    f = net.op("Flatten", [s])
    gm = net.op("Gemm", [f, net.const(rand(24, 5)), net.const(rand(5))])
    model, feed = net.model([gm])
    g, _ = run_pass(model, feed)
    pools = ops(g, "NchwcPool")
    assert [p.attrs["nchw_output"] for p in pools] == [1, 1] and pools[0].outputs[0].shape == (2, 24, 1, 1)
    assert not ops(g, "ReorderOutput")  # the pools write the plain tensor themselves
    levels(model, feed, tmp_path)


def test_squeeze_excitation_keeps_blocks(tmp_path):
    net = Net((1, 16, 5, 5))
    a = net.conv("x", 16, 16, k=3)
    gp = net.op("GlobalAveragePool", [a])
    s1 = net.conv(gp, 16, 8, k=1)
    r = net.op("Relu", [s1])
    s2 = net.conv(r, 8, 16, k=1)
    sg = net.op("Sigmoid", [s2])
    m = net.op("Mul", [a, sg])
    model, feed = net.model([m])
    g, _ = run_pass(model, feed)
    assert ops(g, "NchwcPool")[0].attrs["nchw_output"] == 0
    assert len(ops(g, "ReorderInput")) == 1 and len(ops(g, "ReorderOutput")) == 1
    levels(model, feed, tmp_path)


# --- where it must not fire -----------------------------------------------------------------------
def test_does_not_fire_on_small_or_unsupported_convs():
    net = Net((1, 4, 6, 6))
    a = net.conv("x", 4, 4, k=3)                    # 4 output channels < b
    b = net.op("Conv", [a, net.const(rand(8, 2, 3, 3))], kernel_shape=[3, 3], group=2)  # unaligned groups
    model, feed = net.model([b])
    run_pass(model, feed, fires=False)


def test_does_not_fire_on_dynamic_weights_or_3d_conv():
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])]
    model = make_model(nodes, [("x", F, [1, 8, 5, 5]), ("w", F, [16, 8, 3, 3])], [("y", F, None)])
    run_pass(model, {"x": rand(1, 8, 5, 5), "w": rand(16, 8, 3, 3)}, fires=False)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3, 3])]
    model = make_model(nodes, [("x", F, [1, 8, 4, 4, 4])], [("y", F, None)], {"w": rand(16, 8, 3, 3, 3)})
    run_pass(model, {"x": rand(1, 8, 4, 4, 4)}, fires=False)


def test_pool_alone_is_not_blocked():
    # no conv seeds the region: a lone pool stays plain
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2])]
    model = make_model(nodes, [("x", F, [1, 16, 4, 4])], [("y", F, None)])
    run_pass(model, {"x": rand(1, 16, 4, 4)}, fires=False)


def test_second_run_is_a_fixpoint():
    model, feed = conv_chain()
    g, _ = run_pass(model, feed)
    with using(CProvider()):
        assert not NchwcLayout().run(g).modified


def test_many_input_channels_split_into_chunks(tmp_path):
    # enough input blocks that the kernels sum them in several L1-sized chunks (3x3: > 7 blocks
    # of 8; 1x1: > 64 blocks of 8 or 16 of 16), with a residual and Relu in the last chunk's epilogue
    net = Net((1, 72, 5, 9))
    a = net.conv("x", 72, 16, k=3)
    b = net.conv("x", 72, 520, k=1)
    c = net.conv(b, 520, 16, k=1)
    s = net.op("Add", [c, a])
    r = net.op("Relu", [s])
    model, feed = net.model([r])
    run_pass(model, feed)
    levels(model, feed, tmp_path, TARGETS)


def test_consumers_without_a_blocked_form_read_plain_tensors():
    # Concat off the channel axis, linear Resize, MaxPool with indices, an Add broadcasting
    # over channels: each reads the blocked conv output through the one shared ReorderOutput
    net = Net((1, 8, 4, 6))
    a = net.conv("x", 8, 16, k=3)
    cat = net.op("Concat", [a, a], axis=2)
    up = net.op("Resize", [a, "", net.const(np.array([1, 1, 2, 2], F))], mode="linear")
    net.nodes.append(helper.make_node("MaxPool", [a], ["mp", "mpi"], kernel_shape=[2, 2]))
    add = net.op("Add", [a, net.const(rand(1, 1, 4, 6))])
    model, feed = net.model([cat, up, "mp", add])
    g, _ = run_pass(model, feed)
    (ro,) = ops(g, "ReorderOutput")
    readers = {n.op_type for n in ro.outputs[0].users}
    assert readers == {"Concat", "Resize", "MaxPool", "Add"}
    assert not ops(g, "NchwcPool")


@pytest.mark.parametrize("act", ["HardSwish", "Sigmoid"])
def test_activation_pass_split_over_threads(tmp_path, act):
    # act(0) != 0 activations run as a pass after the kernel, split into pool tasks above
    # ACT_PARALLEL_MIN elements; 20 channels leave padding lanes the pass must re-zero
    import onnxc
    from helpers import ort_run
    from onnxc.providers.c.nchwc import ACT_PARALLEL_MIN, ACT_TASK
    net = Net((1, 8, 74, 74))
    a = net.conv("x", 8, 20)
    h = net.op(act, [a])
    b = net.conv(h, 20, 16)
    model, feed = net.model([b])
    assert 20 * 74 * 74 > ACT_PARALLEL_MIN and 24 * 74 * 74 % ACT_TASK  # a partial last task
    ref = ort_run(model, feed)[0]
    m = onnxc.compile(model, output_dir=tmp_path, target="avx2")
    assert "onnxc_parallel_for(" in (tmp_path / "model.c").read_text()
    for threads in (1, 2):
        out = onnxc.load(tmp_path, num_threads=threads).run(None, feed)[0]
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    del m


# --- Winograd F(2x2, 3x3) ---------------------------------------------------------------------------
def winograd_net():
    """One conv of each kind around the Winograd rule: 3x3 stride 1 big enough (odd output
    width, channels not block multiples), and 3x3 convs with stride 2, dilation 2, 2 groups and
    a 5x5, all as big, that must stay direct."""
    net = Net((1, 36, 23, 25))
    a = net.conv("x", 36, 64)  # 36*64*23*25 = 1.3M >= WINOGRAD_MIN_SIZE
    r = net.op("Relu", [a])
    s = net.conv(r, 64, 48, strides=(2, 2))
    d = net.conv(r, 64, 48, pads=[2, 2, 2, 2], dilations=[2, 2])
    g = net.conv(r, 64, 64, group=2)
    f = net.conv(r, 64, 48, k=5)
    return net.model([s, d, g, f])


def conv_kinds(g):
    return [(n.attrs["kind"], tuple(n.attrs["kernel_shape"]), tuple(n.attrs["strides"]),
             tuple(n.attrs["dilations"]), n.attrs["group"]) for n in ops(g, "NchwcConv")]


@pytest.mark.parametrize("target", TARGETS)
def test_winograd_where_it_pays(target):
    from onnxc.passes.layout.winograd import WINOGRAD_MIN_SIZE
    assert 36 * 64 * 23 * 25 >= WINOGRAD_MIN_SIZE
    model, feed = winograd_net()
    g, _ = run_pass(model, feed, target=target)
    kinds = conv_kinds(g)
    assert kinds[0] == ("winograd", (3, 3), (1, 1), (1, 1), 1), kinds
    assert [k[0] for k in kinds[1:]] == ["direct"] * 4, kinds
    b = BLOCK[target]
    assert ops(g, "NchwcConv")[0].inputs[1].shape == (16, 64 // b, 36 // b + (36 % b > 0), b, b)


@pytest.mark.parametrize("mode", [4, 2])
def test_winograd_tile_rule(mode):
    # F(4x4) for a big enough channel product or image, F(2x2) for few tiles of a small product
    # or of huge weights (or with the compile option winograd=2)
    net = Net((1, 64, 15, 14))
    a = net.conv("x", 64, 128)  # C*M 8192, 16 tiles of 4x4: F(4x4)
    b = net.conv(a, 128, 32)  # C*M 4096, 16 tiles: F(2x2)
    model, feed = net.model([b])
    g, _ = run_pass(model, feed, target="avx512" if "avx512" in TARGETS else "avx2", rtol=1e-4, atol=3e-5,
                    winograd=mode)
    convs = ops(g, "NchwcConv")
    assert [n.attrs.get("tile") for n in convs] == ([2, 2] if mode == 2 else [4, 2])
    assert convs[0].inputs[1].shape[0] == (16 if mode == 2 else 36)
    from onnxc.passes.layout.winograd import winograd_tile
    assert winograd_tile(512, 512, 1, [3, 3], [1, 1], [1, 1], (1, 512, 7, 7), mode) == 2  # 144 MB of U for 4 tiles
    assert winograd_tile(512, 512, 1, [3, 3], [1, 1], [1, 1], (1, 512, 14, 14), mode) == (2 if mode == 2 else 4)


def test_winograd_not_below_the_size_rule_or_when_disabled(tmp_path):
    from onnxc.passes.layout.winograd import WINOGRAD_MIN_SIZE
    net = Net((1, 16, 12, 12))
    a = net.conv("x", 16, 24)  # 55k: the transforms do not pay
    model, feed = net.model([a])
    assert 16 * 24 * 12 * 12 < WINOGRAD_MIN_SIZE
    g, _ = run_pass(model, feed)
    assert [k[0] for k in conv_kinds(g)] == ["direct"]
    model, feed = winograd_net()
    g, _ = run_pass(model, feed, winograd=0)
    assert [k[0] for k in conv_kinds(g)] == ["direct"] * 5
    # through onnxc.compile: an option, part of the cache key (the same model compiles to
    # Winograd without it)
    import onnxc
    src = {}
    for mode in (0, 4):
        onnxc.compile(model, output_dir=tmp_path / str(mode), target="avx2", winograd=mode)
        src[mode] = (tmp_path / str(mode) / "model.c").read_text()
    assert "winograd" not in src[0] and nchwc_f32.name("conv_winograd", 8) in src[4]
    with pytest.raises(ValueError, match="winograd=3"):
        onnxc.compile(model, output_dir=tmp_path / "bad", winograd=3)


def test_winograd_compiles_with_epilogue(tmp_path):
    # F(4x4) then, after a stride-2 conv, F(2x2) with the residual Add + Relu in its epilogue and
    # one with pads 0 (odd output) and a non-clamp activation (HardSigmoid) in the pass after it
    net = Net((2, 24, 29, 31))
    a = net.conv("x", 24, 40)  # 2 * 8 * 8 = 128 4x4 tiles: F(4x4)
    r = net.op("Relu", [a])
    d = net.conv(r, 40, 40, strides=(2, 2))  # direct, 15x16
    b = net.conv(d, 40, 40)  # 32 tiles of a small product: F(2x2)
    s = net.op("Add", [b, d])
    h = net.op("Relu", [s])
    c = net.conv(h, 40, 36, pads=[0, 0, 0, 0], bias=False)  # 13x14, F(2x2)
    hs = net.op("HardSigmoid", [c], alpha=0.3, beta=0.4)
    model, feed = net.model([hs])
    for t, src in levels(model, feed, tmp_path, TARGETS, atol=3e-5).items():
        assert src.count(nchwc_f32.name("conv_winograd_f4", BLOCK[t]) + "(") == 1, t
        assert src.count(nchwc_f32.name("conv_winograd", BLOCK[t]) + "(") == 2, t
    from onnxc import frontend
    from onnxc.driver import optimize
    g = frontend.load(model)
    optimize(g, "layout", target="avx2")
    convs = ops(g, "NchwcConv")
    assert [(n.attrs["kind"], n.attrs.get("tile")) for n in convs] == [("winograd", 4), ("direct", None),
                                                                         ("winograd", 2), ("winograd", 2)]
    assert len(convs[2].inputs) == 4 and convs[-1].attrs["activation"] == "HardSigmoid"
