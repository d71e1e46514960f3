"""Elementwise emitters: unary/binary/variadic math, comparisons, logic, Where, Clip, Cast,
activations and inference BatchNormalization, as broadcast loop nests with constant strides.

Each op is a C expression over element expressions; float32 uses the f-suffixed libm calls.
Integer Div/Mod guard the divide-by-zero and INT_MIN/-1 traps: a compiled module must never
crash on data (the result is then 0, as documented in docs/semantics.md); integer +, -, *,
Neg and Abs wrap around as in numpy (intmath.py: no signed overflow in C).
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from ...codegen.loops import pooled_loop
from ...dtypes import c_type, dtype_name
from ...ops import get_attr
from ...ops.activations import params_of
from ...ops.elementwise import bit_width
from ...ops.narrow import touches_narrow
from .activations import c_activation
from .casts import cast_expr, cast_reason, standard_cast_expr
from .intmath import wrap_abs, wrap_binary, wrap_neg
from .registry import all_of, c_kernel

FLOATS = ("float32", "float64")
SIGNED = ("int8", "int16", "int32", "int64")
UNSIGNED = ("uint8", "uint16", "uint32", "uint64")
INTS = SIGNED + UNSIGNED
NUMERIC = FLOATS + INTS


def _f(name: str, dtype) -> str:
    """libm function name for dtype (expf for float32, exp for float64)."""
    return name + "f" if np.dtype(dtype) == np.float32 else name


def _dtype_check(allowed_in, allowed_out=None, which=(0,)):
    allowed_in = {np.dtype(a) for a in allowed_in}
    allowed_out = None if allowed_out is None else {np.dtype(a) for a in allowed_out}

    def check(node):
        for i in which:
            v = node.input(i)
            if v is not None and v.dtype not in allowed_in:
                return f"input {i} dtype {v.dtype} not supported"
        if allowed_out is not None:
            for o in node.outputs:
                if o.dtype not in allowed_out:
                    return f"output dtype {o.dtype} not supported"
        return None
    return check


def _broadcasts(node):
    """Inputs must broadcast (numpy rules) exactly to the output shape; anything else (e.g. an
    old-opset per-channel PRelu slope) is refused instead of read out of bounds."""
    shapes = [tuple(v.shape) for v in node.inputs if v is not None]
    try:
        full = np.broadcast_shapes(*shapes)
    except ValueError:
        return f"input shapes {shapes} do not broadcast"
    if tuple(full) != tuple(node.outputs[0].shape):
        return f"inputs broadcast to {tuple(full)}, not to the output shape {tuple(node.outputs[0].shape)}"
    return None


def _single_output(node):
    return None if len(node.outputs) == 1 else "only the first output is supported"


# --- unary -------------------------------------------------------------------------------
# expr(x, dtype, node) -> C expression
UNARY: Dict[str, tuple] = {}


def unary(op: str, types=FLOATS):
    def deco(fn: Callable):
        UNARY[op] = (fn, types)
        return fn
    return deco


# ops that are also epilogue activations (ops/activations.py): on float32 the table's expression,
# the same C as the fused epilogues and the runtime kernels' switch (attributes as its params);
# other types below.
def _as_activation(generic: Callable) -> Callable:
    def expr(x, t, n):
        if np.dtype(t) != np.float32:
            return generic(x, t, n)
        return c_activation(n.op_type, params_of(n), x)
    return expr


unary("Neg", FLOATS + SIGNED)(lambda x, t, n: wrap_neg(x, t))
unary("Relu", FLOATS + SIGNED)(_as_activation(lambda x, t, n: f"({x} < 0 ? 0 : {x})"))
unary("Sigmoid")(_as_activation(lambda x, t, n: f"(1 / (1 + exp(-{x})))"))
unary("Tanh")(_as_activation(lambda x, t, n: f"{_f('tanh', t)}({x})"))
unary("Exp")(lambda x, t, n: f"{_f('exp', t)}({x})")
unary("Log")(lambda x, t, n: f"{_f('log', t)}({x})")
unary("Sqrt")(lambda x, t, n: f"{_f('sqrt', t)}({x})")
unary("Sin")(lambda x, t, n: f"{_f('sin', t)}({x})")
unary("Cos")(lambda x, t, n: f"{_f('cos', t)}({x})")
unary("Tan")(lambda x, t, n: f"{_f('tan', t)}({x})")
unary("Asin")(lambda x, t, n: f"{_f('asin', t)}({x})")
unary("Acos")(lambda x, t, n: f"{_f('acos', t)}({x})")
unary("Atan")(lambda x, t, n: f"{_f('atan', t)}({x})")
unary("Sinh")(lambda x, t, n: f"{_f('sinh', t)}({x})")
unary("Cosh")(lambda x, t, n: f"{_f('cosh', t)}({x})")
unary("Asinh")(lambda x, t, n: f"{_f('asinh', t)}({x})")
unary("Acosh")(lambda x, t, n: f"{_f('acosh', t)}({x})")
unary("Atanh")(lambda x, t, n: f"{_f('atanh', t)}({x})")
unary("Erf")(lambda x, t, n: f"{_f('erf', t)}({x})")
unary("Floor")(lambda x, t, n: f"{_f('floor', t)}({x})")
unary("Ceil")(lambda x, t, n: f"{_f('ceil', t)}({x})")
unary("Round")(lambda x, t, n: f"{_f('nearbyint', t)}({x})")
unary("Reciprocal")(lambda x, t, n: f"(1 / {x})")
unary("Softsign")(lambda x, t, n: f"({x} / (1 + {_f('fabs', t)}({x})))")
unary("Softplus")(lambda x, t, n: f"({x} > 0 ? {x} + {_f('log1p', t)}({_f('exp', t)}(-{x})) : "
                                  f"{_f('log1p', t)}({_f('exp', t)}({x})))")
unary("Not", ("bool",))(lambda x, t, n: f"(!{x})")
unary("BitwiseNot", INTS)(lambda x, t, n: f"(~{x})")


@unary("Abs", NUMERIC)
def _abs(x, t, n):
    if np.dtype(t).kind == "u":
        return x
    if np.dtype(t).kind == "f":
        return f"{_f('fabs', t)}({x})"
    return wrap_abs(x, t)


@unary("Sign", NUMERIC)
def _sign(x, t, n):
    if np.dtype(t).kind == "u":
        return f"({x} > 0)"
    if np.dtype(t).kind == "f":
        return f"({x} > 0 ? 1 : ({x} < 0 ? -1 : ({x} == 0 ? 0 : {x})))"
    return f"(({x} > 0) - ({x} < 0))"


@unary("LeakyRelu")
@_as_activation
def _leaky(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 0.01), t)
    return f"({x} < 0 ? {a} * {x} : {x})"


@unary("Elu")
def _elu(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 1.0), t)
    return f"({x} < 0 ? {a} * ({_f('exp', t)}({x}) - 1) : {x})"


@unary("Selu")
def _selu(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 1.67326319217681884765625), t)
    g = n.ctx.lit(get_attr(n, "gamma", 1.05070102214813232421875), t)
    return f"({x} <= 0 ? {g} * ({a} * {_f('exp', t)}({x}) - {a}) : {g} * {x})"


@unary("Celu")
def _celu(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 1.0), t)
    return f"({x} > 0 ? {x} : {a} * ({_f('exp', t)}({x} / {a}) - 1))"


@unary("ThresholdedRelu")
def _trelu(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 1.0), t)
    return f"({x} > {a} ? {x} : 0)"


@unary("HardSigmoid")
@_as_activation
def _hsig(x, t, n):
    a = n.ctx.lit(get_attr(n, "alpha", 0.2), t)
    b = n.ctx.lit(get_attr(n, "beta", 0.5), t)
    return _clamp01(f"({a} * {x} + {b})")


def _clamp01(e):
    # comparisons, not fmin/fmax: those are libm calls without -ffinite-math-only (no
    # vectorization) and drop a NaN operand, where the spec's max(0, min(1, .)) keeps it
    return f"({e} < 0 ? 0 : {e} > 1 ? 1 : {e})"


@unary("HardSwish")
@_as_activation
def _hswish(x, t, n):
    return f"({x} * {_clamp01(f'({x} / 6 + 0.5)')})"


@unary("Swish")
def _swish(x, t, n):
    # x * sigmoid(alpha x) as the spec writes it: -inf gives NaN (-inf * 0), as the reference
    a = n.ctx.lit(get_attr(n, "alpha", 1.0), t)
    if np.dtype(t) == np.float32:
        return f"({x} * onnxc_sigmoidf({a} * {x}))"
    return f"({x} * (1 / (1 + exp(-({a} * {x})))))"


@unary("Mish")
def _mish(x, t, n):
    sp = f"({x} > 0 ? {x} + {_f('log1p', t)}({_f('exp', t)}(-{x})) : {_f('log1p', t)}({_f('exp', t)}({x})))"
    return f"({x} * {_f('tanh', t)}{sp})"


@unary("Gelu")
def _gelu(x, t, n):
    if np.dtype(t) == np.float32:  # the one float32 Gelu, also onnxc.Gelu's and MatMulGelu's
        tanh = get_attr(n, "approximate", "none") == "tanh"
        return f"{'onnxc_gelu_tanhf' if tanh else 'onnxc_gelu_erff'}({x})"
    if get_attr(n, "approximate", "none") == "tanh":
        k = n.ctx.lit(0.7978845608028654, t)
        return f"(0.5 * {x} * (1 + {_f('tanh', t)}({k} * ({x} + 0.044715 * {x} * {x} * {x}))))"
    k = n.ctx.lit(0.7071067811865476, t)
    return f"(0.5 * {x} * (1 + {_f('erf', t)}({x} * {k})))"


@unary("Shrink", NUMERIC)
def _shrink(x, t, n):
    b = n.ctx.lit(get_attr(n, "bias", 0.0), t)
    lam = get_attr(n, "lambd", 0.5)
    return f"({x} < -{lam!r} ? {x} + {b} : ({x} > {lam!r} ? {x} - {b} : 0))"


@unary("IsNaN")
def _isnan(x, t, n):
    return f"({x} != {x})"


@unary("IsInf")
def _isinf(x, t, n):
    pos, neg = get_attr(n, "detect_positive", 1), get_attr(n, "detect_negative", 1)
    terms = ([f"{x} == INFINITY"] if pos else []) + ([f"{x} == -INFINITY"] if neg else [])
    return "(" + (" || ".join(terms) if terms else "0") + ")"


class _NodeView:
    """Gives expression builders access to the node's attributes and the emit context."""

    def __init__(self, node, ctx):
        self.node, self.ctx = node, ctx
        self.attrs, self.op_type, self.domain, self.opset = node.attrs, node.op_type, node.domain, node.opset


