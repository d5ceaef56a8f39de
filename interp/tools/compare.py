"""Locate and explain differences between microref and another runtime (TFLM, LiteRT) or a float model.

The other runtime is run with every intermediate tensor preserved, in a child process
(``run_other_runtime``): a model that crashes it (TFLM's wheel aborts or segfaults on some
malformed models) is a finding about that runtime, reported as ``OtherRuntimeCrashed``, and
cannot take microref's process down with it; a model it refuses is ``OtherRuntimeRefused``.
Each operator is compared
twice: *chained* (microref's own run against the other runtime's tensor) and *isolated* (the
microref kernel fed the other runtime's inputs to that op), so an op that disagrees by itself is
told apart from one that only inherits an earlier difference. For ops that disagree by themselves,
``why`` re-runs the kernel under alternative numerics (single rounding, float32 scale arithmetic of
older TFLM builds) and reports which variant reproduces the other runtime.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ops import registry as reg
from ops.fixedpoint import tflite_round
from ops.params import params_as_dict
from ops.registry import Numerics

from ..errors import InputError, MicrorefError, printable
from ..runtime import dequantize_tensor

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
    return [sys.executable, "-c", "from interp.tools.compare import _child_main; _child_main()", runtime, work]


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


# ----------------------------------------------------------------------------- comparison

# Differing elements listed per op in the text report (--json lists every one).
COORDS_SHOWN = 3


@dataclass
class TensorDiff:
    tensor: int
    name: str
    differing: int
    size: int
    max_lsb: int
    shape: tuple = ()
    # Flat (C-order) indices of the differing elements, and both runtimes' values there.
    flat: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    mine: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    theirs: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    # |difference| in LSB -> how many elements differ by that much (integer tensors).
    histogram: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.differing == 0

    def coords(self, limit: int | None = None) -> list[tuple[int, ...]]:
        """Coordinates of the differing elements, in C order (the first ``limit`` of them)."""
        flat = self.flat if limit is None else self.flat[:limit]
        if not self.shape:
            return [() for _ in flat]
        return [tuple(int(c) for c in pos) for pos in zip(*np.unravel_index(flat, self.shape))]

    def to_json(self) -> dict:
        return {"tensor": self.tensor, "name": self.name, "differing": self.differing, "size": self.size,
                "max_lsb": self.max_lsb, "shape": list(self.shape),
                "histogram": {str(k): v for k, v in self.histogram.items()},
                "coordinates": [list(c) for c in self.coords()],
                "microref_values": _jsonable(self.mine), "other_values": _jsonable(self.theirs)}


@dataclass
class OpComparison:
    op_index: int
    op_name: str
    chained: list[TensorDiff]  # microref's run vs the other runtime, per output
    isolated: list[TensorDiff] | None  # the kernel on the other runtime's inputs, per output
    why: list[dict] = field(default_factory=list)  # numerics variants tried, for ops that differ alone
    parameters: dict = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return all(d.exact for d in self.chained)

    @property
    def differs_in_isolation(self) -> bool:
        return self.isolated is not None and not all(d.exact for d in self.isolated)

    @property
    def reproduced_by(self) -> tuple[str, ...]:
        """The numerics variants that, each on its own, reproduce the other runtime exactly."""
        return tuple(w["variant"] for w in self.why if w.get("reproduces"))


@dataclass
class OutputSummary:
    """One model output: how many elements differ, by how much, and whether the top-1 agrees."""
    index: int
    name: str
    diff: TensorDiff
    top1_rows: int = 0          # rows of the last axis (argmax taken along it)
    top1_agree: int = 0         # rows whose argmax is the same in both runtimes
    top1_first_disagreement: dict | None = None  # {"row", "microref", "other"} for the first that differs


@dataclass
class RuntimeComparison:
    runtime: str
    ops: list[OpComparison]
    outputs_exact: bool
    outputs: list[OutputSummary] = field(default_factory=list)

    @property
    def first_divergent(self) -> OpComparison | None:
        return next((o for o in self.ops if not o.exact), None)

    @property
    def runtime_name(self) -> str:
        return RUNTIME_NAMES.get(self.runtime, self.runtime)


def _diff(t, mine: np.ndarray, theirs: np.ndarray) -> TensorDiff:
    a = np.asarray(mine).reshape(-1)
    b = np.asarray(theirs).reshape(-1)
    histogram = {}
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        neq = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        max_lsb = float(d[neq].max()) if neq.any() else 0
    else:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        neq = d != 0
        max_lsb = int(d.max(initial=0))
        values, counts = np.unique(d[neq], return_counts=True)
        histogram = {int(v): int(c) for v, c in zip(values, counts)}
    flat = np.flatnonzero(neq)
    return TensorDiff(t.index, t.name, int(flat.size), int(a.size), max_lsb, tuple(int(s) for s in t.shape), flat,
                      a[flat], b[flat], histogram)


def _kernel_for(it, op, numerics):
    cls = reg.kernel_class(op)
    return cls(reg.PrepareContext(op, it.tensors, numerics))


def _op_inputs(it, op, values: dict[int, np.ndarray]):
    """The op's inputs from another runtime's tensors, or None if that runtime lacks one."""
    try:
        return it.op_inputs(op, values.__getitem__)
    except KeyError:
        return None


NUMERICS_VARIANTS = (
    ("single rounding (TFLITE_SINGLE_ROUNDING)", {"rounding": "single"}),
    ("float32 scale arithmetic (older TFLM builds)", {"scale_precision": "float32"}),
    ("single rounding + float32 scales", {"rounding": "single", "scale_precision": "float32"}),
)
# The `microref explain --numerics` name of each variant.
VARIANT_OPTIONS = {
    "single rounding (TFLITE_SINGLE_ROUNDING)": "single",
    "float32 scale arithmetic (older TFLM builds)": "float32-scales",
    "single rounding + float32 scales": "single+float32-scales",
}


def explain_difference(it, op, theirs: dict[int, np.ndarray]) -> list[dict]:
    """Re-run ``op`` on the other runtime's inputs under each numerics variant; report the matches."""
    ins = _op_inputs(it, op, theirs)
    if ins is None:
        return []
    results = []
    for label, kw in NUMERICS_VARIANTS:
        try:
            kernel = _kernel_for(it, op, Numerics(**kw))
            outs = kernel.eval(ins)
        except Exception as e:  # a variant may not apply to this op; say so rather than fail
            results.append({"variant": label, "error": str(e)})
            continue
        diffs = [_diff(it.tensors[ti], o[0], theirs[ti]) for ti, o in zip(op.outputs, outs) if ti in theirs]
        differing = sum(d.differing for d in diffs)
        results.append({"variant": label, "differing": differing, "reproduces": differing == 0 and bool(diffs)})
    return results


