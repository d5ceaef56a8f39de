"""UNIDIRECTIONAL_SEQUENCE_LSTM without TFLM: the int16 sigmoid/tanh tables, the gate arithmetic
against a float64 LSTM, the cell clip, state across calls, layouts, and Prepare's refusals."""
import math

import numpy as np
import pytest
from test_diff_lstm import lstm_model

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError, UnsupportedOpError
from ops.lstm import GATE_SIGMOID_TABLE, GATE_TANH_TABLE, TanhInputScaling, lookup16, lstm_tanh_scaling, tanh_int16

GATE_NAMES = ("input", "forget", "cell", "output")


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_lstm(x, gates, h0, c0, clip=0.0):
    """The LSTM in float64: x (B, T, I) batch-major -> outputs (B, T, S), final h, c."""
    h, c = h0.astype(np.float64), c0.astype(np.float64)
    outs = []
    for t in range(x.shape[1]):
        pre = {g: x[:, t] @ np.asarray(w, np.float64).T + h @ np.asarray(r, np.float64).T + b
               for g, (w, r, b) in gates.items()}
        c = sigmoid(pre["forget"]) * c + sigmoid(pre["input"]) * np.tanh(pre["cell"])
        if clip > 0:
            c = np.clip(c, -clip, clip)
        h = np.tanh(c) * sigmoid(pre["output"])
        outs.append(h)
    return np.stack(outs, axis=1), h, c


def random_gates(rng, n_in, s, scale=0.5):
    return {g: (rng.normal(0, scale, (s, n_in)), rng.normal(0, scale, (s, s)), rng.normal(0, scale, s))
            for g in GATE_NAMES}


# ------------------------------------------------------------------------------ int16 nonlinearities

def test_gate_sigmoid_table_is_q015_sigmoid_of_q312():
    x = np.arange(-32768, 32768)
    got = GATE_SIGMOID_TABLE.astype(np.float64) / 32768
    assert np.max(np.abs(got - sigmoid(x / 4096))) < 2e-4
    assert GATE_SIGMOID_TABLE[32768] == 16384  # sigmoid(0) = 0.5 exactly
    assert (np.diff(GATE_SIGMOID_TABLE.astype(np.int64)) >= 0).all()


def test_gate_tanh_table_is_q015_tanh_of_q312():
    x = np.arange(-32768, 32768)
    got = GATE_TANH_TABLE.astype(np.float64) / 32768
    assert np.max(np.abs(got - np.tanh(x / 4096))) < 4e-4
    assert GATE_TANH_TABLE[32768] == 0
    assert (np.diff(GATE_TANH_TABLE.astype(np.int64)) >= 0).all()
    assert GATE_TANH_TABLE[-1] == 32767 and GATE_TANH_TABLE[0] == -32767


@pytest.mark.parametrize("power", [-15, -12, -11, -9, -3, 0])
def test_cell_tanh_reads_the_cell_state_at_its_power_of_two_scale(power):
    scaling = lstm_tanh_scaling(power)
    x = np.arange(-32768, 32768)
    got = tanh_int16(x, scaling.input_multiplier, scaling.input_left_shift) / 32768
    assert np.max(np.abs(got - np.tanh(x * 2.0 ** power))) < 5e-4


def test_tanh_scaling_turns_a_negative_left_shift_into_multiplier_3_and_a_right_shift():
    assert lstm_tanh_scaling(-12) == TanhInputScaling(0, 0)
    assert lstm_tanh_scaling(-11) == TanhInputScaling(0, 1)
    assert lstm_tanh_scaling(-15) == TanhInputScaling(3, 3)
    # Multiplier 3 with right shift 3 is 3/8 of the value: Q0.15 read as Q3.12 times 3.
    assert tanh_int16(np.array([8192]), 3, 3)[0] == lookup16(GATE_TANH_TABLE, np.array([1024]))[0]


# ------------------------------------------------------------------------------ the gate arithmetic

