"""TFLM's arena memory plan, reproduced exactly, explained, and improved.

``plan_arena(interpreter)`` answers "how much arena RAM does TFLite Micro need for this model?"
with the number TFLM itself prints as "Arena allocation head": the size of the non-persistent
overlay in which every activation tensor and every scratch buffer lives. It reproduces, step by
step, what TFLM does in ``MicroAllocator::CommitStaticMemoryPlan``:

1. **Lifetimes** (``AllocationInfoBuilder``): a scope counter starts at 0 with the graph inputs;
   operator i of subgraph 0 runs at scope i + 1 (control-flow ops first enter the subgraphs they
   call, one extra scope each); every input a operator reads is live through that scope, every
   output from its producer's scope; graph outputs stay live to the final scope; a scratch buffer
   lives during its operator only. Lifetimes are *inclusive*: a buffer that dies at scope s and one
   born at scope s overlap, so there is no in-place reuse.
2. **What is planned**: tensors with no data in the flatbuffer, not variable, of nonzero size,
   plus every scratch buffer request; each size rounded up to 16 bytes.
3. **Offline offsets** from the ``OfflineMemoryAllocation`` metadata, used as given.
4. **GreedyMemoryPlanner**: offline buffers first, then online ones in *reverse* insertion order,
   stably sorted by size, largest first; each placed at the lowest offset where it fits between
   the already-placed buffers whose lifetimes overlap its own.

Everything else here is built on that plan: a per-operator timeline and the lower bound on any
plan (the most bytes live at one time), an estimate of the persistent "tail" the arena also needs,
a better offset assignment than TFLM's greedy one (``plan.improved``) that can be written back
into the model so TFLM uses it (``write_offline_plan``), a search over operator orders, a checker
that lays every buffer into one byte array (``check_plan``) and a text/JSON report.
"""
from __future__ import annotations

import bisect
import functools
import random
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import MicrorefError, ModelError
from ..model import Model, Tensor, load_model

ARENA_ALIGNMENT = 16  # MicroArenaBufferAlignment(): every planned size is rounded up to this
OFFLINE_METADATA = "OfflineMemoryAllocation"
ONLINE = -1  # an offline-plan entry meaning "let the online planner place this tensor"
DEFAULT_BUDGET = 256 * 1024
DEFAULT_FLASH_BUDGET = 1024 * 1024

# Operators that run other subgraphs, and the option fields naming them, in TFLM's visiting order.
CONTROL_FLOW_SUBGRAPHS = {
    "IF": ("then_subgraph_index", "else_subgraph_index"),
    "WHILE": ("cond_subgraph_index", "body_subgraph_index"),
    "CALL_ONCE": ("init_subgraph_index",),
}


class PlanError(MicrorefError):
    """A memory plan is inconsistent: two buffers live at the same time share arena bytes."""


def align_up(n: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return (n + alignment - 1) // alignment * alignment


# ====================================================================== inputs of the plan
@dataclass(frozen=True)
class ScratchRequest:
    """One ``RequestScratchBufferInArena`` call a kernel makes in Prepare."""

    subgraph: int
    op: int
    nbytes: int


def reference_scratch_requests(model: Model) -> list[ScratchRequest]:
    """The scratch requests TFLM's *reference* kernels make, derived from the model alone.

    This is the fallback used when no prepared kernels are at hand (a model with operators the
    interpreter does not implement yet, or subgraphs other than the main one). The kernels' own
    ``scratch_bytes`` are authoritative. Covered: MEAN/SUM (int8/int16 and float),
    REDUCE_MAX/REDUCE_MIN/REDUCE_PROD, and int4-weight CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED.
    Requests are in TFLM's call order: subgraph by subgraph, operator by operator.
    """
    out: list[ScratchRequest] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            for nbytes in _reference_op_scratch(sg.tensors, op):
                out.append(ScratchRequest(sg.index, op.index, nbytes))
    return out


def _reference_op_scratch(tensors: list[Tensor], op) -> list[int]:
    def t(i):
        return tensors[op.inputs[i]] if i < len(op.inputs) and op.inputs[i] >= 0 else None

    name = op.op_name
    if name in ("MEAN", "SUM"):
        x, axis, y = t(0), t(1), tensors[op.outputs[0]]
        if x is None or axis is None:
            return []
        common = [4 * max(len(x.shape), 1), 4 * axis.size]
        if x.type_name in ("INT8", "INT16"):
            return [4 * y.size] + common  # int32 accumulator first
        return common
    if name in ("REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD"):
        x, axis = t(0), t(1)
        if x is None or axis is None:
            return []
        return [4 * max(len(x.shape), 1), 4 * axis.size]
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        w = t(1)
        if w is not None and w.type_name == "INT4":
            return [w.size]
    return []


def _normalise_scratch(model: Model, scratch) -> list[ScratchRequest]:
    """Accept the scratch requests in any convenient form; return them in TFLM's call order.

    * None: derived from the model (``reference_scratch_requests``);
    * a sequence with one list of byte sizes per operator of subgraph 0 (what the Interpreter's
      kernels give); other subgraphs then use the reference rules;
    * a mapping ``{(subgraph, op): [bytes, ...]}`` or ``{op: [bytes, ...]}`` (subgraph 0);
    * a sequence of ``ScratchRequest``.
    """
    if scratch is None:
        return reference_scratch_requests(model)
    if isinstance(scratch, Mapping):
        by_key: dict[tuple[int, int], list[int]] = {}
        for k, v in scratch.items():
            key = k if isinstance(k, tuple) else (0, int(k))
            by_key[(int(key[0]), int(key[1]))] = [int(b) for b in v]
    else:
        items = list(scratch)
        if items and all(isinstance(r, ScratchRequest) for r in items):
            return sorted(items, key=lambda r: (r.subgraph, r.op))  # stable: keeps call order
        main = model.main
        if len(items) != len(main.operators):
            raise ValueError(f"scratch: {len(items)} per-operator lists given, subgraph 0 has "
                             f"{len(main.operators)} operators")
        by_key = {(0, i): [int(b) for b in (v or [])] for i, v in enumerate(items)}
        for r in reference_scratch_requests(model):
            if r.subgraph != 0:
                by_key.setdefault((r.subgraph, r.op), []).append(r.nbytes)
    out = []
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators:
            for b in by_key.get((s, op.index), []):
                if b < 0:
                    raise ValueError(f"scratch request of {b} bytes at subgraph {s} operator {op.index}")
                out.append(ScratchRequest(s, op.index, b))
    return out


def read_offline_offsets(model: Model) -> list[int] | None:
    """The ``OfflineMemoryAllocation`` metadata's per-tensor offsets (flattened over subgraphs).

    Layout: int32 words ``[version, subgraph, N, offset_0 ... offset_{N-1}]``; -1 means "plan this
    tensor online". TFLM rejects the model when N is not the total tensor count.
    """
    raw = model.metadata.get(OFFLINE_METADATA)
    if raw is None:
        return None
    total = sum(len(sg.tensors) for sg in model.subgraphs)
    if len(raw) < 12:
        raise ModelError(f'metadata "{OFFLINE_METADATA}" has {len(raw)} bytes; it needs at least 12')
    n = struct.unpack_from("<I", raw, 8)[0]
    if n != total:
        raise ModelError(f'metadata "{OFFLINE_METADATA}" gives {n} offsets, but the model has {total} '
                         f"tensors (TFLM refuses this model)")
    if len(raw) < 12 + 4 * n:
        raise ModelError(f'metadata "{OFFLINE_METADATA}" claims {n} offsets but holds only '
                         f"{(len(raw) - 12) // 4}")
    return list(struct.unpack_from(f"<{n}i", raw, 12))


# ====================================================================== the planned buffers
@dataclass
class PlannedBuffer:
    """One buffer given to the planner, in TFLM's AddBuffer order (``id``)."""

    id: int
    kind: str  # "tensor" or "scratch"
    name: str
    subgraph: int
    tensor: int | None  # tensor index within its subgraph (tensors only)
    op: int | None  # the operator that requested it (scratch only)
    request: int | None  # scratch request number, in call order (scratch only)
    nbytes: int  # bytes the tensor/request needs
    size: int  # nbytes rounded up to 16: what the planner places
    first: int
    last: int
    offset: int = -1
    offline_offset: int | None = None  # fixed by OfflineMemoryAllocation metadata

    @property
    def key(self) -> int | tuple[int, int] | str:
        """Its key in ``offsets``/``lifetimes``: the tensor index (subgraph 0), (subgraph, index),
        or "scratch:N" for the N-th scratch request."""
        if self.kind == "scratch":
            return f"scratch:{self.request}"
        return self.tensor if self.subgraph == 0 else (self.subgraph, self.tensor)

    @property
    def label(self) -> str:
        if self.kind == "scratch":
            return f"scratch:{self.request} (op {self.op})"
        prefix = f"t{self.tensor}" if self.subgraph == 0 else f"s{self.subgraph}:t{self.tensor}"
        return f"{prefix} {self.name}" if self.name else prefix

    @property
    def end(self) -> int:
        return self.offset + self.size

    def live_at(self, t: int) -> bool:
        return self.first <= t <= self.last

    def overlaps_in_time(self, other: "PlannedBuffer") -> bool:
        return not (other.first > self.last or self.first > other.last)

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "name": self.name, "subgraph": self.subgraph,
                "tensor": self.tensor, "op": self.op, "request": self.request,
                "nbytes": self.nbytes, "size": self.size, "first": self.first, "last": self.last,
                "offset": self.offset, "offline_offset": self.offline_offset}


