"""RNN, GRU and LSTM (opsets 7-22) through runtime_c/rnn/rnn_ref.c, float32 and float64, and
onnxruntime's com.microsoft.DynamicQuantizeLSTM (int8 weights, activations quantized at run time).

Everything but the tensors is resolved here at compile time into a static params struct:
direction, layout, clip, and each gate's activation with its alpha/beta.  Activation
parameters follow onnxruntime: ``activation_alpha``/``activation_beta`` are consumed in order
by the activations that take them.  Where that reading, the spec's defaults and onnxruntime's
defaults could disagree, the node is refused instead of guessed.  A sequence_lens value outside
[0, seq_length] fails the run (ONNXC_ERR_INDEX, as onnxruntime refuses it; the kernel clamps it
so it never indexes outside X or Y).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np

from ...ops import get_attr
from ...ops.plan import Refuse
from .registry import c_kernel

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
CELL = {"RNN": "ONNXC_RNN_CELL_RNN", "GRU": "ONNXC_RNN_CELL_GRU", "LSTM": "ONNXC_RNN_CELL_LSTM"}
DEFAULT_ACTS = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}
FLOATS = (np.dtype(np.float32), np.dtype(np.float64))

# lower-case name -> (C enum, uses alpha, uses beta, alpha default, beta default); a default of
# None means there is none everyone agrees on (the spec says "as the ONNX operator", which for
# ThresholdedRelu is 1.0 while onnxruntime uses 0; Affine and ScaledTanh are no longer ONNX ops).
ACTS = {
    "sigmoid": ("ONNXC_RNN_ACT_SIGMOID", False, False, 0.0, 0.0),
    "tanh": ("ONNXC_RNN_ACT_TANH", False, False, 0.0, 0.0),
    "relu": ("ONNXC_RNN_ACT_RELU", False, False, 0.0, 0.0),
    "affine": ("ONNXC_RNN_ACT_AFFINE", True, True, None, None),
    "leakyrelu": ("ONNXC_RNN_ACT_LEAKYRELU", True, False, 0.01, 0.0),
    "thresholdedrelu": ("ONNXC_RNN_ACT_THRESHOLDEDRELU", True, False, None, 0.0),
    "scaledtanh": ("ONNXC_RNN_ACT_SCALEDTANH", True, True, None, None),
    "hardsigmoid": ("ONNXC_RNN_ACT_HARDSIGMOID", True, True, 0.2, 0.5),
    "elu": ("ONNXC_RNN_ACT_ELU", True, False, 1.0, 0.0),
    "softsign": ("ONNXC_RNN_ACT_SOFTSIGN", False, False, 0.0, 0.0),
    "softplus": ("ONNXC_RNN_ACT_SOFTPLUS", False, False, 0.0, 0.0),
}


MS = "com.microsoft"
QLSTM = "DynamicQuantizeLSTM"


def _cell(node) -> str:
    return "LSTM" if node.op_type == QLSTM else node.op_type


def _dirs(node) -> Tuple[int, bool]:
    """(num_directions, reverse)."""
    direction = get_attr(node, "direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise Refuse(f"unknown direction '{direction}'")
    return (2 if direction == "bidirectional" else 1), direction == "reverse"


def _activations(node, dirs: int) -> List[List[Tuple[str, float, float]]]:
    """Per direction, the (C enum, alpha, beta) of each gate activation."""
    per_dir = len(DEFAULT_ACTS[_cell(node)])
    names = node.attrs.get("activations")
    if names is None:
        names = DEFAULT_ACTS[_cell(node)] * dirs
    names = [str(n).lower() for n in names]
    if node.op_type == "RNN" and dirs == 1 and len(names) == 2:
        names = names[:1]  # the schema's own default is [Tanh, Tanh]; onnxruntime uses the first
    if len(names) != per_dir * dirs:
        raise Refuse(f"{len(names)} activations given, expected {per_dir * dirs}")
    unknown = [n for n in names if n not in ACTS]
    if unknown:
        raise Refuse(f"unknown activation(s) {unknown}")
    alphas = [float(a) for a in node.attrs.get("activation_alpha", None) or []]
    betas = [float(b) for b in node.attrs.get("activation_beta", None) or []]
    n_alpha = sum(ACTS[n][1] for n in names)
    n_beta = sum(ACTS[n][2] for n in names)
    # consumed in order by the activations that take them: unambiguous only when the counts match
    # (a list with one value per activation could also mean positional; refuse rather than guess)
    if alphas and len(alphas) != n_alpha:
        raise Refuse(f"activation_alpha has {len(alphas)} values for {n_alpha} activation(s) that take one")
    if betas and len(betas) != n_beta:
        raise Refuse(f"activation_beta has {len(betas)} values for {n_beta} activation(s) that take one")
    out, ia, ib = [], 0, 0
    for n in names:
        enum, use_a, use_b, da, db = ACTS[n]
        a, b = 0.0, 0.0
        if use_a:
            a = alphas[ia] if alphas else da
            ia += 1
        if use_b:
            b = betas[ib] if betas else db
            ib += 1
        if a is None or b is None:
            raise Refuse(f"activation {n} needs explicit activation_alpha/activation_beta (no agreed default)")
        out.append((enum, a, b))
    return [out[d * per_dir:(d + 1) * per_dir] for d in range(dirs)]


def _geometry(node):
    """(T, N, I, H, dirs, reverse, layout) after validating every shape against the spec."""
    op, q8 = _cell(node), node.op_type == QLSTM
    if node.opset < 7 and not q8:
        raise Refuse(f"{op} before opset 7 has different attributes and is not supported")
    x, w, r = node.inputs[0], node.input(1), node.input(2)
    if w is None or r is None:
        raise Refuse("W and R are required")
    dirs, reverse = _dirs(node)
    layout = int(get_attr(node, "layout", 0))
    if layout not in (0, 1):
        raise Refuse(f"layout={layout}")
    if len(x.shape) != 3:
        raise Refuse("X must be 3-D")
    T, N, I = x.shape if layout == 0 else (x.shape[1], x.shape[0], x.shape[2])
    hidden = get_attr(node, "hidden_size", None)
    H = (int(r.shape[1]) if q8 else int(r.shape[-1])) if len(r.shape) == 3 else -1
    if hidden is not None and int(hidden) != H:
        raise Refuse(f"hidden_size={hidden} disagrees with R's shape {r.shape}")
    G = GATES[op]
    state = (dirs, N, H) if layout == 0 else (N, dirs, H)
    # DynamicQuantizeLSTM's W and R are LSTM's transposed: [dirs, I, 4H], [dirs, H, 4H]
    wr = ((dirs, I, G * H), (dirs, H, G * H)) if q8 else ((dirs, G * H, I), (dirs, G * H, H))
    expect = {1: wr[0], 2: wr[1], 3: (dirs, 2 * G * H), 4: (N,), 5: state}
    if op == "LSTM":
        expect.update({6: state, 7: (dirs, 3 * H)})
    for i, shape in expect.items():
        v = node.input(i)
        if v is not None and tuple(v.shape) != shape:
            raise Refuse(f"input {i} '{v.name}' has shape {v.shape}, expected {shape}")
    ys = [(T, dirs, N, H) if layout == 0 else (N, T, dirs, H), state, state]
    for i, v in enumerate(node.outputs[:3 if op == "LSTM" else 2]):
        if tuple(v.shape) != ys[i]:
            raise Refuse(f"output {i} '{v.name}' has shape {v.shape}, expected {ys[i]}")
    return T, N, I, H, dirs, reverse, layout


def _q8_check(node) -> Optional[str]:
    for i in (1, 2, 8, 9, 10, 11):
        v = node.input(i)
        if v is not None and not v.is_const:
            return f"input {i} '{v.name}' is not a constant (weights and their scales are packed at compile time)"
    if node.input(4) is not None:
        return "sequence_lens is given (onnxruntime's batching of the quantized steps is not reproduced)"
    return None


def _check(node) -> Optional[str]:
    x = node.inputs[0]
    q8 = node.op_type == QLSTM
    if x.dtype not in FLOATS or (q8 and x.dtype != np.float32):
        return f"dtype {x.dtype} not supported (float32{'' if q8 else ', float64'})"
    for i, v in enumerate(node.inputs):
        if v is not None and i != 4 and v.dtype != x.dtype and not (q8 and i in (1, 2, 9, 11)):
            return f"input {i} '{v.name}' has dtype {v.dtype}, expected {x.dtype}"
    if q8:
        reason = _q8_check(node)
        if reason:
            return reason
    sl = node.input(4)
    if sl is not None and sl.dtype != np.int32:
        return f"sequence_lens has dtype {sl.dtype}, expected int32"
    if len(node.outputs) > (3 if _cell(node) == "LSTM" else 2):
        return "too many outputs"
    try:
        _, _, _, _, dirs, _, _ = _geometry(node)
        _activations(node, dirs)
    except Refuse as e:
        return str(e)
    clip = node.attrs.get("clip")
    if clip is not None and not float(clip) > 0:
        return f"clip={clip} must be positive"
    return None


def _scratch_elems(node) -> int:
    """Mirror of onnxc_rnn_scratch_elems() in runtime_c/rnn/rnn_ref.c."""
    T, N, I, H, dirs, reverse, layout = _geometry(node)
    q8 = 4 * H - (-max(T * N * I, N * H) // 4) if node.op_type == QLSTM else 0  # scales, uint8 operand
    return (T * N + N) * GATES[_cell(node)] * H + 4 * N * H + q8


def _scratch(node) -> int:
    return _scratch_elems(node) * node.inputs[0].dtype.itemsize


def _used(node, i, ctx):
    """Output i if present and read by anyone (unused optional outputs are not computed)."""
    if i >= len(node.outputs):
        return None
    v = node.outputs[i]
    return v if (v.uses or id(ctx.root(v)) in ctx.output_index) else None


def _q8_weights(node, ctx, dirs: int, H: int) -> str:
    """The onnxc_rnn_q8 struct: W [dirs, I, 4H] and R [dirs, H, 4H] (each direction a [K, 4H] B
    operand) packed at compile time for the u8s8 kernel of the target's int8 GEMM (onnxc_qgemm.h),
    zero points (per tensor or per column) folded into the packing, scales per column. One kernel
    per GEMM for both directions (chosen on both: the AVX2 pair-safe choice reads B's values).
    Declares it and returns the declaration."""
    from ...kernels.qgemm import kernel_for, pack_b
    from .quant import QGEMM_H, _isa
    ctx.include(QGEMM_H)

    def per_col(i, dtype):
        v = node.input(i)
        a = np.zeros((dirs, 4 * H), dtype) if v is None else np.asarray(v.const, dtype)
        return np.ascontiguousarray(np.broadcast_to(a.reshape(dirs, -1), (dirs, 4 * H)))
    fields = []
    for wi, zi in ((1, 9), (2, 11)):
        w = node.inputs[wi].const
        k = kernel_for(_isa(ctx), np.uint8, np.concatenate(list(w), axis=1))
        zp = per_col(zi, np.int64)
        blobs = [ctx.const_array(pack_b(np.ascontiguousarray(w[d]), k, zp[d])) for d in range(dirs)]
        fields.append((f"&{k.name}_info", "{" + ", ".join(blobs + ["NULL"] * (2 - dirs)) + "}"))
    (wk, wb), (rk, rb) = fields
    ws, rs = ctx.const_array(per_col(8, np.float32)), ctx.const_array(per_col(10, np.float32))
    return f"const onnxc_rnn_q8 q8 = {{{wk}, {rk}, {wb}, {rb}, {ws}, {rs}}};"  # weights: a run-time base


@c_kernel("RNN", "GRU", "LSTM", check=_check, scratch=_scratch)
@c_kernel(QLSTM, domain=MS, check=_check, scratch=_scratch)
def rnn(node, ctx):
    T, N, I, H, dirs, reverse, layout = _geometry(node)
    acts = _activations(node, dirs)
    f64 = node.inputs[0].dtype == np.float64
    lit = lambda v: ctx.lit(v, np.float64)  # noqa: E731  (params hold doubles: floats stay exact)
    rows = []
    for d in range(2):
        row = acts[min(d, dirs - 1)] + [("ONNXC_RNN_ACT_TANH", 0.0, 0.0)] * (3 - len(acts[0]))
        rows.append("{" + ", ".join(f"{{{e}, {lit(a)}, {lit(b)}}}" for e, a, b in row) + "}")
    clip = node.attrs.get("clip")
    q8 = node.op_type == QLSTM
    params = (f"{'' if q8 else 'static '}const onnxc_rnn_params p = {{{CELL[_cell(node)]}, {T}, {N}, {I}, "
              f"{H}, {dirs}, {int(reverse)}, {layout}, {int(get_attr(node, 'input_forget', 0) or 0)}, "
              f"{int(get_attr(node, 'linear_before_reset', 0) or 0)}, {int(clip is not None)}, "
              f"{lit(float(clip) if clip is not None else 0.0)}, {{{', '.join(rows)}}}"
              f"{', &q8' if q8 else ''}}};")

    def ptr(v):
        return "NULL" if v is None else ctx.ptr(v)
    lstm = _cell(node) == "LSTM"
    ins = [ptr(node.input(i)) for i in range(6)]
    if q8:
        ins[1] = ins[2] = "NULL"  # the int8 weights are in q8
    ins += [ptr(node.input(6)), ptr(node.input(7))] if lstm else ["NULL", "NULL"]
    outs = [ptr(_used(node, i, ctx)) for i in range(2)]
    outs.append(ptr(_used(node, 2, ctx)) if lstm else "NULL")
    if all(o == "NULL" for o in outs):
        return "/* no output is read */"
    ct = "double" if f64 else "float"
    fn = "onnxc_rnn_f64" if f64 else "onnxc_rnn_f32"
    scratch = ctx.scratch(node, ct) if _scratch(node) else "NULL"  # empty problem: nothing to stage
    lines = ([_q8_weights(node, ctx, dirs, H)] if q8 else []) + [params]
    sl = node.input(4)
    if sl is not None and sl.size:
        x = node.inputs[0]
        fail = ctx.fail(node, f"sequence length {{value}} out of range [0, {T}] (the seq_length of input '{x.name}', "
                              f"shape {tuple(x.shape)})", f"{ins[4]}[b]", "b", tensor=sl)
        lines += [f"for (int64_t b = 0; b < {sl.size}; ++b)",
                  f"  if ({ins[4]}[b] < 0 || {ins[4]}[b] > {T}) {{ {fail} break; }}"]
    return "\n".join(lines + [f"{fn}(&p, {', '.join(ins + outs)}, {scratch});"])
