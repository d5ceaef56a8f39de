"""MEAN, SUM, REDUCE_MAX, REDUCE_MIN (ops/reduce.py) and ARG_MAX, ARG_MIN (ops/argminmax.py).

Pinned values are hand-derived from TFLM's formulas (and each is checked against TFLM as well);
the differential tests compare many axis sets, keep_dims settings and scale ratios with TFLM.
"""
import numpy as np
import pytest
from diff_support import check_model, random_inputs, tflm_run
from diff_support import run_on_both as run

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder
from ops import fixedpoint as fp


def reduce_model(op, in_shape, axes, out_shape, dtype="INT8", qi=(0.1, 0), qo=None, keep_dims=False,
                 axis_dtype=np.int32):
    b = ModelBuilder()
    quant = (lambda q: {}) if dtype == "FLOAT32" else (lambda q: dict(scale=q[0], zero_point=q[1]))
    x = b.input("x", in_shape, dtype, **quant(qi))
    a = b.constant("axis", np.array(axes, axis_dtype))
    y = b.tensor("y", out_shape, dtype, **quant(qo or qi))
    b.op(op, [x, a], [y], keep_dims=keep_dims)
    b.output(y)
    return b.build()


def arg_model(op, in_shape, axis, out_shape, dtype="INT8"):
    b = ModelBuilder()
    x = b.input("x", in_shape, dtype, **({} if dtype == "FLOAT32" else dict(scale=0.1, zero_point=0)))
    a = b.constant("axis", np.array([axis], np.int32))
    y = b.tensor("y", out_shape, "INT32")
    b.op(op, [x, a], [y], output_type="INT32")
    b.output(y)
    return b.build()


# ---------------------------------------------------------------------------------- MEAN / SUM

def test_mean_rounds_through_the_adjusted_multiplier():
    # Equal scales: QuantizeMultiplier(1.0) = (2^30, 1). For 2 elements the extra shift is 1, so the
    # multiplier stays 2^30 with shift 0, and SRDHM rounds x/2: 1.5 -> 2 but -1.5 -> -1 (its nudge
    # for negative products is 1 - 2^30, so negative ties round up, not away from zero).
    x = np.array([[1, 2], [-1, -2], [127, 127]], np.int8)
    data = reduce_model("MEAN", [3, 2], [1], [3])
    np.testing.assert_array_equal(run(data, x), [2, -1, 127])


def test_mean_divides_by_a_truncated_integer_multiplier():
    # 3 elements: multiplier (2^30 << 1) // 3 = 715827882 (truncated), shift 0.
    kernel = Interpreter.from_bytes(reduce_model("MEAN", [2, 3], [1], [2])).kernels[0]
    assert (kernel.params.multiplier, kernel.params.shift) == (715827882, 0)
    x = np.array([[1, 1, 0], [-128, -128, -127]], np.int8)
    np.testing.assert_array_equal(run(reduce_model("MEAN", [2, 3], [1], [2]), x), [1, -128])


def test_mean_subtracts_the_input_zero_point_once_per_element_and_adds_the_output_one():
    # real mean of (q - 10) * 0.1 over [20, 40] is 2.0; output scale 0.2, zero point -5 -> 5.
    x = np.array([[20, 40]], np.int8)
    data = reduce_model("MEAN", [1, 2], [1], [1], qi=(0.1, 10), qo=(0.2, -5))
    np.testing.assert_array_equal(run(data, x), [5])


def test_int16_mean_wraps_the_int32_sum():
    # 90000 values of 30000 sum to 2.7e9, past int32: TFLM's sum wraps to -1594967296.
    x = np.full((1, 300, 300), 30000, np.int16)
    data = reduce_model("MEAN", [1, 300, 300], [1, 2], [1], "INT16", qi=(1.0, 0))
    wrapped = int(fp.wrap_int32(30000 * 90000))
    assert wrapped == -1594967296
    got = run(data, x)
    assert got[0] == -17722  # the wrapped sum / 90000, not 30000


def test_keep_dims_only_changes_the_shape():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (2, 5, 3, 4)).astype(np.int8)
    flat = run(reduce_model("MEAN", [2, 5, 3, 4], [1, 3], [2, 3], qo=(0.07, 3)), x)
    kept = run(reduce_model("MEAN", [2, 5, 3, 4], [1, 3], [2, 1, 3, 1], qo=(0.07, 3), keep_dims=True), x)
    np.testing.assert_array_equal(kept.reshape(2, 3), flat)