@dataclass
class _Lifetimes:
    tensor_first: list[int]  # flattened over subgraphs
    tensor_last: list[int]
    scratch_first: list[int]
    scratch_last: list[int]
    scope_owner: dict[int, tuple[int, int | None]]  # scope -> (subgraph, op index or None)
    final_scope: int


def _subgraph_offsets(model: Model) -> list[int]:
    offsets, n = [], 0
    for sg in model.subgraphs:
        offsets.append(n)
        n += len(sg.tensors)
    return offsets


def _mark_lifetimes(model: Model, requests: Sequence[ScratchRequest],
                    order: Sequence[int] | None = None) -> _Lifetimes:
    """TFLM's AllocationInfoBuilder::MarkAllocationLifetimes, from subgraph 0.

    ``order`` (subgraph 0 only) runs the operators in another order, as if the model stored them
    so; scratch requests stay with their operator.
    """
    base = _subgraph_offsets(model)
    total = base[-1] + len(model.subgraphs[-1].tensors)
    first = [-1] * total
    last = [-1] * total
    sfirst = [-1] * len(requests)
    slast = [-1] * len(requests)
    by_op: dict[tuple[int, int], list[int]] = {}
    for k, r in enumerate(requests):
        by_op.setdefault((r.subgraph, r.op), []).append(k)
    owner: dict[int, tuple[int, int | None]] = {0: (0, None)}
    scope = 0
    active: list[int] = []

    def born(i, s):
        if first[i] == -1:
            first[i] = s

    def mark(s: int):
        nonlocal scope
        if s in active:
            raise ModelError(f"subgraph {s} calls itself through control flow "
                             f"(call chain {' -> '.join(map(str, active + [s]))})")
        if not 0 <= s < len(model.subgraphs):
            raise ModelError(f"control flow refers to subgraph {s}, but the model has "
                             f"{len(model.subgraphs)}")
        active.append(s)
        sg = model.subgraphs[s]
        b = base[s]
        for t in sg.inputs:
            born(b + t, scope)
            last[b + t] = scope
        ops = order if (s == 0 and order is not None) else range(len(sg.operators))
        for i in ops:
            op = sg.operators[i]
            scope += 1
            owner[scope] = (s, i)
            for t in op.outputs:
                born(b + t, scope)
            start = scope
            for opt in CONTROL_FLOW_SUBGRAPHS.get(op.op_name, ()):
                child = op.options.get(opt, -1)
                if child is None or child < 0:
                    continue
                scope += 1
                owner[scope] = (child, None)
                mark(int(child))
            for t in op.inputs:
                if t >= 0:
                    last[b + t] = scope
            for t in op.outputs:
                last[b + t] = scope
            for k in by_op.get((s, i), ()):
                if sfirst[k] == -1:
                    sfirst[k] = start
                slast[k] = scope
        for t in sg.outputs:
            born(b + t, scope)
            last[b + t] = scope
        active.pop()

    mark(0)
    return _Lifetimes(first, last, sfirst, slast, owner, scope)


def _collect_buffers(model: Model, requests: Sequence[ScratchRequest], life: _Lifetimes,
                     offline: list[int] | None) -> list[PlannedBuffer]:
    """The buffers TFLM gives its planner, in AddBuffer order (tensors by flat index, then scratch)."""
    buffers: list[PlannedBuffer] = []
    flat = 0
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators:
            for t in op.intermediates:
                if t >= 0 and sg.tensors[t].nbytes != 0:
                    tt = sg.tensors[t]
                    raise ModelError(f'operator {op.index} ({op.display_name}): intermediate tensor '
                                     f'{t} "{tt.name}" has {tt.nbytes} bytes; TFLM only accepts '
                                     f"empty intermediates")
        for t in sg.tensors:
            off = offline[flat] if offline is not None else ONLINE
            needs = (not t.is_constant) and (not t.is_variable) and t.nbytes != 0
            if t.is_variable and off != ONLINE:
                needs = True  # an offline-planned variable goes in the head, not the tail
            if needs:
                buffers.append(PlannedBuffer(
                    id=len(buffers), kind="tensor", name=t.name, subgraph=s, tensor=t.index,
                    op=None, request=None, nbytes=t.nbytes, size=align_up(t.nbytes),
                    first=life.tensor_first[flat], last=life.tensor_last[flat],
                    offline_offset=None if off == ONLINE else off))
            flat += 1
    for k, r in enumerate(requests):
        op = model.subgraphs[r.subgraph].operators[r.op]
        buffers.append(PlannedBuffer(
            id=len(buffers), kind="scratch", name=f"{op.display_name} scratch", subgraph=r.subgraph,
            tensor=None, op=r.op, request=k, nbytes=r.nbytes, size=align_up(r.nbytes),
            first=life.scratch_first[k], last=life.scratch_last[k]))
    return buffers


