"""ADD, SUB, MUL, MAXIMUM, MINIMUM and SQUARED_DIFFERENCE (ops/elementwise.py).

Expected integer outputs marked "TFLM" were produced by the pinned TFLM wheel on the same
one-operator models; the other tests pin properties of TFLM's kernels (broadcasting, float
clamping, wrapping, Prepare rejections) that the source reading established and the wheel confirmed.
"""
import numpy as np
import pytest

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from ops import fixedpoint as fp
from ops.registry import Numerics


def q(scale, zero_point=0):
    return dict(scale=scale, zero_point=zero_point)


def binary_model(op, dtype, shape1, shape2, out_shape, q1=None, q2=None, qo=None, const2=None, **options):
    b = ModelBuilder()
    x1 = b.input("x1", shape1, dtype, **(q1 or {}))
    if const2 is None:
        x2 = b.input("x2", shape2, dtype, **(q2 or {}))
    else:
        x2 = b.constant("x2", np.asarray(const2).reshape(shape2), dtype, **(q2 or {}))
    y = b.tensor("y", out_shape, dtype, **(qo or {}))
    b.op(op, [x1, x2], [y], **options)
    b.output(y)
    return b.build()


def run(data, *inputs, numerics=None):
    it = Interpreter.from_bytes(data, **({"numerics": numerics} if numerics else {}))
    return it.run(list(inputs))[0]


X1 = np.array([-128, -100, -50, -1, 0, 1, 37, 90, 127, 127, -128, 5], np.int8)
X2 = np.array([127, -128, 3, -1, 0, 64, -77, 12, 127, -128, -128, 100], np.int8)
Y1 = np.array([-32768, -32767, -20000, -1, 0, 1, 12345, 32767, 32767, -32768], np.int16)
Y2 = np.array([32767, -32768, 15000, -1, 0, 7, -30000, 1, 32767, -32768], np.int16)


# ---------------------------------------------------------------------------------- TFLM values

@pytest.mark.parametrize("op, out_q, options, expected", [
    ("ADD", q(0.07, 1), {}, [-54, -107, -34, 0, 1, 20, 5, 69, 127, 55, -127, 33]),
    ("ADD", q(0.07, 1), {"fused_activation_function": "RELU6"}, [1, 1, 1, 1, 1, 20, 5, 69, 87, 55, 1, 33]),
    ("SUB", q(0.07, 1), {}, [-128, -38, -40, -4, -3, -21, 45, 58, 51, 124, -58, -28]),
    ("MUL", q(0.01, 1), {}, [-128, 127, -52, -1, -1, -13, -128, 127, 127, -128, 127, 22]),
    ("SQUARED_DIFFERENCE", q(0.5, -100), {}, [70, -85, -84, -100, -100, -95, -81, -68, -75, 49, -66, -92]),
])
def test_int8_binary_ops_match_tflm_values(op, out_q, options, expected):
    data = binary_model(op, "INT8", [12], [12], [12], q(0.05, 3), q(0.02, -7), out_q, **options)
    np.testing.assert_array_equal(run(data, X1, X2), np.array(expected, np.int8))


def test_int16_add_uses_left_shift_15_and_matches_tflm():
    data = binary_model("ADD", "INT16", [10], [10], [10], q(1e-4), q(3e-4), q(5e-4))
    expected = [13107, -26214, 5000, -1, 0, 4, -15531, 6554, 26214, -26214]  # TFLM
    np.testing.assert_array_equal(run(data, Y1, Y2), np.array(expected, np.int16))
    assert Interpreter.from_bytes(data).kernels[0].describe()["left_shift"] == 15


def test_int16_mul_matches_tflm():
    data = binary_model("MUL", "INT16", [10], [10], [10], q(1e-2), q(3e-3), q(2e-2))
    expected = [-32768, 32767, -32768, 0, 0, 0, -32768, 49, 32767, 32767]  # TFLM
    np.testing.assert_array_equal(run(data, Y1, Y2), np.array(expected, np.int16))


def add_reference(x1, x2, z1, z2, zo, params, left_shift, act=(-128, 127)):
    """AddElementwise with Python integers, from reference/add.h."""
    def mbqm(x, m, s):
        return int(fp.multiply_by_quantized_multiplier(x, m, s))
    out = []
    for a, b in zip(x1.tolist(), x2.tolist()):
        sa = mbqm((a - z1) * (1 << left_shift), params["input1_multiplier"], params["input1_shift"])
        sb = mbqm((b - z2) * (1 << left_shift), params["input2_multiplier"], params["input2_shift"])
        raw = mbqm(sa + sb, params["output_multiplier"], params["output_shift"]) + zo
        out.append(min(max(raw, act[0]), act[1]))
    return np.array(out)


