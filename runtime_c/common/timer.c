/* Monotonic clock for the generated code's per-node profile counters (onnxc run --profile).
 * Built with -DONNXC_PROFILE_THREAD_CPUTIME (e.g. ONNXC_EXTRA_CFLAGS) the counters read the
 * calling thread's CPU time instead: at 1 thread a node's time then leaves out the spells the
 * thread was descheduled, which on a shared VM (2 vCPUs, 8+ jobs) dwarf the differences being
 * measured.  Not for 2+ threads (the workers' time is not counted). */
#define _POSIX_C_SOURCE 199309L
#include <time.h>
#include "onnxc_rt.h"

double onnxc_rt_now(void) {
    struct timespec ts;
#ifdef ONNXC_PROFILE_THREAD_CPUTIME
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
