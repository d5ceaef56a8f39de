"""The other runtimes microref is compared with (TFLM, LiteRT), run with every intermediate tensor
preserved, in a child process (``run_other_runtime``): a model that crashes one (TFLM's wheel
aborts or segfaults on some malformed models) is a finding about that runtime, reported as
``OtherRuntimeCrashed``, and cannot take microref's process down with it; a model it refuses is
``OtherRuntimeRefused``; a runtime that is not installed is ``MissingPackage``.

``RuntimeChild`` keeps one such child alive and sends it case after case (a sweep of thousands of
models × seeds pays the child's start, ~0.3 s of CPU, once instead of per case): each case is a
freshly built interpreter of the runtime, as in ``run_other_runtime``; a crash or a hang ends that
child, is reported for the case it was running, and the next case starts a fresh child. An answer
other than tensors (a crash, a hang, a refusal) from a child that had run other cases before is
not trusted: the case is run again in a fresh child, whose answer is the one given — so that what
a model does to the runtime's process can never be blamed on the model after it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import MicrorefError, printable

RUNTIMES = ("tflm", "litert", "litert-ref")
RUNTIME_NAMES = {"tflm": "TFLM", "litert": "LiteRT", "litert-ref": "LiteRT (reference kernels)"}
# Seconds the other runtime may take on one model before it counts as hung.
CHILD_TIMEOUT_S = 300.0


class MissingPackage(MicrorefError):
    """An optional package needed for this comparison is not installed."""


class OtherRuntimeRefused(MicrorefError):
    """The other runtime refused the model or failed to invoke it (its own error, in its words)."""


class OtherRuntimeCrashed(MicrorefError):
    """The other runtime crashed (a signal, an abort) or hung on the model: a finding about that
    runtime, which microref survives because the runtime ran in a child process."""

    def __init__(self, message, runtime: str = "", how: str = ""):
        super().__init__(message)
        self.runtime = runtime
        self.how = how  # e.g. "killed by SIGSEGV", "exit code 134", "hung for 300 s"


# ----------------------------------------------------------------------------- other runtimes

@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence C++ logging on fd 2 (e.g. LiteRT's 'Created XNNPACK delegate') for the duration."""
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


