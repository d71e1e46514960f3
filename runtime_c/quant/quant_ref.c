/* QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear: the portable row kernels (__generic)
 * and the drivers every build calls (onnxc_quant.h).
 *
 * A driver cuts the flat element range into tasks of QCHUNK elements (even, so no two tasks share
 * a byte of packed int4), and each task into runs over which the scale and zero point are either
 * constant (step 0) or advance with the element (step 1: per-axis with the axis innermost, or
 * blocked with inner > 1); a run is one call of the best row kernel of the build (q_isa.h).
 * 4-bit types go through the 8-bit kernels with 4-bit bounds, packed/unpacked around them.
 *
 * Quantize order: v = x / scale (fp32 division, as the spec's reference), clamped to
 * [qmin - zp, qmax - zp] (NaN -> qmin - zp), rounded half to even, plus zp. Clamping before rounding
 * gives the same integers as rounding first (the bounds are integers) and keeps |v| < 2^22 for the
 * rounding trick of onnxc_q_rne.
 */
#include <string.h>

#include "onnxc_quant.h"
#include "onnxc_threads.h"
#include "q_isa.h"

#define QCHUNK 8192               /* elements per task (even) */
#define QBUF 256                  /* elements per call when zero points or 4-bit data are staged */
#define Q_PARALLEL_MIN (1 << 15)  /* elements before a tensor is split over threads */

/* ------------------------------------------------------------------------------------------ */
/* Portable row kernels                                                                        */
/* ------------------------------------------------------------------------------------------ */

#define Q_GENERIC(NAME, T)                                                                      \
    void NAME(const float* x, T* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step, float qmin, float qmax) {                                           \
        int64_t i;                                                                              \
        for (i = 0; i < n; ++i) {                                                               \
            const float s = scale[i * step], z = zp ? zp[i * step] : 0.0f;                      \
            const float lo = qmin - z, hi = qmax - z;                                           \
            float v = x[i] / s;                                                                 \
            v = v > lo ? v : lo; /* NaN -> lo, as the SIMD max */                              \
            v = v < hi ? v : hi;                                                                \
            y[i] = (T)(int32_t)(onnxc_q_rne(v) + z);                                           \
        }                                                                                       \
    }

#define DQ_GENERIC(NAME, T)                                                                     \
    void NAME(const T* x, float* y, int64_t n, const float* scale, const float* zp,             \
              int64_t step) {                                                                   \
        int64_t i;                                                                              \
        for (i = 0; i < n; ++i)                                                                 \
            y[i] = ((float)x[i] - (zp ? zp[i * step] : 0.0f)) * scale[i * step];              \
    }

Q_GENERIC(onnxc_f32u8_quantize_row__generic, uint8_t)
Q_GENERIC(onnxc_f32s8_quantize_row__generic, int8_t)
Q_GENERIC(onnxc_f32u16_quantize_row__generic, uint16_t)
Q_GENERIC(onnxc_f32s16_quantize_row__generic, int16_t)
DQ_GENERIC(onnxc_u8f32_dequantize_row__generic, uint8_t)
DQ_GENERIC(onnxc_s8f32_dequantize_row__generic, int8_t)
DQ_GENERIC(onnxc_u16f32_dequantize_row__generic, uint16_t)
DQ_GENERIC(onnxc_s16f32_dequantize_row__generic, int16_t)

void onnxc_f32_minmax_row__generic(const float* x, int64_t n, float* mn, float* mx) {
    float lo = *mn, hi = *mx;
    int64_t i;
    for (i = 0; i < n; ++i) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    *mn = lo;
    *mx = hi;
}

/* ------------------------------------------------------------------------------------------ */
/* The build's choice                                                                          */
/* ------------------------------------------------------------------------------------------ */

#if defined(ONNXC_Q_AVX512)
#define QBEST(f) f##__avx512
#define QBEST_NAME "avx512"
#elif defined(ONNXC_Q_AVX2)
#define QBEST(f) f##__avx2
#define QBEST_NAME "avx2"
#else
#define QBEST(f) f##__generic
#define QBEST_NAME "generic"
#endif

