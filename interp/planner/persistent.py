"""What each operator allocates in TFLM's arena outside the plan: its builtin-options struct, its
kernel's Init and Prepare persistent buffers, and the temporary TfLiteTensors its Prepare reads.

``model_allocations(model, kernels)`` gives one ``OpAllocations`` per operator. The sequence of a
kernel's Prepare is written as tokens, in the order TFLM's kernel makes its calls:

* ``I0``, ``I1``, … ``AllocateTempInputTensor(node, k)`` (nothing when the input is omitted),
  ``I*`` every input in order, ``O0`` … ``AllocateTempOutputTensor``, ``O*`` every output;
* ``P`` the next of the kernel's Prepare-time ``AllocatePersistentBuffer`` calls (the rest, if
  any, follow the last token).

The persistent buffers themselves come from the kernel: a microref kernel declares, in prepare,
``persistent_bytes``: TFLM's ``AllocatePersistentBuffer`` calls for that operator in call order,
Init's first (an ``int`` is a byte count, a ``str`` a TFLM struct of ``abi.STRUCTS`` whose size
depends on the build). ``INIT_CALLS`` says how many of them TFLM makes in Init. Operators whose
TFLM kernel allocates nothing persistent (``NO_PERSISTENT``) need no declaration. Kernels that
do not declare are sized by ``RULES`` here (the same facts, from the model alone).

Sources: tensorflow/lite/micro/kernels/*.cc (Init / Prepare), signal/micro/kernels/*.cc,
tensorflow/lite/core/api/flatbuffer_conversions.cc and micro_mutable_op_resolver.h (which parser
each builtin uses and what it allocates).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ..errors import MicrorefError
from ..model import Model, Operator, Tensor
from .abi import Build

# The builtin-options struct each operator's parser allocates (ParseXxx in
# flatbuffer_conversions.cc, chosen by MicroMutableOpResolver::AddXxx); others allocate none.
BUILTIN_STRUCTS = {
    "ADD": "TfLiteAddParams", "ARG_MAX": "TfLiteArgMaxParams", "ARG_MIN": "TfLiteArgMinParams",
    "AVERAGE_POOL_2D": "TfLitePoolParams", "BATCH_MATMUL": "TfLiteBatchMatMulParams",
    "CALL_ONCE": "TfLiteCallOnceParams", "CAST": "TfLiteCastParams",
    "CONCATENATION": "TfLiteConcatenationParams", "CONV_2D": "TfLiteConvParams",
    "CUMSUM": "TfLiteCumsumParams", "DEPTH_TO_SPACE": "TfLiteDepthToSpaceParams",
    "DEPTHWISE_CONV_2D": "TfLiteDepthwiseConvParams", "DIV": "TfLiteDivParams",
    "FULLY_CONNECTED": "TfLiteFullyConnectedParams", "GATHER": "TfLiteGatherParams",
    "IF": "TfLiteIfParams", "L2_NORMALIZATION": "TfLiteL2NormParams", "L2_POOL_2D": "TfLitePoolParams",
    "LEAKY_RELU": "TfLiteLeakyReluParams", "MAX_POOL_2D": "TfLitePoolParams", "MEAN": "TfLiteReducerParams",
    "MIRROR_PAD": "TfLiteMirrorPaddingParams", "MUL": "TfLiteMulParams", "PACK": "TfLitePackParams",
    "REDUCE_ALL": "TfLiteReducerParams", "REDUCE_MAX": "TfLiteReducerParams",
    "REDUCE_MIN": "TfLiteReducerParams", "RESHAPE": "TfLiteReshapeParams",
    "RESIZE_BILINEAR": "TfLiteResizeBilinearParams",
    "RESIZE_NEAREST_NEIGHBOR": "TfLiteResizeNearestNeighborParams", "SHAPE": "TfLiteShapeParams",
    "SOFTMAX": "TfLiteSoftmaxParams", "SPACE_TO_DEPTH": "TfLiteSpaceToDepthParams",
    "SPLIT": "TfLiteSplitParams", "SPLIT_V": "TfLiteSplitVParams", "SQUEEZE": "TfLiteSqueezeParams",
    "STRIDED_SLICE": "TfLiteStridedSliceParams", "SUB": "TfLiteSubParams", "SUM": "TfLiteReducerParams",
    "SVDF": "TfLiteSVDFParams", "TRANSPOSE_CONV": "TfLiteTransposeConvParams",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "TfLiteUnidirectionalSequenceLSTMParams",
    "UNPACK": "TfLiteUnpackParams", "VAR_HANDLE": "TfLiteVarHandleParams", "WHILE": "TfLiteWhileParams",
}

Alloc = int | str  # bytes, or a struct of abi.STRUCTS


@dataclass
class OpAllocations:
    """One operator's allocations outside the plan (see the module doc)."""

    subgraph: int
    op: int
    op_name: str
    builtin_struct: str | None
    init: list[Alloc] = field(default_factory=list)
    prepare_tokens: list[str] = field(default_factory=list)  # resolved: "T<tensor>" or "P"
    prepare: list[Alloc] = field(default_factory=list)
    unknown: str | None = None  # why this operator's allocations are not known (then a lower bound)

    def init_bytes(self, build: Build) -> list[int]:
        return [_size(a, build) for a in self.init]

    def prepare_events(self, build: Build) -> list[tuple[str, int]]:
        """("temp", tensor index) and ("persistent", bytes) in TFLM's order."""
        out: list[tuple[str, int]] = []
        pending = [_size(a, build) for a in self.prepare]
        for tok in self.prepare_tokens:
            if tok == "P":
                if pending:
                    out.append(("persistent", pending.pop(0)))
            else:
                out.append(("temp", int(tok[1:])))
        out += [("persistent", b) for b in pending]
        return out

    def persistent_bytes(self, build: Build) -> int:
        """Bytes requested by the kernel's AllocatePersistentBuffer calls (before alignment)."""
        return sum(self.init_bytes(build)) + sum(_size(a, build) for a in self.prepare)


