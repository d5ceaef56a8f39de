"""int8 SOFTMAX: reference_ops::Softmax (softmax.h) with gemmlowp fixed point, int8 -> int8/int16.

    for each row:
        max_in_row = max(input)
        sum_of_exps = Σ over c with diff = input[c] - max_in_row >= diff_min of
                      Rescale<12>(exp_on_negative_values(MBQMGreaterThanOne(diff, M, left_shift)))
        shifted_scale, num_bits_over_unit = GetReciprocal(sum_of_exps, 12)
        output[c] = clamp(RoundingDivideByPOT(shifted_scale · exp(c), num_bits_over_unit + 31 - bits)
                          + lowest, lowest, highest)   (lowest where diff < diff_min)
"""
from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp
from ..params import SoftmaxParams

SCALED_DIFF_INTEGER_BITS = 5
ACCUMULATION_INTEGER_BITS = 12


def softmax_int8(p: SoftmaxParams, input: np.ndarray, steps: dict | None = None) -> np.ndarray:
    """Over the last axis; the output has the input's shape (int64 values of the output type).

    With ``steps`` (a dict), every intermediate array is recorded under its TFLM name, for
    ``explain``: ``max_in_row``, ``diff``, ``input_diff_rescaled`` (MBQMGreaterThanOne),
    ``exp_in_0`` (exp_on_negative_values, Q0.31; 0 below diff_min), ``sum_of_exps`` (Q12.19),
    ``shifted_scale`` and ``num_bits_over_unit`` (GetReciprocal), ``exponent``, ``unsat_output``
    and ``output``."""
    x = input.astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    active = diff >= p.diff_min
    # MultiplyByQuantizedMultiplierGreaterThanOne: SRDHM(diff · 2^left_shift, M), an int32 multiply.
    rescaled = fp.saturating_rounding_doubling_high_mul(fp.wrap_int32(np.where(active, diff, 0) << p.input_left_shift),
                                                        p.input_multiplier)
    exps = np.where(active, fp.exp_on_negative_values(rescaled, SCALED_DIFF_INTEGER_BITS), 0)
    sum_of_exps = fp.wrap_int32(fp.rounding_divide_by_pot(exps, ACCUMULATION_INTEGER_BITS).sum(axis=-1, keepdims=True))
    shifted_scale, num_bits_over_unit = fp.get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS)
    exponent = np.clip(num_bits_over_unit + 31 - p.output_bits, 0, 31)
    unsat = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(shifted_scale, exps), exponent)
    lowest, highest = (-32768, 32767) if p.output_bits == 16 else (-128, 127)
    output = np.where(active, np.clip(unsat + lowest, lowest, highest), lowest)
    if steps is not None:
        steps.update(max_in_row=x.max(axis=-1, keepdims=True), diff=diff, input_diff_rescaled=rescaled,
                     exp_in_0=exps, sum_of_exps=sum_of_exps, shifted_scale=shifted_scale,
                     num_bits_over_unit=num_bits_over_unit, exponent=exponent, unsat_output=unsat, output=output)
    return output
