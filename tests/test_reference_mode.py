"""kernels="reference" on the real models: the plain kernels give TFLM's outputs bit for bit, as the
fast ones do (tests/test_shared_models.py); and the mode is a documented, checked option."""
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter, UnsupportedOpError
from interp.runtime.inputs import random_inputs

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"
MODELS = sorted(SHARED.glob("*.tflite")) if SHARED.is_dir() else []


def test_an_unknown_kernel_mode_is_refused():
    with pytest.raises(ValueError, match="kernels must be one of"):
        Interpreter.from_file(Path(__file__).resolve().parents[1] / "golden" / "models" / "net_tiny_cnn.tflite",
                              kernels="turbo")


@pytest.mark.skipif(not MODELS, reason=f"{SHARED} is absent")
@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_reference_kernels_match_tflm_on_real_models(path):
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro (the oracle) is not installed")
    try:
        ref = runtime.Interpreter.from_file(str(path), arena_size=64 << 20)
    except Exception as e:  # noqa: BLE001 - no oracle for a model TFLM cannot load
        pytest.skip(f"TFLM cannot load {path.name}: {str(e).splitlines()[0][:60]}")
    try:
        it = Interpreter.from_file(path, kernels="reference")
    except UnsupportedOpError as e:
        pytest.skip(f"not implemented yet: {str(e).splitlines()[-1].strip()}")
    rng = np.random.default_rng(sum(map(ord, path.name)))
    for call in range(3):  # consecutive calls without reset: stateful models compare call by call
        xs = random_inputs(it, rng)
        for i, x in enumerate(xs):
            ref.set_input(x, i)
        ref.invoke()
        for j, got in enumerate(it.run(xs)):
            want = ref.get_output(j)
            assert np.array_equal(got, want.reshape(got.shape)), f"call {call}, output {j}"


@pytest.mark.parametrize("command", [["run"], ["trace"], ["explain", "--op", "0", "--at", "0,0,0,0"]])
def test_cli_commands_take_kernels_reference_and_print_the_same(command, capsys):
    from interp.tools import cli
    model = str(Path(__file__).resolve().parents[1] / "golden" / "models" / "net_tiny_cnn.tflite")
    outputs = []
    for kernels in ("fast", "reference"):
        assert cli.main([command[0], model, *command[1:], "--kernels", kernels]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0]


def test_every_prepared_kernel_describes_itself_as_plain_values():
    """describe() feeds compare, explain and --json: it must work for every kernel and give data
    json can write (a describe() that raises was once hidden by compare's fallback)."""
    import json
    golden = Path(__file__).resolve().parents[1] / "golden" / "models"
    seen = set()
    for path in sorted(golden.glob("*.tflite")):
        for kernel in Interpreter.from_file(path).kernels:
            if kernel is None or type(kernel) in seen:
                continue
            seen.add(type(kernel))
            json.dumps(kernel.describe(), default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    assert len(seen) >= 20
