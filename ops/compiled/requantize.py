"""Compiled requantization: TFLM's MultiplyByQuantizedMultiplier, zero point, clamp and narrowing
in one pass over the accumulator (ops.common.Requantizer takes it for large tensors).

Exactness. The integer kernels compute TFLM's own int32/int64 arithmetic, element by element, as
ops/fixedpoint.py defines it for the double-rounding build:

    a = int64(acc) + bias[c]                       (wrapped to int32 when the Requantizer's
                                                    may_wrap says the sum may leave int32)
    x = int32(a << left[c])                        (only when some channel shifts left; C's
                                                    1 << shift wraps, the count masked to 5 bits)
    h = (x·M[c] + 2^30) >> 31                      SaturatingRoundingDoublingHighMul: int64
                                                    product of two int32 values, flooring shift;
                                                    INT32_MIN·INT32_MIN saturates to INT32_MAX
    r = (h + 2^(e-1) - [h < 0]) >> e  (e >= 1)     RoundingDivideByPOT, e = right[c] in 0..31
    y = clamp(int32(r + zero_point), min, max)     C adds the zero point in int32 (wraps)
    out = y narrowed to the output type            (a C cast: two's complement truncation)

The conversion int64(acc) of a float accumulator is exact because the accumulator is an integer
and the Requantizer's prepared bound keeps it below 2^24 (float32) or 2^53 (float64) in
magnitude (ExactIntegerMatmul picks the float type from that bound): every such integer is a
float value, and the truncating conversion of an integer-valued float returns that integer. No
other float operation is involved; numba compiles integer arithmetic without reassociation, and
lazy_njit never allows fastmath.

The ``finish_*`` kernels instead round a float64 scaled accumulator t (Requantizer.from_scaled:
a GEMM with the scale folded into the weights produced it): they perform, value by value, the
same float64 operations in the same order as Requantizer._finish, whose docstrings prove each of
them exact (every intermediate is an integer plus a multiple of a power of two, far from 2^53),
so they produce the same bytes.

Every function here is compiled on its first call (ops.compiled.lazy_njit), never at import.
"""
from __future__ import annotations

import numpy as np

from . import lazy_njit

__all__ = ["requantize_last_axis", "requantize_channel_major", "finish_single_last_axis",
           "finish_split_last_axis"]


@lazy_njit
def requantize_last_axis(acc, bias, multiplier, left, right, zero_point, act_min, act_max, wrap, any_left, out):
    """``out[f]`` = the requantized ``acc[f]`` with the parameters of index f mod P (see the module).

    acc: the flat accumulator (float32/float64 integer-valued, or int32/int64) of a (…, C)
    tensor; bias, multiplier, left (the left shift, 0..31), right (the right shift, 0..31):
    (P,) int64 arrays, each channel's values repeated P / C times (P a multiple of C: rows of
    P values vectorise where rows of a few channels would not); zero_point, act_min, act_max:
    int64; wrap: wrap a + bias to int32; any_left: some channel shifts left (the int32 wrap of
    the shifted value is then applied to every channel, as the numpy path does); out: flat, of
    the output type. acc.size is a multiple of C.
    """
    size = acc.shape[0]
    width = bias.shape[0]
    for start in range(0, size, width):
        row = acc[start:start + width]
        row_out = out[start:start + width]
        for c in range(row.shape[0]):
            a = np.int64(row[c]) + bias[c]
            if wrap:
                a = ((a + 2147483648) & 4294967295) - 2147483648
            if any_left:
                a = ((np.int64(a << left[c]) + 2147483648) & 4294967295) - 2147483648
            m = multiplier[c]
            if a == -2147483648 and m == -2147483648:
                h = np.int64(2147483647)
            else:
                h = (a * m + 1073741824) >> 31
            e = right[c]  # RoundingDivideByPOT (2^(e-1) is 0 and there is no step down when e = 0)
            h = (h + ((np.int64(1) << e) >> 1) - (1 if h < 0 and e > 0 else 0)) >> e
            y = ((h + zero_point + 2147483648) & 4294967295) - 2147483648
            if y < act_min:
                y = act_min
            if y > act_max:
                y = act_max
            row_out[c] = y


@lazy_njit
def requantize_channel_major(acc, bias, multiplier, left, right, zero_point, act_min, act_max, wrap, any_left,
                             out):
    """As requantize_last_axis for a (B, C, L) accumulator whose channel is the middle axis
    (a per-tensor requantization is the case C = 1, any layout)."""
    batches, channels, length = acc.shape
    for b in range(batches):
        for c in range(channels):
            bc, mc, lc, ec = bias[c], multiplier[c], left[c], right[c]
            hc = (np.int64(1) << ec) >> 1  # RoundingDivideByPOT's 2^(e-1) (0 when e = 0)
            rc = 1 if ec > 0 else 0  # and its step down for h < 0 (none when e = 0)
            for i in range(length):
                a = np.int64(acc[b, c, i]) + bc
                if wrap:
                    a = ((a + 2147483648) & 4294967295) - 2147483648
                if any_left:
                    a = ((np.int64(a << lc) + 2147483648) & 4294967295) - 2147483648
                if a == -2147483648 and mc == -2147483648:
                    h = np.int64(2147483647)
                else:
                    h = (a * mc + 1073741824) >> 31
                if h < 0:
                    h = (h + hc - rc) >> ec
                else:
                    h = (h + hc) >> ec
                y = ((h + zero_point + 2147483648) & 4294967295) - 2147483648
                if y < act_min:
                    y = act_min
                if y > act_max:
                    y = act_max
                out[b, c, i] = y


@lazy_njit
def finish_single_last_axis(t, negative_below, negative_step, step_matters, low, high, out):
    """Requantizer._finish of the single mode on the flat float64 scaled accumulator t of a
    (…, C) tensor: t - s·[t < nb] (when the step matters), clamped to [low, high], floored,
    narrowed. negative_below, negative_step: (P,) float64, each channel's constant repeated
    P / C times (as in requantize_last_axis)."""
    size = t.shape[0]
    width = negative_below.shape[0]
    for start in range(0, size, width):
        row = t[start:start + width]
        row_out = out[start:start + width]
        for c in range(row.shape[0]):
            v = row[c]
            if step_matters and v < negative_below[c]:
                v = v - negative_step[c]
            if v < low:
                v = low
            if v > high:
                v = high
            row_out[c] = np.floor(v)


@lazy_njit
def finish_split_last_axis(t, shifted_high, threshold, inverse, step_matters, low, high, out):
    """Requantizer._finish of the split mode on the flat float64 scaled accumulator t of a
    (…, C) tensor: v = floor(t) + shifted_high, minus 1 where v < threshold (when the step
    matters), times inverse, clamped to [low, high], floored, narrowed. The constants: (P,)
    float64 as in finish_single_last_axis."""
    size = t.shape[0]
    width = shifted_high.shape[0]
    for start in range(0, size, width):
        row = t[start:start + width]
        row_out = out[start:start + width]
        for c in range(row.shape[0]):
            v = np.floor(row[c]) + shifted_high[c]
            if step_matters and v < threshold[c]:
                v = v - 1.0
            v = v * inverse[c]
            if v < low:
                v = low
            if v > high:
                v = high
            row_out[c] = np.floor(v)
