"""The custom operators TFLM registers, against TFLM: CIRCULAR_BUFFER and
TFLite_Detection_PostProcess, built with ModelBuilder's custom operators and flexbuffer options.

CIRCULAR_BUFFER keeps state across invokes: its models are checked call after call
(``check_stateful``). Variants microref refuses on purpose (a period of more than one call, an
output that is not a variable tensor: see ops/circular_buffer.py) are checked to be refused
while TFLM runs them.
"""
import numpy as np
import pytest
from diff_support import OUTCOMES, Outcome, _assert_same, note_case, record, run_examples, seeds, tflm_run, zero_points
from flatbuffers import flexbuffers
from hypothesis import strategies as st

from interp import Interpreter, ModelError, UnsupportedOpError
from interp.builder import ModelBuilder

DIFF_OPS = {"CIRCULAR_BUFFER"}  # the ops this module tests (see test_diff_regressions.py)
CALLS = 7


def check_stateful(data: bytes, inputs: list, *, label: str) -> Outcome:
    """A stateful model's differential property: TFLM's consecutive calls (one interpreter, no
    reset) equal microref's consecutive run() calls; a reset() in the middle restarts both; and
    run_batch (every sample from the reset state) equals a fresh TFLM interpreter's first call."""
    n = inputs[0].shape[0]
    samples = [[x[i] for x in inputs] for i in range(n)]
    middle = n // 2
    verdict, payload = tflm_run(data, samples[:middle] + [None] + samples[middle:])
    if verdict != "ok":
        try:
            Interpreter.from_bytes(data)
        except (ModelError, UnsupportedOpError):
            OUTCOMES[label]["rejected by both"] += 1
            return Outcome(False, payload)
        raise AssertionError(f"TFLM refuses this model ({verdict}) but microref loads it. TFLM: {payload}")
    payload = payload[:middle] + payload[middle + 1:]  # drop the reset marker's None
    try:
        it = Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError) as e:
        raise AssertionError(f"TFLM accepts this model but microref refuses it: {type(e).__name__}: {e}") from None
    assert it.stateful
    for i, sample in enumerate(samples):
        if i == middle:
            it.reset()
        got = it.run(sample)
        for j, want in enumerate(payload[i]):
            _assert_same(got[j], want, f"output {j}, call {i}{' (after reset)' if i >= middle else ''}", it)
    batch = it.run_batch(inputs)
    verdict, fresh = tflm_run(data, [[x[n - 1] for x in inputs]])
    assert verdict == "ok", fresh
    for j in range(len(payload[0])):
        _assert_same(batch[j][0], payload[0][j], f"output {j}, run_batch() sample 0", it)
        _assert_same(batch[j][n - 1], fresh[0][j], f"output {j}, run_batch() sample {n - 1} (from reset)", it)
    OUTCOMES[label]["compared"] += 1
    return Outcome(True)


# ------------------------------------------------------------------------------ CIRCULAR_BUFFER

def circular_buffer_model(*, batch=1, slots=4, width=1, depth=3, zero_point=0, variable=True, options=b"",
                          relu_after=False) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [batch, 1, width, depth], "INT8", scale=0.5, zero_point=zero_point)
    y = b.tensor("buffer", [batch, slots, width, depth], "INT8", scale=0.5, zero_point=zero_point,
                 variable=variable)
    b.op("CUSTOM", [x], [y], custom_code="CIRCULAR_BUFFER", custom_options=options)
    if relu_after:
        z = b.tensor("z", [batch, slots, width, depth], "INT8", scale=0.5, zero_point=zero_point)
        b.op("RELU", [y], [z])
        b.output(z)
    else:
        b.output(y)
    return b.build()


@st.composite
def circular_buffer_cases(draw):
    case = dict(batch=draw(st.sampled_from([1, 1, 1, 2])), slots=draw(st.sampled_from([1, 2, 3, 4, 5, 7, 13])),
                width=draw(st.sampled_from([1, 1, 2, 3])), depth=draw(st.integers(1, 8)),
                zero_point=draw(zero_points("INT8")), variable=draw(st.sampled_from([True] * 9 + [False])),
                seed=draw(seeds))
    # element 0 of the options' vector: the map's alphabetically first key, or the vector's first item.
    first = draw(st.sampled_from([1] * 6 + [0, -1, 2, 3]))
    case["options"] = draw(st.sampled_from([
        ("none",), ("map", {"cycles_max": first}),
        ("map", {"cycles_max": draw(st.integers(-3, 3)), "a_first": first}),
        ("map", {"cycles_max": first, "z_last": draw(st.sampled_from([7, 2 ** 40, -(2 ** 33)]))}),
        ("vector", [first, draw(st.integers(-(2 ** 40), 2 ** 40))]),
    ]))
    case["first"] = first
    return case


def _options_bytes(spec) -> bytes:
    return b"" if spec[0] == "none" else flexbuffers.Dumps(spec[1])


def expected_period(case) -> int:
    """cycles_max as TFLM derives it, computed from how the case wrote its options."""
    value = 0 if case["options"][0] == "none" else case["first"]
    if value > 0:
        return value
    return 1 if case["slots"] in (5, 13, 25) else 2


