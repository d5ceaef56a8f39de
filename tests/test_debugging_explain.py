"""explain's integer stories for pooling, softmax, ADD/SUB/MUL, QUANTIZE and RELU, `--numerics`
(every variant's value beside TFLM's), and the reference functions they are told from
(ops/reference/elementwise.py) pinned to the kernels on every int8 input pair.

Stories must end in the kernel's value (TFLM's, which the differential tests pin) on many
elements and seeds; a few elements are also recomputed here by hand, in plain Python integers,
from the model's scales and zero points.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest

from interp import InputError, Interpreter
from interp.builder import ModelBuilder
from interp.runtime.inputs import random_inputs
from interp.tools import cli
from interp.tools.explain import NUMERICS_CHOICES, explain
from ops import reference
from ops.reference.activations import hard_swish, leaky_relu, sigmoid_like_int8
from ops.reference.elementwise import ArithmeticParams, RequantizeParams
from ops.reference.reduce import mean_or_sum
from ops.reference.softmax_int16 import params_of, softmax_int16
from ops.registry import Numerics

MODELS = Path(__file__).resolve().parents[1] / "golden" / "models"
STORY_MODELS = [
    "avgpool_3x3_s2_same", "avgpool_2x3_s1x2_valid", "avgpool_3x3_s2_same_relu", "avgpool_global_5x5",
    "maxpool_2x2_s2_same_odd", "maxpool_3x3_s2_same_relu6",
    "softmax_1x10", "softmax_2x7", "softmax_4d_1x2x3x8", "softmax_beta2p5", "softmax_tiny_range", "softmax_wide_range",
    "add_broadcast_3x1x7_1x5x1", "add_broadcast_16x8", "add_same_shape_16x8", "add_saturating", "add_relu6",
    "add_const_scalar", "sub_broadcast_2x1x5_3x1", "sub_diff_scales_relu", "sub_const_tensor",
    "mul_broadcast_2x1x5_3x1", "mul_saturating", "mul_relu", "quantize_requant_concat_tanh",
    "quantize_requant_concat_logistic", "relu_after_concat", "relu_after_transpose", "add_float_io", "net_mobile_block",
    "leaky_relu_alpha0p01_4d", "leaky_relu_alpha0p2", "leaky_relu_alpha1p5",
    "mean_axes12", "mean_axes12_keepdims", "mean_axes12_large", "mean_axes12_saturating", "mean_axis1",
    "mean_axis1_keepdims_4d", "mean_axis_last", "sum_axis1", "hard_swish_1x16", "hard_swish_small", "hard_swish_wide",
    "softmax_1x10_16x8", "softmax_4d_16x8",
    "logistic_1x12", "logistic_asym_range", "logistic_wide_range", "tanh_1x12", "tanh_asym_range", "tanh_wide_range",
]
STORY_OPS = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "SOFTMAX", "ADD", "SUB", "MUL", "QUANTIZE", "RELU", "CONV_2D",
             "DEPTHWISE_CONV_2D", "FULLY_CONNECTED",
             "LEAKY_RELU", "MEAN", "SUM", "HARD_SWISH",
             "LOGISTIC", "TANH"}


def _elements(shape, rng, count):
    """The first, the last and ``count`` random coordinates of a shape."""
    picks = [tuple(0 for _ in shape), tuple(d - 1 for d in shape)]
    picks += [tuple(int(rng.integers(0, d)) for d in shape) for _ in range(count)]
    return picks


@pytest.mark.parametrize("name", STORY_MODELS)
def test_every_story_ends_in_the_kernels_value_under_every_numerics(name):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    it = Interpreter.from_file(MODELS / f"{name}.tflite")
    variants = {k: Interpreter.from_file(MODELS / f"{name}.tflite", numerics=n) for k, n in NUMERICS_CHOICES.items()}
    told = 0
    for seed in (0, 1):
        xs = random_inputs(it, np.random.default_rng(seed))
        for v in variants.values():
            v.run(xs, keep=True)
        for op in it.subgraph.operators:
            if op.op_name not in STORY_OPS:
                continue
            shape = it.tensors[op.outputs[0]].shape
            for at in _elements(shape, rng, 3):
                for key, v in variants.items():
                    e = explain(it, op.index, at, xs, numerics=key)
                    assert e.values.get("matches_kernel") is True, e.text
                    # The variant's story ends in what the whole model run under that variant gives
                    # for this element when its inputs agree (they do for the first op, and under
                    # the defaults for every op).
                    if key == "tflm" or op.index == 0:
                        assert e.value == v.tensor(op.outputs[0])[at], (key, e.text)
                    assert e.tflm_value == variants["tflm"].tensor(op.outputs[0])[at]
                    assert "!!" not in e.text
                    told += 1
    assert told > 0


def _srdhm(a, b):
    p = a * b
    nudge = 2 ** 30 if p >= 0 else 1 - 2 ** 30
    q = abs(p + nudge) // 2 ** 31  # C division truncates toward zero
    return q if p + nudge >= 0 else -q


def _rdbpot(x, e):
    mask = (1 << e) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> e) + (1 if remainder > threshold else 0)


def _quantize_multiplier(real):
    mant, exp = math.frexp(real)
    m = round(mant * 2 ** 31)  # |mant| in [0.5, 1): no tie at this precision in practice
    if m == 2 ** 31:
        m, exp = m // 2, exp + 1
    return m, exp


def _mbqm(x, m, shift):
    left, right = max(shift, 0), max(-shift, 0)
    return _rdbpot(_srdhm(x * 2 ** left, m), right)


def test_add_story_by_hand_from_the_scales():
    path = MODELS / "add_broadcast_3x1x7_1x5x1.tflite"
    it = Interpreter.from_file(path)
    xs = random_inputs(it, np.random.default_rng(11))
    op = it.subgraph.operators[0]
    t1, t2, to = (it.tensors[i] for i in (*op.inputs, op.outputs[0]))
    s1, s2, so = (float(t.quantization.scale) for t in (t1, t2, to))
    z1, z2, zo = (t.quantization.zero_point for t in (t1, t2, to))
    twice_max = 2 * max(s1, s2)
    m1, sh1 = _quantize_multiplier(s1 / twice_max)
    m2, sh2 = _quantize_multiplier(s2 / twice_max)
    mo, sho = _quantize_multiplier(twice_max / (2 ** 20 * so))
    for at in [(0, 0, 0), (2, 4, 6), (1, 3, 2)]:
        x1 = int(xs[0][at[0], 0, at[2]])
        x2 = int(xs[1][0, at[1], 0])
        a = _mbqm((x1 - z1) * 2 ** 20, m1, sh1)
        b = _mbqm((x2 - z2) * 2 ** 20, m2, sh2)
        want = min(127, max(-128, _mbqm(a + b, mo, sho) + zo))
        e = explain(it, 0, at, xs)
        assert (e.values["input1_val"], e.values["input2_val"]) == (x1 - z1, x2 - z2)
        assert (e.values["scaled_input1_val"], e.values["scaled_input2_val"], e.values["raw"]) == (a, b, a + b)
        assert e.value == want
        assert f"input1{[at[0], 0, at[2]]} = {x1}, input2{[0, at[1], 0]} = {x2}" in e.text


def test_average_pool_story_by_hand():
    it = Interpreter.from_file(MODELS / "avgpool_3x3_s2_same.tflite")
    xs = random_inputs(it, np.random.default_rng(4))
    x = xs[0].astype(int)
    h, w = x.shape[1:3]
    out_shape = it.tensors[it.subgraph.operators[0].outputs[0]].shape
    p = it.kernels[0].params
    for at in _elements(out_shape, np.random.default_rng(1), 6):
        b, oy, ox, c = at
        taps = [x[b, iy, ix, c] for iy in range(oy * 2 - p.padding_top, oy * 2 - p.padding_top + 3)
                for ix in range(ox * 2 - p.padding_left, ox * 2 - p.padding_left + 3) if 0 <= iy < h and 0 <= ix < w]
        total, n = sum(taps), len(taps)
        rounded = total + n // 2 if total > 0 else total - n // 2
        avg = abs(rounded) // n * (1 if rounded >= 0 else -1)  # C division truncates toward zero
        e = explain(it, 0, at, xs)
        assert (e.values["sum"], e.values["count"], e.values["average"]) == (total, n, avg)
        assert e.value == min(max(avg, p.activation_min), p.activation_max)
        assert f"{n} taps inside the image" in e.text


def test_softmax_story_names_each_fixed_point_step():
    it = Interpreter.from_file(MODELS / "softmax_2x7.tflite")
    xs = random_inputs(it, np.random.default_rng(2))
    row = xs[0][1].astype(int)
    e = explain(it, 0, (1, int(np.argmax(row))), xs)
    assert e.values["diff"] == 0 and e.values["exp_in_0"] == 2 ** 31 - 1  # exp(0) is one in Q0.31
    for step in ("max_in_row", "exp_on_negative_values", "sum_of_exps", "GetReciprocal: shifted_scale",
                 "num_bits_over_unit", "RDBPOT(SRDHM(shifted_scale, exp)"):
        assert step in e.text
    low = int(np.argmin(row))
    e = explain(it, 0, (1, low), xs)
    assert e.values["diff"] == row[low] - row.max()


def test_softmax_int8_in_int16_out_story():
    b = ModelBuilder()
    x = b.input("x", [1, 9], "INT8", scale=0.07, zero_point=3)
    y = b.tensor("y", [1, 9], "INT16", scale=1 / 65536, zero_point=-32768)
    b.op("SOFTMAX", [x], [y], beta=1.0)
    b.output(y)
    it = Interpreter.from_bytes(b.build())
    xs = random_inputs(it, np.random.default_rng(0))
    out = it.run(xs)[0]
    for k in range(9):
        e = explain(it, 0, (0, k), xs)
        assert e.value == out[0, k] and e.values["matches_kernel"]
    assert "num_bits_over_unit + 31 - 16" in e.text


def test_numerics_single_shows_the_variant_beside_tflm_on_a_tie():
    """The element compare's README walk-through lands on: SRDHM leaves exactly 47.5, which the
    second rounding takes to 48; rounding once gives 47."""
    it = Interpreter.from_file(MODELS / "net_mobile_block.tflite")
    xs = random_inputs(it, np.random.default_rng(0))
    e = explain(it, 0, (0, 0, 1, 6), xs)
    assert e.value == -80
    assert "(rounding once, as TFLITE_SINGLE_ROUNDING builds do, gives 47: SRDHM leaves 6080/2^7 = 47.5" in e.text
    s = explain(it, 0, (0, 0, 1, 6), xs, numerics="single")
    assert (s.value, s.tflm_value) == (-81, -80)
    assert "(acc·M + 2^37) >> 38" in s.text
    assert s.lines[-1] == ("single rounding (TFLITE_SINGLE_ROUNDING) computes -81; TFLM computes -80 — they differ "
                           "(-1 LSB)")


def test_explain_numerics_all_on_the_command_line(capsys):
    code = cli.main(["explain", str(MODELS / "net_mobile_block.tflite"), "--op", "0", "--at", "0,0,1,6",
                     "--numerics", "all"])
    out = capsys.readouterr().out
    assert code == 0
    tail = out.split("under each numerics variant", 1)[1].splitlines()[1:]
    parsed = {line.split()[0]: line for line in tail}
    assert set(parsed) == {"single", "float32-scales", "single+float32-scales"}
    assert "computes -81; TFLM computes -80 (differs by -1 LSB)" in parsed["single"]
    assert "computes -80; TFLM computes -80 (the same)" in parsed["float32-scales"]


def test_unknown_numerics_name_is_an_input_error():
    it = Interpreter.from_file(MODELS / "add_relu.tflite")
    with pytest.raises(InputError, match="--numerics takes one of"):
        explain(it, 0, (0, 0), numerics="triple")


def test_ops_without_a_story_still_list_their_parameters():
    it = Interpreter.from_file(MODELS / "cumsum_axis1.tflite")
    at = tuple(0 for _ in it.tensors[it.subgraph.operators[0].outputs[0]].shape)
    e = explain(it, 0, at)
    assert "step-by-step arithmetic is not written out" in e.text and "matches_kernel" not in e.values


# ----------------------------------------------------------------------------- the reference functions

BYTES = np.arange(-128, 128, dtype=np.int64)


@pytest.mark.parametrize("name", ["add_diff_scales", "add_saturating", "add_relu", "sub_diff_scales_relu",
                                  "sub_saturating", "mul_saturating", "mul_relu", "mul_same_shape"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_elementwise_reference_equals_the_kernel_on_every_int8_pair(name, rounding):
    it = Interpreter.from_file(MODELS / f"{name}.tflite", numerics=Numerics(rounding=rounding))
    op, k = it.subgraph.operators[0], it.kernels[0]
    d = k.describe()
    if op.op_name == "MUL":
        p = ArithmeticParams(d["input1_offset"], d["input2_offset"], d["output_offset"], d["output_multiplier"],
                             d["output_shift"], d["output_activation_min"], d["output_activation_max"],
                             rounding=rounding)
        fn = reference.mul
    else:
        p = ArithmeticParams(d["input1_offset"], d["input2_offset"], d["output_offset"], d["output_multiplier"],
                             d["output_shift"], d["output_activation_min"], d["output_activation_max"],
                             d["left_shift"], d["input1_multiplier"], d["input1_shift"], d["input2_multiplier"],
                             d["input2_shift"], rounding=rounding)
        fn = reference.add if op.op_name == "ADD" else reference.sub
    steps: dict = {}
    got = fn(p, BYTES[:, None], BYTES[None, :], steps=steps)
    want = k.quantized(BYTES[:, None], BYTES[None, :])
    assert np.array_equal(got, want)
    assert np.array_equal(steps["output"], got)


@pytest.mark.parametrize("name", ["quantize_requant_concat_tanh", "relu_after_concat"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_requantize_reference_equals_the_kernel_on_every_int8_value(name, rounding):
    it = Interpreter.from_file(MODELS / f"{name}.tflite", numerics=Numerics(rounding=rounding))
    op, k = next((op, k) for op, k in zip(it.subgraph.operators, it.kernels) if op.op_name in ("QUANTIZE", "RELU"))
    d = k.describe()
    if op.op_name == "QUANTIZE":
        p = RequantizeParams(d["input_zero_point"], d["output_zero_point"], d["requantize_output_multiplier"],
                             d["requantize_output_shift"], d["output_min"], d["output_max"], rounding)
        want = k.requantize(BYTES)
    else:
        p = RequantizeParams(d["input_offset"], d["output_offset"], d["output_multiplier"], d["output_shift"],
                             d["quantized_activation_min"], d["quantized_activation_max"], rounding)
        want = k.quantized(BYTES)
    assert np.array_equal(reference.requantize_elementwise(p, BYTES), want)


def test_pool_and_softmax_steps_do_not_change_the_result():
    for name, fn in (("avgpool_3x3_s2_same", reference.average_pool), ("maxpool_3x3_s2_same", reference.max_pool),
                     ("softmax_4d_1x2x3x8", reference.softmax_int8)):
        it = Interpreter.from_file(MODELS / f"{name}.tflite")
        x = random_inputs(it, np.random.default_rng(9))[0][None]
        steps: dict = {}
        assert np.array_equal(fn(it.kernels[0].params, x, steps=steps), fn(it.kernels[0].params, x))
        assert np.array_equal(steps["output"], fn(it.kernels[0].params, x))


def _leaky_relu_model(type_name: str, alpha: float, scales=(0.05, 0.04), zero_points=(3, -7)):
    b = ModelBuilder()
    x = b.input("x", [2, 40], type_name, scale=scales[0], zero_point=zero_points[0] if type_name == "INT8" else 0)
    y = b.tensor("y", [2, 40], type_name, scale=scales[1], zero_point=zero_points[1] if type_name == "INT8" else 0)
    b.op("LEAKY_RELU", [x], [y], alpha=alpha)
    b.output(y)
    return Interpreter.from_bytes(b.build())


@pytest.mark.parametrize("name", ["leaky_relu_alpha0p01_4d", "leaky_relu_alpha0p2", "leaky_relu_alpha1p5"])
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_leaky_relu_reference_equals_the_kernel_on_every_int8_value(name, rounding):
    k = Interpreter.from_file(MODELS / f"{name}.tflite", numerics=Numerics(rounding=rounding)).kernels[0]
    steps: dict = {}
    assert np.array_equal(leaky_relu(k.params, BYTES, rounding, steps=steps), k.quantized(BYTES))
    assert np.array_equal(steps["output"], k.quantized(BYTES))


@pytest.mark.parametrize("alpha", [0.3, -0.7, 2.5])
def test_leaky_relu_reference_equals_the_kernel_int16_and_negative_alpha(alpha):
    for type_name, values in (("INT8", BYTES), ("INT16", np.random.default_rng(3).integers(-32768, 32768, 5000))):
        k = _leaky_relu_model(type_name, alpha).kernels[0]
        assert np.array_equal(leaky_relu(k.params, values), k.quantized(values))


@pytest.mark.parametrize("type_name", ["INT8", "INT16"])
@pytest.mark.parametrize("alpha", [0.2, -0.7])
def test_leaky_relu_story_takes_the_multiplier_the_sign_picks(type_name, alpha):
    it = _leaky_relu_model(type_name, alpha)
    xs = random_inputs(it, np.random.default_rng(5))
    out = it.run(xs)[0]
    x = xs[0].astype(int)
    zp = it.kernels[0].params.input_zero_point
    for at in _elements((2, 40), np.random.default_rng(6), 12):
        e = explain(it, 0, at, xs)
        assert e.values["matches_kernel"] and e.value == out[at]
        assert e.values["input_value"] == x[at] - zp
        branch = "the identity multiplier" if x[at] >= zp else "the alpha multiplier"
        assert branch in e.text and "SaturatingRoundingDoublingHighMul" in e.text and "!!" not in e.text
        if x[at] < zp and alpha < 0:
            assert "negated (alpha < 0)" in e.text


def _reduce_model(op: str, type_name: str, shape, axes, keep_dims=False, scales=(0.05, 0.02), zero_points=(5, -3)):
    zps = zero_points if type_name == "INT8" else (0, 0)
    b = ModelBuilder()
    x = b.input("x", shape, type_name, scale=scales[0], zero_point=zps[0])
    axis = b.constant("axis", np.array(axes, np.int32))
    out_shape = [1 if i in axes else d for i, d in enumerate(shape) if keep_dims or i not in axes]
    y = b.tensor("y", out_shape, type_name, scale=scales[1], zero_point=zps[1])
    b.op(op, [x, axis], [y], keep_dims=keep_dims)
    b.output(y)
    return Interpreter.from_bytes(b.build())


@pytest.mark.parametrize("op", ["MEAN", "SUM"])
@pytest.mark.parametrize("type_name", ["INT8", "INT16"])
def test_mean_or_sum_reference_equals_the_kernel_on_random_inputs(op, type_name):
    rng = np.random.default_rng(7)
    for shape, axes, scales in (([2, 5, 6, 3], [1, 2], (0.05, 0.02)), ([3, 40], [1], (0.01, 0.3)),
                                ([2, 7, 3], [0, 2], (0.2, 0.2)), ([1, 12, 12, 2], [1, 2], (0.03, 0.001))):
        it = _reduce_model(op, type_name, shape, axes, scales=scales)
        k = it.kernels[0]
        lo, hi = (-128, 128) if type_name == "INT8" else (-32768, 32768)
        x = rng.integers(lo, hi, (64, *shape)).astype(type_name.lower())
        want = k.eval([x, np.asarray(axes, np.int32)[None]])[0]
        got = mean_or_sum(k.params, k.reduced_last(x)).reshape(want.shape)
        assert np.array_equal(got, want), (shape, axes, scales)


@pytest.mark.parametrize("op", ["MEAN", "SUM"])
@pytest.mark.parametrize("type_name", ["INT8", "INT16"])
def test_mean_or_sum_story_by_hand(op, type_name):
    it = _reduce_model(op, type_name, [2, 4, 5, 3], [1, 2], keep_dims=op == "MEAN")
    xs = random_inputs(it, np.random.default_rng(8))
    out = it.run(xs)[0]
    p = it.kernels[0].params
    x = xs[0].astype(int)
    for at in _elements(out.shape, np.random.default_rng(9), 6):
        b, c = at[0], at[-1]
        total = int(x[b, :, :, c].sum())
        shifted = total - p.input_zp * 20
        e = explain(it, 0, at, xs)
        assert e.values["matches_kernel"] and e.value == out[at]
        assert (e.values["sum"], e.values["shifted"]) == (total, shifted)
        want = min(max(_mbqm(shifted, p.multiplier, p.shift) + p.output_zp, p.quantized_activation_min),
                   p.quantized_activation_max)
        assert e.value == want
        assert f"reduces axes [1, 2]: 20 input values, [{b}, 0, 0, {c}]={x[b, 0, 0, c]}" in e.text
        assert "the zero-point term" in e.text and "RoundingDivideByPOT" in e.text
        assert ("1/count folded into s_in / s_out" in e.text) == (op == "MEAN")
    if op == "MEAN":
        op0 = it.subgraph.operators[0]
        s_in, s_out = (float(it.tensors[t].quantization.scale) for t in (op0.inputs[0], op0.outputs[0]))
        m, sh = _quantize_multiplier(s_in / s_out)
        extra = min(int(math.log2(20)), 32, 31 + sh)
        assert (p.multiplier, p.shift) == ((m << extra) // 20, sh - extra)


@pytest.mark.parametrize("name", ["hard_swish_1x16", "hard_swish_small", "hard_swish_wide"])
def test_hard_swish_reference_equals_the_kernel_on_every_int8_value(name):
    k = Interpreter.from_file(MODELS / f"{name}.tflite").kernels[0]
    steps: dict = {}
    assert np.array_equal(hard_swish(k.params, BYTES, steps=steps), k.quantized(BYTES))
    assert np.all((steps["reluish_value"] >= 0) & (steps["reluish_value"] <= 32767))


@pytest.mark.parametrize("name", ["hard_swish_1x16", "hard_swish_small", "hard_swish_wide"])
def test_hard_swish_story_names_each_int16_step(name):
    it = Interpreter.from_file(MODELS / f"{name}.tflite")
    xs = random_inputs(it, np.random.default_rng(12))
    out = it.run(xs)[0]
    p = it.kernels[0].params
    for at in _elements(out.shape, np.random.default_rng(13), 8):
        e = explain(it, 0, at, xs)
        assert e.values["matches_kernel"] and e.value == out[at] and "!!" not in e.text
        assert e.values["input_value"] == int(xs[0][at]) - p.input_zero_point
        assert e.values["input_value_on_hires_input_scale"] == e.values["input_value"] * 128
        assert e.values["reluish_value"] == (e.values["reluish_scaled"] + 32768) >> 1
        for step in ("input_value_on_hires_input_scale", "preshift output: SRDHM16", "reluish: SRDHM16",
                     "reluish_value = (. + 2^15) >> 1", "SaturatingDoublingHighMul(reluish, preshift)",
                     f"RoundingDivideByPOT(., {-p.output_multiplier_exponent})"):
            assert step in e.text


SIGMOID_MODELS = ["logistic_1x12", "logistic_asym_range", "logistic_wide_range", "tanh_1x12", "tanh_asym_range",
                  "tanh_wide_range", "quantize_requant_concat_logistic", "quantize_requant_concat_tanh"]


def _sigmoid_op(it):
    return next((op, k) for op, k in zip(it.subgraph.operators, it.kernels) if op.op_name in ("LOGISTIC", "TANH"))


@pytest.mark.parametrize("name", SIGMOID_MODELS)
@pytest.mark.parametrize("rounding", ["double", "single"])
def test_logistic_tanh_reference_equals_the_kernel_on_every_int8_value(name, rounding):
    it = Interpreter.from_file(MODELS / f"{name}.tflite", numerics=Numerics(rounding=rounding))
    op, k = _sigmoid_op(it)
    steps: dict = {}
    assert np.array_equal(sigmoid_like_int8(k.params, BYTES, op.op_name, rounding, steps=steps), k.lookup(BYTES))
    assert np.array_equal(steps["output"], k.lookup(BYTES))


@pytest.mark.parametrize("name", SIGMOID_MODELS)
def test_logistic_tanh_story_names_each_fixed_point_step(name):
    it = Interpreter.from_file(MODELS / f"{name}.tflite")
    op, k = _sigmoid_op(it)
    xs = random_inputs(it, np.random.default_rng(14))
    it.run(xs, keep=True)
    x, y = it.tensor(op.inputs[0]), it.tensor(op.outputs[0])
    p = k.params
    fn = "logistic" if op.op_name == "LOGISTIC" else "tanh"
    saturated = unsaturated = 0
    for at in _elements(y.shape, np.random.default_rng(15), 10):
        e = explain(it, op.index, at, xs)
        assert e.values["matches_kernel"] and e.value == y[at] and "!!" not in e.text
        diff = int(x[at]) - p.input_zero_point
        assert e.values["input"] == diff
        if abs(diff) >= p.input_range_radius:
            assert "saturates to" in e.text and e.value == (127 if diff > 0 else -128)
            saturated += 1
        else:
            for step in ("rescale to Q4.27", "input_in_q4 (Q4.27)", f"gemmlowp::{fn}(input_in_q4) (Q0.31)",
                         f"RoundingDivideByPOT(., {23 if fn == 'logistic' else 24})"):
                assert step in e.text
            # Q0.31 -> the output: the rounded value is within one LSB of the exact quotient.
            exact = e.values["output_in_q0"] / 2 ** (23 if fn == "logistic" else 24)
            assert abs(e.values["output_rounded"] - exact) <= 0.5
            unsaturated += 1
    assert unsaturated > 0


def _softmax_int16_model(shape, input_scale: float, beta: float):
    b = ModelBuilder()
    x = b.input("x", shape, "INT16", scale=input_scale, zero_point=0)
    y = b.tensor("y", shape, "INT16", scale=1 / 32768, zero_point=0)
    b.op("SOFTMAX", [x], [y], beta=beta)
    b.output(y)
    return Interpreter.from_bytes(b.build())


@pytest.mark.parametrize("input_scale, beta", [(0.001, 1.0), (0.0003, 2.5), (0.01, 0.5), (1 / 4096, 1.0)])
def test_softmax_int16_reference_equals_the_kernel_on_random_inputs(input_scale, beta):
    k = _softmax_int16_model([3, 2, 17], input_scale, beta).kernels[0]
    rng = np.random.default_rng(16)
    for x in (rng.integers(-32768, 32768, (40, 3, 2, 17)), rng.integers(-300, 300, (40, 3, 2, 17))):
        want = k.eval([x.astype(np.int16)])[0]
        assert np.array_equal(softmax_int16(params_of(k), x), want)


@pytest.mark.parametrize("name", ["softmax_1x10_16x8", "softmax_4d_16x8"])
def test_softmax_int16_story_names_each_table_step(name):
    it = Interpreter.from_file(MODELS / f"{name}.tflite")
    xs = random_inputs(it, np.random.default_rng(17))
    out = it.run(xs)[0]
    for at in _elements(out.shape, np.random.default_rng(18), 8):
        e = explain(it, 0, at, xs)
        assert e.values["matches_kernel"] and e.value == out[at] and "!!" not in e.text
        row = xs[0][at[:-1]].astype(int)
        assert e.values["input_diff"] == int(xs[0][at]) - row.max()
        assert 0 < e.values["headroom_plus_one"] <= 32
        for step in ("max_in_row", "sym_scaled_diff", "LUTLookup exp: index 256 + (x >> 7)", "sum_of_exps (int32)",
                     "headroom_plus_one = CountLeadingZeros(sum)", "sym_shifted_sum", "LUTLookup 1/(1+x)",
                     f"right_shift = 31 - {e.values['headroom_plus_one']}"):
            assert step in e.text
