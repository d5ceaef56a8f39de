"""CONV_2D and DEPTHWISE_CONV_2D against TFLM, over their whole parameter space.

Shapes with 1s and primes, strides and dilations (0 included: TFLM accepts it), both paddings,
grouped convolution, depth multipliers, a bias slot written as -1, per-tensor and per-channel
filters, int4 filters, 16x8 with int32 and int64 bias, float32, every fused activation, scales
from 1e-6 to 1e3 and zero points at the type limits.
"""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    activations,
    assert_tflm_aborts,
    bias_values,
    check_model,
    dims,
    input_styles,
    note_case,
    quantized_values,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    window_output_size,
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder

# The input type, or INT4 for int8 input with an int4 filter.
KINDS = ["INT8", "INT4", "INT16", "FLOAT32"]
DIFF_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D"}  # the ops this module tests (see test_diff_regressions.py)


# Mostly small positive strides and dilations; rarely 0, which TFLM accepts and computes with.
strides = st.sampled_from([1] * 6 + [2] * 3 + [3, 4, 0])
dilations = st.sampled_from([1] * 6 + [2] * 3 + [3, 0])


@st.composite
def conv_geometry(draw, depthwise: bool):
    g = dict(batch=draw(st.integers(1, 2)), height=draw(dims(1, 11)), width=draw(dims(1, 11)),
             kernel_h=draw(dims(1, 5)), kernel_w=draw(dims(1, 5)),
             stride_h=draw(strides), stride_w=draw(strides),
             dilation_h=draw(dilations), dilation_w=draw(dilations),
             padding=draw(st.sampled_from(["SAME", "VALID"])))
    if depthwise:
        g["in_channels"] = draw(dims(1, 6))
        g["depth_multiplier"] = draw(st.sampled_from([1, 1, 2, 3, 4]))
        g["out_channels"] = g["in_channels"] * g["depth_multiplier"]
    else:
        g["in_channels"] = draw(dims(1, 8))
        divisors = [d for d in range(1, g["in_channels"] + 1) if g["in_channels"] % d == 0]
        g["groups"] = draw(st.sampled_from(divisors)) if draw(st.integers(0, 3)) == 0 else 1
        g["out_channels"] = g["groups"] * draw(dims(1, 5))
    for axis in ("h", "w"):
        size = g["height" if axis == "h" else "width"]
        if window_output_size(g["padding"], size, g[f"kernel_{axis}"], g[f"stride_{axis}"], g[f"dilation_{axis}"]) < 1:
            # A VALID window larger than the input has no output; such a model has no valid shape.
            g["padding"] = "SAME"
    return g


@st.composite
def conv_cases(draw, depthwise: bool, kind: str):
    case = draw(conv_geometry(depthwise))
    case["kind"] = kind
    case["activation"] = draw(activations)
    case["seed"] = draw(seeds)
    case["style"] = draw(input_styles)
    # Without a bias, CONV_2D sometimes lists the omitted input as -1 (DEPTHWISE_CONV_2D cannot:
    # see test_depthwise_with_an_omitted_bias_slot_is_refused_where_tflm_crashes).
    case["omitted_bias_slot"] = not depthwise and draw(st.booleans())
    if kind == "FLOAT32":
        case["bias"] = draw(st.sampled_from([None, "FLOAT32"]))
        case["bias_bits"] = draw(st.integers(0, 16))
        return case
    io_type = "INT16" if kind == "INT16" else "INT8"
    case["per_channel"] = draw(st.booleans())
    n_scales = case["out_channels"] if case["per_channel"] else 1
    case["input_scale"] = draw(scales())
    case["output_scale"] = draw(scales())
    case["filter_scales"] = draw(st.lists(scales(), min_size=n_scales, max_size=n_scales))
    if io_type == "INT16":
        # 16x8 kernels assume zero points of 0; rarely, try another to see TFLM ignore or refuse it.
        case["input_zp"] = draw(st.sampled_from([0] * 9 + [5]))
        case["output_zp"] = draw(st.sampled_from([0] * 9 + [-7]))
        case["bias"] = draw(st.sampled_from([None, "INT32", "INT64"] if not depthwise else [None, "INT64"]))
    else:
        case["input_zp"] = draw(zero_points("INT8"))
        case["output_zp"] = draw(zero_points("INT8"))
        case["bias"] = draw(st.sampled_from([None, "INT32", "INT32"]))
    case["bias_bits"] = draw(st.sampled_from([0, 8, 16, 20, 24, 31]) | st.integers(0, 31))
    return case


