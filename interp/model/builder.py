"""Write ``.tflite`` models from Python: small graphs of builtin operators, for tests and examples.

    import numpy as np
    from interp.builder import ModelBuilder

    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, 3], "INT8", scale=0.05, zero_point=-3)
    w = b.constant("w", np.ones((4, 3, 3, 3), np.int8), scale=[0.01, 0.02, 0.03, 0.04],
                   zero_point=0, quantized_dimension=0)
    bias = b.constant("bias", np.zeros(4, np.int32), scale=[5e-4, 1e-3, 1.5e-3, 2e-3])
    y = b.tensor("y", [1, 8, 8, 4], "INT8", scale=0.1, zero_point=5)
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_w=1, stride_h=1,
         fused_activation_function="RELU")
    b.output(y)
    data = b.build()          # bytes of a .tflite flatbuffer (schema version 3)

Tensors are referred to by the integer index the builder returns; ``None`` (or -1) in an
operator's input list marks an omitted optional input. Operator options are given by the same
snake_case names under which :func:`interp.model.load_model` reports them in
``Operator.options`` (``stride_w``, ``fused_activation_function``, ``depth_multiplier``, ...);
enum-typed options also take their schema names as strings (``"SAME"``, ``"RELU6"``,
``"INT64"``). Every operator that has an options table gets one, with unset fields at their
schema defaults, as the TFLite converter writes them.

The file is written with ``flatbuffers.Builder`` and the generated builder functions of the
``tflite`` package, so the layout is the schema's own; constant data is 16-byte aligned, like the
converter's.
"""
from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

from .parse import (
    BUILTIN_OPERATOR_NAMES,
    BUILTIN_OPTIONS2_NAMES,
    BUILTIN_OPTIONS_NAMES,
    OPTION_FIELD_ENUMS,
    TENSOR_TYPES,
    _snake,  # the accessor-name conversion interp.model applies
)

__all__ = ["ModelBuilder", "SubgraphBuilder", "TENSOR_TYPE_CODES", "options_table_for"]

SCHEMA_VERSION = 3
# OperatorCode.deprecated_builtin_code is an int8; codes past it are written as this placeholder.
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127
_DATA_ALIGNMENT = 16

TENSOR_TYPE_CODES: dict[str, int] = {name: code for code, (name, _, _) in TENSOR_TYPES.items()}
_OPERATOR_CODES: dict[str, int] = {name: code for code, name in BUILTIN_OPERATOR_NAMES.items()}
_OPTIONS_CODES: dict[str, int] = {name: code for code, name in BUILTIN_OPTIONS_NAMES.items()}
_OPTIONS2_CODES: dict[str, int] = {name: code for code, name in BUILTIN_OPTIONS2_NAMES.items()}
_NUMPY_TYPE_NAMES = {
    np.dtype(np.float32): "FLOAT32", np.dtype(np.float16): "FLOAT16", np.dtype(np.float64): "FLOAT64",
    np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8", np.dtype(np.int16): "INT16",
    np.dtype(np.uint16): "UINT16", np.dtype(np.int32): "INT32", np.dtype(np.uint32): "UINT32",
    np.dtype(np.int64): "INT64", np.dtype(np.uint64): "UINT64", np.dtype(np.bool_): "BOOL",
    np.dtype(np.complex64): "COMPLEX64", np.dtype(np.complex128): "COMPLEX128",
}

# Operators whose options table is not named after the operator.
_OPTIONS_TABLE_OVERRIDES = {
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions", "SUM": "ReducerOptions", "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions", "REDUCE_ANY": "ReducerOptions",
    "REDUCE_ALL": "ReducerOptions", "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions", "LSTM": "LSTMOptions", "RNN": "RNNOptions",
    "SVDF": "SVDFOptions", "CONCAT_EMBEDDINGS": "ConcatEmbeddingsOptions",
    "LOCAL_RESPONSE_NORMALIZATION": "LocalResponseNormalizationOptions",
    "L2_NORMALIZATION": "L2NormOptions", "LSH_PROJECTION": "LSHProjectionOptions",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "SequenceRNNOptions",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "BidirectionalSequenceLSTMOptions",
    "BIDIRECTIONAL_SEQUENCE_RNN": "BidirectionalSequenceRNNOptions",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTMOptions",
    "RFFT2D": "Rfft2dOptions", "TRANSPOSE_CONV": "TransposeConvOptions",
}

