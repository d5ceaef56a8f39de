"""Quantized MEAN and SUM with their integer steps recorded, for ``explain``:
QuantizedMeanOrSum (reference/reduce.h), int8 and int16.

    sum      = Σ input over the reduced axes         (int32 adds, wrapping)
    shifted  = sum - input_zp · count                 (the zero-point term, int32)
    scaled   = MBQM(shifted, multiplier, shift)       (SUM: s_in/s_out; MEAN: 1/count folded in)
    output   = clamp(scaled + output_zp, the output type's range)

MEAN's multiplier is (base_multiplier << extra) // count with shift base_shift - extra, extra =
min(floor(log2 count), 32, 31 + base_shift): the division by count is folded into the multiplier
with a truncating integer division, not done on the sum. The wheel's MultiplyByQuantizedMultiplier
(double rounding) is what the kernel calls.
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp


def mean_or_sum(p, grouped: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """``p``: the kernel's OpDataReduce; ``grouped``: (..., count) with the reduced elements last
    (MeanOrSum.reduced_last). With ``steps``: ``sum``, ``zero_point_term`` (input_zp·count),
    ``shifted``, ``shifted_high`` (SaturatingRoundingDoublingHighMul of shifted·2^left),
    ``scaled``, ``with_zero_point`` and ``output``."""
    total = fp.wrap_int32(fp.as_int64(grouped).sum(axis=-1))
    zero_point_term = p.input_zp * p.count
    shifted = fp.wrap_int32(total - zero_point_term)
    left, right = max(p.shift, 0) & 31, max(-p.shift, 0)
    high = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(shifted << left), p.multiplier)
    scaled = fp.rounding_divide_by_pot(high, right)
    with_zero_point = scaled + p.output_zp
    output = np.clip(with_zero_point, p.quantized_activation_min, p.quantized_activation_max)
    if steps is not None:
        steps.update(sum=total, zero_point_term=np.int64(zero_point_term), shifted=shifted, shifted_high=high,
                     scaled=scaled, with_zero_point=with_zero_point, output=output)
    return output
