/* onnxc runtime kernels of the transformer fusions (onnxc.LayerNormalization,
 * RMSNormalization, SkipLayerNormalization, MultiHeadAttention); float32, conventions as in
 * onnxc_kernels.h (which includes this header). */
#ifndef ONNXC_TRANSFORMER_H
#define ONNXC_TRANSFORMER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Per row of X[rows, n]: s = skip ? (x + bias) + skip : x; y = (s - mean) / sqrt(var + eps) *
 * gamma + beta (rms: mean taken as 0). bias/gamma/beta are [n] or NULL (0 / 1 / 0); bias is
 * read only with skip. sum (may be NULL) receives s. Y may not alias X or skip. */
void onnxc_layernorm(int64_t rows, int64_t n, const float* X, const float* skip,
                     const float* bias, const float* gamma, const float* beta, float eps, int rms,
                     float* Y, float* sum);

/* Self-attention of X ([B, S, E], or [S, B, E] with seq_first) with the packed projection
 * W [E, 3*H*D] (Q | K | V column blocks, head h at h*D) and bias [3*H*D] (may be NULL):
 * Y (X's layout, [.., .., H*D]) = per head softmax(scale * Q K^T + mask) V. The float mask (used
 * when has_mask) is addressed by element strides over (batch, head, query, key), 0 along
 * broadcast dims. nan_to_zero: NaN probabilities become 0. tile_rows query rows per task,
 * `slots` score tiles (of tile_rows * (S + 1) floats: scores and row factors). */
typedef struct {
    int64_t B, S, E, H, D;
    int seq_first;
    float scale;
    int has_mask;
    int64_t mask_str[4];
    int nan_to_zero;
    int64_t tile_rows, slots;
} onnxc_mha_params;

size_t onnxc_mha_scratch_floats(const onnxc_mha_params* p);

void onnxc_mha(const onnxc_mha_params* p, const float* X, const float* W, const float* bias,
               const float* mask, float* Y, float* scratch);

/* The attention alone, from the projected qkv [B*S, 3*H*D] (X's token order); `tiles` holds
 * slots * tile_rows * (S + 1) floats (onnxc_mha's scratch past its first B*S*3*H*D floats). */
void onnxc_mha_attend(const onnxc_mha_params* p, const float* qkv, const float* mask, float* Y,
                      float* tiles);

/* Branch-free float32 exp and GELU for loops the compiler vectorizes (libm's expf/erff are
 * scalar calls). Both are plain C99; select expressions rather than branches. */
typedef union {
    float f;
    uint32_t u;
} onnxc_tf_bits;

/* a * b + c as one fused multiply-add where the target has one: -std=c99 does not contract
 * a*b+c, and the polynomials below are mostly such steps (twice the instructions otherwise;
 * fmaf would be a libm call without hardware FMA). */
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define ONNXC_TF_MADD(a, b, c) fmaf((a), (b), (c))
#define ONNXC_TF_HAS_FMA 1
#else
#define ONNXC_TF_MADD(a, b, c) ((a) * (b) + (c))
#define ONNXC_TF_HAS_FMA 0
#endif

/* The shared core of onnxc_expf and onnxc_sigmoidf: x = n ln2 + r (Cody-Waite, |r| <= ln2/2);
 * returns exp(r) by its degree-7 Taylor polynomial (truncation < 1e-8 relative) and sets *ni to
 * n.  x must lie in [-104, 88.73] (the callers clamp). */
static inline float onnxc_exp_reduce(float x, int32_t* ni) {
    onnxc_tf_bits t;
    float n, r, p;
    t.f = ONNXC_TF_MADD(x, 1.44269504088896341f, 12582912.0f); /* 1.5 * 2^23: rounds to an integer */
    n = t.f - 12582912.0f;
    *ni = (int32_t)(t.u - 0x4B400000u);
    r = ONNXC_TF_MADD(n, -0.693145751953125f, x); /* ln2 = this (exact product for |n| < 2^9) + the next */
    r = ONNXC_TF_MADD(n, -1.4286068202862268e-06f, r);
    p = 1.0f / 5040.0f;
    p = ONNXC_TF_MADD(p, r, 1.0f / 720.0f);
    p = ONNXC_TF_MADD(p, r, 1.0f / 120.0f);
    p = ONNXC_TF_MADD(p, r, 1.0f / 24.0f);
    p = ONNXC_TF_MADD(p, r, 1.0f / 6.0f);
    p = ONNXC_TF_MADD(p, r, 0.5f);
    p = ONNXC_TF_MADD(p, r, 1.0f);
    return ONNXC_TF_MADD(p, r, 1.0f);
}

/* exp(x) within ~2 ulp: onnxc_exp_reduce, then 2^n applied in two halves so results in the
 * subnormal range come out right. NaN -> NaN, overflow -> inf, x < -104 (below the smallest
 * subnormal) -> 0. */
