"""Edge values of DIV, FLOOR_DIV, FLOOR_MOD, ADD_N, CUMSUM, REDUCE_ALL, L2_NORMALIZATION, LOG_SOFTMAX,
L2_POOL_2D and BATCH_MATMUL, without TFLM.

Expected values are worked out by hand or were read off the tflite-micro wheel once (those say
so): they keep guarding the kernels where the wheel is not installed.
"""
import numpy as np
import pytest

from interp import InputError, Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder
from ops import fixedpoint as fp
from ops.fixedpoint import (
    count_leading_sign_bits,
    get_inv_sqrt_quantized_multiplier_exp,
    log_x_for_x_greater_than_or_equal_to_1,
    x86_rounding_divide_by_pot,
)


def run_op(op, inputs, out, options=None, constants=()):
    """Build a one-op model; ``inputs`` are (name, array, type, quantization) and those named in
    ``constants`` become constant tensors. Returns the output for the fed arrays."""
    b = ModelBuilder()
    ids, feeds = [], []
    for name, array, kind, q in inputs:
        if name in constants:
            ids.append(b.constant(name, array, kind, **q))
        else:
            ids.append(b.input(name, list(np.shape(array)), kind, **q))
            feeds.append(np.asarray(array))
    y = b.tensor("y", out[0], out[1], **out[2])
    b.op(op, ids, [y], **(options or {}))
    b.output(y)
    return Interpreter.from_bytes(b.build()).run(feeds)[0]


def model(op, inputs, out, options=None):
    b = ModelBuilder()
    ids = [b.input(name, shape, kind, **q) for name, shape, kind, q in inputs]
    y = b.tensor("y", out[0], out[1], **out[2])
    b.op(op, ids, [y], **(options or {}))
    b.output(y)
    return b.build()


Q1 = dict(scale=1.0, zero_point=0)


# ------------------------------------------------------------------------------ fixed-point helpers

def test_x86_rounding_divide_by_pot_is_gemmlowps_for_exponents_0_to_31():
    x = np.array([-(2 ** 31), -5, -4, -3, -1, 0, 1, 3, 4, 5, 2 ** 31 - 1], np.int64)
    for e in range(32):
        assert np.array_equal(x86_rounding_divide_by_pot(x, e), fp.rounding_divide_by_pot(x, e))


def test_x86_rounding_divide_by_pot_masks_shift_counts_like_the_cpu():
    # exponent -1: mask int32(2^63 - 1) = -1, x >> 31; the result is 1 for x >= 0, -1 for x < 0.
    assert x86_rounding_divide_by_pot(np.array([5, 0, -5]), -1).tolist() == [1, 1, -1]
    # exponent 38: mask -1, x >> 6, plus one unless x < 0.
    assert x86_rounding_divide_by_pot(np.array([640, -640]), 38).tolist() == [11, -10]
    # exponent 70: mask 2^6 - 1 (the 64-bit shift count is masked to 6), x >> 6.
    assert x86_rounding_divide_by_pot(np.array([100]), 70).tolist() == [fp.rounding_divide_by_pot(100, 6)]


def test_count_leading_sign_bits():
    x = np.array([0, -1, 1, -2, 255, -256, 2 ** 30, fp.INT32_MAX, fp.INT32_MIN])
    assert count_leading_sign_bits(x).tolist() == [31, 31, 30, 30, 23, 23, 0, 0, 0]


def test_inv_sqrt_multiplier_of_small_and_square_inputs():
    m, shift = get_inv_sqrt_quantized_multiplier_exp(np.array([0, 1, 4, 16, 2 ** 30, -5]))
    # 0, 1 and (wrapped) negative sums: INT32_MAX, 0.
    assert m[0] == m[1] == m[5] == fp.INT32_MAX and shift[0] == shift[1] == shift[5] == 0
    # m * 2^(shift - 31) approximates 1/sqrt(input).
    for value, mi, si in zip([4, 16, 2 ** 30], m[2:5], shift[2:5]):
        assert abs(mi * 2.0 ** (si - 31) * np.sqrt(value) - 1) < 1e-6


