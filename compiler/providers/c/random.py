"""Random generators in C: RandomUniform(Like), RandomNormal(Like), Bernoulli, Multinomial, and
Dropout (inference: a copy; training mode: a random keep mask).

All draw from runtime_c/math/random_ref.c's counter-based Philox4x32-10: element i is a function
of (key, i).  A node with a ``seed`` attribute has a key fixed at compile time from the seed's
bits, so the module gives the same draws on every run (and the same seed the same draws in every
node); a node without one takes a fresh key per run (onnxc_rng_fresh_key).  The draws are not
numpy's, so the ONNX test cases' expected values (one numpy generator's) are checked by property
and distribution (tests/conformance/run.py, distribution_check).
"""
from __future__ import annotations

import struct

import numpy as np

from ...dtypes import onnx_from_np_dtype
from ...ops import get_attr
from .registry import c_kernel

FLOATS = {np.dtype(np.float32), np.dtype(np.float64)}
_BERNOULLI_OUT = FLOATS | {np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                                                 np.uint32, np.uint64, np.bool_)}


def seed_key(seed) -> int:
    """The 64-bit Philox key of a ``seed`` attribute (float, or int for Dropout): SplitMix64 of the
    seed's float64 bits, so 0.0 and 1.0 give unrelated keys."""
    z = (struct.unpack("<Q", struct.pack("<d", float(seed)))[0] + 0x9E3779B97F4A7C15) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return z ^ (z >> 31)


def _key(node) -> str:
    seed = node.attrs.get("seed")
    if seed is None:
        return "onnxc_rng_fresh_key(arena)"
    return f"UINT64_C({seed_key(seed)})"


def _float_out(node):
    y = node.outputs[0]
    return None if y.dtype in FLOATS else f"output dtype {y.dtype} not supported (float32/float64)"


def _float_in_out(node):
    x = node.inputs[0]
    return None if x.dtype in FLOATS else f"input dtype {x.dtype} not supported (float32/float64)"


@c_kernel("RandomUniform", "RandomUniformLike", check=_float_out)
def random_uniform(node, ctx):
    y = node.outputs[0]
    low, high = float(get_attr(node, "low", 0.0)), float(get_attr(node, "high", 1.0))
    return (f"onnxc_random_uniform({onnx_from_np_dtype(y.dtype)}, {ctx.ptr(y)}, {y.size}, "
            f"{ctx.lit(low, np.float64)}, {ctx.lit(high, np.float64)}, {_key(node)});")


@c_kernel("RandomNormal", "RandomNormalLike", check=_float_out)
def random_normal(node, ctx):
    y = node.outputs[0]
    mean, scale = float(get_attr(node, "mean", 0.0)), float(get_attr(node, "scale", 1.0))
    return (f"onnxc_random_normal({onnx_from_np_dtype(y.dtype)}, {ctx.ptr(y)}, {y.size}, "
            f"{ctx.lit(mean, np.float64)}, {ctx.lit(scale, np.float64)}, {_key(node)});")


def _bernoulli_check(node):
    y = node.outputs[0]
    if y.dtype not in _BERNOULLI_OUT:
        return f"output dtype {y.dtype} not supported"
    return _float_in_out(node)


@c_kernel("Bernoulli", check=_bernoulli_check)
def bernoulli(node, ctx):
    """y = 1 with probability p: uniform draw < p (p outside [0, 1] gives 0 or 1)."""
    x, y = node.inputs[0], node.outputs[0]
    return (f"onnxc_bernoulli({onnx_from_np_dtype(x.dtype)}, {ctx.ptr(x)}, {onnx_from_np_dtype(y.dtype)}, "
            f"{ctx.ptr(y)}, {y.size}, {_key(node)});")


def _multinomial_check(node):
    x, y = node.inputs[0], node.outputs[0]
    if y.dtype not in (np.dtype(np.int32), np.dtype(np.int64)):
        return f"output dtype {y.dtype} not supported (int32/int64)"
    if len(x.shape) != 2 or x.shape[1] < 1:
        return f"input shape {x.shape} is not [batch, classes >= 1]"
    return _float_in_out(node)


