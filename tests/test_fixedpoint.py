"""Edge-value tests of the fixed-point primitives against independent scalar definitions.

The references below are written from the C semantics (int64 products, truncating division,
ties away from zero) with Python's arbitrary-precision integers, not from the numpy code.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops import fixedpoint as fp

INT32_MIN, INT32_MAX = fp.INT32_MIN, fp.INT32_MAX
int32s = st.integers(INT32_MIN, INT32_MAX)


def c_div(a, b):
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm_reference(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def rdbpot_reference(x, e):
    # x / 2^e rounded to nearest, ties away from zero.
    if e == 0:
        return x
    q, r = divmod(abs(x), 1 << e)
    if 2 * r >= (1 << e):
        q += 1
    return q if x >= 0 else -q


def test_srdhm_saturates_only_for_int32_min_squared():
    assert fp.saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN) == INT32_MAX
    assert fp.saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MAX) == -INT32_MAX
    assert fp.saturating_rounding_doubling_high_mul(INT32_MAX, INT32_MAX) == INT32_MAX - 1


def test_srdhm_ties_round_toward_positive_infinity():
    # The nudge 1 - 2^30 for negative products followed by C truncation means an exact tie
    # rounds up: -0.5 -> 0 and -1.5 -> -1, while +0.5 -> 1.
    assert fp.saturating_rounding_doubling_high_mul(-(1 << 15), 1 << 15) == 0  # a*b/2^31 = -0.5
    assert fp.saturating_rounding_doubling_high_mul(-3 << 15, 1 << 15) == -1  # -1.5
    assert fp.saturating_rounding_doubling_high_mul(1 << 15, 1 << 15) == 1  # +0.5
    assert fp.saturating_rounding_doubling_high_mul(-(1 << 15) - 1, 1 << 15) == -1  # just below -0.5


@given(int32s, int32s)
def test_srdhm_matches_c_definition(a, b):
    assert fp.saturating_rounding_doubling_high_mul(a, b) == srdhm_reference(a, b)


@pytest.mark.parametrize("x,e,expected", [
    (5, 1, 3), (-5, 1, -3), (3, 1, 2), (-3, 1, -2), (1, 1, 1), (-1, 1, -1),
    (INT32_MIN, 31, -1), (INT32_MAX, 31, 1), (INT32_MIN, 0, INT32_MIN), (-(1 << 30), 31, -1),
    (-(1 << 30) + 1, 31, 0), (6, 2, 2), (-6, 2, -2), (-7, 2, -2),
])
def test_rounding_divide_by_pot_edges(x, e, expected):
    assert fp.rounding_divide_by_pot(x, e) == expected


@given(int32s, st.integers(0, 31))
def test_rounding_divide_by_pot_matches_c_definition(x, e):
    assert fp.rounding_divide_by_pot(x, e) == rdbpot_reference(x, e)


def mbqm_reference(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    v = (x << left) & 0xFFFFFFFF
    v = v - (1 << 32) if v >= (1 << 31) else v
    return rdbpot_reference(srdhm_reference(v, m), right)


@given(int32s, st.integers(1 << 30, INT32_MAX), st.integers(-31, 30))
def test_multiply_by_quantized_multiplier_is_double_rounding(x, m, shift):
    assert fp.multiply_by_quantized_multiplier(x, m, shift) == mbqm_reference(x, m, shift)


def test_multiply_by_quantized_multiplier_double_rounding_differs_from_single():
    # Two roundings: SRDHM rounds 3*M/2^31 up to 2, then RDBPOT(2, 2) = 1 (0.5 rounds up);
    # the exact product 3 * 0.625 / 4 = 0.46875 rounds to 0 once.
    m = 1 << 30 | 1 << 28  # 0.625 in Q31
    assert fp.multiply_by_quantized_multiplier(3, m, -2) == 1
    assert fp.multiply_by_quantized_multiplier_single_rounding(3, m, -2) == 0


def test_multiply_by_quantized_multiplier_left_shift_wraps_like_int32():
    # 2^20 << 12 overflows int32 to INT32_MIN in C.
    assert fp.multiply_by_quantized_multiplier(1 << 20, INT32_MAX, 11) == srdhm_reference(INT32_MIN, INT32_MAX)


def test_multiply_by_quantized_multiplier_per_channel_broadcasts():
    x = np.array([[100, -100], [7, -7]])
    m = np.array([1 << 30, 1 << 30])
    s = np.array([0, -1])
    got = fp.multiply_by_quantized_multiplier(x, m, s)
    assert got.tolist() == [[50, -25], [4, -2]]


@pytest.mark.parametrize("real,expected", [
    (0.0, (0, 0)),
    (0.5, (1 << 30, 0)),
    (1.0, (1 << 30, 1)),
    (0.75, (3 << 29, 0)),
    (-0.5, (-(1 << 30), 0)),
    (2.0 ** -32, (1 << 30, -31)),  # frexp gives shift -31: kept
    (2.0 ** -33, (0, 0)),  # shift -32 < -31: flushed to zero
    (1.0 - 2.0 ** -40, (1 << 30, 1)),  # mantissa rounds up to 2^31: becomes 2^30, shift + 1
])
def test_quantize_multiplier_edges(real, expected):
    assert fp.quantize_multiplier(real) == expected


@given(st.floats(1e-9, 1e6, allow_nan=False))
def test_quantize_multiplier_reconstructs_the_real_value(real):
    m, s = fp.quantize_multiplier(real)
    assert (1 << 30) <= m < (1 << 31)
    assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0 ** -30


def test_quantize_multiplier_rounds_mantissa_half_away_from_zero():
    # mantissa * 2^31 = 2^30 + 0.5 exactly -> rounds up to 2^30 + 1 (Python round() would give 2^30).
    real = (2 ** 30 + 0.5) / 2 ** 31
    assert fp.quantize_multiplier(real) == ((1 << 30) + 1, 0)


def test_wrappers_check_their_ranges():
    with pytest.raises(ValueError):
        fp.quantize_multiplier_smaller_than_one_exp(1.0)
    with pytest.raises(ValueError):
        fp.quantize_multiplier_greater_than_one(1.0)
    assert fp.quantize_multiplier_greater_than_one(3.0) == (3 << 29, 2)


def test_tflite_round_is_half_away_from_zero_in_float32():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 2.4999998], np.float32)
    got = fp.tflite_round(x)
    assert got.dtype == np.float32
    assert got.tolist() == [1.0, 2.0, 3.0, -1.0, -3.0, 2.0]


def test_count_leading_zeros32():
    x = np.array([0, 1, 2, 3, 1 << 30, INT32_MAX, -1, INT32_MIN])
    assert fp.count_leading_zeros32(x).tolist() == [32, 31, 30, 30, 1, 1, 0, 0]


def test_exp_on_negative_values_of_zero_is_one():
    assert fp.exp_on_negative_values(0, 5) == INT32_MAX


@given(st.integers(-(1 << 31) + 1, 0))
def test_exp_on_negative_values_is_close_to_exp(raw):
    # Q5.26 input; result Q0.31. gemmlowp's polynomial is accurate to a few ULP of 2^-31 scale.
    x = raw / 2 ** 26
    got = int(fp.exp_on_negative_values(raw, 5)) / 2 ** 31
    assert abs(got - math.exp(x)) < 1e-6


@given(st.integers(0, INT32_MAX))
def test_one_over_one_plus_x_is_close_to_reciprocal(raw):
    x = raw / 2 ** 31
    got = int(fp.one_over_one_plus_x_for_x_in_0_1(raw)) / 2 ** 31
    assert abs(got - 1 / (1 + x)) < 1e-8


def test_calculate_input_radius():
    # (2^5 - 1) * 2^26 / 2^L floored.
    assert fp.calculate_input_radius(5, 0) == 31 << 26
    assert fp.calculate_input_radius(5, 20) == math.floor(31 * 2 ** 26 / 2 ** 20)
    assert fp.calculate_input_radius(4, 3) == math.floor(15 * 2 ** 27 / 8)


def test_int64_multiplier_rounds_half_up_with_reduced_precision():
    # M = 2^30 reduces to 2^14; shift 0 -> (x * 2^14 + 2^14) >> 15: ties round toward +inf.
    assert fp.multiply_by_quantized_multiplier_int64(1, 1 << 30, 0) == 1  # 0.5 -> 1
    assert fp.multiply_by_quantized_multiplier_int64(-1, 1 << 30, 0) == 0  # -0.5 -> 0
    assert fp.multiply_by_quantized_multiplier_int64(-3, 1 << 30, 0) == -1  # -1.5 -> -1


def test_truncating_divide_matches_c():
    a = np.array([7, -7, 7, -7])
    b = np.array([2, 2, -2, -2])
    assert fp.truncating_divide(a, b).tolist() == [3, -3, -3, 3]


def test_tflite_round_is_exact_where_adding_one_half_is_not():
    # 0.49999997f + 0.5f rounds to 1.0f in float32, but roundf(0.49999997f) is 0.
    x = np.array([np.nextafter(np.float32(0.5), np.float32(0)), 8388609.0, -8388609.0, 0.5, -0.5], np.float32)
    assert fp.tflite_round(x).tolist() == [0.0, 8388609.0, -8388609.0, 1.0, -1.0]
    assert fp.round_half_away_scalar(0.49999999999999994) == 0
    assert fp.round_half_away_scalar(-2.5) == -3 and fp.round_half_away_scalar(2.5) == 3


def test_wrap_int16_is_a_c_store_into_int16_t():
    assert [int(v) for v in fp.wrap_int16([32767, 32768, -32768, -32769, 65537, 772848128, -1])] == \
        [32767, -32768, -32768, 32767, 1, -17920, -1]


def test_quantize_multiplier_refuses_non_finite_multipliers_with_a_reason():
    import math

    import pytest

    from ops.common import real_multiplier
    assert real_multiplier(None, 0.5, divisor=0.0) == math.inf  # C's double division, no exception
    assert math.isnan(real_multiplier(None, 0.0, divisor=0.0))
    for m in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError, match="not finite"):
            fp.quantize_multiplier(m)


def test_calculate_input_radius_masks_the_shift_count_as_x86_does():
    """C's 1LL << shift with shift >= 64 (an input scale near FLT_MAX) uses shift & 63."""
    assert fp.calculate_input_radius(4, 155) == fp.calculate_input_radius(4, 155 & 63) == 15
    assert fp.calculate_input_radius(4, 63) == -1  # 1LL << 63 is INT64_MIN: a tiny negative, floored
