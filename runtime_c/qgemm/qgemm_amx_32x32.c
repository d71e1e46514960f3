/* AMX-INT8 GEMM microkernels (Sapphire Rapids and later): a 32 x 32 tile of int32 as 2 x 2
 * accumulator tiles (tmm0-3, 16 rows x 16 int32 each), two A tiles (tmm4-5: 16 rows x 64 bytes,
 * loaded from A in place with stride lda) and two B tiles (tmm6-7: 16 groups of 4 k x 16
 * columns, one contiguous KiB of a packed panel, which is why the packed K is a multiple of 64).
 * Per 64 k: 4 tile loads, 4 tdpbusd (u8s8) / tdpbsud (s8s8: int8 A, B stored as uint8), i.e.
 * 65536 multiply-adds. Partial row tiles and the K tail go through a zero-padded copy of A
 * (tiles load 16 full rows of 64 bytes); partial C tiles through a 32 x 32 buffer, which also
 * adds the accumulator start (col + row * zbn: the tiles start at zero).
 *
 * Tiles need the OS permission (onnxc_qgemm_amx_ready, in the driver) and a tile configuration
 * on the running thread: the driver brackets every task with onnxc_qgemm_amx_begin_/_end_
 * (ldtilecfg ... tilerelease), so a configuration left by other code on the thread (e.g.
 * onnxruntime's AMX kernels in the same process) is never relied on. Contract: onnxc_qgemm.h. */
#include "qgemm_kernel.h"

#if defined(QGEMM_AMX)

#include <immintrin.h>

#ifndef QGEMM_AMX_KC
#define QGEMM_AMX_KC 1024 /* K block (the driver's unit of K) */
#endif
#define MR 32
#define NR 32

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg_t;

void onnxc_qgemm_amx_begin_(void);
void onnxc_qgemm_amx_end_(void);

/* every tile 16 rows x 64 bytes; a constant (GCC 12 drops stores into a local config as dead:
 * it does not see ldtilecfg read them) */
static const tilecfg_t tile_config QGEMM_ALIGN64 = {
    1, 0, {0}, {64, 64, 64, 64, 64, 64, 64, 64}, {16, 16, 16, 16, 16, 16, 16, 16}};

void onnxc_qgemm_amx_begin_(void) { _tile_loadconfig(&tile_config); }

void onnxc_qgemm_amx_end_(void) { _tile_release(); }

/* rows [r0, r0 + n) of A, bytes [k, k + w), into a zero-padded 16 x 64 buffer */
QGEMM_INLINE void copy_a(uint8_t* buf, const uint8_t* A, int64_t lda, int64_t n, int64_t w) {
    int64_t i;
    for (i = 0; i < n; ++i) {
        memcpy(buf + i * 64, A + i * lda, (size_t)w);
        if (w < 64) memset(buf + i * 64 + w, 0, (size_t)(64 - w));
    }
}

/* C[i][j] = src[i][j] + (col ? col[j] + (row ? row[i] * zbn[j] : 0) : 0) for i < mr, j < nr
 * (src may be C) */
static void add_start_values(int64_t mr, int64_t nr, const int32_t* src, int64_t lds, int32_t* C,
                             int64_t ldc, const int32_t* col, const int32_t* row, const int32_t* zbn) {
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0;
    const __m512i v0 = col ? _mm512_maskz_loadu_epi32(m0, col) : _mm512_setzero_si512();
    const __m512i v1 = col ? _mm512_maskz_loadu_epi32(m1, col + 16) : _mm512_setzero_si512();
    const __m512i z0 = col && row ? _mm512_maskz_loadu_epi32(m0, zbn) : _mm512_setzero_si512();
    const __m512i z1 = col && row ? _mm512_maskz_loadu_epi32(m1, zbn + 16) : _mm512_setzero_si512();
    int64_t i;
    for (i = 0; i < mr; ++i) {
        __m512i x0 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m0, src + i * lds), v0);
        __m512i x1 = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m1, src + i * lds + 16), v1);
        if (col && row) {
            const __m512i r = _mm512_set1_epi32(row[i]);
            x0 = _mm512_add_epi32(x0, _mm512_mullo_epi32(r, z0));
            x1 = _mm512_add_epi32(x1, _mm512_mullo_epi32(r, z1));
        }
        _mm512_mask_storeu_epi32(C + i * ldc, m0, x0);
        _mm512_mask_storeu_epi32(C + i * ldc + 16, m1, x1);
    }
}

#define DP(c, a, b)                      \
    do {                                 \
        if (s8) _tile_dpbsud(c, a, b);   \
        else _tile_dpbusd(c, a, b);      \
    } while (0)