@c_kernel("Multinomial", check=_multinomial_check, scratch=lambda n: 8 * max(n.inputs[0].shape[-1], 1))
def multinomial(node, ctx):
    """Each sample: the first class whose running sum of exp(x - max) exceeds uniform * total."""
    x, y = node.inputs[0], node.outputs[0]
    batch, classes = x.shape
    samples = int(get_attr(node, "sample_size", 1))
    return (f"onnxc_multinomial({onnx_from_np_dtype(x.dtype)}, {ctx.ptr(x)}, {batch}, {classes}, {samples}, "
            f"{onnx_from_np_dtype(y.dtype)}, {ctx.ptr(y)}, {_key(node)}, {ctx.scratch(node, 'double')});")


# --- Dropout ---------------------------------------------------------------------------------
def _training(node):
    """False, True, or the training_mode Value read at run time."""
    t = node.input(2) if node.opset >= 12 else None
    if t is None:
        return False
    if t.is_const:
        return bool(t.const.reshape(-1)[0]) if t.const.size else False
    return t


def _dropout_check(node):
    if _training(node) is False:
        return None
    x, r, t = node.inputs[0], node.input(1), node.input(2)
    if x.dtype not in FLOATS:
        return f"training mode on {x.dtype} not supported (float32/float64)"
    if r is not None and (r.dtype not in FLOATS or r.size != 1):
        return f"ratio '{r.name}' must be one float32/float64 element"
    if t.size != 1:
        return f"training_mode '{t.name}' must have one element"
    return None


def _dropout_scratch(node):
    """The keep mask when the node has no mask output (training mode only)."""
    has_mask = len(node.outputs) > 1 and node.outputs[1].dtype is not None
    return 0 if has_mask or _training(node) is False else node.inputs[0].size


@c_kernel("Dropout", check=_dropout_check, scratch=_dropout_scratch)
def dropout(node, ctx):
    """Inference (no or a false training_mode): y = x, mask all true.  Training mode with ratio
    r > 0: mask = uniform >= r, y = (mask ? x : 0 * x) * (1 / (1 - r)) with the scale rounded in
    the ratio's type, as the reference computes it; r = 0: the inference result."""
    x, y = node.inputs[0], node.outputs[0]
    mask = node.outputs[1] if len(node.outputs) > 1 and node.outputs[1].dtype is not None else None
    copy = [f"memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, {y.nbytes});" if y.nbytes and not ctx.same_storage(x, y) else
            "/* view or empty: no copy */"]
    if mask is not None and mask.nbytes:
        copy.append(f"memset({ctx.ptr(mask)}, 1, {mask.nbytes});")
    training = _training(node)
    if training is False or y.size == 0:
        return "\n".join(copy)
    ct, r = ctx.ctype(x), node.input(1)
    rt = ctx.ctype(r) if r is not None else "float"
    ratio = ctx.scalar(r) if r is not None and r.is_const else (f"{ctx.ptr(r)}[0]" if r is not None else "0.5f")
    train = "1" if training is True else f"{ctx.ptr(training)}[0]"
    m = ctx.ptr(mask) if mask is not None else ctx.scratch(node, "uint8_t")
    return "\n".join([
        f"const {rt} r = {ratio};",
        f"if (!({train}) || r == 0) {{",
        *["  " + c for c in copy],
        "} else {",
        f"  const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
        f"  {ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        f"  uint8_t* ONNXC_RESTRICT M = (uint8_t*){m};",
        f"  const {ct} s = ({ct})(({rt})1 / (({rt})1 - r));",
        f"  onnxc_dropout_mask(M, {y.size}, (double)r, {_key(node)});",
        f"  for (int64_t i = 0; i < {y.size}; ++i) Y[i] = (M[i] ? X[i] : X[i] * ({ct})0) * s;",
        "}"])

