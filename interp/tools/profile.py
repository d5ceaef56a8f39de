"""Where a run's time goes, operator by operator (``microref run --profile``).

Each operator's kernel is timed around its ``eval`` while the model runs ``repeat`` times on the
same inputs, single-threaded, so that every millisecond belongs to one operator. The times are the
thread's CPU time: on a shared machine a wall clock also counts the moments another process held
the core. The table gives per operator its multiply-accumulates per sample, the median
milliseconds per call, the rate in G MAC/s and its share of the run.
"""
from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass

import numpy as np

from ..errors import printable


def op_macs(tensors, op) -> int:
    """Multiply-accumulates of one sample of ``op`` (the convolutions, FULLY_CONNECTED,
    TRANSPOSE_CONV and BATCH_MATMUL; 0 for every other operator)."""
    name = op.op_name
    if not op.outputs or op.outputs[0] < 0 or len(op.inputs) < 2 or min(op.inputs[:2]) < 0:
        return 0
    out = tensors[op.outputs[0]]
    w = tensors[op.inputs[1]]
    if name in ("CONV_2D", "FULLY_CONNECTED") and len(w.shape) >= 2:
        return int(out.size) * int(np.prod(w.shape[1:]))
    if name == "DEPTHWISE_CONV_2D" and len(w.shape) == 4:
        return int(out.size) * int(w.shape[1]) * int(w.shape[2])
    if name == "TRANSPOSE_CONV" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        x, f = tensors[op.inputs[2]], w
        return int(x.size) * int(np.prod(f.shape[:3])) if len(f.shape) == 4 else 0
    if name == "BATCH_MATMUL":
        a = tensors[op.inputs[0]]
        return int(out.size) * int(a.shape[-1]) if a.shape else 0
    return 0


def model_macs(it) -> int:
    """Multiply-accumulates of one sample of subgraph 0."""
    return sum(op_macs(it.tensors, op) for op in it.subgraph.operators)


@dataclass
class OpTime:
    index: int
    name: str
    macs: int  # per sample
    ms: float  # median per call (of ``batch`` samples)
    batch: int

    @property
    def gmacs(self) -> float:
        return self.macs * self.batch / (self.ms * 1e6) if self.ms > 0 else float("nan")


@contextlib.contextmanager
def _timed_kernels(kernels, times: dict[int, float]):
    """Every kernel's eval timed into ``times[position]`` (seconds, summed) inside the block; the
    kernels are left as they were after it. The interpreter looks ``eval`` up at every call, so
    an instance attribute takes its place for the duration."""
    wrapped = []
    try:
        for position, kernel in enumerate(kernels):
            if kernel is None:
                continue
            inner = kernel.eval

            def timed(*args, _inner=inner, _position=position, **kwargs):
                t0 = time.thread_time()
                try:
                    return _inner(*args, **kwargs)
                finally:
                    times[_position] = times.get(_position, 0.0) + time.thread_time() - t0

            kernel.eval = timed
            wrapped.append(kernel)
        yield
    finally:
        for kernel in wrapped:
            del kernel.eval


def profile(it, inputs, *, batch: int = 1, repeat: int = 5) -> tuple[list[OpTime], float]:
    """Per-operator times of subgraph 0 over ``repeat`` runs (after one warm-up) and the median
    total milliseconds per call. ``batch`` > 1 runs ``run_batch`` on ``batch`` copies of the
    inputs, on one thread."""
    if batch > 1:
        batched = [np.broadcast_to(x, (batch,) + np.shape(x)).copy() for x in inputs]
        call = lambda: it.run_batch(batched, threads=1)  # noqa: E731
    else:
        call = lambda: it.run(inputs)  # noqa: E731
    call()  # warm-up: workspaces, caches
    per_op: dict[int, list[float]] = {}
    totals = []
    for _ in range(max(1, repeat)):
        times: dict[int, float] = {}
        with _timed_kernels(it.kernels, times):
            t0 = time.thread_time()
            call()
            totals.append(time.thread_time() - t0)
        for position, t in times.items():
            per_op.setdefault(position, []).append(t)
    rows = []
    for position, op in enumerate(it.subgraph.operators):
        if position in per_op:
            rows.append(OpTime(op.index, op.display_name, op_macs(it.tensors, op),
                               statistics.median(per_op[position]) * 1e3, batch))
    return rows, statistics.median(totals) * 1e3


def format_profile(rows: list[OpTime], total_ms: float, batch: int) -> str:
    """The profile as a table, slowest operators first, with a per-operator-type summary."""
    ops_ms = sum(r.ms for r in rows)
    macs = sum(r.macs for r in rows)
    unit = "ms/call" if batch == 1 else f"ms/{batch}"
    lines = [f"profile (CPU time, one thread): {len(rows)} operators, {total_ms:.3f} ms per call of {batch} "
             f"sample(s) ({total_ms / batch:.4f} ms per sample; operators {ops_ms:.3f} ms, the rest is the run loop, "
             f"input checks and copies), {macs:,} MACs per sample, "
             f"{macs * batch / max(total_ms, 1e-12) / 1e6:.2f} G MAC/s overall",
             f"  {'op':>4s} {'operator':24s} {'MACs':>12s} {unit:>10s} {'G MAC/s':>8s} {'share':>6s}"]
    for r in sorted(rows, key=lambda r: -r.ms):
        rate = f"{r.gmacs:8.2f}" if r.macs else f"{'-':>8s}"
        lines.append(f"  {r.index:4d} {printable(r.name)[:24]:24s} {r.macs:12,d} {r.ms:10.4f} {rate} "
                     f"{100 * r.ms / max(ops_ms, 1e-12):5.1f}%")
    by_type: dict[str, list[float]] = {}
    for r in rows:
        entry = by_type.setdefault(r.name, [0.0, 0.0, 0.0])
        entry[0] += r.ms
        entry[1] += r.macs
        entry[2] += 1
    lines.append("  by operator type:")
    for name, (ms, m, count) in sorted(by_type.items(), key=lambda kv: -kv[1][0]):
        rate = f"{m * batch / (ms * 1e6):8.2f}" if m and ms > 0 else f"{'-':>8s}"
        lines.append(f"       {printable(name)[:24]:24s} {int(m):12,d} {ms:10.4f} {rate} "
                     f"{100 * ms / max(ops_ms, 1e-12):5.1f}%  ({int(count)} ops)")
    return "\n".join(lines)
