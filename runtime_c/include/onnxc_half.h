/* onnxc_half.h: conversions between float32/float64 and the narrow types the C path carries as
 * raw bits: float16 and bfloat16 (uint16_t), float8 E4M3FN/E4M3FNUZ/E5M2/E5M2FNUZ/E8M0, float4
 * E2M1 and int4/uint4/int2/uint2 (uint8_t, one element per byte, as ml_dtypes stores them).
 *
 * Portable C99 bit manipulation, no _Float16: round to nearest even everywhere, NaN, infinities
 * and subnormals exact; NaN payloads are kept where the format has room and quieted.  Where the
 * build enables the avx2 ISA row (onnxc_isa.h; its features include F16C) the float32<->float16
 * pair uses the hardware instructions, which give the same bits; define ONNXC_NO_F16C to force
 * the portable code.
 */
#ifndef ONNXC_HALF_H
#define ONNXC_HALF_H

#include <stdint.h>
#include <string.h>

#include "onnxc_isa.h"

#if ONNXC_HAS_AVX2 && !defined(ONNXC_NO_F16C)
#include <immintrin.h>
#define ONNXC_HAVE_F16C 1
#endif

static inline uint32_t onnxc_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float onnxc_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint64_t onnxc_f64_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }

/* --- float32 rounded to odd: one correct rounding from float64 and 64-bit integers ----------
 * Truncated toward zero, the last bit set when inexact.  Rounding that float32 once more to a
 * format with at least two fewer mantissa bits (bfloat16, float8, float4, E8M0) gives the source
 * value correctly rounded: the float32 stays on the same side of every tie and power of two of
 * the narrow format, where rounding to nearest float32 first could land on a tie (double rounding). */
static inline float onnxc_f64_to_f32_odd(double x)
{
    uint64_t a = onnxc_f64_bits(x), mag = a & 0x7FFFFFFFFFFFFFFFull;
    uint32_t u;
    float f;
    if (mag >= 0x7FF0000000000000ull) return (float)x;      /* NaN, infinities */
    if (mag > 0x47EFFFFFE0000000ull)                         /* beyond FLT_MAX: truncates to it */
        return onnxc_bits_f32((uint32_t)(a >> 32 & 0x80000000u) | 0x7F7FFFFFu);
    f = (float)x;
    if ((double)f == x) return f;
    u = onnxc_f32_bits(f);
    if ((u & 0x7FFFFFFFu) && ((double)f < x) == (x < 0)) u--;  /* rounded away from zero: step back */
    return onnxc_bits_f32(u | 1u);
}

static inline float onnxc_u64_to_f32_odd(uint64_t m)
{
    uint32_t shift = 0, sticky = 0;
    while (m >= (1ull << 24)) { sticky |= (uint32_t)(m & 1u); m >>= 1; shift++; }
    return (float)(uint32_t)(m | sticky) * onnxc_bits_f32((127u + shift) << 23);  /* exact */
}

static inline float onnxc_i64_to_f32_odd(int64_t v)
{
    return v < 0 ? -onnxc_u64_to_f32_odd(0u - (uint64_t)v) : onnxc_u64_to_f32_odd((uint64_t)v);
}

/* --- float16 ----------------------------------------------------------------------------- */
static inline float onnxc_f16_to_f32(uint16_t h)
{
#ifdef ONNXC_HAVE_F16C
    return _cvtsh_ss(h);
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1F) return onnxc_bits_f32(sign | 0x7F800000u | (m << 13) | (m ? 0x400000u : 0u)); /* inf, quiet NaN */
    if (e == 0) {                                   /* zero and subnormals: m * 2^-24, exact */
        float v = (float)m * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return onnxc_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
#endif
}

static inline uint16_t onnxc_f32_to_f16(float f)
{
#ifdef ONNXC_HAVE_F16C
    return (uint16_t)_cvtss_sh(f, 0);  /* 0: round to nearest even */
#else
    uint32_t u = onnxc_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    u &= 0x7FFFFFFFu;
    if (u > 0x7F800000u) return sign | 0x7E00u | (uint16_t)((u >> 13) & 0x3FFu); /* quiet NaN */
    if (u >= 0x477FF000u) return sign | 0x7C00u;      /* >= 65520 rounds past the max: inf */
    if (u >= 0x38800000u) {                           /* normal half (>= 2^-14) */
        u += 0xFFFu + ((u >> 13) & 1u);               /* round the 13 dropped bits to even */
        return sign | (uint16_t)((u - 0x38000000u) >> 13);  /* rebias 127 -> 15 */
    }
    if (u < 0x33000000u) return sign;                 /* < 2^-25 (the tie rounds to 0) */
    {                                                 /* subnormal half: m * 2^-24 */
        uint32_t e = u >> 23, sig = (u & 0x7FFFFFu) | 0x800000u, shift = 126u - e;
        uint32_t q = sig >> shift, rem = sig & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
#endif
}

/* --- bfloat16: the top half of a float32 ------------------------------------------------- */
static inline float onnxc_bf16_to_f32(uint16_t h) { return onnxc_bits_f32((uint32_t)h << 16); }

static inline uint16_t onnxc_f32_to_bf16(float f)
{
    uint32_t u = onnxc_f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);  /* quiet NaN */
    return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);  /* even rounding; overflow -> inf */
}