def _top1(mine: np.ndarray, theirs: np.ndarray) -> tuple[int, int, dict | None]:
    """(rows, rows whose argmax over the last axis agrees, the first disagreement)."""
    if mine.ndim == 0 or mine.size == 0:
        return 0, 0, None
    a = np.asarray(mine).reshape(-1, mine.shape[-1])
    b = np.asarray(theirs).reshape(-1, mine.shape[-1])
    am, bm = a.argmax(axis=1), b.argmax(axis=1)
    agree = am == bm
    first = None
    if not agree.all():
        r = int(np.flatnonzero(~agree)[0])
        first = {"row": r, "microref": int(am[r]), "other": int(bm[r])}
    return int(a.shape[0]), int(agree.sum()), first


def compare_runtime(it, model_bytes: bytes, inputs: list[np.ndarray], runtime: str = "tflm",
                    explain: bool = True) -> RuntimeComparison:
    """Compare every tensor of microref's run with ``runtime`` on the same inputs (the runtime
    runs in a child process: see ``run_other_runtime`` for what it raises)."""
    # microref first: inputs it refuses are refused before the other runtime is bothered, and
    # "microref runs this model" holds whenever the other runtime's refusal or crash is reported.
    it.run(inputs, keep=True)
    mine = it._kept
    theirs = run_other_runtime(runtime, model_bytes, inputs)
    ops_out = []
    for op, kernel in zip(it.subgraph.operators, it.kernels):
        chained = [_diff(it.tensors[ti], mine[ti], theirs[ti]) for ti in op.outputs if ti in theirs and ti in mine]
        isolated = None
        ins = _op_inputs(it, op, theirs)
        if ins is not None:
            outs = kernel.eval(ins)
            isolated = [_diff(it.tensors[ti], o[0], theirs[ti]) for ti, o in zip(op.outputs, outs) if ti in theirs]
        row = OpComparison(op.index, op.display_name, chained, isolated, parameters=_safe_describe(kernel))
        if explain and row.differs_in_isolation:
            row.why = explain_difference(it, op, theirs)
        ops_out.append(row)
    outputs_exact = all(np.array_equal(mine[ti], theirs[ti]) for ti in it.subgraph.outputs if ti in theirs)
    summaries = []
    for j, ti in enumerate(it.subgraph.outputs):
        if ti not in theirs or ti not in mine:
            continue
        t = it.tensors[ti]
        rows, agree, first = _top1(np.asarray(mine[ti]), np.asarray(theirs[ti]))
        summaries.append(OutputSummary(j, t.name, _diff(t, mine[ti], theirs[ti]), rows, agree, first))
    return RuntimeComparison(runtime, ops_out, outputs_exact, summaries)