def tflm_all_tensors(model_bytes: bytes, inputs: list[np.ndarray], tensors) -> dict[int, np.ndarray]:
    """Run TFLM (tflite-micro) keeping every tensor; returns {tensor index: value}."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError:
        raise MissingPackage(_MISSING["tflm"]) from None
    ref = runtime.Interpreter.from_bytes(model_bytes, arena_size=max(64 << 20, 8 * len(model_bytes)),
                                         intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    for i, x in enumerate(inputs):
        ref.set_input(x, i)
    ref.invoke()
    out = {}
    for t in tensors:
        if t.is_constant or t.dtype is None:
            continue
        try:
            d = ref.GetTensor(t.index, 0)
        except Exception:  # tensors TFLM did not allocate (e.g. unused) are simply absent
            continue
        data = np.asarray(d["tensor_data"])
        if data.size == t.size:
            out[t.index] = data.reshape(t.shape).astype(t.dtype, copy=False)
    return out


def litert_all_tensors(model_bytes: bytes, inputs: list[np.ndarray], tensors,
                       reference_kernels: bool = False) -> dict[int, np.ndarray]:
    """Run LiteRT (ai-edge-litert) keeping every tensor, with its default or reference resolver."""
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:
        raise MissingPackage(_MISSING["litert"]) from None
    resolver = (litert.OpResolverType.BUILTIN_REF if reference_kernels else litert.OpResolverType.AUTO)
    try:
        with _quiet_native_stderr(), warnings.catch_warnings():
            # LiteRT warns that preserving tensors is for debugging, which is what this is.
            warnings.simplefilter("ignore")
            it = litert.Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True,
                                    experimental_op_resolver_type=resolver)
            it.allocate_tensors()
            for d, x in zip(it.get_input_details(), inputs):
                it.set_tensor(d["index"], x)
            it.invoke()
    except (RuntimeError, ValueError) as e:
        first = (str(e).strip().splitlines() or ["(no message)"])[0]
        if len(first) > 240:
            first = first[:240] + "…"
        raise MicrorefError(f"LiteRT could not run the model: {first}") from None
    out = {}
    for t in tensors:
        if t.is_constant or t.dtype is None:
            continue
        try:
            v = it.get_tensor(t.index)
        except (ValueError, RuntimeError):
            continue
        if v is not None and v.size == t.size:
            out[t.index] = np.array(v).reshape(t.shape)
    return out


def run_other_runtime(runtime: str, model_bytes: bytes, inputs: list[np.ndarray],
                      timeout: float | None = None) -> dict[int, np.ndarray]:
    """``other_runtime_tensors`` for subgraph 0 of the model, run in a child process.

    Raises ``OtherRuntimeRefused`` when the runtime refuses the model (or cannot invoke it),
    ``OtherRuntimeCrashed`` when the child dies of a signal, exits without an answer or runs
    past ``timeout`` seconds (default CHILD_TIMEOUT_S), and ``MissingPackage`` when the runtime
    is not installed.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
    _require_package(runtime)  # here, so that a missing package needs no child to say so
    name = RUNTIME_NAMES[runtime]
    timeout = CHILD_TIMEOUT_S if timeout is None else timeout
    env = _child_env()
    with tempfile.TemporaryDirectory(prefix="microref-compare-") as work:
        Path(work, "model.tflite").write_bytes(model_bytes)
        np.savez(Path(work, "inputs.npz"), **{f"input_{i}": np.asarray(x) for i, x in enumerate(inputs)})
        command = _child_command(runtime, work)
        try:
            # What the runtime prints (TFLM's MicroPrintf goes to stdout) says why it refused or died.
            child = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=timeout, env=env, cwd=work)
        except subprocess.TimeoutExpired as e:
            said = _last_words(e.stdout)
            raise OtherRuntimeCrashed(f"{name} hung on this model (no answer after {timeout:.0f} s){said}",
                                      runtime, f"hung for {timeout:.0f} s") from None
        status_path = Path(work, "status.json")
        status = json.loads(status_path.read_text(encoding="utf-8")) if status_path.exists() else None
        if status is None or child.returncode != 0:
            how = _how_it_ended(child.returncode)
            raise OtherRuntimeCrashed(f"{name} crashed on this model ({how}){_last_words(child.stdout)}",
                                      runtime, how)
        if status["verdict"] == "missing":
            raise MissingPackage(status["message"])
        if status["verdict"] == "refused":
            raise OtherRuntimeRefused(status["message"] + _last_words(child.stdout, "; it printed: "))
        with np.load(Path(work, "tensors.npz"), allow_pickle=False) as z:
            return {int(k[1:]): z[k] for k in z.files}


def _how_it_ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _child_env() -> dict[str, str]:
    """The environment of a child: this one, with the directory holding interp/ and ops/ first on
    PYTHONPATH (the child imports the same microref)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _child_command(runtime: str, work: str) -> list[str]:
    return [sys.executable, "-c", "from interp.tools.other_runtimes import _child_main; _child_main()", runtime, work]


def _require_package(runtime: str) -> None:
    """MissingPackage unless the runtime's Python package imports (importing it does not run it)."""
    try:
        if runtime == "tflm":
            from tflite_micro.python.tflite_micro import runtime as _  # noqa: F401
        else:
            from ai_edge_litert import interpreter as _  # noqa: F401
    except ImportError:
        raise MissingPackage(_MISSING[runtime]) from None


_MISSING = {
    "tflm": "comparing against TFLM needs tflite-micro: pip install 'tflite-micro==0.dev20261023182759'",
    "litert": "comparing against LiteRT needs ai-edge-litert: pip install 'microref[litert]' "
              "(or pip install ai-edge-litert)",
}
_MISSING["litert-ref"] = _MISSING["litert"]


