"""TRANSPOSE_CONV against TFLM, over its whole parameter space.

int8 (per-tensor and per-channel filters), 16x8 with int64 and int16 bias, float32; SAME and
VALID padding; strides 1-4 and, rarely, 0 or negative (TFLM accepts them); output sizes that TF
would give and arbitrary ones (TFLM takes the size from the output tensor and never checks it);
three inputs, or a fourth written as -1; every fused activation; scales from 1e-6 to 1e3 and
zero points at the type limits. Rarely, tensors of another type than the kernel reads: an int64
(int8 kernel) or int32 (16x8 kernel, with twice the values) bias and an int16 filter of a 16x8
kernel, whose bytes TFLM reinterprets.
"""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    activations,
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
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder

KINDS = ["INT8", "INT16", "FLOAT32"]
DIFF_OPS = {"TRANSPOSE_CONV"}  # the ops this module tests (see test_diff_regressions.py)

strides = st.sampled_from([1] * 5 + [2] * 4 + [3, 4, 0, -1])


def tf_output_size(padding: str, size: int, kernel: int, stride: int) -> int:
    """The output size TensorFlow gives a transpose convolution (what a converter writes)."""
    stride = max(stride, 1)
    return size * stride if padding == "SAME" else (size - 1) * stride + kernel


@st.composite
def transpose_conv_cases(draw, kind: str):
    case = dict(kind=kind, batch=draw(st.integers(1, 2)), height=draw(dims(1, 6)), width=draw(dims(1, 6)),
                in_channels=draw(dims(1, 5)), out_channels=draw(dims(1, 5)),
                kernel_h=draw(dims(1, 5)), kernel_w=draw(dims(1, 5)),
                stride_h=draw(strides), stride_w=draw(strides), padding=draw(st.sampled_from(["SAME", "VALID"])),
                activation=draw(activations), seed=draw(seeds), style=draw(input_styles))
    for axis, size in (("h", "height"), ("w", "width")):
        natural = tf_output_size(case["padding"], case[size], case[f"kernel_{axis}"], case[f"stride_{axis}"])
        # Mostly TF's size; sometimes any size (TFLM computes the padding from it and loops over it).
        case[f"out_{axis}"] = draw(st.sampled_from([natural] * 4 + [None])) or draw(dims(1, 14))
    # Extra filter channels past the input depth: TFLM reads only the first input_depth of them.
    case["extra_filter_depth"] = draw(st.sampled_from([0] * 9 + [2]))
    case["bias_slot"] = draw(st.sampled_from(["bias", "bias", "none", "omitted"]))
    if kind == "FLOAT32":
        case["bias"] = "FLOAT32"
        case["bias_bits"] = draw(st.integers(0, 16))
        return case
    case["per_channel"] = draw(st.booleans())
    n_scales = case["out_channels"] if case["per_channel"] else 1
    case["input_scale"] = draw(scales())
    case["output_scale"] = draw(scales())
    case["filter_scales"] = draw(st.lists(scales(), min_size=n_scales, max_size=n_scales))
    case["bias_bits"] = draw(st.sampled_from([0, 8, 16, 20, 24, 31]) | st.integers(0, 31))
    if kind == "INT16":
        # The 16x8 kernel applies no zero point; rarely give one to see TFLM ignore it.
        case["input_zp"] = draw(st.sampled_from([0] * 9 + [5]))
        case["output_zp"] = draw(st.sampled_from([0] * 9 + [-7]))
        case["bias"] = draw(st.sampled_from(["INT64"] * 6 + ["INT16"] * 3 + ["INT32"]))
        case["filter_type"] = "INT16" if not case["per_channel"] and draw(st.integers(0, 9)) == 0 else "INT8"
    else:
        case["input_zp"] = draw(zero_points("INT8"))
        case["output_zp"] = draw(zero_points("INT8"))
        case["bias"] = draw(st.sampled_from(["INT32"] * 9 + ["INT64"]))
        case["filter_type"] = "INT8"
    return case


def build_transpose_conv(case: dict):
    """The model and its input samples for one case."""
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    quantized = kind != "FLOAT32"
    in_shape = [case["batch"], case["height"], case["width"], case["in_channels"]]
    out_shape = [case["batch"], case["out_h"], case["out_w"], case["out_channels"]]
    filter_shape = [case["out_channels"], case["kernel_h"], case["kernel_w"],
                    case["in_channels"] + case.get("extra_filter_depth", 0)]
    filter_type = case.get("filter_type", kind)

    b = ModelBuilder()
    shape_tensor = b.constant("output_shape", np.array(out_shape, np.int32))
    q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}
    q_out = dict(scale=case["output_scale"], zero_point=case["output_zp"]) if quantized else {}
    filter_scales = case.get("filter_scales") or [1.0]
    q_w = dict(scale=filter_scales if len(filter_scales) > 1 else filter_scales[0], zero_point=0,
               quantized_dimension=0) if quantized else {}
    w = b.constant("filter", quantized_values(rng, filter_shape, filter_type), filter_type, **q_w)
    x = b.input("x", in_shape, kind, **q_in)
    inputs = [shape_tensor, w, x]
    if case["bias_slot"] == "bias":
        # A 16x8 kernel reads an int32 bias as int64 words: give it twice the values it reads.
        count = case["out_channels"] * (2 if kind == "INT16" and case["bias"] == "INT32" else 1)
        values = bias_values(rng, count, case["bias"], case["bias_bits"])
        if case["bias"] == "INT16":
            values = rng.integers(-(2 ** 15), 2 ** 15, count).astype(np.int16)
        q_b = {}
        if quantized:
            q_b = dict(scale=float(case["input_scale"] * filter_scales[0]), zero_point=0)
        inputs.append(b.constant("bias", values, case["bias"], **q_b))
    elif case["bias_slot"] == "omitted":
        inputs.append(None)
    y = b.tensor("y", out_shape, kind, **q_out)
    b.op("TRANSPOSE_CONV", inputs, [y], padding=case["padding"], stride_h=case["stride_h"],
         stride_w=case["stride_w"], fused_activation_function=case["activation"])
    b.output(y)
    x_values = random_inputs(rng, in_shape, kind.lower(), SAMPLES, zero_point=case.get("input_zp", 0),
                             style=case["style"])
    return b.build(), [x_values]