# ====================================================================== placement
def greedy_offsets(sizes: Sequence[int], firsts: Sequence[int], lasts: Sequence[int],
                   offline: Sequence[int | None] | None = None) -> list[int]:
    """TFLM's GreedyMemoryPlanner::CalculateOffsetsIfNeeded, buffer for buffer.

    Order: offline-planned buffers first in insertion order; then the online ones taken from the
    last added to the first, stably sorted by size, largest first. Placement: offline buffers at
    their fixed offset; each online buffer at the first gap, walking the placed buffers whose
    lifetimes overlap its own in offset order, that is large enough, else after the last of them.
    """
    n = len(sizes)
    offline = list(offline) if offline is not None else [None] * n
    fixed = [i for i in range(n) if offline[i] is not None]
    online = [i for i in range(n - 1, -1, -1) if offline[i] is None]
    online.sort(key=lambda i: -sizes[i])  # Python's sort is stable, like TFLM's bubble sort
    return _place(fixed + online, sizes, firsts, lasts, offline)


def _place(order: Iterable[int], sizes, firsts, lasts, fixed=None, best_fit: bool = False) -> list[int]:
    """Place buffers in ``order``; ``fixed[i]`` (if not None) pins buffer i at that offset.

    First fit reproduces TFLM; ``best_fit`` takes the smallest gap that is large enough instead.
    Placed buffers are kept sorted by offset; a new one goes after those with an equal offset.
    """
    n = len(sizes)
    offsets = [-1] * n
    placed_off: list[int] = []
    placed_id: list[int] = []
    for b in order:
        if fixed is not None and fixed[b] is not None:
            cand = fixed[b]
        else:
            f, l, size = firsts[b], lasts[b], sizes[b]
            cand = 0
            best_gap = best_at = None
            for off, e in zip(placed_off, placed_id):
                if firsts[e] > l or f > lasts[e]:
                    continue  # not live at the same time: its bytes are free for b
                gap = off - cand
                if gap >= size:
                    if not best_fit:
                        break
                    if best_gap is None or gap < best_gap:
                        best_gap, best_at = gap, cand
                cand = max(cand, off + sizes[e])
            if best_fit and best_at is not None:
                cand = best_at
        offsets[b] = cand
        k = bisect.bisect_right(placed_off, cand)
        placed_off.insert(k, cand)
        placed_id.insert(k, b)
    return offsets


def _extent(offsets, sizes) -> int:
    return max((o + s for o, s in zip(offsets, sizes)), default=0)


def _live_profile(buffers: Sequence[PlannedBuffer]) -> dict[int, int]:
    """Time -> sum of aligned sizes of the buffers live then."""
    prof: dict[int, int] = {}
    for b in buffers:
        for t in range(b.first, b.last + 1):
            prof[t] = prof.get(t, 0) + b.size
    return prof


# ====================================================================== the plan
@dataclass
class TimelineStep:
    time: int  # TFLM's allocation scope
    subgraph: int
    op: int | None  # operator running at this scope (None: graph inputs / entering a subgraph)
    op_name: str
    live_bytes: int
    live: list[str]  # labels of the buffers live at this scope


@dataclass
class ArenaPlan:
    """TFLM's arena plan for one model; ``arena_bytes`` is its "Arena allocation head"."""

    model_name: str
    arena_bytes: int
    buffers: list[PlannedBuffer]
    offsets: dict[Any, int]
    lifetimes: dict[Any, tuple[int, int]]
    timeline: list[TimelineStep]
    peak_time: int | None
    peak_op: int | None
    live_at_peak: list[str]
    lower_bound: int
    budget_bytes: int
    tail_estimate: dict[str, int]
    flash_bytes: int
    weight_bytes: int
    flash_budget_bytes: int
    offline_planned: bool  # the model carries OfflineMemoryAllocation metadata
    exact: bool  # single subgraph: the rules here are verified against TFLM
    notes: list[str] = field(default_factory=list)
    # What the improvers need to re-plan; not part of the report.
    _model: Model | None = field(default=None, repr=False, compare=False)
    _requests: list[ScratchRequest] = field(default_factory=list, repr=False, compare=False)

    # ------------------------------------------------------------------ derived numbers
    @property
    def required_bytes(self) -> int:
        """The arena size to give TFLM: the exact head plus the *estimated* tail."""
        return self.arena_bytes + self.tail_estimate["total"]

    @property
    def fits(self) -> bool:
        """Whether head (exact) + tail (estimate) fit in ``budget_bytes``."""
        return self.required_bytes <= self.budget_bytes

    @property
    def head_fits(self) -> bool:
        return self.arena_bytes <= self.budget_bytes

    @property
    def spare_bytes(self) -> int:
        """Budget left after head + estimated tail (negative: over budget)."""
        return self.budget_bytes - self.required_bytes

    @property
    def flash_fits(self) -> bool:
        return self.flash_bytes <= self.flash_budget_bytes

    @property
    def greedy_waste(self) -> int:
        return self.arena_bytes - self.lower_bound

    @functools.cached_property
    def improved(self) -> "ImprovedPlan":
        """A better offset assignment than TFLM's greedy one (never worse); see ``improve_plan``."""
        return improve_plan(self)

    def slice_of(self, tensor: int | tuple[int, int]) -> tuple[int, int]:
        return tensor_slice(self, tensor)


@dataclass
class ImprovedPlan:
    """Offsets for the same buffers, found by searching placements; usable by TFLM as an offline plan.

    ``tensor_offsets`` is what ``write_offline_plan`` writes (tensors only: TFLM always plans
    scratch buffers online). ``arena_bytes`` is the head TFLM reports when given those offsets:
    the scratch buffers' offsets here are where TFLM's greedy planner puts them around the fixed
    tensors. An empty ``tensor_offsets`` means the greedy plan was not beaten: keep the model as is.
    """

    arena_bytes: int
    greedy_arena_bytes: int
    lower_bound: int
    buffers: list[PlannedBuffer]
    offsets: dict[Any, int]
    tensor_offsets: dict[Any, int]
    method: str
    optimal: bool  # reaches the lower bound or the exact search finished
    candidates_tried: int

    @property
    def saved_bytes(self) -> int:
        return self.greedy_arena_bytes - self.arena_bytes


def plan_arena(interpreter_or_model, budget_bytes: int = DEFAULT_BUDGET,
               flash_budget_bytes: int = DEFAULT_FLASH_BUDGET, *, scratch=None,
               order: Sequence[int] | None = None) -> ArenaPlan:
    """The arena plan TFLM makes for a model.

    ``interpreter_or_model``: an ``Interpreter`` (its kernels give the scratch requests), a
    ``Model``, or a path / the bytes of a .tflite file. ``scratch`` overrides the scratch requests
    (see ``_normalise_scratch``); for a bare model they default to ``reference_scratch_requests``.
    ``order``: plan as if subgraph 0's operators ran in this order (see ``search_operator_orders``).
    """
    obj = interpreter_or_model
    if isinstance(obj, Model):
        model = obj
    elif isinstance(obj, (str, bytes, bytearray, memoryview)) or hasattr(obj, "__fspath__"):
        model = load_model(obj)
    else:  # an Interpreter: the kernels' Prepare recorded their scratch requests
        model = obj.model
        if scratch is None:
            scratch = [list(getattr(k, "scratch_bytes", None) or []) for k in obj.kernels]
    requests = _normalise_scratch(model, scratch)
    if order is not None:
        _check_order(model, order)
    return _build_plan(model, requests, budget_bytes, flash_budget_bytes, order)


