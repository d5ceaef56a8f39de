"""C struct layouts of TFLM's persistent and temporary arena allocations, for two builds.

TFLM's arena holds C/C++ structs whose sizes depend on the build: the pointer width (8 bytes on
the x86-64 tflite-micro wheel, 4 on a 32-bit MCU) and whether TFLM was compiled with
``USE_TFLM_COMPRESSION`` (the wheel is: its kernels' OpData carry two more scratch indices, its
``SubgraphAllocations`` a compressed-tensor list and its ``RecordingMicroAllocator`` one more
record). ``Build`` names one such configuration; ``Build.sizeof(name)`` lays out a struct of
``STRUCTS`` by the C rules (each field at its alignment, the size rounded up to the largest
alignment; a C++ derived class may start its own fields in its base's tail padding, the
Itanium ABI rule, declared with ``Base...`` as the first field).

Field types: ``i8 u8 bool i16 i32 f32 enum i64 f64 ptr size_t``, an array ``i32[8]``, another
struct of ``STRUCTS`` by name, or ``vptr`` (a virtual table pointer). Fields that exist only
with compression end in ``?c``.

Sources: tensorflow/lite/micro/{micro_allocator,recording_micro_allocator,micro_allocation_info,
micro_resource_variable}.h, arena_allocator/*.h, memory_planner/greedy_memory_planner.h,
core/c/common.h (TF_LITE_STATIC_MEMORY), core/c/builtin_op_data.h and the kernels' OpData.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_SCALARS = {"i8": 1, "u8": 1, "bool": 1, "i16": 2, "i32": 4, "f32": 4, "enum": 4, "i64": 8, "f64": 8}

# name -> fields. A field "Name..." (first) is a C++ base class whose tail padding may be reused.
STRUCTS: dict[str, tuple[str, ...]] = {
    # ---- the allocators (arena_allocator/, memory_planner/, micro_allocator.h)
    "SingleArenaBufferAllocator": ("vptr", "vptr", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32"),
    "RecordingSingleArenaBufferAllocator": ("SingleArenaBufferAllocator...", "size_t", "size_t",
                                            "size_t", "size_t"),
    "GreedyMemoryPlanner": ("vptr", "i32", "i32", "ptr", "ptr", "ptr", "ptr", "i32", "i32", "ptr", "bool"),
    "MicroAllocator": ("vptr", "ptr", "ptr", "ptr", "ptr", "bool", "size_t", "ptr", "size_t"),
    "RecordedAllocation": ("size_t", "size_t", "size_t"),
    "RecordingMicroAllocator": ("MicroAllocator...", "ptr", "RecordedAllocation", "RecordedAllocation",
                                "RecordedAllocation", "RecordedAllocation", "RecordedAllocation",
                                "RecordedAllocation", "RecordedAllocation?c", "RecordedAllocation"),
    "MicroBuiltinDataAllocator": ("vptr", "ptr"),
    "SubgraphAllocations": ("ptr", "ptr", "ptr?c"),
    "MicroResourceVariables": ("ptr", "i32", "i32"),
    "MicroResourceVariable": ("ptr", "ptr", "ptr", "size_t", "i8"),
    "ScratchBufferRequest": ("size_t", "i32", "i32"),
    "ScratchBufferHandle": ("ptr",),
    "AllocationInfo": ("size_t", "ptr", "i32", "i32", "i32", "bool"),
    "GreedyBufferRequirements": ("i32", "i32", "i32", "i32"),
    "GreedyListEntry": ("i32", "i32", "i32"),
    # ---- the TfLite structs (core/c/common.h with TF_LITE_STATIC_MEMORY)
    "TfLiteEvalTensor": ("ptr", "ptr", "enum"),
    "TfLiteTensor": ("enum", "ptr", "f32", "i32", "ptr", "ptr", "size_t", "enum", "enum", "bool"),
    "TfLiteNode": ("ptr", "ptr", "ptr", "ptr", "ptr", "ptr", "i32"),
    "NodeAndRegistration": ("TfLiteNode", "ptr"),
    "TfLiteAffineQuantization": ("ptr", "ptr", "i32"),
    "TfLitePaddingValues": ("i32", "i32", "i32", "i32"),
    # ---- builtin options (core/c/builtin_op_data.h), allocated by the op's parser
    "TfLiteAddParams": ("enum", "bool"),
    "TfLiteSubParams": ("enum", "bool"),
    "TfLiteMulParams": ("enum",),
    "TfLiteDivParams": ("enum",),
    "TfLiteArgMaxParams": ("enum",),
    "TfLiteArgMinParams": ("enum",),
    "TfLiteBatchMatMulParams": ("bool", "bool", "bool"),
    "TfLiteCallOnceParams": ("i32",),
    "TfLiteCastParams": ("enum", "enum"),
    "TfLiteConcatenationParams": ("i32", "enum"),
    "TfLiteConvParams": ("enum", "i32", "i32", "enum", "i32", "i32", "enum"),
    "TfLiteCumsumParams": ("bool", "bool"),
    "TfLiteDepthToSpaceParams": ("i32",),
    "TfLiteDepthwiseConvParams": ("enum", "i32", "i32", "i32", "enum", "i32", "i32"),
    # The wheel's parser allocates 32 bytes here, 16 more than this source's five fields: taken
    # as four more ints (measured on the wheel; the extra fields are not in /work/tflm-src).
    "TfLiteFullyConnectedParams": ("enum", "enum", "bool", "bool", "enum", "i32[4]"),
    "TfLiteGatherParams": ("i32", "i32"),
    "TfLiteIfParams": ("i32", "i32"),
    "TfLiteL2NormParams": ("enum",),
    "TfLiteLeakyReluParams": ("f32",),
    "TfLiteMirrorPaddingParams": ("enum",),
    "TfLitePackParams": ("i32", "i32"),
    "TfLitePoolParams": ("enum", "i32", "i32", "i32", "i32", "enum", "TfLitePaddingValues"),
    "TfLiteReducerParams": ("bool",),
    "TfLiteReshapeParams": ("i32[8]", "i32"),
    "TfLiteResizeBilinearParams": ("bool", "bool"),
    "TfLiteResizeNearestNeighborParams": ("bool", "bool"),
    "TfLiteShapeParams": ("enum",),
    "TfLiteSoftmaxParams": ("f32",),
    "TfLiteSpaceToDepthParams": ("i32",),
    "TfLiteSplitParams": ("i32",),
    "TfLiteSplitVParams": ("i32",),
    "TfLiteSqueezeParams": ("i32[8]", "i32"),
    "TfLiteStridedSliceParams": ("i32", "i32", "i32", "i32", "i32", "bool"),
    "TfLiteSVDFParams": ("i32", "enum", "bool"),
    "TfLiteTransposeConvParams": ("enum", "i32", "i32", "enum", "enum"),
    "TfLiteUnidirectionalSequenceLSTMParams": ("enum", "f32", "f32", "bool", "bool", "bool"),
    "TfLiteUnpackParams": ("i32", "i32"),
    "TfLiteVarHandleParams": ("ptr", "ptr"),
    "TfLiteWhileParams": ("i32", "i32"),
    # ---- kernels' OpData (tensorflow/lite/kernels/internal/types.h, micro/kernels/*)
    "ArithmeticParams": ("enum",) + ("i32",) * 12 + ("f32", "f32", "i64", "i64", "i16", "i16", "i32[5]"),
    "ComparisonParams": ("i32",) * 7 + ("bool",),
    "PadParams": ("i8", "i32[5]", "i8", "i32[5]", "enum"),
    "ConvParams": ("enum", "PaddingValues", "i16", "i16", "i16", "i16") + ("i32",) * 7 + ("f32", "f32"),
    "PaddingValues": ("i16", "i16", "i16", "i16"),
    "ConcatenationParams": ("i32", "ptr", "ptr", "i32", "i32", "f32"),
    "ReluParams": ("enum", "i32", "i32", "i32", "i32", "i32", "i32"),
    "QuantizationParams": ("i32", "f64"),
    "DequantizationParams": ("f64", "i32"),
    "SoftmaxParams": ("f64",) + ("i32",) * 6 + ("f32", "ptr", "ptr", "ptr", "ptr", "ptr"),
    "StridedSliceParams": ("i8", "i32[5]", "i8", "i32[5]", "i8", "i32[5]", "i16", "i16", "i16", "i16", "i16",
                           "bool"),
    "HardSwishParams": ("i16", "i16", "i16", "i32", "i16", "i32"),
    "PreluParams": ("i32",) * 7,
    "SpaceToBatchParams": ("i32",),
    "L2NormalizationParams": ("i32",),
    "FullyConnectedParams": ("i32",) * 7 + ("f32", "f32", "bool", "bool"),  # the wheel: no weights_format
    "CenterSizeEncoding": ("f32",) * 4,
    "TfLiteQuantizationParams": ("f32", "i32"),
    "ReluOpData": ("ReluParams",),
    "Relu6OpData": ("i32", "i32"),
    "OpDataAdd": ("bool",) + ("i32",) * 12 + ("f32", "f32"),
    "OpDataSub": ("bool",) + ("i32",) * 12,
    "OpDataMul": ("i32",) * 7 + ("f32", "f32"),
    "OpDataDiv": ("i32",) * 7,
    "OpDataAbsRsqrt": ("i32", "i32", "i32", "i32", "bool", "enum", "enum"),
    "OpDataConv": ("TfLitePaddingValues",) + ("i32",) * 5 + ("ptr", "ptr", "i32", "i32", "i32", "i32?c", "i32?c"),
    "OpDataFullyConnected": ("i32",) * 9 + ("ptr", "ptr", "bool", "i32?c", "i32?c"),
    "OpDataPooling": ("TfLitePaddingValues", "i32", "i32", "f32", "f32"),
    "OpDataLogistic": ("i32",) * 4,
    "OpDataTanh": ("i32",) * 4,
    "OpDataQuantizeReference": ("QuantizationParams", "i32", "i32", "i32"),
    "DequantizeOpData": ("DequantizationParams", "i32", "i32", "i32"),
    "OpDataReduce": ("i32",) * 6 + ("f32", "i32", "f32", "i32", "i32"),
    "OpDataPad": ("PadParams", "i32"),
    "OpDataConcatenation": ("ConcatenationParams", "i32[10]?c"),
    "OpDataComparison": ("ComparisonParams",),
    "OpDataSquaredDifference": ("bool", "ArithmeticParams"),
    "OpDataSelect": ("bool",),
    "OpDataElu": ("i8[256]",),
    "OpDataLeakyRelu": ("i32",) * 6,
    "OpDataMirrorPad": ("i32",) * 5,
    "OpDataFloorDivMod": ("bool",),
    "OpDataCumSum": ("i32",) * 9,
    "OpDataAddN": ("i32",) * 10,
    "OpDataLogSoftmax": ("i32",) * 5 + ("size_t", "size_t"),
    "OpDataEmbeddingLookup": ("f32", "size_t"),
    "OpDataSvdf": ("i32",) * 9,
    "OpDataTransposeConv": ("ConvParams", "i32", "i32?c", "i32?c", "i32", "ptr", "ptr"),
    "OpDataBatchMatmul": ("ptr", "ptr", "ptr", "bool", "bool", "bool"),
    "QuantizationOpDataBatchMatmul": ("i32",) * 7,
    "OpDataCircularBuffer": ("i32", "i32"),
    "OpDataIf": ("i32", "i32"),
    "OpDataWhile": ("i32", "i32"),
    "OpDataCallOnce": ("i32", "bool"),
    "OpDataVarHandle": ("i32",),
    "OpDataAssignVariable": ("i32?c",),
    "OpDataDetectionPostProcess": ("i32", "i32", "i32", "f32", "f32", "i32", "bool", "CenterSizeEncoding")
                                  + ("i32",) * 11 + ("TfLiteQuantizationParams",) * 3,
    "LstmSizeInfo": ("bool", "i32", "i32", "i32", "i32"),
    "CellStateInfo": ("f32", "i16", "i32"),
    "GateParameters": ("FullyConnectedParams", "FullyConnectedParams"),
    "InterGateParameters": ("ArithmeticParams", "ArithmeticParams", "ArithmeticParams"),
    "OpDataLSTM": ("LstmSizeInfo", "CellStateInfo", "enum", "GateParameters", "GateParameters",
                   "GateParameters", "GateParameters", "InterGateParameters", "i32[4]"),
    # the signal library (signal/micro/kernels/*.cc)
    "FilterbankConfig": ("i32", "ptr", "ptr", "ptr", "ptr", "ptr", "i32", "i32"),
    "SpectralSubtractionConfig": ("i32",) * 8 + ("bool",),
    "TFLMSignalEnergyParams": ("i32", "i32"),
    "TFLMSignalFilterBankParams": ("FilterbankConfig", "ptr"),
    "TFLMSignalFramerParams": ("i32", "i32", "i32", "i32", "bool", "ptr", "ptr"),
    "TFLMSignalFrontendDelayParams": ("i32", "i32", "i32", "ptr", "ptr"),
    "TFLMSignalLogParams": ("i32", "i32"),
    "TFLMSignalSpectralSubtractionParams": ("SpectralSubtractionConfig", "ptr", "size_t"),
    "TFLMSignalStackerParams": ("i32", "i32", "i32", "i32", "size_t", "size_t", "bool", "ptr", "ptr"),
    "TFLMSignalWindowParams": ("i32", "i32"),
    "TfLiteAudioFrontendIrfftParams": ("i32", "i32", "i32", "i32", "enum", "ptr"),
    "TfLitePcanParams": ("i32",),
}


@dataclass(frozen=True)
class Build:
    """One TFLM build configuration: pointer width and compression."""

    name: str
    pointer_bytes: int
    compression: bool
    int64_align: int = 8

    def _scalar(self, t: str) -> tuple[int, int]:
        if t in ("ptr", "size_t", "vptr"):
            return self.pointer_bytes, self.pointer_bytes
        if t in ("i64", "f64"):
            return 8, self.int64_align
        return _SCALARS[t], _SCALARS[t]

    @functools.cache  # noqa: B019 (two frozen builds, kept for the process)
    def layout(self, name: str) -> tuple[int, int, int]:
        """(sizeof, alignof, data size without tail padding) of struct ``name``."""
        offset, align = 0, 1
        for field in STRUCTS[name]:
            if field.endswith("?c"):
                if not self.compression:
                    continue
                field = field[:-2]
            base = field.endswith("...")
            size, a, dsize = self.field(field.rstrip("."))
            offset = (offset + a - 1) // a * a
            offset += dsize if base else size
            align = max(align, a)
        return (offset + align - 1) // align * align, align, offset

    def field(self, t: str) -> tuple[int, int, int]:
        m = re.fullmatch(r"(\w+)\[(\d+)\]", t)
        if m:
            size, a, _ = self.field(m.group(1))
            return size * int(m.group(2)), a, size * int(m.group(2))
        if t in STRUCTS:
            return self.layout(t)
        size, a = self._scalar(t)
        return size, a, size

    def sizeof(self, name: str) -> int:
        return self.layout(name)[0]

    def alignof(self, name: str) -> int:
        return self.layout(name)[1]


WHEEL = Build("x86-64, USE_TFLM_COMPRESSION (the tflite-micro wheel)", pointer_bytes=8, compression=True)
MCU32 = Build("32-bit MCU, default build (no compression)", pointer_bytes=4, compression=False)
