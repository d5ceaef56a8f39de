"""TRANSPOSE_CONV without TFLM: the goldens of TFLM's transpose_conv_test.cc, the refusals of
models TFLM rejects or would read past, the scratch buffers its Prepare requests, and the fast
paths pinned bit for bit to the reference scatter loop."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_diff_transpose_conv import build_transpose_conv, transpose_conv_cases

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder

# transpose_conv_test.cc: input 1x4x4x2 holding 1..32, filter 1x3x3x2 holding 1..18, SAME, stride 1.
TFLM_INPUT = np.arange(1, 33, dtype=np.float32).reshape(1, 4, 4, 2)
TFLM_FILTER = np.arange(1, 19, dtype=np.float32).reshape(1, 3, 3, 2)
TFLM_GOLDEN = np.array([184, 412, 568, 528, 678, 1347, 1689, 1434,
                        1494, 2715, 3057, 2442, 1968, 3352, 3652, 2760], np.float32).reshape(1, 4, 4, 1)


def model(x_shape, w, out_shape, *, kind="FLOAT32", bias=None, bias_type=None, padding="SAME", stride=(1, 1),
          activation="NONE", q_in=None, q_w=None, q_out=None, out_kind=None, filter_type=None):
    b = ModelBuilder()
    shape_t = b.constant("output_shape", np.array(out_shape, np.int32))
    wt = b.constant("filter", w, filter_type or ("FLOAT32" if kind == "FLOAT32" else "INT8"), **(q_w or {}))
    x = b.input("x", x_shape, kind, **(q_in or {}))
    inputs = [shape_t, wt, x]
    if bias is not None:
        inputs.append(b.constant("bias", bias, bias_type))
    y = b.tensor("y", out_shape, out_kind or kind, **(q_out or {}))
    b.op("TRANSPOSE_CONV", inputs, [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         fused_activation_function=activation)
    b.output(y)
    return b.build()


def run(data, x):
    return Interpreter.from_bytes(data).run([x])[0]


def test_float_goldens_of_tflm_test():
    data = model([1, 4, 4, 2], TFLM_FILTER, [1, 4, 4, 1], bias=np.zeros(1, np.float32), bias_type="FLOAT32")
    np.testing.assert_array_equal(run(data, TFLM_INPUT), TFLM_GOLDEN)


def test_fused_relu_goldens_of_tflm_test():
    w = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    x = np.array([1, 2, -3, -4, 5, 6, -7, -8, 9, 10, -11, -12, 13, 14, 15, 16], np.float32).reshape(1, 4, 4, 1)
    data = model([1, 4, 4, 1], w, [1, 4, 4, 1], bias=np.zeros(1, np.float32), bias_type="FLOAT32",
                 activation="RELU")
    golden = [29, 24, 0, 0, 99, 72, 0, 0, 207, 186, 0, 0, 263, 292, 141, 0]
    np.testing.assert_array_equal(run(data, x).ravel(), golden)


def test_stride_3_goldens_of_tflm_test():
    # AccuracyWithFusedActivationTest: a 1x2 input spread to a 3x4 output by stride 3.
    w = np.array([9, 5, 6, 9, 8, 5, 3, 1, 4], np.float32).reshape(1, 3, 3, 1)
    data = model([1, 1, 2, 1], w, [1, 3, 4, 1], bias=np.zeros(1, np.float32), bias_type="FLOAT32",
                 stride=(3, 3), activation="RELU")
    golden = [1615, 1938, 0, 0, 2584, 1615, 0, 0, 323, 1292, 0, 0]
    np.testing.assert_array_equal(run(data, np.array([323, -521], np.float32).reshape(1, 1, 2, 1)).ravel(), golden)


def test_valid_stride_2_two_channel_bias_goldens_of_tflm_test():
    # MultiChannelBiasWithFusedActivationTest.
    w = np.array([1, 3, 5, 7, 9, 11, 13, 15, 17, 2, 4, 6, 8, 10, 12, 14, 16, 18], np.float32).reshape(2, 3, 3, 1)
    data = model([1, 2, 2, 1], w, [1, 5, 5, 2], bias=np.array([3, 4], np.float32), bias_type="FLOAT32",
                 padding="VALID", stride=(2, 2), activation="RELU")
    golden = [4, 6, 6, 8, 10, 14, 9, 12, 13, 16, 10, 12, 12, 14, 28, 32, 21, 24, 25, 28, 13, 12, 9, 8, 35, 40,
              45, 52, 57, 64, 0, 0, 0, 0, 0, 0, 39, 44, 47, 52, 0, 0, 0, 0, 4, 6, 63, 68, 71, 76]
    np.testing.assert_array_equal(run(data, np.array([1, 2, -3, 4], np.float32).reshape(1, 2, 2, 1)).ravel(), golden)


def test_int8_per_channel_golden_of_tflm_test():
    # SimpleTestQuantizedPerChannel: input scale 0.5, filter scale 1, output scale 30; the int32
    # accumulator is exactly 2x the float golden, requantized by 1/60.
    data = model([1, 4, 4, 2], TFLM_FILTER.astype(np.int8), [1, 4, 4, 1], kind="INT8",
                 bias=np.zeros(1, np.int32), bias_type="INT32", q_in=dict(scale=0.5, zero_point=0),
                 q_w=dict(scale=[1.0], zero_point=0), q_out=dict(scale=30.0, zero_point=0))
    got = run(data, (TFLM_INPUT * 2).astype(np.int8))
    expected = np.floor(TFLM_GOLDEN.astype(np.float64) / 30 + 0.5)  # no exact halves among these
    np.testing.assert_array_equal(got, np.minimum(expected, 127).astype(np.int8))


@pytest.mark.parametrize("bias_type", ["INT64", "INT16"])
def test_16x8_golden_of_tflm_test(bias_type):
    # SimpleTestQuantized16x8PerChannel(WithInt16Bias): every scale 1, so the output is the golden.
    data = model([1, 4, 4, 2], TFLM_FILTER.astype(np.int8), [1, 4, 4, 1], kind="INT16",
                 bias=np.zeros(1, bias_type.lower()), bias_type=bias_type, q_in=dict(scale=1.0, zero_point=0),
                 q_w=dict(scale=[1.0], zero_point=0), q_out=dict(scale=1.0, zero_point=0))
    np.testing.assert_array_equal(run(data, TFLM_INPUT.astype(np.int16)), TFLM_GOLDEN.astype(np.int16))


def test_int8_zero_points_and_bias_at_the_limits():
    # One input pixel, one tap: out = clamp(MBQM((x - zp_in)·w + bias) + zp_out), every scale 1 so the
    # multiplier is QuantizeMultiplier(1.0) = (2^30, shift 1). (127 + 128)·(-128) = -32640.
    q = dict(q_in=dict(scale=1.0, zero_point=-128), q_w=dict(scale=1.0, zero_point=0),
             q_out=dict(scale=1.0, zero_point=127))

    def out(bias):
        data = model([1, 1, 1, 1], np.full((1, 1, 1, 1), -128, np.int8), [1, 1, 1, 1], kind="INT8",
                     bias=np.array([bias], np.int32), bias_type="INT32", **q)
        return run(data, np.full((1, 1, 1, 1), 127, np.int8)).item()

    assert out(2 ** 30) == 127  # 2^30 - 32640 + 127 saturates high
    assert out(0) == -128  # -32640 + 127 saturates low
    # 2^31 - 1 - 32640 fits an int32, but MBQM's left shift by 1 wraps it negative (the wheel agrees).
    assert out(2 ** 31 - 1) == -128
    # -32640 + (-2^31) wraps to a large positive int32 in the accumulator, whose doubling wraps back.
    assert out(-(2 ** 31)) == -128


def test_int8_kernel_reads_an_int64_bias_as_int32_words():
    # TFLM's GetOptionalTensorData<int32_t> on an int64 tensor: channel c gets int32 word c.
    bias = np.array([5, -1], np.int64)  # words: 5, 0, -1, -1
    q = dict(q_in=dict(scale=1.0, zero_point=0), q_w=dict(scale=1.0, zero_point=0),
             q_out=dict(scale=1.0, zero_point=0))
    data = model([1, 1, 1, 1], np.zeros((2, 1, 1, 1), np.int8), [1, 1, 1, 2], kind="INT8", bias=bias,
                 bias_type="INT64", **q)
    np.testing.assert_array_equal(run(data, np.zeros((1, 1, 1, 1), np.int8)).ravel(), [5, 0])


QUANT_8 = dict(q_in=dict(scale=1.0, zero_point=0), q_w=dict(scale=1.0, zero_point=0),
               q_out=dict(scale=1.0, zero_point=0))


@pytest.mark.parametrize("what, kwargs, error, message", [
    ("hybrid float input, int8 filter", dict(kind="FLOAT32", filter_type="INT8", q_w=dict(scale=1.0)), ModelError,
     "Hybrid"),
    ("input and output types differ", dict(kind="INT8", out_kind="INT16", **QUANT_8), ModelError,
     "differs from output type"),
    ("uint8 input", dict(kind="UINT8", filter_type="UINT8", **QUANT_8), ModelError, "not supported"),
    ("no filter quantization", dict(kind="INT8", q_in=dict(scale=1.0), q_out=dict(scale=1.0)), ModelError,
     "quantization"),
    # TFLM runs these, reading past the bias: its result is undefined.
    ("int8 kernel, int16 bias", dict(kind="INT8", bias=np.zeros(2, np.int16), bias_type="INT16", **QUANT_8),
     UnsupportedOpError, "reads past it"),
    ("16x8 kernel, one int32 per channel", dict(kind="INT16", bias=np.zeros(2, np.int32), bias_type="INT32",
                                                **QUANT_8), UnsupportedOpError, "reads past it"),
])
def test_refusals(what, kwargs, error, message):
    float_filter = kwargs.get("kind") == "FLOAT32" and "filter_type" not in kwargs
    w = np.ones((2, 2, 2, 1), np.float32 if float_filter else np.int8)
    with pytest.raises(error, match=message):
        Interpreter.from_bytes(model([1, 2, 2, 1], w, [1, 4, 4, 2], stride=(2, 2), **kwargs))


@pytest.mark.parametrize("x_shape, w_shape, out_shape, message", [
    ([1, 2, 2, 3], (2, 2, 2, 2), [1, 4, 4, 2], "filter depth 2 is smaller than the input depth 3"),
    ([1, 2, 2, 1], (2, 2, 2, 1), [1, 4, 4, 3], "filter has 2 output channels, output has 3"),
    ([2, 2, 2, 1], (2, 2, 2, 1), [1, 4, 4, 2], "input batch 2 differs from output batch 1"),
    ([1, 2, 2], (2, 2, 2, 1), [1, 4, 4, 2], "input must be 4-D"),
])
def test_shapes_the_kernel_would_read_or_write_past_are_refused(x_shape, w_shape, out_shape, message):
    with pytest.raises(UnsupportedOpError, match=message):
        Interpreter.from_bytes(model(x_shape, np.ones(w_shape, np.float32), out_shape, stride=(2, 2)))


def test_extra_filter_depth_is_ignored_as_tflm_does():
    # The kernel indexes the filter with its own depth but reads only the first input_depth channels.
    w = np.zeros((1, 1, 1, 3), np.float32)
    w[..., 0] = 2.0
    w[..., 1:] = 100.0
    data = model([1, 1, 1, 1], w, [1, 1, 1, 1])
    assert run(data, np.full((1, 1, 1, 1), 3.0, np.float32)).item() == 6.0


@pytest.mark.parametrize("kind, bias_type, expected", [
    ("FLOAT32", "FLOAT32", []),
    ("INT8", "INT32", [4 * 32]),
    ("INT16", "INT64", [8 * 32]),
    ("INT16", "INT16", [8 * 32, 8 * 2]),  # the output accumulator, then the widened bias
])
def test_scratch_buffers_as_tflm_requests_them(kind, bias_type, expected):
    q = {} if kind == "FLOAT32" else QUANT_8
    w = np.ones((2, 2, 2, 1), np.float32 if kind == "FLOAT32" else np.int8)
    data = model([1, 2, 2, 1], w, [1, 4, 4, 2], kind=kind, bias=np.zeros(2, bias_type.lower()), bias_type=bias_type,
                 stride=(2, 2), **q)
    assert Interpreter.from_bytes(data).kernels[0].scratch_bytes == expected


@settings(max_examples=60, deadline=None)
@given(case=st.sampled_from(["INT8", "INT16", "FLOAT32"]).flatmap(transpose_conv_cases))
def test_fast_paths_equal_the_reference_scatter_loop(case):
    """eval (whole-image integer products; float phase gathers) gives the reference loop's bytes."""
    data, inputs = build_transpose_conv(case)
    try:
        kernel = Interpreter.from_bytes(data).kernels[0]
    except ModelError:
        return  # a model TFLM would read past (see the refusal tests)
    args = [None, None, inputs[0], None]
    fast, reference = kernel.eval(args)[0], kernel.eval_reference(args)[0]
    assert fast.dtype == reference.dtype and fast.shape == reference.shape
    assert fast.tobytes() == reference.tobytes()