def _build_plan(model: Model, requests: list[ScratchRequest], budget_bytes: int,
                flash_budget_bytes: int, order=None) -> ArenaPlan:
    offline = read_offline_offsets(model)
    life = _mark_lifetimes(model, requests, order)
    buffers = _collect_buffers(model, requests, life, offline)
    sizes = [b.size for b in buffers]
    offs = greedy_offsets(sizes, [b.first for b in buffers], [b.last for b in buffers],
                          [b.offline_offset for b in buffers])
    for b, o in zip(buffers, offs):
        b.offset = o
    arena = _extent(offs, sizes)

    prof = _live_profile(buffers)
    times = sorted(set(prof) | set(range(0, life.final_scope + 1)))
    timeline = []
    for t in times:
        s, op = life.scope_owner.get(t, (0, None))
        if op is not None:
            name = model.subgraphs[s].operators[op].display_name
        elif t == 0:
            name = "(graph inputs)"
        elif t < 0:
            name = "(never used)"
        else:
            name = f"(enter subgraph {s})"
        live = [b for b in buffers if b.live_at(t)]
        timeline.append(TimelineStep(t, s, op, name, prof.get(t, 0), [b.label for b in live]))
    peak = max(timeline, key=lambda st: st.live_bytes, default=None)
    lower = peak.live_bytes if peak else 0

    notes = []
    exact = len(model.subgraphs) == 1
    if not exact:
        notes.append("the model has several subgraphs: lifetimes follow TFLM's control-flow rules, "
                     "but only single-subgraph plans are verified against TFLM")
    if order is not None and list(order) != list(range(len(model.main.operators))):
        notes.append("planned for a reordered operator sequence, not the stored one")
    tail = estimate_tail(model, requests, offline)
    return ArenaPlan(
        model_name=model.source, arena_bytes=arena, buffers=buffers,
        offsets={b.key: b.offset for b in buffers},
        lifetimes={b.key: (b.first, b.last) for b in buffers},
        timeline=timeline, peak_time=peak.time if peak else None,
        peak_op=peak.op if peak else None, live_at_peak=list(peak.live) if peak else [],
        lower_bound=lower, budget_bytes=budget_bytes, tail_estimate=tail,
        flash_bytes=model.file_bytes, weight_bytes=model.weight_bytes,
        flash_budget_bytes=flash_budget_bytes, offline_planned=offline is not None, exact=exact,
        notes=notes, _model=model, _requests=list(requests))


# ====================================================================== checking a plan
def check_plan(plan: ArenaPlan | ImprovedPlan) -> None:
    """Lay every buffer into one arena-sized array, time step by time step; raise PlanError if
    any byte is claimed by two buffers live at the same time or a buffer leaves the arena."""
    buffers = plan.buffers
    arena = plan.arena_bytes
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
                    problems.append(f"at scope {t}: {b.label} [{b.offset}, {b.end}) overlaps "
                                    f"{o.label} [{o.offset}, {o.end})")
                region[:] = b.id
        if problems:
            problems = sorted(set(problems))
    if problems:
        raise PlanError(f"{len(problems)} conflict(s) in the arena plan:\n  " + "\n  ".join(problems[:20]))


def tensor_slice(plan: ArenaPlan | ImprovedPlan, tensor: int | tuple[int, int] | str) -> tuple[int, int]:
    """(offset, nbytes) of a planned tensor (or "scratch:N") inside the arena."""
    for b in plan.buffers:
        if b.key == tensor:
            return b.offset, b.nbytes
    raise KeyError(f"{tensor!r} is not planned in the arena (constant, variable, empty, or unknown)")


def tensor_view(arena: np.ndarray | bytearray, plan: ArenaPlan | ImprovedPlan, tensor: int,
                model: Model | None = None) -> np.ndarray:
    """A numpy view of a subgraph-0 tensor at its planned place in ``arena`` (a uint8 array or
    bytearray of at least ``plan.arena_bytes``): writing it writes the arena."""
    model = model or getattr(plan, "_model", None)
    if model is None:
        raise ValueError("tensor_view needs the model (pass model=...)")
    t = model.main.tensors[tensor]
    if t.dtype is None:
        raise ValueError(f"tensor {tensor} of type {t.type_name} has no numpy dtype")
    off, nbytes = tensor_slice(plan, tensor)
    buf = np.frombuffer(arena, dtype=np.uint8) if not isinstance(arena, np.ndarray) else arena
    if t.type_name == "INT4":  # the arena holds int4 activations unpacked, one byte each
        return buf[off:off + nbytes].view(np.int8).reshape(t.shape)
    return buf[off:off + nbytes].view(t.dtype).reshape(t.shape)


# ====================================================================== a better plan
def _realise(buffers: Sequence[PlannedBuffer], tensor_offsets: Sequence[int | None]) -> list[int]:
    """Where TFLM puts every buffer when the tensors carry these offline offsets (None: online)."""
    sizes = [b.size for b in buffers]
    fixed = [tensor_offsets[i] if b.kind == "tensor" else None for i, b in enumerate(buffers)]
    return greedy_offsets(sizes, [b.first for b in buffers], [b.last for b in buffers], fixed)