def test_zero_weights_give_half_gates_a_zero_cell_and_the_hidden_zero_point():
    z = np.zeros((3, 2), np.int8)
    gates = {g: (z, np.zeros((3, 3), np.int8), np.zeros(3, np.int32)) for g in GATE_NAMES}
    data = lstm_model("INT8", gates, batch=2, time=4, input_q=(0.05, 7), hidden_q=(1 / 128, -5), weight_scale=0.01)
    it = Interpreter.from_bytes(data)
    rng = np.random.default_rng(0)
    y = it.run([rng.integers(-128, 128, (2, 4, 2)).astype(np.int8)], keep=True)[0]
    assert (y == -5).all()
    assert (it.tensor("cell") == 0).all() and (it.tensor("hidden") == -5).all()


def test_float_lstm_follows_the_float64_equations():
    rng = np.random.default_rng(1)
    gates = {g: tuple(np.asarray(a, np.float32) for a in v) for g, v in random_gates(rng, 3, 4).items()}
    data = lstm_model("FLOAT32", gates, batch=2, time=5)
    x = rng.normal(0, 1, (2, 5, 3)).astype(np.float32)
    want, _, _ = reference_lstm(x.astype(np.float64), gates, np.zeros((2, 4)), np.zeros((2, 4)))
    got = Interpreter.from_bytes(data).run([x])[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["INT8", "INT16"])
def test_quantized_lstm_tracks_the_float_lstm(kind):
    # A well-scaled model: input in [-1, 1], weights in [-0.5, 0.5], hidden in [-1, 1].
    rng = np.random.default_rng(2)
    n_in, s, b, t = 5, 6, 2, 6
    w_scale = 0.5 / 127
    gates_q, gates_real = {}, {}
    if kind == "INT8":
        in_scale, in_zp, hidden_q = 1 / 128, 3, (1 / 128, -2)
    else:
        in_scale, in_zp, hidden_q = 1 / 32768, 0, (1 / 32768, 0)
    bias_scale = float(np.float32(in_scale * w_scale))
    for g in GATE_NAMES:
        w = rng.integers(-127, 128, (s, n_in)).astype(np.int8)
        r = rng.integers(-127, 128, (s, s)).astype(np.int8)
        bias = np.round(rng.normal(0, 0.5, s) / bias_scale).astype(np.int64)
        gates_q[g] = (w, r, bias)
        # Real values: the recurrent FC reads the hidden state at its own scale, so R's real
        # weights are r * w_scale too; the bias is added at the input FC's scale.
        gates_real[g] = (w * w_scale, r * w_scale, bias * bias_scale)
    data = lstm_model(kind, gates_q, batch=b, time=t, input_q=(in_scale, in_zp), hidden_q=hidden_q,
                      weight_scale=w_scale, cell_scale=2.0 ** -11)
    lo, hi = (-128, 127) if kind == "INT8" else (-32768, 32767)
    xq = rng.integers(lo, hi + 1, (b, t, n_in)).astype(kind.lower())
    x_real = (xq.astype(np.float64) - in_zp) * in_scale
    want, _, _ = reference_lstm(x_real, gates_real, np.zeros((b, s)), np.zeros((b, s)))
    got = (Interpreter.from_bytes(data).run([xq])[0].astype(np.float64) - hidden_q[1]) * hidden_q[0]
    assert np.max(np.abs(got - want)) < (0.03 if kind == "INT8" else 0.01)


@pytest.mark.parametrize("kind", ["FLOAT32", "INT8", "INT16"])
def test_two_calls_continue_one_sequence_and_reset_starts_over(kind):
    rng = np.random.default_rng(3)
    n_in, s, b = 3, 4, 2
    data_long, gates = _model(kind, rng, n_in, s, b, time=6)
    data_half, _ = _model(kind, rng, n_in, s, b, time=3, gates=gates)
    x = _inputs(kind, rng, (b, 6, n_in))
    whole = Interpreter.from_bytes(data_long).run([x])[0]
    it = Interpreter.from_bytes(data_half)
    first, second = it.run([x[:, :3]])[0], it.run([x[:, 3:]])[0]
    assert np.array_equal(np.concatenate([first, second], axis=1), whole)
    it.reset()
    assert np.array_equal(it.run([x[:, :3]])[0], first)
    # run_batch runs every sample from the reset state.
    batch = it.run_batch([np.stack([x[:, 3:], x[:, :3]])])[0]
    assert np.array_equal(batch[1], first)
    assert not np.array_equal(batch[0], second) or np.array_equal(first, whole[:, :3])


