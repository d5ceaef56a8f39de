"""Parse a .tflite flatbuffer into plain, typed dataclasses.

Everything past this module works on these dataclasses; no other module touches flatbuffer
accessors. The parser reads defensively: any inconsistency in the file becomes a one-line
``ModelError`` instead of a traceback from deep inside the flatbuffers library.
"""
from __future__ import annotations

import enum
import importlib
import os
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

from ..errors import MicrorefError, ModelError
from . import verify

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
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

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


def builtin_code(oc) -> int:
    """TFLM's GetBuiltinCode: max(builtin_code, deprecated_builtin_code) of the raw fields.

    The ``tflite`` package's BuiltinCode() returns the deprecated field whenever the raw one is
    below 127, which reads (deprecated 0, builtin 32 = CUSTOM), as TFLM's compression tool writes
    its DECODE operator, as ADD.
    """
    field = oc._tab.Offset(10)  # OperatorCode.builtin_code (int32)
    raw = oc._tab.Get(flatbuffers.number_types.Int32Flags, field + oc._tab.Pos) if field else 0
    return max(int(oc.DeprecatedBuiltinCode()), int(raw))


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
        # The flatbuffers accessors do not bounds-check; any of these means an offset or a
        # length in the file points outside it.
        raise ModelError(f"{name}: malformed flatbuffer ({type(e).__name__}: {e})") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


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
        from tflite.Model import Model as FbModel

        buf = self.buf
        # Nothing below reads a byte the verifier has not bounds-checked.
        verify.verify_flatbuffer(buf, self.name)
        self.buffer_cache: dict[int, bytes] = {}
        self.constant_cache: dict[tuple, np.ndarray] = {}
        self.outside_flatbuffer: set[int] = set()  # buffers whose bytes lie outside the flatbuffer
        if len(buf) < 8:
            self.fail(f"only {len(buf)} bytes: not a TFLite flatbuffer")
        if buf[4:8] != b"TFL3":
            self.fail("not a TFLite flatbuffer (file identifier is not 'TFL3')")
        root = struct.unpack_from("<I", buf, 0)[0]
        if root + 4 > len(buf):
            self.fail("root table offset points outside the file (truncated?)")
        fb = FbModel.GetRootAs(buf, 0)

        n_codes = fb.OperatorCodesLength()
        self.check_vector(n_codes, 4, "operator_codes")
        codes = []
        for i in range(n_codes):
            oc = fb.OperatorCodes(i)
            code = builtin_code(oc)
            custom = oc.CustomCode()
            codes.append((BUILTIN_OPERATOR_NAMES.get(code, f"UNKNOWN_{code}"), max(1, oc.Version()),
                          custom.decode("utf-8", "replace") if custom is not None else None))

        n_buffers = fb.BuffersLength()
        self.check_vector(n_buffers, 4, "buffers")
        self.fb = fb
        self.n_buffers = n_buffers

        n_sub = fb.SubgraphsLength()
        if n_sub == 0:
            self.fail("the model has no subgraph")
        if n_sub > MAX_SUBGRAPHS:
            self.fail(f"{n_sub} subgraphs is more than the {MAX_SUBGRAPHS} microref accepts")
        subgraphs = [self.subgraph(fb.Subgraphs(s), s, codes) for s in range(n_sub)]

        metadata = {}
        n_meta = fb.MetadataLength()
        self.check_vector(n_meta, 4, "metadata")
        for i in range(n_meta):
            md = fb.Metadata(i)
            key = (md.Name() or b"").decode("utf-8", "replace")
            metadata[key] = self.buffer_bytes(md.Buffer(), f'metadata "{key}"')
        n_sig = fb.SignatureDefsLength()
        self.check_vector(n_sig, 4, "signature_defs")
        signatures = [self.signature(fb.SignatureDefs(i), i, subgraphs) for i in range(n_sig)]
        desc = fb.Description()
        model = Model(version=fb.Version(), description=(desc or b"").decode("utf-8", "replace"),
                      subgraphs=subgraphs, metadata=metadata, file_bytes=len(buf), source=self.name,
                      signatures=signatures)
        verify.check_model(model)
        return model

    def signature(self, sd, i: int, subgraphs: list[Subgraph]) -> SignatureDef:
        key = (sd.SignatureKey() or b"").decode("utf-8", "replace")
        s = int(sd.SubgraphIndex())
        if not 0 <= s < len(subgraphs):
            self.fail(f'signature {i} "{key}" refers to subgraph {s}, but the model has {len(subgraphs)}')
        n_tensors = len(subgraphs[s].tensors)
        maps = []
        for kind, length, get in (("input", sd.InputsLength(), sd.Inputs), ("output", sd.OutputsLength(), sd.Outputs)):
            self.check_vector(length, 4, f'signature "{key}" {kind}s')
            names: dict[str, int] = {}
            for j in range(length):
                tm = get(j)
                name = (tm.Name() or b"").decode("utf-8", "replace")
                t = int(tm.TensorIndex())
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
        if index not in self.buffer_cache:
            self.buffer_cache[index] = self._read_buffer(index, what)
        return self.buffer_cache[index]

    def _read_buffer(self, index: int, what: str) -> bytes:
        b = self.fb.Buffers(index)
        offset = int(b.Offset())
        if offset > 1:
            # Models over 2 GB keep buffer data after the flatbuffer, addressed from file start.
            # The pinned TFLM reads only Buffer.data: such a tensor is not a constant there but an
            # arena tensor nobody writes. Mirror that (the graph check then says why it refuses).
            self.outside_flatbuffer.add(index)
            return b""
        n = b.DataLength()
        if n == 0:
            return b""
        arr = b.DataAsNumpy()  # frombuffer raises if the vector runs off the end
        return arr.tobytes()

    def subgraph(self, sg, s: int, codes) -> Subgraph:
        n_t = sg.TensorsLength()
        self.check_vector(n_t, 4, f"subgraph {s} tensors")
        tensors = [self.tensor(sg.Tensors(i), i, s) for i in range(n_t)]
        n_ops = sg.OperatorsLength()
        self.check_vector(n_ops, 4, f"subgraph {s} operators")
        ops = [self.operator(sg.Operators(i), i, codes, n_t) for i in range(n_ops)]
        ins = self.int_vector(sg.InputsAsNumpy(), sg.InputsLength())
        outs = self.int_vector(sg.OutputsAsNumpy(), sg.OutputsLength())
        for kind, idx in (("input", ins), ("output", outs)):
            for t in idx:
                if not 0 <= t < n_t:
                    self.fail(f"subgraph {s} {kind} refers to tensor {t}, but it has {n_t} tensors")
        written = {t for op in ops for t in op.outputs} | set(ins)
        read = {t for op in ops for t in op.inputs} | set(outs)
        for t in tensors:
            if (t.data is None and t.size == 0 and t.dtype is not None and not t.is_variable
                    and t.index in read and t.index not in written):
                empty = np.zeros(t.shape, t.dtype)
                empty.flags.writeable = False
                t.data, t.empty_without_buffer = empty, True
        name = sg.Name()
        return Subgraph(index=s, name=(name or b"").decode("utf-8", "replace"), tensors=tensors,
                        operators=ops, inputs=ins, outputs=outs)

    @staticmethod
    def int_vector(arr, length) -> tuple[int, ...]:
        if length == 0 or isinstance(arr, int):
            return ()
        return tuple(int(v) for v in arr)

    def tensor(self, t, i: int, s: int) -> Tensor:
        raw_name = t.Name()
        name = (raw_name or b"").decode("utf-8", "replace")
        shape = self.int_vector(t.ShapeAsNumpy(), t.ShapeLength())
        where = f'subgraph {s}, tensor {i} "{name}"'
        if len(shape) > MAX_RANK:
            self.fail(f"{where} has rank {len(shape)}; at most {MAX_RANK} is supported")
        if any(d < 0 for d in shape):
            self.fail(f"{where} has a negative dimension in shape {list(shape)}")
        ttype = t.Type()
        if ttype not in TENSOR_TYPES:
            self.fail(f"{where} has unknown tensor type {ttype}")
        type_name, dtype, elem_bytes = TENSOR_TYPES[ttype]
        sig = None
        if t.ShapeSignatureLength():
            sig = self.int_vector(t.ShapeSignatureAsNumpy(), t.ShapeSignatureLength())

        quant = self.quantization(t.Quantization(), where)

        count = verify.check_shape(shape, where, self.name)
        raw = self.buffer_bytes(t.Buffer(), where)
        data = None
        if raw:
            key = (int(t.Buffer()), type_name, shape)
            if key not in self.constant_cache:
                self.constant_cache[key] = self.constant(raw, count, shape, type_name, dtype, elem_bytes, where)
            data = self.constant_cache[key]
        return Tensor(index=i, name=name, shape=shape, type_name=type_name, dtype=dtype,
                      element_bytes=elem_bytes, quantization=quant, data=data, data_bytes=len(raw),
                      is_variable=bool(t.IsVariable()), buffer_index=int(t.Buffer()), shape_signature=sig,
                      data_outside_flatbuffer=int(t.Buffer()) in self.outside_flatbuffer)

    def quantization(self, q, where: str) -> Quantization | None:
        """The tensor's affine quantization as TFLM reads it (InitializeTfLiteTensorFromFlatbuffer).

        TFLM treats a tensor as quantized only when both scale and zero_point are non-empty, and
        takes zero_point[0] for every channel whenever the counts differ (a single zero point for
        per-channel weights is a documented space saving; any other count reads the same way, so
        it is no error). Zero points are truncated to int32, as TFLM's int32 fields hold them.
        Nothing here checks the scales or the quantized dimension: only the kernels that read
        them do, as TFLM's do (verify.check_quantization keeps the scales TFLM's kernels read).
        """
        if q is None or q.ScaleLength() == 0 or q.ZeroPointLength() == 0:
            return None
        scales = np.asarray(q.ScaleAsNumpy(), dtype=np.float32).copy()
        zps = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64)
        # TFLM stores the int64 zero points in int32 fields (static_cast): they wrap, as here.
        zps = ((zps + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        if zps.size != scales.size:
            # TFLM: zero_point[i] = zero_point()->Get(size == scale size ? i : 0), for any other count.
            zps = zps[:1]
        zps = np.broadcast_to(zps, scales.shape).copy()
        qdim = int(q.QuantizedDimension())
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

    def operator(self, op, i: int, codes, n_tensors: int) -> Operator:
        ci = op.OpcodeIndex()
        if not 0 <= ci < len(codes):
            self.fail(f"operator {i} uses opcode {ci}, but the model has {len(codes)} operator codes")
        op_name, version, custom = codes[ci]
        ins = self.int_vector(op.InputsAsNumpy(), op.InputsLength())
        outs = self.int_vector(op.OutputsAsNumpy(), op.OutputsLength())
        inter = self.int_vector(op.IntermediatesAsNumpy(), op.IntermediatesLength())
        for kind, idx, optional in (("input", ins, True), ("output", outs, False),
                                    ("intermediate", inter, False)):
            for t in idx:
                if not (0 <= t < n_tensors or (optional and t == -1)):
                    self.fail(f"operator {i} ({op_name}) {kind} refers to tensor {t}, "
                              f"but the subgraph has {n_tensors} tensors")
        options_type, options = self.options(op, i, op_name)
        custom_options = b""
        if op.CustomOptionsLength():
            custom_options = op.CustomOptionsAsNumpy().tobytes()
        return Operator(index=i, op_name=op_name, version=version, inputs=ins, outputs=outs,
                        options=options, options_type=options_type, custom_code=custom,
                        custom_options=custom_options, intermediates=inter, opcode_index=ci)

    def options(self, op, i: int, op_name: str):
        for type_getter, table_getter, names in (
                (op.BuiltinOptionsType, op.BuiltinOptions, BUILTIN_OPTIONS_NAMES),
                (op.BuiltinOptions2Type, op.BuiltinOptions2, BUILTIN_OPTIONS2_NAMES)):
            otype = type_getter()
            if otype == 0:
                continue
            cls_name = names.get(otype)
            if cls_name is None:
                self.fail(f"operator {i} ({op_name}) has unknown builtin options type {otype}")
            table = table_getter()
            if table is None:
                return cls_name, {}
            cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
            obj = cls()
            obj.Init(table.Bytes, table.Pos)
            return cls_name, _read_table(obj)
        return "NONE", {}


_SKIP_SUFFIXES = ("AsNumpy", "Length", "IsNone")


def _read_table(obj) -> dict[str, Any]:
    """All scalar fields and scalar vectors of a generated options table, snake_case keys."""
    out = {}
    for attr in dir(type(obj)):
        if attr.startswith("_") or attr in ("Init",) or attr.startswith("GetRootAs") \
                or attr.endswith(_SKIP_SUFFIXES) or attr.endswith("BufferHasIdentifier"):
            continue
        fn = getattr(obj, attr)
        if not callable(fn):
            continue
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
