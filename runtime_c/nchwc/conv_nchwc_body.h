/* NCHWc dense convolution kernels (direct, pointwise, strided 1x1, NCHW input) for one block
 * size, and the job driver conv_nchwc_dw_body.h (depthwise) shares; included by conv_nchwc.c
 * once per size with NB (the block, a compile-time constant), NB_FN(name) (name with the _b<NB>
 * suffix, for the file's internal functions), NCHWC_CONV / NCHWC_CONV_NCHW /
 * NCHWC_CONV_SUBSAMPLE (the full names of the kernels it defines, e.g.
 * onnxc_f32_nchwc_conv_b16; undefined at the end),
 * NB_OBMAX / NB_TMAX (the register tile, below) and NB_SIMD (1: the VT/V* vector macros are
 * one NB-float register) defined.  See onnxc_nchwc.h for the layouts.
 *
 * Every variant runs the same microkernel on a register tile of OBN output blocks x T output
 * pixels (constants in each compiled copy): per input channel and kernel tap, OBN weight
 * vectors (NB output channels each) and T broadcast input values meet in OBN*T FMAs, so each
 * broadcast feeds OBN FMAs and each weight load T.  Window convs take up to NB_OBMAX x NB_TMAX,
 * pointwise ones NB_PW_OBN x NB_PW_T.  Pixels whose whole window lies inside the input (a row's
 * interior) run in tiles; border pixels one at a time over their valid taps.  The portable
 * path is the same loop nest on float arrays. */

/* What the microkernel needs besides pointers: input blocks (or channels) to sum over and the
 * strides in floats between them, between input channels inside a block (1, or 0 taps for
 * plain NCHW input where the "block" is one channel), kernel rows, columns and output pixels;
 * wob / yob: floats between consecutive output blocks of W and of Y (and Z); chunk: input
 * blocks per pass over an output row; valid: real lanes of the tile's last output block (the
 * others are whole). */
typedef struct {
    int64_t nblk, chunk, xblk, wblk, wtap, wob, yob, xrow, xcol, xpix, KW, valid;
    int64_t IW, SW, DW; /* input width, column stride and dilation (border tiles) */
    float lo, hi;
    /* plain NCHW input: the row's taps (input channel, kernel row, column) in summation order
     * as (X offset, W offset) pairs, ntap of them (tap == NULL: none); whole-window tiles run one
     * flat loop over them instead of three nested short ones */
    const int64_t* tap;
    int64_t ntap;
    int64_t reps; /* with tap: tiles of T pixels side by side one call runs (vector builds) */
} NB_FN(mk_args);

/* What a border tile's pixels read at taps outside the input. */
static const float NB_FN(zeros)[NB] = {0};

#if NB_SIMD
/* A tile's accumulators at its first input chunk (the bias, or zero) or later ones (the partial
 * sums in Y). */
static NCHWC_INLINE void NB_FN(tile_start)(VT acc[NB_OBMAX][NCHWC_TILE], const int OBN, const int T,
                                           const float* bias, const float* Y, int64_t yob, int first) {
    int i, o;
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < T; ++i)
            acc[o][i] = !first ? VLOAD(Y + o * yob + i * NB) : bias ? VLOAD(bias + o * NB) : VZERO();
}

/* Stores a tile; after the last input chunk (last) with Z added and clamped (max/min with v
 * second: a NaN v passes through, as the C comparisons would). */
static NCHWC_INLINE void NB_FN(tile_finish)(const NB_FN(mk_args) * a, VT acc[NB_OBMAX][NCHWC_TILE],
                                            const int OBN, const int T, const float* Z, float* Y,
                                            int64_t yob, int last) {
    int i, o;
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < T; ++i) {
            VT v = acc[o][i];
            if (last) {
                if (Z) v = VADD(v, VLOAD(Z + o * yob + i * NB));
                v = VMIN(VSET1(a->hi), VMAX(VSET1(a->lo), v));
            }
            VSTORE(Y + o * yob + i * NB, v);
        }
}
#endif

/* After the last input chunk: the padding lanes (>= valid) of the tile's last block are zero. */
static NCHWC_INLINE void NB_FN(tile_pad)(const NB_FN(mk_args) * a, const int OBN, const int T, float* Y,
                                         int64_t yob, int last) {
    int i, l;
    if (last && a->valid < NB)
        for (i = 0; i < T; ++i)
            for (l = (int)a->valid; l < NB; ++l) Y[(OBN - 1) * yob + i * NB + l] = 0.0f;
}

#if NB_SIMD
/* Plain-NCHW-input tiles whose whole window lies inside the input: a->reps tiles of T pixels
 * side by side, each one flat loop over the row's tap table (see mk below for the rest); one
 * call for the run of tiles, as a first layer's tile (27 taps) is short next to a call. */
static NCHWC_INLINE void NB_FN(mk_flat)(const NB_FN(mk_args) * a, const int OBN, const int T,
                                        const float* X, int64_t xoff, const float* W,
                                        const float* bias, const float* Z, float* Y, int first,
                                        int last) {
    const int64_t wob = a->wob, yob = a->yob, xpix = a->xpix;
    const int64_t* te = a->tap + 2 * a->ntap;
    int64_t r;
    int i, o;
    for (r = 0; r < a->reps; ++r, xoff += T * xpix, Y += T * NB, Z = Z ? Z + T * NB : NULL) {
        VT acc[NB_OBMAX][NCHWC_TILE];
        const int64_t* tp;
        NB_FN(tile_start)(acc, OBN, T, bias, Y, yob, first);
        for (tp = a->tap; tp < te; tp += 2) {
            const float* xp = X + xoff + tp[0];
            const float* wp = W + tp[1];
            VT w[NB_OBMAX];
            for (o = 0; o < OBN; ++o) w[o] = VLOAD(wp + o * wob);
            for (i = 0; i < T; ++i) {
                const VT xv = VSET1(xp[i * xpix]);
                for (o = 0; o < OBN; ++o) acc[o][i] = VFMA(xv, w[o], acc[o][i]);
            }
        }
        NB_FN(tile_finish)(a, acc, OBN, T, Z, Y, yob, last);
        NB_FN(tile_pad)(a, OBN, T, Y, yob, last);
    }
}
#endif

