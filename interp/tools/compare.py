"""Locate and explain differences between microref and another runtime (TFLM, LiteRT) or a float model.

The other runtime is run with every intermediate tensor preserved. Each operator is compared
twice: *chained* (microref's own run against the other runtime's tensor) and *isolated* (the
microref kernel fed the other runtime's inputs to that op), so an op that disagrees by itself is
told apart from one that only inherits an earlier difference. For ops that disagree by themselves,
``why`` re-runs the kernel under alternative numerics (single rounding, float32 scale arithmetic of
older TFLM builds) and reports which variant reproduces the other runtime.
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ops import registry as reg
from ops.fixedpoint import tflite_round
from ops.registry import Numerics

from ..errors import MicrorefError
from ..runtime import dequantize_tensor

RUNTIMES = ("tflm", "litert", "litert-ref")


class MissingPackage(MicrorefError):
    """An optional package needed for this comparison is not installed."""


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
        raise MissingPackage("comparing against TFLM needs tflite-micro: "
                             "pip install 'tflite-micro==0.dev20261023182759'") from None
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
        raise MissingPackage("comparing against LiteRT needs ai-edge-litert: pip install 'microref[litert]' "
                             "(or pip install ai-edge-litert)") from None
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


def other_runtime_tensors(runtime: str, model_bytes: bytes, inputs, tensors):
    if runtime == "tflm":
        return tflm_all_tensors(model_bytes, inputs, tensors)
    if runtime == "litert":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=False)
    if runtime == "litert-ref":
        return litert_all_tensors(model_bytes, inputs, tensors, reference_kernels=True)
    raise ValueError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")


# ----------------------------------------------------------------------------- comparison

@dataclass
class TensorDiff:
    tensor: int
    name: str
    differing: int
    size: int
    max_lsb: int

    @property
    def exact(self) -> bool:
        return self.differing == 0


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


@dataclass
class RuntimeComparison:
    runtime: str
    ops: list[OpComparison]
    outputs_exact: bool

    @property
    def first_divergent(self) -> OpComparison | None:
        return next((o for o in self.ops if not o.exact), None)


def _diff(t, mine: np.ndarray, theirs: np.ndarray) -> TensorDiff:
    a = np.asarray(mine).reshape(-1)
    b = np.asarray(theirs).reshape(-1)
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        neq = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        max_lsb = float(d[neq].max()) if neq.any() else 0
    else:
        d = np.abs(a.astype(np.int64) - b.astype(np.int64))
        neq = d != 0
        max_lsb = int(d.max(initial=0))
    return TensorDiff(t.index, t.name, int(np.count_nonzero(neq)), int(a.size), max_lsb)


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


def compare_runtime(it, model_bytes: bytes, inputs: list[np.ndarray], runtime: str = "tflm",
                    explain: bool = True) -> RuntimeComparison:
    """Compare every tensor of microref's run with ``runtime`` on the same inputs."""
    theirs = other_runtime_tensors(runtime, model_bytes, inputs, it.tensors)
    it.run(inputs, keep=True)
    mine = it._kept
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
    return RuntimeComparison(runtime, ops_out, outputs_exact)


def _safe_describe(kernel) -> dict:
    try:
        return _jsonable(kernel.describe())
    except Exception:
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


def format_runtime_comparison(c: RuntimeComparison) -> str:
    lines = [f"microref vs {c.runtime}: model outputs {'identical' if c.outputs_exact else 'DIFFER'}", ""]
    lines.append(f"{'op':>4}  {'operator':22s} {'chained':>22s}  {'isolated':>22s}")
    first = c.first_divergent
    for o in c.ops:
        def cell(diffs):
            if diffs is None:
                return "n/a"
            n = sum(d.differing for d in diffs)
            size = sum(d.size for d in diffs)
            if n == 0:
                return "exact"
            return f"{n}/{size} differ, max {max(d.max_lsb for d in diffs)} LSB"
        mark = "  <- first divergent op" if first is not None and o is first else ""
        lines.append(f"{o.op_index:>4}  {o.op_name:22s} {cell(o.chained):>22s}  {cell(o.isolated):>22s}{mark}")
    if first is not None:
        lines += ["", f"first divergent op: {first.op_index} ({first.op_name})"]
        if first.parameters:
            lines.append("  parameters: " + ", ".join(f"{k}={_short(v)}" for k, v in first.parameters.items()))
    alone = [o for o in c.ops if o.differs_in_isolation]
    if alone:
        lines += ["", "ops that differ even when fed the other runtime's inputs, and why:"]
        for o in alone:
            found = [w["variant"] for w in o.why if w.get("reproduces")]
            verdict = ("reproduced by " + "; ".join(found)) if found else \
                "no numerics variant reproduces it (a different algorithm, e.g. an optimized kernel)"
            lines.append(f"  op {o.op_index} ({o.op_name}): {verdict}")
    return "\n".join(lines)