def improve_plan(plan: ArenaPlan, *, seed: int = 0, local_iterations: int = 400,
                 exact_limit: int = 12, exact_nodes: int = 200_000) -> ImprovedPlan:
    """Search offset assignments for a smaller arena than TFLM's greedy plan, deterministically.

    Candidates: first-fit and best-fit placement in many orders (size, lifetime start, length,
    size x length, conflict weight, with both tie orders), then a seeded local search that swaps
    placement orders, and for at most ``exact_limit`` buffers an exact branch-and-bound search.
    The search stops early once it reaches the lower bound (no plan can be smaller). Every
    candidate is scored as TFLM would realise it from an offline plan (tensors fixed, scratch
    buffers placed by TFLM's greedy planner), and the online greedy plan itself is a candidate,
    so the result is never worse than greedy.
    """
    buffers = plan.buffers
    n = len(buffers)
    greedy = plan.arena_bytes
    lb = plan.lower_bound
    sizes = [b.size for b in buffers]
    firsts = [b.first for b in buffers]
    lasts = [b.last for b in buffers]
    pinned = None  # the improved plan re-places every tensor, even ones the model pinned offline

    best = {"arena": greedy, "tensor": None, "offsets": [b.offset for b in buffers],
            "method": "greedy (TFLM's own plan; not beaten)"}
    tried = 0
    has_scratch = any(b.kind == "scratch" for b in buffers)

    def consider(offsets: list[int], method: str):
        nonlocal tried
        tried += 1
        if has_scratch:
            tens = [o if b.kind == "tensor" else None for o, b in zip(offsets, buffers)]
            offsets = _realise(buffers, tens)
        else:
            tens = list(offsets)
        arena = _extent(offsets, sizes)
        if arena < best["arena"]:
            best.update(arena=arena, tensor=tens, offsets=list(offsets), method=method)
        return arena

    if n and greedy > lb:
        overlap = np.zeros((n, n), dtype=bool)
        for i in range(n):
            for j in range(n):
                overlap[i, j] = not (firsts[j] > lasts[i] or firsts[i] > lasts[j])
        weight = [int(np.dot(overlap[i], sizes)) for i in range(n)]
        length = [lasts[i] - firsts[i] + 1 for i in range(n)]
        keys = {
            "size": lambda i: (-sizes[i], firsts[i], i),
            "size, later first": lambda i: (-sizes[i], -i),
            "size, longest first": lambda i: (-sizes[i], -length[i], i),
            "size x lifetime": lambda i: (-sizes[i] * length[i], -sizes[i], i),
            "lifetime, then size": lambda i: (-length[i], -sizes[i], i),
            "conflict weight": lambda i: (-weight[i], -sizes[i], i),
            "start time": lambda i: (firsts[i], -sizes[i], i),
            "end time": lambda i: (-lasts[i], -sizes[i], i),
        }
        orders = {name: sorted(range(n), key=k) for name, k in keys.items()}
        for name, order in orders.items():
            for bf in (False, True):
                consider(_place(order, sizes, firsts, lasts, pinned, best_fit=bf),
                         f"{'best' if bf else 'first'} fit by {name}")
                if best["arena"] <= lb:
                    break
            if best["arena"] <= lb:
                break

        # Seeded local search on the placement order of the best heuristic.
        if best["arena"] > lb and local_iterations > 0:
            rng = random.Random(seed)
            start_name = min(orders, key=lambda k: _extent(_place(orders[k], sizes, firsts, lasts),
                                                           sizes))
            cur = list(orders[start_name])
            cur_cost = _extent(_place(cur, sizes, firsts, lasts), sizes)
            for it in range(local_iterations):
                cand = list(cur)
                i, j = rng.randrange(n), rng.randrange(n)
                if rng.random() < 0.5:
                    cand[i], cand[j] = cand[j], cand[i]
                else:
                    cand.insert(j, cand.pop(i))
                offs = _place(cand, sizes, firsts, lasts)
                cost = _extent(offs, sizes)
                if cost <= cur_cost:
                    cur, cur_cost = cand, cost
                    if cost < best["arena"]:
                        consider(offs, f"local search from '{start_name}' (seed {seed})")
                        if best["arena"] <= lb:
                            break

        exhaustive = False
        if best["arena"] > lb and n <= exact_limit:
            offs, complete = _exact_search(sizes, firsts, lasts, overlap, best["arena"], lb,
                                           exact_nodes)
            tried += 1
            if offs is not None:
                consider(offs, "exact search")
            exhaustive = complete and not has_scratch
        optimal = best["arena"] <= lb or exhaustive
    else:
        optimal = True

    offsets = best["offsets"]
    new_buffers = [replace(b, offset=o, offline_offset=None) for b, o in zip(buffers, offsets)]
    if best["tensor"] is None:
        tensor_offsets: dict[Any, int] = {}
    else:
        tensor_offsets = {b.key: o for b, o in zip(buffers, best["tensor"]) if b.kind == "tensor"}
    return ImprovedPlan(arena_bytes=best["arena"], greedy_arena_bytes=greedy, lower_bound=lb,
                        buffers=new_buffers, offsets={b.key: b.offset for b in new_buffers},
                        tensor_offsets=tensor_offsets, method=best["method"], optimal=optimal,
                        candidates_tried=tried)


def _exact_search(sizes, firsts, lasts, overlap, upper: int, lb: int, node_limit: int):
    """Branch and bound over "bottom-left" packings: every buffer sits at 0 or on top of a buffer
    it overlaps in time. Buffers are placed in non-decreasing offset order, so each packing is
    reached once per tie order. Returns (offsets or None, finished)."""
    n = len(sizes)
    best = [upper, None]
    nodes = [0]
    offsets = [-1] * n

    def feasible(b, pos):
        end = pos + sizes[b]
        for e in range(n):
            if offsets[e] >= 0 and overlap[b, e] and offsets[e] < end and pos < offsets[e] + sizes[e]:
                return False
        return True

    def dfs(placed: int, floor: int, floor_id: int, top: int):
        nodes[0] += 1
        if nodes[0] > node_limit:
            raise TimeoutError
        if placed == n:
            if top < best[0]:
                best[0], best[1] = top, list(offsets)
            return
        cands = {0} | {offsets[e] + sizes[e] for e in range(n) if offsets[e] >= 0}
        for pos in sorted(c for c in cands if c >= floor):
            for b in range(n):
                if offsets[b] >= 0 or max(top, pos + sizes[b]) >= best[0]:
                    continue
                if pos == floor and b < floor_id:
                    continue  # equal offsets: one order only
                if pos != 0 and not any(offsets[e] >= 0 and overlap[b, e] and
                                        offsets[e] + sizes[e] == pos for e in range(n)):
                    continue  # not resting on a buffer it overlaps in time: not bottom-left
                if not feasible(b, pos):
                    continue
                offsets[b] = pos
                dfs(placed + 1, pos, b, max(top, pos + sizes[b]))
                offsets[b] = -1
                if best[0] <= lb:
                    return

    try:
        dfs(0, 0, -1, 0)
        finished = True
    except TimeoutError:
        finished = False
    return best[1], finished


# ====================================================================== operator orders
@dataclass
class OrderSearchResult:
    """The best execution order of subgraph 0's operators found, by peak live bytes."""

    best_order: list[int]
    best_lower_bound: int  # peak live bytes in that order
    best_arena_bytes: int  # TFLM's greedy head if the model stored its operators in that order
    original_lower_bound: int
    original_arena_bytes: int
    orders_tried: int
    exhaustive: bool  # every topological order was tried

    @property
    def improves(self) -> bool:
        return self.best_arena_bytes < self.original_arena_bytes or \
            self.best_lower_bound < self.original_lower_bound


def _check_order(model: Model, order: Sequence[int]):
    sg = model.main
    if sorted(order) != list(range(len(sg.operators))):
        raise ValueError("order must list every operator of subgraph 0 exactly once")
    deps = _dependencies(model)
    pos = {op: k for k, op in enumerate(order)}
    for op, ds in enumerate(deps):
        for d in ds:
            if pos[d] > pos[op]:
                raise ValueError(f"order runs operator {op} before operator {d}, which produces its input")


def _dependencies(model: Model) -> list[set[int]]:
    sg = model.main
    producer = {}
    for op in sg.operators:
        for t in op.outputs:
            producer[t] = op.index
    return [{producer[t] for t in op.inputs if t >= 0 and t in producer and producer[t] != op.index}
            for op in sg.operators]


