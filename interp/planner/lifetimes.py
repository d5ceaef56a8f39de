"""What TFLM plans, and when each buffer is live: ``AllocationInfoBuilder`` reproduced.

* ``read_offline_offsets``: the ``OfflineMemoryAllocation`` metadata (``GetOfflinePlannedOffsets``).
* ``mark_lifetimes``: ``MarkAllocationLifetimes`` from subgraph 0, entering the subgraphs that
  IF / WHILE / CALL_ONCE run (one extra scope each, where the control-flow operator is visited).
* ``check_order``: whether another operator order for subgraph 0 respects the data flow.
* ``collect_buffers``: ``InitializeAllocationInfo`` + ``CreatePlan``: which tensors need arena
  bytes (not constant, not variable, not empty; an offline-planned variable does), each size
  rounded up to 16, then every scratch request; in TFLM's ``AddBuffer`` order.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ModelError
from ..model import Model
from .scratch import ScratchRequest

ARENA_ALIGNMENT = 16  # MicroArenaBufferAlignment(): every planned size is rounded up to this
OFFLINE_METADATA = "OfflineMemoryAllocation"
ONLINE = -1  # an offline-plan entry meaning "let the online planner place this tensor"

# Operators that run other subgraphs, and the option fields naming them, in TFLM's visiting order
# (MarkSubgraphLifetimesIfNecessary).
CONTROL_FLOW_SUBGRAPHS = {
    "IF": ("then_subgraph_index", "else_subgraph_index"),
    "WHILE": ("cond_subgraph_index", "body_subgraph_index"),
    "CALL_ONCE": ("init_subgraph_index",),
}


def align_up(n: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return (n + alignment - 1) // alignment * alignment


def subgraph_offsets(model: Model) -> list[int]:
    """Where each subgraph's tensors start in TFLM's flat tensor numbering (all subgraphs in a row)."""
    offsets, n = [], 0
    for sg in model.subgraphs:
        offsets.append(n)
        n += len(sg.tensors)
    return offsets


def read_offline_offsets(model: Model) -> list[int] | None:
    """The ``OfflineMemoryAllocation`` metadata's per-tensor offsets (flattened over subgraphs).

    Layout: int32 words ``[version, subgraph, N, offset_0 ... offset_{N-1}]``; -1 means "plan this
    tensor online". TFLM rejects the model when N is not the total tensor count. The offsets are
    returned as stored; ``check_offline_plan`` judges them.
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


@dataclass
class Lifetimes:
    """Every tensor's and scratch request's [first, last] allocation scope (-1: never marked)."""

    tensor_first: list[int]  # flattened over subgraphs (see subgraph_offsets)
    tensor_last: list[int]
    scratch_first: list[int]  # one per scratch request, in request order
    scratch_last: list[int]
    scope_owner: dict[int, tuple[int, int | None]]  # scope -> (subgraph, operator or None)
    final_scope: int


def mark_lifetimes(model: Model, requests: Sequence[ScratchRequest],
                   order: Sequence[int] | None = None) -> Lifetimes:
    """TFLM's AllocationInfoBuilder::MarkAllocationLifetimes, from subgraph 0.

    A scope counter starts at 0 with subgraph 0's inputs (first and last use there). Each operator
    takes the next scope: its outputs are created there; a control-flow operator then enters each
    subgraph it runs (one more scope each, recursively, so the called subgraph's buffers live
    inside the caller's operator); its inputs and outputs are last used at the scope reached after
    that, and its scratch buffers live from its own scope to that one. A subgraph's outputs are
    created (if not yet) and last used at its final scope. A subgraph called twice is marked twice
    (first uses stay, last uses move on). ``order`` (subgraph 0 only) visits the operators in
    another order, as if the model stored them so.
    """
    base = subgraph_offsets(model)
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
        if s in active:  # TFLM would recurse until its stack overflows
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
                owner[scope] = (int(child), None)
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
    return Lifetimes(first, last, sfirst, slast, owner, scope)


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
            where = f"op {self.op}" if self.subgraph == 0 else f"subgraph {self.subgraph} op {self.op}"
            return f"scratch:{self.request} ({where})"
        prefix = f"t{self.tensor}" if self.subgraph == 0 else f"s{self.subgraph}:t{self.tensor}"
        return f"{prefix} {self.name}" if self.name else prefix

    @property
    def end(self) -> int:
        return self.offset + self.size

    def live_at(self, t: int) -> bool:
        return self.first <= t <= self.last

    def overlaps_in_time(self, other: PlannedBuffer) -> bool:
        return not (other.first > self.last or self.first > other.last)

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "name": self.name, "subgraph": self.subgraph,
                "tensor": self.tensor, "op": self.op, "request": self.request,
                "nbytes": self.nbytes, "size": self.size, "first": self.first, "last": self.last,
                "offset": self.offset, "offline_offset": self.offline_offset}


