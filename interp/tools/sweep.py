"""Conformance sweeps: every model of a folder × N seeds compared with TFLM (``microref compare
DIR``), or its test vectors written (``microref vectors DIR -o OUT``), on the engines of
``interp.scale`` — this process, worker processes, or Ray tasks on a cluster.

    from interp.tools.sweep import sweep
    result = sweep("models/", seeds=3, workers=2)            # or engine="ray", address="head:6379"
    result.exit_code, [m.verdict for m in result.models], result.to_json()

A task is a model with its seeds (all of them, up to MAX_SEEDS_PER_TASK; or, when there are
fewer models than twice the workers, a share of them), ``compare_model``; each (model, seed) is
a case, ``compare_case``: the model loaded by microref (a refusal is a finding, reported, not
fatal), seeded random inputs exactly as ``microref compare MODEL --seed S`` draws them, every
tensor compared with the other runtime, run in a child process of the worker. That child is long-lived
(``other_runtimes.RuntimeChild``, one per worker process, serving model after model): it builds
the runtime's interpreter afresh for every case, as the child of ``microref compare MODEL`` does,
and costs its start (~0.3 s of CPU) once instead of per case. TFLM crashing on a case is reported
as a crash of TFLM for that case and takes no worker down; the next case starts a fresh child.
Every answer that is not "exact" — a crash, a hang, a refusal, a difference — comes from a child
that ran nothing before that case (it is asked again of a fresh child otherwise), so a case's
record is the one ``microref compare MODEL --seed S`` gives. A task depends on nothing but its
model's bytes, its seeds and the options, so the results are the same whatever the engine, and
they come back in the order of the tasks (models sorted by path, then seeds). The models are
read by the command, a few tasks ahead of the workers, and shipped with the tasks: a Ray cluster
needs microref installed, not the files.

``vectors_case`` is the task of a vectors sweep (one per model): the files ``microref vectors
MODEL`` writes, made in a temporary folder of the worker and returned as bytes, so that the
command writes them where it runs (OUT/<model path without .tflite>/), whichever machine ran it.
"""
from __future__ import annotations

import atexit
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ..api import Interpreter
from ..errors import InputError, MicrorefError, printable
from ..model.verify import read_model_file
from ..runtime.inputs import random_inputs
from ..scale import ENGINES, map_ordered, ray_module
from ..scale.engines import check_ray_address
from . import compare as cmp
from . import vectors as vec

# Fewer tasks than this run in the command's own process by default: starting worker processes
# (a second or two each, importing numpy and the kernels) would cost more than they save.
SMALL_SWEEP_TASKS = 8
# A compare sweep runs in the command's own process by default when its work is estimated below
# SMALL_SWEEP_SECONDS: two worker processes and their TFLM children took ~4 s to start on 2 busy
# cores, which a sweep must save before they pay. The estimate, measured with one long-lived TFLM
# child: ~3 ms a case (golden/models: 729 cases in 2.4 s) and ~0.23 us per byte of model per seed
# (16 real models, 6 MB, × 3 seeds in 4.2 s).
SMALL_SWEEP_SECONDS = 8.0
CASE_SECONDS = 0.003
MODEL_BYTE_SECONDS = 2.5e-7
MAX_SEEDS = 100_000
MAX_SEEDS_PER_TASK = 50
MESSAGE_CHARS = 300  # a refusal or crash message kept per case (one line)

STATUSES = ("exact", "differs", "refused", "other_refused", "other_crashed", "error")


# ----------------------------------------------------------------------------- the models

def find_models(folder: str | os.PathLike) -> list[str]:
    """Every ``*.tflite`` regular file under ``folder`` (recursively, symbolic links to folders not
    followed), as paths relative to it with "/" separators, sorted."""
    root = os.fspath(folder)
    if not os.path.isdir(root):
        raise InputError(f"{printable(root)!r} is not a folder")
    found = []
    for here, dirs, files in os.walk(root, onerror=_walk_error):
        dirs.sort()
        for name in files:
            path = os.path.join(here, name)
            if name.endswith(".tflite") and os.path.isfile(path):
                found.append(os.path.relpath(path, root).replace(os.sep, "/"))
    if not found:
        raise InputError(f"no .tflite files under {printable(root)!r}")
    return sorted(found)


