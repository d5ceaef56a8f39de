"""What the tests of real models (../shared/models) share: finding a model, invoking TFLM's
interpreter, and comparing outputs bit for bit."""
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"


def shared_model_path(name: str) -> Path:
    """The path of a shared model; the calling test skips with the reason when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared real models are not here")
    return path


def tflm_invoke(ref, xs, n_out: int) -> list[np.ndarray]:
    """Set the inputs, invoke TFLM's interpreter once, and copy its outputs."""
    for i, x in enumerate(xs):
        ref.set_input(x, i)
    ref.invoke()
    return [np.array(ref.get_output(j), copy=True) for j in range(n_out)]


def assert_bit_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Same dtype and values (NaN equal to NaN for floats), reshaped to microref's shape."""
    want = want.reshape(got.shape)
    assert got.dtype == want.dtype, what
    if not np.array_equal(got, want, equal_nan=got.dtype.kind == "f"):
        raise AssertionError(f"{what}: {np.count_nonzero(got != want)} of {got.size} values differ")


def tflm_arena_head(path: str) -> int:
    """The wheel's "Arena allocation head" for a model file (print_allocations writes to stderr)."""
    import os
    import re
    import tempfile

    from tflite_micro.python.tflite_micro import runtime
    ref = runtime.Interpreter.from_file(path, arena_size=16 << 20)
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            ref.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        match = re.search(rb"Arena allocation head (\d+) bytes", tmp.read())
    assert match, "TFLM's print_allocations no longer reports the arena head"
    return int(match.group(1))
