"""CONV_2D's compiled int8 x int8 convolution (ops/compiled/gemm_u8.py: u = x + 128 bytes times
int8 weights with vpdpbusd, accumulators starting at -128·Σw, exact modulo 2^32) equals the
reference kernel byte for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``U8_FORCE``) on random
int8 models: input zero points over all of -128..127 (so the padded byte zp + 128 covers 0..255),
weights of -128 / 127 everywhere, per-channel scales, kernels 1x1..5x5 and 10x4, strides,
dilations, SAME / VALID borders, every register block (16, 32, 64-channel columns), biases near
±2^31; accumulator bounds just under 2^31 are taken and at 2^31 refused; zero points outside int8
(a malformed model) and 16x8 keep the other paths. Skipped without numba, or on hosts without
AVX512-VNNI for the tests that need the instruction.
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
from compiled_support import conv_model as shared_conv_model  # noqa: E402,F401

from interp import Interpreter, ModelError  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from interp.errors import UnsupportedOpError  # noqa: E402
from ops.compiled import gemm_u8, use_compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

seeds = st.integers(0, 2 ** 32 - 1)
needs_vnni = pytest.mark.skipif(not gemm_u8.available(), reason="the host has no AVX512-VNNI (or numba targets "
                                                                  "another CPU): the path is never taken")


def _forced(mp, on=True):
    mp.setattr(Conv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(Conv2D, "U8_FORCE", on)
    mp.setattr(Conv2D, "POINTWISE_FORCE", False)  # gemm_u8's own path, not pointwise_small's, on 1x1 models


def assert_u8_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> Conv2D:
    return assert_forced_equals_reference(data, rng, zero_point, extremes, _forced)


def conv_model(rng, **kw) -> bytes:
    """compiled_support.conv_model with this file's defaults ("c": 16, "oc": 16)."""
    if kw.get("extreme_weights") is True:  # here the extremes include -127 (|w| = 127 either sign)
        kw["extreme_weights"] = (-128, 127, -127)
    return shared_conv_model(rng, **{"c": 16, "oc": 16, **kw})


@st.composite
def conv_models(draw):
    rng = np.random.default_rng(draw(seeds))
    kh, kw = draw(st.sampled_from([(1, 1), (2, 2), (3, 3), (5, 5), (10, 4), (1, 3), (3, 1)])
                  | st.tuples(st.integers(1, 5), st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2])))
    dilation = (draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2, 3])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    c = draw(st.integers(1, 9) | st.sampled_from([16, 24, 32, 33, 64]))
    oc = draw(st.integers(1, 20) | st.sampled_from([24, 32, 48, 64, 80, 128]))
    numerics = draw_conv_numerics(draw, oc)
    data = conv_model(rng, h=h, w=w, c=c, oc=oc, kh=kh, kw=kw, stride=stride, dilation=dilation, padding=padding,
                      **numerics)
    return data, rng, numerics["zp_in"], draw(st.booleans())


@needs_vnni
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_u8_conv_equals_reference(data):
    model, rng, zp_in, extremes = data.draw(conv_models())
    kernel = assert_u8_equals_reference(model, rng, zp_in, extremes)
    assert kernel.compiled_u8 is not None  # int8 filters over <= 64·25 values: far below the bound


@needs_vnni
def test_every_zero_point_and_block():
    """Each input zero point -128..127 (every padded byte 0..255) over a SAME 3x3 with borders,
    cycling through 16-, 32- and 64-channel columns and extreme weights."""
    rng = np.random.default_rng(7)
    for zp in range(-128, 128, 5):
        oc = (16, 40, 64, 20)[zp % 4]
        data = conv_model(rng, h=5, w=4, c=int(rng.integers(1, 20)), oc=oc, zp_in=zp,
                          zp_out=int(rng.integers(-128, 128)),
                          extreme_weights=bool(zp % 2), filter_scales=tuple(rng.uniform(1e-3, 2e-2, oc)))
        assert assert_u8_equals_reference(data, rng, zp, bool(zp % 3)).compiled_u8 is not None