def test_log_of_one_and_of_e_in_fixed_point():
    # log(x) for x in Q12.19; the result in Q5.26.
    one, e = 1 << 19, int(round(np.e * (1 << 19)))
    logs = log_x_for_x_greater_than_or_equal_to_1(np.array([one, e, 2 * one]), 5, 12)
    assert abs(logs[0]) <= 2
    assert abs(logs[1] / 2 ** 26 - 1.0) < 1e-6
    assert abs(logs[2] / 2 ** 26 - np.log(2)) < 1e-6


# ------------------------------------------------------------------------------ DIV

def test_div_int8_rounds_half_away_and_clamps():
    # Read off the wheel: 7/2 = 3.5 -> 4, 1/0 -> -1 (x86's value of the undefined shift), -128/-1 -> 127.
    got = run_op("DIV", [("a", np.array([100, -100, 7, 1, -128, 0, 5], np.int8), "INT8", Q1),
                         ("b", np.array([3, 3, 2, 0, -1, 0, -2], np.int8), "INT8", Q1)], ([7], "INT8", Q1))
    assert got.tolist() == [33, -33, 4, -1, 127, 0, -2]


def test_div_int8_by_zero_gives_tflms_x86_values():
    q = dict(scale=0.1, zero_point=0)
    got = run_op("DIV", [("a", np.array([1, -1, 127, 0], np.int8), "INT8", q),
                         ("b", np.zeros(4, np.int8), "INT8", q)], ([4], "INT8", q))
    assert got.tolist() == [-14, 14, -128, 0]  # read off the wheel


def test_div_float32_divides_by_zero_into_the_clamp():
    got = run_op("DIV", [("a", np.array([5, -5, 9], np.float32), "FLOAT32", {}),
                         ("b", np.array([2, 0, 0], np.float32), "FLOAT32", {})], ([3], "FLOAT32", {}),
                 constants=("b",))
    fmax = np.finfo(np.float32).max
    assert got.tolist() == [2.5, -fmax, fmax]


def test_div_int32_truncates_and_refuses_zero_divisors():
    data = model("DIV", [("a", [4], "INT32", {}), ("b", [4], "INT32", {})], ([4], "INT32", {}),
                 {"fused_activation_function": "RELU6"})
    it = Interpreter.from_bytes(data)
    assert it.run([np.array([7, -7, 100, 3], np.int32), np.array([2, 2, 3, -1], np.int32)])[0].tolist() == [3, 0, 6, 0]
    with pytest.raises(InputError, match="divisor contains 0"):
        it.run([np.array([7, -7, 100, 3], np.int32), np.array([2, 0, 3, -1], np.int32)])


def test_div_rejects_mixed_types_and_refuses_int16():
    with pytest.raises(ModelError, match="TF_LITE_ENSURE_TYPES_EQ"):
        Interpreter.from_bytes(model("DIV", [("a", [2], "FLOAT32", {}), ("b", [2], "INT32", {})],
                                     ([2], "FLOAT32", {})))
    with pytest.raises(UnsupportedOpError, match="INT16"):
        Interpreter.from_bytes(model("DIV", [("a", [2], "INT16", Q1), ("b", [2], "INT16", Q1)], ([2], "INT16", Q1)))


# ------------------------------------------------------------------------------ FLOOR_DIV, FLOOR_MOD

def test_floor_div_and_floor_mod_signs():
    a = np.array([7, -7, 7, -7, -0.0, 1e30, 5.5], np.float32)
    b = np.array([2, 2, -2, -2, 3, 3e-30, 0.5], np.float32)
    spec = [("a", a, "FLOAT32", {}), ("b", b, "FLOAT32", {})], ([7], "FLOAT32", {})
    quotient = run_op("FLOOR_DIV", *spec)
    assert quotient[:5].tolist() == [3, -4, -4, 3, -0.0] and quotient[6] == 11
    assert np.isinf(quotient[5])  # 1e30 / 3e-30 overflows the float32 result
    mod = run_op("FLOOR_MOD", *spec)
    assert mod[:5].tolist() == [1, 1, -1, -1, 0] and np.signbit(mod[4]) and mod[6] == 0


