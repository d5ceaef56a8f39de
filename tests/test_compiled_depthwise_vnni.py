"""The int8 DEPTHWISE_CONV_2D on VNNI byte dot products (ops/compiled/depthwise_vnni.py) equals the
reference kernel byte for byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``VNNI_FORCE = True``)
on test_compiled_depthwise.py's random models: kernels 1x1..5x5 (1 to 4 quads' worth of taps per
row, the last quad's slots past KW zero-weighted), strides 1-3, dilations, SAME / VALID on tiny
all-border images, depth multipliers 1-4, channel counts not multiples of 16, zero points over
-128..127 (the padded taps' byte zp + 128 from 0 to 255), weights at -128 / 127, biases near ±2^31
(the accumulator's start value wraps) and model batches; compared with ``kernels="reference"``.
A host without VNNI falls back to ops/compiled/depthwise.py. Skipped without numba.
"""
from __future__ import annotations

import diff_support as ds
import numpy as np
import pytest
from compiled_support import skip_unless_compiled
from hypothesis import given, settings
from hypothesis import strategies as st

skip_unless_compiled()

from compiled_support import (  # noqa: E402
    assert_fallback_equals_reference,
    assert_forced_equals_reference,
    check_diff_conv_cases,
)
from test_compiled_depthwise import depthwise_models  # noqa: E402

from interp import Interpreter  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from ops.compiled import depthwise as compiled_depthwise  # noqa: E402
from ops.compiled import depthwise_vnni  # noqa: E402
from ops.conv import DepthwiseConv2D  # noqa: E402

needs_vnni = pytest.mark.skipif(not depthwise_vnni.available(), reason="the host has no AVX512-VNNI (or numba "
                                "does not target the host)")


