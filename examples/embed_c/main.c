/* Embedding a compiled model in a C program, no Python involved.
 *
 *   onnxc compile model.onnx -o out/ --prefix model
 *   cc $(cat out/cflags.txt) -I out -I out/runtime_c/include main.c out/model.c \
 *      $(find out/runtime_c -name '*.c') -lm -pthread -o infer
 *   (out/cflags.txt: the flags the C was generated for — the target ISA must match)
 *   ./infer out/weights.bin input.bin output.bin
 *
 * Reads the weights blob once, allocates the arena once, then calls model_run (which does not
 * allocate).  Input and output files are raw little-endian tensors in the order and sizes that
 * model.h documents; this example handles models with one input and one output.
 */
#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"

static void* aligned_alloc64(size_t n) { /* model_run wants 64-byte aligned weights and arena */
    void* p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

static long file_bytes(FILE* f) {
    long n;
    if (fseek(f, 0, SEEK_END) != 0) return -1;
    n = ftell(f);
    rewind(f);
    return n;
}

static int read_exact(const char* path, void* dst, size_t n, size_t skip) {
    FILE* f = fopen(path, "rb");
    long size;
    if (!f) { fprintf(stderr, "cannot open %s\n", path); return 1; }
    size = file_bytes(f);
    if (size < 0 || (size_t)size != n + skip) {
        fprintf(stderr, "%s: %ld bytes, expected %zu\n", path, size, n + skip);
        fclose(f);
        return 1;
    }
    if (fseek(f, (long)skip, SEEK_SET) != 0 || fread(dst, 1, n, f) != n) {
        fprintf(stderr, "%s: short read\n", path);
        fclose(f);
        return 1;
    }
    fclose(f);
    return 0;
}

int main(int argc, char** argv) {
    static const size_t in_bytes = MODEL_INPUT0_BYTES, out_bytes = MODEL_OUTPUT0_BYTES;
    void *weights, *arena, *input, *output;
    const void* inputs[1];
    void* outputs[1];
    int rc;
    FILE* f;
    if (argc != 4) {
        fprintf(stderr, "usage: %s weights.bin input.bin output.bin\n", argv[0]);
        return 2;
    }
    weights = aligned_alloc64(MODEL_WEIGHTS_BYTES);
    arena = aligned_alloc64(MODEL_ARENA_BYTES);
    input = aligned_alloc64(in_bytes);
    output = aligned_alloc64(out_bytes);
    if (!weights || !arena || !input || !output) { fprintf(stderr, "out of memory\n"); return 1; }
    if (read_exact(argv[1], weights, MODEL_WEIGHTS_BYTES, MODEL_WEIGHTS_HEADER_BYTES)) return 1;
    if (read_exact(argv[2], input, in_bytes, 0)) return 1;
    inputs[0] = input;
    outputs[0] = output;
    rc = model_run(weights, arena, inputs, outputs);
    if (rc != 0) {
        fprintf(stderr, "model_run failed with status %d\n", rc);
#ifdef MODEL_ERROR_OFFSET /* the model checks runtime indices/values: which check failed is in the arena */
        {
            const model_error* e = (const model_error*)((const char*)arena + MODEL_ERROR_OFFSET);
            fprintf(stderr, "check %lld failed (value %lld, position %lld): see the list in model.h\n",
                    (long long)e->check, (long long)e->value, (long long)e->pos);
        }
#endif
        return 1;
    }
    f = fopen(argv[3], "wb");
    if (!f || fwrite(output, 1, out_bytes, f) != out_bytes) { fprintf(stderr, "cannot write %s\n", argv[3]); return 1; }
    fclose(f);
    free(weights); free(arena); free(input); free(output);
    return 0;
}
