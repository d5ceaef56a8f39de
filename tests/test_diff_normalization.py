"""L2_NORMALIZATION, LOG_SOFTMAX and L2_POOL_2D against TFLM.

L2_NORMALIZATION: int8 (its fixed-point inverse square root; the output quantization TFLM ignores)
and float32, ranks 1-4, rows of one element to thousands. LOG_SOFTMAX: int8 (gemmlowp exp and
log, input scales from 1e-6 to 1e3; the fixed output scale 16/256 and zero point 127 TFLM demands)
and float32. L2_POOL_2D: float32 (the only type TFLM has), SAME/VALID, strides, windows hanging
over the image and fused activations.
"""
import numpy as np
import pytest
from diff_support import (
    SAMPLES,
    activations,
    check_model,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    scales,
    seeds,
    window_output_size,
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter, ModelError
from interp.builder import ModelBuilder

DIFF_OPS = {"L2_NORMALIZATION", "LOG_SOFTMAX", "L2_POOL_2D"}


def float_values(rng, shape, n, style):
    shape = (n,) + tuple(shape)
    if style == "extremes":
        return rng.choice([0.0, -0.0, 1.0, -1.0, 1e-20, 1e19, -3e38, 3e38, 1e-42], shape).astype(np.float32)
    if style == "near_zero_point":
        return (rng.integers(-3, 4, shape) * 0.5).astype(np.float32)
    return (rng.normal(0, 1, shape) * rng.choice([1e-4, 1.0, 30.0], shape)).astype(np.float32)


def shapes(min_rank, max_rank, hi=8):
    return st.integers(min_rank, max_rank).flatmap(lambda r: st.lists(dims(1, hi), min_size=r, max_size=r))


# ------------------------------------------------------------------------------ L2_NORMALIZATION

@st.composite
def l2norm_cases(draw, kind):
    shape = draw(shapes(1, 4))
    if draw(st.integers(0, 5)) == 0:
        shape[-1] = draw(st.sampled_from([1, 2, 300, 4000]))  # very short and very long rows
    case = dict(op="L2_NORMALIZATION", kind=kind, shape=shape, seed=draw(seeds), style=draw(input_styles))
    if kind == "INT8":
        case.update(scale=draw(scales()), zp=draw(zero_points("INT8")), out_scale=draw(scales()),
                    out_zp=draw(zero_points("INT8")))
    return case


def build_l2norm(case):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    b = ModelBuilder()
    q_in = dict(scale=case["scale"], zero_point=case["zp"]) if kind == "INT8" else {}
    q_out = dict(scale=case["out_scale"], zero_point=case["out_zp"]) if kind == "INT8" else {}
    x = b.input("x", case["shape"], kind, **q_in)
    y = b.tensor("y", case["shape"], kind, **q_out)
    b.op("L2_NORMALIZATION", [x], [y], fused_activation_function=case.get("activation", "NONE"))
    b.output(y)
    if kind == "FLOAT32":
        xs = float_values(rng, case["shape"], SAMPLES, case["style"])
    else:
        xs = random_inputs(rng, case["shape"], np.int8, SAMPLES, zero_point=case["zp"], style=case["style"])
    return b.build(), [xs]


@pytest.mark.parametrize("kind", ["INT8", "FLOAT32"])
def test_l2_normalization_matches_tflm(kind):
    run_examples(l2norm_cases(kind), lambda case: run_case("L2_NORMALIZATION", case), fraction=0.6)


def test_l2_normalization_int8_every_row_norm():
    # One row per squared norm 0..: rows [v, 0, ...] and [v, w] cover the inverse square root
    # over small inputs, and long constant rows its large ones.
    v = np.arange(-128, 128, dtype=np.int8)
    rows = np.zeros((256 * 16, 2), np.int8)
    rows[:, 0] = np.repeat(v, 16)
    rows[:, 1] = np.tile(np.arange(-8, 8, dtype=np.int8), 256)
    case = dict(op="L2_NORMALIZATION", kind="INT8", shape=list(rows.shape), seed=0, style="uniform",
                scale=0.1, zp=0, out_scale=1 / 128, out_zp=0)
    data, _ = build_l2norm(case)
    record(check_model(data, [rows[None]], label="L2_NORMALIZATION INT8"), "L2_NORMALIZATION INT8")
    for fill in (-128, -1, 1, 127):
        long_rows = np.full((1, 3, 4000), fill, np.int8)
        long_rows[0, 1, ::7] = 0
        case = dict(case, shape=[3, 4000], zp=int(np.clip(-fill, -128, 127)) if fill != 1 else -128)
        data, _ = build_l2norm(case)
        record(check_model(data, [long_rows], label="L2_NORMALIZATION INT8"), "L2_NORMALIZATION INT8")


def test_l2_normalization_refuses_activation_like_tflm():
    case = dict(op="L2_NORMALIZATION", kind="FLOAT32", shape=[2, 3], seed=0, style="uniform", activation="RELU")
    data, inputs = build_l2norm(case)
    assert not check_model(data, inputs, label="L2_NORMALIZATION FLOAT32").compared


# ------------------------------------------------------------------------------ LOG_SOFTMAX

@st.composite
def log_softmax_cases(draw, kind):
    shape = draw(shapes(1, 4))
    if draw(st.integers(0, 5)) == 0:
        shape[-1] = draw(st.sampled_from([1, 2, 255, 1000]))
    case = dict(op="LOG_SOFTMAX", kind=kind, shape=shape, seed=draw(seeds), style=draw(input_styles))
    if kind == "INT8":
        # input_scale * 2^26 must exceed 1 (TFLM aborts otherwise; a separate test pins that).
        case.update(scale=draw(st.one_of(scales(-6, 3), st.sampled_from([2.0 ** -25, 1.0000001 * 2.0 ** -26]))),
                    zp=draw(zero_points("INT8")),
                    # Almost always the output quantization TFLM demands.
                    out_scale=draw(st.sampled_from([16 / 256] * 12 + [1 / 16 + 1e-6, 1 / 256])),
                    out_zp=draw(st.sampled_from([127] * 12 + [126])))
    return case


def build_log_softmax(case):
    rng = np.random.default_rng(case["seed"])
    kind = case["kind"]
    b = ModelBuilder()
    q_in = dict(scale=case["scale"], zero_point=case["zp"]) if kind == "INT8" else {}
    q_out = dict(scale=case["out_scale"], zero_point=case["out_zp"]) if kind == "INT8" else {}
    x = b.input("x", case["shape"], kind, **q_in)
    y = b.tensor("y", case["shape"], kind, **q_out)
    b.op("LOG_SOFTMAX", [x], [y])
    b.output(y)
    if kind == "FLOAT32":
        xs = float_values(rng, case["shape"], SAMPLES, case["style"])
        if case["style"] == "extremes":
            xs = np.clip(xs, -1e30, 1e30)  # exp(x - max) of +-3e38 rows is inf - inf = NaN either way
    else:
        xs = random_inputs(rng, case["shape"], np.int8, SAMPLES, zero_point=case["zp"], style=case["style"])
    return b.build(), [xs]


@pytest.mark.parametrize("kind", ["INT8", "FLOAT32"])
def test_log_softmax_matches_tflm(kind):
    run_examples(log_softmax_cases(kind), lambda case: run_case("LOG_SOFTMAX", case), fraction=0.6)


@pytest.mark.parametrize("scale", [1e-3, 0.0625, 0.5, 3.0])
def test_log_softmax_int8_every_difference(scale):
    # Rows [v, w] over all int8 pairs: every difference to the row max, every sum of two exps.
    v = np.arange(-128, 128, dtype=np.int8)
    rows = np.stack([np.repeat(v, 256), np.tile(v, 256)], axis=-1)
    case = dict(op="LOG_SOFTMAX", kind="INT8", shape=list(rows.shape), seed=0, style="uniform",
                scale=scale, zp=3, out_scale=16 / 256, out_zp=127)
    data, _ = build_log_softmax(case)
    record(check_model(data, [rows[None]], label="LOG_SOFTMAX INT8"), "LOG_SOFTMAX INT8")


def test_log_softmax_refuses_tiny_input_scale_where_tflm_aborts():
    # input_scale * 2^26 <= 1: QuantizeMultiplierGreaterThanOne's TFLITE_CHECK aborts TFLM.
    from diff_support import assert_tflm_aborts
    case = dict(op="LOG_SOFTMAX", kind="INT8", shape=[4], seed=0, style="uniform", scale=2.0 ** -27, zp=0,
                out_scale=16 / 256, out_zp=127)
    data, inputs = build_log_softmax(case)
    assert_tflm_aborts(data, inputs)
    with pytest.raises(ModelError, match="QuantizeMultiplierGreaterThanOne"):
        Interpreter.from_bytes(data)


# ------------------------------------------------------------------------------ L2_POOL_2D

@st.composite
def l2_pool_cases(draw):
    case = dict(op="L2_POOL_2D", kind="FLOAT32", batch=draw(st.integers(1, 2)), height=draw(dims(1, 9)),
                width=draw(dims(1, 9)), channels=draw(dims(1, 4)), filter_h=draw(dims(1, 5)),
                filter_w=draw(dims(1, 5)), stride_h=draw(dims(1, 3)), stride_w=draw(dims(1, 3)),
                padding=draw(st.sampled_from(["SAME", "VALID"])), activation=draw(activations),
                seed=draw(seeds), style=draw(input_styles))
    if draw(st.integers(0, 6)) == 0:
        # Windows far larger than the image (SAME: every window is clipped to it).
        case["filter_h"], case["filter_w"] = draw(st.sampled_from([(30, 2), (1, 40), (12, 12)]))
        case["padding"] = "SAME"
    elif case["padding"] == "VALID" and draw(st.integers(0, 9)):
        # Mostly windows that fit (a VALID window larger than the image leaves no output: both refuse).
        case["filter_h"], case["filter_w"] = min(case["filter_h"], case["height"]), min(case["filter_w"], case["width"])
    return case


def build_l2_pool(case):
    rng = np.random.default_rng(case["seed"])
    b = ModelBuilder()
    shape = [case["batch"], case["height"], case["width"], case["channels"]]
    out_h = window_output_size(case["padding"], case["height"], case["filter_h"], case["stride_h"])
    out_w = window_output_size(case["padding"], case["width"], case["filter_w"], case["stride_w"])
    x = b.input("x", shape, "FLOAT32")
    y = b.tensor("y", [case["batch"], max(out_h, 0), max(out_w, 0), case["channels"]], "FLOAT32")
    b.op("L2_POOL_2D", [x], [y], padding=case["padding"], stride_h=case["stride_h"], stride_w=case["stride_w"],
         filter_height=case["filter_h"], filter_width=case["filter_w"],
         fused_activation_function=case["activation"])
    b.output(y)
    return b.build(), [float_values(rng, shape, SAMPLES, case["style"])]


def test_l2_pool_matches_tflm():
    run_examples(l2_pool_cases(), lambda case: run_case("L2_POOL_2D", case), fraction=0.6)


@pytest.mark.parametrize("kind", ["INT8", "INT16"])
def test_l2_pool_quantized_refused_like_tflm(kind):
    b = ModelBuilder()
    x = b.input("x", [1, 4, 4, 1], kind, scale=0.5, zero_point=0)
    y = b.tensor("y", [1, 2, 2, 1], kind, scale=0.5, zero_point=0)
    b.op("L2_POOL_2D", [x], [y], padding="VALID", stride_h=2, stride_w=2, filter_height=2, filter_width=2)
    b.output(y)
    inputs = [np.zeros((1, 1, 4, 4, 1), kind.lower())]
    assert not check_model(b.build(), inputs, label=f"L2_POOL_2D {kind}").compared


# ------------------------------------------------------------------------------ dispatch

BUILDERS = {"L2_NORMALIZATION": build_l2norm, "LOG_SOFTMAX": build_log_softmax, "L2_POOL_2D": build_l2_pool}


def run_case(op: str, case: dict) -> None:
    note_case(**case)
    data, inputs = BUILDERS[op](case)
    label = f"{op} {case['kind']}"
    record(check_model(data, inputs, label=label), label)
