"""Property tests: random shapes and attributes for the data-movement ops and the reductions,
compiled by onnxc and compared with numpy. Each example builds one model with several outputs
(a compile costs ~0.5 s), and every node must run in C."""
import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxc
from helpers import make_model, ort_run

# no shrinking: each step would recompile (minutes); a failure still prints its example
SETTINGS = settings(max_examples=15, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
DTYPES = [np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_]
I64_MIN, I64_MAX = -2**63, 2**63 - 1


def values(shape, dtype, rng):
    x = rng.standard_normal(shape) * 10
    return (x > 0) if dtype == np.bool_ else x.astype(dtype)


def run(tmp_path_factory, nodes, feed, outputs, inits=None, ort=False):
    """Compile (inputs from ``feed``, outputs [(name, dtype)] shaped by onnx inference) and run;
    with ``ort`` also return onnxruntime's outputs."""
    model = make_model(nodes, [(n, a.dtype, list(a.shape)) for n, a in feed.items()],
                       [(n, t, None) for n, t in outputs], inits)
    cm = onnxc.compile(model, output_dir=tmp_path_factory.mktemp("p"))
    assert cm.fallback_nodes == []
    out = cm.run(None, feed)
    return (out, ort_run(model, feed)) if ort else out


def assert_same(out, want):
    for o, w in zip(out, want):
        assert o.shape == w.shape and o.dtype == w.dtype, (o.shape, w.shape, o.dtype, w.dtype)
        np.testing.assert_array_equal(o, w)


shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4)


# --- Reshape ------------------------------------------------------------------------------
def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def reshape_spec(draw, in_shape):
    """(shape input, allowzero, resolved output shape) valid for ``in_shape``."""
    total = int(np.prod(in_shape))
    rank = draw(st.integers(1, 5))
    if total == 0:  # any dims with at least one 0, written literally: allowzero=1
        out = draw(st.lists(st.integers(0, 3), min_size=rank, max_size=rank))
        out[draw(st.integers(0, rank - 1))] = 0
    else:
        out, rest = [], total
        for _ in range(rank - 1):
            d = draw(st.sampled_from(_divisors(rest)))
            out.append(d)
            rest //= d
        out.append(rest)
        out = draw(st.permutations(out))
    allowzero = 1 if 0 in out else draw(st.integers(0, 1))
    spec = list(out)
    if not allowzero:  # 0 copies the input's dim at the same index
        for i in range(min(rank, len(in_shape))):
            if in_shape[i] == out[i] and draw(st.booleans()):
                spec[i] = 0
    if total and draw(st.booleans()):  # -1 is inferred (never with allowzero's literal zeros)
        spec[draw(st.integers(0, rank - 1))] = -1
    return np.array(spec, np.int64), allowzero, tuple(out)


@SETTINGS
@given(st.lists(st.integers(0, 4), min_size=0, max_size=4), st.sampled_from(DTYPES), st.data())
def test_reshape(tmp_path_factory, in_shape, dtype, data):
    if 0 in in_shape and data.draw(st.booleans()):
        in_shape = [d or 1 for d in in_shape]  # mostly non-empty
    x = values(in_shape, dtype, np.random.default_rng(0))
    specs = [data.draw(reshape_spec(in_shape)) for _ in range(3)]
    nodes = [helper.make_node("Reshape", ["x", f"s{i}"], [f"y{i}"], allowzero=az) for i, (_, az, _) in enumerate(specs)]
    out = run(tmp_path_factory, nodes, {"x": x}, [(f"y{i}", dtype) for i in range(3)],
              {f"s{i}": s for i, (s, _, _) in enumerate(specs)})
    assert_same(out, [x.reshape(shape) for _, _, shape in specs])