/* --- generic narrow float encoder (from double: float64 -> float16 rounds once, as numpy does) --
 * Magnitude code of finite |x| (double bits ``a``, sign clear) in a format with M mantissa bits
 * whose smallest normal exponent is emin: ((e - emin + 1) << M | mantissa) for normals,
 * the mantissa for subnormals; a round-up that carries into the exponent is handled by the add. */
static inline uint32_t onnxc_narrow_mag(uint64_t a, int M, int emin)
{
    int E = (int)(a >> 52), e, shift;
    uint64_t sig, q, rem, half;
    if (E == 0) return 0;  /* double subnormals are far below half of every format's least value */
    e = E - 1023;
    if (e - emin > 300) return 0xFFFFFFFFu;  /* far beyond every format's range */
    sig = (a & 0xFFFFFFFFFFFFFull) | (1ull << 52);
    shift = 52 - M + (e < emin ? emin - e : 0);
    if (shift >= 54) return 0;  /* sig < 2^53: below half of the least subnormal */
    q = sig >> shift;
    rem = sig & ((1ull << shift) - 1u);
    half = 1ull << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return e < emin ? (uint32_t)q : (uint32_t)(((uint64_t)(e - emin) << M) + q);
}

/* x -> bits of a format with the sign at bit ``sbit``, largest finite magnitude code ``maxc``,
 * infinity code ``inf`` (0: none) and NaN code ``nan`` (fnuz: the single NaN is 1 << sbit and
 * there is no negative zero).  ``sat``: overflow and infinities give +-max instead of inf/NaN. */
static inline uint32_t onnxc_narrow_encode(double x, int M, int emin, int sbit, uint32_t maxc, uint32_t inf,
                                           uint32_t nan, int fnuz, int sat)
{
    uint64_t a = onnxc_f64_bits(x);
    uint32_t s = (uint32_t)(a >> 63) << sbit, c, nanv;
    a &= 0x7FFFFFFFFFFFFFFFull;
    nanv = fnuz ? (1u << sbit) : (s | nan);
    if (a > 0x7FF0000000000000ull) return nanv;
    c = a == 0x7FF0000000000000ull ? 0xFFFFFFFFu : onnxc_narrow_mag(a, M, emin);
    if (c > maxc) return sat ? (s | maxc) : (inf ? (s | inf) : nanv);
    if (c == 0 && fnuz) return 0;
    return s | c;
}

/* bits -> float for 8/4-bit formats (M mantissa bits, smallest normal exponent emin >= -126);
 * magnitudes >= nanmin are NaN (0: none), ``inf`` as above; every value is exact in float32. */
static inline float onnxc_narrow_decode(uint32_t b, int M, int emin, int sbit, uint32_t inf, uint32_t nanmin,
                                        int fnuz)
{
    uint32_t s = (b >> sbit) & 1u, c = b & ((1u << sbit) - 1u), e = c >> M, m = c & ((1u << M) - 1u);
    float v;
    if (fnuz && b == (1u << sbit)) return onnxc_bits_f32(0xFFC00000u);  /* its sign bit is set */
    if (inf && c == inf) v = onnxc_bits_f32(0x7F800000u);
    else if (nanmin && c >= nanmin) v = onnxc_bits_f32(0x7FC00000u);
    else if (e) v = onnxc_bits_f32(((uint32_t)((int)e - 1 + emin + 127) << 23) | (m << (23 - M)));
    else v = (float)m * onnxc_bits_f32((uint32_t)(emin - M + 127) << 23);
    return s ? -v : v;
}

static inline uint16_t onnxc_f64_to_f16(double x)
{ return (uint16_t)onnxc_narrow_encode(x, 10, -14, 15, 0x7BFFu, 0x7C00u, 0x7E00u, 0, 0); }

