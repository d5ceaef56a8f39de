"""The int8 DEPTHWISE_CONV_2D for narrow layers (ops/compiled/depthwise_narrow.py: P = 16 / OC output
pixels per 16-lane vpdpbusd, the requantization in registers) equals the reference kernel byte for
byte, and TFLM itself.

The path is forced (``use_compiled(True)``, ``COMPILED_MIN_ELEMENTS = 0``, ``NARROW_FORCE = True``,
a spy failing if another compiled depthwise kernel runs) on random models whose C·dm divides 16
(1 input channel x dm 8 as person_detect's first layer, 8 channels x dm 1 as vww's, and every other
split): kernels 1x1..5x5 (one or two quads per filter row, slots past KW zero-weighted), strides
1-3, dilations, SAME / VALID on tiny all-border images and rows of 1..P groups (the last group
overlapping the one before it), zero points over -128..127 (the pad byte zp + 128 from 0 to 255),
weights at -128 / 127, per-channel scales from 2^-40 (shifts of -31) to left shifts, biases near
±2^31 (the start value wraps) and model batches; compared with ``kernels="reference"``. Skipped
without numba, and where the host lacks AVX512-VNNI / VBMI (the fallback is tested everywhere).
"""
from __future__ import annotations

from pathlib import Path

import diff_support as ds
import numpy as np
import pytest
from compiled_support import skip_unless_compiled
from hypothesis import given, settings
from hypothesis import strategies as st

skip_unless_compiled()

from compiled_support import (  # noqa: E402
    assert_depthwise_prepare_skips_numba,
    assert_fallback_equals_reference,
    assert_forced_equals_reference,
    check_diff_conv_cases,
    depthwise_model,
)

from interp import Interpreter  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from ops.compiled import depthwise as compiled_depthwise  # noqa: E402
from ops.compiled import depthwise_narrow, depthwise_vnni, use_compiled  # noqa: E402
from ops.conv import DepthwiseConv2D  # noqa: E402

needs_host = pytest.mark.skipif(not depthwise_narrow.available(), reason="the host has no AVX512-VNNI / VBMI "
                                "(or numba does not target the host)")
MODELS = Path("/work/shared/models")



def _forced(mp, on=True):
    mp.setattr(DepthwiseConv2D, "COMPILED_MIN_ELEMENTS", 0)
    mp.setattr(DepthwiseConv2D, "NARROW_FORCE", on)


def _forced_with_spy(mp):
    _forced(mp)
    mp.setattr(compiled_depthwise, "depthwise_conv", lambda *a: pytest.fail("depthwise.py ran, not the narrow path"))
    mp.setattr(depthwise_vnni, "depthwise_conv", lambda *a: pytest.fail("depthwise_vnni ran, not the narrow path"))


def expected_to_apply(c, dm, kernel_hw, stride, dilation, ow) -> bool:
    """The geometry condition the module docstring states (independently of plan's code)."""
    pixels = 16 // (c * dm)
    return ow >= pixels and ((pixels - 1) * stride[1] + min(kernel_hw[1] - 1, 3) * dilation[1] + 1) * c <= 64


# (input channels, depth multiplier): every split of OC = 1, 2, 4, 8, 16, the real layers' twice.
SPLITS = [(8, 1), (8, 1), (1, 8), (1, 8), (2, 4), (4, 2), (4, 1), (1, 4), (2, 1), (1, 2), (1, 1), (16, 1), (1, 16),
          (2, 8), (8, 2)]


