/* onnxc runtime kernels of the transformer fusions (onnxc.LayerNormalization,
 * RMSNormalization, SkipLayerNormalization, MultiHeadAttention); float32, conventions as in
 * onnxc_kernels.h (which includes this header). */
#ifndef ONNXC_TRANSFORMER_H
#define ONNXC_TRANSFORMER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "onnxc_isa.h"

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

/* Branch-free float32 exp, sigmoid, SiLU and GELU for loops the compiler vectorizes (libm's
 * expf/erff are scalar calls). Plain C99, written for GCC's vectorizer at every ISA:
 *  - a select whose arm is an FP value computed for it alone is not vectorized without AVX-512
 *    (GCC sinks the computation into the arm and will not speculate a trapping FP op), so
 *    selects here pick between constants and inputs, or act on the bits;
 *  - float range clamps are integer minima of the bits (one instruction; a float select is a
 *    compare and a blend): for x >= 0 the bits order as signed integers, for x <= 0 as unsigned
 *    ones, and only one side of each clamp is ever reached by the other sign; a NaN is clamped
 *    too, so it is restored from the input (onnxc_tf_nan_mask, or x in a final product). */
typedef union {
    float f;
    uint32_t u;
    int32_t i;
} onnxc_tf_bits;

/* a * b + c as one fused multiply-add where the target has one: -std=c99 does not contract
 * a*b+c, and the polynomials below are mostly such steps (twice the instructions otherwise;
 * fmaf would be a libm call without hardware FMA). */
#if ONNXC_HW_FMA
#define ONNXC_TF_MADD(a, b, c) fmaf((a), (b), (c))
#define ONNXC_TF_HAS_FMA 1
#else
#define ONNXC_TF_MADD(a, b, c) ((a) * (b) + (c))
#define ONNXC_TF_HAS_FMA 0
#endif

/* min(bits, m) for bits of x >= 0 (or any x when m is the bits of a positive bound: negative x
 * are negative integers) and for bits of x <= 0 against the bits of a negative bound */
#define ONNXC_TF_MIN_S(b, m) ((b) < (int32_t)(m) ? (b) : (int32_t)(m))
#define ONNXC_TF_MIN_U(b, m) ((b) < (uint32_t)(m) ? (b) : (uint32_t)(m))

/* exp(r) for |r| <= ln2/2 (+ rounding): degree-6 minimax polynomial of the relative error,
 * coefficients rounded to float32 one at a time with the rest refitted: 3.1e-9 relative (0.05
 * ulp) in exact arithmetic. */
static inline float onnxc_exp_poly(float r) {
    float p = 1.381829614e-03f;
    p = ONNXC_TF_MADD(p, r, 8.368532173e-03f);
    p = ONNXC_TF_MADD(p, r, 4.166829214e-02f);
    p = ONNXC_TF_MADD(p, r, 1.666652262e-01f);
    p = ONNXC_TF_MADD(p, r, 4.999999404e-01f);
    p = ONNXC_TF_MADD(p, r, 1.0f);
    return ONNXC_TF_MADD(p, r, 1.0f);
}

/* Range reduction x = n ln2 + r: t = x log2(e) + 1.5 * 2^23 + bias rounds to an integer whose
 * low bits are n + bias (bias folded into the constant, so 2^n needs no integer add); ln2 is
 * split so n * ONNXC_TF_LN2HI is exact for |n| < 2^9 (Cody-Waite). */
#define ONNXC_TF_LOG2E 1.44269504088896341f
#define ONNXC_TF_LN2HI 0.693145751953125f
#define ONNXC_TF_LN2LO 1.4286068202862268e-06f
#define ONNXC_TF_SHIFTER 12582912.0f /* 1.5 * 2^23 */

/* A NaN x as a mask of all ones (a NaN when or-ed into a result's bits), from its bits: integer
 * compare, so no float select whose arm is computed (see above) */
static inline uint32_t onnxc_tf_nan_mask(float x) {
    onnxc_tf_bits b;
    b.f = x;
    return (b.u & 0x7FFFFFFFu) > 0x7F800000u ? 0xFFFFFFFFu : 0u;
}

/* exp(x) within ~1.5 ulp, subnormal results included: NaN -> NaN, x > 88.72 -> inf, below the
 * smallest subnormal -> 0. x is clamped to [-104, 89] (exp(-104) < 2^-150 rounds to 0; exp(89)
 * still overflows), so n is in [-150, 128] and 2^n is applied as two normal factors
 * 2^h * 2^(n-h): results in the subnormal range are rounded once and overflow comes out as inf
 * from the product. The clamps also take NaN (either sign) to a bound; the NaN mask restores it. */