const char* onnxc_quant_isa(void) { return QBEST_NAME; }

typedef void (*q_row_fn)(const float*, void*, int64_t, const float*, const float*, int64_t, float,
                         float);
typedef void (*dq_row_fn)(const void*, float*, int64_t, const float*, const float*, int64_t);

/* The best kernels behind one signature per direction (calling a function through a pointer of
 * another type is undefined behaviour, so no casts of the kernels themselves). */
#define Q_WRAP(T, SUF)                                                                          \
    static void q_##SUF(const float* x, void* y, int64_t n, const float* s, const float* z,     \
                        int64_t step, float lo, float hi) {                                     \
        QBEST(onnxc_f32##SUF##_quantize_row)(x, (T*)y, n, s, z, step, lo, hi);                  \
    }                                                                                           \
    static void dq_##SUF(const void* x, float* y, int64_t n, const float* s, const float* z,    \
                         int64_t step) {                                                        \
        QBEST(onnxc_##SUF##f32_dequantize_row)((const T*)x, y, n, s, z, step);                  \
    }
Q_WRAP(uint8_t, u8)
Q_WRAP(int8_t, s8)
Q_WRAP(uint16_t, u16)
Q_WRAP(int16_t, s16)

/* What a driver needs of a qtype: the 8-bit or 16-bit kernels that carry it, element bytes in
 * memory (0 for packed int4), bounds, and whether it is 4-bit / signed. */
typedef struct {
    q_row_fn q;
    dq_row_fn dq;
    int esize, is4, is_signed;
    float qmin, qmax;
} qtype_info;

static int qtype_get(int qtype, int packed4, qtype_info* t) {
    t->is4 = qtype == ONNXC_QT_UINT4 || qtype == ONNXC_QT_INT4;
    t->is_signed = qtype == ONNXC_QT_INT8 || qtype == ONNXC_QT_INT16 || qtype == ONNXC_QT_INT4;
    switch (qtype) {
    case ONNXC_QT_UINT8: case ONNXC_QT_UINT4:
        t->q = q_u8; t->dq = dq_u8;
        t->esize = 1; t->qmin = 0.0f; t->qmax = qtype == ONNXC_QT_UINT8 ? 255.0f : 15.0f;
        break;
    case ONNXC_QT_INT8: case ONNXC_QT_INT4:
        t->q = q_s8; t->dq = dq_s8;
        t->esize = 1;
        t->qmin = qtype == ONNXC_QT_INT8 ? -128.0f : -8.0f;
        t->qmax = qtype == ONNXC_QT_INT8 ? 127.0f : 7.0f;
        break;
    case ONNXC_QT_UINT16:
        t->q = q_u16; t->dq = dq_u16;
        t->esize = 2; t->qmin = 0.0f; t->qmax = 65535.0f;
        break;
    case ONNXC_QT_INT16:
        t->q = q_s16; t->dq = dq_s16;
        t->esize = 2; t->qmin = -32768.0f; t->qmax = 32767.0f;
        break;
    default:
        return 0;
    }
    if (t->is4 && packed4) t->esize = 0;
    return 1;
}

/* Element i of an integer tensor of this qtype, as an int. */
static int32_t q_load(const qtype_info* t, const void* p, int64_t i) {
    if (t->esize == 0) {
        const int v = (((const uint8_t*)p)[i >> 1] >> ((i & 1) * 4)) & 0xF;
        return t->is_signed ? (v ^ 8) - 8 : v;
    }
    if (t->esize == 1) return t->is_signed ? ((const int8_t*)p)[i] : ((const uint8_t*)p)[i];
    return t->is_signed ? ((const int16_t*)p)[i] : ((const uint16_t*)p)[i];
}

/* ------------------------------------------------------------------------------------------ */
/* Runs: stretches of elements with one scale (step 0) or one scale per element (step 1)       */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    int mode;
    int64_t outer, axis, inner, block;
} q_layout;

