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
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, and the comparison is False (t, as roundf gives)
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
    x = wrap_int32(constant_48_over_17
                   + saturating_rounding_doubling_high_mul(half_denominator, constant_neg_32_over_17))
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


# --------------------------------------------------------------- TFLM common.h helpers (log, inverse sqrt, x86 shifts)

def saturating_rounding_multiply_by_pot_param(x, exponent):
    """TFLM SaturatingRoundingMultiplyByPOTParam(int32 x, int exponent) for 0 <= exponent <= 31:
    x·2^exponent, saturated (x > 2^(31-e) - 1 gives INT32_MAX, x < -(2^(31-e) - 1) INT32_MIN;
    exponent 0 returns x, which these bounds also do)."""
    x = as_int64(x)
    e = as_int64(exponent)
    threshold = (np.int64(1) << (31 - e)) - 1
    result = wrap_int32(x << e)
    result = np.where(x > threshold, INT32_MAX, result)
    return np.where(x < -threshold, INT32_MIN, result)


def saturating_add(a, b):
    """SaturatingAddNonGemmlowp(int32, int32): the exact sum clamped to int32."""
    return np.clip(as_int64(a) + as_int64(b), INT32_MIN, INT32_MAX)


def saturating_sub(a, b):
    """SaturatingSub(int32, int32): the exact difference clamped to int32."""
    return np.clip(as_int64(a) - as_int64(b), INT32_MIN, INT32_MAX)


def fixed_mul(a, b):
    """gemmlowp FixedPoint operator* on int32 raws: SaturatingRoundingDoublingHighMul."""
    return saturating_rounding_doubling_high_mul(a, b)


def fixed_add(a, b):
    """gemmlowp FixedPoint operator+ / Add on int32 raws: a plain (wrapping) int32 add."""
    return wrap_int32(as_int64(a) + as_int64(b))


def fixed_sub(a, b):
    return wrap_int32(as_int64(a) - as_int64(b))


LOG_2 = 1488522236  # log(2) in Q0.31
SQRT_SQRT_HALF = 1805811301
SQRT_HALF = 1518500250
ONE_QUARTER = 536870912
ALPHA_N = 117049297
ALPHA_D = 127690142
ALPHA_I = 1057819769
ALPHA_F = 638450708


def log_x_for_x_greater_than_or_equal_to_1(input_raw, output_integer_bits: int, input_integer_bits: int):
    """TFLM log_x_for_x_greater_than_or_equal_to_1_impl<OutputIntegerBits, InputIntegerBits> on
    raw int32 values (vectorised; every gemmlowp operation as the C++ composes it)."""
    accum_bits = output_integer_bits + 1
    shifted_quarter = rescale(ONE_QUARTER, 0, accum_bits)
    z_a = as_int64(input_raw)
    z_a_headroom_plus_1 = count_leading_zeros32(z_a)
    r_a_tmp = saturating_rounding_multiply_by_pot_param(z_a, z_a_headroom_plus_1 - 1)
    r_a_raw = saturating_rounding_multiply_by_pot_param(fixed_mul(r_a_tmp, SQRT_HALF), 1)
    z_a_pow_2_adj = saturating_add(
        saturating_rounding_multiply_by_pot_param(input_integer_bits - z_a_headroom_plus_1, 31 - accum_bits),
        shifted_quarter)
    z_b = fixed_mul(z_a, SQRT_HALF)
    z_b_headroom = count_leading_zeros32(z_b) - 1
    r_b_raw = saturating_rounding_multiply_by_pot_param(z_a, z_b_headroom)
    z_b_pow_2_adj = saturating_sub(
        saturating_rounding_multiply_by_pot_param(input_integer_bits - z_b_headroom, 31 - accum_bits),
        shifted_quarter)
    r = np.minimum(r_a_raw, r_b_raw)
    z_pow_2_adj = np.maximum(z_a_pow_2_adj, z_b_pow_2_adj)
    p = rounding_half_sum(r, SQRT_SQRT_HALF)
    q = fixed_sub(r, SQRT_SQRT_HALF)
    q = fixed_add(q, q)
    common_sq = fixed_mul(q, q)
    num = fixed_add(fixed_mul(q, r), fixed_mul(fixed_mul(q, common_sq), ALPHA_N))
    denom_minus_one_0 = fixed_add(
        fixed_mul(p, fixed_add(fixed_add(ALPHA_I, q), fixed_mul(ALPHA_D, common_sq))),
        fixed_mul(ALPHA_F, q))
    recip_denom = one_over_one_plus_x_for_x_in_0_1(denom_minus_one_0)
    num_scaled = rescale(num, 0, accum_bits)
    total = fixed_add(fixed_mul(z_pow_2_adj, LOG_2), fixed_mul(num_scaled, recip_denom))
    return rescale(total, accum_bits, output_integer_bits)


