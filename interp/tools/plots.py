"""Charts (matplotlib, the ``plot`` extra): the arena over time and as a map, and SNR per layer.

``plan_figure(plan)``: two panels. Above, the bytes live at each step of the run (KiB), the
peak in red, the persistent tail (an estimate) stacked on top, TFLM's greedy head, the improved
plan and the budget as lines. Below, the arena itself — what TFLM's ``print_allocations`` gives
as text: each planned buffer a rectangle spanning the steps it lives (x) at its offset (y),
the peak step, the head, the tail above it and the budget marked.

``layers_figure(rows)``: the SNR of each int8 layer against the float model (``compare --float``),
with titles, operator names and an axis from zero.

Labels stay readable on long models: at most ``MAX_LABELS`` operator names are written (every
n-th, and always the peak).
"""
from __future__ import annotations

import math
import os

from .compare import MissingPackage

MAX_LABELS = 40
KIB = 1024.0

BLUE, RED, GREEN, GREY, ORANGE, DARK = "#4a7ab5", "#c0392b", "#27ae60", "#9a9a9a", "#e67e22", "#333333"


def pyplot():
    """matplotlib.pyplot on the Agg backend, or MissingPackage saying what to install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingPackage("--plot needs matplotlib: pip install 'microref[plot]' (or pip install matplotlib)") \
            from None
    return plt


def thinned_ticks(count: int, keep: tuple[int, ...] = (), max_labels: int = MAX_LABELS) -> list[int]:
    """Positions 0..count-1 to label: every n-th so that at most about ``max_labels`` remain,
    plus those in ``keep`` (e.g. the peak)."""
    step = max(1, math.ceil(count / max_labels))
    chosen = set(range(0, count, step)) | {k for k in keep if 0 <= k < count}
    return sorted(chosen)


def _step_label(step) -> str:
    return "inputs" if step.op is None else f"{step.op} {step.op_name}"


def _set_op_ticks(ax, xs: list[int], labels: list[str], keep: tuple[int, ...] = ()):
    positions = thinned_ticks(len(xs), keep)
    ax.set_xticks([xs[p] for p in positions])
    ax.set_xticklabels([labels[p] for p in positions], rotation=90, fontsize=7)
    if len(positions) < len(xs):
        ax.set_xlabel(f"operator (one label every {math.ceil(len(xs) / MAX_LABELS)} steps, and the peak)", fontsize=8)
    else:
        ax.set_xlabel("operator", fontsize=8)


def plan_figure(plan):
    """The arena plan as a figure (see the module docstring); the caller saves or closes it."""
    plt = pyplot()
    from matplotlib.patches import Patch, Rectangle

    steps = plan.timeline
    xs = [s.time for s in steps]
    labels = [_step_label(s) for s in steps]
    live = [s.live_bytes / KIB for s in steps]
    tail = plan.tail_estimate.get("total", 0) / KIB
    head = plan.arena_bytes / KIB
    budget = plan.budget_bytes / KIB
    peak_index = next((i for i, s in enumerate(steps) if s.time == plan.peak_time), None)
    keep = () if peak_index is None else (peak_index,)

    fig, (ax, arena) = plt.subplots(2, 1, figsize=(max(9, min(0.16 * len(steps) + 4, 40)), 9),
                                    gridspec_kw={"height_ratios": [1, 1.3]})
    # ---- live bytes over time, the tail stacked on top
    colors = [RED if s.time == plan.peak_time else BLUE for s in steps]
    ax.bar(xs, live, color=colors, width=0.8, label="live activations and scratch (head)")
    ax.bar(xs, [tail] * len(xs), bottom=live, color=GREY, alpha=0.35, width=0.8, hatch="//",
           label=f"persistent tail, estimate ({tail:,.1f} KiB)")
    ax.axhline(head, color=DARK, linestyle=":", label=f"TFLM greedy head {head:,.1f} KiB")
    ax.axhline(head + tail, color=DARK, linestyle="-", linewidth=0.8,
               label=f"head + tail {plan.required_bytes / KIB:,.1f} KiB")
    improved = plan.improved.arena_bytes / KIB
    if improved < head:
        ax.axhline(improved, color=GREEN, linestyle="-.", label=f"improved plan {improved:,.1f} KiB")
    top = max(live + [head + tail]) * 1.15 or 1.0
    if budget <= 4 * top:
        ax.axhline(budget, color=RED, linestyle="--", label=f"budget {budget:,.1f} KiB")
        top = max(top, budget * 1.05)
    else:
        ax.text(0.99, 0.97, f"budget {budget:,.1f} KiB (off scale)", transform=ax.transAxes, ha="right", va="top",
                fontsize=9, color=RED)
    ax.set_ylim(0, top)
    ax.set_xlim(min(xs, default=0) - 0.6, max(xs, default=0) + 0.6)
    ax.set_ylabel("KiB")
    where = "" if plan.peak_op is None else f" at operator {plan.peak_op} ({steps[peak_index].op_name})"
    name = os.path.basename(str(plan.model_name))
    ax.set_title(f"{name}: arena over time — peak {plan.lower_bound / KIB:,.1f} KiB live{where} (red)")
    _set_op_ticks(ax, xs, labels, keep)
    ax.legend(loc="upper left", fontsize=7)

    # ---- the arena: offset x lifetime
    placed = [b for b in plan.buffers if b.offset >= 0]
    peak_live = {b.label for b in placed if plan.peak_time is not None and b.first <= plan.peak_time <= b.last}
    for b in placed:
        color = ORANGE if b.kind == "scratch" else BLUE
        arena.add_patch(Rectangle((b.first - 0.4, b.offset / KIB), b.last - b.first + 0.8, b.size / KIB,
                                  facecolor=color, alpha=0.75, edgecolor=RED if b.label in peak_live else "white",
                                  linewidth=1.2 if b.label in peak_live else 0.5, gid=f"buffer:{b.id}"))
    if tail:
        arena.add_patch(Rectangle((min(xs, default=0) - 0.6, head), max(len(xs), 1) + 0.2, tail, facecolor=GREY,
                                  alpha=0.35, hatch="//", edgecolor=GREY, gid="tail"))
    arena.axhline(head, color=DARK, linestyle=":")
    if plan.peak_time is not None:
        arena.axvline(plan.peak_time, color=RED, linestyle="--", linewidth=1)
        arena.text(plan.peak_time, 1.0, " peak", color=RED, fontsize=8, va="bottom",
                   transform=arena.get_xaxis_transform())
    arena_top = (head + tail) * 1.1 or 1.0
    if budget <= 4 * arena_top:
        arena.axhline(budget, color=RED, linestyle="--")
        arena_top = max(arena_top, budget * 1.05)
    arena.set_ylim(0, arena_top)
    arena.set_xlim(min(xs, default=0) - 0.6, max(xs, default=0) + 0.6)
    arena.set_ylabel("arena offset (KiB)")
    arena.set_title(f"the arena: each buffer at its offset for the steps it lives ({len(placed)} buffers; red edge: "
                    f"live at the peak)", fontsize=10)
    _set_op_ticks(arena, xs, labels, keep)
    handles = [Patch(facecolor=BLUE, alpha=0.75, label="tensor"), Patch(facecolor=ORANGE, alpha=0.75, label="scratch"),
               Patch(facecolor=GREY, alpha=0.35, hatch="//", label="persistent tail (estimate)")]
    handles += [plt.Line2D([], [], color=DARK, linestyle=":", label=f"head {head:,.1f} KiB"),
                plt.Line2D([], [], color=RED, linestyle="--", label=f"budget {budget:,.1f} KiB")]
    arena.legend(handles=handles, loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def layers_figure(rows, title: str = ""):
    """SNR of each int8 layer against the float model; exact layers (infinite SNR) drawn on top."""
    plt = pyplot()
    xs = list(range(len(rows)))
    labels = [f"{r.op_index} {r.op_name}" for r in rows]
    several = bool(rows) and rows[0].samples > 1
    series = [("SNR over all samples" if several else "SNR", [r.snr_db for r in rows], BLUE, "o")]
    if several:
        series.append(("worst sample", [r.snr_db_min for r in rows], RED, "v"))
    finite = [v for _, values, _, _ in series for v in values if math.isfinite(v)]
    ceiling = (max(finite) if finite else 0.0) + 10.0
    fig, ax = plt.subplots(figsize=(max(9, min(0.2 * len(rows) + 4, 40)), 4.8))
    for name, values, color, marker in series:
        shown = [ceiling if v == math.inf else v for v in values]
        ax.plot(xs, shown, marker=marker, color=color, label=name)
    exact = [x for x, r in zip(xs, rows) if r.snr_db == math.inf]
    if exact:
        ax.scatter(exact, [ceiling] * len(exact), marker="*", s=80, color=GREEN, zorder=3,
                   label="exact (infinite SNR)")
    low = min(finite, default=0.0)
    ax.set_ylim(min(0.0, low - 5), ceiling + 5)
    ax.set_xlim(-0.6, max(len(rows) - 0.4, 0.6))
    ax.set_ylabel("SNR of int8 vs float (dB)")
    ax.set_title(title or f"int8 vs float, per layer ({rows[0].samples if rows else 0} sample"
                          f"{'s' if several else ''}): higher is better")
    _set_op_ticks(ax, xs, labels)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path: str, dpi: int = 110) -> str:
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def plot_plan(plan, path: str) -> str:
    return save(plan_figure(plan), path)


def plot_layers(rows, path: str, title: str = "") -> str:
    return save(layers_figure(rows, title), path)
