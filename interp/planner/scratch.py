"""The scratch buffers TFLM's kernels request in Prepare (``RequestScratchBufferInArena``).

The plan needs each operator's scratch requests, not its arithmetic. ``model_scratch_requests``
finds them for every operator of every subgraph, in TFLM's call order (subgraph by subgraph,
operator by operator — ``MicroInterpreterGraph::PrepareSubgraphs``):

1. an operator whose TFLM kernel never requests scratch (most): none, and no kernel is prepared
   (an Interpreter's kernels, when given, are used as they are);
2. a microref kernel that prepares the operator: its ``scratch_bytes`` (authoritative);
3. otherwise a rule derived from TFLM's kernel source and the model alone
   (``reference_scratch_requests``): MEAN/SUM/REDUCE_*, int4-weight CONV_2D / DEPTHWISE_CONV_2D /
   FULLY_CONNECTED, SVDF, MIRROR_PAD, ADD_N, the signal library's SignalRfft and the Ethos-U
   ``ethos-u`` operator;
4. otherwise the size is unknown: an ``UnknownScratch`` record says which operator and why, and
   the plan built on it is a lower bound (never a refusal of the whole model).

Pointer-sized requests (ADD_N, ethos-u) use ``POINTER_BYTES`` = 8, as the x86-64 tflite-micro
wheel does; a 32-bit MCU build requests 4 bytes per pointer (``size_t``) there.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import ops  # noqa: F401  (importing the package registers every kernel)
from ops import registry

from ..errors import MicrorefError, ModelError, UnsupportedOpError, where
from ..model import Model, Operator, Tensor

POINTER_BYTES = 8  # sizeof(void*) and sizeof(size_t) on the x86-64 wheel


@dataclass(frozen=True)
class ScratchRequest:
    """One ``RequestScratchBufferInArena`` call a kernel makes in Prepare."""

    subgraph: int
    op: int
    nbytes: int


@dataclass(frozen=True)
class UnknownScratch:
    """An operator whose scratch requests microref cannot size (no kernel and no rule)."""

    subgraph: int
    op: int
    op_name: str
    reason: str

    def to_json(self) -> dict:
        return {"subgraph": self.subgraph, "op": self.op, "op_name": self.op_name, "reason": self.reason}


# TFLM kernels (reference, signal library, Ethos-U) that call RequestScratchBufferInArena in some
# variant. Every other operator TFLM registers requests none.
TFLM_SCRATCH_OPERATORS = frozenset({
    "ADD_N", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MIRROR_PAD", "MEAN", "SUM",
    "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "SVDF", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM", "TFLite_Detection_PostProcess", "SignalRfft", "ethos-u",
})
# Custom operators TFLM's MicroMutableOpResolver knows that request no scratch.
TFLM_CUSTOM_WITHOUT_SCRATCH = frozenset({
    "CIRCULAR_BUFFER", "TFLM_DECODE", "SignalDelay", "SignalEnergy", "SignalFftAutoScale",
    "SignalFilterBank", "SignalFilterBankLog", "SignalFilterBankSquareRoot",
    "SignalFilterBankSpectralSubtraction", "SignalFramer", "SignalIrfft", "SignalOverlapAdd",
    "SignalPCAN", "SignalStacker", "SignalWindow",
})


# ---------------------------------------------------------------------- rules from the model alone
def _operand(tensors: list[Tensor], op: Operator, i: int) -> Tensor | None:
    return tensors[op.inputs[i]] if i < len(op.inputs) and op.inputs[i] >= 0 else None


def _reduce(tensors, op) -> list[int]:
    # reduce_common.cc: PrepareMeanOrSum asks for an int32 accumulator per output element first
    # (int8/int16 only); every reduction asks for the input's rank and the axis count in ints.
    x, axis = _operand(tensors, op, 0), _operand(tensors, op, 1)
    if x is None or axis is None:
        return []
    common = [4 * max(len(x.shape), 1), 4 * axis.size]
    if op.op_name in ("MEAN", "SUM") and x.type_name in ("INT8", "INT16"):
        return [4 * tensors[op.outputs[0]].size] + common
    return common


def _int4_weights(tensors, op) -> list[int]:
    # conv_common.cc / depthwise_conv_common.cc / fully_connected.cc: int4 filters are unpacked
    # into a scratch buffer of one byte per weight.
    w = _operand(tensors, op, 1)
    return [w.size] if w is not None and w.type_name == "INT4" else []


def _svdf(tensors, op) -> list[int]:
    # svdf_common.cc: batch x num_filters int32 (or float) scratch; int8 adds batch x num_units.
    x, wf = _operand(tensors, op, 0), _operand(tensors, op, 1)
    rank = int(op.options.get("rank", 1) or 1)
    if x is None or wf is None or not x.shape or not wf.shape:
        return []
    batch, filters = x.shape[0], wf.shape[0]
    if x.type_name == "INT8":
        return [4 * batch * filters, 4 * batch * (filters // rank)]
    return [4 * batch * filters]


def _mirror_pad(tensors, op) -> list[int]:
    # mirror_pad.cc: two int arrays of the input's rank.
    x = _operand(tensors, op, 0)
    return [] if x is None else [4 * len(x.shape)] * 2


def _add_n(tensors, op) -> list[int]:
    # add_n.cc: an array of input pointers, for float32 and int8 outputs.
    out = tensors[op.outputs[0]]
    return [POINTER_BYTES * len(op.inputs)] if out.type_name in ("FLOAT32", "INT8") else []


def _signal_rfft(tensors, op) -> list[int]:
    # signal/micro/kernels/rfft.cc: fft_length elements of the input type (fft_length is the
    # custom options' "fft_length").
    import flatbuffers.flexbuffers as flexbuffers

    x = _operand(tensors, op, 0)
    opts = flexbuffers.Loads(op.custom_options) if op.custom_options else {}
    n = int(opts.get("fft_length", 0)) if isinstance(opts, dict) else 0
    return [n * x.element_bytes] if x is not None else []


def _ethos_u(tensors, op) -> list[int]:
    # kernels/ethos_u/ethosu.cc: one uint64 base address and one size_t size per operand.
    n = len(op.inputs) + len(op.outputs)
    return [8 * n, POINTER_BYTES * n]


_RULES: dict[str, Callable[[list[Tensor], Operator], list[int]]] = {
    "MEAN": _reduce, "SUM": _reduce, "REDUCE_MAX": _reduce, "REDUCE_MIN": _reduce,
    "REDUCE_PROD": _reduce, "CONV_2D": _int4_weights, "DEPTHWISE_CONV_2D": _int4_weights,
    "FULLY_CONNECTED": _int4_weights, "SVDF": _svdf, "MIRROR_PAD": _mirror_pad, "ADD_N": _add_n,
    "SignalRfft": _signal_rfft, "ethos-u": _ethos_u,
}
POINTER_SIZED_SCRATCH = frozenset({"ADD_N", "ethos-u"})  # request sizes that depend on the pointer width


def reference_scratch_requests(model: Model) -> list[ScratchRequest]:
    """The scratch requests TFLM's kernels make, derived from the model alone by the rules above.

    Operators without a rule contribute nothing here; ``model_scratch_requests`` is the complete
    answer (prepared kernels first, and a record of what it cannot size).
    """
    out: list[ScratchRequest] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            rule = _RULES.get(op.display_name)
            for nbytes in (rule(sg.tensors, op) if rule else []):
                out.append(ScratchRequest(sg.index, op.index, nbytes))
    return out


def _prepared_scratch(sg, op: Operator) -> list[int] | None:
    """The scratch requests of microref's kernel for ``op`` (None: no kernel for this variant)."""
    cls = registry.kernel_class(op)
    if cls is None:
        return None
    try:
        kernel = cls(registry.PrepareContext(op, sg.tensors, registry.DEFAULT_NUMERICS))
    except UnsupportedOpError:
        return None
    except MicrorefError:
        raise
    except (ValueError, ZeroDivisionError, OverflowError, IndexError, KeyError, TypeError,
            AttributeError) as e:
        raise ModelError(f"{where(op.index, op.display_name)}: invalid operator parameters "
                         f"({type(e).__name__}: {e})") from None
    return [int(b) for b in kernel.scratch_bytes]


