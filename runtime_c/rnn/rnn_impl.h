/* Body of the RNN/GRU/LSTM kernel for one element type; rnn_ref.c includes it once per type
 * after defining:
 *   RNN_T                 element type (float or double)
 *   RNN_NAME(x)           x with the type's suffix appended
 *   RNN_GEMM_NT(M, N, K, A, lda, B, ldb, C, ldc)   C[M,N] = A[M,K] * B[N,K]^T (C write-only)
 *   RNN_EXP, RNN_TANH, RNN_LOG1P, RNN_FABS          the type's math functions
 *   RNN_Q8                (float only) p->q8 selects the int8 weights of DynamicQuantizeLSTM
 * No include guard: it is meant to be included several times. */

/* x[0:n] = act(x[0:n]) in place; the switch is outside the loops so each one vectorizes. */
static void RNN_NAME(rnn_act)(const onnxc_rnn_act* a, RNN_T* x, int64_t n) {
    const RNN_T alpha = (RNN_T)a->alpha, beta = (RNN_T)a->beta;
    int64_t i;
    switch (a->kind) {
    case ONNXC_RNN_ACT_SIGMOID:
        for (i = 0; i < n; ++i) x[i] = (RNN_T)1 / ((RNN_T)1 + RNN_EXP(-x[i]));
        break;
    case ONNXC_RNN_ACT_TANH:
        for (i = 0; i < n; ++i) x[i] = RNN_TANH(x[i]);
        break;
    case ONNXC_RNN_ACT_RELU:
        for (i = 0; i < n; ++i) x[i] = x[i] > 0 ? x[i] : (RNN_T)0;
        break;
    case ONNXC_RNN_ACT_AFFINE:
        for (i = 0; i < n; ++i) x[i] = alpha * x[i] + beta;
        break;
    case ONNXC_RNN_ACT_LEAKYRELU:
        for (i = 0; i < n; ++i) x[i] = x[i] >= 0 ? x[i] : alpha * x[i];
        break;
    case ONNXC_RNN_ACT_THRESHOLDEDRELU:
        for (i = 0; i < n; ++i) x[i] = x[i] > alpha ? x[i] : (RNN_T)0;
        break;
    case ONNXC_RNN_ACT_SCALEDTANH:
        for (i = 0; i < n; ++i) x[i] = alpha * RNN_TANH(beta * x[i]);
        break;
    case ONNXC_RNN_ACT_HARDSIGMOID:
        for (i = 0; i < n; ++i) {
            const RNN_T v = alpha * x[i] + beta;
            x[i] = v < 0 ? (RNN_T)0 : (v > 1 ? (RNN_T)1 : v);
        }
        break;
    case ONNXC_RNN_ACT_ELU:
        for (i = 0; i < n; ++i) x[i] = x[i] >= 0 ? x[i] : alpha * (RNN_EXP(x[i]) - (RNN_T)1);
        break;
    case ONNXC_RNN_ACT_SOFTSIGN:
        for (i = 0; i < n; ++i) x[i] = x[i] / ((RNN_T)1 + RNN_FABS(x[i]));
        break;
    case ONNXC_RNN_ACT_SOFTPLUS:
        /* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x */
        for (i = 0; i < n; ++i)
            x[i] = (x[i] > 0 ? x[i] : (RNN_T)0) + RNN_LOG1P(RNN_EXP(-RNN_FABS(x[i])));
        break;
    default:
        break;
    }
}

/* clip (if any) then the activation: the spec clips the input of every gate activation. */
static void RNN_NAME(rnn_gate)(const onnxc_rnn_params* p, const onnxc_rnn_act* a, RNN_T* x,
                               int64_t n) {
    if (p->has_clip) {
        const RNN_T c = (RNN_T)p->clip;
        int64_t i;
        for (i = 0; i < n; ++i) x[i] = x[i] > c ? c : (x[i] < -c ? -c : x[i]);
    }
    RNN_NAME(rnn_act)(a, x, n);
}

/* dst[0:n] = a[0:n] + b[0:n] */
static void RNN_NAME(rnn_add)(RNN_T* dst, const RNN_T* a, const RNN_T* b, int64_t n) {
    int64_t i;
    for (i = 0; i < n; ++i) dst[i] = a[i] + b[i];
}

