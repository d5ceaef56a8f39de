"""CONV_2D's compiled row convolution (ops/compiled/conv_u8_fused.py: 16 output pixels of a row, or
two rows of 8, in the lanes, byte dot products with the weights broadcast from memory, the
requantization from the high words of the int64 sums in registers) equals the reference kernel
byte for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``ROWS_FORCE``) on random
models: input depths 4..64 (multiples of 4), 16..96 output channels, rows of >= 16 output pixels
and of exactly 8, kernels 1x1..5x5, stride_h 1..3, dilations, SAME / VALID, per-channel scales
with extreme multipliers, zero points over the whole int8 range, weights ±127 / -128 everywhere,
biases near ±2^31 (the int32 accumulator wraps as C's does), activations, model batches. A spy
checks that the kernel ran; layers the plan refuses (other depths, widths, strides, a multiplier
of 1/2 or more) keep the other paths. Skipped without numba, and off hosts without AVX512-VNNI.
"""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import skip_unless_compiled
from hypothesis import given, settings
from hypothesis import strategies as st

skip_unless_compiled()

import diff_support as ds  # noqa: E402
from compiled_support import (  # noqa: E402
    assert_forced_equals_reference,
    boundary_inputs,
    draw_conv_numerics,
)
from compiled_support import conv_model as shared_conv_model  # noqa: E402

from interp import Interpreter  # noqa: E402
from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import conv_u8_fused, use_compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

if not conv_u8_fused.available():
    pytest.skip("the host has no AVX512-VNNI (or numba does not target it)", allow_module_level=True)

seeds = st.integers(0, 2 ** 32 - 1)


def _forcer(calls: list, on=True):
    def force(mp):
        mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
        mp.setattr(Conv2D, "ROWS_FORCE", on)
        mp.setattr(Conv2D, "POINTWISE_FORCE", False)  # this kernel, not pointwise_small, on 1x1 models
        original = conv_u8_fused.conv

        def spy(*args):
            calls.append(args[0].split)
            return original(*args)

        mp.setattr(conv_u8_fused, "conv", spy)
    return force


def assert_rows_equal_reference(data: bytes, rng, zero_point: int, extremes: bool) -> tuple:
    """The forced path's bytes equal the reference's; returns (kernel, the calls that ran)."""
    calls = []
    kernel = assert_forced_equals_reference(data, rng, zero_point, extremes, _forcer(calls))
    return kernel, calls


def conv_model(rng, **kw) -> bytes:
    """compiled_support.conv_model with this file's defaults (int8, "c": 16, "oc": 16)."""
    return shared_conv_model(rng, **{"c": 16, "oc": 16, **kw})


@st.composite
def conv_models(draw):
    rng = np.random.default_rng(draw(seeds))
    kh, kw = draw(st.sampled_from([(3, 3), (3, 3), (1, 1), (5, 5), (2, 3), (3, 1)])
                  | st.tuples(st.integers(1, 5), st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), 1)
    dilation = (draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h = draw(st.integers(2, 10))
    reach = (kw - 1) * dilation[1]
    ow = draw(st.sampled_from([8, 8, 16, 17, 24, 33]))  # rows of 8 (two per group) and of >= 16
    w = ow if padding == "SAME" else ow + reach
    if padding == "VALID":
        h = max(h, (kh - 1) * dilation[0] + 2)
    c = draw(st.sampled_from([4, 8, 16, 32, 64, 12]))
    oc = draw(st.sampled_from([16, 32, 16, 48, 64, 96]))
    numerics = draw_conv_numerics(draw, oc, output_exponents=(-4, 10),
                                  filter_exponents=st.floats(-30, -12) | st.sampled_from([-30.0, -9.0, -14.0]))
    data = conv_model(rng, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=stride, dilation=dilation, padding=padding,
                      **numerics)
    return data, rng, numerics["zp_in"], draw(st.booleans())


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_rows_equal_reference(data):
    model, rng, zp_in, extremes = data.draw(conv_models())
    kernel, calls = assert_rows_equal_reference(model, rng, zp_in, extremes)
    # Planned unless a channel's multiplier reaches 1/2 (a right shift of 31; these scales make that
    # rare) or a single output row of 8 pixels; then another path gave the bytes above.
    plan = kernel.compiled_rows
    if plan is None:
        assert not calls
        return
    assert calls and set(calls) == {plan.split}
    assert plan.split == (kernel.out_hw[1] == 8)


def test_real_layers_equal_reference():
    """pretrainedResnet's 3x3 layers, smaller: 16->16 and 32->32 over rows of 32 / 16 pixels and
    64->64 over rows of 8 (two rows per group), RELU, per-channel scales; both kinds of group."""
    rng = np.random.default_rng(3)
    seen = set()
    for h, w, c, oc in [(6, 32, 16, 16), (5, 16, 32, 32), (8, 8, 64, 64), (7, 8, 16, 32), (3, 20, 8, 16)]:
        data = conv_model(rng, batch=2, h=h, w=w, c=c, oc=oc, zp_in=-128, zp_out=-128,
                          filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)), activation="RELU")
        kernel, calls = assert_rows_equal_reference(data, rng, -128, False)
        assert kernel.compiled_rows is not None and len(calls) == 2  # run_batch, then run
        seen.add(kernel.compiled_rows.split)
    assert seen == {False, True}


