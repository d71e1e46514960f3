/* Winograd F(m x m, 3x3) NCHWc convolution (m = WG_M, 2 or 4) for one block size; included by
 * conv_winograd_tiles.h with NB, NB_FN(name), NB_SIMD, WG_OBMAX / WG_TMAX, WG_M / WG_A (= m + 2) /
 * WG_P (= WG_A^2), the V* vector macros and WG_CONV / WG_SCRATCH (the full names of the kernel
 * and of its scratch rule, e.g. onnxc_f32_nchwc_conv_winograd_f4_b16) defined.
 *
 * Y (m x m output tile) = A^T [ sum_c (G g G^T) .* (B^T d B) ] A with d the WG_A x WG_A input
 * patch (tiles m apart): WG_P multiplies per tile and channel pair instead of 9 m^2 (F(2x2):
 * 16 vs 36, F(4x4): 36 vs 144).  The output tiles (of all images, row-major) are processed in
 * chunks of T tiles, each chunk through three steps:
 *   1. input transform: V[xi][ib][t][:] = (B^T d B)[xi] for the NB lanes of input block ib
 *      (adds and constant FMAs, vectorized across the lanes);
 *   2. for each of the WG_P positions xi a GEMM over the blocked input channels:
 *      Mt[ob][t][xi][:] = sum_{ib, ci} V[xi][ib][t][ci] * U[xi][ob][ib][ci][:], register tiles
 *      of WG_OBMAX output blocks x WG_TMAX tiles (the pointwise conv's shape: one broadcast per
 *      tile and channel feeds WG_OBMAX FMAs, one weight load WG_TMAX);
 *   3. output transform A^T m A, + bias, + Z, clamp, padding lanes zeroed, store the pixels
 *      inside [0, OH) x [0, OW) (the last tile row/column may be partly outside).
 * U (weights, transformed at compile time: ops/nchwc.py pack_winograd) is
 * [WG_P][Mb][Cb][b_in][b_out].  Two ways to split the work across threads (wg_phases): slots
 * (a chunk per thread: chunks are claimed from a shared counter by one task per scratch slot;
 * onnxc_parallel_for has no worker id, a slot is a task index, unique while it runs) and phases
 * (one big chunk at a time, each step split across the threads). */

typedef struct {
    const onnxc_nchwc_conv_params* p;
    const float *X, *U, *B, *Z;
    float* Y;
    float* scratch;
    int64_t Cb, Mb, TH, TW, tiles, T, nchunks;
    int64_t next; /* next unclaimed chunk (atomic) */
} NB_FN(wg_job);

/* The modes and chunk sizes (the rule of onnxc_nchwc.h; ops/nchwc.py winograd_scratch_bytes
 * mirrors it): phases mode for big channel products (the weights, 64*C*M bytes, are what
 * limits: one chunk at a time, each step split across the threads, so every chunk reads them
 * once), else slots mode (small chunks, each thread its own). */
static int NB_FN(wg_phases)(int64_t Cb, int64_t Mb) {
    return Cb * Mb * NB * NB >= ONNXC_WINOGRAD_PHASES_MIN_CM;
}

static int64_t NB_FN(wg_chunk_tiles)(int64_t Cb, int64_t Mb, int64_t tiles) {
    const int phases = NB_FN(wg_phases)(Cb, Mb);
    const int64_t budget = phases ? ONNXC_WINOGRAD_PHASES_BYTES : ONNXC_WINOGRAD_CHUNK_BYTES;
    const int64_t most = phases ? ONNXC_WINOGRAD_PHASES_MAX_TILES : ONNXC_WINOGRAD_MAX_TILES;
    int64_t t = budget / (WG_P * (Cb + Mb) * NB * (int64_t)sizeof(float));
    if (t > most) t = most;
    if (t < 1) t = 1;
    return t < tiles ? t : tiles;
}

