"""A library call leaves the caller's process as it found it (issue 13): BLAS threads, worker
threads, numpy's settings; and one Interpreter shared by 8 threads gives the serial bytes."""
import platform
import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from interp import Interpreter, batch_tuning, limited_blas_threads, retained_heap
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


def _page_faults_of_fresh_arrays(rounds: int = 6, size: int = 48 << 20) -> int:
    """Minor page faults of allocating, filling and freeing a 48 MB array ``rounds`` times (above
    the 32 MB glibc's dynamic mmap threshold reaches: each array is fresh pages by default)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        a = np.empty(size, np.uint8)
        a.fill(1)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="retained_heap tunes glibc's malloc; elsewhere it does nothing")
def test_retained_heap_reuses_freed_memory_inside_the_block_only():
    outside = _page_faults_of_fresh_arrays()
    with retained_heap():
        _page_faults_of_fresh_arrays(1)  # the first array's pages are new in any case
        inside = _page_faults_of_fresh_arrays()
        with retained_heap():  # nested: the inner exit does not restore
            pass
        inside_after_nested = _page_faults_of_fresh_arrays()
    after = _page_faults_of_fresh_arrays()
    assert inside * 4 < outside, (inside, outside)
    assert inside_after_nested * 4 < outside, (inside_after_nested, outside)
    assert after * 2 > outside, (after, outside)  # glibc's thresholds again: fresh pages per array


def test_batch_tuning_limits_blas_threads_inside_the_block_only():
    before = _blas_threads()
    with batch_tuning():
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
                    lambda _, it=it, samples=samples: it.run_batch(
                        [np.stack([xs[i] for xs in samples]) for i in range(len(samples[0]))]),
                    range(8)))
            for k, outs in enumerate(parallel):
                for got, want in zip(outs, serial[k % len(samples)]):
                    assert got.tobytes() == want.tobytes(), f"{path.name} ({kernels}): sample {k % 16} differs"
            for outs in parallel_batches:
                for got, want in zip(outs, batches[0]):
                    assert got.tobytes() == want.tobytes(), f"{path.name} ({kernels}): a batch differs"


def test_kept_tensors_belong_to_the_call_that_kept_them_under_eight_threads():
    """run(keep=True) from 8 threads at once: every thread's tensor() gives its own call's values
    (issue 19: another thread's values came back 19 times in 16,000), bit for bit the serial ones."""
    it = Interpreter.from_file(MODEL)
    rng = np.random.default_rng(19)
    samples = [random_inputs(it, rng) for _ in range(8)]
    computed = sorted({ti for op in it.subgraph.operators for ti in op.outputs})
    serial = []
    for xs in samples:
        outs = it.run(xs, keep=True)
        serial.append((outs, {ti: it.tensor(ti).copy() for ti in computed}))
    start = threading.Barrier(8)

    def worker(k):
        start.wait()
        xs = samples[k]
        wrong = 0
        for _ in range(40):
            outs = it.run(xs, keep=True)
            time.sleep(0)  # let the other threads' calls land between this call and its tensor() reads
            wrong += sum(not np.array_equal(it.tensor(ti), serial[k][1][ti]) for ti in computed)
            wrong += sum(o.tobytes() != w.tobytes() for o, w in zip(outs, serial[k][0]))
            batch = it.run_batch([x[None] for x in xs], keep=True)
            time.sleep(0)
            wrong += sum(not np.array_equal(it.tensor(ti)[0], serial[k][1][ti]) for ti in computed)
            wrong += sum(b[0].tobytes() != w.tobytes() for b, w in zip(batch, serial[k][0]))
        return wrong

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == [0] * 8


def test_outputs_are_the_callers_own_arrays():
    """Zeroing a returned output changes nothing microref keeps, and no output shares memory with
    the inputs, the kept tensors or another output (a passed-through input, a RESHAPE view)."""
    from interp.builder import ModelBuilder
    b = ModelBuilder()
    x = b.input("x", [1, 4], "INT8", scale=0.1, zero_point=0)
    r = b.tensor("r", [4], "INT8", scale=0.1, zero_point=0)
    b.op("RESHAPE", [x, b.constant("shape", np.array([4], np.int32))], [r], new_shape=[4])
    b.output(r, r, x)
    it = Interpreter.from_bytes(b.build())
    xs = np.array([[1, 2, 3, 4]], np.int8)
    for keep in (False, True):
        for outs in (it.run([xs], keep=keep), [o[0] for o in it.run_batch([xs[None]], keep=keep)]):
            assert not any(np.shares_memory(a, c) for i, a in enumerate(outs) for c in outs[i + 1:] + [xs])
            for o in outs:
                o[...] = 0
            assert xs.tolist() == [[1, 2, 3, 4]]
            assert it.tensor(r).ravel().tolist() == [1, 2, 3, 4] and it.tensor(x).ravel().tolist() == [1, 2, 3, 4]
