"""Attention (opsets 23-25), RotaryEmbedding (23), CausalConvWithState and LinearAttention (27),
SwiGLU (28); float32 (float64 too for RotaryEmbedding, CausalConvWithState and SwiGLU).

Attention runs in runtime_c/attention/attention_ref.c; every shape, stride and attribute is
resolved here into a static params struct. The semantics follow onnx's reference
(onnx/reference/ops/op_attention.py): bottom-right causal alignment, masks shorter than the
total key length padded with False / -inf, fully-masked rows giving zero probabilities, GQA by
interleaved KV-head repetition. One deliberate choice: qk_matmul_output_mode 0 gives the raw
Q K^T product as the spec text and onnxruntime do (the reference returns it after softcap).
The other ops are emitted as plain loops. FlexAttention, and Attention on bfloat16, run as their
ONNX function bodies (frontend/expand.py), which leaves no such node here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ...codegen.loops import contiguous_strides
from ...ops import get_attr
from ...ops.plan import Refuse, refusal, why_refused
from .registry import c_kernel

F32 = np.dtype(np.float32)
_TILE_ROWS = 64          # query rows per task (one sgemm tile)
_TILE_FLOATS = 1 << 18   # cap of one task's score tile, in floats (long key sequences get fewer rows)
_MAX_SLOTS = 16          # scratch tiles = tasks that can run at once
_MAX_WINDOW = 1 << 30    # larger sliding windows are refused (see ATTN_NONPAD_MAX in the C)




def _heads_view(shape, heads: Optional[int], what: str) -> Tuple[int, int, int, int, List[int]]:
    """(B, H, S, width, strides of batch/head/position) of a 3-D [B, S, H*w] or 4-D [B, H, S, w]."""
    if len(shape) == 4:
        B, H, S, w = shape
        return B, H, S, w, [H * S * w, S * w, w]
    if heads is None or heads <= 0:
        raise Refuse(f"3-D {what} needs q_num_heads and kv_num_heads")
    B, S, hidden = shape
    if hidden % heads:
        raise Refuse(f"{what} hidden size {hidden} is not a multiple of {heads} heads")
    w = hidden // heads
    return B, heads, S, w, [S * hidden, w, hidden]


@dataclass
class _Attn:
    B: int
    Hq: int
    Hkv: int
    Sq: int
    Skv: int
    P: int
    D: int
    Dv: int
    q_str: List[int]
    k_str: List[int]
    v_str: List[int]
    y_str: List[int]
    alpha: float
    softcap: float
    is_causal: int
    left: int
    right: int
    mask_kind: int
    mask_len: int
    mask_str: List[int]
    qk_mode: int
    softmax_f64: int
    tile_rows: int
    slots: int

    @property
    def T(self) -> int:
        return self.P + self.Skv

    def scratch_floats(self) -> int:
        return self.slots * self.tile_rows * self.T


def _attn_geometry(node) -> _Attn:
    q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
    mask, past_k, past_v, nonpad = (node.input(i) for i in (3, 4, 5, 6))
    for name, x in (("Q", q), ("K", k), ("V", v), ("past_key", past_k), ("past_value", past_v)):
        if x is not None and x.dtype != F32:
            raise Refuse(f"{name} has dtype {x.dtype}; the C Attention is float32 only")
    for i in (0, 1, 2, 3):
        if node.output_read(i) and node.outputs[i].dtype != F32:
            raise Refuse(f"output {i} has dtype {node.outputs[i].dtype}; float32 only")
    rank = len(q.shape)
    if rank not in (3, 4) or len(k.shape) != rank or len(v.shape) != rank:
        raise Refuse("Q, K and V must all be 3-D or all 4-D")
    qh, kvh = get_attr(node, "q_num_heads", None), get_attr(node, "kv_num_heads", None)
    if rank == 4 and (qh is not None or kvh is not None):
        if node.opset >= 25:
            raise Refuse("q_num_heads/kv_num_heads given with 4-D inputs (invalid from opset 25)")
        if (qh is not None and qh != q.shape[1]) or (kvh is not None and kvh != k.shape[1]):
            raise Refuse("q_num_heads/kv_num_heads disagree with the 4-D input shapes")
    B, Hq, Sq, D, q_str = _heads_view(q.shape, qh, "Q")
    Bk, Hkv, Skv, Dk, k_str = _heads_view(k.shape, kvh, "K")
    Bv, Hv, Sv, Dv, v_str = _heads_view(v.shape, kvh, "V")
    if not (B == Bk == Bv) or Dk != D or Sv != Skv or Hv != Hkv:
        raise Refuse(f"inconsistent Q/K/V shapes {q.shape} {k.shape} {v.shape}")
    if Hq % Hkv:
        raise Refuse(f"{Hq} query heads are not a multiple of {Hkv} KV heads")
    if min(B, Hq, Sq, D, Skv, Dv) <= 0:
        raise Refuse("empty Q/K/V")
    if (past_k is None) != (past_v is None):
        raise Refuse("past_key and past_value must be given together")
    P = 0
    if past_k is not None:
        P = past_k.shape[2] if len(past_k.shape) == 4 else -1
        if tuple(past_k.shape) != (B, Hkv, P, D) or tuple(past_v.shape) != (B, Hkv, P, Dv):
            raise Refuse(f"past_key/past_value shapes {past_k.shape}/{past_v.shape} do not match K/V")
        if nonpad is not None:
            raise Refuse("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    T = P + Skv
    if nonpad is not None and (nonpad.dtype != np.int64 or tuple(nonpad.shape) != (B,)):
        raise Refuse(f"nonpad_kv_seqlen must be int64 [{B}]")

    # outputs: shapes as the spec defines them (inferred shapes must agree)
    want = {0: (B, Sq, Hq * Dv) if rank == 3 else (B, Hq, Sq, Dv), 1: (B, Hkv, T, D),
            2: (B, Hkv, T, Dv), 3: (B, Hq, Sq, T)}
    for i, shape in want.items():
        if node.output_read(i) and tuple(node.outputs[i].shape) != shape:
            raise Refuse(f"output {i} has shape {node.outputs[i].shape}, expected {shape}")
    y_str = [Hq * Sq * Dv, Sq * Dv, Dv] if rank == 4 else [Sq * Hq * Dv, Dv, Hq * Dv]

    scale = get_attr(node, "scale", None)
    if scale is None:
        scale = 1.0 / np.sqrt(D)
    if scale < 0:
        raise Refuse(f"negative scale {scale} (the spec applies sqrt(scale) to Q and K)")
    s = np.float32(np.sqrt(np.float64(scale)))  # as the reference: sqrt in double, cast to T1
    softcap = float(get_attr(node, "softcap", 0.0) or 0.0)
    if softcap < 0:
        raise Refuse(f"negative softcap {softcap}")
    mode = int(get_attr(node, "qk_matmul_output_mode", 0) or 0)
    if mode not in (0, 1, 2, 3):
        raise Refuse(f"qk_matmul_output_mode {mode} not in 0..3")
    prec = get_attr(node, "softmax_precision", None)
    if prec not in (None, 1, 11):
        raise Refuse(f"softmax_precision {prec} (only FLOAT and DOUBLE are implemented)")
    left = int(get_attr(node, "left_window_size", -1))
    right = int(get_attr(node, "right_window_size", -1))
    for name, w in (("left_window_size", left), ("right_window_size", right)):
        if w < -1 or w > _MAX_WINDOW:
            raise Refuse(f"{name} {w} outside [-1, 2^30]")

    mask_kind, mask_len, mask_str = 0, 0, [0, 0, 0]
    if mask is not None:
        if mask.dtype == np.bool_:
            mask_kind = 1
        elif mask.dtype == F32:
            mask_kind = 2
        else:
            raise Refuse(f"attn_mask dtype {mask.dtype} (bool or the query's float type expected)")
        mshape = list(mask.shape)
        if not 1 <= len(mshape) <= 4:
            raise Refuse(f"attn_mask rank {len(mshape)}")
        mask_len = mshape[-1]
        if not 1 <= mask_len <= T:
            raise Refuse(f"attn_mask last dim {mask_len} not in [1, {T}] (total key length)")
        full = [1] * (4 - len(mshape)) + mshape
        for d, t in zip(full[:3], (B, Hq, Sq)):
            if d not in (1, t):
                raise Refuse(f"attn_mask shape {tuple(mshape)} does not broadcast to {(B, Hq, Sq, T)}")
        cs = contiguous_strides(full)
        mask_str = [0 if d == 1 else st for d, st in zip(full[:3], cs[:3])]

    tile_rows = max(1, min(Sq, _TILE_ROWS, _TILE_FLOATS // T))
    tasks = B * Hq * -(-Sq // tile_rows)
    return _Attn(B, Hq, Hkv, Sq, Skv, P, D, Dv, q_str, k_str, v_str, y_str,
                 float(np.float32(np.float64(s) * np.float64(s))), softcap,
                 int(bool(get_attr(node, "is_causal", 0))), left, right, mask_kind, mask_len, mask_str,
                 mode, int(prec == 11), tile_rows, min(tasks, _MAX_SLOTS))


def _attn_scratch(node) -> int:
    return _attn_geometry(node).scratch_floats() * 4


def _arr(xs) -> str:
    return "{" + ", ".join(str(int(x)) for x in xs) + "}"


@c_kernel("Attention", check=refusal(_attn_geometry), scratch=_attn_scratch)
def attention(node, ctx):
    a = _attn_geometry(node)
    f = lambda x: ctx.lit(x, np.float32)  # noqa: E731
    params = (f"{{{a.B}, {a.Hq}, {a.Hkv}, {a.Sq}, {a.Skv}, {a.P}, {a.D}, {a.Dv}, {_arr(a.q_str)}, "
              f"{_arr(a.k_str)}, {_arr(a.v_str)}, {_arr(a.y_str)}, {f(a.alpha)}, {f(a.softcap)}, "
              f"{a.is_causal}, {a.left}, {a.right}, {a.mask_kind}, {a.mask_len}, {_arr(a.mask_str)}, "
              f"{a.qk_mode}, {a.softmax_f64}, {a.tile_rows}, {a.slots}}}")

    def opt_in(i):
        v = node.input(i)
        return ctx.ptr(v) if v is not None else "NULL"

    def opt_out(i):
        return ctx.ptr(node.outputs[i]) if node.output_read(i) else "NULL"
    args = [ctx.ptr(node.inputs[0]), ctx.ptr(node.inputs[1]), ctx.ptr(node.inputs[2]),
            opt_in(3), opt_in(4), opt_in(5), opt_in(6), ctx.ptr(node.outputs[0]),
            opt_out(1), opt_out(2), opt_out(3), ctx.scratch(node, "float")]
    lines = [f"static const onnxc_attention_params p = {params};"]
    nonpad = node.input(6)
    if nonpad is not None:  # the kernel clamps it; a length outside the keys fails as in onnxruntime
        fail = ctx.fail(node, f"nonpad_kv_seqlen {{value}} out of range [0, {a.T}] (the key length of "
                              f"'{node.inputs[1].name}')", f"{ctx.ptr(nonpad)}[b]", "b", tensor=nonpad)
        lines += [f"for (int64_t b = 0; b < {nonpad.size}; ++b)",
                  f"  if ({ctx.ptr(nonpad)}[b] < 0 || {ctx.ptr(nonpad)}[b] > {a.T}) {{ {fail} break; }}"]
    return "\n".join(lines + [f"onnxc_attention(&p, {', '.join(args)});"])


# --- RotaryEmbedding ------------------------------------------------------------------------
@dataclass
class _Rope:
    B: int
    H: int
    S: int
    D: int
    rd: int
    x_str: List[int]        # element strides of batch, head, position
    cache_rows: int         # rows of a position-indexed cache (0: cache indexed by (b, s))
    cache_str: List[int]    # without position_ids: cache row strides of (b, s), 0 = broadcast
    pos_str: List[int]      # position_ids element strides of (b, s), 0 = broadcast


def _bcast_strides(shape, target, what) -> List[int]:
    """Element strides of ``shape`` right-aligned onto ``target`` (0 along broadcast dims)."""
    if len(shape) > len(target):
        raise Refuse(f"{what} shape {tuple(shape)} does not broadcast to {tuple(target)}")
    full = [1] * (len(target) - len(shape)) + list(shape)
    for d, t in zip(full, target):
        if d not in (1, t):
            raise Refuse(f"{what} shape {tuple(shape)} does not broadcast to {tuple(target)}")
    cs = contiguous_strides(full)
    return [0 if d == 1 and t != 1 else s for d, t, s in zip(full, target, cs)]


def _rope_geometry(node) -> _Rope:
    x, cos, sin, pos = node.inputs[0], node.inputs[1], node.inputs[2], node.input(3)
    y = node.outputs[0]
    if x.dtype not in (F32, np.dtype(np.float64)):
        raise Refuse(f"dtype {x.dtype} (float32 and float64 only)")
    if any(v.dtype != x.dtype for v in (cos, sin, y)):
        raise Refuse("input, caches and output must share one dtype")
    if tuple(y.shape) != tuple(x.shape):
        raise Refuse(f"output shape {y.shape} differs from the input's {x.shape}")
    if len(x.shape) == 4:
        B, H, S, D = x.shape
        x_str = [H * S * D, S * D, D]
    elif len(x.shape) == 3:
        heads = get_attr(node, "num_heads", None)
        if not heads or x.shape[2] % heads:
            raise Refuse("3-D input needs num_heads dividing the hidden size")
        B, S, hidden = x.shape
        H, D = heads, hidden // heads
        x_str = [S * hidden, D, hidden]
    else:
        raise Refuse(f"input rank {len(x.shape)} (3 or 4 expected)")
    rd = int(get_attr(node, "rotary_embedding_dim", 0) or 0) or D
    if rd % 2 or not 0 < rd <= D:
        raise Refuse(f"rotary_embedding_dim {rd} must be even and at most the head size {D}")
    half = rd // 2
    if tuple(cos.shape) != tuple(sin.shape) or not cos.shape or cos.shape[-1] != half:
        raise Refuse(f"cos/sin caches {cos.shape}/{sin.shape} must agree and end in {half}")
    if pos is not None:
        if pos.dtype != np.int64:
            raise Refuse(f"position_ids dtype {pos.dtype}")
        if len(cos.shape) != 2:
            raise Refuse("with position_ids the caches must be 2-D [max_position, rotary_dim/2]")
        return _Rope(B, H, S, D, rd, x_str, cos.shape[0], [0, 0], _bcast_strides(pos.shape, (B, S), "position_ids"))
    st = _bcast_strides(cos.shape[:-1], (B, S), "cos/sin cache")
    return _Rope(B, H, S, D, rd, x_str, 0, [s * half for s in st], [0, 0])


def _rope_check(node) -> Optional[str]:
    if min(node.inputs[0].shape or (0,)) <= 0:
        return "empty input"
    return why_refused(_rope_geometry, node)


@c_kernel("RotaryEmbedding", check=_rope_check)
def rotary_embedding(node, ctx):
    r = _rope_geometry(node)
    x, pos = node.inputs[0], node.input(3)
    ct = ctx.ctype(x)
    half = r.rd // 2
    inter = bool(get_attr(node, "interleaved", 0))
    i1, i2 = ("2*k", "2*k + 1") if inter else ("k", f"k + {half}")
    xo = f"b*{r.x_str[0]} + h*{r.x_str[1]} + s*{r.x_str[2]}"
    if pos is not None:
        # an id outside [0, max_position) has no cache row: the run fails with ONNXC_ERR_INDEX (as
        # onnxruntime rejects it) and that token's rotated features are NaN, never a read outside
        row = [f"const int64_t id = P[b*{r.pos_str[0]} + s*{r.pos_str[1]}];",
               f"const int ok = id >= 0 && id < {r.cache_rows};",
               f"const {ct}* c = C + (ok ? id : 0)*{half}; const {ct}* sn = Sn + (ok ? id : 0)*{half};"]
        cs = [f"const {ct} cv = ok ? c[k] : {ctx.lit(np.nan, x.dtype)}, sv = ok ? sn[k] : {ctx.lit(np.nan, x.dtype)};"]
    else:
        row = [f"const {ct}* c = C + b*{r.cache_str[0]} + s*{r.cache_str[1]};",
               f"const {ct}* sn = Sn + b*{r.cache_str[0]} + s*{r.cache_str[1]};"]
        cs = [f"const {ct} cv = c[k], sv = sn[k];"]
    big = r.B * r.S * r.H * r.D >= (1 << 16) and r.B * r.S > 1
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)};",
             f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(node.outputs[0])};",
             f"const {ct}* C = {ctx.ptr(node.inputs[1])}; const {ct}* Sn = {ctx.ptr(node.inputs[2])};"]
    if pos is not None:
        cos = node.inputs[1]
        fail = ctx.fail(node, f"position id {{value}} out of range [0, {r.cache_rows - 1}] (the rows of the cos/sin "
                              f"caches, '{cos.name}' has shape {tuple(cos.shape)})", "P[t]", "t", tensor=pos)
        lines += [f"const int64_t* P = {ctx.ptr(pos)};",
                  f"for (int64_t t = 0; t < {int(np.prod(pos.shape, dtype=np.int64))}; ++t)",
                  f"  if (P[t] < 0 || P[t] >= {r.cache_rows}) {{ {fail} break; }}"]
    lines += ["ONNXC_OMP_FOR" if big else "",
              f"for (int64_t bs = 0; bs < {r.B * r.S}; ++bs) {{",
              f"  const int64_t b = bs / {r.S}, s = bs % {r.S};"]
    lines += ["  " + ln for ln in row]
    lines += [f"  for (int64_t h = 0; h < {r.H}; ++h) {{",
              f"    const {ct}* x = X + {xo}; {ct}* y = Y + {xo};",
              f"    for (int64_t k = 0; k < {half}; ++k) {{"]
    lines += ["      " + ln for ln in cs]
    lines += [f"      const {ct} x1 = x[{i1}], x2 = x[{i2}];",
              f"      y[{i1}] = cv * x1 - sv * x2;",
              f"      y[{i2}] = sv * x1 + cv * x2;",
              "    }",
              f"    for (int64_t d = {r.rd}; d < {r.D}; ++d) y[d] = x[d];",
              "  }",
              "}"]
    return "\n".join(ln for ln in lines if ln)


# --- SwiGLU (opset 28) -----------------------------------------------------------------------
FLOATS = (F32, np.dtype(np.float64))


def _libm(name: str, dtype) -> str:
    return name + "f" if np.dtype(dtype) == F32 else name


def _swiglu_check(node) -> Optional[str]:
    a, b, y = node.inputs[0], node.inputs[1], node.outputs[0]
    if a.dtype not in FLOATS or b.dtype != a.dtype or y.dtype != a.dtype:
        return f"dtypes {a.dtype}/{b.dtype} (float32 or float64, both the same)"
    if tuple(a.shape) != tuple(b.shape) or tuple(y.shape) != tuple(a.shape):
        return f"A {a.shape} and B {b.shape} must have one shape (SwiGLU does not broadcast)"
    return None


@c_kernel("SwiGLU", check=_swiglu_check)
def swiglu(node, ctx):
    a, y = node.inputs[0], node.outputs[0]
    ct, n = ctx.ctype(a), int(np.prod(a.shape, dtype=np.int64))
    neg_alpha = ctx.lit(-float(get_attr(node, "alpha", 1.0)), a.dtype)
    one = ctx.lit(1.0, a.dtype)
    # as the reference: the sigmoid term is rounded to T before the two products
    return "\n".join([
        f"const {ct}* ONNXC_RESTRICT A = {ctx.ptr(a)}; const {ct}* ONNXC_RESTRICT Bv = {ctx.ptr(node.inputs[1])};",
        f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};",
        "ONNXC_OMP_FOR" if n >= (1 << 16) else "",
        f"for (int64_t i = 0; i < {n}; ++i) {{",
        f"  const {ct} sig = {one} / ({one} + {_libm('exp', a.dtype)}(({neg_alpha}) * A[i]));",
        "  Y[i] = (A[i] * sig) * Bv[i];",
        "}"])


# --- CausalConvWithState (opset 27) ----------------------------------------------------------
def _ccws_check(node) -> Optional[str]:
    x, w = node.inputs[0], node.inputs[1]
    bias, past = node.input(2), node.input(3)
    if x.dtype not in FLOATS or any(v is not None and v.dtype != x.dtype for v in
                                    (w, bias, past) + tuple(node.outputs)):
        return f"dtype {x.dtype} (float32 or float64, all inputs and outputs alike)"
    if len(x.shape) != 3 or len(w.shape) != 3:
        return "input and weight must be rank 3"
    B, C, L = x.shape
    k = w.shape[2]
    if tuple(w.shape) != (C, 1, k) or k < 1:
        return f"weight shape {w.shape}, expected ({C}, 1, k) with k >= 1"
    if bias is not None and tuple(bias.shape) != (C,):
        return f"bias shape {bias.shape}, expected ({C},)"
    if past is not None and tuple(past.shape) != (B, C, k - 1):
        return f"past_state shape {past.shape}, expected {(B, C, k - 1)}"
    act = get_attr(node, "activation", "none")
    if act not in ("none", "silu", "swish"):
        return f"activation '{act}'"
    if tuple(node.outputs[0].shape) != (B, C, L) or (len(node.outputs) > 1 and node.output_read(1)
                                                     and tuple(node.outputs[1].shape) != (B, C, k - 1)):
        return "output shapes disagree with the spec"
    return None


@c_kernel("CausalConvWithState", check=_ccws_check)
def causal_conv_with_state(node, ctx):
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    bias, past = node.input(2), node.input(3)
    B, C, L = x.shape
    k = w.shape[2]
    ct = ctx.ctype(x)
    acc = "double" if x.dtype == F32 else ct
    pad = k - 1
    # element p of the left-padded sequence [past or zeros, x] (length L + k - 1)
    src = f"(p < {pad} ? {'ps[p]' if past is not None else '0'} : xr[p - {pad}])" if pad else "xr[p]"
    lines = [f"const {ct}* ONNXC_RESTRICT X = {ctx.ptr(x)}; const {ct}* ONNXC_RESTRICT W = {ctx.ptr(w)};",
             f"{ct}* ONNXC_RESTRICT Y = {ctx.ptr(y)};"]
    if bias is not None:
        lines.append(f"const {ct}* Bias = {ctx.ptr(bias)};")
    if past is not None:
        lines.append(f"const {ct}* PS = {ctx.ptr(past)};")
    state = node.output_read(1) and pad > 0
    if state:
        lines.append(f"{ct}* ONNXC_RESTRICT PR = {ctx.ptr(node.outputs[1])};")
    lines += ["ONNXC_OMP_FOR" if B * C * L * k >= (1 << 16) and B * C > 1 else "",
              f"for (int64_t bc = 0; bc < {B * C}; ++bc) {{",
              f"  const int64_t c = bc % {C};",
              f"  const {ct}* xr = X + bc*{L}; const {ct}* wr = W + c*{k}; {ct}* yr = Y + bc*{L};"]
    if past is not None:
        lines.append(f"  const {ct}* ps = PS + bc*{pad};")
    lines += [f"  for (int64_t t = 0; t < {L}; ++t) {{",
              f"    {acc} s = 0;",
              f"    for (int64_t i = 0; i < {k}; ++i) {{ const int64_t p = t + i; s += ({acc})wr[i] * {src}; }}",
              f"    {ct} v = ({ct})s" + (" + Bias[c];" if bias is not None else ";")]
    if get_attr(node, "activation", "none") in ("silu", "swish"):
        one = ctx.lit(1.0, x.dtype)
        lines.append(f"    v = v * ({one} / ({one} + {_libm('exp', x.dtype)}(-v)));")
    lines += ["    yr[t] = v;", "  }"]
    if state:  # the last k - 1 positions of the padded sequence
        lines.append(f"  for (int64_t j = 0; j < {pad}; ++j) {{ const int64_t p = {L} + j; "
                     f"PR[bc*{pad} + j] = {src}; }}")
    lines.append("}")
    return "\n".join(ln for ln in lines if ln)


# --- LinearAttention (opset 27) ---------------------------------------------------------------
@dataclass
class _Linear:
    B: int
    T: int
    Hq: int
    Hkv: int
    dk: int
    dv: int
    gating: bool
    delta: bool
    decay_per_dim: bool
    beta_per_head: bool
    scale: float


def _linear_geometry(node) -> _Linear:
    q, k, v = node.inputs[0], node.inputs[1], node.inputs[2]
    past, decay, beta = node.input(3), node.input(4), node.input(5)
    for x in (q, k, v, past, decay, beta) + tuple(node.outputs[:2]):
        if x is not None and x.dtype != F32:
            raise Refuse(f"dtype {x.dtype} of '{x.name}' (float32 only: the reference computes in float32)")
    rule = get_attr(node, "update_rule", "gated_delta")
    if isinstance(rule, bytes):
        rule = rule.decode()
    if rule not in ("linear", "gated", "delta", "gated_delta"):
        raise Refuse(f"update_rule '{rule}'")
    gating, delta = rule in ("gated", "gated_delta"), rule in ("delta", "gated_delta")
    Hq, Hkv = get_attr(node, "q_num_heads", None), get_attr(node, "kv_num_heads", None)
    if not Hq or not Hkv or Hq <= 0 or Hkv <= 0 or Hq % Hkv:
        raise Refuse("q_num_heads must be a positive multiple of kv_num_heads (both required)")
    if gating != (decay is not None) or delta != (beta is not None):
        raise Refuse(f"update_rule '{rule}' needs decay {'given' if gating else 'absent'} and beta "
                      f"{'given' if delta else 'absent'}")
    if any(len(x.shape) != 3 for x in (q, k, v)):
        raise Refuse("query, key and value must be 3-D [B, T, H*D]")
    B, T, qh = q.shape
    if qh % Hq or k.shape[2] % Hkv or v.shape[2] % Hkv:
        raise Refuse("hidden sizes are not multiples of the head counts")
    dk, dv = qh // Hq, v.shape[2] // Hkv
    if tuple(k.shape) != (B, T, Hkv * dk) or tuple(v.shape[:2]) != (B, T):
        raise Refuse(f"key {k.shape} / value {v.shape} do not match query {q.shape}")
    if min(B, T, dk, dv) <= 0:
        raise Refuse("empty tensors")
    if past is not None and tuple(past.shape) != (B, Hkv, dk, dv):
        raise Refuse(f"past_state shape {past.shape}, expected {(B, Hkv, dk, dv)}")
    per_dim = False
    if decay is not None:
        if len(decay.shape) != 3 or tuple(decay.shape[:2]) != (B, T) or decay.shape[2] not in (Hkv, Hkv * dk):
            raise Refuse(f"decay shape {decay.shape}, expected ({B}, {T}, {Hkv} or {Hkv * dk})")
        per_dim = decay.shape[2] != Hkv
    per_head = False
    if beta is not None:
        if len(beta.shape) != 3 or tuple(beta.shape[:2]) != (B, T) or beta.shape[2] not in (Hkv, 1):
            raise Refuse(f"beta shape {beta.shape}, expected ({B}, {T}, {Hkv} or 1)")
        per_head = beta.shape[2] == Hkv and Hkv != 1
    if tuple(node.outputs[0].shape) != (B, T, Hq * dv):
        raise Refuse(f"output shape {node.outputs[0].shape}")
    if len(node.outputs) < 2 or tuple(node.outputs[1].shape) != (B, Hkv, dk, dv):
        raise Refuse("present_state shape disagrees with the spec")
    scale = get_attr(node, "scale", 0.0) or 0.0
    scale = float(1.0 / np.sqrt(dk)) if scale == 0.0 else float(scale)
    return _Linear(B, T, Hq, Hkv, dk, dv, gating, delta, per_dim, per_head, scale)


def _linear_scratch(node) -> int:
    g = _linear_geometry(node)
    return g.B * g.Hkv * g.dv * 4 if g.delta else 0


@c_kernel("LinearAttention", check=refusal(_linear_geometry), scratch=_linear_scratch)
def linear_attention(node, ctx):
    """Sequential recurrence per (batch, KV head); the state lives in present_state."""
    g = _linear_geometry(node)
    past, decay, beta = node.input(3), node.input(4), node.input(5)
    S_sz, G = g.dk * g.dv, g.Hq // g.Hkv
    lines = [f"const float* Q = {ctx.ptr(node.inputs[0])}; const float* K = {ctx.ptr(node.inputs[1])};",
             f"const float* V = {ctx.ptr(node.inputs[2])}; float* O = {ctx.ptr(node.outputs[0])};",
             f"float* ST = {ctx.ptr(node.outputs[1])};"]
    if past is not None:
        lines.append(f"const float* PS = {ctx.ptr(past)};")
    if decay is not None:
        lines.append(f"const float* DG = {ctx.ptr(decay)};")
    if beta is not None:
        lines.append(f"const float* BT = {ctx.ptr(beta)};")
    if g.delta:
        lines.append(f"float* VT = {ctx.scratch(node, 'float')};")
    big = g.B * g.T * g.Hq * S_sz >= (1 << 16) and g.B * g.Hkv > 1
    lines += ["ONNXC_OMP_FOR" if big else "",
              f"for (int64_t bh = 0; bh < {g.B * g.Hkv}; ++bh) {{",
              f"  const int64_t b = bh / {g.Hkv}, hk = bh % {g.Hkv};",
              f"  float* S = ST + bh*{S_sz};",
              (f"  memcpy(S, PS + bh*{S_sz}, {S_sz * 4});" if past is not None else
               f"  memset(S, 0, {S_sz * 4});"),
              f"  for (int64_t t = 0; t < {g.T}; ++t) {{",
              f"    const int64_t bt = b*{g.T} + t;",
              f"    const float* k = K + bt*{g.Hkv * g.dk} + hk*{g.dk};",
              f"    const float* v = V + bt*{g.Hkv * g.dv} + hk*{g.dv};"]
    if g.gating:  # S *= exp(g) per key dim (or per head)
        gexpr = (f"expf(DG[bt*{g.Hkv * g.dk} + hk*{g.dk} + d])" if g.decay_per_dim else
                 f"expf(DG[bt*{g.Hkv} + hk])")
        lines += [f"    for (int64_t d = 0; d < {g.dk}; ++d) {{",
                  f"      const float e = {gexpr};",
                  f"      for (int64_t m = 0; m < {g.dv}; ++m) S[d*{g.dv} + m] *= e;",
                  "    }"]
    if g.delta:  # v <- beta * (v - S^T k)
        bexpr = f"BT[bt*{g.Hkv} + hk]" if g.beta_per_head else f"BT[bt*{beta.shape[2]}]"
        lines += [f"    float* vt = VT + bh*{g.dv};",
                  f"    const float bta = {bexpr};",
                  f"    for (int64_t m = 0; m < {g.dv}; ++m) {{",
                  "      double r = 0;",
                  f"      for (int64_t d = 0; d < {g.dk}; ++d) r += (double)S[d*{g.dv} + m] * k[d];",
                  "      vt[m] = bta * (v[m] - (float)r);",
                  "    }",
                  "    v = vt;"]
    lines += [f"    for (int64_t d = 0; d < {g.dk}; ++d)",
              f"      for (int64_t m = 0; m < {g.dv}; ++m) S[d*{g.dv} + m] += k[d] * v[m];",
              f"    for (int64_t hq = hk*{G}; hq < (hk + 1)*{G}; ++hq) {{",
              f"      const float* q = Q + bt*{g.Hq * g.dk} + hq*{g.dk};",
              f"      float* o = O + bt*{g.Hq * g.dv} + hq*{g.dv};",
              f"      for (int64_t m = 0; m < {g.dv}; ++m) {{",
              "        double s = 0;",
              f"        for (int64_t d = 0; d < {g.dk}; ++d) s += (double)q[d] * S[d*{g.dv} + m];",
              f"        o[m] = (float)({g.scale!r} * s);",
              "      }",
              "    }",
              "  }",
              "}"]
    return "\n".join(ln for ln in lines if ln)


# --- FlexAttention ------------------------------------------------------------------------------
@c_kernel("FlexAttention", domain="ai.onnx.preview", check=lambda node: (
    "FlexAttention runs as its ONNX function body (frontend/expand.py), which could not be built "
    "for this node (the compile log says why)"))
def flex_attention(node, ctx):  # never emitted: check() always refuses
    raise AssertionError("FlexAttention is refused by its check")
