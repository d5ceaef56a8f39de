"""Reports: the plan as text for a person (``format_plan``) and as JSON (``plan_to_json``)."""
from __future__ import annotations

from .plan import ArenaPlan


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB" if n < 10 * 1024 * 1024 else f"{n / (1024 * 1024):,.2f} MiB"


def _verdict(need: int, budget: int) -> str:
    if need <= budget:
        spare = budget - need
        return f"fits, {_kib(spare)} to spare" if spare >= 1024 else f"fits, {spare:,} bytes to spare"
    return f"over by {need - budget:,} bytes"


def format_plan(plan: ArenaPlan, *, width: int = 40, improved: bool = True, max_live: int = 12) -> str:
    """A human-readable report: per-operator live bytes with a bar, the peak, budget verdicts."""
    lines = []
    name = plan.model_name
    lines.append(f"Arena plan for {name}")
    lines.append("")
    top = max((s.live_bytes for s in plan.timeline), default=0) or 1
    lines.append(f"{'scope':>5}  {'op':>4}  {'operator':<22} {'live bytes':>12}  live buffers")
    for st in plan.timeline:
        bar = "#" * max(1 if st.live_bytes else 0, round(width * st.live_bytes / top))
        op = "" if st.op is None else str(st.op)
        mark = "  <- peak" if st.time == plan.peak_time else ""
        lines.append(f"{st.time:>5}  {op:>4}  {st.op_name[:22]:<22} {st.live_bytes:>12,}  "
                     f"{bar:<{width}} {len(st.live)}{mark}")
    lines.append("")
    if plan.peak_time is not None:
        peak_step = next(s for s in plan.timeline if s.time == plan.peak_time)
        where = (f"operator {plan.peak_op} ({peak_step.op_name})" if plan.peak_op is not None
                 else f"scope {plan.peak_time}")
        lines.append(f"Peak: {plan.lower_bound:,} bytes live during {where}:")
        peak_bufs = sorted((b for b in plan.buffers if b.live_at(plan.peak_time)),
                           key=lambda b: -b.size)
        for b in peak_bufs[:max_live]:
            label = b.label if len(b.label) <= 60 else b.label[:57] + "..."
            lines.append(f"  {b.size:>10,}  {label}  [scopes {b.first}..{b.last}] @ {b.offset:,}")
        if len(peak_bufs) > max_live:
            lines.append(f"  ... and {len(peak_bufs) - max_live} more")
        lines.append("")
    def row(label, value, extra=""):
        lines.append(f"{label:<36}{value:>14}" + (f"  {extra}" if extra else ""))

    if plan.exact:
        row("Head (TFLM's greedy plan, exact):", f"{plan.arena_bytes:,}",
            f"bytes ({len(plan.buffers)} buffers{'; offline plan in model' if plan.offline_planned else ''})")
    else:
        row("Head (AT LEAST; scratch unknown):", f">={plan.arena_bytes:,}",
            f"bytes ({len(plan.buffers)} buffers{'; offline plan in model' if plan.offline_planned else ''})")
    row("Lower bound (peak live bytes):", f"{plan.lower_bound:,}", "bytes")
    if improved:
        imp = plan.improved
        row(f"Improved plan ({'optimal' if imp.optimal else 'best found'}):", f"{imp.arena_bytes:,}",
            f"bytes ({imp.saved_bytes:,} saved; {imp.method})")
    exact = plan.exact and plan.tail.exact
    mark = "" if exact else ">="
    what = "exact, x86-64 wheel" if plan.tail.exact else "AT LEAST; see the notes"
    row(f"Tail (persistent, {what}):", f"{mark}{plan.tail.tail_bytes:,}", "bytes")
    row("Arena needed (smallest arena_size):", f"{mark}{plan.required_bytes:,}",
        f"bytes (set by {plan.tail.binding})")
    row("  32-bit MCU build (derived):", f"{mark}{plan.tail_32bit.minimum_arena:,}",
        f"bytes (tail {plan.tail_32bit.tail_bytes:,}; 4-byte pointers, no compression)")
    verdict = _verdict(plan.required_bytes, plan.budget_bytes)
    if not exact and plan.fits:
        verdict += ", unless the unknown buffers need more than that"
    lines.append(f"RAM budget {plan.budget_bytes:,} bytes: {verdict}"
                 + ("" if plan.fits or not plan.head_fits else " (the head alone fits)"))
    for u in plan.unknown_scratch:
        where = f"operator {u.op}" + ("" if u.subgraph == 0 else f" of subgraph {u.subgraph}")
        lines.append(f"Unknown scratch: {where} ({u.op_name}): {u.reason}")
    lines.append(f"Flash: model {plan.flash_bytes:,} bytes ({plan.weight_bytes:,} of weights); "
                 f"budget {plan.flash_budget_bytes:,} bytes: {_verdict(plan.flash_bytes, plan.flash_budget_bytes)}")
    for n in plan.notes:
        lines.append(f"Note: {n}")
    return "\n".join(lines)


def plan_to_json(plan: ArenaPlan, *, improved: bool = True) -> dict:
    """Everything in the plan as JSON-ready values (keys of offsets become strings)."""
    out = {
        "model": plan.model_name,
        "arena_bytes": plan.arena_bytes,
        "lower_bound": plan.lower_bound,
        "peak_time": plan.peak_time,
        "peak_op": plan.peak_op,
        "live_at_peak": plan.live_at_peak,
        "budget_bytes": plan.budget_bytes,
        "tail_bytes": dict(plan.tail_bytes),
        "tail_is_estimate": not plan.tail.exact,
        "required_bytes": plan.required_bytes,
        "arena_requirement": plan.tail.to_json(),
        "arena_requirement_32bit_derived": plan.tail_32bit.to_json(),
        "fits": plan.fits,
        "head_fits": plan.head_fits,
        "spare_bytes": plan.spare_bytes,
        "flash_bytes": plan.flash_bytes,
        "weight_bytes": plan.weight_bytes,
        "flash_budget_bytes": plan.flash_budget_bytes,
        "flash_fits": plan.flash_fits,
        "offline_planned": plan.offline_planned,
        "exact": plan.exact,
        "head_is_lower_bound": not plan.exact,
        "unknown_scratch": [u.to_json() for u in plan.unknown_scratch],
        "notes": list(plan.notes),
        "buffers": [b.to_json() for b in plan.buffers],
        "offsets": {str(k): v for k, v in plan.offsets.items()},
        "lifetimes": {str(k): list(v) for k, v in plan.lifetimes.items()},
        "timeline": [{"time": s.time, "subgraph": s.subgraph, "op": s.op, "op_name": s.op_name,
                      "live_bytes": s.live_bytes, "live": s.live} for s in plan.timeline],
    }
    if improved:
        imp = plan.improved
        out["improved"] = {
            "arena_bytes": imp.arena_bytes, "saved_bytes": imp.saved_bytes, "method": imp.method,
            "optimal": imp.optimal, "candidates_tried": imp.candidates_tried,
            "offsets": {str(k): v for k, v in imp.offsets.items()},
            "tensor_offsets": {str(k): v for k, v in imp.tensor_offsets.items()},
        }
    return out