def _safe_describe(kernel) -> dict:
    return _jsonable(describe_kernel(kernel))


def describe_kernel(kernel) -> dict:
    """kernel.describe(), or its declared params when describe() fails ({} when it has neither)."""
    try:
        return dict(kernel.describe() or {})
    except Exception:
        params = getattr(kernel, "params", None)
        if params is not None and dataclasses.is_dataclass(params):
            return params_as_dict(params)
        return {}


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _diff_cell(diffs) -> str:
    if diffs is None:
        return "n/a"
    n = sum(d.differing for d in diffs)
    size = sum(d.size for d in diffs)
    if n == 0:
        return "exact"
    return f"{n}/{size} differ, max {max(d.max_lsb for d in diffs)} LSB"


def _histogram_text(h: dict) -> str:
    return ", ".join(f"{k} LSB ×{v}" for k, v in sorted(h.items()))


def _ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0–2, 5, 7–8'."""
    parts, start = [], None
    for i, x in enumerate(indices):
        if start is None:
            start = x
        if i + 1 == len(indices) or indices[i + 1] != x + 1:
            parts.append(str(start) if start == x else f"{start}–{x}")
            start = None
    return ", ".join(parts)


def _why_groups(ops: list[OpComparison]) -> list[tuple[list[OpComparison], tuple[str, ...]]]:
    """Ops that differ in isolation, grouped by the set of variants that reproduce them."""
    groups: dict[tuple[str, ...], list[OpComparison]] = {}
    for o in ops:
        if o.differs_in_isolation:
            groups.setdefault(o.reproduced_by, []).append(o)
    return sorted(((g, k) for k, g in groups.items()), key=lambda item: item[0][0].op_index)


def _why_verdict(variants: tuple[str, ...]) -> str:
    if not variants:
        return "no numerics variant reproduces it (a different algorithm, e.g. an optimized kernel)"
    if len(variants) == 1:
        return f"reproduced exactly by {variants[0]}"
    listed = " | ".join(f"({i}) {v}" for i, v in enumerate(variants, 1))
    return (f"reproduced exactly by each of {len(variants)} variants on its own (any one alone is enough; "
            f"the simplest, (1), is the likely cause): {listed}")


def explain_command(prefix: str, op: OpComparison, numerics: str | None = None) -> str | None:
    """`microref explain ... --op N --at i,j,k` for the op's first differing element."""
    first = next((d for d in op.chained if not d.exact), None)
    if first is None:
        return None
    at = ",".join(str(c) for c in first.coords(1)[0])
    return f"{prefix} --op {op.op_index} --at {at}" + (f" --numerics {numerics}" if numerics else "")