def _size(a: Alloc, build: Build) -> int:
    if isinstance(a, str):
        return max(build.sizeof(a), 1)  # a C++ struct has at least one byte
    return int(a)


# ---------------------------------------------------------------------------------------- rules
def _t(tensors: list[Tensor], op: Operator, i: int) -> Tensor | None:
    return tensors[op.inputs[i]] if i < len(op.inputs) and op.inputs[i] >= 0 else None


def _int_array(rank: int) -> int:
    return 4 + 4 * rank  # TfLiteIntArrayGetSizeInBytes


def _out_dims_copy(tensors, op) -> list[Alloc]:
    # micro::CreateWritableTensorDimsWithCopy: a persistent TfLiteIntArray of the output's rank.
    return [_int_array(len(tensors[op.outputs[0]].shape))]


def _per_channel(dim: int):
    def rule(tensors, op) -> list[Alloc]:
        w = _t(tensors, op, 1)
        c = w.shape[dim] if w is not None and len(w.shape) > dim % max(len(w.shape), 1) else 0
        return [4 * c, 4 * c]
    return rule


def _fc(tensors, op) -> list[Alloc]:
    # CalculateOpDataFullyConnected: per-channel multipliers and shifts for a quantized filter
    # with more than one scale.
    x, w = _t(tensors, op, 0), _t(tensors, op, 1)
    if x is None or w is None or x.type_name == "FLOAT32" or w.quantization is None:
        return []
    if w.quantization.scales.size > 1:
        c = w.shape[0]
        return [4 * c, 4 * c]
    return []


def _softmax(tensors, op) -> list[Alloc]:
    # CalculateSoftmaxParams: two 513-entry int16 lookup tables for an int16 input.
    x = _t(tensors, op, 0)
    return [2 * 513, 2 * 513] if x is not None and x.type_name == "INT16" else []


def _reshape(tensors, op) -> list[Alloc]:
    return _out_dims_copy(tensors, op) if -1 in tensors[op.outputs[0]].shape else []


@dataclass(frozen=True)
class Rule:
    init: tuple[Alloc, ...] = ()  # structs Init allocates
    prepare: str = "I* O*"  # the Prepare token sequence
    persistent: Callable[[list[Tensor], Operator], list[Alloc]] | None = None  # Prepare's buffers