def search_operator_orders(plan_or_model, *, scratch=None, max_orders: int = 2000,
                           beam_width: int = 32, evaluate_top: int = 8) -> OrderSearchResult:
    """Search topological orders of subgraph 0's operators for a lower peak of live bytes.

    Enumerates every valid order when there are at most ``max_orders`` of them; otherwise runs a
    beam search (``beam_width`` partial orders kept per step, ranked by their peak so far). The
    ``evaluate_top`` best orders by peak are then planned with TFLM's greedy planner; the result
    is the order with the smallest (greedy head, peak). Only single-subgraph models are searched.
    """
    if isinstance(plan_or_model, ArenaPlan):
        model, requests = plan_or_model._model, plan_or_model._requests
    else:
        model = plan_or_model if isinstance(plan_or_model, Model) else getattr(plan_or_model, "model", None)
        if model is None:
            model = load_model(plan_or_model)
        if scratch is None and hasattr(plan_or_model, "kernels"):
            scratch = [list(getattr(k, "scratch_bytes", None) or []) for k in plan_or_model.kernels]
        requests = _normalise_scratch(model, scratch)
    if len(model.subgraphs) != 1:
        raise MicrorefError("operator-order search handles single-subgraph models only")
    sg = model.main
    n_ops = len(sg.operators)
    deps = _dependencies(model)
    users = [set() for _ in range(n_ops)]
    for op, ds in enumerate(deps):
        for d in ds:
            users[d].add(op)

    base = _build_plan(model, requests, 0, 0)
    planned = {b.tensor: b.size for b in base.buffers if b.kind == "tensor"}
    scratch_bytes = [0] * n_ops
    for b in base.buffers:
        if b.kind == "scratch":
            scratch_bytes[b.op] += b.size
    consumers: dict[int, set[int]] = {}
    for op in sg.operators:
        for t in op.inputs:
            if t >= 0 and t in planned:
                consumers.setdefault(t, set()).add(op.index)
    outputs = set(sg.outputs)
    inputs_live0 = sum(planned.get(t, 0) for t in set(sg.inputs))

    def step(done: frozenset, live: frozenset, op: int):
        """Bytes live while ``op`` runs, and the live set after it."""
        o = sg.operators[op]
        outs = {t for t in o.outputs if t in planned}
        during = live | outs
        now = sum(planned[t] for t in during) + scratch_bytes[op]
        done2 = done | {op}
        after = frozenset(t for t in during
                          if t in outputs or not consumers.get(t, set()) <= done2)
        return now, after, done2

    # Graph inputs that nobody reads die at scope 0; those read live until their last reader.
    live0 = frozenset(t for t in set(sg.inputs) if t in planned and consumers.get(t))

    def ready(done):
        return [op for op in range(n_ops) if op not in done and deps[op] <= done]

    complete: list[tuple[int, list[int]]] = []
    exhaustive = False

    def enumerate_all():
        """Every topological order with its peak, or None past ``max_orders`` of them."""
        stack = [(frozenset(), live0, [], inputs_live0)]
        out = []
        while stack:
            done, live, seq, peak = stack.pop()
            if len(seq) == n_ops:
                out.append((peak, seq))
                if len(out) > max_orders:
                    return None
                continue
            for op in reversed(ready(done)):
                now, after, done2 = step(done, live, op)
                stack.append((done2, after, seq + [op], max(peak, now)))
        return out

    res = enumerate_all() if n_ops <= 200 else None
    if res is not None:
        complete = res
        exhaustive = True
    else:
        beam = [(inputs_live0, 0, frozenset(), live0, [])]
        for _ in range(n_ops):
            nxt: dict[frozenset, tuple] = {}
            for peak, cur, done, live, seq in beam:
                for op in ready(done):
                    now, after, done2 = step(done, live, op)
                    cur2 = sum(planned[t] for t in after)
                    cand = (max(peak, now), cur2, done2, after, seq + [op])
                    old = nxt.get(done2)
                    if old is None or cand[:2] < old[:2]:
                        nxt[done2] = cand
            beam = sorted(nxt.values(), key=lambda c: (c[0], c[1]))[:beam_width]
        complete = [(c[0], c[4]) for c in beam]
        original = list(range(n_ops))
        complete.append((base.lower_bound, original))
    tried = len(complete)
    complete.sort(key=lambda c: c[0])
    original = list(range(n_ops))
    shortlist = complete[:evaluate_top]
    if all(seq != original for _, seq in shortlist):
        shortlist.append((base.lower_bound, original))
    scored = []
    for _, seq in shortlist:
        p = _build_plan(model, requests, 0, 0, seq)
        scored.append((p.arena_bytes, p.lower_bound, seq != original, seq))
    scored.sort(key=lambda s: (s[0], s[1], s[2]))
    arena, peak, _, seq = scored[0]
    return OrderSearchResult(best_order=list(seq), best_lower_bound=peak, best_arena_bytes=arena,
                             original_lower_bound=base.lower_bound,
                             original_arena_bytes=base.arena_bytes, orders_tried=tried,
                             exhaustive=exhaustive)


# ====================================================================== the tail (an estimate)
# Persistent ("tail") bytes TFLM allocates per operator, measured for the x86-64 tflite-micro
# wheel's reference kernels with the RecordingMicroAllocator (print_allocations' categories):
# kernel OpData from AllocatePersistentBuffer, and the builtin-options struct the op's parser
# allocates. Per-channel quantized CONV/DEPTHWISE (and per-channel FC) add 2 int32 arrays of one
# entry per output channel. Ops not listed use _DEFAULT_* and make the estimate rougher.
_OP_DATA_BYTES = {
    "FULLY_CONNECTED": 72, "CONV_2D": 80, "DEPTHWISE_CONV_2D": 80, "AVERAGE_POOL_2D": 32,
    "MAX_POOL_2D": 32, "SOFTMAX": 80, "ADD": 60, "SUB": 60, "MUL": 48, "PAD": 56, "PADV2": 56,
    "MEAN": 44, "SUM": 44, "RESHAPE": 0, "TRANSPOSE": 0, "SQUEEZE": 0, "QUANTIZE": 24,
    "DEQUANTIZE": 24, "LOGISTIC": 24, "TANH": 24, "CONCATENATION": 64, "STRIDED_SLICE": 120,
    "RELU": 16, "RELU6": 16, "LEAKY_RELU": 16, "HARD_SWISH": 32,
}
_BUILTIN_DATA_BYTES = {
    "FULLY_CONNECTED": 32, "CONV_2D": 28, "DEPTHWISE_CONV_2D": 28, "AVERAGE_POOL_2D": 40,
    "MAX_POOL_2D": 40, "SOFTMAX": 4, "RESHAPE": 36, "ADD": 8, "SUB": 8, "MUL": 4, "PAD": 0,
    "PADV2": 0, "TRANSPOSE": 0, "MEAN": 4, "SUM": 4, "CONCATENATION": 8, "STRIDED_SLICE": 24,
    "SQUEEZE": 36, "QUANTIZE": 0, "DEQUANTIZE": 0, "LOGISTIC": 0, "TANH": 0, "RELU": 0,
    "RELU6": 0, "LEAKY_RELU": 4, "HARD_SWISH": 0,
}
_DEFAULT_OP_DATA = 64
_DEFAULT_BUILTIN_DATA = 16
_EVAL_TENSOR = 24  # sizeof(TfLiteEvalTensor)
_NODE_AND_REGISTRATION = 64
_TFLITE_TENSOR = 64  # persistent TfLiteTensor for each graph input and output
_QUANT_STRUCT = 24  # TfLiteAffineQuantization
_ALLOCATORS = 488  # allocator objects, planner, SubgraphAllocations: fixed per interpreter
_SCRATCH_HANDLE = 8  # one ScratchBufferHandle (a pointer) per scratch request


