/* Portable C99 GridSample (ONNX opsets 16-22, PyTorch's grid_sampler semantics), float32,
 * 2 or 3 spatial dims (a 2-D problem runs as 3-D with a depth of 1).
 *
 * Per output position the sampling point is computed once per spatial dim as up to 4 taps
 * (source index, weight), combined into at most 16 (offset, weight) pairs that every channel
 * then reads (positions in tiles, channels outer). Coordinates follow the
 * definition step by step: denormalize, round (nearest), fold out-of-range coordinates back
 * (border: clamp, reflection: mirror), then pick the taps, each tap index resolved by the
 * padding mode (zeros: taps outside are dropped). Indices are always clamped into the tensor before a
 * read, so NaN or huge grid values give garbage values at worst, never a bad access.
 */
#include <math.h>

#include "onnxc_kernels.h"
#include "onnxc_threads.h"

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

/* A sampling point: its taps as offsets into a channel plane with the products of the
 * per-axis weights (as onnxruntime sums them); taps outside the tensor are not listed. */
#define GS_MAX_POINT_TAPS 16
typedef struct {
    int32_t n;
    int32_t off[GS_MAX_POINT_TAPS];
    float w[GS_MAX_POINT_TAPS];
} gs_point;

static void gs_point_init(const gs_taps* td, const gs_taps* th, const gs_taps* tw, int64_t IH,
                          int64_t IW, gs_point* pt) {
    int a, b, e, k = 0;
    for (a = 0; a < td->n; ++a)
        for (b = 0; b < th->n; ++b)
            for (e = 0; e < tw->n; ++e) {
                pt->off[k] = (int32_t)((td->idx[a] * IH + th->idx[b]) * IW + tw->idx[e]);
                pt->w[k++] = td->w[a] * th->w[b] * tw->w[e];
            }
    pt->n = k;
}

/* Output positions per task: their taps are computed once, then every channel reads them
 * (channel-outer keeps each plane's accesses local). */
#define GS_TILE 64

void onnxc_gridsample(const onnxc_gridsample_params* p, const float* X, const float* grid,
                      float* Y) {
    const int r = p->rank == 3 ? 3 : 2;
    const int64_t ID = r == 3 ? p->in[0] : 1, IH = p->in[r - 2], IW = p->in[r - 1];
    const int64_t OD = r == 3 ? p->out[0] : 1, OH = p->out[r - 2], OW = p->out[r - 1];
    const int64_t in_sp = ID * IH * IW, out_sp = OD * OH * OW;
    const int64_t tiles = (out_sp + GS_TILE - 1) / GS_TILE, tasks = p->N * tiles;
    const int parallel = tasks > 1 && p->N * out_sp * p->C >= (1 << 14);
    int64_t q;
    if (in_sp <= 0) {  /* nothing to sample from: zeros */
        for (q = 0; q < p->N * p->C * out_sp; ++q) Y[q] = 0.0f;
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (parallel && onnxc_rt_omp_ok())
#else
    (void)parallel;
#endif
    for (q = 0; q < tasks; ++q) {
        const int64_t n = q / tiles, o0 = (q % tiles) * GS_TILE;
        const int64_t m = out_sp - o0 < GS_TILE ? out_sp - o0 : GS_TILE;
        gs_point pts[GS_TILE];
        int64_t i, c;
        for (i = 0; i < m; ++i) {
            const float* g = grid + (n * out_sp + o0 + i) * r;  /* (x, y[, z]): W first */
            gs_taps td, th, tw;
            gs_axis_taps(p, g[0], IW, &tw);
            gs_axis_taps(p, g[1], IH, &th);
            if (r == 3) {
                gs_axis_taps(p, g[2], ID, &td);
            } else {
                td.n = 1; td.idx[0] = 0; td.w[0] = 1.0f;
            }
            gs_point_init(&td, &th, &tw, IH, IW, &pts[i]);
        }
        for (c = 0; c < p->C; ++c) {
            const float* x = X + (n * p->C + c) * in_sp;
            float* y = Y + (n * p->C + c) * out_sp + o0;
            for (i = 0; i < m; ++i) {
                const gs_point* pt = &pts[i];
                float acc = 0.0f;
                int k;
                for (k = 0; k < pt->n; ++k) acc += pt->w[k] * x[pt->off[k]];
                y[i] = acc;
            }
        }
    }
}
