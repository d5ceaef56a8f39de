"""UNIDIRECTIONAL_SEQUENCE_LSTM against TFLM, call after call: float32, int8 (int16 cell state,
the converter's intermediate tensors or none) and 16x8; time-major and batch-major; batch, time,
input and state sizes 1-6; input, weight, hidden-state and cell-state scales and zero points from
saturating to vanishing; cell clip off, tight, loose and infinite; the cell gate's activation;
and the inputs TFLM's Prepare refuses (peephole, projection, layer norm, CIFG, non-variable
states, mismatched types and shapes).

The state lives in variable tensors, so each example is run for several consecutive calls without
reset (TFLM's worker invokes the samples of one request in order), and run_batch, which runs
every sample from the reset state, is checked against a fresh TFLM interpreter.
"""
import math

import numpy as np
import pytest
from diff_support import (
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

DIFF_OPS = {"UNIDIRECTIONAL_SEQUENCE_LSTM"}  # the ops this module tests (see test_diff_regressions.py)
KINDS = ["FLOAT32", "INT8", "INT16"]
CALLS = 4  # consecutive calls per example
# Variants of the op's inputs; all but "standard" are refused by TFLM's Prepare.
REFUSED = ["peephole", "projection", "layer_norm", "cifg", "hidden_not_variable", "cell_not_variable",
           "cell_int32", "weight_type_mismatch", "bias_type_mismatch", "weight_shape", "output_shape",
           "hidden_type", "state_size"]
WEIGHT_TYPE = {"FLOAT32": "FLOAT32", "INT8": "INT8", "INT16": "INT8"}
BIAS_TYPE = {"FLOAT32": "FLOAT32", "INT8": "INT32", "INT16": "INT64"}
CELL_TYPE = {"FLOAT32": "FLOAT32", "INT8": "INT16", "INT16": "INT16"}


def log_uniform(lo_exp2: float, hi_exp2: float):
    return st.floats(lo_exp2, hi_exp2).map(lambda e: float(np.float32(2.0 ** e)))


@st.composite
def lstm_cases(draw, kind: str):
    case = dict(kind=kind, seed=draw(seeds), style=draw(input_styles),
                batch=draw(dims(1, 3)), time=draw(dims(1, 5)), n_input=draw(dims(1, 6)), n_state=draw(dims(1, 6)),
                time_major=draw(st.booleans()),
                activation=draw(st.sampled_from(["TANH"] * 10 + ["NONE", "RELU", "SIGN_BIT"])),
                cell_clip=draw(st.sampled_from([0.0, 0.0, 10.0, 1.0, 0.25, 3.0, -1.0, math.inf])),
                proj_clip=draw(st.sampled_from([0.0, 0.0, 2.0])),
                # Weight magnitude: the typical |FC output| is about 2^gain (Q3.12 saturates at 8).
                input_gain=draw(st.floats(-4, 5)), recurrent_gain=draw(st.floats(-4, 5)),
                # An input of rank 4: TFLM reads only its first T*B*I values (dims[2] is I).
                extra_input_dim=draw(st.sampled_from([None] * 12 + [1, 2])),
                bias_style=draw(st.sampled_from(["normal"] * 6 + ["zero", "extreme"])),
                variant=draw(st.sampled_from(["standard"] * 40 + REFUSED)))
    if kind == "INT8":
        case.update(input_scale=draw(log_uniform(-12, 2)), input_zp=draw(zero_points("INT8")),
                    hidden_scale=draw(st.one_of(st.just(1 / 128), log_uniform(-10, -3))),
                    hidden_zp=draw(zero_points("INT8")),
                    weight_zp=draw(st.sampled_from([0] * 8 + [1, -3, 7])),
                    intermediates=draw(st.booleans()))
    elif kind == "INT16":
        case.update(input_scale=draw(st.one_of(st.just(2.0 ** -12), log_uniform(-17, -6))),
                    input_zp=draw(st.sampled_from([0] * 8 + [5, -300])),
                    hidden_scale=draw(st.one_of(st.just(2.0 ** -15), log_uniform(-17, -10))),
                    hidden_zp=draw(st.sampled_from([0] * 8 + [-2, 1000])),
                    weight_zp=draw(st.sampled_from([0] * 8 + [2, -5])))
    if kind == "FLOAT32" and draw(st.integers(0, 5)) == 0:
        # Weights near the float32 range: FC sums overflow to ±inf, clamp to ±FLT_MAX, make NaN.
        case.update(input_gain=draw(st.sampled_from([60.0, 120.0])), recurrent_gain=draw(st.sampled_from([0.0, 126.0])))
    if kind != "FLOAT32":
        # Cell state scale: the converter's powers of two, others (TFLM rounds log2) and far ones.
        case["cell_scale"] = draw(st.one_of(st.sampled_from([2.0 ** -11, 2.0 ** -12, 2.0 ** -15, 2.0 ** -10]),
                                            st.integers(-25, 8).map(lambda k: 2.0 ** k),
                                            log_uniform(-16, -8)))
    return case


def _scale_jitter(rng):
    return float(2.0 ** rng.uniform(-0.5, 0.5))


def build_lstm(case):
    """The model of one case and its CALLS consecutive inputs (on axis 0)."""
    rng = np.random.default_rng(case["seed"])
    kind, variant = case["kind"], case["variant"]
    b, t, n_in, s = case["batch"], case["time"], case["n_input"], case["n_state"]
    quantized = kind != "FLOAT32"
    w_type, bias_type, cell_type = WEIGHT_TYPE[kind], BIAS_TYPE[kind], CELL_TYPE[kind]
    if variant == "cell_int32":
        cell_type = "INT32"
    in_shape = [t, b, n_in] if case["time_major"] else [b, t, n_in]
    if case.get("extra_input_dim"):
        in_shape = in_shape + [case["extra_input_dim"]]
    out_shape = [t, b, s] if case["time_major"] else [b, t, s]
    mb = ModelBuilder()
    q_in = dict(scale=case["input_scale"], zero_point=case["input_zp"]) if quantized else {}
    x = mb.input("x", in_shape, kind, **q_in)

    # Typical |activation| entering each FC, to aim the weight scales at a chosen FC magnitude.
    if kind == "FLOAT32":
        x_typ, h_typ = 1.0, 0.5
    else:
        lo, hi = (-128, 127) if kind == "INT8" else (-32768, 32767)
        x_typ = case["input_scale"] * (hi - lo) / 3
        h_typ = 0.5
    inputs = [None] * 24
    inputs[0] = x
    scales = {}

    def weights(name, rows, cols, typical, gain, position):
        target = 2.0 ** gain / (math.sqrt(max(cols, 1)) * typical)  # typical |w| giving |FC| ~ 2^gain
        mismatched = variant == "weight_type_mismatch" and position == 7
        if kind == "FLOAT32" and not mismatched:
            return mb.constant(name, np.clip(rng.normal(0, target, (rows, cols)), -3e38, 3e38).astype(np.float32))
        w_scale = float(np.float32(target / 64 * _scale_jitter(rng)))
        scales[position] = w_scale
        values = rng.integers(-127, 128, (rows, cols))
        wt = ("INT16" if kind != "FLOAT32" else "INT8") if mismatched else w_type
        return mb.constant(name, values.astype(np.int64), wt, scale=w_scale, zero_point=case.get("weight_zp", 0))

    for position, (name, cols, typical, gain) in enumerate(
            [("w_i", n_in, x_typ, case["input_gain"]), ("w_f", n_in, x_typ, case["input_gain"]),
             ("w_c", n_in, x_typ, case["input_gain"]), ("w_o", n_in, x_typ, case["input_gain"]),
             ("r_i", s, h_typ, case["recurrent_gain"]), ("r_f", s, h_typ, case["recurrent_gain"]),
             ("r_c", s, h_typ, case["recurrent_gain"]), ("r_o", s, h_typ, case["recurrent_gain"])], start=1):
        rows = s + 1 if (variant == "weight_shape" and position == 3) else s
        inputs[position] = weights(name, rows, cols, typical, gain, position)
    for position, name in zip(range(12, 16), ["b_i", "b_f", "b_c", "b_o"]):
        bt = bias_type
        if variant == "bias_type_mismatch" and position == 14:
            bt = "INT64" if bias_type != "INT64" else "INT32"
        if kind == "FLOAT32" and bt == "FLOAT32":
            values = rng.normal(0, 1, s) if case["bias_style"] != "zero" else np.zeros(s)
            if case["bias_style"] == "extreme":
                values = rng.choice([-1e30, 1e30, 0.0, 3.0, 3e38, -3e38], s)
            inputs[position] = mb.constant(name, values.astype(np.float32), "FLOAT32")
            continue
        b_scale = float(np.float32(case.get("input_scale", 1.0) * scales.get(position - 11, 1.0)))
        if case["bias_style"] == "zero":
            values = np.zeros(s, np.int64)
        elif case["bias_style"] == "extreme":
            info = np.iinfo(np.int32 if bt == "INT32" else np.int64)
            edge = [info.min, info.max, 0, 1 << 20] if bt == "INT32" else [-(1 << 40), 1 << 40, 0, 1 << 20]
            values = rng.choice(np.array(edge, np.int64), s)
        else:
            values = np.round(rng.normal(0, 1, s) / b_scale).clip(-2 ** 31, 2 ** 31 - 1).astype(np.int64)
        inputs[position] = mb.constant(name, values, bt, scale=b_scale)

    state_shape = [b, s] if variant != "state_size" else [b, s + 1]
    hidden_type = kind if variant != "hidden_type" else ("INT16" if kind == "INT8" else "INT8")
    q_h = dict(scale=case["hidden_scale"], zero_point=case["hidden_zp"]) if quantized else {}
    if hidden_type == "INT16" and kind == "INT8":
        q_h = dict(scale=case["hidden_scale"], zero_point=0)
    inputs[18] = mb.tensor("hidden", state_shape, hidden_type, variable=variant != "hidden_not_variable", **q_h)
    q_c = dict(scale=case["cell_scale"], zero_point=0) if quantized else {}
    inputs[19] = mb.tensor("cell", [b, s], cell_type, variable=variant != "cell_not_variable", **q_c)

    def extra(name, shape):
        if kind == "FLOAT32":
            return mb.constant(name, rng.normal(0, 0.5, shape).astype(np.float32))
        if name.startswith("ln"):
            return mb.constant(name, rng.integers(-1000, 1000, shape).astype(np.int16), "INT16", scale=1e-3)
        return mb.constant(name, rng.integers(-127, 128, shape).astype(np.int8), "INT8", scale=0.01)

    if variant == "peephole":
        for position in (9, 10, 11):
            inputs[position] = extra(f"peephole{position}", [s])
    elif variant == "projection":
        inputs[16] = extra("projection", [s, s])
    elif variant == "layer_norm":
        for position in (20, 21, 22, 23):
            inputs[position] = extra(f"ln{position}", [s])
    elif variant == "cifg":
        inputs[1] = inputs[5] = inputs[12] = None

    q_out = q_h if quantized and hidden_type == kind else ({} if not quantized else q_in)
    out = mb.tensor("y", out_shape if variant != "output_shape" else out_shape[:2] + [s + 1], kind, **q_out)
    intermediates = []
    if case.get("intermediates"):
        # What the converter attaches to an int8 LSTM: four empty float tensors and the
        # effective hidden scale.
        intermediates = [mb.tensor(f"inter{i}", [0], "FLOAT32") for i in range(4)]
        intermediates.append(mb.tensor("effective_hidden_scale", [0], "INT8", **q_h))
    mb.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [out], intermediates=intermediates,
          fused_activation_function=case["activation"], cell_clip=case["cell_clip"], proj_clip=case["proj_clip"],
          time_major=case["time_major"])
    mb.output(out)
    data = mb.build()
    if kind == "FLOAT32":
        xs = random_inputs(rng, in_shape, np.float32, CALLS, scale=0.01, style=case["style"])
    else:
        xs = random_inputs(rng, in_shape, np.dtype(kind.lower()), CALLS, zero_point=case["input_zp"],
                           style=case["style"])
    return data, [xs]


