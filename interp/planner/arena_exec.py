"""Execution inside the arena plan: every activation lives at its planned offset in one buffer.

If two tensors that are live at the same time were given overlapping bytes, the later write would
corrupt the earlier tensor and the outputs would stop matching the ordinary run — so a bit-exact
result here is evidence that the plan is sound, on top of ``planner.check_plan``'s static check.
"""
from __future__ import annotations

import numpy as np

from ..errors import MicrorefError, where
from .plan import tensor_view


def run_in_arena(it, inputs, plan=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Run one sample with all activations in a single ``plan.arena_bytes`` uint8 arena.

    ``plan`` defaults to TFLM's greedy plan (``it.plan``); pass ``it.plan.improved`` to execute the
    improved plan. Returns (outputs, arena). Single-subgraph models of stateless kernels only
    (MicrorefError otherwise).
    """
    if len(it.model.subgraphs) > 1:
        raise MicrorefError("run_in_arena executes subgraph 0 only; this model has control flow "
                            f"({len(it.model.subgraphs)} subgraphs): check its plan with check_plan")
    stateful = [op.index for op, k in zip(it.subgraph.operators, it.kernels)
                if k.initial_state() is not None or getattr(k, "writes_inputs", ())]
    if stateful:
        raise MicrorefError(f"run_in_arena runs stateless kernels only; operators {stateful} keep state "
                            f"across calls: check the plan with check_plan")
    plan = plan if plan is not None else it.plan
    arena = np.zeros(plan.arena_bytes, dtype=np.uint8)
    views: dict[int, np.ndarray] = {}

    def view(ti: int) -> np.ndarray:
        if ti not in views:
            views[ti] = tensor_view(arena, plan, ti, it.model)
        return views[ti]

    arrays, _ = it._gather_inputs(inputs, batched=False)
    for ti, a in zip(it.subgraph.inputs, arrays):
        view(ti)[...] = a[0]
    for op, kernel in zip(it.subgraph.operators, it.kernels):
        # Copies: the kernel must see the bytes as they are in the arena now.
        outs = kernel.eval(it.op_inputs(op, lambda ti: np.array(view(ti))))
        for ti, value in zip(op.outputs, outs):
            t = it.tensors[ti]
            if value.shape[1:] != tuple(t.shape):
                raise RuntimeError(f"{where(op.index, op.display_name, t)}: kernel output {value.shape[1:]} "
                                   f"does not fit the planned {tuple(t.shape)}")
            view(ti)[...] = value[0]
    return [np.array(view(ti)) for ti in it.subgraph.outputs], arena
