/* onnxc runtime thread pool (runtime_c/common/threads.c).
 *
 * One small persistent pool per loaded module: num_threads - 1 worker threads plus the calling
 * thread.  A kernel hands it a loop of n independent tasks; the tasks are claimed in chunks by
 * whichever threads are running, so a worker that is asleep, descheduled or busy elsewhere never
 * holds the caller back (the caller then does the chunks itself).  Workers spin briefly after a
 * loop (the next node's loop usually follows within microseconds) and then sleep.  On Linux a
 * worker that finds itself on the CPU of the loop's caller moves to another one (the scheduler
 * may place a woken worker next to its waker, where the two only time-share one CPU).
 *
 * A loop runs serially on the calling thread when: the pool has one thread, the caller is
 * already inside a pool loop (a nested kernel), another thread owns the pool, or two runs of
 * the module overlap (onnxc_rt_run_begin/end), so concurrent callers never oversubscribe the
 * cores.  Build with ONNXC_NO_THREADS (or on a platform without pthreads) for a serial runtime. */
#ifndef ONNXC_THREADS_H
#define ONNXC_THREADS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One task range [begin, end) of a parallel loop; ctx is the kernel's argument block. */
typedef void (*onnxc_task_fn)(void* ctx, int64_t begin, int64_t end);

/* Runs fn over the tasks [0, n) and returns when all are done: split across the pool when
 * `parallel` is nonzero and the pool is free, else one call fn(ctx, 0, n) on this thread. */
void onnxc_parallel_for(int64_t n, int parallel, onnxc_task_fn fn, void* ctx);

/* Threads a parallel loop started now on this thread would use (1 when it would run serially):
 * kernels that size their split to the thread count (the SGEMM grid) ask this. */
int onnxc_rt_threads_usable(void);

/* Pool size including the calling thread; n <= 0 leaves it unchanged.  The default is
 * ONNXC_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may run on.  Also sets the
 * OpenMP thread count of the remaining OpenMP loops in an OpenMP build. */
void onnxc_rt_set_num_threads(int n);
int onnxc_rt_get_num_threads(void);

/* Bracket one model run (the generated <prefix>_run and partition functions do): while two runs
 * of the module overlap, every loop runs on its caller's thread. */
void onnxc_rt_run_begin(void);
void onnxc_rt_run_end(void);

/* Nonzero when an OpenMP loop may fork a team now (the if() clause of ONNXC_OMP_FOR and of the
 * reference kernels' loops). With the pool: never (libgomp's spinning idle threads would compete
 * with it); in a build without the pool: not nested and more than one thread. */
int onnxc_rt_omp_ok(void);

#ifdef __cplusplus
}
#endif
#endif
