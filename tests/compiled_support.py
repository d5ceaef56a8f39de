"""What the compiled-kernel tests share: inputs that reach the accumulator bounds, and the check
that a forced compiled path gives the reference kernels' bytes through run_batch and run."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume

from interp import Interpreter
from interp.errors import ModelError, UnsupportedOpError
from ops.compiled import use_compiled

SAMPLES = 3  # samples per example: run_batch over all of them, run on the first


def boundary_inputs(rng, interpreter, zero_point: int, extremes: bool, samples: int = SAMPLES) -> np.ndarray:
    """SAMPLES inputs for the model's first input: uniform over its type, or (``extremes``) only the
    ends of the range and the zero point, which give the largest |x - zero_point|."""
    d = interpreter.input_details[0]
    shape = (samples,) + tuple(int(s) for s in d["shape"])
    info = np.iinfo(np.dtype(d["dtype"]))
    if extremes:
        values = rng.choice(np.array([info.min, info.min + 1, info.max, np.clip(zero_point, info.min, info.max)]),
                            shape)
    else:
        values = rng.integers(info.min, info.max, shape, endpoint=True)
    return values.astype(d["dtype"])


def assert_forced_equals_reference(data: bytes, rng, zero_point: int, extremes: bool, force):
    """The model with compiled kernels on and ``force(monkeypatch)`` applied (which sets the class
    attributes that send its operator down one path) gives the reference kernels' bytes, batched
    and one sample at a time. Returns the prepared kernel of operator 0 (to ask which path it
    planned). A model the reference refuses at prepare (as TFLM would) is not an example."""
    try:
        reference = Interpreter.from_bytes(data, kernels="reference")
    except (ModelError, UnsupportedOpError):
        assume(False)
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        force(mp)
        fast = Interpreter.from_bytes(data)
        x = boundary_inputs(rng, fast, zero_point, extremes)
        got, want = fast.run_batch([x])[0], reference.run_batch([x])[0]
        single = fast.run([x[0]])[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), \
        f"{np.count_nonzero(got != want)} of {got.size} values differ: compiled {got.ravel()[:8]}, " \
        f"reference {want.ravel()[:8]}"
    assert single.tobytes() == want[0].tobytes()
    return fast.kernels[0]
