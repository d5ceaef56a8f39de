"""An ESTIMATE of TFLM's persistent "tail": what the arena needs besides the planned head.

The head (activations and scratch) is exact; the tail depends on kernel implementation details
(OpData struct sizes, pointer width, alignment padding) that the model does not carry, so it is
estimated from per-operator sizes measured on the x86-64 tflite-micro wheel.
"""
from __future__ import annotations

from collections.abc import Sequence

from ..model import Model
from .lifetimes import ONLINE, align_up
from .scratch import ScratchRequest

# Persistent ("tail") bytes TFLM allocates per operator, measured for the x86-64 tflite-micro
# wheel's reference kernels with the RecordingMicroAllocator (print_allocations' categories):
# kernel OpData from AllocatePersistentBuffer, and the builtin-options struct the op's parser
# allocates. Per-channel quantized CONV/DEPTHWISE (and per-channel FC) add 2 int32 arrays of one
# entry per output channel. Ops not listed use _DEFAULT_* and make the estimate rougher.
_OP_DATA_BYTES = {
    "FULLY_CONNECTED": 72, "CONV_2D": 80, "DEPTHWISE_CONV_2D": 80, "AVERAGE_POOL_2D": 32,
    "MAX_POOL_2D": 32, "SOFTMAX": 80, "ADD": 60, "SUB": 60, "MUL": 48, "PAD": 56, "PADV2": 56,
    "MEAN": 44, "SUM": 44, "RESHAPE": 0, "TRANSPOSE": 0, "SQUEEZE": 0, "QUANTIZE": 24,
    "DEQUANTIZE": 24, "LOGISTIC": 24, "TANH": 24, "CONCATENATION": 64, "STRIDED_SLICE": 120,
    "RELU": 16, "RELU6": 16, "LEAKY_RELU": 16, "HARD_SWISH": 32,
}
_BUILTIN_DATA_BYTES = {
    "FULLY_CONNECTED": 32, "CONV_2D": 28, "DEPTHWISE_CONV_2D": 28, "AVERAGE_POOL_2D": 40,
    "MAX_POOL_2D": 40, "SOFTMAX": 4, "RESHAPE": 36, "ADD": 8, "SUB": 8, "MUL": 4, "PAD": 0,
    "PADV2": 0, "TRANSPOSE": 0, "MEAN": 4, "SUM": 4, "CONCATENATION": 8, "STRIDED_SLICE": 24,
    "SQUEEZE": 36, "QUANTIZE": 0, "DEQUANTIZE": 0, "LOGISTIC": 0, "TANH": 0, "RELU": 0,
    "RELU6": 0, "LEAKY_RELU": 4, "HARD_SWISH": 0,
}
_DEFAULT_OP_DATA = 64
_DEFAULT_BUILTIN_DATA = 16
_EVAL_TENSOR = 24  # sizeof(TfLiteEvalTensor)
_NODE_AND_REGISTRATION = 64
_TFLITE_TENSOR = 64  # persistent TfLiteTensor for each graph input and output
_QUANT_STRUCT = 24  # TfLiteAffineQuantization
_ALLOCATORS = 488  # allocator objects, planner, SubgraphAllocations: fixed per interpreter
_SCRATCH_HANDLE = 8  # one ScratchBufferHandle (a pointer) per scratch request


def estimate_tail(model: Model, requests: Sequence[ScratchRequest] = (),
                  offline: list[int] | None = None) -> dict[str, int]:
    """An ESTIMATE of TFLM's persistent "Arena allocation tail", by kind, plus ``total``.

    The head (the planned activations) is exact; the tail depends on kernel implementation
    details (OpData struct sizes, pointer width, alignment padding) that the model does not
    carry, so it is estimated from per-operator sizes measured on the x86-64 tflite-micro wheel.
    On the eight sample models the estimate is within 0-40 bytes of TFLM's tail (the alignment
    padding between persistent buffers is approximated). A 32-bit MCU build has 4-byte pointers
    and so a smaller tail; CMSIS-NN/Xtensa kernels allocate different OpData.
    """
    sg0 = model.main
    n_tensors = sum(len(sg.tensors) for sg in model.subgraphs)
    n_ops = sum(len(sg.operators) for sg in model.subgraphs)
    persistent_structs: list[int] = []  # kernel OpData
    persistent_arrays: list[int] = []  # per-channel multipliers/shifts, lookup tables
    builtin = 0
    unknown = set()
    for sg in model.subgraphs:
        for op in sg.operators:
            name = op.op_name
            if name not in _OP_DATA_BYTES:
                unknown.add(name)
            od = _OP_DATA_BYTES.get(name, _DEFAULT_OP_DATA)
            if od:
                persistent_structs.append(od)
            builtin += _BUILTIN_DATA_BYTES.get(name, _DEFAULT_BUILTIN_DATA)
            w = sg.tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") or (
                    name == "FULLY_CONNECTED" and w is not None and w.quantization is not None
                    and w.quantization.per_channel):
                out = sg.tensors[op.outputs[0]]
                if out.type_name in ("INT8", "INT16") and out.shape:
                    persistent_arrays += [4 * out.shape[-1]] * 2
            if name == "SOFTMAX" and sg.tensors[op.inputs[0]].type_name == "INT16":
                persistent_arrays += [2 * 513] * 2  # exp and 1/(1+x) lookup tables
    io = list(sg0.inputs) + list(sg0.outputs)
    quant = 0
    for t in io:
        q = sg0.tensors[t].quantization
        if q is not None:
            quant += _QUANT_STRUCT + align_up(4 + 4 * q.zero_points.size, 8)
    pointer_arrays = [8 * len(sg0.inputs), 8 * len(sg0.outputs)]
    variables = 0
    flat = 0
    for sg in model.subgraphs:
        for t in sg.tensors:
            if t.is_variable and (offline is None or offline[flat] == ONLINE):
                variables += align_up(t.nbytes)
            flat += 1
    # Persistent buffers are carved from the tail with 16-byte alignment: count each one's
    # rounding up to 16 as lost (the true loss depends on the order of all tail allocations).
    persistent = persistent_structs + persistent_arrays + pointer_arrays
    padding = sum(align_up(x) - x for x in persistent)
    est = {
        "eval_tensors": _EVAL_TENSOR * n_tensors,
        "node_and_registration": _NODE_AND_REGISTRATION * n_ops,
        "io_tensor_structs": _TFLITE_TENSOR * len(io),
        "io_quantization": quant,
        "kernel_op_data": sum(persistent_structs),
        "per_channel_and_tables": sum(persistent_arrays),
        "io_pointer_arrays": sum(pointer_arrays),
        "alignment_padding": padding,
        "builtin_options": builtin,
        "scratch_handles": _SCRATCH_HANDLE * len(requests),
        "variable_tensors": variables,
        "allocators_fixed": _ALLOCATORS + 16 * (len(model.subgraphs) - 1),
    }
    est["total"] = sum(est.values())
    if unknown:
        est["unmeasured_ops"] = len(unknown)  # kinds of op priced at the default size
    return est