@pytest.mark.parametrize("stride, pad, hw", [(1, "SAME", (7, 5)), (2, "VALID", (6, 4)), (3, "SAME", (5, 5)),
                                             (2, "SAME", (9, 9))])
def test_float_phase_gather_keeps_the_loops_rounding_on_wide_sums(stride, pad, hw):
    """Many input channels of mixed magnitude: a different summation order would round differently."""
    rng = np.random.default_rng(stride)
    ic, oc, k = 24, 3, 4
    w = (rng.normal(size=(oc, k, k, ic)) * rng.choice([1e-3, 1, 1e3], (oc, k, k, ic))).astype(np.float32)
    oh = hw[0] * stride if pad == "SAME" else (hw[0] - 1) * stride + k
    ow = hw[1] * stride if pad == "SAME" else (hw[1] - 1) * stride + k
    data = model([1, hw[0], hw[1], ic], w, [1, oh, ow, oc], padding=pad, stride=(stride, stride))
    kernel = Interpreter.from_bytes(data).kernels[0]
    x = (rng.normal(size=(2, 1, hw[0], hw[1], ic)) * 100).astype(np.float32)
    args = [None, None, x, None]
    fast, reference = kernel.eval(args)[0], kernel.eval_reference(args)[0]
    assert fast.tobytes() == reference.tobytes()
    # And the order matters here: a BLAS sum over the channels differs somewhere.
    assert not np.array_equal(reference, _blas_order(x[:, 0], w, (oh, ow), stride, kernel.params))