def _snake_every_word(name: str) -> str:
    # "DilationHFactor" -> "dilation_h_factor", the spelling of the schema itself.
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _tflite_module(name: str):
    return importlib.import_module(f"tflite.{name}")


def _enum_value(enum_name: str, value: str) -> int:
    cls = getattr(_tflite_module(enum_name), enum_name)
    code = getattr(cls, value.upper(), None)
    if not isinstance(code, int):
        names = sorted(k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int))
        raise ValueError(f"{value!r} is not a {enum_name} (one of {', '.join(names)})")
    return code


def options_table_for(op_name: str) -> str | None:
    """The name of the builtin options table an operator carries (``"Conv2DOptions"``), or None."""
    if op_name in _OPTIONS_TABLE_OVERRIDES:
        return _OPTIONS_TABLE_OVERRIDES[op_name]
    wanted = op_name.replace("_", "").lower() + "options"
    for name in list(_OPTIONS_CODES) + list(_OPTIONS2_CODES):
        if name.lower() == wanted:
            return name
    return None


@dataclass
class _OptionField:
    """One field of a generated options table: its Add function and, for vectors, its element type."""

    add: Any
    start_vector: Any = None
    element_flags: Any = None  # flatbuffers.number_types.*Flags of a vector's elements
    is_string: bool = False


def _option_fields(table: str) -> dict[str, _OptionField]:
    """snake_case field name -> how to write it, read from the generated module of ``table``."""
    module = _tflite_module(table)
    cls = getattr(module, table)
    fields = {}
    prefix = f"{table}Add"
    for attr, fn in vars(module).items():
        if not attr.startswith(prefix) or not callable(fn):
            continue
        camel = attr[len(prefix):]
        entry = _OptionField(add=fn)
        accessor = getattr(cls, camel, None)
        accessor_source = inspect.getsource(accessor) if accessor else ""
        start = getattr(module, f"{table}Start{camel}Vector", None)
        if start is not None:
            match = re.search(r"_tab\.Get\(flatbuffers\.number_types\.(\w+Flags)", accessor_source)
            if match is None:
                # A vector of tables or strings: no op microref runs has one.
                continue
            entry.start_vector = start
            entry.element_flags = getattr(flatbuffers.number_types, match.group(1))
        elif "_tab.String(" in accessor_source:
            entry.is_string = True
        elif "PrependUOffsetTRelativeSlot" in inspect.getsource(fn):
            continue  # a nested table (some StableHLO options): not supported
        fields[_snake(camel)] = entry
        fields.setdefault(_snake_every_word(camel), entry)
    return fields


@dataclass
class _Tensor:
    name: str
    shape: tuple[int, ...]
    type_name: str
    scales: list[float] | None
    zero_points: list[int] | None
    quantized_dimension: int
    data: bytes | None
    is_variable: bool
    shape_signature: tuple[int, ...] | None


@dataclass
class _Operator:
    op_name: str
    version: int
    custom_code: str | None
    inputs: list[int]
    outputs: list[int]
    options_table: str | None
    options: dict[str, Any]
    custom_options: bytes
    intermediates: list[int] = field(default_factory=list)


