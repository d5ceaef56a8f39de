"""Compiled int8-input SOFTMAX: TFLM's reference_integer_ops Softmax (reference/softmax.h's
quantized branch) one row at a time, in one call for every row of a batch.

Why: a batched classifier head (128 rows of 12 classes) spent ~80 µs in the numpy version of
GetReciprocal alone (thirty-odd array calls) and ~130 µs in the op, for about 2,000 values.

Exactness. Integer arithmetic only, the same operations as ops/softmax.py's ``_eval_int8`` and
``reciprocal_scalar`` (which mirror TFLM's gemmlowp primitives), in int64 where C uses int32 and
wrapped back to int32 wherever C's int32 arithmetic would wrap:
    max of the row; per value the difference d = x - max (-255..0) indexes the two tables prepare
    built with ops.fixedpoint (exp_table: exp_on_negative_values of the rescaled difference, 0
    below diff_min; term_table: its RoundingDivideByPOT by 12, the value the sum accumulates);
    sum_of_exps = the int32-wrapped sum of the terms (a sum modulo 2^32 does not depend on the
    order of its terms);
    GetReciprocal(sum_of_exps, 12): CountLeadingZeros of the sum as uint32, the shifted sum minus
    one wrapped to int32, then one_over_one_plus_x_for_x_in_0_1 (RoundingHalfSum with INT32_MAX —
    the sum of two int32 values, plus or minus one, halved by C's truncating division — then
    three Newton-Raphson steps of SaturatingRoundingDoublingHighMul, wrapping int32 additions and
    SaturatingRoundingMultiplyByPOT<2>, then the final <1>);
    per value RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(scale, exp), exponent) with
    exponent = clamp(num_bits_over_unit + 31 - output_bits, 0, 31), plus the output minimum,
    clamped, narrowed.
Every product is of two int32 values (|a·b| <= 2^62, exact in int64); SaturatingRoundingDoublingHighMul's
one overflowing case (INT32_MIN·INT32_MIN) saturates as in fixedpoint.py. No float operation.
tests/test_compiled_softmax.py pins it to the reference kernel and to the numpy kernel with the
path forced.
"""
from __future__ import annotations

import numpy as np

from . import lazy_njit

__all__ = ["softmax_int8_rows"]


@lazy_njit
def softmax_int8_rows(x, exp_table, term_table, output_bits, low, high, out):
    """out[r, i] = TFLM's int8-input softmax of row x[r] (x (R, C) int8; exp_table / term_table
    (256,) int64 indexed by x - max + 255; out (R, C) int8 or int16; low/high its range)."""
    rows, columns = x.shape
    int32_min = -2147483648
    int32_max = 2147483647
    for r in range(rows):
        row = x[r]
        top = np.int64(row[0])
        for i in range(1, columns):
            v = np.int64(row[i])
            if v > top:
                top = v
        total = np.int64(0)
        for i in range(columns):
            total += term_table[np.int64(row[i]) - top + 255]
        total = ((total + 2147483648) & 4294967295) - 2147483648  # int32 sum_of_exps
        # GetReciprocal(total, 12)
        unsigned = total & 4294967295
        bits = 0
        while unsigned >> bits:
            bits += 1
        headroom_plus_one = 32 - bits
        bits_over_unit = 12 - headroom_plus_one
        a = ((total << headroom_plus_one) & 4294967295) - 2147483648  # already an int32
        half_sum = a + int32_max
        half_sum += 1 if half_sum >= 0 else -1
        half_denominator = half_sum // 2 if half_sum >= 0 else -((-half_sum) // 2)
        # 48/17 + 32/17·(-half_denominator): SaturatingRoundingDoublingHighMul(half_denominator, -32/17)
        product = (half_denominator * -1010580540 + 1073741824) >> 31
        recip = (((1515870810 + product) + 2147483648) & 4294967295) - 2147483648
        for _ in range(3):
            if half_denominator == int32_min and recip == int32_min:
                high_mul = np.int64(int32_max)
            else:
                high_mul = (half_denominator * recip + 1073741824) >> 31
            one_minus = (((536870912 - high_mul) + 2147483648) & 4294967295) - 2147483648
            if recip == int32_min and one_minus == int32_min:
                step = np.int64(int32_max)
            else:
                step = (recip * one_minus + 1073741824) >> 31
            # SaturatingRoundingMultiplyByPOT<2>
            if step > (1 << 29) - 1:
                step = np.int64(int32_max)
            elif step < -(1 << 29):
                step = np.int64(int32_min)
            else:
                step = step << 2
            recip = (((recip + step) + 2147483648) & 4294967295) - 2147483648
        # SaturatingRoundingMultiplyByPOT<1>
        if recip > (1 << 30) - 1:
            scale = np.int64(int32_max)
        elif recip < -(1 << 30):
            scale = np.int64(int32_min)
        else:
            scale = recip << 1
        exponent = bits_over_unit + 31 - output_bits
        exponent = min(max(exponent, 0), 31)
        half = (np.int64(1) << (exponent - 1)) if exponent > 0 else np.int64(0)
        target = out[r]
        for i in range(columns):
            e = exp_table[np.int64(row[i]) - top + 255]
            if scale == int32_min and e == int32_min:
                scaled = np.int64(int32_max)
            else:
                scaled = (scale * e + 1073741824) >> 31
            if exponent > 0:
                scaled = (scaled + half - (1 if scaled < 0 else 0)) >> exponent
            value = scaled + low
            target[i] = min(max(value, low), high)