@st.composite
def narrow_models(draw, kernel=None):
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    kh, kw = kernel if kernel is not None else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    dilation = (draw(st.sampled_from([1, 1, 1, 2, 3])), draw(st.sampled_from([1, 1, 1, 2])))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    if padding == "VALID":
        h, w = max(h, (kh - 1) * dilation[0] + 1), max(w, (kw - 1) * dilation[1] + 1)
    c, dm = draw(st.sampled_from(SPLITS))
    batch = draw(st.integers(1, 2))
    oc = c * dm
    zp_in = draw(st.sampled_from([-128, 127, 0, -1]) | st.integers(-128, 127))
    zp_out = draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    # Real multipliers input·filter/output from about 2^-40 (shift -31) up to 2^8 (left shifts).
    input_scale = float(np.float32(2.0 ** draw(st.floats(-12, 2))))
    output_scale = float(np.float32(2.0 ** draw(st.floats(-14, 10))))
    per_channel = draw(st.booleans())
    exponents = draw(st.lists(st.floats(-30, 0) | st.sampled_from([-30.0, -9.0, 0.0]), min_size=oc if per_channel
                              else 1, max_size=oc if per_channel else 1))
    bias_kind = draw(st.sampled_from([None, "INT32"]))
    bias_bits = draw(st.sampled_from([0, 12, 20, 31]) | st.integers(0, 31))
    data = depthwise_model(rng, filter_type=draw(st.sampled_from(["INT8", "INT8", "INT4"])), batch=batch, h=h, w=w,
                           c=c, dm=dm, kh=kh, kw=kw, stride=stride, dilation=dilation, padding=padding, zp_in=zp_in,
                           zp_out=zp_out, input_scale=input_scale, output_scale=output_scale,
                           filter_scales=[float(np.float32(2.0 ** e)) for e in exponents], bias_kind=bias_kind,
                           bias_bits=bias_bits, activation=draw(st.sampled_from(["NONE", "RELU", "RELU6",
                                                                                 "RELU_N1_TO_1"])),
                           extreme_weights=draw(st.booleans()),
                           bias_wrap=bias_kind is not None and bias_bits == 31 and draw(st.booleans()))
    ow = ds.window_output_size(padding, w, kw, stride[1], dilation[1])
    applies = expected_to_apply(c, dm, (kh, kw), stride, dilation, ow)
    return data, rng, zp_in, draw(st.booleans()), applies


def assert_narrow_equals_reference(data: bytes, rng, zero_point: int, extremes: bool, applies: bool = True):
    force = _forced_with_spy if applies else _forced
    kernel = assert_forced_equals_reference(data, rng, zero_point, extremes, force)
    assert (kernel.compiled_narrow is not None) == applies
    return kernel


@needs_host
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_narrow_depthwise_equals_reference(data):
    model, rng, zp_in, extremes, applies = data.draw(narrow_models())
    assert_narrow_equals_reference(model, rng, zp_in, extremes, applies)


@needs_host
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_narrow_3x3_equals_reference(data):
    """3x3 filters (the real layers': one quad per row with a zero-weight fourth slot)."""
    model, rng, zp_in, extremes, applies = data.draw(narrow_models(kernel=(3, 3)))
    assert_narrow_equals_reference(model, rng, zp_in, extremes, applies)


