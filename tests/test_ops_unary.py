"""Unary ops, comparisons, logical ops, SELECT_V2 and CAST (ops/unary.py, ops/comparisons.py,
ops/cast.py) on edge values, without TFLM.

Expected integer outputs marked "TFLM" were produced by the pinned TFLM wheel on the same
one-operator models; the others follow from the C code (round half to even, saturation, ...).
"""
import math

import numpy as np
import pytest

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder
from interp.errors import InvokeError
from ops import fixedpoint as fp
from ops import unary
from ops.c_semantics import float_function
from ops.cast import cast_values
from ops.registry import Numerics


def q(scale, zero_point=0):
    return dict(scale=scale, zero_point=zero_point)


def unary_model(op, dtype, shape, qi=None, qo=None, out_dtype=None):
    b = ModelBuilder()
    x = b.input("x", shape, dtype, **(qi or {}))
    y = b.tensor("y", shape, out_dtype or dtype, **(qo or {}))
    b.op(op, [x], [y])
    b.output(y)
    return b.build()


def binary_model(op, dtype, shape1, shape2, out_shape, q1=None, q2=None, out_dtype="BOOL"):
    b = ModelBuilder()
    x1 = b.input("a", shape1, dtype, **(q1 or {}))
    x2 = b.input("b", shape2, dtype, **(q2 or {}))
    y = b.tensor("y", out_shape, out_dtype)
    b.op(op, [x1, x2], [y])
    b.output(y)
    return b.build()


def run(data, *inputs, numerics=None):
    it = Interpreter.from_bytes(data, **({"numerics": numerics} if numerics else {}))
    return it.run(list(inputs))[0]


def bits(a):
    return np.asarray(a, np.float32).view(np.uint32)


XS = np.array([-128, -100, -60, -20, -5, 0, 1, 5, 20, 60, 100, 127], np.int8)


# ------------------------------------------------------------------------------ float32 kernels

def test_round_is_half_to_even_and_signed_zeros_follow_the_c_arithmetic():
    # -0.5 rounds to floor(-0.5) + 1 = +0.0 (not -0.0); -0.0 stays -0.0 (floor keeps it).
    x = np.array([-2.5, -1.5, -0.5, -0.0, 0.5, 1.5, 2.5, 0.49999997, -0.49999997, 8388607.5, 16777215.0,
                  -3.7, 3e38], np.float32)
    want = np.array([-2.0, -2.0, 0.0, -0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 8388608.0, 16777215.0, -4.0, 3e38],
                    np.float32)
    got = run(unary_model("ROUND", "FLOAT32", [x.size]), x)
    np.testing.assert_array_equal(bits(got), bits(want))


def test_round_to_nearest_is_correct_on_every_exact_half_near_the_float32_limit():
    # Exact halves exist up to 2^23; above, every float32 is an integer and stays as it is.
    k = np.arange(8388600, 8388608, dtype=np.float64)
    x = (k + 0.5).astype(np.float32)
    want = np.where(k % 2 == 0, k, k + 1).astype(np.float32)
    np.testing.assert_array_equal(unary.round_to_nearest(x), want)


def test_ceil_floor_neg_abs_on_signed_zeros_and_denormals():
    x = np.array([-0.5, -0.0, 0.0, 1e-45, -1e-45, -1.0, 2.5], np.float32)
    cases = {"CEIL": [-0.0, -0.0, 0.0, 1.0, -0.0, -1.0, 3.0], "FLOOR": [-1.0, -0.0, 0.0, 0.0, -1.0, -1.0, 2.0],
             "NEG": [0.5, 0.0, -0.0, -1e-45, 1e-45, 1.0, -2.5], "ABS": [0.5, 0.0, 0.0, 1e-45, 1e-45, 1.0, 2.5]}
    for op, want in cases.items():
        got = run(unary_model(op, "FLOAT32", [x.size]), x)
        np.testing.assert_array_equal(bits(got), bits(np.array(want, np.float32)), err_msg=op)


