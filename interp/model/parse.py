"""Parse a .tflite flatbuffer into plain, typed dataclasses.

Everything past this module works on these dataclasses; no other module touches flatbuffer
accessors. The parser reads defensively: any inconsistency in the file becomes a one-line
``ModelError`` instead of a traceback from deep inside the flatbuffers library.
"""
from __future__ import annotations

import enum
import functools
import importlib
import math
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MicrorefError, ModelError
from . import verify
from .schema import table_fields

# Refuse absurd models before allocating anything for them.
MAX_MODEL_BYTES = 1 << 31
MAX_SUBGRAPHS = 64
MAX_RANK = 8

# TensorType enum value -> (name, numpy dtype or None when no array can hold it, bytes per element)
TENSOR_TYPES = {
    0: ("FLOAT32", np.dtype(np.float32), 4),
    1: ("FLOAT16", np.dtype(np.float16), 2),
    2: ("INT32", np.dtype(np.int32), 4),
    3: ("UINT8", np.dtype(np.uint8), 1),
    4: ("INT64", np.dtype(np.int64), 8),
    5: ("STRING", None, 1),
    6: ("BOOL", np.dtype(np.bool_), 1),
    7: ("INT16", np.dtype(np.int16), 2),
    8: ("COMPLEX64", np.dtype(np.complex64), 8),
    9: ("INT8", np.dtype(np.int8), 1),
    10: ("FLOAT64", np.dtype(np.float64), 8),
    11: ("COMPLEX128", np.dtype(np.complex128), 16),
    12: ("UINT64", np.dtype(np.uint64), 8),
    13: ("RESOURCE", None, 1),
    14: ("VARIANT", None, 1),
    15: ("UINT32", np.dtype(np.uint32), 4),
    16: ("UINT16", np.dtype(np.uint16), 2),
    # TFLM's arena counts int4 at one byte per element; its values are unpacked to int8.
    17: ("INT4", np.dtype(np.int8), 1),
    18: ("BFLOAT16", None, 2),
}


def _enum_names(module_name: str) -> dict[int, str]:
    cls = getattr(importlib.import_module(f"tflite.{module_name}"), module_name)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


BUILTIN_OPERATOR_NAMES = _enum_names("BuiltinOperator")
BUILTIN_OPTIONS_NAMES = _enum_names("BuiltinOptions")
BUILTIN_OPTIONS2_NAMES = _enum_names("BuiltinOptions2")


class OptionEnum(enum.IntEnum):
    """The value of an enum-typed operator option (``padding``, ``fused_activation_function``…).

    It is the schema's number — equal to it, hashed like it, usable wherever kernels compare or
    index with the int — and prints as the schema's name: ``{'padding': SAME,
    'fused_activation_function': RELU, ...}``. A number the schema does not name stays a plain int.
    """

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return self.name if not spec else int.__format__(int(self), spec)


class OptionEnums:
    """Namespace of the OptionEnum classes (one per schema enum), so that pickle finds them."""


# Options fields whose values are a schema enum (each field name belongs to one enum).
OPTION_FIELD_ENUMS = {
    "padding": "Padding",
    "fused_activation_function": "ActivationFunctionType",
    "weights_format": "FullyConnectedOptionsWeightsFormat",
    "quantized_bias_type": "TensorType", "output_type": "TensorType", "out_type": "TensorType",
    "in_data_type": "TensorType", "out_data_type": "TensorType", "idx_out_type": "TensorType",
    "mode": "MirrorPadMode", "kernel_type": "LSTMKernelType", "type": "LSHProjectionType",
    "combiner": "CombinerType", "reduce_function": "ReduceWindowFunction", "algorithm": "RngAlgorithm",
    "comparison_direction": "StablehloComparisonDirection",
    "compare_type": "StablehloComparisonType",
}


def _option_enum(enum_name: str) -> type[OptionEnum]:
    cls = getattr(OptionEnums, enum_name, None)
    if cls is None:
        members = sorted(((name, value) for value, name in _enum_names(enum_name).items()), key=lambda m: m[1])
        cls = OptionEnum(enum_name, members, module=__name__, qualname=f"OptionEnums.{enum_name}")
        setattr(OptionEnums, enum_name, cls)
    return cls


