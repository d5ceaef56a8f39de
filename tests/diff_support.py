"""Differential testing against TFLM: run a model on the oracle and on microref, demand equal outputs.

TFLM runs in a long-lived worker process, not in the test process: its Python wrapper aborts
the whole process on some internal CHECK failures, and a fuzzer must survive that to report the
case. A crash of the worker fails the one example (hypothesis then shrinks it) and the next call
starts a fresh worker.

``check_model(data, inputs)`` is the whole protocol:
* TFLM rejects the model (its constructor / AllocateTensors raises, or a kernel notices an
  unsupported type only at Invoke): microref must reject it at load with ModelError or
  UnsupportedOpError;
* TFLM accepts it: microref must load it, and every output of every sample must equal TFLM's
  (numpy.array_equal, same dtype and shape), through both ``run`` (one sample) and
  ``run_batch`` (all samples).
"""
from __future__ import annotations

import atexit
import collections
import importlib.util
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ARENA_BYTES = 64 << 20
WORKER_TIMEOUT_S = 120

# test name -> Counter of outcomes ("compared", "rejected by both"); printed by conftest.py.
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


# The tflite-micro wheel exists for Linux x86-64 only: elsewhere every comparison with it skips,
# and the TFLM-free tests (fast against reference kernels, golden data) protect the arithmetic.
ORACLE_AVAILABLE = importlib.util.find_spec("tflite_micro") is not None
NO_ORACLE = "tflite-micro (the oracle) is not installed: its wheel exists for Linux x86-64 only"


def require_oracle() -> None:
    """Skip the calling test when TFLM's wheel is not installed."""
    if not ORACLE_AVAILABLE:
        import pytest
        pytest.skip(NO_ORACLE)


class TflmCrashed(AssertionError):
    """The TFLM worker died (abort / CHECK failure) or hung on a model."""


# ---------------------------------------------------------------------------------- framing
def _send(stream, obj) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(blob)) + blob)
    stream.flush()


def _recv_exact(fd: int, n: int, timeout: float | None) -> bytes:
    chunks, got = [], 0
    while got < n:
        if timeout is not None:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise TimeoutError
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(fd: int, timeout: float | None = None):
    (n,) = struct.unpack("<Q", _recv_exact(fd, 8, timeout))
    return pickle.loads(_recv_exact(fd, n, timeout))


# ---------------------------------------------------------------------------------- worker side
def _serve() -> None:
    """Worker loop: requests (model bytes, list of samples) -> ("ok", outputs) or ("rejected", msg).

    The samples are invoked one after the other on one interpreter, without reset; a None in
    their place resets it (and gives None in the outputs)."""
    # Replies go through a private copy of stdout; whatever TFLM prints goes to stderr.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    replies = os.fdopen(reply_fd, "wb")
    from tflite_micro.python.tflite_micro import runtime

    requests = sys.stdin.buffer.fileno()
    while True:
        try:
            model, samples = _recv(requests)
        except EOFError:
            return
        try:
            interpreter = runtime.Interpreter.from_bytes(model, arena_size=ARENA_BYTES)
        except Exception as e:  # noqa: BLE001 - any refusal of the model is an answer
            _send(replies, ("rejected", f"{type(e).__name__}: {e}"))
            continue
        try:
            outputs = []
            for sample in samples:
                if sample is None:
                    # A reset marker (stateful tests): MicroInterpreter::Reset() between calls.
                    interpreter.reset()
                    outputs.append(None)
                    continue
                for i, x in enumerate(sample):
                    interpreter.set_input(x, i)
                interpreter.invoke()
                outputs.append([np.array(interpreter.get_output(j), copy=True)
                                for j in range(_output_count(model))])
            _send(replies, ("ok", outputs))
        except Exception as e:  # noqa: BLE001
            _send(replies, ("invoke failed", f"{type(e).__name__}: {e}"))
        finally:
            del interpreter


def _output_count(model: bytes) -> int:
    from tflite.Model import Model
    return Model.GetRootAs(model, 0).Subgraphs(0).OutputsLength()


