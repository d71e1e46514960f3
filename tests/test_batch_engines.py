"""Batch inference on existing engines (docs/deploy.md): onnxc.BatchPredictor splits batches of any
size into the compiled batch size, and a compiled model goes to workers by pickle. Ray Data
(map_batches with an actor class holding the model, on a local Ray cluster this test starts) and
Dask (processes scheduler) must give the single-process results. Ray and Dask are optional
extras (onnxc[ray], onnxc[dask]): their tests skip without them."""
import os
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxc
from helpers import make_model, ort_run

N_RAY = 2048  # inputs through Ray Data
BATCH = 32  # the compiled batch size


def cnn(batch):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], transB=1),
             helper.make_node("Softmax", ["y"], ["p"], axis=1)]
    inits = {"w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32),
             "fw": rng.standard_normal((10, 16)).astype(np.float32), "fb": rng.standard_normal(10).astype(np.float32)}
    return make_model(nodes, [("x", np.float32, [batch, 3, 12, 12])], [("p", np.float32, [batch, 10])], inits)


def inputs(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 12, 12)).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return onnxc.compile(cnn(BATCH))


def single_process(model, x):
    """The reference: the compiled model over the inputs in one process, batch by batch."""
    return onnxc.BatchPredictor(model)({"data": x})["p"]


@pytest.mark.parametrize("n", [0, 1, 31, 32, 33, 100])
def test_predictor_splits_and_pads_to_the_compiled_batch(model, n):
    x = inputs(n, seed=n)
    y = onnxc.BatchPredictor(model)({"data": x})["p"]
    assert y.shape == (n, 10) and y.dtype == np.float32
    if n:
        np.testing.assert_allclose(y, ort_run(cnn(n), {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_predictor_columns_outputs_and_dynamic_sessions(model, tmp_path):
    x = inputs(40, seed=7)
    ref = ort_run(cnn(40), {"x": x})[0]
    # named columns, a build directory loaded on first use, selected outputs
    p = onnxc.BatchPredictor(str(model.output_dir), inputs={"pixels": "x"}, outputs=["p"])
    np.testing.assert_allclose(p({"pixels": x, "other": np.zeros(40)})["p"], ref, rtol=1e-5, atol=1e-6)
    with pytest.raises(onnxc.InputError, match="do not name the model's inputs"):
        onnxc.BatchPredictor(model)({"a": x, "b": x})
    # a free batch dimension: the session gets the batch whole
    dyn = cnn("n")
    sess = onnxc.InferenceSession(dyn.SerializeToString())
    np.testing.assert_allclose(onnxc.BatchPredictor(sess)({"x": x})["p"], ref, rtol=1e-5, atol=1e-6)
    assert [m.get_inputs()[0].shape for m in sess.compiled_models] == [[40, 3, 12, 12]]


def test_predictor_reads_pandas_columns_of_arrays(model):
    pd = pytest.importorskip("pandas")
    x = inputs(45, seed=3)
    df = pd.DataFrame({"x": list(x)})  # what Spark's mapInPandas hands a function for an array column
    np.testing.assert_allclose(onnxc.BatchPredictor(model)(df)["p"], single_process(model, x), rtol=0, atol=0)


def test_ray_data_map_batches_equals_single_process(model, monkeypatch):
    """>= 2000 inputs through ray.data.from_numpy(...).map_batches(BatchPredictor, concurrency=2)
    (examples/ray_batch_inference.py): two actors, each holding the model it unpickled (by value),
    on a local 2-CPU cluster started here."""

    class Predictor(onnxc.BatchPredictor):
        """The actor class: holds the model it unpickled; adds its pid to show both actors worked
        (defined here, so Ray pickles the class by value: the test module is not on the workers)."""

        def __call__(self, batch):
            out = super().__call__(batch)
            out["pid"] = np.full(len(out["p"]), os.getpid())
            out["where"] = np.array([str(self.model.output_dir)] * len(out["p"]))
            return out

    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    x = inputs(N_RAY, seed=11)
    t = time.perf_counter()
    ref = single_process(model, x)
    t_single = time.perf_counter() - t
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")  # the cluster is local: nothing leaves the machine
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 << 20, log_to_driver=False,
             runtime_env={"env_vars": {"ONNXC_NUM_THREADS": "1"}})
    try:
        t = time.perf_counter()
        out = _example().ray_predict(model, x, actors=2, batch_size=100, predictor=Predictor)
        t_ray = time.perf_counter() - t
    finally:
        ray.shutdown()
    got = np.stack([row["p"] for row in out])
    assert got.shape == (N_RAY, 10)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    pids = {int(row["pid"]) for row in out}
    assert len(pids) == 2 and os.getpid() not in pids
    # each actor loaded the build it unpickled, not the directory the driver compiled into
    assert str(model.output_dir) not in {str(row["where"]) for row in out}
    print(f"\nray: {N_RAY} inputs, 2 actors x 1 thread: {t_ray:.2f} s; single process: {t_single:.3f} s")


def _example():
    """examples/ray_batch_inference.py, the documented recipe, as a module."""
    import importlib.util
    path = Path(__file__).resolve().parent.parent / "examples" / "ray_batch_inference.py"
    spec = importlib.util.spec_from_file_location("ray_batch_inference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dask_processes_equal_single_process(model):
    """Dask's processes scheduler: every task unpickles the model in another process."""
    pytest.importorskip("dask")
    import dask
    import dask.bag as db
    x = inputs(300, seed=12)
    ref = single_process(model, x)
    chunks = [x[i:i + 70] for i in range(0, len(x), 70)]
    predict = onnxc.BatchPredictor(model)
    with dask.config.set(scheduler="processes", num_workers=2):
        parts = db.from_sequence(chunks, npartitions=len(chunks)).map(lambda c: (predict({"x": c})["p"],
                                                                               os.getpid())).compute()
    got = np.concatenate([p for p, _ in parts])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)
    assert os.getpid() not in {pid for _, pid in parts}