class SubgraphBuilder:
    """The tensors, operators, inputs and outputs of one subgraph (see ``ModelBuilder.subgraph``).

    Methods that create tensors return the tensor's index in this subgraph, which is what its
    operators, ``input`` and ``output`` take.
    """

    def __init__(self, name: str = "main", index: int = 0):
        self._tensors: list[_Tensor] = []
        self._operators: list[_Operator] = []
        self._inputs: list[int] = []
        self._outputs: list[int] = []
        self.subgraph_name = name
        self.index = index  # the subgraph's index in the model (what IF/WHILE/CALL_ONCE options name)

    # ------------------------------------------------------------------ tensors
    def tensor(self, name: str, shape: Sequence[int], dtype: str | np.dtype | type = "INT8", *,
               scale: float | Sequence[float] | None = None,
               zero_point: int | Sequence[int] | None = None,
               quantized_dimension: int = 0, variable: bool = False,
               shape_signature: Sequence[int] | None = None) -> int:
        """An activation tensor (no data). ``dtype`` is a TensorType name or a numpy dtype.

        ``scale`` and ``zero_point`` are per tensor when scalars, per channel (along
        ``quantized_dimension``) when sequences; a scalar zero point is repeated for every
        channel scale. Without ``scale`` the tensor has no quantization parameters.
        """
        return self._add_tensor(name, shape, _type_name(dtype), scale, zero_point,
                                quantized_dimension, None, variable, shape_signature)

    def input(self, name: str, shape: Sequence[int], dtype: str | np.dtype | type = "INT8", **quant) -> int:
        """A new tensor that is also the next input of the model (see ``tensor`` for arguments)."""
        index = self.tensor(name, shape, dtype, **quant)
        self._inputs.append(index)
        return index

    def constant(self, name: str, values, dtype: str | np.dtype | type | None = None, *,
                 scale: float | Sequence[float] | None = None,
                 zero_point: int | Sequence[int] | None = None,
                 quantized_dimension: int = 0) -> int:
        """A constant tensor holding ``values`` (its shape is ``values.shape``).

        ``dtype`` defaults to the array's own; the values are converted to it. ``"INT4"`` packs
        the values (which must lie in [-8, 7]) two per byte, low nibble first, as TFLM reads them.
        """
        array = np.asarray(values)
        type_name = _type_name(dtype if dtype is not None else array.dtype)
        if type_name == "INT4":
            data = _pack_int4(array)
        else:
            np_dtype = TENSOR_TYPES[TENSOR_TYPE_CODES[type_name]][1]
            if np_dtype is None:
                raise ValueError(f"constant {name!r}: cannot hold data of type {type_name}")
            converted = array.astype(np_dtype)
            if np_dtype.kind in "iu" and not np.array_equal(converted, array):
                raise ValueError(f"constant {name!r}: values do not fit in {type_name}")
            data = converted.astype(np_dtype.newbyteorder("<")).tobytes()
        return self._add_tensor(name, array.shape, type_name, scale, zero_point, quantized_dimension,
                                data, False, None)

    def _add_tensor(self, name, shape, type_name, scale, zero_point, quantized_dimension, data,
                    variable, shape_signature) -> int:
        shape = tuple(int(d) for d in shape)
        scales = zero_points = None
        if scale is not None:
            scales = [float(s) for s in np.atleast_1d(np.asarray(scale, np.float64))]
            zps = np.atleast_1d(np.asarray(0 if zero_point is None else zero_point, np.int64))
            if zps.size == 1 and len(scales) > 1:
                zps = np.repeat(zps, len(scales))
            if zps.size != len(scales):
                raise ValueError(f"tensor {name!r}: {zps.size} zero points for {len(scales)} scales")
            zero_points = [int(z) for z in zps]
            if len(scales) > 1 and not 0 <= quantized_dimension < max(len(shape), 1):
                raise ValueError(f"tensor {name!r}: quantized_dimension {quantized_dimension} is outside "
                                 f"shape {list(shape)}")
        elif zero_point is not None:
            raise ValueError(f"tensor {name!r}: a zero point needs a scale")
        self._tensors.append(_Tensor(name, shape, type_name, scales, zero_points, int(quantized_dimension),
                                     data, bool(variable),
                                     None if shape_signature is None else tuple(int(d) for d in shape_signature)))
        return len(self._tensors) - 1

    # ------------------------------------------------------------------ graph
    def op(self, op_name: str, inputs: Iterable[int | None], outputs: Iterable[int], *,
           op_version: int = 1, custom_code: str | None = None, custom_options: bytes = b"",
           options_table: str | None = None, intermediates: Iterable[int] = (), **options) -> int:
        """Append an operator; returns its index in the subgraph.

        ``op_name`` is a BuiltinOperator name (``"CONV_2D"``) or ``"CUSTOM"`` with
        ``custom_code``. ``options`` are the builtin options by snake_case field name; enum
        fields take names as strings. ``options_table`` overrides which options table is
        written (by default the one the operator's schema pairs it with, if any).
        """
        if op_name not in _OPERATOR_CODES:
            raise ValueError(f"unknown builtin operator {op_name!r}")
        if op_name == "CUSTOM" and not custom_code:
            raise ValueError("a CUSTOM operator needs a custom_code")
        table = options_table or (None if op_name == "CUSTOM" else options_table_for(op_name))
        if options and table is None:
            raise ValueError(f"{op_name} has no builtin options table; got options {sorted(options)}")
        known = _option_fields(table) if table is not None else {}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"{op_name}: {table} has no field(s) {unknown}; it has {sorted(known)}")
        resolved = {key: value if known[key].is_string else self._option_value(op_name, key, value)
                    for key, value in options.items()}
        in_idx = [-1 if t is None else self._check_index(t, op_name, allow_omitted=True) for t in inputs]
        out_idx = [self._check_index(t, op_name) for t in outputs]
        inter_idx = [self._check_index(t, op_name) for t in intermediates]
        self._operators.append(_Operator(op_name, int(op_version), custom_code, in_idx, out_idx, table,
                                         resolved, bytes(custom_options), inter_idx))
        return len(self._operators) - 1

    @staticmethod
    def _option_value(op_name: str, key: str, value):
        if isinstance(value, str):
            enum_name = OPTION_FIELD_ENUMS.get(key)  # fields holding a schema enum take its names too
            if enum_name is None:
                raise ValueError(f"{op_name} option {key}={value!r}: this field takes a number, not a name")
            return _enum_value(enum_name, value)
        if isinstance(value, (np.generic,)):
            return value.item()
        return value

    def _check_index(self, t, op_name: str, allow_omitted: bool = False) -> int:
        index = int(t)
        if allow_omitted and index == -1:
            return -1
        if not 0 <= index < len(self._tensors):
            raise ValueError(f"{op_name}: tensor {index} does not exist ({len(self._tensors)} tensors so far)")
        return index

    def output(self, *tensors: int) -> None:
        """Mark tensors as the model's next outputs, in order."""
        for t in tensors:
            self._outputs.append(self._check_index(t, "output"))

    def mark_input(self, *tensors: int) -> None:
        """Mark existing tensors as the model's next inputs, in order."""
        for t in tensors:
            self._inputs.append(self._check_index(t, "input"))

    @staticmethod
    def _write_operator_code(fb, op_name, custom_code, version):
        OC = _tflite_module("OperatorCode")
        code = _OPERATOR_CODES[op_name]
        custom = fb.CreateString(custom_code) if custom_code else None
        OC.OperatorCodeStart(fb)
        OC.OperatorCodeAddDeprecatedBuiltinCode(fb, min(code, _PLACEHOLDER_FOR_GREATER_OP_CODES))
        OC.OperatorCodeAddBuiltinCode(fb, code)
        OC.OperatorCodeAddVersion(fb, version)
        if custom is not None:
            OC.OperatorCodeAddCustomCode(fb, custom)
        return OC.OperatorCodeEnd(fb)

    @staticmethod
    def _write_buffer(fb, data: bytes):
        B = _tflite_module("Buffer")
        vector = None
        if data:
            fb.StartVector(1, len(data), _DATA_ALIGNMENT)
            fb.head -= len(data)
            fb.Bytes[fb.head:fb.head + len(data)] = data
            vector = fb.EndVector()
        B.BufferStart(fb)
        if vector is not None:
            B.BufferAddData(fb, vector)
        return B.BufferEnd(fb)

    @staticmethod
    def _write_tensor(fb, t: _Tensor, buffer_index: int):
        Q = _tflite_module("QuantizationParameters")
        T = _tflite_module("Tensor")
        name = fb.CreateString(t.name)
        shape = _scalar_vector(fb, T.TensorStartShapeVector, fb.PrependInt32, t.shape)
        signature = None
        if t.shape_signature is not None:
            signature = _scalar_vector(fb, T.TensorStartShapeSignatureVector, fb.PrependInt32, t.shape_signature)
        quant = None
        if t.scales is not None:
            scales = _scalar_vector(fb, Q.QuantizationParametersStartScaleVector, fb.PrependFloat32, t.scales)
            zps = _scalar_vector(fb, Q.QuantizationParametersStartZeroPointVector, fb.PrependInt64, t.zero_points)
            Q.QuantizationParametersStart(fb)
            Q.QuantizationParametersAddScale(fb, scales)
            Q.QuantizationParametersAddZeroPoint(fb, zps)
            Q.QuantizationParametersAddQuantizedDimension(fb, t.quantized_dimension)
            quant = Q.QuantizationParametersEnd(fb)
        T.TensorStart(fb)
        T.TensorAddShape(fb, shape)
        T.TensorAddType(fb, TENSOR_TYPE_CODES[t.type_name])
        T.TensorAddBuffer(fb, buffer_index)
        T.TensorAddName(fb, name)
        if quant is not None:
            T.TensorAddQuantization(fb, quant)
        if t.is_variable:
            T.TensorAddIsVariable(fb, True)
        if signature is not None:
            T.TensorAddShapeSignature(fb, signature)
        return T.TensorEnd(fb)

    @staticmethod
    def _write_options(fb, op: _Operator):
        table = op.options_table
        fields = _option_fields(table)
        module = _tflite_module(table)
        # Vectors and strings must be finished before their table starts.
        vectors = {}
        for key, value in op.options.items():
            f = fields[key]
            if f.start_vector is not None:
                prepend = getattr(fb, "Prepend" + f.element_flags.__name__[:-len("Flags")])
                vectors[key] = _scalar_vector(fb, f.start_vector, prepend, list(value))
            elif f.is_string:
                vectors[key] = fb.CreateString(str(value))
        getattr(module, f"{table}Start")(fb)
        for key, value in op.options.items():
            fields[key].add(fb, vectors.get(key, value))
        return getattr(module, f"{table}End")(fb)

    def _write_operator(self, fb, op: _Operator, opcode_index: int):
        Op = _tflite_module("Operator")
        options = self._write_options(fb, op) if op.options_table else None
        inputs = _scalar_vector(fb, Op.OperatorStartInputsVector, fb.PrependInt32, op.inputs)
        outputs = _scalar_vector(fb, Op.OperatorStartOutputsVector, fb.PrependInt32, op.outputs)
        intermediates = None
        if op.intermediates:
            intermediates = _scalar_vector(fb, Op.OperatorStartIntermediatesVector, fb.PrependInt32,
                                           op.intermediates)
        custom = None
        if op.custom_options:
            custom = _scalar_vector(fb, Op.OperatorStartCustomOptionsVector, fb.PrependUint8, op.custom_options)
        Op.OperatorStart(fb)
        Op.OperatorAddOpcodeIndex(fb, opcode_index)
        Op.OperatorAddInputs(fb, inputs)
        Op.OperatorAddOutputs(fb, outputs)
        if options is not None:
            if op.options_table in _OPTIONS_CODES:
                Op.OperatorAddBuiltinOptionsType(fb, _OPTIONS_CODES[op.options_table])
                Op.OperatorAddBuiltinOptions(fb, options)
            else:
                Op.OperatorAddBuiltinOptions2Type(fb, _OPTIONS2_CODES[op.options_table])
                Op.OperatorAddBuiltinOptions2(fb, options)
        if custom is not None:
            Op.OperatorAddCustomOptions(fb, custom)
        if intermediates is not None:
            Op.OperatorAddIntermediates(fb, intermediates)
        return Op.OperatorEnd(fb)

    def _write_subgraph(self, fb, tensors, operators):
        S = _tflite_module("SubGraph")
        name = fb.CreateString(self.subgraph_name)
        tensor_vector = _offset_vector(fb, S.SubGraphStartTensorsVector, tensors)
        inputs = _scalar_vector(fb, S.SubGraphStartInputsVector, fb.PrependInt32, self._inputs)
        outputs = _scalar_vector(fb, S.SubGraphStartOutputsVector, fb.PrependInt32, self._outputs)
        operator_vector = _offset_vector(fb, S.SubGraphStartOperatorsVector, operators)
        S.SubGraphStart(fb)
        S.SubGraphAddTensors(fb, tensor_vector)
        S.SubGraphAddInputs(fb, inputs)
        S.SubGraphAddOutputs(fb, outputs)
        S.SubGraphAddOperators(fb, operator_vector)
        S.SubGraphAddName(fb, name)
        return S.SubGraphEnd(fb)