def option_value(field_name: str, value):
    """An options field's value as ``Operator.options`` holds it: enum fields as OptionEnum."""
    enum_name = OPTION_FIELD_ENUMS.get(field_name)
    if enum_name is None or isinstance(value, bool) or not isinstance(value, int):
        return value
    try:
        return _option_enum(enum_name)(value)
    except ValueError:
        return value  # a number the schema does not name: kept as it is


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per channel."""

    scales: np.ndarray  # float32, shape (n,)
    zero_points: np.ndarray  # int64, shape (n,)
    quantized_dimension: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scales.size > 1

    @property
    def scale(self) -> float:
        """The first (per-tensor) scale, as the float32 the file stores, widened exactly."""
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0]) if self.zero_points.size else 0

    def __repr__(self):
        if self.per_channel:
            return f"Quantization({self.scales.size} channels on dim {self.quantized_dimension})"
        return f"Quantization(scale={self.scale:.6g}, zero_point={self.zero_point})"


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    type_name: str  # "INT8", "FLOAT32", ...
    dtype: np.dtype | None  # numpy dtype of its values (INT4 values are held as int8)
    element_bytes: int  # bytes per element in TFLM's arena
    quantization: Quantization | None
    data: np.ndarray | None  # constant values (read-only), None for activations
    data_bytes: int  # bytes this tensor's data takes in the flatbuffer (flash)
    is_variable: bool = False
    buffer_index: int = 0
    shape_signature: tuple[int, ...] | None = None
    # Its buffer keeps the bytes outside the flatbuffer (Buffer.offset/size, the >2 GB layout),
    # which the pinned TFLM does not read: the tensor is then no constant (data is None).
    data_outside_flatbuffer: bool = False
    # A tensor of no elements that has no data, that an operator of its subgraph reads (or the
    # subgraph returns) and that none writes (not an input, not a variable), e.g. the [4, 0] input
    # weights of an LSTM whose input has size 0: TFLM gives it no bytes (it is not a constant there:
    # IsConstantTensor is false), so its value is the empty array, which ``data`` holds. Kernels
    # that demand a constant in TFLM refuse it (graph.CONSTANT_INPUTS).
    empty_without_buffer: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes TFLM's planner needs for this tensor before its 16-byte rounding."""
        return self.size * self.element_bytes

    def __repr__(self):
        return f"Tensor({self.index}, {self.name!r}, {self.type_name}{list(self.shape)})"


@dataclass
class Operator:
    index: int
    op_name: str  # "CONV_2D", or "CUSTOM" (see custom_code)
    version: int
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # builtin options, snake_case keys
    options_type: str = "NONE"
    custom_code: str | None = None
    custom_options: bytes = b""
    intermediates: tuple[int, ...] = ()
    opcode_index: int = 0

    @property
    def display_name(self) -> str:
        return self.custom_code if self.op_name == "CUSTOM" and self.custom_code else self.op_name


@dataclass
class Subgraph:
    index: int
    name: str
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SignatureDef:
    """A named entry point (the converter writes "serving_default"): inputs and outputs by the
    names of the original function's arguments and results."""

    key: str
    subgraph_index: int
    inputs: dict[str, int]  # signature input name -> tensor index in that subgraph, in file order
    outputs: dict[str, int]


@dataclass
class Model:
    version: int
    description: str
    subgraphs: list[Subgraph]
    metadata: dict[str, bytes]
    file_bytes: int  # size of the flatbuffer
    source: str = "<bytes>"
    signatures: list[SignatureDef] = field(default_factory=list)

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def weight_bytes(self) -> int:
        return sum(t.data_bytes for sg in self.subgraphs for t in sg.tensors if t.data is not None)