/* One direction's state, and where row (t, b) of each tensor lives. */
typedef struct {
    const onnxc_rnn_params* p;
    int64_t d;                /* direction index into W/R/B/P/Y/Y_h */
    int reverse;
    const int32_t* seq_lens;
    const RNN_T* R;           /* R[d]: [G*H, H] */
    const RNN_T* Rb;          /* recurrence bias R_b[d]: [G*H] or NULL */
    const RNN_T* P;           /* peepholes P[d]: [3*H] or NULL */
    RNN_T *xw, *gates, *h, *c, *tmp, *tmp2;
    uint8_t* aq;              /* the quantized GEMM operand (p->q8) */
    float* qscale;            /* its output scales, [G*H] (p->q8) */
} RNN_NAME(rnn_dir);

static void RNN_NAME(rnn_lstm_step)(const RNN_NAME(rnn_dir)* s, int64_t b, const RNN_T* xr) {
    const onnxc_rnn_params* p = s->p;
    const int64_t H = p->hidden;
    const onnxc_rnn_act* act = p->act[s->d];
    RNN_T* g = s->gates + b * 4 * H; /* pre-activations in order i, o, f, c */
    RNN_T *gi = g, *go = g + H, *gf = g + 2 * H, *gc = g + 3 * H;
    RNN_T* c = s->c + b * H;
    RNN_T* h = s->h + b * H;
    RNN_T* hc = s->tmp + b * H;
    int64_t j;
    RNN_NAME(rnn_add)(g, g, xr, 4 * H);
    if (s->P) {
        const RNN_T *pi = s->P, *pf = s->P + 2 * H;
        for (j = 0; j < H; ++j) {
            gi[j] += pi[j] * c[j];
            gf[j] += pf[j] * c[j];
        }
    }
    RNN_NAME(rnn_gate)(p, &act[0], gi, H);
    if (p->input_forget) {
        for (j = 0; j < H; ++j) gf[j] = (RNN_T)1 - gi[j];
    } else {
        RNN_NAME(rnn_gate)(p, &act[0], gf, H);
    }
    RNN_NAME(rnn_gate)(p, &act[1], gc, H);
    for (j = 0; j < H; ++j) c[j] = gf[j] * c[j] + gi[j] * gc[j];
    if (s->P) {
        const RNN_T* po = s->P + H; /* the output gate peeks at the new cell state */
        for (j = 0; j < H; ++j) go[j] += po[j] * c[j];
    }
    RNN_NAME(rnn_gate)(p, &act[0], go, H);
    for (j = 0; j < H; ++j) hc[j] = c[j];
    RNN_NAME(rnn_act)(&act[2], hc, H); /* no clip: it bounds gate inputs, not the cell */
    for (j = 0; j < H; ++j) h[j] = go[j] * hc[j];
}

static void RNN_NAME(rnn_rnn_step)(const RNN_NAME(rnn_dir)* s, int64_t b, const RNN_T* xr) {
    const int64_t H = s->p->hidden;
    RNN_T* g = s->gates + b * H;
    RNN_NAME(rnn_add)(g, g, xr, H);
    RNN_NAME(rnn_gate)(s->p, &s->p->act[s->d][0], g, H);
    memcpy(s->h + b * H, g, (size_t)H * sizeof(RNN_T));
}

/* GRU, first half: z and r activations (pre-activations in gates[b][0:2H] = h R[zr]^T). */
static void RNN_NAME(rnn_gru_zr)(const RNN_NAME(rnn_dir)* s, int64_t b, const RNN_T* xr) {
    const int64_t H = s->p->hidden;
    RNN_T* g = s->gates + b * 3 * H;
    RNN_NAME(rnn_add)(g, g, xr, 2 * H);
    RNN_NAME(rnn_gate)(s->p, &s->p->act[s->d][0], g, 2 * H);
}

/* GRU, second half: candidate and new state. rh holds (r (.) h_prev) R_h^T (+ R_bh, folded
 * into xr) when linear_before_reset == 0, or h_prev R_h^T (in gates[b][2H:3H]) otherwise. */
