"""The other runtimes microref is compared with (TFLM, LiteRT), run with every intermediate tensor
preserved, in a child process (``run_other_runtime``): a model that crashes one (TFLM's wheel
aborts or segfaults on some malformed models) is a finding about that runtime, reported as
``OtherRuntimeCrashed``, and cannot take microref's process down with it; a model it refuses is
``OtherRuntimeRefused``; a runtime that is not installed is ``MissingPackage``.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
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
    root = str(Path(__file__).resolve().parents[2])  # the directory holding interp/ and ops/
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
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
            code = child.returncode
            if code < 0:
                try:
                    how = f"killed by {signal.Signals(-code).name}"
                except ValueError:
                    how = f"killed by signal {-code}"
            else:
                how = f"exit code {code}"
            raise OtherRuntimeCrashed(f"{name} crashed on this model ({how}){_last_words(child.stdout)}",
                                      runtime, how)
        if status["verdict"] == "missing":
            raise MissingPackage(status["message"])
        if status["verdict"] == "refused":
            raise OtherRuntimeRefused(status["message"] + _last_words(child.stdout, "; it printed: "))
        with np.load(Path(work, "tensors.npz"), allow_pickle=False) as z:
            return {int(k[1:]): z[k] for k in z.files}


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
    try:
        values = other_runtime_tensors(runtime, data, inputs, tensors)
    except MissingPackage as e:
        answer(verdict="missing", message=str(e))
        return
    except Exception as e:  # noqa: BLE001 - whatever the runtime raises is its refusal
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not isinstance(e, MicrorefError):
            message = f"{RUNTIME_NAMES[runtime]} refuses the model ({type(e).__name__}: {message})"
        answer(verdict="refused", message=message)
        return
    np.savez(Path(work, "tensors.npz"), **{f"t{k}": v for k, v in values.items()})
    answer(verdict="ok")


def other_runtime_tensors(runtime: str, model_bytes: bytes, inputs, tensors):
    if runtime == "tflm":
        return tflm_all_tensors(model_bytes, inputs, tensors)
    if runtime == "litert":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=False)
    if runtime == "litert-ref":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=True)
    raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")
