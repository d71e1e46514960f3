"""Op knowledge for the text family: TfIdfVectorizer's validity rule and its n-gram pool as a
trie (the C kernel's tables, runtime_c/text/tfidf_ref.c).  The reference is onnx.reference's
(onnxruntime computes the same).

The pool: ``ngram_counts[i]`` is where the (i+1)-grams start in ``pool_int64s`` / ``pool_strings``;
the k-th n-gram of the pool (all sizes in order, k from 0) counts into output column
``ngram_indexes[k]``; only sizes in [min_gram_length, max_gram_length] are looked for.  A repeated
n-gram has no one column: onnxruntime refuses the model, the reference counts into the last
occurrence's; the C path refuses it (``repeated_ngram``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .registry import check, get_attr
from .validate import inp, shape_of, shape_str


def pool_ngrams(node) -> List[Tuple[tuple, int]]:
    """[(n-gram, its ordinal k in the pool)] of the sizes the node looks for, in pool order."""
    pool = list(get_attr(node, "pool_int64s", None) or get_attr(node, "pool_strings", None) or [])
    counts = [int(c) for c in get_attr(node, "ngram_counts", None) or []]
    lo, hi = int(get_attr(node, "min_gram_length")), int(get_attr(node, "max_gram_length"))
    out, k = [], 0
    for i, start in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        size = i + 1
        n = max(end - start, 0) // size
        for j in range(n):
            if lo <= size <= hi:
                out.append((tuple(pool[start + j * size:start + (j + 1) * size]), k))
            k += 1
    return out


def pool_size(node) -> int:
    """Number of n-grams in the pool (of every size)."""
    pool = list(get_attr(node, "pool_int64s", None) or get_attr(node, "pool_strings", None) or [])
    counts = [int(c) for c in get_attr(node, "ngram_counts", None) or []]
    return sum(max((counts[i + 1] if i + 1 < len(counts) else len(pool)) - c, 0) // (i + 1)
               for i, c in enumerate(counts))


def repeated_ngram(node):
    """The first n-gram (of the sizes looked for) that occurs twice in the pool, else None."""
    seen = set()
    for gram, _ in pool_ngrams(node):
        if gram in seen:
            return gram
        seen.add(gram)
    return None


def ngram_trie(node) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pool's n-grams as a trie in flat arrays, children of a node contiguous and sorted:
    node 0 is the root, node e + 1 the end of edge e; the children of node v are the edges
    [first[v], first[v + 1]) with tokens keys[...]; column[v] is the output column an n-gram
    ending at node v counts into, -1 where none ends.  Returns (first, keys, column), int64."""
    root: Dict = {}
    ends: Dict[tuple, int] = {}
    indexes = [int(i) for i in get_attr(node, "ngram_indexes")]
    for gram, k in pool_ngrams(node):
        level = root
        for tok in gram:
            level = level.setdefault(int(tok), {})
        ends[gram] = indexes[k]
    first, keys, column = [0], [], [-1]
    queue = [((), root)]
    for prefix, children in queue:  # breadth first: the edges of one node get consecutive numbers
        for tok in sorted(children):
            keys.append(tok)
            column.append(ends.get(prefix + (tok,), -1))
            queue.append((prefix + (tok,), children[tok]))
        first.append(len(keys))
    return (np.array(first, np.int64), np.array(keys, np.int64), np.array(column, np.int64))


@check("TfIdfVectorizer")
def _tfidf_rule(node):
    x = shape_of(node, 0)
    if x is not None and len(x) not in (1, 2):
        yield f"{inp(node, 0)} has shape {shape_str(x)}, expected [C] or [B, C]"
    mode = get_attr(node, "mode")
    if mode not in ("TF", "IDF", "TFIDF"):
        yield f"attribute mode is {mode!r}, expected 'TF', 'IDF' or 'TFIDF'"
    lo, hi = get_attr(node, "min_gram_length"), get_attr(node, "max_gram_length")
    if lo is not None and hi is not None and not 1 <= int(lo) <= int(hi):
        yield f"attributes min_gram_length {lo} and max_gram_length {hi}, expected 1 <= min <= max"
    if (get_attr(node, "pool_int64s", None) is None) == (get_attr(node, "pool_strings", None) is None):
        yield "expected exactly one of the attributes pool_int64s and pool_strings"
        return
    pool = list(get_attr(node, "pool_int64s", None) or get_attr(node, "pool_strings", None) or [])
    counts = [int(c) for c in get_attr(node, "ngram_counts", None) or []]
    for i, start in enumerate(counts):
        end = counts[i + 1] if i + 1 < len(counts) else len(pool)
        if not 0 <= start <= end <= len(pool):
            yield f"attribute ngram_counts is {counts}, expected ascending starts within the pool ({len(pool)} tokens)"
            return
        if (end - start) % (i + 1):
            yield f"the pool's {i + 1}-grams are {end - start} tokens, expected a multiple of {i + 1}"
    indexes = get_attr(node, "ngram_indexes", None) or []
    if get_attr(node, "ngram_counts", None) is not None and len(indexes) < pool_size(node):
        yield (f"attribute ngram_indexes has {len(indexes)} entries, expected one per n-gram of the pool "
               f"({pool_size(node)})")
    if any(int(i) < 0 for i in indexes):
        yield f"attribute ngram_indexes has a negative entry ({min(int(i) for i in indexes)})"
