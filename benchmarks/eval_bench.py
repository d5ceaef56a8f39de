#!/usr/bin/env python3
"""`microref eval` at dataset scale: 20,000 person_detect samples from a memory-mapped .npy (issue 17).

For each engine (local worker processes, then a local Ray started by the command itself) the real
command runs in a child process,

    microref eval person_detect.tflite --data X.npy --labels Y.npy --json --quiet --output P.npz \\
                  --workers N [--engine ray]

and this script reports its wall time, its throughput, and the peak resident memory (RSS) of the
command's process, of its largest worker, and of the whole process tree at any one time (sampled
every 0.2 s from /proc: the command, its worker processes, and with Ray its raylet, GCS and worker
processes), and the CPU time of the command and all its descendants (sampled the same way) (what the run costs whatever
else the machine is doing: on a shared machine the wall time says more about the neighbours). The
outputs of every run are compared byte for byte. Target: the command's RSS under
1 GB, bounded by the chunk, not by the number of samples.

    python benchmarks/eval_bench.py [--samples 20000] [--workers 2] [--engines local,ray,local:1]
                                    [--model PATH] [--dir /tmp/microref-eval-bench] [--json out.json]

The data (int8 samples drawn uniformly, seeded; random labels) is written to --dir once, a chunk
at a time, and reused. Linux only (/proc).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = "/work/shared/models/person_detect.tflite"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def make_data(directory: str, n: int, shape: tuple[int, ...], seed: int = 0) -> tuple[str, str]:
    """X (n,) + shape int8 written through a memory map, a chunk at a time; Y random labels 0/1."""
    os.makedirs(directory, exist_ok=True)
    x_path = os.path.join(directory, f"person_detect_{n}.npy")
    y_path = os.path.join(directory, f"person_detect_{n}_labels.npy")
    if not os.path.exists(x_path):
        rng = np.random.default_rng(seed)
        x = np.lib.format.open_memmap(x_path + ".part", mode="w+", dtype=np.int8, shape=(n,) + shape)
        for lo in range(0, n, 1000):
            hi = min(n, lo + 1000)
            x[lo:hi] = rng.integers(-128, 128, (hi - lo,) + shape, dtype=np.int8)
        x.flush()
        del x
        os.replace(x_path + ".part", x_path)
    if not os.path.exists(y_path):
        np.save(y_path, np.random.default_rng(seed + 1).integers(0, 2, n))
    return x_path, y_path


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (/proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except (OSError, IndexError, ValueError):
        return 0.0


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


class TreeSampler(threading.Thread):
    """Peak RSS of a process, of its largest descendant, and of the tree summed, every ``period`` s."""

    def __init__(self, pid: int, period: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.root_kb = self.largest_child_kb = self.tree_kb = 0
        self.processes = 0
        self.cpu: dict[int, float] = {}  # per process seen: its CPU seconds at the last sample
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            kids = _children()
            tree, todo = [], [self.pid]
            while todo:
                p = todo.pop()
                tree.append(p)
                todo.extend(kids.get(p, []))
            sizes = {p: _rss_kb(p) for p in tree}
            for p in tree:
                self.cpu[p] = max(self.cpu.get(p, 0.0), _cpu_s(p))
            self.root_kb = max(self.root_kb, sizes.get(self.pid, 0))
            others = [v for p, v in sizes.items() if p != self.pid]
            self.largest_child_kb = max([self.largest_child_kb] + others)
            self.tree_kb = max(self.tree_kb, sum(sizes.values()))
            self.processes = max(self.processes, len(tree))
            self.stop.wait(self.period)


def run_eval(model: str, x: str, y: str, out: str, workers: int, engine: str) -> dict:
    command = [sys.executable, "-m", "interp.tools.cli", "eval", model, "--data", x, "--labels", y, "--json",
               "--quiet", "--output", out, "--force", "--workers", str(workers), "--engine", engine]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    sampler = TreeSampler(child.pid)
    sampler.start()
    stdout, stderr = child.communicate()
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    # CPU time of the command and every process below it (sampled: a process's last 0.2 s before
    # it exits may be missed): what the run costs whatever else the machine is doing.
    cpu = sum(sampler.cpu.values())
    if child.returncode != 0:
        raise SystemExit(f"{engine}: microref eval failed ({child.returncode}): {stderr.decode()[-2000:]}")
    report = json.loads(stdout)
    n = report["samples"]
    return {"engine": engine, "workers": workers, "samples": n, "wall_s": round(wall, 1),
            "samples_per_s": round(n / wall, 1), "inside_s": report["run"]["seconds"],
            "cpu_s": round(cpu, 1), "cpu_ms_per_sample": round(1000 * cpu / n, 3),
            "chunk_size": report["run"]["chunk_size"], "top1": report["int8"]["top1"],
            "peak_rss_command_mb": round(sampler.root_kb / 1024), "peak_rss_largest_worker_mb":
                round(sampler.largest_child_kb / 1024), "peak_rss_tree_mb": round(sampler.tree_kb / 1024),
            "processes": sampler.processes, "output": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--engines", default="local,ray", help="engines to run, each ENGINE or ENGINE:WORKERS")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--dir", default="/tmp/microref-eval-bench")
    ap.add_argument("--json", metavar="OUT.json")
    args = ap.parse_args()
    if not os.path.exists(args.model):
        raise SystemExit(f"{args.model} is missing")
    x, y = make_data(args.dir, args.samples, (96, 96, 1))
    print(f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before the runs; "
          f"data {x} ({os.path.getsize(x) / 2**20:.0f} MiB, memory-mapped)", flush=True)
    rows = []
    for spec in args.engines.split(","):
        engine, _, count = spec.partition(":")
        workers = int(count) if count else args.workers
        out = os.path.join(args.dir, f"preds_{engine}_{workers}.npz")
        row = run_eval(args.model, x, y, out, workers, engine)
        rows.append(row)
        print(f"{engine:6s} {row['workers']} workers: {row['samples']:,} samples in {row['wall_s']:.1f} s "
              f"({row['samples_per_s']:.0f}/s, {row['inside_s']:.1f} s inside eval), chunks of {row['chunk_size']}; "
              f"CPU {row['cpu_s']:.0f} s ({row['cpu_ms_per_sample']:.2f} ms per sample); "
              f"peak RSS: command {row['peak_rss_command_mb']} MB, largest worker "
              f"{row['peak_rss_largest_worker_mb'] or '-'} MB, all {row['processes']} processes together "
              f"{row['peak_rss_tree_mb']} MB; top-1 {row['top1']:.4f}", flush=True)
    first = None
    for row in rows:
        with np.load(row["output"]) as z:
            values = {k: z[k].tobytes() for k in z.files}
        if first is None:
            first = values
        row["same_bytes_as_first"] = values == first
    print("outputs byte-identical across engines:", all(r["same_bytes_as_first"] for r in rows))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
