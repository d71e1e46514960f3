"""Seed models for the fuzzer (tests/fuzz/fuzz.py) and the sanitizer run (scripts/sanitize.py).

Each seed is small (compiles in well under a second at -O0) and covers one family of kernels and
passes: convolutions, GEMM, a BERT layer that fuses into MultiHeadAttention, indexing with index
inputs, shape ops, If/Loop, reductions and TopK, Resize, integer arithmetic, RNNs, QDQ, nodes
that only the fallback provider runs, and the light models the onnx package ships.  Pure Python
(onnx.helper and numpy): nothing here calls onnx's C++ code, so building a case cannot crash the
fuzzer's parent process.

``Seed.hints`` says how to make a valid feed for an integer input: ("index", lo, hi) draws values
in [lo, hi) (the fuzzer's feed mutations then put some out of that range), ("count", lo, hi)
bounds a Loop trip count or a TopK k (never mutated past hi: a large trip count is a long run,
not a hang).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = np.float32
OPSET = 18


@dataclass
class Seed:
    name: str
    build: Callable[[], onnx.ModelProto]
    hints: Dict[str, Tuple[str, int, int]] = field(default_factory=dict)
    input_shapes: Optional[Dict[str, List[int]]] = None  # for seeds with free dims
    weight: float = 1.0  # how often the fuzzer picks it
    light: bool = False


def rnd(*shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F)


def node(op, ins, outs, **kw):
    return helper.make_node(op, ins, outs, **kw)


def tinfo(name, dtype, shape):
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)


def model(nodes, inputs, outputs, inits=None, opset=OPSET, name="seed", extra_opsets=()):
    graph = helper.make_graph(nodes, name, [tinfo(*i) for i in inputs], [tinfo(*o) for o in outputs],
                              initializer=[numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] +
                          [helper.make_opsetid(d, v) for d, v in extra_opsets])
    m.ir_version = 8 if opset <= 18 else 10
    return m


# --- seeds ---------------------------------------------------------------------------------------
def conv_cnn():
    ns = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]), node("Relu", ["c1"], ["r1"]),
          node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
          node("Conv", ["p1", "w2"], ["c2"], group=2, dilations=[2, 2], pads=[2, 2, 2, 2]),
          node("Add", ["c2", "b2"], ["a2"]), node("Sigmoid", ["a2"], ["s2"]), node("Mul", ["a2", "s2"], ["m2"]),
          node("GlobalAveragePool", ["m2"], ["g"]), node("Flatten", ["g"], ["f"]),
          node("Gemm", ["f", "fw", "fb"], ["y"], transB=1)]
    c = {"w1": rnd(8, 3, 3, 3, seed=1), "b1": rnd(8, seed=2), "w2": rnd(8, 4, 3, 3, seed=3),
         "b2": rnd(1, 8, 1, 1, seed=4), "fw": rnd(10, 8, seed=5), "fb": rnd(10, seed=6)}
    return model(ns, [("x", F, [1, 3, 12, 12])], [("y", F, [1, 10])], c)


def conv_bn_dw():
    ns = [node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[0, 0, 1, 1], kernel_shape=[3, 3]),
          node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["bn"], epsilon=1e-3),
          node("Clip", ["bn", "lo", "hi"], ["cl"]),
          node("Conv", ["cl", "wd", "bd"], ["dw"], group=8, pads=[1, 1, 1, 1]), node("Add", ["dw", "cl"], ["res"]),
          node("AveragePool", ["res"], ["ap"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
          node("ConvTranspose", ["ap", "wt"], ["ct"], strides=[2, 2], output_padding=[1, 1], pads=[1, 1, 1, 1]),
          node("LeakyRelu", ["ct"], ["y"], alpha=0.1)]
    c = {"w1": rnd(8, 4, 3, 3, seed=1), "g": np.abs(rnd(8, seed=2)) + 0.5, "b": rnd(8, seed=3), "m": rnd(8, seed=4),
         "v": np.abs(rnd(8, seed=5)) + 0.5, "lo": np.array(0, F), "hi": np.array(6, F), "wd": rnd(8, 1, 3, 3, seed=6),
         "bd": rnd(8, seed=7), "wt": rnd(8, 4, 3, 3, seed=8)}
    return model(ns, [("x", F, [1, 4, 10, 10])], [("y", F, [1, 4, 10, 10])], c)


def matmul_mlp():
    ns = [node("MatMul", ["x", "w1"], ["h"]), node("Add", ["h", "b1"], ["hb"]), node("Relu", ["hb"], ["r"]),
          node("Gemm", ["r", "w2", "b2"], ["g"], transA=0, transB=0, alpha=0.5, beta=2.0),
          node("Softmax", ["g"], ["p"], axis=-1), node("MatMul", ["p", "w3"], ["y"]),
          node("ReduceMean", ["y", "ax"], ["m"], keepdims=1)]
    c = {"w1": rnd(16, 24, seed=1), "b1": rnd(24, seed=2), "w2": rnd(24, 12, seed=3), "b2": rnd(12, seed=4),
         "w3": rnd(12, 5, seed=5), "ax": np.array([1], np.int64)}
    return model(ns, [("x", F, [4, 16])], [("y", F, [4, 5]), ("m", F, [4, 1])], c)


B, S, E, H = 2, 5, 16, 2
D = E // H


def bert_layer():
    """BertSelfAttention as torch exports it, output dense + residual + decomposed LayerNorm, FFN
    with erf Gelu + residual + LayerNormalization: fuses into MultiHeadAttention,
    SkipLayerNormalization and Gelu at the extended level."""
    c = {f"w{t}": rnd(E, E, seed=10 + i, scale=0.5) for i, t in enumerate("qkv")}
    c.update({f"b{t}": rnd(E, seed=20 + i) for i, t in enumerate("qkv")})
    c.update(heads=np.array([B, S, H, D], np.int64), merged=np.array([B, S, E], np.int64),
             sd=np.array(np.sqrt(D), F), wo=rnd(E, E, seed=40, scale=0.5), bo=rnd(E, seed=41),
             eps=np.array(1e-5, F), two=np.array(2, F), lg=rnd(E, seed=42),
             lb=rnd(E, seed=43), wi=rnd(E, 32, seed=44, scale=0.5), bi=rnd(32, seed=45), wo2=rnd(32, E, seed=46, scale=0.3),
             bo2=rnd(E, seed=47), g2=rnd(E, seed=48), be2=rnd(E, seed=49), sq2=np.array(1.4142135, F),
             one=np.array(1, F), half=np.array(0.5, F))
    ns = []
    for t in "qkv":
        ns += [node("MatMul", ["x", f"w{t}"], [f"{t}_mm"]), node("Add", [f"b{t}", f"{t}_mm"], [f"{t}_p"]),
               node("Reshape", [f"{t}_p", "heads"], [f"{t}_r"])]
    ns += [node("Transpose", ["q_r"], ["q_t"], perm=[0, 2, 1, 3]), node("Transpose", ["v_r"], ["v_t"], perm=[0, 2, 1, 3]),
           node("Transpose", ["k_r"], ["k_t"], perm=[0, 2, 3, 1]), node("MatMul", ["q_t", "k_t"], ["qk"]),
           node("Div", ["qk", "sd"], ["sc"]), node("Add", ["sc", "mask"], ["ms"]), node("Softmax", ["ms"], ["p"], axis=-1),
           node("MatMul", ["p", "v_t"], ["o"]), node("Transpose", ["o"], ["o_t"], perm=[0, 2, 1, 3]),
           node("Reshape", ["o_t", "merged"], ["ctx"]),
           node("MatMul", ["ctx", "wo"], ["o_mm"]), node("Add", ["o_mm", "bo"], ["o_d"]), node("Add", ["o_d", "x"], ["s1"]),
           node("ReduceMean", ["s1"], ["mu"], axes=[-1]), node("Sub", ["s1", "mu"], ["d"]),
           node("Pow", ["d", "two"], ["d2"]), node("ReduceMean", ["d2"], ["var"], axes=[-1]),
           node("Add", ["var", "eps"], ["ve"]), node("Sqrt", ["ve"], ["sd_"]),
           node("Div", ["d", "sd_"], ["nrm"]), node("Mul", ["nrm", "lg"], ["ng"]), node("Add", ["ng", "lb"], ["h1"]),
           node("MatMul", ["h1", "wi"], ["f_mm"]), node("Add", ["bi", "f_mm"], ["f1"]),
           node("Div", ["f1", "sq2"], ["u"]), node("Erf", ["u"], ["e"]), node("Add", ["e", "one"], ["ea"]),
           node("Mul", ["f1", "ea"], ["fm"]), node("Mul", ["fm", "half"], ["fg"]),
           node("MatMul", ["fg", "wo2"], ["f2_mm"]), node("Add", ["bo2", "f2_mm"], ["f2"]),
           node("Add", ["f2", "h1"], ["s2"]),
           node("LayerNormalization", ["s2", "g2", "be2"], ["y"], axis=-1, epsilon=1e-12)]
    return model(ns, [("x", F, [B, S, E]), ("mask", F, [B, 1, 1, S])], [("y", F, [B, S, E])], c, opset=17)


def attention_op():
    """The opset-23 Attention op (GQA: 4 query heads over 2 KV heads) with a causal mask."""
    ns = [node("Attention", ["q", "k", "v"], ["y"], is_causal=1, q_num_heads=4, kv_num_heads=2)]
    return model(ns, [("q", F, [1, 4, 6, 8]), ("k", F, [1, 2, 6, 8]), ("v", F, [1, 2, 6, 8])], [("y", F, [1, 4, 6, 8])],
                 opset=23)


def gather_scatter():
    ns = [node("Gather", ["x", "gi"], ["g"], axis=1),
          node("GatherElements", ["x", "ei"], ["ge"], axis=0),
          node("GatherND", ["x", "ni"], ["gn"]),
          node("ScatterElements", ["x", "ei", "upd"], ["se"], axis=0),
          node("ScatterND", ["x", "ni", "nupd"], ["sn"]),
          node("Gather", ["tbl", "gi"], ["emb"], axis=0)]
    c = {"upd": rnd(2, 5, seed=1), "nupd": rnd(3, 5, seed=2), "tbl": rnd(6, 4, seed=3)}
    return model(ns, [("x", F, [4, 5]), ("gi", np.int64, [3]), ("ei", np.int64, [2, 5]), ("ni", np.int64, [3, 1])],
                 [("g", F, [4, 3]), ("ge", F, [2, 5]), ("gn", F, [3, 5]), ("se", F, [4, 5]), ("sn", F, [4, 5]),
                  ("emb", F, [3, 4])], c)


def shape_ops():
    ns = [node("Reshape", ["x", "shp"], ["r"]), node("Transpose", ["r"], ["t"], perm=[2, 0, 1]),
          node("Slice", ["t", "st", "en", "axs", "stp"], ["s"]), node("Concat", ["s", "s"], ["cc"], axis=1),
          node("Split", ["cc", "spl"], ["sp1", "sp2"], axis=2), node("Unsqueeze", ["sp1", "u_ax"], ["us"]),
          node("Squeeze", ["us", "u_ax"], ["sq"]), node("Expand", ["sq", "exs"], ["ex"]),
          node("Tile", ["sp2", "reps"], ["ti"]), node("Pad", ["ti", "pads"], ["pd"], mode="reflect"),
          node("Flatten", ["pd"], ["y"], axis=1)]
    c = {"shp": np.array([0, 4, -1], np.int64), "st": np.array([-1, 0], np.int64), "en": np.array([-100, 3], np.int64),
         "axs": np.array([1, 2], np.int64), "stp": np.array([-2, 1], np.int64), "spl": np.array([2, 1], np.int64),
         "u_ax": np.array([0], np.int64), "exs": np.array([2, 1, 1, 1], np.int64), "reps": np.array([1, 2, 1], np.int64),
         "pads": np.array([0, 1, 0, 0, 1, 0], np.int64)}
    return model(ns, [("x", F, [2, 4, 6])], [("y", F, [6, 6]), ("ex", F, [2, 6, 2, 2])], c)


def if_model():
    vi = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
    then = helper.make_graph([node("Mul", ["h", "y"], ["t1"]), node("Relu", ["t1"], ["t2"]),
                              node("Add", ["t2", "h"], ["a"])], "then", [], [vi("a", [2, 3])])
    els = helper.make_graph([node("Sub", ["h", "y"], ["b"])], "else", [], [vi("b", [2, 3])])
    ns = [node("Tanh", ["x"], ["h"]), node("If", ["cond"], ["r"], then_branch=then, else_branch=els),
          node("Sigmoid", ["r"], ["z"])]
    return model(ns, [("x", F, [2, 3]), ("y", F, [2, 3]), ("cond", np.bool_, [])], [("z", F, [2, 3])])


def loop_model():
    ti = lambda n, dt, s: tinfo(n, dt, s)
    body = helper.make_graph(
        [node("Add", ["a", "h"], ["a2"]), node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         node("Mul", ["b", "fi"], ["b2"]), node("Sub", ["a2", "b2"], ["s"]), node("ReduceSum", ["a2"], ["tot"], keepdims=0),
         node("Less", ["tot", "limit"], ["cout"])],
        "body", [ti("i", np.int64, []), ti("cin", np.bool_, []), ti("a", F, [2, 3]), ti("b", F, [2, 3])],
        [ti("cout", np.bool_, []), ti("a2", F, [2, 3]), ti("b2", F, [2, 3]), ti("s", F, [2, 3])])
    ns = [node("Exp", ["x"], ["h"]), node("Loop", ["M", "c0", "a0", "b0"], ["af", "bf", "ss"], body=body)]
    return model(ns, [("x", F, [2, 3]), ("a0", F, [2, 3]), ("b0", F, [2, 3]), ("M", np.int64, []), ("c0", np.bool_, [])],
                 [("af", F, [2, 3]), ("bf", F, [2, 3]), ("ss", F, ["iters", 2, 3])], {"limit": np.array(40.0, F)})


def loop_c():
    """A constant trip count and no early exit: the Loop runs in C."""
    body = helper.make_graph(
        [node("Add", ["a", "h"], ["a2"]), node("Cast", ["i"], ["fi"], to=TensorProto.FLOAT),
         node("Mul", ["a2", "fi"], ["s"]), node("Identity", ["cin"], ["cout"])],
        "body", [tinfo("i", np.int64, []), tinfo("cin", np.bool_, []), tinfo("a", F, [2, 3])],
        [tinfo("cout", np.bool_, []), tinfo("a2", F, [2, 3]), tinfo("s", F, [2, 3])])
    ns = [node("Exp", ["x"], ["h"]), node("Loop", ["M", "", "a0"], ["af", "ss"], body=body)]
    return model(ns, [("x", F, [2, 3]), ("a0", F, [2, 3])], [("af", F, [2, 3]), ("ss", F, [3, 2, 3])],
                 {"M": np.array(3, np.int64)})


def reduce_topk():
    ns = [node("ReduceSum", ["x", "ax1"], ["rs"], keepdims=0), node("ReduceMax", ["x", "ax2"], ["rm"], keepdims=1),
          node("ReduceL2", ["x"], ["rl"], keepdims=0), node("ArgMax", ["x"], ["am"], axis=2, select_last_index=1),
          node("TopK", ["x", "k"], ["tv", "tix"], axis=-1, largest=1, sorted=1),
          node("CumSum", ["x", "cax"], ["cs"], exclusive=1, reverse=1),
          node("LogSoftmax", ["x"], ["ls"], axis=1), node("ReduceLogSumExp", ["x", "ax2"], ["lse"], keepdims=0)]
    c = {"ax1": np.array([0, 2], np.int64), "ax2": np.array([-1], np.int64), "cax": np.array(1, np.int64),
         "k": np.array([3], np.int64)}
    return model(ns, [("x", F, [3, 4, 6])],
                 [("rs", F, [4]), ("rm", F, [3, 4, 1]), ("rl", F, []), ("am", np.int64, [3, 4, 1]),
                  ("tv", F, [3, 4, 3]), ("tix", np.int64, [3, 4, 3]), ("cs", F, [3, 4, 6]), ("ls", F, [3, 4, 6]),
                  ("lse", F, [3, 4])], c)


def resize_model():
    ns = [node("Resize", ["x", "", "sc"], ["up"], mode="linear", coordinate_transformation_mode="half_pixel"),
          node("Resize", ["up", "", "", "sz"], ["dn"], mode="nearest", nearest_mode="round_prefer_ceil",
               coordinate_transformation_mode="asymmetric"),
          node("Resize", ["x", "", "sc2"], ["cu"], mode="cubic", cubic_coeff_a=-0.5),
          node("Add", ["dn", "cu"], ["y"])]
    c = {"sc": np.array([1, 1, 2, 2], F), "sz": np.array([1, 2, 6, 8], np.int64), "sc2": np.array([1, 1, 1.5, 2], F)}
    return model(ns, [("x", F, [1, 2, 4, 4])], [("y", F, [1, 2, 6, 8])], c)


def int_math():
    ns = [node("Div", ["a", "b"], ["q"]), node("Mod", ["a", "b"], ["r"], fmod=0), node("Mod", ["a", "b"], ["rf"], fmod=1),
          node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT), node("Less", ["a", "b"], ["lt"]),
          node("Where", ["lt", "qf", "xf"], ["w"]), node("BitShift", ["ua", "ub"], ["bs"], direction="LEFT"),
          node("Abs", ["a"], ["ab"]), node("Neg", ["a"], ["ng"]), node("Sign", ["xf"], ["sg"]),
          node("Pow", ["xf", "two"], ["pw"]), node("Max", ["a", "b"], ["mx"])]
    return model(ns, [("a", np.int32, [3, 4]), ("b", np.int32, [3, 4]), ("xf", F, [3, 4]), ("ua", np.uint32, [4]),
                      ("ub", np.uint32, [4])],
                 [("q", np.int32, [3, 4]), ("r", np.int32, [3, 4]), ("rf", np.int32, [3, 4]), ("w", F, [3, 4]),
                  ("bs", np.uint32, [4]), ("ab", np.int32, [3, 4]), ("ng", np.int32, [3, 4]), ("sg", F, [3, 4]),
                  ("pw", F, [3, 4]), ("mx", np.int32, [3, 4])], {"two": np.array(2, F)})


def int_reduce():
    """Integer accumulation (sums, products, MatMul, CumSum) and negation: overflow wraps."""
    ns = [node("ReduceSum", ["a", "ax"], ["rs"], keepdims=0), node("ReduceProd", ["b", "ax"], ["rp"], keepdims=0),
          node("ReduceSumSquare", ["a", "ax"], ["rq"], keepdims=0), node("ReduceL1", ["b", "ax"], ["rl"], keepdims=0),
          node("CumSum", ["a", "zero"], ["cs"]), node("MatMul", ["a", "w"], ["mm"]),
          node("Add", ["b", "b"], ["ad"]), node("Sub", ["ad", "b"], ["sb"]), node("Mul", ["sb", "b"], ["ml"]),
          node("Neg", ["b"], ["ng"]), node("Abs", ["a"], ["ab"]), node("ArgMin", ["b"], ["am"], axis=1)]
    c = {"ax": np.array([1], np.int64), "zero": np.array(0, np.int64),
         "w": np.array([[3, -1], [2147483647, 2], [-7, 65536], [1, -2147483648]], np.int32)}
    return model(ns, [("a", np.int32, [3, 4]), ("b", np.int64, [3, 4])],
                 [("rs", np.int32, [3]), ("rp", np.int64, [3]), ("rq", np.int32, [3]), ("rl", np.int64, [3]),
                  ("cs", np.int32, [3, 4]), ("mm", np.int32, [3, 2]), ("ml", np.int64, [3, 4]), ("ng", np.int64, [3, 4]),
                  ("ab", np.int32, [3, 4]), ("am", np.int64, [3, 1])], c)


def rnn_model():
    ns = [node("LSTM", ["x", "w", "r", "b"], ["y", "yh", "yc"], hidden_size=5, direction="bidirectional"),
          node("GRU", ["x", "gw", "gr"], ["gy", "gh"], hidden_size=3, linear_before_reset=1)]
    c = {"w": rnd(2, 20, 4, seed=1, scale=0.3), "r": rnd(2, 20, 5, seed=2, scale=0.3), "b": rnd(2, 40, seed=3, scale=0.1),
         "gw": rnd(1, 9, 4, seed=4, scale=0.3), "gr": rnd(1, 9, 3, seed=5, scale=0.3)}
    return model(ns, [("x", F, [3, 2, 4])], [("y", F, [3, 2, 2, 5]), ("yh", F, [2, 2, 5]), ("yc", F, [2, 2, 5]),
                                             ("gy", F, [3, 1, 2, 3]), ("gh", F, [1, 2, 3])], c)


def qdq_model():
    ns = [node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]), node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
          node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0), node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
          node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]), node("DequantizeLinear", ["cq", "ys", "yz"], ["y"]),
          node("DynamicQuantizeLinear", ["x"], ["dq", "dqs", "dqz"])]
    c = {"xs": np.array(0.05, F), "xz": np.array(128, np.uint8),
         "wq": np.random.default_rng(1).integers(-50, 50, (4, 3, 3, 3)).astype(np.int8),
         "ws": np.array([0.01, 0.02, 0.03, 0.04], F), "wz": np.zeros(4, np.int8), "ys": np.array(0.1, F),
         "yz": np.array(0, np.int8)}
    return model(ns, [("x", F, [1, 3, 6, 6])], [("y", F, [1, 4, 6, 6]), ("dq", np.uint8, [1, 3, 6, 6]),
                                                ("dqs", F, []), ("dqz", np.uint8, [])], c)


def norm_pool():
    ns = [node("InstanceNormalization", ["x", "s", "b"], ["in"], epsilon=1e-4),
          node("LRN", ["in"], ["lrn"], size=3), node("LpNormalization", ["lrn"], ["lp"], axis=1, p=2),
          node("MaxPool", ["x"], ["mp"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
          node("LpPool", ["lp"], ["lpp"], kernel_shape=[2, 2], p=3), node("GlobalMaxPool", ["mp"], ["gm"]),
          node("Hardmax", ["x"], ["hm"], axis=-1), node("MeanVarianceNormalization", ["x"], ["mvn"])]
    c = {"s": rnd(4, seed=1), "b": rnd(4, seed=2)}
    return model(ns, [("x", F, [1, 4, 5, 5])], [("lpp", F, [1, 4, 4, 4]), ("gm", F, [1, 4, 1, 1]),
                                                ("hm", F, [1, 4, 5, 5]), ("mvn", F, [1, 4, 5, 5])], c)


def fallback_model():
    """Readers of data-dependent shapes (NonZero's, which C writes; TopK with a runtime k) and
    GroupNormalization-21 run in the fallback interpreter between C partitions."""
    ns = [node("Relu", ["x"], ["r"]), node("NonZero", ["r"], ["nz"]), node("Transpose", ["nz"], ["nzt"]),
          node("GatherND", ["x", "nzt"], ["g"]), node("ReduceSum", ["g"], ["s"], keepdims=0),
          node("Mul", ["x", "s"], ["y"]), node("Shape", ["nz"], ["sh"]),
          node("TopK", ["x", "k"], ["tv", "tix"], axis=-1), node("Unsqueeze", ["x", "ax"], ["x4"]),
          node("GroupNormalization", ["x4", "gs", "gb"], ["gn"], num_groups=1)]
    c = {"ax": np.array([0, 3], np.int64), "gs": rnd(1, seed=3), "gb": rnd(1, seed=4)}
    return model(ns, [("x", F, [3, 4]), ("k", np.int64, [1])],
                 [("y", F, [3, 4]), ("sh", np.int64, [2]), ("tv", F, [3, None]), ("tix", np.int64, [3, None]),
                  ("gn", F, [1, 3, 4, 1])], c, opset=21)


def dynamic_model():
    """A free batch dim bound by input_shapes at compile time; Shape/Gather/Concat fold away."""
    ns = [node("Shape", ["x"], ["sh"]), node("Gather", ["sh", "zero"], ["n"], axis=0),
          node("Concat", ["n", "minus1"], ["tgt"], axis=0), node("MatMul", ["x", "w"], ["h"]),
          node("Reshape", ["h", "tgt"], ["y"])]
    c = {"zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64), "w": rnd(6, 4, seed=1)}
    return model(ns, [("x", F, ["N", 3, 6])], [("y", F, ["N", 12])], c)


SMALL = [
    Seed("conv_cnn", conv_cnn), Seed("conv_bn_dw", conv_bn_dw), Seed("matmul_mlp", matmul_mlp),
    Seed("bert_layer", bert_layer, weight=1.5), Seed("attention_op", attention_op),
    Seed("gather_scatter", gather_scatter, hints={"gi": ("index", -5, 5), "ei": ("index", -4, 4), "ni": ("index", -4, 4)},
         weight=1.5),
    Seed("shape_ops", shape_ops, weight=1.5), Seed("if_model", if_model),
    Seed("loop_model", loop_model, hints={"M": ("count", 0, 6)}),
    Seed("loop_c", loop_c),
    Seed("reduce_topk", reduce_topk), Seed("resize_model", resize_model),
    Seed("int_math", int_math, hints={"ub": ("index", 0, 32)}), Seed("int_reduce", int_reduce),
    Seed("rnn_model", rnn_model), Seed("qdq_model", qdq_model),
    Seed("norm_pool", norm_pool), Seed("fallback_model", fallback_model, hints={"k": ("count", 1, 5)}),
    Seed("dynamic_model", dynamic_model, input_shapes={"x": [2, 3, 6]}),
]

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
# the three with hundreds of MB of folded weights take 10+ s per compile: left to long runs
HEAVY_LIGHT = ("bvlc_alexnet", "vgg19", "zfnet512")


# the two that compile and run in well under a second: the CI budget's light models
CI_LIGHT = ("shufflenet", "squeezenet")


def light_seeds(which: str) -> List[Seed]:
    if which == "none" or not os.path.isdir(LIGHT_DIR):
        return []
    names = sorted(f[len("light_"):-5] for f in os.listdir(LIGHT_DIR) if f.endswith(".onnx"))
    keep = {"ci": lambda n: n in CI_LIGHT, "cheap": lambda n: n not in HEAVY_LIGHT, "all": lambda n: True}[which]
    return [Seed("light_" + n, (lambda p=os.path.join(LIGHT_DIR, f"light_{n}.onnx"): onnx.load(p)), weight=0.5, light=True)
            for n in names if keep(n)]


def seeds(light: str = "cheap") -> List[Seed]:
    """The small seeds and the light models: light "none", "ci" (the two quickest), "cheap" (all
    but the three with hundreds of MB of weights), "all"."""
    return list(SMALL) + light_seeds(light)
