"""The load path's fast paths against their slow references (issue 20: load and prepare of a
one-operator model in well under a millisecond, what every fuzzing example pays).

* The parser reads the flatbuffer directly (interp.model.parse); ``ReferenceParser`` below is
  the parser it replaced, reading through the ``tflite`` package's generated accessors, kept here
  as the reference: on every golden model, every shared model, models from the builder and
  mutants of them, both give equal dataclasses or the same error.
* int8 ADD/SUB/MUL/SQUARED_DIFFERENCE evaluate small calls with the direct integer formula and
  build their 256x256 table on the first large call (or once enough small calls have paid for
  it): both paths are forced here and must give the same bytes, and threads racing to build the
  table must all see the finished one.
"""
from __future__ import annotations

import importlib
import re
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import pytest

from interp.errors import MicrorefError, ModelError
from interp.model import parse, verify
from interp.model.parse import (
    BUILTIN_OPERATOR_NAMES,
    BUILTIN_OPTIONS2_NAMES,
    BUILTIN_OPTIONS_NAMES,
    MAX_RANK,
    MAX_SUBGRAPHS,
    TENSOR_TYPES,
    Model,
    Operator,
    Quantization,
    SignatureDef,
    Subgraph,
    Tensor,
    _Parser,
    option_value,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import mutants  # noqa: E402
import structured_fuzz  # noqa: E402


# ------------------------------------------------------------------ the reference parser
def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def builtin_code(oc) -> int:
    """TFLM's GetBuiltinCode: max(builtin_code, deprecated_builtin_code) of the raw fields.

    The ``tflite`` package's BuiltinCode() returns the deprecated field whenever the raw one is
    below 127, which reads (deprecated 0, builtin 32 = CUSTOM), as TFLM's compression tool writes
    its DECODE operator, as ADD.
    """
    field = oc._tab.Offset(10)  # OperatorCode.builtin_code (int32)
    raw = oc._tab.Get(flatbuffers.number_types.Int32Flags, field + oc._tab.Pos) if field else 0
    return max(int(oc.DeprecatedBuiltinCode()), int(raw))


class ReferenceParser:
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

    # Turning a buffer's bytes into values is not what the two parsers differ in: the same code.
    constant = _Parser.constant

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


def reference_load(data: bytes, name: str = "<bytes>") -> Model:
    """load_model through ReferenceParser, errors converted as load_model converts them."""
    try:
        return ReferenceParser(data, name).parse()
    except MicrorefError:
        raise
    except (struct.error, IndexError, ValueError, TypeError, OverflowError, UnicodeDecodeError,
            AttributeError, MemoryError, RecursionError) as e:
        raise ModelError(f"{name}: malformed flatbuffer ({type(e).__name__}: {e})") from None


def canonical(x):
    """A comparable form of a parsed model: every dataclass field, arrays by dtype, shape, bytes and
    writeability, dicts in their order, values with their exact type (OptionEnum is not int)."""
    if isinstance(x, (Model, Subgraph, Tensor, Operator, Quantization, SignatureDef)):
        return (type(x).__name__,) + tuple((f, canonical(getattr(x, f))) for f in x.__dataclass_fields__)
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, x.tobytes(), x.flags.writeable)
    if isinstance(x, dict):
        return ("dict",) + tuple((k, canonical(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return (type(x).__name__,) + tuple(canonical(v) for v in x)
    if isinstance(x, float):
        return ("float", struct.pack("<d", x))
    return (type(x).__name__, x)


def outcome(load, data: bytes):
    try:
        return ("ok", canonical(load(data)))
    except MicrorefError as e:
        return (type(e).__name__, str(e))


def assert_same_parse(data: bytes, label: str):
    want = outcome(reference_load, data)
    got = outcome(parse.load_model, data)
    if got != want:
        if got[0] != want[0] or got[0] != "ok":
            pytest.fail(f"{label}: fast parser {got[0]} {got[1] if got[0] != 'ok' else ''!s:.300}, "
                        f"reference {want[0]} {want[1] if want[0] != 'ok' else ''!s:.300}")
        diff = next(i for i, (g, w) in enumerate(zip(got[1], want[1])) if g != w)
        pytest.fail(f"{label}: parsed models differ at field {want[1][diff][0]!r}")
    return got[0]


def model_files() -> list[Path]:
    files = sorted((REPO / "golden").rglob("*.tflite"))
    shared = REPO.parent / "shared" / "models"
    return files + sorted(shared.glob("*.tflite"))


def test_fast_parser_equals_the_reference_on_every_golden_and_shared_model():
    files = model_files()
    assert len(files) > 200
    for path in files:
        assert assert_same_parse(path.read_bytes(), str(path)) == "ok", path
    if not (REPO.parent / "shared" / "models").is_dir():
        pytest.skip("../shared/models is not present (golden models compared)")


def test_fast_parser_equals_the_reference_on_mutants():
    """Mutants (bit flips, overwritten offsets, lengths, indices, types, scales...) of golden
    models: the same model or the same error, message and type."""
    seeds, _ = mutants.load_seeds([REPO / "golden" / "models"])
    assert len(seeds) > 100
    rng = np.random.default_rng(20)
    kinds = {}
    for i in range(2500):
        seed = seeds[int(rng.integers(len(seeds)))]
        data, what = mutants.make_mutant(seed, rng)
        kind = assert_same_parse(data, f"mutant {i} of {seed.label} ({what})")
        kinds[kind] = kinds.get(kind, 0) + 1
    # Both outcomes are exercised (most mutants still parse; many are refused).
    assert kinds.get("ok", 0) > 200 and kinds.get("ModelError", 0) > 200, kinds


def test_fast_parser_equals_the_reference_on_structured_hostile_models():
    for label, data, desc in structured_fuzz.cases(12, seed=20):
        assert_same_parse(data, f"{label}: {desc}")


# ------------------------------------------------------------------ options tables
def _options_classes() -> list[str]:
    names = set(BUILTIN_OPTIONS_NAMES.values()) | set(BUILTIN_OPTIONS2_NAMES.values())
    return sorted(n for n in names if n != "NONE" and importlib.util.find_spec(f"tflite.{n}") is not None)


_PREPEND = {"Bool": "Bool", "Uint8": "Uint8", "Int8": "Int8", "Uint16": "Uint16", "Int16": "Int16",
            "Uint32": "Uint32", "Int32": "Int32", "Float32": "Float32", "Uint64": "Uint64", "Int64": "Int64",
            "Float64": "Float64"}
_RANGES = {"Uint8": (0, 1 << 8), "Int8": (-(1 << 7), 1 << 7), "Uint16": (0, 1 << 16), "Int16": (-(1 << 15), 1 << 15),
           "Uint32": (0, 1 << 32), "Int32": (-(1 << 31), 1 << 31), "Uint64": (0, 1 << 63),
           "Int64": (-(1 << 63), 1 << 63)}


def _random_scalar(rng, scalar: str):
    if scalar == "Bool":
        return bool(rng.integers(2))
    if scalar.startswith("Float"):
        v = float(rng.choice([0.0, -0.0, 1.5, -3.25, 1e-30, float("inf"), float("nan"), rng.normal()]))
        return float(np.float32(v)) if scalar == "Float32" else v
    lo, hi = _RANGES[scalar]
    return int(rng.choice([0, 1, -1 if lo < 0 else 2, int(rng.integers(lo, hi)), lo, hi - 1, 3]))


def _build_options(cls_name: str, rng) -> bytes:
    """An options table with a random subset of its fields set to random values (absent ones read
    as their defaults), built with the flatbuffers Builder at the slots the schema gives."""
    fields = verify.table_fields(cls_name)
    b = flatbuffers.Builder(256)
    offsets = {}
    for f in fields.values():
        if rng.random() < 0.3:
            continue
        if f.kind == "string":
            offsets[f.voffset] = b.CreateString(bytes(rng.integers(0, 256, int(rng.integers(0, 6)), np.uint8)))
        elif f.kind == "vector":
            n = int(rng.integers(0, 5))
            b.StartVector(f.size, n, f.size)
            for _ in range(n):
                getattr(b, "Prepend" + _PREPEND[f.scalar])(_random_scalar(rng, f.scalar))
            offsets[f.voffset] = b.EndVector()
    b.StartObject(max(fields, default=2) // 2 - 1)
    for f in fields.values():
        slot = (f.voffset - 4) // 2
        if f.voffset in offsets:
            b.PrependUOffsetTRelativeSlot(slot, offsets[f.voffset], 0)
        elif f.kind == "scalar" and rng.random() < 0.7:
            # force_defaults: a value equal to the default is still written (read back the same).
            b.ForceDefaults(True)
            getattr(b, f"Prepend{_PREPEND[f.scalar]}Slot")(slot, _random_scalar(rng, f.scalar), 0)
            b.ForceDefaults(False)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("cls_name", _options_classes())
def test_options_read_directly_equal_the_generated_class(cls_name):
    """Every builtin options table: random field subsets and values (extremes, NaN, -0.0, enums
    the schema names and numbers it does not) read the same directly and through the class."""
    assert parse._options_layout(cls_name) is not None, f"{cls_name} would read through the class"
    rng = np.random.default_rng(zlib.crc32(cls_name.encode()))
    cls = getattr(importlib.import_module(f"tflite.{cls_name}"), cls_name)
    for _ in range(12):
        buf = _build_options(cls_name, rng)
        pos = struct.unpack_from("<I", buf, 0)[0]
        obj = cls()
        obj.Init(buf, pos)
        want = _read_table(obj)
        got = parse._read_options(buf, pos, cls_name)
        assert canonical(got) == canonical(want), cls_name


# ------------------------------------------------------------------ int8 binary ops: table or formula
TABULATED_OPS = ["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"]
SHAPES = [([1, 4, 4, 8], [1, 4, 4, 8], [1, 4, 4, 8]), ([2, 3, 1], [1, 5], [2, 3, 5]), ([7], [1], [7]),
          ([1, 1, 300], [1, 40, 1], [1, 40, 300])]


def _binary_int8(op: str, rng, shapes) -> bytes | None:
    from interp.builder import ModelBuilder

    s1, s2, so = shapes
    b = ModelBuilder()

    def quant():
        return dict(scale=float(10 ** rng.uniform(-3, 0)), zero_point=int(rng.integers(-128, 128)))

    x1, x2 = b.input("x1", s1, "INT8", **quant()), b.input("x2", s2, "INT8", **quant())
    y = b.tensor("y", so, "INT8", **quant())
    options = {} if op == "SQUARED_DIFFERENCE" else {
        "fused_activation_function": str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))}
    b.op(op, [x1, x2], [y], **options)
    b.output(y)
    return b.build()


def _interpreter(data):
    from interp import Interpreter
    try:
        return Interpreter.from_bytes(data)
    except ModelError:  # scales TFLM's Prepare refuses
        return None


@pytest.mark.parametrize("op", TABULATED_OPS)
def test_int8_binary_ops_give_the_same_bytes_through_the_table_and_the_formula(op, monkeypatch):
    """Eval forced through the formula (the table never pays) and through the table (it always
    pays) on random scales, zero points, activations, shapes (broadcasting included) and inputs
    with every int8 extreme: the same bytes; and which path ran is the one forced."""
    from ops import elementwise

    rng = np.random.default_rng(zlib.crc32(op.encode()))
    checked = 0
    for trial in range(24):
        shapes = SHAPES[trial % len(SHAPES)]
        data = _binary_int8(op, rng, shapes)
        direct, tabled = _interpreter(data), _interpreter(data)
        if direct is None:
            continue
        assert direct.kernels[0].tabulated and direct.kernels[0]._table is None  # prepare builds nothing
        n = 3
        xs = [rng.integers(-128, 128, (n, *s)).astype(np.int8) for s in shapes[:2]]
        xs[0].reshape(n, -1)[:, :2] = [-128, 127]
        monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 1 << 62)
        want = direct.run_batch(xs)[0]
        assert direct.kernels[0]._table is None
        monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 0)
        got = tabled.run_batch(xs)[0]
        assert tabled.kernels[0]._table is not None
        assert got.dtype == want.dtype == np.int8 and got.tobytes() == want.tobytes(), (op, trial)
        # And the formula itself, as the reference kernel computes it, per sample.
        assert tabled.run([x[0] for x in xs])[0].tobytes() == want[0].tobytes()
        checked += 1
    assert checked >= 12