def _emit_map(node, ctx, expr_of, operands) -> str:
    """Broadcast loop computing out = expr(operands); size-1 constants become literals.
    ``operands`` is positional: None (an omitted optional input) reaches expr_of as None."""
    lits = [None if v is None else ctx.scalar(v) for v in operands]
    ptrs = [(ctx.ptr(v), v.shape) for v, lit in zip(operands, lits) if v is not None and lit is None]

    def expr(elems):
        it = iter(elems)
        return expr_of([None if v is None else lit if lit is not None else next(it)
                        for v, lit in zip(operands, lits)])
    return _emit_map_ptrs(node, ctx, ptrs, expr)


def _emit_elementwise(node, ctx):
    """Every op with a scalar expression: one broadcast loop over its output."""
    return _emit_map(node, ctx, lambda xs: scalar_expr(node, xs, ctx), list(node.inputs))


def _unary_check(node):
    fn, types = UNARY[node.op_type]
    return all_of(_single_output, _dtype_check(types), _broadcasts)(node)


for _op in list(UNARY):
    c_kernel(_op, check=_unary_check)(_emit_elementwise)


# --- binary ------------------------------------------------------------------------------
def _int_div(x, y, t):
    t = np.dtype(t)
    if t.kind == "u":
        return f"({y} == 0 ? 0 : {x} / {y})"
    mn = {1: "INT8_MIN", 2: "INT16_MIN", 4: "INT32_MIN", 8: "INT64_MIN"}[t.itemsize]
    return f"({y} == 0 ? 0 : ({y} == -1 ? ({x} == {mn} ? {x} : -{x}) : {x} / {y}))"