def estimate_tail(model: Model, requests: Sequence[ScratchRequest] = (),
                  offline: list[int] | None = None) -> dict[str, int]:
    """An ESTIMATE of TFLM's persistent "Arena allocation tail", by kind, plus ``total``.

    The head (the planned activations) is exact; the tail depends on kernel implementation
    details (OpData struct sizes, pointer width, alignment padding) that the model does not
    carry, so it is estimated from per-operator sizes measured on the x86-64 tflite-micro wheel.
    On the eight sample models the estimate is within 0-40 bytes of TFLM's tail (the alignment
    padding between persistent buffers is approximated). A 32-bit MCU build has 4-byte pointers
    and so a smaller tail; CMSIS-NN/Xtensa kernels allocate different OpData.
    """
    sg0 = model.main
    n_tensors = sum(len(sg.tensors) for sg in model.subgraphs)
    n_ops = sum(len(sg.operators) for sg in model.subgraphs)
    persistent_structs: list[int] = []  # kernel OpData
    persistent_arrays: list[int] = []  # per-channel multipliers/shifts, lookup tables
    builtin = 0
    unknown = set()
    for sg in model.subgraphs:
        for op in sg.operators:
            name = op.op_name
            if name not in _OP_DATA_BYTES:
                unknown.add(name)
            od = _OP_DATA_BYTES.get(name, _DEFAULT_OP_DATA)
            if od:
                persistent_structs.append(od)
            builtin += _BUILTIN_DATA_BYTES.get(name, _DEFAULT_BUILTIN_DATA)
            w = sg.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") or (
                    name == "FULLY_CONNECTED" and w is not None and w.quantization is not None
                    and w.quantization.per_channel):
                out = sg.tensors[op.outputs[0]]
                if out.type_name in ("INT8", "INT16") and out.shape:
                    persistent_arrays += [4 * out.shape[-1]] * 2
            if name == "SOFTMAX" and sg.tensors[op.inputs[0]].type_name == "INT16":
                persistent_arrays += [2 * 513] * 2  # exp and 1/(1+x) lookup tables
    io = list(sg0.inputs) + list(sg0.outputs)
    quant = 0
    for t in io:
        q = sg0.tensors[t].quantization
        if q is not None:
            quant += _QUANT_STRUCT + align_up(4 + 4 * q.zero_points.size, 8)
    pointer_arrays = [8 * len(sg0.inputs), 8 * len(sg0.outputs)]
    variables = 0
    flat = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_variable and (offline is None or offline[flat] == ONLINE):
                variables += align_up(t.nbytes)
            flat += 1
    # Persistent buffers are carved from the tail with 16-byte alignment: count each one's
    # rounding up to 16 as lost (the true loss depends on the order of all tail allocations).
    persistent = persistent_structs + persistent_arrays + pointer_arrays
    padding = sum(align_up(x) - x for x in persistent)
    est = {
        "eval_tensors": _EVAL_TENSOR * n_tensors,
        "node_and_registration": _NODE_AND_REGISTRATION * n_ops,
        "io_tensor_structs": _TFLITE_TENSOR * len(io),
        "io_quantization": quant,
        "kernel_op_data": sum(persistent_structs),
        "per_channel_and_tables": sum(persistent_arrays),
        "io_pointer_arrays": sum(pointer_arrays),
        "alignment_padding": padding,
        "builtin_options": builtin,
        "scratch_handles": _SCRATCH_HANDLE * len(requests),
        "variable_tensors": variables,
        "allocators_fixed": _ALLOCATORS + 16 * (len(model.subgraphs) - 1),
    }
    est["total"] = sum(est.values())
    if unknown:
        est["unmeasured_ops"] = len(unknown)  # kinds of op priced at the default size
    return est


# ====================================================================== writing an offline plan
_MODEL_FIELDS = 8  # version, operator_codes, subgraphs, description, buffers, metadata_buffer,
# metadata, signature_defs: the Model table fields this writer knows (schema 3)
_F_VERSION, _F_BUFFERS, _F_METADATA = 0, 4, 6


class _FbReader:
    """Just enough raw flatbuffer reading to re-point the root Model table."""

    def __init__(self, data: bytes):
        self.d = data

    def u32(self, pos: int) -> int:
        if pos < 0 or pos + 4 > len(self.d):
            raise ModelError(f"malformed flatbuffer: offset {pos} is outside the {len(self.d)}-byte file")
        return struct.unpack_from("<I", self.d, pos)[0]

    def fields(self, table: int) -> dict[int, int]:
        """Field index -> absolute position of the field's value, for the fields present."""
        vt = table - struct.unpack_from("<i", self.d, table)[0]
        if vt < 0 or vt + 4 > len(self.d):
            raise ModelError("malformed flatbuffer: vtable outside the file")
        vt_size = struct.unpack_from("<H", self.d, vt)[0]
        out = {}
        for k in range((vt_size - 4) // 2):
            fo = struct.unpack_from("<H", self.d, vt + 4 + 2 * k)[0]
            if fo:
                out[k] = table + fo
        return out

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, field_pos: int) -> list[int]:
        """Absolute positions of the tables a vector-of-tables field points to."""
        v = self.deref(field_pos)
        n = self.u32(v)
        if v + 4 + 4 * n > len(self.d):
            raise ModelError("malformed flatbuffer: vector runs past the end of the file")
        return [self.deref(v + 4 + 4 * i) for i in range(n)]

    def string(self, field_pos: int) -> bytes:
        s = self.deref(field_pos)
        n = self.u32(s)
        return self.d[s + 4:s + 4 + n]


class _Layout:
    """Append-only byte layout with forward uoffset fix-ups resolved at the end."""

    def __init__(self):
        self.b = bytearray()
        self.fixups: list[tuple[int, Any]] = []  # (position of a uoffset, target label)
        self.labels: dict[Any, int] = {}

    def align(self, n: int, phase: int = 0):
        while (len(self.b) - phase) % n:
            self.b.append(0)

    def mark(self, label) -> int:
        self.labels[label] = len(self.b)
        return len(self.b)

    def u16(self, v):
        self.b += struct.pack("<H", v)

    def u32(self, v):
        self.b += struct.pack("<I", v)

    def i32(self, v):
        self.b += struct.pack("<i", v)

    def ref(self, label):
        self.fixups.append((len(self.b), label))
        self.u32(0)

    def resolve(self, external: dict[Any, int]) -> bytes:
        for pos, label in self.fixups:
            target = self.labels[label] if label in self.labels else external[label]
            if target <= pos:
                raise AssertionError("flatbuffer uoffsets must point forward")
            struct.pack_into("<I", self.b, pos, target - pos)
        return bytes(self.b)


def offline_plan_words(model: Model, offsets_by_tensor: Mapping[Any, int]) -> list[int]:
    """The int32 words of an ``OfflineMemoryAllocation`` buffer: [1, 0, N, offsets...]."""
    base = _subgraph_offsets(model)
    total = sum(len(sg.tensors) for sg in model.subgraphs)
    words = [ONLINE] * total
    for key, off in offsets_by_tensor.items():
        if isinstance(key, str):
            raise ValueError(f"{key!r}: only tensors can be planned offline; TFLM always plans "
                             f"scratch buffers online")
        s, t = key if isinstance(key, tuple) else (0, key)
        if not (0 <= s < len(model.subgraphs) and 0 <= t < len(model.subgraphs[s].tensors)):
            raise ValueError(f"no tensor {key!r} in the model")
        off = int(off)
        if not 0 <= off < 2 ** 31:
            raise ValueError(f"tensor {key!r}: offset {off} is not a valid arena offset")
        words[base[s] + t] = off
    return [1, 0, total] + words