/* Y[o][0..T) (o < OBN output blocks, NB floats per pixel) += the sums over input blocks
 * [ib0, ib1): the first chunk (first) starts from the bias instead of Y, the last (last) adds
 * Z, clamps and zeroes the padding lanes (>= valid) of the last block.  KIND: 0 plain NCHW
 * input (one channel per input "block"), 1 blocked input, 2 pointwise (blocked, one tap, pixels
 * NB floats apart: the constants let the compiler drop the tap loops and index arithmetic);
 * KIND | 4: a border tile of a window conv (0 or 1), whose pixels read zeros at the columns of
 * a tap outside [0, IW) (iw0: input column of pixel 0's tap 0), so border pixels run in tiles
 * too.  X + xoff is tap (0, 0) of pixel 0 (may lie outside X: only the taps [kh0, kh1) x
 * [kw0, kw1) inside the input are read).  Splitting the input blocks into chunks keeps one chunk's weights in cache while
 * a whole output row reuses them. */
static NCHWC_INLINE void NB_FN(mk)(const NB_FN(mk_args) * a, const int OBN, const int T,
                                   const int KIND, const float* X, int64_t xoff, int64_t iw0,
                                   const float* W,
                                   const float* bias, const float* Z, float* Y, int64_t kh0,
                                   int64_t kh1, int64_t kw0, int64_t kw1, int64_t ib0,
                                   int64_t ib1, int first, int last) {
    const int NCI = (KIND & 3) == 0 ? 1 : NB, PW = KIND == 2, BORDER = (KIND & 4) != 0;
    const int64_t wob = a->wob, yob = a->yob, xpix = PW ? NB : a->xpix;
    const int64_t wblk = PW ? NB * NB : a->wblk;
    int64_t ib, kh, kw;
    int ci, i, o, l;
    if (PW) {
        kh0 = 0; kh1 = 1; kw0 = 0; kw1 = 1;
    }
#if NB_SIMD
    VT acc[NB_OBMAX][NCHWC_TILE];
    if (KIND == 0 && a->tap && kw0 == 0 && kw1 == a->KW) {
        NB_FN(mk_flat)(a, OBN, T, X, xoff, W, bias, Z, Y, first, last);
        return;
    }
    NB_FN(tile_start)(acc, OBN, T, bias, Y, yob, first);
    if (T == 1 && NCI == NB) {
        /* a lone (border) pixel: P chains per output block over the input channels, so the FMA
         * latency does not serialize it */
        const int P = OBN >= 3 ? 2 : 4;
        VT part[4][NB_OBMAX];
        for (l = 0; l < P; ++l)
            for (o = 0; o < OBN; ++o) part[l][o] = l ? VZERO() : acc[o][0];
        for (ib = ib0; ib < ib1; ++ib)
            for (kh = kh0; kh < kh1; ++kh)
                for (kw = kw0; kw < kw1; ++kw) {
                    const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                    const float* wp = W + ib * wblk + (kh * a->KW + kw) * a->wtap;
                    for (ci = 0; ci < NB; ci += P)
                        for (l = 0; l < P; ++l) {
                            const VT xv = VSET1(xp[ci + l]);
                            for (o = 0; o < OBN; ++o)
                                part[l][o] = VFMA(xv, VLOAD(wp + o * wob + (ci + l) * NB), part[l][o]);
                        }
                }
        for (o = 0; o < OBN; ++o) {
            for (l = 1; l < P; ++l) part[0][o] = VADD(part[0][o], part[l][o]);
            acc[o][0] = part[0][o];
        }
    } else {
        for (ib = ib0; ib < ib1; ++ib)
            for (kh = kh0; kh < kh1; ++kh)
                for (kw = kw0; kw < kw1; ++kw) {
                    const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                    const float* wp = W + ib * wblk + (kh * a->KW + kw) * a->wtap;
                    const float* xq[NCHWC_TILE];
                    for (i = 0; i < T; ++i) {
                        const int64_t c = iw0 + i * a->SW + kw * a->DW;
                        xq[i] = !BORDER || (c >= 0 && c < a->IW) ? xp + i * xpix : NB_FN(zeros);
                    }
                    for (ci = 0; ci < NCI; ++ci) {
                        VT w[NB_OBMAX];
                        for (o = 0; o < OBN; ++o) w[o] = VLOAD(wp + o * wob + ci * NB);
                        for (i = 0; i < T; ++i) {
                            const VT xv = VSET1(xq[i][ci]);
                            for (o = 0; o < OBN; ++o) acc[o][i] = VFMA(xv, w[o], acc[o][i]);
                        }
                    }
                }
    }
    NB_FN(tile_finish)(a, acc, OBN, T, Z, Y, yob, last);
#else
    float acc[NB_OBMAX][NCHWC_TILE][NB];
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < T; ++i)
            for (l = 0; l < NB; ++l)
                acc[o][i][l] = !first ? Y[o * yob + i * NB + l] : bias ? bias[o * NB + l] : 0.0f;
    for (ib = ib0; ib < ib1; ++ib)
        for (kh = kh0; kh < kh1; ++kh)
            for (kw = kw0; kw < kw1; ++kw) {
                const float* xp = X + xoff + ib * a->xblk + kh * a->xrow + kw * a->xcol;
                const float* wp = W + ib * wblk + (kh * a->KW + kw) * a->wtap;
                for (ci = 0; ci < NCI; ++ci)
                    for (o = 0; o < OBN; ++o) {
                        const float* w = wp + o * wob + ci * NB;
                        for (i = 0; i < T; ++i) {
                            const int64_t c = iw0 + i * a->SW + kw * a->DW;
                            const float xv = !BORDER || (c >= 0 && c < a->IW) ? xp[i * xpix + ci] : 0.0f;
                            for (l = 0; l < NB; ++l) acc[o][i][l] += xv * w[l];
                        }
                    }
            }
    for (o = 0; o < OBN; ++o)
        for (i = 0; i < T; ++i)
            for (l = 0; l < NB; ++l) {
                float v = acc[o][i][l];
                if (last) {
                    v += Z ? Z[o * yob + i * NB + l] : 0.0f;
                    v = v < a->lo ? a->lo : v; /* comparisons keep NaN, as max/min-based Relu/Clip do */
                    v = v > a->hi ? a->hi : v;
                }
                Y[o * yob + i * NB + l] = v;
            }
