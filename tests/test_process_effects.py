"""A library call leaves the caller's process as it found it (issue 13): BLAS threads, worker
threads, numpy's settings; and one Interpreter shared by 8 threads gives the serial bytes."""
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

from interp import Interpreter, limited_blas_threads
from interp.runtime.inputs import random_inputs

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "models"
MODEL = GOLDEN / "net_tiny_cnn.tflite"


def _blas_threads():
    return [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]


def test_running_a_model_leaves_blas_threads_and_worker_threads_as_they_were():
    before_blas, before_threads = _blas_threads(), threading.active_count()
    it = Interpreter.from_file(MODEL)
    x = random_inputs(it, np.random.default_rng(0))[0]
    it.run([x])
    it.run_batch([np.stack([x] * 64)], threads=2)
    it.run_batch([np.stack([x] * 64)], threads=2000)  # capped, and shut down with the call
    assert _blas_threads() == before_blas
    assert threading.active_count() == before_threads


def test_limited_blas_threads_applies_inside_the_block_only():
    before = _blas_threads()
    with limited_blas_threads(1):
        assert all(n == 1 for _, n in _blas_threads())
    assert _blas_threads() == before


def test_one_interpreter_shared_by_eight_threads_gives_the_serial_bytes():
    for path in sorted(GOLDEN.glob("*.tflite"))[::9]:
        for kernels in ("fast", "reference"):
            it = Interpreter.from_file(path, kernels=kernels)
            rng = np.random.default_rng(8)
            samples = [random_inputs(it, rng) for _ in range(16)]
            serial = [it.run(xs) for xs in samples]
            batches = [it.run_batch([np.stack([xs[i] for xs in samples]) for i in range(len(samples[0]))])]
            with ThreadPoolExecutor(8) as pool:
                parallel = list(pool.map(it.run, samples * 4))
                parallel_batches = list(pool.map(
                    lambda _: it.run_batch([np.stack([xs[i] for xs in samples]) for i in range(len(samples[0]))]),
                    range(8)))
            for k, outs in enumerate(parallel):
                for got, want in zip(outs, serial[k % len(samples)]):
                    assert got.tobytes() == want.tobytes(), f"{path.name} ({kernels}): sample {k % 16} differs"
            for outs in parallel_batches:
                for got, want in zip(outs, batches[0]):
                    assert got.tobytes() == want.tobytes(), f"{path.name} ({kernels}): a batch differs"