int64_t WG_SCRATCH(const onnxc_nchwc_conv_params* p) {
    const int64_t Cb = (p->C + NB - 1) / NB, Mb = (p->M + NB - 1) / NB;
    const int64_t tiles = p->N * ((p->OH + WG_M - 1) / WG_M) * ((p->OW + WG_M - 1) / WG_M);
    const int64_t T = NB_FN(wg_chunk_tiles)(Cb, Mb, tiles);
    const int64_t nchunks = T > 0 ? (tiles + T - 1) / T : 0;
    int64_t slots = nchunks < ONNXC_WINOGRAD_SLOTS ? nchunks : ONNXC_WINOGRAD_SLOTS;
    if (NB_FN(wg_phases)(Cb, Mb) && slots > 1) slots = 1;
    return slots * WG_P * (Cb + Mb) * NB * T * (int64_t)sizeof(float);
}

/* Lane arithmetic of the transforms: one NB-float vector (NB_SIMD) or one float per step. */
#if NB_SIMD
#define WT VT
#define WSTEP NB
#define WLOAD(ptr) VLOAD(ptr)
#define WSTORE(ptr, v) VSTORE(ptr, v)
#define WADD(a, b) VADD(a, b)
#define WSUB(a, b) VSUB(a, b)
#define WFMA(a, k, c) VFMA(a, VSET1(k), c) /* a*k + c */
#define WCLAMP(v, lo, hi) VMIN(VSET1(hi), VMAX(VSET1(lo), v)) /* v second: NaN passes */
#else
#define WT float
#define WSTEP 1
#define WLOAD(ptr) (*(ptr))
#define WSTORE(ptr, v) (*(ptr) = (v))
#define WADD(a, b) ((a) + (b))
#define WSUB(a, b) ((a) - (b))
#define WFMA(a, k, c) ((a) * (k) + (c))
#define WCLAMP(v, lo, hi) wg_clamp(v, lo, hi)
#ifndef WG_CLAMP_DEFINED
#define WG_CLAMP_DEFINED
static inline float wg_clamp(float v, float lo, float hi) {
    v = v < lo ? lo : v; /* comparisons keep NaN */
    return v > hi ? hi : v;
}
#endif
#endif

/* One dimension of the input transform B^T d (d, o: WG_A values, ds / os apart). */
static WG_INLINE void NB_FN(wg_in1d)(const WT* d, int ds, WT* o, int os) {
#if WG_M == 2
    o[0] = WSUB(d[0], d[2 * ds]);
    o[os] = WADD(d[ds], d[2 * ds]);
    o[2 * os] = WSUB(d[2 * ds], d[ds]);
    o[3 * os] = WSUB(d[ds], d[3 * ds]);
#else
    /* B^T rows: [4 0 -5 0 1 0], [0 -4 -4 1 1 0], [0 4 -4 -1 1 0], [0 -2 -1 2 1 0],
     * [0 2 -1 -2 1 0], [0 4 0 -5 0 1] */
    const WT d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
    const WT s12 = WADD(d1, d2), s34 = WADD(d3, d4), a12 = WSUB(d1, d2), a43 = WSUB(d4, d3);
    const WT a42 = WSUB(d4, d2), a31 = WSUB(d3, d1);
    o[0] = WFMA(d0, 4.0f, WFMA(d2, -5.0f, d4));
    o[os] = WFMA(s12, -4.0f, s34);
    o[2 * os] = WFMA(a12, 4.0f, a43);
    o[3 * os] = WFMA(a31, 2.0f, a42);
    o[4 * os] = WFMA(a31, -2.0f, a42);
    o[5 * os] = WFMA(d1, 4.0f, WFMA(d3, -5.0f, d5));
#endif
}

