/* Packing of convolution weights at run time (weights that are not constants). The compiler
 * packs constant weights into the same bytes (compiler/kernels/qconv.py; tests check both agree).
 * Layouts: onnxc_qconv.h (depthwise "OQD1") and onnxc_qgemm.h (one "OQB1" per group). */
#include <string.h>

#include "onnxc_qconv.h"

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* group g of w[M][Cg][KH][KW] as B[K][Mg], k = (kh*KW + kw)*Cg + c */
static void reorder(const uint8_t* w, int64_t Mg, int64_t Cg, int64_t T, int64_t g, uint8_t* B) {
    int64_t m, c, t;
    for (m = 0; m < Mg; ++m)
        for (c = 0; c < Cg; ++c)
            for (t = 0; t < T; ++t) B[(t * Cg + c) * Mg + m] = w[((g * Mg + m) * Cg + c) * T + t];
}

size_t onnxc_qconv_packed_bytes(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t Cg, int64_t KH,
                                int64_t KW, int64_t group, const void* w, int w_signed, void* scratch) {
    const int64_t Mg = M / group, T = KH * KW;
    size_t total = 0;
    int64_t g;
    for (g = 0; g < group; ++g) {
        reorder((const uint8_t*)w, Mg, Cg, T, g, (uint8_t*)scratch);
        total += onnxc_qgemm_packed_bytes(kernel, T * Cg, Mg, scratch, Mg, 0, w_signed);
    }
    return total;
}

void onnxc_qconv_pack_w(const onnxc_qgemm_kernel* kernel, int64_t M, int64_t Cg, int64_t KH,
                        int64_t KW, int64_t group, const void* w, int w_signed, const int32_t* wz,
                        int wz_per_channel, void* scratch, void* dst) {
    const int64_t Mg = M / group, T = KH * KW;
    uint8_t* out = (uint8_t*)dst;
    int64_t g;
    for (g = 0; g < group; ++g) {
        const int32_t* z = wz ? (wz_per_channel ? wz + g * Mg : wz) : NULL;
        reorder((const uint8_t*)w, Mg, Cg, T, g, (uint8_t*)scratch);
        /* per column only with more than one column (as the Python packer's flag) */
        onnxc_qgemm_pack_b(kernel, T * Cg, Mg, scratch, Mg, 0, w_signed, z, wz_per_channel && Mg > 1, out);
        out += ((const onnxc_qgemm_packed_header*)out)->total_bytes;
    }
}

size_t onnxc_qconv_dw_packed_bytes(int64_t C, int64_t KH, int64_t KW) {
    const int64_t Cp = round_up(C, ONNXC_QDW_CALIGN);
    return (size_t)(ONNXC_QDW_HEADER + 4 * Cp * (1 + KH * KW + KH / 2 * KW));
}

void onnxc_qconv_pack_dw(int64_t C, int64_t KH, int64_t KW, const void* wv, int w_signed,
                         const int32_t* wz, int wz_per_channel, void* dst) {
    const uint8_t* w = (const uint8_t*)wv;
    const int64_t Cp = round_up(C, ONNXC_QDW_CALIGN), T = KH * KW;
    onnxc_qconv_dw_header h;
    uint8_t* out = (uint8_t*)dst;
    int32_t* wsum = (int32_t*)(out + ONNXC_QDW_HEADER);
    int32_t* wq = wsum + Cp;
    int32_t* wp = wq + T * Cp;
    int64_t c, t;
    memset(out, 0, onnxc_qconv_dw_packed_bytes(C, KH, KW));
    memset(&h, 0, sizeof(h));
    h.magic = (uint32_t)ONNXC_QDW_MAGIC;
    h.C = C;
    h.Cp = Cp;
    h.KH = KH;
    h.KW = KW;
    h.total_bytes = (int64_t)onnxc_qconv_dw_packed_bytes(C, KH, KW);
    memcpy(out, &h, sizeof(h));
    for (c = 0; c < C; ++c) {
        const int32_t z = wz ? wz[wz_per_channel ? c : 0] : 0;
        int32_t s = 0;
        for (t = 0; t < T; ++t) {
            const uint8_t b = w[c * T + t];
            const int32_t d = (w_signed ? (int32_t)(int8_t)b : (int32_t)b) - z;
            wq[t * Cp + c] = (int32_t)(uint16_t)(int16_t)d;
            s += d;
        }
        wsum[c] = s;
        for (t = 0; t < KH / 2 * KW; ++t) {
            const int64_t p = t / KW, kw = t % KW;
            wp[t * Cp + c] = (int32_t)((uint32_t)wq[(2 * p * KW + kw) * Cp + c] |
                                       ((uint32_t)wq[((2 * p + 1) * KW + kw) * Cp + c] << 16));
        }
    }
}
