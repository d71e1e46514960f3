"""The runtime's thread pool (runtime_c/common/threads.c): num_threads honored, results identical
at 1 and 2 threads, concurrent callers correct and never more than one pool in use, nested
loops serial; the pool's protocol itself checked by a C program (also under ThreadSanitizer)."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading

import numpy as np
import pytest
from onnx import helper

from helpers import make_model, ort_run

C_TEST = r"""
#define _GNU_SOURCE 1
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include "onnxc_threads.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "line %d: %s\n", __LINE__, #c); exit(1); } } while (0)

typedef struct { int* hits; int nested; int inner_usable; } job;

static void mark(void* c, int64_t b, int64_t e) {
    job* j = (job*)c;
    int64_t i;
    for (i = b; i < e; ++i) __atomic_add_fetch(&j->hits[i], 1, __ATOMIC_RELAXED);
    if (j->nested) {  /* a loop inside a pool task runs on this thread, and covers its range */
        int inner[37] = {0};
        job k = {inner, 0, 0};
        __atomic_store_n(&j->inner_usable, onnxc_rt_threads_usable(), __ATOMIC_RELAXED);
        onnxc_parallel_for(37, 1, mark, &k);
        for (i = 0; i < 37; ++i) CHECK(inner[i] == 1);
    }
}

static void cover(int64_t n, int nested) {
    int* hits = (int*)calloc((size_t)n, sizeof(int));
    job j = {hits, nested, 0};
    int64_t i;
    onnxc_parallel_for(n, 1, mark, &j);
    for (i = 0; i < n; ++i) CHECK(hits[i] == 1);
    if (nested && n > 0) CHECK(j.inner_usable == 1);
    free(hits);
}

#ifndef ONNXC_NO_THREADS
/* task 0 waits until task 1 has started: only two threads running at once get through */
static int started1 = 0;
static void rendezvous(void* c, int64_t b, int64_t e) {
    int64_t i, k;
    (void)c;
    for (i = b; i < e; ++i) {
        if (i == 1) __atomic_store_n(&started1, 1, __ATOMIC_SEQ_CST);
        if (i == 0)
            for (k = 0; k < 20000000000LL && !__atomic_load_n(&started1, __ATOMIC_SEQ_CST); ++k)
                sched_yield();
    }
}

