"""OfflineMemoryAllocation: read, judged before it is trusted (check_offline_plan), and written
(write_offline_plan / write_model_metadata) so that TFLM uses it."""
from __future__ import annotations

import importlib
import struct

import numpy as np
import pytest
from planner_support import (
    fc_model,
    needs_tflm,
    repro_model,
    shared_model,
    tflm_allocations,
    tflm_load,
    tflm_refusal,
    two_branch_model,
    with_offline_words,
)

from interp.errors import ModelError
from interp.model import load_model
from interp.planner import (
    ONLINE,
    check_offline_plan,
    check_plan,
    place_buffers,
    plan_arena,
    read_offline_offsets,
    write_improved_model,
    write_offline_plan,
)
from interp.tools import cli


# ---------------------------------------------------------------------- plans that cannot be trusted
def test_repro_negative_offset_is_a_model_error(capsys):
    path = repro_model("meta_offline_neg.tflite")
    with pytest.raises(ModelError, match=r"offset -1000 is negative.*Failed to resize buffer"):
        plan_arena(load_model(path))
    assert cli.main(["plan", str(path)]) == cli.EXIT_MODEL
    assert "fits" not in capsys.readouterr().out


@needs_tflm
def test_tflm_refuses_the_negative_offset_repro():
    assert "Failed to resize buffer" in tflm_refusal(repro_model("meta_offline_neg.tflite").read_bytes())


def test_repro_overlapping_live_tensors_is_a_model_error(capsys):
    path = repro_model("meta_offline_overlap.tflite")
    with pytest.raises(ModelError, match=r"t0 x \[0, 16\) and t3 y \[0, 16\) share bytes.*corrupted"):
        plan_arena(load_model(path))
    assert cli.main(["plan", str(path), "--json"]) == cli.EXIT_MODEL
    assert capsys.readouterr().out == ""


@needs_tflm
def test_overlapping_live_tensors_corrupt_tflms_outputs():
    # The same FC with and without x and y sharing bytes: TFLM runs both without a word, and the
    # shared one's outputs are wrong (the FC overwrites its input while reading it).
    data = fc_model(32, 32)
    shared = with_offline_words(data, [0, ONLINE, 0])
    clean = with_offline_words(data, [0, ONLINE, 32])
    with pytest.raises(ModelError, match="corrupted"):
        plan_arena(load_model(shared))
    assert plan_arena(load_model(clean)).arena_bytes == tflm_allocations(clean)[0] == 64
    it_shared, _ = tflm_load(shared)
    it_clean, _ = tflm_load(clean)
    x = np.arange(32, dtype=np.int8).reshape(1, 32)
    outs = []
    for it in (it_shared, it_clean):
        it.set_input(x, 0)
        it.invoke()
        outs.append(it.get_output(0).copy())
    assert not np.array_equal(outs[0], outs[1])


def test_every_kind_of_bad_offset_is_named():
    data = fc_model(32, 32)  # x 0 (32 B), w 1 (constant), y 2 (32 B)
    cases = {
        (-16, ONLINE, 0): "lie before the start of the arena",  # TFLM writes outside the arena
        (-48, ONLINE, 32): "wraps around",  # x ends below 0: TFLM refuses
        (0, ONLINE, 2 ** 31 - 16): "past the largest arena",
        (0, ONLINE, 16): "share bytes [16, 32)",
    }
    for words, message in cases.items():
        with pytest.raises(ModelError, match=message.replace("[", r"\[").replace(")", r"\)")):
            plan_arena(load_model(with_offline_words(data, list(words))))


def test_sharing_bytes_when_not_live_together_is_what_offline_plans_are_for():
    # a (scopes 1..3) and d (4..5) never live at the same time: the same bytes are fine.
    data = two_branch_model()
    pinned = write_offline_plan(data, {2: 0, 8: 0})
    plan = plan_arena(load_model(pinned))
    assert plan.offsets[2] == plan.offsets[8] == 0
    check_plan(plan)