/* One dimension of the output transform A^T m (m: WG_A values, y: WG_M). */
static WG_INLINE void NB_FN(wg_out1d)(const WT* m, int ms, WT* y, int ys) {
#if WG_M == 2
    y[0] = WADD(WADD(m[0], m[ms]), m[2 * ms]);
    y[ys] = WSUB(WSUB(m[ms], m[2 * ms]), m[3 * ms]);
#else
    /* A^T rows: [1 1 1 1 1 0], [0 1 -1 2 -2 0], [0 1 1 4 4 0], [0 1 -1 8 -8 1] */
    const WT a = WADD(m[ms], m[2 * ms]), b = WSUB(m[ms], m[2 * ms]);
    const WT c = WADD(m[3 * ms], m[4 * ms]), d = WSUB(m[3 * ms], m[4 * ms]);
    y[0] = WADD(WADD(m[0], a), c);
    y[ys] = WFMA(d, 2.0f, b);
    y[2 * ys] = WFMA(c, 4.0f, a);
    y[3 * ys] = WADD(WFMA(d, 8.0f, b), m[5 * ms]);
#endif
}

/* Step 1 for the chunk's tiles [i0, i1) (chunk starts at tile g0), input blocks [ib0, ib1):
 * V[xi][ib][i][:], T tiles per (xi, ib). */
static void NB_FN(wg_input)(const NB_FN(wg_job) * job, int64_t g0, int64_t i0, int64_t i1,
                            int64_t ib0, int64_t ib1, float* V) {
    const onnxc_nchwc_conv_params* p = job->p;
    const int64_t IH = p->IH, IW = p->IW, Cb = job->Cb, T = job->T;
    const int64_t xi_stride = Cb * T * NB;
    static const float zeros[NB] = {0};
    int64_t ib, i;
    int r, c, l;
    for (i = i0; i < i1; ++i) {
        const int64_t g = g0 + i, n = g / (job->TH * job->TW);
        const int64_t th = (g / job->TW) % job->TH, tw = g % job->TW;
        const int64_t ih0 = WG_M * th - p->PT, iw0 = WG_M * tw - p->PL;
        const int inside = ih0 >= 0 && ih0 + WG_A <= IH && iw0 >= 0 && iw0 + WG_A <= IW;
        for (ib = ib0; ib < ib1; ++ib) {
            const float* x = job->X + (n * Cb + ib) * IH * IW * NB;
            float* v = V + (ib * T + i) * NB;
            const float* src[WG_A][WG_A];
            for (r = 0; r < WG_A; ++r)
                for (c = 0; c < WG_A; ++c) {
                    const int64_t h = ih0 + r, w = iw0 + c;
                    src[r][c] = inside || (h >= 0 && h < IH && w >= 0 && w < IW) ? x + (h * IW + w) * NB : zeros;
                }
            for (l = 0; l < NB; l += WSTEP) {
                WT d[WG_A][WG_A], t[WG_A][WG_A], o[WG_A];
                for (r = 0; r < WG_A; ++r)
                    for (c = 0; c < WG_A; ++c) d[r][c] = WLOAD(src[r][c] + l);
                for (c = 0; c < WG_A; ++c) NB_FN(wg_in1d)(&d[0][c], WG_A, &t[0][c], WG_A);
                for (r = 0; r < WG_A; ++r) {
                    NB_FN(wg_in1d)(&t[r][0], 1, o, 1);
                    for (c = 0; c < WG_A; ++c) WSTORE(v + (r * WG_A + c) * xi_stride + l, o[c]);
                }
            }
        }
    }
}

/* Step 2 register tile: OBN output blocks x TT tiles at one position.  V: (ib 0, first tile),
 * vib floats between input blocks; U: (ob, ib 0), uob floats between output blocks; Mt: (ob,
 * first tile, xi), mob floats between output blocks, WG_P*NB between tiles. */
