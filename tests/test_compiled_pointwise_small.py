"""CONV_2D's compiled int8 1x1 convolution with the requantization fused
(ops/compiled/pointwise_small.py: gemm_u8's byte dot products per chunk of pixels, then
depthwise.py's one-shift requantization) equals the reference kernel byte for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``POINTWISE_FORCE``) on
random 1x1 models: input depths 1-16 (every quad remainder: K % 4 != 0 reads a copy with slack)
and a few wider, output channels 1-64 and a few wider (every register block: 4 pixels x 1, 2 or 4
vectors of 16 channels, one or several passes over the channels, the masked store of padded
channels), strides 1-2 (all pixels in one run, or one run per output row), pixel counts ending
mid-block, chunks of a few pixels (``CHUNK_BYTES`` drawn small), SAME / VALID, per-tensor and
per-channel scales with extreme multipliers and shifts (left shifts included), zero points over
the whole int8 range, weights ±127 / -128 everywhere, biases near ±2^31 (the int32 accumulator
wraps as C's does), activations, model batches. A spy on the kernel records which variant ran.
Skipped without numba or off AVX512-VNNI hosts.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")
if os.environ.get("MICROREF_COMPILED", "").strip().lower() in ("0", "off", "no", "false"):
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)

import diff_support as ds  # noqa: E402
from compiled_support import assert_forced_equals_reference, boundary_inputs  # noqa: E402

from interp import Interpreter  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import pointwise_small, use_compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

if not pointwise_small.available():
    pytest.skip("the host has no AVX512-VNNI (or numba does not target it)", allow_module_level=True)

seeds = st.integers(0, 2 ** 32 - 1)


def _forced(mp, on=True):
    mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(Conv2D, "POINTWISE_FORCE", on)


def pointwise_model(rng, *, batch=1, h=6, w=6, c=8, oc=16, stride=(1, 1), padding="SAME", zp_in=0, zp_out=0,
                    input_scale=0.02, output_scale=0.05, filter_scales=(0.01,), bias=True, bias_bits=16,
                    activation="NONE", extreme_weights=False, bias_wrap=False):
    per_channel = len(filter_scales) > 1
    oh = ds.window_output_size(padding, h, 1, stride[0], 1)
    ow = ds.window_output_size(padding, w, 1, stride[1], 1)
    b = ModelBuilder()
    x = b.input("x", [batch, h, w, c], "INT8", scale=input_scale, zero_point=zp_in)
    weights = rng.integers(-128, 127, (oc, 1, 1, c), endpoint=True).astype(np.int8)
    if extreme_weights:
        weights = rng.choice(np.array([-128, 127, -127], np.int8), weights.shape)
    wt = b.constant("w", weights, "INT8", scale=list(filter_scales) if per_channel else filter_scales[0],
                    zero_point=0, quantized_dimension=0)
    inputs = [x, wt]
    if bias:
        top = 2 ** bias_bits - 1
        values = rng.integers(-top - 1, top, oc, endpoint=True, dtype=np.int64)
        if bias_wrap:
            values = rng.choice(np.array([(1 << 31) - 1, (1 << 31) - 200, -(1 << 31), -(1 << 31) + 99]), oc)
        inputs.append(b.constant("b", values.astype(np.int32), "INT32",
                                 scale=[input_scale * s for s in filter_scales] if per_channel
                                 else input_scale * filter_scales[0], zero_point=0))
    y = b.tensor("y", [batch, oh, ow, oc], "INT8", scale=output_scale, zero_point=zp_out)
    b.op("CONV_2D", inputs, [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         fused_activation_function=activation)
    b.output(y)
    return b.build()


class _Spy:
    """Wraps pointwise_small._pointwise_kernel: records (block, K % 4 copy, one contiguous run,
    chunk pixels) per call."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, []

    def __call__(self, source, n_images, plane, row_bytes, oh, ow, row_step, pixel_step, depth, contiguous, chunk,
                 *rest):
        self.calls.append((rest[-1], source.size != n_images * plane, bool(contiguous), chunk))
        return self.kernel(source, n_images, plane, row_bytes, oh, ow, row_step, pixel_step, depth, contiguous, chunk,
                           *rest)


