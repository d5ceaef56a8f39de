"""Check a .tflite file before microref reads it, and the parsed model before anything is allocated.

A conformance oracle is fed whatever a converter produced, broken files included, so every
defect must become a one-line ``ModelError`` saying what is wrong and where, never a traceback,
a hang or a huge allocation. Two stages:

``verify_flatbuffer(buf, name)`` (before the parser touches the bytes)
    Walks the flatbuffer against the TFLite schema the way ``flatbuffers::Verifier`` walks it
    for the C++ runtime (``VerifyModelBuffer``), and a little more strictly: the file identifier
    and root offset; every table's vtable (in the file, 2-byte aligned, even size >= 4) and
    every field (offset inside the table's own inline size, scalars aligned to their size);
    every offset (non-zero, positive, landing inside the file, aligned); every vector's and
    string's length against the bytes left (before anything iterates over it) and each
    string's NUL terminator; the nesting depth; and the total number of bytes the parser will
    read, counting an object once per reference, so that shared or cyclic offsets cannot
    turn a small file into unbounded work.

``check_model(model)`` (after parsing, before any kernel or arena exists)
    Per-tensor element counts and per-subgraph activation bytes against the limits below;
    the quantization arrays TFLM's kernels read (``quantization_readers``: finite, positive
    scales where a kernel reads the scale of an integer tensor; per-channel scale counts matching
    the quantized dimension of the filters TFLM reads per channel — arrays no kernel reads are
    left alone, as TFLM leaves them); the bytes every operator reads and writes; and the memory
    the model will need (``memory_estimate``) against the memory budget.

``read_model_file(path)`` (before any byte is read)
    Only a regular file is read (a FIFO would block, ``/dev/zero`` never ends), at most
    ``MAX_MEMORY_BYTES`` of it, and only after its first eight bytes carry the TFLite file
    identifier (a sparse or foreign multi-gigabyte file is refused without reading it).

The memory budget
    ``MAX_MEMORY_BYTES`` (default 1 GiB) bounds what loading, preparing and running a model
    may need, estimated from the shapes alone before anything is allocated: the file's bytes,
    every non-constant tensor of every subgraph (what TFLM's arena can at most need), and the
    working arrays of the most demanding operator, ``WORK_BYTES_PER_ELEMENT`` bytes for every
    element of its inputs and outputs (kernels widen int8 values to int32, int64 or float64
    while they compute, and some prepare index maps as large as their output; the factor is
    measured on every kernel family with the fuzzers, see tests/mutants.py). A model over the
    budget is refused with a ``ModelError`` that gives the estimate and its parts. (The budget
    is for one sample: a ``run_batch`` of N samples needs up to N times the tensors' part, a
    size the caller chooses.) A 688-byte file can describe a 2^28-element tensor: without a
    budget it takes gigabytes before anything checks it.
    Raise the budget for genuinely large models: ``verify.MAX_MEMORY_BYTES = 8 << 30``, or
    ``with verify.limits(max_memory_bytes=8 << 30): ...`` around loading and running.

The parser itself (``interp.model``) checks tensor, buffer and opcode indices and that buffers
hold what their shapes need; ``interp.model.graph`` checks the data flow (nothing read before
anything wrote it; what TFLM runs with an undefined result is refused with the reason).

The limits are module attributes so a caller can change them (``verify.MAX_TENSOR_ELEMENTS =
...``, or temporarily with ``with verify.limits(max_tensor_elements=...)``); the limits are
process-wide, so change them before loading, not while other threads load models.

The field layout of every table comes from the flatc-generated ``tflite`` package that the
parser reads the file with, so the verifier and the parser cannot disagree about a slot; the
few fields newer than that package are declared below from the schema (schema_generated.h).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import stat
import struct
from dataclasses import dataclass

import numpy as np

from ..errors import ModelError, printable
from .schema import Field, table_fields, union_members

# Refuse a tensor with more elements than this before anything allocates it.
MAX_TENSOR_ELEMENTS = 1 << 28
# Refuse a subgraph whose non-constant tensors together take more bytes than this (an upper
# bound on the arena: TFLM's planner can only do better by overlapping them).
MAX_ACTIVATION_BYTES = 2 << 30
# Refuse a subgraph whose operators together read and write more bytes than this (counting a
# tensor once per operator using it): bounds the memory and time that preparing and running
# can need even when many operators share one large constant.
MAX_OPERAND_BYTES = 16 << 30
# The memory budget (see the module docstring): the estimated bytes a model may need to be
# loaded, prepared and run once. Also the largest model file read.
MAX_MEMORY_BYTES = 1 << 30
# Working bytes an operator's kernel may need per element of its inputs and outputs. Measured
# (tracemalloc, prepare plus one run, 2^20-element tensors; tests/test_hostile.py pins the worst):
# RESIZE_BILINEAR int8 41 bytes per element of its output (its only large operand),
# TRANSPOSE_CONV 37, float EXP/TANH 36 (the C library called element by element), AVERAGE_POOL
# 35, SOFTMAX and LOG_SOFTMAX 51 per output element (26 per operand element), int16 ADD 64 per
# output element (21 per operand element); most kernels need 4 to 20.
WORK_BYTES_PER_ELEMENT = 64
# flatbuffers::Verifier's default nesting limit.
MAX_DEPTH = 64
# The walk may read at most WORK_FACTOR * file size + WORK_SLACK bytes in all. A file whose
# objects are each referenced once needs at most its own size.
WORK_FACTOR = 2
WORK_SLACK = 1 << 16

FILE_IDENTIFIER = b"TFL3"
_FLATBUFFERS_MAX_SIZE = (1 << 31) - 1

# Integer tensor types whose quantization scale takes part in the arithmetic.
_QUANTIZED_TYPES = {"INT4", "INT8", "UINT8", "INT16", "INT32", "INT64", "UINT16", "UINT32"}


@contextlib.contextmanager
def limits(*, max_tensor_elements=None, max_activation_bytes=None, max_operand_bytes=None,
           max_memory_bytes=None):
    """Temporarily change the size limits and the memory budget (for fuzzers, tests, and
    models larger than the defaults allow)."""
    g = globals()
    new = {"MAX_TENSOR_ELEMENTS": max_tensor_elements, "MAX_ACTIVATION_BYTES": max_activation_bytes,
           "MAX_OPERAND_BYTES": max_operand_bytes, "MAX_MEMORY_BYTES": max_memory_bytes}
    old = {k: g[k] for k in new}
    g.update({k: v for k, v in new.items() if v is not None})
    try:
        yield
    finally:
        g.update(old)


# ---------------------------------------------------------------------- the structural walk
@dataclass(frozen=True)
class Location:
    """Where something sits in the file (recorded for the mutation fuzzer)."""

    kind: str  # "root", "soffset", "vtable", "offset", "length", "scalar", "element"
    pos: int
    size: int  # bytes of the value at pos
    path: str  # e.g. "subgraphs[0].tensors[3].shape"
    scalar: str = ""  # "Int32", "Float32", ... for scalars and vector elements


class _Walk:
    def __init__(self, buf: bytes, name: str, record: list[Location] | None):
        self.buf = buf
        self.n = len(buf)
        self.name = name
        self.record = record
        self.work = 0
        self.budget = WORK_FACTOR * self.n + WORK_SLACK

    def fail(self, path: str, message: str):
        raise ModelError(f"{self.name}: malformed flatbuffer at {path or 'the root'}: {message}")

    def u16(self, pos: int) -> int:
        return self.buf[pos] | (self.buf[pos + 1] << 8)

    def u32(self, pos: int) -> int:
        return struct.unpack_from("<I", self.buf, pos)[0]

    def span(self, pos: int, size: int, path: str, what: str):
        if pos < 0:
            self.fail(path, f"{what} at byte {pos} lies before the start of the file")
        if pos + size > self.n:
            self.fail(path, f"{what} (bytes {pos}..{pos + size}) runs past the end of the "
                            f"{self.n}-byte file (truncated?)")

    def aligned(self, pos: int, align: int, path: str, what: str):
        if pos % align:
            self.fail(path, f"{what} at byte {pos} is not {align}-byte aligned")

    def charge(self, nbytes: int, path: str):
        self.work += nbytes
        if self.work > self.budget:
            self.fail(path, f"objects are referenced so often that reading them means more than "
                            f"{self.budget:,} bytes for a {self.n:,}-byte file (shared or cyclic offsets)")

    def note(self, kind: str, pos: int, size: int, path: str, scalar: str = ""):
        if self.record is not None:
            self.record.append(Location(kind, pos, size, path, scalar))

    def follow(self, pos: int, path: str) -> int:
        """The position an unsigned 32-bit offset stored at ``pos`` refers to."""
        if pos < 0 or pos + 4 > self.n:
            self.span(pos, 4, path, "offset")
        if pos & 3:
            self.aligned(pos, 4, path, "offset")
        if self.record is not None:
            self.note("offset", pos, 4, path)
        off = _U32(self.buf, pos)[0]
        if off == 0:
            self.fail(path, "offset is 0")
        if off >= 1 << 31:
            self.fail(path, f"offset {off} is negative as a signed offset")
        if pos + off >= self.n:
            self.fail(path, f"offset {off} at byte {pos} points past the end of the {self.n}-byte file")
        return pos + off

    def vector(self, pos: int, elem: int, path: str, what: str = "vector") -> tuple[int, int]:
        """(position of the first element, element count) of a vector or string at ``pos``."""
        if pos < 0 or pos + 4 > self.n:
            self.span(pos, 4, path, f"{what} length")
        if pos & 3:
            self.aligned(pos, 4, path, f"{what} length")
        if self.record is not None:
            self.note("length", pos, 4, path)
        count = _U32(self.buf, pos)[0]
        if count >= _FLATBUFFERS_MAX_SIZE // elem:
            self.fail(path, f"{what} claims {count:,} elements")
        if pos + 4 + count * elem > self.n:
            self.span(pos + 4, count * elem, path, f"{what} of {count:,} elements")
        self.work += 4 + count * elem
        if self.work > self.budget:
            self.charge(0, path)
        return pos + 4, count

    def string(self, pos: int, path: str):
        start, count = self.vector(pos, 1, path, "string")
        self.span(start + count, 1, path, "string terminator")
        if self.buf[start + count] != 0:
            self.fail(path, f"string of {count} bytes is not NUL-terminated")

    def table(self, pos: int, table: str, path: str, depth: int):
        if depth > MAX_DEPTH:
            self.fail(path, f"tables nest deeper than {MAX_DEPTH} levels")
        buf, n, record = self.buf, self.n, self.record
        if pos < 0 or pos + 4 > n:
            self.span(pos, 4, path, f"{table} table")
        if pos & 3:
            self.aligned(pos, 4, path, f"{table} table")
        if record is not None:
            self.note("soffset", pos, 4, path)
        vtable = pos - _I32(buf, pos)[0]
        if vtable < 0 or vtable + 4 > n:
            self.span(vtable, 4, path, f"{table} vtable")
        if vtable & 1:
            self.aligned(vtable, 2, path, f"{table} vtable")
        vsize, tsize = _U16_PAIR(buf, vtable)
        if record is not None:
            self.note("vtable", vtable, 2, path)
            self.note("vtable", vtable + 2, 2, path)
        if vsize < 4 or vsize % 2:
            self.fail(path, f"{table} vtable size {vsize} is not an even number >= 4")
        if vtable + vsize > n:
            self.span(vtable, vsize, path, f"{table} vtable of {vsize} bytes")
        if tsize < 4:
            self.fail(path, f"{table} table size {tsize} is smaller than its 4-byte vtable offset")
        if pos + tsize > n:
            self.span(pos, tsize, path, f"{table} table of {tsize} bytes")
        self.charge(tsize, path)
        fields, labels, known_end = _table_plan(table)
        if vsize > known_end:
            # Slots past the schema's fields (a newer writer) are only range-checked; they are
            # charged so that a huge vtable shared by many tables cannot mean unbounded work.
            self.charge(vsize - known_end, path)
        count = (vsize - 4) >> 1
        for k, at in enumerate(struct.unpack_from(f"<{count}H", buf, vtable + 4)):
            slot = 4 + 2 * k
            if record is not None:
                self.note("vtable", vtable + slot, 2, path)
            if at == 0:
                continue
            field = fields.get(slot)
            if field is None:
                if at < 4 or at >= tsize:
                    self.fail(f"{path}.<field {slot // 2 - 2}>",
                              f"field offset {at} lies outside the {tsize}-byte {table} table")
                continue  # a field newer than this schema: flatbuffers skips it too
            label = path + labels[slot]
            if at < 4 or at >= tsize:
                self.fail(label, f"field offset {at} lies outside the {tsize}-byte {table} table")
            kind = field.kind
            if kind == "scalar":
                size = field.size
                if at + size > tsize:
                    self.fail(label, f"{size}-byte field at offset {at} runs past the end of the "
                                     f"{tsize}-byte {table} table")
                if (pos + at) % size:
                    self.aligned(pos + at, size, label, "field")
                if record is not None:
                    self.note("scalar", pos + at, size, label, field.scalar)
                continue
            if at + 4 > tsize:
                self.fail(label, f"4-byte field at offset {at} runs past the end of the "
                                 f"{tsize}-byte {table} table")
            self.field(pos + at, field, fields, pos, vtable, vsize, label, depth)

    def field(self, at: int, field: Field, fields, table_pos, vtable, vsize, path, depth):
        kind = field.kind
        if kind == "scalar":
            self.aligned(at, field.size, path, "field")
            self.note("scalar", at, field.size, path, field.scalar)
        elif kind == "string":
            self.string(self.follow(at, path), path)
        elif kind == "table":
            self.table(self.follow(at, path), field.target, path, depth + 1)
        elif kind == "vector":
            start, count = self.vector(self.follow(at, path), field.size, path)
            if self.record is not None and count <= 64:
                for i in range(count):
                    self.note("element", start + i * field.size, field.size, f"{path}[{i}]", field.scalar)
        elif kind == "tables":
            start, count = self.vector(self.follow(at, path), 4, path)
            for i in range(count):
                self.table(self.follow(start + 4 * i, f"{path}[{i}]"), field.target, f"{path}[{i}]", depth + 1)
        elif kind == "union":
            type_slot = field.voffset - 2
            type_at = self.u16(vtable + type_slot) if type_slot < vsize else 0
            utype = self.buf[table_pos + type_at] if type_at else 0
            member = union_members(field.target).get(utype)
            # Like flatbuffers, NONE and types this schema does not know are not walked; the
            # parser rejects an unknown builtin-options type itself.
            if member is not None and table_fields(member) is not None:
                self.table(self.follow(at, path), member, path, depth + 1)


_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_U16_PAIR = struct.Struct("<HH").unpack_from


@functools.cache
def _table_plan(table: str) -> tuple[dict[int, Field], dict[int, str], int]:
    """A table's fields by vtable slot, each one's path suffix ('.shape'), and the end of its
    known slots (the walk's per-table constants)."""
    fields = table_fields(table) or {}
    return fields, {slot: "." + f.label for slot, f in fields.items()}, max(fields, default=2) + 2


def verify_flatbuffer(buf: bytes, name: str = "<bytes>", record: list[Location] | None = None) -> None:
    """Raise ModelError unless ``buf`` is a structurally sound TFLite flatbuffer.

    With ``record`` given, the location of every offset, length, vtable entry and scalar walked
    is appended to it (the mutation fuzzer uses this to aim its mutations).
    """
    check_header(buf, name)
    walk = _Walk(buf, name, record)
    walk.note("root", 0, 4, "")
    root = walk.follow(0, "")
    walk.table(root, "Model", "model", 0)


def check_header(head: bytes, name: str = "<bytes>") -> None:
    """Raise ModelError unless ``head`` (a file's first bytes, at least eight) starts like a
    TFLite flatbuffer: a root offset, then the file identifier "TFL3"."""
    n = len(head)
    if n < 8:
        raise ModelError(f"{name}: only {n} bytes: not a TFLite flatbuffer")
    if head[4:8] != FILE_IDENTIFIER:
        raise ModelError(f"{name}: not a TFLite flatbuffer (file identifier is {bytes(head[4:8])!r}, "
                         f"not {FILE_IDENTIFIER!r})")


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a file that is not regular."""
    return next((kind for test, kind in _FILE_KINDS if test(mode)), "not a regular file")


def read_model_file(path, max_bytes: int | None = None) -> bytes:
    """The bytes of the model file at ``path``, read safely (see the module docstring): refused
    with a ModelError, without reading it, when it is not a regular file, is larger than
    ``max_bytes`` (default ``MAX_MEMORY_BYTES``) or does not start with the TFLite identifier."""
    name = os.fspath(path)
    label = printable(name)
    limit = MAX_MEMORY_BYTES if max_bytes is None else max_bytes
    try:
        st = os.stat(name)
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise ModelError(f"cannot read model {label!r}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"cannot read model {label!r}: it is {file_kind(st.st_mode)}, not a regular file")
    if st.st_size > min(limit, _FLATBUFFERS_MAX_SIZE):
        raise ModelError(f"{label}: {st.st_size:,} bytes is larger than the {min(limit, _FLATBUFFERS_MAX_SIZE):,}-byte "
                         f"limit (interp.verify.MAX_MEMORY_BYTES)")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it must not wait.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ModelError(f"cannot read model {label!r}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ModelError(f"cannot read model {label!r}: it is not a regular file")
            head = f.read(8)
            check_header(head, label)
            # What stat promised and one byte more: a file that grew is caught, and nothing
            # larger than the file is allocated.
            rest = f.read(max(st.st_size - 8, 0) + 1)
        except OSError as e:
            raise ModelError(f"cannot read model {label!r}: {e.strerror or e}") from None
    if len(rest) > max(st.st_size - 8, 0):
        raise ModelError(f"cannot read model {label!r}: it grew while it was read")
    return head + rest


# ------------------------------------------------------------------------- semantic checks
def tensor_elements(shape) -> int:
    """Element count of a shape in exact integer arithmetic (no int64 wrap-around)."""
    return math.prod(int(d) for d in shape)


def check_shape(shape, where: str, name: str = "<bytes>") -> int:
    """Refuse negative dimensions and element counts over MAX_TENSOR_ELEMENTS; return the count."""
    if any(int(d) < 0 for d in shape):
        raise ModelError(f"{name}: {where} has a negative dimension in shape {list(shape)}")
    count = tensor_elements(shape)
    if count > MAX_TENSOR_ELEMENTS:
        raise ModelError(f"{name}: {where} has shape {list(shape)} = {count:,} elements, more than the "
                         f"limit of {MAX_TENSOR_ELEMENTS:,} (interp.verify.MAX_TENSOR_ELEMENTS)")
    return count


def _tensor_where(s: int, t) -> str:
    return f'subgraph {s}, tensor {t.index} "{printable(t.name)}"'


# Which operands' quantization TFLM's kernels read (quantization_readers). Each entry is checked
# against the wheel by mutating the scale (0, negative, NaN, inf) in tests/test_run_what_tflm_runs.py
# (the data-movement kernels, MAXIMUM/MINIMUM, ARG_MAX, SELECT_V2, the convolutions' bias) and
# tests/test_run_what_tflm_runs_model.py (the biases of every convolution and of a per-channel
# FULLY_CONNECTED): TFLM runs those models and gives the unmutated model's values.
#
# Operators whose kernels read no scale of any operand (they move, compare or select values).
SCALE_FREE_OPERATORS = frozenset({
    "ARG_MAX", "BATCH_TO_SPACE_ND", "BROADCAST_TO", "DEPTH_TO_SPACE", "DYNAMIC_UPDATE_SLICE", "EXPAND_DIMS",
    "GATHER", "GATHER_ND", "MAXIMUM", "MINIMUM", "MIRROR_PAD", "PACK", "PAD", "RESHAPE", "RESIZE_BILINEAR",
    "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2", "SELECT_V2", "SLICE", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH",
    "SPLIT", "SPLIT_V", "SQUEEZE", "STRIDED_SLICE", "TRANSPOSE", "UNPACK", "ZEROS_LIKE",
})
# Inputs whose scale other kernels never read: a convolution's bias (TFLM's int8 and int16
# convolutions derive their multipliers from the input and filter scales; only uint8 compared
# the bias scale with them). FULLY_CONNECTED's bias joins them when its weights are per channel
# (a per-tensor FULLY_CONNECTED checks the bias scale against input x weights scale).
UNREAD_SCALE_INPUTS = {"CONV_2D": (2,), "DEPTHWISE_CONV_2D": (2,), "TRANSPOSE_CONV": (3,)}
# Inputs TFLM reads per channel when they carry more than one scale (every scale, and
# filter->dims->data[quantized_dimension]); every other operand is read per tensor (scale[0] and
# zero_point[0]) if at all.
PER_CHANNEL_INPUTS = {"CONV_2D": (1,), "DEPTHWISE_CONV_2D": (1,), "TRANSPOSE_CONV": (1,), "FULLY_CONNECTED": (1,)}


@dataclass(frozen=True)
class QuantizationReaders:
    """Per subgraph: the tensors some kernel reads the scale of, and those read per channel."""

    scales: frozenset[int]  # tensor indices whose scale (scale[0], or every scale if per channel) is read
    per_channel: frozenset[int]  # tensor indices read per channel (when they have several scales)


def quantization_readers(sg) -> QuantizationReaders:
    """Which tensors of subgraph ``sg`` TFLM's kernels read the quantization of: every operand
    of every operator except those of SCALE_FREE_OPERATORS and UNREAD_SCALE_INPUTS (and a
    FULLY_CONNECTED bias beside per-channel weights). A tensor no operator uses is read by none."""
    scales: set[int] = set()
    per_channel: set[int] = set()
    for op in sg.operators:
        if op.op_name in SCALE_FREE_OPERATORS:
            continue
        unread = set(UNREAD_SCALE_INPUTS.get(op.op_name, ()))
        if op.op_name == "FULLY_CONNECTED" and len(op.inputs) > 2 and 0 <= op.inputs[1] < len(sg.tensors):
            wq = sg.tensors[op.inputs[1]].quantization
            if wq is not None and wq.scales.size > 1:
                unread.add(2)
        channel_positions = PER_CHANNEL_INPUTS.get(op.op_name, ())
        for position, t in enumerate(op.inputs):
            if t >= 0 and position not in unread:
                scales.add(t)
                if position in channel_positions:
                    per_channel.add(t)
        scales.update(op.outputs)
    return QuantizationReaders(frozenset(scales), frozenset(per_channel))


def check_quantization(t, s: int, name: str = "<bytes>") -> None:
    """Scales finite and positive on an integer tensor (one whose scales a kernel reads)."""
    q = t.quantization
    if q is None or t.type_name not in _QUANTIZED_TYPES:
        return
    scales = q.scales
    if scales.size == 1 and 0.0 < float(scales[0]) < math.inf:
        return  # the common case, without the array passes below
    where = _tensor_where(s, t)
    bad = ~np.isfinite(scales) | (scales <= 0)
    # An all-zero scale on an int32/int64 tensor (indices, shapes, some biases) means "not
    # quantized": TFLM's kernels never read it. On narrower types every kernel uses the scale.
    if bad.any() and not (t.type_name in ("INT32", "INT64") and not scales.any()):
        i = int(np.argmax(bad))
        raise ModelError(f"{name}: {where}: quantization scale {float(scales[i])!r} (entry {i} of {scales.size}) "
                         f"must be finite and positive")


def check_per_channel(t, s: int, name: str = "<bytes>") -> None:
    """Per-channel scale counts matching their quantized dimension, on a tensor TFLM reads per
    channel (PER_CHANNEL_INPUTS): TFLM compares the count with filter->dims->data[quantized_dimension],
    which a negative or too large dimension reads outside the shape (undefined)."""
    q = t.quantization
    if q is None or q.scales.size <= 1:
        return
    where = _tensor_where(s, t)
    qd, rank = q.quantized_dimension, len(t.shape)
    if qd < 0:
        raise ModelError(f"{name}: {where}: quantized_dimension {qd} is negative")
    if qd < rank:
        if t.shape[qd] != q.scales.size:
            raise ModelError(f"{name}: {where}: {q.scales.size} per-channel scales, but dimension {qd} "
                             f"of shape {list(t.shape)} has {t.shape[qd]} channels")
    elif not (rank == 1 and t.shape[0] == q.scales.size):
        # Converters write a 1-D bias with its filter's quantized_dimension (3 for depthwise).
        raise ModelError(f"{name}: {where}: quantized_dimension {qd} is not a dimension of "
                         f"shape {list(t.shape)}")


def quantization_notes(model) -> list[str]:
    """One line per quantization array TFLM never reads and that would be refused if a kernel read
    it (a scale that is not finite and positive, per-channel scales that do not fit the quantized
    dimension): the model runs, but its file says something no kernel uses (for ``microref info``)."""
    notes = []
    for sg in model.subgraphs:
        readers = quantization_readers(sg)
        for t in sg.tensors:
            q = t.quantization
            if q is None or t.type_name not in _QUANTIZED_TYPES:
                continue
            where = _tensor_where(sg.index, t)
            if t.index not in readers.scales:
                bad = ~np.isfinite(q.scales) | (q.scales <= 0)
                if bad.any() and not (t.type_name in ("INT32", "INT64") and not q.scales.any()):
                    notes.append(f"{where}: quantization scale {float(q.scales[int(np.argmax(bad))])!r} is never "
                                 f"read by TFLM's kernels (ignored)")
            if q.scales.size > 1 and t.index not in readers.per_channel:
                notes.append(f"{where}: {q.scales.size} scales, read per tensor (scale[0] and zero_point[0]) "
                             f"by every kernel that reads them")
    return notes


def _first_scale(t):
    """``t`` as a kernel reading its quantization per tensor sees it: scale[0] and zero_point[0]."""
    q = t.quantization
    if q is None or q.scales.size <= 1:
        return t
    return dataclasses.replace(t, quantization=dataclasses.replace(q, scales=q.scales[:1],
                                                                  zero_points=q.zero_points[:1]))


def check_model(model) -> None:
    """The semantic checks that need the parsed model (see the module docstring)."""
    name = model.source
    for sg in model.subgraphs:
        s = sg.index
        activation_bytes = 0
        readers = quantization_readers(sg)
        for t in sg.tensors:
            if any(d < 0 for d in t.shape) or tensor_elements(t.shape) > MAX_TENSOR_ELEMENTS:
                check_shape(t.shape, _tensor_where(s, t), name)  # raises, saying where
            if t.index in readers.per_channel:
                check_per_channel(t, s, name)
                check_quantization(t, s, name)
            elif t.index in readers.scales:
                check_quantization(_first_scale(t), s, name)
            if t.data is None:
                activation_bytes += t.nbytes
        if activation_bytes > MAX_ACTIVATION_BYTES:
            raise ModelError(f"{name}: subgraph {s}: its non-constant tensors take {activation_bytes:,} "
                             f"bytes, more than the limit of {MAX_ACTIVATION_BYTES:,} "
                             f"(interp.verify.MAX_ACTIVATION_BYTES)")
        operand_bytes = 0
        for op in sg.operators:
            for i in op.inputs + op.outputs:
                if i >= 0:
                    operand_bytes += sg.tensors[i].nbytes
        if operand_bytes > MAX_OPERAND_BYTES:
            raise ModelError(f"{name}: subgraph {s}: its operators read and write {operand_bytes:,} "
                             f"bytes in all, more than the limit of {MAX_OPERAND_BYTES:,} "
                             f"(interp.verify.MAX_OPERAND_BYTES)")
    check_memory(model)


@dataclass(frozen=True)
class MemoryEstimate:
    """What a model needs in memory, estimated from its shapes (see the module docstring)."""

    file_bytes: int  # the model file, held while the model lives (constants are views of it)
    activation_bytes: int  # every non-constant tensor of every subgraph, one sample (variables twice)
    work_bytes: int  # the working arrays of the most demanding operator, one sample
    worst_op: str  # that operator, e.g. 'subgraph 0, operator 3 (ADD)'

    @property
    def per_sample(self) -> int:
        """Bytes each sample of a run needs (run() is one sample; run_batch N)."""
        return self.activation_bytes + self.work_bytes

    def total(self, samples: int = 1) -> int:
        return self.file_bytes + samples * self.per_sample

    def describe(self, samples: int = 1) -> str:
        per = "" if samples == 1 else f" for {samples:,} samples"
        return (f"an estimated {self.total(samples):,} bytes{per} (the file {self.file_bytes:,}, tensors "
                f"{samples * self.activation_bytes:,}, working arrays of {self.worst_op} "
                f"{samples * self.work_bytes:,})")


def memory_estimate(model) -> MemoryEstimate:
    """The memory ``model`` needs to be prepared and run on one sample, from its shapes alone."""
    activation = 0
    work, worst = 0, "no operator"
    for sg in model.subgraphs:
        elements = [tensor_elements(t.shape) for t in sg.tensors]
        for t, count in zip(sg.tensors, elements):
            if t.data is None:
                # A variable's value is kept between calls and copied for the next one.
                activation += count * t.element_bytes * (2 if t.is_variable else 1)
        for op in sg.operators:
            operands = {i for i in op.inputs + op.outputs if 0 <= i < len(elements)}
            need = WORK_BYTES_PER_ELEMENT * sum(elements[i] for i in operands)
            if need > work:
                work = need
                graph = "" if sg.index == 0 else f"subgraph {sg.index}, "
                worst = f"{graph}operator {op.index} ({printable(op.display_name)})"
    return MemoryEstimate(int(model.file_bytes), activation, work, worst)


def check_memory(model) -> MemoryEstimate:
    """Refuse a model whose ``memory_estimate`` exceeds MAX_MEMORY_BYTES; return the estimate."""
    estimate = memory_estimate(model)
    if estimate.total() > MAX_MEMORY_BYTES:
        raise ModelError(f"{model.source}: the model needs {estimate.describe()}, more than the memory "
                         f"budget of {MAX_MEMORY_BYTES:,} bytes (interp.verify.MAX_MEMORY_BYTES; raise it "
                         f"with verify.limits(max_memory_bytes=...) for a model this large)")
    return estimate


def unsupported_version(op, kernel_cls) -> str | None:
    """Why ``kernel_cls`` cannot run ``op``'s version, or None when it can.

    A kernel declares the newest operator version it implements as ``max_version``; a kernel
    that declares none accepts every version.
    """
    newest = getattr(kernel_cls, "max_version", None)
    if newest is not None and op.version > newest:
        return f"version {op.version} is newer than the version {newest} microref implements"
    return None