# TFLM's reference kernels (tensorflow/lite/micro/kernels) and the signal library.
RULES: dict[str, Rule] = {
    "ABS": Rule(("OpDataAbsRsqrt",), "I0 O0"), "RSQRT": Rule(("OpDataAbsRsqrt",), "I0 O0"),
    "SIN": Rule(), "COS": Rule(), "LOG": Rule(), "SQRT": Rule(), "SQUARE": Rule(), "LOGICAL_NOT": Rule(),
    "CEIL": Rule(), "EXP": Rule(), "ROUND": Rule(), "ZEROS_LIKE": Rule(), "CAST": Rule(),
    "FLOOR": Rule(prepare=""), "NEG": Rule(prepare=""), "ARG_MAX": Rule(prepare=""),
    "ARG_MIN": Rule(prepare=""), "LOGICAL_AND": Rule(prepare=""), "LOGICAL_OR": Rule(prepare=""),
    "MAXIMUM": Rule(prepare=""), "MINIMUM": Rule(prepare=""), "PACK": Rule(prepare=""),
    "UNPACK": Rule(prepare=""),
    "RELU": Rule(("ReluOpData",)), "RELU6": Rule(("Relu6OpData",)),
    "ADD": Rule(("OpDataAdd",)), "SUB": Rule(("OpDataSub",)), "MUL": Rule(("OpDataMul",)),
    "DIV": Rule(("OpDataDiv",)),
    "FLOOR_DIV": Rule(), "FLOOR_MOD": Rule(),  # their Init returns nullptr
    "SQUARED_DIFFERENCE": Rule(("OpDataSquaredDifference",)),
    "EQUAL": Rule(("OpDataComparison",), "I0 I1"), "NOT_EQUAL": Rule(("OpDataComparison",), "I0 I1"),
    "GREATER": Rule(("OpDataComparison",), "I0 I1"), "GREATER_EQUAL": Rule(("OpDataComparison",), "I0 I1"),
    "LESS": Rule(("OpDataComparison",), "I0 I1"), "LESS_EQUAL": Rule(("OpDataComparison",), "I0 I1"),
    "SELECT_V2": Rule(("OpDataSelect",)),
    "CONV_2D": Rule(("OpDataConv",), "O0 I0 I1 P P I0 I1 I2 O0", _per_channel(0)),
    "DEPTHWISE_CONV_2D": Rule(("OpDataConv",), "O0 I0 I1 P P I0 I1 I2 O0", _per_channel(3)),
    "FULLY_CONNECTED": Rule(("OpDataFullyConnected",), "I0 I1 I2 O0 P P", _fc),
    "AVERAGE_POOL_2D": Rule(("OpDataPooling",)), "MAX_POOL_2D": Rule(("OpDataPooling",)),
    "L2_POOL_2D": Rule((), "O0 I0 P", _out_dims_copy),
    "SOFTMAX": Rule(("SoftmaxParams",), "I0 O0 P P", _softmax),
    "LOG_SOFTMAX": Rule((), "I0 O0 P", lambda t, o: ["OpDataLogSoftmax"] if _t(t, o, 0).type_name == "INT8" else []),
    "LOGISTIC": Rule(("OpDataLogistic",), "I0 O0"), "TANH": Rule(("OpDataTanh",), "I0 I0 O0"),
    "HARD_SWISH": Rule(("HardSwishParams",)), "LEAKY_RELU": Rule(("OpDataLeakyRelu",)),
    "PRELU": Rule(("PreluParams",)), "ELU": Rule(("OpDataElu",)),
    "L2_NORMALIZATION": Rule(("L2NormalizationParams",)),
    "QUANTIZE": Rule(("OpDataQuantizeReference",)), "DEQUANTIZE": Rule(("DequantizeOpData",)),
    "PAD": Rule(("OpDataPad",)), "PADV2": Rule(("OpDataPad",)),
    "MIRROR_PAD": Rule(("OpDataMirrorPad",)),
    # reduce_common.cc: PrepareSimple reads the input, the axis and, for an int8 input, the output.
    "MEAN": Rule(("OpDataReduce",), "I0 O0 I1 I0 I1 Q0"), "SUM": Rule(("OpDataReduce",), "I0 O0 I1 I0 I1 Q0"),
    "REDUCE_MAX": Rule(("OpDataReduce",), "I0 I1 Q0 I0 O0 I1"),
    "REDUCE_MIN": Rule(("OpDataReduce",), "I0 I1 Q0 I0 O0 I1"),
    "REDUCE_ALL": Rule(("OpDataReduce",), "I0 O0 I1 I0 I1 Q0"),
    "RESHAPE": Rule((), "I0 O0 P", _reshape), "SQUEEZE": Rule(), "EXPAND_DIMS": Rule(),
    "STRIDED_SLICE": Rule(("StridedSliceParams",)), "SLICE": Rule(),
    "CONCATENATION": Rule(("OpDataConcatenation",), "I0 O0 I*"),
    "SPLIT": Rule(prepare="I0"), "SPLIT_V": Rule(prepare="I2"), "SHAPE": Rule(prepare=""),
    "TRANSPOSE": Rule(), "RESIZE_BILINEAR": Rule(), "RESIZE_NEAREST_NEIGHBOR": Rule(),
    "BATCH_TO_SPACE_ND": Rule(prepare="I0 O0"), "SPACE_TO_BATCH_ND": Rule(("SpaceToBatchParams",), "I0 O0"),
    "DEPTH_TO_SPACE": Rule((), "I0 O0 P", _out_dims_copy), "SPACE_TO_DEPTH": Rule((), "I0 O0 P", _out_dims_copy),
    "GATHER": Rule((), "I0 I1 O0 P", _out_dims_copy), "GATHER_ND": Rule((), "I0 I1 O0 P", _out_dims_copy),
    "EMBEDDING_LOOKUP": Rule((), "I0 I1 O0 P P", lambda t, o: [*_out_dims_copy(t, o), "OpDataEmbeddingLookup"]),
    "BROADCAST_ARGS": Rule(), "BROADCAST_TO": Rule(), "FILL": Rule(), "REVERSE_V2": Rule(),
    "DYNAMIC_UPDATE_SLICE": Rule(),
    "CUMSUM": Rule((), "I0 I1 O0 P", lambda t, o: ["OpDataCumSum"] if _t(t, o, 0).type_name == "INT8" else []),
    "TRANSPOSE_CONV": Rule(("OpDataTransposeConv",), "O0 I0 I1 P P I0 I1 I2 O0", _per_channel(0)),
    "SVDF": Rule(("OpDataSvdf",), "I0 I1 I2 I3 I4 O0"),
    "CIRCULAR_BUFFER": Rule(("OpDataCircularBuffer",)),
    "IF": Rule(("OpDataIf",), "I0"), "WHILE": Rule(("OpDataWhile",), ""),
    "CALL_ONCE": Rule(("OpDataCallOnce",), ""),
    "VAR_HANDLE": Rule(("OpDataVarHandle",), ""), "READ_VARIABLE": Rule(prepare="I0"),
    "ASSIGN_VARIABLE": Rule(("OpDataAssignVariable",), "I0 I1"),
}