def test_negative_and_duplicate_axes_resolve_like_tflm():
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, (3, 4, 5)).astype(np.int8)
    a = run(reduce_model("SUM", [3, 4, 5], [-1, 0, 2], [4], qo=(1.5, 0)), x)
    b = run(reduce_model("SUM", [3, 4, 5], [0, 2], [4], qo=(1.5, 0)), x)
    np.testing.assert_array_equal(a, b)


def test_float_mean_sums_in_float32_in_input_order():
    # ((0 + 1e8) + 1) + (-1e8) is 0 in float32 (1e8 + 1 rounds back to 1e8).
    x = np.array([[1e8, 1, -1e8]], np.float32)
    assert run(reduce_model("MEAN", [1, 3], [1], [1], "FLOAT32"), x)[0] == 0.0
    # The order is the input's, whatever order the axes are listed in.
    y = np.array([[[1e8, 1], [-1e8, 1]]], np.float32)  # row-major: 1e8, 1, -1e8, 1 -> 1
    assert run(reduce_model("SUM", [1, 2, 2], [2, 1], [1], "FLOAT32"), y)[0] == 1.0


@pytest.mark.parametrize("op, dtype, expected", [
    ("MEAN", "INT8", [4 * 6, 4 * 3, 4 * 2]),   # int32 sums, input iterator, resolved axes
    ("SUM", "INT16", [4 * 6, 4 * 3, 4 * 2]),
    ("MEAN", "FLOAT32", [4 * 3, 4 * 2]),
    ("REDUCE_MAX", "INT8", [4 * 3, 4 * 2]),
])
def test_scratch_buffers_requested_in_tflm_order(op, dtype, expected):
    data = reduce_model(op, [2, 3, 6], [0, 1], [6], dtype)
    assert Interpreter.from_bytes(data).kernels[0].scratch_bytes == expected


def test_out_of_range_axis_gives_raw_zeros_for_quantized_mean():
    # QuantizedMeanOrSum zeroes the output, then fails in ResolveAxis; TFLM ignores the failure.
    x = np.array([[5, -7, 9]], np.int8)
    data = reduce_model("MEAN", [1, 3], [2], [1], qi=(0.1, 3), qo=(0.1, 3))
    np.testing.assert_array_equal(run(data, x), [0])


@pytest.mark.parametrize("op, dtype", [("MEAN", "FLOAT32"), ("REDUCE_MAX", "INT8")])
def test_out_of_range_axis_is_rejected_where_tflm_reports_it(op, dtype):
    with pytest.raises(ModelError, match="out of range"):
        Interpreter.from_bytes(reduce_model(op, [1, 3], [2], [1], dtype))


def test_axis_must_be_int32():
    with pytest.raises(ModelError, match="INT32"):
        Interpreter.from_bytes(reduce_model("MEAN", [2, 3], [1], [2], axis_dtype=np.int64))


# ---------------------------------------------------------------------------------- REDUCE_MAX / MIN

@pytest.mark.parametrize("qo", [(0.2, 0), (0.1, 1)])
def test_int8_reduce_max_needs_equal_quantization(qo):
    with pytest.raises(ModelError, match="scale|zero point"):
        Interpreter.from_bytes(reduce_model("REDUCE_MAX", [2, 3], [1], [2], qi=(0.1, 0), qo=qo))


def test_reduce_min_max_int8():
    x = np.array([[3, -128, 127, 0], [-5, -5, -6, -1]], np.int8)
    np.testing.assert_array_equal(run(reduce_model("REDUCE_MAX", [2, 4], [1], [2]), x), [127, -1])
    np.testing.assert_array_equal(run(reduce_model("REDUCE_MIN", [2, 4], [0], [4]), x), [-5, -128, -6, -1])


def run_kernel(data, x):
    """The kernel's own output for one sample (bypassing the interpreter's refusal of NaN and
    infinite inputs, which only an earlier float op can produce), checked against TFLM's bytes."""
    it = Interpreter.from_bytes(data)
    op = it.subgraph.operators[0]
    inputs = [x[None] if it.tensors[i].data is None else it.tensors[i].data[None] for i in op.inputs]
    got = it.kernels[0].eval(inputs)[0][0]
    verdict, payload = tflm_run(data, [[x]])
    assert verdict == "ok", payload
    assert got.tobytes() == payload[0][0].tobytes(), (got, payload[0][0])
    return got


def test_float_reduce_max_starts_from_the_lowest_finite_value_and_skips_nan():
    # (in > current) ? in : current from -FLT_MAX: -inf never replaces it, nor does a NaN.
    x = np.array([[-np.inf, -np.inf], [np.nan, -np.inf], [np.nan, 3.0]], np.float32)
    got = run_kernel(reduce_model("REDUCE_MAX", [3, 2], [1], [3], "FLOAT32"), x)
    np.testing.assert_array_equal(got, np.array([np.finfo(np.float32).min] * 2 + [3.0], np.float32))