def _walk_error(e: OSError) -> None:
    raise InputError(f"cannot list {printable(e.filename or '')!r}: {e.strerror or e}")


def model_list(models) -> tuple[str, list[str]]:
    """(the folder the names are relative to, the names): a folder, or a list of model paths."""
    if isinstance(models, (str, os.PathLike)):
        if os.path.isdir(models):
            return os.fspath(models), find_models(models)
        return "", [os.fspath(models)]
    paths = [os.fspath(m) for m in models]
    if not paths:
        raise InputError("no models to sweep")
    return "", paths


@dataclass(frozen=True)
class ModelTask:
    """One task: a model's bytes (or why they could not be read) and its seeds."""

    name: str           # the model's path relative to the folder swept
    data: bytes | None  # None when the file could not be read (``unreadable`` says why)
    seeds: tuple[int, ...] = (0,)
    unreadable: str = ""


def _tasks(root: str, names: list[str], seeds: list[int], pieces: int = 1) -> Iterator[ModelTask]:
    """The tasks in order, each model read once, when its task is due (lazily: a sweep of
    thousands of models never holds them all), its seeds cut into ``pieces`` tasks."""
    size = max(1, math.ceil(len(seeds) / max(1, pieces)))
    for name in names:
        try:
            data, why = read_model_file(os.path.join(root, name) if root else name), ""
        except MicrorefError as e:
            data, why = None, _one_line(f"{type(e).__name__}: {e}")
        for start in range(0, len(seeds), size):
            yield ModelTask(name, data, tuple(seeds[start:start + size]), why)


def _one_line(text: str) -> str:
    line = printable(" ".join(str(text).split()))
    return line if len(line) <= MESSAGE_CHARS else line[:MESSAGE_CHARS - 1] + "…"


def _refusal(e: BaseException) -> str:
    return _one_line(f"{type(e).__name__}: {e}")


# ----------------------------------------------------------------------------- compare

@dataclass(frozen=True)
class CompareOptions:
    against: str = "tflm"
    kernels: str = "fast"


@dataclass
class CaseResult:
    """One (model, seed) compared: ``status`` is one of STATUSES (exact; differs; refused: microref
    refuses the model or its inputs; other_refused / other_crashed: the other runtime refused or
    crashed; error: an unexpected error in microref, a bug)."""

    model: str
    seed: int
    status: str
    message: str = ""
    differing: int = 0      # output values that differ
    size: int = 0           # output values
    max_lsb: float = 0      # the largest output difference, in LSB (integer outputs) or absolute (float)
    first_divergent_op: dict | None = None  # {"index", "op", "reproduced_by"}

    def to_json(self) -> dict:
        return {"model": self.model, "seed": self.seed, "status": self.status, "message": self.message,
                "differing": self.differing, "size": self.size, "max_lsb": self.max_lsb,
                "first_divergent_op": self.first_divergent_op}


_CHILDREN = threading.local()  # per thread of a worker: {runtime: its RuntimeChild}


def runtime_child(against: str) -> cmp.RuntimeChild:
    """This thread's long-lived child running ``against`` (started with its first case)."""
    children = _CHILDREN.__dict__.setdefault("by_runtime", {})
    if against not in children:
        children[against] = child = cmp.RuntimeChild(against)
        atexit.register(child.close)  # a worker process ending waits for its child (no orphan, its CPU counted)
    return children[against]


def close_runtime_children() -> None:
    """End this thread's children (a sweep run in this process ends its own)."""
    for child in _CHILDREN.__dict__.pop("by_runtime", {}).values():
        child.close()
        atexit.unregister(child.close)


