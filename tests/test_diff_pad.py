"""PAD and PADV2 against TFLM: ranks 1-5, paddings from 0 to 4 on each side, int8 / int16 /
int32 / float32, PADV2's constant value, and input/output quantization that (rarely) differ,
to pin which zero point fills the border."""
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

OPS_AND_KINDS = [(op, kind) for op in ("PAD", "PADV2") for kind in ("INT8", "INT16", "INT32", "FLOAT32")]
DIFF_OPS = {op for op, _ in OPS_AND_KINDS}  # the ops this module tests (see test_diff_regressions.py)
QUANTIZED = ("INT8", "INT16")


@st.composite
def pad_cases(draw, op: str, kind: str):
    rank = draw(st.integers(1, 5))
    case = dict(op=op, kind=kind, shape=draw(st.lists(dims(1, 6), min_size=rank, max_size=rank)),
                paddings=draw(st.lists(st.lists(st.sampled_from([0, 0, 1, 2, 4]) | st.integers(0, 4),
                                                min_size=2, max_size=2), min_size=rank, max_size=rank)),
                seed=draw(seeds), style=draw(input_styles))
    if kind in QUANTIZED:
        case["scale"] = draw(scales())
        case["zero_point"] = draw(zero_points("INT8")) if kind == "INT8" else draw(st.sampled_from([0] * 8 + [7]))
        case["output_scale_factor"] = draw(st.sampled_from([1.0] * 9 + [2.0]))
        case["output_zp_offset"] = draw(st.sampled_from([0] * 9 + [-1]))
    if op == "PADV2":
        case["constant_value_seed"] = draw(seeds)
    return case


def build_pad(case: dict):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    dtype = np.dtype(kind.lower())
    shape = case["shape"]
    out_shape = [d + before + after for d, (before, after) in zip(shape, case["paddings"])]
    q_in = q_out = {}
    if kind in QUANTIZED:
        q_in = dict(scale=case["scale"], zero_point=case["zero_point"])
        q_out = dict(scale=case["scale"] * case["output_scale_factor"],
                     zero_point=int(np.clip(case["zero_point"] + case["output_zp_offset"],
                                            *(np.iinfo(dtype).min, np.iinfo(dtype).max))))
    b = ModelBuilder()
    x = b.input("x", shape, kind, **q_in)
    inputs = [x, b.constant("paddings", np.array(case["paddings"], np.int32).reshape(len(shape), 2))]
    if case["op"] == "PADV2":
        value = random_inputs(np.random.default_rng(case["constant_value_seed"]), [], dtype, 1, style="uniform")[0]
        # TFLM wants the constant quantized like the output.
        inputs.append(b.constant("constant_values", value, kind, **q_out))
    y = b.tensor("y", out_shape, kind, **q_out)
    b.op(case["op"], inputs, [y])
    b.output(y)
    xs = random_inputs(rng, shape, dtype, SAMPLES, zero_point=case.get("zero_point", 0), style=case["style"])
    return b.build(), [xs]


def run_case(op: str, case: dict):
    note_case(**case)
    data, inputs = build_pad(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("op, kind", OPS_AND_KINDS, ids=[f"{o}-{k}" for o, k in OPS_AND_KINDS])
def test_pad_matches_tflm(op, kind):
    run_examples(pad_cases(op, kind), lambda case: run_case(op, case))
