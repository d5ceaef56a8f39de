"""CONV_2D's compiled first-layer convolution (ops/compiled/first_conv.py: u = x + 128 per image in a
padded buffer, byte dot products over filter rows, 16 pixels of a row or 4 / 2 pixels' channels per
vector, the requantization in registers) equals the reference kernel byte for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``FIRST_CONV_FORCE``) on
random models: input depths 1-4 (and a few wider: the kernel is general), output channels over
every register block (row blocks of 4 / 8 / 16 channels for rows of >= 16 output pixels, 4 and 2
pixels per vector, 16 / 32 / 64-lane columns, channels padded or not), kernels 1x1..5x5, 10x4 and
3x7, strides 1-3, dilations, SAME / VALID, per-channel scales with extreme multipliers and left
shifts, zero points over the whole int8 range, weights ±127 / -128 everywhere, biases near ±2^31
(the int32 accumulator wraps as C's does), activations, model batches. A spy checks that the
kernel ran. Skipped without numba, and off hosts without AVX512-VNNI and AVX512-VBMI.
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
    assert_forced_matches_tflm,
    draw_conv_numerics,
)
from compiled_support import conv_model as shared_conv_model  # noqa: E402

from interp import Interpreter  # noqa: E402
from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import first_conv, lanes_ir  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

if not first_conv.available():
    pytest.skip("the host has no AVX512-VNNI / AVX512-VBMI (or numba does not target it)", allow_module_level=True)

seeds = st.integers(0, 2 ** 32 - 1)


def _spied(mp, calls: list):
    original = first_conv.conv

    def spy(*args):
        calls.append(args[0].block)
        return original(*args)

    mp.setattr(first_conv, "conv", spy)


def _forcer(calls: list, on=True):
    def force(mp):
        mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
        mp.setattr(Conv2D, "FIRST_CONV_FORCE", on)
        mp.setattr(Conv2D, "POINTWISE_FORCE", False)  # this kernel, not pointwise_small, on 1x1 models
        _spied(mp, calls)
    return force


def assert_first_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> tuple:
    """The forced path's bytes equal the reference's; returns (kernel, the blocks that ran)."""
    calls = []
    kernel = assert_forced_equals_reference(data, rng, zero_point, extremes, _forcer(calls))
    return kernel, calls


def conv_model(rng, **kw) -> bytes:
    """compiled_support.conv_model with this file's defaults (int8, "c": 3, "oc": 8)."""
    return shared_conv_model(rng, **{"c": 3, "oc": 8, **kw})


@st.composite
def conv_models(draw):
    rng = np.random.default_rng(draw(seeds))
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (3, 3), (5, 5), (10, 4), (3, 7), (2, 1)])
                  | st.tuples(st.integers(1, 5), st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 2, 2, 3])), draw(st.sampled_from([1, 2, 2, 3])))
    dilation = (draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12) | st.integers(16, 50))  # rows of >= 16 output pixels take the row blocks
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    c = draw(st.integers(1, 4) | st.sampled_from([5, 8, 11, 16, 24, 32, 64]))
    oc = draw(st.sampled_from([4, 8, 16, 8, 16]) | st.integers(1, 20) | st.sampled_from([32, 48, 64, 96]))
    numerics = draw_conv_numerics(draw, oc)
    data = conv_model(rng, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=stride, dilation=dilation, padding=padding,
                      **numerics)
    return data, rng, numerics["zp_in"], draw(st.booleans())


@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_first_conv_equals_reference(data):
    model, rng, zp_in, extremes = data.draw(conv_models())
    kernel, calls = assert_first_equals_reference(model, rng, zp_in, extremes)
    assert kernel.compiled_first is not None  # every int8 layer with int8 zero points is planned
    assert calls and set(calls) == {kernel.compiled_first.block}


def test_real_first_layers_equal_reference():
    """The layers the path exists for, smaller: vww's 3x3/2 3->8, ResNet's 3x3 3->16, MobileNetV2's
    3x3/2 3->32, kws's 10x4/2 1->64 with SAME padding (4, 1); each register block once."""
    rng = np.random.default_rng(3)
    seen = set()
    for h, w, c, oc, kh, kw, stride in [(40, 40, 3, 8, 3, 3, 2), (20, 33, 3, 16, 3, 3, 1), (33, 34, 3, 32, 3, 3, 2),
                                        (49, 10, 1, 64, 10, 4, 2), (20, 40, 2, 4, 3, 3, 1), (9, 9, 3, 8, 3, 3, 1),
                                        (9, 9, 1, 3, 3, 3, 1), (9, 9, 4, 16, 3, 3, 2)]:
        data = conv_model(rng, batch=2, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=(stride, stride), zp_in=-7,
                          zp_out=4, filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)), activation="RELU6")
        kernel, calls = assert_first_equals_reference(data, rng, -7, False)
        assert calls == [kernel.compiled_first.block] * 2  # run_batch, then run
        seen.add(kernel.compiled_first.block)
    assert seen == set(range(len(first_conv.BLOCKS) + len(first_conv.ROW_CHANNELS)))


