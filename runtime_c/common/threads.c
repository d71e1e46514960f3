/* Thread pool shared by the kernels of one module (see onnxc_threads.h for the contract).
 *
 * Why not one OpenMP region per node: libgomp's team barrier makes every thread wait for the
 * slowest, and its default wait policy spins for milliseconds.  On a machine whose cores are
 * shared (other processes, onnxruntime's own spinning pool in the same process) a worker that
 * is descheduled stalls every node, and spinning threads steal the core it needs: MobileNetV2
 * at 2 threads took 20-200 ms instead of 4-7 ms under load.  Here the caller never waits for a
 * worker that has not started a chunk: tasks are claimed with one compare-and-swap each, the
 * caller claims too, and it only waits for chunks already running.
 *
 * Protocol.  A loop is published as (fn, ctx, n, chunk) plus one 64-bit word holding the chunk
 * count (high half) and the next unclaimed chunk (low half).  A claim is a CAS that advances the
 * low half while it is below the high half, so a claim is always of the loop the word currently
 * describes; the loop fields are read only after a successful claim (acquire), and the caller
 * rewrites them only after every chunk is finished (pending == 0), so they cannot change under a
 * claimed chunk.  Workers wait for a new loop on `seq`: spin up to spin_us, then sleep on a
 * condition variable (sleepers is raised before the last check of seq, and the caller reads it
 * after bumping seq: one of the two always sees the other's store). */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1
#endif
#include "onnxc_threads.h"

#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if !defined(ONNXC_NO_THREADS) && (defined(__unix__) || defined(__APPLE__)) && defined(__GNUC__)
#define ONNXC_POOL 1
#endif

#define MAX_THREADS 64
#define WORKER_STACK ((size_t)8 << 20)

static int env_threads(void) {
    const char* names[2] = {"ONNXC_NUM_THREADS", "OMP_NUM_THREADS"};
    int i;
    for (i = 0; i < 2; ++i) {
        const char* s = getenv(names[i]);
        if (s && atoi(s) > 0) return atoi(s) < MAX_THREADS ? atoi(s) : MAX_THREADS;
    }
    return 0;
}

#ifdef ONNXC_POOL
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

#if defined(__x86_64__) || defined(__i386__)
#define CPU_RELAX() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;

static struct {
    pthread_t tid[MAX_THREADS];
    int nthreads;       /* requested size, caller included (0: not yet initialized) */
    int nworkers;       /* worker threads started */
    int spin_us;        /* how long a waiting thread spins before sleeping */
    int busy;           /* 1 while a caller owns the pool (also marks nested loops) */
    int active_runs;    /* model runs in flight (onnxc_rt_run_begin/end) */
    int stop;
    unsigned seq;       /* bumped once per published loop */
    unsigned grow_seq;  /* seq when workers were last started */
    int sleepers;       /* workers asleep (or about to sleep) on work_cv */
    int caller_sleeping;
    int caller_cpu;     /* CPU the owner was on when it published the loop (-1: unknown) */
    /* the published loop */
    onnxc_task_fn fn;
    void* ctx;
    int64_t chunk, rem; /* chunk: tasks per chunk (n / chunks); the first rem chunks get one more */
    uint64_t word;      /* chunks << 32 | next unclaimed chunk */
    int pending;        /* chunks not finished yet */
} P;

/* 1 on the pool's worker threads and on a thread running a loop: nested loops are serial. */
static __thread int in_pool;

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int cpus_available(void) {
#ifdef CPU_COUNT
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof(s), &s) == 0 && CPU_COUNT(&s) > 0) return CPU_COUNT(&s);
#endif
    {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
    }
}

static void init_once(void) {
    if (P.nthreads) return;
    {
        const char* s = getenv("ONNXC_SPIN_US");
        int n = env_threads();
        /* 1 ms: measured against 100 us and 20 ms, in-process A/B at 2 threads, medians of ~20
         * blocks: light SqueezeNet -4..-6%, light ShuffleNet -9..+1%, MobileNetV3-small -2%,
         * MobileNetV2 and EfficientNet-B0 within +-2%; 20 ms no better than 1 ms */
        P.spin_us = s ? atoi(s) : 1000;
        if (n <= 0) n = cpus_available();
        P.nthreads = n < MAX_THREADS ? n : MAX_THREADS;
    }
}

