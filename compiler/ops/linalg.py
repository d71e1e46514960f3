"""Op knowledge for the linalg family (MatMul, Gemm and their integer forms): validity rules
(see registry.py)."""
from __future__ import annotations

from .registry import check, facts, get_attr
from .validate import broadcast_problem, inp, known, shape_of, shape_str, unidirectional_problem

# Facts (registry.FACTS)
facts("MatMul", "Gemm", "Einsum", twin=True)



def _matmul(node, ai, bi):
    a, b = shape_of(node, ai), shape_of(node, bi)
    for i, s in ((ai, a), (bi, b)):
        if s is not None and len(s) == 0:
            yield f"{inp(node, i)} is a scalar, expected rank >= 1"
            return
    if a is None or b is None:
        return
    k_a = a[-1]
    k_b = b[0] if len(b) == 1 else b[-2]
    if known(k_a) and known(k_b) and k_a != k_b:
        yield (f"{inp(node, ai)} {shape_str(a)} has {k_a} columns but {inp(node, bi)} {shape_str(b)} has "
               f"{k_b} rows, expected equal inner dimensions")
    if len(a) > 2 or len(b) > 2:
        p = broadcast_problem([(f"the batch dims of {inp(node, ai)}", a[:-2]), (f"those of {inp(node, bi)}", b[:-2])])
        if p:
            yield p


@check("MatMul")
def _matmul_rule(node):
    yield from _matmul(node, 0, 1)


@check("MatMulInteger")
def _matmul_integer_rule(node):
    yield from _matmul(node, 0, 1)


@check("QLinearMatMul")
def _qlinear_matmul_rule(node):
    yield from _matmul(node, 0, 3)


@check("Gemm")
def _gemm_rule(node):
    a, b = shape_of(node, 0), shape_of(node, 1)
    for i, s in ((0, a), (1, b)):
        if s is not None and len(s) != 2:
            yield f"{inp(node, i)} has shape {shape_str(s)}, expected rank 2"
            return
    if a is None or b is None:
        return
    ta, tb = int(get_attr(node, "transA", 0)), int(get_attr(node, "transB", 0))
    m, k_a = (a[1], a[0]) if ta else (a[0], a[1])
    k_b, n = (b[1], b[0]) if tb else (b[0], b[1])
    if known(k_a) and known(k_b) and k_a != k_b:
        yield (f"{inp(node, 0)} {shape_str(a)} (transA={ta}) gives K = {k_a} but {inp(node, 1)} {shape_str(b)} "
               f"(transB={tb}) gives K = {k_b}, expected equal")
    c = shape_of(node, 2)
    if c is not None and node.opset >= 7:  # C broadcasts one way, to (M, N)
        yield unidirectional_problem(inp(node, 2), c, (m, n), "the result")
