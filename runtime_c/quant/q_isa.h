/* Internal to runtime_c/quant and runtime_c/qnbits: which ISA rows of compiler/isa.py the
 * compiler flags of this build enable (each macro needs every CPU feature of its row, so a kernel
 * for a row compiles exactly when a module built for the row may call it). The drivers call the
 * best kernel enabled here; compiler/kernels/quant.py's best() makes the same choice. */
#ifndef ONNXC_Q_ISA_H
#define ONNXC_Q_ISA_H

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define ONNXC_Q_AVX2 1
#endif
#if defined(ONNXC_Q_AVX2) && defined(__AVXVNNI__)
#define ONNXC_Q_AVX2VNNI 1
#endif
#if defined(ONNXC_Q_AVX2) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512DQ__) && defined(__AVX512VL__)
#define ONNXC_Q_AVX512 1
#endif
#if defined(ONNXC_Q_AVX512) && defined(__AVX512VNNI__)
#define ONNXC_Q_AVX512VNNI 1
#endif

#if defined(__GNUC__) || defined(__clang__)
#define Q_INLINE static inline __attribute__((always_inline))
#else
#define Q_INLINE static inline
#endif

/* Round half to even for |v| < 2^22 (callers clamp first): adding 1.5 * 2^23 leaves no fraction
 * bits, so the FPU's round-to-nearest-even does the rounding (no libm call where the target has
 * no round instruction). */
Q_INLINE float onnxc_q_rne(float v) {
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

#endif