def _bound_model(depth_channels, zp_in=0):
    """A 1x1 convolution over one pixel whose accumulator bound is Σ|w|·128 = depth_channels·2^14."""
    b = ModelBuilder()
    x = b.input("x", [1, 1, 1, depth_channels], "INT8", scale=1e-2, zero_point=zp_in)
    weights = np.full((16, 1, 1, depth_channels), -128, np.int8)
    wt = b.constant("w", weights, "INT8", scale=1e-7, zero_point=0)
    y = b.tensor("y", [1, 1, 1, 16], "INT8", scale=1.0, zero_point=0)
    b.op("CONV_2D", [x, wt], [y], padding="VALID", stride_h=1, stride_w=1)
    b.output(y)
    return b.build()


@needs_vnni
def test_accumulator_bound_near_2_31():
    """|w| = 128 everywhere over K channels: K = 2^17 - 1 gives a bound of 2^31 - 2^14 (taken: on
    inputs of -128 the sum is 2^31 - 2^14 itself, and Σ w·u alone passes 2^31, wrapping), K = 2^17
    gives 2^31 (refused: another path runs); both equal the reference on the extreme inputs."""
    rng = np.random.default_rng(5)
    for depth, taken in [((1 << 17) - 1, True), (1 << 17, False)]:
        kernel = assert_u8_equals_reference(_bound_model(depth), rng, 0, True)
        assert (kernel.compiled_u8 is not None) == taken
        assert kernel.compiled_u8 is None or kernel.compiled_u8.bound == depth * 128 * 128


