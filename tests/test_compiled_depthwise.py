"""The compiled int8 / 16x8 DEPTHWISE_CONV_2D (ops/compiled/depthwise.py) equals the reference
kernel byte for byte, and TFLM itself.

The compiled path is forced (``use_compiled(True)`` and ``COMPILED_MIN_ELEMENTS = 0``) on random
models over shapes, strides, dilations, both paddings, depth multipliers, per-channel scales
from tiny to huge (left shifts, shifts down to -31), zero points at the ends of the range,
biases near ±2^31 (the int32 accumulator wraps) and model batches, and compared with
``kernels="reference"``. The requantization's one-shift form is checked on its own against
ops.fixedpoint's MultiplyByQuantizedMultiplier on the extreme multipliers, shifts and
accumulators. Skipped without numba.
"""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import skip_unless_compiled
from hypothesis import given, settings
from hypothesis import strategies as st

skip_unless_compiled()

from compiled_support import (  # noqa: E402,F401
    SAMPLES,
    assert_depthwise_prepare_skips_numba,
    assert_forced_equals_reference,
    boundary_inputs,
    check_diff_conv_cases,
    depthwise_model,
)

from interp import Interpreter  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import depthwise as compiled_depthwise  # noqa: E402
from ops.compiled import use_compiled  # noqa: E402
from ops.conv import DepthwiseConv2D  # noqa: E402

seeds = st.integers(0, 2 ** 32 - 1)



def _forced(mp):
    mp.setattr(DepthwiseConv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(DepthwiseConv2D, "VNNI_FORCE", False)  # this file tests ops/compiled/depthwise.py


def assert_compiled_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> DepthwiseConv2D:
    return assert_forced_equals_reference(data, rng, zero_point, extremes, _forced)


@st.composite
def depthwise_models(draw, kind, kernel=None):
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    kh, kw = kernel if kernel is not None else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    dilation = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    channels = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 33]))
    dm = draw(st.sampled_from([1, 1, 2, 3, 4]))
    batch = draw(st.integers(1, 2))
    out_c = channels * dm
    io = "INT16" if kind == "INT16" else "INT8"
    zp_in = 0 if io == "INT16" else draw(st.sampled_from([-128, 127, 0, -1]) | st.integers(-128, 127))
    zp_out = 0 if io == "INT16" else draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    # Real multipliers input·filter/output from about 2^-40 (flushed to 0 below 2^-31, then
    # shifts of -31) up to 2^8 (left shifts).
    input_scale = float(np.float32(2.0 ** draw(st.floats(-12, 2))))
    output_scale = float(np.float32(2.0 ** draw(st.floats(-14, 10))))
    per_channel = draw(st.booleans())
    n_scales = out_c if per_channel else 1
    exponents = draw(st.lists(st.floats(-30, 0) | st.sampled_from([-30.0, -9.0, 0.0]), min_size=n_scales,
                              max_size=n_scales))
    bias_kind = draw(st.sampled_from([None, "INT64"] if io == "INT16" else [None, "INT32", "INT32"]))
    bias_bits = draw(st.sampled_from([0, 12, 20, 31]) | st.integers(0, 31))
    if io == "INT16":
        bias_bits = draw(st.sampled_from([0, 20, 40, 47]))
    data = depthwise_model(rng, kind=kind, batch=batch, h=h, w=w, c=channels, dm=dm, kh=kh, kw=kw, stride=stride,
                           dilation=dilation, padding=padding, zp_in=zp_in, zp_out=zp_out, input_scale=input_scale,
                           output_scale=output_scale, filter_scales=[float(np.float32(2.0 ** e)) for e in exponents],
                           bias_kind=bias_kind, bias_bits=bias_bits,
                           activation=draw(st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])),
                           extreme_weights=draw(st.booleans()),
                           bias_wrap=bias_kind is not None and bias_bits == 31 and draw(st.booleans()))
    return data, rng, zp_in, draw(st.booleans())