def load_model(source: str | os.PathLike | bytes | bytearray | memoryview) -> Model:
    """Read a model from a path or from the bytes of a .tflite file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    else:
        name = os.fspath(source)
        # Regular files only, refused before reading when too large or not a TFLite file.
        data = verify.read_model_file(name, min(MAX_MODEL_BYTES, verify.MAX_MEMORY_BYTES))
    try:
        return _Parser(data, name).parse()
    except MicrorefError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            AttributeError, MemoryError, RecursionError) as e:
        # The verifier bounds-checks what the parser reads; these remain for what it does not
        # walk (options tables of a type the schema lacks, read through the generated class).
        raise ModelError(f"{name}: malformed flatbuffer ({type(e).__name__}: {e})") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()

# --------------------------------------------------------------------------- reading the bytes
# The parser reads the flatbuffer directly, one struct unpack per value, at the vtable slots that
# interp.model.schema derives from the generated ``tflite`` accessors (the same table the verifier
# walks, so the two cannot disagree): verify_flatbuffer has bounds-checked every offset, vector
# and string read here. Reading through the generated accessors costs a vtable lookup and several
# calls per field, most of the time a one-operator model takes to load.
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_I64 = struct.Struct("<q").unpack_from
_STRUCT_CODES = {"Bool": "?", "Uint8": "B", "Int8": "b", "Uint16": "H", "Int16": "h", "Uint32": "I",
                 "Int32": "i", "Float32": "f", "Uint64": "Q", "Int64": "q", "Float64": "d"}
_SCALAR_READERS = {name: struct.Struct("<" + code).unpack_from for name, code in _STRUCT_CODES.items()}
_VTABLE_STRUCTS: dict[int, struct.Struct] = {}


def _slots(buf: bytes, pos: int, known: int) -> tuple[int, ...]:
    """The field offsets of the table at ``pos`` (0 for an absent field), by slot index
    ((voffset - 4) / 2), padded with zeros to ``known`` entries."""
    vtable = pos - _I32(buf, pos)[0]
    n = (_U16(buf, vtable)[0] - 4) >> 1
    unpack = _VTABLE_STRUCTS.get(n)
    if unpack is None:
        unpack = struct.Struct(f"<{n}H")
        if n <= 64:
            _VTABLE_STRUCTS[n] = unpack
    offsets = unpack.unpack_from(buf, vtable + 4)
    return offsets + (0,) * (known - n) if n < known else offsets


def _vector(buf: bytes, at: int) -> tuple[int, int]:
    """(first element, count) of the vector whose offset is stored at ``at``."""
    start = at + _U32(buf, at)[0]
    return start + 4, _U32(buf, start)[0]


def _ints(buf: bytes, at: int) -> tuple[int, ...]:
    """An int32 vector as a tuple of ints; () for an absent one (at == 0)."""
    if not at:
        return ()
    start, n = _vector(buf, at)
    return struct.unpack_from(f"<{n}i", buf, start) if n else ()


def _text(buf: bytes, at: int) -> str:
    """A string field decoded as the model layer keeps names (UTF-8, errors replaced); '' if absent."""
    if not at:
        return ""
    start, n = _vector(buf, at)
    return buf[start:start + n].decode("utf-8", "replace")


def _tables(buf: bytes, at: int) -> list[int]:
    """Positions of the tables of a vector of tables; [] when absent."""
    if not at:
        return []
    start, n = _vector(buf, at)
    return [p + u for p, u in zip(range(start, start + 4 * n, 4), struct.unpack_from(f"<{n}I", buf, start))]


class _Layout:
    """Slot indices and defaults of the fields the parser reads, from interp.model.schema."""

    def __init__(self):
        self.known: dict[str, int] = {}
        for table, names in (
                ("Model", ("Version", "OperatorCodes", "Subgraphs", "Description", "Buffers", "Metadata",
                           "SignatureDefs")),
                ("OperatorCode", ("DeprecatedBuiltinCode", "CustomCode", "Version", "BuiltinCode")),
                ("SubGraph", ("Tensors", "Inputs", "Outputs", "Operators", "Name")),
                ("Tensor", ("Shape", "Type", "Buffer", "Name", "Quantization", "IsVariable", "ShapeSignature")),
                ("QuantizationParameters", ("Scale", "ZeroPoint", "QuantizedDimension")),
                ("Operator", ("OpcodeIndex", "Inputs", "Outputs", "BuiltinOptionsType", "BuiltinOptions",
                              "CustomOptions", "Intermediates", "BuiltinOptions2Type", "BuiltinOptions2")),
                ("Buffer", ("Data", "Offset")),
                ("Metadata", ("Name", "Buffer")),
                ("SignatureDef", ("Inputs", "Outputs", "SignatureKey", "SubgraphIndex")),
                ("TensorMap", ("Name", "TensorIndex"))):
            fields = {f.name: f for f in (table_fields(table) or {}).values()}
            missing = [n for n in names if n not in fields]
            if missing:
                raise RuntimeError(f"the tflite package's {table} lacks {missing}")
            for n in names:
                f = fields[n]
                setattr(self, f"{table}_{n}", (f.voffset - 4) >> 1)
                if f.kind == "scalar":
                    setattr(self, f"{table}_{n}_read", _SCALAR_READERS[f.scalar])
                    setattr(self, f"{table}_{n}_default", f.default)
            self.known[table] = max(f.voffset for f in fields.values() if f.name in names) // 2 - 1


@functools.cache
def _layout() -> _Layout:
    return _Layout()


@dataclass(frozen=True)
class _OptionField:
    key: str  # snake_case key in Operator.options
    slot: int  # slot index
    kind: str  # "scalar", "string", "vector"
    read: Any = None  # scalar: struct unpack_from; vector: numpy dtype
    default: Any = None


@functools.cache
def _options_layout(cls_name: str) -> tuple[tuple[_OptionField, ...], int] | None:
    """How to read a builtin options table directly: the fields ``_read_table`` reads through the
    generated class, in its (sorted) order; None when a field is of a kind this reader does not
    know, which then reads through the class (``_read_table``)."""
    fields = table_fields(cls_name)
    if fields is None:
        return None
    cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
    by_name = {f.name: f for f in fields.values()}
    out = []
    for attr in sorted(_table_attributes(cls)):
        f = by_name.get(attr)
        if f is None:
            return None
        slot = (f.voffset - 4) >> 1
        if f.kind == "scalar":
            if f.default is None or not hasattr(cls, attr):
                return None
            out.append(_OptionField(_snake(attr), slot, "scalar", _SCALAR_READERS[f.scalar], f.default))
        elif f.kind == "string":
            out.append(_OptionField(_snake(attr), slot, "string"))
        elif f.kind == "vector":
            if not hasattr(cls, attr + "AsNumpy"):
                return None
            dtype = np.dtype("<" + _STRUCT_CODES[f.scalar]) if f.scalar != "Bool" else np.dtype(np.bool_)
            out.append(_OptionField(_snake(attr), slot, "vector", dtype))
        elif f.kind not in ("table", "tables", "union"):  # those three _read_table skips
            return None
    return tuple(out), max(fields, default=2) // 2 - 1


class _Parser:
    def __init__(self, data: bytes, name: str):
        self.buf = data
        self.name = name

    def fail(self, msg: str):
        raise ModelError(f"{self.name}: {msg}")

    def check_vector(self, length: int, elem_bytes: int, what: str):
        """Refuse a vector whose claimed length cannot fit in the file (before looping on it)."""
        if length < 0 or length * elem_bytes > len(self.buf):
            self.fail(f"{what} claims {length} entries, more than the {len(self.buf)}-byte file holds")

    def parse(self) -> Model:
        buf = self.buf
        # Nothing below reads a byte the verifier has not bounds-checked.
        verify.verify_flatbuffer(buf, self.name)
        self.L = L = _layout()
        self.buffer_cache: dict[int, bytes] = {}
        self.constant_cache: dict[tuple, np.ndarray] = {}
        self.outside_flatbuffer: set[int] = set()  # buffers whose bytes lie outside the flatbuffer
        if len(buf) < 8:
            self.fail(f"only {len(buf)} bytes: not a TFLite flatbuffer")
        if buf[4:8] != b"TFL3":
            self.fail("not a TFLite flatbuffer (file identifier is not 'TFL3')")
        root = _U32(buf, 0)[0]
        if root + 4 > len(buf):
            self.fail("root table offset points outside the file (truncated?)")
        m = _slots(buf, root, L.known["Model"])

        codes = []
        code_tables = _tables(buf, m[L.Model_OperatorCodes] and root + m[L.Model_OperatorCodes])
        self.check_vector(len(code_tables), 4, "operator_codes")
        known = L.known["OperatorCode"]
        for pos in code_tables:
            f = _slots(buf, pos, known)
            # TFLM's GetBuiltinCode: max(builtin_code, deprecated_builtin_code) of the raw fields
            # (a raw builtin_code below 127 with deprecated 0 is read as such, as TFLM's compression
            # tool writes its DECODE operator).
            at = f[L.OperatorCode_DeprecatedBuiltinCode]
            deprecated = L.OperatorCode_DeprecatedBuiltinCode_read(buf, pos + at)[0] if at else \
                L.OperatorCode_DeprecatedBuiltinCode_default
            at = f[L.OperatorCode_BuiltinCode]
            raw = L.OperatorCode_BuiltinCode_read(buf, pos + at)[0] if at else 0
            code = max(int(deprecated), int(raw))
            at = f[L.OperatorCode_Version]
            version = L.OperatorCode_Version_read(buf, pos + at)[0] if at else L.OperatorCode_Version_default
            at = f[L.OperatorCode_CustomCode]
            custom = _text(buf, pos + at) if at else None
            codes.append((BUILTIN_OPERATOR_NAMES.get(code, f"UNKNOWN_{code}"), max(1, version), custom))

        at = m[L.Model_Buffers]
        self.buffer_tables = _tables(buf, at and root + at)
        self.n_buffers = len(self.buffer_tables)
        self.check_vector(self.n_buffers, 4, "buffers")

        at = m[L.Model_Subgraphs]
        subgraph_tables = _tables(buf, at and root + at)
        n_sub = len(subgraph_tables)
        if n_sub == 0:
            self.fail("the model has no subgraph")
        if n_sub > MAX_SUBGRAPHS:
            self.fail(f"{n_sub} subgraphs is more than the {MAX_SUBGRAPHS} microref accepts")
        subgraphs = [self.subgraph(pos, s, codes) for s, pos in enumerate(subgraph_tables)]

        metadata = {}
        at = m[L.Model_Metadata]
        meta_tables = _tables(buf, at and root + at)
        self.check_vector(len(meta_tables), 4, "metadata")
        known = L.known["Metadata"]
        for pos in meta_tables:
            f = _slots(buf, pos, known)
            key = _text(buf, f[L.Metadata_Name] and pos + f[L.Metadata_Name])
            at = f[L.Metadata_Buffer]
            index = L.Metadata_Buffer_read(buf, pos + at)[0] if at else L.Metadata_Buffer_default
            metadata[key] = self.buffer_bytes(index, f'metadata "{key}"')
        at = m[L.Model_SignatureDefs]
        signature_tables = _tables(buf, at and root + at)
        self.check_vector(len(signature_tables), 4, "signature_defs")
        signatures = [self.signature(pos, i, subgraphs) for i, pos in enumerate(signature_tables)]
        at = m[L.Model_Version]
        version = L.Model_Version_read(buf, root + at)[0] if at else L.Model_Version_default
        model = Model(version=version, description=_text(buf, m[L.Model_Description] and root + m[L.Model_Description]),
                      subgraphs=subgraphs, metadata=metadata, file_bytes=len(buf), source=self.name,
                      signatures=signatures)
        verify.check_model(model)
        return model

    def signature(self, pos: int, i: int, subgraphs: list[Subgraph]) -> SignatureDef:
        buf, L = self.buf, self.L
        f = _slots(buf, pos, L.known["SignatureDef"])
        key = _text(buf, f[L.SignatureDef_SignatureKey] and pos + f[L.SignatureDef_SignatureKey])
        at = f[L.SignatureDef_SubgraphIndex]
        s = L.SignatureDef_SubgraphIndex_read(buf, pos + at)[0] if at else L.SignatureDef_SubgraphIndex_default
        if not 0 <= s < len(subgraphs):
            self.fail(f'signature {i} "{key}" refers to subgraph {s}, but the model has {len(subgraphs)}')
        n_tensors = len(subgraphs[s].tensors)
        maps = []
        known = L.known["TensorMap"]
        for kind, slot in (("input", L.SignatureDef_Inputs), ("output", L.SignatureDef_Outputs)):
            maps_at = _tables(buf, f[slot] and pos + f[slot])
            self.check_vector(len(maps_at), 4, f'signature "{key}" {kind}s')
            names: dict[str, int] = {}
            for tpos in maps_at:
                g = _slots(buf, tpos, known)
                name = _text(buf, g[L.TensorMap_Name] and tpos + g[L.TensorMap_Name])
                at = g[L.TensorMap_TensorIndex]
                t = L.TensorMap_TensorIndex_read(buf, tpos + at)[0] if at else L.TensorMap_TensorIndex_default
                if not 0 <= t < n_tensors:
                    self.fail(f'signature "{key}" {kind} "{name}" refers to tensor {t}, but subgraph {s} has '
                              f"{n_tensors} tensors")
                names[name] = t
            maps.append(names)
        return SignatureDef(key=key, subgraph_index=s, inputs=maps[0], outputs=maps[1])

    def buffer_bytes(self, index: int, what: str) -> bytes:
        if index < 0 or index >= self.n_buffers:
            self.fail(f"{what} refers to buffer {index}, but the model has {self.n_buffers}")
        # Tensors may share a buffer; read (and hold) its bytes once.
        raw = self.buffer_cache.get(index)
        if raw is None:
            raw = self.buffer_cache[index] = self._read_buffer(index)
        return raw

    def _read_buffer(self, index: int) -> bytes:
        buf, L = self.buf, self.L
        pos = self.buffer_tables[index]
        f = _slots(buf, pos, L.known["Buffer"])
        at = f[L.Buffer_Offset]
        offset = L.Buffer_Offset_read(buf, pos + at)[0] if at else L.Buffer_Offset_default
        if offset > 1:
            # Models over 2 GB keep buffer data after the flatbuffer, addressed from file start.
            # The pinned TFLM reads only Buffer.data: such a tensor is not a constant there but an
            # arena tensor nobody writes. Mirror that (the graph check then says why it refuses).
            self.outside_flatbuffer.add(index)
            return b""
        at = f[L.Buffer_Data]
        if not at:
            return b""
        start, n = _vector(buf, pos + at)
        return buf[start:start + n]

    def subgraph(self, pos: int, s: int, codes) -> Subgraph:
        buf, L = self.buf, self.L
        f = _slots(buf, pos, L.known["SubGraph"])
        tensor_tables = _tables(buf, f[L.SubGraph_Tensors] and pos + f[L.SubGraph_Tensors])
        n_t = len(tensor_tables)
        self.check_vector(n_t, 4, f"subgraph {s} tensors")
        tensors = [self.tensor(tpos, i, s) for i, tpos in enumerate(tensor_tables)]
        op_tables = _tables(buf, f[L.SubGraph_Operators] and pos + f[L.SubGraph_Operators])
        self.check_vector(len(op_tables), 4, f"subgraph {s} operators")
        ops = [self.operator(opos, i, codes, n_t) for i, opos in enumerate(op_tables)]
        ins = _ints(buf, f[L.SubGraph_Inputs] and pos + f[L.SubGraph_Inputs])
        outs = _ints(buf, f[L.SubGraph_Outputs] and pos + f[L.SubGraph_Outputs])
        for kind, idx in (("input", ins), ("output", outs)):
            for t in idx:
                if not 0 <= t < n_t:
                    self.fail(f"subgraph {s} {kind} refers to tensor {t}, but it has {n_t} tensors")
        empty = [t for t in tensors if t.data is None and t.dtype is not None and not t.is_variable and 0 in t.shape]
        if empty:
            written = {t for op in ops for t in op.outputs} | set(ins)
            read = {t for op in ops for t in op.inputs} | set(outs)
            for t in empty:
                if t.index in read and t.index not in written:
                    value = np.zeros(t.shape, t.dtype)
                    value.flags.writeable = False
                    t.data, t.empty_without_buffer = value, True
        return Subgraph(index=s, name=_text(buf, f[L.SubGraph_Name] and pos + f[L.SubGraph_Name]), tensors=tensors,
                        operators=ops, inputs=ins, outputs=outs)

    def tensor(self, pos: int, i: int, s: int) -> Tensor:
        buf, L = self.buf, self.L
        f = _slots(buf, pos, L.known["Tensor"])
        name = _text(buf, f[L.Tensor_Name] and pos + f[L.Tensor_Name])
        shape = _ints(buf, f[L.Tensor_Shape] and pos + f[L.Tensor_Shape])
        where = f'subgraph {s}, tensor {i} "{name}"'
        if len(shape) > MAX_RANK:
            self.fail(f"{where} has rank {len(shape)}; at most {MAX_RANK} is supported")
        if any(d < 0 for d in shape):
            self.fail(f"{where} has a negative dimension in shape {list(shape)}")
        at = f[L.Tensor_Type]
        ttype = L.Tensor_Type_read(buf, pos + at)[0] if at else L.Tensor_Type_default
        if ttype not in TENSOR_TYPES:
            self.fail(f"{where} has unknown tensor type {ttype}")
        type_name, dtype, elem_bytes = TENSOR_TYPES[ttype]
        sig = _ints(buf, f[L.Tensor_ShapeSignature] and pos + f[L.Tensor_ShapeSignature]) or None

        at = f[L.Tensor_Quantization]
        quant = self.quantization(at + _U32(buf, pos + at)[0] + pos) if at else None

        count = verify.check_shape(shape, where, self.name)
        at = f[L.Tensor_Buffer]
        buffer_index = L.Tensor_Buffer_read(buf, pos + at)[0] if at else L.Tensor_Buffer_default
        raw = self.buffer_bytes(buffer_index, where)
        data = None
        if raw:
            key = (buffer_index, type_name, shape)
            data = self.constant_cache.get(key)
            if data is None:
                data = self.constant_cache[key] = self.constant(raw, count, shape, type_name, dtype, elem_bytes,
                                                                where)
        at = f[L.Tensor_IsVariable]
        is_variable = L.Tensor_IsVariable_read(buf, pos + at)[0] if at else L.Tensor_IsVariable_default
        return Tensor(index=i, name=name, shape=shape, type_name=type_name, dtype=dtype,
                      element_bytes=elem_bytes, quantization=quant, data=data, data_bytes=len(raw),
                      is_variable=bool(is_variable), buffer_index=buffer_index, shape_signature=sig,
                      data_outside_flatbuffer=buffer_index in self.outside_flatbuffer)

    def quantization(self, pos: int) -> Quantization | None:
        """The tensor's affine quantization as TFLM reads it (InitializeTfLiteTensorFromFlatbuffer).

        TFLM treats a tensor as quantized only when both scale and zero_point are non-empty, and
        takes zero_point[0] for every channel whenever the counts differ (a single zero point for
        per-channel weights is a documented space saving; any other count reads the same way, so
        it is no error). Zero points are truncated to int32, as TFLM's int32 fields hold them.
        Nothing here checks the scales or the quantized dimension: only the kernels that read
        them do, as TFLM's do (verify.check_quantization keeps the scales TFLM's kernels read).
        """
        buf, L = self.buf, self.L
        f = _slots(buf, pos, L.known["QuantizationParameters"])
        at_scale, at_zp = f[L.QuantizationParameters_Scale], f[L.QuantizationParameters_ZeroPoint]
        if not at_scale or not at_zp:
            return None
        scale_start, n_scales = _vector(buf, pos + at_scale)
        zp_start, n_zps = _vector(buf, pos + at_zp)
        if n_scales == 0 or n_zps == 0:
            return None
        scales = np.frombuffer(buf, "<f4", n_scales, scale_start).astype(np.float32)
        # TFLM stores the int64 zero points in int32 fields (static_cast): they wrap, as here.
        if n_zps == n_scales and n_zps > 1:
            zps = ((np.frombuffer(buf, "<i8", n_zps, zp_start) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        else:
            # TFLM: zero_point[i] = zero_point()->Get(size == scale size ? i : 0), for any other count.
            zps = np.full(n_scales, ((_I64(buf, zp_start)[0] + (1 << 31)) & 0xFFFFFFFF) - (1 << 31), np.int64)
        at = f[L.QuantizationParameters_QuantizedDimension]
        qdim = L.QuantizationParameters_QuantizedDimension_read(buf, pos + at)[0] if at else \
            L.QuantizationParameters_QuantizedDimension_default
        scales.flags.writeable = False
        zps.flags.writeable = False
        return Quantization(scales, zps, qdim)

    def constant(self, raw: bytes, count: int, shape, type_name, dtype, elem_bytes, where):
        if dtype is None:
            self.fail(f"{where}: constant data of type {type_name} is not supported")
        if type_name == "INT4":
            need = (count + 1) // 2
            if len(raw) < need:
                self.fail(f"{where}: int4 data has {len(raw)} bytes; shape {list(shape)} needs {need}")
            packed = np.frombuffer(raw, np.uint8, count=need)
            # Two's-complement nibbles, low nibble first (TFLM UnpackDenseInt4IntoInt8).
            nibbles = np.empty(need * 2, np.int8)
            nibbles[0::2] = (packed & 0x0F).astype(np.int8)
            nibbles[1::2] = (packed >> 4).astype(np.int8)
            values = np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)[:count]
        else:
            need = count * elem_bytes
            if len(raw) != need:
                # Shorter: TFLM would read past the buffer. Longer: TFLM runs it, reading the bytes
                # it needs from the start — but kernels that read a constant as another type
                # (GetTensorData<int32_t> of a float16 tensor) read further into the buffer than
                # the shape says, and a constant here holds only the shape's bytes.
                self.fail(f"{where}: buffer holds {len(raw)} bytes, but shape {list(shape)} of "
                          f"{type_name} needs {need}")
            # A read-only view of the file's bytes (no copy on a little-endian host).
            values = np.frombuffer(raw, dtype.newbyteorder("<"), count=count).astype(dtype, copy=False)
        values = values.reshape(shape)
        values.flags.writeable = False
        return values

    def operator(self, pos: int, i: int, codes, n_tensors: int) -> Operator:
        buf, L = self.buf, self.L
        f = _slots(buf, pos, L.known["Operator"])
        at = f[L.Operator_OpcodeIndex]
        ci = L.Operator_OpcodeIndex_read(buf, pos + at)[0] if at else L.Operator_OpcodeIndex_default
        if not 0 <= ci < len(codes):
            self.fail(f"operator {i} uses opcode {ci}, but the model has {len(codes)} operator codes")
        op_name, version, custom = codes[ci]
        ins = _ints(buf, f[L.Operator_Inputs] and pos + f[L.Operator_Inputs])
        outs = _ints(buf, f[L.Operator_Outputs] and pos + f[L.Operator_Outputs])
        inter = _ints(buf, f[L.Operator_Intermediates] and pos + f[L.Operator_Intermediates])
        for kind, idx, optional in (("input", ins, True), ("output", outs, False),
                                    ("intermediate", inter, False)):
            for t in idx:
                if not (0 <= t < n_tensors or (optional and t == -1)):
                    self.fail(f"operator {i} ({op_name}) {kind} refers to tensor {t}, "
                              f"but the subgraph has {n_tensors} tensors")
        options_type, options = self.options(pos, f, i, op_name)
        custom_options = b""
        at = f[L.Operator_CustomOptions]
        if at:
            start, n = _vector(buf, pos + at)
            custom_options = buf[start:start + n]
        return Operator(index=i, op_name=op_name, version=version, inputs=ins, outputs=outs,
                        options=options, options_type=options_type, custom_code=custom,
                        custom_options=custom_options, intermediates=inter, opcode_index=ci)

    def options(self, pos: int, f: tuple[int, ...], i: int, op_name: str):
        buf, L = self.buf, self.L
        for type_slot, table_slot, names in (
                (L.Operator_BuiltinOptionsType, L.Operator_BuiltinOptions, BUILTIN_OPTIONS_NAMES),
                (L.Operator_BuiltinOptions2Type, L.Operator_BuiltinOptions2, BUILTIN_OPTIONS2_NAMES)):
            at = f[type_slot]
            otype = buf[pos + at] if at else 0  # a ubyte
            if otype == 0:
                continue
            cls_name = names.get(otype)
            if cls_name is None:
                self.fail(f"operator {i} ({op_name}) has unknown builtin options type {otype}")
            at = f[table_slot]
            if not at:
                return cls_name, {}
            table = pos + at + _U32(buf, pos + at)[0]
            return cls_name, _read_options(buf, table, cls_name)
        return "NONE", {}


def _read_options(buf: bytes, pos: int, cls_name: str) -> dict[str, Any]:
    """All scalar fields, strings and scalar vectors of a builtin options table, snake_case keys
    (what ``_read_table`` reads through the generated class, read directly)."""
    layout = _options_layout(cls_name)
    if layout is None:
        cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
        obj = cls()
        obj.Init(buf, pos)
        return _read_table(obj)
    fields, known = layout
    f = _slots(buf, pos, known)
    out: dict[str, Any] = {}
    for field_ in fields:
        at = f[field_.slot]
        kind = field_.kind
        if kind == "scalar":
            value = field_.read(buf, pos + at)[0] if at else field_.default
            out[field_.key] = option_value(field_.key, value)
        elif kind == "vector":
            if at:
                start, n = _vector(buf, pos + at)
                out[field_.key] = np.frombuffer(buf, field_.read, n, start).tolist() if n else []
            else:
                out[field_.key] = []
        elif at:  # a string: absent ones are left out, as _read_table leaves out None
            out[field_.key] = _text(buf, pos + at)
    return out


def _table_attributes(cls) -> list[str]:
    """The field accessors of a generated table class that ``_read_table`` calls."""
    return [attr for attr in dir(cls)
            if not (attr.startswith("_") or attr in ("Init",) or attr.startswith("GetRootAs")
                    or attr.endswith(_SKIP_SUFFIXES) or attr.endswith("BufferHasIdentifier"))
            and callable(getattr(cls, attr))]


_SKIP_SUFFIXES = ("AsNumpy", "Length", "IsNone")


def _read_table(obj) -> dict[str, Any]:
    """All scalar fields and scalar vectors of a generated options table, snake_case keys."""
    out = {}
    for attr in _table_attributes(type(obj)):
        fn = getattr(obj, attr)
        if hasattr(obj, attr + "AsNumpy"):
            n = getattr(obj, attr + "Length")()
            arr = getattr(obj, attr + "AsNumpy")()
            out[_snake(attr)] = [] if n == 0 or isinstance(arr, int) else arr.tolist()
            continue
        try:
            value = fn()
        except TypeError:
            continue  # a vector of tables; no op microref runs uses one
        if isinstance(value, (int, float, bool)):
            out[_snake(attr)] = option_value(_snake(attr), value)
        elif isinstance(value, bytes):
            out[_snake(attr)] = value.decode("utf-8", "replace")
    return out
