"""Dataset-scale evaluation: what accuracy the device gets, the int8 model run exactly as TFLM runs
it over a whole set, next to the float model and LiteRT — in bounded memory, on every core or on
a Ray cluster, with the same bytes everywhere.

    from interp.scale import evaluate

    result = evaluate("model.tflite", "val_images.npy", labels="val_labels.npy",
                      float_model="model_float.tflite", against="litert", workers=2)
    print(result.summary["int8"]["top1"], result.summary["float"]["top1_agreement"])
    result.outputs            # every output tensor, samples first (model order)
    evaluate(..., engine="ray")                       # a local Ray, started and stopped
    evaluate(..., engine="ray", address="head:6379")  # an existing Ray cluster

``data``: see ``interp.scale.data`` (.npy/.npz memory-mapped, a folder of images, arrays, a
generator of batches). Everything that can be checked is checked before the first sample runs
(``InputError``, ``ModelError``, ``RayAddressError``, ``MissingPackage``): the data's shape,
dtype and range, the labels' number and range, image files that cannot be read, the float
model's inputs against the int8 model's, a Ray address that does not answer.

The samples are cut into chunks (``chunk_size``, by default what fits about 64 MB of the model's
activations, smaller when there are few samples per worker); at most a few chunks per worker
are in memory at a time, plus the outputs kept (``keep_outputs``).

``map_ordered(fn, items, context=..., engine=..., workers=..., address=...)`` runs any picklable
``fn(context, item)`` over items on the same engines, results in order (the conformance sweeps
of ``microref compare DIR`` / ``vectors DIR``, ``interp.tools.sweep``, are built on it).
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, printable
from ..model.verify import read_model_file
from ..quantization import dequantize
from ..runtime import Interpreter
from ..runtime.streaming import activation_bytes_per_sample, check_chunk_size, default_chunk_size
from .data import Dataset, open_data, read_labels
from .engines import (
    ENGINES,
    Job,
    LiteRTRefused,
    MissingPackage,
    RayAddressError,
    WorkerError,
    make_litert,
    map_ordered,
    ray_module,
    run_local,
    run_ray,
)
from .metrics import EvalStats, class_scores

__all__ = ["Dataset", "ENGINES", "Evaluation", "LiteRTRefused", "MissingPackage", "RayAddressError", "WorkerError",
           "evaluate", "map_ordered", "open_data", "read_labels", "run_outputs"]

AGAINST = ("litert",)
CHUNKS_PER_WORKER = 4  # with few samples, chunks shrink so that every worker gets about this many
# Below this many activation bytes over all samples (about 1,000 person_detect samples, a second
# or two of work), the default is to run in this process rather than start worker processes.
SMALL_JOB_ACTIVATION_BYTES = 256 << 20


@dataclass
class Evaluation:
    """The result of ``evaluate``: ``summary`` (a JSON-ready dict: accuracy, agreement, LSB
    histograms, confusion; see ``interp.scale.metrics.EvalStats.summary``), ``outputs`` (the int8
    model's outputs for every sample, model order, samples first; None with keep_outputs=False),
    ``output_names`` and how it ran (``engine``, ``workers``, ``chunk_size``, ``seconds``)."""

    summary: dict
    outputs: list[np.ndarray] | None
    output_names: list[str]
    engine: str
    workers: int
    chunk_size: int
    seconds: float
    dataset: Dataset = field(repr=False)

    @property
    def samples(self) -> int:
        return int(self.summary["samples"])

    def to_json(self) -> dict:
        out = dict(self.summary)
        out["run"] = {"engine": self.engine, "workers": self.workers, "chunk_size": self.chunk_size,
                      "seconds": round(self.seconds, 3),
                      "samples_per_second": round(self.samples / self.seconds, 2) if self.seconds > 0 else None,
                      "data": self.dataset.description}
        return out


def _model_bytes(model, what: str) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        return read_model_file(os.fspath(model))
    raise InputError(f"{what} must be a path to a .tflite file or its bytes, not {type(model).__name__}")


def _check_float_model(it: Interpreter, float_it: Interpreter) -> None:
    """The float model must take the same inputs (shapes) and give as many outputs, of the same sizes."""
    a = [tuple(int(s) for s in d["shape"]) for d in it.input_details]
    b = [tuple(int(s) for s in d["shape"]) for d in float_it.input_details]
    if a != b:
        raise InputError(f"the float model's inputs are shaped {b}, the int8 model's {a}: they must be the same")
    sa = [int(np.prod(d["shape"])) for d in it.output_details]
    sb = [int(np.prod(d["shape"])) for d in float_it.output_details]
    if sa != sb:
        raise InputError(f"the float model's outputs have {sb} values, the int8 model's {sa}: they must match")


def _dequantizer(it: Interpreter):
    tensors = [it.tensors[ti] for ti in it.subgraph.outputs]

    def convert(outputs: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for t, y in zip(tensors, outputs):
            if t.dtype.kind == "f" or t.quantization is None or t.quantization.per_channel:
                out.append(np.asarray(y, np.float64))
            else:
                out.append(dequantize(y, t))
        return out
    return convert


def _workers(workers, engine: str) -> int:
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise InputError(f"workers must be a whole number >= 1, not {workers!r}")
    return int(workers)


def evaluate(model, data, *, labels=None, float_model=None, against: str | None = None, top_k: int = 5,
             classifier_output: int = 0, engine: str = "local", workers: int | None = None,
             address: str | None = None, chunk_size: int | None = None,
             image_range: tuple[float, float] | None = None, check_range: bool = True, kernels: str = "fast",
             keep_outputs: bool = True, progress: Callable[[int, int | None], None] | None = None) -> Evaluation:
    """Run the int8 ``model`` (a path or bytes) over ``data`` as TFLM computes it and measure it.

    ``labels``: a path or an array, one class index per sample (an image folder's class
    subfolders and an .npz's ``labels`` member give them too); ``float_model``: the float model
    of the same network, run on the same real values (integer data dequantized with the int8
    model's input parameters); ``against="litert"``: LiteRT (default kernels) on the same int8
    inputs, for its top-1 disagreements and the per-output LSB histogram; ``top_k`` (clipped to
    the classes); ``classifier_output``: which output holds the class scores.

    ``engine``: "local" (``workers`` processes; default the machine's cores, or this process alone
    for a small job; 1 runs in this process) or "ray" (``address`` of a cluster, or a local Ray
    started for the call; a Ray the caller initialised is used as is). ``progress(done, total)``
    is called after every chunk (``total`` None when a generator's length is unknown).
    """
    started = time.perf_counter()
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if against is not None and against not in AGAINST:
        raise InputError(f"against must be one of {AGAINST}, not {against!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise InputError(f"top_k must be a whole number >= 1, not {top_k!r}")
    n_workers = _workers(workers, engine)
    model_bytes = _model_bytes(model, "model")
    it = Interpreter.from_bytes(model_bytes, kernels=kernels)
    float_bytes = None
    if float_model is not None:
        float_bytes = _model_bytes(float_model, "float_model")
        float_it = Interpreter.from_bytes(float_bytes, kernels=kernels)
        _check_float_model(it, float_it)
    if not 0 <= classifier_output < len(it.subgraph.outputs):
        raise InputError(f"classifier_output {classifier_output} is not an output: the model has "
                         f"{len(it.subgraph.outputs)}")
    # The optional packages and the cluster before the data is read.
    if against == "litert":
        make_litert(model_bytes)  # LiteRT refuses some models TFLM runs: say so before the work
    if engine == "ray":
        ray = ray_module()
        if address and not ray.is_initialized():
            from .engines import check_ray_address
            check_ray_address(address)
    dataset = open_data(data, it, image_range=image_range, check_range=check_range)

    out_names = [it.tensors[ti].name for ti in it.subgraph.outputs]
    classifier = class_scores(np.zeros((1,) + tuple(it.tensors[it.subgraph.outputs[classifier_output]].shape),
                                       np.int8))
    classes = None if classifier is None else classifier.shape[1]
    if labels is not None:
        label_values = read_labels(labels, dataset.n)
    else:
        label_values = dataset.labels
    if label_values is not None:
        if classes is None:
            raise InputError(f"labels need a classifier output (one axis of 2 or more classes); output "
                             f"{classifier_output} \"{printable(out_names[classifier_output])}\" is shaped "
                             f"{list(it.tensors[it.subgraph.outputs[classifier_output]].shape)}")
        bad = (label_values < 0) | (label_values >= classes)
        if bad.any():
            first = int(np.argmax(bad))
            raise InputError(f"label {int(label_values[first])} of sample {first} is not a class of the model "
                             f"(0..{classes - 1}); {int(bad.sum())} label(s) are outside")
    k = min(int(top_k), classes) if classes else 1

    if chunk_size is None:
        size = default_chunk_size(it)
        if dataset.n is not None:
            size = max(1, min(size, math.ceil(dataset.n / (CHUNKS_PER_WORKER * n_workers))))
    else:
        size = check_chunk_size(chunk_size)
    job = Job(model_bytes, float_bytes, against, kernels, tuple(dataset.kinds))
    n_chunks = math.ceil(dataset.n / size) if dataset.n is not None else None
    if engine == "local" and n_chunks is not None:
        n_workers = max(1, min(n_workers, n_chunks))  # no process for want of work
        if workers is None and dataset.n * activation_bytes_per_sample(it) < SMALL_JOB_ACTIVATION_BYTES:
            n_workers = 1  # starting processes (about a second each) would cost more than the work
    chunks = dataset.chunks(size)
    if engine == "local":
        results = run_local(job, chunks, n_workers, it)
    else:
        results = run_ray(job, chunks, address=address, workers=n_workers if not address else None)

    stats = EvalStats(out_names, classifier_output=classifier_output, classes=classes, k=k, labels=label_values,
                      with_float=float_bytes is not None, with_litert=against == "litert",
                      dequantize_outputs=_dequantizer(it))
    kept: list[list[np.ndarray]] = []
    whole = None
    done = 0
    for start, result in results:
        if label_values is not None and dataset.n is None and start + len(result.outputs[0]) > len(label_values):
            raise InputError(f"the data has more samples than the {len(label_values):,} labels")
        stats.add(start, result.outputs, result.float_outputs, result.litert_outputs)
        count = len(result.outputs[0])
        if keep_outputs:
            if dataset.n is not None:
                if whole is None:
                    whole = [np.empty((dataset.n,) + o.shape[1:], o.dtype) for o in result.outputs]
                for w, o in zip(whole, result.outputs):
                    w[start:start + count] = o
            else:
                kept.append(result.outputs)
        done += count
        if progress is not None:
            progress(done, dataset.n)
    if label_values is not None and done != len(label_values):
        raise InputError(f"the data has {done:,} samples and {len(label_values):,} labels")
    if keep_outputs and whole is None and kept:
        whole = [np.concatenate(parts) for parts in zip(*kept)]
    return Evaluation(stats.summary(), whole if keep_outputs else None, out_names, engine, n_workers, size,
                      time.perf_counter() - started, dataset)


def run_outputs(model, data, **kwargs) -> list[np.ndarray]:
    """Only the int8 model's outputs for every sample of ``data`` (model order, samples first),
    run like ``evaluate`` (same keyword arguments for the engine and the data)."""
    return evaluate(model, data, **kwargs).outputs