def get_inv_sqrt_quantized_multiplier_exp(values, reverse_shift: int = -1):
    """TFLM GetInvSqrtQuantizedMultiplierExp on int32 values: (multiplier, shift) arrays.

    1/sqrt(input) by 5 Newton-Raphson steps in Q3.28; inputs <= 1 (0 among them) give
    (INT32_MAX, 0). A negative shift is folded into the multiplier with a wrapping int32 shift.
    """
    values = as_int64(values)
    small = values <= 1
    v = np.where(small, 2, values)
    shift = np.full(v.shape, 11, np.int64)
    # while (input >= 1 << 29) { input /= 4; ++shift; }  (input < 2^31: at most one step)
    while True:
        big = v >= (1 << 29)
        if not big.any():
            break
        v = np.where(big, v // 4, v)
        shift = shift + big
    max_left_shift_bits = count_leading_zeros32(v) - 1
    left_shift_bit_pairs = max_left_shift_bits // 2 - 1
    shift = shift - left_shift_bit_pairs
    v = v << (2 * left_shift_bit_pairs)
    fixedpoint_input = v >> 1  # F3
    fixedpoint_half_input = rounding_divide_by_pot(fixedpoint_input, 1)
    fixedpoint_half_three = (1 << 28) + (1 << 27)
    x = np.full(v.shape, 1 << 28, np.int64)  # F3 one
    for _ in range(5):
        x3 = rescale(fixed_mul(fixed_mul(x, x), x), 9, 3)
        x = rescale(fixed_sub(fixed_mul(fixedpoint_half_three, x), fixed_mul(fixedpoint_half_input, x3)), 6, 3)
    x = fixed_mul(x, 1518500250)  # sqrt(2) / 2 in Q0.31
    negative = shift < 0
    x = np.where(negative, wrap_int32(x << np.where(negative, -shift, 0)), x)
    shift = np.where(negative, 0, shift)
    return np.where(small, INT32_MAX, x), np.where(small, 0, shift) * reverse_shift


def x86_rounding_divide_by_pot(x, exponent):
    """gemmlowp RoundingDivideByPOT(int32 x, int exponent) for ANY int exponent, as x86-64 runs it.

    ``mask = int32((1ll << exponent) - 1)``: the 64-bit shift count is masked to 6 bits, and an
    all-ones low word (exponent & 63 >= 32) makes the mask -1. ``x >> exponent`` on an int32 is
    masked to 5 bits. For 0 <= exponent <= 31 this is the ordinary RoundingDivideByPOT.
    """
    x = as_int64(x)
    e = as_int64(exponent)
    with np.errstate(over="ignore"):
        mask = wrap_int32((np.int64(1) << (e & 63)) - 1)
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> (e & 31)) + (remainder > threshold)


def multiply_by_quantized_multiplier_smaller_than_one_exp(x, multiplier, shift):
    """MultiplyByQuantizedMultiplierSmallerThanOneExp of the double-rounding build (common.h):
    RoundingDivideByPOT(SRDHM(x, M), -shift) -- a positive shift is NOT a left shift here."""
    return x86_rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), -as_int64(shift))


def count_leading_sign_bits(x):
    """CountLeadingSignBits(int32): the redundant sign bits (31 for 0 and -1, 0 for INT32_MIN)."""
    x = as_int64(x)
    magnitude = np.where(x >= 0, x, -x)
    return np.where(x >= 0, count_leading_zeros32(x) - 1,
                    np.where(x != INT32_MIN, count_leading_zeros32(2 * magnitude - 1), 0))
