"""What every signal-library kernel shares: TFLM's Prepare checks (TF_LITE_ENSURE_EQ on ranks,
TF_LITE_ENSURE_TYPES_EQ on types), the parameters dataclass convention, and outputs that TFLM
writes only in part.

Output bytes TFLM's kernel does not write keep whatever the arena held. In a model whose
arena region for that output is not shared with another tensor (every single-op model, and
outputs whose consumers read only the written part, as the micro_speech front end does) that
is 0 before the first write; microref gives 0 there."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..registry import OpKernel, PrepareContext

TYPE_CODES = {0: "FLOAT32", 2: "INT32", 7: "INT16"}  # tflite::TensorType values the kernels switch on
# The operator table's note on the front-end kernels whose options are flexbuffers.
FRONT_END_NOTES = ("TFLM's signal library (the micro_speech audio front end), by custom_code; flexbuffer options read "
                   "by position, as TFLM's FlexbufferWrapper reads them")


class SignalKernel(OpKernel):
    """Base of the signal kernels: ``self.params`` is a frozen dataclass built in prepare."""

    params = None

    def describe(self) -> dict:
        return dataclasses.asdict(self.params) if self.params is not None else {}


def require_rank(ctx: PrepareContext, tensor, rank: int, role: str) -> None:
    ctx.check(len(tensor.shape) == rank,
              f"{role} has {len(tensor.shape)} dimensions, TFLM requires {rank} (TF_LITE_ENSURE_EQ)", tensor)


def require_type(ctx: PrepareContext, tensor, type_name: str, role: str) -> None:
    ctx.check(tensor.type_name == type_name,
              f"{role} is {tensor.type_name}, TFLM requires {type_name} (TF_LITE_ENSURE_TYPES_EQ)", tensor)


def require_innermost(ctx: PrepareContext, tensor) -> None:
    """Kernels that read the innermost dimension (Dims(-1)) of their input."""
    if not tensor.shape:
        ctx.unsupported("a scalar input has no innermost dimension (TFLM reads Dims(-1))", tensor)


def require_nonempty(ctx: PrepareContext, tensor, role: str) -> None:
    """A zero-sized dimension makes the signal kernels divide by zero or loop forever."""
    if any(d <= 0 for d in tensor.shape):
        ctx.unsupported(f"{role} has a zero-sized dimension {list(tensor.shape)} (TFLM's kernel divides "
                        f"by it or never leaves its loop)", tensor)


def shift_count(value: int, width: int = 32) -> int:
    """The count a C ``<<``/``>>`` of a ``width``-bit value really shifts by in the wheel.

    A count outside [0, width) is undefined behaviour in C; the x86-64 shift instructions the
    wheel's kernels compile to use the count modulo ``width`` (measured on the pinned wheel for
    Window's shift, FilterBankLog's correction bits, FilterBankSquareRoot's scale bits,
    SpectralSubtraction's and PCAN's shifts: e.g. 1000 >> 40 gives 1000 >> 8)."""
    return value & (width - 1)


def flat(x: np.ndarray) -> np.ndarray:
    """An eval input as (N, elements)."""
    return x.reshape(x.shape[0], -1)


def shaped(values: np.ndarray, tensor) -> np.ndarray:
    """(N, elements) values as (N,) + tensor.shape in the tensor's dtype."""
    return values.reshape((values.shape[0],) + tuple(tensor.shape)).astype(tensor.dtype, copy=False)


def written_prefix(values: np.ndarray, tensor) -> np.ndarray:
    """An output TFLM writes only at its start: the (N, k) ``values`` stored (C's conversion to the
    tensor's type) into its first k elements, 0 in the rest (see above); as :func:`shaped` gives it."""
    y = np.zeros((values.shape[0], tensor.size), tensor.dtype)
    y[:, :values.shape[1]] = values
    return shaped(y, tensor)
