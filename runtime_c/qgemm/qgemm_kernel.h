/* Internal to runtime_c/qgemm: which ISAs this build enables (one place for the macros every
 * kernel file tests) and helpers shared by the kernels. The contract of a microkernel is in
 * onnxc_qgemm.h (onnxc_qgemm_ukernel_fn). */
#ifndef ONNXC_QGEMM_KERNEL_H
#define ONNXC_QGEMM_KERNEL_H

#include <stdint.h>
#include <string.h>

#include "onnxc_isa.h"
#include "onnxc_qgemm.h"

/* The rows of the ISA table the build enables (onnxc_isa.h, generated from compiler/isa.py). */
#if ONNXC_HAS_AVX2
#define QGEMM_AVX2 1
#endif
#if ONNXC_HAS_AVX2VNNI
#define QGEMM_AVX2VNNI 1
#endif
#if ONNXC_HAS_AVX512
#define QGEMM_AVX512 1
#endif
#if ONNXC_HAS_AVX512VNNI
#define QGEMM_AVX512VNNI 1
#endif
/* tiles also need Linux's permission request (arch_prctl), hence x86-64 Linux only */
#if ONNXC_HAS_AMX && defined(__x86_64__) && defined(__linux__)
#define QGEMM_AMX 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define QGEMM_INLINE static inline __attribute__((always_inline))
#define QGEMM_ALIGN64 __attribute__((aligned(64)))
#else
#define QGEMM_INLINE static inline
#define QGEMM_ALIGN64
#endif

#define QGEMM_PANEL_BYTES(Kp) ((int64_t)(Kp) * ONNXC_QPACK_PANEL)

/* The 4 bytes of row `i` at k .. k+3 as one little-endian word, reading only the first `n`
 * (1..4) of them (the last k group of a K that is not a multiple of 4: no read past the row). */
QGEMM_INLINE uint32_t qgemm_load4(const uint8_t* p, int64_t n) {
    uint32_t v = 0;
    if (n >= 4) {
        memcpy(&v, p, 4);
    } else {
        int64_t t;
        for (t = 0; t < n; ++t) v |= (uint32_t)p[t] << (8 * t);
    }
    return v;
}

/* Descriptor of a kernel: ONNXC_QGEMM_INFO(name, mr, nr, kc, a_signed, a_xor, flags, amx, fb). */
#define ONNXC_QGEMM_INFO(fn_, mr_, nr_, kc_, as_, ax_, flags_, amx_, fb_)                       \
    const onnxc_qgemm_kernel fn_##_info = {#fn_, fn_, mr_, nr_, kc_, as_, ax_, flags_, amx_, fb_}

#endif