def test_int8_add_table_equals_the_per_element_formula_on_every_pair():
    data = binary_model("ADD", "INT8", [65536], [65536], [65536], q(0.5, -128), q(0.001, 127), q(0.3, -5))
    it = Interpreter.from_bytes(data)
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8)
    expected = add_reference(a, b, -128, 127, -5, it.kernels[0].describe(), 20)
    np.testing.assert_array_equal(it.run([a, b])[0], expected)


# ---------------------------------------------------------------------------------- broadcasting

@pytest.mark.parametrize("shape1, shape2", [((1, 8), (8,)), ((3, 1, 7), (1, 5, 1)), ((), (3, 4)),
                                            ((2, 1, 3, 1, 2), (5, 1, 1, 2)), ((4, 3), (1,))])
@pytest.mark.parametrize("op", ["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "MAXIMUM"])
def test_broadcast_equals_the_elementwise_op_on_broadcast_inputs(op, shape1, shape2):
    out_shape = np.broadcast_shapes(shape1, shape2)
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, shape1).astype(np.int8)
    b = rng.integers(-128, 128, shape2).astype(np.int8)
    quant = (q(0.03, 5), q(0.08, -9), q(0.1, 2))
    got = run(binary_model(op, "INT8", shape1, shape2, out_shape, *quant), a, b)
    flat = binary_model(op, "INT8", out_shape, out_shape, out_shape, *quant)
    expected = run(flat, np.broadcast_to(a, out_shape).copy(), np.broadcast_to(b, out_shape).copy())
    np.testing.assert_array_equal(got, expected)


def test_constant_operand_broadcasts_across_batch_samples():
    const = np.arange(-4, 4, dtype=np.int8)
    data = binary_model("ADD", "INT8", [3, 8], [8], [3, 8], q(0.1, 0), q(0.1, 0), q(0.2, 0), const2=const)
    x = np.arange(-12, 12, dtype=np.int8).reshape(3, 8)
    it = Interpreter.from_bytes(data)
    batch = it.run_batch([np.stack([x, -x])])[0]
    np.testing.assert_array_equal(batch[0], it.run([x])[0])
    np.testing.assert_array_equal(batch[1], it.run([-x])[0])


def test_shapes_that_do_not_broadcast_to_the_output_are_rejected():
    with pytest.raises(ModelError, match="broadcast"):
        Interpreter.from_bytes(binary_model("ADD", "INT8", [3, 4], [2, 4], [3, 4], q(0.1), q(0.1), q(0.1)))


# ---------------------------------------------------------------------------------- float32, int32

def test_float_add_clamps_overflow_to_flt_max_even_without_activation():
    big = np.float32(3e38)
    data = binary_model("ADD", "FLOAT32", [3], [3], [3])
    got = run(data, np.array([big, -big, 1.5], np.float32), np.array([big, -big, 2.25], np.float32))
    fmax = np.finfo(np.float32).max
    np.testing.assert_array_equal(got, np.array([fmax, -fmax, 3.75], np.float32))


def test_float_relu_keeps_negative_zero_like_std_max():
    data = binary_model("ADD", "FLOAT32", [3], [3], [3], fused_activation_function="RELU")
    got = run(data, np.array([-0.0, -1.0, 2.0], np.float32), np.array([-0.0, 0.5, 4.5], np.float32))
    assert got.view(np.uint32).tolist() == np.array([-0.0, 0.0, 6.5], np.float32).view(np.uint32).tolist()


def test_float_sub_relu_n1_to_1_clamps():
    data = binary_model("SUB", "FLOAT32", [3], [3], [3], fused_activation_function="RELU_N1_TO_1")
    got = run(data, np.array([5.0, -5.0, 0.25], np.float32), np.array([0.0, 0.0, 0.0], np.float32))
    np.testing.assert_array_equal(got, np.array([1.0, -1.0, 0.25], np.float32))


def test_int32_add_wraps_and_ignores_the_fused_activation():
    data = binary_model("ADD", "INT32", [2], [2], [2], fused_activation_function="RELU")
    got = run(data, np.array([fp.INT32_MAX, -5], np.int32), np.array([1, 2], np.int32))
    np.testing.assert_array_equal(got, np.array([fp.INT32_MIN, -3], np.int32))


def test_int32_sub_applies_relu6_as_integers_0_to_6():
    data = binary_model("SUB", "INT32", [3], [3], [3], fused_activation_function="RELU6")
    got = run(data, np.array([100, -100, 4], np.int32), np.array([1, 1, 1], np.int32))
    np.testing.assert_array_equal(got, np.array([6, 0, 3], np.int32))


def test_int32_mul_wraps():
    data = binary_model("MUL", "INT32", [1], [1], [1])
    got = run(data, np.array([1 << 20], np.int32), np.array([1 << 11], np.int32))
    np.testing.assert_array_equal(got, np.array([fp.INT32_MIN], np.int32))


# ---------------------------------------------------------------------------------- MAXIMUM / MINIMUM

def test_maximum_and_minimum_compare_stored_values_ignoring_scales():
    a = np.array([10, -3, 7], np.int8)   # scale 0.1: 1.0, -0.3, 0.7
    b = np.array([5, -4, 7], np.int8)    # scale 1.0: 5.0, -4.0, 7.0
    quant = (q(0.1), q(1.0), q(0.1))
    np.testing.assert_array_equal(run(binary_model("MAXIMUM", "INT8", [3], [3], [3], *quant), a, b), [10, -3, 7])
    np.testing.assert_array_equal(run(binary_model("MINIMUM", "INT8", [3], [3], [3], *quant), a, b), [5, -4, 7])


# ---------------------------------------------------------------------------------- rejections

def test_int16_mul_with_nonzero_zero_point_is_rejected():
    with pytest.raises(ModelError, match="zero_point == 0"):
        Interpreter.from_bytes(binary_model("MUL", "INT16", [4], [4], [4], q(1e-3, 3), q(1e-3), q(1e-3)))


def test_add_output_multiplier_of_one_or_more_is_rejected():
    # 2 * 0.5 / (2^20 * 1e-7) > 1: TFLM's QuantizeMultiplierSmallerThanOneExp CHECK aborts.
    with pytest.raises(ModelError, match="0 < m < 1"):
        Interpreter.from_bytes(binary_model("ADD", "INT8", [4], [4], [4], q(0.5), q(0.5), q(1e-7)))


def test_fused_relu6_bound_overflowing_int32_is_rejected():
    with pytest.raises(ModelError, match="no_integer_overflow_from_quantization"):
        Interpreter.from_bytes(binary_model("MUL", "INT8", [4], [4], [4], q(1e-3), q(1e-3), q(2e-9),
                                            fused_activation_function="RELU6"))


def test_operand_types_differing_from_the_output_are_rejected():
    b = ModelBuilder()
    x1 = b.input("x1", [4], "INT16", **q(0.1))
    x2 = b.input("x2", [4], "INT8", **q(0.1))
    y = b.tensor("y", [4], "INT8", **q(0.1))
    b.op("ADD", [x1, x2], [y])
    b.output(y)
    with pytest.raises(ModelError, match="reads every operand as the output type"):
        Interpreter.from_bytes(b.build())


# ---------------------------------------------------------------------------------- numerics variants

def test_sub_float32_scale_precision_changes_the_multipliers_but_add_does_not():
    quant = (q(0.3, 0), q(0.1, 0), q(0.07, 0))
    float32 = Numerics(scale_precision="float32")
    for op, should_differ in (("SUB", True), ("ADD", False)):
        data = binary_model(op, "INT8", [4], [4], [4], *quant)
        wheel = Interpreter.from_bytes(data).kernels[0].describe()
        older = Interpreter.from_bytes(data, numerics=float32).kernels[0].describe()
        changed = (wheel["input2_multiplier"], wheel["output_multiplier"]) != \
                  (older["input2_multiplier"], older["output_multiplier"])
        assert changed == should_differ, op


def test_single_rounding_changes_some_int8_mul_results():
    data = binary_model("MUL", "INT8", [65536], [65536], [65536], q(0.05, 3), q(0.02, -7), q(0.3, 1))
    a = np.repeat(np.arange(-128, 128), 256).astype(np.int8)
    b = np.tile(np.arange(-128, 128), 256).astype(np.int8)
    double = run(data, a, b)
    single = run(data, a, b, numerics=Numerics(rounding="single"))
    differ = np.count_nonzero(double != single)
    assert 0 < differ < 65536 // 10
    assert np.abs(double.astype(int) - single.astype(int)).max() == 1