@pytest.mark.parametrize("kind", ["INT8", "INT4", "INT16"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_compiled_depthwise_equals_reference(kind, data):
    model, rng, zp_in, extremes = data.draw(depthwise_models(kind))
    kernel = assert_compiled_equals_reference(model, rng, zp_in, extremes)
    # The forced path was taken (these geometries all qualify).
    assert kernel.compiled_params is not None


@pytest.mark.parametrize("kind", ["INT8", "INT16"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_3x3_equals_reference(kind, data):
    """3x3 filters (nearly every real model's): tiny images where every pixel is a border, strides
    past the kernel, dilations, depth multipliers, extreme zero points, weights and wrapping biases."""
    model, rng, zp_in, extremes = data.draw(depthwise_models(kind, kernel=(3, 3)))
    kernel = assert_compiled_equals_reference(model, rng, zp_in, extremes)
    assert kernel.compiled_params is not None and kernel.compiled_params.weights.shape[0] == 9


def test_mobilenet_shaped_layers_equal_reference():
    """Wider layers than the property draws: 3x3, stride 1 and 2, many channels (rows longer than
    one chunk of the tiled weights), a per-tensor and a per-channel scale."""
    rng = np.random.default_rng(7)
    for h, c, stride, per_channel in [(15, 144, 1, True), (16, 96, 2, False), (9, 520, 1, True), (20, 24, 2, True)]:
        b = ModelBuilder()
        x = b.input("x", [1, h, h, c], "INT8", scale=0.02, zero_point=-5)
        scales = list(rng.uniform(1e-3, 2e-2, c)) if per_channel else 0.01
        wt = b.constant("w", rng.integers(-127, 128, (1, 3, 3, c)).astype(np.int8), "INT8", scale=scales,
                        zero_point=0, quantized_dimension=3)
        bias = b.constant("b", rng.integers(-20000, 20000, c).astype(np.int32), "INT32",
                          scale=[0.02 * s for s in scales] if per_channel else 0.02 * scales, zero_point=0)
        o = -(-h // stride)
        y = b.tensor("y", [1, o, o, c], "INT8", scale=0.05, zero_point=3)
        b.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], padding="SAME", stride_h=stride, stride_w=stride,
             depth_multiplier=1, fused_activation_function="RELU6")
        b.output(y)
        kernel = assert_compiled_equals_reference(b.build(), rng, -5, False)
        assert kernel.compiled_params is not None


# ------------------------------------------------------------------ the requantization alone
EXTREME_MULTIPLIERS = [0, 1, 2, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, (1 << 31) - 2, (1 << 31) - 1, 1518500250]
EXTREME_SHIFTS = list(range(-31, 1)) + [1, 2, 7, 8, 15, 30, 31]
EXTREME_ACCUMULATORS = [0, 1, -1, 2, -2, 3, -3, 1 << 30, -(1 << 30), (1 << 31) - 1, -(1 << 31), (1 << 31) - 2,
                        -(1 << 31) + 1, 12345, -12345, 1 << 16, -(1 << 16)]


def _requantize_with_kernel(acc, multiplier, shift, zero_point, act_min, act_max):
    """The compiled kernel on a 1x1 depthwise whose accumulators are ``acc`` (filter 1, input 0
    with input_offset 0, the accumulator in the bias), one channel per (multiplier, shift)."""
    c = len(multiplier)
    p = compiled_depthwise.plan("INT8", (1, 1, c), (1, 1), (1, 1), (1, 1), (0, 0), 1, 0, zero_point, act_min, act_max,
                                np.ones((1, 1, c), np.int64), np.asarray(acc, np.int64), multiplier, shift)
    assert p is not None
    return compiled_depthwise.depthwise_conv(p, np.zeros((1, 1, 1, c), np.int8), (1, 1), np.int8).reshape(-1)


@pytest.mark.parametrize("zero_point,act_min,act_max", [(0, -128, 127), (-128, -128, 127), (127, -128, 127),
                                                        (5, 5, 11)])
def test_one_shift_requantization_equals_multiply_by_quantized_multiplier(zero_point, act_min, act_max):
    grid = np.array([(a, m, s) for a in EXTREME_ACCUMULATORS for m in EXTREME_MULTIPLIERS for s in EXTREME_SHIFTS],
                    np.int64)
    rng = np.random.default_rng(0)
    # Random accumulators around every rounding tie of random channels too.
    extra = []
    for _ in range(3000):
        m, s = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-31, 3))
        a = int(rng.integers(-(1 << 31), 1 << 31))
        extra.append((a, m, s))
    grid = np.concatenate([grid, np.array(extra, np.int64)])
    acc, m, s = grid[:, 0], grid[:, 1], grid[:, 2]
    want = np.clip(fp.wrap_int32(fp.multiply_by_quantized_multiplier(acc, m, s) + zero_point), act_min, act_max)
    for part in np.array_split(np.arange(len(grid)), 8):
        got = _requantize_with_kernel(acc[part], m[part], s[part], zero_point, act_min, act_max)
        assert np.array_equal(got.astype(np.int64), want[part].astype(np.int8).astype(np.int64)), \
            np.flatnonzero(got != want[part].astype(np.int8))[:5]


def test_plan_refuses_what_it_cannot_compute_exactly():
    args = dict(in_hwc=(4, 4, 2), out_hw=(4, 4), stride=(1, 1), dilation=(1, 1), padding=(0, 0), depth_multiplier=1,
                input_offset=0, output_offset=0, activation_min=-128, activation_max=127,
                weights=np.ones((1, 1, 2), np.int64), bias=None)
    assert compiled_depthwise.plan("INT8", **args, multiplier=[1 << 30, 1 << 30], shift=[0, -3]) is not None
    assert compiled_depthwise.plan("FLOAT32", **args, multiplier=[1 << 30] * 2, shift=[0, 0]) is None
    assert compiled_depthwise.plan("INT8", **args, multiplier=[-(1 << 30), 1 << 30], shift=[0, 0]) is None
    assert compiled_depthwise.plan("INT8", **args, multiplier=[1 << 30] * 2, shift=[-32, 0]) is None
    assert compiled_depthwise.plan("INT8", **{**args, "stride": (0, 1)}, multiplier=[1 << 30] * 2, shift=[0, 0]) \
        is None


def test_large_zero_point_offsets_use_an_int32_image():
    """An input zero point outside int8 (a malformed model TFLM still runs): x - zp no longer fits
    int16, and the padded image is int32, still exact."""
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    x = b.input("x", [1, 6, 6, 4], "INT8", scale=0.05, zero_point=-40000)
    wt = b.constant("w", rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8), "INT8", scale=1e-6, zero_point=0,
                    quantized_dimension=3)
    y = b.tensor("y", [1, 6, 6, 4], "INT8", scale=1.0, zero_point=0)
    b.op("DEPTHWISE_CONV_2D", [x, wt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=1)
    b.output(y)
    try:
        Interpreter.from_bytes(b.build(), kernels="reference")
    except Exception as e:  # noqa: BLE001 - refused at load by both: nothing to compare
        pytest.skip(f"refused: {e}")
    kernel = assert_compiled_equals_reference(b.build(), rng, 0, False)
    assert kernel.compiled_params is not None and kernel.compiled_params.phases_dtype is np.int32


# ------------------------------------------------------------------ switches
def test_disabled_compiled_kernels_leave_the_numpy_paths():
    rng = np.random.default_rng(1)
    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, 4], "INT8", scale=0.05, zero_point=2)
    wt = b.constant("w", rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8), "INT8", scale=0.01, zero_point=0,
                    quantized_dimension=3)
    y = b.tensor("y", [1, 8, 8, 4], "INT8", scale=0.1, zero_point=0)
    b.op("DEPTHWISE_CONV_2D", [x, wt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=1)
    b.output(y)
    it = Interpreter.from_bytes(b.build())
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DepthwiseConv2D, "COMPILED_MIN_ELEMENTS", 0)
        mp.setattr(compiled_depthwise, "depthwise_conv", lambda *a: calls.append(a) or pytest.fail("compiled ran"))
        with use_compiled(False):
            it.run([np.zeros((1, 8, 8, 4), np.int8)])
    assert not calls
    # Below the threshold the numpy kernel runs even when enabled.
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        mp.setattr(compiled_depthwise, "depthwise_conv", lambda *a: pytest.fail("compiled ran below the threshold"))
        it.run([np.zeros((1, 8, 8, 4), np.int8)])


