"""Loop nests for elementwise work with numpy broadcasting, shapes and strides as constants.

Dimensions are right-aligned; a broadcast input gets stride 0 along the broadcast dims.
Adjacent dims that are contiguous for every operand are merged, so the common cases
(same shape, scalar, per-channel bias) become one or two flat loops that gcc vectorizes.
"""
from __future__ import annotations

import hashlib
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


def _nest(out_shape, operands):
    """(total elements, coalesced shape, strides: output's first then one list per operand)."""
    out_shape = [int(d) for d in out_shape]
    total = int(np.prod(out_shape, dtype=np.int64)) if out_shape else 1
    strides = [contiguous_strides(out_shape)] + [broadcast_strides(s, out_shape) for _, s in operands]
    shape, strides = coalesce(out_shape, strides)
    return total, shape, strides


def broadcast_loop(out_shape: Sequence[int], operands: Sequence[Tuple[str, Sequence[int]]],
                   body: Callable[[List[str], str], str], parallel: bool = True, block: bool = False,
                   outer: Tuple[str, str] = None) -> str:
    """C loop nest over ``out_shape``.

    operands: (pointer expression, shape) per input, broadcast against out_shape.
    body(elems, out_index): C statement(s), elems[i] the i-th operand's element expression.
    block: the body is several lines (one statement each), laid out as an indented block.
    outer: (begin, end) C expressions bounding the outermost coalesced loop instead of
    (0, its extent): one task's slice of the nest (pooled_loop).
    """
    total, shape, strides = _nest(out_shape, operands)
    if total == 0:
        return "/* empty tensor: nothing to do */"
    rank = len(shape)
    if rank == 0:
        return body([f"{p}[0]" for p, _ in operands], "0")
    idx = [f"i{k}" for k in range(rank)]

    def offset(st):
        terms = [f"{i}*{s}" if s != 1 else i for i, s in zip(idx, st) if s != 0]
        return " + ".join(terms) if terms else "0"

    elems = [f"{p}[{offset(st)}]" for (p, _), st in zip(operands, strides[1:])]
    lines = []
    if parallel and outer is None and total >= PARALLEL_MIN and shape[0] > 1:
        lines.append("ONNXC_OMP_FOR")
    for k in range(rank):
        lo, hi = outer if (outer and k == 0) else ("0", str(shape[k]))
        lines.append("  " * k + f"for (int64_t {idx[k]} = {lo}; {idx[k]} < {hi}; ++{idx[k]})")
    if block:
        lines.append("  " * rank + "{")
        lines.extend("  " * (rank + 1) + line for line in body(elems, offset(strides[0])).splitlines())
        lines.append("  " * rank + "}")
    else:
        lines.append("  " * rank + "{ " + body(elems, offset(strides[0])) + " }")
    return "\n".join(lines)


# Pool-split elementwise loops (pooled_loop): the output size below which a loop stays on the
# calling thread (about 16K floats, 2-3 us: handing a loop to the pool costs well under 1 us
# while the worker spins, and a serial loop that reads what the previous, split node wrote
# reads half of it from the other core's cache: MobileNetV3's SE Mul took 8 us at 1 thread,
# 17 us serial at 2), and the elements per task (the pool hands each thread a few tasks).
POOL_MIN = 1 << 14
POOL_TASK = 1 << 12


def pooled_loop(ctx, node, ptrs: Sequence[Tuple[str, str, str]], out_shape: Sequence[int],
                operands: Sequence[Tuple[str, Sequence[int]]], body: Callable[[List[str], str], str],
                block: bool = False, min_elems: int = POOL_MIN, task_elems: int = POOL_TASK) -> str:
    """The loop nest of ``broadcast_loop`` with its pointers declared first, split into tasks
    of the runtime's thread pool (of about ``task_elems`` elements) when the output has at least
    ``min_elems`` elements.

    ptrs: (C pointer type, local name, pointer expression) per pointer the body uses (the
    operands' names and the outputs'), e.g. ("const float*", "x0", ctx.ptr(v)).  A split loop
    becomes a file-scope task function (ctx.add_helper) over ranges of the outermost
    coalesced dimension, given the pointers through an array; every element is computed by the
    same expression wherever it runs, so results do not depend on the thread count."""
    decls = [f"{t} ONNXC_RESTRICT {n} = {e};" for t, n, e in ptrs]
    total, shape, _ = _nest(out_shape, operands)
    group = ntasks = 1
    if total >= min_elems and shape:
        inner = total // shape[0]
        group = max(1, -(-task_elems // inner))
        ntasks = -(-shape[0] // group)
    if ntasks < 2:
        return "\n".join(decls + [broadcast_loop(out_shape, operands, body, parallel=False, block=block)])
    nest = broadcast_loop(out_shape, operands, body, parallel=False, block=block,
                          outer=("b0", "e0"))
    fn_body = "\n".join(
        ["    void* const* a = (void* const*)arg;"]
        + [f"    {t} ONNXC_RESTRICT {n} = ({t})a[{k}];" for k, (t, n, _) in enumerate(ptrs)]
        + [f"    const int64_t b0 = t0 * {group}, e0 = t1 * {group} < {shape[0]} ? t1 * {group} : {shape[0]};"]
        + ["    " + line for line in nest.splitlines()])
    digest = hashlib.sha1(fn_body.encode()).hexdigest()[:10]
    fn = f"onnxc_loop{ctx.node_index.get(id(node), 0)}_{digest}"
    ctx.add_helper(
        f"static void {fn}(void* arg, int64_t t0, int64_t t1) {{\n{fn_body}\n}}")
    args = ", ".join(f"(void*)({e})" for _, _, e in ptrs)
    return "\n".join([f"void* onnxc_args[{len(ptrs)}] = {{{args}}};",
                      f"onnxc_parallel_for({ntasks}, 1, {fn}, onnxc_args);"])
