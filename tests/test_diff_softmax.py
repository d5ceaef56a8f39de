"""SOFTMAX against TFLM: int8->int8, int8->int16, int16->int16 and float32, ranks 1-4, rows from
1 to a few hundred values, beta from 1e-3 to 1e2, input scales from 1e-6 to 1e3.

TFLM aborts the process (QuantizeMultiplierGreaterThanOne's CHECK) when beta * input_scale *
2^26 <= 1 for int8 input, so the differential strategy stays above that bound and a separate
test pins that microref rejects such a model instead.
"""
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
from hypothesis import assume
from hypothesis import strategies as st

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder

KINDS = ["INT8", "INT8_INT16", "INT16", "FLOAT32"]  # input type, and output type when it differs
DIFF_OPS = {"SOFTMAX"}  # the ops this module tests (see test_diff_regressions.py)
OUTPUT_QUANTIZATION = {"INT8": (1 / 256, -128), "INT8_INT16": (1 / 65536, -32768), "INT16": (1 / 32768, 0)}
betas = st.one_of(st.sampled_from([1.0, 0.5, 2.0]), st.floats(-3, 2).map(lambda e: float(np.float32(10.0 ** e))))


@st.composite
def softmax_cases(draw, kind: str):
    rank = draw(st.integers(1, 4))
    shape = [draw(dims(1, 4)) for _ in range(rank - 1)] + [draw(st.one_of(dims(1, 40), st.integers(41, 400)))]
    case = dict(kind=kind, shape=shape, beta=draw(betas), seed=draw(seeds), style=draw(input_styles))
    if kind == "FLOAT32":
        return case
    case["input_scale"] = draw(scales())
    out_scale, out_zp = OUTPUT_QUANTIZATION[kind]
    case["input_zp"] = draw(zero_points("INT8")) if kind != "INT16" else draw(st.sampled_from([0] * 9 + [3]))
    # Rarely, output parameters TFLM's Prepare refuses.
    case["output_scale"] = draw(st.sampled_from([out_scale] * 19 + [out_scale * 1.01]))
    case["output_zp"] = draw(st.sampled_from([out_zp] * 19 + [out_zp + 1]))
    if kind != "INT16":
        assume(float(np.float32(case["beta"])) * float(np.float32(case["input_scale"])) * 2.0 ** 26 > 1.0)
    return case


def build_softmax(case: dict, *, input_scale=None):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    in_type = "INT8" if kind.startswith("INT8") else kind
    out_type = "INT16" if kind.endswith("INT16") else in_type
    b = ModelBuilder()
    q_in = q_out = {}
    if kind != "FLOAT32":
        q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"])
        q_out = dict(scale=case["output_scale"], zero_point=case["output_zp"])
    x = b.input("x", case["shape"], in_type, **q_in)
    y = b.tensor("y", case["shape"], out_type, **q_out)
    b.op("SOFTMAX", [x], [y], beta=case["beta"])
    b.output(y)
    xs = random_inputs(rng, case["shape"], in_type.lower(), SAMPLES, zero_point=case.get("input_zp", 0),
                       style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_softmax(case)
    label = f"SOFTMAX {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("kind", KINDS)
def test_softmax_matches_tflm(kind):
    run_examples(softmax_cases(kind), lambda case: run_case("SOFTMAX", case))


@pytest.mark.parametrize("beta, input_scale", [(1.0, 2.0 ** -26), (1.0, 1e-9), (1e-3, 1e-6)])
def test_softmax_rejects_scales_where_tflm_aborts(beta, input_scale):
    # TFLM CHECK-fails (aborts the process) in QuantizeMultiplierGreaterThanOne here.
    case = dict(kind="INT8", shape=[1, 10], beta=beta, seed=0, style="uniform", input_scale=input_scale,
                input_zp=0, output_scale=1 / 256, output_zp=-128)
    data, inputs = build_softmax(case)
    assert_tflm_aborts(data, inputs)
    with pytest.raises(ModelError):
        Interpreter.from_bytes(data)
