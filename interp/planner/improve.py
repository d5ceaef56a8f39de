"""A better plan than TFLM's greedy one: the same buffers at other offsets, never a larger head.

The result is meant to be written back into the model as an offline plan (``write_improved_model``),
so every candidate is scored as TFLM would realise it: the tensors at their searched offsets, the
scratch buffers placed around them by TFLM's own greedy planner.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .greedy import arena_extent, greedy_offsets, place_buffers
from .lifetimes import PlannedBuffer
from .plan import ArenaPlan, ImprovedPlan


def _realise(buffers: Sequence[PlannedBuffer], tensor_offsets: Sequence[int | None]) -> list[int]:
    """Where TFLM puts every buffer when the tensors carry these offline offsets (None: online)."""
    sizes = [b.size for b in buffers]
    fixed = [tensor_offsets[i] if b.kind == "tensor" else None for i, b in enumerate(buffers)]
    return greedy_offsets(sizes, [b.first for b in buffers], [b.last for b in buffers], fixed)


def improve_plan(plan: ArenaPlan, *, seed: int = 0, local_iterations: int = 400,
                 exact_limit: int = 12, exact_nodes: int = 200_000) -> ImprovedPlan:
    """Search offset assignments for a smaller arena than TFLM's greedy plan, deterministically.

    Candidates: first-fit and best-fit placement in many orders (size, lifetime start, length,
    size x length, conflict weight, with both tie orders), then a seeded local search that swaps
    placement orders, and for at most ``exact_limit`` buffers an exact branch-and-bound search.
    The search stops early once it reaches the lower bound (no plan can be smaller). Every
    candidate is scored as TFLM would realise it from an offline plan (tensors fixed, scratch
    buffers placed by TFLM's greedy planner), and the online greedy plan itself is a candidate,
    so the result is never worse than greedy.
    """
    buffers = plan.buffers
    n = len(buffers)
    greedy = plan.arena_bytes
    lb = plan.lower_bound
    if plan.shared_pairs:  # Vela's layout: tensors share bytes on purpose; keep the model's plan
        return ImprovedPlan(arena_bytes=greedy, greedy_arena_bytes=greedy, lower_bound=lb,
                            buffers=[replace(b) for b in buffers], offsets=dict(plan.offsets),
                            tensor_offsets={}, method="the model's offline plan (it shares bytes by "
                            "design; not re-planned)", optimal=False, candidates_tried=0,
                            shared_pairs=set(plan.shared_pairs))
    sizes = [b.size for b in buffers]
    firsts = [b.first for b in buffers]
    lasts = [b.last for b in buffers]
    pinned = None  # the improved plan re-places every tensor, even ones the model pinned offline

    best = {"arena": greedy, "tensor": None, "offsets": [b.offset for b in buffers],
            "method": "greedy (TFLM's own plan; not beaten)"}
    tried = 0
    has_scratch = any(b.kind == "scratch" for b in buffers)

    def consider(offsets: list[int], method: str):
        nonlocal tried
        tried += 1
        if has_scratch:
            tens = [o if b.kind == "tensor" else None for o, b in zip(offsets, buffers)]
            offsets = _realise(buffers, tens)
        else:
            tens = list(offsets)
        arena = arena_extent(offsets, sizes)
        if arena < best["arena"]:
            best.update(arena=arena, tensor=tens, offsets=list(offsets), method=method)
        return arena

    if n and greedy > lb:
        overlap = np.zeros((n, n), dtype=bool)
        for i in range(n):
            for j in range(n):
                overlap[i, j] = not (firsts[j] > lasts[i] or firsts[i] > lasts[j])
        weight = [int(np.dot(overlap[i], sizes)) for i in range(n)]
        length = [lasts[i] - firsts[i] + 1 for i in range(n)]
        keys = {
            "size": lambda i: (-sizes[i], firsts[i], i),
            "size, later first": lambda i: (-sizes[i], -i),
            "size, longest first": lambda i: (-sizes[i], -length[i], i),
            "size x lifetime": lambda i: (-sizes[i] * length[i], -sizes[i], i),
            "lifetime, then size": lambda i: (-length[i], -sizes[i], i),
            "conflict weight": lambda i: (-weight[i], -sizes[i], i),
            "start time": lambda i: (firsts[i], -sizes[i], i),
            "end time": lambda i: (-lasts[i], -sizes[i], i),
        }
        orders = {name: sorted(range(n), key=k) for name, k in keys.items()}
        for name, order in orders.items():
            for bf in (False, True):
                consider(place_buffers(order, sizes, firsts, lasts, pinned, best_fit=bf),
                         f"{'best' if bf else 'first'} fit by {name}")
                if best["arena"] <= lb:
                    break
            if best["arena"] <= lb:
                break

        # Seeded local search on the placement order of the best heuristic.
        if best["arena"] > lb and local_iterations > 0:
            rng = random.Random(seed)
            start_name = min(orders, key=lambda k: arena_extent(place_buffers(orders[k], sizes, firsts, lasts),
                                                           sizes))
            cur = list(orders[start_name])
            cur_cost = arena_extent(place_buffers(cur, sizes, firsts, lasts), sizes)
            for _ in range(local_iterations):
                cand = list(cur)
                i, j = rng.randrange(n), rng.randrange(n)
                if rng.random() < 0.5:
                    cand[i], cand[j] = cand[j], cand[i]
                else:
                    cand.insert(j, cand.pop(i))
                offs = place_buffers(cand, sizes, firsts, lasts)
                cost = arena_extent(offs, sizes)
                if cost <= cur_cost:
                    cur, cur_cost = cand, cost
                    if cost < best["arena"]:
                        consider(offs, f"local search from '{start_name}' (seed {seed})")
                        if best["arena"] <= lb:
                            break

        exhaustive = False
        if best["arena"] > lb and n <= exact_limit:
            offs, complete = exact_search(sizes, firsts, lasts, upper=best["arena"], lower=lb,
                                          node_limit=exact_nodes, overlap=overlap)
            tried += 1
            if offs is not None:
                consider(offs, "exact search")
            exhaustive = complete and not has_scratch
        optimal = best["arena"] <= lb or exhaustive
    else:
        optimal = True

    offsets = best["offsets"]
    new_buffers = [replace(b, offset=o, offline_offset=None) for b, o in zip(buffers, offsets)]
    if best["tensor"] is None:
        tensor_offsets: dict[Any, int] = {}
    else:
        tensor_offsets = {b.key: o for b, o in zip(buffers, best["tensor"]) if b.kind == "tensor"}
    return ImprovedPlan(arena_bytes=best["arena"], greedy_arena_bytes=greedy, lower_bound=lb,
                        buffers=new_buffers, offsets={b.key: b.offset for b in new_buffers},
                        tensor_offsets=tensor_offsets, method=best["method"], optimal=optimal,
                        candidates_tried=tried)


def exact_search(sizes: Sequence[int], firsts: Sequence[int], lasts: Sequence[int], *,
                 upper: int | None = None, lower: int = 0, node_limit: int = 200_000,
                 overlap: np.ndarray | None = None) -> tuple[list[int] | None, bool]:
    """The smallest arena for these buffers, by branch and bound; returns (offsets, finished).

    Searches "bottom-left" packings (every buffer at 0 or on top of a buffer it overlaps in time),
    placing buffers in non-decreasing offset order so that each packing is reached once per tie
    order; any packing can be pushed down into one of these, so when the search ``finished``
    (within ``node_limit`` nodes) the offsets are optimal. Only packings smaller than ``upper``
    (default: all buffers stacked, plus one) are returned (None if there is none); the search
    stops early at ``lower``, a bound no packing can beat. ``overlap[i, j]``: whether buffers i
    and j are live at the same time (derived from the lifetimes when not given).
    """
    n = len(sizes)
    if upper is None:
        upper = sum(sizes) + 1
    lb = lower
    if overlap is None:
        overlap = np.array([[not (firsts[j] > lasts[i] or firsts[i] > lasts[j]) for j in range(n)]
                            for i in range(n)], dtype=bool).reshape(n, n)
    best = [upper, None]
    nodes = [0]
    offsets = [-1] * n

    def feasible(b, pos):
        end = pos + sizes[b]
        for e in range(n):
            if offsets[e] >= 0 and overlap[b, e] and offsets[e] < end and pos < offsets[e] + sizes[e]:
                return False
        return True

    def dfs(placed: int, floor: int, floor_id: int, top: int):
        nodes[0] += 1
        if nodes[0] > node_limit:
            raise TimeoutError
        if placed == n:
            if top < best[0]:
                best[0], best[1] = top, list(offsets)
            return
        cands = {0} | {offsets[e] + sizes[e] for e in range(n) if offsets[e] >= 0}
        for pos in sorted(c for c in cands if c >= floor):
            for b in range(n):
                if offsets[b] >= 0 or max(top, pos + sizes[b]) >= best[0]:
                    continue
                if pos == floor and b < floor_id:
                    continue  # equal offsets: one order only
                if pos != 0 and not any(offsets[e] >= 0 and overlap[b, e] and
                                        offsets[e] + sizes[e] == pos for e in range(n)):
                    continue  # not resting on a buffer it overlaps in time: not bottom-left
                if not feasible(b, pos):
                    continue
                offsets[b] = pos
                dfs(placed + 1, pos, b, max(top, pos + sizes[b]))
                offsets[b] = -1
                if best[0] <= lb:
                    return

    try:
        dfs(0, 0, -1, 0)
        finished = True
    except TimeoutError:
        finished = False
    return best[1], finished
