"""SVDF against TFLM, call after call: float32, int8 with int16 time weights and state (what the
converter writes), int8 with int8 time weights and state, and int8 time weights over an int16
state (which TFLM's Eval reads as bytes); batch 1-4, memory 1-12 and 32, rank 1-4, units 1-6, input size
1-12; input, weight, state and output scales and zero points from saturating to vanishing, state
zero points that make the stored state wrap, extreme weights and biases (int32 overflow of the
time matmul), every fused activation (float; the integer path ignores it), non-constant feature
weights, per-channel feature weights, and the models TFLM's Prepare refuses (types, shapes, the
bias scale check, a non-variable state).

The state lives in a variable tensor, so every example runs several consecutive calls without
reset, then reset and more calls, and run_batch (every sample from reset) against a fresh TFLM.
"""
import math

import numpy as np
import pytest
from diff_support import (
    assert_tflm_aborts,
    calls_from,
    check_stateful,
    dims,
    input_styles,
    note_case,
    random_inputs,
    record,
    run_examples,
    seeds,
    zero_points,
)
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError, UnsupportedOpError

DIFF_OPS = {"SVDF"}  # the ops this module tests (see test_diff_regressions.py)
CALLS = 6  # consecutive calls per example
AFTER_RESET = 2  # calls compared again after reset()
KINDS = ["FLOAT32", "INT8x16", "INT8x8", "INT8x8_in_int16_state"]
# (time weights type, state type) of each integer kind.
INTEGER_TYPES = {"INT8x16": ("INT16", "INT16"), "INT8x8": ("INT8", "INT8"),
                 "INT8x8_in_int16_state": ("INT8", "INT16")}
ACTIVATIONS = ["NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"]
# Variants TFLM accepts beside "standard".
ACCEPTED = ["feature_weights_input", "time_weights_input", "bias_rank2", "per_channel_feature", "bias_scale_near"]
# Variants TFLM's Prepare refuses.
REFUSED = ["state_not_variable", "bias_scale_off", "bias_int64", "output_int16", "feature_int16",
           "input_int16", "state_shape", "output_shape", "time_shape", "feature_shape", "bias_shape",
           "filters_not_multiple", "input_rank3", "float_state_int8", "float_output_int8", "time_rank1"]


def log_uniform(lo_exp2: float, hi_exp2: float):
    return st.floats(lo_exp2, hi_exp2).map(lambda e: float(np.float32(2.0 ** e)))


@st.composite
def svdf_cases(draw, kind: str):
    case = dict(kind=kind, seed=draw(seeds), style=draw(input_styles),
                batch=draw(dims(1, 4)), memory=draw(st.one_of(dims(1, 12), st.just(32))), rank=draw(dims(1, 4)),
                units=draw(dims(1, 6)),
                n_input=draw(dims(1, 12)), activation=draw(st.sampled_from(ACTIVATIONS)),
                weight_style=draw(st.sampled_from(["uniform"] * 6 + ["extremes", "small"])),
                bias_style=draw(st.sampled_from(["normal"] * 6 + ["zero", "extreme"])),
                variant=draw(st.sampled_from(["standard"] * 30 + ACCEPTED * 2 + REFUSED)))
    if kind != "FLOAT32":
        t_type, s_type = INTEGER_TYPES[kind]
        case.update(
            input_scale=draw(log_uniform(-12, 2)), input_zp=draw(zero_points("INT8")),
            feature_scale=draw(log_uniform(-10, -2)), time_scale=draw(log_uniform(-16, -2)),
            # Where the state sits relative to the typical feature result: 2^gain (0 is the full
            # range of the state type, > 0 saturates, < 0 uses a few LSBs).
            state_gain=draw(st.floats(-12, 4)), output_gain=draw(st.floats(-10, 4)),
            state_zp=draw(zero_points("INT8") if s_type == "INT8" else
                          st.sampled_from([0] * 16 + [1, -7, 300, -32768, 32767])),
            output_zp=draw(zero_points("INT8")))
    else:
        # Float weight magnitudes: ordinary, or near the float32 range (inf and NaN results).
        case.update(feature_gain=draw(st.sampled_from([0.0] * 6 + [-20.0, 20.0, 60.0])),
                    time_gain=draw(st.sampled_from([0.0] * 6 + [-20.0, 40.0, 100.0])))
    return case