/* The run starting at flat element e (at most `limit` long): its length, the index of its first
 * scale / zero point and its step. */
static int64_t q_run(const q_layout* L, int64_t e, int64_t limit, int64_t* sidx, int64_t* step) {
    int64_t o, a, i, r, len;
    if (L->mode == ONNXC_Q_PER_TENSOR) {
        *sidx = 0;
        *step = 0;
        return limit;
    }
    o = e / (L->axis * L->inner);
    r = e - o * L->axis * L->inner;
    a = r / L->inner;
    i = r - a * L->inner;
    if (L->mode == ONNXC_Q_PER_AXIS) {
        if (L->inner > 1) {
            len = L->inner - i;
            *sidx = a;
            *step = 0;
        } else {
            len = L->axis - a;
            *sidx = a;
            *step = 1;
        }
    } else {
        const int64_t nb = (L->axis + L->block - 1) / L->block;
        if (L->inner > 1) {
            len = L->inner - i;
            *sidx = (o * nb + a / L->block) * L->inner + i;
            *step = 1;
        } else {
            len = L->block - a % L->block;
            if (len > L->axis - a) len = L->axis - a;
            *sidx = o * nb + a / L->block;
            *step = 0;
        }
    }
    return len < limit ? len : limit;
}

typedef struct {
    const qtype_info* t;
    q_layout L;
    const void* src;
    void* dst;
    const float* scale;
    const void* zp;
    int64_t total;
} q_job;

static void quantize_tasks(void* ctx, int64_t t0, int64_t t1) {
    const q_job* j = (const q_job*)ctx;
    const qtype_info* t = j->t;
    const float* x = (const float*)j->src;
    int8_t stage[QBUF];
    float zbuf[QBUF];
    int64_t e = t0 * QCHUNK;
    const int64_t end = t1 * QCHUNK < j->total ? t1 * QCHUNK : j->total;
    while (e < end) {
        int64_t sidx, step, len, k;
        float z0;
        const float* zf = NULL;
        len = q_run(&j->L, e, end - e, &sidx, &step);
        if ((step && j->zp) || t->esize == 0) len = len < QBUF ? len : QBUF;
        if (j->zp) {
            if (step) {
                for (k = 0; k < len; ++k) zbuf[k] = (float)q_load(t, j->zp, sidx + k);
                zf = zbuf;
            } else {
                z0 = (float)q_load(t, j->zp, sidx);
                zf = &z0;
            }
        }
        if (t->esize == 0) {
            uint8_t* y = (uint8_t*)j->dst;
            t->q(x + e, stage, len, j->scale + sidx, zf, step, t->qmin, t->qmax);
            for (k = 0; k < len; ++k) {
                const int64_t f = e + k;
                const int sh = (int)(f & 1) * 4;
                y[f >> 1] = (uint8_t)((y[f >> 1] & (0xF0 >> sh)) | ((stage[k] & 0xF) << sh));
            }
        } else {
            t->q(x + e, (char*)j->dst + e * t->esize, len, j->scale + sidx, zf, step, t->qmin,
                 t->qmax);
        }
        e += len;
    }
    if (t->esize == 0 && end == j->total && (end & 1))  /* odd count: zero high nibble */
        ((uint8_t*)j->dst)[end >> 1] &= 0x0F;
}

