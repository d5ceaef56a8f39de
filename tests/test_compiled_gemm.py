"""The compiled integer direct convolution of CONV_2D (ops/compiled/gemm.py) equals the reference
kernel byte for byte, and TFLM itself.

The compiled path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``,
``COMPILED_MIN_DEPTH = 0``, any channel padding) on random models over shapes, strides,
dilations, both paddings, per-channel scales from tiny to huge, zero points at the ends of the
range, int4 and 16x8 filters, the largest |w| everywhere, biases near ±2^31 and model batches,
and compared with ``kernels="reference"``; accumulator bounds just under 2^31 take the path and
just over are refused (and still equal). A few cases run against TFLM. Skipped without numba.
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
    bound_model,
    boundary_inputs,
    draw_conv_numerics,
)
from compiled_support import conv_model as shared_conv_model  # noqa: E402,F401

from interp import Interpreter  # noqa: E402
from ops.compiled import gemm as compiled_gemm  # noqa: E402
from ops.compiled import use_compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

seeds = st.integers(0, 2 ** 32 - 1)


def _forced(mp):
    mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(Conv2D, "COMPILED_MIN_DEPTH", 0)
    mp.setattr(Conv2D, "COMPILED_MAX_PADDING", 100.0)
    mp.setattr(Conv2D, "SMALL_CONV_FORCE", False)  # gemm.py's path, not small_conv's, on every shape
    mp.setattr(Conv2D, "U8_FORCE", False)  # nor gemm_u8's on int8 models
    mp.setattr(Conv2D, "POINTWISE_FORCE", False)  # nor pointwise_small's on int8 1x1 models



def assert_compiled_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> Conv2D:
    return assert_forced_equals_reference(data, rng, zero_point, extremes, _forced)


def conv_model(rng, **kw) -> bytes:
    """compiled_support.conv_model with this file's defaults ("c": 4, "oc": 16)."""
    return shared_conv_model(rng, **{"c": 4, "oc": 16, **kw})


@st.composite
def conv_models(draw, kind):
    rng = np.random.default_rng(draw(seeds))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    c = draw(st.sampled_from([1, 2, 3, 5, 8, 16, 33]))
    oc = draw(st.sampled_from([1, 3, 8, 16, 17, 32, 40, 64, 80]))
    numerics = draw_conv_numerics(draw, oc, "INT16" if kind == "INT16" else "INT8")
    data = conv_model(rng, kind=kind, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=stride, dilation=dilation,
                      padding=padding, **numerics)
    return data, rng, numerics["zp_in"], draw(st.booleans())


@pytest.mark.parametrize("kind", ["INT8", "INT4", "INT16"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_conv_equals_reference(kind, data):
    model, rng, zp_in, extremes = data.draw(conv_models(kind))
    kernel = assert_compiled_equals_reference(model, rng, zp_in, extremes)
    if kind != "INT16":  # (16x8 filters may be refused by the 2^31 bound: numpy runs then, equally exact)
        assert kernel.compiled_gemm is not None


def test_real_layer_shapes_equal_reference():
    """ResNet / MobileNet-like layers: 3x3 over 16-64 channels, 1x1 pointwise up to 160 channels,
    channel counts that use every register block (16, 32, 48, 64, 96)."""
    rng = np.random.default_rng(3)
    for h, c, oc, k, stride in [(16, 16, 16, 3, 1), (8, 32, 64, 3, 2), (8, 64, 64, 3, 1), (7, 96, 48, 1, 1),
                                (5, 160, 96, 1, 1), (9, 3, 32, 3, 2)]:
        data = conv_model(rng, batch=2, h=h, w=h, c=c, oc=oc, kh=k, kw=k, stride=(stride, stride), zp_in=-7,
                          zp_out=4, filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)), activation="RELU6")
        assert assert_compiled_equals_reference(data, rng, -7, False).compiled_gemm is not None


