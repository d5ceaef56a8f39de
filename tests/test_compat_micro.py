"""interp.compat.MicroInterpreter against tflite_micro's Python runtime.Interpreter: the same
TFLM-style snippets on both, line by line, the values bit for bit; the arena size checked as TFLM
checks it; print_allocations in TFLM's words."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from compat_support import (
    SHARED,
    Transcript,
    accumulator_model,
    compare_transcripts,
    conv_model,
    two_input_model,
)

import interp
from interp import compat

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                              reason="tflite-micro (the oracle) is not installed")

ARENA = 1 << 20
MODELS = {"conv": conv_model, "two_inputs": two_input_model, "accumulator": accumulator_model}
if (SHARED / "hello_world_int8.tflite").is_file():
    MODELS["hello_world"] = lambda: (SHARED / "hello_world_int8.tflite").read_bytes()


def both(snippet, *args):
    return snippet(runtime.Interpreter, *args), snippet(compat.MicroInterpreter, *args)


def inputs_for(model: bytes, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    it = interp.Interpreter.from_bytes(model)
    return [rng.integers(-128, 128, tuple(d["shape"])).astype(d["dtype"]) for d in it.input_details]


def snippet_run(Interpreter, model, calls):
    t = Transcript()
    it = Interpreter.from_bytes(model, arena_size=ARENA)
    n_in, n_out = len(calls[0]), len(interp.load_model(model).main.outputs)
    for k in range(n_in):
        t(f"input details {k}", lambda k=k: it.get_input_details(k))
    for k in range(n_out):
        t(f"output details {k}", lambda k=k: it.get_output_details(k))
    for c, xs in enumerate(calls):
        for k, x in enumerate(xs):
            t(f"call {c} set {k}", lambda k=k, x=x: it.set_input(x, k))
        t(f"call {c} invoke", it.invoke)
        for k in range(n_out):
            t(f"call {c} output {k}", lambda k=k: it.get_output(k))
        if c == len(calls) // 2:
            t(f"call {c} reset", it.reset)
    return t


def snippet_errors(Interpreter, model, path):
    t = Transcript()
    t("model None", lambda: Interpreter.from_bytes(None))
    t("custom ops not a list", lambda: Interpreter.from_bytes(model, custom_op_registerers="x", arena_size=ARENA))
    t("missing file", lambda: Interpreter.from_file(str(path) + ".missing"))
    it = Interpreter.from_file(path, arena_size=ARENA)
    d = it.get_input_details(0)
    shape, dtype = tuple(d["shape"]), d["dtype"]
    t("input None", lambda: it.set_input(None, 0))
    t("negative index", lambda: it.set_input(np.zeros(shape, dtype), -1))
    t("index past the inputs", lambda: it.set_input(np.zeros(shape, dtype), 7))
    t("wrong dtype", lambda: it.set_input(np.zeros(shape, np.float32), 0))
    t("python list", lambda: it.set_input(np.zeros(shape).tolist(), 0))
    t("wrong rank", lambda: it.set_input(np.zeros(shape[1:], dtype), 0))
    t("wrong dimension", lambda: it.set_input(np.zeros(shape[:-1] + (shape[-1] + 1,), dtype), 0))
    t("get_output -1", lambda: it.get_output(-1))
    t("get_output past the outputs", lambda: it.get_output(7))
    t("input details past the inputs", lambda: it.get_input_details(7))
    t("output details -1", lambda: it.get_output_details(-1))
    t("GetTensor without preserving", lambda: it.GetTensor(0, 0))
    return t


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_tflm_snippet_runs_unchanged_with_tflm_s_values(name, seed):
    model = MODELS[name]()
    calls = [inputs_for(model, 10 * seed + c) for c in range(4)]
    theirs, ours = both(snippet_run, model, calls)
    compare_transcripts(theirs, ours)
    for label, value in theirs.values.items():
        if isinstance(value, np.ndarray) and "output" in label and "details" not in label:
            np.testing.assert_array_equal(ours.values[label], value, err_msg=label)
        elif isinstance(value, dict):
            for key in ("shape",):
                np.testing.assert_array_equal(ours.values[label][key], value[key], err_msg=label)
            for key in ("scales", "zero_points"):
                np.testing.assert_array_equal(ours.values[label]["quantization_parameters"][key],
                                              value["quantization_parameters"][key], err_msg=label)
        elif label.endswith(("invoke", "reset")):
            assert ours.values[label] == value == 0


def test_errors_are_tflm_s(tmp_path):
    model = conv_model()
    path = tmp_path / "conv.tflite"
    path.write_bytes(model)
    theirs, ours = both(snippet_errors, model, path)
    compare_transcripts(theirs, ours)
    for label in ("model None", "custom ops not a list", "missing file", "input None", "negative index",
                  "wrong dtype", "wrong rank", "wrong dimension", "GetTensor without preserving"):
        assert str(ours.values[label]) == str(theirs.values[label]), label
    assert str(ours.values["index past the inputs"]).startswith(str(theirs.values["index past the inputs"]))


@pytest.mark.parametrize("name", ["conv", "two_inputs"])
def test_get_tensor_with_preserved_tensors_equals_tflm_s(name):
    model = MODELS[name]()
    xs = inputs_for(model, 3)
    its = [cls.from_bytes(model, arena_size=ARENA, intrepreter_config=config) for cls, config in (
        (runtime.Interpreter, runtime.InterpreterConfig.kPreserveAllTensors),
        (compat.MicroInterpreter, compat.InterpreterConfig.kPreserveAllTensors))]
    for it in its:
        for k, x in enumerate(xs):
            it.set_input(x, k)
        it.invoke()
    for t in interp.load_model(model).main.tensors:
        theirs, ours = (it.GetTensor(t.index, 0) for it in its)
        assert sorted(ours) == sorted(theirs)
        assert ours["dtype"] == theirs["dtype"]
        np.testing.assert_array_equal(ours["shape"], theirs["shape"])
        np.testing.assert_array_equal(ours["tensor_data"].reshape(-1), theirs["tensor_data"].reshape(-1),
                                      err_msg=t.name)


def test_tflm_s_own_enum_is_accepted():
    config = runtime.InterpreterConfig.kPreserveAllTensors
    it = compat.MicroInterpreter.from_bytes(conv_model(), intrepreter_config=config)
    it.set_input(inputs_for(conv_model(), 0)[0], 0)
    it.invoke()
    assert "tensor_data" in it.GetTensor(3, 0)


# ----------------------------------------------------------------------------- the arena

def tflm_minimum_arena(model: bytes, guess: int) -> int:
    """The smallest arena_size with which TFLM's wheel prepares ``model``, searched around
    ``guess`` in a child process (TFLM aborts the process for arenas far too small)."""
    code = f"""