# ---------------------------------------------------------------------------------- test side
class TflmWorker:
    def __init__(self):
        self.proc = None
        self.log = None

    def _start(self):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     cwd=ROOT)

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def run(self, model: bytes, samples: list[list[np.ndarray]]):
        require_oracle()
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        log_start = self.log.seek(0, os.SEEK_END)
        try:
            _send(self.proc.stdin, (model, samples))
            verdict, payload = _recv(self.proc.stdout.fileno(), WORKER_TIMEOUT_S)
        except (EOFError, BrokenPipeError, TimeoutError) as e:
            hung = isinstance(e, TimeoutError)
            if hung:
                self.proc.kill()
            code = self.proc.wait()
            self.proc = None
            raise TflmCrashed(f"TFLM {'hung' if hung else f'crashed (exit code {code})'} on this model; "
                              f"constrain the strategy away from it. TFLM said:\n{self._log_since(log_start)}"
                              ) from None
        if verdict != "ok":
            # What TFLM printed (MicroPrintf) says why it refused the model.
            payload = f"{payload}\n{self._log_since(log_start)}".strip()
        return verdict, payload

    def _log_since(self, offset: int, limit: int = 2000) -> str:
        self.log.seek(offset)
        return self.log.read().decode("utf-8", "replace")[-limit:]


_WORKER = TflmWorker()
atexit.register(_WORKER.stop)


def tflm_run(model: bytes, samples: list[list[np.ndarray]]):
    """("ok", [outputs per sample]) | ("rejected", message) | ("invoke failed", message)."""
    return _WORKER.run(model, samples)


def assert_tflm_aborts(data: bytes, inputs: list[np.ndarray]) -> None:
    """Pin that TFLM kills the process on this model (why a strategy must steer clear of it)."""
    try:
        verdict, _ = tflm_run(data, [[x[0] for x in inputs]])
    except TflmCrashed:
        return
    raise AssertionError(f"TFLM no longer aborts on this model (it answered {verdict!r}); the strategy "
                         f"that avoids it can be widened")


@dataclass
class Outcome:
    compared: bool
    message: str = ""


def load_like_tflm(data: bytes, verdict: str, payload, label: str):
    """microref's Interpreter for a model TFLM ran (verdict "ok"), or None when TFLM refused it
    (at Prepare, or at Invoke: some kernels notice an unsupported type combination only then) and
    microref refuses it at load too; any other combination fails the test."""
    from interp import Interpreter
    from interp.errors import ModelError, UnsupportedOpError

    if verdict != "ok":
        try:
            Interpreter.from_bytes(data)
        except (ModelError, UnsupportedOpError):
            OUTCOMES[label]["rejected by both"] += 1
            return None
        raise AssertionError(f"TFLM refuses this model ({verdict}) but microref loads it. TFLM: {payload}")
    try:
        return Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError) as e:
        raise AssertionError(f"TFLM accepts this model but microref refuses it: {type(e).__name__}: {e}") from None


def check_model(data: bytes, inputs: list[np.ndarray], *, label: str = "") -> Outcome:
    """The differential property for one model. ``inputs[i]`` holds input i's samples on axis 0."""

    n = inputs[0].shape[0]
    samples = [[x[s] for x in inputs] for s in range(n)]
    verdict, payload = tflm_run(data, samples)
    it = load_like_tflm(data, verdict, payload, label)
    if it is None:
        return Outcome(False, payload)
    batch = it.run_batch(inputs)
    single = it.run([x[0] for x in inputs])
    assert len(single) == len(payload[0]), f"microref gives {len(single)} outputs, TFLM {len(payload[0])}"
    for j, expected_first in enumerate(payload[0]):
        _assert_same(single[j], expected_first, f"output {j}, run(), sample 0", it)
        for s in range(n):
            _assert_same(batch[j][s], payload[s][j], f"output {j}, run_batch(), sample {s}", it)
    OUTCOMES[label]["compared"] += 1
    return Outcome(True)


