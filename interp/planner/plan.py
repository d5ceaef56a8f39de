"""The arena plan of one model: ``plan_arena`` and the ``ArenaPlan`` it returns."""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..model import Model, load_model
from .abi import MCU32, WHEEL
from .checks import offline_plan_problems, raise_offline_problems, variables_overwritten
from .greedy import arena_extent, greedy_offsets, live_profile
from .lifetimes import PlannedBuffer, check_order, collect_buffers, mark_lifetimes, read_offline_offsets
from .persistent import model_allocations
from .scratch import (
    POINTER_SIZED_SCRATCH,
    ScratchRequest,
    UnknownScratch,
    model_scratch_requests,
    normalise_scratch,
)
from .tail import ArenaRequirement, arena_requirement

DEFAULT_BUDGET = 256 * 1024
DEFAULT_FLASH_BUDGET = 1024 * 1024


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
    """TFLM's arena plan for one model; ``arena_bytes`` is its "Arena allocation head".

    When some operator's scratch requests are unknown (``unknown_scratch``: an operator without a
    microref kernel whose TFLM kernel requests scratch), ``exact`` is False and ``arena_bytes`` is
    the head without those buffers: a lower bound.
    """

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
    # TFLM's persistent tail and smallest working arena, replayed exactly for the x86-64 wheel
    # (``tail``) and derived by the same rules for a 32-bit MCU build (``tail_32bit``).
    tail: ArenaRequirement
    tail_32bit: ArenaRequirement
    flash_bytes: int
    weight_bytes: int
    flash_budget_bytes: int
    offline_planned: bool  # the model carries OfflineMemoryAllocation metadata
    exact: bool  # every scratch request is known: arena_bytes is TFLM's head to the byte
    notes: list[str] = field(default_factory=list)
    unknown_scratch: list[UnknownScratch] = field(default_factory=list)
    # Buffer id pairs an offline plan overlaps by design (the operands of an NPU operator).
    shared_pairs: set[tuple[int, int]] = field(default_factory=set)
    # What the improvers and checkers need to re-plan; not part of the report.
    model: Model | None = field(default=None, repr=False, compare=False)
    scratch_requests: list[ScratchRequest] = field(default_factory=list, repr=False, compare=False)
    scope_owner: dict[int, tuple[int, int | None]] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ derived numbers
    @property
    def tail_bytes(self) -> dict[str, int]:
        """The wheel's persistent tail by kind, plus ``total`` (TFLM's "Arena allocation tail")."""
        return {**self.tail.parts, "total": self.tail.tail_bytes}

    @property
    def tail_estimate(self) -> dict[str, int]:
        """Old name of ``tail_bytes`` (the tail is no longer an estimate)."""
        return self.tail_bytes

    @property
    def required_bytes(self) -> int:
        """The arena size to give TFLM (the wheel): the smallest ``arena_size`` with which its
        ``AllocateTensors`` succeeds (``tail.minimum_arena``; ``tail.exact`` says if it is exact)."""
        return self.tail.minimum_arena

    @property
    def fits(self) -> bool:
        """Whether the arena TFLM needs (``required_bytes``) fits in ``budget_bytes``."""
        return self.required_bytes <= self.budget_bytes

    @property
    def head_fits(self) -> bool:
        return self.arena_bytes <= self.budget_bytes

    @property
    def spare_bytes(self) -> int:
        """Budget left after the arena TFLM needs (negative: over budget)."""
        return self.budget_bytes - self.required_bytes

    @property
    def flash_fits(self) -> bool:
        return self.flash_bytes <= self.flash_budget_bytes

    @property
    def greedy_waste(self) -> int:
        return self.arena_bytes - self.lower_bound

    @functools.cached_property
    def improved(self) -> ImprovedPlan:
        """A better offset assignment than TFLM's greedy one (never worse); see ``improve_plan``."""
        from .improve import improve_plan  # the improver is built on this module
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
    shared_pairs: set[tuple[int, int]] = field(default_factory=set)

    @property
    def saved_bytes(self) -> int:
        return self.greedy_arena_bytes - self.arena_bytes


def _kernel_scratch(interpreter) -> dict[tuple[int, int], list[int]]:
    """(subgraph, operator) -> the scratch requests its prepared kernel recorded."""
    per_subgraph = getattr(interpreter, "subgraph_kernels", None) or [interpreter.kernels]
    return {(s, i): list(getattr(k, "scratch_bytes", None) or [])
            for s, kernels in enumerate(per_subgraph) for i, k in enumerate(kernels) if k is not None}


def _kernel_persistent(interpreter) -> dict[tuple[int, int], list]:
    """(subgraph, operator) -> the persistent buffers its prepared kernel declared (``persistent_bytes``)."""
    per_subgraph = getattr(interpreter, "subgraph_kernels", None) or [interpreter.kernels]
    return {(s, i): list(k.persistent_bytes)
            for s, kernels in enumerate(per_subgraph) for i, k in enumerate(kernels)
            if k is not None and getattr(k, "persistent_bytes", None) is not None}


def resolve_model(obj) -> tuple[Model, dict[tuple[int, int], list[int]] | None]:
    """(model, its prepared kernels' scratch requests or None) for an Interpreter, a Model, a path
    or the bytes of a model."""
    if isinstance(obj, Model):
        return obj, None
    if isinstance(obj, (str, bytes, bytearray, memoryview)) or hasattr(obj, "__fspath__"):
        return load_model(obj), None
    return obj.model, _kernel_scratch(obj)  # the kernels' Prepare recorded their requests