import sys
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], 'rb').read()
def ok(n):
    try:
        runtime.Interpreter.from_bytes(data, arena_size=n)
        return True
    except RuntimeError:
        return False
lo, hi = {guess} // 2, 2 * {guess}
assert ok(hi) and not ok(lo)
while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (lo, mid) if ok(mid) else (mid, hi)
print(hi)
"""
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(model)
        f.flush()
        out = subprocess.run([sys.executable, "-c", code, f.name], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


ARENA_MODELS = {"conv": conv_model, "two_inputs": two_input_model}
for _name in ("hello_world_int8", "ad01_int8", "kws_ref_model", "micro_speech_quantized"):
    if (SHARED / f"{_name}.tflite").is_file():
        ARENA_MODELS[_name] = lambda _name=_name: (SHARED / f"{_name}.tflite").read_bytes()


@pytest.mark.parametrize("name", sorted(ARENA_MODELS))
def test_arena_needed_is_tflm_s_minimum(name):
    model = ARENA_MODELS[name]()
    needed = compat.arena_bytes_needed(interp.Interpreter.from_bytes(model))["needed"]
    minimum = tflm_minimum_arena(model, needed)
    print(json.dumps({"model": name, "microref": needed, "tflm": minimum}))
    assert needed == minimum, (needed, minimum)


@pytest.mark.parametrize("name", ["conv", "two_inputs"])
def test_too_small_an_arena_fails_where_tflm_fails(name):
    model = MODELS[name]()
    needed = compat.arena_bytes_needed(interp.Interpreter.from_bytes(model))["needed"]
    small = needed // 2
    for cls in (runtime.Interpreter, compat.MicroInterpreter):
        with pytest.raises(RuntimeError, match="TFLM failed to allocate tensors"):
            cls.from_bytes(model, arena_size=small)
    with pytest.raises(RuntimeError, match=f"the model needs {needed:,}"):
        compat.MicroInterpreter.from_bytes(model, arena_size=small)
    for cls in (runtime.Interpreter, compat.MicroInterpreter):
        cls.from_bytes(model, arena_size=2 * needed)


def test_default_arena_is_ten_times_the_model():
    model = conv_model()
    it = compat.MicroInterpreter.from_bytes(model)
    assert it.arena_size == 10 * len(model)


# ----------------------------------------------------------------------------- print_allocations

def allocation_lines(cls, model, capfd) -> list[str]:
    it = cls.from_bytes(model, arena_size=ARENA)
    it.set_input(inputs_for(model, 0)[0], 0)
    it.invoke()
    capfd.readouterr()
    it.print_allocations()
    sys.stderr.flush()
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("[RecordingMicroAllocator]")]


@pytest.mark.parametrize("name", sorted(set(ARENA_MODELS) - {"two_inputs"}))
def test_print_allocations_speaks_tflm_s_words_with_microref_s_numbers(name, capfd):
    model = ARENA_MODELS[name]()
    theirs = allocation_lines(runtime.Interpreter, model, capfd)
    ours = allocation_lines(compat.MicroInterpreter, model, capfd)
    shape = [re.sub(r"\d+", "N", line) for line in theirs]
    assert [re.sub(r"\d+", "N", line) for line in ours] == shape
    numbers = [[int(n) for n in re.findall(r"\d+", line)] for line in (theirs, ours)[0]], \
        [[int(n) for n in re.findall(r"\d+", line)] for line in ours]
    theirs_n, ours_n = numbers
    assert ours_n[1] == theirs_n[1], "the arena head is exact"
    for line, a, b in zip(theirs, theirs_n, ours_n):
        assert a[0] == b[0], line
        if "'" in line:  # the counts of allocations
            assert a[-1] == b[-1] or "Persistent buffer" in line, (line, b)
