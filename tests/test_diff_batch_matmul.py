"""BATCH_MATMUL against TFLM: int8, int16 and float32; ranks 2-5 on either side with broadcast
batch dimensions; adj_x / adj_y; constant operands (TFLM transposes a constant RHS once); scales
from 1e-6 to 1e3; int32 accumulator wrap-around on long int8 rows.

Also pinned here without TFLM: the exact float64 fast path of the integer accumulation equals the
plain k-loop reference on any operands within its bound.
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
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from ops.batch_matmul import FLOAT64_EXACT, integer_fast_accumulate, integer_reference_accumulate

DIFF_OPS = {"BATCH_MATMUL"}
KINDS = ["INT8", "INT16", "FLOAT32"]


@st.composite
def batch_matmul_cases(draw, kind):
    out_rank = draw(st.integers(2, 5))
    batch = [draw(dims(1, 4)) for _ in range(out_rank - 2)]
    operand_batches = []
    for _ in range(2):
        # Each side: the output's batch dims or a suffix of them, some set to 1 (broadcast).
        kept = draw(st.integers(0, len(batch))) if draw(st.integers(0, 2)) == 0 else len(batch)
        operand_batches.append([d if draw(st.integers(0, 2)) else 1 for d in batch[len(batch) - kept:]])
    rows, depth, cols = draw(dims(1, 7)), draw(dims(1, 9)), draw(dims(1, 7))
    if draw(st.integers(0, 6)) == 0:
        depth = draw(st.sampled_from([64, 257, 1000]))
    case = dict(op="BATCH_MATMUL", kind=kind, lhs_batch=operand_batches[0], rhs_batch=operand_batches[1],
                rows=rows, depth=depth, cols=cols, adj_x=draw(st.booleans()), adj_y=draw(st.booleans()),
                constant=draw(st.sampled_from(["none", "none", "rhs", "lhs"])), seed=draw(seeds),
                style=draw(input_styles))
    if kind == "INT8":
        case.update(lhs_scale=draw(scales()), lhs_zp=draw(zero_points("INT8")), rhs_scale=draw(scales()),
                    rhs_zp=draw(zero_points("INT8")), out_scale=draw(scales()), out_zp=draw(zero_points("INT8")))
    elif kind == "INT16":
        case.update(lhs_scale=draw(scales()), rhs_scale=draw(scales()), out_scale=draw(scales()),
                    # TFLM demands zero points of 0 on int16; rarely try another.
                    lhs_zp=draw(st.sampled_from([0] * 15 + [1])), rhs_zp=0, out_zp=0)
    return case


def operand_shapes(case):
    lhs = case["lhs_batch"] + ([case["depth"], case["rows"]] if case["adj_x"] else [case["rows"], case["depth"]])
    rhs = case["rhs_batch"] + ([case["cols"], case["depth"]] if case["adj_y"] else [case["depth"], case["cols"]])
    batch = list(np.broadcast_shapes(tuple(case["lhs_batch"]), tuple(case["rhs_batch"])))
    return lhs, rhs, batch + [case["rows"], case["cols"]]


def operand_values(rng, shape, case, role):
    kind = case["kind"]
    if kind == "FLOAT32":
        v = rng.normal(0, 1, (SAMPLES,) + tuple(shape)) * rng.choice([1e-3, 1.0, 100.0], (SAMPLES,) + tuple(shape))
        if case["style"] == "extremes":
            v = rng.choice([0.0, -0.0, 1.0, -1.0, 3e38, -3e38, 1e-30], (SAMPLES,) + tuple(shape))
        return v.astype(np.float32)
    return random_inputs(rng, shape, np.dtype(kind.lower()), SAMPLES, zero_point=case[role + "_zp"],
                         style=case["style"])


def build_batch_matmul(case):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    lhs_shape, rhs_shape, out_shape = operand_shapes(case)
    quantized = kind != "FLOAT32"
    q = {role: (dict(scale=case[role + "_scale"], zero_point=case[role + "_zp"]) if quantized else {})
         for role in ("lhs", "rhs", "out")}
    b = ModelBuilder()
    inputs, operands = [], []
    for role, shape in (("lhs", lhs_shape), ("rhs", rhs_shape)):
        v = operand_values(rng, shape, case, role)
        if "fill" in case:
            v = np.full_like(v, case["fill"][role])
        if case["constant"] == role:
            operands.append(b.constant(role, v[0], kind, **q[role]))
        else:
            operands.append(b.input(role, shape, kind, **q[role]))
            inputs.append(v)
    y = b.tensor("y", out_shape, kind, **q["out"])
    b.op("BATCH_MATMUL", operands, [y], adj_x=case["adj_x"], adj_y=case["adj_y"])
    b.output(y)
    return b.build(), inputs


def run_case(op: str, case: dict) -> None:
    note_case(**case)
    data, inputs = build_batch_matmul(case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_matmul_matches_tflm(kind):
    run_examples(batch_matmul_cases(kind), lambda case: run_case("BATCH_MATMUL", case))


# The operand shapes and adjoint flags of TFLM's batch_matmul_test.cc.
TFLM_TEST_SHAPES = [
    ([3, 2, 1, 4], [3, 1, 4, 1], False, False), ([3, 2, 2, 4], [3, 1, 4, 1], False, False),
    ([3, 4, 2], [1, 4, 3], True, False), ([1, 2, 3], [1, 3, 4], False, False), ([1, 2, 3], [1, 4, 3], False, True),
    ([1, 3, 2], [1, 3, 4], True, False), ([2, 2, 3], [2, 3, 4], False, False), ([2, 2, 3], [3, 4], False, False),
    ([2, 3, 2], [1, 3, 4], True, False), ([2, 2, 3], [1, 4, 3], False, True), ([2, 3, 2], [3, 4], True, False),
    ([2, 1, 3, 2], [3, 2, 4], False, False), ([2, 1, 2, 3], [3, 2, 4], True, False),
    ([2, 1, 3, 2], [3, 4, 2], False, True), ([2, 1, 2, 3], [3, 4, 2], True, True),
    ([4, 5], [3, 1, 5, 2], False, False), ([1, 6, 2], [2, 3], False, False), ([2, 10], [10, 3], False, False),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lhs, rhs, adj_x, adj_y", TFLM_TEST_SHAPES)
def test_batch_matmul_tflm_test_shapes(kind, lhs, rhs, adj_x, adj_y):
    case = dict(op="BATCH_MATMUL", kind=kind, lhs_batch=lhs[:-2], rhs_batch=rhs[:-2],
                rows=lhs[-1] if adj_x else lhs[-2], depth=lhs[-2] if adj_x else lhs[-1],
                cols=rhs[-2] if adj_y else rhs[-1], adj_x=adj_x, adj_y=adj_y, constant="rhs", seed=len(lhs) + 7,
                style="uniform", lhs_scale=0.05, lhs_zp=-3 if kind == "INT8" else 0, rhs_scale=0.02,
                rhs_zp=5 if kind == "INT8" else 0, out_scale=0.1, out_zp=-1 if kind == "INT8" else 0)
    run_case("BATCH_MATMUL", case)


@pytest.mark.parametrize("adj_x, adj_y", [(False, False), (True, True)])
def test_batch_matmul_int8_accumulator_wraps_like_tflm(adj_x, adj_y):
    # 40000 products of 255 * 255 pass 2^31: TFLM's int32 accumulator wraps (and so must ours).
    case = dict(op="BATCH_MATMUL", kind="INT8", lhs_batch=[2], rhs_batch=[], rows=2, depth=40000, cols=2,
                adj_x=adj_x, adj_y=adj_y, constant="rhs", seed=3, style="extremes", lhs_scale=0.02,
                lhs_zp=127, rhs_scale=0.03, rhs_zp=127, out_scale=1000.0, out_zp=0, fill={"lhs": -128, "rhs": -128})
    data, inputs = build_batch_matmul(case)
    assert 40000 * 255 * 255 >= 2 ** 31
    record(check_model(data, inputs, label="BATCH_MATMUL INT8"), "BATCH_MATMUL INT8")


@pytest.mark.parametrize("kind, constant, adj_y", [("INT8", "rhs", False), ("FLOAT32", "none", False),
                                                   ("INT16", "lhs", True)])
def test_batch_matmul_arena_plan_matches_tflm(kind, constant, adj_y):
    # TFLM keeps its transposed operands in persistent memory, not arena scratch: the head is
    # the activations' plan alone.
    from test_diff_arithmetic import tflm_arena_head
    case = dict(op="BATCH_MATMUL", kind=kind, lhs_batch=[3], rhs_batch=[1], rows=5, depth=6, cols=4, adj_x=True,
                adj_y=adj_y, constant=constant, seed=1, style="uniform", lhs_scale=0.5, lhs_zp=0, rhs_scale=0.25,
                rhs_zp=0, out_scale=2.0, out_zp=0)
    data, _ = build_batch_matmul(case)
    assert Interpreter.from_bytes(data).plan.arena_bytes == tflm_arena_head(data)


# ------------------------------------------------------------------------------ fast path (no TFLM)

@st.composite
def centred_operands(draw):
    """Integer operands within a drawn bound, with broadcast batch dims, K up to 300."""
    rng = np.random.default_rng(draw(seeds))
    batch = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(0, 3)))]
    lhs_batch = [d if draw(st.booleans()) else 1 for d in batch]
    rhs_batch = [d if draw(st.booleans()) else 1 for d in batch]
    rows, depth, cols = draw(st.integers(1, 6)), draw(st.sampled_from([1, 2, 7, 64, 300])), draw(st.integers(1, 6))
    lhs_max = draw(st.sampled_from([1, 255, 32768, 2 ** 20]))
    rhs_max = draw(st.sampled_from([1, 255, 32768, 2 ** 20]))
    style = draw(st.sampled_from(["uniform", "extremes"]))

    def values(shape, hi):
        if style == "extremes":
            return rng.choice(np.array([-hi, hi, 0, 1 - hi, hi - 1], np.int64), shape)
        return rng.integers(-hi, hi, shape, endpoint=True)
    return (values(tuple(lhs_batch) + (rows, depth), lhs_max), values(tuple(rhs_batch) + (depth, cols), rhs_max),
            depth * lhs_max * rhs_max)


@settings(max_examples=150, deadline=None)
@given(operands=centred_operands())
def test_integer_fast_accumulation_equals_the_reference(operands):
    lhs, rhs, bound = operands
    reference = integer_reference_accumulate(lhs, rhs)
    assert int(np.abs(reference).max()) <= bound < FLOAT64_EXACT
    fast = integer_fast_accumulate(lhs, rhs)
    assert fast.dtype == np.int64 and fast.shape == reference.shape
    assert np.array_equal(fast, reference)