def _div(x, y, t, n):
    return f"({x} / {y})" if np.dtype(t).kind == "f" else _int_div(x, y, t)


def _mod(x, y, t, n):
    t = np.dtype(t)
    if get_attr(n, "fmod", 0) or t.kind == "f":
        if t.kind == "f":
            if not get_attr(n, "fmod", 0):
                r = f"{_f('fmod', t)}({x}, {y})"
                return f"(({r} != 0 && (({r} < 0) != ({y} < 0))) ? {r} + {y} : {r})"
            return f"{_f('fmod', t)}({x}, {y})"
        if t.kind == "u":
            return f"({y} == 0 ? 0 : {x} % {y})"
        r = f"(({y} == 0 || {y} == -1) ? 0 : {x} % {y})"
        return r
    if t.kind == "u":
        return f"({y} == 0 ? 0 : {x} % {y})"
    r = f"(({y} == 0 || {y} == -1) ? 0 : {x} % {y})"
    return f"(({r} != 0 && (({r} < 0) != ({y} < 0))) ? {r} + {y} : {r})"


def _pow(x, y, t, n):
    t = np.dtype(t)
    if t.kind == "f":
        return f"{_f('pow', t)}({x}, ({_f_type(t)})({y}))"
    bits = 32 if t == np.int32 else 64
    e = np.dtype(n.node.inputs[1].dtype)
    if e.kind == "f":  # in double, truncated toward 0 as onnx.reference's astype (onnxc_rt.h)
        return f"onnxc_f2i{bits}(pow((double)({x}), (double)({y})))"
    # an integer exponent: exact (onnxruntime goes through double and rounds results > 2^53)
    neg = f"({y}) < 0" if e.kind == "i" else "0"
    return f"onnxc_ipow_i{bits}((int64_t)({x}), (uint64_t)({y}), {neg})"