def compare_model(options: CompareOptions, task: ModelTask) -> list[CaseResult]:
    """A task of a compare sweep (run in a worker): ``compare_case`` for each of its seeds, the
    other runtime run by this worker's long-lived child."""
    child = None if task.data is None else runtime_child(options.against)
    return [compare_case(options, task, seed, child) for seed in task.seeds]


def compare_case(options: CompareOptions, task: ModelTask, seed: int,
                 child: cmp.RuntimeChild | None = None) -> CaseResult:
    """One case: microref against ``options.against`` on the model with inputs drawn from the seed
    as ``microref compare MODEL --seed S`` draws them; the other runtime run by ``child`` (a
    child process of its own when None). A case not exact whose other runtime answered from a
    child that had run other cases before is compared again with a fresh child's answer."""
    if child is None:
        return _compare_case(options, task, seed, None)
    fresh = []

    def other(model_bytes, inputs):
        values = child.run(model_bytes, inputs)
        fresh.append(child.last_fresh)
        return values
    result = _compare_case(options, task, seed, other)
    if result.status in ("differs", "error") and fresh == [False]:
        result = _compare_case(options, task, seed, lambda m, x: child.run(m, x, fresh=True))
    return result


def _compare_case(options: CompareOptions, task: ModelTask, seed: int, other) -> CaseResult:
    def result(status, message="", **kw):
        return CaseResult(task.name, seed, status, message, **kw)

    if task.data is None:
        return result("refused", task.unreadable)
    try:
        # A fresh interpreter per task: a stateful model (LSTM, SVDF, CALL_ONCE) starts each case
        # from the state TFLM's freshly loaded interpreter has.
        it = Interpreter.from_bytes(task.data, kernels=options.kernels)
        inputs = random_inputs(it, np.random.default_rng(seed))
    except MicrorefError as e:
        return result("refused", _refusal(e))
    try:
        c = cmp.compare_runtime(it, task.data, inputs, options.against, other=other)
    except cmp.MissingPackage:
        raise
    except cmp.OtherRuntimeCrashed as e:
        return result("other_crashed", _one_line(e))
    except cmp.OtherRuntimeRefused as e:
        return result("other_refused", _one_line(e))
    except MicrorefError as e:  # microref refuses to run it (e.g. an undefined read found while running)
        return result("refused", _refusal(e))
    except Exception as e:  # noqa: BLE001 - a bug in microref on one model must not end a sweep of thousands
        return result("error", _refusal(e))
    differing = sum(s.diff.differing for s in c.outputs)
    size = sum(s.diff.size for s in c.outputs)
    max_lsb = max((s.diff.max_lsb for s in c.outputs), default=0)
    first = c.first_divergent
    first_json = None if first is None else {"index": first.op_index, "op": first.op_name,
                                             "reproduced_by": list(first.reproduced_by)}
    exact = c.outputs_exact and first is None
    return result("exact" if exact else "differs", differing=differing, size=size, max_lsb=max_lsb,
                  first_divergent_op=first_json)


@dataclass
class ModelSummary:
    """One model's cases together."""

    model: str
    cases: list[CaseResult] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.cases)

    def first(self, status: str) -> CaseResult | None:
        return next((c for c in self.cases if c.status == status), None)

    @property
    def max_lsb(self) -> float:
        return max((c.max_lsb for c in self.cases if c.status == "differs"), default=0)

    @property
    def verdict(self) -> str:
        """The worst status of its cases (errors first, then differences, then the other runtime's
        refusals and crashes, then microref's refusals)."""
        for status in ("error", "differs", "other_crashed", "other_refused", "refused"):
            if self.count(status):
                return status
        return "exact"

    def to_json(self) -> dict:
        def finding(status):
            case = self.first(status)
            return None if case is None else {"cases": self.count(status), "message": case.message}
        differs = self.first("differs")
        return {"model": self.model, "cases": len(self.cases), "verdict": self.verdict,
                "exact": self.count("exact"), "differs": self.count("differs"),
                "differing_seeds": [c.seed for c in self.cases if c.status == "differs"],
                "max_lsb": self.max_lsb,
                "first_divergent_op": None if differs is None else differs.first_divergent_op,
                "refused_by_microref": finding("refused"), "refused_by_other": finding("other_refused"),
                "crashed_other": finding("other_crashed"), "errors": finding("error")}