def _short(v, limit=8):
    if isinstance(v, list) and len(v) > limit:
        return "[" + ", ".join(map(str, v[:limit])) + f", … ({len(v)} values)]"
    return v


def runtime_comparison_to_json(c: RuntimeComparison) -> dict:
    first = c.first_divergent
    return {
        "runtime": c.runtime,
        "outputs_exact": c.outputs_exact,
        "first_divergent_op": None if first is None else {"index": first.op_index, "op": first.op_name,
                                                           "parameters": first.parameters},
        "ops": [{
            "index": o.op_index, "op": o.op_name,
            "chained": [vars(d) for d in o.chained],
            "isolated": None if o.isolated is None else [vars(d) for d in o.isolated],
            "why": o.why,
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
    rmse: float
    max_abs: float
    max_lsb: float
    cosine: float
    snr_db: float


def quantize_like_tflm(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """TFLM QUANTIZE float->int: clamp(roundf(float32(x) / float32(scale)) + zp) (notes §2.11)."""
    q = tflite_round((np.asarray(x, np.float32) / np.float32(scale)).astype(np.float32)).astype(np.int64) + zero_point
    info = np.iinfo(dtype)
    return np.clip(q, info.min, info.max).astype(dtype)


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
    """Run a float model and its int8 conversion on the same real inputs; per-layer error of the int8
    model's dequantized tensors against the float model's, paired by tensor name, else by position."""
    q_inputs = []
    for ti, x in zip(int8_it.subgraph.inputs, real_inputs):
        t = int8_it.tensors[ti]
        if t.dtype.kind == "f":
            q_inputs.append(np.asarray(x, t.dtype))
        else:
            q_inputs.append(quantize_like_tflm(x, t.quantization.scale, t.quantization.zero_point, t.dtype))
    float_it.run([np.asarray(x, np.float32) for x in real_inputs], keep=True)
    int8_it.run(q_inputs, keep=True)
    f_tensors = float_it.tensors
    by_name = {t.name: t.index for t in f_tensors if t.index in float_it._kept}
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
            ref = float_it._kept.get(fi)
            if ref is None or ref.size != t.size:
                continue
            approx = dequantize_tensor(t, int8_it._kept[ti]).reshape(ref.shape)
            rmse, max_abs, cosine, snr = _metrics(ref, approx)
            rows.append(LayerError(op.index, op.display_name, t.name, f_tensors[fi].name, how, t.quantization.scale,
                                   rmse, max_abs, max_abs / t.quantization.scale, cosine, snr))
    return rows


def format_float_comparison(rows: list[LayerError]) -> str:
    if not rows:
        return "no tensors could be paired between the two models"
    lines = [f"{'op':>4}  {'operator':20s} {'RMSE':>10s} {'max|err|':>10s} {'max LSB':>8s} {'cosine':>9s} "
             f"{'SNR dB':>8s}  tensor (paired by)"]
    for r in rows:
        lines.append(f"{r.op_index:>4}  {r.op_name:20s} {r.rmse:10.4g} {r.max_abs:10.4g} {r.max_lsb:8.2f} "
                     f"{r.cosine:9.6f} {r.snr_db:8.2f}  {r.tensor} ({r.paired_by})")
    ranked = sorted(rows, key=lambda r: r.snr_db)
    lines += ["", "layers losing the most (lowest SNR first):"]
    for r in ranked[:5]:
        lines.append(f"  op {r.op_index} {r.op_name}: SNR {r.snr_db:.2f} dB, cosine {r.cosine:.6f}, "
                     f"max error {r.max_lsb:.2f} LSB")
    # The biggest drop in SNR from one layer to the next shows where the damage is done.
    drops = [(rows[i - 1].snr_db - rows[i].snr_db, rows[i]) for i in range(1, len(rows))
             if math.isfinite(rows[i - 1].snr_db) and math.isfinite(rows[i].snr_db)]
    if drops:
        d, r = max(drops, key=lambda p: p[0])
        if d > 0:
            lines.append(f"largest SNR drop: {d:.2f} dB at op {r.op_index} ({r.op_name})")
    return "\n".join(lines)
