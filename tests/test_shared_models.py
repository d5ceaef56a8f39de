"""Live differential test: microref against TFLM (tflite-micro) on the real models in ../shared/models.

Every model whose operators microref supports must give TFLM's outputs bit for bit, for seeded
inputs drawn over the whole input range, one at a time and batched.
"""
import os
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter, UnsupportedOpError
from interp.runtime.inputs import random_inputs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
MODELS = sorted(p.name for p in SHARED.glob("*.tflite")) if SHARED.is_dir() else []
CASES = int(os.environ.get("MICROREF_SHARED_CASES", "3"))

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

pytestmark = pytest.mark.skipif(not MODELS, reason=f"{SHARED} is absent: the shared real models are not here")


def tflm_outputs(ref, xs, n_out):
    for i, x in enumerate(xs):
        ref.set_input(x, i)
    ref.invoke()
    return [np.array(ref.get_output(j)) for j in range(n_out)]


@pytest.mark.parametrize("name", MODELS)
def test_real_model_matches_tflm_bit_for_bit(name):
    path = str(SHARED / name)
    try:
        it = Interpreter.from_file(path)
    except UnsupportedOpError as e:
        pytest.fail(f"{name} uses operators microref does not support yet: {e}")
    ref = runtime.Interpreter.from_file(path, arena_size=64 << 20)
    rng = np.random.default_rng(sum(map(ord, name)))
    samples = [random_inputs(it, rng) for _ in range(CASES)]
    expected = [tflm_outputs(ref, xs, len(it.output_details)) for xs in samples]
    for xs, want in zip(samples, expected):
        got = it.run(xs)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype
            assert np.array_equal(g, w.reshape(g.shape)), f"{name}: {np.count_nonzero(g != w.reshape(g.shape))} values differ"
    batched = it.run_batch([np.stack([xs[i] for xs in samples]) for i in range(len(samples[0]))])
    for j, out in enumerate(batched):
        for k, want in enumerate(expected):
            assert np.array_equal(out[k], want[j].reshape(out[k].shape)), f"{name}: batched sample {k} differs"
