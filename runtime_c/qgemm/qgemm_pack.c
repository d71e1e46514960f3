/* Packing of B for the int8 GEMM at run time (a B that is not a constant, e.g. MatMulInteger
 * between two activations). Layout: onnxc_qgemm.h. compiler/kernels/qgemm.py packs constant B
 * at compile time into the same bytes (tests/kernels/test_qgemm.py checks both agree). */
#include <stdlib.h>
#include <string.h>

#include "onnxc_qgemm.h"

#define PANEL ONNXC_QPACK_PANEL

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Stored value at (k, n): B itself, or B ^ 0x80 when the kernel wants the other signedness. */
static int32_t stored(const uint8_t* B, int64_t ldb, int transB, int b_signed, int store_u8,
                      int64_t k, int64_t n) {
    const uint8_t x = transB ? B[n * ldb + k] : B[k * ldb + n];
    const uint8_t s = (uint8_t)(x ^ (b_signed == store_u8 ? 0x80 : 0x00));
    return store_u8 ? (int32_t)s : (int32_t)(int8_t)s;
}

/* Pair-safe split of the pair (b0, b1) (rows 2i, 2i+1 of a column): b1 shrunk toward 0 until
 * |b0| + |b1| <= 128; returns the stored b1 (the correction is the difference). */
static int32_t pair_safe_b1(int32_t b0, int32_t b1) {
    const int32_t a0 = b0 < 0 ? -b0 : b0, a1 = b1 < 0 ? -b1 : b1;
    if (a0 + a1 <= 128) return b1;
    return b1 < 0 ? -(128 - a0) : 128 - a0;
}

static int64_t count_corrections(int64_t K, int64_t N, const uint8_t* B, int64_t ldb, int transB,
                                 int b_signed) {
    int64_t n, k, c = 0;
    for (n = 0; n < N; ++n)
        for (k = 0; k + 1 < K; k += 2) {
            const int32_t b0 = stored(B, ldb, transB, b_signed, 0, k, n);
            const int32_t b1 = stored(B, ldb, transB, b_signed, 0, k + 1, n);
            c += pair_safe_b1(b0, b1) != b1;
        }
    return c;
}

static void layout(const onnxc_qgemm_kernel* kern, int64_t K, int64_t N, int64_t ncorr,
                   onnxc_qgemm_packed_header* h) {
    memset(h, 0, sizeof(*h));
    h->magic = (uint32_t)ONNXC_QPACK_MAGIC;
    h->flags = kern->pack_flags & (ONNXC_QPACK_B_U8 | ONNXC_QPACK_PAIRSAFE | ONNXC_QPACK_K2);
    h->K = K;
    h->N = N;
    h->Kp = round_up(K, ONNXC_QPACK_KALIGN);
    h->Np = round_up(N, PANEL);
    h->ncorr = ncorr;
    h->colsum_off = ONNXC_QPACK_HEADER;
    h->zb_off = h->colsum_off + 4 * h->Np;
    h->panels_off = round_up(h->zb_off + 4 * h->Np, 64);
    h->corr_off = h->panels_off + h->Np * h->Kp;
    h->total_bytes = round_up(h->corr_off + ((h->flags & ONNXC_QPACK_PAIRSAFE)
                                                 ? 4 * (h->Np / PANEL + 1) + 12 * ncorr : 0), 64);
}

size_t onnxc_qgemm_packed_bytes(const onnxc_qgemm_kernel* kern, int64_t K, int64_t N,
                                const void* B, int64_t ldb, int transB, int b_signed) {
    onnxc_qgemm_packed_header h;
    const int64_t nc = (kern->pack_flags & ONNXC_QPACK_PAIRSAFE)
                           ? count_corrections(K, N, (const uint8_t*)B, ldb, transB, b_signed) : 0;
    layout(kern, K, N, nc, &h);
    return (size_t)h.total_bytes;
}

void onnxc_qgemm_pack_b(const onnxc_qgemm_kernel* kern, int64_t K, int64_t N, const void* Bv,
                        int64_t ldb, int transB, int b_signed, const int32_t* zb,
                        int zb_per_column, void* dst) {
    const uint8_t* B = (const uint8_t*)Bv;
    const int store_u8 = (kern->pack_flags & ONNXC_QPACK_B_U8) != 0;
    const int pairsafe = (kern->pack_flags & ONNXC_QPACK_PAIRSAFE) != 0;
    const int64_t kg = (kern->pack_flags & ONNXC_QPACK_K2) ? 2 : 4; /* k per group */
    const int32_t shift = b_signed == store_u8 ? (b_signed ? 128 : -128) : 0;
    onnxc_qgemm_packed_header h;
    uint8_t* out = (uint8_t*)dst;
    int32_t *colsum, *zbs, *index = NULL, *ent = NULL;
    int64_t n, k, e = 0;
    layout(kern, K, N, pairsafe ? count_corrections(K, N, B, ldb, transB, b_signed) : 0, &h);
    if (zb_per_column) h.flags |= ONNXC_QPACK_ZB_PER_COLUMN;
    memset(out, 0, (size_t)h.total_bytes);
    memcpy(out, &h, sizeof(h));
    colsum = (int32_t*)(out + h.colsum_off);
    zbs = (int32_t*)(out + h.zb_off);
    if (pairsafe) {
        index = (int32_t*)(out + h.corr_off);
        ent = index + h.Np / PANEL + 1;
    }
    for (n = 0; n < N; ++n) {
        uint8_t* panel = out + h.panels_off + (n / PANEL) * h.Kp * PANEL;
        const int64_t j = n % PANEL;
        int32_t s = 0;
        if (pairsafe && j == 0) index[n / PANEL] = (int32_t)e;
        zbs[n] = (zb ? zb[zb_per_column ? n : 0] : 0) + shift;
        for (k = 0; k < K; ++k) {
            int32_t v = stored(B, ldb, transB, b_signed, store_u8, k, n), p = v;
            s += v;
            if (pairsafe && (k & 1)) {
                p = pair_safe_b1(stored(B, ldb, transB, b_signed, store_u8, k - 1, n), v);
                if (p != v) {
                    ent[3 * e] = (int32_t)k;
                    ent[3 * e + 1] = (int32_t)n;
                    ent[3 * e + 2] = v - p;
                    ++e;
                }
            }
            panel[(k / kg) * kg * PANEL + j * kg + (k % kg)] = (uint8_t)p;
        }
        colsum[n] = s;
    }
    if (pairsafe) {
        for (n = (N + PANEL - 1) / PANEL; n <= h.Np / PANEL; ++n) index[n] = (int32_t)e;
    }
}
