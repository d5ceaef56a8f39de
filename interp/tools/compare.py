"""Locate and explain differences between microref and another runtime (TFLM, LiteRT) or a float model.

The other runtime runs in a child process (``other_runtimes``); the float comparison is in
``compare_float``, re-exported here with it, as the ``compare`` command's one entry point. Each
operator is compared
twice: *chained* (microref's own run against the other runtime's tensor) and *isolated* (the
microref kernel fed the other runtime's inputs to that op), so an op that disagrees by itself is
told apart from one that only inherits an earlier difference. For ops that disagree by themselves,
``why`` re-runs the kernel under alternative numerics (single rounding, float32 scale arithmetic of
older TFLM builds) and reports which variant reproduces the other runtime.
"""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from ops import registry as reg
from ops.params import params_as_dict
from ops.registry import Numerics

from .compare_float import (  # noqa: F401  (the compare command's one entry point)
    MAX_FLOAT_SAMPLES,
    FloatInputs,
    LayerError,
    check_float_pair,
    clipping_warnings,
    compare_float,
    compare_float_samples,
    default_float_inputs,
    float_comparison_to_json,
    float_inputs_from_data,
    format_float_comparison,
    input_ranges,
    model_is_quantized,
    quantize_like_tflm,
)
from .other_runtimes import (  # noqa: F401
    RUNTIME_NAMES,
    RUNTIMES,
    MissingPackage,
    OtherRuntimeCrashed,
    OtherRuntimeRefused,
    RuntimeChild,
    litert_all_tensors,
    other_runtime_tensors,
    run_other_runtime,
    tflm_all_tensors,
)

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
            outs = it.eval_operator(op, ins, _kernel_for(it, op, Numerics(**kw)))
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
                    explain: bool = True, other=None) -> RuntimeComparison:
    """Compare every tensor of microref's run with ``runtime`` on the same inputs (the runtime
    runs in a child process: see ``run_other_runtime`` for what it raises). ``other(model_bytes,
    inputs)``, when given, runs the runtime instead (a sweep's long-lived child,
    ``RuntimeChild.run``: the same answers and errors)."""
    # microref first: inputs it refuses are refused before the other runtime is bothered, and
    # "microref runs this model" holds whenever the other runtime's refusal or crash is reported.
    it.run(inputs, keep=True)
    mine = it._kept
    theirs = run_other_runtime(runtime, model_bytes, inputs) if other is None else other(model_bytes, inputs)
    ops_out = []
    for op, kernel in zip(it.subgraph.operators, it.kernels):
        chained = [_diff(it.tensors[ti], mine[ti], theirs[ti]) for ti in op.outputs if ti in theirs and ti in mine]
        isolated = None
        ins = _op_inputs(it, op, theirs)
        if ins is not None:
            outs = it.eval_operator(op, ins)
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