def test_floor_mod_by_zero_is_nan_and_floor_div_by_zero_an_input_error():
    spec = [("a", np.array([1, 2], np.float32), "FLOAT32", {}), ("b", np.array([0, 1], np.float32), "FLOAT32", {})]
    assert np.isnan(run_op("FLOOR_MOD", spec, ([2], "FLOAT32", {}))[0])
    with pytest.raises(InputError, match="Division by 0"):
        run_op("FLOOR_DIV", spec, ([2], "FLOAT32", {}))


# ------------------------------------------------------------------------------ ADD_N and CUMSUM

def test_add_n_int8_starts_from_the_input_offset_as_tflm_does():
    # Read off the wheel: inputs 0 and 0 with zero point 3 (real -1.5 each) give -6, not -3: the
    # accumulator starts at the rescaled -zero_point.
    q = dict(scale=0.5, zero_point=3)
    got = run_op("ADD_N", [("a", np.array([0, 10, -128], np.int8), "INT8", q),
                           ("b", np.array([0, 10, -128], np.int8), "INT8", q)], ([3], "INT8", q))
    assert got.tolist() == [-6, 14, -128]


def test_add_n_float_starts_from_positive_zero():
    got = run_op("ADD_N", [(n, np.array([-0.0, 1.0], np.float32), "FLOAT32", {}) for n in "abc"],
                 ([2], "FLOAT32", {}))
    assert got.tolist() == [0.0, 3.0] and not np.signbit(got[0])


def test_add_n_refuses_inputs_with_other_quantization():
    with pytest.raises(ModelError, match="scale"):
        other = dict(scale=2.0, zero_point=0)
        Interpreter.from_bytes(model("ADD_N", [("a", [2], "INT8", Q1), ("b", [2], "INT8", other)], ([2], "INT8", Q1)))


def test_cumsum_int8_starts_from_the_input_offset_as_tflm_does():
    # Read off the wheel (zero point -2, so every output is 2 above the plain running sum).
    q = dict(scale=0.5, zero_point=-2)
    spec = [("x", np.array([1, 2, 3, 4], np.int8), "INT8", q), ("axis", np.array(0, np.int32), "INT32", {})]
    assert run_op("CUMSUM", spec, ([4], "INT8", q), constants=("axis",)).tolist() == [3, 7, 12, 18]
    got = run_op("CUMSUM", spec, ([4], "INT8", q), {"exclusive": True, "reverse": True}, constants=("axis",))
    assert got.tolist() == [15, 11, 6, 0]


def test_cumsum_float_axis_exclusive_reverse():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    spec = [("x", x, "FLOAT32", {}), ("axis", np.array(-1, np.int32), "INT32", {})]
    plain = run_op("CUMSUM", spec, ([2, 3], "FLOAT32", {}), constants=("axis",))
    assert plain.tolist() == [[0, 1, 3], [3, 7, 12]]
    rev_ex = run_op("CUMSUM", spec, ([2, 3], "FLOAT32", {}), {"exclusive": True, "reverse": True},
                    constants=("axis",))
    assert rev_ex.tolist() == [[3, 2, 0], [9, 5, 0]]
    # 0.0f + -0.0 is +0.0.
    zeros = run_op("CUMSUM", [("x", np.array([-0.0, -0.0], np.float32), "FLOAT32", {}),
                              ("axis", np.array(0, np.int32), "INT32", {})], ([2], "FLOAT32", {}), constants=("axis",))
    assert not np.signbit(zeros).any()


def test_cumsum_refuses_an_axis_out_of_range():
    b = ModelBuilder()
    x = b.input("x", [2, 3], "FLOAT32")
    axis = b.constant("axis", np.array(2, np.int32))
    y = b.tensor("y", [2, 3], "FLOAT32")
    b.op("CUMSUM", [x, axis], [y])
    b.output(y)
    with pytest.raises(ModelError, match="Invalid axis"):
        Interpreter.from_bytes(b.build())