@pytest.mark.parametrize("kind", ["FLOAT32", "INT8", "INT16"])
def test_time_major_is_batch_major_transposed(kind):
    rng = np.random.default_rng(4)
    n_in, s, b, t = 3, 5, 3, 4
    batch_major, gates = _model(kind, rng, n_in, s, b, time=t)
    time_major, _ = _model(kind, rng, n_in, s, b, time=t, gates=gates, time_major=True)
    x = _inputs(kind, rng, (b, t, n_in))
    y_b = Interpreter.from_bytes(batch_major).run([x])[0]
    y_t = Interpreter.from_bytes(time_major).run([np.ascontiguousarray(x.transpose(1, 0, 2))])[0]
    assert np.array_equal(y_t, y_b.transpose(1, 0, 2))


@pytest.mark.parametrize("clip,scale,bound", [(0.25, 2.0 ** -11, 512), (0.3, 2.0 ** -11, 614),
                                              (10.0, 2.0 ** -11, 20480), (math.inf, 2.0 ** -11, 32767),
                                              (0.0, 2.0 ** -11, 32768)])
def test_cell_state_is_clipped_to_the_truncated_quantized_clip(clip, scale, bound):
    # Input and cell gates saturate (big biases), so the cell grows by ~1.0 per step until clipped.
    s = 2
    z = np.zeros((s, 1), np.int8)
    rz = np.zeros((s, s), np.int8)
    big = np.full(s, 1 << 16, np.int32)  # at multiplier 1 the gate FCs saturate at 32767
    gates = {"input": (z, rz, big), "forget": (z, rz, big), "cell": (z, rz, big), "output": (z, rz, big)}
    data = lstm_model("INT8", gates, time=40, cell_clip=clip, input_q=(1.0, 0), weight_scale=2.0 ** -12,
                      cell_scale=scale)
    it = Interpreter.from_bytes(data)
    for _ in range(3):
        it.run([np.zeros((1, 40, 1), np.int8)], keep=True)
    cell = it.tensor("cell").astype(np.int64)
    assert cell.max() == min(bound, 32767)
    assert cell.min() >= -bound


# ------------------------------------------------------------------------------ Prepare

def test_scratch_buffers_are_four_batch_by_state_cell_arrays():
    from interp.model import load_model
    from ops.registry import PrepareContext, kernel_class
    for kind, element in (("INT8", 2), ("INT16", 2), ("FLOAT32", 4)):
        data, _ = _model(kind, np.random.default_rng(5), 3, 5, 2, time=4)
        model = load_model(data)
        sg = model.subgraphs[0]
        op = sg.operators[0]
        kernel = kernel_class(op)(PrepareContext(op, sg.tensors))
        assert kernel.scratch_bytes == [2 * 5 * element] * 4