def _last_words(output: bytes | None, lead: str = "; its last words: ") -> str:
    """The last non-empty line the child printed (TFLM says why it aborts), escaped; or ''."""
    lines = [line.strip() for line in (output or b"").decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return ""
    last = printable(lines[-1])
    return lead + (last if len(last) <= 200 else last[:200] + "…")


def _child_main() -> None:
    """The child process of run_other_runtime: argv is (runtime, work directory)."""
    runtime, work = sys.argv[1], sys.argv[2]

    def answer(**status):
        Path(work, "status.json").write_text(json.dumps(status), encoding="utf-8")

    from ..model import load_model
    data = Path(work, "model.tflite").read_bytes()
    with np.load(Path(work, "inputs.npz"), allow_pickle=False) as z:
        inputs = [z[f"input_{i}"] for i in range(len(z.files))]
    tensors = load_model(data).main.tensors
    verdict, payload = _one_case(runtime, data, inputs, tensors)
    if verdict != "ok":
        answer(verdict=verdict, message=payload)
        return
    np.savez(Path(work, "tensors.npz"), **{f"t{k}": v for k, v in payload.items()})
    answer(verdict="ok")


def _one_case(runtime: str, data: bytes, inputs, tensors) -> tuple[str, object]:
    """("ok", {tensor index: value}), ("refused", the runtime's message) or ("missing", why): the
    runtime's interpreter built for the case and gone when this returns (its destructor runs
    before the answer is given, as at the end of a child of run_other_runtime)."""
    try:
        values = other_runtime_tensors(runtime, data, inputs, tensors)
    except MissingPackage as e:
        return "missing", str(e)
    except Exception as e:  # noqa: BLE001 - whatever the runtime raises is its refusal
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, MicrorefError):
            message = f"{RUNTIME_NAMES[runtime]} refuses the model ({type(e).__name__}: {message})"
        return "refused", message
    return "ok", values


# ----------------------------------------------------------------------------- one child, many cases

_FRAME = struct.Struct("<Q")  # the byte count of the pickle that follows, on both pipes
_ENDING_S = 5.0  # seconds a child that closed its answers is given to exit before it is killed