static void RNN_NAME(rnn_gru_h)(const RNN_NAME(rnn_dir)* s, int64_t b, const RNN_T* xr) {
    const onnxc_rnn_params* p = s->p;
    const int64_t H = p->hidden;
    RNN_T* g = s->gates + b * 3 * H;
    const RNN_T *z = g, *r = g + H;
    RNN_T* hh = s->tmp + b * H;
    RNN_T* h = s->h + b * H;
    int64_t j;
    if (p->linear_before_reset) {
        const RNN_T* lin = g + 2 * H;
        if (s->Rb) {
            const RNN_T* rbh = s->Rb + 2 * H;
            for (j = 0; j < H; ++j) hh[j] = xr[2 * H + j] + r[j] * (lin[j] + rbh[j]);
        } else {
            for (j = 0; j < H; ++j) hh[j] = xr[2 * H + j] + r[j] * lin[j];
        }
    } else {
        RNN_NAME(rnn_add)(hh, xr + 2 * H, s->tmp2 + b * H, H);
    }
    RNN_NAME(rnn_gate)(p, &p->act[s->d][1], hh, H);
    for (j = 0; j < H; ++j) h[j] = ((RNN_T)1 - z[j]) * hh[j] + z[j] * h[j];
}

/* Runs one direction over all time steps; rows beyond a sequence's length stay untouched. */
static void RNN_NAME(rnn_direction)(const RNN_NAME(rnn_dir)* s, int64_t maxlen, RNN_T* Y) {
    const onnxc_rnn_params* p = s->p;
    const int64_t T = p->seq, N = p->batch, H = p->hidden, D = p->dirs;
    const int64_t G = onnxc_rnn_gates(p->cell), GH = G * H;
    const int gru_split = p->cell == ONNXC_RNN_CELL_GRU && !p->linear_before_reset;
    int64_t step, b;
    for (step = 0; step < maxlen; ++step) {
        /* recurrent products of every batch row at once (rows past their length are ignored) */
#ifdef RNN_Q8
        if (p->q8)
            rnn_q8_gemm(N, GH, H, s->h, p->q8->r_kernel, p->q8->R[s->d], p->q8->r_scale + s->d * GH,
                        s->gates, GH, s->aq, s->qscale);
        else
#endif
        RNN_GEMM_NT(N, gru_split ? 2 * H : GH, H, s->h, H, s->R, H, s->gates, GH);
        if (gru_split) {
            for (b = 0; b < N; ++b) {
                const int64_t len = onnxc_rnn_len(s->seq_lens, b, T);
                const RNN_T* r = s->gates + b * GH + H;
                int64_t t, j;
                if (step >= len) continue;
                t = s->reverse ? len - 1 - step : step;
                RNN_NAME(rnn_gru_zr)(s, b, s->xw + onnxc_rnn_xrow(p, t, b) * GH);
                for (j = 0; j < H; ++j) s->tmp[b * H + j] = r[j] * s->h[b * H + j];
            }
            RNN_GEMM_NT(N, H, H, s->tmp, H, s->R + 2 * H * H, H, s->tmp2, H);
        }
        for (b = 0; b < N; ++b) {
            const int64_t len = onnxc_rnn_len(s->seq_lens, b, T);
            const RNN_T* xr;
            int64_t t;
            if (step >= len) continue;
            t = s->reverse ? len - 1 - step : step;
            xr = s->xw + onnxc_rnn_xrow(p, t, b) * GH;
            if (p->cell == ONNXC_RNN_CELL_LSTM) {
                RNN_NAME(rnn_lstm_step)(s, b, xr);
            } else if (p->cell == ONNXC_RNN_CELL_GRU) {
                if (!gru_split) RNN_NAME(rnn_gru_zr)(s, b, xr);
                RNN_NAME(rnn_gru_h)(s, b, xr);
            } else {
                RNN_NAME(rnn_rnn_step)(s, b, xr);
            }
            if (Y) {
                const int64_t off = p->layout ? ((b * T + t) * D + s->d) * H
                                              : ((t * D + s->d) * N + b) * H;
                memcpy(Y + off, s->h + b * H, (size_t)H * sizeof(RNN_T));
            }
        }
    }
}

