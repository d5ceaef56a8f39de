"""QUANTIZE and DEQUANTIZE against TFLM: every input type x output type pair (the ones TFLM has no
kernel for must be refused by both), float inputs on exact half-way points and beyond the int32
range, requantization by scale ratios from 1e-9 to 1e9, zero points at the type limits."""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    check_model,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    zero_points,
)
from hypothesis import strategies as st

from interp.builder import ModelBuilder

QUANTIZE_INPUTS = ["FLOAT32", "INT8", "UINT8", "INT16", "INT32"]
QUANTIZE_OUTPUTS = ["INT8", "UINT8", "INT16", "INT32"]
DEQUANTIZE_INPUTS = ["INT8", "UINT8", "INT16"]
DIFF_OPS = {"QUANTIZE", "DEQUANTIZE"}  # the ops this module tests (see test_diff_regressions.py)
# Every pair, including those TFLM has no kernel for (both must refuse them).
QUANTIZE_PAIRS = [(i, o) for i in QUANTIZE_INPUTS for o in QUANTIZE_OUTPUTS]
# The pairs EvalQuantizeReference has a kernel for (quantize.cc, quantize_common.cc).
VALID_QUANTIZE_PAIRS = {("FLOAT32", "INT8"), ("FLOAT32", "INT16"), ("INT32", "INT8"), ("INT32", "INT16"),
                        ("INT16", "INT8"), ("INT16", "INT16"), ("INT16", "INT32"), ("INT8", "INT8"),
                        ("INT8", "UINT8"), ("INT8", "INT16"), ("INT8", "INT32"), ("UINT8", "INT8")}


def any_zero_point(type_name):
    if type_name == "INT16":
        # int16 kernels generally want zero point 0; keep other values rare.
        return st.one_of(st.just(0), st.just(0), st.just(0), zero_points("INT16"))
    if type_name in ("INT8", "UINT8"):
        return zero_points(type_name)
    return st.sampled_from([0, 0, 0, 1, -1, 1000, -(2 ** 31), 2 ** 31 - 1])


@st.composite
def quantize_cases(draw, op: str, in_type: str, out_type: str = "FLOAT32"):
    rank = draw(st.integers(1, 4))
    case = dict(op=op, in_type=in_type, shape=draw(st.lists(dims(1, 6), min_size=rank, max_size=rank)),
                seed=draw(seeds), style=draw(input_styles))
    case["out_type"] = out_type
    if in_type != "FLOAT32":
        case["input_scale"] = draw(scales())
        case["input_zp"] = draw(any_zero_point(in_type))
        # Rarely, per-channel input parameters (QUANTIZE and DEQUANTIZE read only the first).
        case["input_channels"] = draw(st.sampled_from([1] * 9 + [case["shape"][-1]]))
    if case["out_type"] != "FLOAT32":
        case["output_scale"] = draw(scales())
        case["output_zp"] = draw(any_zero_point(case["out_type"]))
        # Per-channel output quantization is a TFLM Prepare failure.
        case["output_channels"] = draw(st.sampled_from([1] * 9 + [2]))
    return case


def quantization_of(case, prefix, shape):
    scale_key = f"{prefix}_scale"
    if scale_key not in case:
        return {}
    channels = case[f"{prefix}_channels"]
    if channels == 1:
        return dict(scale=case[scale_key], zero_point=case[f"{prefix}_zp"])
    return dict(scale=[case[scale_key] * (1 + i / 8) for i in range(channels)], zero_point=case[f"{prefix}_zp"],
                quantized_dimension=len(shape) - 1)


def build_quantize(case: dict):
    rng = np.random.default_rng(case["seed"])
    shape = case["shape"]
    b = ModelBuilder()
    x = b.input("x", shape, case["in_type"], **quantization_of(case, "input", shape))
    y = b.tensor("y", shape, case["out_type"], **quantization_of(case, "output", shape))
    b.op(case["op"], [x], [y])
    b.output(y)
    xs = random_inputs(rng, shape, np.dtype(case["in_type"].lower()), SAMPLES, zero_point=case.get("input_zp", 0),
                       scale=case.get("output_scale", 1.0), style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_quantize(case)
    label = f"{op} {case['in_type']}->{case['out_type']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("in_type, out_type", QUANTIZE_PAIRS, ids=[f"{i}-{o}" for i, o in QUANTIZE_PAIRS])
def test_quantize_matches_tflm(in_type, out_type):
    # A pair TFLM has no kernel for only needs to be seen refused.
    fraction = 1.0 if (in_type, out_type) in VALID_QUANTIZE_PAIRS else 0.2
    run_examples(quantize_cases("QUANTIZE", in_type, out_type), lambda case: run_case("QUANTIZE", case), fraction)


@pytest.mark.parametrize("in_type", DEQUANTIZE_INPUTS)
def test_dequantize_matches_tflm(in_type):
    run_examples(quantize_cases("DEQUANTIZE", in_type), lambda case: run_case("DEQUANTIZE", case))
