"""Text emitters: TfIdfVectorizer over integer tokens (runtime_c/text/tfidf_ref.c), the pool's
n-grams compiled into a trie in the weights blob (ops/text.py).  String tokens stay outside C
(the C path carries no strings)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ...ops import get_attr
from ...ops.text import ngram_trie, repeated_ngram
from .registry import c_kernel

_MODES = {"TF": "ONNXC_TFIDF_TF", "IDF": "ONNXC_TFIDF_IDF", "TFIDF": "ONNXC_TFIDF_TFIDF"}


def _rows_len(x):
    shape = list(x.shape)
    return (1, shape[0]) if len(shape) == 1 else (shape[0], shape[1])


def _tfidf_check(node) -> Optional[str]:
    x, y = node.inputs[0], node.outputs[0]
    if x.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        return f"dtype {x.dtype} not supported (int32 and int64 tokens)"
    if len(x.shape) not in (1, 2) or get_attr(node, "mode") not in _MODES:
        return "input rank other than 1 or 2, or an unknown mode"
    lo, hi = int(get_attr(node, "min_gram_length")), int(get_attr(node, "max_gram_length"))
    if not 1 <= lo <= hi:
        return f"min_gram_length {lo}, max_gram_length {hi}"
    indexes = [int(i) for i in get_attr(node, "ngram_indexes")]
    out = max(indexes) + 1 if indexes else 0
    rows, length = _rows_len(x)
    if list(y.shape) != ([rows, out] if len(x.shape) == 2 else [out]):
        return f"output shape {list(y.shape)} disagrees with the attributes (columns {out})"
    weights = get_attr(node, "weights", None)
    if weights is not None and get_attr(node, "mode") != "TF" and (
            indexes != list(range(len(indexes))) or len(weights) != len(indexes)):
        # the spec gives weights per pool n-gram, the reference and onnxruntime read them per
        # output column: compiled only where both readings agree
        return "weights with ngram_indexes other than 0, 1, 2, ... (per n-gram or per column?)"
    gram = repeated_ngram(node)
    if gram is not None:
        return f"n-gram {list(gram)} occurs twice in the pool: no one column (onnxruntime refuses it)"
    max_skip = int(get_attr(node, "max_skip_count", 0))
    if length * min(max_skip + 1, max(length, 1)) * hi >= 1 << 24:
        return "counts could reach 2^24 (the kernel counts in float32)"
    return None


@c_kernel("TfIdfVectorizer", check=_tfidf_check)
def tfidf(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    if y.size == 0:
        return "/* empty output */"
    rows, length = _rows_len(x)
    first, keys, column = ngram_trie(node)
    weights = get_attr(node, "weights", None)
    w = ctx.const_array(np.asarray(weights, np.float32)) if weights is not None else "NULL"
    k = ctx.const_array(keys) if keys.size else "NULL"
    is64 = x.dtype == np.int64
    return "\n".join([
        f"static const onnxc_tfidf_params p = {{{rows}, {length}, {y.shape[-1]}, "
        f"{int(get_attr(node, 'min_gram_length'))}, {int(get_attr(node, 'max_gram_length'))}, "
        f"{int(get_attr(node, 'max_skip_count', 0))}, {_MODES[get_attr(node, 'mode')]}}};",
        f"onnxc_tfidf(&p, {ctx.ptr(x) if is64 else 'NULL'}, {'NULL' if is64 else ctx.ptr(x)}, "
        f"{ctx.const_array(first)}, {k}, {ctx.const_array(column)}, {w}, {ctx.ptr(y)});",
    ])
