"""Golden conformance: microref against outputs recorded from TFLM (tflite-micro).

golden/manifest.json lists small models built by golden/make_golden.py; for each one,
golden/cases/<case>.npz holds the inputs (leading sample axis), TFLM's outputs for them and
TFLM's "Arena allocation head".  Expected values come from TFLM only; nothing here needs
tflite-micro or TensorFlow at test time.

Every case must match bit for bit (same dtype, numpy.array_equal), sample by sample with
Interpreter.run and all at once with Interpreter.run_batch, and the planned arena must equal
TFLM's head figure.  A case whose operators microref does not implement yet fails; it is not
skipped.
"""
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
CASES = {entry["case"]: entry for entry in MANIFEST}
NAMES = list(CASES)


@functools.cache
def load_case(name):
    entry = CASES[name]
    with np.load(GOLDEN / entry["data"]) as data:
        arrays = {k: data[k] for k in data.files}
    inputs = [arrays[f"input_{i}"] for i in range(len(entry["inputs"]))]
    outputs = [arrays[f"output_{j}"] for j in range(len(entry["outputs"]))]
    return inputs, outputs, int(arrays["arena_head"])


def interpreter(name, kernels="fast"):
    return Interpreter.from_file(str(GOLDEN / CASES[name]["model"]), kernels=kernels)


def check(name, got, want, where):
    assert len(got) == len(want), f"{name} {where}: {len(got)} outputs, TFLM gave {len(want)}"
    for j, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype, f"{name} {where} output {j}: dtype {g.dtype}, TFLM {w.dtype}"
        assert g.shape == w.shape, f"{name} {where} output {j}: shape {g.shape}, TFLM {w.shape}"
        if not np.array_equal(g, w):
            bad = np.argwhere(g != w)
            first = tuple(int(v) for v in bad[0])
            pytest.fail(f"{name} {where} output {j}: {len(bad)} of {w.size} values differ from TFLM; "
                        f"first at {first}: got {g[first]!r}, TFLM {w[first]!r}")


def test_manifest_is_consistent():
    assert len(NAMES) == len(set(NAMES)) >= 30
    for name, entry in CASES.items():
        assert (GOLDEN / entry["model"]).is_file(), name
        assert (GOLDEN / entry["data"]).is_file(), name
        assert entry["ops"] and entry["tflm_version"].startswith("tflite-micro=="), name
        inputs, outputs, head = load_case(name)
        assert all(x.shape[0] == entry["samples"] for x in inputs + outputs), name
        assert head > 0, name


@pytest.mark.parametrize("name", NAMES)
def test_run_matches_tflm(name):
    """Interpreter.run, one sample at a time."""
    inputs, outputs, _ = load_case(name)
    it = interpreter(name)
    for s in range(inputs[0].shape[0]):
        got = it.run([x[s] for x in inputs])
        check(name, got, [y[s] for y in outputs], f"sample {s}")


@pytest.mark.parametrize("name", NAMES)
def test_run_batch_matches_tflm(name):
    """Interpreter.run_batch on all samples at once."""
    inputs, outputs, _ = load_case(name)
    it = interpreter(name)
    check(name, it.run_batch(inputs), outputs, "run_batch")


@pytest.mark.parametrize("name", NAMES)
def test_reference_kernels_match_tflm(name):
    """kernels="reference": the plain kernels of ops.reference give TFLM's outputs too."""
    inputs, outputs, _ = load_case(name)
    check(name, interpreter(name, kernels="reference").run_batch(inputs), outputs, "reference run_batch")


@pytest.mark.parametrize("name", NAMES)
def test_arena_matches_tflm(name):
    """The planned arena equals TFLM's 'Arena allocation head'."""
    _, _, head = load_case(name)
    assert interpreter(name).plan.arena_bytes == head


def test_runs_leave_numpy_ufunc_buffer_size_as_they_found_it(monkeypatch):
    """The executor shrinks numpy's ufunc buffer while kernels run; the caller's setting stays."""
    import interp.runtime.interpreter
    monkeypatch.setattr(interp.runtime.interpreter, "SMALL_RUN_ELEMENTS", 0)  # switch even for a small model
    name = NAMES[0]
    inputs, outputs, _ = load_case(name)
    it = interpreter(name)
    previous = np.setbufsize(4096)
    try:
        check(name, it.run_batch(inputs, threads=2), outputs, "run_batch")
        check(name, [o[0] for o in it.run_batch([x[:1] for x in inputs])], [o[0] for o in outputs], "run_batch")
        assert np.getbufsize() == 4096
    finally:
        np.setbufsize(previous)
