"""Live differential test: microref against TFLM (tflite-micro) on the real models in ../shared/models.

Every model whose operators microref supports must give TFLM's outputs bit for bit, for seeded
inputs drawn over the whole input range, one at a time and batched.

Stateful models (variable tensors as LSTM and SVDF keep them, resource variables, the signal
library's buffers) are also run as a stream: 10 consecutive calls without reset compared call by
call with TFLM's consecutive invokes, then reset() on both and 3 calls more. A model using an
operator microref does not implement yet fails here, naming the operators — it is not skipped.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter, UnsupportedOpError, load_model
from interp.runtime.inputs import random_inputs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
MODELS = sorted(p.name for p in SHARED.glob("*.tflite")) if SHARED.is_dir() else []
CASES = int(os.environ.get("MICROREF_SHARED_CASES", "3"))
STREAM_CALLS = 10  # consecutive calls without reset
AFTER_RESET = 3

# Custom operators of TFLM's signal library that keep buffers across invokes (they have a
# Reset function in signal/micro/kernels).
STATEFUL_CUSTOM_OPS = {"SignalDelay", "SignalFilterBankSpectralSubtraction", "SignalFramer",
                       "SignalOverlapAdd", "SignalStacker"}

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

pytestmark = pytest.mark.skipif(not MODELS, reason=f"{SHARED} is absent: the shared real models are not here")


def keeps_state(name: str) -> bool:
    """Whether TFLM's outputs for this model depend on earlier invokes, read from the file alone
    (so that a model with operators microref lacks is still run as a stream, and fails)."""
    try:
        model = load_model(str(SHARED / name))
    except Exception:  # noqa: BLE001 - the bit-for-bit test reports models microref cannot read
        return False
    return any(t.is_variable for sg in model.subgraphs for t in sg.tensors) or any(
        op.op_name == "VAR_HANDLE" or op.display_name in STATEFUL_CUSTOM_OPS
        for sg in model.subgraphs for op in sg.operators)


STATEFUL_MODELS = [name for name in MODELS if keeps_state(name)]


def load(name: str) -> Interpreter:
    try:
        return Interpreter.from_file(str(SHARED / name))
    except UnsupportedOpError as e:
        pytest.fail(f"{name} uses operators microref does not support yet: {e}")


def tflm_outputs(ref, xs, n_out):
    for i, x in enumerate(xs):
        ref.set_input(x, i)
    ref.invoke()
    return [np.array(ref.get_output(j)) for j in range(n_out)]


def assert_equal(name, what, got, want):
    want = want.reshape(got.shape)
    assert got.dtype == want.dtype, f"{name}, {what}: microref {got.dtype}, TFLM {want.dtype}"
    assert np.array_equal(got, want), f"{name}, {what}: {np.count_nonzero(got != want)} values differ"


def tflm_refusal(name: str) -> str | None:
    """Why the wheel cannot load the model (an NPU command stream it registers no kernel for), or None."""
    try:
        runtime.Interpreter.from_file(str(SHARED / name), arena_size=64 << 20)
    except Exception as e:  # noqa: BLE001 - any refusal: there is no oracle for this model
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


@pytest.mark.parametrize("name", MODELS)
def test_real_model_matches_tflm_bit_for_bit(name):
    refusal = tflm_refusal(name)
    if refusal is not None:
        # No oracle: microref must refuse it too, at load, saying why (never run it silently).
        with pytest.raises(UnsupportedOpError):
            Interpreter.from_file(str(SHARED / name))
        return
    it = load(name)
    ref = runtime.Interpreter.from_file(str(SHARED / name), arena_size=64 << 20)
    n_out = len(it.output_details)
    rng = np.random.default_rng(sum(map(ord, name)))
    samples = [random_inputs(it, rng) for _ in range(CASES)]
    expected = [tflm_outputs(ref, xs, n_out) for xs in samples]  # consecutive invokes, as run() does
    for k, (xs, want) in enumerate(zip(samples, expected)):
        for j, (g, w) in enumerate(zip(it.run(xs), want)):
            assert_equal(name, f"call {k}, output {j}", g, w)
    # run_batch: every sample from the reset state (TFLM: reset() before each invoke).
    if it.stateful:
        expected = []
        for xs in samples:
            ref.reset()
            expected.append(tflm_outputs(ref, xs, n_out))
    batched = it.run_batch([np.stack([xs[i] for xs in samples]) for i in range(len(samples[0]))])
    for j, out in enumerate(batched):
        for k, want in enumerate(expected):
            assert_equal(name, f"run_batch sample {k}, output {j}", out[k], want[j])


@pytest.mark.parametrize("name", STATEFUL_MODELS)
def test_stateful_model_matches_tflm_call_after_call_and_after_reset(name):
    it = load(name)
    assert it.stateful, f"{name} keeps state in TFLM but microref's interpreter says it does not"
    ref = runtime.Interpreter.from_file(str(SHARED / name), arena_size=64 << 20)
    n_out = len(it.output_details)
    rng = np.random.default_rng(sum(map(ord, name)) + 1)
    for k in range(STREAM_CALLS + AFTER_RESET):
        if k == STREAM_CALLS:
            ref.reset()
            it.reset()
        xs = random_inputs(it, rng)
        want = tflm_outputs(ref, xs, n_out)
        when = "without reset" if k < STREAM_CALLS else "after reset()"
        for j, (g, w) in enumerate(zip(it.run(xs), want)):
            assert_equal(name, f"call {k} ({when}), output {j}", g, w)
