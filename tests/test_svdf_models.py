"""The real SVDF models in ../shared/models against TFLM, call after call: keyword_scrambled_8bit
(int8 time weights and state) and keyword_scrambled (int16 time weights and state), seven SVDF
layers each with up to 32 steps of memory. The state in the SVDF variable tensors must match for
many consecutive calls without reset, again after reset(), and run_batch (every sample from
reset) must match a freshly reset TFLM; the arena plan must equal TFLM's "Arena allocation head"
(the SVDFs' fourteen scratch buffers included)."""

import numpy as np
import pytest

from interp import Interpreter
from interp.runtime.inputs import random_inputs

SVDF_MODELS = ["keyword_scrambled_8bit.tflite", "keyword_scrambled.tflite"]
CALLS = 40  # consecutive calls without reset: past the longest memory (32)
AFTER_RESET = 12

from shared_model_support import assert_bit_equal, shared_model_path, tflm_arena_head, tflm_invoke  # noqa: E402

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")


def _stream(it, rng, n):
    """n calls: full-range inputs and quieter ones (the full range saturates most SVDF states)."""
    calls = []
    for k in range(n):
        xs = random_inputs(it, rng)
        if k % 2:
            xs = [np.clip(np.round(rng.normal(0, 1500, x.shape)), -32768, 32767).astype(x.dtype) for x in xs]
        calls.append(xs)
    return calls


def _assert_every_tensor_equal(it, ref, what):
    """Every tensor the call computed (activations, the SVDF states) against TFLM's."""
    sg = it.model.subgraphs[0]
    for t in sg.tensors:
        if t.data is not None:
            continue
        mine = it.tensor(t.index)
        theirs = np.asarray(ref.GetTensor(t.index, 0)["tensor_data"])
        assert_bit_equal(mine, theirs, f"{what}, tensor {t.index} {t.type_name}{list(t.shape)}"
                                    f"{' (SVDF state)' if t.is_variable else ''}")


@pytest.mark.parametrize("name", SVDF_MODELS)
def test_svdf_model_matches_tflm_call_after_call_and_after_reset(name):
    path = str(shared_model_path(name))
    it = Interpreter.from_file(path)
    assert it.stateful
    assert sum(op.op_name == "SVDF" for op in it.model.subgraphs[0].operators) == 7
    # Every tensor kept, so that each SVDF's state and output can be compared, not just the model's
    # (its scrambled weights make the model's output the same for almost any input).
    ref = runtime.Interpreter.from_file(path, arena_size=16 << 20,
                                        intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    n_out = len(it.output_details)
    rng = np.random.default_rng(sum(map(ord, name)))
    calls = _stream(it, rng, CALLS)
    states = []
    for k, xs in enumerate(calls):
        want = tflm_invoke(ref, xs, n_out)
        got = it.run(xs, keep=True)
        for j, out in enumerate(got):
            assert_bit_equal(out, want[j], f"{name}: call {k} without reset, output {j}")
        _assert_every_tensor_equal(it, ref, f"{name}: call {k} without reset")
        states.append(it.state()["variables"])
    ref.reset()
    it.reset()
    for k, xs in enumerate(calls[:AFTER_RESET]):
        want = tflm_invoke(ref, xs, n_out)
        for j, out in enumerate(it.run(xs, keep=True)):
            assert_bit_equal(out, want[j], f"{name}: call {k} after reset(), output {j}")
        _assert_every_tensor_equal(it, ref, f"{name}: call {k} after reset()")
        for key, value in it.state()["variables"].items():
            assert np.array_equal(value, states[k][key]), f"{name}: state {key!r} after reset, call {k}"
    # The state carries over: the same input leaves other states later in the stream.
    it.run(calls[0])
    assert any(not np.array_equal(v, states[0][key]) for key, v in it.state()["variables"].items())
    # run_batch: each sample from the reset state, like a freshly reset TFLM.
    picks = [0, 5, 17, 39]
    batch = it.run_batch([np.stack([calls[k][i] for k in picks]) for i in range(len(calls[0]))])
    for s, k in enumerate(picks):
        ref.reset()
        want = tflm_invoke(ref, calls[k], n_out)
        for j, out in enumerate(batch):
            assert_bit_equal(out[s], want[j], f"{name}: run_batch sample {s} (call {k}), output {j}")


@pytest.mark.parametrize("name", SVDF_MODELS)
def test_svdf_model_arena_plan_equals_tflm(name):
    path = str(shared_model_path(name))
    it = Interpreter.from_file(path)
    plan = it.plan
    assert plan.exact and plan.arena_bytes == tflm_arena_head(path)
    # The fourteen scratch requests came from microref's SVDF kernels, in TFLM's order.
    svdf = [k for k in it.kernels if k is not None and k.op_name == "SVDF"]
    assert len(svdf) == 7 and all(len(k.scratch_bytes) == 2 for k in svdf)