/* Claims and runs chunks of the published loop until none is left. */
static void run_chunks(void) {
    for (;;) {
        uint64_t w = LOAD(&P.word);
        if ((w & 0xffffffffu) >= (w >> 32)) return;
        if (__atomic_compare_exchange_n(&P.word, &w, w + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            /* chunk k of c over n tasks: [k*q + min(k, r), ...) with q = n / c, r = n % c, so
             * chunk sizes differ by at most one task (ceil(n/c)-sized chunks left the last one
             * short or dropped chunks: 28 tasks made 7 chunks of 4, split 4:3 between 2 threads) */
            const int64_t k = (int64_t)(w & 0xffffffffu);
            const int64_t b = k * P.chunk + (k < P.rem ? k : P.rem);
            const int64_t e = b + P.chunk + (k < P.rem);
            P.fn(P.ctx, b, e);
            if (__atomic_sub_fetch(&P.pending, 1, __ATOMIC_SEQ_CST) == 0 &&
                __atomic_load_n(&P.caller_sleeping, __ATOMIC_SEQ_CST)) {
                pthread_mutex_lock(&pool_mu);
                pthread_cond_signal(&done_cv);
                pthread_mutex_unlock(&pool_mu);
            }
        }
    }
}

#if defined(__linux__) && defined(CPU_COUNT)
/* Moves the calling worker off the CPU the pool's owner runs on.  The scheduler places a woken
 * thread next to its waker (wake-affine) and an idle second CPU may take milliseconds to pull
 * it away: measured on a 2-vCPU VM, BERT-tiny at 2 threads took 2.0 ms with the worker on the
 * caller's CPU (both time-sharing it, the worker spinning), 0.78 ms apart, 1.36 ms on 1 thread.
 * Restricting this thread's mask migrates it now; the original mask is restored at once (the
 * thread stays where it was moved). */
static void leave_caller_cpu(void) {
    const int c = LOAD(&P.caller_cpu);
    cpu_set_t all, other;
    if (c < 0 || sched_getcpu() != c) return;
    if (pthread_getaffinity_np(pthread_self(), sizeof(all), &all) != 0 || c >= CPU_SETSIZE) return;
    other = all;
    CPU_CLR(c, &other);
    if (CPU_COUNT(&other) == 0) return;
    if (pthread_setaffinity_np(pthread_self(), sizeof(other), &other) == 0)
        pthread_setaffinity_np(pthread_self(), sizeof(all), &all);
}
#define CALLER_CPU() sched_getcpu()
#else
#define leave_caller_cpu() ((void)0)
#define CALLER_CPU() (-1)
#endif

static void* worker_main(void* arg) {
    const int index = (int)(intptr_t)arg;
    /* the loop count when the pool grew, not now: a thread that starts late must still see the
     * loop its creator is about to publish */
    unsigned last = LOAD(&P.grow_seq);
    in_pool = 1;
    for (;;) {
        if (LOAD(&P.seq) == last && !LOAD(&P.stop)) {
            const double until = now_us() + P.spin_us;
            int i = 0;
            while (LOAD(&P.seq) == last && !LOAD(&P.stop)) {
                CPU_RELAX();
                if (++i % 64 == 0) {
                    if (now_us() > until) break;
                    leave_caller_cpu();  /* spinning on the caller's CPU slows the caller */
                }
            }
            if (LOAD(&P.seq) == last && !LOAD(&P.stop)) {
                pthread_mutex_lock(&pool_mu);
                __atomic_add_fetch(&P.sleepers, 1, __ATOMIC_SEQ_CST);
                while (__atomic_load_n(&P.seq, __ATOMIC_SEQ_CST) == last && !LOAD(&P.stop))
                    pthread_cond_wait(&work_cv, &pool_mu);
                __atomic_sub_fetch(&P.sleepers, 1, __ATOMIC_SEQ_CST);
                pthread_mutex_unlock(&pool_mu);
            }
        }
        if (LOAD(&P.stop)) return NULL;
        last = LOAD(&P.seq);
        /* a worker above the current size (the pool was shrunk) stays idle */
        if (index < LOAD(&P.nthreads) - 1) {
            leave_caller_cpu();
            run_chunks();
        }
    }
}

static void after_fork_child(void) {
    /* the child has only the forking thread: no workers, nobody owns the pool */
    P.nworkers = 0;
    P.busy = 0;
    P.active_runs = 0;
    P.sleepers = 0;
    P.caller_sleeping = 0;
    pthread_mutex_init(&pool_mu, NULL);
    pthread_cond_init(&work_cv, NULL);
    pthread_cond_init(&done_cv, NULL);
}

/* Starts workers up to the current size; called by the pool's owner. */
static void grow(void) {
    static int atfork_done = 0;
    sigset_t all, old;
    pthread_attr_t attr;
    size_t stack = 0;
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, after_fork_child);
        atfork_done = 1;
    }
    /* workers take no signals (Python and embedders expect them on their own threads) */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    STORE(&P.grow_seq, LOAD(&P.seq));
    /* kernels keep up to ~512 KB on the stack (sgemm_driver.c's packing buffer) */
    pthread_attr_init(&attr);
    if (pthread_attr_getstacksize(&attr, &stack) != 0 || stack < WORKER_STACK)
        pthread_attr_setstacksize(&attr, WORKER_STACK);
    while (P.nworkers < P.nthreads - 1) {
        if (pthread_create(&P.tid[P.nworkers], &attr, worker_main, (void*)(intptr_t)P.nworkers) != 0)
            break;  /* fewer threads than asked: the caller claims what nobody else does */
        P.nworkers++;
    }
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