@dataclass
class SweepResult:
    """A compare sweep: per model (sorted by path) its cases (in seed order)."""

    folder: str
    against: str
    seeds: list[int]
    models: list[ModelSummary]
    engine: str
    workers: int
    seconds: float

    @property
    def cases(self) -> list[CaseResult]:
        return [c for m in self.models for c in m.cases]

    def totals(self) -> dict:
        out = {"models": len(self.models), "cases": len(self.cases)}
        out.update({status: sum(c.status == status for c in self.cases) for status in STATUSES})
        out["models_by_verdict"] = {status: sum(m.verdict == status for m in self.models) for status in STATUSES}
        return out

    @property
    def exit_code(self) -> int:
        """1 when microref failed unexpectedly on a case (a bug), 7 when a case differs or the other
        runtime refused or crashed (what ``microref compare`` says for one model), else 0: models
        microref refuses are reported, not failures."""
        from .cli_io import EXIT_DIFFERS, EXIT_INTERNAL, EXIT_OK
        statuses = {c.status for c in self.cases}
        if "error" in statuses:
            return EXIT_INTERNAL
        if statuses & {"differs", "other_refused", "other_crashed"}:
            return EXIT_DIFFERS
        return EXIT_OK

    def to_json(self) -> dict:
        return {"command": "compare", "folder": self.folder, "against": self.against, "seeds": self.seeds,
                "run": {"engine": self.engine, "workers": self.workers, "seconds": round(self.seconds, 3)},
                "totals": self.totals(), "models": [m.to_json() for m in self.models],
                "cases": [c.to_json() for c in self.cases]}


def _check_runtime(against: str) -> None:
    if against not in cmp.RUNTIMES:
        raise InputError(f"against must be one of {cmp.RUNTIMES}, not {against!r}")
    from .other_runtimes import _require_package
    _require_package(against)  # MissingPackage before any work


def _seed_list(seeds, seed: int) -> list[int]:
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)):
        values = [int(s) for s in seeds]
        if not values or min(values) < 0:
            raise InputError(f"seeds must be a count >= 1 or a list of seeds >= 0, not {seeds!r}")
        return values
    if not 1 <= seeds <= MAX_SEEDS:
        raise InputError(f"seeds must be from 1 to {MAX_SEEDS:,}, not {seeds!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, not {seed!r}")
    return list(range(int(seed), int(seed) + int(seeds)))


def _engine_setup(engine: str, workers, address: str | None, tasks: int, small: bool | None = None) -> int:
    """The number of workers, after checking the engine and (before any work) a Ray address; by
    default, one (this process) for a ``small`` sweep (fewer than SMALL_SWEEP_TASKS tasks unless
    told), else one per core."""
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {ENGINES}, not {engine!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, (int, np.integer))
                                or workers < 1):
        raise InputError(f"workers must be a whole number >= 1, not {workers!r}")
    if address and engine != "ray":
        raise InputError("an address is for engine='ray'")
    if engine == "ray":
        ray = ray_module()
        if address and not ray.is_initialized():
            check_ray_address(address)
        return int(workers) if workers else (os.cpu_count() or 1)
    if workers is None:
        small = tasks < SMALL_SWEEP_TASKS if small is None else small
        return 1 if small else max(1, min(os.cpu_count() or 1, tasks))
    return max(1, min(int(workers), tasks))