def calls_from(inputs: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Per-call input lists from inputs stacked on axis 0 (input i's call k is inputs[i][k])."""
    return [[x[k] for x in inputs] for k in range(inputs[0].shape[0])]


def check_stateful(data: bytes, sequence: list, *, label: str, stateful: bool | None = True,
                   batch_calls: int | None = None, fresh: tuple[int, ...] = (-1,)) -> Outcome:
    """The differential property of a model with state across calls.

    ``sequence`` holds the calls' inputs (one list of arrays per call), with None where the
    interpreter is reset. TFLM runs the sequence on one interpreter; microref's run() must give the
    same outputs call after call, and reset() where TFLM resets. Then run_batch over the first
    ``batch_calls`` calls (default: those before the first reset) treats each sample as a stream
    from the reset state: sample 0 must equal TFLM's first call, and the samples at ``fresh``
    (indices into those calls) a fresh TFLM interpreter's first call on that input. ``stateful``:
    what ``Interpreter.stateful`` must say (None: not checked).
    """

    verdict, payload = tflm_run(data, sequence)
    it = load_like_tflm(data, verdict, payload, label)
    if it is None:
        return Outcome(False, payload)
    if stateful is not None:
        assert it.stateful == stateful, f"Interpreter.stateful is {it.stateful}, expected {stateful}"
    resets = 0
    for k, (xs, want) in enumerate(zip(sequence, payload)):
        if xs is None:
            it.reset()
            resets += 1
            continue
        got = it.run(xs)
        assert len(got) == len(want), f"microref gives {len(got)} outputs, TFLM {len(want)}"
        for j, w in enumerate(want):
            _assert_same(got[j], w, f"output {j}, call {k - resets} after {resets} reset(s)", it)
    first_stream = sequence[:sequence.index(None)] if None in sequence else sequence
    calls = [c for c in sequence if c is not None][:batch_calls] if batch_calls else first_stream
    batch = it.run_batch([np.stack([c[i] for c in calls]) for i in range(len(calls[0]))])
    for j, w in enumerate(payload[0]):
        _assert_same(batch[j][0], w, f"output {j}, run_batch() sample 0", it)
    for s in sorted({f % len(calls) for f in fresh} - {0}):
        verdict, first = tflm_run(data, [calls[s]])
        assert verdict == "ok", first
        for j, w in enumerate(first[0]):
            _assert_same(batch[j][s], w, f"output {j}, run_batch() sample {s} (a fresh interpreter's first call)", it)
    OUTCOMES[label]["compared"] += 1
    return Outcome(True)


def _assert_same(got: np.ndarray, want: np.ndarray, where: str, it) -> None:
    """numpy.array_equal (NaN equal to NaN), same dtype and shape: the project's 'bit-exact'.

    A float +0.0 against -0.0 counts as equal, as array_equal has it.
    """
    assert got.dtype == want.dtype, f"{where}: microref dtype {got.dtype}, TFLM {want.dtype}"
    assert got.shape == want.shape, f"{where}: microref shape {got.shape}, TFLM {want.shape}"
    floating = got.dtype.kind in "fc"
    if np.array_equal(got, want, equal_nan=floating):
        return
    bad = got != want
    if floating:
        bad &= ~(np.isnan(got) & np.isnan(want))
    details = "; ".join(f"{tuple(int(i) for i in idx)}: microref {got[tuple(idx)]!r} TFLM {want[tuple(idx)]!r}"
                        for idx in np.argwhere(bad)[:5])
    with np.errstate(invalid="ignore", over="ignore"):
        max_diff = np.nanmax(np.abs(got[bad].astype(np.float64) - want[bad].astype(np.float64)))
    kernels = "; ".join(f"{k.op_name}: {k.describe()}" for k in getattr(it, "kernels", ()) if k is not None)
    raise AssertionError(f"{where}: {int(bad.sum())} of {bad.size} values differ (max |diff| {max_diff}); "
                         f"first: {details}\nprepared kernels: {kernels}")


# ---------------------------------------------------------------------------------- shapes
def window_output_size(padding: str, size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """The output size TensorFlow gives a window op (conv, pool): what a converter writes into the
    model. Computed here, not with microref's helpers, so that a model's shapes never depend on
    the code under test. A stride of 0 (TFLM accepts it) keeps the stride-1 size."""
    stride = max(stride, 1)
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        return -(-size // stride)
    return (size - effective + stride) // stride


# ---------------------------------------------------------------------------------- inputs
INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.int16): (-32768, 32767),
              np.dtype(np.uint8): (0, 255), np.dtype(np.int32): (-(2 ** 31), 2 ** 31 - 1),
              np.dtype(np.int64): (-(2 ** 63), 2 ** 63 - 1)}


def random_inputs(rng: np.random.Generator, shape, dtype, n: int, *, zero_point: int = 0,
                  scale: float = 1.0, style: str = "uniform") -> np.ndarray:
    """n samples of one input: full-range uniform, extremes only, or near the zero point.

    Float inputs are real values around the quantization range ``scale * (q - zero_point)``,
    including exact half-way points between quantization steps.
    """
    dtype = np.dtype(dtype)
    shape = (n,) + tuple(shape)
    if dtype.kind == "f":
        if style == "extremes":
            # Exact half-way points between quantization steps, and values past the int32 range.
            q = rng.integers(-300, 300, shape) + rng.choice([0.0, 0.5, -0.5], shape)
            far = rng.choice([0.0, 0.0, 0.0, 2.0 ** 31, -(2.0 ** 31), 1e12, -1e12], shape)
            return (scale * np.where(far != 0, far, q)).astype(dtype)
        return (rng.normal(0, 1, shape) * scale * 100 * rng.choice([0.01, 1, 3], shape)).astype(dtype)
    lo, hi = INT_RANGES[dtype]
    if style == "extremes":
        choices = np.array(sorted({lo, lo + 1, hi - 1, hi, int(np.clip(zero_point, lo, hi))}), np.int64)
        return rng.choice(choices, shape).astype(dtype)
    if style == "near_zero_point":
        return np.clip(zero_point + rng.integers(-3, 4, shape), lo, hi).astype(dtype)
    return rng.integers(lo, hi, shape, endpoint=True, dtype=np.int64).astype(dtype)


def run_on_both(data: bytes, x: np.ndarray) -> np.ndarray:
    """microref's output for one input, after checking that TFLM gives the same bytes."""
    from interp import Interpreter
    got = Interpreter.from_bytes(data).run([x])[0]
    verdict, payload = tflm_run(data, [[x]])
    assert verdict == "ok", payload
    assert got.tobytes() == payload[0][0].tobytes(), (got, payload[0][0])
    return got


if __name__ == "__main__" and "--serve" in sys.argv:
    _serve()


# ---------------------------------------------------------------------------------- strategies
from hypothesis import event  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ACTIVATIONS = ["NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"]
INPUT_STYLES = ["uniform", "uniform", "extremes", "near_zero_point"]
SAMPLES = 3


def scales(lo_exp: float = -6, hi_exp: float = 3) -> st.SearchStrategy[float]:
    """Positive float32 scales from 10**lo_exp to 10**hi_exp, log-uniform, plus landmark values."""
    landmarks = [s for s in (1.0, 1 / 256, 1 / 128, 0.5, 2.0, 0.1, 0.0039215689, 10 ** lo_exp, 10 ** hi_exp)
                 if 10 ** lo_exp <= s <= 10 ** hi_exp]
    return st.one_of(st.sampled_from(landmarks),
                     st.floats(lo_exp, hi_exp).map(lambda e: float(np.float32(10.0 ** e))))


def zero_points(type_name: str = "INT8") -> st.SearchStrategy[int]:
    lo, hi = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767)}[type_name]
    return st.one_of(st.sampled_from(sorted({0, lo, hi, -1, 1} & set(range(lo, hi + 1)))),
                     st.integers(lo, hi))