def _forced(mp, on=True):
    mp.setattr(DepthwiseConv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(DepthwiseConv2D, "VNNI_FORCE", on)


def _forced_with_spy(mp):
    _forced(mp)
    mp.setattr(compiled_depthwise, "depthwise_conv", lambda *a: pytest.fail("the VNNI path was not taken"))


def assert_vnni_equals_reference(data: bytes, rng, zero_point: int, extremes: bool) -> DepthwiseConv2D:
    kernel = assert_forced_equals_reference(data, rng, zero_point, extremes, _forced_with_spy)
    assert kernel.compiled_vnni is not None  # int8 geometries with positive strides all qualify
    return kernel


@needs_vnni
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_vnni_depthwise_equals_reference(data):
    model, rng, zp_in, extremes = data.draw(depthwise_models("INT8"))
    assert_vnni_equals_reference(model, rng, zp_in, extremes)


@needs_vnni
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_vnni_3x3_equals_reference(data):
    """3x3 (two quads' worth of zero-weight slots per filter: 3 real taps + 1 per row)."""
    model, rng, zp_in, extremes = data.draw(depthwise_models("INT8", kernel=(3, 3)))
    kernel = assert_vnni_equals_reference(model, rng, zp_in, extremes)
    assert kernel.compiled_vnni.quads_per_row == 1


@needs_vnni
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_vnni_stride_2_row_quads_equal_reference(data):
    """Stride-2 layers with dilation 1 take the 2x2-tap quads by default; with PATCHES off they
    take the row quads, which must give the same bytes too."""
    model, rng, zp_in, extremes = data.draw(depthwise_models("INT8"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(depthwise_vnni, "PATCHES", False)
        kernel = assert_vnni_equals_reference(model, rng, zp_in, extremes)
    assert not kernel.compiled_vnni.patches


@needs_vnni
@pytest.mark.parametrize("rows", [3, 4])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_vnni_each_register_block_equals_reference(rows, data):
    """Each register block height (3 or 4 output pixels; the last block repeats the image's last
    pixel) forced on every geometry."""
    model, rng, zp_in, extremes = data.draw(depthwise_models("INT8"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(depthwise_vnni, "BLOCK_ROWS", (rows,))
        kernel = assert_vnni_equals_reference(model, rng, zp_in, extremes)
    assert kernel.compiled_vnni.rows_per_block == rows


def _stride_model(rng, h, w, c, kernel_hw, stride, padding, zp_in, zp_out, activation, output_scale=0.05, dm=1,
                  dilation=(1, 1)):
    """One int8 depthwise layer with per-channel scales from ~1e-9 to 2e-2 (right shifts 31..62,
    so both roundings matter) and biases at ±2^31 or random: its accumulators wrap."""
    b = ModelBuilder()
    x = b.input("x", [2, h, w, c], "INT8", scale=0.02, zero_point=zp_in)
    oc = c * dm
    weights = rng.integers(-128, 128, (1,) + tuple(kernel_hw) + (oc,)).astype(np.int8)
    weights[..., ::3] = np.where(rng.integers(0, 2, weights[..., ::3].shape) == 1, -128, 127)
    scales = list(rng.uniform(1e-9, 2e-2, oc))
    wt = b.constant("w", weights, "INT8", scale=scales, zero_point=0, quantized_dimension=3)
    bias = rng.integers(-(1 << 31), 1 << 31, oc, dtype=np.int64)
    bias[::2] = np.where(rng.integers(0, 2, bias[::2].shape) == 1, (1 << 31) - 1, -(1 << 31))
    bt = b.constant("b", bias.astype(np.int32), "INT32", scale=[0.02 * s for s in scales], zero_point=0)
    oh = ds.window_output_size(padding, h, kernel_hw[0], stride[0], dilation[0])
    ow = ds.window_output_size(padding, w, kernel_hw[1], stride[1], dilation[1])
    y = b.tensor("y", [2, oh, ow, oc], "INT8", scale=output_scale, zero_point=zp_out)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         depth_multiplier=dm, dilation_h_factor=dilation[0], dilation_w_factor=dilation[1],
         fused_activation_function=activation)
    b.output(y)
    return b.build()


@needs_vnni
def test_requantization_modes_equal_reference():
    """The four requantization variants of the kernel (mode bit 0: the clamp at act_min >= output
    zero point absorbs the negative rounding, so it is left out; bit 1: bounds -128..127 clamp by
    constants), each on accumulators that wrap and on both kinds of quads."""
    rng = np.random.default_rng(5)
    seen = set()
    for activation, zp_out, scale, mode in [("RELU_N1_TO_1", 3, 0.05, 0), ("RELU6", 3, 0.05, 1),
                                            ("NONE", 3, 0.05, 2), ("RELU", -128, 0.05, 3), ("NONE", -128, 0.5, 3),
                                            ("RELU", 100, 0.001, 1), ("RELU_N1_TO_1", -120, 0.3, 0)]:
        for stride, patches in [((1, 1), False), ((2, 2), True)]:
            data = _stride_model(rng, 9, 7, 32, (3, 3), stride, "SAME", -128, zp_out, activation, scale)
            for extremes in (True, False):
                kernel = assert_vnni_equals_reference(data, rng, -128, extremes)
            assert kernel.compiled_vnni.mode == mode and kernel.compiled_vnni.patches == patches
            seen.add(mode)
    assert seen == {0, 1, 2, 3}


@needs_vnni
def test_stride_2_shapes_equal_reference():
    """Stride 2 with 2x2-tap quads (and with row quads): even and odd sizes, SAME / VALID, kernels
    1x1 .. 5x4 (2x2 quads past the kernel zero-weighted), zero points at both ends, several
    channel blocks, a depth multiplier, and stride (2, 1) / (1, 2) (row quads)."""
    rng = np.random.default_rng(17)
    cases = [(48, 48, 16, (3, 3), (2, 2), "SAME", 1), (12, 12, 64, (3, 3), (2, 2), "VALID", 1),
             (7, 9, 16, (5, 4), (2, 2), "SAME", 1), (6, 5, 48, (1, 1), (2, 2), "VALID", 1),
             (5, 6, 16, (2, 5), (2, 2), "SAME", 1), (3, 3, 8, (3, 3), (2, 2), "SAME", 2),
             (8, 7, 32, (3, 3), (2, 1), "SAME", 1), (7, 8, 32, (3, 3), (1, 2), "SAME", 1)]
    for h, w, c, kernel_hw, stride, padding, dm in cases:
        for zp_in in (-128, 127, 5):
            data = _stride_model(rng, h, w, c, kernel_hw, stride, padding, zp_in, -2, "NONE", dm=dm)
            for patches in (True, False):
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(depthwise_vnni, "PATCHES", patches)
                    kernel = assert_vnni_equals_reference(data, rng, zp_in, zp_in != 5)
                assert kernel.compiled_vnni.patches == (patches and stride == (2, 2))


@needs_vnni
def test_wide_layers_and_extreme_values_equal_reference():
    """Many channels (several 16-lane blocks, a partial last one), the widest |x - zp| and |w|,
    biases at ±2^31 so that init = bias + (off - 128)·Σw wraps, both zero-point ends."""
    rng = np.random.default_rng(11)
    for h, c, stride, zp, kernel_hw in [(15, 144, 1, -128, (3, 3)), (16, 96, 2, 127, (3, 3)), (9, 520, 1, 0, (5, 5)),
                                        (7, 40, 3, 127, (5, 2)), (6, 17, 1, -128, (1, 1))]:
        b = ModelBuilder()
        x = b.input("x", [2, h, h, c], "INT8", scale=0.02, zero_point=zp)
        weights = np.where(rng.integers(0, 2, (1,) + kernel_hw + (c,)) == 1, -128, 127).astype(np.int8)
        scales = list(rng.uniform(1e-9, 2e-2, c))
        wt = b.constant("w", weights, "INT8", scale=scales, zero_point=0, quantized_dimension=3)
        bias = np.where(rng.integers(0, 2, c) == 1, (1 << 31) - 1, -(1 << 31)).astype(np.int32)
        bt = b.constant("b", bias, "INT32", scale=[0.02 * s for s in scales], zero_point=0)
        o = -(-h // stride)
        y = b.tensor("y", [2, o, o, c], "INT8", scale=0.05, zero_point=3)
        b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding="SAME", stride_h=stride, stride_w=stride,
             depth_multiplier=1, fused_activation_function="NONE")
        b.output(y)
        for extremes in (True, False):
            assert_vnni_equals_reference(b.build(), rng, zp, extremes)


def test_plan_refusals_and_start_value():
    """plan refuses zero points outside int8 (their padded byte would not be a byte) and weights
    outside int8; its start value is bias + (input_offset - 128)·Σw modulo 2^32."""
    args = dict(in_hwc=(4, 4, 2), out_hw=(4, 4), stride=(1, 1), dilation=(1, 1), padding=(1, 1),
                depth_multiplier=1, output_offset=0, activation_min=-128, activation_max=127,
                multiplier=[1 << 30] * 2, shift=[0, -3])
    w = np.full((3, 3, 2), 127, np.int64)
    bias = np.array([(1 << 31) - 1, -(1 << 31)], np.int64)
    p = depthwise_vnni.plan(**args, input_offset=128, weights=w, bias=bias)
    assert p is not None and p.pad_byte == 0 and p.padded_channels == 16
    assert p.init[:2].tolist() == [(1 << 31) - 1, -(1 << 31)]  # offset 128: (off - 128)·Σw = 0
    p = depthwise_vnni.plan(**args, input_offset=-127, weights=w, bias=bias)
    want = [((int(v) - 255 * 9 * 127 + (1 << 31)) % (1 << 32)) - (1 << 31) for v in bias]
    assert p.pad_byte == 255 and p.init[:2].tolist() == want and not p.init[2:].any()
    assert depthwise_vnni.plan(**args, input_offset=129, weights=w, bias=bias) is None
    assert depthwise_vnni.plan(**args, input_offset=-128, weights=w, bias=bias) is None
    assert depthwise_vnni.plan(**args, input_offset=0, weights=w * 2, bias=bias) is None


def _layer(channels=32, dm=1):
    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, channels], "INT8", scale=0.02, zero_point=-3)
    wt = b.constant("w", np.arange(9 * channels * dm).reshape(1, 3, 3, channels * dm).astype(np.int8), "INT8",
                    scale=0.01, zero_point=0, quantized_dimension=3)
    y = b.tensor("y", [1, 8, 8, channels * dm], "INT8", scale=0.05, zero_point=1)
    b.op("DEPTHWISE_CONV_2D", [x, wt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=dm)
    b.output(y)
    return b.build()


def test_default_choice_by_shape():
    """By default the VNNI kernel is planned for dm 1 and channels a multiple of 16 (where it was
    measured faster), not for 8 channels or a depth multiplier."""
    assert Interpreter.from_bytes(_layer(32)).kernels[0].compiled_vnni is not None
    assert Interpreter.from_bytes(_layer(8)).kernels[0].compiled_vnni is None
    assert Interpreter.from_bytes(_layer(16, dm=2)).kernels[0].compiled_vnni is None


def test_host_without_vnni_falls_back(monkeypatch):
    """Without AVX512-VNNI (gemm_u8's host check) ops/compiled/depthwise.py runs, same bytes."""
    x = np.random.default_rng(3).integers(-128, 128, (2, 1, 8, 8, 32)).astype(np.int8)
    assert_fallback_equals_reference(monkeypatch, _layer(32), x, _forced, depthwise_vnni, compiled_depthwise)


@needs_vnni
def test_vnni_matches_tflm():
    """test_diff_conv's int8 depthwise cases with the VNNI path forced, run_batch and run against TFLM."""
    check_diff_conv_cases(_forced, "DEPTHWISE_CONV_2D INT8 vnni")