/* --- float8 / float4 ------------------------------------------------------------------------ */
static inline uint8_t onnxc_f64_to_f8e4m3fn(double x, int sat)
{ return (uint8_t)onnxc_narrow_encode(x, 3, -6, 7, 0x7Eu, 0, 0x7Fu, 0, sat); }
static inline uint8_t onnxc_f64_to_f8e4m3fnuz(double x, int sat)
{ return (uint8_t)onnxc_narrow_encode(x, 3, -7, 7, 0x7Fu, 0, 0, 1, sat); }
static inline uint8_t onnxc_f64_to_f8e5m2(double x, int sat)
{ return (uint8_t)onnxc_narrow_encode(x, 2, -14, 7, 0x7Bu, 0x7Cu, 0x7Eu, 0, sat); }
static inline uint8_t onnxc_f64_to_f8e5m2fnuz(double x, int sat)
{ return (uint8_t)onnxc_narrow_encode(x, 2, -15, 7, 0x7Fu, 0, 0, 1, sat); }
/* E2M1 has neither NaN nor infinity: out of range saturates; NaN gives a zero whose sign is the
 * opposite of the NaN's (what ml_dtypes, the onnx reference, produces). */
static inline uint8_t onnxc_f64_to_f4e2m1(double x)
{
    if (x != x) return (uint8_t)((onnxc_f64_bits(x) >> 63) ? 0u : 8u);
    return (uint8_t)onnxc_narrow_encode(x, 1, 0, 3, 0x7u, 0, 0, 0, 1);
}

static inline float onnxc_f8e4m3fn_to_f32(uint8_t b) { return onnxc_narrow_decode(b, 3, -6, 7, 0, 0x7Fu, 0); }
static inline float onnxc_f8e4m3fnuz_to_f32(uint8_t b) { return onnxc_narrow_decode(b, 3, -7, 7, 0, 0, 1); }
static inline float onnxc_f8e5m2_to_f32(uint8_t b) { return onnxc_narrow_decode(b, 2, -14, 7, 0x7Cu, 0x7Du, 0); }
static inline float onnxc_f8e5m2fnuz_to_f32(uint8_t b) { return onnxc_narrow_decode(b, 2, -15, 7, 0, 0, 1); }
static inline float onnxc_f4e2m1_to_f32(uint8_t b) { return onnxc_narrow_decode(b & 15u, 1, 0, 3, 0, 0, 0); }

/* E8M0: a bare exponent, 2^(b - 127); 0xFF is NaN. */
static inline float onnxc_e8m0_to_f32(uint8_t b)
{
    if (b == 0xFFu) return onnxc_bits_f32(0x7FC00000u);
    return onnxc_bits_f32(b ? (uint32_t)b << 23 : 0x00400000u);  /* b = 0: 2^-127, a float32 subnormal */
}

/* float32 -> E8M0 as the onnx reference does: the float32 exponent field, rounded by ``mode``
 * (0: up, 1: down, 2: nearest) from the mantissa; the sign is ignored; NaN and inf give 0xFF.
 * With ``sat`` the largest exponent never rounds up into 0xFF. */
static inline uint8_t onnxc_f32_to_e8m0(float f, int sat, int mode)
{
    uint32_t u = onnxc_f32_bits(f), e = (u >> 23) & 0xFFu, up = 0;
    if (e == 0xFFu) return 0xFFu;
    if (mode == 0) up = (u & 0x7FFFFFu) != 0;
    else if (mode == 2) up = (u & 0x400000u) && ((u & 0x200000u) || (u & 0x1FFFFFu) || e > 0);
    if (sat && e == 0xFEu) up = 0;
    return (uint8_t)(e + up);
}

/* --- int4/uint4/int2/uint2: the low bits of a byte ------------------------------------------ */
static inline int32_t onnxc_i4_to_i32(uint8_t b) { return (int32_t)((b & 15u) ^ 8u) - 8; }
static inline int32_t onnxc_i2_to_i32(uint8_t b) { return (int32_t)((b & 3u) ^ 2u) - 2; }
/* A float truncated to int32 and wrapped to the low bits; NaN and values outside int32 give 0.
 * The spec leaves a float outside the target's range undefined (ml_dtypes releases differ):
 * this only makes the C defined and the same on every build. */
static inline uint8_t onnxc_f64_to_lowbits(double x, unsigned mask)
{
    return (x > -2147483649.0 && x < 2147483648.0) ? (uint8_t)((uint32_t)(int32_t)x & mask) : 0u;
}

#endif