def _f_type(t):
    return "float" if np.dtype(t) == np.float32 else "double"


def _fmax(x, y, t, n):
    if np.dtype(t).kind == "f":
        return f"(({x} > {y} || {x} != {x}) ? {x} : {y})"
    return f"({x} > {y} ? {x} : {y})"


def _fmin(x, y, t, n):
    if np.dtype(t).kind == "f":
        return f"(({x} < {y} || {x} != {x}) ? {x} : {y})"
    return f"({x} < {y} ? {x} : {y})"


def _bitshift(x, y, t, n):
    bits = np.dtype(t).itemsize * 8
    if get_attr(n, "direction") == "LEFT":
        return f"({y} >= {bits} ? 0 : {x} << {y})"
    return f"({y} >= {bits} ? 0 : {x} >> {y})"


BINARY: Dict[str, tuple] = {
    # op: (expr(x, y, dtype, node), input types, output is bool)
    "Add": (lambda x, y, t, n: wrap_binary("+", x, y, t), NUMERIC, False),
    "Sub": (lambda x, y, t, n: wrap_binary("-", x, y, t), NUMERIC, False),
    "Mul": (lambda x, y, t, n: wrap_binary("*", x, y, t), NUMERIC, False),
    "Div": (_div, NUMERIC, False),
    "Mod": (_mod, NUMERIC, False),
    "Pow": (_pow, FLOATS + ("int32", "int64"), False),
    "PRelu": (lambda x, y, t, n: f"({x} < 0 ? {wrap_binary('*', y, x, t)} : {x})", FLOATS + SIGNED, False),
    "Equal": (lambda x, y, t, n: f"({x} == {y})", NUMERIC + ("bool",), True),
    "Less": (lambda x, y, t, n: f"({x} < {y})", NUMERIC, True),
    "LessOrEqual": (lambda x, y, t, n: f"({x} <= {y})", NUMERIC, True),
    "Greater": (lambda x, y, t, n: f"({x} > {y})", NUMERIC, True),
    "GreaterOrEqual": (lambda x, y, t, n: f"({x} >= {y})", NUMERIC, True),
    "And": (lambda x, y, t, n: f"({x} && {y})", ("bool",), True),
    "Or": (lambda x, y, t, n: f"({x} || {y})", ("bool",), True),
    "Xor": (lambda x, y, t, n: f"((!{x}) != (!{y}))", ("bool",), True),
    "BitwiseAnd": (lambda x, y, t, n: f"({x} & {y})", INTS, False),
    "BitwiseOr": (lambda x, y, t, n: f"({x} | {y})", INTS, False),
    "BitwiseXor": (lambda x, y, t, n: f"({x} ^ {y})", INTS, False),
    "BitShift": (_bitshift, UNSIGNED, False),
}