def run_circular_buffer_case(case: dict):
    note_case(**case)
    rng = np.random.default_rng(case["seed"])
    data = circular_buffer_model(batch=case["batch"], slots=case["slots"], width=case["width"],
                                 depth=case["depth"], zero_point=case["zero_point"], variable=case["variable"],
                                 options=_options_bytes(case["options"]))
    shape = (CALLS, case["batch"], 1, case["width"], case["depth"])
    inputs = [rng.integers(-128, 128, shape).astype(np.int8)]
    label = "CIRCULAR_BUFFER"
    if expected_period(case) == 1 and case["variable"]:
        record(check_stateful(data, inputs, label=label), label)
        return
    # TFLM runs it; microref refuses it, saying why.
    verdict, payload = tflm_run(data, [[inputs[0][0]]])
    assert verdict == "ok", payload
    with pytest.raises(UnsupportedOpError, match="cycles_max|not a variable tensor"):
        Interpreter.from_bytes(data)
    OUTCOMES[label]["refused (TFLM's period or arena)"] += 1


def run_case(op: str, case: dict):
    if op == "CIRCULAR_BUFFER":
        run_circular_buffer_case(case)
    else:
        raise AssertionError(op)


def test_circular_buffer_matches_tflm_call_after_call():
    run_examples(circular_buffer_cases(), lambda case: run_case("CIRCULAR_BUFFER", case), fraction=0.5)


def test_circular_buffer_goldens_of_tflm_test():
    """circular_buffer_test.cc, OutputTensorOnEveryIterationLength4: depth 3, 4 slots, period 1."""
    data = circular_buffer_model(options=flexbuffers.Dumps({"cycles_max": 1}))
    goldens = [[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3], [0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6],
               [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
               [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]]
    inputs = np.arange(1, 16, dtype=np.int8).reshape(5, 1, 1, 1, 3)
    it = Interpreter.from_bytes(data)
    for i, golden in enumerate(goldens):
        assert it.run([inputs[i]])[0].ravel().tolist() == golden
    verdict, payload = tflm_run(data, [[x] for x in inputs])
    assert verdict == "ok" and [p[0].ravel().tolist() for p in payload] == goldens


def test_circular_buffer_period_two_skips_later_operators_in_tflm():
    """Why microref refuses a period above one: TFLM's invoke stops at the buffer on the calls it
    aborts, and the RELU after it leaves its output as the arena held it (not RELU of the buffer)."""
    data = circular_buffer_model(options=flexbuffers.Dumps({"cycles_max": 2}), relu_after=True)
    x = np.full((1, 1, 1, 3), 5, np.int8)
    verdict, payload = tflm_run(data, [[x]])
    assert verdict == "ok"
    buffer_after_one_call = np.zeros((1, 4, 1, 3), np.int8)
    buffer_after_one_call[0, 3] = 5
    assert not np.array_equal(payload[0][0], buffer_after_one_call)  # the RELU did not run
    with pytest.raises(UnsupportedOpError, match="kTfLiteAbort"):
        Interpreter.from_bytes(data)


# TFLM-free checks of the circular buffer's options and refusals.

@pytest.mark.parametrize("options, expected", [
    (b"", 0),
    (flexbuffers.Dumps({"cycles_max": 3}), 3),
    (flexbuffers.Dumps({"a": -2, "cycles_max": 1}), -2),  # element 0 is the first key's value
    (flexbuffers.Dumps([2 ** 32 + 1, 5]), 1),  # a 64-bit element cut to int32
    (flexbuffers.Dumps(7), None),  # no vector: TFLM would read outside the options
    (flexbuffers.Dumps({}), None),
])
def test_circular_buffer_reads_element_0_as_tflm_does(options, expected):
    from ops.circular_buffer import cycles_max_option
    assert cycles_max_option(options) == expected


def test_circular_buffer_state_resets_to_the_zero_point():
    data = circular_buffer_model(slots=2, depth=2, zero_point=-5, options=flexbuffers.Dumps({"cycles_max": 1}))
    it = Interpreter.from_bytes(data)
    x = np.array([1, 2], np.int8).reshape(1, 1, 1, 2)
    assert it.run([x])[0].ravel().tolist() == [-5, -5, 1, 2]
    assert it.run([x * 3])[0].ravel().tolist() == [1, 2, 3, 6]
    it.reset()
    assert it.run([x])[0].ravel().tolist() == [-5, -5, 1, 2]
    # run_batch: every sample starts from the reset state.
    batch = it.run_batch([np.stack([x, x * 2])])[0]
    assert batch.reshape(2, -1).tolist() == [[-5, -5, 1, 2], [-5, -5, 2, 4]]


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(variable=False, options=flexbuffers.Dumps({"cycles_max": 1})), UnsupportedOpError, "not a variable"),
    (dict(options=b""), UnsupportedOpError, "cycles_max 2"),  # 4 slots: TFLM guesses a period of 2
    (dict(slots=4, width=2, depth=96, options=b""), UnsupportedOpError, "static counter"),
])
def test_circular_buffer_refusals(kwargs, error, message):
    with pytest.raises(error, match=message):
        Interpreter.from_bytes(circular_buffer_model(**kwargs))


def test_circular_buffer_guesses_a_period_of_one_for_5_13_25_slots():
    for slots in (5, 13, 25):
        kernel = Interpreter.from_bytes(circular_buffer_model(slots=slots)).kernels[0]
        assert kernel.params.cycles_max == 1