def check_lstm_stream(data: bytes, inputs: list, *, label: str):
    """The calls in ``inputs`` (stacked on axis 0) without reset, then reset() and the first again."""
    calls = calls_from(inputs)
    return check_stateful(data, calls + [None] + calls[:1], label=label)


def run_case(op, case):
    assert op == "UNIDIRECTIONAL_SEQUENCE_LSTM"
    note_case(**case)
    data, inputs = nan_cell_model() if case.get("explicit") == "nan_cell" else build_lstm(case)
    label = f"UNIDIRECTIONAL_SEQUENCE_LSTM {case['kind']}"
    record(check_lstm_stream(data, inputs, label=label), label)


@pytest.mark.parametrize("kind", KINDS)
def test_lstm_matches_tflm_call_after_call(kind):
    run_examples(lstm_cases(kind), lambda case: run_case("UNIDIRECTIONAL_SEQUENCE_LSTM", case), fraction=1.0)


# ------------------------------------------------------------------------------ explicit models

def lstm_model(kind, gates, *, batch=1, time=1, time_major=False, activation="TANH", cell_clip=0.0,
               input_q=(1.0, 0), hidden_q=(1.0, 0), cell_scale=2.0 ** -11, weight_scale=1.0):
    """A one-op LSTM model from explicit weights: ``gates`` maps "input", "forget", "cell",
    "output" to (W [S, I], R [S, S], bias [S]) arrays, stored as the kind's types."""
    s, n_in = np.asarray(gates["forget"][0]).shape
    mb = ModelBuilder()
    quantized = kind != "FLOAT32"
    in_shape = [time, batch, n_in] if time_major else [batch, time, n_in]
    out_shape = [time, batch, s] if time_major else [batch, time, s]
    qi = dict(scale=input_q[0], zero_point=input_q[1]) if quantized else {}
    qh = dict(scale=hidden_q[0], zero_point=hidden_q[1]) if quantized else {}
    inputs = [None] * 24
    inputs[0] = mb.input("x", in_shape, kind, **qi)
    qw = dict(scale=weight_scale, zero_point=0) if quantized else {}
    for g, (wpos, rpos, bpos) in {"input": (1, 5, 12), "forget": (2, 6, 13), "cell": (3, 7, 14),
                                  "output": (4, 8, 15)}.items():
        w, r, bias = gates[g]
        inputs[wpos] = mb.constant(f"w_{g}", np.asarray(w), WEIGHT_TYPE[kind], **qw)
        inputs[rpos] = mb.constant(f"r_{g}", np.asarray(r), WEIGHT_TYPE[kind], **qw)
        qb = dict(scale=float(np.float32(input_q[0] * weight_scale))) if quantized else {}
        inputs[bpos] = mb.constant(f"b_{g}", np.asarray(bias), BIAS_TYPE[kind], **qb)
    inputs[18] = mb.tensor("hidden", [batch, s], kind, variable=True, **qh)
    inputs[19] = mb.tensor("cell", [batch, s], CELL_TYPE[kind], variable=True,
                           **(dict(scale=cell_scale, zero_point=0) if quantized else {}))
    out = mb.tensor("y", out_shape, kind, **qh)
    mb.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, [out], fused_activation_function=activation,
          cell_clip=cell_clip, time_major=time_major)
    mb.output(out)
    return mb.build()