def _binary_check(node):
    fn, types, _ = BINARY[node.op_type]
    if len(node.inputs) != 2:
        return "expects two inputs"
    if (node.op_type == "Mod" and node.inputs[0].dtype.kind == "f" and not get_attr(node, "fmod", 0)
            and node.opset < 28):
        return "floating-point Mod needs fmod=1 before opset 28"
    which = (0,) if node.op_type == "Pow" else (0, 1)
    if node.op_type == "Pow" and node.inputs[1].dtype not in {np.dtype(t) for t in NUMERIC}:
        return f"exponent dtype {node.inputs[1].dtype} not supported"
    return all_of(_dtype_check(types, which=which), _broadcasts)(node)


for _op in BINARY:
    c_kernel(_op, check=_binary_check)(_emit_elementwise)


# --- variadic ----------------------------------------------------------------------------
VARIADIC = {"Sum": lambda a, b, t, n: f"({a} + {b})", "Max": _fmax, "Min": _fmin, "Mean": None}


def _variadic_expr(node, xs, t, view):
    fold = VARIADIC["Sum" if node.op_type == "Mean" else node.op_type]
    acc = xs[0]
    for x in xs[1:]:
        acc = fold(acc, x, t, view)
    return f"({acc} / {len(xs)})" if node.op_type == "Mean" else acc


c_kernel("Sum", "Mean", check=all_of(_dtype_check(FLOATS, which=range(64)), _broadcasts))(_emit_elementwise)
c_kernel("Max", "Min", check=all_of(_dtype_check(NUMERIC, which=range(64)), _broadcasts))(_emit_elementwise)


# --- Where, Clip, Cast -------------------------------------------------------------------
c_kernel("Where", check=_broadcasts)(_emit_elementwise)


def _clip_check(node):
    if node.opset < 11:
        return "Clip before opset 11 (min/max attributes) not supported"
    return all_of(_dtype_check(NUMERIC), _broadcasts)(node)


def _clip_expr(xs):
    """xs: [x, min or None, max or None] (omitted bounds clip nothing)."""
    x = xs[0]
    lo = xs[1] if len(xs) > 1 else None
    hi = xs[2] if len(xs) > 2 else None
    if lo is not None:
        x = f"({x} < {lo} ? {lo} : {x})"
    if hi is not None:
        x = f"({x} > {hi} ? {hi} : {x})"
    return x


c_kernel("Clip", check=_clip_check)(_emit_elementwise)


_CASTABLE = NUMERIC + ("bool",)


def _cast_check(node):
    if touches_narrow(node):
        return cast_reason(node)
    if node.inputs[0].dtype not in {np.dtype(t) for t in _CASTABLE}:
        return f"cast from {node.inputs[0].dtype} not supported"
    if node.outputs[0].dtype not in {np.dtype(t) for t in _CASTABLE}:
        return f"cast to {node.outputs[0].dtype} not supported"
    if get_attr(node, "saturate", 1) != 1 and node.outputs[0].dtype.kind not in "fiub":
        return "saturate=0 only matters for float8 types"
    return None


def _any_cast_expr(node, x):
    src, dst = node.inputs[0].dtype, node.outputs[0].dtype
    if touches_narrow(node):
        sat, mode = get_attr(node, "saturate", 1), get_attr(node, "round_mode", "up")
        return cast_expr(x, src, dst, sat, mode)
    return standard_cast_expr(x, src, dst)


# CastLike's second input only names the target type: it is not read
c_kernel("Cast", "CastLike", check=_cast_check)(
    lambda node, ctx: _emit_map(node, ctx, lambda xs: scalar_expr(node, xs, ctx), [node.inputs[0]]))


# --- one source of truth for the scalar expression of an elementwise op ------------------
SCALAR_OPS = frozenset(UNARY) | frozenset(BINARY) | frozenset(VARIADIC) | {"Where", "Clip", "Cast", "CastLike"}