def run_case(op: str, case: dict):
    assert op == "TRANSPOSE_CONV"
    note_case(**case)
    data, inputs = build_transpose_conv(case)
    label = f"TRANSPOSE_CONV {case['kind']}"
    record(check_model(data, inputs, label=label), label)


def test_transpose_conv_int8_matches_tflm():
    run_examples(transpose_conv_cases("INT8"), lambda case: run_case("TRANSPOSE_CONV", case))


def test_transpose_conv_16x8_matches_tflm():
    run_examples(transpose_conv_cases("INT16"), lambda case: run_case("TRANSPOSE_CONV", case), fraction=0.6)


def test_transpose_conv_float32_matches_tflm():
    run_examples(transpose_conv_cases("FLOAT32"), lambda case: run_case("TRANSPOSE_CONV", case), fraction=0.6)


def test_transpose_conv_large_shapes_match_tflm():
    """Image-sized cases, where the fast paths (whole-image products, phase gathers) do the work."""
    base = dict(batch=1, in_channels=16, out_channels=8, kernel_h=3, kernel_w=3, padding="SAME",
                activation="RELU", style="uniform", extra_filter_depth=0, bias_slot="bias", bias_bits=20,
                per_channel=True, input_scale=0.02, output_scale=0.05, input_zp=-3, output_zp=4)
    for seed, (kind, bias, stride, hw) in enumerate([("INT8", "INT32", 2, 24), ("INT16", "INT64", 2, 16),
                                                     ("FLOAT32", "FLOAT32", 2, 20), ("INT8", "INT32", 1, 17),
                                                     ("FLOAT32", "FLOAT32", 3, 9)]):
        case = dict(base, kind=kind, bias=bias, stride_h=stride, stride_w=stride, height=hw, width=hw + 3,
                    out_h=hw * stride, out_w=(hw + 3) * stride, seed=seed, filter_type="INT8",
                    filter_scales=[0.01 + 0.002 * c for c in range(8)])
        if kind == "INT16":
            case.update(input_zp=0, output_zp=0)
        run_case("TRANSPOSE_CONV", case)


def test_transpose_conv_tflm_test_cases_match():
    """Shapes of TFLM's transpose_conv_test.cc: 1x4x4x2 input, 1x3x3x2 filter, 1x4x4x1 output, SAME,
    stride 1; and its 2x2-filter, stride 2, 1x2x2x1 -> 1x4x4x1 VALID case."""
    for seed, (h, k, stride, out, padding) in enumerate([(4, 3, 1, 4, "SAME"), (2, 2, 2, 4, "VALID")]):
        for kind in KINDS:
            case = dict(kind=kind, batch=1, height=h, width=h, in_channels=2 if k == 3 else 1, out_channels=1,
                        kernel_h=k, kernel_w=k, stride_h=stride, stride_w=stride, padding=padding, out_h=out,
                        out_w=out, activation="NONE", seed=seed, style="uniform", extra_filter_depth=0,
                        bias_slot="bias", bias_bits=10, bias="FLOAT32", filter_type=kind)
            if kind != "FLOAT32":
                case.update(per_channel=False, input_scale=0.5, output_scale=1.0, filter_scales=[0.25],
                            input_zp=0, output_zp=0, bias="INT32" if kind == "INT8" else "INT64", filter_type="INT8")
            run_case("TRANSPOSE_CONV", case)


@pytest.mark.parametrize("kind, bias", [("INT8", "INT32"), ("INT16", "INT64"), ("INT16", "INT16"),
                                        ("FLOAT32", "FLOAT32")])
def test_transpose_conv_scratch_in_the_arena_plan(kind, bias):
    """The int32 / int64 accumulator (and the widened int16 bias) TFLM requests: the plan's head
    equals the wheel's."""
    from planner_support import tflm_allocations
    case = dict(kind=kind, bias=bias, batch=1, height=5, width=6, in_channels=3, out_channels=4, kernel_h=3,
                kernel_w=3, stride_h=2, stride_w=2, padding="SAME", out_h=10, out_w=12, activation="NONE", seed=0,
                style="uniform", extra_filter_depth=0, bias_slot="bias", bias_bits=10, per_channel=True,
                input_scale=0.1, output_scale=0.2, filter_scales=[0.01, 0.02, 0.03, 0.04], input_zp=0, output_zp=0,
                filter_type="FLOAT32" if kind == "FLOAT32" else "INT8")
    data, _ = build_transpose_conv(case)
    assert Interpreter.from_bytes(data).plan.arena_bytes == tflm_allocations(data)[0]
