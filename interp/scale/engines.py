"""Where the chunks run: this process, worker processes, or Ray tasks — the same bytes everywhere.

Every engine runs the same function on the same chunks (``Worker.run``): the int8 model on the
chunk as TFLM computes it (``Interpreter.run_batch``), and, when asked, the float model and
LiteRT on the same samples. Each chunk's result depends on nothing but the chunk, so the outputs
are byte-identical whichever engine runs them and however the samples are cut; results come back
in the order of the input, with a bounded number of chunks in flight (memory stays bounded).

* ``local`` with one worker: this process, one thread.
* ``local`` with N workers: N processes (``spawn``), each loading the models once.
* ``ray``: Ray tasks (``pip install 'microref[ray]'``). The job (model bytes, float model bytes,
  what to run) is put in the object store once and fetched once per Ray worker process, which
  keeps its interpreters between tasks; a task whose worker dies is retried (``max_retries``).
  Without an address a local Ray is started (and stopped after); with one, that cluster is used
  (microref must be installed on its nodes). A Ray already initialised by the caller is used as is.

The chunks of an evaluation are one use of ``map_ordered``: any picklable module-level function
``fn(context, item)`` mapped over items on the same engines, the context sent once per worker, the
results in the order of the items (conformance sweeps over folders of models run through it too,
``interp.tools.sweep``).
"""
from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import pickle
import socket
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError, MicrorefError, printable
from ..runtime import Interpreter, batch_tuning
from ..runtime.blas import retain_heap_for_process
from .data import MissingPackage, to_model_inputs

ENGINES = ("local", "ray")
RAY_TASK_RETRIES = 3  # a Ray task whose worker process dies is run again this many times
ADDRESS_TIMEOUT_S = 5.0
IN_FLIGHT_PER_WORKER = 2  # chunks submitted ahead of the one awaited, per worker
# Testing hook: when this names a file in a folder that exists, the first Ray task to create the
# file kills its own worker process, so that the retry can be seen (tests/test_scale_ray.py).
CACHED_CONTEXTS = 4  # contexts (and the interpreters built from them) a worker process keeps
FAULT_ONCE_ENV = "MICROREF_TEST_KILL_RAY_WORKER_ONCE"


class RayAddressError(InputError):
    """The Ray address given does not answer, or Ray could not connect to it."""


class LiteRTRefused(MicrorefError):
    """LiteRT cannot load the model (its own message): there is nothing to compare with."""


class WorkerError(MicrorefError):
    """A worker process died (not a fault in the data or the model: memory, a signal)."""


@dataclass(frozen=True)
class Job:
    """What every worker needs, sent once: the models' bytes and what to run on each chunk."""

    model: bytes
    float_model: bytes | None = None
    against: str | None = None  # "litert": LiteRT's outputs on the same int8 inputs
    kernels: str = "fast"
    kinds: tuple[str, ...] = ()  # per input: "quantized" or "real" (see interp.scale.data)

    @property
    def key(self) -> str:
        h = hashlib.sha256(self.model)
        h.update(self.float_model or b"")
        h.update(repr((self.against, self.kernels, self.kinds)).encode())
        return h.hexdigest()


@dataclass
class ChunkResult:
    outputs: list[np.ndarray]  # the int8 model's, as TFLM computes them
    float_outputs: list[np.ndarray] | None = None
    litert_outputs: list[np.ndarray] | None = None


class Worker:
    """Runs chunks of a Job; its interpreters are built once."""

    def __init__(self, job: Job, it: Interpreter | None = None):
        self.job = job
        self.it = it if it is not None else Interpreter.from_bytes(job.model, kernels=job.kernels)
        self.float_it = Interpreter.from_bytes(job.float_model, kernels=job.kernels) if job.float_model else None
        # The float model reads integer data as the int8 model's inputs dequantized.
        self.data_quantization = [self.it.tensors[ti] for ti in self.it.subgraph.inputs]
        self._litert = None

    def run(self, arrays: list[np.ndarray]) -> ChunkResult:
        inputs = to_model_inputs(arrays, list(self.job.kinds), self.it)
        result = ChunkResult(self.it.run_batch(inputs, threads=1))
        if self.float_it is not None:
            real = to_model_inputs(arrays, list(self.job.kinds), self.float_it, self.data_quantization)
            result.float_outputs = self.float_it.run_batch(real, threads=1)
        if self.job.against == "litert":
            result.litert_outputs = self.litert_outputs(inputs)
        return result

    def litert_outputs(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """LiteRT's (default kernels) outputs for each sample of the int8 inputs, one invoke per sample."""
        if self._litert is None:
            self._litert = make_litert(self.job.model)
        lit = self._litert
        ins = lit.get_input_details()
        outs = lit.get_output_details()
        n = len(inputs[0]) if inputs else 1
        results = [np.empty((n,) + tuple(d["shape"]), d["dtype"]) for d in outs]
        for i in range(n):
            for d, x in zip(ins, inputs):
                lit.set_tensor(d["index"], np.ascontiguousarray(x[i]))
            lit.invoke()
            for r, d in zip(results, outs):
                r[i] = lit.get_tensor(d["index"])
        return results


@contextlib.contextmanager
def _quiet_fd2():
    """LiteRT's C++ logging ('Created TensorFlow Lite XNNPACK delegate') kept off the terminal."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def litert_module():
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        raise MissingPackage("comparing against LiteRT needs ai-edge-litert: pip install 'microref[litert]' (or pip "
                             "install ai-edge-litert)") from None
    return litert


def make_litert(model: bytes):
    litert = litert_module()
    try:
        with _quiet_fd2():
            lit = litert.Interpreter(model_content=model, num_threads=1)
            lit.allocate_tensors()
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or ["(no message)"])[0][:240]
        raise LiteRTRefused(f"LiteRT cannot load the model, so there is nothing to compare with: "
                            f"{printable(first)}") from None
    return lit


# ----------------------------------------------------------------------------- any task, in order

def context_key(context: Any) -> str:
    """What identifies a context in a worker's cache: its ``key`` (a Job's), else its pickle's hash."""
    key = getattr(context, "key", None)
    if isinstance(key, str):
        return key
    return hashlib.sha256(pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)).hexdigest()