void RNN_NAME(onnxc_rnn)(const onnxc_rnn_params* p, const RNN_T* X, const RNN_T* W,
                         const RNN_T* R, const RNN_T* B, const int32_t* seq_lens,
                         const RNN_T* h0, const RNN_T* c0, const RNN_T* P, RNN_T* Y,
                         RNN_T* Y_h, RNN_T* Y_c, RNN_T* scratch) {
    const int64_t T = p->seq, N = p->batch, I = p->input, H = p->hidden, D = p->dirs;
    const int64_t G = onnxc_rnn_gates(p->cell), GH = G * H;
    const int lstm = p->cell == ONNXC_RNN_CELL_LSTM;
    /* GRU with linear_before_reset multiplies R_bh by r, so it cannot join the other biases */
    const int64_t rb_fold = (p->cell == ONNXC_RNN_CELL_GRU && p->linear_before_reset) ? 2 * H : GH;
    RNN_NAME(rnn_dir) s;
    int64_t d, b, t, j, maxlen = 0;
    s.p = p;
    s.seq_lens = seq_lens;
    s.xw = scratch;
    s.gates = s.xw + T * N * GH;
    s.h = s.gates + N * GH;
    s.c = s.h + N * H;
    s.tmp = s.c + N * H;
    s.tmp2 = s.tmp + N * H;
    s.qscale = (float*)(void*)(s.tmp2 + N * H); /* q8 (float only): GH scales, then aq */
    s.aq = (uint8_t*)(s.qscale + (p->q8 ? GH : 0));
    for (b = 0; b < N; ++b) {
        const int64_t len = onnxc_rnn_len(seq_lens, b, T);
        if (len > maxlen) maxlen = len;
    }
    for (d = 0; d < D; ++d) {
        s.d = d;
        s.reverse = D == 2 ? d == 1 : p->reverse;
        s.R = R ? R + d * GH * H : NULL;
        s.Rb = B ? B + d * 2 * GH + GH : NULL;
        s.P = P ? P + d * 3 * H : NULL;
        /* input projection of every time step in one GEMM, biases folded in */
#ifdef RNN_Q8
        if (p->q8)
            rnn_q8_gemm(T * N, GH, I, X, p->q8->w_kernel, p->q8->W[d], p->q8->w_scale + d * GH, s.xw,
                        GH, s.aq, s.qscale);
        else
#endif
        RNN_GEMM_NT(T * N, GH, I, X, I, W + d * GH * I, I, s.xw, GH);
        if (B) {
            const RNN_T* wb = B + d * 2 * GH;
            for (t = 0; t < T * N; ++t) {
                RNN_T* row = s.xw + t * GH;
                for (j = 0; j < rb_fold; ++j) row[j] += wb[j] + s.Rb[j];
                for (; j < GH; ++j) row[j] += wb[j];
            }
        }
        for (b = 0; b < N; ++b) {
            const int64_t so = p->layout ? (b * D + d) * H : (d * N + b) * H;
            for (j = 0; j < H; ++j) {
                s.h[b * H + j] = h0 ? h0[so + j] : (RNN_T)0;
                s.c[b * H + j] = (lstm && c0) ? c0[so + j] : (RNN_T)0;
                s.tmp[b * H + j] = (RNN_T)0;
            }
        }
        RNN_NAME(rnn_direction)(&s, maxlen, Y);
        for (b = 0; b < N; ++b) {
            const int64_t len = onnxc_rnn_len(seq_lens, b, T);
            const int64_t so = p->layout ? (b * D + d) * H : (d * N + b) * H;
            /* an empty sequence has no last state: zeros, as onnxruntime does */
            for (j = 0; j < H; ++j) {
                if (Y_h) Y_h[so + j] = len > 0 ? s.h[b * H + j] : (RNN_T)0;
                if (Y_c) Y_c[so + j] = len > 0 ? s.c[b * H + j] : (RNN_T)0;
            }
            if (Y) {
                for (t = len; t < T; ++t) {
                    const int64_t off = p->layout ? ((b * T + t) * D + d) * H
                                                  : ((t * D + d) * N + b) * H;
                    for (j = 0; j < H; ++j) Y[off + j] = (RNN_T)0;
                }
            }
        }
    }
}
