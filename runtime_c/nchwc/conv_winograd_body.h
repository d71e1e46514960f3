/* Winograd F(2x2, 3x3) NCHWc convolution for one block size; included by conv_winograd.c with
 * NB, NB_FN(name), NB_SIMD, WG_OBMAX / WG_TMAX and the V* vector macros defined.
 *
 * Y (2x2 output tile) = A^T [ sum_c (G g G^T) .* (B^T d B) ] A with d the 4x4 input patch
 * (tiles 2 apart), so each 2x2 tile costs 16 multiplies per channel pair instead of 36.  The
 * output tiles (of all images, row-major) are processed in chunks of T tiles, each chunk through
 * three steps while its data is in L2:
 *   1. input transform: V[xi][ib][t][:] = (B^T d B)[xi] for the NB lanes of input block ib
 *      (adds only, vectorized across the lanes);
 *   2. for each of the 16 positions xi a GEMM over the blocked input channels:
 *      Mt[ob][t][xi][:] = sum_{ib, ci} V[xi][ib][t][ci] * U[xi][ob][ib][ci][:], register tiles
 *      of WG_OBMAX output blocks x WG_TMAX tiles (the pointwise conv's shape: one broadcast per
 *      tile and channel feeds WG_OBMAX FMAs, one weight load WG_TMAX);
 *   3. output transform A^T m A, + bias, + Z, clamp, padding lanes zeroed, store the pixels
 *      inside [0, OH) x [0, OW) (the last tile row/column may be half outside).
 * U (weights, transformed at compile time: ops/nchwc.py pack_winograd) is
 * [16][Mb][Cb][b_in][b_out].  Chunks are claimed from a shared counter by one task per scratch
 * slot (onnxc_parallel_for has no worker id; a slot is a task index, unique while it runs). */

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
    int64_t t = budget / (16 * (Cb + Mb) * NB * (int64_t)sizeof(float));
    if (t > most) t = most;
    if (t < 1) t = 1;
    return t < tiles ? t : tiles;
}

int64_t NB_FN(onnxc_nchwc_conv_winograd_scratch)(const onnxc_nchwc_conv_params* p) {
    const int64_t Cb = (p->C + NB - 1) / NB, Mb = (p->M + NB - 1) / NB;
    const int64_t tiles = p->N * ((p->OH + 1) / 2) * ((p->OW + 1) / 2);
    const int64_t T = NB_FN(wg_chunk_tiles)(Cb, Mb, tiles);
    const int64_t nchunks = T > 0 ? (tiles + T - 1) / T : 0;
    int64_t slots = nchunks < ONNXC_WINOGRAD_SLOTS ? nchunks : ONNXC_WINOGRAD_SLOTS;
    if (NB_FN(wg_phases)(Cb, Mb) && slots > 1) slots = 1;
    return slots * 16 * (Cb + Mb) * NB * T * (int64_t)sizeof(float);
}