static void dequantize_tasks(void* ctx, int64_t t0, int64_t t1) {
    const q_job* j = (const q_job*)ctx;
    const qtype_info* t = j->t;
    float* y = (float*)j->dst;
    int8_t stage[QBUF];
    float zbuf[QBUF];
    int64_t e = t0 * QCHUNK;
    const int64_t end = t1 * QCHUNK < j->total ? t1 * QCHUNK : j->total;
    while (e < end) {
        int64_t sidx, step, len, k;
        float z0;
        const float* zf = NULL;
        len = q_run(&j->L, e, end - e, &sidx, &step);
        if ((step && j->zp) || t->esize == 0) len = len < QBUF ? len : QBUF;
        if (j->zp) {
            if (step) {
                for (k = 0; k < len; ++k) zbuf[k] = (float)q_load(t, j->zp, sidx + k);
                zf = zbuf;
            } else {
                z0 = (float)q_load(t, j->zp, sidx);
                zf = &z0;
            }
        }
        if (t->esize == 0) {
            for (k = 0; k < len; ++k) stage[k] = (int8_t)q_load(t, j->src, e + k);
            t->dq(stage, y + e, len, j->scale + sidx, zf, step);
        } else {
            t->dq((const char*)j->src + e * t->esize, y + e, len, j->scale + sidx, zf, step);
        }
        e += len;
    }
}

static void q_drive(int dequant, const void* src, void* dst, int qtype, int packed4,
                    const float* scale, const void* zp, int mode, int64_t outer, int64_t axis,
                    int64_t inner, int64_t block) {
    qtype_info t;
    q_job j;
    int64_t tasks;
    if (!qtype_get(qtype, packed4, &t) || outer <= 0 || axis <= 0 || inner <= 0) return;
    if (mode == ONNXC_Q_BLOCKED && block <= 0) return;
    j.t = &t;
    j.L.mode = mode; j.L.outer = outer; j.L.axis = axis; j.L.inner = inner; j.L.block = block;
    j.src = src; j.dst = dst; j.scale = scale; j.zp = zp;
    j.total = outer * axis * inner;
    tasks = (j.total + QCHUNK - 1) / QCHUNK;
    onnxc_parallel_for(tasks, tasks > 1 && j.total >= Q_PARALLEL_MIN,
                       dequant ? dequantize_tasks : quantize_tasks, &j);
}

void onnxc_quantize_linear(const float* x, void* y, int qtype, int packed4, const float* scale,
                           const void* zp, int mode, int64_t outer, int64_t axis, int64_t inner,
                           int64_t block) {
    q_drive(0, x, y, qtype, packed4, scale, zp, mode, outer, axis, inner, block);
}

void onnxc_dequantize_linear(const void* x, float* y, int qtype, int packed4, const float* scale,
                             const void* zp, int mode, int64_t outer, int64_t axis, int64_t inner,
                             int64_t block) {
    q_drive(1, x, y, qtype, packed4, scale, zp, mode, outer, axis, inner, block);
}

/* ------------------------------------------------------------------------------------------ */
/* Dynamic quantization                                                                        */
/* ------------------------------------------------------------------------------------------ */

#define MINMAX_SLOTS 64

typedef struct {
    const float* x;
    int64_t n, chunk;
    float mn[MINMAX_SLOTS], mx[MINMAX_SLOTS];
} minmax_job;

static void minmax_tasks(void* ctx, int64_t t0, int64_t t1) {
    minmax_job* j = (minmax_job*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t b = t * j->chunk, e = b + j->chunk < j->n ? b + j->chunk : j->n;
        j->mn[t] = j->x[b];
        j->mx[t] = j->x[b];
        QBEST(onnxc_f32_minmax_row)(j->x + b, e - b, &j->mn[t], &j->mx[t]);
    }
}

/* DynamicQuantizeLinear's scale and zero point from the data range (onnxruntime's and the spec's
 * formula; scale 1 when the range is empty). */
static void u8_params(float mn, float mx, float* scale, float* zp) {
    float s, z;
    mn = mn < 0.0f ? mn : 0.0f;
    mx = mx > 0.0f ? mx : 0.0f;
    s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
    z = 0.0f - mn / s;
    z = z > 0.0f ? z : 0.0f;
    z = z < 255.0f ? z : 255.0f;
    *scale = s;
    *zp = onnxc_q_rne(z);
}