static WG_INLINE void NB_FN(wg_mk)(const int OBN, const int TT, const float* V, int64_t vib,
                                   const float* U, int64_t uob, int64_t Cb, float* Mt,
                                   int64_t mob) {
    int64_t ib;
    int ci, i, o;
#if NB_SIMD
    VT acc[WG_OBMAX][WG_TMAX];
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < TT; ++i) acc[o][i] = VZERO();
    for (ib = 0; ib < Cb; ++ib) {
        const float* vp = V + ib * vib;
        const float* up = U + ib * NB * NB;
        for (ci = 0; ci < NB; ++ci) {
            VT w[WG_OBMAX];
            for (o = 0; o < OBN; ++o) w[o] = VLOAD(up + o * uob + ci * NB);
            for (i = 0; i < TT; ++i) {
                const VT xv = VSET1(vp[i * NB + ci]);
                for (o = 0; o < OBN; ++o) acc[o][i] = VFMA(xv, w[o], acc[o][i]);
            }
        }
    }
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < TT; ++i) VSTORE(Mt + o * mob + i * WG_P * NB, acc[o][i]);
#else
    float acc[WG_OBMAX][WG_TMAX][NB];
    int l;
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < TT; ++i)
            for (l = 0; l < NB; ++l) acc[o][i][l] = 0.0f;
    for (ib = 0; ib < Cb; ++ib) {
        const float* vp = V + ib * vib;
        const float* up = U + ib * NB * NB;
        for (ci = 0; ci < NB; ++ci)
            for (o = 0; o < OBN; ++o) {
                const float* w = up + o * uob + ci * NB;
                for (i = 0; i < TT; ++i) {
                    const float xv = vp[i * NB + ci];
                    for (l = 0; l < NB; ++l) acc[o][i][l] += xv * w[l];
                }
            }
    }
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < TT; ++i)
            for (l = 0; l < NB; ++l) Mt[o * mob + i * WG_P * NB + l] = acc[o][i][l];
#endif
}

/* Remainder tiles (fewer tiles or output blocks than the full register tile): one out-of-line
 * copy per shape, picked at run time. */
typedef void (*NB_FN(wg_mk_fn))(const float*, int64_t, const float*, int64_t, int64_t, float*, int64_t);
#define WG_INST(o, t)                                                                             \
    static void NB_FN(wg_mk_##o##_##t)(const float* V, int64_t vib, const float* U, int64_t uob,  \
                                       int64_t Cb, float* Mt, int64_t mob) {                      \
        NB_FN(wg_mk)(o, t, V, vib, U, uob, Cb, Mt, mob);                                          \
    }