def test_accumulator_bound_near_2_31():
    """16x8 with |w| = 128 everywhere: K = 511 gives a bound of 511·2^22 < 2^31 (the compiled
    path, whose int32 sums reach -2^31 + 2^22 on inputs of -32768), K = 512 gives exactly 2^31
    (refused: the numpy path runs); both equal the reference on the extreme inputs."""
    rng = np.random.default_rng(5)
    for depth, taken in [(511, True), (512, False)]:
        kernel = assert_compiled_equals_reference(bound_model(depth, 16), rng, 0, True)
        assert (kernel.compiled_gemm is not None) == taken
        assert kernel.compiled_gemm is None or kernel.compiled_gemm[0].bound == depth * 128 * 32768


def test_weights_plan_refuses_what_int32_cannot_hold():
    w = np.full((4, 3), 127, np.int64)
    assert compiled_gemm.weights_plan(w, 4, 128).bound == 4 * 127 * 128
    assert compiled_gemm.weights_plan(np.full((1 << 17, 1), 127, np.int64), 1 << 17, 128).bound < (1 << 31)
    assert compiled_gemm.weights_plan(np.full((1 << 17, 1), -128, np.int64), 1 << 17, 128) is None  # = 2^31
    assert compiled_gemm.weights_plan(np.full((2, 2), 1 << 15, np.int64), 2, 128) is None  # beyond int16
    assert compiled_gemm.weights_plan(w, 3, 128) is None  # 4 is not a whole number of taps of 3 channels
    assert compiled_gemm.conv_plan((4, 4, 2), (4, 4), (3, 3), (0, 1), (1, 1), (1, 1), 0) is None
    assert compiled_gemm.conv_plan((4, 4, 2), (4, 4), (3, 3), (1, 1), (1, 1), (1, 1), 1 << 15) is None


def test_packing_matches_the_plain_product():
    """The packed layout (taps, Cp/2, OCp, 2) with odd channels and padded output channels gives
    Σ x·w for a direct check without any model (plain int64 arithmetic)."""
    rng = np.random.default_rng(11)
    for c, oc, k in [(3, 5, 3), (1, 16, 1), (7, 40, 2), (64, 64, 3)]:
        weights = rng.integers(-128, 128, (k * k * c, oc))
        x = rng.integers(-128, 128, (2, 6, 7, c)).astype(np.int8)
        w = compiled_gemm.weights_plan(weights, c, 128)
        g = compiled_gemm.conv_plan((6, 7, c), (6 - k + 1, 7 - k + 1), (k, k), (1, 1), (1, 1), (0, 0), 0)
        padded = np.empty((2,) + g.padded_hwc, np.int16)
        acc = np.empty((2 * g.out_hw[0] * g.out_hw[1], w.padded_channels), np.int32)
        got = compiled_gemm.conv(w, g, x, padded, acc)
        windows = np.lib.stride_tricks.sliding_window_view(x.astype(np.int64), (k, k), axis=(1, 2))
        want = np.einsum("nhwcij,ijco->nhwo", windows, weights.reshape(k, k, c, oc)).reshape(-1, oc)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("case", range(4))
def test_compiled_conv_equals_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(100 + case)
    params = [dict(h=9, w=9, c=16, oc=32, zp_in=-128, zp_out=127),
              dict(h=8, w=7, c=5, oc=17, kh=2, kw=3, stride=(2, 1), dilation=(1, 2), padding="VALID", zp_in=127),
              dict(h=6, w=6, c=33, oc=64, filter_scales=tuple(rng.uniform(1e-4, 3e-2, 64)), bias_wrap=True,
                   bias_bits=31, extreme_weights=True),
              dict(kind="INT16", h=5, w=5, c=8, oc=16, bias_kind="INT64", bias_bits=30)][case]
    data = conv_model(rng, batch=1, **params)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        _forced(mp)
        it = Interpreter.from_bytes(data)
        assert it.kernels[0].compiled_gemm is not None
        x = boundary_inputs(rng, it, params.get("zp_in", 0), case == 2)
        assert ds.check_model(data, [x], label="CONV_2D compiled").compared
