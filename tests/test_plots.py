"""The charts (interp/tools/plots.py), checked element by element: KiB axes, the persistent tail,
the arena's offset x lifetime map with the peak and budget, readable labels on 80+ operator models,
and the SNR plot's title, operator names and zero-based axis. Skips without matplotlib (the `plot`
extra)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is the optional 'plot' extra: pip install 'microref[plot]'")

from interp import Interpreter, planner  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from interp.model import load_model  # noqa: E402
from interp.tools import cli, plots  # noqa: E402
from interp.tools import compare as cmp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MOBILE = ROOT / "golden" / "models" / "net_mobile_block.tflite"
PAIR = ROOT / "golden" / "float_pair"


def chain_model(ops: int = 90) -> bytes:
    """ops RELU operators in a chain, the activation widening then narrowing through PADs."""
    b = ModelBuilder()
    width = 16
    x = b.input("x", [1, width], "INT8", scale=0.1, zero_point=0)
    for i in range(ops):
        if i % 2 == 0:
            grow = 16 if i < ops // 2 else 0
            pad = b.constant(f"pad{i}", np.array([[0, 0], [0, grow]], np.int32))
            y = b.tensor(f"t{i}", [1, width + grow], "INT8", scale=0.1, zero_point=0)
            b.op("PAD", [x, pad], [y])
            width += grow
        else:
            y = b.tensor(f"t{i}", [1, width], "INT8", scale=0.1, zero_point=0)
            b.op("RELU", [x], [y])
        x = y
    b.output(x)
    return b.build()


@pytest.fixture(scope="module")
def mobile_plan():
    return planner.plan_arena(load_model(MOBILE), budget_bytes=2048)


def test_timeline_panel_is_in_kib_with_the_tail_stacked(mobile_plan):
    plan = mobile_plan
    fig = plots.plan_figure(plan)
    timeline, arena = fig.axes[:2]
    assert timeline.get_ylabel() == "KiB" and arena.get_ylabel() == "arena offset (KiB)"
    live, tail = timeline.containers[:2]
    assert [bar.get_height() for bar in live] == pytest.approx([s.live_bytes / 1024 for s in plan.timeline])
    t = plan.tail_estimate["total"] / 1024
    assert t > 0 and all(bar.get_height() == pytest.approx(t) for bar in tail)
    assert [bar.get_y() for bar in tail] == pytest.approx([s.live_bytes / 1024 for s in plan.timeline])
    # The peak bar is red, the others blue.
    red, blue = (0xc0 / 255, 0x39 / 255, 0x2b / 255), (0x4a / 255, 0x7a / 255, 0xb5 / 255)
    for step, bar in zip(plan.timeline, live):
        assert bar.get_facecolor()[:3] == pytest.approx(red if step.time == plan.peak_time else blue)
    labels = [text.get_text() for text in timeline.get_legend().get_texts()]
    assert any(label.startswith("persistent tail, estimate") for label in labels)
    assert f"TFLM greedy head {plan.arena_bytes / 1024:,.1f} KiB" in labels
    assert f"budget {plan.budget_bytes / 1024:,.1f} KiB" in labels
    assert "peak" in timeline.get_title() and "net_mobile_block.tflite" in timeline.get_title()
    plots.pyplot().close(fig)


def test_arena_panel_draws_each_buffer_at_its_offset_for_its_lifetime(mobile_plan):
    plan = mobile_plan
    fig = plots.plan_figure(plan)
    arena = fig.axes[1]
    rects = {p.get_gid(): p for p in arena.patches}
    placed = [b for b in plan.buffers if b.offset >= 0]
    assert len([g for g in rects if g and g.startswith("buffer:")]) == len(placed)
    for b in placed:
        r = rects[f"buffer:{b.id}"]
        assert r.get_y() == pytest.approx(b.offset / 1024) and r.get_height() == pytest.approx(b.size / 1024)
        assert r.get_x() == pytest.approx(b.first - 0.4) and r.get_width() == pytest.approx(b.last - b.first + 0.8)
        # Buffers live at the peak have a red edge.
        live_at_peak = b.first <= plan.peak_time <= b.last
        assert (r.get_edgecolor()[:3] == pytest.approx((0xc0 / 255, 0x39 / 255, 0x2b / 255))) == live_at_peak
    # No two buffers live at the same time overlap in the arena.
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset
    tail = rects["tail"]
    assert tail.get_y() == pytest.approx(plan.arena_bytes / 1024)
    assert tail.get_height() == pytest.approx(plan.tail_estimate["total"] / 1024)
    xs = {line.get_xdata()[0] for line in arena.get_lines() if line.get_linestyle() == "--"
          and len(set(line.get_xdata())) == 1}
    assert plan.peak_time in xs  # the peak marked
    ys = {line.get_ydata()[0] for line in arena.get_lines() if len(set(line.get_ydata())) == 1}
    assert plan.arena_bytes / 1024 in ys and plan.budget_bytes / 1024 in ys  # the head and the budget
    plots.pyplot().close(fig)


def test_labels_stay_readable_on_a_model_of_90_operators():
    plan = planner.plan_arena(load_model(chain_model(90)))
    assert len(plan.timeline) >= 90
    fig = plots.plan_figure(plan)
    peak_label = next(f"{s.op} {s.op_name}" for s in plan.timeline if s.time == plan.peak_time)
    for ax in fig.axes[:2]:
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert len(labels) <= plots.MAX_LABELS + 1
        assert peak_label in labels
        assert all(label == "inputs" or label.split(" ", 1)[1] in ("PAD", "RELU") for label in labels)
        assert "one label every 3 steps" in ax.get_xlabel()
    plots.pyplot().close(fig)


def test_thinned_ticks():
    assert plots.thinned_ticks(10) == list(range(10))
    ticks = plots.thinned_ticks(200, keep=(77,))
    assert 77 in ticks and len(ticks) <= plots.MAX_LABELS + 1 and ticks[0] == 0


def _rows():
    q, f = Interpreter.from_file(PAIR / "int8.tflite"), Interpreter.from_file(PAIR / "float.tflite")
    return cmp.compare_float_samples(q, f, cmp.default_float_inputs(q, f, 3, 0).samples)


def test_snr_plot_has_title_op_names_and_a_zero_based_axis():
    rows = _rows()
    fig = plots.layers_figure(rows)
    ax = fig.axes[0]
    assert ax.get_title().startswith("int8 vs float, per layer (3 samples)")
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{r.op_index} {r.op_name}" for r in rows]
    assert ax.get_ylim()[0] == 0 and all(r.snr_db > 0 for r in rows)
    assert ax.get_ylabel() == "SNR of int8 vs float (dB)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["SNR over all samples"].get_ydata()) == pytest.approx([r.snr_db for r in rows])
    assert list(lines["worst sample"].get_ydata()) == pytest.approx([r.snr_db_min for r in rows])
    plots.pyplot().close(fig)


def test_exact_layers_and_negative_snr_stay_on_the_chart():
    rows = _rows()
    rows[0].snr_db = rows[0].snr_db_min = math.inf
    rows[1].snr_db = rows[1].snr_db_min = -3.0
    fig = plots.layers_figure(rows)
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    assert low <= -3.0 and high > max(r.snr_db for r in rows[1:])
    assert any(c.get_label() == "exact (infinite SNR)" for c in ax.collections)
    plots.pyplot().close(fig)


def test_cli_writes_the_plan_chart(capsys, tmp_path):
    code = cli.main(["plan", str(MOBILE), "--plot", str(tmp_path / "plan.png")])
    out = capsys.readouterr().out
    assert code == 0 and f"wrote {tmp_path / 'plan.png'}" in out
    assert (tmp_path / "plan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