/* every range the pool hands out has n / c or n / c + 1 tasks (c = min(n, 4 x 2 threads)) */
static int64_t range_min, range_max;
static void sizes(void* c, int64_t b, int64_t e) {
    int64_t m;
    (void)c;
    for (m = __atomic_load_n(&range_min, __ATOMIC_RELAXED); e - b < m;)
        if (__atomic_compare_exchange_n(&range_min, &m, e - b, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
    for (m = __atomic_load_n(&range_max, __ATOMIC_RELAXED); e - b > m;)
        if (__atomic_compare_exchange_n(&range_max, &m, e - b, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) break;
}
static void balanced(int64_t n) {
    const int64_t c = n < 8 ? n : 8;
    range_min = n + 1;
    range_max = 0;
    onnxc_parallel_for(n, 1, sizes, NULL);
    CHECK(range_min == n / c && range_max == (n + c - 1) / c);
}
#endif

static pthread_barrier_t bar;
static void* caller(void* arg) {
    int r;
    (void)arg;
    onnxc_rt_run_begin();
    pthread_barrier_wait(&bar);
    CHECK(onnxc_rt_threads_usable() == 1);  /* two runs overlap: each stays on its thread */
    for (r = 0; r < 200; ++r) cover(1 + r * 7, r % 2);
    pthread_barrier_wait(&bar);
    onnxc_rt_run_end();
    for (r = 0; r < 200; ++r) cover(1 + r * 7, r % 2);  /* the pool is shared, first come first served */
    return NULL;
}

int main(void) {
    int64_t n;
    pthread_t t[2];
    onnxc_rt_set_num_threads(2);
    CHECK(onnxc_rt_get_num_threads() == 2);
    for (n = 0; n < 300; ++n) cover(n, 0);
    cover(100000, 0);
    cover(64, 1);
#ifndef ONNXC_NO_THREADS
    CHECK(onnxc_rt_threads_usable() == 2);
    onnxc_parallel_for(2, 1, rendezvous, NULL);
    CHECK(started1 == 1);
    for (n = 1; n < 300; ++n) balanced(n);
    balanced(100003);
#endif
    onnxc_rt_set_num_threads(1);
    CHECK(onnxc_rt_get_num_threads() == 1 && onnxc_rt_threads_usable() == 1);
    cover(1000, 1);
    onnxc_rt_set_num_threads(2);
    pthread_barrier_init(&bar, NULL, 2);
    CHECK(pthread_create(&t[0], NULL, caller, NULL) == 0);
    CHECK(pthread_create(&t[1], NULL, caller, NULL) == 0);
    pthread_join(t[0], NULL);
    pthread_join(t[1], NULL);
    puts("ok");
    return 0;
}
"""


def _c_program(tmp_path, *flags):
    from onnxc.build import c_compiler
    from onnxc.resources import runtime_dir
    src = tmp_path / "t.c"
    src.write_text(C_TEST)
    exe = tmp_path / "t"
    rt = runtime_dir()
    cmd = [c_compiler(), "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-pthread", *flags,
           "-I", str(rt / "include"), str(src), str(rt / "common" / "threads.c"), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


@pytest.mark.parametrize("flags", [(), ("-fopenmp",), ("-DONNXC_NO_THREADS",)], ids=["pthreads", "openmp", "serial"])
def test_pool_protocol_in_c(tmp_path, flags):
    """Every task exactly once for any n, in chunks whose sizes differ by at most one; two
    threads really run tasks at once (a rendezvous only two concurrent threads pass); nested
    loops and overlapping runs stay on the caller's thread; set/get of the count; the serial
    build passes the same checks."""
    exe = _c_program(tmp_path, *flags)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_pool_protocol_under_thread_sanitizer(tmp_path):
    """The claim/publish protocol has no data race ThreadSanitizer can see."""
    try:
        exe = _c_program(tmp_path, "-fsanitize=thread")
    except subprocess.CalledProcessError as e:
        pytest.skip(f"no ThreadSanitizer here: {e.stderr[-300:]}")
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    if "FATAL: ThreadSanitizer" in out.stderr and "unexpected memory mapping" in out.stderr:
        pytest.skip("ThreadSanitizer cannot run in this address-space layout")
    assert out.returncode == 0 and "WARNING: ThreadSanitizer" not in out.stderr, out.stderr[-4000:]


def _model():
    """A blocked 3x3 Conv + Relu + MaxPool (NCHWc conv and pool loops) and a MatMul large enough
    for the SGEMM thread grid."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("MatMul", ["a", "m"], ["z"])]
    inits = {"w": rng.standard_normal((32, 16, 3, 3)).astype(np.float32) * 0.1,
             "b": rng.standard_normal(32).astype(np.float32),
             "m": rng.standard_normal((256, 192)).astype(np.float32)}
    model = make_model(nodes, [("x", np.float32, [1, 16, 40, 40]), ("a", np.float32, [96, 256])],
                       [("y", np.float32, [1, 32, 20, 20]), ("z", np.float32, [96, 192])], inits)
    feed = {"x": rng.standard_normal((1, 16, 40, 40)).astype(np.float32),
            "a": rng.standard_normal((96, 256)).astype(np.float32)}
    return model, feed


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import onnxc
    model, feed = _model()
    out = tmp_path_factory.mktemp("thr") / "m"
    onnxc.compile(model, output_dir=out)
    return out, model, feed


def _threads(m):
    return getattr(m._lib, f"{m.prefix}_get_num_threads")()


def test_num_threads_honored_and_results_identical(compiled):
    import onnxc
    out, model, feed = compiled
    m1 = onnxc.load(out, num_threads=1)
    assert _threads(m1) == 1
    r1 = m1.run(None, feed)
    m2 = onnxc.load(out, num_threads=2)
    assert _threads(m2) == 2
    r2 = m2.run(None, feed)
    for a, b, ref in zip(r1, r2, ort_run(model, feed)):
        np.testing.assert_array_equal(a, b)  # each output element computed the same way
        np.testing.assert_allclose(a, ref, rtol=1e-4, atol=1e-4)


def test_concurrent_callers(compiled):
    """Four Python threads run one module at once (cffi releases the GIL): every result is the
    single-threaded one."""
    import onnxc
    out, model, feed = compiled
    ref = onnxc.load(out, num_threads=1).run(None, feed)
    m = onnxc.load(out, num_threads=2)
    feeds = [{k: v * (1 + i) for k, v in feed.items()} for i in range(4)]
    refs = [m.run(None, f) for f in feeds]
    np.testing.assert_array_equal(refs[0][0], ref[0])
    errors = []

    def work(i):
        try:
            for _ in range(10):
                for a, b in zip(m.run(None, feeds[i]), refs[i]):
                    np.testing.assert_array_equal(a, b)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


def test_default_build_skips_openmp(compiled):
    """Where the runtime has its pool, the default build does not link libgomp (it would only cost
    load time: pool builds never fork OpenMP teams)."""
    out = compiled[0]
    flags = (out / "cflags.txt").read_text().split()
    assert ("-fopenmp" in flags) == (os.name != "posix")
    so = next(out.glob("*.so"), None)
    if so is not None and shutil.which("readelf"):
        needed = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True).stdout
        assert ("libgomp" in needed) == (os.name != "posix")


def test_build_with_openmp(compiled, tmp_path):
    """openmp=True still builds and still runs the pool's loops on 2 threads, bit for bit."""
    import onnxc
    out, model, feed = compiled
    ref = onnxc.load(out, num_threads=1).run(None, feed)
    m = onnxc.compile(model, output_dir=tmp_path / "omp", openmp=True)
    assert "-fopenmp" in (tmp_path / "omp" / "cflags.txt").read_text().split()
    m = onnxc.load(tmp_path / "omp", num_threads=2)
    assert _threads(m) == 2
    for a, b in zip(m.run(None, feed), ref):
        np.testing.assert_array_equal(a, b)
