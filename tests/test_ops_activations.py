"""LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU, HARD_SWISH and PRELU (ops/activations.py).

Expected integer outputs marked "TFLM" were produced by the pinned TFLM wheel on the same
one-operator models.
"""
import numpy as np
import pytest

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from ops import hard_swish
from ops.c_semantics import float_function
from ops.registry import Numerics


def q(scale, zero_point=0):
    return dict(scale=scale, zero_point=zero_point)


def unary_model(op, dtype, shape, qi=None, qo=None, out_dtype=None, **options):
    b = ModelBuilder()
    x = b.input("x", shape, dtype, **(qi or {}))
    y = b.tensor("y", shape, out_dtype or dtype, **(qo or {}))
    b.op(op, [x], [y], **options)
    b.output(y)
    return b.build()


def run(data, *inputs, numerics=None):
    it = Interpreter.from_bytes(data, **({"numerics": numerics} if numerics else {}))
    return it.run(list(inputs))[0]


XS = np.array([-128, -100, -60, -20, -5, 0, 1, 5, 20, 60, 100, 127], np.int8)
YS = np.array([-32768, -20000, -5000, -700, -1, 0, 1, 700, 5000, 20000, 32767], np.int16)


@pytest.mark.parametrize("op, qi, qo, options, expected", [
    ("LOGISTIC", q(0.05, -3), q(1 / 256, -128), {}, [-128, -126, -114, -51, -6, 10, 13, 25, 66, 117, 127, 127]),
    ("TANH", q(0.05, -3), q(1 / 128, 0), {}, [-128, -128, -127, -88, -13, 19, 25, 49, 105, 127, 127, 127]),
    ("RELU", q(0.05, -3), q(0.02, 7), {}, [7, 7, 7, 7, 7, 15, 17, 27, 65, 127, 127, 127]),
    ("LEAKY_RELU", q(0.05, -3), q(0.04, 2), {"alpha": -0.5}, [80, 63, 38, 13, 3, 6, 7, 12, 31, 81, 127, 127]),
    ("HARD_SWISH", q(0.05, -3), q(0.03, -20), {}, [-20, -20, -22, -30, -22, -17, -16, -12, 7, 85, 127, 127]),
])
def test_int8_activations_match_tflm_values(op, qi, qo, options, expected):
    np.testing.assert_array_equal(run(unary_model(op, "INT8", [12], qi, qo, **options), XS),
                                  np.array(expected, np.int8))


@pytest.mark.parametrize("op, scale, expected", [
    ("LOGISTIC", 3e-4, [2, 81, 5978, 14670, 16381, 16384, 16387, 18098, 26790, 32687, 32766]),
    ("TANH", 3e-4, [-32767, -32767, -29660, -6781, -11, 0, 11, 6781, 29660, 32767, 32767]),
    ("LOGISTIC", 2 ** -12, [11, 247, 7465, 14987, 16382, 16384, 16386, 17781, 25303, 32521, 32757]),
    ("TANH", 2 ** -11, [-32767, -32767, -32275, -10783, -16, 0, 16, 10783, 32275, 32767, 32767]),
])
def test_int16_table_activations_match_tflm_values(op, scale, expected):
    """General scales go through the <=15-bit input multiplier; 2^-12 (LOGISTIC) and 2^-11
    (TANH) are power-of-two scales that take the multiplier-0 path."""
    data = unary_model(op, "INT16", [11], q(scale), q(2 ** -15))
    np.testing.assert_array_equal(run(data, YS), np.array(expected, np.int16))


def test_logistic_with_radius_zero_sends_a_zero_difference_to_the_minimum():
    # Scale 40 makes input_left_shift 33 and the input radius 0; TFLM tests `<= -radius` first.
    data = unary_model("LOGISTIC", "INT8", [12], q(40.0, 0), q(1 / 256, -128))
    expected = [-128, -128, -128, -128, -128, -128, 127, 127, 127, 127, 127, 127]  # TFLM
    np.testing.assert_array_equal(run(data, XS), np.array(expected, np.int8))