def test_libm_kernels_call_the_single_precision_c_functions():
    x = np.array([-104.0, -87.0, -1e-10, 0.0, 1.0, 88.7, 89.0, 1e6, 3e38], np.float32)
    for op, name in (("EXP", "exp"), ("SIN", "sin"), ("COS", "cos")):
        got = run(unary_model(op, "FLOAT32", [x.size]), x)
        with np.errstate(over="ignore"):
            want = float_function(name)(x)
        np.testing.assert_array_equal(bits(got), bits(want), err_msg=op)
    exp = run(unary_model("EXP", "FLOAT32", [x.size]), x)
    assert exp[0] == 0 and math.isinf(exp[7]) and exp[3] == 1


def test_log_sqrt_rsqrt_of_zero_and_negatives():
    x = np.array([-1.0, -0.0, 0.0, 4.0, 1e-45], np.float32)
    log = run(unary_model("LOG", "FLOAT32", [5]), x)
    assert np.isnan(log[0]) and log[1] == -np.inf and log[2] == -np.inf and log[3] == np.float32(math.log(4))
    sqrt = run(unary_model("SQRT", "FLOAT32", [5]), x)
    assert np.isnan(sqrt[0]) and sqrt[3] == 2 and sqrt[4] == np.sqrt(np.float32(1e-45))
    rsqrt = run(unary_model("RSQRT", "FLOAT32", [5]), x)
    assert np.isnan(rsqrt[0]) and rsqrt[1] == -np.inf and rsqrt[2] == np.inf and rsqrt[3] == 0.5


def test_square_overflows_to_inf_in_float32():
    got = run(unary_model("SQUARE", "FLOAT32", [3]), np.array([2e19, -3.0, 1e-30], np.float32))
    assert math.isinf(got[0]) and got[1] == 9 and got[2] == 0


def test_float_elu_uses_expm1f_below_zero():
    x = np.array([-1e-10, -1e-3, -20.0, -0.0, 0.0, 5.0], np.float32)
    got = run(unary_model("ELU", "FLOAT32", [6]), x)
    np.testing.assert_array_equal(bits(got[:3]), bits(float_function("expm1")(x[:3])))
    assert got[0] == np.float32(-1e-10) and got[2] == np.float32(-1.0) and got[5] == 5
    assert np.signbit(got[3]) and not np.signbit(got[4])  # -0.0 is not below zero: passed through


# ------------------------------------------------------------------------------ ABS and RSQRT

@pytest.mark.parametrize("qi, qo, expected", [
    (q(0.05, -3), q(0.02, 7), [127, 127, 127, 50, 12, 15, 17, 27, 65, 127, 127, 127]),  # TFLM
    (q(0.05, -3), q(0.05, -128), [-3, -31, -71, -111, -126, -125, -124, -120, -105, -65, -25, 2]),  # TFLM
])
def test_int8_abs_matches_tflm_values(qi, qo, expected):
    np.testing.assert_array_equal(run(unary_model("ABS", "INT8", [12], qi, qo), XS), np.array(expected, np.int8))


def test_int16_abs_quantized_and_plain():
    ys = np.array([-32768, -20000, -5000, -700, -1, 0, 1, 700, 5000, 20000, 32767], np.int16)
    got = run(unary_model("ABS", "INT16", [11], q(3e-4), q(5e-4)), ys)
    np.testing.assert_array_equal(got, [19661, 12000, 3000, 420, 1, 0, 1, 420, 3000, 12000, 19660])  # TFLM
    # Without quantization: std::abs on the promoted value, stored back into int16 (wraps).
    got = run(unary_model("ABS", "INT16", [11]), ys)
    np.testing.assert_array_equal(got, [-32768, 20000, 5000, 700, 1, 0, 1, 700, 5000, 20000, 32767])


