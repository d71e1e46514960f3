/* ONNX RNN, GRU and LSTM (opsets 7-22) for float and double.
 *
 * Per direction: one GEMM projects every time step's input (X W^T + biases) into scratch,
 * then each step does one GEMM of the previous hidden states of the whole batch against R^T
 * (two for GRU without linear_before_reset, whose candidate needs r (.) h first) and the gate
 * arithmetic per batch row. sequence_lens is read at run time and clamped to [0, seq_length];
 * a reverse direction walks each sequence from its own last valid step. */
#include <math.h>
#include <string.h>

#include "onnxc_kernels.h"
#include "onnxc_qgemm.h"
#include "onnxc_quant.h"

static int64_t onnxc_rnn_gates(int cell) {
    return cell == ONNXC_RNN_CELL_LSTM ? 4 : (cell == ONNXC_RNN_CELL_GRU ? 3 : 1);
}

/* Length of sequence b, clamped so that a bad value can never index outside X or Y. */
static int64_t onnxc_rnn_len(const int32_t* seq_lens, int64_t b, int64_t T) {
    int64_t v;
    if (!seq_lens) return T;
    v = seq_lens[b];
    return v < 0 ? 0 : (v > T ? T : v);
}

/* Row of X (and of the projected inputs) holding time t of batch entry b. */
static int64_t onnxc_rnn_xrow(const onnxc_rnn_params* p, int64_t t, int64_t b) {
    return p->layout ? b * p->seq + t : t * p->batch + b;
}

static int64_t onnxc_rnn_q8_bytes(const onnxc_rnn_params* p) {
    const int64_t x = p->seq * p->batch * p->input, h = p->batch * p->hidden;
    return p->q8 ? (x > h ? x : h) : 0;
}

size_t onnxc_rnn_scratch_elems(const onnxc_rnn_params* p) {
    const int64_t GH = onnxc_rnn_gates(p->cell) * p->hidden;
    return (size_t)((p->seq * p->batch + p->batch) * GH + 4 * p->batch * p->hidden
                    + (p->q8 ? GH : 0) + (onnxc_rnn_q8_bytes(p) + 3) / 4);
}

/* C[M,N] = A[M,K] x B[K,N] for DynamicQuantizeLSTM (see onnxc_rnn_q8): A (contiguous) is
 * quantized to uint8 in aq, B is packed for `kernel` with its zero points, bs its per-column
 * scales. The integer GEMM (ISA-dispatched, threaded) is exact; each output rounds once, as
 * (float)acc * (a_scale * bs[n]) (qscale: N floats of scratch). */
static void rnn_q8_gemm(int64_t M, int64_t N, int64_t K, const float* A,
                        const struct onnxc_qgemm_kernel* kernel, const uint8_t* packed,
                        const float* bs, float* C, int64_t ldc, uint8_t* aq, float* qscale) {
    onnxc_qgemm_output out;
    float sa;
    uint8_t za;
    int64_t j;
    onnxc_dynamic_quantize_linear(A, M * K, aq, &sa, &za);
    for (j = 0; j < N; ++j) qscale[j] = sa * bs[j];
    memset(&out, 0, sizeof out);
    out.type = ONNXC_QOUT_F32;
    out.C = C;
    out.ldc = ldc;
    out.scale = qscale;
    out.scale_per_column = 1;
    /* the blob was packed by the compiler for this kernel, K and N: no error to report */
    (void)onnxc_qgemm(kernel, M, N, K, aq, K, za, packed, NULL, &out);
}

static void rnn_sgemm_nt(int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                         const float* B, int64_t ldb, float* C, int64_t ldc) {
    onnxc_sgemm(0, 1, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
}

/* Plain double GEMM (there is no tuned one); the dot form streams rows of both operands. */
static void rnn_dgemm_nt(int64_t M, int64_t N, int64_t K, const double* A, int64_t lda,
                         const double* B, int64_t ldb, double* C, int64_t ldc) {
    int64_t i, j, k;
    for (i = 0; i < M; ++i) {
        for (j = 0; j < N; ++j) {
            const double* a = A + i * lda;
            const double* b = B + j * ldb;
            double acc = 0.0;
            for (k = 0; k < K; ++k) acc += a[k] * b[k];
            C[i * ldc + j] = acc;
        }
    }
}

#define RNN_T float
#define RNN_Q8 1
#define RNN_NAME(x) x##_f32
#define RNN_GEMM_NT rnn_sgemm_nt
#define RNN_EXP expf
#define RNN_TANH tanhf
#define RNN_LOG1P log1pf
#define RNN_FABS fabsf
#include "rnn_impl.h"
#undef RNN_T
#undef RNN_Q8
#undef RNN_NAME
#undef RNN_GEMM_NT
#undef RNN_EXP
#undef RNN_TANH
#undef RNN_LOG1P
#undef RNN_FABS

#define RNN_T double
#define RNN_NAME(x) x##_f64
#define RNN_GEMM_NT rnn_dgemm_nt
#define RNN_EXP exp
#define RNN_TANH tanh
#define RNN_LOG1P log1p
#define RNN_FABS fabs
#include "rnn_impl.h"
