"""Writing an offline plan into a model: ``OfflineMemoryAllocation`` metadata TFLM uses as given.

The file is rewritten without re-serialising it: a new root Model table, new buffers and metadata
vectors and the new metadata buffer are put in front of the original bytes, which follow
unchanged, 16-byte aligned (flatbuffer offsets point forward and are relative, so every old table
stays valid).
"""
from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from ..errors import ModelError
from ..model import Model, load_model
from .lifetimes import OFFLINE_METADATA, ONLINE, subgraph_offsets
from .plan import ArenaPlan, plan_arena

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
    base = subgraph_offsets(model)
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
    exactly as given (no alignment) and still plans scratch buffers online around them. An
    existing OfflineMemoryAllocation entry is replaced.
    """
    model = load_model(bytes(model_bytes))
    words = offline_plan_words(model, offsets_by_tensor)
    return write_model_metadata(model_bytes, OFFLINE_METADATA, struct.pack(f"<{len(words)}i", *words))


def write_model_metadata(model_bytes: bytes | bytearray | memoryview, name: str, payload: bytes) -> bytes:
    """A copy of the model with one metadata entry ``name`` holding ``payload`` (any bytes, stored
    16-byte aligned in a new buffer); an existing entry of that name is replaced, every other
    part of the file is kept byte for byte. (Tests use it to write malformed offline plans too.)
    """
    data = bytes(model_bytes)
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
        name_of = fb.string(mf[0]) if 0 in mf else b""
        if name_of != name.encode():
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
    encoded = name.encode()
    out.u32(len(encoded))
    out.b += encoded + b"\0"
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