def has_scalar_expr(node) -> bool:
    """Is ``node`` an op whose C kernel is one scalar expression per output element?"""
    return node.domain in ("", "ai.onnx") and node.op_type in SCALAR_OPS


def scalar_expr(node, operands, ctx) -> str:
    """The C expression of one output element of elementwise ``node``, given its inputs'
    element expressions (positional; None for an omitted optional input).  Every emitter of
    this module and the fused onnxc.ElementwiseChain build their loops on this; the result's
    C type follows C's arithmetic conversions, so callers convert it to the output type."""
    op = node.op_type
    view = _NodeView(node, ctx)
    t = node.inputs[0].dtype
    if op in UNARY:
        return UNARY[op][0](operands[0], t, view)
    if op in BINARY:
        return BINARY[op][0](operands[0], operands[1], t, view)
    if op in VARIADIC:
        return _variadic_expr(node, list(operands), t, view)
    if op == "Where":
        return f"({operands[0]} ? {operands[1]} : {operands[2]})"
    if op == "Clip":
        return _clip_expr(list(operands))
    if op in ("Cast", "CastLike"):
        return _any_cast_expr(node, operands[0])
    raise KeyError(f"{node.label} has no scalar C expression")


# --- copies and views --------------------------------------------------------------------
def _emit_copy(node, ctx):
    src, dst = node.inputs[0], node.outputs[0]
    if ctx.is_alias(node):
        return f"/* view of '{src.name}': no copy */"
    if dst.nbytes == 0:
        return "/* empty */"
    return f"memcpy({ctx.ptr(dst)}, {ctx.ptr(src)}, {dst.nbytes});"


c_kernel("Identity", alias=lambda n: n.inputs[0], check=lambda n: None)(_emit_copy)


def _bitcast_check(node):
    x, y = node.inputs[0], node.outputs[0]
    for v in (x, y):  # sub-byte types are carried one element per byte: their bytes are not the bits
        if bit_width(v.dtype) != 8 * v.dtype.itemsize:
            return f"{dtype_name(v.dtype)} '{v.name}' is a sub-byte type"
    return None if x.nbytes == y.nbytes else "input and output sizes differ"


# BitCast copies the bytes rather than aliasing them: a view read through a pointer of another
# type (float* vs int32_t*) in the same C function breaks C's aliasing rules; memcpy does not.
@c_kernel("BitCast", check=_bitcast_check)
def _bitcast(node, ctx):
    x, y = node.inputs[0], node.outputs[0]
    return f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});" if y.nbytes else "/* empty */"


# --- BatchNormalization (inference) ------------------------------------------------------
def _bn_training(node) -> bool:
    return node.opset >= 14 and bool(get_attr(node, "training_mode", 0))


def _bn_check(node):
    if len(node.outputs) > 1 and not _bn_training(node):
        return "training outputs (running mean/var) before opset 14 not supported"
    if node.inputs[0].dtype != np.float32 and node.inputs[0].dtype != np.float64:
        return f"dtype {node.inputs[0].dtype} not supported"
    if any(v.dtype != node.inputs[0].dtype for v in node.inputs):
        return "mixed dtypes not supported"
    if len(node.inputs[0].shape) < 2:
        return "input rank < 2"
    if any(tuple(v.shape) != (node.inputs[0].shape[1],) for v in node.inputs[1:5]):
        return "scale/bias/mean/var must have shape [C]"
    return None


