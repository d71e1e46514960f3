/* Internal to runtime_c/qnbits: facts every MatMulNBits kernel shares (the contract itself is in
 * onnxc_quant.h, onnxc_q4_args).
 *
 * Layout reminders: B row n is kb * block / 2 bytes (block b at n * bpr + b * block / 2), element
 * k of a block in nibble k & 1 of byte k / 2. A (fp32 or its int8 quantization) is permuted in
 * groups of 32 elements (kp = kb * block rounded up to 32, zero-padded): the 16 bytes of B covering
 * a group give, low nibbles first, the weights of the group's even elements, high nibbles its odd
 * ones, and A holds the group as [16 even elements | 16 odd elements], so low nibble j meets A[j]
 * and high nibble j meets A[16 + j]. A block of 16 is half a group.
 *
 * accuracy 4 follows onnxruntime's MLAS (QuantizeARow_CompInt8 and the BlkSum kernels):
 *   C[m][n] = sum_b sa[m][b] * sb[n][b] * sum_k qa * qb  +  sum_b bsum[m][b] * (-zp[n][b] * sb[n][b])
 * with bsum = sa * sum_k qa, i.e. sum_b sa * sb * sum_k qa * (qb - zp): the zero point's share is
 * taken out in fp32 per block, as MLAS does, so the two round alike. */
#ifndef ONNXC_Q4_IMPL_H
#define ONNXC_Q4_IMPL_H

#include "onnxc_quant.h"
#include "../quant/q_isa.h"

/* Loops over the rows and columns of a register tile must be unrolled, or the accumulators they
 * index stay in memory (GCC does not unroll them on its own at -O3). */
#if defined(__GNUC__) || defined(__clang__)
#define Q4_UNROLL _Pragma("GCC unroll 4")
#else
#define Q4_UNROLL
#endif

/* B rows are short streams (K/2 bytes per column, at a stride): the tiles prefetch the rows of the
 * next tile while they compute (one line per 64 bytes of progress), or every new row starts with a
 * cache miss the hardware prefetcher has not seen coming (11008 x 4096 at accuracy 4 streamed at
 * 6 GB/s without, against 12 GB/s for the fp32 GEMV's one long stream). Prefetches never fault. */
#if defined(__GNUC__) || defined(__clang__)
#define Q4_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
#else
#define Q4_PREFETCH(p) ((void)0)
#endif

Q_INLINE int64_t q4_kb(const onnxc_q4_weights* w) { return (w->K + w->block - 1) / w->block; }

/* Elements of a prepared row of A: whole blocks, rounded up to whole groups of 32. */
Q_INLINE int64_t q4_kp(const onnxc_q4_weights* w) { return (q4_kb(w) * w->block + 31) & ~(int64_t)31; }

/* Where element k of a row sits in the permuted row. */
Q_INLINE int64_t q4_pos(int64_t k) { return (k & ~(int64_t)31) + ((k & 1) << 4) + ((k & 31) >> 1); }

/* Zero point of column n, block b, as a float (8 when the node has none). */
Q_INLINE float q4_zp(const onnxc_q4_weights* w, int64_t kb, int64_t n, int64_t b) {
    if (w->zp_u4) {
        const uint8_t v = w->zp_u4[n * ((kb + 1) / 2) + (b >> 1)];
        return (float)((v >> ((b & 1) * 4)) & 0xF);
    }
    if (w->zp_f32) return w->zp_f32[n * kb + b];
    return 8.0f;
}

/* sum_b bsum[b] * (-zp[n][b] * sb[n][b]): the zero-point term of one (row, column) at accuracy 4. */
Q_INLINE float q4_zp_term(const onnxc_q4_weights* w, int64_t kb, int64_t n, const float* bsum) {
    const float* sb = w->scales + n * kb;
    float t = 0.0f;
    int64_t b;
    for (b = 0; b < kb; ++b) t += bsum[b] * (-q4_zp(w, kb, n, b) * sb[b]);
    return t;
}

#endif
