"""A subset of the large-shape sweep (tests/sweep.py) in CI: every shared model and every synthetic
large FC / CONV_2D / DEPTHWISE_CONV_2D layer through run and run_batch against TFLM. The full sweep
(2,000 samples per model, batch sizes 1, 7, 64, 256) is ``python -m tests.sweep --synthetic``,
and ``pytest -m slow tests/test_sweep.py`` runs 256 samples per model."""
import os

import pytest

pytest.importorskip("tflite_micro.python.tflite_micro.runtime", reason="tflite-micro (the oracle) is not installed")

from sweep import SHARED_MODELS, sweep, synthetic_models  # noqa: E402

SHARED = sorted(SHARED_MODELS.glob("*.tflite")) if SHARED_MODELS.is_dir() else []
SAMPLES = int(os.environ.get("MICROREF_SWEEP_SAMPLES", "12"))


def _check(name, model, samples, sizes):
    result = sweep(name, model, samples, sizes)
    if result.skipped:
        pytest.skip(f"{name}: {result.skipped}")
    assert result.exact, f"{name}: samples differing from TFLM: {result.differing}"


@pytest.mark.parametrize("name, model", synthetic_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_large_synthetic_layers_match_tflm_through_run_and_run_batch(name, model):
    _check(name, model, SAMPLES, (1, 7))


@pytest.mark.skipif(not SHARED, reason=f"{SHARED_MODELS} is absent")
@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.stem)
def test_shared_models_match_tflm_through_run_and_run_batch(path):
    _check(path.name, path.read_bytes(), SAMPLES, (1, 7))


@pytest.mark.slow
@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.stem)
def test_shared_models_over_many_samples_and_batch_sizes(path):
    _check(path.name, path.read_bytes(), 256, (1, 7, 64, 256))
