"""The plan as a person reads it (format_plan, `microref plan`) and as JSON (plan_to_json)."""
from __future__ import annotations

import json

import pytest
from planner_support import two_branch_model

from interp.builder import ModelBuilder
from interp.model import load_model
from interp.planner import format_plan, plan_arena, plan_to_json
from interp.tools import cli


def test_format_plan_verdicts_and_json():
    model = load_model(two_branch_model())
    plan = plan_arena(model, budget_bytes=100)
    # The verdict compares the smallest arena_size TFLM accepts (head, tail and prepare's
    # temporaries, replayed) with the budget.
    need = plan.required_bytes
    text = format_plan(plan)
    assert f"over by {need - 100:,} bytes" in text
    assert "Tail (persistent, exact" in text and "<- peak" in text and "Lower bound" in text
    assert "Head (TFLM's greedy plan, exact)" in text
    roomy = plan_arena(model, budget_bytes=need + 5 * 1024, flash_budget_bytes=10)
    text = format_plan(roomy)
    assert "fits, 5.0 KiB to spare" in text
    assert f"over by {roomy.flash_bytes - 10:,} bytes" in text
    assert roomy.fits and not roomy.flash_fits and not plan.fits
    js = json.loads(json.dumps(plan_to_json(roomy)))
    assert js["arena_bytes"] == roomy.arena_bytes and js["tail_is_estimate"] is False
    assert js["required_bytes"] == roomy.required_bytes
    assert js["exact"] is True and js["head_is_lower_bound"] is False and js["unknown_scratch"] == []
    assert js["offsets"]["2"] == roomy.offsets[2]
    assert js["improved"]["arena_bytes"] == roomy.improved.arena_bytes
    assert len(js["timeline"]) == len(model.main.operators) + 1


@pytest.mark.skipif(not hasattr(ModelBuilder(), "subgraph"), reason="this ModelBuilder cannot write subgraphs yet")
def test_cli_plans_a_multi_subgraph_model(tmp_path, capsys):
    from test_planner_subgraphs import if_model
    path = tmp_path / "if.tflite"
    path.write_bytes(if_model())
    assert cli.main(["plan", str(path)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "(enter subgraph 1)" in out and "s1:t0" in out
    assert cli.main(["plan", str(path), "--json"]) == cli.EXIT_OK
    js = json.loads(capsys.readouterr().out)
    assert js["arena_bytes"] == plan_arena(load_model(path)).arena_bytes
    assert js["operator_order_search"]["best_order"] == [0, 1]  # the ADD needs the IF's output