def worker_cache(cache: dict, key: str, build: Callable[[], Any]) -> Any:
    """``cache[key]``, built once per worker process, the least recently used dropped beyond
    CACHED_CONTEXTS (a long-lived Ray worker serves many jobs)."""
    if key in cache:
        value = cache.pop(key)
    else:
        value = build()
        while len(cache) >= CACHED_CONTEXTS:
            cache.pop(next(iter(cache)))
    cache[key] = value
    return value


def _describe(describe: Callable[[Any], str] | None, item, number: int) -> str:
    if describe is not None:
        with contextlib.suppress(Exception):
            return describe(item)
    return f"task {number}"


_PROCESS_CONTEXT: Any = None


def _init_process(context: Any) -> None:
    global _PROCESS_CONTEXT
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")  # this process is one worker: BLAS on one thread,
    retain_heap_for_process()  # and freed activations kept for its next chunk
    _PROCESS_CONTEXT = context


def _process_apply(fn: Callable, item) -> Any:
    return fn(_PROCESS_CONTEXT, item)


def map_ordered(fn: Callable[[Any, Any], Any], items: Iterable, *, context: Any = None, engine: str = "local",
                workers: int | None = 1, address: str | None = None, retries: int = RAY_TASK_RETRIES,
                describe: Callable[[Any], str] | None = None) -> Iterator[Any]:
    """``fn(context, item)`` for every item, the results yielded in the order of ``items``.

    ``fn``: a module-level function (pickled by name); ``context``: what every call shares, sent
    once per worker (processes: at start; Ray: put in the object store once, fetched once per
    worker process); ``items``: consumed lazily, at most a few per worker in flight, so memory
    holds a bounded number of items and results whatever their count. ``engine`` "local" with one
    worker runs in this process; with N, in N ``spawn`` processes; "ray" as Ray tasks (``address``
    of a cluster, else a local Ray with ``workers`` CPUs; a Ray the caller initialised is used as
    is), a task whose worker dies retried ``retries`` times. ``describe(item)`` names an item in
    the errors (WorkerError when a worker dies; a MicrorefError raised by ``fn`` is raised as is).
    The same items give the same results on every engine when ``fn`` depends only on its
    arguments.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if engine == "ray":
        return _map_ray(fn, items, context, address=address, workers=workers, retries=retries, describe=describe)
    if workers is None or workers <= 1:
        return _map_here(fn, items, context)
    return _map_processes(fn, items, context, workers, describe)


def _map_here(fn, items, context):
    with batch_tuning():
        for item in items:
            yield fn(context, item)


def _map_processes(fn, items, context, workers: int, describe):
    import multiprocessing
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_process, initargs=(context,))
    pending: collections.deque = collections.deque()
    try:
        source = enumerate(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < IN_FLIGHT_PER_WORKER * workers:
                try:
                    number, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append((number, item, pool.submit(_process_apply, fn, item)))
            if not pending:
                return
            number, item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as e:
                raise WorkerError(f"a worker process died while running {_describe(describe, item, number)} ({e}); "
                                  f"rerun with fewer workers (--workers 1 runs in this process)") from None
            del item
            yield result
    finally:
        for _, _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- chunks of an evaluation

_WORKERS: dict[str, Worker] = {}  # per worker process: the interpreters of the jobs it has run


def _run_chunk(job: Job, item: tuple[int, list[np.ndarray]]) -> tuple[int, ChunkResult]:
    start, arrays = item
    worker = worker_cache(_WORKERS, job.key, lambda: Worker(job))
    return start, worker.run(arrays)


def _chunk_name(item) -> str:
    return f"samples from {item[0]} on"


def run_local(job: Job, chunks: Iterable[tuple[int, list[np.ndarray]]], workers: int,
              it: Interpreter | None = None) -> Iterator[tuple[int, ChunkResult]]:
    """(start, result) per chunk, in order: in this process (workers == 1) or in worker processes."""
    if workers <= 1:
        worker = Worker(job, it)  # this process's own, not cached: it ends with the evaluation
        with batch_tuning():
            for start, arrays in chunks:
                yield start, worker.run(arrays)
        return
    yield from map_ordered(_run_chunk, chunks, context=job, workers=workers, describe=_chunk_name)


# ----------------------------------------------------------------------------- ray

def ray_module():
    try:
        import ray
    except ImportError:
        raise MissingPackage("--engine ray needs Ray: pip install 'microref[ray]' (or pip install ray)") from None
    return ray


def check_ray_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """RayAddressError unless ``address`` (host:port, ray://host:port; "auto" is left to Ray)
    accepts a TCP connection within ``timeout`` seconds."""
    if address in ("auto", "local"):
        return
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port_text = target.rpartition(":")
    if not sep:
        host, port_text = target, "10001" if address.startswith("ray://") else "6379"
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise RayAddressError(f"the Ray address {printable(address)!r} is not host:port") from None
    host = host.strip("[]") or "127.0.0.1"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise RayAddressError(f"the Ray address {printable(address)!r} does not answer ({why} within {timeout:g} s); "
                              f"start a cluster there (ray start --head), or leave the address out to start a local "
                              f"Ray") from None


_RAY_CONTEXTS: dict[str, Any] = {}  # per Ray worker process: the contexts fetched from the object store


def _ray_apply(fn: Callable, context_ref: list, key: str, item) -> Any:
    """A Ray task: ``fn(context, item)``, the context fetched from the object store once per worker
    process (the ref comes in a list so that Ray does not fetch it for every task)."""
    marker = os.environ.get(FAULT_ONCE_ENV)
    if marker and os.path.isdir(os.path.dirname(marker)):
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL)  # one task only, whoever is first
        except FileExistsError:
            fd = None
        if fd is not None:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)  # the worker dies mid-task: Ray must retry the task

    def fetch():
        import ray
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1, user_api="blas")
        return ray.get(context_ref[0])
    return fn(worker_cache(_RAY_CONTEXTS, key, fetch), item)


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Token authentication is enabled for this Ray cluster")


@contextlib.contextmanager
def _without_token_auth_notice():
    """Ray's notice that the local Ray started for a command has token authentication on (a
    secure default, nothing the user did) kept off the command's stderr; its warning that
    authentication is off still shows."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DropTokenAuthNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