def dims(lo: int = 1, hi: int = 12) -> st.SearchStrategy[int]:
    """Sizes biased to 1, small primes and the bounds."""
    special = [d for d in (1, 2, 3, 5, 7, 11, 13, lo, hi) if lo <= d <= hi]
    return st.one_of(st.sampled_from(sorted(set(special))), st.integers(lo, hi))


seeds = st.integers(0, 2 ** 32 - 1)
input_styles = st.sampled_from(INPUT_STYLES)
activations = st.sampled_from(ACTIVATIONS)


def quantized_values(rng: np.random.Generator, shape, type_name: str) -> np.ndarray:
    """Constant (weight) values over the whole range of the type."""
    if type_name == "INT4":
        return rng.integers(-8, 7, shape, endpoint=True).astype(np.int8)
    if type_name == "FLOAT32":
        return rng.normal(0, 1, shape).astype(np.float32)
    lo, hi = INT_RANGES[np.dtype(type_name.lower())]
    return rng.integers(lo, hi, shape, endpoint=True, dtype=np.int64).astype(type_name.lower())


def bias_values(rng: np.random.Generator, n: int, type_name: str, magnitude_bits: int) -> np.ndarray:
    if type_name == "FLOAT32":
        return rng.normal(0, 2.0 ** (magnitude_bits / 4), n).astype(np.float32)
    hi = 2 ** min(magnitude_bits, 31 if type_name == "INT32" else 47) - 1
    return rng.integers(-hi - 1, hi, n, endpoint=True, dtype=np.int64).astype(type_name.lower())


def run_examples(strategy, test, fraction: float = 1.0) -> None:
    """Run ``test(case)`` for cases drawn from ``strategy``, with ``fraction`` of the profile's
    max_examples (at least 5): cheap data-movement ops and refused variants get fewer."""
    from hypothesis import given, settings
    budget = max(5, int(settings().max_examples * fraction))
    settings(max_examples=budget)(given(case=strategy)(test))()


def note_case(**params) -> None:
    """Record the drawn parameters (printed by hypothesis for a failing example)."""
    from hypothesis import note
    from hypothesis.control import currently_in_test_context
    if currently_in_test_context():
        note("case: " + ", ".join(f"{k}={v!r}" for k, v in params.items()))


def record(outcome: Outcome, label: str) -> None:
    from hypothesis.control import currently_in_test_context
    if currently_in_test_context():
        event(f"{label}: {'compared' if outcome.compared else 'rejected by both'}")