def _jitter(rng) -> float:
    return float(2.0 ** rng.uniform(-0.5, 0.5))


def build_svdf(case):
    """The model of one case and its CALLS consecutive inputs (each on axis 0)."""
    rng = np.random.default_rng(case["seed"])
    kind, variant = case["kind"], case["variant"]
    b, mem, rank, units, n_in = case["batch"], case["memory"], case["rank"], case["units"], case["n_input"]
    filters = units * rank
    quantized = kind != "FLOAT32"
    mb = ModelBuilder()
    in_type = "INT16" if variant == "input_int16" else ("INT8" if quantized else "FLOAT32")
    in_shape = [b, n_in, 1] if variant == "input_rank3" else [b, n_in]
    q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}
    x = mb.input("x", in_shape, in_type, **q_in)
    model_inputs = [("x", in_shape, in_type, q_in)]

    wf_rows = filters + 1 if variant == "feature_shape" else filters
    if quantized:
        t_type, s_type = INTEGER_TYPES[kind]
        # Feature weights: int8 over the range (or only extremes, or small values).
        if case["weight_style"] == "extremes":
            wf_values = rng.choice(np.array([-128, -127, 127, 0]), (wf_rows, n_in))
        elif case["weight_style"] == "small":
            wf_values = rng.integers(-3, 4, (wf_rows, n_in))
        else:
            wf_values = rng.integers(-128, 128, (wf_rows, n_in))
        wf_type = "INT16" if variant == "feature_int16" else "INT8"
        s_wf = case["feature_scale"]
        if variant == "per_channel_feature":
            wf_q = dict(scale=[float(np.float32(s_wf * _jitter(rng))) for _ in range(wf_rows)],
                        zero_point=0, quantized_dimension=0)
        else:
            wf_q = dict(scale=s_wf, zero_point=0)
        if variant == "feature_weights_input":
            wf = mb.input("wf", [wf_rows, n_in], wf_type, **wf_q)
            model_inputs.append(("wf", [wf_rows, n_in], wf_type, wf_q))
        else:
            wf = mb.constant("wf", wf_values.astype(np.int64), wf_type, **wf_q)
        # The typical |feature dot product| in real units, and the state scale that puts it at 2^gain
        # of the state type's range.
        x_typ = case["input_scale"] * 64
        dot_typ = s_wf * 64 * x_typ * math.sqrt(n_in)
        s_hi = 127 if t_type == "INT8" else 32767  # Eval reads the state as the time weights' type
        s_state = float(np.float32(dot_typ / s_hi / 2.0 ** case["state_gain"]))
        t_hi = 127 if t_type == "INT8" else 32767
        if case["weight_style"] == "extremes":
            wt_values = rng.choice(np.array([-t_hi - 1, t_hi, 0, 1]), (filters, mem))
        elif case["weight_style"] == "small":
            wt_values = rng.integers(-3, 4, (filters, mem))
        else:
            wt_values = rng.integers(-t_hi - 1, t_hi + 1, (filters, mem))
        s_wt = case["time_scale"]
        wt_shape = (filters, mem + 1) if variant == "time_shape" else (filters, mem)
        if variant == "time_rank1":
            wt = mb.constant("wt", wt_values.reshape(-1).astype(np.int64), t_type, scale=s_wt, zero_point=0)
        elif variant == "time_weights_input":
            wt = mb.input("wt", list(wt_shape), t_type, scale=s_wt, zero_point=0)
            model_inputs.append(("wt", list(wt_shape), t_type, {}))
        else:
            wt = mb.constant("wt", np.resize(wt_values, wt_shape).astype(np.int64), t_type, scale=s_wt, zero_point=0)
        # The typical |y| in real units: rank x memory terms of time weight x state.
        state_q_typ = max(min(s_hi * 2.0 ** case["state_gain"], s_hi), 1.0)
        y_typ = math.sqrt(mem * rank) * (t_hi / 2) * s_wt * state_q_typ * s_state
        typical = y_typ
        s_bias = float(np.float32(np.float32(s_state) * np.float32(s_wt)))
        if variant == "bias_scale_off":
            s_bias = s_bias + 2e-5
        elif variant == "bias_scale_near":
            s_bias = float(np.float32(s_bias * 1.01)) if s_bias * 0.01 < 5e-6 else s_bias
        if case["bias_style"] == "zero":
            bias_values = np.zeros(units, np.int64)
        elif case["bias_style"] == "extreme":
            bias_values = rng.choice(np.array([-2 ** 31, 2 ** 31 - 1, 0, 1 << 24], np.int64), units)
        else:
            bias_values = np.clip(np.round(rng.normal(0, 1, units) * typical / max(s_bias, 1e-30)),
                                  -2 ** 31, 2 ** 31 - 1).astype(np.int64)
        bias_type = "INT64" if variant == "bias_int64" else "INT32"
        bias_shape = [units + 1] if variant == "bias_shape" else ([units, 1] if variant == "bias_rank2" else [units])
        bias = mb.constant("bias", np.resize(bias_values, bias_shape).astype(np.int64), bias_type, scale=s_bias)
        state_type = s_type
        q_state = dict(scale=s_state, zero_point=case["state_zp"])
        # The output scale: the typical |y| at 2^gain of the int8 range.
        q_out = dict(scale=float(np.float32(y_typ / 127 / 2.0 ** case["output_gain"])), zero_point=case["output_zp"])
        out_type = "INT16" if variant == "output_int16" else "INT8"
    else:
        def normal(shape, gain):
            return np.clip(rng.normal(0, 2.0 ** gain, shape), -3e38, 3e38).astype(np.float32)

        wf_values = normal((wf_rows, n_in), case["feature_gain"])
        if variant == "feature_weights_input":
            wf = mb.input("wf", [wf_rows, n_in], "FLOAT32")
            model_inputs.append(("wf", [wf_rows, n_in], "FLOAT32", {}))
        else:
            wf = mb.constant("wf", wf_values)
        wt_shape = (filters, mem + 1) if variant == "time_shape" else (filters, mem)
        wt_values = normal(wt_shape, case["time_gain"])
        if variant == "time_weights_input":
            wt = mb.input("wt", list(wt_shape), "FLOAT32")
            model_inputs.append(("wt", list(wt_shape), "FLOAT32", {}))
        else:
            wt = mb.constant("wt", wt_values.reshape(-1) if variant == "time_rank1" else wt_values)
        bias_shape = [units + 1] if variant == "bias_shape" else ([units, 1] if variant == "bias_rank2" else [units])
        if case["bias_style"] == "zero":
            bias_values = np.zeros(bias_shape, np.float32)
        elif case["bias_style"] == "extreme":
            bias_values = rng.choice(np.array([-3e38, 3e38, 0.0, np.inf, -1e30], np.float32), bias_shape)
        else:
            bias_values = rng.normal(0, 1, bias_shape).astype(np.float32)
        if variant == "bias_int64":
            bias_values = np.nan_to_num(bias_values, posinf=1e9, neginf=-1e9).clip(-1e9, 1e9)
        bias = mb.constant("bias", bias_values.astype(np.int64) if variant == "bias_int64" else bias_values,
                           "INT64" if variant == "bias_int64" else "FLOAT32")
        state_type = "INT8" if variant == "float_state_int8" else "FLOAT32"
        q_state = dict(scale=0.1, zero_point=0) if state_type == "INT8" else {}
        out_type = {"float_output_int8": "INT8", "output_int16": "INT16"}.get(variant, "FLOAT32")
        q_out = dict(scale=0.1, zero_point=0) if out_type != "FLOAT32" else {}

    state_cols = mem * filters + 1 if variant == "state_shape" else mem * filters
    state = mb.tensor("state", [b, state_cols], state_type, variable=variant != "state_not_variable", **q_state)
    out_units = units + 1 if variant == "output_shape" else units
    out = mb.tensor("y", [b, out_units], out_type, **q_out)
    op_rank = rank + 1 if variant == "filters_not_multiple" and filters % (rank + 1) else rank
    if variant == "filters_not_multiple" and op_rank == rank:
        op_rank = filters + 1
    mb.op("SVDF", [x, wf, wt, bias, state], [out], rank=op_rank, fused_activation_function=case["activation"])
    mb.output(out)
    data = mb.build()

    samples = []
    for name, shape, type_name, q in model_inputs:
        if type_name == "FLOAT32":
            if name in ("wf", "wt"):
                gain = case["feature_gain" if name == "wf" else "time_gain"]
                samples.append(np.stack([normal(shape, gain) for _ in range(CALLS)]))
            else:
                samples.append(random_inputs(rng, shape, np.float32, CALLS, scale=0.01, style=case["style"]))
        else:
            samples.append(random_inputs(rng, shape, np.dtype(type_name.lower()), CALLS,
                                         zero_point=q.get("zero_point", 0) if name == "x" else 0,
                                         style=case["style"] if name == "x" else "uniform"))
    return data, samples