@contextlib.contextmanager
def ray_session(address: str | None, workers: int | None):
    """Ray, initialised for the block if the caller has not done it (and shut down after)."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    if address:
        check_ray_address(address)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            with _without_token_auth_notice():
                ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING,
                         log_to_driver=False)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
        with contextlib.suppress(Exception):
            ray.shutdown()
        where = f"the Ray address {printable(address)!r}" if address else "a local Ray"
        raise RayAddressError(f"could not connect to {where}: {printable(str(e).splitlines()[0] if str(e) else e)}") \
            from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _map_ray(fn, items, context, *, address, workers, retries, describe):
    with ray_session(address, workers if not address else None) as ray:
        task = ray.remote(max_retries=retries)(_ray_apply)
        context_ref = ray.put(context)
        key = context_key(context)
        cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
        window = max(2, IN_FLIGHT_PER_WORKER * cpus)
        pending: collections.deque = collections.deque()
        source = enumerate(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        number, item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((number, _describe(describe, item, number),
                                    task.remote(fn, [context_ref], key, item)))
                if not pending:
                    return
                number, name, ref = pending.popleft()
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, MicrorefError):
                        raise cause from None
                    raise WorkerError(f"a Ray task failed on {name}: "
                                      f"{printable(str(cause or e).splitlines()[0])}") from None
                except ray.exceptions.WorkerCrashedError as e:
                    raise WorkerError(f"a Ray worker died on {name}, {retries} retries "
                                      f"included: {printable(str(e).splitlines()[0])}") from None
                yield result
        finally:
            for _, _, ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref)


def run_ray(job: Job, chunks: Iterable[tuple[int, list[np.ndarray]]], *, address: str | None = None,
            workers: int | None = None, retries: int = RAY_TASK_RETRIES) -> Iterator[tuple[int, ChunkResult]]:
    """(start, result) per chunk, in order, from Ray tasks."""
    return map_ordered(_run_chunk, chunks, context=job, engine="ray", workers=workers, address=address,
                       retries=retries, describe=_chunk_name)
