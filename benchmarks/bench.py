#!/usr/bin/env python3
"""Speed of microref against TFLM's own interpreter (tflite-micro), in one process.

For each model: the best and the median latency of TFLM invoke() and microref run() at batch 1,
microref's per-sample time at batch 64, their ratios to TFLM's batch-1 time, load+prepare time,
and MACs. TFLM and microref are measured in alternating rounds. Prints a table (best times) and
the geometric means over the models with more than 1M MACs (the targets of issue 7: batch-1
ratio <= 1.0, batch-64 ratio <= 0.1), from best and from median times, and microref's fixed cost
per op on the small models.

    python benchmarks/bench.py [MODELS_DIR ...] [--repeat N] [--batch 64] [--rounds 3] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from interp import Interpreter, limited_blas_threads  # noqa: E402
from interp.runtime.inputs import random_inputs  # noqa: E402


def count_macs(it) -> int:
    macs = 0
    for op in it.subgraph.operators:
        out = it.tensors[op.outputs[0]]
        if op.op_name in ("CONV_2D", "FULLY_CONNECTED"):
            w = it.tensors[op.inputs[1]]
            macs += out.size * int(np.prod(w.shape[1:]))
        elif op.op_name == "DEPTHWISE_CONV_2D":
            w = it.tensors[op.inputs[1]]
            macs += out.size * w.shape[1] * w.shape[2]
    return macs


def timed(fn, repeat: int) -> list[float]:
    """``repeat`` timings of ``fn``, seconds per call. Calls shorter than a millisecond are timed in
    loops of enough calls to last about 2 ms."""
    t0 = time.perf_counter()
    fn()  # warm-up, and a first estimate
    once = time.perf_counter() - t0
    loops = max(1, int(2e-3 / max(once, 1e-7)))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        times.append((time.perf_counter() - t0) / loops)
    return times


def bench_model(path: str, repeat: int, batch: int, rounds: int = 3) -> dict:
    from tflite_micro.python.tflite_micro import runtime
    t0 = time.perf_counter()
    it = Interpreter.from_file(path)
    load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    xs = random_inputs(it, rng)
    ref = runtime.Interpreter.from_file(path, arena_size=64 << 20)
    for i, x in enumerate(xs):
        ref.set_input(x, i)
    batch_in = [np.stack([random_inputs(it, rng)[i] for _ in range(batch)]) for i in range(len(xs))]
    # The machine's speed drifts by tens of percent over seconds (shared caches and memory with
    # other tenants): measuring TFLM, then microref, could compare a fast phase with a slow one.
    # So the three measurements alternate, round after round. The ratios use each one's best
    # time (the least disturbed); the medians are reported alongside.
    tflm, ours, ours_batch = [], [], []
    for _ in range(rounds):
        tflm += timed(ref.invoke, repeat)
        ours += timed(lambda: it.run(xs), repeat)
        ours_batch += [t / batch for t in timed(lambda: it.run_batch(batch_in), max(2, repeat // 5))]
    tflm_median, ours_median, batch_median = (statistics.median(v) for v in (tflm, ours, ours_batch))
    tflm, ours, ours_batch = min(tflm), min(ours), min(ours_batch)
    return {"model": os.path.basename(path), "macs": count_macs(it), "ops": len(it.subgraph.operators),
            "tflm_ms": tflm * 1e3, "microref_ms": ours * 1e3, "ratio": ours / tflm,
            "batch_ms_per_sample": ours_batch * 1e3, "batch_ratio": ours_batch / tflm, "load_ms": load * 1e3,
            "median_tflm_ms": tflm_median * 1e3, "median_microref_ms": ours_median * 1e3,
            "median_batch_ms_per_sample": batch_median * 1e3, "median_ratio": ours_median / tflm_median,
            "median_batch_ratio": batch_median / tflm_median,
            "us_per_op": ours * 1e6 / max(1, len(it.subgraph.operators))}


def geomean(xs):
    xs = [x for x in xs if x > 0]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="*")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per model")
    ap.add_argument("--json")
    args = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = args.dirs or [os.path.join(here, "..", "..", "shared", "models")]
    paths = sorted(p for d in dirs for p in glob.glob(os.path.join(d, "*.tflite")))
    if not paths:
        sys.exit(f"no .tflite models under {dirs}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}")
    hdr = (f"{'model':42s} {'MACs':>11s} {'TFLM ms':>9s} {'ours ms':>9s} {'ratio':>6s} "
           f"{'b{0} ms/s'.format(args.batch):>9s} {'ratio':>6s} {'load ms':>8s} {'us/op':>7s}")
    print(hdr)
    rows = []
    for p in paths:
        r = bench_model(p, args.repeat, args.batch, args.rounds)
        rows.append(r)
        print(f"{r['model']:42s} {r['macs']:11,d} {r['tflm_ms']:9.2f} {r['microref_ms']:9.2f} {r['ratio']:6.2f} "
              f"{r['batch_ms_per_sample']:9.3f} {r['batch_ratio']:6.3f} {r['load_ms']:8.1f} {r['us_per_op']:7.1f}",
              flush=True)
    big = [r for r in rows if r["macs"] > 1_000_000]
    # Fixed cost per op: models whose ops do (almost) no arithmetic, so the time is all overhead.
    overhead_bound = [r for r in rows if r["macs"] / max(1, r["ops"]) < 10_000]
    summary = {
        "geomean_ratio_batch1_big": geomean([r["ratio"] for r in big]),
        "geomean_ratio_batch_big": geomean([r["batch_ratio"] for r in big]),
        "fixed_us_per_op": max((r["us_per_op"] for r in overhead_bound), default=float("nan")),
        "median_us_per_op_tiny": (statistics.median(r["us_per_op"] for r in overhead_bound)
                                  if overhead_bound else float("nan")),
        "geomean_median_ratio_batch1_big": geomean([r["median_ratio"] for r in big]),
        "geomean_median_ratio_batch_big": geomean([r["median_batch_ratio"] for r in big]),
    }
    print(f"\nmodels with > 1M MACs ({len(big)}): geometric mean batch-1 ratio {summary['geomean_ratio_batch1_big']:.3f} "
          f"(target <= 1.0); batch-{args.batch} per-sample ratio {summary['geomean_ratio_batch_big']:.3f} "
          f"(target <= 0.1)")
    print(f"  the same from median times: batch-1 {summary['geomean_median_ratio_batch1_big']:.3f}, "
          f"batch-{args.batch} {summary['geomean_median_ratio_batch_big']:.3f}")
    if overhead_bound:
        worst = max(overhead_bound, key=lambda r: r["us_per_op"])
        names = (", ".join(r["model"] for r in overhead_bound) if len(overhead_bound) <= 3
                 else f"{len(overhead_bound)} models")
        print(f"fixed cost per op (models under 10k MACs per op: {names}): {summary['fixed_us_per_op']:.1f} us "
              f"at most ({worst['model']}), median {summary['median_us_per_op_tiny']:.1f} us (target < 15 us)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=2)


if __name__ == "__main__":
    with limited_blas_threads():  # microref's products are small blocks: BLAS threads only add overhead
        main()
