"""Operator orders: another valid execution order of subgraph 0 can lower the peak of live bytes.

TFLM runs operators in the order the model stores them; a converter (or ``microref``) may store
them in any order that respects the data flow, and the plan follows.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelError
from .lifetimes import operator_dependencies
from .plan import ArenaPlan, build_plan, resolve_model, scratch_for


@dataclass
class OrderSearchResult:
    """The best execution order of subgraph 0's operators found, by peak live bytes."""

    best_order: list[int]
    best_lower_bound: int  # peak live bytes in that order
    best_arena_bytes: int  # TFLM's greedy head if the model stored its operators in that order
    original_lower_bound: int
    original_arena_bytes: int
    orders_tried: int
    exhaustive: bool  # every topological order was tried

    @property
    def improves(self) -> bool:
        return self.best_arena_bytes < self.original_arena_bytes or \
            self.best_lower_bound < self.original_lower_bound


def search_operator_orders(plan_or_model, *, scratch=None, max_orders: int = 2000,
                           beam_width: int = 32, evaluate_top: int = 8) -> OrderSearchResult:
    """Search topological orders of subgraph 0's operators for a lower peak of live bytes.

    Enumerates every valid order when there are at most ``max_orders`` of them; otherwise runs a
    beam search (``beam_width`` partial orders kept per step, ranked by their peak so far). The
    ``evaluate_top`` best orders by peak are then planned with TFLM's greedy planner; the result
    is the order with the smallest (greedy head, peak).

    In a model with several subgraphs only subgraph 0's operators move; the ranking by peak then
    ignores what the called subgraphs hold, but every shortlisted order is planned in full. With
    an offline plan, orders in which the pinned tensors would collide are skipped.
    """
    if isinstance(plan_or_model, ArenaPlan):
        model, requests = plan_or_model.model, plan_or_model.scratch_requests
        unknown = plan_or_model.unknown_scratch
    else:
        model, kernel_scratch = resolve_model(plan_or_model)
        requests, unknown = scratch_for(model, scratch, kernel_scratch)
    sg = model.main
    n_ops = len(sg.operators)
    deps = operator_dependencies(model)
    users = [set() for _ in range(n_ops)]
    for op, ds in enumerate(deps):
        for d in ds:
            users[d].add(op)

    base = build_plan(model, requests, 0, 0, unknown=unknown)
    planned = {b.tensor: b.size for b in base.buffers if b.kind == "tensor" and b.subgraph == 0}
    scratch_bytes = [0] * n_ops
    for b in base.buffers:
        if b.kind == "scratch" and b.subgraph == 0:
            scratch_bytes[b.op] += b.size
    consumers: dict[int, set[int]] = {}
    for op in sg.operators:
        for t in op.inputs:
            if t >= 0 and t in planned:
                consumers.setdefault(t, set()).add(op.index)
    outputs = set(sg.outputs)
    inputs_live0 = sum(planned.get(t, 0) for t in set(sg.inputs))

    def step(done: frozenset, live: frozenset, op: int):
        """Bytes live while ``op`` runs, and the live set after it."""
        o = sg.operators[op]
        outs = {t for t in o.outputs if t in planned}
        during = live | outs
        now = sum(planned[t] for t in during) + scratch_bytes[op]
        done2 = done | {op}
        after = frozenset(t for t in during
                          if t in outputs or not consumers.get(t, set()) <= done2)
        return now, after, done2

    # Graph inputs that nobody reads die at scope 0; those read live until their last reader.
    live0 = frozenset(t for t in set(sg.inputs) if t in planned and consumers.get(t))

    def ready(done):
        return [op for op in range(n_ops) if op not in done and deps[op] <= done]

    complete: list[tuple[int, list[int]]] = []
    exhaustive = False

    def enumerate_all():
        """Every topological order with its peak, or None past ``max_orders`` of them."""
        stack = [(frozenset(), live0, [], inputs_live0)]
        out = []
        while stack:
            done, live, seq, peak = stack.pop()
            if len(seq) == n_ops:
                out.append((peak, seq))
                if len(out) > max_orders:
                    return None
                continue
            for op in reversed(ready(done)):
                now, after, done2 = step(done, live, op)
                stack.append((done2, after, seq + [op], max(peak, now)))
        return out

    res = enumerate_all() if n_ops <= 200 else None
    if res is not None:
        complete = res
        exhaustive = True
    else:
        beam = [(inputs_live0, 0, frozenset(), live0, [])]
        for _ in range(n_ops):
            nxt: dict[frozenset, tuple] = {}
            for peak, _cur, done, live, seq in beam:
                for op in ready(done):
                    now, after, done2 = step(done, live, op)
                    cur2 = sum(planned[t] for t in after)
                    cand = (max(peak, now), cur2, done2, after, seq + [op])
                    old = nxt.get(done2)
                    if old is None or cand[:2] < old[:2]:
                        nxt[done2] = cand
            beam = sorted(nxt.values(), key=lambda c: (c[0], c[1]))[:beam_width]
        complete = [(c[0], c[4]) for c in beam]
        original = list(range(n_ops))
        complete.append((base.lower_bound, original))
    tried = len(complete)
    complete.sort(key=lambda c: c[0])
    original = list(range(n_ops))
    shortlist = complete[:evaluate_top]
    if all(seq != original for _, seq in shortlist):
        shortlist.append((base.lower_bound, original))
    scored = []
    for _, seq in shortlist:
        try:
            p = build_plan(model, requests, 0, 0, seq, unknown)
        except ModelError:  # the offline plan's tensors would collide in this order
            continue
        scored.append((p.arena_bytes, p.lower_bound, seq != original, seq))
    scored.sort(key=lambda s: (s[0], s[1], s[2]))
    arena, peak, _, seq = scored[0]
    return OrderSearchResult(best_order=list(seq), best_lower_bound=peak, best_arena_bytes=arena,
                             original_lower_bound=base.lower_bound,
                             original_arena_bytes=base.arena_bytes, orders_tried=tried,
                             exhaustive=exhaustive)