static inline float onnxc_expf(float x) {
    const float hi = 88.72283935546875f, lo = -104.0f;
    onnxc_tf_bits s1, s2;
    float xc = x > hi ? hi : x, p;
    int32_t ni, h;
    xc = xc < lo ? lo : xc; /* NaN passes both (comparisons are false) */
    p = onnxc_exp_reduce(xc, &ni);
    h = ni / 2;
    s1.u = (uint32_t)(h + 127) << 23;
    s2.u = (uint32_t)(ni - h + 127) << 23;
    p = p * s1.f * s2.f;
    return x > hi ? (float)INFINITY : (x < lo ? 0.0f : p);
}

/* sigmoid(x) = 1 / (1 + e) for x >= 0 and e / (1 + e) below, e = exp(-|x|) in (0, 1]: the exp
 * never overflows, so it needs neither onnxc_expf's overflow handling nor its split scaling for
 * subnormal results (|x| is clamped to 87.33654, where exp is still normal): about half of the vector
 * instructions of 1 / (1 + onnxc_expf(-x)), the cost of SiLU/Sigmoid epilogues.  Same reduction
 * and polynomial as onnxc_expf (within ~3 ulp); results below FLT_MIN (x < -87.33654) are 0,
 * NaN -> NaN. */
static inline float onnxc_sigmoidf(float x) {
    const float ax = x < 0 ? -x : x;
    const float m = ax > 87.33654f ? -87.33654f : -ax; /* NaN: -NaN; exp(-87.33654) >= FLT_MIN */
    onnxc_tf_bits sc;
    int32_t ni;
    const float p = onnxc_exp_reduce(m, &ni);
    float e, q;
    sc.u = (uint32_t)(ni + 127) << 23; /* 2^n, n in [-126, 0] */
    e = p * sc.f;
    q = 1.0f / (1.0f + e);
    q = x >= 0 ? q : e * q;
    return x < -87.33654f ? 0.0f : q;
}

/* GELU, erf form: 0.5 x (1 + erf(x / sqrt 2)), with 1 + erf(z) = erfc(-z) for z < 0 and
 * 2 - erfc(z) otherwise, so the negative tail keeps its relative accuracy. erfc(a), a >= 0, is
 * t exp(P(t) - a^2), t = 1 / (1 + a/2), P a degree-11 polynomial fitted (least squares on
 * Chebyshev terms) to ln(erfc(a) / t) + a^2 over [0, 10.5] (2e-8 relative in exact
 * arithmetic); the rounding errors of a^2 and of P - a^2 are carried into the result. Within
 * ~7 ulp of the exact value (9 near the subnormal range); erfc(a) < 2e-45 for a >= 10 is 0. */
static inline float onnxc_gelu_erff(float x) {
    const float z = x * 0.70710678118654752f;
    const float a = z < 0 ? -z : z;
    const float t = 1.0f / ONNXC_TF_MADD(0.5f, a, 1.0f);
    /* a^2 = x^2 / 2 from x itself (the rounding of z would cost 2 a^2 half-ulps of relative
     * error in the tail), with x^2's rounding error kept: one FMA gives it exactly, else a
     * Veltkamp split */
    const float x2 = x * x, a2 = 0.5f * x2;
#if ONNXC_TF_HAS_FMA
    const float a2lo = 0.5f * fmaf(x, x, -x2);
#else
    const float c = 4097.0f * x, xh = c - (c - x), xl = x - xh;
    const float a2lo = 0.5f * (((xh * xh - x2) + 2.0f * xh * xl) + xl * xl);
#endif
    float P = -1.129111856e-01f, s, bb, err, ec;
    P = ONNXC_TF_MADD(P, t, 5.739814290e-01f);
    P = ONNXC_TF_MADD(P, t, -1.037219781e+00f);
    P = ONNXC_TF_MADD(P, t, 4.995799868e-01f);
    P = ONNXC_TF_MADD(P, t, 7.629573577e-01f);
    P = ONNXC_TF_MADD(P, t, -1.067496618e+00f);
    P = ONNXC_TF_MADD(P, t, 4.449727420e-01f);
    P = ONNXC_TF_MADD(P, t, -2.991000127e-01f);
    P = ONNXC_TF_MADD(P, t, 1.321383219e-01f);
    P = ONNXC_TF_MADD(P, t, 3.680728424e-01f);
    P = ONNXC_TF_MADD(P, t, 1.000556327e+00f);
    P = ONNXC_TF_MADD(P, t, -1.265531426e+00f);
    s = P - a2; /* two-sum: err is what s lost */
    bb = s - P;
    err = (P - (s - bb)) + (-a2 - bb);
    ec = t * onnxc_expf(s) * (1.0f + (err - a2lo));
    ec = a < 10.0f ? ec : 0.0f; /* also NaN: the product below stays NaN */
    return 0.5f * x * (z >= 0 ? 2.0f - ec : ec);
}

/* GELU, tanh form: 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3)
 * (the same value; no cancellation near u = 0, and the limits 0 and x come out as such). */
static inline float onnxc_gelu_tanhf(float x) {
    const float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return x / (1.0f + onnxc_expf(-2.0f * u));
}

#ifdef __cplusplus
}
#endif

#endif /* ONNXC_TRANSFORMER_H */