static inline float onnxc_expf(float x) {
    onnxc_tf_bits c, t, s1, s2, y;
    float n, r;
    c.f = x;
    c.u = ONNXC_TF_MIN_U(c.u, 0xC2D00000u); /* -104.0f */
    c.i = ONNXC_TF_MIN_S(c.i, 0x42B20000u); /* 89.0f */
    t.f = ONNXC_TF_MADD(c.f, ONNXC_TF_LOG2E, ONNXC_TF_SHIFTER + 254.0f);
    n = t.f - (ONNXC_TF_SHIFTER + 254.0f);
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2HI, c.f);
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2LO, r);
    /* t.u = 0x4B400000 + n + 254 (even constant part): 2^h with h + 127 = (n + 254) >> 1, and
     * 2^(n-h) from the rest (the constant's bits shift out past bit 31) */
    s1.u = (t.u >> 1) << 23;
    s2.u = (t.u << 23) - s1.u;
    y.f = onnxc_exp_poly(r) * s1.f * s2.f;
    y.u |= onnxc_tf_nan_mask(x);
    return y.f;
}

/* 1 + exp(-x) for sigmoid and SiLU, x clamped to [-88.5, 87] by integer minima (also NaN, to a
 * bound): exp(-87) < 2^-125 vanishes next to 1 and n >= -126 keeps 2^n normal; n <= 128, and
 * 2^128 is the bits of inf, so x <= -88.38 gives an infinite denominator (sigmoid 0, below the
 * subnormal results that x in (-88.38, -87.34) gets). One FMA forms 1 + p 2^n. */
static inline float onnxc_sigmoid_den(float x) {
    onnxc_tf_bits c, t, s;
    float n, r;
    c.f = x;
    c.i = ONNXC_TF_MIN_S(c.i, 0x42AE0000u); /* 87.0f */
    c.u = ONNXC_TF_MIN_U(c.u, 0xC2B10000u); /* -88.5f */
    t.f = ONNXC_TF_MADD(c.f, -ONNXC_TF_LOG2E, ONNXC_TF_SHIFTER + 127.0f);
    n = t.f - (ONNXC_TF_SHIFTER + 127.0f);
    s.u = t.u << 23; /* 2^n: t.u = 0x4B400000 + n + 127 */
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2HI, -c.f);
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2LO, r);
    return ONNXC_TF_MADD(onnxc_exp_poly(r), s.f, 1.0f);
}

/* sigmoid(x) = 1 / (1 + exp(-x)), within 2.5 ulp down to x = -87.33 (FLT_MIN), subnormal below
 * until 0 from x <= -88.38; exact 0.5, 1 and 0 at 0, +inf and -inf; NaN -> NaN (the mask makes
 * the denominator NaN). No sign split: for x < 0 the denominator is large and its relative error
 * is the result's, as for x > 0. */
static inline float onnxc_sigmoidf(float x) {
    onnxc_tf_bits d;
    d.f = onnxc_sigmoid_den(x);
    d.u |= onnxc_tf_nan_mask(x);
    return 1.0f / d.f;
}

/* SiLU x * sigmoid(x) = x / (1 + exp(-x)): one division instead of a division and a product (x
 * itself carries a NaN into the quotient). Within 2.5 ulp for x >= -88.37 (results down to
 * -4e-37); -0 below, NaN at -inf as x * sigmoid(x). */
static inline float onnxc_siluf(float x) { return x / onnxc_sigmoid_den(x); }

/* HardSwish x * clamp(x / 6 + 1/2, 0, 1) as the three products x * 0, x and x * t picked by bit
 * masks: the same values as the ternary form (NaN passes through x * t), but the loop
 * vectorizes with AVX2.  GCC (12) sank the product into the ternary's arms and, under the
 * default -ftrapping-math, would not if-convert the then conditional products without AVX-512
 * masking: a scalar loop, 1.3 ns per element (MobileNetV3-small's HardSwish convs ran at half
 * their AVX-512 speed at target avx2, every one of them). */
static inline float onnxc_hardswishf(float x) {
    onnxc_tf_bits lo, mid, hi, r;
    const float t = x / 6.0f + 0.5f;
#ifdef ONNXC_HARDSWISH_TERNARY /* the ternary form, for A/B measurements */
    if (1) return x * (t < 0.0f ? 0.0f : t > 1.0f ? 1.0f : t);
#endif
    const uint32_t below = 0u - (uint32_t)(t < 0.0f), above = 0u - (uint32_t)(t > 1.0f);
    lo.f = x * 0.0f;
    mid.f = x * t;
    hi.f = x;
    r.u = (lo.u & below) | (hi.u & above) | (mid.u & ~(below | above));
    return r.f;
}