# ------------------------------------------------------------------------------ REDUCE_ALL

def test_reduce_all():
    x = np.array([[True, True, False], [True, True, True]])
    spec = [("x", x, "BOOL", {}), ("axis", np.array([1], np.int32), "INT32", {})]
    assert run_op("REDUCE_ALL", spec, ([2], "BOOL", {}), constants=("axis",)).tolist() == [False, True]
    spec[1] = ("axis", np.array([0, -1], np.int32), "INT32", {})
    assert run_op("REDUCE_ALL", spec, ([1, 1], "BOOL", {}), {"keep_dims": True},
                  constants=("axis",)).tolist() == [[False]]


# ------------------------------------------------------------------------------ L2_NORMALIZATION

def test_l2_normalization_int8_ignores_output_quantization():
    # Read off the wheel: outputs in 1/128 units whatever the output tensor says.
    x = np.array([[3, 4], [0, 0], [1, 0], [-128, 127], [2, 2]], np.int8)
    got = run_op("L2_NORMALIZATION", [("x", x, "INT8", dict(scale=0.5, zero_point=0))],
                 ([5, 2], "INT8", dict(scale=0.3, zero_point=9)))
    assert got.tolist() == [[77, 102], [0, 0], [127, 0], [-91, 90], [91, 91]]


def test_l2_normalization_float_epsilon():
    x = np.array([[3, 4], [0, 0], [1e-7, 0]], np.float32)
    got = run_op("L2_NORMALIZATION", [("x", x, "FLOAT32", {})], ([3, 2], "FLOAT32", {}))
    assert got[0].tolist() == [np.float32(0.6), np.float32(0.8)]
    assert got[1].tolist() == [0, 0]
    assert got[2, 0] == np.float32(np.float32(1e-7) / np.float32(1e-6))  # divided by epsilon, not the norm


def test_l2_normalization_refuses_what_tflm_would_leave_unwritten():
    # depth = min(input.Dims(t), output.Dims(t)): a smaller output dimension there, or a scalar
    # (dims[-1] reads 0), makes TFLM's kernel skip output values.
    with pytest.raises(UnsupportedOpError, match="unwritten"):
        Interpreter.from_bytes(model("L2_NORMALIZATION", [("x", [2, 3, 3], "FLOAT32", {})],
                                     ([3, 3, 2, 1], "FLOAT32", {})))
    with pytest.raises(UnsupportedOpError, match="scalar"):
        Interpreter.from_bytes(model("L2_NORMALIZATION", [("x", [], "FLOAT32", {})], ([], "FLOAT32", {})))
    # A same-sized output of another shape whose dimension t is not smaller is fine.
    got = run_op("L2_NORMALIZATION", [("x", np.array([[3, 4]], np.float32), "FLOAT32", {})], ([1, 2, 1], "FLOAT32", {}))
    assert got.reshape(-1).tolist() == [np.float32(0.6), np.float32(0.8)]


# ------------------------------------------------------------------------------ LOG_SOFTMAX

def test_log_softmax_int8_values():
    x = np.array([[0, 0], [10, 0], [127, -128], [5, 5]], np.int8)
    got = run_op("LOG_SOFTMAX", [("x", x, "INT8", dict(scale=0.1, zero_point=0))],
                 ([4, 2], "INT8", dict(scale=16 / 256, zero_point=127)))
    assert got.tolist() == [[116, 116], [122, 106], [127, -128], [116, 116]]  # read off the wheel


def test_log_softmax_float_values():
    x = np.array([[0, 0], [1, 2], [-1e30, 0]], np.float32)
    got = run_op("LOG_SOFTMAX", [("x", x, "FLOAT32", {})], ([3, 2], "FLOAT32", {}))
    expected = np.array([[-6.9314718e-01, -6.9314718e-01], [-1.3132616e+00, -3.1326166e-01], [-1e30, 0]], np.float32)
    assert np.array_equal(got, expected)  # read off the wheel