def _task_name(task: ModelTask) -> str:
    seeds = task.seeds
    return f"model {printable(task.name)!r}, " + (f"seed {seeds[0]}" if len(seeds) == 1 else
                                                    f"seeds {seeds[0]}..{seeds[-1]}")


def _estimated_seconds(root: str, names: list[str], seeds: int) -> float:
    """A compare sweep's work in one process, roughly (CASE_SECONDS, MODEL_BYTE_SECONDS)."""
    size = 0
    for name in names:
        try:
            size += os.stat(os.path.join(root, name) if root else name).st_size
        except OSError:
            pass  # reported by its task
    return seeds * (len(names) * CASE_SECONDS + size * MODEL_BYTE_SECONDS)


def _pieces(models: int, seeds: int, workers: int) -> int:
    """Tasks per model: 1 (the model loaded once per worker), or, with fewer models than twice
    the workers, the seeds shared out so that every worker has work; and at most
    MAX_SEEDS_PER_TASK seeds a task (the progress moves, the workers stay evenly loaded)."""
    pieces = math.ceil(seeds / MAX_SEEDS_PER_TASK)
    if workers > 1 and models < 2 * workers:
        pieces = max(pieces, math.ceil(2 * workers / models))
    return max(1, min(seeds, pieces))


def sweep(models, *, seeds=1, seed: int = 0, against: str = "tflm", engine: str = "local", workers: int | None = None,
          address: str | None = None, kernels: str = "fast",
          progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Compare every model (a folder: its ``*.tflite`` files, recursively, sorted; or a list of
    paths) with ``against`` (TFLM, or "litert" / "litert-ref") on ``seeds`` seeded random inputs
    each (a count: seeds ``seed`` .. ``seed + seeds - 1``; or a list of seeds).

    ``engine`` "local" (``workers`` processes; by default this process for a sweep estimated to
    take less than SMALL_SWEEP_SECONDS there, else one per core) or "ray" (``address`` of a
    cluster, or a local Ray started for the call). ``progress(done, total)`` (in cases) after every
    task. Checked before any work: the folder has models, the runtime is installed, the Ray
    address answers.
    """
    started = time.perf_counter()
    root, names = model_list(models)
    seed_values = _seed_list(seeds, seed)
    _check_runtime(against)
    total = len(names) * len(seed_values)
    small = workers is None and engine == "local" and \
        _estimated_seconds(root, names, len(seed_values)) < SMALL_SWEEP_SECONDS
    n_workers = _engine_setup(engine, workers, address, total, small)
    tasks = _tasks(root, names, seed_values, _pieces(len(names), len(seed_values), n_workers))
    if progress is not None:
        progress(0, total)  # the bar from the start: the first case waits for the workers to start
    summaries: list[ModelSummary] = []
    done = 0
    try:
        for cases in map_ordered(compare_model, tasks, context=CompareOptions(against, kernels), engine=engine,
                                 workers=n_workers, address=address, describe=_task_name):
            for case in cases:
                if not summaries or summaries[-1].model != case.model:
                    summaries.append(ModelSummary(case.model))
                summaries[-1].cases.append(case)
            done += len(cases)
            if progress is not None:
                progress(done, total)
    finally:
        close_runtime_children()  # the child of a sweep run in this process
    return SweepResult(root, against, seed_values, summaries, engine, n_workers, time.perf_counter() - started)


# ----------------------------------------------------------------------------- compare: the report

VERDICT_TEXT = {"exact": "exact", "differs": "DIFFERS", "refused": "refused by microref",
                "other_refused": "refused by {other}", "other_crashed": "CRASHED {other}", "error": "microref ERROR"}


def _lsb(x) -> str:
    return f"{x:g}" if isinstance(x, float) and not float(x).is_integer() else f"{int(x)}"


def format_sweep(result: SweepResult, command: str = "microref compare") -> str:
    other = cmp.RUNTIME_NAMES.get(result.against, result.against)
    seeds = result.seeds
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else (
        f"seeds {seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else f"{len(seeds)} seeds")
    n = len(result.cases)
    where = printable(result.folder) if result.folder else (
        printable(result.models[0].model) if len(result.models) == 1 else "(the models given)")
    rate = n / result.seconds if result.seconds > 0 else math.inf
    lines = [f"{command} {where} --against {result.against}: {len(result.models)} model"
             f"{'s' if len(result.models) != 1 else ''} × {len(seeds)} ({seed_text}) = {n} case{'s' if n != 1 else ''}",
             f"  {result.seconds:.1f} s, {rate:.2f} cases/s ({result.engine} engine, {result.workers} worker"
             f"{'s' if result.workers != 1 else ''})", ""]
    rows = [("model", "cases", "exact", "differ", "max LSB", "verdict")]
    for m in result.models:
        verdict = VERDICT_TEXT[m.verdict].format(other=other)
        note = ""
        if m.verdict == "differs":
            d = m.first("differs")
            op = d.first_divergent_op
            note = (f"seed{'s' if m.count('differs') > 1 else ''} "
                    f"{', '.join(str(c.seed) for c in m.cases if c.status == 'differs')}"
                    + (f"; first divergent op {op['index']} {op['op']}" if op else ""))
        elif m.verdict != "exact":
            case = m.first(m.verdict)
            note = case.message
        rows.append((printable(m.model), str(len(m.cases)), str(m.count("exact")), str(m.count("differs")),
                     _lsb(m.max_lsb) if m.count("differs") else "", verdict + (f": {note}" if note else "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  "
                     f"{r[4]:>{widths[4]}}  {r[5]}".rstrip())
    t = result.totals()
    by = t["models_by_verdict"]
    lines += ["", f"models: {by['exact']} exact, {by['differs']} differ, {by['refused']} refused by microref, "
                  f"{by['other_refused']} refused by {other}, {by['other_crashed']} crashed {other}"
                  + (f", {by['error']} with a microref error" if by["error"] else "")
              + f"; cases: {t['exact']} of {t['cases']} exact"]
    first = next((c for c in result.cases if c.status == "differs"), None)
    if first is not None:
        path = os.path.join(result.folder, first.model) if result.folder else first.model
        lines.append(f"the first difference in full: microref compare {printable(path)} --against {result.against} "
                     f"--seed {first.seed}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- vectors

@dataclass(frozen=True)
class VectorsOptions:
    count: int | None = None
    seed: int = 0
    per_op: bool = False
    flash_budget: int | None = None
    kernels: str = "fast"


@dataclass
class VectorsCase:
    """One model's vectors: ``files`` (path relative to the model's output folder -> bytes) when
    ``status`` is "written"; "refused" (microref refuses the model) or "error" (a bug) with
    ``message`` otherwise."""

    model: str
    status: str
    message: str = ""
    samples: int = 0
    source: str = ""
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # emptied once written
    warnings: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # the paths written (by the command, not the task)

    def to_json(self) -> dict:
        return {"model": self.model, "status": self.status, "message": self.message, "samples": self.samples,
                "source": self.source, "written": self.written, "warnings": self.warnings}


def output_folder(name: str) -> str:
    """A model's output subfolder, relative to -o: its path without ".tflite"."""
    return name[: -len(".tflite")] if name.endswith(".tflite") else name