#endif
    NB_FN(tile_pad)(a, OBN, T, Y, yob, last);
}

/* Input blocks whose weights (wblk floats per input block and output block, OBN output
 * blocks) fit the cache budget; at least one. */
static inline int64_t NB_FN(chunk)(int64_t budget, int64_t wblk, int OBN) {
    const int64_t n = budget / (wblk * OBN * (int64_t)sizeof(float));
    return n > 0 ? n : 1;
}

/* Window convs: one out-of-line copy of the microkernel per tile shape (OBN, T) and KIND (0 or
 * 1), picked from a table at run time: the call costs little next to a tile's taps x channels
 * of FMAs, and the number of copies (and the build time) stays at OBMAX x TMAX x 2. */
typedef void (*NB_FN(mk_fn))(const NB_FN(mk_args) * a, const float* X, int64_t xoff,
                             int64_t iw0, const float* W, const float* bias, const float* Z, float* Y,
                             int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1, int64_t ib0,
                             int64_t ib1, int first, int last);
#define NCHWC_KIND_1 0
#define NCHWC_KIND_N 1
#define NCHWC_KIND_B1 4
#define NCHWC_KIND_BN 5
#define NCHWC_MK_INST(o, t, c)                                                                    \
    static void NB_FN(mk_##o##_##t##_##c)(const NB_FN(mk_args) * a, const float* X,              \
                                          int64_t xoff, int64_t iw0, const float* W,              \
                                          const float* bias, const float* Z, float* Y,            \
                                          int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1,     \
                                          int64_t ib0, int64_t ib1, int first, int last) {        \
        NB_FN(mk)(a, o, t, NCHWC_KIND_##c, X, xoff, iw0, W, bias, Z, Y, kh0, kh1, kw0, kw1, ib0,  \
                  ib1, first, last);                                                              \
    }
/* NCHWC_IF<k>(x): x when the tile has a k-th pixel (T) / output block (O), else nothing. */
#define NCHWC_KEEP(x) x
#define NCHWC_DROP(x)
#define NCHWC_C ,
#if NB_TMAX < 1 || NB_TMAX > 8 || NB_OBMAX < 1 || NB_OBMAX > 4
#error "register tile out of range (NB_TMAX 1..8, NB_OBMAX 1..4)"
#endif
#define NCHWC_IFT1 NCHWC_KEEP
#if NB_TMAX >= 2
#define NCHWC_IFT2 NCHWC_KEEP
#else
#define NCHWC_IFT2 NCHWC_DROP
#endif
#if NB_TMAX >= 3
#define NCHWC_IFT3 NCHWC_KEEP
#else
#define NCHWC_IFT3 NCHWC_DROP
#endif
#if NB_TMAX >= 4
#define NCHWC_IFT4 NCHWC_KEEP
#else
#define NCHWC_IFT4 NCHWC_DROP
#endif
#if NB_TMAX >= 5
#define NCHWC_IFT5 NCHWC_KEEP
#else
#define NCHWC_IFT5 NCHWC_DROP
#endif
#if NB_TMAX >= 6
#define NCHWC_IFT6 NCHWC_KEEP
#else
#define NCHWC_IFT6 NCHWC_DROP
#endif
#if NB_TMAX >= 7
#define NCHWC_IFT7 NCHWC_KEEP
#else
#define NCHWC_IFT7 NCHWC_DROP
#endif
#if NB_TMAX >= 8
#define NCHWC_IFT8 NCHWC_KEEP
#else
#define NCHWC_IFT8 NCHWC_DROP
#endif
#define NCHWC_IFO1 NCHWC_KEEP
#if NB_OBMAX >= 2
#define NCHWC_IFO2 NCHWC_KEEP
#else
#define NCHWC_IFO2 NCHWC_DROP
#endif
#if NB_OBMAX >= 3
#define NCHWC_IFO3 NCHWC_KEEP
#else
#define NCHWC_IFO3 NCHWC_DROP
#endif
#if NB_OBMAX >= 4
#define NCHWC_IFO4 NCHWC_KEEP
#else
#define NCHWC_IFO4 NCHWC_DROP
#endif
/* every (o, t) with t <= NB_TMAX (unused o rows are never instantiated: NCHWC_IFO) */
#define NCHWC_MK_T(o, c)                                                                          \
    NCHWC_MK_IF(1, o, c) NCHWC_MK_IF(2, o, c) NCHWC_MK_IF(3, o, c) NCHWC_MK_IF(4, o, c)         \
    NCHWC_MK_IF(5, o, c) NCHWC_MK_IF(6, o, c) NCHWC_MK_IF(7, o, c) NCHWC_MK_IF(8, o, c)