def test_logistic_int8_requires_output_zero_point_minus_128_but_ignores_output_scale():
    with pytest.raises(ModelError, match="zero_point must be -128"):
        Interpreter.from_bytes(unary_model("LOGISTIC", "INT8", [4], q(0.1), q(1 / 256, 0)))
    a = run(unary_model("LOGISTIC", "INT8", [12], q(0.05, -3), q(1 / 256, -128)), XS)
    b = run(unary_model("LOGISTIC", "INT8", [12], q(0.05, -3), q(0.3, -128)), XS)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("op", ["LOGISTIC", "TANH"])
def test_int16_table_activations_require_output_scale_2_pow_minus_15_and_zero_points_0(op):
    with pytest.raises(ModelError, match="2\\^-15"):
        Interpreter.from_bytes(unary_model(op, "INT16", [4], q(1e-4), q(2 ** -14)))
    with pytest.raises(ModelError, match="zero_point must be 0"):
        Interpreter.from_bytes(unary_model(op, "INT16", [4], q(1e-4, 3), q(2 ** -15)))


def test_relu6_clamps_in_the_input_domain_and_ignores_output_quantization():
    data = unary_model("RELU6", "INT8", [12], q(0.05, -3), q(0.5, 40))
    expected = [-3, -3, -3, -3, -3, 0, 1, 5, 20, 60, 100, 117]  # TFLM: six = round(6/0.05) - 3 = 117
    np.testing.assert_array_equal(run(data, XS), np.array(expected, np.int8))


def test_relu6_six_overflowing_int32_becomes_the_type_minimum():
    # 6 / 3e-10 does not fit an int32; the x86 conversion gives INT32_MIN, clamped to -128. The
    # upper clamp is tested first, so every value above -128 becomes -128 and -128 itself is
    # raised to the zero point (TFLM gives the same).
    data = unary_model("RELU6", "INT8", [12], q(3e-10, 5), q(0.1, 0))
    np.testing.assert_array_equal(run(data, XS), np.array([5] + [-128] * 11, np.int8))


def test_relu_int16_requires_zero_points_0():
    with pytest.raises(ModelError, match="zero_point must be 0"):
        Interpreter.from_bytes(unary_model("RELU", "INT16", [4], q(1e-3, 5), q(1e-3, 5)))


def test_hard_swish_rounding_divide_by_16_or_more_bits_uses_the_wrapped_int16_mask():
    # Output multiplier 0.2/128/120 has exponent -16: gemmlowp's int16 RoundingDivideByPOT then
    # has mask -1, so 0 and small positive values round to 1 and negative values to -1.
    data = unary_model("HARD_SWISH", "INT8", [12], q(0.2, 0), q(120.0, 0))
    expected = [1, 1, 1, 1, -1, 1, 1, 1, 1, 1, 1, 1]  # TFLM
    np.testing.assert_array_equal(run(data, XS), np.array(expected, np.int8))
    assert hard_swish.rounding_divide_by_pot_int16(np.array([0, 5, -5]), 16).tolist() == [1, 1, -1]
    assert hard_swish.rounding_divide_by_pot_int16(np.array([0, 5, -5, 32767]), 15).tolist() == [0, 0, 0, 1]


def test_hard_swish_rejects_a_positive_output_exponent():
    with pytest.raises(ModelError, match="output_multiplier_exponent <= 0"):
        Interpreter.from_bytes(unary_model("HARD_SWISH", "INT8", [4], q(5.0), q(0.01, 3)))


def test_leaky_relu_negative_alpha_negates_the_scaled_negative_side():
    data = unary_model("LEAKY_RELU", "INT8", [3], q(0.1, 0), q(0.1, 0), alpha=-0.5)
    np.testing.assert_array_equal(run(data, np.array([-20, 0, 20], np.int8)), np.array([10, 0, 20], np.int8))


