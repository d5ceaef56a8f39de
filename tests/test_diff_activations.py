"""LOGISTIC, TANH, RELU, RELU6, LEAKY_RELU, HARD_SWISH and PRELU against TFLM: int8, int16 and
float32, shapes of rank 1-5, scales from 1e-6 to 1e3 (and powers of two, for the int16 fast
paths), the fixed output quantization LOGISTIC and TANH expect and, rarely, other output
parameters, LEAKY_RELU alphas of either sign, PRELU alphas broadcast against the input."""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    assert_tflm_aborts,
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

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder

OPS_AND_KINDS = [(op, kind) for op in ("LOGISTIC", "TANH", "RELU", "RELU6", "LEAKY_RELU", "PRELU")
                 for kind in ("INT8", "INT16", "FLOAT32")] + [("HARD_SWISH", "INT8"), ("HARD_SWISH", "FLOAT32")]
DIFF_OPS = {op for op, _ in OPS_AND_KINDS}  # the ops this module tests (see test_diff_regressions.py)
# The output quantization the int8/int16 LOGISTIC and TANH kernels assume.
FIXED_OUTPUT = {("LOGISTIC", "INT8"): (1 / 256, -128), ("TANH", "INT8"): (1 / 128, 0),
                ("LOGISTIC", "INT16"): (2.0 ** -15, 0), ("TANH", "INT16"): (2.0 ** -15, 0)}
power_of_two_scales = st.integers(-15, 3).map(lambda k: 2.0 ** k)
alphas = st.one_of(st.sampled_from([0.0, 0.2, 0.01, -0.5, 1.0, 1.5, -3.0]), st.floats(-4, 4, width=32))


def shape_strategy():
    return st.integers(1, 5).flatmap(lambda rank: st.lists(dims(1, 7), min_size=rank, max_size=rank))


@st.composite
def activation_cases(draw, op: str, kind: str):
    shape = draw(shape_strategy())
    if op == "PRELU" and kind == "FLOAT32":
        # TFLM's float PRELU is 4-D only and aborts on rank 5 (see the test below).
        shape = shape[:4]
    case = dict(op=op, kind=kind, shape=shape, seed=draw(seeds), style=draw(input_styles))
    if op == "LEAKY_RELU":
        case["alpha"] = draw(alphas)
    if op == "PRELU":
        # alpha broadcasts against the input: a suffix of its shape with some dims set to 1.
        kept = draw(st.integers(0, len(shape)))
        case["alpha_shape"] = [d if draw(st.booleans()) else 1 for d in shape[len(shape) - kept:]]
        case["alpha_constant"] = draw(st.integers(0, 3)) > 0
    if kind == "FLOAT32":
        return case
    if kind == "INT16":
        case["input_scale"] = draw(st.one_of(scales(), power_of_two_scales))
        case["input_zp"] = draw(st.sampled_from([0] * 12 + [2]))
    else:
        case["input_scale"] = draw(scales())
        case["input_zp"] = draw(zero_points("INT8"))
    if (op, kind) in FIXED_OUTPUT:
        scale, zp = FIXED_OUTPUT[(op, kind)]
        variant = draw(st.sampled_from(["fixed"] * 8 + ["doubled", "any"]))
        case["output_scale"] = {"fixed": scale, "doubled": scale * 2}.get(variant) or draw(scales())
        case["output_zp"] = draw(st.sampled_from([zp] * 12 + [zp + 1]))
    elif kind == "INT16":
        case["output_scale"] = draw(st.one_of(scales(), power_of_two_scales))
        case["output_zp"] = draw(st.sampled_from([0] * 12 + [-3]))
    else:
        case["output_scale"] = draw(scales())
        case["output_zp"] = draw(zero_points("INT8"))
    if op == "PRELU":
        case["alpha_scale"] = draw(scales(-4, 1))
        case["alpha_zp"] = draw(zero_points("INT8"))
    return case


def build_activation(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind, op = case["kind"], case["op"]
    dtype = np.dtype(kind.lower())
    quantized = kind != "FLOAT32"
    b = ModelBuilder()
    x = b.input("x", case["shape"], kind,
                **(dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}))
    inputs = [random_inputs(rng, case["shape"], dtype, SAMPLES, zero_point=case.get("input_zp", 0),
                            scale=case.get("input_scale", 1.0) if quantized else 0.05, style=case["style"])]
    op_inputs = [x]
    if op == "PRELU":
        alpha_type = "INT8" if kind == "INT16" else kind
        q_alpha = dict(scale=case["alpha_scale"], zero_point=case["alpha_zp"]) if quantized else {}
        alpha_values = random_inputs(rng, case["alpha_shape"], np.dtype(alpha_type.lower()), SAMPLES,
                                     zero_point=case.get("alpha_zp", 0), scale=0.01, style="uniform")
        if case["alpha_constant"]:
            op_inputs.append(b.constant("alpha", alpha_values[0], alpha_type, **q_alpha))
        else:
            op_inputs.append(b.input("alpha", case["alpha_shape"], alpha_type, **q_alpha))
            inputs.append(alpha_values)
    y = b.tensor("y", case["shape"], kind,
                 **(dict(scale=case["output_scale"], zero_point=case["output_zp"]) if quantized else {}))
    options = {"alpha": case["alpha"]} if op == "LEAKY_RELU" else {}
    b.op(op, op_inputs, [y], **options)
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_activation(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_activation_matches_tflm(op, kind):
    run_examples(activation_cases(op, kind), lambda case: run_case(op, case))


def test_float_prelu_of_rank_5_is_refused_where_tflm_aborts():
    # TFLM's BroadcastPrelu4DSlowFloat CHECK-fails (the process aborts) on a rank-5 input.
    case = dict(op="PRELU", kind="FLOAT32", shape=[1, 1, 1, 1, 2], seed=0, style="uniform", alpha_shape=[],
                alpha_constant=False)
    data, inputs = build_activation(case)
    assert_tflm_aborts(data, inputs)
    with pytest.raises((ModelError, UnsupportedOpError)):
        Interpreter.from_bytes(data)