def assert_pointwise_equals_reference(data: bytes, rng, zero_point: int, extremes: bool,
                                      chunk_bytes: int | None = None) -> Conv2D:
    spy = _Spy(pointwise_small._pointwise_kernel)

    def force(mp):
        _forced(mp)
        if chunk_bytes is not None:
            mp.setattr(pointwise_small, "CHUNK_BYTES", chunk_bytes)
        mp.setattr(pointwise_small, "_pointwise_kernel", spy)

    kernel = assert_forced_equals_reference(data, rng, zero_point, extremes, force)
    if kernel.compiled_pointwise is not None:
        assert len(spy.calls) == 2  # run_batch and run both took the path
    kernel.spy_calls = spy.calls
    return kernel


@st.composite
def pointwise_models(draw):
    rng = np.random.default_rng(draw(seeds))
    stride = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 13)), draw(st.integers(1, 11))
    c = draw(st.integers(1, 16) | st.sampled_from([24, 33, 64, 96, 160]))
    oc = draw(st.integers(1, 64) | st.sampled_from([16, 32, 48, 64, 96, 128, 144]))
    zp_in = draw(st.sampled_from([-128, 127, 0, -1]) | st.integers(-128, 127))
    zp_out = draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    input_scale = float(np.float32(2.0 ** draw(st.floats(-12, 2))))
    output_scale = float(np.float32(2.0 ** draw(st.floats(-16, 10))))
    n_scales = oc if draw(st.booleans()) else 1
    # Exponents from -30 (a tiny multiplier: right shifts near 31 + 31) to well above 0 (left shifts).
    exponents = draw(st.lists(st.floats(-30, 8) | st.sampled_from([-30.0, -9.0, 0.0, 6.0]), min_size=n_scales,
                              max_size=n_scales))
    has_bias = draw(st.sampled_from([False, True, True]))
    bias_bits = draw(st.sampled_from([0, 12, 20, 31]) | st.integers(0, 31))
    data = pointwise_model(rng, batch=draw(st.integers(1, 2)), h=h, w=w, c=c, oc=oc, stride=stride, padding=padding,
                           zp_in=zp_in, zp_out=zp_out, input_scale=input_scale, output_scale=output_scale,
                           filter_scales=[float(np.float32(2.0 ** e)) for e in exponents], bias=has_bias,
                           bias_bits=bias_bits,
                           activation=draw(st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])),
                           extreme_weights=draw(st.booleans()),
                           bias_wrap=has_bias and bias_bits == 31 and draw(st.booleans()))
    chunk_bytes = draw(st.sampled_from([None, None, 1, 40, 200]))
    return data, rng, zp_in, draw(st.booleans()), chunk_bytes


@settings(max_examples=80, deadline=None)
@given(case=pointwise_models())
def test_pointwise_equals_reference(case):
    model, rng, zp_in, extremes, chunk_bytes = case
    kernel = assert_pointwise_equals_reference(model, rng, zp_in, extremes, chunk_bytes)
    # Every such model is planned (K <= 33 with int8 weights keeps gemm_u8's bound below 2^31).
    assert kernel.compiled_pointwise is not None


def test_real_layers_equal_reference():
    """The layers the path exists for: vww's / person_detect's 48x48 8->16 and 24x24 16->32, over
    several chunks (a chunk of 64 pixels ends mid-image), per-channel scales, RELU6; and a 1x1/2
    (ResNet's shortcut shape) with 24 output channels (padded to 32)."""
    rng = np.random.default_rng(3)
    for h, w, c, oc, stride in [(48, 48, 8, 16, 1), (24, 24, 16, 32, 1), (13, 11, 12, 24, 2), (7, 9, 3, 5, 1)]:
        data = pointwise_model(rng, batch=1, h=h, w=w, c=c, oc=oc, stride=(stride, stride), zp_in=-7, zp_out=-128,
                               filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)), activation="RELU6")
        assert assert_pointwise_equals_reference(data, rng, -7, False).compiled_pointwise is not None