class ModelBuilder(SubgraphBuilder):
    """Collects subgraphs of tensors and operators and writes them as a ``.tflite`` model.

    The builder itself is subgraph 0 (the one TFLM invokes); ``subgraph(name)`` adds another
    (the branches of IF, the cond and body of WHILE, CALL_ONCE's init), whose ``index`` the
    control-flow operator's options name. ``build()`` returns the bytes of the model; the
    builder can keep being extended and built again.
    """

    def __init__(self, description: str = "microref ModelBuilder"):
        super().__init__("main", 0)
        self.description = description
        self.subgraphs: list[SubgraphBuilder] = [self]

    def subgraph(self, name: str = "") -> SubgraphBuilder:
        """A new, empty subgraph (index 1, 2, ... in creation order) with the same methods as the
        builder (``tensor``, ``input``, ``constant``, ``op``, ``output``, ``mark_input``)."""
        g = SubgraphBuilder(name or f"subgraph_{len(self.subgraphs)}", len(self.subgraphs))
        self.subgraphs.append(g)
        return g

    # ------------------------------------------------------------------ writing
    def build(self) -> bytes:
        """The model as the bytes of a ``.tflite`` flatbuffer (file identifier ``TFL3``)."""
        fb = flatbuffers.Builder(1024)
        graphs = self.subgraphs
        codes, code_index = self._operator_codes()

        # Buffer 0 is the empty buffer every tensor without data points to.
        buffer_of_tensor = {}
        datas = [b""]
        for g in graphs:
            for i, t in enumerate(g._tensors):
                if t.data:
                    buffer_of_tensor[(g.index, i)] = len(datas)
                    datas.append(t.data)
        buffers = [self._write_buffer(fb, d) for d in datas]

        subgraphs = []
        for g in graphs:
            tensors = [self._write_tensor(fb, t, buffer_of_tensor.get((g.index, i), 0))
                       for i, t in enumerate(g._tensors)]
            operators = [self._write_operator(fb, op, code_index[(op.op_name, op.custom_code, op.version)])
                         for op in g._operators]
            subgraphs.append(g._write_subgraph(fb, tensors, operators))
        code_offsets = [self._write_operator_code(fb, *c) for c in codes]

        M = _tflite_module("Model")
        description = fb.CreateString(self.description)
        code_vector = _offset_vector(fb, M.ModelStartOperatorCodesVector, code_offsets)
        subgraph_vector = _offset_vector(fb, M.ModelStartSubgraphsVector, subgraphs)
        buffer_vector = _offset_vector(fb, M.ModelStartBuffersVector, buffers)
        M.ModelStart(fb)
        M.ModelAddVersion(fb, SCHEMA_VERSION)
        M.ModelAddOperatorCodes(fb, code_vector)
        M.ModelAddSubgraphs(fb, subgraph_vector)
        M.ModelAddDescription(fb, description)
        M.ModelAddBuffers(fb, buffer_vector)
        fb.Finish(M.ModelEnd(fb), file_identifier=b"TFL3")
        return bytes(fb.Output())

    def _operator_codes(self):
        codes, index = [], {}
        for g in self.subgraphs:
            for op in g._operators:
                key = (op.op_name, op.custom_code, op.version)
                if key not in index:
                    index[key] = len(codes)
                    codes.append(key)
        return codes, index


def _type_name(dtype) -> str:
    if isinstance(dtype, str):
        name = dtype.upper()
        if name not in TENSOR_TYPE_CODES:
            raise ValueError(f"unknown tensor type {dtype!r} (one of {', '.join(TENSOR_TYPE_CODES)})")
        return name
    try:
        return _NUMPY_TYPE_NAMES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ValueError(f"no TFLite tensor type for numpy dtype {dtype!r}") from None


def _pack_int4(values: np.ndarray) -> bytes:
    flat = np.asarray(values).reshape(-1).astype(np.int64)
    if flat.size and (flat.min() < -8 or flat.max() > 7):
        raise ValueError("int4 values must lie in [-8, 7]")
    nibbles = (flat & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()


def _scalar_vector(fb, start, prepend, values: Sequence) -> int:
    values = list(values)
    start(fb, len(values))
    for v in reversed(values):
        prepend(v)
    return fb.EndVector()


def _offset_vector(fb, start, offsets: Sequence[int]) -> int:
    start(fb, len(offsets))
    for off in reversed(offsets):
        fb.PrependUOffsetTRelative(off)
    return fb.EndVector()
