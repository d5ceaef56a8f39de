"""The requantization step every integer kernel ends with (TFLM's kernels write it inline):

    acc = MultiplyByQuantizedMultiplier(acc, output_multiplier[c], output_shift[c])
    acc += output_offset
    acc = clamp(acc, activation_min, activation_max)
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..params import QuantizedOutput


def requantize(acc: np.ndarray, q: QuantizedOutput, steps: dict | None = None) -> np.ndarray:
    """Requantize ``acc`` (int64 holding TFLM's accumulator, output channels last).

    With ``steps`` (a dict), every intermediate array is recorded under its TFLM name, for
    ``explain``: ``shifted`` (x·2^left, an int32 multiply), ``high``
    (SaturatingRoundingDoublingHighMul), ``scaled`` (after RoundingDivideByPOT),
    ``with_offset`` (+ output offset, int32), ``output`` (clamped).
    """
    acc = fp.as_int64(acc)
    m, shift = q.output_multiplier, q.output_shift
    if q.int64_accumulator:
        scaled = fp.multiply_by_quantized_multiplier_int64(acc, m, shift)
    elif q.rounding == "single":
        scaled = fp.multiply_by_quantized_multiplier_single_rounding(acc, m, shift)
    else:
        # The two roundings of the double-rounding build, written out (as fp.multiply_by_quantized_multiplier).
        left = np.maximum(shift, 0) & 31  # C's 1 << shift: x86 masks the count to 5 bits
        shifted = fp.wrap_int32(acc << left)
        high = fp.saturating_rounding_doubling_high_mul(shifted, m)
        scaled = fp.rounding_divide_by_pot(high, np.maximum(-shift, 0))
        if steps is not None:
            steps.update(shifted=shifted, high=high)
    with_offset = fp.wrap_int32(scaled + q.output_offset)
    output = np.minimum(np.maximum(with_offset, q.activation_min), q.activation_max)
    if steps is not None:
        steps.update(scaled=scaled, with_offset=with_offset, output=output)
    return output