def test_default_threshold_and_forcing():
    """By default the path is planned for 1x1 int8 layers with at most POINTWISE_MAX_DEPTH input
    channels (every depth, by default), never for other kernels, 16x8, padding;
    POINTWISE_FORCE=False plans nothing."""
    rng = np.random.default_rng(4)
    cases = [(dict(c=8, oc=16), True), (dict(c=16, oc=32), True), (dict(c=17, oc=8), True),
             (dict(c=96, oc=24), True), (dict(c=3, oc=4, stride=(2, 2)), True)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "PLAN_MIN_OUTPUTS", 0)  # these small layers stand for large ones
        for params, planned in cases:
            it = Interpreter.from_bytes(pointwise_model(rng, **params))
            assert (it.kernels[0].compiled_pointwise is not None) == planned, params
    # A layer of fewer outputs per sample than PLAN_MIN_OUTPUTS (a fuzzing example's) is not planned.
    assert Interpreter.from_bytes(pointwise_model(rng, c=8, oc=16)).kernels[0].compiled_pointwise is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "PLAN_MIN_OUTPUTS", 0)
        mp.setattr(Conv2D, "POINTWISE_MAX_DEPTH", 16)
        assert Interpreter.from_bytes(pointwise_model(rng, c=17, oc=8)).kernels[0].compiled_pointwise is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "POINTWISE_FORCE", False)
        assert Interpreter.from_bytes(pointwise_model(rng)).kernels[0].compiled_pointwise is None
    assert pointwise_small.plan((6, 6, 8), (6, 6), (3, 3), (1, 1), (1, 1), 0, 0, -128, 127,
                                np.zeros((72, 4)), None, np.full(4, 1 << 30), np.zeros(4, np.int64)) is None
    assert pointwise_small.plan((6, 6, 8), (7, 7), (1, 1), (1, 1), (0, 0), 0, 0, -128, 127,
                                np.zeros((8, 4)), None, np.full(4, 1 << 30), np.zeros(4, np.int64)) is None


def test_plan_matches_plain_integer_arithmetic():
    """Without any model: the kernel against TFLM's formula in int64 (ops.fixedpoint's
    MultiplyByQuantizedMultiplier) on extreme multipliers, shifts from -31 to +8, biases that wrap
    the int32 accumulator, every K from 1 to 16 and 20 channels (padded to 32)."""
    rng = np.random.default_rng(11)
    for k in range(1, 17):
        oc = 20
        weights = rng.choice(np.array([-128, 127, -127, 0, 5]), (k, oc))
        bias = rng.choice(np.array([(1 << 31) - 1, -(1 << 31), 12345, -7]), oc)
        multiplier = rng.choice(np.array([0, 1 << 30, (1 << 31) - 1, 1518500250]), oc)
        shift = rng.choice(np.array([-31, -20, -1, 0, 1, 8]), oc)
        input_offset, output_offset = int(rng.integers(-127, 129)), int(rng.integers(-128, 128))
        p = pointwise_small.plan((5, 7, k), (5, 7), (1, 1), (1, 1), (0, 0), input_offset, output_offset, -128, 127,
                                 weights, bias, multiplier, shift)
        assert p is not None
        x = rng.integers(-128, 128, (3, 5, 7, k)).astype(np.int8)
        got = pointwise_small.conv(p, x, np.int8)
        acc = (x.astype(np.int64) + input_offset) @ weights + bias
        scaled = fp.multiply_by_quantized_multiplier(fp.wrap_int32(acc), multiplier, shift)
        want = np.clip(fp.wrap_int32(np.asarray(scaled, np.int64) + output_offset), -128, 127).astype(np.int8)
        assert np.array_equal(got, want), k


@pytest.mark.parametrize("case", range(3))
def test_pointwise_equals_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(100 + case)
    params = [dict(h=12, w=12, c=8, oc=16, zp_in=-128, zp_out=127),
              dict(h=9, w=7, c=5, oc=17, stride=(2, 1), padding="VALID", zp_in=127, activation="RELU"),
              dict(h=6, w=6, c=16, oc=64, filter_scales=tuple(rng.uniform(1e-4, 3e-2, 64)), bias_wrap=True,
                   bias_bits=31, extreme_weights=True)][case]
    data = pointwise_model(rng, batch=1, **params)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        _forced(mp)
        it = Interpreter.from_bytes(data)
        assert it.kernels[0].compiled_pointwise is not None
        x = boundary_inputs(rng, it, params.get("zp_in", 0), case == 2)
        assert ds.check_model(data, [x], label="CONV_2D pointwise compiled").compared