def _tokens(spec: str, op: Operator, tensors: list[Tensor]) -> list[str]:
    out: list[str] = []
    for tok in spec.split():
        if tok == "P":
            out.append("P")
        elif tok == "Q0":  # the output, read only for an int8 input
            x = tensors[op.inputs[0]] if op.inputs and op.inputs[0] >= 0 else None
            if x is not None and x.type_name == "INT8" and op.outputs:
                out.append(f"T{op.outputs[0]}")
        elif tok in ("I*", "O*"):
            idx = op.inputs if tok == "I*" else op.outputs
            out += [f"T{t}" for t in idx if t >= 0]
        else:
            idx = op.inputs if tok[0] == "I" else op.outputs
            k = int(tok[1:])
            if k < len(idx) and idx[k] >= 0:
                out.append(f"T{idx[k]}")
    return out


def operator_allocations(model: Model, subgraph: int, op: Operator,
                         kernel_persistent: Sequence[Alloc] | None = None) -> OpAllocations:
    """One operator's allocations (module doc); ``kernel_persistent``: its kernel's declaration."""
    tensors = model.subgraphs[subgraph].tensors
    name = op.display_name
    builtin = BUILTIN_STRUCTS.get(op.op_name) if op.op_name != "CUSTOM" else None
    got = OpAllocations(subgraph, op.index, name, builtin)
    rule = RULES.get(name)
    if rule is None:
        got.unknown = "no rule for this operator's TFLM kernel"
        return got
    got.prepare_tokens = _tokens(rule.prepare, op, tensors)
    if kernel_persistent is not None:
        allocs = list(kernel_persistent)
        n_init = len(rule.init)
        got.init, got.prepare = allocs[:n_init], allocs[n_init:]
        return got
    got.init = list(rule.init)
    if rule.persistent is not None:
        try:
            got.prepare = list(rule.persistent(tensors, op))
        except (IndexError, KeyError, TypeError, ValueError) as e:
            got.unknown = f"cannot size its persistent buffers ({type(e).__name__}: {e})"
    return got


def model_allocations(model: Model, kernels: Mapping[tuple[int, int], Sequence[Alloc]] | None = None
                      ) -> dict[tuple[int, int], OpAllocations]:
    """Every operator's allocations; ``kernels`` maps (subgraph, op) to kernel declarations."""
    kernels = kernels or {}
    out = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            try:
                out[(sg.index, op.index)] = operator_allocations(model, sg.index, op, kernels.get((sg.index, op.index)))
            except MicrorefError:
                raise
    return out