/* Step 1 for tiles [g0, g0 + nt) into V (stride T tiles). */
static void NB_FN(wg_input)(const NB_FN(wg_job) * job, int64_t g0, int64_t i0, int64_t i1,
                            int64_t ib0, int64_t ib1, float* V) {
    const onnxc_nchwc_conv_params* p = job->p;
    const int64_t IH = p->IH, IW = p->IW, Cb = job->Cb, T = job->T;
    const int64_t xi_stride = Cb * T * NB;
    int64_t ib, i;
    int r, c, l;
    for (i = i0; i < i1; ++i) {
        const int64_t g = g0 + i, n = g / (job->TH * job->TW);
        const int64_t th = (g / job->TW) % job->TH, tw = g % job->TW;
        const int64_t ih0 = 2 * th - p->PT, iw0 = 2 * tw - p->PL;
        const int inside = ih0 >= 0 && ih0 + 4 <= IH && iw0 >= 0 && iw0 + 4 <= IW;
        for (ib = ib0; ib < ib1; ++ib) {
            const float* x = job->X + (n * Cb + ib) * IH * IW * NB;
            float* v = V + (ib * T + i) * NB;
            const float* src[4][4];
            static const float zeros[NB] = {0};
            for (r = 0; r < 4; ++r)
                for (c = 0; c < 4; ++c) {
                    const int64_t h = ih0 + r, w = iw0 + c;
                    src[r][c] = inside || (h >= 0 && h < IH && w >= 0 && w < IW) ? x + (h * IW + w) * NB : zeros;
                }
#if NB_SIMD
            {
                VT d[4][4], t[4][4];
                for (r = 0; r < 4; ++r)
                    for (c = 0; c < 4; ++c) d[r][c] = VLOAD(src[r][c]);
                /* B^T d: rows d0-d2, d1+d2, d2-d1, d1-d3; then the same on the columns */
                for (c = 0; c < 4; ++c) {
                    t[0][c] = VSUB(d[0][c], d[2][c]);
                    t[1][c] = VADD(d[1][c], d[2][c]);
                    t[2][c] = VSUB(d[2][c], d[1][c]);
                    t[3][c] = VSUB(d[1][c], d[3][c]);
                }
                for (r = 0; r < 4; ++r) {
                    VSTORE(v + (r * 4 + 0) * xi_stride, VSUB(t[r][0], t[r][2]));
                    VSTORE(v + (r * 4 + 1) * xi_stride, VADD(t[r][1], t[r][2]));
                    VSTORE(v + (r * 4 + 2) * xi_stride, VSUB(t[r][2], t[r][1]));
                    VSTORE(v + (r * 4 + 3) * xi_stride, VSUB(t[r][1], t[r][3]));
                }
            }
#else
            for (l = 0; l < NB; ++l) {
                float t[4][4];
                for (c = 0; c < 4; ++c) {
                    t[0][c] = src[0][c][l] - src[2][c][l];
                    t[1][c] = src[1][c][l] + src[2][c][l];
                    t[2][c] = src[2][c][l] - src[1][c][l];
                    t[3][c] = src[1][c][l] - src[3][c][l];
                }
                for (r = 0; r < 4; ++r) {
                    v[(r * 4 + 0) * xi_stride + l] = t[r][0] - t[r][2];
                    v[(r * 4 + 1) * xi_stride + l] = t[r][1] + t[r][2];
                    v[(r * 4 + 2) * xi_stride + l] = t[r][2] - t[r][1];
                    v[(r * 4 + 3) * xi_stride + l] = t[r][1] - t[r][3];
                }
            }
#endif
        }
    }
}

/* Step 2 register tile: OBN output blocks x TT tiles at one position.  V: (ib 0, first tile),
 * vib floats between input blocks; U: (ob, ib 0), uob floats between output blocks; Mt: (ob,
 * first tile, xi), mob floats between output blocks, 16*NB between tiles. */
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
        for (i = 0; i < TT; ++i) VSTORE(Mt + o * mob + i * 16 * NB, acc[o][i]);
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
            for (l = 0; l < NB; ++l) Mt[o * mob + i * 16 * NB + l] = acc[o][i][l];
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
    const int64_t vib = T * NB, uob = Cb * NB * NB, mob = T * 16 * NB;
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
                float* m = Mt + (ob * T + t) * 16 * NB + xi * NB;
                if (obn == WG_OBMAX && tt == WG_TMAX)
                    NB_FN(wg_mk)(WG_OBMAX, WG_TMAX, v, vib, u, uob, Cb, m, mob);
                else
                    NB_FN(wg_tab)[obn - 1][tt - 1](v, vib, u, uob, Cb, m, mob);
            }
        }
    }
}

/* Step 3 for a chunk of nt tiles starting at tile g0. */
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
            const int64_t oh0 = 2 * th, ow0 = 2 * tw;
            const int64_t base = ((n * Mb + ob) * OH) * OW * NB;
            const float* m = Mt + (ob * T + i) * 16 * NB;
            float out[2][2][NB];
#if NB_SIMD
            {
                VT s[2][4], y[2][2];
                /* A^T m: rows m0+m1+m2, m1-m2-m3; then the same on the columns */
                for (c = 0; c < 4; ++c) {
                    const VT m0 = VLOAD(m + (0 * 4 + c) * NB), m1 = VLOAD(m + (1 * 4 + c) * NB);
                    const VT m2 = VLOAD(m + (2 * 4 + c) * NB), m3 = VLOAD(m + (3 * 4 + c) * NB);
                    s[0][c] = VADD(VADD(m0, m1), m2);
                    s[1][c] = VSUB(VSUB(m1, m2), m3);
                }
                for (r = 0; r < 2; ++r) {
                    y[r][0] = VADD(VADD(s[r][0], s[r][1]), s[r][2]);
                    y[r][1] = VSUB(VSUB(s[r][1], s[r][2]), s[r][3]);
                }
                for (r = 0; r < 2; ++r)
                    for (c = 0; c < 2; ++c) {
                        VT v = y[r][c];
                        const int64_t oh = oh0 + r, ow = ow0 + c;
                        if (oh >= OH || ow >= OW) continue;
                        if (bias) v = VADD(v, VLOAD(bias));
                        if (job->Z) v = VADD(v, VLOAD(job->Z + base + (oh * OW + ow) * NB));
                        /* max/min with v second: a NaN v passes through */
                        v = VMIN(VSET1(p->hi), VMAX(VSET1(p->lo), v));
                        VSTORE(out[r][c], v);
                    }
            }
