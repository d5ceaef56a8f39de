"""Interpreter.eval_operator: one operator of a kept call, re-run alone, gives that call's values.

compare feeds each operator the other runtime's tensors to tell a kernel's own difference from an
inherited one. For stateful operators that needs the state the call started from: LSTM and SVDF
overwrite their variable-tensor inputs (afterwards those hold the call's result), the signal
library's kernels carry private buffers. Without it every stateful operator looked like a
kernel difference (SVDF in keyword_scrambled) or crashed compare (the audio front end).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest
from diff_support import ORACLE_AVAILABLE, require_oracle

from interp import Interpreter
from interp.runtime.inputs import random_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "models")
RECURRENT = sorted(glob.glob(os.path.join(ROOT, "golden", "recurrent", "models", "*.tflite")))
STATEFUL_SHARED = ["keyword_scrambled_8bit", "trained_lstm_int8", "audio_preprocessor_int8"]


def _check_every_operator_reproduces_its_kept_outputs(it: Interpreter, calls: int) -> int:
    rng = np.random.default_rng(1)
    checked = 0
    for call in range(calls):
        it.run(random_inputs(it, rng), keep=True)
        for op in it.subgraph.operators:
            try:
                ins = it.op_inputs(op, it.tensor)
            except KeyError:  # an input the call did not keep (an omitted optional tensor)
                continue
            outs = it.eval_operator(op, ins)
            assert len(outs) == len(op.outputs)
            for ti, got in zip(op.outputs, outs):
                want = it.tensor(ti)
                assert np.array_equal(got[0], want, equal_nan=got.dtype.kind == "f"), \
                    f"call {call}, operator {op.index} ({op.display_name}), output tensor {ti}"
                checked += 1
    return checked


@pytest.mark.parametrize("path", RECURRENT, ids=[os.path.basename(p) for p in RECURRENT])
def test_a_kept_calls_operators_rerun_alone_give_its_values_on_recurrent_golden_models(path):
    it = Interpreter.from_file(path)
    assert _check_every_operator_reproduces_its_kept_outputs(it, calls=3) > 0


@pytest.mark.parametrize("name", STATEFUL_SHARED)
def test_a_kept_calls_operators_rerun_alone_give_its_values_on_stateful_shared_models(name):
    path = os.path.join(SHARED, name + ".tflite")
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (../shared/models)")
    it = Interpreter.from_file(path)
    assert it.stateful
    assert _check_every_operator_reproduces_its_kept_outputs(it, calls=3) > 0


@pytest.mark.skipif(not ORACLE_AVAILABLE, reason="tflite-micro (the oracle) is not installed")
@pytest.mark.parametrize("name", STATEFUL_SHARED)
def test_compare_against_tflm_finds_no_kernel_difference_in_stateful_models(name):
    require_oracle()
    from interp.tools.compare import compare_runtime

    path = os.path.join(SHARED, name + ".tflite")
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent (../shared/models)")
    with open(path, "rb") as f:
        data = f.read()
    it = Interpreter.from_bytes(data)
    result = compare_runtime(it, data, random_inputs(it, np.random.default_rng(0)), "tflm")
    assert result.outputs_exact
    for row in result.ops:
        assert not row.differs_in_isolation, f"operator {row.index} ({row.name}) differs when fed TFLM's inputs"
