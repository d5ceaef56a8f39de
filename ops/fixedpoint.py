"""Integer fixed-point primitives, each reproducing one TFLM / gemmlowp function bit for bit.

All array functions take and return int64 numpy arrays (or Python ints) holding int32 values;
int64 gives room for the exact 64-bit intermediate products the C code forms, and every place
where C truncates or wraps is emulated explicitly (numpy's ``//`` and ``>>`` floor instead).
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT16_MIN = -(1 << 15)
INT16_MAX = (1 << 15) - 1


def as_int64(x):
    return np.asarray(x, dtype=np.int64)


def wrap_int16(x):
    """Two's-complement wrap to int16: a C int stored into an int16_t (e.g. TFLM's PaddingValues
    and ConvParams fields, or gemmlowp's int16 arithmetic)."""
    x = as_int64(x)
    return ((x + (1 << 15)) & 0xFFFF) - (1 << 15)


def wrap_int32(x):
    """Two's-complement wrap of an int64 value to int32, as a C int32 overflow does on MCUs."""
    x = as_int64(x)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturate(x, lo, hi):
    return np.clip(x, lo, hi)


def truncating_divide(a, b):
    """C integer division (truncates toward zero), elementwise on int64."""
    a = as_int64(a)
    b = as_int64(b)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def tflite_round(x):
    """TfLiteRound / std::round / roundf: round half away from zero (numpy's rint rounds to even).

    The result keeps the input's float type, so float32 inputs round float32 quotients. Computed
    from the fractional part, which is exact; floor(|x| + 0.5) is not (0.49999997f + 0.5f rounds
    up to 1, and large odd float32 integers gain one).
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= x.dtype.type(0.5), t + np.sign(x), t).astype(x.dtype, copy=False)


def round_half_away_scalar(x: float) -> int:
    """TfLiteRound on one double, as a Python int."""
    t = math.trunc(x)
    return t + (int(math.copysign(1, x)) if abs(x - t) >= 0.5 else 0)


# ---------------------------------------------------------------------------- gemmlowp core

def _may_be_int32_min(v) -> bool:
    if isinstance(v, (int, np.integer)):
        return int(v) == INT32_MIN
    v = np.asarray(v)
    return v.size > 0 and int(v.min()) == INT32_MIN


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul (int32): a*b / 2^31 rounded to nearest.

    The C code adds a nudge of 2^30 (or 1 - 2^30 for a negative product) and then divides by
    2^31 with truncation toward zero, so exact ties round toward +infinity (-0.5 -> 0, 0.5 -> 1).
    Truncating (v + 1 - 2^30) / 2^31 for negative v equals flooring (v + 2^30) / 2^31, so one
    arithmetic shift does it for both signs. The one overflowing case, INT32_MIN * INT32_MIN,
    saturates to INT32_MAX.
    """
    high = (as_int64(a) * as_int64(b) + (1 << 30)) >> 31
    # Multipliers are scalars or short per-channel arrays: test them first, it is cheaper.
    if _may_be_int32_min(b) and _may_be_int32_min(a):
        return np.where((as_int64(a) == INT32_MIN) & (as_int64(b) == INT32_MIN), INT32_MAX, high)
    return high


def rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero (0 <= exp <= 31).

    gemmlowp adds one when the remainder exceeds half (half minus one for negative x); that is
    ``(x + 2^(e-1) - [x < 0]) >> e`` with an arithmetic (flooring) shift, for e >= 1.
    """
    x = as_int64(x)
    if isinstance(exponent, (int, np.integer)):
        e = int(exponent)
        if e == 0:
            return x
        return (x + ((1 << (e - 1)) - (x < 0))) >> e
    e = as_int64(exponent)
    positive = e > 0
    half = np.where(positive, np.int64(1) << np.maximum(e - 1, 0), 0)
    return (x + half - ((x < 0) & positive)) >> e


def multiply_by_quantized_multiplier(x, quantized_multiplier, shift):
    """TFLM MultiplyByQuantizedMultiplier(int32 x, int32 M, int shift), double-rounding build.

    ``RDBPOT(SRDHM(x * 2^max(shift, 0), M), max(-shift, 0))``; the left shift is an int32
    multiply that wraps. ``quantized_multiplier`` and ``shift`` may be per-channel arrays that
    broadcast against ``x``.

    A shift above 31 (a real multiplier beyond 2^31, e.g. tiny output scales) makes C's
    ``1 << shift`` undefined; x86-64, where the oracle runs, masks the count to 5 bits, and so
    does this function.
    """
    if isinstance(shift, (int, np.integer)):
        left, right = max(int(shift), 0) & 31, max(-int(shift), 0)
        shifted = wrap_int32(as_int64(x) << left) if left else x
    else:
        shift = as_int64(shift)
        left = np.maximum(shift, 0) & 31
        right = np.maximum(-shift, 0)
        shifted = wrap_int32(as_int64(x) << left) if np.any(left) else x
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, quantized_multiplier), right)


def multiply_by_quantized_multiplier_single_rounding(x, quantized_multiplier, shift):
    """The TFLITE_SINGLE_ROUNDING variant of MultiplyByQuantizedMultiplier (not the wheel's).

    ``(x*M + 2^(30-shift)) >> (31-shift)``: kept to explain runtimes built with that flag.
    """
    total = 31 - as_int64(shift)
    return (as_int64(x) * as_int64(quantized_multiplier) + (np.int64(1) << (total - 1))) >> total


def multiply_by_quantized_multiplier_int64(x, quantized_multiplier, shift):
    """TFLM MultiplyByQuantizedMultiplier(int64 x, int32 M, int shift), used by 16x8 kernels
    with an int64 accumulator: the multiplier is cut to about 15 bits and ties round up.

    TFLM assumes shift < 8; beyond 15 the shift counts go negative, which x86-64 masks to
    6 bits, and so does this function (int64 arithmetic wraps like the C code's).
    """
    m = as_int64(quantized_multiplier)
    reduced = np.where(m < 0x7FFF0000, (m + (1 << 15)) >> 16, 0x7FFF)
    total = 15 - as_int64(shift)
    x = as_int64(x)
    with np.errstate(over="ignore"):
        result = (x * reduced + (np.int64(1) << ((total - 1) & 63))) >> (total & 63)
    return wrap_int32(result)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplier(double) -> (quantized_multiplier, shift), double-rounding build.

    frexp, then the mantissa times 2^31 rounded half away from zero; a mantissa that rounds up
    to 2^31 becomes 2^30 with shift + 1; a shift below -31 flushes to (0, 0).
    """
    m = float(real_multiplier)
    if m == 0.0:
        return 0, 0
    if not math.isfinite(m):
        # frexp of inf or NaN and the cast of its mantissa to int64 are undefined behaviour in C.
        raise ValueError(f"the real multiplier {m} is not finite (a scale of 0, inf or NaN); TFLM's "
                         "QuantizeMultiplier has no defined result for it")
    q, shift = math.frexp(m)
    q_fixed = round_half_away_scalar(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one_exp(real_multiplier: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplierSmallerThanOneExp: as quantize_multiplier, requiring 0 < m < 1."""
    if not 0.0 < real_multiplier < 1.0:
        raise ValueError(f"multiplier {real_multiplier!r} is not in (0, 1)")
    return quantize_multiplier(real_multiplier)


def quantize_multiplier_greater_than_one(real_multiplier: float) -> tuple[int, int]:
    """TFLM QuantizeMultiplierGreaterThanOne: as quantize_multiplier, requiring m > 1."""
    if not real_multiplier > 1.0:
        raise ValueError(f"multiplier {real_multiplier!r} is not greater than 1")
    return quantize_multiplier(real_multiplier)


def calculate_input_radius(input_integer_bits: int, input_left_shift: int, total_signed_bits: int = 31) -> int:
    """TFLM CalculateInputRadius: the largest |diff| whose rescaled value still fits.

    The divisor is C's ``1LL << input_left_shift``: x86 masks a 64-bit shift count to 6 bits (an
    input scale near FLT_MAX gives shifts above 63) and 1LL << 63 is INT64_MIN. The quotient goes
    through static_cast<int>, which gives INT_MIN for what int cannot hold (cvttsd2si)."""
    divisor = (1 << (input_left_shift & 63)) if input_left_shift & 63 != 63 else -(1 << 63)
    max_input_rescaled = (1.0 * ((1 << input_integer_bits) - 1) * (1 << (total_signed_bits - input_integer_bits))
                          / divisor)
    radius = math.floor(max_input_rescaled)
    return int(radius) if INT32_MIN <= radius <= INT32_MAX else INT32_MIN


# --------------------------------------------------------------- gemmlowp fixed-point helpers

def saturating_shift_left(x, k: int):
    """gemmlowp SaturatingRoundingMultiplyByPOT with a positive exponent: x * 2^k, saturated."""
    x = as_int64(x)
    limit = (1 << (31 - k)) - 1
    return np.where(x > limit, INT32_MAX, np.where(x < -limit - 1, INT32_MIN, x << k))


def rescale(x, src_integer_bits: int, dst_integer_bits: int):
    """gemmlowp Rescale<dst>(FixedPoint<src>): change the number of integer bits."""
    if src_integer_bits > dst_integer_bits:
        return saturating_shift_left(x, src_integer_bits - dst_integer_bits)
    if src_integer_bits < dst_integer_bits:
        return rounding_divide_by_pot(x, dst_integer_bits - src_integer_bits)
    return as_int64(x)


def rounding_half_sum(a, b):
    """gemmlowp RoundingHalfSum (int32): (a + b) / 2 rounded half away from zero."""
    s = as_int64(a) + as_int64(b)
    s = s + np.where(s >= 0, 1, -1)
    return truncating_divide(s, 2)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl (Q0.31 in and out)."""
    constant_term = 1895147668  # exp(-1/8)
    constant_1_over_3 = 715827883
    x = as_int64(a) + (1 << 28)
    x2 = saturating_rounding_doubling_high_mul(x, x)
    x3 = saturating_rounding_doubling_high_mul(x2, x)
    x4 = saturating_rounding_doubling_high_mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(
        wrap_int32(saturating_rounding_doubling_high_mul(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap_int32(constant_term + saturating_rounding_doubling_high_mul(constant_term, wrap_int32(x + poly)))


_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a, integer_bits: int):
    """gemmlowp exp_on_negative_values(FixedPoint<int32, integer_bits>) -> Q0.31."""
    a = as_int64(a)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        rescale(a_mod_quarter_minus_one_quarter, integer_bits, 0))
    remainder = a_mod_quarter_minus_one_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            shift_amount = fractional_bits + exponent
            if 0 <= shift_amount < 31:
                bit_set = ((remainder >> shift_amount) & 1) != 0
                result = np.where(bit_set, saturating_rounding_doubling_high_mul(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (fractional_bits + 5))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_q2(half_denominator):
    """The Newton-Raphson core shared by one_over_one_plus_x and one_minus_x_over_one_plus_x."""
    constant_48_over_17 = 1515870810
    constant_neg_32_over_17 = -1010580540
    x = wrap_int32(constant_48_over_17 + saturating_rounding_doubling_high_mul(half_denominator, constant_neg_32_over_17))
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = saturating_rounding_doubling_high_mul(half_denominator, x)
        one_minus = wrap_int32(one_q2 - half_denominator_times_x)
        x = wrap_int32(x + saturating_shift_left(saturating_rounding_doubling_high_mul(x, one_minus), 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out)."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    return saturating_shift_left(_newton_reciprocal_q2(half_denominator), 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_minus_x_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out)."""
    half_denominator = rounding_half_sum(a, INT32_MAX)
    x = _newton_reciprocal_q2(half_denominator)
    return saturating_shift_left(wrap_int32(x - (1 << 29)), 2)


def count_leading_zeros32(x):
    """CountLeadingZeros on uint32 values (32 for zero)."""
    x = as_int64(x) & 0xFFFFFFFF
    n = np.full(x.shape, 32, dtype=np.int64)
    nz = x > 0
    # floor(log2) via frexp is exact for integers below 2^53.
    _, e = np.frexp(np.where(nz, x, 1).astype(np.float64))
    return np.where(nz, 32 - e.astype(np.int64), n)


def get_reciprocal(x, x_integer_digits: int):
    """TFLM GetReciprocal(int32 x, int x_integer_digits) -> (Q0.31 reciprocal, num_bits_over_unit)."""
    x = as_int64(x)
    headroom_plus_one = count_leading_zeros32(x)
    num_bits_over_unit = x_integer_digits - headroom_plus_one
    shifted_sum_minus_one = wrap_int32(((x << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31))
    return one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one), num_bits_over_unit