def scratch_for(model: Model, scratch, kernel_scratch) -> tuple[list[ScratchRequest], list[UnknownScratch]]:
    """The requests ``scratch`` gives (see ``normalise_scratch``), else those of the prepared
    kernels with the other operators sized by ``model_scratch_requests``."""
    if scratch is None and kernel_scratch is not None:
        return model_scratch_requests(model, kernel_scratch)
    return normalise_scratch(model, scratch)


def plan_arena(interpreter_or_model, budget_bytes: int = DEFAULT_BUDGET,
               flash_budget_bytes: int = DEFAULT_FLASH_BUDGET, *, scratch=None,
               order: Sequence[int] | None = None) -> ArenaPlan:
    """The arena plan TFLM makes for a model.

    ``interpreter_or_model``: an ``Interpreter`` (its prepared kernels give the scratch requests),
    a ``Model``, or a path / the bytes of a .tflite file. A model needs no Interpreter: operators
    microref cannot execute are planned too (their tensors' lifetimes are all the plan needs), and
    an operator whose scratch requests cannot be sized is listed in ``unknown_scratch``.
    ``scratch`` overrides the scratch requests (see ``normalise_scratch``). ``order``: plan as if
    subgraph 0's operators ran in this order (see ``search_operator_orders``).

    Raises ModelError for what TFLM refuses, and for an ``OfflineMemoryAllocation`` that cannot be
    trusted (``check_offline_plan``).
    """
    model, kernel_scratch = resolve_model(interpreter_or_model)
    requests, unknown = scratch_for(model, scratch, kernel_scratch)
    if order is not None:
        check_order(model, order)
    persistent = None if kernel_scratch is None else _kernel_persistent(interpreter_or_model)
    return build_plan(model, requests, budget_bytes, flash_budget_bytes, order, unknown, persistent)


def build_plan(model: Model, requests: list[ScratchRequest], budget_bytes: int = DEFAULT_BUDGET,
               flash_budget_bytes: int = DEFAULT_FLASH_BUDGET, order=None,
               unknown: Sequence[UnknownScratch] = (), kernel_persistent=None) -> ArenaPlan:
    """The plan for these scratch requests (in TFLM's call order), without re-deriving them.

    ``kernel_persistent``: (subgraph, op) -> a prepared kernel's ``persistent_bytes``."""
    offline = read_offline_offsets(model)
    life = mark_lifetimes(model, requests, order)
    buffers = collect_buffers(model, requests, life, offline)
    problems, shared = offline_plan_problems(model, buffers, life.scope_owner)
    raise_offline_problems(problems)
    sizes = [b.size for b in buffers]
    offs = greedy_offsets(sizes, [b.first for b in buffers], [b.last for b in buffers],
                          [b.offline_offset for b in buffers])
    for b, o in zip(buffers, offs):
        b.offset = o
    arena = arena_extent(offs, sizes)

    prof = live_profile(buffers, merge_pinned=bool(shared))
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
    if unknown:
        ops = ", ".join(f"{u.op_name} (operator {u.op}{'' if u.subgraph == 0 else f' of subgraph {u.subgraph}'})"
                        for u in unknown)
        notes.append(f"scratch sizes unknown for {ops}: {unknown[0].reason}; the head is a lower bound, "
                     f"TFLM needs those scratch buffers on top")
    if order is not None and list(order) != list(range(len(model.main.operators))):
        notes.append("planned for a reordered operator sequence, not the stored one")
    if shared:
        notes.append(f"the offline plan overlaps {len(shared)} pair(s) of tensors by design: " + shared[0][2])
    notes += variables_overwritten(model, buffers)
    pointer_ops = sorted({model.subgraphs[r.subgraph].operators[r.op].display_name for r in requests}
                         & POINTER_SIZED_SCRATCH)
    if pointer_ops:
        notes.append(f"{', '.join(pointer_ops)} request pointer-sized scratch: sized for a 64-bit host "
                     f"(as the tflite-micro wheel); a 32-bit MCU build asks for 4 bytes per pointer there")
    allocations = model_allocations(model, kernel_persistent)
    tails = [arena_requirement(model, allocations, requests, arena, len(buffers), offline, build)
             for build in (WHEEL, MCU32)]
    if not tails[0].exact:
        notes.append("persistent allocations unknown for " + "; ".join(tails[0].unknown)
                     + ": the tail and the arena needed are lower bounds")
    return ArenaPlan(
        model_name=model.source, arena_bytes=arena, buffers=buffers,
        offsets={b.key: b.offset for b in buffers},
        lifetimes={b.key: (b.first, b.last) for b in buffers},
        timeline=timeline, peak_time=peak.time if peak else None,
        peak_op=peak.op if peak else None, live_at_peak=list(peak.live) if peak else [],
        lower_bound=lower, budget_bytes=budget_bytes, tail=tails[0], tail_32bit=tails[1],
        flash_bytes=model.file_bytes, weight_bytes=model.weight_bytes,
        flash_budget_bytes=flash_budget_bytes, offline_planned=offline is not None,
        exact=not unknown, notes=notes, unknown_scratch=list(unknown),
        shared_pairs={(a, b) for a, b, _ in shared}, model=model, scratch_requests=list(requests),
        scope_owner=dict(life.scope_owner))


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
    model = model or getattr(plan, "model", None)
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
