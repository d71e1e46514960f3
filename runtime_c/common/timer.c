/* Monotonic clock for the generated code's per-node profile counters (onnxc run --profile). */
#define _POSIX_C_SOURCE 199309L
#include <time.h>
#include "onnxc_rt.h"

double onnxc_rt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