def _blas_order(x, w, out_hw, stride, p):
    """The same transpose convolution summed over channels by matmul (another rounding order)."""
    n, h, wd, ic = x.shape
    oc, kh, kw, _ = w.shape
    acc = np.zeros((n, out_hw[0], out_hw[1], oc), np.float32)
    for iy in range(h):
        for ix in range(wd):
            contrib = np.einsum("nc,okjc->nkjo", x[:, iy, ix], w).astype(np.float32)
            for fy in range(kh):
                for fx in range(kw):
                    oy, ox = iy * stride - p.padding_height + fy, ix * stride - p.padding_width + fx
                    if 0 <= oy < out_hw[0] and 0 <= ox < out_hw[1]:
                        acc[:, oy, ox] += contrib[:, fy, fx]
    return acc


def test_integer_fast_path_in_pieces_equals_the_reference(monkeypatch):
    """The integer fast path holds its per-tap contributions a few batches at a time."""
    import ops.transpose_conv as tc
    monkeypatch.setattr(tc, "_CONTRIBUTION_BYTES", 1)  # one batch at a time
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (3, 3, 2, 4)).astype(np.int8)
    data = model([2, 4, 5, 4], w, [2, 8, 10, 3], kind="INT8", stride=(2, 2), bias=np.arange(3, dtype=np.int32),
                 bias_type="INT32", q_in=dict(scale=0.5, zero_point=3), q_w=dict(scale=[0.1, 0.2, 0.3], zero_point=0),
                 q_out=dict(scale=2.0, zero_point=-1))
    kernel = Interpreter.from_bytes(data).kernels[0]
    x = rng.integers(-128, 128, (3, 2, 4, 5, 4)).astype(np.int8)
    args = [None, None, x, None]
    assert kernel.eval(args)[0].tobytes() == kernel.eval_reference(args)[0].tobytes()
