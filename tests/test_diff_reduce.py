"""MEAN, SUM, REDUCE_MAX and REDUCE_MIN against TFLM: ranks 1-5, any subset of axes (negative,
repeated, in any order), keep_dims, int8 / int16 / float32, requantizing scales from 1e-6 to 1e3."""
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

OPS_AND_KINDS = ([(op, kind) for op in ("MEAN", "SUM") for kind in ("INT8", "INT16", "FLOAT32")]
                 + [(op, kind) for op in ("REDUCE_MAX", "REDUCE_MIN") for kind in ("INT8", "FLOAT32")])
DIFF_OPS = {op for op, _ in OPS_AND_KINDS}  # the ops this module tests (see test_diff_regressions.py)
REQUANTIZING = ("MEAN", "SUM")


@st.composite
def reduce_cases(draw, op: str, kind: str):
    rank = draw(st.integers(1, 5))
    shape = draw(st.lists(dims(1, 7), min_size=rank, max_size=rank))
    chosen = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank + 1))
    # Each axis may be written as a negative index too.
    axes = [a - rank if draw(st.integers(0, 3)) == 0 else a for a in chosen]
    case = dict(op=op, kind=kind, shape=shape, axes=axes, keep_dims=draw(st.booleans()),
                seed=draw(seeds), style=draw(input_styles))
    if kind != "FLOAT32":
        case["input_scale"] = draw(scales())
        case["input_zp"] = draw(zero_points("INT8")) if kind == "INT8" else draw(st.sampled_from([0] * 8 + [3]))
        if op in REQUANTIZING:
            case["output_scale"] = draw(scales())
            case["output_zp"] = draw(zero_points("INT8")) if kind == "INT8" else draw(st.sampled_from([0] * 8 + [-2]))
        else:
            case["output_scale"], case["output_zp"] = case["input_scale"], case["input_zp"]
    return case


def reduced_shape(shape, axes, keep_dims):
    rank = len(shape)
    reduced = {a % rank for a in axes}
    if keep_dims:
        return [1 if i in reduced else d for i, d in enumerate(shape)]
    return [d for i, d in enumerate(shape) if i not in reduced]


def build_reduce(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    quantized = kind != "FLOAT32"
    b = ModelBuilder()
    x = b.input("x", case["shape"], kind,
                **(dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}))
    axis = b.constant("axis", np.array(case["axes"], np.int32))
    y = b.tensor("y", reduced_shape(case["shape"], case["axes"], case["keep_dims"]), kind,
                 **(dict(scale=case["output_scale"], zero_point=case["output_zp"]) if quantized else {}))
    b.op(case["op"], [x, axis], [y], keep_dims=case["keep_dims"])
    b.output(y)
    xs = random_inputs(rng, case["shape"], np.dtype(kind.lower()), SAMPLES, zero_point=case.get("input_zp", 0),
                       style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_reduce(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_reduce_matches_tflm(op, kind):
    run_examples(reduce_cases(op, kind), lambda case: run_case(op, case))