# ------------------------------------------------------------------------------ the property

def check_svdf_stream(data: bytes, inputs: list, *, label: str):
    """The calls in ``inputs`` (stacked on axis 0) without reset, then reset() and AFTER_RESET more."""
    calls = calls_from(inputs)
    return check_stateful(data, calls + [None] + calls[:AFTER_RESET], label=label)


def run_case(op, case):
    assert op == "SVDF"
    note_case(**case)
    data, inputs = EXPLICIT[case["explicit"]]() if "explicit" in case else build_svdf(case)
    label = f"SVDF {case['kind']}"
    record(check_svdf_stream(data, inputs, label=label), label)
    return data, inputs


@pytest.mark.parametrize("kind", KINDS)
def test_svdf_matches_tflm_call_after_call(kind):
    fraction = {"FLOAT32": 1.0, "INT8x16": 1.5, "INT8x8": 1.0, "INT8x8_in_int16_state": 0.5}[kind]
    run_examples(svdf_cases(kind), lambda case: (run_case("SVDF", case), None)[1], fraction=fraction)


# ------------------------------------------------------------------------------ explicit models

def svdf_model(kind, wf, wt, bias, *, batch=1, rank=1, activation="NONE", q=None, state_type=None,
               time_type=None, omit_bias=False):
    """A one-op SVDF model from explicit weights. ``q`` maps input/feature/time/state/output/bias to
    (scale, zero point) for the integer kinds."""
    wf, wt = np.asarray(wf), np.asarray(wt)
    filters, n_in = wf.shape
    mem = wt.shape[1]
    units = filters // rank
    mb = ModelBuilder()
    if kind == "FLOAT32":
        x = mb.input("x", [batch, n_in], "FLOAT32")
        args = [mb.constant("wf", wf.astype(np.float32)), mb.constant("wt", wt.astype(np.float32)),
                None if omit_bias else mb.constant("bias", np.asarray(bias, np.float32))]
        state = mb.tensor("state", [batch, mem * filters], "FLOAT32", variable=True)
        out = mb.tensor("y", [batch, units], "FLOAT32")
    else:
        def qd(name):
            return dict(scale=q[name][0], zero_point=q[name][1])
        x = mb.input("x", [batch, n_in], "INT8", **qd("input"))
        args = [mb.constant("wf", wf.astype(np.int64), "INT8", **qd("feature")),
                mb.constant("wt", wt.astype(np.int64), time_type or "INT16", **qd("time")),
                None if omit_bias else mb.constant("bias", np.asarray(bias, np.int64), "INT32", **qd("bias"))]
        state = mb.tensor("state", [batch, mem * filters], state_type or "INT16", variable=True, **qd("state"))
        out = mb.tensor("y", [batch, units], "INT8", **qd("output"))
    mb.op("SVDF", [x] + args + [state], [out], rank=rank, fused_activation_function=activation)
    mb.output(out)
    return mb.build()