def _batchnorm_training(node, ctx):
    """training_mode=1: each channel normalized with its batch mean and (population) variance over
    N and the spatial dims, summed in double in two passes; the optional outputs are the running
    statistics mean * momentum + batch * (1 - momentum)."""
    x, scale, bias, mean, var = node.inputs[:5]
    ct = ctx.ctype(x)
    n, c = x.shape[0], x.shape[1]
    sp = int(np.prod(x.shape[2:], dtype=np.int64))
    cnt = n * sp
    eps = ctx.lit(float(get_attr(node, "epsilon", 1e-5)), np.float64)
    mom = ctx.lit(float(get_attr(node, "momentum", 0.9)), np.float64)
    lines = [f"const {ct}* X = {ctx.ptr(x)};", f"{ct}* Y = {ctx.ptr(node.outputs[0])};"]
    for name, v in (("S", scale), ("B", bias), ("M", mean), ("V", var)):
        lines.append(f"const {ct}* {name} = {ctx.ptr(v)};")
    extra = []
    for k, (name, src) in enumerate((("RM", "M"), ("RV", "V")), start=1):
        if len(node.outputs) > k and node.outputs[k] is not None:
            lines.append(f"{ct}* {name} = {ctx.ptr(node.outputs[k])};")
            stat = "m" if name == "RM" else "v"
            extra.append(f"  {name}[ch] = ({ct})((double){src}[ch] * {mom} + {stat} * (1.0 - {mom}));")
    if x.size == 0 and not extra:
        return "/* empty */"
    lines += [f"for (int64_t ch = 0; ch < {c}; ++ch) {{",
              "  double m = 0.0, v = 0.0;",
              f"  for (int64_t b = 0; b < {n}; ++b) for (int64_t i = 0; i < {sp}; ++i) m += X[(b * {c} + ch) * {sp} + i];",
              f"  m = {cnt} ? m / {cnt}.0 : NAN;",
              f"  for (int64_t b = 0; b < {n}; ++b) for (int64_t i = 0; i < {sp}; ++i) {{ "
              f"const double d = X[(b * {c} + ch) * {sp} + i] - m; v += d * d; }}",
              f"  v = {cnt} ? v / {cnt}.0 : NAN;",
              "  {",
              f"    const double a = (double)S[ch] / sqrt(v + {eps}), o = (double)B[ch] - m * a;",
              f"    for (int64_t b = 0; b < {n}; ++b) for (int64_t i = 0; i < {sp}; ++i) "
              f"Y[(b * {c} + ch) * {sp} + i] = ({ct})(X[(b * {c} + ch) * {sp} + i] * a + o);",
              "  }"] + extra + ["}"]
    return "\n".join(lines)


@c_kernel("BatchNormalization", check=_bn_check)
def _batchnorm(node, ctx):
    if _bn_training(node):
        return _batchnorm_training(node, ctx)
    x, scale, bias, mean, var = node.inputs[:5]
    t = x.dtype
    eps = get_attr(node, "epsilon", 1e-5)
    C = x.shape[1]
    if all(v.is_const for v in (scale, bias, mean, var)):
        a = (scale.const.astype(np.float64) / np.sqrt(var.const.astype(np.float64) + eps))
        b = bias.const.astype(np.float64) - mean.const.astype(np.float64) * a
        pa, pb = ctx.const_array(a.astype(t)), ctx.const_array(b.astype(t))
        shape_c = (C,) + (1,) * (len(x.shape) - 2)
        return _emit_map_ptrs(node, ctx, [(ctx.ptr(x), x.shape), (pa, shape_c), (pb, shape_c)],
                              lambda xs: f"{xs[0]} * {xs[1]} + {xs[2]}")
    shape_c = (C,) + (1,) * (len(x.shape) - 2)
    e = ctx.lit(eps, t)
    sq = _f("sqrt", t)
    ops = [(ctx.ptr(x), x.shape)] + [(ctx.ptr(v), shape_c) for v in (scale, bias, mean, var)]
    return _emit_map_ptrs(node, ctx, ops,
                          lambda xs: f"({xs[0]} - {xs[3]}) / {sq}({xs[4]} + {e}) * {xs[1]} + {xs[2]}")


def _emit_map_ptrs(node, ctx, operands: List[tuple], expr_of) -> str:
    """Declare named pointers for (pointer expression, shape) operands, then the loop nest."""
    out = node.outputs[0]
    ptrs = []
    named = []
    for i, (p, shape) in enumerate(operands):
        ct = p[p.index("(") + 2:p.index("*")].strip()  # "((const float*)..." -> "const float"
        if not ct.startswith("const "):
            ct = "const " + ct
        ptrs.append((f"{ct}*", f"x{i}", p))
        named.append((f"x{i}", shape))
    ptrs.append((f"{ctx.ctype(out)}*", "y", ctx.ptr(out)))
    return pooled_loop(ctx, node, ptrs, out.shape, named,
                       lambda elems, oi: f"y[{oi}] = ({ctx.ctype(out)})({expr_of(elems)});")
