"""State across calls, as TFLM keeps it across invoke(): variable tensors persist between run()
calls, reset() restores TFLM's reset values, run_batch runs every sample from the reset state."""
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter

REPRO = Path(__file__).resolve().parents[1].parent / "shared" / "repro"
STATEFUL_REPROS = ["variable_read_unwritten", "variable_in_and_out_same_op", "variable_as_graph_output"]


def _tflm():
    return pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                               reason="tflite-micro (the oracle) is not installed")


def _inputs(it, rng):
    return [rng.integers(-128, 128, d["shape"]).astype(d["dtype"]) for d in it.input_details]


@pytest.mark.parametrize("name", STATEFUL_REPROS)
def test_variable_tensors_match_tflm_call_after_call_and_after_reset(name):
    path = REPRO / f"{name}.tflite"
    if not path.exists():
        pytest.skip("../shared/repro is absent")
    runtime = _tflm()
    ref = runtime.Interpreter.from_file(str(path), arena_size=1 << 20)
    it = Interpreter.from_file(path)
    assert it.stateful
    rng = np.random.default_rng(7)
    calls = [_inputs(it, rng) for _ in range(6)]
    for step, xs in enumerate(calls):
        if step == 3:
            ref.reset()
            it.reset()
        for i, x in enumerate(xs):
            ref.set_input(x, i)
        ref.invoke()
        for j, got in enumerate(it.run(xs)):
            assert np.array_equal(got, ref.get_output(j)), f"call {step}, output {j}"
    # run_batch: every sample is one call from the reset state, and run()'s state is untouched.
    batch = it.run_batch([np.stack([xs[i] for xs in calls]) for i in range(len(calls[0]))])
    for k, xs in enumerate(calls):
        ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(x, i)
        ref.invoke()
        for j, out in enumerate(batch):
            assert np.array_equal(out[k], ref.get_output(j)), f"run_batch sample {k}, output {j}"