def test_every_variant_equals_reference():
    """Each register block (4 pixels x 4 / 2 / 1 vectors), with the output offset folded into the
    rounding and without (left shifts, or right shifts too large to fold), with one and several passes over
    the output channels, in chunks of a few pixels and whole; K % 4 = 0 (read in place) and not (a
    copy with slack); one run for all pixels (stride 1) and a run per row (stride 2, VALID); pixel
    counts that end mid-block; padded channels (the masked store). The spy checks the variant ran."""
    rng = np.random.default_rng(21)
    cases = [  # (model parameters, chunk bytes, expected (block, copy, contiguous))
        (dict(h=5, w=7, c=16, oc=128), 64, (0, False, True)),  # 2 passes of 64, chunks of 4 pixels
        (dict(h=5, w=7, c=12, oc=64), None, (0, False, True)),
        (dict(h=3, w=9, c=8, oc=96), 40, (1, False, True)),  # 3 passes of 32
        (dict(h=4, w=5, c=6, oc=32), None, (1, True, True)),
        (dict(h=6, w=5, c=8, oc=48), 1, (2, False, True)),  # 3 passes of 16, chunks of 4 pixels
        (dict(h=7, w=7, c=5, oc=20), None, (2, True, True)),  # padded to 32: block 1, last vector masked
        (dict(h=5, w=6, c=8, oc=40), 40, (2, False, True)),  # 3 passes, the last one's store masked
        (dict(h=9, w=7, c=3, oc=7, stride=(2, 2), padding="VALID"), None, (2, True, False)),
        (dict(h=8, w=11, c=32, oc=64, stride=(1, 2), padding="VALID"), None, (0, False, False)),
        (dict(h=1, w=1, c=4, oc=1), None, (2, False, True)),
    ]
    # Multipliers below 1 (the offset folded into the rounding: blocks 3-5), above 1 (left shifts:
    # blocks 0-2), and tiny (2^-29.5: right shifts of 31 + 29, where the folded offset 5·2^60 would
    # pass 2^62: blocks 0-2).
    for output_scale, scales, folded in [(0.05, (1e-3, 3e-2), True), (1e-5, (1e-3, 3e-2), False),
                                         (1.57e5, (0.01, 0.012), False)]:
        for params, chunk_bytes, expected in cases:
            data = pointwise_model(rng, batch=2, zp_in=-3, zp_out=5, filter_scales=tuple(rng.uniform(
                *scales, params["oc"])), activation="RELU6" if folded else "NONE", bias_bits=31, bias_wrap=True,
                output_scale=output_scale, **params)
            kernel = assert_pointwise_equals_reference(data, rng, -3, True, chunk_bytes)
            p = kernel.compiled_pointwise
            block, copy, contiguous = expected
            if params["oc"] == 20:
                block = 1  # 20 channels pad to 32
            block += 3 * folded
            assert p is not None and {c[:3] for c in kernel.spy_calls} == {(block, copy, contiguous)}, \
                (params, output_scale)
            if chunk_bytes is not None:
                assert kernel.spy_calls[0][3] < p.out_hw[0] * p.out_hw[1], params  # several chunks per image


def test_activation_bounds_outside_int8_are_refused():
    """requant_ir clamps in int8: bounds outside it (never TFLM's for an int8 output) leave the
    layer to the other kernels."""
    args = ((4, 4, 8), (4, 4), (1, 1), (1, 1), (0, 0), 0, 0)
    rest = (np.ones((8, 16)), None, np.full(16, 1 << 30), np.zeros(16, np.int64))
    assert pointwise_small.plan(*args, -128, 127, *rest) is not None
    assert pointwise_small.plan(*args, -129, 127, *rest) is None
    assert pointwise_small.plan(*args, -128, 128, *rest) is None