def _plain_conv(x, weights, bias, multiplier, shift, input_offset, output_offset, act_min, act_max, kernel_hw,
                stride, dilation, padding, out_hw):
    """TFLM's ConvPerChannel in int64 numpy and ops.fixedpoint (no model, no TFLM)."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl), (oh, ow) = kernel_hw, stride, dilation, padding, out_hw
    n, h, w, c = x.shape
    oc = weights.shape[1]
    padded = np.full((n, h + pt + kh * dh + oh * sh, w + pl + kw * dw + ow * sw, c), -input_offset, np.int64)
    padded[:, pt:pt + h, pl:pl + w] = x
    acc = np.zeros((n, oh, ow, oc), np.int64)
    w4 = weights.reshape(kh, kw, c, oc)
    for ky in range(kh):
        for kx in range(kw):
            patch = padded[:, ky * dh:ky * dh + (oh - 1) * sh + 1:sh, kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
            acc += np.einsum("nhwc,co->nhwo", patch + input_offset, w4[ky, kx])
    acc = ((acc + bias + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32, wrapping as C's
    scaled = fp.multiply_by_quantized_multiplier(acc.astype(np.int32), multiplier, shift).astype(np.int64)
    scaled = ((scaled + output_offset + (1 << 31)) % (1 << 32)) - (1 << 31)
    return np.clip(scaled, act_min, act_max).astype(np.int8)


def test_kernel_matches_plain_integer_arithmetic():
    """Both kinds of group and every requantization mode against int64 arithmetic and
    ops.fixedpoint, without a model: extreme multipliers, right shifts 32..62, wrapping biases,
    extreme zero points and weights, dilations, stride_h 2, activation ranges and offsets with
    and without the clamp absorbing the negative rounding, and the full int8 range."""
    rng = np.random.default_rng(11)
    cases = [(16, 16, (3, 3), (1, 1), (1, 1), 9, 20), (8, 32, (3, 3), (2, 1), (1, 2), 11, 18),
             (64, 16, (3, 3), (1, 1), (1, 1), 8, 8), (4, 48, (5, 5), (1, 1), (2, 1), 12, 8),
             (12, 16, (1, 3), (1, 1), (1, 1), 5, 40), (32, 64, (2, 2), (3, 1), (1, 1), 10, 17)]
    # (output_offset, act_min, act_max): mode 2 (full range), 3 (and the clamp absorbs), 1, 0, 0
    ranges = [(-5, -128, 127), (-128, -128, 127), (3, 3, 127), (-5, -100, 100), (7, -128, 6)]
    kinds, modes = set(), set()
    for c, oc, (kh, kw), stride, dilation, h, w in cases:
        pt, pl = 1, (kw - 1) * dilation[1] // 2
        oh = (h + 2 * pt - (kh - 1) * dilation[0] - 1) // stride[0] + 1
        ow = w + 2 * pl - (kw - 1) * dilation[1]
        weights = rng.choice(np.array([-128, 127, -127, 0, 5]), (kh * kw * c, oc))
        bias = rng.choice(np.array([-(1 << 31), (1 << 31) - 1, 0, 12345, -98765]), oc)
        multiplier = rng.choice(np.array([(1 << 30), (1 << 31) - 1, 1 << 30 | 12345]), oc)
        shift = rng.choice(np.array([-31, -20, -9, -2, -1]), oc)
        for zp in (-128, 127, 3):
            for offset, low, high in ranges:
                x = rng.choice(np.array([-128, 127, zp, 0]), (2, h, w, c)).astype(np.int8)
                p = conv_u8_fused.plan((h, w, c), (oh, ow), (kh, kw), stride, dilation, (pt, pl), -zp, offset, low,
                                       high, weights, bias, multiplier, shift)
                got = conv_u8_fused.conv(p, x, np.int8)
                want = _plain_conv(x, weights, bias, multiplier, shift, -zp, offset, low, high, (kh, kw), stride,
                                   dilation, (pt, pl), (oh, ow))
                assert np.array_equal(got, want), (c, oc, kh, kw, stride, zp, offset, low, high, p.split, p.mode)
                kinds.add(p.split)
                modes.add(p.mode)
    assert kinds == {False, True} and modes == {0, 1, 2, 3}


def test_high_words_across_the_rounding_steps():
    """The requantization from the high words (right shifts 32..62): accumulators over a range that
    crosses 0 and the negative rounding steps, for every shift -1..-31, with and without the clamp
    absorbing the negative rounding, against ops.fixedpoint."""
    rng = np.random.default_rng(12)
    x = rng.integers(-128, 128, (1, 2, 256, 4)).astype(np.int8)
    x[..., 0] = np.arange(-128, 128)  # every int8 value in the channel the weights read
    weights = np.zeros((4, 16), np.int64)
    weights[0] = 1
    for shift in range(-1, -32, -1):
        reach = 1 << min(-shift + 4, 31)
        for offset, low in ((-128, -128), (0, 0), (5, 20), (-(1 << 29) + 1, -128), (100, 120), (3, -128)):
            bias = np.clip(rng.integers(-reach, reach // 8 + 2, 16), -(1 << 31), (1 << 31) - 1)
            multiplier = rng.integers(1 << 30, 1 << 31, 16)
            p = conv_u8_fused.plan((2, 256, 4), (2, 256), (1, 1), (1, 1), (1, 1), (0, 0), 0, offset, low, 127, weights,
                                   bias, multiplier, np.full(16, shift))
            got = conv_u8_fused.conv(p, x, np.int8)
            want = _plain_conv(x, weights, bias, multiplier, np.full(16, shift), 0, offset, low, 127, (1, 1), (1, 1),
                               (1, 1), (0, 0), (2, 256))
            assert np.array_equal(got, want), (shift, offset, low, p.mode)


def test_channels_of_zero_scale():
    """A channel whose multiplier is 0 (a zero filter scale: TFLM's QuantizeMultiplier gives 0 with
    shift 0, which would be a right shift of 31) outputs the offset whatever its accumulator: the
    plan takes it as 0 >> 32, next to live channels, and the bytes equal ops.fixedpoint's."""
    rng = np.random.default_rng(13)
    x = rng.integers(-128, 128, (2, 4, 16, 8)).astype(np.int8)
    weights = rng.choice(np.array([-128, 127, 3]), (9 * 8, 32))
    bias = rng.choice(np.array([-(1 << 31), (1 << 31) - 1, 7]), 32)
    multiplier = np.where(np.arange(32) % 3 == 0, 0, 1 << 30)
    for dead_shift in (0, 3, -5):
        shift = np.where(multiplier == 0, dead_shift, -4)
        for offset, low, high in ((-5, -128, 127), (3, 3, 127), (0, -100, 100)):
            p = conv_u8_fused.plan((4, 16, 8), (4, 16), (3, 3), (1, 1), (1, 1), (1, 1), 17, offset, low, high, weights,
                                   bias, multiplier, shift)
            assert p is not None
            want = _plain_conv(x, weights, bias, multiplier, shift, 17, offset, low, high, (3, 3), (1, 1), (1, 1),
                               (1, 1), (4, 16))
            assert np.array_equal(conv_u8_fused.conv(p, x, np.int8), want), (dead_shift, offset)