def format_runtime_comparison(c: RuntimeComparison, explain_prefix: str | None = None) -> str:
    """The report for a person. ``explain_prefix`` (e.g. "microref explain model.tflite --seed 0",
    the same inputs) makes it print the ready-to-run explain command for the first difference."""
    other = c.runtime_name
    lines = [f"microref vs {other}: model outputs {'identical' if c.outputs_exact else 'DIFFER'}"]
    for s in c.outputs:
        d = s.diff
        text = f'output {s.index} "{s.name}" {list(d.shape)}: '
        if d.exact:
            text += "identical"
        else:
            text += f"{d.differing}/{d.size} differ, max {d.max_lsb} LSB; |difference| histogram: " \
                    f"{_histogram_text(d.histogram) if d.histogram else 'n/a (float)'}"
        if s.top1_rows:
            if s.top1_agree == s.top1_rows:
                verdict = "agrees" if s.top1_rows == 1 else f"agrees in all {s.top1_rows} rows"
            else:
                f = s.top1_first_disagreement
                verdict = (f"DIFFERS in {s.top1_rows - s.top1_agree}/{s.top1_rows} rows (row {f['row']}: "
                           f"microref class {f['microref']}, {other} class {f['other']})")
            text += f"; top-1 (argmax of the last axis) {verdict}"
        lines.append(text)
    lines.append("")
    first = c.first_divergent
    rows = [("op", "operator", "chained", "isolated", "")]
    for o in c.ops:
        mark = "<- first divergent op" if first is not None and o is first else ""
        rows.append((str(o.op_index), o.op_name, _diff_cell(o.chained), _diff_cell(o.isolated), mark))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        lines.append(f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}"
                     + (f"  {r[4]}" if r[4] else ""))
    differing = [o for o in c.ops if not o.exact]
    if differing:
        lines += ["", f"where they differ (first {COORDS_SHOWN} elements per op, microref/{other}; "
                      f"--json lists every one):"]
        for o in differing:
            for d in o.chained:
                if d.exact:
                    continue
                shown = ", ".join(f"{pos} {m}/{t}" for pos, m, t in zip(d.coords(COORDS_SHOWN), d.mine[:COORDS_SHOWN],
                                                                         d.theirs[:COORDS_SHOWN]))
                more = f", … {d.differing - COORDS_SHOWN} more" if d.differing > COORDS_SHOWN else ""
                lines.append(f"  op {o.op_index} {o.op_name} \"{_short_name(d.name)}\": {shown}{more}")
    if first is not None:
        lines += ["", f"first divergent op: {first.op_index} ({first.op_name})"]
        if first.parameters:
            lines.append("  parameters: " + ", ".join(f"{k}={_short(v)}" for k, v in _flat(first.parameters).items()))
        d = next(d for d in first.chained if not d.exact)
        lines.append(f"  first differing element: {d.coords(1)[0]}: microref {d.mine[0]}, {other} {d.theirs[0]}")
        if explain_prefix:
            lines.append(f"  its arithmetic, step by step:   {explain_command(explain_prefix, first)}")
            for variant in first.reproduced_by[:1]:
                lines.append(f"  the same under {variant.split(' (')[0]}:   "
                             f"{explain_command(explain_prefix, first, VARIANT_OPTIONS[variant])}")
    groups = _why_groups(c.ops)
    if groups:
        lines += ["", f"ops that differ even when fed {other}'s inputs, and why:"]
        for group, variants in groups:
            counts = collections.Counter(o.op_name for o in group)
            kinds = ", ".join(f"{n} × {name}" for name, n in counts.items())
            label = f"op {group[0].op_index}" if len(group) == 1 else f"ops {_ranges([o.op_index for o in group])}"
            lines.append(f"  {label} ({kinds}): {_why_verdict(variants)}")
    return "\n".join(lines)


