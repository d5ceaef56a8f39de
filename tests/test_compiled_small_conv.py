"""CONV_2D's compiled small-layer convolution (ops/compiled/small_conv.py: filter rows as runs of
int16 pairs, 2 or 4 pixels per vector for <= 8 output channels) equals the reference kernel byte
for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``SMALL_CONV_FORCE``)
on random models: input depths 1-15 (and a few wider), output channels 1-16 (every register block:
4 pixels, 2 pixels, 16 lanes, and a few 17-64), kernels 1x1..5x5 and 10x4, strides 1-2,
dilations, SAME / VALID, per-channel scales, zero points at the ends of the range, the largest
|w| everywhere, biases near ±2^31, model batches, int8 and 16x8; accumulator bounds just under
2^31 take the path and just over are refused (and still equal). Skipped without numba.
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
    bound_model,
    draw_conv_numerics,
)
from compiled_support import conv_model as shared_conv_model  # noqa: E402,F401

from interp import Interpreter  # noqa: E402
from ops.compiled import small_conv  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

seeds = st.integers(0, 2 ** 32 - 1)


def _forced(mp, on=True):
    mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(Conv2D, "SMALL_CONV_FORCE", on)
    mp.setattr(Conv2D, "U8_FORCE", False)  # small_conv's own path, not gemm_u8's, on int8 models
    mp.setattr(Conv2D, "POINTWISE_FORCE", False)  # nor pointwise_small's on int8 1x1 models


def assert_small_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> Conv2D:
    return assert_forced_equals_reference(data, rng, zero_point, extremes, _forced)


def conv_model(rng, **kw) -> bytes:
    """compiled_support.conv_model with this file's defaults ("c": 3, "oc": 8)."""
    return shared_conv_model(rng, **{"c": 3, "oc": 8, **kw})