def _layer(h, w, c, dm, stride, zp_in=-3, zp_out=1, kernel_hw=(3, 3), rng=None, extreme=False, batch=1,
           padding="SAME") -> bytes:
    """One depthwise layer shaped like the real models' (per-channel scales, a bias)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    oc = c * dm
    b = ModelBuilder()
    x = b.input("x", [batch, h, w, c], "INT8", scale=0.02, zero_point=zp_in)
    weights = rng.integers(-128, 128, (1,) + kernel_hw + (oc,)).astype(np.int8)
    if extreme:
        weights = np.where(rng.integers(0, 2, weights.shape) == 1, -128, 127).astype(np.int8)
    scales = list(rng.uniform(1e-9, 2e-2, oc) if extreme else rng.uniform(1e-3, 2e-2, oc))
    wt = b.constant("w", weights, "INT8", scale=scales, zero_point=0, quantized_dimension=3)
    bias = rng.integers(-5000, 5000, oc).astype(np.int32)
    if extreme:
        bias = np.where(rng.integers(0, 2, oc) == 1, (1 << 31) - 1, -(1 << 31)).astype(np.int32)
    bt = b.constant("b", bias, "INT32", scale=[0.02 * s for s in scales], zero_point=0)
    oh = ds.window_output_size(padding, h, kernel_hw[0], stride, 1)
    ow = ds.window_output_size(padding, w, kernel_hw[1], stride, 1)
    y = b.tensor("y", [batch, oh, ow, oc], "INT8", scale=0.05, zero_point=zp_out)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding=padding, stride_h=stride, stride_w=stride,
         depth_multiplier=dm, fused_activation_function="RELU6" if not extreme else "NONE")
    b.output(y)
    return b.build()


@needs_host
def test_real_layer_shapes_and_extreme_values_equal_reference():
    """vww / person_detect's layers (48x48x8 3x3/1, 96x96x1 dm 8 3x3/2) and odd widths, with the
    widest |x - zp| and |w|, biases at ±2^31 (init wraps), both zero-point ends."""
    rng = np.random.default_rng(5)
    for h, w, c, dm, stride, zp in [(48, 48, 8, 1, 1, -128), (96, 96, 1, 8, 2, 127), (13, 11, 8, 1, 1, 127),
                                    (9, 17, 1, 8, 2, -128), (7, 5, 2, 4, 2, 0), (6, 9, 4, 4, 1, -1)]:
        for extreme in (True, False):
            data = _layer(h, w, c, dm, stride, zp_in=zp, rng=rng, extreme=extreme, batch=2)
            assert_narrow_equals_reference(data, rng, zp, extreme)


@needs_host
@pytest.mark.parametrize("left, folded", [(False, True), (True, True), (False, False), (True, False)])
def test_each_requantization_variant_equals_reference(left, folded):
    """The kernel's four row loops: with / without a left shift (a real multiplier above 1), the
    output offset folded into the rounding constant or added after the shift (a channel whose
    shift is so large, multiplier ~2^-29, that zp·2^right would pass 2^60)."""
    rng = np.random.default_rng(17)
    scales = [1e-2] * 8
    if left:
        scales[1] = scales[6] = 40.0  # 0.5 · 40 / 0.05: shift 9
    if not folded:
        scales[3] = 2e-10  # 0.5 · 2e-10 / 0.05 ~ 2^-33.2 -> shift -31 (right 62)
    for zp_out, extreme in ((-128, True), (93, False), (127, True)):
        b = ModelBuilder()
        x = b.input("x", [2, 11, 13, 8], "INT8", scale=0.5, zero_point=-7)
        weights = rng.integers(-128, 128, (1, 3, 3, 8)).astype(np.int8)
        wt = b.constant("w", weights, "INT8", scale=scales, zero_point=0, quantized_dimension=3)
        bias = rng.integers(-(1 << 20), 1 << 20, 8).astype(np.int32)
        bt = b.constant("b", bias, "INT32", scale=[0.5 * s for s in scales], zero_point=0)
        y = b.tensor("y", [2, 11, 13, 8], "INT8", scale=0.05, zero_point=zp_out)
        b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], padding="SAME", stride_h=1, stride_w=1, depth_multiplier=1)
        b.output(y)
        kernel = assert_narrow_equals_reference(b.build(), rng, -7, extreme)
        flags = kernel.compiled_narrow.scalars[7:].tolist()
        assert flags == [int(left), int(not folded)]


def test_plan_refusals_and_constants():
    """plan refuses channel counts not dividing 16, zero points and weights outside int8, rows
    narrower than P pixels and taps reaching past one 64-byte window; its start value is
    bias + (input_offset - 128)·Σw modulo 2^32, repeated P times along the lanes."""
    args = dict(out_hw=(4, 4), stride=(1, 1), dilation=(1, 1), padding=(1, 1), output_offset=0,
                activation_min=-128, activation_max=127)
    w = np.full((3, 3, 8), 127, np.int64)
    bias = np.array([(1 << 31) - 1, -(1 << 31)] * 4, np.int64)
    common = dict(args, in_hwc=(4, 4, 8), depth_multiplier=1, multiplier=[1 << 30] * 8, shift=[0, -3] * 4)
    p = depthwise_narrow.plan(**common, input_offset=128, weights=w, bias=bias)
    assert p is not None and p.pad_byte == 0 and p.pixels_per_vector == 2
    assert p.lanes32[0].tolist() == [(1 << 31) - 1, -(1 << 31)] * 8  # offset 128: (off - 128)·Σw = 0
    # Lane i = p·8 + oc, slot k: byte (p + k)·8 + oc of the window; slot 3 (past KW) reads byte 0.
    perm = p.permutation.reshape(16, 4)
    assert perm[9].tolist() == [(1 + k) * 8 + 1 for k in range(3)] + [0]
    p = depthwise_narrow.plan(**common, input_offset=-127, weights=w, bias=bias)
    want = [((int(v) - 255 * 9 * 127 + (1 << 31)) % (1 << 32)) - (1 << 31) for v in bias]
    assert p.pad_byte == 255 and p.lanes32[0].tolist() == want * 2
    assert depthwise_narrow.plan(**common, input_offset=129, weights=w, bias=bias) is None
    assert depthwise_narrow.plan(**common, input_offset=-128, weights=w, bias=bias) is None
    assert depthwise_narrow.plan(**common, input_offset=0, weights=w * 2, bias=bias) is None
    # OC = 12 does not divide 16.
    assert depthwise_narrow.plan(**dict(common, in_hwc=(4, 4, 12), multiplier=[1 << 30] * 12, shift=0),
                                 input_offset=0, weights=np.ones((3, 3, 12)), bias=None) is None
    # OW = 1 < P = 2.
    assert depthwise_narrow.plan(**dict(common, out_hw=(4, 1)), input_offset=0, weights=w, bias=bias) is None
    # C = 8, P = 2, stride 2, dilation 2: ((1·2 + 2·2) + 1)·8 = 56 <= 64 fits; dilation 3: 72 does not.
    fits = dict(common, stride=(2, 2), out_hw=(2, 2), in_hwc=(4, 4, 8))
    assert depthwise_narrow.plan(**dict(fits, dilation=(2, 2)), input_offset=0, weights=w, bias=bias) is not None
    assert depthwise_narrow.plan(**dict(fits, dilation=(3, 3)), input_offset=0, weights=w, bias=bias) is None
    # One input channel x dm 8 (person_detect): the input byte of pixel p, slot k is at p·2 + k.
    p = depthwise_narrow.plan(**dict(common, in_hwc=(8, 8, 1), stride=(2, 2), depth_multiplier=8),
                              input_offset=0, weights=w, bias=bias)
    assert p.permutation.reshape(16, 4)[:, :3].tolist() == [[2 * (i // 8) + k for k in range(3)] for i in range(16)]


def test_default_choice_by_shape(monkeypatch):
    """By default the narrow kernel is planned for 1, 2, 4 or 8 output channels (8 x dm 1, 1 x dm 8,
    ...) and 16 from a depth multiplier, not for 16 channels x dm 1 (depthwise_vnni's) or 12, 32;
    nor when a test forces VNNI_FORCE either way (the other compiled depthwise kernels' tests keep
    their own paths)."""
    def planned(h, c, dm, stride=1):
        return Interpreter.from_bytes(_layer(h, h, c, dm, stride)).kernels[0].compiled_narrow is not None

    assert planned(8, 8, 1) and planned(16, 1, 8, 2) and planned(8, 2, 4) and planned(8, 4, 1)
    assert planned(16, 1, 1) and planned(8, 1, 16) and planned(8, 2, 1)  # (P = 16 pixels need OW >= 16)
    assert not planned(8, 16, 1) and not planned(8, 12, 1) and not planned(8, 32, 1) and not planned(8, 4, 3)
    for vnni in (True, False):
        monkeypatch.setattr(DepthwiseConv2D, "VNNI_FORCE", vnni)
        assert not planned(8, 8, 1) and not planned(16, 1, 8, 2)


def test_host_without_vbmi_falls_back(monkeypatch):
    """Without the host features (available() False) ops/compiled/depthwise.py runs, same bytes."""
    x = np.random.default_rng(3).integers(-128, 128, (2, 1, 8, 8, 8)).astype(np.int8)
    assert_fallback_equals_reference(monkeypatch, _layer(8, 8, 8, 1, 1), x, _forced, depthwise_narrow,
                                     compiled_depthwise)


@needs_host
@pytest.mark.parametrize("name, op", [("vww_96_int8", 1), ("person_detect", 0), ("person_detect", 1)])
def test_real_model_layers_equal_reference(name, op):
    """The layers this kernel was written for, in the real models, take it by default and give the
    reference kernel's bytes (the layer's own input from random model inputs)."""
    path = MODELS / f"{name}.tflite"
    if not path.exists():
        pytest.skip(f"{path} is not here")
    fast = Interpreter.from_file(str(path))
    kernel = fast.kernels[op]
    assert kernel.compiled_narrow is not None
    reference = Interpreter.from_file(str(path), kernels="reference").kernels[op]
    h, w, c = kernel.in_hwc
    x = np.random.default_rng(op).integers(-128, 128, (5, 1, h, w, c)).astype(np.int8)
    spy = []
    original = depthwise_narrow.depthwise_conv
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        mp.setattr(depthwise_narrow, "depthwise_conv", lambda *a: spy.append(1) or original(*a))
        got = kernel.eval([x])[0]
    inputs = fast.op_inputs(fast.model.main.operators[op], lambda index: None)
    want = reference.eval_reference([x] + inputs[1:])[0]
    assert spy and got.tobytes() == want.tobytes()


@needs_host
def test_narrow_matches_tflm():
    """test_diff_conv's int8 depthwise cases with the narrow path forced (where it applies),
    run_batch and run against TFLM."""
    check_diff_conv_cases(_forced, "DEPTHWISE_CONV_2D INT8 narrow")


def test_load_and_prepare_do_not_import_numba():
    """plan runs on numpy: numba is imported by the first large eval only, never by prepare."""
    assert_depthwise_prepare_skips_numba(1, 8, "compiled_narrow")
