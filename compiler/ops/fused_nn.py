"""onnxc-domain fused ops of the GEMM/Conv family: shape rules and numpy references.

    onnxc.FusedConv   [X, W, B?, Z?]  Y = act(conv(X, W) + B + Z)      (Conv's attributes)
    onnxc.FusedGemm   [A, B, C?]      Y = act(alpha * A' B' + beta * C) (Gemm's attributes)
    onnxc.FusedMatMul [A, B, bias?]   Y = act(alpha * A' @ B' + bias)   (transA/transB swap the
                                      last two dims of that operand; bias is [N], Y's last dim)

Each carries ``activation`` ("" for none, else a key of ACTIVATIONS) and ``activation_params``
(LeakyRelu [alpha], Clip [min, max], HardSigmoid [alpha, beta], else []): a row of the table in
ops/activations.py, which gives their numpy and C definitions.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .activations import TABLE
from .registry import evaluate, get_attr, reference, shape_rule


# name -> (number of activation_params, fn(x, params) -> array of x's dtype), from the one table
ACTIVATIONS: Dict[str, tuple] = {a.name: (len(a.params), a.reference) for a in TABLE}


def activation_of(node):
    """(name, params) of a fused node's epilogue activation; name "" means none."""
    return str(get_attr(node, "activation", "") or ""), [float(v) for v in get_attr(node, "activation_params", []) or []]


def activation_error(name: str, params: Sequence[float]):
    """Why (name, params) is not a valid epilogue activation, or None."""
    if name == "":
        return None if not params else "activation_params given without an activation"
    if name not in ACTIVATIONS:
        return f"unknown activation '{name}' (known: {', '.join(ACTIVATIONS)})"
    if len(params) != ACTIVATIONS[name][0]:
        return f"activation {name} takes {ACTIVATIONS[name][0]} activation_params, got {len(params)}"
    return None


def apply_activation(name: str, params: Sequence[float], x: np.ndarray) -> np.ndarray:
    if name == "":
        return x
    err = activation_error(name, params)
    if err:
        raise ValueError(err)
    return np.asarray(ACTIVATIONS[name][1](x, list(params)), dtype=x.dtype)


# --- FusedConv ---------------------------------------------------------------------------------
_CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _standard_node(op_type: str, node, specs: List, attr_names: Sequence[str]):
    """A throw-away default-domain node with ``node``'s attributes (those in ``attr_names``) and
    inputs typed like ``specs`` (arrays or Values): the unfused op, for its rule and reference."""
    from ..ir import Node, Value
    while specs and specs[-1] is None:
        specs = specs[:-1]
    vals = [None if a is None else Value(f"in{i}", a.dtype, a.shape) for i, a in enumerate(specs)]
    attrs = {k: v for k, v in node.attrs.items() if k in attr_names}
    return Node(op_type, vals, [Value("out")], attrs, opset=18)


@shape_rule("FusedConv", "onnxc")
def _fused_conv_shape(node):
    # Conv's own rule (onnx shape inference) on the unfused node; Z and the activation keep it
    from .shapes import infer_node
    return infer_node(_standard_node("Conv", node, list(node.inputs[:3]), _CONV_ATTRS))


@reference("FusedConv", "onnxc")
def _fused_conv_ref(node, x, w, b=None, z=None):
    arrays = [x, w] if b is None else [x, w, b]
    y = evaluate(_standard_node("Conv", node, arrays, _CONV_ATTRS), arrays)[0]
    if z is not None:
        y = y + z
    return [apply_activation(*activation_of(node), y.astype(x.dtype))]


# --- FusedGemm ---------------------------------------------------------------------------------
def _gemm_mnk(node):
    a, b = node.inputs[0], node.inputs[1]
    ta, tb = int(get_attr(node, "transA", 0)), int(get_attr(node, "transB", 0))
    M, K = (a.shape[1], a.shape[0]) if ta else tuple(a.shape)
    N = b.shape[0] if tb else b.shape[1]
    return M, N, K


@shape_rule("FusedGemm", "onnxc")
def _fused_gemm_shape(node):
    M, N, _ = _gemm_mnk(node)
    return [(node.inputs[0].dtype, (M, N))]


@reference("FusedGemm", "onnxc")
def _fused_gemm_ref(node, a, b, c=None):
    if get_attr(node, "transA", 0):
        a = a.T
    if get_attr(node, "transB", 0):
        b = b.T
    alpha, beta = (a.dtype.type(get_attr(node, k, 1.0)) for k in ("alpha", "beta"))
    y = alpha * (a @ b)
    if c is not None:
        y = y + beta * c
    return [apply_activation(*activation_of(node), y.astype(a.dtype))]


# --- FusedMatMul -------------------------------------------------------------------------------
def _swap_last(shape, flag) -> list:
    shape = list(shape)
    if flag:
        if len(shape) < 2:
            raise ValueError("transA/transB need an operand of rank >= 2")
        shape[-2], shape[-1] = shape[-1], shape[-2]
    return shape


def matmul_shapes(node):
    """Logical (after transA/transB) shapes of A and B."""
    a, b = node.inputs[0], node.inputs[1]
    return (_swap_last(a.shape, get_attr(node, "transA", 0)), _swap_last(b.shape, get_attr(node, "transB", 0)))


@shape_rule("FusedMatMul", "onnxc")
def _fused_matmul_shape(node):
    ash, bsh = matmul_shapes(node)
    a2 = [1] + ash if len(ash) == 1 else ash
    b2 = bsh + [1] if len(bsh) == 1 else bsh
    batch = list(np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2])))
    out = batch + ([a2[-2]] if len(ash) > 1 else []) + ([b2[-1]] if len(bsh) > 1 else [])
    return [(node.inputs[0].dtype, tuple(out))]


@reference("FusedMatMul", "onnxc")
def _fused_matmul_ref(node, a, b, bias=None):
    if get_attr(node, "transA", 0):
        a = np.swapaxes(a, -1, -2)
    if get_attr(node, "transB", 0):
        b = np.swapaxes(b, -1, -2)
    y = a.dtype.type(get_attr(node, "alpha", 1.0)) * np.matmul(a, b)
    if bias is not None:
        y = y + bias
    return [apply_activation(*activation_of(node), y.astype(a.dtype))]


