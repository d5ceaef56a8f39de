"""Exact float paths compute in the type their bound was proved for (issue 12).

numpy 2 treats a Python float as a weak scalar: float32_array * 0.0013 runs a float32 loop even
with a float64 ``out=`` buffer. The requantizer's float modes are exact only in float64, so
accumulators are built here to sit within a float32 ulp of a rounding boundary — any narrower
step moves them across it — and every path (small temporaries, large workspaces, tiled
per-channel rows, channel-major) is forced by its threshold, not by input size.
"""
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from ops import fixedpoint as fp
from ops.common import ExactIntegerMatmul, Requantizer


def integer_reference(acc, bias, m, shift, zp, lo, hi):
    total = fp.wrap_int32(np.asarray(acc, np.int64) + bias)
    return np.clip(fp.multiply_by_quantized_multiplier(total, m, shift) + zp, lo, hi)


def near_boundary_accumulators(m: int, right: int, bias: int, bound: int, count: int, zp: int = 0) -> np.ndarray:
    """The ``count`` accumulators in [-bound, bound] whose q = (acc + bias)·M + 2^30 lies
    closest to a rounding boundary of floor(q / 2^(31+e) + 1/2), relative to |q| (the scale of
    a float32 product's error), among those whose output the int8 clamp does not swallow.

    Hits within a float32 ulp are plentiful only when many accumulators map into the output
    range: about bound² · scale · 2^-23 of them, so the parameters below use |acc| up to 2^21
    (as far as the single float64 mode is exact) with scales near 2^-13."""
    acc = np.arange(-bound, bound + 1, dtype=np.int64)
    q = (acc + bias) * m + (1 << 30)
    period = 1 << (31 + right)
    half = (period >> 1) if right else 0
    output = (q + half) // period + zp
    acc, q = acc[(output > -128) & (output < 127)], q[(output > -128) & (output < 127)]
    distance = np.abs(((q + half + period // 2) % period) - period // 2).astype(np.float64)
    relative = distance / np.maximum(np.abs(q), 1).astype(np.float64)
    return acc[np.argsort(relative, kind="stable")[:count]]


PARAMETERS = [  # (multiplier, shift, zero point, bias): scales near 2^-13 (see above)
    (1428481073, -13, -3, 1234),
    (1827214093, -14, 17, -40000),
    (1099511627, -13, 0, 0),
    (2017021367, -14, -40, 99999),
    (1288490189, -12, 5, -7),
]


@pytest.mark.parametrize("m, shift, zp, bias", PARAMETERS)
@pytest.mark.parametrize("large_elements", [0, 1 << 30], ids=["workspace-path", "temporary-path"])
def test_float32_accumulators_near_rounding_boundaries_requantize_exactly(m, shift, zp, bias, large_elements,
                                                                           monkeypatch):
    bound = (1 << 21) - 1
    acc = near_boundary_accumulators(m, -shift, bias, bound, 4096, zp)
    monkeypatch.setattr(Requantizer, "large_elements", large_elements)
    r = Requantizer(m, shift, zp, -128, 127, np.int8, bound, bias=np.array([bias]))
    assert r.use_float
    want = integer_reference(acc, bias, m, shift, zp, -128, 127).astype(np.int8)
    for dtype in (np.float32, np.float64, np.int32, np.int64):
        got = r(acc.astype(dtype))
        assert np.array_equal(got, want), f"{dtype.__name__}: {np.count_nonzero(got != want)} values differ"


@pytest.mark.parametrize("large_elements", [0, 1 << 30], ids=["workspace-path", "temporary-path"])
def test_per_channel_tiled_and_channel_major_rows_near_boundaries(large_elements, monkeypatch):
    monkeypatch.setattr(Requantizer, "large_elements", large_elements)
    rng = np.random.default_rng(12)
    channels = 6
    m = rng.integers(1 << 30, 1 << 31, channels)
    shift = -rng.integers(12, 15, channels)
    bias = rng.integers(-5000, 5000, channels)
    bound = (1 << 21) - 1
    columns = [near_boundary_accumulators(int(m[c]), int(-shift[c]), int(bias[c]), bound, 1024, 3)
               for c in range(channels)]
    acc = np.stack(columns, axis=1)  # (1024, C): pixels by channel, as NHWC kernels produce
    r = Requantizer(m, shift, 3, -128, 127, np.int8, bound, bias=bias)
    assert r.use_float
    want = integer_reference(acc, bias, m, shift, 3, -128, 127).astype(np.int8)
    assert np.array_equal(r(acc.astype(np.float32)), want)
    channel_major = np.ascontiguousarray(acc.T[None]).astype(np.float32)  # (1, C, L)
    assert np.array_equal(r.channel_major(channel_major)[0].T, want)


def test_split_mode_near_boundaries(monkeypatch):
    """Nearly dead channels (huge bias, shift -28) take the split mode; same rule."""
    monkeypatch.setattr(Requantizer, "large_elements", 0)
    m, shift, bias = 1500000000, -28, (1 << 30) - 12345
    bound = (1 << 21) - 1
    acc = near_boundary_accumulators(m, 28, bias, bound, 4096)
    r = Requantizer(m, shift, 0, -128, 127, np.int8, bound, bias=np.array([bias]))
    assert r.mode == "split"
    want = integer_reference(acc, bias, m, shift, 0, -128, 127).astype(np.int8)
    assert np.array_equal(r(acc.astype(np.float32)), want)


def test_requantizer_constants_carry_float64_themselves():
    """A Python float constant would be weak under NEP 50; every mode's constants are float64."""
    for args in [(1 << 30, -3, 0, None), (np.array([1 << 30, 3 << 29]), np.array([-3, -5]), 2, np.array([1, 2])),
                 (1500000000, -28, 0, np.array([(1 << 30) - 5]))]:
        m, shift, zp, bias = args
        r = Requantizer(m, shift, zp, -128, 127, np.int8, 1 << 20, bias=bias)
        assert r.use_float
        for c in r.constants:
            assert np.asarray(c).dtype == np.float64 and type(c) is not float


# ------------------------------------------------------------------ the repros, against TFLM
REPRO = Path(__file__).resolve().parents[1].parent / "shared" / "repro"
MODELS = REPRO.parent / "models"


def _tflm_outputs(path: Path, samples: np.ndarray) -> np.ndarray:
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro (the oracle) is not installed")
    ref = runtime.Interpreter.from_file(str(path), arena_size=16 << 20)
    outputs = []
    for x in samples:
        ref.reset()
        ref.set_input(x, 0)
        ref.invoke()
        outputs.append(np.array(ref.get_output(0), copy=True))
    return np.stack(outputs)


def _assert_run_and_batches_match(path: Path, samples: np.ndarray, batch_sizes=(1, 7, 64, 256)):
    want = _tflm_outputs(path, samples)
    it = Interpreter.from_file(path)
    got = np.stack([it.run([x])[0] for x in samples])
    assert np.array_equal(got, want), f"run: {np.count_nonzero(got != want)} values differ from TFLM"
    for size in batch_sizes:
        for start in range(0, len(samples), size):
            part = it.run_batch([samples[start:start + size]])[0]
            assert np.array_equal(part, want[start:start + size]), \
                f"run_batch({size}) from sample {start}: {np.count_nonzero(part != want[start:start + size])} differ"


@pytest.mark.skipif(not (REPRO / "ad01_batch4.npy").exists(), reason="../shared/repro is absent")
def test_ad01_batch_of_four_from_the_repro_matches_tflm():
    samples = np.load(REPRO / "ad01_batch4.npy")
    _assert_run_and_batches_match(MODELS / "ad01_int8.tflite", samples, batch_sizes=(1, 2, 4))


@pytest.mark.skipif(not (REPRO / "ad01_batch4.npy").exists(), reason="../shared/repro is absent")
def test_ad01_over_a_thousand_samples_matches_tflm():
    path = MODELS / "ad01_int8.tflite"
    rng = np.random.default_rng(1024)
    shape = tuple(Interpreter.from_file(path).input_details[0]["shape"])
    samples = rng.integers(-128, 128, (1024,) + shape).astype(np.int8)
    _assert_run_and_batches_match(path, samples)


@pytest.mark.parametrize("name", ["fc_per_tensor_2048", "fc_per_tensor_4096"])
def test_per_tensor_fully_connected_repros_match_tflm(name):
    path = REPRO / f"{name}.tflite"
    if not path.exists():
        pytest.skip("../shared/repro is absent")
    rng = np.random.default_rng(4096)
    shape = tuple(Interpreter.from_file(path).input_details[0]["shape"])
    samples = rng.integers(-128, 128, (600,) + shape).astype(np.int8)
    _assert_run_and_batches_match(path, samples)


def test_exact_integer_matmul_takes_float64_once_partial_sums_may_pass_2_to_24():
    """At |partial sum| > 2^24 float32 rounds odd integers: the bound must switch to float64."""
    rng = np.random.default_rng(24)
    depth = 1040  # 1040 · 127 · 128 > 2^24: float32 would be inexact
    weights = np.full((depth, 3), 127, np.int64)
    weights[::2] = 127
    weights[1::2, 1] = -127
    m = ExactIntegerMatmul(weights, 128)
    assert m.bound >= 1 << 24 and m.dtype is np.float64
    x = rng.integers(-128, 128, (64, depth))
    x[:, 0] = 127  # odd sums above 2^24
    assert np.array_equal(m(x.astype(np.int8)), x @ weights)
    small = ExactIntegerMatmul(weights[:1000], 128)
    assert small.bound < 1 << 24 and small.dtype is np.float32
    assert np.array_equal(small(x[:, :1000].astype(np.int8)), x[:, :1000] @ weights[:1000])
