"""FULLY_CONNECTED against TFLM: input ranks 1-4 flattened to rows, per-tensor (with the weight
zero point and the bias-scale check) and per-channel weights, int4 weights, 16x8 with int32 and
int64 bias, an omitted bias written as -1, float32, keep_num_dims, every fused activation,
extreme scales and zero points."""
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

from interp.builder import ModelBuilder

KINDS = ["INT8", "INT4", "INT16", "FLOAT32"]
DIFF_OPS = {"FULLY_CONNECTED"}  # the ops this module tests (see test_diff_regressions.py)


@st.composite
def fc_cases(draw, kind: str):
    rows = draw(dims(1, 5))
    depth = draw(dims(1, 24))
    units = draw(dims(1, 12))
    rank = draw(st.integers(1 if rows == 1 else 2, 4))
    # Split the rows over the leading dims of the input.
    lead = [rows] + [1] * (rank - 2) if rank >= 2 else []
    if rank >= 3 and rows % 2 == 0:
        lead = [2, rows // 2] + [1] * (rank - 3)
    case = dict(kind=kind, input_shape=lead + [depth], units=units, rows=rows,
                keep_num_dims=draw(st.booleans()), activation=draw(activations),
                seed=draw(seeds), style=draw(input_styles),
                # Without a bias, the omitted input is sometimes listed as -1.
                omitted_bias_slot=draw(st.booleans()))
    if kind == "FLOAT32":
        case["bias"] = draw(st.sampled_from([None, "FLOAT32"]))
        case["bias_bits"] = draw(st.integers(0, 16))
        return case
    io_type = "INT16" if kind == "INT16" else "INT8"
    # int4 per-channel is a TFLM rejection; keep it rare.
    case["per_channel"] = draw(st.booleans()) if kind != "INT4" else draw(st.sampled_from([False] * 7 + [True]))
    n_scales = units if case["per_channel"] else 1
    case["input_scale"] = draw(scales())
    case["output_scale"] = draw(scales())
    case["weight_scales"] = draw(st.lists(scales(), min_size=n_scales, max_size=n_scales))
    # TFLM applies a per-tensor weight zero point (it should be 0) and ignores a per-channel one.
    case["weight_zp"] = draw(st.sampled_from([0, 0, 0, 3, -128, 127])) if kind == "INT8" else 0
    if io_type == "INT16":
        case["input_zp"] = draw(st.sampled_from([0] * 9 + [5]))
        case["output_zp"] = draw(st.sampled_from([0] * 9 + [-7]))
        case["bias"] = draw(st.sampled_from([None, "INT32", "INT64"]))
    else:
        case["input_zp"] = draw(zero_points("INT8"))
        case["output_zp"] = draw(zero_points("INT8"))
        case["bias"] = draw(st.sampled_from([None, "INT32", "INT32"]))
    case["bias_bits"] = draw(st.sampled_from([0, 8, 16, 20, 24, 31]) | st.integers(0, 31))
    # A per-tensor bias whose scale is not input*weight scale fails TFLM's Prepare.
    case["bias_scale_factor"] = draw(st.sampled_from([1.0] * 9 + [1.5]))
    return case


def build_fc(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    io_type = {"INT4": "INT8"}.get(kind, kind)
    weight_type = {"INT4": "INT4", "INT16": "INT8"}.get(kind, kind)
    quantized = kind != "FLOAT32"
    depth, units = case["input_shape"][-1], case["units"]
    out_shape = (case["input_shape"][:-1] + [units]) if case["keep_num_dims"] else [case["rows"], units]
    b = ModelBuilder()
    x = b.input("x", case["input_shape"], io_type,
                **(dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}))
    weight_scales = case.get("weight_scales") or [1.0]
    q_w = {}
    if quantized:
        q_w = dict(scale=weight_scales if len(weight_scales) > 1 else weight_scales[0],
                   zero_point=case["weight_zp"], quantized_dimension=0)
    w = b.constant("weights", quantized_values(rng, [units, depth], weight_type), weight_type, **q_w)
    inputs = [x, w]
    if case["bias"] is not None:
        q_b = {}
        if quantized:
            bias_scales = [case["input_scale"] * s * case["bias_scale_factor"] for s in weight_scales]
            q_b = dict(scale=bias_scales if len(bias_scales) > 1 else bias_scales[0], zero_point=0)
        inputs.append(b.constant("bias", bias_values(rng, units, case["bias"], case["bias_bits"]),
                                 case["bias"], **q_b))
    elif case.get("omitted_bias_slot"):
        inputs.append(None)
    y = b.tensor("y", out_shape, io_type,
                 **(dict(scale=case["output_scale"], zero_point=case["output_zp"]) if quantized else {}))
    b.op("FULLY_CONNECTED", inputs, [y], fused_activation_function=case["activation"],
         keep_num_dims=case["keep_num_dims"])
    b.output(y)
    xs = random_inputs(rng, case["input_shape"], io_type.lower(), SAMPLES, zero_point=case.get("input_zp", 0),
                       style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_fc(case)
    label = f"FULLY_CONNECTED {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("kind", KINDS)
def test_fully_connected_matches_tflm(kind):
    run_examples(fc_cases(kind), lambda case: run_case("FULLY_CONNECTED", case))
