"""QUANTIZE and DEQUANTIZE (ops/quantize.py).

Expected values marked "TFLM" were produced by the pinned TFLM wheel on the same models.
"""
import numpy as np
import pytest

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from ops.fixedpoint import tflite_round as round_half_away_from_zero


def q(scale, zero_point=0):
    return dict(scale=scale, zero_point=zero_point)


def unary_model(op, in_dtype, out_dtype, shape, qi=None, qo=None):
    b = ModelBuilder()
    x = b.input("x", shape, in_dtype, **(qi or {}))
    y = b.tensor("y", shape, out_dtype, **(qo or {}))
    b.op(op, [x], [y])
    b.output(y)
    return b.build()


def run(data, x):
    return Interpreter.from_bytes(data).run([x])[0]


XS = np.array([-128, -100, -60, -20, -5, 0, 1, 5, 20, 60, 100, 127], np.int8)
BELOW_EIGHTH = np.nextafter(np.float32(0.125), np.float32(0))
XF = np.array([0.125, -0.125, 0.375, BELOW_EIGHTH, 1e30, -1e30, 31.875, -32.125, 0.3, -0.7], np.float32)


@pytest.mark.parametrize("zero_point, expected", [
    (0, [1, -1, 2, 0, -128, -128, 127, -128, 1, -3]),
    (-3, [-2, -4, -1, -3, 127, 127, 125, -128, -2, -6]),
])
def test_float_to_int8_matches_tflm_values(zero_point, expected):
    """Exact halves (0.125 / 0.25) round away from zero, the float just below stays 0; an
    out-of-int32 quotient converts to INT32_MIN (x86), so +1e30 gives -128 and, once the zero
    point -3 wraps it to INT32_MAX - 2, -1e30 and +1e30 both give 127."""
    data = unary_model("QUANTIZE", "FLOAT32", "INT8", [10], None, q(0.25, zero_point))
    np.testing.assert_array_equal(run(data, XF), np.array(expected, np.int8))


def test_float_quantization_divides_instead_of_multiplying_by_the_reciprocal():
    scale = np.float32(0.1)
    halves = (np.arange(-3000, 3000, dtype=np.float32) + np.float32(0.5)) * scale
    x = np.concatenate([halves, np.nextafter(halves, np.float32(np.inf)),
                        np.nextafter(halves, np.float32(-np.inf))])
    divided = round_half_away_from_zero(x / scale)
    multiplied = round_half_away_from_zero(x * (np.float32(1) / scale))
    assert np.count_nonzero(divided != multiplied) > 100
    data = unary_model("QUANTIZE", "FLOAT32", "INT16", [x.size], None, q(float(scale), 0))
    np.testing.assert_array_equal(run(data, x), divided.astype(np.int16))


def test_round_half_away_from_zero_is_exact_next_to_one_half():
    x = np.array([0.5, -0.5, np.nextafter(np.float32(0.5), np.float32(0)), 2.5, -2.5, 8388609.0], np.float32)
    assert round_half_away_from_zero(x).tolist() == [1.0, -1.0, 0.0, 3.0, -3.0, 8388609.0]


@pytest.mark.parametrize("in_dtype, out_dtype, qi, qo, x, expected", [
    ("INT8", "INT8", q(0.05, -3), q(0.02, 7), XS, [-128, -128, -128, -36, 2, 15, 17, 27, 65, 127, 127, 127]),
    ("INT8", "INT16", q(0.05, -3), q(1e-4, 0), XS,
     [-32768, -32768, -28500, -8500, -1000, 1500, 2000, 4000, 11500, 31500, 32767, 32767]),
    ("INT16", "INT8", q(1e-3, 0), q(0.1, -5),
     np.array([-32768, -20000, -5000, -700, -1, 0, 1, 700, 5000, 20000, 32767], np.int16),
     [-128, -128, -55, -12, -5, -5, -5, 2, 45, 127, 127]),
])
def test_requantization_matches_tflm_values(in_dtype, out_dtype, qi, qo, x, expected):
    data = unary_model("QUANTIZE", in_dtype, out_dtype, list(x.shape), qi, qo)
    got = run(data, x)
    assert got.dtype == np.dtype(out_dtype.lower())
    np.testing.assert_array_equal(got, np.array(expected))


def test_int8_to_uint8_with_equal_scales_is_the_xor_0x80_shift():
    data = unary_model("QUANTIZE", "INT8", "UINT8", [256], q(0.1, -5), q(0.1, 123))
    x = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(run(data, x), (x.view(np.uint8) ^ 0x80))


def test_int32_to_int8_requantizes_without_a_table():
    data = unary_model("QUANTIZE", "INT32", "INT8", [4], q(0.001, 0), q(0.1, 0))
    got = run(data, np.array([2 ** 31 - 1, -(2 ** 31), 1550, -1450], np.int32))
    np.testing.assert_array_equal(got, [127, -128, 16, -15])  # 15.5 and -14.5 round away from zero


@pytest.mark.parametrize("in_dtype, out_dtype, qo, message", [
    ("INT32", "INT32", q(0.01), "no INT32 -> INT32 kernel"),
    ("FLOAT32", "UINT8", q(0.01), "no FLOAT32 -> UINT8 kernel"),
    ("FLOAT32", "INT8", None, "affine-quantized"),
    ("FLOAT32", "INT8", q([0.1, 0.2], [0, 0]), "per tensor"),
    ("FLOAT32", "FLOAT32", q(0.1), "output type FLOAT32"),
])
def test_quantize_variants_tflm_refuses_are_rejected(in_dtype, out_dtype, qo, message):
    qi = q(0.01) if in_dtype != "FLOAT32" else None
    with pytest.raises(ModelError, match=message):
        Interpreter.from_bytes(unary_model("QUANTIZE", in_dtype, out_dtype, [2], qi, qo))


def test_dequantize_multiplies_in_double_then_rounds_once():
    data = unary_model("DEQUANTIZE", "INT8", "FLOAT32", [12], q(0.1, -3))
    expected_bits = [3242721280, 3239785267, 3233179239, 3218708890, 3192704205, 1050253722, 1053609165,
                     1061997773, 1075000115, 1086953882, 1092930765, 1095761920]  # TFLM
    assert run(data, XS).view(np.uint32).tolist() == expected_bits


def test_dequantize_rejects_non_float_output():
    with pytest.raises(ModelError, match="not FLOAT32"):
        Interpreter.from_bytes(unary_model("DEQUANTIZE", "INT8", "INT16", [2], q(0.1), q(0.1)))
