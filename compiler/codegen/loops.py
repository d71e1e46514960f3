"""Loop nests for elementwise work with numpy broadcasting, shapes and strides as constants.

Dimensions are right-aligned; a broadcast input gets stride 0 along the broadcast dims.
Adjacent dims that are contiguous for every operand are merged, so the common cases
(same shape, scalar, per-channel bias) become one or two flat loops that gcc vectorizes.
"""
from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import numpy as np

PARALLEL_MIN = 1 << 16  # elements below which a loop stays on one thread


def contiguous_strides(shape: Sequence[int]) -> List[int]:
    strides, acc = [], 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= d
    return strides[::-1]


def broadcast_strides(in_shape: Sequence[int], out_shape: Sequence[int]) -> List[int]:
    pad = len(out_shape) - len(in_shape)
    full = [1] * pad + list(in_shape)
    cs = contiguous_strides(full)
    return [0 if (d == 1 and o != 1) else s for d, o, s in zip(full, out_shape, cs)]


def coalesce(shape: Sequence[int], strides: List[List[int]]) -> Tuple[List[int], List[List[int]]]:
    """Merge adjacent dims where every operand is contiguous across them; drop size-1 dims."""
    dims = [i for i, d in enumerate(shape) if d != 1]
    shape2 = [shape[i] for i in dims]
    strides2 = [[s[i] for i in dims] for s in strides]
    out_shape: List[int] = []
    out_strides: List[List[int]] = [[] for _ in strides]
    for k, d in enumerate(shape2):
        if out_shape and all(st[-1] == s[k] * d for st, s in zip(out_strides, strides2)):
            out_shape[-1] *= d
            for st, s in zip(out_strides, strides2):
                st[-1] = s[k]
            continue
        out_shape.append(d)
        for st, s in zip(out_strides, strides2):
            st.append(s[k])
    return out_shape, out_strides


def broadcast_loop(out_shape: Sequence[int], operands: Sequence[Tuple[str, Sequence[int]]],
                   body: Callable[[List[str], str], str], parallel: bool = True, block: bool = False) -> str:
    """C loop nest over ``out_shape``.

    operands: (pointer expression, shape) per input, broadcast against out_shape.
    body(elems, out_index): C statement(s), elems[i] the i-th operand's element expression.
    block: the body is several lines (one statement each), laid out as an indented block.
    """
    out_shape = [int(d) for d in out_shape]
    total = int(np.prod(out_shape, dtype=np.int64)) if out_shape else 1
    if total == 0:
        return "/* empty tensor: nothing to do */"
    strides = [contiguous_strides(out_shape)] + [broadcast_strides(s, out_shape) for _, s in operands]
    shape, strides = coalesce(out_shape, strides)
    rank = len(shape)
    if rank == 0:
        return body([f"{p}[0]" for p, _ in operands], "0")
    idx = [f"i{k}" for k in range(rank)]

    def offset(st):
        terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, st) if s != 0]
        return " + ".join(terms) if terms else "0"

    elems = [f"{p}[{offset(st)}]" for (p, _), st in zip(operands, strides[1:])]
    lines = []
    if parallel and total >= PARALLEL_MIN and shape[0] > 1:
        lines.append("ONNXC_OMP_FOR")
    for k in range(rank):
        lines.append("  " * k + f"for (int64_t {idx[k]} = 0; {idx[k]} < {shape[k]}; ++{idx[k]})")
    if block:
        lines.append("  " * rank + "{")
        lines.extend("  " * (rank + 1) + line for line in body(elems, offset(strides[0])).splitlines())
        lines.append("  " * rank + "}")
    else:
        lines.append("  " * rank + "{ " + body(elems, offset(strides[0])) + " }")
    return "\n".join(lines)