def vectors_case(options: VectorsOptions, task: ModelTask) -> VectorsCase:
    """A task of a vectors sweep (run in a worker): what ``microref vectors MODEL --count N --seed S``
    writes, as bytes."""
    if task.data is None:
        return VectorsCase(task.name, "refused", task.unreadable)
    base = os.path.basename(output_folder(task.name))
    try:
        it = Interpreter.from_bytes(task.data, kernels=options.kernels)
        vec.check_vector_count(it, options.count or vec.DEFAULT_COUNT)
        inputs, source = vec.random_samples(it, options.count, options.seed)
        with tempfile.TemporaryDirectory(prefix="microref-vectors-") as work:
            result = vec.write_vectors(it, inputs, work, base, per_op=options.per_op,
                                       flash_budget=options.flash_budget, model_bytes=len(task.data), source=source)
            files = {}
            for here, _, names in os.walk(work):
                for name in names:
                    path = os.path.join(here, name)
                    with open(path, "rb") as f:
                        files[os.path.relpath(path, work).replace(os.sep, "/")] = f.read()
    except MicrorefError as e:
        return VectorsCase(task.name, "refused", _refusal(e))
    except Exception as e:  # noqa: BLE001 - a bug on one model must not end a sweep of thousands
        return VectorsCase(task.name, "error", _refusal(e))
    return VectorsCase(task.name, "written", samples=result.samples, source=source, files=files,
                       warnings=result.warnings)