NAN_CELL_CASE = {"explicit": "nan_cell", "kind": "FLOAT32"}


def nan_cell_model():
    """Step 2 makes the cell NaN: cell gate -inf (activation NONE, the FCs clamp to -FLT_MAX and
    their sum overflows), input gate sigmoid(-1e30) = 0, and 0 * -inf is NaN. The cell clip is 10."""
    one = np.ones((1, 1), np.float32)
    zero = np.zeros(1, np.float32)
    gates = {"input": (1e30 * one, 0 * one, zero), "forget": (0 * one, 0 * one, zero),
             "cell": (3e38 * one, -3e38 * one, zero), "output": (0 * one, 0 * one, zero)}
    data = lstm_model("FLOAT32", gates, time=2, activation="NONE", cell_clip=10.0)
    x = np.array([[[1.0], [-1.0]]], np.float32)
    return data, [np.stack([x, -x, x])]


def test_float_nan_cell_state_stays_nan():
    # TFLM's Clipping is std::max(std::min(clip, v), -clip), which read literally turns a NaN into
    # +clip; the wheel keeps the NaN (microref first clipped it to 10 and differed).
    data, inputs = nan_cell_model()
    outcome = check_lstm_stream(data, inputs, label="UNIDIRECTIONAL_SEQUENCE_LSTM FLOAT32")
    assert outcome.compared, outcome.message
    y = Interpreter.from_bytes(data).run([inputs[0][0]])[0]
    assert y[0, 0, 0] == np.float32(0.5) and np.isnan(y[0, 1, 0])
