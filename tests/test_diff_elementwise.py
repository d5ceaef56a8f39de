"""ADD, SUB, MUL, MAXIMUM, MINIMUM and SQUARED_DIFFERENCE against TFLM: numpy broadcasting up to
rank 5 (with scalars and constant second operands), int8 / int16 / int32 / int64 / float32, every
fused activation, scales from 1e-6 to 1e3 and zero points at the int8 limits.

ADD and SUB CHECK-fail in TFLM (the process aborts) when the output rescale
2 * max(s1, s2) / (2^L * s_out) is not below 1, so the strategy keeps under that bound and a
separate test pins that microref rejects such a model.
"""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    activations,
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

OPS_AND_KINDS = [
    ("ADD", "INT8"), ("ADD", "INT16"), ("ADD", "FLOAT32"), ("ADD", "INT32"),
    ("SUB", "INT8"), ("SUB", "INT16"), ("SUB", "FLOAT32"), ("SUB", "INT32"),
    ("MUL", "INT8"), ("MUL", "INT16"), ("MUL", "FLOAT32"), ("MUL", "INT32"),
    ("MAXIMUM", "INT8"), ("MAXIMUM", "INT16"), ("MAXIMUM", "FLOAT32"), ("MAXIMUM", "INT32"), ("MAXIMUM", "INT64"),
    ("MINIMUM", "INT8"), ("MINIMUM", "INT16"), ("MINIMUM", "FLOAT32"), ("MINIMUM", "INT32"), ("MINIMUM", "INT64"),
    ("SQUARED_DIFFERENCE", "INT8"), ("SQUARED_DIFFERENCE", "INT16"), ("SQUARED_DIFFERENCE", "FLOAT32"),
    ("SQUARED_DIFFERENCE", "INT32"),
]
QUANTIZED = ("INT8", "INT16")
DIFF_OPS = {op for op, _ in OPS_AND_KINDS}  # the ops this module tests (see test_diff_regressions.py)
FUSED_ACTIVATION_OPS = ("ADD", "SUB", "MUL")
ADD_SUB_LEFT_SHIFT = {"INT8": 20, "INT16": 15}


@st.composite
def broadcast_shapes(draw):
    """(input1 shape, input2 shape, output shape) that broadcast the numpy way."""
    rank = draw(st.sampled_from([0, 1, 2, 3, 4, 4, 5]))
    out = [draw(dims(1, 6)) for _ in range(rank)]
    shapes = []
    for _ in range(2):
        kept = draw(st.integers(0, rank)) if draw(st.integers(0, 2)) == 0 else rank
        suffix = out[rank - kept:]
        shapes.append([d if draw(st.integers(0, 2)) else 1 for d in suffix])
    full = list(np.broadcast_shapes(tuple(shapes[0]), tuple(shapes[1])))
    # The output must be the broadcast shape; where neither input has a dim, it comes out 1.
    return shapes[0], shapes[1], full


def add_sub_output_rescale(case) -> float:
    twice_max = 2.0 * max(float(np.float32(case["scale1"])), float(np.float32(case["scale2"])))
    return twice_max / ((1 << ADD_SUB_LEFT_SHIFT[case["kind"]]) * float(np.float32(case["output_scale"])))


@st.composite
def elementwise_cases(draw, op: str, kind: str):
    shape1, shape2, out_shape = draw(broadcast_shapes())
    case = dict(op=op, kind=kind, shape1=shape1, shape2=shape2, out_shape=out_shape,
                constant2=draw(st.integers(0, 2)) == 0, seed=draw(seeds), style=draw(input_styles))
    if op in FUSED_ACTIVATION_OPS:
        case["activation"] = draw(activations)
    if op == "ADD":
        case["pot_scale_int16"] = draw(st.booleans())
    if kind in QUANTIZED:
        for name in ("scale1", "scale2", "output_scale"):
            case[name] = draw(scales())
        if kind == "INT8":
            for name in ("zp1", "zp2", "output_zp"):
                case[name] = draw(zero_points("INT8"))
        else:
            # int16 kernels expect zero points of 0; rarely try another.
            for name in ("zp1", "zp2", "output_zp"):
                case[name] = draw(st.sampled_from([0] * 12 + [1]))
        if op in ("ADD", "SUB"):
            assume(add_sub_output_rescale(case) < 0.999)
    return case


def quantization(case, which):
    if case["kind"] not in QUANTIZED:
        return {}
    names = {"1": ("scale1", "zp1"), "2": ("scale2", "zp2"), "out": ("output_scale", "output_zp")}[which]
    return dict(scale=case[names[0]], zero_point=case[names[1]])


def build_elementwise(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    dtype = np.dtype(kind.lower())
    b = ModelBuilder()
    x1 = b.input("x1", case["shape1"], kind, **quantization(case, "1"))
    inputs = [random_inputs(rng, case["shape1"], dtype, SAMPLES, zero_point=case.get("zp1", 0),
                            style=case["style"])]
    x2_values = random_inputs(rng, case["shape2"], dtype, SAMPLES, zero_point=case.get("zp2", 0),
                              style=case["style"])
    if case["constant2"]:
        x2 = b.constant("x2", x2_values[0], kind, **quantization(case, "2"))
    else:
        x2 = b.input("x2", case["shape2"], kind, **quantization(case, "2"))
        inputs.append(x2_values)
    y = b.tensor("y", case["out_shape"], kind, **quantization(case, "out"))
    options = {}
    if "activation" in case:
        options["fused_activation_function"] = case["activation"]
    if "pot_scale_int16" in case:
        options["pot_scale_int16"] = case["pot_scale_int16"]
    b.op(case["op"], [x1, x2], [y], **options)
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_elementwise(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_elementwise_matches_tflm(op, kind):
    run_examples(elementwise_cases(op, kind), lambda case: run_case(op, case))


@pytest.mark.parametrize("op", ["ADD", "SUB"])
@pytest.mark.parametrize("kind, output_scale", [("INT8", 1e-6), ("INT8", 2.0 / (1 << 20)), ("INT16", 1e-6)])
def test_add_sub_reject_output_rescale_where_tflm_aborts(op, kind, output_scale):
    # 2 * max(s1, s2) / (2^L * s_out) >= 1: QuantizeMultiplierSmallerThanOneExp CHECK-fails in TFLM.
    case = dict(op=op, kind=kind, shape1=[4], shape2=[4], out_shape=[4], constant2=False, seed=0,
                style="uniform", activation="NONE", scale1=1.0, scale2=0.5, output_scale=output_scale,
                zp1=0, zp2=0, output_zp=0)
    assert add_sub_output_rescale(case) >= 1.0
    data, inputs = build_elementwise(case)
    assert_tflm_aborts(data, inputs)
    with pytest.raises(ModelError):
        Interpreter.from_bytes(data)