# --- Transpose ----------------------------------------------------------------------------
@SETTINGS
@given(st.lists(st.integers(1, 3), min_size=1, max_size=6), st.sampled_from(DTYPES), st.data())
def test_transpose(tmp_path_factory, shape, dtype, data):
    x = values(shape, dtype, np.random.default_rng(1))
    perms = [data.draw(st.permutations(range(len(shape)))) for _ in range(3)]
    nodes = [helper.make_node("Transpose", ["x"], [f"y{i}"], perm=p) for i, p in enumerate(perms)]
    nodes.append(helper.make_node("Transpose", ["x"], ["rev"]))  # default: reverse the axes
    out = run(tmp_path_factory, nodes, {"x": x}, [(f"y{i}", dtype) for i in range(3)] + [("rev", dtype)])
    assert_same(out, [np.transpose(x, p) for p in perms] + [np.transpose(x)])


# --- Slice --------------------------------------------------------------------------------
bounds = st.one_of(st.integers(-6, 6), st.sampled_from([I64_MIN, I64_MAX, -2**31, 2**31 - 1, 1000, -1000]))
steps = st.one_of(st.sampled_from([1, -1, 2, -2, 3, -3]), st.sampled_from([I64_MAX, I64_MIN + 1, 7, -7]))


@st.composite
def slice_spec(draw, rank):
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    spelled = [a - rank if draw(st.booleans()) else a for a in axes]  # negative axes too
    starts = [draw(bounds) for _ in axes]
    ends = [draw(bounds) for _ in axes]
    st_ = [draw(steps) for _ in axes]
    form = draw(st.sampled_from(["full", "no_steps", "no_axes"]))
    if form == "no_axes":  # axes default to 0..len(starts)-1
        axes = spelled = list(range(len(axes)))
    if form != "full":
        st_ = [1] * len(axes)
    sl = [slice(None)] * rank
    for a, s, e, k in zip(axes, starts, ends, st_):
        sl[a] = slice(s, e, k)
    inputs = {"starts": starts, "ends": ends}
    if form != "no_axes":
        inputs["axes"] = spelled
    if form == "full":
        inputs["steps"] = st_
    return inputs, tuple(sl)


@SETTINGS
@given(st.lists(st.integers(0, 5), min_size=1, max_size=4), st.sampled_from([np.float32, np.int64, np.bool_]),
       st.data())
def test_slice(tmp_path_factory, shape, dtype, data):
    x = values(shape, dtype, np.random.default_rng(2))
    specs = [data.draw(slice_spec(len(shape))) for _ in range(3)]
    nodes, inits = [], {}
    for i, (inputs, _) in enumerate(specs):
        names = []
        for k in ("starts", "ends", "axes", "steps"):
            if k in inputs:
                inits[f"{k}{i}"] = np.array(inputs[k], np.int64)
                names.append(f"{k}{i}")
        nodes.append(helper.make_node("Slice", ["x"] + names, [f"y{i}"]))
    out, ref = run(tmp_path_factory, nodes, {"x": x}, [(f"y{i}", dtype) for i in range(3)], inits, ort=True)
    assert_same(out, [x[_onnx_slices(sl, x.shape)] for _, sl in specs])
    for o, r, (_, sl) in zip(out, ref, specs):
        # onnxruntime reads an end of INT_MAX with a negative step as "to the beginning", unlike
        # the spec's clamp to dim-1 (and onnx's shape inference and reference)
        if not any(s.step is not None and s.step < 0 and s.stop in (I64_MAX, 2**31 - 1) for s in sl):
            assert_same([o], [r])


def _onnx_slices(sl, shape):
    """numpy slices with ONNX's clamping: for a negative step a start below -dim clamps to 0
    (element 0 is taken), where numpy's slice is empty."""
    return tuple(slice(0, s.stop, s.step) if s.step is not None and s.step < 0 and s.start < -d else s
                 for s, d in zip(sl, shape))