def test_numerics_variants_keep_the_numpy_kernels():
    from ops.registry import Numerics
    rng = np.random.default_rng(2)
    b = ModelBuilder()
    x = b.input("x", [1, 5, 5, 3], "INT8", scale=0.05, zero_point=2)
    wt = b.constant("w", rng.integers(-127, 128, (1, 3, 3, 3)).astype(np.int8), "INT8", scale=0.01, zero_point=0,
                    quantized_dimension=3)
    y = b.tensor("y", [1, 5, 5, 3], "INT8", scale=0.1, zero_point=0)
    b.op("DEPTHWISE_CONV_2D", [x, wt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=1)
    b.output(y)
    it = Interpreter.from_bytes(b.build(), numerics=Numerics(rounding="single"))
    assert it.kernels[0].compiled_params is None


def test_load_and_prepare_do_not_import_numba():
    """numba (~0.3 s) is imported by the first large eval only, never by from_bytes + prepare."""
    assert_depthwise_prepare_skips_numba(16, 1, "compiled_params")


# ------------------------------------------------------------------ against TFLM itself
@pytest.mark.parametrize("kind", ["INT8", "INT4", "INT16"])
def test_compiled_depthwise_matches_tflm(kind):
    """test_diff_conv's depthwise cases (zero strides and dilations included: those keep the numpy
    kernel) with the compiled path forced, run_batch and run against TFLM."""
    def force(mp):
        mp.setattr(DepthwiseConv2D, "COMPILED_MIN_ELEMENTS", 0)
        mp.setattr(DepthwiseConv2D, "VNNI_FORCE", False)

    check_diff_conv_cases(force, f"DEPTHWISE_CONV_2D {kind} compiled", kind)
