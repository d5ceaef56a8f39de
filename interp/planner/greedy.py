"""TFLM's ``GreedyMemoryPlanner``, buffer for buffer, and the placement primitive it is built on."""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence


def greedy_offsets(sizes: Sequence[int], firsts: Sequence[int], lasts: Sequence[int],
                   offline: Sequence[int | None] | None = None) -> list[int]:
    """TFLM's GreedyMemoryPlanner::CalculateOffsetsIfNeeded, buffer for buffer.

    Order: offline-planned buffers first in insertion order; then the online ones taken from the
    last added to the first, stably sorted by size, largest first. Placement: offline buffers at
    their fixed offset; each online buffer at the first gap, walking the placed buffers whose
    lifetimes overlap its own in offset order, that is large enough, else after the last of them.
    """
    n = len(sizes)
    offline = list(offline) if offline is not None else [None] * n
    fixed = [i for i in range(n) if offline[i] is not None]
    online = [i for i in range(n - 1, -1, -1) if offline[i] is None]
    online.sort(key=lambda i: -sizes[i])  # Python's sort is stable, like TFLM's bubble sort
    return place_buffers(fixed + online, sizes, firsts, lasts, offline)


def place_buffers(order: Iterable[int], sizes: Sequence[int], firsts: Sequence[int],
                  lasts: Sequence[int], fixed: Sequence[int | None] | None = None,
                  best_fit: bool = False) -> list[int]:
    """Offsets for buffers placed one by one in ``order``; ``fixed[i]`` (if not None) pins buffer i.

    Each buffer goes into the first gap (``best_fit``: the smallest gap) that is large enough
    between the already placed buffers whose lifetimes overlap its own, walked in offset order,
    or after the last of them. Placed buffers are kept sorted by offset, a new one after those at
    an equal offset, as TFLM's offset-ordered list does. In TFLM's order (``greedy_offsets``) this
    is TFLM's plan; the improvers try other orders.
    """
    n = len(sizes)
    offsets = [-1] * n
    placed_off: list[int] = []
    placed_id: list[int] = []
    for b in order:
        if fixed is not None and fixed[b] is not None:
            cand = fixed[b]
        else:
            f, last, size = firsts[b], lasts[b], sizes[b]
            cand = 0
            best_gap = best_at = None
            for off, e in zip(placed_off, placed_id):
                if firsts[e] > last or f > lasts[e]:
                    continue  # not live at the same time: its bytes are free for b
                gap = off - cand
                if gap >= size:
                    if not best_fit:
                        break
                    if best_gap is None or gap < best_gap:
                        best_gap, best_at = gap, cand
                cand = max(cand, off + sizes[e])
            if best_fit and best_at is not None:
                cand = best_at
        offsets[b] = cand
        k = bisect.bisect_right(placed_off, cand)
        placed_off.insert(k, cand)
        placed_id.insert(k, b)
    return offsets


def arena_extent(offsets: Sequence[int], sizes: Sequence[int]) -> int:
    """The head these offsets need: the largest end (GreedyMemoryPlanner::GetMaximumMemorySize)."""
    return max((o + s for o, s in zip(offsets, sizes)), default=0)


def live_profile(buffers, merge_pinned: bool = False) -> dict[int, int]:
    """Scope -> sum of the aligned sizes of the buffers live then.

    ``merge_pinned``: count the bytes of offline-pinned buffers that share arena bytes once (an
    offline plan that overlaps tensors by design occupies the union of their ranges).
    """
    prof: dict[int, int] = {}
    pinned: dict[int, list[tuple[int, int]]] = {}
    for b in buffers:
        for t in range(b.first, b.last + 1):
            if merge_pinned and b.offline_offset is not None:
                pinned.setdefault(t, []).append((b.offline_offset, b.offline_offset + b.size))
            else:
                prof[t] = prof.get(t, 0) + b.size
    for t, ranges in pinned.items():
        covered, reach = 0, None
        for lo, hi in sorted(ranges):
            if reach is None or lo >= reach:
                covered += hi - lo
                reach = hi
            elif hi > reach:
                covered += hi - reach
                reach = hi
        prof[t] = prof.get(t, 0) + covered
    return prof