__attribute__((destructor)) static void pool_shutdown(void) {
    /* join the workers before the module's code is unmapped (an embedder's dlclose) */
    int i;
    if (!P.nworkers) return;
    STORE(&P.stop, 1);
    pthread_mutex_lock(&pool_mu);
    pthread_cond_broadcast(&work_cv);
    pthread_mutex_unlock(&pool_mu);
    for (i = 0; i < P.nworkers; ++i) pthread_join(P.tid[i], NULL);
    P.nworkers = 0;
}

int onnxc_rt_threads_usable(void) {
    init_once();
    if (P.nthreads < 2 || in_pool || LOAD(&P.busy) || LOAD(&P.active_runs) > 1) return 1;
    return P.nthreads;
}

/* A loop that does not use the pool; loops nested in it stay on this thread too. */
static void run_serial(onnxc_task_fn fn, void* ctx, int64_t n) {
    const int outer = in_pool;
    in_pool = 1;
    fn(ctx, 0, n);
    in_pool = outer;
}

void onnxc_parallel_for(int64_t n, int parallel, onnxc_task_fn fn, void* ctx) {
    int expected = 0, threads;
    int64_t chunks;
    if (n <= 0) return;
    threads = parallel && n > 1 ? onnxc_rt_threads_usable() : 1;
    if (threads < 2 || !__atomic_compare_exchange_n(&P.busy, &expected, 1, 0, __ATOMIC_ACQUIRE,
                                                    __ATOMIC_RELAXED)) {
        run_serial(fn, ctx, n);
        return;
    }
    STORE(&P.caller_cpu, CALLER_CPU());
    if (P.nworkers < P.nthreads - 1) grow();
    if (P.nworkers == 0) {
        STORE(&P.busy, 0);
        run_serial(fn, ctx, n);
        return;
    }
    /* a few chunks per thread: a late or preempted thread costs at most a chunk's time */
    chunks = (int64_t)threads * 4;
    if (chunks > n) chunks = n;
    P.fn = fn;
    P.ctx = ctx;
    P.chunk = n / chunks;
    P.rem = n % chunks;
    __atomic_store_n(&P.pending, (int)chunks, __ATOMIC_RELAXED);
    STORE(&P.word, (uint64_t)chunks << 32);
    __atomic_add_fetch(&P.seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&P.sleepers, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&pool_mu);
        pthread_cond_broadcast(&work_cv);
        pthread_mutex_unlock(&pool_mu);
    }
    in_pool = 1;
    run_chunks();
    in_pool = 0;
    /* wait for the chunks other threads are still running */
    if (LOAD(&P.pending)) {
        const double until = now_us() + P.spin_us;
        int i = 0;
        while (LOAD(&P.pending)) {
            CPU_RELAX();
            if (++i % 64 == 0 && now_us() > until) break;
        }
        if (LOAD(&P.pending)) {
            pthread_mutex_lock(&pool_mu);
            __atomic_store_n(&P.caller_sleeping, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&P.pending, __ATOMIC_SEQ_CST)) pthread_cond_wait(&done_cv, &pool_mu);
            __atomic_store_n(&P.caller_sleeping, 0, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&pool_mu);
        }
    }
    STORE(&P.busy, 0);
}

void onnxc_rt_set_num_threads(int n) {
    if (n <= 0) return;
    init_once();
    STORE(&P.nthreads, n < MAX_THREADS ? n : MAX_THREADS);
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int onnxc_rt_get_num_threads(void) {
    init_once();
    return P.nthreads;
}

void onnxc_rt_run_begin(void) { __atomic_add_fetch(&P.active_runs, 1, __ATOMIC_SEQ_CST); }
void onnxc_rt_run_end(void) { __atomic_sub_fetch(&P.active_runs, 1, __ATOMIC_SEQ_CST); }

int onnxc_rt_omp_ok(void) {
    /* Never next to the pool: after a team ends, libgomp's idle thread spins (its default wait
     * policy) and takes the core the pool's worker needs for the following loops; measured,
     * EfficientNet-B0 at 2 threads ran as slow as at 1 with both cores busy (OMP_WAIT_POLICY=
     * passive gave 1.3x). The loops left on OpenMP are the generated elementwise loops and
     * reference kernels: small next to the pooled ones. */
    return 0;
}

#else /* no pthreads: every loop runs on the calling thread */

static int nthreads_serial = 0;

void onnxc_parallel_for(int64_t n, int parallel, onnxc_task_fn fn, void* ctx) {
    (void)parallel;
    if (n > 0) fn(ctx, 0, n);
}
int onnxc_rt_threads_usable(void) { return 1; }
void onnxc_rt_set_num_threads(int n) {
    if (n <= 0) return;
    nthreads_serial = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}
int onnxc_rt_get_num_threads(void) {
    if (nthreads_serial) return nthreads_serial;
    if (env_threads()) return env_threads();
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
void onnxc_rt_run_begin(void) {}
void onnxc_rt_run_end(void) {}
int onnxc_rt_omp_ok(void) {
#ifdef _OPENMP
    return !omp_in_parallel();
#else
    return 0;
#endif
}
#endif