def nan_activation_model(activation):
    """Float SVDF whose outputs are NaN, +inf, -inf, -0.0 and ordinary values before the fused
    activation (inf weights times 0 state, inf - inf)."""
    inf = np.float32(np.inf)
    wf = np.array([[1.0], [1.0], [1.0], [1.0], [-1.0], [1.0]], np.float32)
    wt = np.array([[inf, 1.0], [1.0, 1.0], [-inf, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 2.0]], np.float32)
    data = svdf_model("FLOAT32", wf, wt, np.zeros(6, np.float32), activation=activation)
    x = np.array([[[0.0]], [[1.0]], [[-2.0]], [[3.0]], [[-0.0]]], np.float32)
    return data, [x]


EXPLICIT = {f"nan_{a}": (lambda a=a: nan_activation_model(a)) for a in ACTIVATIONS}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float_activation_of_nan_and_inf_is_fmax_fmin(activation):
    # ActivationValFloat uses std::fmax/std::fmin: a NaN loses to the bound (RELU gives 0, RELU6 6,
    # RELU_N1_TO_1 1); TANH and SIGN_BIT see the NaN itself.
    run_case("SVDF", {"explicit": f"nan_{activation}", "kind": "FLOAT32"})


def test_missing_bias_kills_tflm_and_microref_refuses():
    # TODO(#1751) in TFLM: both paths dereference the bias without checking it.
    for kind in ("FLOAT32", "INT8x16"):
        q = {k: (0.05, 0) for k in ("input", "feature", "time", "state", "output", "bias")}
        q["bias"] = (0.0025, 0)
        data = svdf_model(kind, np.ones((2, 3)), np.ones((2, 4)), np.zeros(2), q=q, omit_bias=True)
        x = np.zeros((1, 1, 3), np.float32 if kind == "FLOAT32" else np.int8)
        assert_tflm_aborts(data, [x])
        with pytest.raises(ModelError, match="bias"):
            Interpreter.from_bytes(data)