def operator_scratch(model: Model, subgraph: int, op: Operator,
                     kernel_scratch: list[int] | None = None) -> list[int] | UnknownScratch:
    """One operator's scratch requests in call order, or why they are unknown (see the module doc).

    ``kernel_scratch``: the requests of an already prepared kernel, if the caller has one.
    """
    sg = model.subgraphs[subgraph]
    name = op.display_name
    if kernel_scratch is None and name in TFLM_SCRATCH_OPERATORS:
        kernel_scratch = _prepared_scratch(sg, op)
    if kernel_scratch is not None:
        return list(kernel_scratch)
    rule = _RULES.get(name)
    if rule is not None:
        return rule(sg.tensors, op)
    if op.op_name != "CUSTOM" and name not in TFLM_SCRATCH_OPERATORS:
        return []
    if name in TFLM_CUSTOM_WITHOUT_SCRATCH:
        return []
    if op.op_name == "CUSTOM" and name not in TFLM_SCRATCH_OPERATORS:
        why = "custom operator with no microref kernel and unknown to TFLM's kernels"
    else:
        why = "no microref kernel for it, and TFLM's kernel requests scratch buffers in Prepare"
    return UnknownScratch(subgraph, op.index, name, why)


def model_scratch_requests(model: Model, kernels: Mapping[tuple[int, int], list[int]] | None = None
                           ) -> tuple[list[ScratchRequest], list[UnknownScratch]]:
    """Every operator's scratch requests in TFLM's call order, and the operators it cannot size.

    ``kernels`` maps (subgraph, operator) to the requests of kernels the caller already prepared
    (an Interpreter's); other operators are prepared here, or sized by rule (module doc).
    """
    kernels = kernels or {}
    requests: list[ScratchRequest] = []
    unknown: list[UnknownScratch] = []
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators:
            got = operator_scratch(model, s, op, kernels.get((s, op.index)))
            if isinstance(got, UnknownScratch):
                unknown.append(got)
                continue
            for nbytes in got:
                if nbytes < 0:
                    raise ValueError(f"scratch request of {nbytes} bytes at subgraph {s} operator {op.index}")
                requests.append(ScratchRequest(s, op.index, int(nbytes)))
    return requests, unknown


