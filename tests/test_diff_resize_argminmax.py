"""RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, ARG_MAX and ARG_MIN against TFLM.

Resizes: up- and down-sampling to sizes from 1 to 16, align_corners and half_pixel_centers in
every combination (both at once is a TFLM Prepare failure). Arg ops: ranks 1-4, every axis
(negative too), inputs full of ties (the first index wins), int8 and float32.
"""
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

RESIZE_CASES = [("RESIZE_NEAREST_NEIGHBOR", k) for k in ("INT8", "INT16", "FLOAT32")] + \
               [("RESIZE_BILINEAR", k) for k in ("INT8", "FLOAT32")]
ARG_CASES = [(op, k) for op in ("ARG_MAX", "ARG_MIN") for k in ("INT8", "FLOAT32")]
DIFF_OPS = {op for op, _ in RESIZE_CASES + ARG_CASES}  # the ops this module tests (see test_diff_regressions.py)


def quantization(case):
    if case["kind"] == "FLOAT32":
        return {}
    return dict(scale=case["scale"], zero_point=case["zero_point"])


@st.composite
def resize_cases(draw, op, kind):
    case = dict(op=op, kind=kind, batch=draw(st.integers(1, 2)), height=draw(dims(1, 9)), width=draw(dims(1, 9)),
                channels=draw(dims(1, 4)), out_height=draw(dims(1, 16)), out_width=draw(dims(1, 16)),
                align_corners=draw(st.booleans()), half_pixel_centers=draw(st.booleans()),
                seed=draw(seeds), style=draw(input_styles))
    if kind != "FLOAT32":
        case["scale"] = draw(scales())
        case["zero_point"] = draw(zero_points("INT8")) if kind == "INT8" else 0
    return case


def build_resize(case):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    in_shape = [case["batch"], case["height"], case["width"], case["channels"]]
    out_shape = [case["batch"], case["out_height"], case["out_width"], case["channels"]]
    b = ModelBuilder()
    x = b.input("x", in_shape, kind, **quantization(case))
    size = b.constant("size", np.array([case["out_height"], case["out_width"]], np.int32))
    y = b.tensor("y", out_shape, kind, **quantization(case))
    b.op(case["op"], [x, size], [y], align_corners=case["align_corners"],
         half_pixel_centers=case["half_pixel_centers"])
    b.output(y)
    xs = random_inputs(rng, in_shape, np.dtype(kind.lower()), SAMPLES, zero_point=case.get("zero_point", 0),
                       style=case["style"])
    return b.build(), [xs]


@st.composite
def arg_cases(draw, op, kind):
    rank = draw(st.integers(1, 4))
    shape = draw(st.lists(dims(1, 7), min_size=rank, max_size=rank))
    case = dict(op=op, kind=kind, shape=shape, axis=draw(st.integers(-rank, rank - 1)),
                axis_shape=draw(st.sampled_from([[], [1]])), seed=draw(seeds),
                style=draw(st.sampled_from(["uniform", "extremes", "near_zero_point", "ties"])))
    if kind != "FLOAT32":
        case["scale"] = draw(scales())
        case["zero_point"] = draw(zero_points("INT8"))
    return case


def build_arg(case):
    rng = np.random.default_rng(case["seed"])
    kind, shape = case["kind"], case["shape"]
    b = ModelBuilder()
    x = b.input("x", shape, kind, **quantization(case))
    axis = b.constant("axis", np.array(case["axis"], np.int32).reshape(case["axis_shape"]))
    out_shape = [d for i, d in enumerate(shape) if i != case["axis"] % len(shape)]
    y = b.tensor("y", out_shape, "INT32")
    b.op(case["op"], [x, axis], [y], output_type="INT32")
    b.output(y)
    if case["style"] == "ties":
        xs = rng.integers(-1, 2, (SAMPLES,) + tuple(shape)).astype(kind.lower())
    else:
        xs = random_inputs(rng, shape, np.dtype(kind.lower()), SAMPLES, zero_point=case.get("zero_point", 0),
                           style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = (build_arg if op.startswith("ARG_") else build_resize)(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", RESIZE_CASES, ids=[f"{o}-{k}" for o, k in RESIZE_CASES])
def test_resize_matches_tflm(op, kind):
    run_examples(resize_cases(op, kind), lambda case: run_case(op, case))


@pytest.mark.parametrize("op, kind", ARG_CASES, ids=[f"{o}-{k}" for o, k in ARG_CASES])
def test_arg_min_max_matches_tflm(op, kind):
    run_examples(arg_cases(op, kind), lambda case: run_case(op, case))
