"""Checking plans: an offline plan before it is trusted, and any plan byte by byte.

``check_offline_plan`` judges an ``OfflineMemoryAllocation`` the way it will behave on TFLM:
negative offsets and offsets past the arena make TFLM refuse the model (or write outside the
arena); two tensors that are live at the same time sharing bytes make TFLM's outputs wrong
without any error. Each is a ``ModelError`` here. The one overlap that is by design is Vela's:
the operands of an Ethos-U operator share its scratch area, and the NPU's command stream orders
its own reads and writes.

``check_plan`` lays every buffer of a finished plan into one arena-sized array, scope by scope.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import MicrorefError, ModelError
from ..model import Model
from .lifetimes import OFFLINE_METADATA, PlannedBuffer

INT32_MAX = 2 ** 31 - 1  # TFLM's planner computes offsets and ends in int
NPU_OPERATORS = frozenset({"ethos-u"})


class PlanError(MicrorefError):
    """A memory plan is inconsistent: two buffers live at the same time share arena bytes."""


def _scopes_text(lo: int, hi: int) -> str:
    return f"scope {lo}" if lo == hi else f"scopes {lo}..{hi}"


def _operator_at(model: Model, owner, t: int) -> tuple[int, object] | None:
    """(subgraph, Operator) running at scope t; None at scopes where no operator runs."""
    if t <= 0:
        return None  # scope 0: the inputs are written; -1: never used
    s, i = owner.get(t, (0, None))
    if i is None:  # entering a subgraph: the control-flow operator is running
        return (s, None)
    return (s, model.subgraphs[s].operators[i])


def _by_design(model: Model, owner, a: PlannedBuffer, b: PlannedBuffer, lo: int, hi: int) -> bool:
    """Whether every operator that runs while both are live is an NPU operator addressing both."""
    for t in range(lo, hi + 1):
        at = _operator_at(model, owner, t)
        if at is None:
            continue
        s, op = at
        if op is None or op.display_name not in NPU_OPERATORS or not (s == a.subgraph == b.subgraph):
            return False
        operands = set(op.inputs) | set(op.outputs)
        if a.tensor not in operands or b.tensor not in operands:
            return False
    return True


def offline_plan_problems(model: Model, buffers: Sequence[PlannedBuffer], scope_owner,
                          arena_bytes: int | None = None) -> tuple[list[str], list[tuple[int, int, str]]]:
    """The offline-planned buffers' problems (sentences) and the overlaps they make by design
    ((buffer id, buffer id, sentence), the smaller id first)."""
    pinned = [b for b in buffers if b.offline_offset is not None]
    problems, by_design = [], []
    for b in pinned:
        off, end = b.offline_offset, b.offline_offset + b.size
        if off < 0:
            problems.append(
                f"{b.label}: offset {off} is negative (-1, \"plan online\", is the only negative value "
                f"allowed); TFLM takes it as given: "
                + ("its head then wraps around past any arena and it refuses the model (\"Failed to "
                   "resize buffer\")" if end < 0 else
                   f"the tensor's first {-off:,} bytes lie before the start of the arena, and TFLM "
                   f"writes them there, corrupting memory outside the arena (the tflite-micro wheel "
                   f"aborts with heap corruption)"))
        elif end > INT32_MAX:
            problems.append(f"{b.label}: offset {off:,} puts its end at {end:,}, past the largest arena "
                            f"TFLM's planner can address ({INT32_MAX:,} bytes, int offsets)")
        elif arena_bytes is not None and end > arena_bytes:
            problems.append(f"{b.label}: offset {off:,} puts it at [{off:,}, {end:,}), past the end of "
                            f"the {arena_bytes:,}-byte arena; TFLM fails to allocate the tensors "
                            f"(\"Failed to resize buffer\")")
    order = sorted(pinned, key=lambda b: (b.offline_offset, b.id))
    for i, a in enumerate(order):
        a_end = a.offline_offset + a.size
        for b in order[i + 1:]:
            if b.offline_offset >= a_end:
                break
            lo, hi = max(a.first, b.first), min(a.last, b.last)
            share = f"[{b.offline_offset:,}, {min(a_end, b.offline_offset + b.size):,})"
            if lo > hi:
                variable = next((x for x in (a, b) if _is_variable(model, x)), None)
                if variable is not None:
                    other = b if variable is a else a
                    problems.append(f"{a.label} and {b.label} share bytes {share}: {variable.label} is a "
                                    f"variable tensor, whose value must survive from one invocation "
                                    f"to the next, and {other.label} overwrites it")
                continue  # never live together: sharing bytes is what an offline plan is for
            if _by_design(model, scope_owner, a, b, lo, hi):
                by_design.append((min(a.id, b.id), max(a.id, b.id),
                                  f"{a.label} and {b.label} share bytes {share} as operands of the "
                                  f"NPU operator (Vela's layout; its command stream orders their use)"))
                continue
            at = next((x for t in range(lo, hi + 1) if (x := _operator_at(model, scope_owner, t))), None)
            during = ""
            if at is not None:
                s, op = at
                during = (f", while operator {op.index} ({op.display_name})" if op is not None
                          else ", while a control-flow operator") + \
                    (" runs" if s == 0 else f" of subgraph {s} runs")
            problems.append(
                f"{a.label} [{a.offline_offset:,}, {a_end:,}) and {b.label} [{b.offline_offset:,}, "
                f"{b.offline_offset + b.size:,}) share bytes {share} while both are live "
                f"({_scopes_text(lo, hi)}{during}); TFLM accepts this plan without a word, and "
                f"writing one tensor overwrites the other while it is still needed: TFLM's outputs "
                f"are corrupted")
    return problems, by_design


def _is_variable(model: Model, b: PlannedBuffer) -> bool:
    return b.kind == "tensor" and model.subgraphs[b.subgraph].tensors[b.tensor].is_variable


def variables_overwritten(model: Model, buffers: Sequence[PlannedBuffer]) -> list[str]:
    """Sentences naming the buffers TFLM's greedy planner puts over an offline-pinned variable's
    bytes (they are never live with it, but the variable's value must outlive every invocation)."""
    out = []
    for v in buffers:
        if v.offline_offset is None or not _is_variable(model, v):
            continue
        over = [b.label for b in buffers if b is not v and b.offline_offset is None
                and b.offset < v.end and v.offset < b.end]
        if over:
            out.append(f"TFLM places {', '.join(over)} over the bytes of the offline-planned variable "
                       f"{v.label} (they are not live at the same scope): its value does not survive "
                       f"from one invocation to the next")
    return out


def raise_offline_problems(problems: list[str]) -> None:
    if problems:
        shown = "\n  ".join(problems[:12]) + (f"\n  ... and {len(problems) - 12} more" if len(problems) > 12 else "")
        raise ModelError(f'metadata "{OFFLINE_METADATA}" cannot be trusted ({len(problems)} '
                         f"problem{'s' if len(problems) > 1 else ''}):\n  {shown}")


def check_offline_plan(plan, arena_bytes: int | None = None) -> None:
    """Raise ModelError if the plan's offline offsets are negative, past ``arena_bytes`` (or the
    int range TFLM computes in), or overlap between tensors live at the same time. ``plan_arena``
    already checks everything but the arena size, which only the caller knows (the CLI's budget)."""
    problems, _ = offline_plan_problems(plan.model, plan.buffers, plan.scope_owner, arena_bytes)
    raise_offline_problems(problems)


def check_plan(plan) -> None:
    """Lay every buffer into one arena-sized array, time step by time step; raise PlanError if
    any byte is claimed by two buffers live at the same time or a buffer leaves the arena.
    Overlaps an offline plan makes by design (``ArenaPlan.shared_pairs``) are allowed."""
    buffers = plan.buffers
    arena = plan.arena_bytes
    allowed = set(getattr(plan, "shared_pairs", ()) or ())
    problems = []
    for b in buffers:
        if b.offset < 0 or b.offset + b.size > arena:
            problems.append(f"{b.label}: [{b.offset}, {b.offset + b.size}) is outside the "
                            f"{arena}-byte arena")
    if not problems and buffers:
        by_id = {b.id: b for b in buffers}
        owner = np.full(max(arena, 1), -1, dtype=np.int32)
        times = sorted({t for b in buffers for t in range(b.first, b.last + 1)})
        for t in times:
            owner.fill(-1)
            for b in buffers:
                if not b.live_at(t):
                    continue
                region = owner[b.offset:b.offset + b.size]
                taken = np.unique(region[region >= 0])
                for other in taken:
                    o = by_id[int(other)]
                    if (min(o.id, b.id), max(o.id, b.id)) in allowed:
                        continue
                    problems.append(f"at scope {t}: {b.label} [{b.offset}, {b.end}) overlaps "
                                    f"{o.label} [{o.offset}, {o.end})")
                region[:] = b.id
        if problems:
            problems = sorted(set(problems))
    if problems:
        raise PlanError(f"{len(problems)} conflict(s) in the arena plan:\n  " + "\n  ".join(problems[:20]))