@st.composite
def conv_models(draw, kind):
    rng = np.random.default_rng(draw(seeds))
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (5, 5), (10, 4), (1, 3), (3, 1)])
                  | st.tuples(st.integers(1, 5), st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    dilation = (draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    c = draw(st.integers(1, 15) | st.sampled_from([16, 24]))
    oc = draw(st.integers(1, 16) | st.sampled_from([17, 24, 32, 48, 64]))
    numerics = draw_conv_numerics(draw, oc, "INT16" if kind == "INT16" else "INT8")
    data = conv_model(rng, kind=kind, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=stride, dilation=dilation,
                      padding=padding, **numerics)
    return data, rng, numerics["zp_in"], draw(st.booleans())


@pytest.mark.parametrize("kind", ["INT8", "INT16"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_small_conv_equals_reference(kind, data):
    model, rng, zp_in, extremes = data.draw(conv_models(kind))
    kernel = assert_small_equals_reference(model, rng, zp_in, extremes)
    if kind == "INT8":  # (16x8 filters may be refused by the 2^31 bound: numpy runs then, equally exact)
        assert kernel.compiled_small is not None


def test_real_first_layers_equal_reference():
    """The layers the path exists for: vww's 3x3/2 3->8, ResNet's 3x3 3->16, MobileNetV2's
    3x3/2 3->32, kws's 10x4/2 1->64 with SAME padding (4, 1), pointwise 16->32, 3x3 16->16."""
    rng = np.random.default_rng(3)
    for h, w, c, oc, kh, kw, stride in [(20, 20, 3, 8, 3, 3, 2), (12, 12, 3, 16, 3, 3, 1), (17, 17, 3, 32, 3, 3, 2),
                                        (49, 10, 1, 64, 10, 4, 2), (9, 9, 16, 32, 1, 1, 1),
                                        (10, 10, 16, 16, 3, 3, 1), (9, 9, 2, 4, 3, 3, 1)]:
        data = conv_model(rng, batch=2, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=(stride, stride), zp_in=-7,
                          zp_out=4, filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)), activation="RELU6")
        assert assert_small_equals_reference(data, rng, -7, False).compiled_small is not None


def test_default_thresholds_choose_the_measured_winners():
    """By default (not forced) the path is planned for first layers and narrow layers, not for a
    1x1 over 8 channels (K = 8: the float32 GEMM measured faster) nor a wide 3x3 64->64."""
    rng = np.random.default_rng(4)
    cases = [(dict(c=3, oc=8, kh=3, kw=3), True), (dict(c=1, oc=64, kh=10, kw=4, h=12), True),
             (dict(c=16, oc=32, kh=1, kw=1), True), (dict(c=8, oc=16, kh=1, kw=1), False),
             (dict(c=64, oc=64, kh=3, kw=3), False)]
    for params, planned in cases:
        it = Interpreter.from_bytes(conv_model(rng, **params))
        assert (it.kernels[0].compiled_small is not None) == planned, params


def test_accumulator_bound_near_2_31():
    """16x8 with |w| = 128 everywhere: K = 511 gives a bound of 511·2^22 < 2^31 (the compiled
    path, whose int32 sums reach -2^31 + 2^22 on inputs of -32768), K = 512 gives exactly 2^31
    (refused: the numpy path runs); both equal the reference on the extreme inputs."""
    rng = np.random.default_rng(5)
    for depth, taken in [(511, True), (512, False)]:
        kernel = assert_small_equals_reference(bound_model(depth, 8), rng, 0, True)
        assert (kernel.compiled_small is not None) == taken
        assert kernel.compiled_small is None or kernel.compiled_small.weights.bound == depth * 128 * 32768


def test_runs_and_shared_vectors_match_the_plain_product():
    """Odd runs (the pair past a run reads the next value against a zero weight), dilated runs,
    every block kind, against plain int64 arithmetic without any model."""
    rng = np.random.default_rng(11)
    for c, oc, k, dilation in [(3, 8, 3, 1), (1, 3, 5, 1), (5, 16, 2, 2), (7, 20, 3, 1), (2, 64, 3, 2), (3, 1, 1, 1)]:
        weights = rng.integers(-128, 128, (k * k * c, oc))
        x = rng.integers(-128, 128, (2, 9, 8, c)).astype(np.int8)
        reach = (k - 1) * dilation + 1
        out_hw = (9 - reach + 1, 8 - reach + 1)
        p = small_conv.plan((9, 8, c), out_hw, (k, k), (1, 1), (dilation, dilation), (0, 0), 0, weights, 128)
        flat = np.empty(small_conv.buffer_shape(p, 2), np.int16)
        acc = np.empty((2 * out_hw[0] * out_hw[1], p.weights.padded_channels), np.int32)
        got = small_conv.conv(p, x, flat, acc)
        windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (reach, reach), axis=(1, 2))
        windows = windows[..., ::dilation, ::dilation]
        want = np.einsum("nhwcij,ijco->nhwo", windows, weights.reshape(k, k, c, oc)).reshape(-1, oc)
        assert np.array_equal(got, want), (c, oc, k, dilation)


def test_forced_off_never_plans():
    rng = np.random.default_rng(6)
    with pytest.MonkeyPatch.context() as mp:
        _forced(mp, on=False)
        assert Interpreter.from_bytes(conv_model(rng)).kernels[0].compiled_small is None


@pytest.mark.parametrize("case", range(4))
def test_small_conv_equals_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(200 + case)
    params = [dict(h=11, w=11, c=3, oc=8, stride=(2, 2), zp_in=-128, zp_out=127),
              dict(h=15, w=6, c=1, oc=12, kh=10, kw=4, stride=(2, 2), padding="SAME", zp_in=127),
              dict(h=7, w=8, c=5, oc=3, kh=2, kw=3, dilation=(2, 2), padding="VALID",
                   filter_scales=tuple(rng.uniform(1e-4, 3e-2, 3)), bias_wrap=True, bias_bits=31,
                   extreme_weights=True),
              dict(kind="INT16", h=6, w=6, c=2, oc=16, bias_kind="INT64", bias_bits=30)][case]
    assert_forced_matches_tflm(conv_model(rng, batch=1, **params), rng, params.get("zp_in", 0), case == 2, _forced,
                               "compiled_small", "CONV_2D compiled small")