def test_plan_refuses_what_it_cannot_hold():
    """Zero points outside int8 (the padded byte would not fit), weights outside int8, the 2^31
    bound: None, so the int16 kernels or numpy run."""
    w = np.ones((9 * 4, 16), np.int64)
    geometry = ((5, 5, 4), (5, 5), (3, 3), (1, 1), (1, 1), (1, 1))
    assert gemm_u8.plan(*geometry, -128, w, 128) is not None
    assert gemm_u8.plan(*geometry, 127, w, 128) is not None
    assert gemm_u8.plan(*geometry, 128, w, 128) is None
    assert gemm_u8.plan(*geometry, -129, w, 129) is None
    assert gemm_u8.plan(*geometry, 0, w * 128, 128) is None
    assert gemm_u8.plan(*geometry, 0, w * -129, 128) is None
    full = np.full((36, 16), 127)
    assert gemm_u8.plan(*geometry, 0, full, (1 << 31) // (36 * 127)) is not None  # bound just under 2^31
    assert gemm_u8.plan(*geometry, 0, full, (1 << 31) // (36 * 127) + 1) is None  # just over


def test_int8_zero_point_outside_the_type_keeps_another_path():
    """A malformed int8 model with an input zero point of 200 (TFLM's int32 offset arithmetic takes
    it): no u8 plan, and the output still equals the reference."""
    rng = np.random.default_rng(8)
    data = conv_model(rng, h=4, w=4, c=8, oc=16, zp_in=200)
    try:
        Interpreter.from_bytes(data, kernels="reference")
    except (ModelError, UnsupportedOpError, ValueError, OverflowError) as e:
        pytest.skip(f"the builder or the reference refuses the zero point: {e}")
    kernel = assert_u8_equals_reference(data, rng, 200, True)
    assert kernel.compiled_u8 is None


def test_16x8_and_forced_off_never_plan():
    rng = np.random.default_rng(6)
    with pytest.MonkeyPatch.context() as mp:
        _forced(mp, on=True)
        data = conv_model(rng, kind="INT16", bias_kind="INT64")
        assert Interpreter.from_bytes(data).kernels[0].compiled_u8 is None
        _forced(mp, on=False)
        assert Interpreter.from_bytes(conv_model(rng)).kernels[0].compiled_u8 is None


def test_default_thresholds_choose_the_measured_winners():
    """By default the path is planned for K >= 16 with more than 8 output channels, not for vww's
    3x3/2 3->8 (small_conv's shared vectors measured faster) nor a 1x1 over 8 channels."""
    rng = np.random.default_rng(4)
    cases = [(dict(c=3, oc=8), False), (dict(c=8, oc=16, kh=1, kw=1), False), (dict(c=3, oc=16), True),
             (dict(c=16, oc=32, kh=1, kw=1), True), (dict(c=64, oc=64), True)]
    for params, planned in cases:
        it = Interpreter.from_bytes(conv_model(rng, **params))
        assert (it.kernels[0].compiled_u8 is not None) == planned, params


def test_without_vnni_another_path_runs(monkeypatch):
    """On a host without the instruction (simulated) the plan is kept but eval takes the int16
    kernels: still the reference's bytes."""
    monkeypatch.setattr(gemm_u8, "_available", False)
    rng = np.random.default_rng(9)
    data = conv_model(rng, h=7, w=7, c=16, oc=32, zp_in=-5)
    assert assert_u8_equals_reference(data, rng, -5, True).compiled_u8 is not None


@needs_vnni
def test_runs_match_the_plain_product():
    """Runs of every length mod 4 (the quad past a run reads the next bytes against zero weights),
    dilated runs, every block, against plain int64 arithmetic without any model."""
    rng = np.random.default_rng(11)
    for c, oc, k, dilation, zp in [(3, 16, 3, 1, -128), (1, 32, 5, 1, 127), (5, 16, 2, 2, 0), (7, 20, 3, 1, 3),
                                   (2, 64, 3, 2, -1), (4, 48, 1, 1, 9), (33, 128, 3, 3, -77)]:
        weights = rng.choice(np.array([-128, 127, 0, 1, -1]), (k * k * c, oc))
        x = rng.integers(-128, 128, (2, 9, 10, c)).astype(np.int8)
        reach = (k - 1) * dilation + 1
        pad = reach // 2
        xp = np.pad(x.astype(np.int64), ((0, 0), (pad, pad), (pad, pad), (0, 0)), constant_values=zp)
        out_hw = (xp.shape[1] - reach + 1, xp.shape[2] - reach + 1)
        p = gemm_u8.plan((9, 10, c), out_hw, (k, k), (1, 1), (dilation, dilation), (pad, pad), zp, weights, 128)
        flat = np.empty(gemm_u8.buffer_shape(p, 2), np.uint8)
        acc = np.empty((2 * out_hw[0] * out_hw[1], p.padded_channels), np.int32)
        got = gemm_u8.conv(p, x, flat, acc)
        windows = np.lib.stride_tricks.sliding_window_view(xp, (reach, reach), axis=(1, 2))
        windows = windows[..., ::dilation, ::dilation]
        want = np.einsum("nhwcij,ijco->nhwo", windows, weights.reshape(k, k, c, oc)).reshape(-1, oc)
        assert np.array_equal(got, want), (c, oc, k, dilation)


@needs_vnni
@pytest.mark.parametrize("case", range(4))
def test_u8_conv_equals_tflm(case):
    ds.require_oracle()
    rng = np.random.default_rng(300 + case)
    params = [dict(h=11, w=11, c=3, oc=16, stride=(2, 2), zp_in=-128, zp_out=127),
              dict(h=15, w=6, c=1, oc=64, kh=10, kw=4, stride=(2, 2), padding="SAME", zp_in=127),
              dict(h=7, w=8, c=5, oc=24, kh=2, kw=3, dilation=(2, 2), padding="VALID",
                   filter_scales=tuple(rng.uniform(1e-4, 3e-2, 24)), bias_wrap=True, bias_bits=31,
                   extreme_weights=True),
              dict(h=6, w=6, c=32, oc=64, zp_in=-3, activation="RELU6", extreme_weights=True)][case]
    data = conv_model(rng, batch=1, **params)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        _forced(mp)
        it = Interpreter.from_bytes(data)
        assert it.kernels[0].compiled_u8 is not None
        x = boundary_inputs(rng, it, params.get("zp_in", 0), case >= 2)
        assert ds.check_model(data, [x], label="CONV_2D compiled u8").compared