def test_abs_scale_ratio_in_double_or_float32():
    # s_in / s_out rounds differently in float32 and in double for these scales.
    s_in, s_out = 0.3, 0.7
    double = Interpreter.from_bytes(unary_model("ABS", "INT8", [1], q(s_in), q(s_out))).kernels[0]
    single = Interpreter.from_bytes(unary_model("ABS", "INT8", [1], q(s_in), q(s_out)),
                                    numerics=Numerics(scale_precision="float32")).kernels[0]
    ratio64 = float(np.float32(s_in)) / float(np.float32(s_out))
    ratio32 = float(np.float32(np.float32(s_in) / np.float32(s_out)))
    assert ratio64 != ratio32
    assert double.params.multiplier == round(math.frexp(ratio64)[0] * 2 ** 31)
    assert single.params.multiplier == round(math.frexp(ratio32)[0] * 2 ** 31)


@pytest.mark.parametrize("qi, qo, expected", [
    (q(0.05, -128), q(0.01, -100), [127, 127, -15, -46, -57, -60, -61, -61, -63, -67, -70, -72]),  # TFLM
    (q(1e-3, -128), q(0.2, 0), [127, 127, 30, 19, 15, 14, 14, 14, 13, 12, 10, 10]),  # TFLM
    # Scales of 1000 shift right by 34: x86's masked shift makes every output saturate (TFLM).
    (q(1000.0, -128), q(1000.0, -128), [127] * 12),
])
def test_int8_rsqrt_matches_tflm_values(qi, qo, expected):
    x = np.array([-128, -127, -100, -60, -20, 0, 1, 5, 20, 60, 100, 127], np.int8)
    np.testing.assert_array_equal(run(unary_model("RSQRT", "INT8", [12], qi, qo), x), np.array(expected, np.int8))


def test_int16_rsqrt_matches_tflm_values():
    x = np.array([0, 1, 2, 3, 100, 700, 5000, 20000, 32767], np.int16)
    got = run(unary_model("RSQRT", "INT16", [9], q(3e-4), q(2e-3)), x)
    np.testing.assert_array_equal(got, [32767, 28868, 20412, 16667, 2887, 1091, 408, 204, 159])  # TFLM


def test_int8_rsqrt_is_close_to_the_real_function():
    # elementwise_test.cc's QuantizedRsqrt case: within one output step of 1/sqrt.
    x_real = np.array([15., 46., 78., 142., 1., 17., 49., 113.])
    s_in, zp_in, s_out, zp_out = 142.0 / 255.0, 127 - 142, 1.0 / 255.0, -128
    x = np.clip(np.round(x_real / np.float32(s_in)) + zp_in, -128, 127).astype(np.int8)
    got = run(unary_model("RSQRT", "INT8", [8], q(s_in, zp_in), q(s_out, zp_out)), x)
    real = (got.astype(np.float64) - zp_out) * np.float32(s_out)
    np.testing.assert_allclose(real, 1 / np.sqrt(np.float32(s_in) * (x.astype(np.float64) - zp_in)), atol=s_in)


def test_inv_sqrt_multiplier_approximates_the_inverse_square_root():
    # GetInvSqrtQuantizedMultiplierExp(v, -1): v^-1/2 = M * 2^(shift - 31), to about 2^-19.
    v = np.array([2, 3, 7, 100, 255, 4096, 65535, 1 << 20, (1 << 29) + 1, (1 << 31) - 1])
    m, shift = fp.get_inv_sqrt_quantized_multiplier_exp(v, -1)
    np.testing.assert_allclose(m * 2.0 ** (shift.astype(np.float64) - 31), 1 / np.sqrt(v), rtol=2e-6)
    m01, s01 = fp.get_inv_sqrt_quantized_multiplier_exp(np.array([0, 1]), -1)
    assert list(m01) == [2 ** 31 - 1] * 2 and list(s01) == [0, 0]


def test_rsqrt_below_the_zero_point_raises_invoke_error():
    it = Interpreter.from_bytes(unary_model("RSQRT", "INT8", [3], q(0.1, 10), q(0.1, 0)))
    with pytest.raises(InvokeError, match="below the input zero point 10"):
        it.run([np.array([10, 9, 11], np.int8)])
    assert it.run([np.array([10, 10, 11], np.int8)])[0][0] == 127  # x == zero point: the largest output