def _refusal(variant):
    """A valid int8 LSTM changed in one way TFLM's Prepare (or Eval) refuses, or leaves undefined."""
    rng = np.random.default_rng(6)
    mb = ModelBuilder()
    s, n_in = 3, 2
    x_type, w_type, b_type, c_type = "INT8", "INT8", "INT32", "INT16"
    if variant == "uint8_input":
        x_type = "UINT8"
    if variant == "int16_weights":
        w_type = "INT16"
    if variant == "float_cell":
        c_type = "FLOAT32"
    if variant == "int64_bias":
        b_type = "INT64"
    inputs = [None] * 24
    inputs[0] = mb.input("x", [1, 2, n_in], x_type, scale=0.1, zero_point=0)
    for i in range(1, 9):
        shape = (s, n_in) if i < 5 else (s, s)
        q = dict(scale=0.01)
        if variant == "per_channel" and i == 2:
            q = dict(scale=[0.01] * s, quantized_dimension=0)
        inputs[i] = mb.constant(f"w{i}", rng.integers(-5, 5, shape), w_type, **q)
    for i in range(12, 16):
        inputs[i] = mb.constant(f"b{i}", np.zeros(s, np.int64), b_type, scale=0.001)
    inputs[18] = mb.tensor("h", [1, s], x_type, variable=True, scale=1 / 128, zero_point=0)
    inputs[19] = mb.tensor("c", [1, s], c_type, variable=True,
                           scale=2.0 ** (30 if variant == "huge_cell_scale" else -11), zero_point=0)
    if variant == "peephole":
        inputs[10] = mb.constant("p", np.zeros(s, np.int16), "INT16", scale=0.01)
    if variant == "projection":
        inputs[16] = mb.constant("proj", np.zeros((s, s), np.int8), "INT8", scale=0.01)
    if variant == "layer_norm":
        inputs[21] = mb.constant("ln", np.zeros(s, np.int16), "INT16", scale=0.01)
    if variant == "cifg":
        inputs[1] = None
    if variant == "not_variable":
        inputs[19] = mb.constant("c0", np.zeros((1, s), np.int16), "INT16", scale=2.0 ** -11)
    if variant == "rank2_input":
        inputs[0] = mb.input("x2", [2, n_in], x_type, scale=0.1)
    out = mb.tensor("y", [1, 2, s], x_type, scale=1 / 128, zero_point=0)
    mb.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs if variant != "23_inputs" else inputs[:23], [out],
          fused_activation_function="TANH")
    mb.output(out)
    return mb.build()


@pytest.mark.parametrize("variant,error,words", [
    ("peephole", ModelError, "peephole"), ("projection", ModelError, "projection"),
    ("layer_norm", ModelError, "layer norm"), ("cifg", ModelError, "CIFG"),
    ("not_variable", ModelError, "variable"), ("23_inputs", ModelError, "24 inputs"),
    ("uint8_input", ModelError, "not supported"), ("int16_weights", ModelError, "not supported"),
    ("float_cell", UnsupportedOpError, "cell state FLOAT32"), ("int64_bias", UnsupportedOpError, "bias INT64"),
    ("per_channel", UnsupportedOpError, "per-channel"), ("huge_cell_scale", UnsupportedOpError, "overflows"),
    ("rank2_input", UnsupportedOpError, "rank 2"),
])
def test_prepare_refuses_what_tflm_refuses_or_leaves_undefined(variant, error, words):
    with pytest.raises(error) as e:
        Interpreter.from_bytes(_refusal(variant))
    assert words in str(e.value)


def test_the_unchanged_refusal_model_loads():
    Interpreter.from_bytes(_refusal("none")).run([np.zeros((1, 2, 2), np.int8)])


# ------------------------------------------------------------------------------ helpers

def _model(kind, rng, n_in, s, b, time, gates=None, time_major=False):
    if gates is None:
        if kind == "FLOAT32":
            gates = {g: tuple(np.asarray(a, np.float32) for a in v) for g, v in random_gates(rng, n_in, s).items()}
        else:
            bias_type = np.int32 if kind == "INT8" else np.int64
            gates = {g: (rng.integers(-127, 128, (s, n_in)).astype(np.int8),
                         rng.integers(-127, 128, (s, s)).astype(np.int8),
                         rng.integers(-3000, 3000, s).astype(bias_type)) for g in GATE_NAMES}
    q = {} if kind == "FLOAT32" else dict(
        input_q=(1 / 64, 1) if kind == "INT8" else (2.0 ** -12, 0),
        hidden_q=(1 / 128, -3) if kind == "INT8" else (2.0 ** -15, 0), weight_scale=0.004)
    return lstm_model(kind, gates, batch=b, time=time, time_major=time_major, cell_clip=3.0, **q), gates


def _inputs(kind, rng, shape):
    if kind == "FLOAT32":
        return rng.normal(0, 1, shape).astype(np.float32)
    lo, hi = (-128, 127) if kind == "INT8" else (-32768, 32767)
    return rng.integers(lo, hi + 1, shape).astype(kind.lower())