void onnxc_dynamic_quantize_linear(const float* x, int64_t n, uint8_t* y, float* scale,
                                   uint8_t* zp) {
    minmax_job j;
    float mn, mx, s, z;
    int64_t t, slots;
    if (n <= 0) {
        *scale = 1.0f;
        *zp = 0;
        return;
    }
    j.x = x;
    j.n = n;
    j.chunk = (n + MINMAX_SLOTS - 1) / MINMAX_SLOTS;
    j.chunk = j.chunk < 4096 ? 4096 : (j.chunk + 63) / 64 * 64;
    slots = (n + j.chunk - 1) / j.chunk;
    onnxc_parallel_for(slots, slots > 1, minmax_tasks, &j);
    mn = j.mn[0];
    mx = j.mx[0];
    for (t = 1; t < slots; ++t) {
        mn = j.mn[t] < mn ? j.mn[t] : mn;
        mx = j.mx[t] > mx ? j.mx[t] : mx;
    }
    u8_params(mn, mx, &s, &z);
    *scale = s;
    *zp = (uint8_t)z;
    onnxc_quantize_linear(x, y, ONNXC_QT_UINT8, 0, &s, zp, ONNXC_Q_PER_TENSOR, 1, 1, n, 0);
}

typedef struct {
    const float* a;
    int64_t K, lda, ldq;
    void* q;
    float* scale;
    int32_t *zp, *rowsum;
    int sym;
} rows_job;

static void rows_tasks(void* ctx, int64_t m0, int64_t m1) {
    const rows_job* j = (const rows_job*)ctx;
    int64_t m, k;
    for (m = m0; m < m1; ++m) {
        const float* a = j->a + m * j->lda;
        float mn = a[0], mx = a[0], s, z;
        int32_t sum = 0;
        QBEST(onnxc_f32_minmax_row)(a, j->K, &mn, &mx);
        if (j->sym) {
            int8_t* q = (int8_t*)j->q + m * j->ldq;
            const float amax = -mn > mx ? -mn : mx;
            s = amax > 0.0f ? amax / 127.0f : 1.0f;
            QBEST(onnxc_f32s8_quantize_row)(a, q, j->K, &s, NULL, 0, -127.0f, 127.0f);
            for (k = 0; k < j->K; ++k) sum += q[k];
        } else {
            uint8_t* q = (uint8_t*)j->q + m * j->ldq;
            u8_params(mn, mx, &s, &z);
            QBEST(onnxc_f32u8_quantize_row)(a, q, j->K, &s, &z, 0, 0.0f, 255.0f);
            for (k = 0; k < j->K; ++k) sum += q[k];
            if (j->zp) j->zp[m] = (int32_t)z;
        }
        j->scale[m] = s;
        if (j->rowsum) j->rowsum[m] = sum;
    }
}

static void quantize_rows(int sym, const float* a, int64_t M, int64_t K, int64_t lda, void* q,
                          int64_t ldq, float* scale, int32_t* zp, int32_t* rowsum) {
    rows_job j;
    if (M <= 0 || K <= 0) return;
    j.a = a; j.K = K; j.lda = lda; j.ldq = ldq; j.q = q; j.scale = scale; j.zp = zp;
    j.rowsum = rowsum; j.sym = sym;
    onnxc_parallel_for(M, M > 1 && M * K >= Q_PARALLEL_MIN, rows_tasks, &j);
}

void onnxc_dynamic_quantize_rows_u8(const float* a, int64_t M, int64_t K, int64_t lda, uint8_t* q,
                                    int64_t ldq, float* scale, int32_t* zp, int32_t* rowsum) {
    quantize_rows(0, a, M, K, lda, q, ldq, scale, zp, rowsum);
}

void onnxc_dynamic_quantize_rows_s8(const float* a, int64_t M, int64_t K, int64_t lda, int8_t* q,
                                    int64_t ldq, float* scale, int32_t* rowsum) {
    quantize_rows(1, a, M, K, lda, q, ldq, scale, NULL, rowsum);
}