def collect_buffers(model: Model, requests: Sequence[ScratchRequest], life: Lifetimes,
                    offline: list[int] | None) -> list[PlannedBuffer]:
    """The buffers TFLM gives its planner, in AddBuffer order (tensors by flat index, then scratch).

    A tensor is planned when it has no data in the flatbuffer, is not variable and has a nonzero
    size; a variable tensor goes to the persistent tail (``AllocateVariables``) unless the
    offline plan gives it an offset, which puts it in the head. A VAR_HANDLE's output is never
    planned: its Prepare points it at the kernel's persistent data before the planner runs, and
    TFLM plans only tensors whose data is still null. Non-empty intermediate tensors are refused,
    as TFLM's ``ValidateSubgraph`` does.
    """
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
        handles = {t for op in sg.operators if op.op_name == "VAR_HANDLE" for t in op.outputs}
        for t in sg.tensors:
            off = offline[flat] if offline is not None else ONLINE
            needs = (not t.is_constant) and (not t.is_variable) and t.nbytes != 0 and t.index not in handles
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


# Operators whose effects reach beyond their tensors (resource variables, other subgraphs): they
# keep their relative order.
ORDERED_OPERATORS = frozenset(CONTROL_FLOW_SUBGRAPHS) | {"VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE"}


def check_order(model: Model, order: Sequence[int]) -> None:
    """Raise ValueError unless ``order`` runs every operator of subgraph 0 once, after what it needs."""
    sg = model.main
    if sorted(order) != list(range(len(sg.operators))):
        raise ValueError("order must list every operator of subgraph 0 exactly once")
    deps = operator_dependencies(model)
    pos = {op: k for k, op in enumerate(order)}
    for op, ds in enumerate(deps):
        for d in ds:
            if pos[d] > pos[op]:
                raise ValueError(f"order runs operator {op} before operator {d}, which it must follow "
                                 f"(it reads its output, or both use the same variable tensor)")


def operator_dependencies(model: Model) -> list[set[int]]:
    """For each operator of subgraph 0, the operators that must run before it: the latest earlier
    writer of each tensor it reads (a tensor may be written more than once), for each tensor it
    writes the earlier writer and the readers since (so no reorder changes what anyone reads), the
    earlier users of a variable tensor it uses (its value carries over), and the previous
    operator with effects beyond its tensors (``ORDERED_OPERATORS``)."""
    sg = model.main
    deps: list[set[int]] = [set() for _ in sg.operators]
    last_writer: dict[int, int] = {}
    readers_since_write: dict[int, list[int]] = {}
    for op in sg.operators:
        mine = deps[op.index]
        for t in op.inputs:
            if t >= 0 and t in last_writer:
                mine.add(last_writer[t])
        for t in op.outputs:
            if t in last_writer:
                mine.add(last_writer[t])
            mine.update(readers_since_write.get(t, ()))
        for t in op.inputs:
            if t >= 0:
                readers_since_write.setdefault(t, []).append(op.index)
        for t in op.outputs:
            last_writer[t] = op.index
            readers_since_write[t] = []
        mine.discard(op.index)
    last_user: dict[int, int] = {}
    last_ordered = None
    for op in sg.operators:
        for t in set(op.inputs) | set(op.outputs):
            if t >= 0 and sg.tensors[t].is_variable:
                if t in last_user:
                    deps[op.index].add(last_user[t])
                last_user[t] = op.index
        if op.op_name in ORDERED_OPERATORS:
            if last_ordered is not None:
                deps[op.index].add(last_ordered)
            last_ordered = op.index
    return deps