@dataclass
class VectorsSweep:
    folder: str
    output: str
    models: list[VectorsCase]
    engine: str
    workers: int
    seconds: float

    @property
    def exit_code(self) -> int:
        from .cli_io import EXIT_INTERNAL, EXIT_OK
        return EXIT_INTERNAL if any(m.status == "error" for m in self.models) else EXIT_OK

    def to_json(self) -> dict:
        return {"command": "vectors", "folder": self.folder, "output": self.output,
                "run": {"engine": self.engine, "workers": self.workers, "seconds": round(self.seconds, 3)},
                "totals": {"models": len(self.models),
                           **{s: sum(m.status == s for m in self.models) for s in ("written", "refused", "error")}},
                "models": [m.to_json() for m in self.models]}


def vectors_targets(output: str, names: list[str], per_op: bool) -> list[str]:
    """The paths a vectors sweep would write that already exist (checked before any work)."""
    existing = []
    for name in names:
        sub = os.path.join(output, *output_folder(name).split("/"))
        base = os.path.basename(sub)
        for f in (f"{base}_vectors.npz", f"{base}_vectors.h") + ((f"{base}_ops",) if per_op else ()):
            if os.path.lexists(os.path.join(sub, f)):
                existing.append(os.path.join(sub, f))
    return existing


def sweep_vectors(models, output: str, *, count: int | None = None, seed: int = 0, per_op: bool = False,
                  flash_budget: int | None = None, force: bool = False, engine: str = "local",
                  workers: int | None = None, address: str | None = None, kernels: str = "fast",
                  progress: Callable[[int, int], None] | None = None) -> VectorsSweep:
    """``microref vectors`` for every model (a folder, recursively, sorted; or a list of paths):
    OUTPUT/<model path without .tflite>/<name>_vectors.npz and .h (and <name>_ops/ with
    ``per_op``), the files written here as each model's task returns them. Files that exist are
    refused before any work unless ``force``."""
    from .cli_io import UsageError
    started = time.perf_counter()
    root, names = model_list(models)
    if os.path.lexists(output) and not os.path.isdir(output):
        raise UsageError(f"-o {printable(output)!r} exists and is not a directory (a sweep writes a folder per model "
                         f"into it)")
    existing = [] if force else vectors_targets(output, names, per_op)
    if existing:
        raise UsageError(f"{printable(existing[0])!r} exists ({len(existing)} file(s) of the sweep do); pass --force "
                         f"to overwrite them")
    n_workers = _engine_setup(engine, workers, address, len(names))
    options = VectorsOptions(count, seed, per_op, flash_budget, kernels)
    results = map_ordered(vectors_case, _tasks(root, names, [seed]), context=options, engine=engine,
                          workers=n_workers, address=address, describe=_task_name)
    if progress is not None:
        progress(0, len(names))
    done: list[VectorsCase] = []
    for number, case in enumerate(results, 1):
        if case.status == "written":
            sub = os.path.join(output, *output_folder(case.model).split("/"))
            try:
                for rel, data in sorted(case.files.items()):
                    path = os.path.join(sub, *rel.split("/"))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(data)
                    case.written.append(path)
            except OSError as e:
                raise UsageError(f"cannot write into {printable(sub)!r}: {e.strerror or e}") from None
            case.files = {}  # written: the bytes need not stay in memory
        done.append(case)
        if progress is not None:
            progress(number, len(names))
    return VectorsSweep(root, output, done, engine, n_workers, time.perf_counter() - started)