def test_log_softmax_int8_requires_the_fixed_output_quantization():
    with pytest.raises(ModelError, match="16/256"):
        Interpreter.from_bytes(model("LOG_SOFTMAX", [("x", [2], "INT8", Q1)],
                                     ([2], "INT8", dict(scale=1 / 256, zero_point=127))))


# ------------------------------------------------------------------------------ L2_POOL_2D

def test_l2_pool_is_the_root_mean_square_of_the_in_image_taps():
    x = np.array([3, 4, 0, 12], np.float32).reshape(1, 2, 2, 1)
    got = run_op("L2_POOL_2D", [("x", x, "FLOAT32", {})], ([1, 2, 2, 1], "FLOAT32", {}),
                 dict(padding="SAME", stride_h=1, stride_w=1, filter_height=2, filter_width=2))
    f = np.float32
    expected = [np.sqrt(f(169) / f(4)), np.sqrt(f(160) / f(2)), np.sqrt(f(144) / f(2)), f(12)]
    assert got.reshape(-1).tolist() == [float(v) for v in expected]


def test_l2_pool_output_shape_must_be_the_computed_one():
    with pytest.raises(UnsupportedOpError, match="output shape"):
        Interpreter.from_bytes(model("L2_POOL_2D", [("x", [1, 4, 4, 1], "FLOAT32", {})], ([1, 3, 3, 1], "FLOAT32", {}),
                                     dict(padding="VALID", stride_h=2, stride_w=2, filter_height=2, filter_width=2)))


# ------------------------------------------------------------------------------ BATCH_MATMUL

def test_batch_matmul_float_adjoint_and_broadcast():
    lhs = np.arange(12, dtype=np.float32).reshape(2, 3, 2)  # adj_x: each [K=3, A=2]
    rhs = np.array([[1, 0], [0, 1], [1, 1]], np.float32)  # [K=3, C=2]
    got = run_op("BATCH_MATMUL", [("lhs", lhs, "FLOAT32", {}), ("rhs", rhs, "FLOAT32", {})],
                 ([2, 2, 2], "FLOAT32", {}), dict(adj_x=True), constants=("rhs",))
    assert np.array_equal(got, np.swapaxes(lhs, -1, -2) @ rhs)


def test_batch_matmul_int8_zero_points_and_rounding():
    q_lhs, q_rhs, q_out = dict(scale=0.5, zero_point=1), dict(scale=0.25, zero_point=-2), dict(scale=0.5, zero_point=3)
    lhs = np.array([[3, 1]], np.int8)  # centred [2, 0]
    rhs = np.array([[1], [5]], np.int8)  # centred [3, 7]
    got = run_op("BATCH_MATMUL", [("lhs", lhs, "INT8", q_lhs), ("rhs", rhs, "INT8", q_rhs)], ([1, 1], "INT8", q_out))
    # 6 * 0.125 / 0.5 = 1.5 -> 2 (rounded half away), + 3.
    assert got.tolist() == [[5]]


def test_batch_matmul_output_shape_rules():
    with pytest.raises(UnsupportedOpError, match="writes into the output tensor"):
        Interpreter.from_bytes(model("BATCH_MATMUL", [("a", [2, 3], "FLOAT32", {}), ("b", [3, 4], "FLOAT32", {})],
                                     ([4, 2], "FLOAT32", {})))
    with pytest.raises(ModelError, match="depth"):
        Interpreter.from_bytes(model("BATCH_MATMUL", [("a", [2, 3], "FLOAT32", {}), ("b", [2, 4], "FLOAT32", {})],
                                     ([2, 4], "FLOAT32", {})))
    with pytest.raises(ModelError, match="do not broadcast"):
        Interpreter.from_bytes(model("BATCH_MATMUL", [("a", [2, 2, 3], "FLOAT32", {}), ("b", [3, 3, 4], "FLOAT32", {})],
                                     ([2, 2, 4], "FLOAT32", {})))
