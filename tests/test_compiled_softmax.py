"""The compiled int8-input SOFTMAX (ops/compiled/softmax.py) equals the reference kernel
(ops/reference) and the numpy kernel byte for byte, without TFLM.

The compiled path is forced (Softmax.COMPILED_MIN_ROWS = 0) and a spy checks that it ran. Beside
real models (int8 and int16 outputs, rows of 1 to 400 values, betas and input scales over their
range), the kernel is driven with arbitrary tables so that the sum of a row and the values the
reciprocal multiplies reach every int32 value, INT32_MIN included, and with 4,096 equal values
whose int32 sum wraps, as TFLM's does.
"""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import counting_calls
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError
from ops import compiled
from ops.compiled import softmax as compiled_softmax
from ops.compiled import use_compiled
from ops.softmax import Softmax

pytest.importorskip("numba")
if not compiled.available():
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)


def spying():
    return counting_calls(compiled_softmax, "softmax_int8_rows")


def softmax_model(rows: int, depth: int, out_kind: str, input_scale: float, zero_point: int, beta: float) -> bytes:
    b = ModelBuilder()
    x = b.input("x", [rows, depth], "INT8", scale=input_scale, zero_point=zero_point)
    oq = dict(scale=1 / 256, zero_point=-128) if out_kind == "INT8" else dict(scale=1 / 65536, zero_point=-32768)
    y = b.tensor("y", [rows, depth], out_kind, **oq)
    b.op("SOFTMAX", [x], [y], beta=beta)
    b.output(y)
    return b.build()


def forced(interpreter: Interpreter, x: np.ndarray) -> np.ndarray:
    with spying() as calls, use_compiled(True), pytest.MonkeyPatch.context() as mp:
        mp.setattr(Softmax, "COMPILED_MIN_ROWS", 0)
        got = interpreter.run_batch([x])[0]
    assert calls["softmax_int8_rows"], "the compiled kernel did not run"
    return got


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), out_kind=st.sampled_from(["INT8", "INT16"]),
       beta=st.sampled_from([1.0, 0.5, 2.7, 0.01, 40.0]), style=st.sampled_from(["uniform", "few", "equal"]))
def test_compiled_int8_softmax_equals_reference(seed, out_kind, beta, style):
    rng = np.random.default_rng(seed)
    rows = int(rng.integers(1, 5))
    depth = int(rng.choice([1, 2, 3, 12, 40, int(rng.integers(1, 400))]))
    input_scale = float(10 ** rng.uniform(-4, 1))
    zero_point = int(rng.integers(-128, 128))
    assume(float(np.float32(beta)) * float(np.float32(input_scale)) * 2.0 ** 26 > 1.0)  # TFLM's Prepare check
    try:
        fast = Interpreter.from_bytes(softmax_model(rows, depth, out_kind, input_scale, zero_point, beta))
        reference = Interpreter.from_bytes(softmax_model(rows, depth, out_kind, input_scale, zero_point, beta),
                                           kernels="reference")
    except ModelError:
        assume(False)
    samples = int(rng.integers(1, 9))
    shape = (samples, rows, depth)
    if style == "uniform":
        x = rng.integers(-128, 128, shape)
    elif style == "few":  # near-equal values: ties of the max, differences at diff_min's edge
        x = rng.choice(np.array([-128, -127, 0, 126, 127]), shape)
    else:
        x = np.full(shape, int(rng.integers(-128, 128)))
    x = x.astype(np.int8)
    want = reference.run_batch([x])[0]
    got = forced(fast, x)
    with use_compiled(False):
        numpy_got = fast.run_batch([x])[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), f"{np.count_nonzero(got != want)} values differ"
    assert numpy_got.tobytes() == want.tobytes()


@pytest.mark.parametrize("depth", [4095, 4096, 4097])
def test_compiled_softmax_wraps_the_row_sum_as_int32(depth):
    """4,096 equal values sum to 2^31 in TFLM's int32 accumulator, which wraps to INT32_MIN."""
    data = softmax_model(1, depth, "INT8", 0.05, 0, 1.0)
    x = np.zeros((2, 1, depth), np.int8)
    x[1, 0, ::7] = 5
    want = Interpreter.from_bytes(data, kernels="reference").run_batch([x])[0]
    assert forced(Interpreter.from_bytes(data), x).tobytes() == want.tobytes()


@pytest.mark.parametrize("out_kind", ["INT8", "INT16"])
def test_compiled_softmax_equals_numpy_kernel_on_arbitrary_tables(out_kind):
    """With tables of arbitrary int32 values the row sums and the multiplied exps reach every
    int32 value (INT32_MIN, INT32_MAX, 0, powers of two), so GetReciprocal's every branch (the
    saturating shifts, CountLeadingZeros of 0 and of negative sums) and SaturatingRoundingDoublingHighMul's
    saturation are compared between the compiled kernel and the numpy kernel."""
    rng = np.random.default_rng(7)
    kernel = Interpreter.from_bytes(softmax_model(1, 4, out_kind, 0.05, 0, 1.0)).kernels[0]
    special = np.array([-(1 << 31), (1 << 31) - 1, 0, 1, -1, 1 << 30, -(1 << 30), 1 << 19, 4096], np.int64)
    for trial in range(80):
        exp_table = rng.integers(-(1 << 31), 1 << 31, 256).astype(np.int64)
        term_table = rng.integers(-(1 << 31), 1 << 31, 256).astype(np.int64)
        if trial % 4 in (0, 3):
            exp_table[rng.integers(0, 256, 80)] = rng.choice(special, 80)
            term_table[rng.integers(0, 256, 40)] = rng.choice(special, 40)
        if trial % 4 == 1:  # small positive sums: every CountLeadingZeros
            term_table = (rng.integers(0, 1 << 31, 256) >> rng.integers(0, 31, 256)).astype(np.int64)
        if trial % 4 == 3:
            # Sums of 0..15 (RoundingDivideByPOT exponents of 3..7) and small exps: outputs inside
            # their range (not clamped), where the roundings show.
            term_table = rng.integers(0, 4, 256).astype(np.int64)
            exp_table = rng.integers(-(1 << 12), 1 << 13, 256).astype(np.int64)
        kernel.exp_table, kernel.term_table = exp_table, term_table
        x = rng.integers(-128, 128, (64, int(rng.integers(1, 6)))).astype(np.int8)
        with pytest.MonkeyPatch.context() as mp, use_compiled(True):
            mp.setattr(Softmax, "COMPILED_MIN_ROWS", 0)
            got = kernel._eval_int8(x)
        with use_compiled(False):
            want = kernel._eval_int8(x)
        assert got.tobytes() == want.tobytes(), trial
