"""Recurrent golden conformance: microref against TFLM's outputs recorded call after call.

golden/recurrent/manifest.json lists TF-converted models built by golden/make_golden_recurrent.py:
Keras 2 (tf-keras) LSTMs (one fused UNIDIRECTIONAL_SEQUENCE_LSTM per layer; single and stacked,
return_sequences on and off, a batch of 2, int8 and float32), a tf.Variable updated each call
(VAR_HANDLE / READ_VARIABLE / ASSIGN_VARIABLE, initialised by CALL_ONCE), tf.cond kept as IF,
tf.while_loop kept as WHILE, and a variable assigned inside IF branches. For each,
golden/recurrent/cases/<case>.npz holds a stream of calls, TFLM's outputs for them on one
interpreter with Reset() before call ``reset_at``, and each call's output on a freshly loaded
interpreter. Nothing here needs tflite-micro or TensorFlow at test time.

* ``run`` call by call, with ``reset()`` where TFLM reset, must give the stream outputs;
* ``run_batch`` (every sample from a freshly loaded model's state) must give the fresh outputs;
* the planned arena must equal TFLM's "Arena allocation head".
"""
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "recurrent"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
CASES = {entry["case"]: entry for entry in MANIFEST}
NAMES = list(CASES)


@functools.cache
def load_case(name):
    entry = CASES[name]
    with np.load(GOLDEN / entry["data"]) as data:
        arrays = {k: data[k] for k in data.files}
    inputs = [arrays[f"input_{i}"] for i in range(len(entry["inputs"]))]
    stream = [arrays[f"output_{j}"] for j in range(len(entry["outputs"]))]
    fresh = [arrays[f"fresh_output_{j}"] for j in range(len(entry["outputs"]))]
    return inputs, stream, fresh, int(arrays["reset_at"]), int(arrays["arena_head"])


def interpreter(name, kernels="fast"):
    return Interpreter.from_file(str(GOLDEN / CASES[name]["model"]), kernels=kernels)


def check(name, got, want, where):
    assert len(got) == len(want), f"{name} {where}: {len(got)} outputs, TFLM gave {len(want)}"
    for j, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype, f"{name} {where} output {j}: dtype {g.dtype}, TFLM {w.dtype}"
        assert g.shape == w.shape, f"{name} {where} output {j}: shape {g.shape}, TFLM {w.shape}"
        if not np.array_equal(g, w, equal_nan=g.dtype.kind == "f"):
            bad = np.argwhere(g != w)
            first = tuple(int(v) for v in bad[0])
            pytest.fail(f"{name} {where} output {j}: {len(bad)} of {w.size} values differ from TFLM; "
                        f"first at {first}: got {g[first]!r}, TFLM {w[first]!r}")


def test_manifest_is_consistent_and_the_data_tests_state():
    assert len(NAMES) == len(set(NAMES)) >= 10
    ops = set()
    for name, entry in CASES.items():
        assert (GOLDEN / entry["model"]).is_file(), name
        inputs, stream, fresh, reset_at, head = load_case(name)
        assert all(a.shape[0] == entry["samples"] for a in inputs + stream + fresh), name
        assert 0 < reset_at == entry["reset_at"] < entry["samples"] and head == entry["arena_head"] > 0, name
        # A stateful case's stream differs from its first calls somewhere (else it tests no state).
        depends = any(not np.array_equal(a, b, equal_nan=True) for a, b in zip(stream, fresh))
        assert depends == entry["stateful"], name
        if not entry["call_once"]:
            # TFLM's Reset() gives back a fresh model's first call (CALL_ONCE is not re-armed).
            for a, b in zip(stream, fresh):
                assert np.array_equal(a[reset_at], b[reset_at], equal_nan=True), name
        ops |= set(entry["ops"])
    assert {"UNIDIRECTIONAL_SEQUENCE_LSTM", "IF", "WHILE", "CALL_ONCE", "VAR_HANDLE", "ASSIGN_VARIABLE",
            "READ_VARIABLE"} <= ops


@pytest.mark.parametrize("name", NAMES)
def test_run_call_after_call_matches_tflm(name):
    """Interpreter.run on the stream, reset() where TFLM reset."""
    inputs, stream, _, reset_at, _ = load_case(name)
    it = interpreter(name)
    if CASES[name]["stateful"]:
        assert it.stateful
    for s in range(inputs[0].shape[0]):
        if s == reset_at:
            it.reset()
        got = it.run([x[s] for x in inputs])
        check(name, got, [y[s] for y in stream], f"call {s}{' (after reset)' if s >= reset_at else ''}")


@pytest.mark.parametrize("name", NAMES)
def test_run_batch_matches_fresh_tflm(name):
    """Interpreter.run_batch: every sample as a freshly loaded model's first call."""
    inputs, _, fresh, _, _ = load_case(name)
    check(name, interpreter(name).run_batch(inputs), fresh, "run_batch")


@pytest.mark.parametrize("name", NAMES)
def test_reference_kernels_match_tflm(name):
    """kernels="reference": the stream again through the plain reference kernels."""
    inputs, stream, fresh, reset_at, _ = load_case(name)
    it = interpreter(name, kernels="reference")
    for s in range(inputs[0].shape[0]):
        if s == reset_at:
            it.reset()
        check(name, it.run([x[s] for x in inputs]), [y[s] for y in stream], f"reference call {s}")
    check(name, it.run_batch(inputs), fresh, "reference run_batch")


@pytest.mark.parametrize("name", NAMES)
def test_arena_matches_tflm(name):
    """The planned arena equals TFLM's 'Arena allocation head' (LSTM scratch buffers, variable
    tensors, every subgraph of the control-flow models; a VAR_HANDLE's output is not planned, as
    TFLM's VarHandlePrepare points it at persistent data before its planner runs)."""
    _, _, _, _, head = load_case(name)
    assert interpreter(name).plan.arena_bytes == head
