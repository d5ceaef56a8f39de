"""TFLM's persistent tail and the smallest arena its ``AllocateTensors`` accepts, replayed exactly.

TFLM's arena (``SingleArenaBufferAllocator``) has a head growing up from the start (the planned
activations and scratch buffers; during Prepare the scratch-request array and the kernels'
temporary TfLiteTensors above it) and a tail growing down from the end (everything persistent).
Every allocation is checked against the other end at the moment it is made, so the smallest
arena is not simply head + tail: a kernel's temporaries during Prepare, or the planner's working
arrays, can need more room than the final layout. ``arena_requirement`` replays, in TFLM's
order, every allocation the tflite-micro Python interpreter makes while it is constructed
(``RecordingMicroAllocator::Create``, ``MicroResourceVariables::Create``, ``AllocateTensors``:
``StartModelAllocation``, the builtin-option parsers, every kernel's Init, every kernel's
Prepare with its temporaries, ``FinishModelAllocation`` / ``CommitStaticMemoryPlan``, the
persistent TfLiteTensors of the graph inputs and outputs) with the sizes and alignments of one
``Build`` (``abi.WHEEL``: the x86-64 wheel, ``abi.MCU32``: a 32-bit MCU build, derived from the
same rules), and finds the smallest arena size for which every check passes.

What each kernel allocates comes from ``persistent.py``: the op's builtin-options struct, the
temporary tensors its Prepare reads, and its ``AllocatePersistentBuffer`` calls, which microref's
kernels declare in ``persistent_bytes`` (set in prepare, like ``scratch_bytes``).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..model import Model
from . import persistent
from .abi import WHEEL, Build
from .lifetimes import ARENA_ALIGNMENT, ONLINE
from .scratch import ScratchRequest

MAX_SCRATCH_BUFFERS_PER_OP = 12  # kMaxScratchBuffersPerOp (micro_allocator.cc)
# RecordingMicroAllocator's categories (print_allocations), in its print order.
PERSISTENT_BUFFER = "Persistent buffer data"
IO_QUANT = "Persistent TfLiteTensor quantization data"
RECORDED = ("TfLiteEvalTensor data", "Persistent TfLiteTensor data", IO_QUANT, PERSISTENT_BUFFER,
            "TfLiteTensor variable buffer data", "NodeAndRegistration struct")
_BIG = 1 << 48  # a 16-aligned arena size far larger than any model needs
_OVERLAP_WINDOW = 64  # how far below the bound a buffer over dead temporary bytes is looked for


@dataclass
class ArenaRequirement:
    """What TFLM's ``AllocateTensors`` needs for one model in one build.

    ``tail_bytes``: the persistent tail after ``AllocateTensors`` ("Arena allocation tail" of
    ``print_allocations`` for an arena size that is a multiple of 16), broken down in ``parts``.
    ``minimum_arena``: the smallest ``arena_size`` with which TFLM allocates the model (its head
    included); ``binding`` says which step sets it. ``exact`` is False when some operator's
    allocations are unknown (``unknown``): the figures are then lower bounds.
    """

    build: Build
    head_bytes: int
    tail_bytes: int
    minimum_arena: int
    binding: str
    parts: dict[str, int]
    # RecordingMicroAllocator's records: category -> (requested bytes, used bytes, count).
    records: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    exact: bool = True
    unknown: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """head + tail: what ``print_allocations`` calls "Arena allocation total"."""
        return self.head_bytes + self.tail_bytes

    def to_json(self) -> dict:
        return {"build": self.build.name, "pointer_bytes": self.build.pointer_bytes,
                "head_bytes": self.head_bytes, "tail_bytes": self.tail_bytes,
                "minimum_arena": self.minimum_arena, "binding": self.binding, "parts": dict(self.parts),
                "exact": self.exact, "unknown": list(self.unknown)}


class _Arena:
    """``SingleArenaBufferAllocator``'s pointers for an arena of size ``size`` starting at 0 (the
    wheel's ``new uint8_t[]`` is 16-aligned), recording the slack of every check."""

    def __init__(self, size: int, overlap: str = "bound"):
        self.size = size
        # How a persistent buffer made while temporaries are live is checked: "bound" (it may not
        # reach below the end of the last live temporary byte: linear in the arena size), or
        # "exact" (its written bytes may not hit a live temporary byte; evaluated for one size).
        self.overlap = overlap
        self.live_ranges: list[tuple[int, int]] = []
        self.head = 0
        self.temp = 0
        self.live = 0  # the end of the temporary bytes still read later
        self.tail = size
        self.slack: list[tuple[int, str]] = []
        self.parts: dict[str, int] = {}
        self.records: dict[str, list[int]] = {}  # RecordingMicroAllocator: [requested, used, count]

    def persistent(self, nbytes: int, align: int, part: str, what: str, record: str | None = None,
                   count: int = 1) -> None:
        new_tail = (self.tail - nbytes) // align * align
        # TFLM checks a persistent buffer against the head only: one made in Prepare may overlap
        # the kernel's temporaries; the arena works as long as it overwrites none of their bytes
        # that are read again (``self.live``, see temp_tensor).
        if self.overlap == "bound":
            self.slack.append((new_tail - max(self.head, self.live), what))
        else:
            hit = any(lo < new_tail + nbytes and new_tail < hi for lo, hi in self.live_ranges)
            self.slack.append((-1 if hit or new_tail < self.head else 0, what))
        self.parts[part] = self.parts.get(part, 0) + self.tail - new_tail
        if record:
            r = self.records.setdefault(record, [0, 0, 0])
            r[0] += nbytes
            r[1] += self.tail - new_tail
            r[2] += count
        self.tail = new_tail

    def temp_alloc(self, nbytes: int, align: int, what: str, live: tuple[int, int] | None = None) -> int:
        """Allocate temp bytes; ``live``: the (offset, end) of those read again (default all)."""
        start = -(-self.temp // align) * align
        self.slack.append((self.tail - (start + nbytes), what))
        self.temp = start + nbytes
        lo, hi = live if live is not None else (0, nbytes)
        if hi > lo:
            self.live_ranges.append((start + lo, start + hi))
            self.live = start + hi
        return start

    def reset_temp(self) -> None:
        self.temp = self.live = self.head
        self.live_ranges = []

    def resize_head(self, nbytes: int, what: str) -> None:
        self.slack.append((self.tail - nbytes, what))
        self.head = self.temp = self.live = nbytes
        self.live_ranges = []

    def planner(self, n_buffers: int, per_buffer: int, what: str) -> None:
        # CommitStaticMemoryPlan gives the planner GetAvailableMemory(16) bytes of temp memory;
        # the greedy planner fits (bytes / per_buffer) buffers in it.
        a = ARENA_ALIGNMENT
        available = self.tail // a * a - (-(-self.temp // a) * a)
        self.slack.append((available - n_buffers * per_buffer, what))
        self.temp = -(-self.temp // a) * a + max(available, 0)


def _greedy_per_buffer(build: Build) -> int:
    # GreedyMemoryPlanner::per_buffer_size(): requirements, two sorted int arrays, a list entry, offsets.
    return build.sizeof("GreedyBufferRequirements") + 4 + 4 + build.sizeof("GreedyListEntry") + 4


def resource_variable_count(model: Model) -> int:
    """tflite_micro's ``count_resource_variables``: the distinct VAR_HANDLE shared names."""
    names = {op.options.get("shared_name") for sg in model.subgraphs for op in sg.operators
             if op.op_name == "VAR_HANDLE"}
    return len(names)


def _replay(model: Model, size: int, build: Build, ops: Mapping[tuple[int, int], persistent.OpAllocations],
            requests: Sequence[ScratchRequest], head_bytes: int, n_planned: int,
            offline: list[int] | None, overlap: str = "bound") -> _Arena:
    a = _Arena(size, overlap)
    s = build.sizeof
    al = build.alignof

    def struct(name: str, part: str, count: int = 1, what: str | None = None, record: str | None = None,
               record_count: int = 1):
        a.persistent(s(name) * count, al(name), part, what or name, record, record_count)

    # RecordingMicroAllocator::Create, then MicroResourceVariables::Create (the Python wrapper).
    struct("RecordingSingleArenaBufferAllocator", "allocators")
    struct("GreedyMemoryPlanner", "allocators")
    struct("RecordingMicroAllocator", "allocators")
    n_resources = resource_variable_count(model)
    if n_resources:
        a.persistent(s("MicroResourceVariables"), ARENA_ALIGNMENT, "resource_variables", "MicroResourceVariables",
                     PERSISTENT_BUFFER)
        a.persistent(s("MicroResourceVariable") * n_resources, ARENA_ALIGNMENT, "resource_variables",
                     "MicroResourceVariable array", PERSISTENT_BUFFER)
    # StartModelAllocation.
    struct("MicroBuiltinDataAllocator", "allocators")
    request_bytes = s("ScratchBufferRequest")
    a.resize_head(request_bytes * MAX_SCRATCH_BUFFERS_PER_OP, "scratch-request array")
    struct("SubgraphAllocations", "allocators", len(model.subgraphs))
    for sg in model.subgraphs:
        struct("TfLiteEvalTensor", "eval_tensors", len(sg.tensors), f"TfLiteEvalTensors of subgraph {sg.index}",
               "TfLiteEvalTensor data", len(sg.tensors))
    for sg in model.subgraphs:
        struct("NodeAndRegistration", "node_and_registration", len(sg.operators),
               f"NodeAndRegistrations of subgraph {sg.index}", "NodeAndRegistration struct", len(sg.operators))
    # PrepareNodeAndRegistrationDataFromFlatbuffer: the builtin-option parsers.
    for sg in model.subgraphs:
        for op in sg.operators:
            name = ops[(sg.index, op.index)].builtin_struct
            if name:
                struct(name, "builtin_options", what=f"{name} of operator {op.index} ({op.display_name})")
    # InitSubgraphs.
    for sg in model.subgraphs:
        for op in sg.operators:
            for nbytes in ops[(sg.index, op.index)].init_bytes(build):
                a.persistent(nbytes, ARENA_ALIGNMENT, "kernel_persistent",
                             f"Init of operator {op.index} ({op.display_name})", PERSISTENT_BUFFER)
    # PrepareSubgraphs: temporaries in the head, persistent buffers in the tail, then the
    # scratch-request array grows to hold 12 more requests.
    count = 0
    per_op = {}
    for r in requests:
        per_op[(r.subgraph, r.op)] = per_op.get((r.subgraph, r.op), 0) + 1
    tensor_struct = s("TfLiteTensor")
    tensor_live = build.layout("TfLiteTensor")[2]
    for sg in model.subgraphs:
        for op in sg.operators:
            where = f"Prepare of operator {op.index} ({op.display_name})"
            if sg.index:
                where += f" of subgraph {sg.index}"
            for kind, value in ops[(sg.index, op.index)].prepare_events(build):
                if kind == "temp":
                    # A temporary TfLiteTensor (its tail padding is never read), then for a
                    # quantized tensor its TfLiteAffineQuantization, of which the kernel reads
                    # the zero-point pointer again (DeallocateTempTfLiteTensor) and an input's
                    # scale pointer (per-channel scales), and a zero-point array (not read again).
                    t = sg.tensors[value]
                    a.temp_alloc(tensor_struct, al("TfLiteTensor"), where, (0, tensor_live))
                    if t.quantization is not None:
                        ptr = build.pointer_bytes
                        first = ptr if value in op.outputs else 0
                        a.temp_alloc(s("TfLiteAffineQuantization"), al("TfLiteAffineQuantization"), where,
                                     (first, 2 * ptr))
                        a.temp_alloc(4 + 4 * t.quantization.scales.size, 4, where, (0, 0))
                else:
                    a.persistent(value, ARENA_ALIGNMENT, "kernel_persistent", where, PERSISTENT_BUFFER)
            count += per_op.get((sg.index, op.index), 0)
            a.reset_temp()
            a.resize_head(request_bytes * (count + MAX_SCRATCH_BUFFERS_PER_OP), f"{where}: scratch requests")
    # FinishModelAllocation.
    if count:
        struct("ScratchBufferHandle", "scratch_handles", count, "ScratchBufferHandles")
    planning = "planning (CommitStaticMemoryPlan)"
    a.temp_alloc(build.pointer_bytes * len(model.subgraphs), build.pointer_bytes, planning)
    n_tensors = sum(len(sg.tensors) for sg in model.subgraphs)
    a.temp_alloc(s("AllocationInfo") * (n_tensors + count), al("AllocationInfo"), planning)
    flat = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_variable and (offline is None or offline[flat] == ONLINE):
                a.persistent(t.size * t.element_bytes, ARENA_ALIGNMENT, "variable_tensors",
                             f"variable tensor {t.index} of subgraph {sg.index}", "TfLiteTensor variable buffer data")
            flat += 1
    a.planner(n_planned, _greedy_per_buffer(build), planning)
    a.reset_temp()
    a.resize_head(0, planning)
    a.resize_head(head_bytes, "the planned head (activations and scratch buffers)")
    # The persistent TfLiteTensors of the graph inputs and outputs (MicroInterpreter::AllocateTensors).
    sg0 = model.main
    for label, indices in (("input", sg0.inputs), ("output", sg0.outputs)):
        a.persistent(build.pointer_bytes * len(indices), ARENA_ALIGNMENT, "io_tensors", f"{label} tensor pointers",
                     PERSISTENT_BUFFER)
        for ti in indices:
            struct("TfLiteTensor", "io_tensors", what=f"{label} TfLiteTensor", record="Persistent TfLiteTensor data")
            q = sg0.tensors[ti].quantization
            if q is not None:
                struct("TfLiteAffineQuantization", "io_tensors", what=f"{label} quantization", record=IO_QUANT)
                a.persistent(4 + 4 * q.scales.size, 4, "io_tensors", f"{label} zero points", IO_QUANT)
    return a


def arena_requirement(model: Model, ops: Mapping[tuple[int, int], persistent.OpAllocations],
                      requests: Sequence[ScratchRequest], head_bytes: int, n_planned: int,
                      offline: list[int] | None = None, build: Build = WHEEL) -> ArenaRequirement:
    """Replay TFLM's allocations (module doc) and find the smallest arena that passes every check.

    ``ops``: every operator's allocations (``persistent.model_allocations``); ``requests``: the
    scratch requests in call order; ``head_bytes``: the planned head; ``n_planned``: the number of
    buffers given to the planner.
    """
    args = (build, ops, requests, head_bytes, n_planned, offline)
    best = None
    for residue in range(ARENA_ALIGNMENT):
        a = _replay(model, _BIG + residue, *args)
        slack, what = min(a.slack, key=lambda x: x[0])
        n = a.size - ARENA_ALIGNMENT * (slack // ARENA_ALIGNMENT)
        if best is None or n < best[0]:
            best = (n, what)
        if residue == 0:
            tail = a.size - a.tail
            parts = dict(a.parts)
            records = {k: tuple(a.records[k]) for k in RECORDED if k in a.records}
    # The bound above keeps every persistent buffer made in Prepare clear of the last live
    # temporary byte; TFLM only needs it to leave the live bytes unwritten (a buffer may sit over
    # a zero-point array or padding). Look below the bound for the smallest size that works.
    for n in range(max(best[0] - _OVERLAP_WINDOW, 0), best[0]):
        a = _replay(model, n, *args, overlap="exact")
        if min(x[0] for x in a.slack) >= 0:
            best = (n, best[1] + ", a persistent buffer over dead temporary bytes")
            break
    unknown = [f"{o.op_name} (operator {o.op}{'' if o.subgraph == 0 else f' of subgraph {o.subgraph}'}): {o.unknown}"
               for o in ops.values() if o.unknown]
    return ArenaRequirement(build=build, head_bytes=head_bytes, tail_bytes=tail, minimum_arena=best[0],
                            binding=best[1], parts=parts, records=records, exact=not unknown,
                            unknown=unknown)