def build_conv(case: dict, depthwise: bool):
    """The model and its input description for one case."""
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    io_type = {"INT4": "INT8"}.get(kind, kind)
    filter_type = {"INT4": "INT4", "INT16": "INT8"}.get(kind, kind)
    quantized = kind != "FLOAT32"
    oh = window_output_size(case["padding"], case["height"], case["kernel_h"], case["stride_h"], case["dilation_h"])
    ow = window_output_size(case["padding"], case["width"], case["kernel_w"], case["stride_w"], case["dilation_w"])
    in_shape = [case["batch"], case["height"], case["width"], case["in_channels"]]
    out_shape = [case["batch"], oh, ow, case["out_channels"]]
    if depthwise:
        filter_shape = [1, case["kernel_h"], case["kernel_w"], case["out_channels"]]
        quantized_dim = 3
    else:
        filter_shape = [case["out_channels"], case["kernel_h"], case["kernel_w"],
                        case["in_channels"] // case["groups"]]
        quantized_dim = 0

    b = ModelBuilder()
    q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}
    q_out = dict(scale=case["output_scale"], zero_point=case["output_zp"]) if quantized else {}
    x = b.input("x", in_shape, io_type, **q_in)
    filter_scales = case.get("filter_scales") or [1.0]
    q_w = dict(scale=filter_scales if len(filter_scales) > 1 else filter_scales[0], zero_point=0,
               quantized_dimension=quantized_dim) if quantized else {}
    w = b.constant("filter", quantized_values(rng, filter_shape, filter_type), filter_type, **q_w)
    inputs = [x, w]
    if case["bias"] is not None:
        values = bias_values(rng, case["out_channels"], case["bias"], case["bias_bits"])
        q_b = {}
        if quantized:
            q_b = dict(scale=[case["input_scale"] * s for s in filter_scales], zero_point=0)
            if len(filter_scales) == 1:
                q_b["scale"] = q_b["scale"][0]
        inputs.append(b.constant("bias", values, case["bias"], **q_b))
    elif case.get("omitted_bias_slot"):
        inputs.append(None)
    y = b.tensor("y", out_shape, io_type, **q_out)
    options = dict(padding=case["padding"], stride_h=case["stride_h"], stride_w=case["stride_w"],
                   dilation_h_factor=case["dilation_h"], dilation_w_factor=case["dilation_w"],
                   fused_activation_function=case["activation"])
    if depthwise:
        b.op("DEPTHWISE_CONV_2D", inputs, [y], depth_multiplier=case["depth_multiplier"], **options)
    else:
        b.op("CONV_2D", inputs, [y], **options)
    b.output(y)
    x_values = random_inputs(rng, in_shape, io_type.lower(), SAMPLES, zero_point=case.get("input_zp", 0),
                             style=case["style"])
    return b.build(), [x_values]


def run_case(op: str, case: dict):
    run_conv_case(case, depthwise=(op == "DEPTHWISE_CONV_2D"))


def run_conv_case(case: dict, depthwise: bool):
    note_case(**case)
    data, inputs = build_conv(case, depthwise)
    label = ("DEPTHWISE_CONV_2D " if depthwise else "CONV_2D ") + case["kind"]
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("kind", KINDS)
def test_conv_2d_matches_tflm(kind):
    run_examples(conv_cases(depthwise=False, kind=kind), lambda case: run_conv_case(case, depthwise=False))


@pytest.mark.parametrize("kind", KINDS)
def test_depthwise_conv_2d_matches_tflm(kind):
    run_examples(conv_cases(depthwise=True, kind=kind), lambda case: run_conv_case(case, depthwise=True))


@pytest.mark.parametrize("kind", ["INT8", "FLOAT32"])
def test_depthwise_with_an_omitted_bias_slot_is_refused_where_tflm_crashes(kind):
    # Three inputs with the bias as -1: TFLM's CalculateOpDataDepthwiseConv takes
    # has_bias = (inputs->size == 3) and frees the null bias tensor (a segfault).
    case = dict(batch=1, height=3, width=3, kernel_h=2, kernel_w=2, stride_h=1, stride_w=1, dilation_h=1,
                dilation_w=1, padding="SAME", in_channels=2, depth_multiplier=1, out_channels=2, kind=kind,
                activation="NONE", seed=0, style="uniform", per_channel=False, input_scale=1.0, output_scale=1.0,
                filter_scales=[0.5], input_zp=0, output_zp=0, bias=None, bias_bits=0, omitted_bias_slot=True)
    data, inputs = build_conv(case, depthwise=True)
    assert_tflm_aborts(data, inputs)
    with pytest.raises(ModelError):
        Interpreter.from_bytes(data)


@pytest.mark.parametrize("depthwise", [True, False])
def test_huge_strides_over_a_small_image_stay_small_and_exact(depthwise):
    """Stride 3000 with a 1x1 kernel: one output pixel. The stride-phase layouts would hold
    3000² phase images; they must not be chosen (memory), and the value must still be TFLM's."""
    case = dict(batch=1, height=10, width=10, kernel_h=1, kernel_w=1, stride_h=3000, stride_w=3000, dilation_h=1,
                dilation_w=1, padding="VALID", in_channels=4, depth_multiplier=1, out_channels=4, groups=1,
                kind="INT8", activation="NONE", seed=1, style="uniform", per_channel=True, input_scale=0.5,
                output_scale=0.25, filter_scales=[0.01, 0.02, 0.03, 0.04], input_zp=3, output_zp=-2, bias="INT32",
                bias_bits=12, omitted_bias_slot=False)
    data, inputs = build_conv(case, depthwise=depthwise)
    it = Interpreter.from_bytes(data)
    kernel = it.kernels[0]
    assert not getattr(kernel, "channel_major", False) and not getattr(kernel, "nhwc_phases", False)
    label = "DEPTHWISE_CONV_2D huge stride" if depthwise else "CONV_2D huge stride"
    assert check_model(data, inputs, label=label).compared