#else
            for (l = 0; l < NB; ++l) {
                float s[2][4];
                for (c = 0; c < 4; ++c) {
                    s[0][c] = m[c * NB + l] + m[(4 + c) * NB + l] + m[(8 + c) * NB + l];
                    s[1][c] = m[(4 + c) * NB + l] - m[(8 + c) * NB + l] - m[(12 + c) * NB + l];
                }
                for (r = 0; r < 2; ++r) {
                    out[r][0][l] = s[r][0] + s[r][1] + s[r][2];
                    out[r][1][l] = s[r][1] - s[r][2] - s[r][3];
                }
            }
            for (r = 0; r < 2; ++r)
                for (c = 0; c < 2; ++c) {
                    const int64_t oh = oh0 + r, ow = ow0 + c;
                    if (oh >= OH || ow >= OW) continue;
                    for (l = 0; l < NB; ++l) {
                        float v = out[r][c][l] + (bias ? bias[l] : 0.0f);
                        v += job->Z ? job->Z[base + (oh * OW + ow) * NB + l] : 0.0f;
                        v = v < p->lo ? p->lo : v; /* comparisons keep NaN */
                        out[r][c][l] = v > p->hi ? p->hi : v;
                    }
                }
#endif
            for (r = 0; r < 2; ++r)
                for (c = 0; c < 2; ++c) {
                    const int64_t oh = oh0 + r, ow = ow0 + c;
                    float* y = job->Y + base + (oh * OW + ow) * NB;
                    if (oh >= OH || ow >= OW) continue;
                    for (l = 0; l < (int)nvalid; ++l) y[l] = out[r][c][l];
                    for (; l < NB; ++l) y[l] = 0.0f;
                }
        }
    }
}

/* One scratch slot: claims chunks until none are left. */
static void NB_FN(wg_slots)(void* ctx, int64_t s0, int64_t s1) {
    NB_FN(wg_job)* job = (NB_FN(wg_job)*)ctx;
    const int64_t per = 16 * (job->Cb + job->Mb) * NB * job->T;
    int64_t s;
    for (s = s0; s < s1; ++s) {
        float* V = job->scratch + s * per;
        float* Mt = V + 16 * job->Cb * NB * job->T;
        for (;;) {
            const int64_t ch = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
            int64_t g0, nt;
            if (ch >= job->nchunks) break;
            g0 = ch * job->T;
            nt = job->tiles - g0 < job->T ? job->tiles - g0 : job->T;
            NB_FN(wg_input)(job, g0, 0, nt, 0, job->Cb, V);
            NB_FN(wg_gemm)(job, nt, V, Mt, 0, 16, 0, job->Mb);
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
    c.job = job; c.V = job->scratch; c.Mt = job->scratch + 16 * job->Cb * NB * job->T;
    c.nog = (job->Mb + WG_OBMAX - 1) / WG_OBMAX;
    for (ch = 0; ch < job->nchunks; ++ch) {
        c.g0 = ch * job->T;
        c.nt = job->tiles - c.g0 < job->T ? job->tiles - c.g0 : job->T;
        c.ntg = (c.nt + WG_TG - 1) / WG_TG;
        onnxc_parallel_for(job->Cb * c.ntg, parallel, NB_FN(wg_in_tasks), &c);
        onnxc_parallel_for(16 * c.nog, parallel, NB_FN(wg_gemm_tasks), &c);
        onnxc_parallel_for(job->Mb * c.ntg, parallel, NB_FN(wg_out_tasks), &c);
    }
}
#undef WG_TG

void NB_FN(onnxc_nchwc_conv_winograd)(const onnxc_nchwc_conv_params* p, const float* X,
                                      const float* U, const float* B, const float* Z, float* Y,
                                      float* scratch) {
    NB_FN(wg_job) job;
    int64_t Tmax, slots, threads;
    int parallel;
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    job.p = p; job.X = X; job.U = U; job.B = B; job.Z = Z; job.Y = Y; job.scratch = scratch;
    job.Cb = (p->C + NB - 1) / NB; job.Mb = (p->M + NB - 1) / NB;
    job.TH = (p->OH + 1) / 2; job.TW = (p->OW + 1) / 2;
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