def test_rsqrt_of_a_constant_below_the_zero_point_is_refused_at_load():
    b = ModelBuilder()
    x = b.input("x", [2], "INT8", **q(0.1, 0))
    c = b.constant("c", np.array([5, 3], np.int8), "INT8", **q(0.1, 4))
    r = b.tensor("r", [2], "INT8", **q(0.1, 0))
    y = b.tensor("y", [2], "INT8", **q(0.1, 0))
    b.op("RSQRT", [c], [r])
    b.op("ADD", [x, r], [y])
    b.output(y)
    with pytest.raises(ModelError, match="below the input zero point 4"):
        Interpreter.from_bytes(b.build())


def test_quantized_abs_rsqrt_refusals():
    with pytest.raises(ModelError, match="zero_point must be 0"):
        Interpreter.from_bytes(unary_model("ABS", "INT16", [2], q(0.1, 1), q(0.1, 0)))
    with pytest.raises(ModelError, match="needs a quantized output"):
        Interpreter.from_bytes(unary_model("RSQRT", "INT8", [2], q(0.1, 1)))
    with pytest.raises(ModelError, match="TF_LITE_ENSURE_TYPES_EQ"):
        Interpreter.from_bytes(unary_model("ABS", "INT8", [2], q(0.1), q(0.1), out_dtype="INT16"))
    with pytest.raises(UnsupportedOpError, match="Eval handles FLOAT32, INT8, INT16"):
        Interpreter.from_bytes(unary_model("ABS", "INT32", [2]))


# ------------------------------------------------------------------------------ ELU, ZEROS_LIKE

@pytest.mark.parametrize("qi, qo, expected", [
    (q(0.05, -3), q(0.03, 20), [-13, -13, -11, 1, 17, 25, 27, 33, 58, 125, 127, 127]),  # TFLM
    (q(0.2, 10), q(0.1, 0), [-10, -10, -10, -10, -10, -9, -8, -6, 20, 100, 127, 127]),  # TFLM
])
def test_int8_elu_table_matches_tflm_values(qi, qo, expected):
    np.testing.assert_array_equal(run(unary_model("ELU", "INT8", [12], qi, qo), XS), np.array(expected, np.int8))


def test_int8_elu_out_of_range_rescaled_values_wrap_through_int32_min():
    # roundf(x / s_out) beyond int32 converts to INT32_MIN (cvttss2si), which clamps to -128:
    # a huge positive input lands at the bottom of the range, as in TFLM.
    got = run(unary_model("ELU", "INT8", [2], q(1e3, 0), q(1e-9, 0)), np.array([100, -100], np.int8))
    np.testing.assert_array_equal(got, [-128, -128])


def test_zeros_like_any_supported_type_and_refusals():
    for dtype, values in (("INT64", np.array([5, -7], np.int64)), ("FLOAT32", np.array([1.5, -2], np.float32))):
        got = run(unary_model("ZEROS_LIKE", dtype, [2]), values)
        assert got.dtype == values.dtype and not got.any()
    with pytest.raises(UnsupportedOpError, match="INT64, INT32, INT8, FLOAT32"):
        Interpreter.from_bytes(unary_model("ZEROS_LIKE", "INT16", [2]))
    with pytest.raises(UnsupportedOpError, match="writes INT32 zeros"):
        Interpreter.from_bytes(unary_model("ZEROS_LIKE", "INT32", [2], out_dtype="FLOAT32"))


def test_logical_not():
    got = run(unary_model("LOGICAL_NOT", "BOOL", [3]), np.array([True, False, True]))
    np.testing.assert_array_equal(got, [False, True, False])


# ------------------------------------------------------------------------------ CAST

