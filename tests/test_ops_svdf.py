"""SVDF without the TFLM wheel: hand-computed values of the memory, the rank reduction, the integer
rescale and wrap-around, the fused activations' NaN handling, the scratch requests, and the models
TFLM's Prepare refuses. (tests/test_diff_svdf.py checks all of it against TFLM.)"""
import numpy as np
import pytest

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError, UnsupportedOpError
from ops.svdf import activation_val_float


def float_svdf(wf, wt, bias, *, batch=1, rank=1, activation="NONE"):
    wf, wt = np.asarray(wf, np.float32), np.asarray(wt, np.float32)
    filters, n_in = wf.shape
    mb = ModelBuilder()
    x = mb.input("x", [batch, n_in], "FLOAT32")
    state = mb.tensor("state", [batch, filters * wt.shape[1]], "FLOAT32", variable=True)
    y = mb.tensor("y", [batch, filters // rank], "FLOAT32")
    mb.op("SVDF", [x, mb.constant("wf", wf), mb.constant("wt", wt), mb.constant("bias", np.asarray(bias, np.float32)),
                   state], [y], rank=rank, fused_activation_function=activation)
    mb.output(y)
    return Interpreter.from_bytes(mb.build())


def int8_svdf(wf, wt, bias, *, q, batch=1, rank=1, time_type="INT16", state_type="INT16", activation="NONE"):
    wf, wt = np.asarray(wf), np.asarray(wt)
    filters, n_in = wf.shape
    mb = ModelBuilder()
    x = mb.input("x", [batch, n_in], "INT8", scale=q["input"][0], zero_point=q["input"][1])
    state = mb.tensor("state", [batch, filters * wt.shape[1]], state_type, variable=True,
                      scale=q["state"][0], zero_point=q["state"][1])
    y = mb.tensor("y", [batch, filters // rank], "INT8", scale=q["output"][0], zero_point=q["output"][1])
    s_bias = float(np.float32(q["state"][0] * q["time"][0]))
    mb.op("SVDF", [x, mb.constant("wf", wf.astype(np.int64), "INT8", scale=q["feature"][0], zero_point=0),
                   mb.constant("wt", wt.astype(np.int64), time_type, scale=q["time"][0], zero_point=0),
                   mb.constant("bias", np.asarray(bias, np.int64), "INT32", scale=s_bias), state], [y],
          rank=rank, fused_activation_function=activation)
    mb.output(y)
    return Interpreter.from_bytes(mb.build())


def test_memory_keeps_the_last_memory_size_feature_values_oldest_first():
    # One filter, memory 3, feature weight 1, time weights (1, 10, 100): y = s[t-2] + 10 s[t-1] + 100 s[t].
    it = float_svdf([[1.0]], [[1.0, 10.0, 100.0]], [0.5])
    outs = [float(it.run([np.array([[v]], np.float32)])[0][0, 0]) for v in (1, 2, 3, 4)]
    assert outs == [100.5, 210.5, 321.5, 432.5]
    assert it.state()["variables"]["state"].tolist() == [[2.0, 3.0, 4.0]]
    it.reset()
    assert it.state()["variables"]["state"].tolist() == [[0.0, 0.0, 0.0]]
    assert float(it.run([np.array([[1.0]], np.float32)])[0][0, 0]) == 100.5


def test_rank_sums_consecutive_filters_into_one_unit_and_batches_stay_apart():
    # 4 filters, rank 2: unit 0 = filters 0 + 1, unit 1 = filters 2 + 3; memory 1, time weight 1.
    wf = [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]
    it = float_svdf(wf, [[1.0]] * 4, [0.0, 100.0], batch=2, rank=2)
    y = it.run([np.array([[1.0, 2.0], [-1.0, 5.0]], np.float32)])[0]
    assert y.tolist() == [[3.0, 108.0], [4.0, 113.0]]


def test_run_batch_starts_every_sample_from_reset():
    it = float_svdf([[1.0]], [[1.0, 1.0]], [0.0])
    xs = np.array([[[1.0]], [[2.0]], [[3.0]]], np.float32)
    assert it.run_batch([xs])[0].ravel().tolist() == [1.0, 2.0, 3.0]
    assert [float(it.run([x])[0][0, 0]) for x in xs] == [1.0, 3.0, 5.0]


def test_float_activations_follow_fmax_fmin_on_nan():
    a = np.array([np.nan, -np.inf, np.inf, -0.0, 0.5, -7.0], np.float32)
    assert np.array_equal(activation_val_float(1, a), [0, 0, np.inf, 0, 0.5, 0])
    assert np.array_equal(activation_val_float(2, a), [1, -1, 1, 0, 0.5, -1])
    assert np.array_equal(activation_val_float(3, a), [6, 0, 6, 0, 0.5, 0])
    assert np.array_equal(activation_val_float(5, a), [0, 1, 0, 1, 0, 1])
    assert np.array_equal(activation_val_float(0, a), a, equal_nan=True)


Q = {"input": (0.5, 0), "feature": (1.0, 0), "time": (1.0, 0), "state": (0.5, 0), "output": (0.25, 0)}


def test_integer_path_rescales_with_both_multipliers_and_ignores_the_activation():
    # feature multiplier 0.5 x 1 / 0.5 = 1: state = x; rescale 0.5 x 1 / 0.25 = 2: y = 2 (bias + state).
    for activation in ("NONE", "RELU", "TANH"):
        it = int8_svdf([[1]], [[1]], [-3], q=Q, activation=activation)
        ys = [int(it.run([np.array([[v]], np.int8)])[0][0, 0]) for v in (5, -20, 100)]
        assert ys == [4, -46, 127]  # 2 * (5 - 3), 2 * (-20 - 3), 2 * 97 saturated


def test_int8_state_wraps_when_the_zero_point_pushes_it_out_of_range():
    # The int8 variant stores zero_point + clamp(dot, -128, 127) as int8: 100 + 100 wraps to -56,
    # and the time matmul reads -56 - 100 = -156.
    q = dict(Q, state=(0.5, 100))
    it = int8_svdf([[1]], [[1]], [0], q=q, time_type="INT8", state_type="INT8")
    y = it.run([np.array([[100]], np.int8)])[0]
    assert it.state()["variables"]["state"].tolist() == [[-56]]
    assert int(y[0, 0]) == -128  # 2 * -156 saturated
    it.reset()
    assert it.state()["variables"]["state"].tolist() == [[100]]  # reset fills an int8 state with its zero point


def test_int8_time_weights_over_an_int16_state_use_its_first_bytes():
    # Memory 2, one filter: the int16 state [0, 0] has 4 bytes; Eval shifts and writes the first 2 as int8.
    it = int8_svdf([[1]], [[1, 1]], [0], q=Q, time_type="INT8", state_type="INT16")
    it.run([np.array([[3]], np.int8)])
    assert it.state()["variables"]["state"].tolist() == [[3 << 8, 0]]  # bytes 00 03 00 00
    y = it.run([np.array([[-2]], np.int8)])[0]
    assert it.state()["variables"]["state"].tolist() == [[(-2 << 8) | 3, 0]]  # bytes 03 fe 00 00
    assert int(y[0, 0]) == 2


def test_scratch_requests_follow_tflm_order():
    it = int8_svdf([[1, 2]] * 6, [[1, 1, 1]] * 6, [0, 0, 0], q=Q, batch=2, rank=2)
    assert it.kernels[0].scratch_bytes == [2 * 6 * 4, 2 * 3 * 4]
    it = float_svdf([[1.0, 2.0]] * 6, [[1.0, 1.0, 1.0]] * 6, [0, 0, 0], batch=2, rank=2)
    assert it.kernels[0].scratch_bytes == [2 * 6 * 4]


def _model(*, rank=1, variable=True, bias=True, state_type="FLOAT32", time_type="FLOAT32", bias_scale=None):
    mb = ModelBuilder()
    quantized = state_type != "FLOAT32"
    q = dict(scale=0.5, zero_point=0) if quantized else {}
    x = mb.input("x", [1, 2], "INT8" if quantized else "FLOAT32", **q)
    wf = mb.constant("wf", np.ones((2, 2), np.int8 if quantized else np.float32), **q)
    wt = mb.constant("wt", np.ones((2, 3)), time_type, **q)
    b = mb.constant("bias", np.zeros(2 // max(rank, 1)), "INT32" if quantized else "FLOAT32",
                    **(dict(scale=bias_scale or 0.25) if quantized else {})) if bias else None
    state = mb.tensor("state", [1, 6], state_type, variable=variable, **q)
    y = mb.tensor("y", [1, 2 // max(rank, 1)], "INT8" if quantized else "FLOAT32", **q)
    mb.op("SVDF", [x, wf, wt, b, state], [y], rank=rank)
    mb.output(y)
    return mb.build()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(rank=0), ModelError, "rank is 0"),
    # A non-variable state nothing writes: refused as a read of unwritten memory (undefined)
    # before SVDF's Prepare (which TFLM would also refuse it with) is reached.
    (dict(variable=False), UnsupportedOpError, "state"),
    (dict(bias=False), ModelError, "bias"),
    (dict(state_type="INT8", time_type="INT16"), UnsupportedOpError, "twice its buffer"),
    (dict(state_type="INT16", time_type="INT16", bias_scale=0.3), ModelError, "bias scale"),
    (dict(state_type="FLOAT32", time_type="INT8"), ModelError, "weights_time type INT8"),
])
def test_prepare_refuses_what_tflm_refuses(kwargs, error, match):
    with pytest.raises(error, match=match):
        Interpreter.from_bytes(_model(**kwargs))


def test_well_formed_models_load():
    Interpreter.from_bytes(_model())
    Interpreter.from_bytes(_model(state_type="INT16", time_type="INT16"))
    Interpreter.from_bytes(_model(state_type="INT8", time_type="INT8"))
    Interpreter.from_bytes(_model(state_type="INT16", time_type="INT8"))


def test_an_empty_state_is_refused():
    # A batch of 0: TFLM refuses the zero-sized tensors as dynamic (and its state shift loop would
    # run past the buffer); so does microref.
    mb = ModelBuilder()
    x = mb.input("x", [0, 2], "FLOAT32")
    state = mb.tensor("state", [0, 6], "FLOAT32", variable=True)
    y = mb.tensor("y", [0, 2], "FLOAT32")
    mb.op("SVDF", [x, mb.constant("wf", np.ones((2, 2), np.float32)), mb.constant("wt", np.ones((2, 3), np.float32)),
                   mb.constant("bias", np.zeros(2, np.float32)), state], [y], rank=1)
    mb.output(y)
    with pytest.raises((UnsupportedOpError, ModelError)):
        Interpreter.from_bytes(mb.build())