#if WG_TMAX == 6
#define WG_INST_T(o) WG_INST(o, 1) WG_INST(o, 2) WG_INST(o, 3) WG_INST(o, 4) WG_INST(o, 5) WG_INST(o, 6)
#define WG_TAB_T(o)                                                                               \
    { NB_FN(wg_mk_##o##_1), NB_FN(wg_mk_##o##_2), NB_FN(wg_mk_##o##_3), NB_FN(wg_mk_##o##_4),     \
      NB_FN(wg_mk_##o##_5), NB_FN(wg_mk_##o##_6) }
#elif WG_TMAX == 4
#define WG_INST_T(o) WG_INST(o, 1) WG_INST(o, 2) WG_INST(o, 3) WG_INST(o, 4)
#define WG_TAB_T(o) { NB_FN(wg_mk_##o##_1), NB_FN(wg_mk_##o##_2), NB_FN(wg_mk_##o##_3), NB_FN(wg_mk_##o##_4) }
#else
#error "WG_TMAX must be 4 or 6"
#endif
#if WG_OBMAX == 4
WG_INST_T(1) WG_INST_T(2) WG_INST_T(3) WG_INST_T(4)
static const NB_FN(wg_mk_fn) NB_FN(wg_tab)[4][WG_TMAX] = {WG_TAB_T(1), WG_TAB_T(2), WG_TAB_T(3), WG_TAB_T(4)};
#elif WG_OBMAX == 2
WG_INST_T(1) WG_INST_T(2)
static const NB_FN(wg_mk_fn) NB_FN(wg_tab)[2][WG_TMAX] = {WG_TAB_T(1), WG_TAB_T(2)};
#else
#error "WG_OBMAX must be 2 or 4"
#endif
#undef WG_INST
#undef WG_INST_T
#undef WG_TAB_T

/* Step 2 for a chunk of nt tiles: per position, per group of output blocks, per group of tiles
 * (one position's weights for WG_OBMAX output blocks, Cb*NB*NB*WG_OBMAX floats, stay in L2
 * while all the chunk's tiles use them). */
static void NB_FN(wg_gemm)(const NB_FN(wg_job) * job, int64_t nt, const float* V, float* Mt,
                           int64_t xi0, int64_t xi1, int64_t ob0, int64_t ob1) {
    const int64_t Cb = job->Cb, Mb = job->Mb, T = job->T;
    const int64_t vib = T * NB, uob = Cb * NB * NB, mob = T * WG_P * NB;
    int64_t xi, ob, t;
    for (xi = xi0; xi < xi1; ++xi) {
        const float* vx = V + xi * Cb * T * NB;
        const float* ux = job->U + xi * Mb * Cb * NB * NB;
        for (ob = ob0; ob < ob1; ob += WG_OBMAX) {
            const int obn = ob1 - ob < WG_OBMAX ? (int)(ob1 - ob) : WG_OBMAX;
            for (t = 0; t < nt; t += WG_TMAX) {
                const int tt = nt - t < WG_TMAX ? (int)(nt - t) : WG_TMAX;
                const float* v = vx + t * NB;
                const float* u = ux + ob * uob;
                float* m = Mt + (ob * T + t) * WG_P * NB + xi * NB;
                if (obn == WG_OBMAX && tt == WG_TMAX)
                    NB_FN(wg_mk)(WG_OBMAX, WG_TMAX, v, vib, u, uob, Cb, m, mob);
                else
                    NB_FN(wg_tab)[obn - 1][tt - 1](v, vib, u, uob, Cb, m, mob);
            }
        }
    }
}

/* Step 3 for the chunk's tiles [i0, i1) (chunk starts at tile g0), output blocks [ob0, ob1):
 * A^T m A, + bias, + Z, clamp; pixels past OH / OW (the last tile row / column) are dropped. */
static void NB_FN(wg_output)(const NB_FN(wg_job) * job, int64_t g0, int64_t i0, int64_t i1,
                             int64_t ob0, int64_t ob1, const float* Mt) {
    const onnxc_nchwc_conv_params* p = job->p;
    const int64_t OH = p->OH, OW = p->OW, Mb = job->Mb, T = job->T;
    const int64_t valid = p->M - (Mb - 1) * NB;
    int64_t ob, i;
    int r, c, l;
    for (ob = ob0; ob < ob1; ++ob) {
        const float* bias = job->B ? job->B + ob * NB : NULL;
        const int64_t nvalid = ob == Mb - 1 ? valid : NB;
        for (i = i0; i < i1; ++i) {
            const int64_t g = g0 + i, n = g / (job->TH * job->TW);
            const int64_t th = (g / job->TW) % job->TH, tw = g % job->TW;
            const int64_t oh0 = WG_M * th, ow0 = WG_M * tw;
            const int64_t base = ((n * Mb + ob) * OH) * OW * NB;
            const int rows = OH - oh0 < WG_M ? (int)(OH - oh0) : WG_M;
            const int cols = OW - ow0 < WG_M ? (int)(OW - ow0) : WG_M;
            const float* m = Mt + (ob * T + i) * WG_P * NB;
            float out[WG_M][WG_M][NB];
            for (l = 0; l < NB; l += WSTEP) {
                WT mm[WG_A][WG_A], s[WG_M][WG_A], y[WG_M][WG_M];
                for (r = 0; r < WG_A; ++r)
                    for (c = 0; c < WG_A; ++c) mm[r][c] = WLOAD(m + (r * WG_A + c) * NB + l);
                for (c = 0; c < WG_A; ++c) NB_FN(wg_out1d)(&mm[0][c], WG_A, &s[0][c], WG_A);
                for (r = 0; r < WG_M; ++r) NB_FN(wg_out1d)(&s[r][0], 1, &y[r][0], 1);
                for (r = 0; r < rows; ++r)
                    for (c = 0; c < cols; ++c) {
                        WT v = y[r][c];
                        if (bias) v = WADD(v, WLOAD(bias + l));
                        if (job->Z) v = WADD(v, WLOAD(job->Z + base + ((oh0 + r) * OW + ow0 + c) * NB + l));
                        WSTORE(out[r][c] + l, WCLAMP(v, p->lo, p->hi));
                    }
            }
            for (r = 0; r < rows; ++r)
                for (c = 0; c < cols; ++c) {
                    float* y = job->Y + base + ((oh0 + r) * OW + ow0 + c) * NB;
                    for (l = 0; l < (int)nvalid; ++l) y[l] = out[r][c][l];
                    for (; l < NB; ++l) y[l] = 0.0f;
                }
        }
    }
}

/* One scratch slot: claims chunks until none are left. */
static void NB_FN(wg_slots)(void* ctx, int64_t s0, int64_t s1) {
    NB_FN(wg_job)* job = (NB_FN(wg_job)*)ctx;
    const int64_t per = WG_P * (job->Cb + job->Mb) * NB * job->T;
    int64_t s;
    for (s = s0; s < s1; ++s) {
        float* V = job->scratch + s * per;
        float* Mt = V + WG_P * job->Cb * NB * job->T;
        for (;;) {
            const int64_t ch = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
            int64_t g0, nt;
            if (ch >= job->nchunks) break;
            g0 = ch * job->T;
            nt = job->tiles - g0 < job->T ? job->tiles - g0 : job->T;
            NB_FN(wg_input)(job, g0, 0, nt, 0, job->Cb, V);
            NB_FN(wg_gemm)(job, nt, V, Mt, 0, WG_P, 0, job->Mb);
            NB_FN(wg_output)(job, g0, 0, nt, 0, job->Mb, Mt);
        }
    }
}

/* Phases mode: chunks one after the other, each step split across the threads: input
 * (input block x tile group), GEMM (position x group of output blocks: each task reads its
 * weight panel once for the whole chunk), output (output block x tile group). */
#define WG_TG 16
typedef struct {
    NB_FN(wg_job) * job;
    int64_t g0, nt, ntg, nog;
    float *V, *Mt;
} NB_FN(wg_chunk);

static void NB_FN(wg_in_tasks)(void* ctx, int64_t t0, int64_t t1) {
    NB_FN(wg_chunk)* c = (NB_FN(wg_chunk)*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t ib = t / c->ntg, i0 = (t % c->ntg) * WG_TG;
        NB_FN(wg_input)(c->job, c->g0, i0, i0 + WG_TG < c->nt ? i0 + WG_TG : c->nt, ib, ib + 1, c->V);
    }
}

static void NB_FN(wg_gemm_tasks)(void* ctx, int64_t t0, int64_t t1) {
    NB_FN(wg_chunk)* c = (NB_FN(wg_chunk)*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t xi = t / c->nog, ob0 = (t % c->nog) * WG_OBMAX;
        const int64_t ob1 = ob0 + WG_OBMAX < c->job->Mb ? ob0 + WG_OBMAX : c->job->Mb;
        NB_FN(wg_gemm)(c->job, c->nt, c->V, c->Mt, xi, xi + 1, ob0, ob1);
    }
}

static void NB_FN(wg_out_tasks)(void* ctx, int64_t t0, int64_t t1) {
    NB_FN(wg_chunk)* c = (NB_FN(wg_chunk)*)ctx;
    int64_t t;
    for (t = t0; t < t1; ++t) {
        const int64_t ob = t / c->ntg, i0 = (t % c->ntg) * WG_TG;
        NB_FN(wg_output)(c->job, c->g0, i0, i0 + WG_TG < c->nt ? i0 + WG_TG : c->nt, ob, ob + 1, c->Mt);
    }
}

static void NB_FN(wg_run_phases)(NB_FN(wg_job) * job, int parallel) {
    NB_FN(wg_chunk) c;
    int64_t ch;
    job->T = (job->tiles + job->nchunks - 1) / job->nchunks; /* even chunks */
    c.job = job; c.V = job->scratch; c.Mt = job->scratch + WG_P * job->Cb * NB * job->T;
    c.nog = (job->Mb + WG_OBMAX - 1) / WG_OBMAX;
    for (ch = 0; ch < job->nchunks; ++ch) {
        c.g0 = ch * job->T;
        c.nt = job->tiles - c.g0 < job->T ? job->tiles - c.g0 : job->T;
        c.ntg = (c.nt + WG_TG - 1) / WG_TG;
        onnxc_parallel_for(job->Cb * c.ntg, parallel, NB_FN(wg_in_tasks), &c);
        onnxc_parallel_for(WG_P * c.nog, parallel, NB_FN(wg_gemm_tasks), &c);
        onnxc_parallel_for(job->Mb * c.ntg, parallel, NB_FN(wg_out_tasks), &c);
    }
}
#undef WG_TG

void WG_CONV(const onnxc_nchwc_conv_params* p, const float* X, const float* U, const float* B,
             const float* Z, float* Y, float* scratch) {
    NB_FN(wg_job) job;
    int64_t Tmax, slots, threads;
    int parallel;
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    job.p = p; job.X = X; job.U = U; job.B = B; job.Z = Z; job.Y = Y; job.scratch = scratch;
    job.Cb = (p->C + NB - 1) / NB; job.Mb = (p->M + NB - 1) / NB;
    job.TH = (p->OH + WG_M - 1) / WG_M; job.TW = (p->OW + WG_M - 1) / WG_M;
    job.tiles = p->N * job.TH * job.TW;
    job.next = 0;
    Tmax = NB_FN(wg_chunk_tiles)(job.Cb, job.Mb, job.tiles);
    job.nchunks = (job.tiles + Tmax - 1) / Tmax;
    slots = job.nchunks < ONNXC_WINOGRAD_SLOTS ? job.nchunks : ONNXC_WINOGRAD_SLOTS;
    parallel = p->N * job.Mb * p->OH * p->OW * job.Cb * NB * NB * 9 >= WG_PARALLEL_MIN_WORK;
    if (NB_FN(wg_phases)(job.Cb, job.Mb)) {
        NB_FN(wg_run_phases)(&job, parallel);
        return;
    }
    parallel = parallel && slots > 1;
    threads = parallel ? onnxc_rt_threads_usable() : 1;
    if (threads < 2) {
        parallel = 0;
        slots = 1;
    } else if (job.nchunks < 4 * threads && job.tiles >= threads) {
        /* few chunks: make their count a multiple of the threads (smaller chunks, all busy) */
        job.nchunks = (job.nchunks + threads - 1) / threads * threads;
        if (slots > threads) slots = threads;
    }
    job.T = (job.tiles + job.nchunks - 1) / job.nchunks;
    job.nchunks = (job.tiles + job.T - 1) / job.T;
    if (slots > job.nchunks) slots = job.nchunks;
    onnxc_parallel_for(slots, parallel, NB_FN(wg_slots), &job);
}

#undef WT
#undef WSTEP
#undef WLOAD
#undef WSTORE
#undef WADD
#undef WSUB
#undef WFMA
#undef WCLAMP