def test_offsets_past_the_arena_are_refused_against_a_given_budget(tmp_path, capsys):
    data = write_offline_plan(fc_model(32, 32), {0: 300_000})
    plan = plan_arena(load_model(data))  # no arena size given: planned as is
    assert plan.arena_bytes == 300_032
    check_offline_plan(plan, arena_bytes=300_032)
    with pytest.raises(ModelError, match=r"past the end of the 262,144-byte arena"):
        check_offline_plan(plan, arena_bytes=256 * 1024)
    path = tmp_path / "far.tflite"
    path.write_bytes(data)
    assert cli.main(["plan", str(path)]) == cli.EXIT_MODEL  # the CLI's arena is its --budget
    assert "262,144-byte arena" in capsys.readouterr().err
    assert cli.main(["plan", str(path), "--budget", "400KiB"]) == cli.EXIT_OK


@needs_tflm
def test_tflm_refuses_offsets_past_its_arena():
    data = write_offline_plan(fc_model(32, 32), {0: 2 << 20})  # the test arena is 1 MiB
    assert "Failed to resize buffer" in tflm_refusal(data)


# ---------------------------------------------------------------------- Vela
def test_vela_model_is_planned_from_its_own_offline_plan(capsys):
    # person_detect_vela.tflite: one ethos-u operator; its OfflineMemoryAllocation pins the output
    # (2 B -> 16), the scratch and fast-scratch tensors (74,464 B each) and the input (9,216 B) all
    # at offset 0: they share Vela's scratch area on purpose. The tflite-micro wheel cannot load
    # the model (it registers no Ethos-U kernel), so the head is checked by TFLM's planner rules
    # on the model's own tensors: the offline buffers reach 74,464 bytes; TFLM's ethos-u kernel
    # requests two scratch buffers of 6 operands x 8 bytes (uint64 base addresses, and size_t
    # sizes on a 64-bit host), 48 bytes each, live at scope 1 with every pinned tensor, so the
    # greedy planner stacks them above: 74,464 + 48 + 48 = 74,560.
    path = shared_model("person_detect_vela")
    model = load_model(path)
    assert read_offline_offsets(model) == [0, ONLINE, ONLINE, 0, 0, 0]
    plan = plan_arena(model)
    assert plan.exact and plan.offline_planned
    pinned = [b for b in plan.buffers if b.offline_offset is not None]
    assert sorted(b.size for b in pinned) == [16, 9216, 74464, 74464]
    scratch = sorted((b.offset, b.size) for b in plan.buffers if b.kind == "scratch")
    assert scratch == [(74464, 48), (74512, 48)]
    assert plan.arena_bytes == 74464 + 48 + 48 == 74560
    assert len(plan.shared_pairs) == 6  # every pair of the four pinned operands
    assert any("Vela" in n for n in plan.notes) and any("32-bit" in n for n in plan.notes)
    assert plan.lower_bound == 74560  # shared bytes counted once
    check_plan(plan)
    assert plan.improved.arena_bytes == 74560 and not plan.improved.tensor_offsets
    assert cli.main(["plan", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "74,560" in out and "exact" in out


def test_sharing_is_only_allowed_among_an_npu_operators_operands():
    # The same pinned overlap with an ordinary operator in between is refused.
    data = fc_model(32, 32)
    with pytest.raises(ModelError, match=r"FULLY_CONNECTED"):
        plan_arena(load_model(with_offline_words(data, [0, ONLINE, 0])))


# ---------------------------------------------------------------------- writing offline plans
def test_written_offline_plan_is_read_back():
    data = shared_model("hello_world_int8").read_bytes()
    new = write_offline_plan(data, {1: 48})
    model = load_model(new)
    words = read_offline_offsets(model)
    assert len(words) == len(model.main.tensors) and words[1] == 48
    assert words.count(ONLINE) == len(words) - 1
    raw = model.metadata["OfflineMemoryAllocation"]
    assert struct.unpack_from("<3i", raw) == (1, 0, len(model.main.tensors))
    assert set(model.metadata) == {"min_runtime_version", "CONVERSION_METADATA", "OfflineMemoryAllocation"}
    # Writing again replaces the entry instead of adding a second one.
    again_bytes = write_offline_plan(new, {1: 64})
    again = load_model(again_bytes)
    assert read_offline_offsets(again)[1] == 64
    fb = importlib.import_module("tflite.Model").Model.GetRootAs(again_bytes, 0)
    names = sorted(fb.Metadata(i).Name().decode() for i in range(fb.MetadataLength()))
    assert names == ["CONVERSION_METADATA", "OfflineMemoryAllocation", "min_runtime_version"]
    # Everything else is the same model.
    old = load_model(data)
    for t_old, t_new in zip(old.main.tensors, again.main.tensors):
        assert t_old.name == t_new.name and t_old.shape == t_new.shape
        assert (t_old.data is None) == (t_new.data is None)
        if t_old.data is not None:
            assert np.array_equal(t_old.data, t_new.data)
    with pytest.raises(ValueError, match="online"):
        write_offline_plan(data, {"scratch:0": 0})
    with pytest.raises(ValueError, match="not a valid arena offset"):
        write_offline_plan(data, {1: -16})


@needs_tflm
def test_tflm_uses_the_improved_plan_written_into_vww():
    data = shared_model("vww_96_int8").read_bytes()
    plan = plan_arena(load_model(data))
    new = write_improved_model(data, plan)
    head, _, it_new = tflm_allocations(new)
    assert head == plan.improved.arena_bytes == 55296
    # Our planner reads the metadata back and predicts the same head.
    assert plan_arena(load_model(new)).arena_bytes == head
    _, _, it_old = tflm_allocations(data)
    d = it_old.get_input_details(0)
    rng = np.random.default_rng(3)
    for _ in range(2):
        x = rng.integers(-128, 128, d["shape"]).astype(d["dtype"])
        it_old.set_input(x, 0)
        it_old.invoke()
        it_new.set_input(x, 0)
        it_new.invoke()
        assert np.array_equal(it_old.get_output(0), it_new.get_output(0))


@needs_tflm
def test_offline_plans_with_scratch_and_unaligned_offsets_match_tflm():
    # mobilenet: tensors pinned where a lifetime-ordered first fit puts them; TFLM fits the MEAN
    # scratch buffers online around them. Our prediction must be TFLM's head.
    data = shared_model("mobilenet_v2_quantized_1x3x224x224").read_bytes()
    plan = plan_arena(load_model(data))
    tens = [b for b in plan.buffers if b.kind == "tensor"]
    order = sorted(range(len(tens)), key=lambda i: (tens[i].first, -tens[i].size))
    offs = place_buffers(order, [b.size for b in tens], [b.first for b in tens], [b.last for b in tens])
    new = write_offline_plan(data, {b.tensor: o for b, o in zip(tens, offs)})
    predicted = plan_arena(load_model(new))
    check_plan(predicted)
    assert predicted.arena_bytes == tflm_allocations(new)[0]
    # hello_world: every tensor moved up by 8 bytes; TFLM keeps unaligned offsets as given.
    data = shared_model("hello_world_int8").read_bytes()
    plan = plan_arena(load_model(data))
    new = write_offline_plan(data, {b.tensor: b.offset + 8 for b in plan.buffers})
    predicted = plan_arena(load_model(new))
    assert predicted.arena_bytes == plan.arena_bytes + 8 == tflm_allocations(new)[0]


def test_an_offline_pinned_variable_must_keep_its_bytes():
    # A variable's value outlives every invocation: another pinned tensor on its bytes is refused
    # even when the two are never live at the same scope; online buffers that TFLM's greedy
    # planner puts there are named in a note.
    data = two_branch_model(extra_tensors=[{"name": "v", "shape": [1, 16], "variable": True}])
    with pytest.raises(ModelError, match=r"t10 v is a variable tensor.*t2 a overwrites it"):
        plan_arena(load_model(write_offline_plan(data, {10: 0, 2: 0})))
    plan = plan_arena(load_model(write_offline_plan(data, {10: 0})))
    assert any("over the bytes of the offline-planned variable t10 v" in n for n in plan.notes)
    assert plan_arena(load_model(write_offline_plan(data, {10: 4096}))).notes == []


@needs_tflm
def test_an_offline_pinned_variable_is_planned_like_tflm():
    data = two_branch_model(extra_tensors=[{"name": "v", "shape": [1, 16], "variable": True}])
    for pins in ({10: 0}, {10: 4096}, {10: 4096, 2: 0}):
        pinned = write_offline_plan(data, pins)
        assert plan_arena(load_model(pinned)).arena_bytes == tflm_allocations(pinned)[0], pins