@pytest.mark.parametrize("op, qi, qo", [("RELU", q(0.3), q(0.07)), ("LEAKY_RELU", q(0.3), q(0.07)),
                                       ("HARD_SWISH", q(0.015411105938255787), q(0.013667987659573555))])
def test_float32_scale_precision_variant_changes_the_multiplier(op, qi, qo):
    options = {"alpha": 0.3} if op == "LEAKY_RELU" else {}
    data = unary_model(op, "INT8", [4], qi, qo, **options)
    wheel = Interpreter.from_bytes(data).kernels[0].describe()
    older = Interpreter.from_bytes(data, numerics=Numerics(scale_precision="float32")).kernels[0].describe()
    assert wheel != older


# ---------------------------------------------------------------------------------- float32

def test_float_logistic_follows_the_cutoffs_and_libm_expf():
    x = np.array([0.0, 17.0, -10.0, 2.0], np.float32)
    got = run(unary_model("LOGISTIC", "FLOAT32", [4]), x)
    assert got[0] == np.float32(0.5) and got[1] == np.float32(1.0)
    assert got[2] == float_function("exp")(np.float32(-10.0))  # below -9: exp(x) itself
    assert got[3] == np.float32(1) / (np.float32(1) + float_function("exp")(np.float32(-2.0)))


def test_float_hard_swish_and_relu6():
    x = np.array([-4.0, -1.5, 0.5, 3.0, 7.0], np.float32)
    hs = run(unary_model("HARD_SWISH", "FLOAT32", [5]), x)
    np.testing.assert_array_equal(hs, (x * np.clip(x + 3, 0, 6) / 6).astype(np.float32))
    np.testing.assert_array_equal(run(unary_model("RELU6", "FLOAT32", [5]), x), np.clip(x, 0, 6))


# ---------------------------------------------------------------------------------- PRELU

def prelu_model(dtype, shape, alpha_shape, qi, qa, qo, alpha_dtype=None, alpha=None):
    b = ModelBuilder()
    x = b.input("x", shape, dtype, **qi)
    if alpha is None:
        a = b.input("alpha", alpha_shape, alpha_dtype or dtype, **qa)
    else:
        a = b.constant("alpha", np.asarray(alpha).reshape(alpha_shape), alpha_dtype or dtype, **qa)
    y = b.tensor("y", np.broadcast_shapes(tuple(shape), tuple(alpha_shape)), dtype, **qo)
    b.op("PRELU", [x, a], [y])
    b.output(y)
    return b.build()


def test_prelu_int8_matches_tflm_values():
    x = np.array([-128, -100, -50, -1, 0, 1, 37, 90, 127, 127, -128, 5], np.int8)
    alpha = np.array([127, -128, 3, -1, 0, 64, -77, 12, 127, -128, -128, 100], np.int8)
    data = prelu_model("INT8", [12], [12], q(0.05, 3), q(0.02, -7), q(0.03, 1))
    expected = [-128, 127, -17, 0, 0, -4, 58, 127, 127, 127, 127, 4]  # TFLM
    np.testing.assert_array_equal(run(data, x, alpha), np.array(expected, np.int8))


def test_prelu_constant_alpha_broadcasts_over_channels():
    alpha = np.array([1, -2, 3], np.int8)
    data = prelu_model("INT8", [2, 2, 3], [3], q(0.1, 0), q(0.5, 0), q(0.1, 0), alpha=alpha)
    x = np.array([-10, -10, -10, 10, 10, 10] * 2, np.int8).reshape(2, 2, 3)
    got = run(data, x)
    # Below zero: x * (alpha * 0.5) on the same scale; above: identity.
    np.testing.assert_array_equal(got[0, 0], [-5, 10, -15])
    np.testing.assert_array_equal(got[0, 1], [10, 10, 10])


def test_prelu_int16_requires_int8_alpha():
    with pytest.raises(ModelError, match="alpha->type == kTfLiteInt8"):
        Interpreter.from_bytes(prelu_model("INT16", [4], [4], q(1e-3), q(1e-2), q(1e-3)))
