"""The real LSTM models in ../shared/models against TFLM, call after call: the state carried in the
LSTM's variable tensors must match for many consecutive calls without reset, again after
reset(), and run_batch (every sample from reset) must match a freshly reset TFLM; the arena plan
must equal TFLM's "Arena allocation head" (the LSTM's four scratch buffers included)."""

import numpy as np
import pytest

from interp import Interpreter
from interp.runtime.inputs import random_inputs

LSTM_MODELS = ["trained_lstm_int8.tflite", "trained_lstm.tflite", "micro_speech_lstm.tflite",
               "dtln_noise_suppression.tflite"]
CALLS = 12  # consecutive calls without reset
AFTER_RESET = 3

from shared_model_support import assert_bit_equal, shared_model_path, tflm_arena_head, tflm_invoke  # noqa: E402

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")


@pytest.mark.parametrize("name", LSTM_MODELS)
def test_lstm_model_matches_tflm_call_after_call_and_after_reset(name):
    path = str(shared_model_path(name))
    it = Interpreter.from_file(path)
    assert it.stateful
    ref = runtime.Interpreter.from_file(path, arena_size=16 << 20)
    n_out = len(it.output_details)
    rng = np.random.default_rng(sum(map(ord, name)))
    calls = [random_inputs(it, rng) for _ in range(CALLS)]
    first = None
    for k, xs in enumerate(calls):
        want = tflm_invoke(ref, xs, n_out)
        first = first or want
        for j, got in enumerate(it.run(xs)):
            assert_bit_equal(got, want[j], f"{name}: call {k} without reset, output {j}")
    ref.reset()
    it.reset()
    for k, xs in enumerate(calls[:AFTER_RESET]):
        want = tflm_invoke(ref, xs, n_out)
        for j, got in enumerate(it.run(xs)):
            assert_bit_equal(got, want[j], f"{name}: call {k} after reset(), output {j}")
    # The state carries over: the first call's outputs differ from a later call's on the same input.
    later = it.run(calls[0])
    assert any(not np.array_equal(a, b.reshape(a.shape)) for a, b in zip(later, first))
    # run_batch: each sample from the reset state, like a freshly reset TFLM.
    batch = it.run_batch([np.stack([xs[i] for xs in calls[:4]]) for i in range(len(calls[0]))])
    for k, xs in enumerate(calls[:4]):
        ref.reset()
        want = tflm_invoke(ref, xs, n_out)
        for j, out in enumerate(batch):
            assert_bit_equal(out[k], want[j], f"{name}: run_batch sample {k}, output {j}")


@pytest.mark.parametrize("name", LSTM_MODELS)
def test_lstm_model_arena_plan_equals_tflm(name):
    path = str(shared_model_path(name))
    assert Interpreter.from_file(path).plan.arena_bytes == tflm_arena_head(path)