#define NCHWC_MK_IF(t, o, c) NCHWC_IFT##t(NCHWC_MK_INST(o, t, c))
#define NCHWC_TAB_T(o, c)                                                                         \
    { NB_FN(mk_##o##_1_##c) NCHWC_IFT2(NCHWC_C NB_FN(mk_##o##_2_##c))                            \
      NCHWC_IFT3(NCHWC_C NB_FN(mk_##o##_3_##c)) NCHWC_IFT4(NCHWC_C NB_FN(mk_##o##_4_##c))        \
      NCHWC_IFT5(NCHWC_C NB_FN(mk_##o##_5_##c)) NCHWC_IFT6(NCHWC_C NB_FN(mk_##o##_6_##c))        \
      NCHWC_IFT7(NCHWC_C NB_FN(mk_##o##_7_##c)) NCHWC_IFT8(NCHWC_C NB_FN(mk_##o##_8_##c)) }
NCHWC_MK_T(1, 1) NCHWC_MK_T(1, N) NCHWC_MK_T(1, B1) NCHWC_MK_T(1, BN)
#if NB_OBMAX >= 2
NCHWC_MK_T(2, 1) NCHWC_MK_T(2, N) NCHWC_MK_T(2, B1) NCHWC_MK_T(2, BN)
#endif
#if NB_OBMAX >= 3
NCHWC_MK_T(3, 1) NCHWC_MK_T(3, N) NCHWC_MK_T(3, B1) NCHWC_MK_T(3, BN)
#endif
#if NB_OBMAX >= 4
NCHWC_MK_T(4, 1) NCHWC_MK_T(4, N) NCHWC_MK_T(4, B1) NCHWC_MK_T(4, BN)
#endif
#if NB_SIMD && NB == 16 && NB_TMAX == 7
/* GCC (12) allocates the 2x7 border tile badly (both weight vectors spilled, 14 FMAs from the
 * stack: 3x3 128->32 @14 ran at 60 instead of 100 GFLOP/s); two 1x7 border tiles instead. */
static void NB_FN(mk_2_7_BN_split)(const NB_FN(mk_args) * a, const float* X, int64_t xoff,
                                   int64_t iw0, const float* W, const float* bias, const float* Z,
                                   float* Y, int64_t kh0, int64_t kh1, int64_t kw0, int64_t kw1,
                                   int64_t ib0, int64_t ib1, int first, int last) {
    NB_FN(mk_args) a0 = *a;
    a0.valid = NB; /* only the tile's last block has padding lanes */
    NB_FN(mk_1_7_BN)(&a0, X, xoff, iw0, W, bias, Z, Y, kh0, kh1, kw0, kw1, ib0, ib1, first, last);
    NB_FN(mk_1_7_BN)(a, X, xoff, iw0, W + a->wob, bias ? bias + NB : NULL, Z ? Z + a->yob : NULL,
                     Y + a->yob, kh0, kh1, kw0, kw1, ib0, ib1, first, last);
}
#define NCHWC_SPLIT_2_7_BN 1
#endif
/* window convs: [border tile * 2 + blocked input][OBN - 1][T - 1] */
static const NB_FN(mk_fn) NB_FN(mk_tab)[4][NB_OBMAX][NB_TMAX] = {
    {NCHWC_TAB_T(1, 1) NCHWC_IFO2(NCHWC_C NCHWC_TAB_T(2, 1))
     NCHWC_IFO3(NCHWC_C NCHWC_TAB_T(3, 1)) NCHWC_IFO4(NCHWC_C NCHWC_TAB_T(4, 1))},
    {NCHWC_TAB_T(1, N) NCHWC_IFO2(NCHWC_C NCHWC_TAB_T(2, N))
     NCHWC_IFO3(NCHWC_C NCHWC_TAB_T(3, N)) NCHWC_IFO4(NCHWC_C NCHWC_TAB_T(4, N))},
    {NCHWC_TAB_T(1, B1) NCHWC_IFO2(NCHWC_C NCHWC_TAB_T(2, B1))
     NCHWC_IFO3(NCHWC_C NCHWC_TAB_T(3, B1)) NCHWC_IFO4(NCHWC_C NCHWC_TAB_T(4, B1))},
    {NCHWC_TAB_T(1, BN) NCHWC_IFO2(NCHWC_C NCHWC_TAB_T(2, BN))
     NCHWC_IFO3(NCHWC_C NCHWC_TAB_T(3, BN)) NCHWC_IFO4(NCHWC_C NCHWC_TAB_T(4, BN))}};
#undef NCHWC_MK_INST
#undef NCHWC_MK_T
#undef NCHWC_MK_IF
#undef NCHWC_TAB_T
#undef NCHWC_KEEP
#undef NCHWC_DROP
#undef NCHWC_C
#undef NCHWC_IFT1
#undef NCHWC_IFT2
#undef NCHWC_IFT3
#undef NCHWC_IFT4
#undef NCHWC_IFT5
#undef NCHWC_IFT6
#undef NCHWC_IFT7
#undef NCHWC_IFT8
#undef NCHWC_IFO1
#undef NCHWC_IFO2
#undef NCHWC_IFO3
#undef NCHWC_IFO4
#undef NCHWC_KIND_1
#undef NCHWC_KIND_N
#undef NCHWC_KIND_B1
#undef NCHWC_KIND_BN

/* Pointwise convs take NB_PW_OBN output blocks x up to NB_PW_T pixels (conv_nchwc.c sets them
 * per block size).  b=16 (AVX-512) keeps 1 x NCHWC_TILE: measured on Zen 4, several output
 * blocks per tile ran a 1x1 conv 5-10% slower than one block (the weights of one block for a
 * whole chunk of input blocks stay in L1; several blocks' weight streams and partial sums do
 * not).  b=8 in AVX2 takes 2 x 6: with 1 x 8 each input channel costs 1 weight load and 8
 * broadcast loads for 8 FMAs, load-bound at 16 registers; 2 x 6 (12 accumulators, 2 weights,
 * 1 broadcast) loads 8 for 12 FMAs.  A tile of fewer output blocks (the group's last) runs 1 x
 * NCHWC_TILE.  Pixels [s0, s1) of obn output blocks, input blocks [ib0, ib1); the full tiles'
 * microkernel is inlined into the loop (a call per tile cost ~5% at 4 input blocks). */
#define NCHWC_PW_R(k)                                                                             \
    case k:                                                                                       \
        if (k < T)                                                                                \
            NB_FN(mk)(a, OBN, k < T ? k : 1, 2, X, xbase + s * NB, 0, W, bias,                    \
                      Z ? Z + s * NB : NULL, Y + s * NB, 0, 1, 0, 1, ib0, ib1, first, last);      \
        break
static NCHWC_INLINE void NB_FN(pw_tiles_t)(const NB_FN(mk_args) * a, const int OBN, const int T,
                                           const float* X, int64_t xbase, const float* W,
                                           const float* bias, const float* Z, float* Y,
                                           int64_t s0, int64_t s1, int64_t ib0, int64_t ib1,
                                           int first, int last) {
    int64_t s = s0;
    for (; s + T <= s1; s += T)
        NB_FN(mk)(a, OBN, T, 2, X, xbase + s * NB, 0, W, bias, Z ? Z + s * NB : NULL,
                  Y + s * NB, 0, 1, 0, 1, ib0, ib1, first, last);
    switch (s1 - s) {
        NCHWC_PW_R(1); NCHWC_PW_R(2); NCHWC_PW_R(3); NCHWC_PW_R(4);
        NCHWC_PW_R(5); NCHWC_PW_R(6); NCHWC_PW_R(7);
        default: break;
    }
}
#undef NCHWC_PW_R

#if NB_PW_OBN < 1 || NB_PW_OBN > 2 || NB_PW_OBN > NB_OBMAX || NB_PW_T < 1 || NB_PW_T > NCHWC_TILE
#error "pointwise tile out of range (NB_PW_OBN 1..min(2, NB_OBMAX), NB_PW_T 1..NCHWC_TILE)"
#endif
/* one out-of-line copy per tile height: the full tiles' (NB_PW_OBN) and the group's last */
static void NB_FN(pw_tiles_full)(const NB_FN(mk_args) * a, const float* X, int64_t xbase,
                                 const float* W, const float* bias, const float* Z, float* Y,
                                 int64_t s0, int64_t s1, int64_t ib0, int64_t ib1, int first,
                                 int last) {
    NB_FN(pw_tiles_t)(a, NB_PW_OBN, NB_PW_T, X, xbase, W, bias, Z, Y, s0, s1, ib0, ib1, first, last);
}
#if NB_PW_OBN > 1
static void NB_FN(pw_tiles_one)(const NB_FN(mk_args) * a, const float* X, int64_t xbase,
                                const float* W, const float* bias, const float* Z, float* Y,
                                int64_t s0, int64_t s1, int64_t ib0, int64_t ib1, int first,
                                int last) {
    NB_FN(pw_tiles_t)(a, 1, NCHWC_TILE, X, xbase, W, bias, Z, Y, s0, s1, ib0, ib1, first, last);
}
#endif

/* One output row [0, OW) of obn output blocks of a window conv, in tiles of at most NB_TMAX
 * pixels of balanced widths (7 -> 4 + 3 rather than 6 + 1); a tile with a pixel whose window
 * leaves the input (outside the interior [owlo, owhi)) runs the border copy of the
 * microkernel, a lone pixel its valid taps only; input blocks [ib0, ib1).  iw(ow) = ow*SW - PL;
 * xbase: offset of (row ih0, column 0) of the first block/channel; cstride: floats between
 * input columns (NB blocked, 1 plain). */
static void NB_FN(conv_row)(const NB_FN(mk_args) * a, int64_t obn, const float* X, int64_t xbase,
                            const float* W, const float* bias, const float* Z, float* Y,
                            int64_t OW, int64_t PL, int64_t owlo, int64_t owhi, int64_t kh0,
                            int64_t kh1, int64_t cstride, int64_t ib0, int64_t ib1) {
    const int blocked = cstride == NB;
    const int first = ib0 == 0, last = ib1 == a->nblk;
    NB_FN(mk_args) an;
    int64_t taps[2 * NCHWC_NCHW_TAPS];
    if (!blocked && (ib1 - ib0) * (kh1 - kh0) * a->KW <= NCHWC_NCHW_TAPS) {
        int64_t ib, kh, kw, n = 0;
        for (ib = ib0; ib < ib1; ++ib)
            for (kh = kh0; kh < kh1; ++kh)
                for (kw = 0; kw < a->KW; ++kw, ++n) {
                    taps[2 * n] = ib * a->xblk + kh * a->xrow + kw * a->xcol;
                    taps[2 * n + 1] = ib * a->wblk + (kh * a->KW + kw) * a->wtap;
                }
        an = *a;
        an.tap = taps;
        an.ntap = n;
        an.reps = 1;
        a = &an;
    }
    {
        /* plain input: the border pixels run alone over their valid taps and the tiles cover
         * the interior (a border tile would test every pixel's column at each of its few taps
         * per FMA); blocked input: tiles over the whole row */
        const int64_t t0 = blocked ? 0 : owlo, t1 = blocked ? OW : owhi;
        const int64_t ntiles = (t1 - t0 + NB_TMAX - 1) / NB_TMAX;
        int64_t ow, j;
        for (ow = 0; ow < OW; ++ow) {
            if (ow == t0) ow = t1;
            if (ow >= OW) break;
            {
                const int64_t iw0 = ow * a->SW - PL;
                int64_t kw0, kw1;
                onnxc_geom_valid_range(a->KW, a->IW, a->DW, iw0, &kw0, &kw1);
                NB_FN(mk_tab)[0][obn - 1][0](a, X, xbase + iw0, iw0, W, bias, Z ? Z + ow * NB : NULL,
                                             Y + ow * NB, kh0, kh1, kw0, kw1, ib0, ib1, first, last);
            }
        }
        if (NB_SIMD && !blocked && a->tap && ntiles > 0) {
            /* the balanced widths: (t1 - t0) % ntiles tiles of q + 1 pixels, then q-wide ones */
            const int64_t q = (t1 - t0) / ntiles, nq1 = (t1 - t0) % ntiles;
            an.reps = nq1;
            if (nq1)
                NB_FN(mk_tab)[0][obn - 1][q](a, X, xbase + t0 * a->SW - PL, 0, W, bias,
                                             Z ? Z + t0 * NB : NULL, Y + t0 * NB, kh0, kh1, 0,
                                             a->KW, ib0, ib1, first, last);
            an.reps = ntiles - nq1;
            ow = t0 + nq1 * (q + 1);
            NB_FN(mk_tab)[0][obn - 1][q - 1](a, X, xbase + ow * a->SW - PL, 0, W, bias,
                                             Z ? Z + ow * NB : NULL, Y + ow * NB, kh0, kh1, 0,
                                             a->KW, ib0, ib1, first, last);
            return;
        }
        for (ow = t0, j = 0; j < ntiles; ++j) {
            const int64_t T = (t1 - ow + ntiles - j - 1) / (ntiles - j);
            const int64_t iw0 = ow * a->SW - PL;
            const int64_t xoff = xbase + iw0 * cstride;
            const float* z = Z ? Z + ow * NB : NULL;
            if (ow >= owlo && ow + T <= owhi) {
                NB_FN(mk_tab)[blocked][obn - 1][T - 1](a, X, xoff, iw0, W, bias, z, Y + ow * NB, kh0,
                                                       kh1, 0, a->KW, ib0, ib1, first, last);
            } else if (T == 1) {
                int64_t kw0, kw1;
                onnxc_geom_valid_range(a->KW, a->IW, a->DW, iw0, &kw0, &kw1);
                NB_FN(mk_tab)[blocked][obn - 1][0](a, X, xoff, iw0, W, bias, z, Y + ow * NB, kh0,
                                                   kh1, kw0, kw1, ib0, ib1, first, last);
            } else {
#ifdef NCHWC_SPLIT_2_7_BN
                if (blocked && obn == 2 && T == 7)
                    NB_FN(mk_2_7_BN_split)(a, X, xoff, iw0, W, bias, z, Y + ow * NB, kh0, kh1, 0,
                                           a->KW, ib0, ib1, first, last);
                else
#endif
                NB_FN(mk_tab)[2 + blocked][obn - 1][T - 1](a, X, xoff, iw0, W, bias, z, Y + ow * NB,
                                                           kh0, kh1, 0, a->KW, ib0, ib1, first,
                                                           last);
            }
            ow += T;
        }
    }
}

#undef NCHWC_SPLIT_2_7_BN

/* Pixels [s0, s1) of obn (NB_PW_OBN, or fewer at a group's end) output blocks of a pointwise
 * conv (one long row, no borders). */
static void NB_FN(pw_run)(const NB_FN(mk_args) * a, int64_t obn, const float* X, int64_t xbase,
                          const float* W, const float* bias, const float* Z, float* Y, int64_t s0,
                          int64_t s1) {
    int64_t ib0;
    for (ib0 = 0; ib0 < a->nblk; ib0 += a->chunk) {
        const int64_t ib1 = ib0 + a->chunk < a->nblk ? ib0 + a->chunk : a->nblk;
#if NB_PW_OBN > 1
        if (obn < NB_PW_OBN) {
            /* fewer blocks than a full tile: one at a time (NB_PW_OBN 2: exactly one) */
            int64_t o;
            for (o = 0; o < obn; ++o)
                NB_FN(pw_tiles_one)(a, X, xbase, W + o * a->wob, bias ? bias + o * NB : NULL,
                                    Z ? Z + o * a->yob : NULL, Y + o * a->yob, s0, s1, ib0, ib1,
                                    ib0 == 0, ib1 == a->nblk);
            continue;
        }
#else
        (void)obn;
#endif
        NB_FN(pw_tiles_full)(a, X, xbase, W, bias, Z, Y, s0, s1, ib0, ib1, ib0 == 0, ib1 == a->nblk);
    }
}

/* Output blocks are taken NB_OBMAX at a time inside a group (a tile never spans two groups:
 * their inputs differ); ntile(Mbg) tiles per group, tile j covering blocks [j*NB_OBMAX, ...). */
static inline int64_t NB_FN(ntile)(int64_t Mbg) { return (Mbg + NB_OBMAX - 1) / NB_OBMAX; }

/* Real lanes of the last block of the tile ending at group block obe (exclusive). */
static inline int64_t NB_FN(tile_valid)(int64_t Mg, int64_t Mbg, int64_t obe) {
    return obe < Mbg ? NB : Mg - (Mbg - 1) * NB;
}

/* Pointwise (1x1, stride 1, no padding): per output block a GEMM over the blocked input
 * channels with the pixels as one long row. */
#include "onnxc_threads.h"

/* One convolution's arguments; body(job, t0, t1) runs its tasks [t0, t1), and with t1 < 0
 * decides whether to split them across the runtime's pool (onnxc_threads.h). */
typedef struct NB_FN(conv_job_s) {
    const onnxc_nchwc_conv_params* p;
    const float *X, *W, *B, *Z;
    float* Y;
    int nchw_input;
    int64_t nr; /* window convs: row ranges per output-block tile (decided with the split) */
    int rows_outer; /* window convs: tasks ordered row range-major, pointwise: pixel chunk-major
                     * (else output-tile-major) */
    void (*body)(struct NB_FN(conv_job_s) *, int64_t, int64_t);
} NB_FN(conv_job);

static void NB_FN(conv_tasks)(void* job, int64_t t0, int64_t t1) {
    ((NB_FN(conv_job)*)job)->body((NB_FN(conv_job)*)job, t0, t1);
}

static void NB_FN(conv_run)(void (*body)(NB_FN(conv_job) *, int64_t, int64_t),
                            const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                            const float* B, const float* Z, float* Y, int nchw_input) {
    NB_FN(conv_job) job;
    job.p = p; job.X = X; job.W = W; job.B = B; job.Z = Z; job.Y = Y;
    job.nchw_input = nchw_input; job.nr = 0; job.rows_outer = 0; job.body = body;
    body(&job, 0, -1);
}

/* Pixels per parallel work item: whole tiles, about NCHWC_PW_CHUNK. */
#define NB_PW_CHUNK (NCHWC_PW_CHUNK / NB_PW_T * NB_PW_T)

static void NB_FN(conv_pointwise)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group;
    const int64_t ntg = (Mbg + NB_PW_OBN - 1) / NB_PW_OBN; /* output-block tiles per group */
    const int64_t HW = p->OH * p->OW;
    const int64_t chunks = (HW + NB_PW_CHUNK - 1) / NB_PW_CHUNK;
    const int64_t total = p->N * p->group * ntg * chunks;
    const int parallel = total > 1 && p->N * Mb * HW * Cbg * NB * NB >= NCHWC_PARALLEL_MIN_WORK;
    int64_t t;
    if (t1 < 0) {
#if NB_PW_CHUNKS_OUTER
        /* Task order: pixel chunk outer, its output-block tiles inner, so the chunk's input
         * stays in L1/L2 while every tile reads it; tile-major (the other order) reads the
         * group's whole input once per tile (ResNet-50's 1x1 256->64 @56: 3.2 MB from L3 per
         * 2 output blocks).  Chunk-major re-reads a tile's weights (Cbg*NB*NB*OBN floats) per
         * chunk instead of the chunk's input (Cbg*NB*NB_PW_CHUNK floats) per tile: the smaller
         * stream whenever OBN*NB < NB_PW_CHUNK.  The order changes no output's summation. */
        job->rows_outer = 1;
#endif
        onnxc_parallel_for(total, parallel, NB_FN(conv_tasks), job);
        return;
    }
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (p->group * ntg * chunks);
        const int64_t tile = job->rows_outer ? (t / (ntg * chunks)) % p->group * ntg + t % ntg
                                             : (t / chunks) % (p->group * ntg);
        const int64_t ch = job->rows_outer ? (t / ntg) % chunks : t % chunks;
        const int64_t g = tile / ntg, obg = tile % ntg * NB_PW_OBN;
        const int64_t obe = obg + NB_PW_OBN < Mbg ? obg + NB_PW_OBN : Mbg;
        const int64_t ob = g * Mbg + obg;
        const int64_t s0 = ch * NB_PW_CHUNK;
        const int64_t s1 = s0 + NB_PW_CHUNK < HW ? s0 + NB_PW_CHUNK : HW;
        const int64_t xbase = (n * Cb + g * Cbg) * HW * NB;
        const int64_t yoff = (n * Mb + ob) * HW * NB;
        const float* bias = B ? B + ob * NB : NULL;
        const float* wb = W + ob * Cbg * NB * NB;
        NB_FN(mk_args) a;
        a.nblk = Cbg; a.xblk = HW * NB; a.wblk = NB * NB; a.wtap = NB * NB;
        a.wob = Cbg * NB * NB; a.yob = HW * NB;
        a.xrow = 0; a.xcol = 0; a.xpix = NB; a.KW = 1;
        a.valid = NB_FN(tile_valid)(Mg, Mbg, obe);
        a.lo = p->lo; a.hi = p->hi;
        a.IW = HW; a.SW = 1; a.DW = 1;
        a.tap = NULL; a.ntap = 0; a.reps = 1;
        a.chunk = NB_FN(chunk)(NCHWC_PW_CHUNK_WEIGHTS, NB * NB, (int)(obe - obg));
        NB_FN(pw_run)(&a, obe - obg, X, xbase, wb, bias, Z ? Z + yoff : NULL, Y + yoff, s0, s1);
    }
}
#undef NB_PW_CHUNK

/* Row ranges per output-block tile (of OH rows; Q tiles of whole images) for P threads: the
 * pool claims a loop's n = Q * nr tasks in c = min(n, 4P) chunks whose sizes differ by at most
 * one task (threads.c), so a thread may take ceil(c/P) chunks, the n % c larger ones first.
 * Keeps nr when that busiest share of rows (each range at most ceil(OH/nr) rows) is already
 * the smallest, else takes the nr with the smallest such share, the one nearest nr first.  The split does not change any output's summation: a task covers whole rows
 * of whole tiles and sums every input-block chunk of them in order. */
static int64_t NB_FN(split_rows)(int64_t Q, int64_t OH, int64_t nr0, int P) {
    int64_t best = nr0, bcost = 0, d;
    if (P <= 1) return nr0;
    for (d = 0; d < 2 * OH; ++d) {
        /* candidates nr0, nr0 + 1, nr0 - 1, nr0 + 2, ... */
        const int64_t k = d % 2 ? nr0 + (d + 1) / 2 : nr0 - d / 2;
        int64_t n, c, per, cost;
        if (k < 1 || k > OH) continue;
        n = Q * k;
        c = n < 4 * (int64_t)P ? n : 4 * (int64_t)P;
        per = (c + P - 1) / P;
        cost = (per * (n / c) + (n % c < per ? n % c : per)) * ((OH + k - 1) / k);
        if (d == 0 || cost < bcost) {
            best = k;
            bcost = cost;
        }
    }
    return best;
}

/* Direct (blocked input) and plain-NCHW-input convolutions share the row driver; they differ in
 * what one "input block" is (NB channels of a blocked plane, or one plain channel plane). */
static void NB_FN(conv_window)(NB_FN(conv_job) * job, int64_t t0, int64_t t1) {
    const onnxc_nchwc_conv_params* p = job->p;
    const float *X = job->X, *W = job->W, *B = job->B, *Z = job->Z;
    float* Y = job->Y;
    const int nchw_input = job->nchw_input;
    const int64_t Cg = p->C / p->group, Mg = p->M / p->group;
    const int64_t Cbg = (Cg + NB - 1) / NB, Mbg = (Mg + NB - 1) / NB;
    const int64_t Cb = Cbg * p->group, Mb = Mbg * p->group, nt = NB_FN(ntile)(Mbg);
    const int64_t IH = p->IH, IW = p->IW, OH = p->OH, OW = p->OW, KH = p->KH, KW = p->KW;
    const int64_t cstride = nchw_input ? 1 : NB;
    const int64_t Q = p->N * p->group * nt; /* tasks of whole images */
    int64_t owlo, owhi, t, nr;
    /* interior columns: every tap of the window inside [0, IW) */
    onnxc_geom_valid_range(OW, IW - (KW - 1) * p->DW, p->SW, -p->PL, &owlo, &owhi);
    if (t1 < 0) {
        /* rows per task: at least ~NCHWC_WINDOW_PIXELS output pixels, so that on small images
         * (7x7, 14x14) a chunk's weights serve several rows from L2 instead of streaming from
         * L3 per row; across threads, row ranges that balance (NB_FN(split_rows)) */
        const int64_t R = OH < (NCHWC_WINDOW_PIXELS + OW - 1) / OW ? OH : (NCHWC_WINDOW_PIXELS + OW - 1) / OW;
        const int parallel = Q * ((OH + R - 1) / R) > 1 &&
                             p->N * Mb * OH * OW * Cg * NB * KH * KW >= NCHWC_PARALLEL_MIN_WORK;
        nr = (OH + R - 1) / R;
        if (parallel) nr = NB_FN(split_rows)(Q, OH, nr, onnxc_rt_threads_usable());
        job->nr = nr;
#if NB_WINDOW_ROWS_OUTER
        {
            /* Task order: tile-major reads a group's whole input once per output-block tile,
             * row-major its weights once per row range; take the smaller stream.  With b=8
             * tiles of 16 output channels, tile-major streamed ResNet-50's stride-2 1x1 input
             * (56x56x256) 32 times.  The order changes no output's summation. */
            const int64_t cin = nchw_input ? Cg : Cbg * NB;
            const double xbytes = (double)cin * IH * IW * sizeof(float);
            const double wbytes = (double)Mbg * NB * cin * KH * KW * sizeof(float);
            job->rows_outer = (double)nr * wbytes < (double)nt * xbytes;
        }
#endif
        onnxc_parallel_for(Q * nr, parallel, NB_FN(conv_tasks), job);
        return;
    }
    nr = job->nr;
    for (t = t0; t < t1; ++t) {
        const int64_t n = t / (p->group * nt * nr), g = (t / (nt * nr)) % p->group;
        /* row range r of nr: sizes differ by at most one row */
        const int64_t r = job->rows_outer ? (t / nt) % nr : t % nr;
        const int64_t j = job->rows_outer ? t % nt : (t / nr) % nt;
        const int64_t oh0 = r * OH / nr, oh1 = (r + 1) * OH / nr;
        const int64_t obg = j * NB_OBMAX, obe = obg + NB_OBMAX < Mbg ? obg + NB_OBMAX : Mbg;
        const int64_t ob = g * Mbg + obg;
        NB_FN(mk_args) a;
        int64_t xbase, ib0, oh;
        const float* wb;
        if (nchw_input) {
            a.nblk = p->C; a.xblk = IH * IW; a.wblk = KH * KW * NB; a.wtap = NB;
            a.wob = p->C * KH * KW * NB;
            xbase = n * p->C * IH * IW;
        } else {
            a.nblk = Cbg; a.xblk = IH * IW * NB; a.wblk = KH * KW * NB * NB; a.wtap = NB * NB;
            a.wob = Cbg * KH * KW * NB * NB;
            xbase = (n * Cb + g * Cbg) * IH * IW * NB;
        }
        wb = W + ob * a.wob;
        a.yob = OH * OW * NB;
        a.xrow = p->DH * IW * cstride; a.xcol = p->DW * cstride; a.xpix = p->SW * cstride;
        a.KW = KW; a.lo = p->lo; a.hi = p->hi;
        a.valid = NB_FN(tile_valid)(Mg, Mbg, obe);
        a.chunk = NB_FN(chunk)(NCHWC_WINDOW_CHUNK_WEIGHTS, a.wblk, (int)(obe - obg));
        a.IW = IW; a.SW = p->SW; a.DW = p->DW;
        a.tap = NULL; a.ntap = 0; a.reps = 1;
        for (ib0 = 0; ib0 < a.nblk; ib0 += a.chunk) {
            const int64_t ib1 = ib0 + a.chunk < a.nblk ? ib0 + a.chunk : a.nblk;
            for (oh = oh0; oh < oh1; ++oh) {
                const int64_t ih0 = oh * p->SH - p->PT;
                const int64_t yoff = ((n * Mb + ob) * OH + oh) * OW * NB;
                int64_t kh0, kh1;
                onnxc_geom_valid_range(KH, IH, p->DH, ih0, &kh0, &kh1);
                NB_FN(conv_row)(&a, obe - obg, X, xbase + ih0 * IW * cstride, wb,
                                B ? B + ob * NB : NULL, Z ? Z + yoff : NULL, Y + yoff, OW, p->PL,
                                owlo, owhi, kh0, kh1, cstride, ib0, ib1);
            }
        }
    }
}

void NCHWC_CONV(const onnxc_nchwc_conv_params* p, const float* X, const float* W, const float* B,
                const float* Z, float* Y) {
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    if (p->KH == 1 && p->KW == 1 && p->SH == 1 && p->SW == 1 && p->PT == 0 && p->PL == 0 &&
        p->OH == p->IH && p->OW == p->IW)
        NB_FN(conv_run)(NB_FN(conv_pointwise), p, X, W, B, Z, Y, 0);
    else
        NB_FN(conv_run)(NB_FN(conv_window), p, X, W, B, Z, Y, 0);
}

/* Strided 1x1 convs: the sampled pixels, gathered into S ([N, Cb, OH, OW, NB]), then the
 * pointwise path on them.  The window path ran them at half the pointwise path's speed at b=8
 * (ResNet-50's downsample convs, 256->512 at 56->28: 49 against 97 GFLOP/s for the same
 * multiply-adds as a pointwise conv): its tiles follow output rows (7 wide: 4 + 3 pixels), its
 * weights stream from L2 per tile, and each input cache line it loads holds one used pixel.
 * The gather reads the input once; the conv's sums are the pointwise path's. */
typedef struct {
    const onnxc_nchwc_conv_params* p;
    const float* X;
    float* S;
    int64_t Cb;
} NB_FN(sub_job);

static void NB_FN(sub_rows)(void* vjob, int64_t t0, int64_t t1) {
    const NB_FN(sub_job)* job = (const NB_FN(sub_job)*)vjob;
    const onnxc_nchwc_conv_params* p = job->p;
    const int64_t OH = p->OH, OW = p->OW;
    int64_t t, ow;
    int l;
    for (t = t0; t < t1; ++t) { /* t = (n * Cb + cb) * OH + oh */
        const float* x = job->X + ((t / OH) * p->IH + (t % OH) * p->SH) * p->IW * NB;
        float* s = job->S + t * OW * NB;
        for (ow = 0; ow < OW; ++ow)
            for (l = 0; l < NB; ++l) s[ow * NB + l] = x[ow * p->SW * NB + l];
    }
}

void NCHWC_CONV_SUBSAMPLE(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                          const float* B, const float* Z, float* Y, float* S) {
    NB_FN(sub_job) job;
    onnxc_nchwc_conv_params q;
    int64_t rows;
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    if (!NB_SUBSAMPLE || p->KH != 1 || p->KW != 1 || p->PT != 0 || p->PL != 0 || (p->OH - 1) * p->SH >= p->IH ||
        (p->OW - 1) * p->SW >= p->IW) {
        NCHWC_CONV(p, X, W, B, Z, Y); /* a pixel reads padding: not a plain subsample */
        return;
    }
    job.p = p; job.X = X; job.S = S;
    job.Cb = (p->C / p->group + NB - 1) / NB * p->group;
    rows = p->N * job.Cb * p->OH;
    onnxc_parallel_for(rows, rows > 1 && rows * p->OW * NB >= NCHWC_PARALLEL_MIN_WORK / 4,
                       NB_FN(sub_rows), &job);
    q = *p;
    q.IH = p->OH; q.IW = p->OW; q.SH = 1; q.SW = 1; q.DH = 1; q.DW = 1;
    NB_FN(conv_run)(NB_FN(conv_pointwise), &q, S, W, B, Z, Y, 0);
}

void NCHWC_CONV_NCHW(const onnxc_nchwc_conv_params* p, const float* X, const float* W,
                     const float* B, const float* Z, float* Y) {
    if (p->N <= 0 || p->M <= 0 || p->OH <= 0 || p->OW <= 0) return;
    NB_FN(conv_run)(NB_FN(conv_window), p, X, W, B, Z, Y, 1);
}

#undef NCHWC_CONV
#undef NCHWC_CONV_NCHW
#undef NCHWC_CONV_SUBSAMPLE