class RuntimeChild:
    """One long-lived child process that runs ``runtime`` case after case (see the module's doc):
    ``run(model_bytes, inputs)`` answers what ``run_other_runtime(runtime, model_bytes, inputs)``
    answers, raising the same errors with the same messages. ``close()`` ends the child (it also
    ends by itself when this process goes away)."""

    def __init__(self, runtime: str, timeout: float | None = None):
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
        _require_package(runtime)
        self.runtime = runtime
        self.timeout = CHILD_TIMEOUT_S if timeout is None else timeout
        self.served = 0    # cases the current child has answered
        self.started = 0   # children started so far
        self.last_fresh = True  # the last answer came from a child that had run nothing before
        self._proc: subprocess.Popen | None = None
        self._requests = -1   # our end of the child's stdin: the cases
        self._answers = -1    # the read end of the child's answer pipe
        self._log = None      # the file the child's stdout and stderr go to (O_APPEND)
        self._model: bytes | None = None  # the model the child holds

    def run(self, model_bytes: bytes, inputs: list[np.ndarray], *, fresh: bool = False) -> dict[int, np.ndarray]:
        """The runtime's tensors for the case. ``fresh``: in a child that has run nothing before.
        A crash, hang or refusal in a child that ran other cases before is asked again of a fresh
        child, whose answer stands."""
        if fresh and self.served:
            self.close()
        self.last_fresh = self.served == 0
        try:
            return self._ask(model_bytes, inputs)
        except (OtherRuntimeCrashed, OtherRuntimeRefused):
            if self.last_fresh:
                raise
        self.close()
        self.last_fresh = True
        return self._ask(model_bytes, inputs)

    def close(self) -> None:
        """End the child (if any): it exits when its stdin closes, or is killed."""
        proc, self._proc = self._proc, None
        for fd in (self._requests, self._answers):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._requests = self._answers = -1
        if self._log is not None:
            self._log.close()
            self._log = None
        self._model = None
        self.served = 0
        if proc is not None:
            try:
                proc.wait(_ENDING_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def _start(self) -> None:
        self._log = tempfile.TemporaryFile(prefix="microref-runtime-")  # noqa: SIM115 - closed by close()
        # Appending: the child writes at the end of the log, wherever its last case left it, once
        # the log is emptied for the next case.
        fcntl.fcntl(self._log.fileno(), fcntl.F_SETFL, fcntl.fcntl(self._log.fileno(), fcntl.F_GETFL) | os.O_APPEND)
        answers_read, answers_write = os.pipe()
        requests_read, requests_write = os.pipe()
        try:
            command = [sys.executable, "-c", "from interp.tools.other_runtimes import _serve_main; _serve_main()",
                       self.runtime, str(answers_write)]
            # What the runtime prints (TFLM's MicroPrintf) goes to the log: it says why it refused or died.
            self._proc = subprocess.Popen(command, stdin=requests_read, stdout=self._log, stderr=subprocess.STDOUT,
                                          env=_child_env(), pass_fds=(answers_write,), cwd=tempfile.gettempdir())
        except BaseException:
            for fd in (answers_read, requests_write):
                os.close(fd)
            raise
        finally:
            os.close(answers_write)
            os.close(requests_read)
        os.set_blocking(requests_write, False)  # a child that stops reading cannot block us (_write_all)
        self._requests, self._answers = requests_write, answers_read
        self.started += 1

    def _said(self) -> bytes:
        """What the child printed since the case began (the log is emptied between cases)."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def _ask(self, model_bytes: bytes, inputs: list[np.ndarray]) -> dict[int, np.ndarray]:
        if self._proc is None:
            self._start()
        elif self.served:
            os.ftruncate(self._log.fileno(), 0)  # the last case's words (the child is waiting for a case)
        name = RUNTIME_NAMES[self.runtime]
        same = self._model is model_bytes or self._model == model_bytes
        request = pickle.dumps((None if same else bytes(model_bytes), [np.asarray(x) for x in inputs]),
                               protocol=pickle.HIGHEST_PROTOCOL)
        deadline = time.monotonic() + self.timeout
        try:
            _write_all(self._requests, _FRAME.pack(len(request)) + request, deadline)
            size = _FRAME.unpack(_read_exact(self._answers, _FRAME.size, deadline))[0]
            verdict, payload = pickle.loads(_read_exact(self._answers, size, deadline))
        except TimeoutError:
            said = _last_words(self._said())
            self._proc.kill()
            self.close()
            raise OtherRuntimeCrashed(f"{name} hung on this model (no answer after {self.timeout:.0f} s){said}",
                                      self.runtime, f"hung for {self.timeout:.0f} s") from None
        except (OSError, EOFError):  # the child is gone (a broken pipe, or its answers ended)
            try:
                code = self._proc.wait(_ENDING_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                code = self._proc.wait()
            how = _how_it_ended(code)
            said = _last_words(self._said())
            self.close()
            raise OtherRuntimeCrashed(f"{name} crashed on this model ({how}){said}", self.runtime, how) from None
        self._model = model_bytes
        self.served += 1
        if verdict == "missing":
            raise MissingPackage(payload)
        if verdict == "refused":
            raise OtherRuntimeRefused(payload + _last_words(self._said(), "; it printed: "))
        return payload


def _write_all(fd: int, data: bytes, deadline: float | None = None) -> None:
    """All of ``data`` into the pipe; with a ``deadline`` the pipe is non-blocking, and a child
    that stops reading is a TimeoutError past it."""
    view = memoryview(data)
    while view:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([], [fd], [], wait)[1]:
                raise TimeoutError
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            continue


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    """``size`` bytes from the pipe; EOFError if it ends first, TimeoutError past ``deadline``."""
    parts, left = [], size
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            raise TimeoutError
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _serve_main() -> None:
    """The child process of RuntimeChild: argv is (runtime, the answer pipe's fd); the cases come
    on stdin, each (model bytes or None for the same model as before, inputs), pickled behind its
    byte count; each answer, from ``_one_case``, goes back the same way once the runtime's
    interpreter is gone and what it printed is flushed."""
    import ctypes
    runtime, answers = sys.argv[1], int(sys.argv[2])
    libc = ctypes.CDLL(None)
    from ..model import load_model
    requests = sys.stdin.buffer.raw
    data, tensors = None, None
    while True:
        header = _read_all(requests, _FRAME.size)
        if header is None:
            return  # stdin closed: the parent is done (or gone)
        body = _read_all(requests, _FRAME.unpack(header)[0])
        if body is None:
            return
        model, inputs = pickle.loads(body)
        if model is not None:
            data, tensors = model, load_model(model).main.tensors
        reply = pickle.dumps(_one_case(runtime, data, inputs, tensors), protocol=pickle.HIGHEST_PROTOCOL)
        sys.stdout.flush()
        sys.stderr.flush()
        libc.fflush(None)
        _write_all(answers, _FRAME.pack(len(reply)) + reply)


def _read_all(stream, size: int) -> bytes | None:
    """``size`` bytes from a raw stream, or None at its end."""
    parts, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def other_runtime_tensors(runtime: str, model_bytes: bytes, inputs, tensors):
    if runtime == "tflm":
        return tflm_all_tensors(model_bytes, inputs, tensors)
    if runtime == "litert":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=False)
    if runtime == "litert-ref":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=True)
    raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
