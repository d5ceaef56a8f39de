"""Executing inside the planned arena reproduces the ordinary run bit for bit, for TFLM's plan
and for the improved plan; an unsound plan is caught by it."""
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from interp import Interpreter
from interp.arena_exec import run_in_arena
from interp.runtime.inputs import random_inputs

ROOT = Path(__file__).resolve().parents[1]
MODELS = [ROOT / "golden" / "models" / f"{n}.tflite" for n in
          ("net_tiny_cnn", "net_residual_block", "net_mobile_block", "net_two_inputs_three_outputs")]
SHARED = ROOT.parent / "shared" / "models"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_run_inside_greedy_and_improved_plans_is_bit_exact(path):
    it = Interpreter.from_file(path)
    rng = np.random.default_rng(1)
    for _ in range(3):
        xs = random_inputs(it, rng)
        want = it.run(xs)
        for plan in (it.plan, it.plan.improved):
            got, arena = run_in_arena(it, xs, plan)
            assert arena.nbytes == plan.arena_bytes
            for g, w in zip(got, want):
                assert np.array_equal(g, w)


@pytest.mark.skipif(not (SHARED / "vww_96_int8.tflite").exists(), reason="../shared/models is absent")
def test_vww_runs_bit_exact_inside_the_improved_55296_byte_plan():
    it = Interpreter.from_file(SHARED / "vww_96_int8.tflite")
    assert it.plan.improved.arena_bytes == 55296 < it.plan.arena_bytes
    xs = random_inputs(it, np.random.default_rng(2))
    got, _ = run_in_arena(it, xs, it.plan.improved)
    assert np.array_equal(got[0], it.run(xs)[0])


def test_an_overlapping_plan_corrupts_the_result():
    # The residual block keeps its input alive across the conv for the ADD: sharing bytes breaks it.
    it = Interpreter.from_file(MODELS[1])
    plan = it.plan
    # Put every buffer at offset 0: tensors live at the same time now share bytes.
    bad = dataclasses.replace(plan, buffers=[dataclasses.replace(b, offset=0) for b in plan.buffers])
    rng = np.random.default_rng(3)
    differs = False
    for _ in range(3):
        xs = random_inputs(it, rng)
        got, _ = run_in_arena(it, xs, bad)
        differs |= not all(np.array_equal(g, w) for g, w in zip(got, it.run(xs)))
    assert differs


def test_models_it_cannot_execute_are_refused_with_a_reason():
    from test_planner_subgraphs import if_model

    from interp.errors import MicrorefError, UnsupportedOpError
    try:
        it = Interpreter.from_bytes(if_model())
    except UnsupportedOpError as e:  # the runtime's control flow may not be there yet
        pytest.skip(f"the runtime cannot load the IF model: {e}")
    xs = [np.array([True]), np.zeros((1, 64), np.int8)]
    with pytest.raises(MicrorefError, match="subgraph 0 only"):
        run_in_arena(it, xs)
