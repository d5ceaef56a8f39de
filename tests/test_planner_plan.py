"""plan_arena on real models: the head is TFLM's "Arena allocation head" to the byte, whether the
plan comes from an Interpreter or from the parsed model alone; checking and addressing a plan."""
from __future__ import annotations

import numpy as np
import pytest
from planner_support import (
    GOLDEN,
    TFLM,
    TFLM_HEAD_ONLY,
    model_path,
    needs_models,
    shared_model,
    tflm_allocations,
    tflm_runtime,
    two_branch_model,
)

from interp import Interpreter, UnsupportedOpError
from interp.model import load_model
from interp.planner import PlanError, check_plan, plan_arena, tensor_slice, tensor_view


@needs_models
@pytest.mark.parametrize("name", sorted(TFLM))
def test_head_matches_tflm_on_shared_models(name):
    data = model_path(name).read_bytes()
    plan = plan_arena(load_model(data))
    assert plan.arena_bytes == TFLM[name][0] and plan.exact
    check_plan(plan)
    assert plan.lower_bound <= plan.arena_bytes
    assert plan.flash_bytes == len(data)
    if tflm_runtime is not None:
        head, tail, _ = tflm_allocations(data)
        assert plan.arena_bytes == head
        # The tail is an estimate: within 64 bytes on the models it was measured on.
        assert abs(plan.tail_estimate["total"] - tail) <= 64, plan.tail_estimate


@needs_models
@pytest.mark.parametrize("name", sorted(TFLM_HEAD_ONLY))
def test_head_matches_tflm_on_models_with_svdf_lstm_and_signal_ops(name):
    # Planned from the parsed model: LSTM scratch from microref's kernel, SVDF and SignalRfft
    # scratch by TFLM's rules (without them these heads were 288, 544, 16528, 5376 and 1344).
    data = model_path(name).read_bytes()
    plan = plan_arena(load_model(data))
    assert plan.exact and plan.arena_bytes == TFLM_HEAD_ONLY[name]
    check_plan(plan)
    if tflm_runtime is not None:
        assert plan.arena_bytes == tflm_allocations(data)[0]


@needs_models
@pytest.mark.parametrize("name", sorted(TFLM) + sorted(TFLM_HEAD_ONLY))
def test_interpreter_plan_equals_the_model_plan(name):
    model = load_model(model_path(name))
    try:
        it = Interpreter(model)
    except UnsupportedOpError as e:
        pytest.skip(f"microref cannot run it yet: {str(e).splitlines()[-1].strip()}")
    via_kernels, via_model = it.plan, plan_arena(model)
    assert via_kernels.arena_bytes == via_model.arena_bytes
    assert via_kernels.offsets == via_model.offsets
    assert [b.nbytes for b in via_kernels.buffers] == [b.nbytes for b in via_model.buffers]


def test_golden_models_plan_without_an_interpreter_like_with_one():
    paths = sorted(GOLDEN.glob("net_*.tflite"))
    if not paths:
        pytest.skip(f"no golden net_* models in {GOLDEN}")
    for p in paths:
        model = load_model(p)
        assert Interpreter(model).plan.arena_bytes == plan_arena(model).arena_bytes, p.name


# ---------------------------------------------------------------------- checking plans
def test_check_plan_catches_overlapping_live_buffers():
    plan = plan_arena(load_model(two_branch_model()))
    check_plan(plan)
    a = next(b for b in plan.buffers if b.tensor == 2)
    c = next(b for b in plan.buffers if b.tensor == 6)
    c.offset = a.offset + 16  # a and c are both live at scopes 2 and 3
    with pytest.raises(PlanError, match="overlaps"):
        check_plan(plan)
    c.offset = plan.arena_bytes  # outside the arena
    with pytest.raises(PlanError, match="outside"):
        check_plan(plan)


def test_tensor_slice_and_view_address_the_arena():
    model = load_model(two_branch_model())
    plan = plan_arena(model)
    off, n = tensor_slice(plan, 2)
    assert n == 1024 and off == plan.offsets[2] == plan.slice_of(2)[0]
    arena = np.zeros(plan.arena_bytes, np.uint8)
    v = tensor_view(arena, plan, 2)
    assert v.shape == (1, 1024) and v.dtype == np.int8
    v[...] = -1
    assert (arena[off:off + n] == 255).all() and arena.sum() == 255 * 1024
    with pytest.raises(KeyError):
        tensor_slice(plan, 1)  # a constant


def test_a_plan_from_a_path_or_bytes_is_the_same():
    path = shared_model("hello_world_int8")
    a, b, c = plan_arena(path), plan_arena(path.read_bytes()), plan_arena(str(path))
    assert a.offsets == b.offsets == c.offsets and a.arena_bytes == 32


@pytest.mark.skipif(tflm_runtime is None, reason="tflite_micro is not importable")
def test_head_matches_tflm_on_every_repro_model():
    # The defect repros of shared/repro: microref's head is the one TFLM allocates, or asks for
    # when it is larger than the test's arena ("Failed to resize buffer. Requested: N"); only the
    # two untrustworthy offline plans are refused (see test_planner_offline.py), and the models
    # beyond the memory budget that guards loading (test_hostile.py).
    import re

    from planner_support import REPRO, tflm_refusal

    from interp.errors import ModelError
    paths = sorted(REPRO.glob("*.tflite"))
    if not paths:
        pytest.skip(f"no repro models in {REPRO}")
    refused = []
    for p in paths:
        data = p.read_bytes()
        try:
            head = plan_arena(load_model(data)).arena_bytes
        except ModelError as e:
            if "memory budget" in str(e):
                continue  # beyond the 1 GiB budget that guards loading (interp.verify.MAX_MEMORY_BYTES)
            refused.append(p.name)
            continue
        message = tflm_refusal(data)
        if message is None:
            assert head == tflm_allocations(data)[0], p.name
        else:
            assert int(re.search(r"Requested: (\d+)", message).group(1)) == head, p.name
    assert set(refused) <= {"meta_offline_neg.tflite", "meta_offline_overlap.tflite"}
