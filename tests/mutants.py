"""Mutation fuzzer: broken variants of valid models must be refused cleanly, quickly and small.

    python -m tests.mutants --count 20000 [--models DIR ...] [--seed N] [--workers 2]
                            [--timeout 2] [--kill-after 20] [--memory-mb 1024] [--save DIR]
    python -m tests.mutants --replay MUTANT.tflite      # rerun one saved mutant, with traceback

Each mutant is a valid model (``golden/models`` and ``../shared/models`` by default) with one
to three mutations: bit flips, byte overwrites, truncation, spliced or deleted byte ranges, and
rewrites aimed at the flatbuffer's own structure (found by walking it with the verifier): table
and vtable offsets, vector lengths, tensor/buffer/opcode indices, shape dimensions, tensor
types, quantization scales, zero points and dimensions.

Every mutant must either load and run (on seeded random inputs) or raise a ``MicrorefError``
subclass, within ``--timeout`` seconds of CPU time (or, for a mutant that runs, 1.5x the clean
model's own time when that is longer; CPU time, because the machine may be busy with other work)
and with a peak resident memory under ``--memory-mb`` (measured per mutant: the worker resets
its high-water mark before each one). Mutants run in a pool of worker processes with RLIMIT_AS
set to ``--address-space-mb`` as a backstop, so a hang (killed after ``--kill-after`` seconds), a
crash or a blow-up is measured and reported as a violation instead of ending the run.

microref runs at its DEFAULT limits (``interp.verify``: MAX_TENSOR_ELEMENTS,
MAX_ACTIVATION_BYTES, MAX_OPERAND_BYTES, and the 1 GiB memory budget MAX_MEMORY_BYTES): what a
user gets is what is fuzzed. The report also gives, for the mutants that loaded, the largest
ratio of measured memory to ``verify.memory_estimate`` (it must stay below 1 for the budget to
mean anything).

``--structured N`` adds N cases of every family of the structure-aware generator
(tests/structured_fuzz.py: hand-built hostile models, not mutations) to the same campaign.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import re
import resource
import struct
import sys
import time
import traceback
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_MODEL_DIRS = (REPO / "golden" / "models", REPO.parent / "shared" / "models")
# The backstop address-space limit of a worker (RLIMIT_AS): well above the memory limit, since
# numpy and BLAS reserve address space they never touch.
ADDRESS_SPACE_MB = 3072


# ------------------------------------------------------------------------------ one mutant
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def run_mutant(data: bytes, seed: int = 0, on_outputs=None) -> tuple[str, str, int]:
    """Load ``data`` and run it on seeded random inputs: (outcome, detail, estimated bytes).

    outcome is "ran", the name of the MicrorefError subclass raised, or "escape:<Exception>"
    for anything else (a bug) — including a message that spans lines (other than
    UnsupportedOpError's list) or carries a control character. The estimate is
    ``verify.memory_estimate`` of the model when it parsed, else 0. ``on_outputs(outputs)``, when
    given, makes the detail of a model that ran (tests/structured_fuzz.py digests them).
    """
    from interp import Interpreter, MicrorefError, load_model, verify
    from interp.runtime.inputs import random_inputs

    estimate = 0
    try:
        model = load_model(data)
        estimate = verify.memory_estimate(model).total()
        it = Interpreter(model)
        outputs = it.run(random_inputs(it, np.random.default_rng(seed)))
        return "ran", on_outputs(outputs) if on_outputs else "", estimate
    except MicrorefError as e:
        message = str(e)
        if "\n" in message and type(e).__name__ != "UnsupportedOpError":
            return "escape:multi-line message", message, estimate
        if _CONTROL.search(message):
            return "escape:control character in message", ascii(message)[:300], estimate
        return type(e).__name__, message.split("\n")[0], estimate
    except Exception as e:  # noqa: BLE001 - every other exception is what we are hunting
        frames = traceback.extract_tb(e.__traceback__)
        ours = [f for f in frames if "/interp/" in f.filename or "/ops/" in f.filename] or frames
        at = f"{Path(ours[-1].filename).parent.name}/{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
        return f"escape:{type(e).__name__}", f"{at}: {str(e)[:200]}", estimate


def misbehaving_runner(data: bytes, seed: int = 0) -> tuple[str, str, int]:
    """run_mutant, except that b"hang" hangs and b"crash" kills the process (to test the pool)."""
    if data == b"hang":
        while True:
            time.sleep(1)
    if data == b"crash":
        os.abort()
    return run_mutant(data, seed)


def _reset_peak_rss() -> bool:
    """Reset this process's resident-memory high-water mark (Linux); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_kib(resettable: bool) -> int:
    if resettable:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _worker(conn, address_space_bytes: int, runner=run_mutant):
    """Run tasks sent over ``conn`` until it closes; report outcome, time and the peak RSS of each."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if address_space_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (address_space_bytes, address_space_bytes))
    import warnings
    warnings.simplefilter("ignore")
    import ops  # noqa: F401  (import before timing the first mutant)

    conn.send("ready")
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        task_id, data, seed = task
        resettable = _reset_peak_rss()
        base_kib = _peak_rss_kib(resettable)
        start, start_cpu = time.perf_counter(), time.process_time()
        outcome, detail, estimate = runner(data, seed)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        rss_kib = _peak_rss_kib(resettable)
        conn.send((task_id, outcome, detail, elapsed, cpu, rss_kib, max(0, rss_kib - base_kib), estimate))


@dataclasses.dataclass
class Result:
    task_id: int
    outcome: str
    detail: str
    seconds: float  # wall-clock time
    cpu_seconds: float  # the worker's CPU time (what the time limit applies to: the machine may be busy)
    rss_kib: int  # the worker's peak RSS during this task (0 when it died)
    grew_kib: int = 0  # how far that peak rose above the worker's resident size before the task
    estimate: int = 0  # verify.memory_estimate of the model in bytes, 0 when it did not parse


class Pool:
    """Worker processes that run mutants with an address-space limit and a kill timeout."""

    def __init__(self, workers: int = 2, address_space_mb: int = ADDRESS_SPACE_MB, kill_after: float = 20.0,
                 runner=run_mutant):
        self.ctx = get_context("spawn")
        self.runner = runner
        self.memory = address_space_mb << 20
        self.kill_after = kill_after
        self.slots = [self._start() for _ in range(workers)]

    def _start(self):
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.memory, self.runner), daemon=True)
        proc.start()
        child.close()
        # Start the clock on mutants only once the worker has imported everything.
        if not parent.poll(120) or parent.recv() != "ready":
            raise RuntimeError("a fuzzing worker did not start")
        return {"proc": proc, "conn": parent, "task": None, "since": 0.0}

    def _restart(self, i: int):
        slot = self.slots[i]
        if slot["proc"].is_alive():
            slot["proc"].kill()
        slot["proc"].join(5)
        slot["conn"].close()
        self.slots[i] = self._start()

    def run(self, tasks):
        """Yield a Result for every (task_id, data, seed) in ``tasks``."""
        tasks = iter(tasks)
        pending = True
        while True:
            for i, slot in enumerate(self.slots):
                if slot["task"] is None and pending:
                    task = next(tasks, None)
                    if task is None:
                        pending = False
                        continue
                    try:
                        slot["conn"].send(task)
                    except (BrokenPipeError, OSError):
                        self._restart(i)
                        self.slots[i]["conn"].send(task)
                    self.slots[i]["task"] = task[0]
                    self.slots[i]["since"] = time.perf_counter()
            busy = [s for s in self.slots if s["task"] is not None]
            if not busy:
                return
            now = time.perf_counter()
            timeout = max(0.0, min(s["since"] + self.kill_after - now for s in busy))
            ready = wait([s["conn"] for s in busy] + [s["proc"].sentinel for s in busy], timeout)
            for i, slot in enumerate(self.slots):
                if slot["task"] is None:
                    continue
                task_id, elapsed = slot["task"], time.perf_counter() - slot["since"]
                if slot["conn"] in ready:
                    try:
                        tid, outcome, detail, seconds, cpu, rss, grew, estimate = slot["conn"].recv()
                        slot["task"] = None
                        yield Result(tid, outcome, detail, seconds, cpu, rss, grew, estimate)
                        continue
                    except (EOFError, OSError):
                        pass
                if slot["conn"] in ready or slot["proc"].sentinel in ready or not slot["proc"].is_alive():
                    slot["proc"].join(1)
                    code = slot["proc"].exitcode
                    self._restart(i)
                    yield Result(task_id, "crash", f"worker died (exit code {code})", elapsed, elapsed, 0)
                elif elapsed >= self.kill_after:
                    self._restart(i)
                    yield Result(task_id, "timeout", f"killed after {elapsed:.1f} s", elapsed, elapsed, 0)

    def close(self):
        for slot in self.slots:
            try:
                slot["conn"].send(None)
            except (BrokenPipeError, OSError):
                pass
        for slot in self.slots:
            slot["proc"].join(2)
            if slot["proc"].is_alive():
                slot["proc"].kill()
                slot["proc"].join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------ mutations
@dataclasses.dataclass
class Seed:
    """A valid model and what the mutator knows about its layout."""

    label: str
    data: bytes
    locations: list  # interp.verify.Location
    tensors: int  # tensors in subgraph 0
    buffers: int
    opcodes: int
    tables: list  # positions of tables (targets for redirected offsets)
    vtables: list


def make_seed(label: str, data: bytes) -> Seed:
    from interp import load_model, verify

    locations: list = []
    verify.verify_flatbuffer(data, label, record=locations)
    model = load_model(data)
    n_buffers = len({t.buffer_index for sg in model.subgraphs for t in sg.tensors}) + 1
    tables = sorted({loc.pos for loc in locations if loc.kind == "soffset"})
    vtables = sorted({loc.pos for loc in locations if loc.kind == "vtable" and loc.path})
    return Seed(label, data, locations, len(model.main.tensors), n_buffers,
                len({op.opcode_index for op in model.main.operators}), tables, vtables)


_INT_RANGES = {1: (-(1 << 7), 1 << 8), 2: (-(1 << 15), 1 << 16), 4: (-(1 << 31), 1 << 32), 8: (-(1 << 63), 1 << 64)}
_FLOAT_SPECIALS = [0.0, -0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e-45, 3e38, -1e-3]


def _write_int(buf: bytearray, pos: int, size: int, value: int):
    if pos < 0 or pos + size > len(buf):
        return
    buf[pos:pos + size] = (value % (1 << (8 * size))).to_bytes(size, "little")


def _read_int(buf, pos: int, size: int, signed=True) -> int:
    return int.from_bytes(bytes(buf[pos:pos + size]), "little", signed=signed)


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _value_for(loc, seed: Seed, buf: bytearray, rng) -> tuple[int | float, str]:
    """An interesting replacement for the value at ``loc``: (value, family)."""
    size, path = loc.size, loc.path
    old = _read_int(buf, loc.pos, size)
    n = len(buf)
    huge = [(1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 30, 1 << 20, 1 << 16]
    if loc.scalar in ("Float32", "Float64"):
        return float(_pick(rng, _FLOAT_SPECIALS + [float(rng.normal()) * 10 ** int(rng.integers(-8, 8))])), "float"
    if loc.kind in ("root", "offset"):
        target = _pick(rng, seed.tables) if seed.tables else 0
        return _pick(rng, [0, 1, 2, 3, old + 4, old - 4, old + 1, n, n - loc.pos, n - loc.pos - 1,
                           target - loc.pos, -loc.pos, int(rng.integers(n))] + huge), "offset"
    if loc.kind == "soffset":
        vt = _pick(rng, seed.vtables) if seed.vtables else 0
        return _pick(rng, [0, 1, 2, 4, -4, old + 2, old - 2, loc.pos - vt, loc.pos, loc.pos - n,
                           -(1 << 31), (1 << 31) - 1, int(rng.integers(-n, n))]), "soffset"
    if loc.kind == "vtable":
        return _pick(rng, [0, 1, 2, 3, 4, 5, old + 1, old - 1, old + 2, old * 2, 0xFFFF, 0x8000,
                           int(rng.integers(0x10000))]), "vtable"
    if loc.kind == "length":
        return _pick(rng, [0, 1, old + 1, old - 1, old * 2, old + 1000, n, n // 4] + huge), "length"
    if re.search(r"shape(_signature)?\[\d+\]$", path):
        return _pick(rng, [0, -1, -2, 1, old + 1, old * 2, old * 1000, 1 << 16, 1 << 24] + huge), "dim"
    if re.search(r"\.(inputs|outputs|intermediates)\[\d+\]$", path):
        return _pick(rng, [-1, -2, seed.tensors, seed.tensors - 1, seed.tensors + 1,
                           int(rng.integers(max(1, seed.tensors))), old + 1, old - 1, 1 << 31,
                           -(1 << 31)]), "tensor index"
    if path.endswith(".buffer"):
        return _pick(rng, [0, seed.buffers, seed.buffers + 1, int(rng.integers(max(1, seed.buffers))),
                           old + 1, old - 1, (1 << 32) - 1]), "buffer index"
    if path.endswith(".opcode_index"):
        return _pick(rng, [seed.opcodes, seed.opcodes + 1, old + 1, old - 1, (1 << 32) - 1,
                           int(rng.integers(max(1, seed.opcodes)))]), "opcode index"
    if path.endswith("quantized_dimension"):
        return _pick(rng, [-1, 0, 1, 2, 3, 4, 7, 8, 100, (1 << 31) - 1, -(1 << 31)]), "quantized dimension"
    if re.search(r"zero_point\[\d+\]$", path):
        return _pick(rng, [0, -1, 127, -128, 128, 255, 32767, 1 << 31, -(1 << 31) - 1, 1 << 62]), "zero point"
    if path.endswith((".type", "builtin_code", "version", "builtin_options_type", "_type")):
        return _pick(rng, [0, 1, 2, 3, 7, 9, 10, 17, 18, 19, 50, 126, 127, 128, 255, old + 1, old - 1,
                           int(rng.integers(256)), (1 << 31) - 1]), "enum"
    lo, hi = _INT_RANGES[size]
    return _pick(rng, [0, 1, -1, old + 1, old - 1, old * 2, -old, lo, hi - 1, (hi >> 1) - 1,
                       int(rng.integers(lo, hi // 2 if lo < 0 else hi))] + [256, 65536]), "scalar"


def mutate_once(seed: Seed, buf: bytearray, rng) -> tuple[bytearray, str]:
    """Apply one random mutation to ``buf`` (a copy of seed.data, maybe already mutated)."""
    n = len(buf)
    kind = _pick(rng, ["location"] * 10 + ["swap"] * 2 + ["bits"] * 4 + ["byte"] * 2 + ["splice"] * 3
                 + ["truncate"] * 1)
    structural = [loc for loc in seed.locations if loc.pos < n]
    if kind in ("location", "swap") and not structural:
        kind = "bits"
    if kind == "location":
        loc = _pick(rng, structural)
        value, family = _value_for(loc, seed, buf, rng)
        if isinstance(value, float):
            fmt = "<f" if loc.size == 4 else "<d"
            buf[loc.pos:loc.pos + loc.size] = struct.pack(fmt, value)
        else:
            _write_int(buf, loc.pos, loc.size, int(value))
        return buf, f"set {loc.kind} {loc.path or 'root'} @{loc.pos} to {value!r} ({family})"
    if kind == "swap":
        a = _pick(rng, structural)
        same = [loc for loc in structural if loc.size == a.size and loc.kind == a.kind and loc.pos != a.pos]
        if not same:
            return mutate_once(seed, buf, rng)
        b = _pick(rng, same)
        va, vb = bytes(buf[a.pos:a.pos + a.size]), bytes(buf[b.pos:b.pos + b.size])
        buf[a.pos:a.pos + a.size], buf[b.pos:b.pos + b.size] = vb, va
        return buf, f"swap {a.path or 'root'} @{a.pos} with {b.path or 'root'} @{b.pos}"
    if kind == "bits":
        near = structural and rng.random() < 0.6
        flips = []
        for _ in range(int(rng.integers(1, 5))):
            pos = (_pick(rng, structural).pos + int(rng.integers(0, 4))) if near else int(rng.integers(n))
            pos = min(pos, n - 1)
            bit = int(rng.integers(8))
            buf[pos] ^= 1 << bit
            flips.append(f"{pos}.{bit}")
        return buf, f"flip bits {', '.join(flips)}"
    if kind == "byte":
        pos = int(rng.integers(n))
        value = _pick(rng, [0x00, 0xFF, 0x7F, 0x80, 0x01, int(rng.integers(256))])
        buf[pos] = value
        return buf, f"set byte {pos} to {value:#04x}"
    if kind == "splice":
        a = int(rng.integers(n))
        length = int(min(n - a, rng.integers(1, 64)))
        how = _pick(rng, ["copy", "delete", "insert"])
        if how == "copy":
            dst = int(rng.integers(n))
            chunk = bytes(buf[a:a + length])
            buf[dst:dst + len(chunk)] = chunk
            del buf[n:]
            return buf, f"copy bytes {a}..{a + length} over {dst}"
        if how == "delete":
            del buf[a:a + length]
            return buf, f"delete bytes {a}..{a + length}"
        dst = int(rng.integers(n))
        buf[dst:dst] = bytes(buf[a:a + length])
        return buf, f"insert bytes {a}..{a + length} at {dst}"
    cut = int(_pick(rng, [rng.integers(n), rng.integers(min(n, 64)), n - 1 - rng.integers(min(n, 64))]))
    del buf[max(0, cut):]
    return buf, f"truncate to {max(0, cut)} bytes"


def make_mutant(seed: Seed, rng) -> tuple[bytes, str]:
    buf = bytearray(seed.data)
    steps = []
    for _ in range(int(_pick(rng, [1, 1, 1, 2, 2, 3]))):
        buf, what = mutate_once(seed, buf, rng)
        steps.append(what)
        if len(buf) == 0:
            break
    return bytes(buf), "; ".join(steps)


def load_seeds(dirs, names=None) -> tuple[list[Seed], list[str]]:
    """The models to mutate, and a line for every directory skipped (with the reason)."""
    seeds, skipped = [], []
    for d in dirs:
        d = Path(d)
        files = sorted(d.glob("*.tflite")) if d.is_dir() else []
        if not files:
            skipped.append(f"{d}: {'no .tflite files' if d.is_dir() else 'not present'}")
            continue
        for f in files:
            if names and f.name not in names:
                continue
            try:
                seeds.append(make_seed(f"{d.name}/{f.name}", f.read_bytes()))
            except Exception as e:  # noqa: BLE001 - a seed microref cannot load is not a seed
                skipped.append(f"{f}: does not load cleanly ({type(e).__name__}: {str(e)[:100]})")
    return seeds, skipped


# ------------------------------------------------------------------------------ the campaign
@dataclasses.dataclass
class Report:
    count: int = 0
    outcomes: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    by_model: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(collections.Counter))
    max_seconds: float = 0.0  # CPU
    max_seconds_task: str = ""
    max_rejected_seconds: float = 0.0  # CPU, mutants that did not run
    max_wall_seconds: float = 0.0
    max_rss_kib: int = 0
    max_rss_task: str = ""
    # The largest measured growth / memory_estimate among tasks that grew by MEASURED_GROWTH_KIB
    # or more (smaller growth is allocator noise next to the estimate's granularity).
    max_memory_ratio: float = 0.0
    max_memory_ratio_task: str = ""
    violations: list = dataclasses.field(default_factory=list)  # (kind, task label, detail, description)
    messages: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    wall_seconds: float = 0.0
    baseline: dict = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"mutants run: {self.count} in {self.wall_seconds:.0f} s"]
        lines.append("outcomes:")
        for outcome, k in self.outcomes.most_common():
            lines.append(f"  {k:7d}  {outcome}")
        lines.append(f"max CPU time per mutant: {self.max_seconds:.2f} s ({self.max_seconds_task}); "
                     f"max for a rejected mutant: {self.max_rejected_seconds:.2f} s; "
                     f"max wall-clock time: {self.max_wall_seconds:.2f} s")
        lines.append(f"max peak RSS of a task: {self.max_rss_kib / 1024:.0f} MiB ({self.max_rss_task})")
        lines.append(f"max measured memory growth / verify.memory_estimate: {self.max_memory_ratio:.2f} "
                     f"({self.max_memory_ratio_task or 'no task grew by 64 MiB or more'})")
        if self.baseline:
            slowest = max(self.baseline.items(), key=lambda kv: kv[1])
            lines.append(f"slowest clean model: {slowest[0]} {slowest[1]:.2f} s CPU")
        untyped = [(k, n) for k, n in self.messages.most_common() if "invalid operator parameters (" in k]
        if untyped:
            # Not violations (the executor turns them into ModelError), but each is a check
            # missing from a kernel's prepare.
            lines.append(f"prepare steps that tripped on an untyped exception: {sum(n for _, n in untyped)}")
            lines.extend(f"  {n:7d}  {k}" for k, n in untyped[:15])
        kinds = collections.Counter(v[0] for v in self.violations)
        if not self.violations:
            lines.append("zero-tolerance: PASS (no escapes, timeouts, crashes or slow mutants)")
        else:
            lines.append(f"zero-tolerance: FAIL, {len(self.violations)} violation(s): "
                         + ", ".join(f"{k} {v}" for k, v in kinds.most_common()))
            signatures = collections.OrderedDict()
            for kind, label, detail, desc in self.violations:
                signatures.setdefault((kind, detail[:160]), []).append((label, desc))
            for (kind, detail), hits in signatures.items():
                label, desc = hits[0]
                lines.append(f"  [{len(hits)}x] {kind}: {detail}\n        e.g. {label}: {desc}")
        return "\n".join(lines)


def _message_kind(message: str) -> str:
    """A message with its particulars (names, numbers, paths) blanked, for counting kinds."""
    message = re.sub(r'"[^"]*"', '"…"', message)
    message = re.sub(r"\[[^\]]*\]", "[…]", message)
    message = re.sub(r"\b\d[\d,.e+-]*\b", "N", message)
    message = re.sub(r"^<bytes>: ", "", message)
    return message[:120]


MEASURED_GROWTH_KIB = 64 << 10


def campaign(seeds: list[Seed], count: int, seed: int = 0, workers: int = 2, timeout: float = 2.0,
             kill_after: float = 20.0, memory_mb: int = 1024, save: str | None = None,
             progress=None, extra=(), address_space_mb: int = ADDRESS_SPACE_MB) -> Report:
    """``count`` mutants of ``seeds``, then the ``extra`` cases ((label, data, description), e.g.
    from tests/structured_fuzz.py), each checked for an untyped error, a crash, a hang, more than
    ``timeout`` s of CPU and a peak RSS over ``memory_mb``."""
    report = Report()
    start = time.perf_counter()
    with Pool(workers, address_space_mb, kill_after) as pool:
        # The clean models' own times set the bar for mutants that still run.
        for r in pool.run((-1 - i, s.data, 0) for i, s in enumerate(seeds)):
            report.baseline[seeds[-1 - r.task_id].label] = r.cpu_seconds
        described: dict[int, tuple[str, str]] = {}

        def tasks():
            for i in range(count):
                rng = np.random.default_rng([seed, i])
                s = seeds[int(rng.integers(len(seeds)))]
                data, desc = make_mutant(s, rng)
                described[i] = (s.label, desc)
                if save:
                    _pending_data[i] = data
                yield i, data, i
            for j, (label, data, desc) in enumerate(extra):
                i = count + j
                described[i] = (label, desc)
                if save:
                    _pending_data[i] = data
                yield i, data, i

        _pending_data: dict[int, bytes] = {}
        for r in pool.run(tasks()):
            label, desc = described.pop(r.task_id)
            data = _pending_data.pop(r.task_id, None)
            report.count += 1
            report.outcomes[r.outcome] += 1
            report.by_model[label][r.outcome] += 1
            if r.outcome != "ran":
                report.messages[f"{r.outcome}: {_message_kind(r.detail)}"] += 1
            tag = f"mutant {r.task_id} of {label}" if r.task_id < count else f"case {r.task_id - count} ({label})"
            if r.cpu_seconds > report.max_seconds:
                report.max_seconds, report.max_seconds_task = r.cpu_seconds, tag
            if r.outcome != "ran":
                report.max_rejected_seconds = max(report.max_rejected_seconds, r.cpu_seconds)
            report.max_wall_seconds = max(report.max_wall_seconds, r.seconds)
            if r.rss_kib > report.max_rss_kib:
                report.max_rss_kib, report.max_rss_task = r.rss_kib, tag
            if r.estimate and r.grew_kib >= MEASURED_GROWTH_KIB:
                ratio = r.grew_kib * 1024 / r.estimate
                if ratio > report.max_memory_ratio:
                    report.max_memory_ratio = ratio
                    report.max_memory_ratio_task = (f"{tag}: grew {r.grew_kib >> 10} MiB, estimate "
                                                    f"{r.estimate >> 20} MiB")
            allowed = timeout if r.outcome != "ran" else max(timeout, 1.5 * report.baseline.get(label, 0.0))
            violation = None
            if r.outcome.startswith("escape") or r.outcome in ("crash", "timeout"):
                violation = r.outcome
            elif r.cpu_seconds > allowed:
                violation = f"slow ({r.outcome})"
                r.detail = f"{r.cpu_seconds:.2f} s CPU > {allowed:.2f} s: {r.detail}"
            elif memory_mb and r.rss_kib > memory_mb << 10:
                violation = f"memory ({r.outcome})"
                r.detail = f"peak RSS {r.rss_kib >> 10} MiB > {memory_mb} MiB: {r.detail}"
            if violation:
                report.violations.append((violation, tag, r.detail, desc))
                if save and data is not None:
                    os.makedirs(save, exist_ok=True)
                    Path(save, f"mutant_{seed}_{r.task_id}.tflite").write_bytes(data)
                    Path(save, f"mutant_{seed}_{r.task_id}.txt").write_text(
                        f"{tag}\n{desc}\n{violation}: {r.detail}\n", encoding="utf-8")
            if progress and report.count % progress == 0:
                print(f"  ... {report.count} mutants, {len(report.violations)} violations, "
                      f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    report.wall_seconds = time.perf_counter() - start
    return report


def replay(path: str) -> int:
    data = Path(path).read_bytes()
    start = time.perf_counter()
    try:
        from interp import Interpreter
        from interp.runtime.inputs import random_inputs
        it = Interpreter.from_bytes(data)
        it.run(random_inputs(it, np.random.default_rng(0)))
        print(f"ran in {time.perf_counter() - start:.2f} s")
    except Exception:
        traceback.print_exc()
        print(f"after {time.perf_counter() - start:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--models", nargs="+", default=None, help="directories of .tflite models to mutate")
    p.add_argument("--only", nargs="+", default=None, help="model file names to use (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=2.0, help="seconds a mutant may take (default 2)")
    p.add_argument("--kill-after", type=float, default=20.0, help="seconds before a worker is killed")
    p.add_argument("--memory-mb", type=int, default=1024,
                   help="peak resident memory a mutant may take (default 1024)")
    p.add_argument("--address-space-mb", type=int, default=ADDRESS_SPACE_MB,
                   help=f"RLIMIT_AS of each worker, a backstop (default {ADDRESS_SPACE_MB})")
    p.add_argument("--structured", type=int, default=0, metavar="N",
                   help="also run N cases of every family of tests/structured_fuzz.py")
    p.add_argument("--save", metavar="DIR", help="write every violating mutant there")
    p.add_argument("--replay", metavar="MUTANT", help="run one mutant in this process, with traceback")
    p.add_argument("--by-model", action="store_true", help="also print outcome counts per model")
    p.add_argument("--messages", type=int, default=0, metavar="N", help="also print the N commonest error kinds")
    args = p.parse_args(argv)
    if args.replay:
        return replay(args.replay)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    seeds, skipped = load_seeds(args.models or DEFAULT_MODEL_DIRS, args.only)
    for line in skipped:
        print(f"skipped {line}")
    if not seeds:
        print("no models to mutate")
        return 2
    extra = []
    if args.structured:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import structured_fuzz
        extra = structured_fuzz.cases(args.structured, args.seed)
    from interp import verify
    print(f"mutating {len(seeds)} models: {args.count} mutants{f' + {len(extra)} structured cases' if extra else ''}, "
          f"seed {args.seed}, {args.workers} workers, timeout {args.timeout} s, peak RSS {args.memory_mb} MiB, "
          f"default limits (memory budget {verify.MAX_MEMORY_BYTES:,} bytes)", flush=True)
    report = campaign(seeds, args.count, args.seed, args.workers, args.timeout, args.kill_after,
                      args.memory_mb, args.save, progress=max(100, (args.count + len(extra)) // 20), extra=extra,
                      address_space_mb=args.address_space_mb)
    print(report.summary())
    if args.messages:
        print("commonest errors:")
        for kind, k in report.messages.most_common(args.messages):
            print(f"  {k:7d}  {kind}")
    if args.by_model:
        for label, counts in sorted(report.by_model.items()):
            print(f"  {label}: {dict(counts)}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