def test_cast_float_to_integers_truncates_and_saturates_nan_to_zero():
    x = np.array([np.nan, np.inf, -np.inf, 127.9, 128.0, -128.9, -129.0, -0.5, 2147483520.0, 2147483648.0,
                  4294967040.0, 5e9, -1.5], np.float32)
    want = {"INT8": [0, 127, -128, 127, 127, -128, -128, 0, 127, 127, 127, 127, -1],
            "INT16": [0, 32767, -32768, 127, 128, -128, -129, 0, 32767, 32767, 32767, 32767, -1],
            "INT32": [0, 2 ** 31 - 1, -2 ** 31, 127, 128, -128, -129, 0, 2147483520, 2 ** 31 - 1, 2 ** 31 - 1,
                      2 ** 31 - 1, -1],
            "UINT32": [0, 2 ** 32 - 1, 0, 127, 128, 0, 0, 0, 2147483520, 2147483648, 4294967040, 2 ** 32 - 1, 0]}
    for target, expected in want.items():
        got = cast_values(x, "FLOAT32", target)
        assert got.dtype == np.dtype(target.lower())
        np.testing.assert_array_equal(got, np.array(expected, target.lower()), err_msg=target)


def test_cast_integer_conversions_wrap_and_bools_are_zero_or_one():
    np.testing.assert_array_equal(cast_values(np.array([200, -200, 70000], np.int32), "INT32", "INT8"),
                                  np.array([-56, 56, 112], np.int8))
    np.testing.assert_array_equal(cast_values(np.array([-1, -56], np.int8), "INT8", "UINT32"),
                                  np.array([4294967295, 4294967240], np.uint32))
    np.testing.assert_array_equal(cast_values(np.array([3000000000], np.uint32), "UINT32", "INT32"),
                                  np.array([-1294967296], np.int32))
    np.testing.assert_array_equal(cast_values(np.array([True, False]), "BOOL", "FLOAT32"), [1.0, 0.0])
    np.testing.assert_array_equal(cast_values(np.array([16777217, -16777217], np.int32), "INT32", "FLOAT32"),
                                  np.array([16777216.0, -16777216.0], np.float32))


def test_cast_to_bool_is_nonzero():
    x = np.array([np.nan, -0.0, 0.0, 1e-45, -3.0], np.float32)
    np.testing.assert_array_equal(cast_values(x, "FLOAT32", "BOOL"), [True, False, False, True, True])
    got = run(unary_model("CAST", "INT16", [3], out_dtype="BOOL"), np.array([0, -1, 256], np.int16))
    np.testing.assert_array_equal(got, [False, True, True])


def test_cast_refuses_types_tflm_does_not_convert():
    with pytest.raises(UnsupportedOpError, match="not supported by TFLM's CAST"):
        Interpreter.from_bytes(unary_model("CAST", "INT64", [2], out_dtype="INT32"))
    with pytest.raises(UnsupportedOpError, match="not supported by TFLM's CAST"):
        Interpreter.from_bytes(unary_model("CAST", "FLOAT32", [2], out_dtype="UINT8"))


# ------------------------------------------------------------------------------ comparisons

def test_int8_comparisons_rescale_both_inputs_first():
    # 2 at scale 0.5 and 4 at scale 0.25 are both 1.0: EQUAL, not LESS.
    data = binary_model("EQUAL", "INT8", [3], [3], [3], q(0.5), q(0.25))
    a, b = np.array([2, 2, -128], np.int8), np.array([4, 5, 127], np.int8)
    np.testing.assert_array_equal(run(data, a, b), [True, False, False])
    data = binary_model("LESS", "INT8", [3], [3], [3], q(0.5), q(0.25))
    np.testing.assert_array_equal(run(data, a, b), [False, True, True])


def test_int8_comparison_ties_after_rescaling_that_real_values_do_not_have():
    # 1 * 0.1000001 and 1 * 0.1 differ as reals but rescale to the same fixed-point value.
    data = binary_model("EQUAL", "INT8", [1], [1], [1], q(0.1000001), q(0.1))
    assert run(data, np.array([1], np.int8), np.array([1], np.int8))[0]