def test_rank_zero_kills_tflm_and_microref_refuses():
    mb = ModelBuilder()
    x = mb.input("x", [1, 3], "FLOAT32")
    args = [mb.constant("wf", np.ones((2, 3), np.float32)), mb.constant("wt", np.ones((2, 4), np.float32)),
            mb.constant("bias", np.zeros(2, np.float32))]
    state = mb.tensor("state", [1, 8], "FLOAT32", variable=True)
    out = mb.tensor("y", [1, 2], "FLOAT32")
    mb.op("SVDF", [x] + args + [state], [out], rank=0)
    mb.output(out)
    data = mb.build()
    assert_tflm_aborts(data, [np.zeros((1, 1, 3), np.float32)])
    with pytest.raises(ModelError, match="rank is 0"):
        Interpreter.from_bytes(data)


def test_int16_time_weights_with_int8_state_is_refused_as_undefined():
    q = {"input": (0.05, 0), "feature": (0.01, 0), "time": (0.001, 0), "state": (0.1, 0), "output": (0.1, 0),
         "bias": (float(np.float32(np.float32(0.1) * np.float32(0.001))), 0)}
    data = svdf_model("INT8", np.ones((2, 3)), np.ones((2, 4)), np.zeros(2), q=q, state_type="INT8",
                      time_type="INT16")
    with pytest.raises(UnsupportedOpError, match="twice its buffer"):
        Interpreter.from_bytes(data)


def float32_scale_model():
    """The feature multiplier input x feature / state scale computed in double is 1444497131 · 2^0,
    in float32 1444497152: the feature dot product -10229 then gives the state -6880 or -6881. With
    unit time weights, the output scale equal to state x time scale and a bias of 6880, the output
    shows it: 0 (double) or -1 (float32)."""
    s_in, s_wf, s_state = 0.032824791967868805, 0.20345507562160492, 0.009928501211106777
    s_wt = 2.0 ** -10
    s_bias = float(np.float32(np.float32(s_state) * np.float32(s_wt)))
    q = {"input": (s_in, 0), "feature": (s_wf, 0), "time": (s_wt, 0), "state": (s_state, 0),
         "output": (s_bias, 0), "bias": (s_bias, 0)}
    data = svdf_model("INT8", np.array([[127, 1]]), np.array([[1]]), np.array([6880]), q=q)
    x = np.array([[[-81, 58]], [[-81, 58]], [[0, 0]]], np.int8)  # dot products -10229, -10229, 0
    return data, [x]


EXPLICIT["float32_scales"] = float32_scale_model


def test_effective_scales_are_double_products_of_the_scales():
    # The TFLM source beside the wheel computes input->params.scale * weights_feature->params.scale /
    # activation_state->params.scale in float and then widens it; the wheel computes in double
    # (microref first followed the source and gave -1).
    data, inputs = run_case("SVDF", {"explicit": "float32_scales", "kind": "INT8x16"})
    assert Interpreter.from_bytes(data).run([inputs[0][0]])[0].tolist() == [[0]]