def test_plan_refuses_what_it_cannot_hold():
    """Depths not a multiple of 4, channels not a multiple of 16, rows of 9..15 pixels or a single
    row of 8, stride_w 2, zero points or weights outside int8, a multiplier of 1/2 or more (right
    shift 31) in one channel: None, so another path runs."""
    w = np.ones((9 * 8, 16), np.int64)
    args = dict(padding=(1, 1), input_offset=0, output_offset=0, activation_min=-128, activation_max=127,
                bias=np.zeros(16, np.int64), multiplier=np.full(16, 1 << 30), shift=np.full(16, -3))

    def plan(hwc=(8, 16, 8), out_hw=(8, 16), stride=(1, 1), weights=w, **changes):
        return conv_u8_fused.plan(hwc, out_hw, (3, 3), stride, (1, 1), **{**args, **changes}, weights=weights)

    assert plan() is not None and plan(hwc=(8, 8, 8), out_hw=(8, 8)).split
    assert plan(hwc=(8, 16, 6), weights=np.ones((54, 16), np.int64)) is None
    assert plan(weights=np.ones((72, 24), np.int64), bias=np.zeros(24), multiplier=np.full(24, 1 << 30),
                shift=np.full(24, -3)) is None
    assert plan(hwc=(8, 12, 8), out_hw=(8, 12)) is None
    assert plan(hwc=(1, 8, 8), out_hw=(1, 8), padding=(0, 1)) is None
    assert plan(stride=(1, 2), out_hw=(8, 8)) is None
    assert plan(stride=(2, 1), out_hw=(4, 16)) is not None
    assert plan(input_offset=-128) is None and plan(input_offset=128) is not None
    assert plan(weights=w * 128) is None
    assert plan(shift=np.array([-3] * 15 + [0])) is None  # e = 0: right shift 31