def test_comparisons_broadcast_and_order_floats_like_c():
    data = binary_model("GREATER_EQUAL", "FLOAT32", [2, 1], [3], [2, 3])
    got = run(data, np.array([[0.0], [-1.0]], np.float32), np.array([-0.0, 0.5, -1.0], np.float32))
    np.testing.assert_array_equal(got, [[True, False, True], [False, False, True]])
    data = binary_model("NOT_EQUAL", "INT64", [2], [], [2])
    got = run(data, np.array([2 ** 62, -5], np.int64), np.array(-5, np.int64))
    np.testing.assert_array_equal(got, [True, False])


def test_comparison_refusals():
    with pytest.raises(ModelError, match="QuantizeMultiplierSmallerThanOneExp"):
        Interpreter.from_bytes(binary_model("LESS", "INT8", [2], [2], [2], q(1.0), q(0.5)))
    with pytest.raises(UnsupportedOpError, match="uninitialised"):
        Interpreter.from_bytes(binary_model("GREATER", "INT16", [2], [2], [2], q(0.5), q(0.5)))
    with pytest.raises(UnsupportedOpError, match="Eval handles"):
        Interpreter.from_bytes(binary_model("LESS", "BOOL", [2], [2], [2]))
    with pytest.raises(UnsupportedOpError, match="writes bool"):
        Interpreter.from_bytes(binary_model("EQUAL", "INT32", [2], [2], [2], out_dtype="INT32"))
    with pytest.raises(ModelError, match="do not broadcast"):
        Interpreter.from_bytes(binary_model("EQUAL", "INT32", [2], [3], [3]))


def test_logical_and_or_broadcast():
    a = np.array([[True], [False]])
    b = np.array([True, False, True])
    np.testing.assert_array_equal(run(binary_model("LOGICAL_AND", "BOOL", [2, 1], [3], [2, 3]), a, b),
                                  [[True, False, True], [False, False, False]])
    np.testing.assert_array_equal(run(binary_model("LOGICAL_OR", "BOOL", [2, 1], [3], [2, 3]), a, b),
                                  [[True, True, True], [True, False, True]])
    with pytest.raises(UnsupportedOpError, match="only bool inputs"):
        Interpreter.from_bytes(binary_model("LOGICAL_AND", "INT8", [2], [2], [2]))


def test_select_v2_broadcasts_and_ignores_quantization():
    b = ModelBuilder()
    c = b.input("c", [2, 1], "BOOL")
    x = b.input("x", [3], "INT8", **q(0.5, 3))
    y = b.input("y", [], "INT8", **q(7.0, -20))
    o = b.tensor("o", [2, 3], "INT8", **q(1.0, 0))
    b.op("SELECT_V2", [c, x, y], [o])
    b.output(o)
    got = run(b.build(), np.array([[True], [False]]), np.array([1, -2, 3], np.int8), np.array(-9, np.int8))
    np.testing.assert_array_equal(got, [[1, -2, 3], [-9, -9, -9]])


def test_select_v2_refusals():
    def select(cond_type="BOOL", x_type="FLOAT32", y_type="FLOAT32", out_type="FLOAT32", out_shape=(3,)):
        b = ModelBuilder()
        ins = [b.input("c", [3], cond_type), b.input("x", [3], x_type), b.input("y", [1], y_type)]
        o = b.tensor("o", list(out_shape), out_type)
        b.op("SELECT_V2", ins, [o])
        b.output(o)
        return b.build()
    with pytest.raises(ModelError, match="kTfLiteBool"):
        Interpreter.from_bytes(select(cond_type="INT8"))
    with pytest.raises(ModelError, match="input_y->type"):
        Interpreter.from_bytes(select(y_type="INT8"))
    with pytest.raises(ModelError, match="output_shape->data"):
        Interpreter.from_bytes(select(out_shape=(4,)))
    with pytest.raises(UnsupportedOpError, match="writes FLOAT32 values"):
        Interpreter.from_bytes(select(out_type="INT32"))
    with pytest.raises(UnsupportedOpError, match="SELECT_V2"):
        Interpreter.from_bytes(select(x_type="INT32", y_type="INT32", out_type="INT32"))