QGEMM_INLINE void kernel(const int s8, int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                         int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C, int64_t ldc,
                         const int32_t* col, const int32_t* row, const int32_t* zbn) {
    uint8_t abuf[2][16 * 64] QGEMM_ALIGN64;
    int32_t cbuf[32 * 32] QGEMM_ALIGN64;
    const int two_r = mr > 16, two_c = nr > 16, full = mr == 32 && nr == 32;
    /* no per-row term: the start is col[] in every row (the usual u8s8 case, zero points of
     * symmetric int8 weights are 0) */
    const int same_start = col && !row && nr == NR;
    const int add_start = col && !same_start; /* start added when the tiles are stored */
    const int64_t r1 = mr - 16; /* rows of the second row tile */
    const uint8_t* B1 = B + bstride;
    int64_t k, i;
    if (mr < 16) memset(abuf[0] + mr * 64, 0, (size_t)(16 - mr) * 64);
    if (two_r && r1 < 16) memset(abuf[1] + r1 * 64, 0, (size_t)(16 - r1) * 64);
    if (same_start) { /* every row starts at col[]: rows of stride 0 */
        _tile_loadd(0, col, 0);
        _tile_loadd(1, col + 16, 0);
        _tile_loadd(2, col, 0);
        _tile_loadd(3, col + 16, 0);
    } else if (col) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
    } else if (full) {
        _tile_loadd(0, C, ldc * 4);
        _tile_loadd(1, C + 16, ldc * 4);
        _tile_loadd(2, C + 16 * ldc, ldc * 4);
        _tile_loadd(3, C + 16 * ldc + 16, ldc * 4);
    } else {
        memset(cbuf, 0, sizeof(cbuf));
        for (i = 0; i < mr; ++i) memcpy(cbuf + i * 32, C + i * ldc, (size_t)nr * 4);
        _tile_loadd(0, cbuf, 128);
        _tile_loadd(1, cbuf + 16, 128);
        _tile_loadd(2, cbuf + 16 * 32, 128);
        _tile_loadd(3, cbuf + 16 * 32 + 16, 128);
    }
    for (k = 0; k < kc; k += 64) {
        const int64_t w = kc - k < 64 ? kc - k : 64; /* < 64: the K tail, B zero past K */
        if (mr >= 16 && w == 64) {
            _tile_loadd(4, A + k, lda);
        } else {
            copy_a(abuf[0], A + k, lda, mr < 16 ? mr : 16, w);
            _tile_loadd(4, abuf[0], 64);
        }
        if (two_r) {
            if (r1 == 16 && w == 64) {
                _tile_loadd(5, A + 16 * lda + k, lda);
            } else {
                copy_a(abuf[1], A + 16 * lda + k, lda, r1, w);
                _tile_loadd(5, abuf[1], 64);
            }
        }
        _tile_loadd(6, B + k * 16, 64);
        DP(0, 4, 6);
        if (two_c) {
            _tile_loadd(7, B1 + k * 16, 64);
            DP(1, 4, 7);
        }
        if (two_r) {
            DP(2, 5, 6);
            if (two_c) DP(3, 5, 7);
        }
    }
    if (full) {
        _tile_stored(0, C, ldc * 4);
        _tile_stored(1, C + 16, ldc * 4);
        _tile_stored(2, C + 16 * ldc, ldc * 4);
        _tile_stored(3, C + 16 * ldc + 16, ldc * 4);
        if (add_start) add_start_values(32, 32, C, ldc, C, ldc, col, row, zbn);
        return;
    }
    _tile_stored(0, cbuf, 128);
    if (two_c) _tile_stored(1, cbuf + 16, 128);
    if (two_r) {
        _tile_stored(2, cbuf + 16 * 32, 128);
        if (two_c) _tile_stored(3, cbuf + 16 * 32 + 16, 128);
    }
    add_start_values(mr, nr, cbuf, 32, C, ldc, add_start ? col : NULL, row, zbn);
}

void onnxc_u8s8_gemm_32x32__amx(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                int64_t ldc, const int32_t* col, const int32_t* row,
                                const int32_t* zbn) {
    kernel(0, mr, nr, kc, A, lda, B, bstride, C, ldc, col, row, zbn);
}

void onnxc_s8s8_gemm_32x32__amx(int64_t mr, int64_t nr, int64_t kc, const uint8_t* A,
                                int64_t lda, const uint8_t* B, int64_t bstride, int32_t* C,
                                int64_t ldc, const int32_t* col, const int32_t* row,
                                const int32_t* zbn) {
    kernel(1, mr, nr, kc, A, lda, B, bstride, C, ldc, col, row, zbn);
}

ONNXC_QGEMM_INFO(onnxc_u8s8_gemm_32x32__amx, MR, NR, QGEMM_AMX_KC, 0, 0, 0, 1, &onnxc_u8s8_gemm_12x32__avx512vnni_info);
ONNXC_QGEMM_INFO(onnxc_s8s8_gemm_32x32__amx, MR, NR, QGEMM_AMX_KC, 1, 0, ONNXC_QPACK_B_U8, 1,
                 &onnxc_s8s8_gemm_12x32__avx512vnni_info);

#endif
