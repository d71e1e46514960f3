"""TfIdfVectorizer over integer tokens in C against the onnx reference and onnxruntime: random
pools (1- to 3-grams, repeated n-grams, permuted columns), every mode, skips, int32/int64, ranks
1 and 2, empty rows, extreme tokens; what stays outside C says why."""
import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

import onnxc
from helpers import compile_c, make_model, ort_run

RNG = np.random.default_rng(17)
VOCAB = np.array([-(2**63), -5, 0, 1, 2, 3, 7, 2**63 - 1], np.int64)


def _pool(sizes_counts):
    """pool_int64s and ngram_counts for {size: count} (sizes 1.. in order), distinct n-grams of
    tokens from VOCAB."""
    pool, counts = [], []
    for size in range(1, max(sizes_counts) + 1):
        counts.append(len(pool))
        grams = []
        while len(grams) < sizes_counts.get(size, 0):
            g = [int(t) for t in RNG.choice(VOCAB, size)]
            if g not in grams:
                grams.append(g)
        pool += [t for g in grams for t in g]
    return pool, counts


def _configs():
    out = []
    for k, (sizes, lo, hi, skip, mode, permute, weighted) in enumerate([
            ({1: 4, 2: 5}, 1, 2, 0, "TF", False, False), ({1: 4, 2: 5}, 2, 2, 3, "TF", True, False),
            ({1: 3, 2: 4, 3: 4}, 1, 3, 2, "TFIDF", False, True), ({1: 3, 2: 4, 3: 4}, 2, 3, 9, "IDF", False, True),
            ({1: 5}, 1, 1, 4, "IDF", True, False), ({2: 6}, 1, 2, 1, "TFIDF", True, False),
            ({1: 2, 2: 3, 3: 3}, 3, 3, 0, "TF", False, False), ({1: 3, 2: 0, 3: 2}, 1, 3, 1, "TF", False, False)]):
        pool, counts = _pool(sizes)
        n = sum(sizes.values())
        idx = list(RNG.permutation(n)) if permute else list(range(n))
        if permute and n > 2:
            idx[1] = idx[0]  # two n-grams into one column
        attrs = dict(mode=mode, min_gram_length=lo, max_gram_length=hi, max_skip_count=skip, ngram_counts=counts,
                     ngram_indexes=[int(i) for i in idx], pool_int64s=pool)
        if weighted:
            attrs["weights"] = [float(w) for w in RNG.uniform(0.1, 3, n)]
        out.append(attrs)
    return out


CONFIGS = _configs()


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
@pytest.mark.parametrize("shape", [(2, 9), (17,), (3, 1), (1, 0)])
def test_tfidf_random_pools(dtype, shape, tmp_path):
    vocab = VOCAB if dtype == np.int64 else np.clip(VOCAB, -(2**31), 2**31 - 1)
    pools = CONFIGS
    if dtype == np.int32:  # the pool's tokens as the int32 values the input can hold
        pools = [dict(a, pool_int64s=[int(np.clip(t, -(2**31), 2**31 - 1)) for t in a["pool_int64s"]]) for a in pools]
    x = RNG.choice(vocab, shape).astype(dtype)
    nodes = [helper.make_node("TfIdfVectorizer", ["x"], [f"y{k}"], **a) for k, a in enumerate(pools)]
    outs = [(f"y{k}", np.float32, None) for k in range(len(pools))]
    model = make_model(nodes, [("x", dtype, list(shape))], outs, opset=9)
    got = compile_c(model, tmp_path / "o").run(None, {"x": x})
    # the reference fails on IDF/TFIDF without weights (len(None)): those against onnxruntime only
    refable = [k for k, a in enumerate(pools) if a["mode"] == "TF" or "weights" in a]
    ref_model = make_model([nodes[k] for k in refable], [("x", dtype, list(shape))], [outs[k] for k in refable],
                           opset=9)
    for k, r in zip(refable, ReferenceEvaluator(ref_model).run(None, {"x": x})):
        assert got[k].dtype == np.float32 and got[k].shape == r.shape, outs[k][0]
        np.testing.assert_allclose(got[k], r, rtol=1e-6, err_msg=outs[k][0])
    if shape[-1] == 0:  # no token: zeros (onnxruntime refuses an empty row)
        assert all(g.shape == (1, max(a["ngram_indexes"]) + 1) and not g.any() for g, a in zip(got, pools))
    if shape[-1] > 0:
        for (name, _, _), g, r in zip(outs, got, ort_run(model, {"x": x})):
            np.testing.assert_allclose(g, r, rtol=1e-6, err_msg=f"{name} vs onnxruntime")
        assert any(g.any() for g in got)  # the tokens met the pools


@pytest.mark.parametrize("attrs,why", [
    # the spec reads weights per pool n-gram, the reference and onnxruntime per output column
    (dict(mode="TFIDF", ngram_counts=[0], ngram_indexes=[1, 0], pool_int64s=[2, 3], weights=[0.5, 2.0]),
     "per n-gram or per column"),
    # onnxruntime refuses a repeated n-gram, the reference counts it into the last one's column
    (dict(mode="TF", ngram_counts=[0, 3], ngram_indexes=[0, 1, 2, 3, 4], pool_int64s=[2, 3, 2, 3, 5, 3, 5]),
     "occurs twice")])
def test_tfidf_outside_c_says_why(attrs, why, tmp_path):
    """Both run in the fallback (onnxruntime, or onnx.reference where onnxruntime refuses)."""
    a = dict(min_gram_length=1, max_gram_length=2, max_skip_count=0, **attrs)
    model = make_model([helper.make_node("TfIdfVectorizer", ["x"], ["y"], **a)], [("x", np.int64, [4])],
                       [("y", np.float32, None)], opset=9)
    m = onnxc.compile(model, output_dir=tmp_path / "o")
    assert why in m.fallback_nodes[0]["why"]
    x = np.array([2, 3, 3, 5], np.int64)
    np.testing.assert_array_equal(m.run(None, {"x": x})[0], ReferenceEvaluator(model).run(None, {"x": x})[0])


@pytest.mark.parametrize("counts,indexes,pool,msg", [
    ([0, 2], [0, 1], [3, 7, 3, 7], r"attribute ngram_indexes has 2 entries, expected one per n-gram of the pool \(3\)"),
    ([0, 2], [0, 1, 2], [3, 7, 3, 7, 1], r"the pool's 2-grams are 3 tokens, expected a multiple of 2")])
def test_tfidf_invalid_model(counts, indexes, pool, msg, tmp_path):
    a = dict(mode="TF", min_gram_length=1, max_gram_length=2, max_skip_count=0, ngram_counts=counts, ngram_indexes=indexes,
             pool_int64s=pool, name="tf")
    model = make_model([helper.make_node("TfIdfVectorizer", ["x"], ["y"], **a)], [("x", np.int64, [5])],
                       [("y", np.float32, [len(indexes)])], opset=9)
    with pytest.raises(onnxc.ModelError, match=r"node 'tf' \(TfIdfVectorizer\): " + msg):
        onnxc.compile(model, output_dir=tmp_path / "o")