def write_offline_plan(model_bytes: bytes | bytearray | memoryview, offsets_by_tensor: Mapping[Any, int]) -> bytes:
    """A copy of the model whose ``OfflineMemoryAllocation`` metadata pins these tensor offsets.

    ``offsets_by_tensor``: tensor index (subgraph 0) or (subgraph, index) -> byte offset in the
    arena's head; every other tensor is written as -1 (planned online). TFLM uses the offsets
    exactly as given (no alignment) and still plans scratch buffers online around them.

    The file is rewritten without re-serialising it: a new root Model table, new buffers and
    metadata vectors and the new metadata buffer are put in front of the original bytes, which
    follow unchanged, 16-byte aligned (flatbuffer offsets point forward and are relative, so
    every old table stays valid). An existing OfflineMemoryAllocation entry is dropped.
    """
    data = bytes(model_bytes)
    model = load_model(data)
    payload = struct.pack(f"<{3 + sum(len(sg.tensors) for sg in model.subgraphs)}i",
                          *offline_plan_words(model, offsets_by_tensor))
    fb = _FbReader(data)
    root = fb.u32(0)
    fields = fb.fields(root)
    unknown = [k for k in fields if k >= _MODEL_FIELDS]
    if unknown:
        raise ModelError(f"the Model table has fields {unknown} this writer does not know")
    old_buffers = fb.vector(fields[_F_BUFFERS]) if _F_BUFFERS in fields else []
    for k, b in enumerate(old_buffers):
        bf = fb.fields(b)
        for f in (1, 2):  # Buffer.offset / Buffer.size: data addressed from the file start
            if f in bf and struct.unpack_from("<Q", data, bf[f])[0] > 1:
                raise ModelError(f"buffer {k} keeps its data outside the flatbuffer (a >2 GB model); "
                                 f"its offsets would move: not supported")
    if not old_buffers:
        raise ModelError("the model has no buffers vector (a valid model has at least buffer 0)")
    old_meta = fb.vector(fields[_F_METADATA]) if _F_METADATA in fields else []
    keep_meta = []
    for m in old_meta:
        mf = fb.fields(m)
        name = fb.string(mf[0]) if 0 in mf else b""
        if name != OFFLINE_METADATA.encode():
            keep_meta.append(m)
    new_buffer_index = len(old_buffers)

    out = _Layout()
    out.ref("model")  # root offset
    out.b += b"TFL3"
    # Model: vtable then table. Fields keep their slots; buffers and metadata are new vectors.
    present = sorted(set(fields) | {_F_BUFFERS, _F_METADATA})
    n_slots = present[-1] + 1
    out.align(2)
    vt = out.mark("model_vt")
    out.u16(4 + 2 * n_slots)
    out.u16(4 + 4 * len(present))
    for k in range(n_slots):
        out.u16(4 + 4 * present.index(k) if k in present else 0)
    out.align(4)
    table = out.mark("model")
    out.i32(table - vt)
    for k in present:
        if k == _F_VERSION:
            out.u32(fb.u32(fields[k]))
        elif k == _F_BUFFERS:
            out.ref("buffers")
        elif k == _F_METADATA:
            out.ref("metadata")
        else:
            out.ref(("old", fb.deref(fields[k])))
    out.mark("buffers")
    out.u32(len(old_buffers) + 1)
    for b in old_buffers:
        out.ref(("old", b))
    out.ref("new_buffer")
    out.mark("metadata")
    out.u32(len(keep_meta) + 1)
    for m in keep_meta:
        out.ref(("old", m))
    out.ref("new_metadata")
    # Metadata { name: string; buffer: uint }
    vt = out.mark("meta_vt")
    out.u16(8), out.u16(12), out.u16(4), out.u16(8)
    t = out.mark("new_metadata")
    out.i32(t - vt)
    out.ref("name")
    out.u32(new_buffer_index)
    # Buffer { data: [ubyte] }
    vt = out.mark("buf_vt")
    out.u16(6), out.u16(8), out.u16(4)
    out.align(4)
    t = out.mark("new_buffer")
    out.i32(t - vt)
    out.ref("payload")
    out.mark("name")
    name = OFFLINE_METADATA.encode()
    out.u32(len(name))
    out.b += name + b"\0"
    out.align(16, phase=12)  # the vector's bytes (after its length) start 16-aligned
    out.mark("payload")
    out.u32(len(payload))
    out.b += payload
    out.align(16)
    shift = len(out.b)
    external = {}
    for _, label in out.fixups:
        if isinstance(label, tuple) and label[0] == "old":
            external[label] = shift + label[1]
    return out.resolve(external) + data


def write_improved_model(model_bytes: bytes, plan: ArenaPlan | None = None) -> bytes:
    """The model rewritten to carry ``plan.improved`` as its offline plan (unchanged if greedy
    could not be beaten)."""
    if plan is None:
        plan = plan_arena(load_model(bytes(model_bytes)))
    imp = plan.improved
    if not imp.tensor_offsets:
        return bytes(model_bytes)
    return write_offline_plan(model_bytes, imp.tensor_offsets)


# ====================================================================== reports
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
        where = (f"operator {plan.peak_op} ({plan.timeline[[s.time for s in plan.timeline].index(plan.peak_time)].op_name})"
                 if plan.peak_op is not None else f"scope {plan.peak_time}")
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

    row("Head (TFLM's greedy plan, exact):", f"{plan.arena_bytes:,}",
        f"bytes ({len(plan.buffers)} buffers{'; offline plan in model' if plan.offline_planned else ''})")
    row("Lower bound (peak live bytes):", f"{plan.lower_bound:,}", "bytes")
    if improved:
        imp = plan.improved
        row(f"Improved plan ({'optimal' if imp.optimal else 'best found'}):", f"{imp.arena_bytes:,}",
            f"bytes ({imp.saved_bytes:,} saved; {imp.method})")
    tail = plan.tail_estimate
    row("Tail (persistent, ESTIMATE):", f"~{tail['total']:,}", "bytes")
    row("Arena needed (head + est. tail):", f"~{plan.required_bytes:,}", "bytes")
    lines.append(f"RAM budget {plan.budget_bytes:,} bytes: {_verdict(plan.required_bytes, plan.budget_bytes)}"
                 + ("" if plan.fits or not plan.head_fits else " (the head alone fits)"))
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
        "tail_estimate": dict(plan.tail_estimate),
        "tail_is_estimate": True,
        "required_bytes_estimate": plan.required_bytes,
        "fits": plan.fits,
        "head_fits": plan.head_fits,
        "spare_bytes": plan.spare_bytes,
        "flash_bytes": plan.flash_bytes,
        "weight_bytes": plan.weight_bytes,
        "flash_budget_bytes": plan.flash_budget_bytes,
        "flash_fits": plan.flash_fits,
        "offline_planned": plan.offline_planned,
        "exact": plan.exact,
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