def _plain_first_conv(x, weights, bias, multiplier, shift, input_offset, output_offset, act_min, act_max, kernel_hw,
                      stride, padding, out_hw):
    """TFLM's ConvPerChannel in int64 numpy and ops.fixedpoint (no model, no TFLM)."""
    (kh, kw), (sh, sw), (pt, pl), (oh, ow) = kernel_hw, stride, padding, out_hw
    n, h, w, c = x.shape
    oc = weights.shape[1]
    padded = np.full((n, h + pt + kh + oh * sh, w + pl + kw + ow * sw, c), -input_offset, np.int64)
    padded[:, pt:pt + h, pl:pl + w] = x
    acc = np.zeros((n, oh, ow, oc), np.int64)
    w4 = weights.reshape(kh, kw, c, oc)
    for ky in range(kh):
        for kx in range(kw):
            patch = padded[:, ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw] + input_offset
            acc += np.einsum("nhwc,co->nhwo", patch, w4[ky, kx])
    acc = ((acc + bias + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32, wrapping as C's
    scaled = fp.multiply_by_quantized_multiplier(acc.astype(np.int32), multiplier, shift).astype(np.int64)
    scaled = ((scaled + output_offset + (1 << 31)) % (1 << 32)) - (1 << 31)
    return np.clip(scaled, act_min, act_max).astype(np.int8)


def test_blocks_match_plain_integer_arithmetic():
    """Every block kind and requantization mode against int64 arithmetic and ops.fixedpoint,
    without a model: extreme multipliers, left and right shifts, wrapping biases, extreme zero points
    and weights; activation ranges and offsets with and without the clamp absorbing the negative
    rounding, and the full int8 range (compared as constants)."""
    rng = np.random.default_rng(11)
    cases = [(3, 8, (3, 3), (2, 2), 40), (1, 16, (5, 5), (1, 1), 20), (3, 4, (3, 3), (1, 2), 50),
             (2, 3, (3, 3), (1, 1), 9), (1, 7, (10, 4), (2, 2), 10), (3, 16, (2, 2), (1, 1), 8),
             (1, 32, (3, 1), (2, 1), 7), (2, 64, (3, 3), (1, 1), 6), (4, 20, (1, 3), (1, 1), 9)]
    # (output_offset, act_min, act_max): mode 2 (full range), 3 (and the clamp absorbs), 1, 0, 0
    ranges = [(-5, -128, 127), (-128, -128, 127), (3, 3, 127), (-5, -100, 100), (7, -128, 6)]
    blocks, modes = set(), set()
    for c, oc, (kh, kw), stride, w in cases:
        h, pt, pl = 11, 1, 2
        oh, ow = (h + pt - kh) // stride[0] + 1, (w + pl - kw) // stride[1] + 1
        weights = rng.choice(np.array([-128, 127, -127, 0, 5]), (kh * kw * c, oc))
        bias = rng.choice(np.array([-(1 << 31), (1 << 31) - 1, 0, 12345, -98765]), oc)
        multiplier = rng.choice(np.array([(1 << 30), (1 << 31) - 1, 1 << 30 | 12345]), oc)
        shift = rng.choice(np.array([-31, -9, -1, 0, 1, 4]), oc)
        for zp in (-128, 127, 3):
            for offset, low, high in ranges:
                x = rng.choice(np.array([-128, 127, zp, 0]), (2, h, w, c)).astype(np.int8)
                p = first_conv.plan((h, w, c), (oh, ow), (kh, kw), stride, (1, 1), (pt, pl), -zp, offset, low, high,
                                    weights, bias, multiplier, shift)
                got = first_conv.conv(p, x, np.int8)
                want = _plain_first_conv(x, weights, bias, multiplier, shift, -zp, offset, low, high, (kh, kw),
                                         stride, (pt, pl), (oh, ow))
                assert np.array_equal(got, want), (c, oc, kh, kw, stride, zp, offset, low, high, p.block, p.mode)
                blocks.add(p.block)
                modes.add(p.mode)
    assert blocks == set(range(len(first_conv.BLOCKS) + len(first_conv.ROW_CHANNELS))) and modes == {0, 1, 2, 3}


def test_the_clamp_absorbs_the_negative_rounding():
    """MODE_SKIP_NEGATIVE leaves out the negative rounding where activation_min >= output_offset:
    every int8 input over 16 channels whose biases put the accumulators across the rounding steps
    of the negative range (and around 0) gives ops.fixedpoint's bytes, for shifts -1..-31 and
    offsets up to the limit of the proof (|offset| < 2^29)."""
    rng = np.random.default_rng(12)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256, 1)
    weights = np.ones((1, 16), np.int64)
    for shift in (-1, -2, -5, -9, -20, -31):
        reach = 1 << min(-shift + 4, 31)
        for offset, low in ((-128, -128), (0, 0), (5, 20), (-(1 << 29) + 1, -128), (100, 120)):
            bias = np.clip(rng.integers(-reach, reach // 8 + 2, 16), -(1 << 31), (1 << 31) - 1)
            multiplier = np.full(16, int(rng.integers(1 << 30, 1 << 31)))
            p = first_conv.plan((1, 256, 1), (1, 256), (1, 1), (1, 1), (1, 1), (0, 0), 0, offset, low, 127, weights,
                                bias, multiplier, np.full(16, shift))
            assert p.mode & lanes_ir.MODE_SKIP_NEGATIVE and p.block >= len(first_conv.BLOCKS)
            got = first_conv.conv(p, x, np.int8)
            want = _plain_first_conv(x, weights, bias, multiplier, np.full(16, shift), 0, offset, low, 127, (1, 1),
                                     (1, 1), (0, 0), (1, 256))
            assert np.array_equal(got, want), (shift, offset, low)


def test_plan_refuses_what_it_cannot_compute():
    weights = np.ones((27, 8), np.int64)
    args = ((9, 9, 3), (4, 4), (3, 3), (2, 2), (1, 1), (0, 0))
    requant = (0, -128, 127, weights, np.zeros(8, np.int64), np.full(8, 1 << 30), np.zeros(8, np.int64))
    assert first_conv.plan(*args, 5, *requant) is not None
    assert first_conv.plan(*args, 129, *requant) is None  # a zero point of -129: u would not be a byte
    assert first_conv.plan(*args, -128, *requant) is None  # zero point 128
    assert first_conv.plan(*args, 0, 0, -128, 127, weights * 200, *requant[4:]) is None  # weights beyond int8
    assert first_conv.plan(*args, 0, 0, -128, 127, weights, np.zeros(8), np.full(8, -1), np.zeros(8)) is None


def test_default_takes_narrow_int8_inputs_only():
    """By default the path is planned for int8 layers of at most FIRST_CONV_MAX_IN_DEPTH input
    channels (first layers, and ResNet-style 3x3 layers up to 64), not for wider ones, not for 16x8,
    not for the unpadded 1x1 layers pointwise_small takes, and not while a test forces another conv
    path."""
    rng = np.random.default_rng(4)
    cases = [(dict(c=3, oc=8), True), (dict(c=1, oc=64, kh=10, kw=4, h=12), True), (dict(c=64, oc=64), True),
             (dict(c=80, oc=16), False), (dict(c=3, oc=8, kind="INT16", bias_kind="INT64"), False),
             (dict(c=8, oc=16, kh=1, kw=1, padding="VALID"), False)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "PLAN_MIN_OUTPUTS", 0)  # these small layers stand for large ones
        for params, planned in cases:
            kernel = Interpreter.from_bytes(conv_model(rng, **params)).kernels[0]
            assert (kernel.compiled_first is not None and kernel.compiled_pointwise is None) == planned, params
    # A layer of fewer outputs per sample than PLAN_MIN_OUTPUTS (a fuzzing example's) is not planned.
    assert Interpreter.from_bytes(conv_model(rng, c=3, oc=8)).kernels[0].compiled_first is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "U8_FORCE", True)
        assert Interpreter.from_bytes(conv_model(rng)).kernels[0].compiled_first is None
        _forcer([], on=False)(mp)
        assert Interpreter.from_bytes(conv_model(rng)).kernels[0].compiled_first is None


@pytest.mark.parametrize("case", range(4))
def test_first_conv_equals_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(200 + case)
    params = [dict(h=33, w=34, c=3, oc=8, stride=(2, 2), zp_in=-128, zp_out=127),
              dict(h=25, w=10, c=1, oc=64, kh=10, kw=4, stride=(2, 2), padding="SAME", zp_in=127),
              dict(h=20, w=20, c=3, oc=16, filter_scales=tuple(rng.uniform(1e-4, 3e-2, 16)), bias_wrap=True,
                   bias_bits=31, extreme_weights=True),
              dict(h=9, w=7, c=2, oc=5, kh=2, kw=3, dilation=(2, 2), padding="VALID", activation="RELU")][case]
    calls = []
    assert_forced_matches_tflm(conv_model(rng, batch=1, **params), rng, params.get("zp_in", 0), case == 2,
                               _forcer(calls), "compiled_first", "CONV_2D compiled first layer")
    assert calls
