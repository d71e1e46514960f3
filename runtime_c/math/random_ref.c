/* Portable C99 random generators: RandomUniform(Like), RandomNormal(Like), Bernoulli,
 * Multinomial and Dropout's training mask, on one counter-based generator, Philox4x32-10
 * (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): element i of a node's
 * output is a function of (key, i) alone, so draws need no state, any thread may compute any
 * element, and a seed gives the same draws on every run and machine.
 *
 * key: a node with a `seed` attribute uses the seed's bits (the same seed gives the same draws,
 * as the spec asks); one without gets a fresh key per run from onnxc_rng_fresh_key (a process-
 * wide counter, the clock and the arena address, mixed by SplitMix64).
 * Draws: block i (counter {i_lo, i_hi, stream, 0}) gives four 32-bit words; a uniform double in
 * [0, 1) takes 53 bits of words 0-1, a second one words 2-3; normals are Box-Muller of those two.
 */
#define _POSIX_C_SOURCE 199309L
#include <math.h>
#include <time.h>
#include "onnxc_kernels.h"

void onnxc_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    int r;
    for (r = 0; r < 10; ++r) {
        const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static uint64_t rng_mix(uint64_t z) { /* SplitMix64's finalizer */
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

uint64_t onnxc_rng_fresh_key(const void* arena) {
#if defined(__GNUC__) || defined(__clang__)
    static uint64_t calls = 0;
    const uint64_t n = __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED);
#else
    static volatile uint64_t calls = 0;
    const uint64_t n = calls++;
#endif
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return rng_mix(rng_mix(n + UINT64_C(0x9E3779B97F4A7C15) * ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec))
                   ^ (uint64_t)(uintptr_t)arena);
}

/* the two uniform doubles in [0, 1) of element i */
static void rng_uniform2(uint64_t key, uint32_t stream, int64_t i, double* u0, double* u1) {
    uint32_t ctr[4], k[2], w[4];
    ctr[0] = (uint32_t)(uint64_t)i; ctr[1] = (uint32_t)((uint64_t)i >> 32); ctr[2] = stream; ctr[3] = 0;
    k[0] = (uint32_t)key; k[1] = (uint32_t)(key >> 32);
    onnxc_philox4x32_10(ctr, k, w);
    *u0 = (double)(((uint64_t)w[0] << 21) ^ (w[1] >> 11)) * (1.0 / 9007199254740992.0);
    *u1 = (double)(((uint64_t)w[2] << 21) ^ (w[3] >> 11)) * (1.0 / 9007199254740992.0);
}

double onnxc_rng_uniform(uint64_t key, uint32_t stream, int64_t i) {
    double u0, u1;
    rng_uniform2(key, stream, i, &u0, &u1);
    return u0;
}

double onnxc_rng_normal(uint64_t key, uint32_t stream, int64_t i) {
    double u0, u1;
    rng_uniform2(key, stream, i, &u0, &u1);
    return sqrt(-2.0 * log(1.0 - u0)) * cos(6.283185307179586 * u1); /* 1 - u0 in (0, 1] */
}

enum { RG_FLOAT = 1, RG_UINT8 = 2, RG_INT8 = 3, RG_UINT16 = 4, RG_INT16 = 5, RG_INT32 = 6, RG_INT64 = 7,
       RG_BOOL = 9, RG_DOUBLE = 11, RG_UINT32 = 12, RG_UINT64 = 13 };

static double rg_read(int t, const void* p, int64_t i) {
    return t == RG_FLOAT ? (double)((const float*)p)[i] : ((const double*)p)[i];
}

/* 0 or 1 (Bernoulli) in any numeric or bool type */
static void rg_write01(int t, void* p, int64_t i, int v) {
    switch (t) {
        case RG_FLOAT: ((float*)p)[i] = (float)v; break;
        case RG_DOUBLE: ((double*)p)[i] = (double)v; break;
        case RG_UINT8: case RG_BOOL: ((uint8_t*)p)[i] = (uint8_t)v; break;
        case RG_INT8: ((int8_t*)p)[i] = (int8_t)v; break;
        case RG_UINT16: ((uint16_t*)p)[i] = (uint16_t)v; break;
        case RG_INT16: ((int16_t*)p)[i] = (int16_t)v; break;
        case RG_INT32: ((int32_t*)p)[i] = (int32_t)v; break;
        case RG_UINT32: ((uint32_t*)p)[i] = (uint32_t)v; break;
        case RG_INT64: ((int64_t*)p)[i] = (int64_t)v; break;
        default: ((uint64_t*)p)[i] = (uint64_t)v; break;
    }
}

void onnxc_random_uniform(int elem_type, void* Y, int64_t n, double low, double high, uint64_t key) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        const double v = low + (high - low) * onnxc_rng_uniform(key, 0, i);
        if (elem_type == RG_FLOAT) {
            float f = (float)v;
            if (f >= (float)high && high > low) f = nextafterf((float)high, (float)low); /* [low, high) */
            ((float*)Y)[i] = f;
        } else {
            ((double*)Y)[i] = v;
        }
    }
}

void onnxc_random_normal(int elem_type, void* Y, int64_t n, double mean, double scale, uint64_t key) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        const double v = mean + scale * onnxc_rng_normal(key, 0, i);
        if (elem_type == RG_FLOAT) ((float*)Y)[i] = (float)v;
        else ((double*)Y)[i] = v;
    }
}

void onnxc_bernoulli(int in_type, const void* P, int out_type, void* Y, int64_t n, uint64_t key) {
    int64_t i;
    for (i = 0; i < n; ++i) rg_write01(out_type, Y, i, onnxc_rng_uniform(key, 0, i) < rg_read(in_type, P, i));
}

void onnxc_multinomial(int in_type, const void* X, int64_t batch, int64_t classes, int64_t samples,
                       int out_type, void* Y, uint64_t key, double* scratch) {
    int64_t b, s, c;
    for (b = 0; b < batch; ++b) {
        double mx = -INFINITY, total = 0.0;
        for (c = 0; c < classes; ++c) {
            const double x = rg_read(in_type, X, b * classes + c);
            if (x > mx) mx = x;
        }
        for (c = 0; c < classes; ++c) { /* unnormalized log-probabilities: a running CDF */
            total += exp(rg_read(in_type, X, b * classes + c) - mx);
            scratch[c] = total;
        }
        for (s = 0; s < samples; ++s) {
            const double t = onnxc_rng_uniform(key, 0, b * samples + s) * total;
            int64_t lo = 0, hi = classes - 1;
            while (lo < hi) { /* the first class whose CDF exceeds t */
                const int64_t mid = lo + (hi - lo) / 2;
                if (scratch[mid] > t) hi = mid; else lo = mid + 1;
            }
            if (out_type == RG_INT32) ((int32_t*)Y)[b * samples + s] = (int32_t)lo;
            else ((int64_t*)Y)[b * samples + s] = lo;
        }
    }
}

void onnxc_dropout_mask(uint8_t* mask, int64_t n, double ratio, uint64_t key) {
    int64_t i;
    for (i = 0; i < n; ++i) mask[i] = onnxc_rng_uniform(key, 0, i) >= ratio;
}