def bias_scale_model(bias_scale):
    """State scale x time scale is 0.50000193... in double and 0.5000019 in float32: bias scales
    0.5000192523 and 0.4999992549 are within 1e-5 of one and not of the other."""
    s_state, s_wt = 0.8445627689361572, 0.5920332670211792
    q = {"input": (0.05, 0), "feature": (0.02, 0), "time": (s_wt, 0), "state": (s_state, 0), "output": (0.5, 3),
         "bias": (bias_scale, 0)}
    data = svdf_model("INT8", np.array([[3, -5], [7, 1]]), np.array([[100, -200], [3, 4]]), np.array([10]),
                      q=q, rank=2)
    return data, [np.array([[[20, -3]], [[-128, 127]], [[5, 5]]], np.int8)]


EXPLICIT["bias_scale_double_within"] = lambda: bias_scale_model(0.5000192523002625)
EXPLICIT["bias_scale_double_outside"] = lambda: bias_scale_model(0.4999992549419403)


def test_bias_scale_check_uses_the_double_product():
    # TF_LITE_ENSURE(|bias scale - state scale x time scale| < 1e-5), the product as the wheel forms it.
    ok = run_case("SVDF", {"explicit": "bias_scale_double_within", "kind": "INT8x16"})
    Interpreter.from_bytes(ok[0])
    refused = EXPLICIT["bias_scale_double_outside"]()[0]
    with pytest.raises(ModelError, match="bias scale"):
        Interpreter.from_bytes(refused)
    run_case("SVDF", {"explicit": "bias_scale_double_outside", "kind": "INT8x16"})


def tflm_test_shapes_model(kind, shape):
    """The shapes and scales of TFLM's svdf_test.cc integer cases (batch 2, 2 units, input 2,
    memory 10, rank 2; and batch 1, 64 units, input 16, memory 8, rank 1), with seeded values
    over the types' ranges in place of the test's tables."""
    time_type, state_type = INTEGER_TYPES[kind]
    t_max = 127 if time_type == "INT8" else 32767
    rng = np.random.default_rng(len(kind) * 7 + (shape == "2x2x10"))
    if shape == "2x2x10":
        batch, units, n_in, mem, rank = 2, 2, 2, 10, 2
        q = {"input": (2.5 / 127, 0), "feature": (1.0 / 127, 0), "time": (1.0 / t_max, 0),
             "state": (1.49 / t_max, 0), "output": (1.0 / 127, 0)}
        activation = "RELU"
    else:
        batch, units, n_in, mem, rank = 1, 64, 16, 8, 1
        span = 2 ** (8 if time_type == "INT8" else 16) - 1
        q = {"input": (0.10075444, 2), "feature": (0.00649388, 0), "time": (1.62 / span, 0),
             "state": (35.46 / span, 0), "output": (0.051445257, 0)}
        activation = "NONE"
    q = {k: (float(np.float32(v[0])), v[1]) for k, v in q.items()}
    q["bias"] = (float(np.float32(q["state"][0]) * np.float32(q["time"][0])), 0)
    filters = units * rank
    wf = rng.integers(-127, 128, (filters, n_in))
    wt = rng.integers(-t_max, t_max + 1, (filters, mem))
    bias = rng.integers(-(1 << 12), 1 << 12, units)
    data = svdf_model("INT8", wf, wt, bias, batch=batch, rank=rank, activation=activation, q=q,
                      time_type=time_type, state_type=state_type)
    return data, [rng.integers(-128, 128, (12, batch, n_in)).astype(np.int8)]


for _kind in INTEGER_TYPES:
    for _shape in ("2x2x10", "1x16x64"):
        EXPLICIT[f"tflm_test_{_shape}_{_kind}"] = (lambda k=_kind, s=_shape: tflm_test_shapes_model(k, s))


@pytest.mark.parametrize("kind", list(INTEGER_TYPES))
@pytest.mark.parametrize("shape", ["2x2x10", "1x16x64"])
def test_tflm_svdf_test_shapes_and_scales(kind, shape):
    data, inputs = EXPLICIT[f"tflm_test_{shape}_{kind}"]()
    assert check_svdf_stream(data, inputs, label=f"SVDF {kind}").compared
