"""onnxc-domain fused ops of the transformer family: shape rules and numpy references.

    onnxc.Gelu        [X, bias?]  Y = 0.5 v (1 + erf(v / sqrt 2)),  v = X + bias
    onnxc.FastGelu    [X, bias?]  Y = 0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
                      (bias is [N], X's last dim)
    onnxc.MatMulGelu  [A, B, bias?] {approximate}
                      Y = Gelu(A @ B + bias) (approximate "none": the erf form of onnxc.Gelu,
                      "tanh": FastGelu's); A [..., K], B [K, N] (2-D), bias [N]
    onnxc.LayerNormalization [X, gamma?, beta?] {epsilon}
                      over X's last dim: Y = (X - mean) / sqrt(var + eps) * gamma + beta
    onnxc.RMSNormalization   [X, gamma?] {epsilon}
                      over X's last dim: Y = X / sqrt(mean(X^2) + eps) * gamma
    onnxc.SkipLayerNormalization [X, skip, gamma?, beta?, bias?] {epsilon}
                      S = (X + bias) + skip (X and skip of one shape); Y = LayerNorm(S);
                      optional second output: S itself
    onnxc.MultiHeadAttention [X, W, bias?, mask?] {num_heads, scale, seq_first, nan_to_zero}
                      self-attention of X ([B, S, E], or [S, B, E] with seq_first) with the
                      packed projection W [E, 3*H*D] (columns: Q | K | V, head h at h*D) and
                      bias [3*H*D]: per head softmax(scale * Q K^T + mask) V, where the additive
                      float mask broadcasts to [B, H, S, S]; with nan_to_zero, NaN probabilities
                      are replaced by 0 (the Where(IsNaN) guard of torch's exports).
                      Y is [B, S, H*D] ([S, B, H*D] with seq_first), heads concatenated.
                      W absent: X is the projection already (QKV [B, S, 3*H*D], e.g. the int8
                      GEMM of com.microsoft.QAttention) and bias must be absent too.

gamma, beta and bias are all [N] (N = X's last dim); absent gamma means 1, absent beta/bias 0.
References compute in float32 in the order the decomposed graphs do.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import ModelError
from .registry import get_attr, reference, shape_rule

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _same_as_input(node):
    x = node.inputs[0]
    return [(x.dtype, x.shape)]


def _biased(x, b):
    return x if b is None else (x + b).astype(x.dtype)


def gelu_erf(v: np.ndarray) -> np.ndarray:
    t = v.dtype.type
    e = _erf(v / t(math.sqrt(2.0))).astype(v.dtype)
    return (v * (t(1) + e) * t(0.5)).astype(v.dtype)


def gelu_tanh(v: np.ndarray) -> np.ndarray:
    t = v.dtype.type
    inner = t(math.sqrt(2.0 / math.pi)) * (v + t(0.044715) * (v * v * v))
    return (t(0.5) * v * (t(1) + np.tanh(inner))).astype(v.dtype)


for _op in ("Gelu", "FastGelu"):
    shape_rule(_op, "onnxc")(_same_as_input)


@reference("Gelu", "onnxc")
def _gelu(node, x, bias=None):
    return [gelu_erf(_biased(x, bias))]


@reference("FastGelu", "onnxc")
def _fast_gelu(node, x, bias=None):
    return [gelu_tanh(_biased(x, bias))]


@shape_rule("MatMulGelu", "onnxc")
def _matmul_gelu_shape(node):
    a, b = node.inputs[0], node.inputs[1]
    return [(a.dtype, tuple(a.shape[:-1]) + (b.shape[-1],))]


@reference("MatMulGelu", "onnxc")
def _matmul_gelu(node, a, b, bias=None):
    v = np.matmul(a, b).astype(a.dtype)
    fn = gelu_tanh if get_attr(node, "approximate", "none") == "tanh" else gelu_erf
    return [fn(_biased(v, bias))]


# --- normalizations ---------------------------------------------------------------------------
def layer_norm(x, gamma, beta, eps, rms=False):
    t = x.dtype.type
    if rms:
        d = x
    else:
        d = x - x.mean(axis=-1, keepdims=True, dtype=np.float64).astype(x.dtype)
    var = (d * d).mean(axis=-1, keepdims=True, dtype=np.float64).astype(x.dtype)
    y = d / np.sqrt(var + t(eps))
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y.astype(x.dtype)


@shape_rule("LayerNormalization", "onnxc")
def _ln_shape(node):
    return _same_as_input(node)


shape_rule("RMSNormalization", "onnxc")(_same_as_input)


@reference("LayerNormalization", "onnxc")
def _ln(node, x, gamma=None, beta=None):
    return [layer_norm(x, gamma, beta, float(get_attr(node, "epsilon", 1e-5)))]


@reference("RMSNormalization", "onnxc")
def _rms(node, x, gamma=None):
    return [layer_norm(x, gamma, None, float(get_attr(node, "epsilon", 1e-5)), rms=True)]


@shape_rule("SkipLayerNormalization", "onnxc")
def _skip_ln_shape(node):
    x = node.inputs[0]
    return [(x.dtype, x.shape)] * len(node.outputs)


@reference("SkipLayerNormalization", "onnxc")
def _skip_ln(node, x, skip, gamma=None, beta=None, bias=None):
    s = (_biased(x, bias) + skip).astype(x.dtype)
    y = layer_norm(s, gamma, beta, float(get_attr(node, "epsilon", 1e-5)))
    return [y, s][:len(node.outputs)]


# --- attention --------------------------------------------------------------------------------
def mha_geometry(node):
    """(B, S, E, H, D, seq_first) of a MultiHeadAttention node (E = 3*H*D when W is absent)."""
    x, w = node.inputs[0], node.input(1)
    seq_first = bool(get_attr(node, "seq_first", 0))
    H = int(get_attr(node, "num_heads"))
    d0, d1, E = x.shape
    B, S = (d1, d0) if seq_first else (d0, d1)
    D = (E if w is None else w.shape[1]) // (3 * H)
    return B, S, E, H, D, seq_first


@shape_rule("MultiHeadAttention", "onnxc")
def _mha_shape(node):
    x = node.inputs[0]
    if node.input(1) is None:
        H = int(get_attr(node, "num_heads"))
        if node.input(2) is not None:
            raise ModelError(f"onnxc.MultiHeadAttention node '{node.name}': bias '{node.input(2).name}' is "
                             f"given without W (the projected input carries its bias)")
        if x.shape is not None and isinstance(x.shape[-1], int) and x.shape[-1] % (3 * H):
            raise ModelError(f"onnxc.MultiHeadAttention node '{node.name}': projected input '{x.name}' has "
                             f"{x.shape[-1]} columns, expected 3 * num_heads ({H}) * head size")
    B, S, E, H, D, seq_first = mha_geometry(node)
    return [(x.dtype, (S, B, H * D) if seq_first else (B, S, H * D))]


@reference("MultiHeadAttention", "onnxc")
def _mha(node, x, w, bias=None, mask=None):
    B, S, E, H, D, seq_first = mha_geometry(node)
    t = x.dtype.type
    xb = np.swapaxes(x, 0, 1) if seq_first else x  # [B, S, E]
    qkv = xb if w is None else xb @ w
    if bias is not None:
        qkv = qkv + bias
    qkv = qkv.reshape(B, S, 3, H, D).transpose(2, 0, 3, 1, 4)  # [3, B, H, S, D]
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = (q @ np.swapaxes(k, -1, -2)) * t(get_attr(node, "scale"))
    if mask is not None:
        scores = scores + mask
    with np.errstate(invalid="ignore", over="ignore"):
        m = scores.max(axis=-1, keepdims=True)
        e = np.exp(scores - m)
        p = (e / e.sum(axis=-1, keepdims=True)).astype(x.dtype)
    if get_attr(node, "nan_to_zero", 0):
        p = np.where(np.isnan(p), t(0), p)
    y = (p @ v).transpose(0, 2, 1, 3).reshape(B, S, H * D)  # [B, S, H*D]
    return [np.ascontiguousarray(np.swapaxes(y, 0, 1) if seq_first else y).astype(x.dtype)]