def test_small_calls_use_the_formula_until_they_have_paid_for_the_table(monkeypatch):
    """The ski rental: direct calls accumulate their cost; the call that would bring it past the
    build cost builds the table; a call as large as the build builds it at once."""
    from ops import elementwise

    data = _binary_int8("ADD", np.random.default_rng(1), SHAPES[0])
    it = _interpreter(data)
    kernel = it.kernels[0]
    x = [np.zeros((1, 4, 4, 8), np.int8)] * 2
    per_call = elementwise.DIRECT_CALL_COST + 128
    calls_before = (elementwise.TABLE_BUILD_COST - 1) // per_call
    for _ in range(calls_before):
        it.run(x)
        assert kernel._table is None
    it.run(x)
    assert kernel._table is not None
    big = _interpreter(_binary_int8("MUL", np.random.default_rng(2), ([1, 200, 200], [1, 200, 200], [1, 200, 200])))
    if big is not None:
        assert 200 * 200 + elementwise.DIRECT_CALL_COST >= elementwise.TABLE_BUILD_COST
        big.run([np.ones((1, 200, 200), np.int8)] * 2)
        assert big.kernels[0]._table is not None


def _race(op: str, rng):
    import threading

    it = None
    while it is None:
        it = _interpreter(_binary_int8(op, rng, SHAPES[1]))
    kernel = it.kernels[0]
    xs = [rng.integers(-128, 128, (4, *s)).astype(np.int8) for s in SHAPES[1][:2]]
    x1, x2 = kernel.shapes.operands(xs[0], xs[1])
    want = kernel.shapes.result(kernel.quantized(x1, x2), np.int8)
    blocks = []
    formula = kernel.quantized

    def counting(a, b):
        blocks.append(np.shape(a))
        return formula(a, b)

    kernel.quantized = counting
    barrier = threading.Barrier(8)
    results, errors = [None] * 8, []

    def work(i):
        try:
            barrier.wait()
            results[i] = it.run_batch(xs)[0]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert blocks == [(32, 1)] * 8, (op, blocks)
    assert all(r.tobytes() == want.tobytes() for r in results), op
    assert not kernel._table.flags.writeable


def test_threads_racing_to_build_the_table_build_it_once_and_agree(monkeypatch):
    """Eight threads released together on a fresh kernel whose first call builds the table: one
    build (8 blocks of 32 rows), every thread's output the formula's, one published table."""
    from ops import elementwise

    monkeypatch.setattr(elementwise, "TABLE_BUILD_COST", 0)
    rng = np.random.default_rng(3)
    for op in TABULATED_OPS:
        _race(op, rng)