# ---------------------------------------------------------------------------------- ARG_MAX / MIN

def test_arg_max_and_min_take_the_first_of_equal_values():
    x = np.array([[3, 7, 7, -2, -2], [0, 0, 0, 0, 0]], np.int8)
    np.testing.assert_array_equal(run(arg_model("ARG_MAX", [2, 5], 1, [2]), x), [1, 0])
    np.testing.assert_array_equal(run(arg_model("ARG_MIN", [2, 5], -1, [2]), x), [3, 0])


def test_arg_max_float_ignores_nan_after_the_first_element():
    # TFLM compares with a plain '>' (GreaterFn): a NaN never wins, and a leading NaN is never
    # replaced.
    x = np.array([[1, np.nan, 2], [np.nan, 5, 6], [-1, -3, np.nan], [0, -0.0, 0]], np.float32)
    np.testing.assert_array_equal(run_kernel(arg_model("ARG_MAX", [4, 3], 1, [4], "FLOAT32"), x), [2, 0, 0, 0])


# ---------------------------------------------------------------------------------- against TFLM

REDUCTIONS = [
    ([1, 7, 7, 16], [1, 2]), ([1, 7, 7, 16], [2, 1]), ([2, 5, 3, 4], [0]), ([2, 5, 3, 4], [1, 3]),
    ([2, 5, 3, 4], [0, 1, 2, 3]), ([3, 17], [-1]), ([4, 1, 9, 2], [2, 0]), ([1, 13, 11, 3], [1, 2]),
    ([2, 2, 3, 2, 3], [1, 3, 4]),
]
RATIOS = [1.0, 0.3, 3.7, 40.0, 1e-3, 2e-9]  # input scale / output scale


@pytest.mark.parametrize("op", ["MEAN", "SUM"])
@pytest.mark.parametrize("dtype", ["INT8", "INT16", "FLOAT32"])
@pytest.mark.parametrize("shape, axes", REDUCTIONS, ids=str)
def test_mean_and_sum_match_tflm(op, dtype, shape, axes):
    rng = np.random.default_rng(len(shape) * 31 + sum(axes) + len(op) + len(dtype))
    rank = len(shape)
    resolved = sorted({a % rank for a in axes})
    for keep in (False, True):
        out = [1 if i in resolved else d for i, d in enumerate(shape)] if keep else \
              [d for i, d in enumerate(shape) if i not in resolved]
        for ratio in (RATIOS if dtype != "FLOAT32" else [1.0]):
            zi, zo = (int(rng.integers(-128, 128)), int(rng.integers(-128, 128))) if dtype == "INT8" else (0, 0)
            data = reduce_model(op, shape, axes, out, dtype, qi=(0.02, zi), qo=(0.02 / ratio, zo), keep_dims=keep)
            inputs = [random_inputs(rng, shape, dtype.lower(), 6, zero_point=zi, scale=0.02)]
            assert check_model(data, inputs, label=f"{op} {dtype}").compared


@pytest.mark.parametrize("op", ["REDUCE_MAX", "REDUCE_MIN"])
@pytest.mark.parametrize("dtype", ["INT8", "FLOAT32"])
@pytest.mark.parametrize("shape, axes", REDUCTIONS[:6], ids=str)
def test_reduce_min_max_match_tflm(op, dtype, shape, axes):
    rng = np.random.default_rng(len(shape) * 17 + sum(axes))
    rank = len(shape)
    out = [d for i, d in enumerate(shape) if i not in {a % rank for a in axes}]
    data = reduce_model(op, shape, axes, out, dtype, qi=(0.05, -3))
    inputs = [random_inputs(rng, shape, dtype.lower(), 6, zero_point=-3, scale=0.05)]
    assert check_model(data, inputs, label=f"{op} {dtype}").compared


@pytest.mark.parametrize("op", ["ARG_MAX", "ARG_MIN"])
@pytest.mark.parametrize("dtype", ["INT8", "FLOAT32"])
@pytest.mark.parametrize("shape, axis", [([2, 5, 7], -1), ([2, 5, 7], 1), ([6], 0), ([3, 1, 4, 2], 2)], ids=str)
def test_arg_min_max_match_tflm(op, dtype, shape, axis):
    rng = np.random.default_rng(len(shape) + axis + 10)
    out = [d for i, d in enumerate(shape) if i != axis % len(shape)]
    xs = random_inputs(rng, shape, dtype.lower(), 8)
    if dtype == "INT8":
        xs[:4] = np.clip(xs[:4], -2, 2)  # many ties
    assert check_model(arg_model(op, shape, axis, out, dtype), [xs], label=op).compared