def _short_name(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _flat(d: dict, prefix: str = "") -> dict:
    """Nested parameters as one level: {"requantize": {"output_shift": …}} -> {"requantize.output_shift": …}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _short(v, limit=8):
    if isinstance(v, list) and len(v) > limit:
        return "[" + ", ".join(map(str, v[:limit])) + f", … ({len(v)} values)]"
    return v


def runtime_comparison_to_json(c: RuntimeComparison, explain_prefix: str | None = None) -> dict:
    first = c.first_divergent
    first_json = None
    if first is not None:
        first_json = {"index": first.op_index, "op": first.op_name, "parameters": first.parameters}
        if explain_prefix:
            first_json["explain_command"] = explain_command(explain_prefix, first)
            first_json["explain_commands_by_variant"] = {
                v: explain_command(explain_prefix, first, VARIANT_OPTIONS[v]) for v in first.reproduced_by}
    return {
        "runtime": c.runtime,
        "outputs_exact": c.outputs_exact,
        "outputs": [{"index": s.index, "name": s.name, **s.diff.to_json(), "top1_rows": s.top1_rows,
                     "top1_agree": s.top1_agree, "top1_first_disagreement": s.top1_first_disagreement}
                    for s in c.outputs],
        "first_divergent_op": first_json,
        "why_groups": [{"ops": [o.op_index for o in g], "reproduced_by": list(v)} for g, v in _why_groups(c.ops)],
        "ops": [{
            "index": o.op_index, "op": o.op_name,
            "chained": [d.to_json() for d in o.chained],
            "isolated": None if o.isolated is None else [d.to_json() for d in o.isolated],
            "why": o.why,
            "reproduced_by": list(o.reproduced_by),
        } for o in c.ops],
    }


# ----------------------------------------------------------------------------- float vs int8

@dataclass
class LayerError:
    op_index: int
    op_name: str
    tensor: str
    float_tensor: str
    paired_by: str
    scale: float
    rmse: float        # over every sample
    max_abs: float
    max_lsb: float
    cosine: float
    snr_db: float      # over every sample (total signal / total noise)
    snr_db_mean: float = math.nan  # mean of the per-sample SNRs
    snr_db_min: float = math.nan   # the worst sample's SNR
    worst_sample: int = 0          # its index
    samples: int = 1


# compare --float --data: at most this many samples per input are read (and an .npz member may
# decompress to no more than this many samples' worth: larger is refused as a zip bomb).
MAX_FLOAT_SAMPLES = 1024


@dataclass
class FloatInputs:
    """Real-valued inputs for a float comparison, and what a person should know about them."""
    samples: list[list[np.ndarray]]  # per sample, one float32 array per model input
    description: str                 # which inputs these are (the report's first line)
    warnings: list[str] = field(default_factory=list)


def quantize_like_tflm(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """TFLM QUANTIZE float->int: clamp(roundf(float32(x) / float32(scale)) + zp) (notes §2.11)."""
    q = tflite_round((np.asarray(x, np.float32) / np.float32(scale)).astype(np.float32)).astype(np.int64) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


def model_is_quantized(it) -> bool:
    """True when the model computes in integers: some operator writes a quantized integer tensor."""
    for op in it.subgraph.operators:
        for ti in op.outputs:
            t = it.tensors[ti]
            if t.dtype is not None and t.dtype.kind in "iu" and t.quantization is not None:
                return True
    return False


def check_float_pair(int8_it, float_it, int8_name: str = "MODEL", float_name: str = "FLOAT") -> None:
    """InputError, said plainly, when the models are given the wrong way round or are the same kind."""
    int8_q, float_q = model_is_quantized(int8_it), model_is_quantized(float_it)
    usage = "usage: microref compare INT8_MODEL --float FLOAT_MODEL"
    if not int8_q and float_q:
        raise InputError(f"the models are swapped: {int8_name} is a float model and {float_name} (given as --float) "
                         f"is int8-quantized; {usage}")
    if float_q:
        raise InputError(f"{float_name} (given as --float) is an int8-quantized model, not a float one: --float "
                         f"takes the float original of {int8_name}; {usage}")
    if not int8_q:
        raise InputError(f"{int8_name} is a float model (no operator computes in int8/int16): compare --float "
                         f"measures an int8 model against its float original; {usage}")
    if len(int8_it.input_details) != len(float_it.input_details):
        raise InputError(f"{int8_name} has {len(int8_it.input_details)} inputs and {float_name} "
                         f"{len(float_it.input_details)}: they are not a model and its conversion")


def input_ranges(int8_it) -> list[tuple[float, float, float] | None]:
    """Per model input, the real range its quantization can represent: (low, high, scale); None
    when unknown. An int8 input's own quantization, or for a float input the QUANTIZE reading it."""
    out = []
    for ti in int8_it.subgraph.inputs:
        t = int8_it.tensors[ti]
        q = t.quantization if t.dtype is not None and t.dtype.kind in "iu" else None
        if q is None:
            for op in int8_it.subgraph.operators:
                if op.op_name == "QUANTIZE" and op.inputs and op.inputs[0] == ti:
                    t = int8_it.tensors[op.outputs[0]]
                    q = t.quantization
                    break
        if q is None or q.per_channel or t.dtype is None or t.dtype.kind not in "iu":
            out.append(None)
            continue
        info = np.iinfo(t.dtype)
        scale, zp = float(q.scale), int(q.zero_point)
        out.append((scale * (info.min - zp), scale * (info.max - zp), scale))
    return out


def _fmt_range(r) -> str:
    return f"[{r[0]:.4g}, {r[1]:.4g}]"


def default_float_inputs(int8_it, float_it, count: int = 4, seed: int = 0) -> FloatInputs:
    """``count`` samples drawn uniformly from each input's quantized range (standard normal where
    the range is unknown), seeded."""
    rng = np.random.default_rng(seed)
    ranges = input_ranges(int8_it)
    samples = []
    for _ in range(count):
        sample = []
        for d, r in zip(float_it.input_details, ranges):
            shape = tuple(int(x) for x in d["shape"])
            if r is None:
                sample.append(rng.standard_normal(shape).astype(np.float32))
            else:
                sample.append(rng.uniform(r[0], r[1], shape).astype(np.float32))
        samples.append(sample)
    parts = [f'input {i} "{d["name"]}" ' + ("standard normal (its quantization range is unknown)" if r is None
                                            else f"uniform over its quantized range {_fmt_range(r)}")
             for i, (d, r) in enumerate(zip(float_it.input_details, ranges))]
    description = (f"inputs: {count} seeded random sample{'s' if count != 1 else ''} (seed {seed}): "
                   + "; ".join(parts) + ". Real data measures real error: pass --data INPUTS.npz")
    return FloatInputs(samples, description)


def float_inputs_from_data(int8_it, float_it, arrays: dict[str, np.ndarray], source: str) -> FloatInputs:
    """Samples from named arrays (an .npz): by the float model's input names, else in key order.
    An array of the input's shape is one sample; (N,) + shape, or N rows in place of a batch of 1,
    is N samples."""
    names = [d["name"] for d in float_it.input_details]
    keys = names if all(n in arrays for n in names) else sorted(arrays)
    if len(keys) < len(names):
        raise InputError(f"{source} holds {len(keys)} arrays; the model has {len(names)} inputs")
    per_input = []
    for i, (d, k) in enumerate(zip(float_it.input_details, keys)):
        shape = tuple(int(x) for x in d["shape"])
        a = np.asarray(arrays[k])
        if a.shape == shape:
            a = a[None]
        elif a.shape[1:] == shape:
            pass
        elif shape and shape[0] == 1 and a.ndim == len(shape) and a.shape[1:] == shape[1:]:
            a = a[:, None]
        else:
            raise InputError(f'{source}: "{k}" has shape {list(a.shape)}; input {i} takes {list(shape)} '
                             f"(or N samples of it: [N, {', '.join(map(str, shape))}])")
        per_input.append(a.astype(np.float32))
    counts = {a.shape[0] for a in per_input}
    if len(counts) != 1:
        raise InputError(f"{source}: the inputs hold different numbers of samples ({sorted(counts)})")
    n = counts.pop()
    samples = [[a[s] for a in per_input] for s in range(n)]
    inputs = FloatInputs(samples, f"inputs: {n} sample{'s' if n != 1 else ''} from {source}")
    inputs.warnings = clipping_warnings(int8_it, samples)
    return inputs


def clipping_warnings(int8_it, samples: list[list[np.ndarray]]) -> list[str]:
    """One warning per input whose values fall outside its quantization range (QUANTIZE clips them)."""
    warnings_ = []
    for i, r in enumerate(input_ranges(int8_it)):
        if r is None or not samples:
            continue
        values = np.concatenate([np.asarray(s[i], np.float64).ravel() for s in samples])
        low, high, scale = r
        outside = (values < low - scale / 2) | (values > high + scale / 2)
        n = int(np.count_nonzero(outside))
        if n:
            warnings_.append(f"warning: input {i}: {n} of {values.size} values ({100 * n / values.size:.1f}%) fall "
                             f"outside its quantization range {_fmt_range(r)} (data spans "
                             f"[{values.min():.4g}, {values.max():.4g}]) and are clipped by the int8 model: "
                             f"that error is the data's, not a layer's")
    return warnings_


def _metrics(ref: np.ndarray, approx: np.ndarray) -> tuple[float, float, float, float]:
    r = ref.astype(np.float64).ravel()
    a = approx.astype(np.float64).ravel()
    err = a - r
    rmse = float(np.sqrt(np.mean(err ** 2))) if err.size else 0.0
    max_abs = float(np.max(np.abs(err))) if err.size else 0.0
    nr, na = np.linalg.norm(r), np.linalg.norm(a)
    cosine = float(r @ a / (nr * na)) if nr > 0 and na > 0 else (1.0 if nr == na else 0.0)
    noise = float(np.sum(err ** 2))
    signal = float(np.sum(r ** 2))
    snr = math.inf if noise == 0 else (10 * math.log10(signal / noise) if signal > 0 else -math.inf)
    return rmse, max_abs, cosine, snr


def compare_float(int8_it, float_it, real_inputs: list[np.ndarray]) -> list[LayerError]:
    """Run a float model and its int8 conversion on the same real inputs (one sample); per-layer
    error of the int8 model's dequantized tensors against the float model's, paired by tensor
    name, else by position."""
    return compare_float_samples(int8_it, float_it, [list(real_inputs)])


def compare_float_samples(int8_it, float_it, samples: list[list[np.ndarray]]) -> list[LayerError]:
    """``compare_float`` over N samples: each layer's error over all of them, with the mean and the
    minimum of the per-sample SNRs and the worst sample's index."""
    n = len(samples)
    real = [np.stack([np.asarray(s[i], np.float32) for s in samples]) for i in range(len(samples[0]))]
    q_inputs = []
    for ti, x in zip(int8_it.subgraph.inputs, real):
        t = int8_it.tensors[ti]
        if t.dtype.kind == "f":
            q_inputs.append(np.asarray(x, t.dtype))
        else:
            q_inputs.append(quantize_like_tflm(x, t.quantization.scale, t.quantization.zero_point, t.dtype))
    float_it.run_batch(real, keep=True)
    int8_it.run_batch(q_inputs, keep=True)
    f_kept, q_kept = float_it._kept, int8_it._kept
    f_tensors = float_it.tensors
    by_name = {t.name: t.index for t in f_tensors if t.index in f_kept}
    f_ops = [op for op in float_it.subgraph.operators if op.op_name not in ("QUANTIZE", "DEQUANTIZE")]
    q_ops = [op for op in int8_it.subgraph.operators if op.op_name not in ("QUANTIZE", "DEQUANTIZE")]
    f_by_position = {}
    for pos, op in enumerate(q_ops):
        if pos < len(f_ops) and f_ops[pos].op_name == op.op_name:
            f_by_position[op.index] = f_ops[pos].outputs[0]
    rows = []
    for op in int8_it.subgraph.operators:
        for ti in op.outputs:
            t = int8_it.tensors[ti]
            if t.quantization is None or t.dtype is None or t.dtype.kind == "f":
                continue
            if t.name in by_name:
                fi, how = by_name[t.name], "name"
            elif op.index in f_by_position:
                fi, how = f_by_position[op.index], "position"
            else:
                continue
            ref = f_kept.get(fi)
            if ref is None or ref.size != n * t.size or ti not in q_kept:
                continue
            approx = dequantize_tensor(t, q_kept[ti]).reshape(ref.shape)
            rmse, max_abs, cosine, snr = _metrics(ref, approx)
            per_sample = [_metrics(ref[k], approx[k])[3] for k in range(n)]
            worst = int(np.argmin(per_sample))
            rows.append(LayerError(op.index, op.display_name, t.name, f_tensors[fi].name, how, t.quantization.scale,
                                   rmse, max_abs, max_abs / t.quantization.scale, cosine, snr,
                                   float(np.mean(per_sample)), float(per_sample[worst]), worst, n))
    return rows


def float_comparison_to_json(rows: list[LayerError], inputs: FloatInputs | None = None) -> dict:
    def number(v):
        return v if math.isfinite(v) else str(v)
    return {"inputs": None if inputs is None else inputs.description,
            "samples": rows[0].samples if rows else 0,
            "warnings": [] if inputs is None else inputs.warnings,
            "layers": [{k: number(v) if isinstance(v, float) else v for k, v in vars(r).items()} for r in rows]}


def format_float_comparison(rows: list[LayerError], inputs: FloatInputs | None = None) -> str:
    lines = []
    if inputs is not None:
        lines.append(inputs.description)
        lines += inputs.warnings
        lines.append("")
    if not rows:
        return "\n".join(lines + ["no tensors could be paired between the two models"])
    several = rows[0].samples > 1
    snr_head = f"{'SNR dB':>8s}" + (f" {'mean':>8s} {'min':>8s} {'worst':>5s}" if several else "")
    lines.append(f"{'op':>4}  {'operator':20s} {'RMSE':>10s} {'max|err|':>10s} {'max LSB':>8s} {'cosine':>9s} "
                 f"{snr_head}  tensor (paired by)")
    for r in rows:
        snr = f"{r.snr_db:8.2f}" + (f" {r.snr_db_mean:8.2f} {r.snr_db_min:8.2f} {r.worst_sample:5d}" if several else "")
        lines.append(f"{r.op_index:>4}  {r.op_name:20s} {r.rmse:10.4g} {r.max_abs:10.4g} {r.max_lsb:8.2f} "
                     f"{r.cosine:9.6f} {snr}  {r.tensor} ({r.paired_by})")
    if several:
        lines.append(f"(SNR dB over all {rows[0].samples} samples; mean and min of the per-sample SNRs, "
                     f"and the sample with the lowest)")
    ranked = sorted(rows, key=lambda r: r.snr_db)
    lines += ["", "layers losing the most (lowest SNR first):"]
    for r in ranked[:5]:
        worst = f", worst sample {r.worst_sample} at {r.snr_db_min:.2f} dB" if several else ""
        lines.append(f"  op {r.op_index} {r.op_name}: SNR {r.snr_db:.2f} dB, cosine {r.cosine:.6f}, "
                     f"max error {r.max_lsb:.2f} LSB{worst}")
    # The biggest drop in SNR from one layer to the next shows where the damage is done.
    drops = [(rows[i - 1].snr_db - rows[i].snr_db, rows[i]) for i in range(1, len(rows))
             if math.isfinite(rows[i - 1].snr_db) and math.isfinite(rows[i].snr_db)]
    if drops:
        d, r = max(drops, key=lambda p: p[0])
        if d > 0:
            lines.append(f"largest SNR drop: {d:.2f} dB at op {r.op_index} ({r.op_name})")
    return "\n".join(lines)