def test_default_thresholds_and_other_forces():
    """By default the path is planned for int8 layers of >= 8 input channels it can hold (not for
    first layers of 3 or 4 channels, which first_conv's row blocks take), and never while a test
    forces another compiled convolution path."""
    rng = np.random.default_rng(4)
    cases = [(dict(c=3, w=32), False), (dict(c=4, w=32), False), (dict(c=8, w=32), True), (dict(c=16, w=32), True),
             (dict(c=16, w=12), False), (dict(c=16, oc=24, w=32), False)]
    for params, planned in cases:
        data = conv_model(rng, h=6, filter_scales=(0.001,), **params)
        assert (Interpreter.from_bytes(data).kernels[0].compiled_rows is not None) == planned, params
    data = conv_model(rng, h=6, w=32, filter_scales=(0.001,))
    for attribute in ("FIRST_CONV_FORCE", "U8_FORCE", "SMALL_CONV_FORCE", "POINTWISE_FORCE"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Conv2D, attribute, True)
            assert Interpreter.from_bytes(data).kernels[0].compiled_rows is None, attribute
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "ROWS_FORCE", False)
        assert Interpreter.from_bytes(data).kernels[0].compiled_rows is None


def test_without_vnni_another_path_runs(monkeypatch):
    """On a host without the instruction (simulated) the plan is kept but eval takes another path:
    still the reference's bytes."""
    from ops.compiled import gemm_u8

    monkeypatch.setattr(gemm_u8, "_available", False)
    rng = np.random.default_rng(9)
    data = conv_model(rng, h=5, w=16, c=16, oc=32, zp_in=-5, filter_scales=(0.002,))
    kernel, calls = assert_rows_equal_reference(data, rng, -5, True)
    assert kernel.compiled_rows is not None and not calls


@pytest.mark.parametrize("case", range(3))
def test_rows_equal_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(300 + case)
    params = [dict(h=6, w=16, c=16, oc=16, zp_in=-128, zp_out=127, filter_scales=(0.004,)),
              dict(h=8, w=8, c=32, oc=32, zp_in=127, activation="RELU",
                   filter_scales=tuple(rng.uniform(1e-4, 3e-3, 32)), bias_wrap=True, bias_bits=31,
                   extreme_weights=True),
              dict(h=7, w=20, c=8, oc=48, kh=5, kw=3, stride=(2, 1), dilation=(1, 2), padding="VALID", zp_in=-3,
                   activation="RELU6", filter_scales=tuple(rng.uniform(1e-4, 3e-3, 48)))][case]
    data = conv_model(rng, batch=1, **params)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        calls = []
        _forcer(calls)(mp)
        it = Interpreter.from_bytes(data)
        assert it.kernels[0].compiled_rows is not None
        x = boundary_inputs(rng, it, params.get("zp_in", 0), case >= 1)
        assert ds.check_model(data, [x], label="CONV_2D compiled rows").compared
        assert calls