def format_vectors_sweep(result: VectorsSweep) -> str:
    n = len(result.models)
    written = [m for m in result.models if m.status == "written"]
    lines = [f"microref vectors {printable(result.folder) or 'the models given'} -o {printable(result.output)}: "
             f"{n} model{'s' if n != 1 else ''}, {result.seconds:.1f} s ({result.engine} engine, {result.workers} "
             f"worker{'s' if result.workers != 1 else ''})", ""]
    width = max(len(printable(m.model)) for m in result.models)
    for m in result.models:
        if m.status == "written":
            what = f"{m.samples} vector{'s' if m.samples != 1 else ''} -> {printable(output_folder(m.model))}/"
        else:
            what = ("refused by microref: " if m.status == "refused" else "microref ERROR: ") + m.message
        lines.append(f"{printable(m.model):<{width}}  {what}")
        lines += [f"{'':<{width}}  {printable(w)}" for w in m.warnings]
    refused = sum(m.status == "refused" for m in result.models)
    errors = sum(m.status == "error" for m in result.models)
    lines += ["", f"{len(written)} written, {refused} refused by microref" + (f", {errors} errors" if errors else "")
              + (f"; each: {written[0].source}" if written else "")]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the commands

def is_sweep(args) -> bool:
    """compare / vectors sweep when MODEL is a folder (or compare --seeds is given)."""
    return os.path.isdir(args.model) or getattr(args, "seeds", None) is not None


def check_single(args) -> None:
    """The engine options mean a sweep: refused (exit 2) for a single model."""
    from .cli_io import UsageError
    given = [o for o, v in (("--workers", args.workers), ("--engine", args.engine), ("--address", args.address))
             if v is not None]
    if given:
        more = " or --seeds N" if hasattr(args, "seeds") else ""
        raise UsageError(f"{', '.join(given)} run{'s' if len(given) == 1 else ''} a sweep: give a folder of "
                         f"models{more}")


def _check_engine_args(args, refused: list[tuple[str, object]]) -> None:
    from .cli_io import UsageError
    for option, value in refused:
        if value:
            raise UsageError(f"{option} is for one model, not a sweep over a folder of models")
    if args.address and args.engine != "ray":
        raise UsageError("--address is for --engine ray")


def cmd_compare_sweep(args) -> int:
    import json

    from .cli_io import UsageError
    from .progress import Progress
    _check_engine_args(args, [("--float", args.float_model), ("--data", args.data), ("--input", args.input),
                              ("--plot", args.plot)])
    if args.against == "all":
        raise UsageError("a sweep compares with one runtime at a time: --against tflm, litert or litert-ref")
    with Progress("compare", quiet=args.quiet, unit="case") as bar:
        result = sweep(args.model, seeds=args.seeds or 1, seed=args.seed, against=args.against,
                       engine=args.engine or "local", workers=args.workers, address=args.address,
                       kernels=args.kernels, progress=bar)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_sweep(result))
    return result.exit_code


def cmd_vectors_sweep(args) -> int:
    import json

    from .progress import Progress
    _check_engine_args(args, [("--input", args.input)])
    with Progress("vectors", quiet=args.quiet, unit="model") as bar:
        result = sweep_vectors(args.model, args.output, count=args.count, seed=args.seed, per_op=args.per_op,
                               flash_budget=args.flash_budget, force=args.force, engine=args.engine or "local",
                               workers=args.workers, address=args.address, kernels=args.kernels, progress=bar)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(format_vectors_sweep(result))
    return result.exit_code
