/* Portable C99 GridSample (ONNX opsets 16-22, PyTorch's grid_sampler semantics), float32,
 * 2 or 3 spatial dims (a 2-D problem runs as 3-D with a depth of 1).
 *
 * Per output position the sampling point is computed once per spatial dim as up to 4 taps
 * (source index, weight); every channel then reads the same taps. Coordinates follow the
 * definition step by step: denormalize, round (nearest), fold out-of-range coordinates back
 * (border: clamp, reflection: mirror), then pick the taps, each tap index resolved by the
 * padding mode (zeros: taps outside are dropped). Indices are always clamped into the tensor before a
 * read, so NaN or huge grid values give garbage values at worst, never a bad access.
 */
#include <math.h>

#include "onnxc_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define GS_MAX_TAPS 4

typedef struct {
    int64_t idx[GS_MAX_TAPS];
    float w[GS_MAX_TAPS];
    int n;
} gs_taps;

static float gs_denormalize(float n, int64_t len, int align_corners) {
    return align_corners ? (n + 1) / 2.0f * (float)(len - 1) : ((n + 1) * (float)len - 1) / 2.0f;
}

/* Mirror x into [lo, hi] (repeatedly, as PyTorch's reflect_coordinates). */
static float gs_reflect(float x, float lo, float hi) {
    const float range = hi - lo;
    float dx, r;
    double folds;
    if (!(range > 0)) return lo;
    if (x < lo) {
        dx = lo - x;
        folds = floor((double)dx / range);
        r = (float)((double)dx - folds * range);
        return fmod(folds, 2.0) == 0 ? lo + r : hi - r;
    }
    if (x > hi) {
        dx = x - hi;
        folds = floor((double)dx / range);
        r = (float)((double)dx - folds * range);
        return fmod(folds, 2.0) == 0 ? hi - r : lo + r;
    }
    return x;
}

static int64_t gs_clamp(int64_t i, int64_t len) { return i < 0 ? 0 : (i >= len ? len - 1 : i); }

/* Keep a coordinate finite and within a range where int64 conversion is defined. */
static float gs_sane(float x, int64_t len) {
    const float lim = (float)len + 16.0f;
    if (x != x) return -lim;
    return x < -lim ? -lim : (x > lim ? lim : x);
}

/* Source index of integer position i, or -1 (zeros padding outside the tensor). */
static int64_t gs_resolve(int64_t i, int64_t len, int padding, float lo, float hi) {
    if (padding == ONNXC_GS_PAD_ZEROS) return (i >= 0 && i < len) ? i : -1;
    if (padding == ONNXC_GS_PAD_REFLECTION) i = (int64_t)gs_reflect((float)i, lo, hi);
    return gs_clamp(i, len);
}

static void gs_cubic(float t, float* c) {
    const float A = -0.75f;
    const float t1 = t + 1, u = 1 - t, u1 = 2 - t;
    c[0] = ((A * t1 - 5 * A) * t1 + 8 * A) * t1 - 4 * A;
    c[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
    c[2] = ((A + 2) * u - (A + 3)) * u * u + 1;
    c[3] = ((A * u1 - 5 * A) * u1 + 8 * A) * u1 - 4 * A;
}

static void gs_axis_taps(const onnxc_gridsample_params* p, float n, int64_t len, gs_taps* t) {
    const float lo = p->align_corners ? 0.0f : -0.5f;
    const float hi = p->align_corners ? (float)(len - 1) : (float)len - 0.5f;
    float x = gs_denormalize(n, len, p->align_corners);
    int64_t x0;
    int k, kept;
    if (p->mode == ONNXC_GS_NEAREST) x = rintf(x);  /* ties to even, as PyTorch */
    if (x < lo || x > hi) {
        if (p->padding == ONNXC_GS_PAD_BORDER) x = x < 0 ? 0.0f : (x > (float)(len - 1) ? (float)(len - 1) : x);
        else if (p->padding == ONNXC_GS_PAD_REFLECTION) x = gs_reflect(x, lo, hi);
    }
    x = gs_sane(x, len);
    if (p->mode == ONNXC_GS_NEAREST) {
        t->n = 1;
        t->idx[0] = gs_resolve((int64_t)x, len, p->padding, lo, hi);
        t->w[0] = 1.0f;
    } else if (p->mode == ONNXC_GS_LINEAR) {
        const float f = floorf(x);
        x0 = (int64_t)f;
        t->n = 2;
        t->w[0] = 1 - (x - f);
        t->w[1] = x - f;
        for (k = 0; k < 2; ++k) t->idx[k] = gs_resolve(x0 + k, len, p->padding, lo, hi);
    } else {
        const float f = floorf(x);
        x0 = (int64_t)f;
        t->n = 4;
        gs_cubic(x - f, t->w);
        for (k = 0; k < 4; ++k) t->idx[k] = gs_resolve(x0 - 1 + k, len, p->padding, lo, hi);
    }
    /* drop the taps outside the tensor (zeros padding): they add exactly 0 */
    for (k = 0, kept = 0; k < t->n; ++k) {
        if (t->idx[k] < 0) continue;
        t->idx[kept] = t->idx[k];
        t->w[kept++] = t->w[k];
    }
    t->n = kept;
}

void onnxc_gridsample(const onnxc_gridsample_params* p, const float* X, const float* grid,
                      float* Y) {
    const int r = p->rank == 3 ? 3 : 2;
    const int64_t ID = r == 3 ? p->in[0] : 1, IH = p->in[r - 2], IW = p->in[r - 1];
    const int64_t OD = r == 3 ? p->out[0] : 1, OH = p->out[r - 2], OW = p->out[r - 1];
    const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;
    const int64_t total = p->N * out_sp;
    const int parallel = total > 1 && total * p->C >= (1 << 14);
    int64_t q;
    if (in_sp <= 0) {  /* nothing to sample from: zeros */
        for (q = 0; q < p->N * p->C * out_sp; ++q) Y[q] = 0.0f;
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && !omp_in_parallel())
#else
    (void)parallel;
#endif
    for (q = 0; q < total; ++q) {
        const int64_t n = q / out_sp, o = q % out_sp;
        const float* g = grid + q * r;  /* (x, y[, z]): W first */
        gs_taps td, th, tw;
        int64_t c;
        int a, b, e;
        gs_axis_taps(p, g[0], IW, &tw);
        gs_axis_taps(p, g[1], IH, &th);
        if (r == 3) {
            gs_axis_taps(p, g[2], ID, &td);
        } else {
            td.n = 1; td.idx[0] = 0; td.w[0] = 1.0f;
        }
        for (c = 0; c < p->C; ++c) {
            const float* x = X + (n * p->C + c) * in_sp;
            float acc = 0.0f;
            for (a = 0; a < td.n; ++a)
                for (b = 0; b < th.n; ++b) {
                    const float wdh = td.w[a] * th.w[b];
                    const float* row = x + (td.idx[a] * IH + th.idx[b]) * IW;
                    float s = 0.0f;
                    for (e = 0; e < tw.n; ++e) s += tw.w[e] * row[tw.idx[e]];
                    acc += wdh * s;
                }
            Y[(n * p->C + c) * out_sp + o] = acc;
        }
    }
}