def normalise_scratch(model: Model, scratch) -> tuple[list[ScratchRequest], list[UnknownScratch]]:
    """The scratch requests in any convenient form, in TFLM's call order (and what is unknown).

    * None: ``model_scratch_requests(model)``;
    * a sequence with one list of byte sizes per operator of subgraph 0 (what an Interpreter's
      kernels give); the other subgraphs' operators are sized by ``model_scratch_requests``;
    * a mapping ``{(subgraph, op): [bytes, ...]}`` or ``{op: [bytes, ...]}`` (subgraph 0): exactly
      these requests, nothing else;
    * a sequence of ``ScratchRequest``: exactly these.
    """
    if scratch is None:
        return model_scratch_requests(model)
    if isinstance(scratch, Mapping):
        by_key: dict[tuple[int, int], list[int]] = {}
        for k, v in scratch.items():
            key = k if isinstance(k, tuple) else (0, int(k))
            by_key[(int(key[0]), int(key[1]))] = [int(b) for b in v]
        unknown: list[UnknownScratch] = []
    else:
        items = list(scratch)
        if items and all(isinstance(r, ScratchRequest) for r in items):
            return sorted(items, key=lambda r: (r.subgraph, r.op)), []  # stable: keeps call order
        if len(items) != len(model.main.operators):
            raise ValueError(f"scratch: {len(items)} per-operator lists given, subgraph 0 has "
                             f"{len(model.main.operators)} operators")
        given = {(0, i): [int(b) for b in (v or [])] for i, v in enumerate(items)}
        if len(model.subgraphs) == 1:
            by_key, unknown = given, []
        else:
            requests, unknown = model_scratch_requests(model, given)
            return requests, unknown
    out = []
    for s, sg in enumerate(model.subgraphs):
        for op in sg.operators:
            for b in by_key.get((s, op.index), []):
                if b < 0:
                    raise ValueError(f"scratch request of {b} bytes at subgraph {s} operator {op.index}")
                out.append(ScratchRequest(s, op.index, b))
    return out, unknown