/* GELU, erf form: x Phi(x) = x [x >= 0] - g, g = |x|/2 erfc(a) >= 0, a = |x| / sqrt 2 (x < 0:
 * -g; x >= 0: x - g, g <= x/2). erfc(a) = t exp(P(u) - a^2), t = 1 / (1 + 0.45 a), u = 1 - t, P a
 * degree-9 polynomial with P(0) = 0 fitted (minimax, float32 coefficients) to ln(erfc(a) / t) +
 * a^2 over a in [0, 10.3]: 1.7e-8 absolute, i.e. relative in erfc (in u rather than t: Horner
 * near t = 1 would sum large alternating terms to ~0, losing erfc's relative accuracy at small a). a^2 = x^2 / 2 is taken from |x| with its rounding
 * error (one FMA, or a Veltkamp split), and the rounding of P - a^2 by Fast2Sum (exact where
 * a^2 >= |P|, and below 2^-26 elsewhere); both go into the reduced argument of the exp, so the
 * large exponent costs no accuracy. The exp is scaled by 2^32 (n + 32 >= -126 down to
 * a = 10.3) and g formed before the scaling is undone, so subnormal g rounds once. |x| is
 * clamped to 14.5 (integer min; also NaN and inf), where g < 2^-150 rounds to 0; x itself
 * carries NaN. Within 6 ulp (7 without FMA) where the result is at least FLT_MIN, within FLT_MIN
 * below; gelu(inf) = inf, gelu(-inf) = NaN (-inf * 0, as the formula and onnxruntime give). */
static inline float onnxc_gelu_erff(float x) {
    onnxc_tf_bits b, tt, sc;
    float ax, t, u, x2, x2lo, P, s, w, corr, n, r, ecs;
    b.f = x;
    b.u &= 0x7FFFFFFFu;
    b.u = ONNXC_TF_MIN_U(b.u, 0x41680000u); /* 14.5f */
    ax = b.f;
    t = 1.0f / ONNXC_TF_MADD(0.45f * 0.70710678118654752f, ax, 1.0f);
    x2 = ax * ax;
#if ONNXC_TF_HAS_FMA
    x2lo = fmaf(ax, ax, -x2);
#else
    {
        const float c = 4097.0f * ax, xh = c - (c - ax), xl = ax - xh;
        x2lo = ((xh * xh - x2) + 2.0f * xh * xl) + xl * xl;
    }
#endif
    u = 1.0f - t; /* exact for t >= 1/2 */
    P = -1.790818721e-01f;
    P = ONNXC_TF_MADD(P, u, 5.909497142e-01f);
    P = ONNXC_TF_MADD(P, u, -6.050615311e-01f);
    P = ONNXC_TF_MADD(P, u, 1.299766451e-01f);
    P = ONNXC_TF_MADD(P, u, -9.448058903e-02f);
    P = ONNXC_TF_MADD(P, u, 2.213499546e-01f);
    P = ONNXC_TF_MADD(P, u, 2.858863771e-01f);
    P = ONNXC_TF_MADD(P, u, -2.130046934e-01f);
    P = ONNXC_TF_MADD(P, u, -1.507509232e+00f);
    P *= u;
    s = ONNXC_TF_MADD(-0.5f, x2, P);                  /* P - a^2, rounded */
    w = ONNXC_TF_MADD(0.5f, x2, s);                   /* s + a^2 */
    corr = ONNXC_TF_MADD(-0.5f, x2lo, P - w);         /* what s lost, less a^2's rounding */
    tt.f = ONNXC_TF_MADD(s, ONNXC_TF_LOG2E, ONNXC_TF_SHIFTER + 159.0f);
    n = tt.f - (ONNXC_TF_SHIFTER + 159.0f);
    sc.u = tt.u << 23;                                /* 2^(n + 32) */
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2HI, s);
    r = ONNXC_TF_MADD(-n, ONNXC_TF_LN2LO, r) + corr;
    ecs = t * onnxc_exp_poly(r) * sc.f;              /* erfc(a) 2^32 */
    /* x * [x >= 0] - g (-inf * 0 is NaN, as 0.5 x (1 + erf(x / sqrt 2)) computes it); [x >= 0]
     * as 1.0f or 0 from the sign bit: GCC's SSE2 build does not vectorize the float select */
    b.f = x;
    b.u = ((b.u >> 31) - 1u) & 0x3F800000u;
    return ONNXC_TF_MADD(x, b.f, -(ax * ecs * 1.16415321826934814e-10f)); /* 2^-32 / 2 */
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