def _large_case(**changes):
    case = dict(batch=2, height=24, width=24, kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, dilation_h=1,
                dilation_w=1, padding="SAME", in_channels=8, depth_multiplier=1, out_channels=8, groups=1,
                kind="INT8", activation="RELU6", seed=7, style="uniform", per_channel=True, input_scale=0.05,
                output_scale=0.04, filter_scales=None, input_zp=-3, output_zp=-128, bias="INT32", bias_bits=14,
                omitted_bias_slot=False)
    case.update(changes)
    if case["filter_scales"] is None:
        rng = np.random.default_rng(case["seed"])
        case["filter_scales"] = [float(s) for s in rng.uniform(0.002, 0.02, case["out_channels"])]
    return case


# Inputs large enough for the blocked paths the small hypothesis shapes never reach: channel-major
# and NHWC stride phases, strided int8 phases, per-channel constants tiled into rows, the
# scale-folded GEMM, the one-channel depthwise GEMM, the ReLU clamp skipping the negative step
# (and not skipping it without one), the split requantization of huge biases.
LARGE_DEPTHWISE = {
    "channel_major_s1": _large_case(height=48, width=48),
    "channel_major_s2": _large_case(height=48, width=48, stride_h=2, stride_w=2),
    "channel_major_dm2_no_activation": _large_case(height=40, width=40, depth_multiplier=2, out_channels=16,
                                                   activation="NONE", output_zp=2),
    "nhwc_s1_no_activation": _large_case(height=12, width=12, in_channels=64, out_channels=64, activation="NONE",
                                         output_zp=5),
    "nhwc_s2_valid": _large_case(height=25, width=25, in_channels=48, out_channels=48, stride_h=2, stride_w=2,
                                 padding="VALID"),
    "nhwc_dilated": _large_case(height=16, width=16, in_channels=32, out_channels=32, dilation_h=2, dilation_w=2),
    "one_channel_gemm": _large_case(height=64, width=64, in_channels=1, depth_multiplier=8, out_channels=8,
                                    stride_h=2, stride_w=2),
    # Found by the mutation fuzzer: an int8 input whose zero point lies outside int8. TFLM takes
    # it; the padded taps then hold a value no int8 holds, and the exactness bounds must cover it.
    "zero_point_outside_int8_s2": _large_case(height=20, width=20, stride_h=2, stride_w=2, in_channels=24,
                                              out_channels=24, input_zp=-8323073, activation="NONE", output_zp=0),
    "huge_biases": _large_case(height=12, width=12, in_channels=40, out_channels=40, bias_bits=31,
                               output_scale=1e-3, activation="NONE", output_zp=0),
}
LARGE_CONV = {
    "rgb_s2": _large_case(height=48, width=48, in_channels=3, out_channels=8, stride_h=2, stride_w=2),
    "pointwise_scale_folded": _large_case(height=32, width=32, kernel_h=1, kernel_w=1, in_channels=8,
                                          out_channels=16),
    "pointwise_wide": _large_case(height=12, width=12, kernel_h=1, kernel_w=1, in_channels=64, out_channels=64,
                                  activation="NONE", output_zp=3),
    "zero_point_outside_int8": _large_case(height=8, width=8, in_channels=3, out_channels=4, input_zp=-8323073,
                                           activation="NONE", output_zp=0),
    "output_zero_point_outside_int8": _large_case(height=8, width=8, in_channels=3, out_channels=4, output_zp=200,
                                                  activation="NONE"),
    "k3_split_mode": _large_case(height=10, width=10, in_channels=16, out_channels=24, bias_bits=31,
                                 output_scale=1e-3, activation="NONE", output_zp=0),
    "16x8_no_bias_k1": _large_case(height=20, width=20, kernel_h=1, kernel_w=1, in_channels=4, out_channels=8,
                                   kind="INT16", input_zp=0, output_zp=0, bias=None, activation="NONE"),
}


@pytest.mark.parametrize("name", sorted(LARGE_DEPTHWISE))
def test_large_depthwise_matches_tflm(name):
    run_conv_case(LARGE_DEPTHWISE[name], depthwise=True)


@pytest.mark.parametrize("name", sorted(LARGE_CONV))
def test_large_conv_matches_tflm(name):
    run_conv_case(LARGE_CONV[name], depthwise=False)