# --- Gather -------------------------------------------------------------------------------
@SETTINGS
@given(shapes, st.lists(st.integers(0, 3), min_size=0, max_size=3), st.sampled_from(DTYPES), st.data())
def test_gather(tmp_path_factory, shape, ind_shape, dtype, data):
    rng = np.random.default_rng(3)
    x = values(shape, dtype, rng)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    ind = rng.integers(-n, n, ind_shape)  # negative indices count from the end
    axis2 = data.draw(st.integers(-len(shape), len(shape) - 1))
    ind2 = rng.integers(-shape[axis2], shape[axis2], data.draw(st.lists(st.integers(1, 3), max_size=2)))
    feed = {"x": x, "i": ind.astype(np.int64), "j": ind2.astype(np.int32)}
    nodes = [helper.make_node("Gather", ["x", "i"], ["y"], axis=axis),
             helper.make_node("Gather", ["x", "j"], ["z"], axis=axis2)]
    out = run(tmp_path_factory, nodes, feed, [("y", dtype), ("z", dtype)])
    assert_same(out, [np.take(x, ind, axis=axis), np.take(x, ind2, axis=axis2)])


# --- Concat / Split -----------------------------------------------------------------------
@SETTINGS
@given(shapes, st.lists(st.integers(0, 4), min_size=1, max_size=4), st.sampled_from(DTYPES), st.data())
def test_concat_split(tmp_path_factory, shape, sizes, dtype, data):
    """Concat of parts (some empty) along a random axis, Split back by sizes and by num_outputs."""
    rng = np.random.default_rng(4)
    rank = len(shape)
    axis = data.draw(st.integers(-rank, rank - 1))
    parts = []
    for k in sizes:
        s = list(shape)
        s[axis] = k
        parts.append(values(s, dtype, rng))
    if sum(sizes) == 0:
        parts[0] = values([d if i != axis % rank else 1 for i, d in enumerate(shape)], dtype, rng)
    whole = np.concatenate(parts, axis=axis)
    total = whole.shape[axis]
    num = data.draw(st.integers(1, total).filter(lambda k: (k - 1) * -(-total // k) < total))
    chunk = -(-total // num)
    feed = {f"p{i}": p for i, p in enumerate(parts)}
    names = [f"s{i}" for i in range(len(parts))] + [f"n{i}" for i in range(num)]
    nodes = [helper.make_node("Concat", list(feed), ["cat"], axis=axis),
             helper.make_node("Split", ["cat", "sizes"], names[:len(parts)], axis=axis),
             helper.make_node("Split", ["cat"], names[len(parts):], axis=axis, num_outputs=num)]
    sizes = [p.shape[axis] for p in parts]
    out = run(tmp_path_factory, nodes, feed, [("cat", dtype)] + [(n, dtype) for n in names],
              {"sizes": np.array(sizes, np.int64)})
    by_num = np.split(whole, [chunk * (i + 1) for i in range(num - 1)], axis=axis)
    assert_same(out, [whole] + parts + by_num)


# --- Squeeze / Unsqueeze / Flatten --------------------------------------------------------
@SETTINGS
@given(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=0, max_size=4), st.sampled_from(DTYPES), st.data())
def test_squeeze_unsqueeze_flatten(tmp_path_factory, shape, dtype, data):
    x = values(shape, dtype, np.random.default_rng(5))
    rank = len(shape)
    ones = [i for i, d in enumerate(shape) if d == 1]
    sq = data.draw(st.lists(st.sampled_from(ones), unique=True)) if ones else []
    sq_spelled = [a - rank if data.draw(st.booleans()) else a for a in sq]
    k = data.draw(st.integers(1, 3))
    unsq = data.draw(st.lists(st.integers(0, rank + k - 1), min_size=k, max_size=k, unique=True))
    unsq_spelled = [a - (rank + k) if data.draw(st.booleans()) else a for a in unsq]
    nodes = [helper.make_node("Unsqueeze", ["x", "ua"], ["u"]), helper.make_node("Squeeze", ["x"], ["all"])]
    inits = {"ua": np.array(unsq_spelled, np.int64)}
    outs = [("u", dtype), ("all", dtype)]
    want = [np.expand_dims(x, tuple(unsq)), np.squeeze(x)]
    if sq:
        nodes.append(helper.make_node("Squeeze", ["x", "sa"], ["s"]))
        inits["sa"] = np.array(sq_spelled, np.int64)
        outs.append(("s", dtype))
        want.append(np.squeeze(x, tuple(sq)))
    if rank:
        fa = data.draw(st.integers(-rank, rank))
        nodes.append(helper.make_node("Flatten", ["x"], ["f"], axis=fa))
        outs.append(("f", dtype))
        cut = fa % rank if fa < 0 else fa
        want.append(x.reshape(int(np.prod(shape[:cut])), int(np.prod(shape[cut:]))))
    assert_same(run(tmp_path_factory, nodes, {"x": x}, outs, inits), want)


# --- reductions ---------------------------------------------------------------------------
def _np_reduce(op, x, axes, keepdims):
    x = x.astype(np.float64) if x.dtype.kind == "f" else x
    fns = {"ReduceSum": lambda: np.sum(x, axes, keepdims=keepdims),
           "ReduceMean": lambda: np.mean(x, axes, keepdims=keepdims),
           "ReduceMax": lambda: np.max(x, axes, keepdims=keepdims),
           "ReduceMin": lambda: np.min(x, axes, keepdims=keepdims),
           "ReduceProd": lambda: np.prod(x, axes, keepdims=keepdims),
           "ReduceL1": lambda: np.sum(np.abs(x), axes, keepdims=keepdims),
           "ReduceL2": lambda: np.sqrt(np.sum(x * x, axes, keepdims=keepdims)),
           "ReduceSumSquare": lambda: np.sum(x * x, axes, keepdims=keepdims),
           "ReduceLogSumExp": lambda: np.log(np.sum(np.exp(x), axes, keepdims=keepdims))}
    return fns[op]()


FLOAT_REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                "ReduceSumSquare", "ReduceLogSumExp"]
INT_REDUCE = ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceSumSquare"]


@SETTINGS
@given(shapes, st.sampled_from([np.float32, np.float32, np.float64, np.int32, np.int64]), st.data())
def test_reductions(tmp_path_factory, shape, dtype, data):
    rng = np.random.default_rng(6)
    rank = len(shape)
    x = (rng.uniform(-2, 2, shape) if np.dtype(dtype).kind == "f" else rng.integers(-3, 4, shape)).astype(dtype)
    axes = data.draw(st.lists(st.integers(0, rank - 1), max_size=rank, unique=True))
    spelled = [a - rank if data.draw(st.booleans()) else a for a in axes]
    keepdims = data.draw(st.integers(0, 1))
    noop = data.draw(st.integers(0, 1))
    omit = not axes and data.draw(st.booleans())  # no axes input at all vs an empty axes tensor
    ops = FLOAT_REDUCE if np.dtype(dtype).kind == "f" else INT_REDUCE
    inputs = ["x"] if omit else ["x", "axes"]
    nodes = [helper.make_node(op, inputs, [op], keepdims=keepdims, noop_with_empty_axes=noop) for op in ops]
    inits = {} if omit else {"axes": np.array(spelled, np.int64)}
    out = run(tmp_path_factory, nodes, {"x": x}, [(op, dtype) for op in ops], inits)
    for op, o in zip(ops, out):
        # noop_with_empty_axes reduces each element alone: ReduceL1 still gives |x|, SumSquare x*x
        want = np.asarray(_np_reduce(op, x, tuple(axes) if axes or noop else None, bool(keepdims)))
        assert o.shape == want.shape and o.dtype == dtype, (op, o.shape, want.shape, o.dtype)
        if np.dtype(dtype).kind == "f":
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(o, want, rtol=tol, atol=tol, err_msg=op)
        else:
            np.testing.assert_array_equal(o, want.astype(dtype), err_msg=op)
