/* tests/test_emit_c.py: two threads, two arenas, one model, at the same time.
 *
 *   two_arenas weights.bin|- a_in0.bin ... b_in0.bin ... a_out0.bin ... b_out0.bin ...
 *
 * Runs input set A and then B alone (the references), then A and B on two threads at once, each
 * ROUNDS times with its own arena, and checks that every concurrent result equals its reference
 * (float32 outputs within 1e-5 relative: a run alone may split its loops over the pool's
 * threads differently from runs that overlap; other types bit for bit). Writes the concurrent
 * results for the test to compare with onnxruntime. "-" as the weights file: the weights are
 * compiled into the library (MODEL_EMBEDDED, MODEL_WEIGHTS_HEADER). Built against the model's
 * library through find_package or add_subdirectory, with -DMODEL_HEADER="<prefix>.h" and
 * -DMODEL_PREFIX=<prefix>.
 */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include MODEL_HEADER
#ifdef MODEL_EMBEDDED
#include MODEL_WEIGHTS_HEADER
#endif

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define P(x) CAT(MODEL_PREFIX, x)
#define ROUNDS 20
#define NI P(num_inputs)()
#define NO P(num_outputs)()

typedef struct {
    const void* weights;
    const void* in[16];
    void* out[16];
    void* ref[16];
    int bad, rc;
} job;

static void* alloc64(size_t n) {
    void* p = NULL;
    return posix_memalign(&p, 64, n ? n : 64) == 0 ? p : NULL;
}

/* The last n bytes of a file (weights.bin: its payload after the header). */
static void* read_file(const char* path, size_t n) {
    FILE* f = fopen(path, "rb");
    void* p = alloc64(n);
    if (!f || !p || fseek(f, -(long)n, SEEK_END) != 0 || fread(p, 1, n, f) != n) {
        fprintf(stderr, "cannot read %lu bytes of %s\n", (unsigned long)n, path);
        exit(2);
    }
    fclose(f);
    return p;
}

static int same(int i, const void* a, const void* b) {
    size_t n = P(output_bytes)(i), k;
    if (strcmp(P(output_dtype)(i), "float32") != 0) return memcmp(a, b, n) == 0;
    for (k = 0; k < n / 4; ++k) {
        float x = ((const float*)a)[k], y = ((const float*)b)[k];
        if (!(fabsf(x - y) <= 1e-5f * (1.0f + fabsf(y)))) return 0;
    }
    return 1;
}

static void* worker(void* arg) {
    job* j = (job*)arg;
    void* arena = alloc64(P(arena_bytes)());
    int r, i;
    for (r = 0; r < ROUNDS; ++r) {
        int rc = P(run)(j->weights, arena, j->in, j->out);
        if (rc) { j->rc = rc; break; }
        for (i = 0; i < NO; ++i) j->bad += !same(i, j->out[i], j->ref[i]);
    }
    free(arena);
    return NULL;
}

int main(int argc, char** argv) {
    job jobs[2];
    pthread_t t[2];
    const void* weights;
    void* arena;
    int s, i, arg = 2;
    if (argc != 2 + 2 * NI + 2 * NO || NI > 16 || NO > 16) {
        fprintf(stderr, "usage: %s weights.bin|- <A inputs> <B inputs> <A outputs> <B outputs>\n", argv[0]);
        return 2;
    }
#ifdef MODEL_EMBEDDED
    weights = P(embedded_weights);
#else
    weights = read_file(argv[1], P(weights_bytes)());
#endif
    memset(jobs, 0, sizeof(jobs));
    arena = alloc64(P(arena_bytes)());
    for (s = 0; s < 2; ++s) {
        jobs[s].weights = weights;
        for (i = 0; i < NI; ++i) jobs[s].in[i] = read_file(argv[arg++], P(input_bytes)(i));
        for (i = 0; i < NO; ++i) {
            jobs[s].out[i] = alloc64(P(output_bytes)(i));
            jobs[s].ref[i] = alloc64(P(output_bytes)(i));
        }
        if (P(run)(weights, arena, jobs[s].in, jobs[s].ref) != 0) { fprintf(stderr, "reference run failed\n"); return 1; }
    }
    for (s = 0; s < 2; ++s) pthread_create(&t[s], NULL, worker, &jobs[s]);
    for (s = 0; s < 2; ++s) pthread_join(t[s], NULL);
    for (s = 0; s < 2; ++s) {
        if (jobs[s].rc || jobs[s].bad) {
            fprintf(stderr, "thread %d: status %d, %d results differ from its reference\n", s, jobs[s].rc, jobs[s].bad);
            return 1;
        }
        for (i = 0; i < NO; ++i) {
            FILE* f = fopen(argv[arg++], "wb");
            if (!f || fwrite(jobs[s].out[i], 1, P(output_bytes)(i), f) != P(output_bytes)(i)) return 1;
            fclose(f);
        }
    }
    printf("two threads x %d rounds: all equal to the references\n", ROUNDS);
    return 0;
}
