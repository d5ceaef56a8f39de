#!/usr/bin/env python3
"""microref's speed against LiteRT's XNNPACK, TFLM's own interpreter and the machine's float32 GEMM
peak, in one run (the targets of issue 20).

Everything is measured side by side, in alternating rounds (this machine's speed drifts by tens
of percent from one second to the next: shared caches, other tenants), and medians are reported.

1. **Batched, against LiteRT XNNPACK.** For vww_96, pretrainedResnet, kws_ref_model and
   MobileNetV2-224 (and person_detect, which LiteRT refuses: microref's rate alone): microref's
   per-sample time of ``run_batch`` at its best batch size with all cores, against LiteRT's
   per-sample ``invoke`` time at its best batch (``resize_tensor_input``) with as many threads.
   The best batch of each side is picked in a pilot over a few sizes. Target: geometric mean of
   the ratios <= 1.0. With numba installed (the ``fast`` extra) microref's kernels include the
   compiled ones of ``ops.compiled``; the same batch is then also timed with the numpy kernels
   only (``use_compiled(False)``), in the same rounds.
2. **MAC rate** of those batched runs as a fraction of a float32 GEMM peak (numpy matmul of a large
   square product on all cores), measured in the same rounds. Target: >= 50%.
3. **Batch 1 against TFLM** (``run`` against ``invoke`` of the tflite-micro wheel). Target <= 0.2.
4. **Fixed cost per operator** on tiny models (hello_world: its ops do almost no arithmetic), and
   against TFLM. Target <= 5 us.
5. **from_bytes + prepare of a one-op model** (what each fuzzing example pays). Target <= 1 ms.

    python benchmarks/bench.py [--models DIR] [--rounds 5] [--quick] [--json out.json]

``--quick``: three rounds, smaller pilots, MobileNetV2 left out (about a minute).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from interp import Interpreter, batch_tuning  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from interp.runtime.inputs import random_inputs  # noqa: E402
from interp.tools.profile import model_macs  # noqa: E402
from ops import compiled  # noqa: E402

BATCHED = ["vww_96_int8", "pretrainedResnet_quant", "kws_ref_model", "mobilenet_v2_quantized_1x3x224x224"]
MICROREF_ONLY = ["person_detect"]  # LiteRT refuses it
BATCH1 = BATCHED + MICROREF_ONLY + ["ad01_int8", "micro_speech_quantized"]
TINY = ["hello_world_int8"]
CORES = os.cpu_count() or 1


def timed(fn, repeat: int, min_seconds: float = 2e-3) -> list[tuple[float, float]]:
    """``repeat`` timings of ``fn`` as (wall, CPU) seconds per call (after a warm-up call); calls
    shorter than ``min_seconds`` are timed in loops lasting about that long. CPU is the whole
    process's (every thread's): on a shared machine a wall time of a few milliseconds often
    includes a preemption by another tenant, the CPU time does not."""
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    loops = max(1, int(min_seconds / max(once, 1e-7)))
    out = []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(loops):
            fn()
        out.append(((time.perf_counter() - t0) / loops, (time.process_time() - c0) / loops))
    return out


def wall(samples) -> list[float]:
    return [w for w, _ in samples]


def cpu(samples) -> list[float]:
    return [c for _, c in samples]


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")


@contextlib.contextmanager
def quiet_stderr():
    """LiteRT and TFLM print INFO lines on the C-level stderr."""
    fd = sys.stderr.fileno()
    saved = os.dup(fd)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


class GemmPeak:
    """The machine's float32 GEMM rate: a numpy matmul of a large square product with BLAS on all
    cores (microref's own runs keep BLAS on one thread: run_batch spreads samples over cores).

    Measured in a child process: after a multi-threaded product OpenBLAS's threads spin for tens of
    milliseconds before they sleep, and in this process they took a core from the run timed next
    (ResNet's run_batch right after the product: 0.073-0.089 against 0.048 ms per sample)."""

    _CHILD = """
import sys, time
import numpy as np
from threadpoolctl import threadpool_limits
n, cores = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
a = rng.standard_normal((n, n), dtype=np.float32)
b = rng.standard_normal((n, n), dtype=np.float32)
c = np.empty((n, n), np.float32)
with threadpool_limits(limits=cores, user_api="blas"):
    np.matmul(a, b, out=c)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        times.append(time.perf_counter() - t)
print(n ** 3 / min(times) / 1e9)
"""

    def __init__(self, n: int = 1536):
        self.n = n
        self.rates: list[float] = []

    def measure(self) -> float:
        done = subprocess.run([sys.executable, "-c", self._CHILD, str(self.n), str(CORES)], capture_output=True,
                              text=True, check=True)
        rate = float(done.stdout.strip().splitlines()[-1])  # G MAC/s
        self.rates.append(rate)
        return rate


class LiteRT:
    """LiteRT's interpreter (XNNPACK, ``threads`` threads) at a batch size set by resize_tensor_input."""

    def __init__(self, path: str, threads: int):
        self.path, self.threads = path, threads
        self._load()

    def _load(self):
        from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
        with quiet_stderr():
            self.it = LiteRTInterpreter(model_path=self.path, num_threads=self.threads)
        self.inputs = self.it.get_input_details()
        self.batch = None

    def set_batch(self, batch: int, xs: list[np.ndarray]) -> None:
        """xs: microref's batched inputs (N, *input shape) with N >= batch; the model's own batch
        dim (1) takes the samples. A batch XNNPACK refuses raises, and leaves a fresh interpreter."""
        try:
            for d in self.inputs:
                self.it.resize_tensor_input(d["index"], [batch] + list(d["shape"][1:]))
            with quiet_stderr():
                self.it.allocate_tensors()
        except Exception:
            self._load()
            raise
        for d, x in zip(self.inputs, xs):
            self.it.set_tensor(d["index"], np.ascontiguousarray(x[:batch].reshape([batch] + list(d["shape"][1:]))))
        self.batch = batch

    def invoke(self):
        self.it.invoke()


def batched_inputs(it, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    samples = [random_inputs(it, rng) for _ in range(n)]
    return [np.stack([s[i] for s in samples]) for i in range(len(samples[0]))]


def best_batch(per_sample, candidates) -> int:
    """The candidate batch size with the least per-sample time (one pilot timing each, best of 2)."""
    scores = {b: min(per_sample(b) for _ in range(2)) for b in candidates}
    return min(scores, key=scores.get)


def bench_batched(path: str, rounds: int, peak: GemmPeak, quick: bool) -> dict:
    name = os.path.splitext(os.path.basename(path))[0]
    it = Interpreter.from_file(path)
    macs = model_macs(it)
    big = macs > 100e6
    ours_candidates = [4, 8, 16] if big else ([16, 64] if quick else [8, 16, 32, 64, 128, 256])
    theirs_candidates = [1, 4, 16] if big else ([1, 16, 64] if quick else [1, 4, 16, 64, 128, 256])
    xs = batched_inputs(it, max(ours_candidates + theirs_candidates))

    def ours_per_sample(b):
        part = [x[:b] for x in xs]
        return min(wall(timed(lambda: it.run_batch(part), 1, min_seconds=0.05))) / b

    row = {"model": name, "macs": macs}
    row["ours_batch"] = ours_b = best_batch(ours_per_sample, ours_candidates)
    ours_in = [x[:ours_b] for x in xs]
    lite = None
    try:
        lite = LiteRT(path, CORES)

        def theirs_per_sample(b):
            try:
                lite.set_batch(b, xs)
            except Exception:  # noqa: BLE001  (XNNPACK refuses some batch sizes of some models)
                return math.inf
            return min(wall(timed(lite.invoke, 1, min_seconds=0.05))) / b

        row["litert_batch"] = lite_b = best_batch(theirs_per_sample, theirs_candidates)
        lite.set_batch(lite_b, xs)
    except Exception as e:  # noqa: BLE001  (LiteRT refuses some models: report why)
        row["litert_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        lite = None
    ours, ours_numpy, theirs, rates = [], [], [], []
    reps = 1 if big else 3
    for _ in range(rounds):
        ours += [(w / ours_b, c / ours_b) for w, c in timed(lambda: it.run_batch(ours_in), reps, min_seconds=0.05)]
        if compiled.available():  # the same batch with the numpy kernels only (no 'fast' extra)
            with compiled.use_compiled(False):
                ours_numpy += [(w / ours_b, c / ours_b)
                               for w, c in timed(lambda: it.run_batch(ours_in), reps, min_seconds=0.05)]
        if lite is not None:
            theirs += [(w / lite.batch, c / lite.batch) for w, c in timed(lite.invoke, reps, min_seconds=0.05)]
        rates.append(peak.measure())
    row["ours_ms"] = statistics.median(wall(ours)) * 1e3
    row["ours_cpu_ms"] = statistics.median(cpu(ours)) * 1e3
    row["ours_gmacs"] = macs / (row["ours_ms"] * 1e6)
    if ours_numpy:
        row["numpy_only_ms"] = statistics.median(wall(ours_numpy)) * 1e3
        row["numpy_only_cpu_ms"] = statistics.median(cpu(ours_numpy)) * 1e3
    row["peak_gmacs"] = statistics.median(rates)
    row["peak_fraction"] = row["ours_gmacs"] / row["peak_gmacs"]
    if lite is not None:
        row["litert_ms"] = statistics.median(wall(theirs)) * 1e3
        row["litert_cpu_ms"] = statistics.median(cpu(theirs)) * 1e3
        row["cpu_ratio"] = row["ours_cpu_ms"] / row["litert_cpu_ms"]
        row["litert_gmacs"] = macs / (row["litert_ms"] * 1e6)
        row["ratio"] = row["ours_ms"] / row["litert_ms"]
    return row


def bench_batch1(path: str, rounds: int) -> dict:
    from tflite_micro.python.tflite_micro import runtime
    name = os.path.splitext(os.path.basename(path))[0]
    it = Interpreter.from_file(path)
    xs = random_inputs(it, np.random.default_rng(0))
    with quiet_stderr():
        ref = runtime.Interpreter.from_file(path, arena_size=64 << 20)
    for i, x in enumerate(xs):
        ref.set_input(x, i)
    reps = 2 if model_macs(it) > 100e6 else 5
    tflm, ours = [], []
    for _ in range(rounds):
        tflm += timed(ref.invoke, reps)
        ours += timed(lambda: it.run(xs), reps)
    ops = len(it.subgraph.operators)
    t, o = statistics.median(wall(tflm)), statistics.median(wall(ours))
    tc, oc = statistics.median(cpu(tflm)), statistics.median(cpu(ours))
    return {"model": name, "macs": model_macs(it), "ops": ops, "tflm_ms": t * 1e3, "ours_ms": o * 1e3,
            "ratio": o / t, "tflm_cpu_ms": tc * 1e3, "ours_cpu_ms": oc * 1e3, "cpu_ratio": oc / tc,
            "ours_us_per_op": o * 1e6 / ops, "tflm_us_per_op": t * 1e6 / ops, "ours_cpu_us_per_op": oc * 1e6 / ops}


def one_op_models() -> dict[str, bytes]:
    """Small one-operator int8 models, as a fuzzing example builds them."""
    rng = np.random.default_rng(0)
    models = {}
    b = ModelBuilder()
    x = b.input("x", [1, 16], "INT8", scale=0.05, zero_point=-3)
    w = b.constant("w", rng.integers(-127, 128, (8, 16)).astype(np.int8), scale=0.02, zero_point=0)
    bias = b.constant("bias", rng.integers(-500, 500, 8).astype(np.int32), scale=0.001)
    y = b.tensor("y", [1, 8], "INT8", scale=0.1, zero_point=2)
    b.op("FULLY_CONNECTED", [x, w, bias], [y])
    b.output(y)
    models["FULLY_CONNECTED 16->8"] = b.build()
    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, 3], "INT8", scale=0.05, zero_point=-3)
    w = b.constant("w", rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=[0.01, 0.02, 0.03, 0.04],
                   zero_point=0, quantized_dimension=0)
    bias = b.constant("bias", np.zeros(4, np.int32), scale=[5e-4, 1e-3, 1.5e-3, 2e-3])
    y = b.tensor("y", [1, 8, 8, 4], "INT8", scale=0.1, zero_point=5)
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_w=1, stride_h=1, fused_activation_function="RELU")
    b.output(y)
    models["CONV_2D 8x8x3->4"] = b.build()
    b = ModelBuilder()
    x1 = b.input("a", [1, 4, 4, 8], "INT8", scale=0.05, zero_point=-3)
    x2 = b.input("b", [1, 4, 4, 8], "INT8", scale=0.04, zero_point=1)
    y = b.tensor("y", [1, 4, 4, 8], "INT8", scale=0.1, zero_point=2)
    b.op("ADD", [x1, x2], [y])
    b.output(y)
    models["ADD 4x4x8"] = b.build()
    return models


def bench_load(rounds: int) -> list[dict]:
    from tflite_micro.python.tflite_micro import runtime
    rows = []
    for name, data in one_op_models().items():
        ours, tflm = [], []
        for _ in range(rounds):
            ours += timed(lambda data=data: Interpreter.from_bytes(data), 5)
            with quiet_stderr():
                tflm += timed(lambda data=data: runtime.Interpreter.from_bytes(data, arena_size=1 << 16), 5)
        rows.append({"model": name, "ours_ms": statistics.median(wall(ours)) * 1e3,
                     "ours_cpu_ms": statistics.median(cpu(ours)) * 1e3, "tflm_ms": statistics.median(wall(tflm)) * 1e3})
    return rows


def find(models_dir: str, name: str) -> str | None:
    path = os.path.join(models_dir, name + ".tflite")
    return path if os.path.exists(path) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--models", default=os.path.join(here, "..", "..", "shared", "models"))
    ap.add_argument("--rounds", type=int, default=5, help="alternating measurement rounds (medians over them)")
    ap.add_argument("--quick", action="store_true", help="3 rounds, small pilots, no MobileNetV2")
    ap.add_argument("--only", nargs="*", choices=["batched", "batch1", "tiny", "load"],
                    help="only these sections")
    ap.add_argument("--json")
    args = ap.parse_args()
    rounds = 3 if args.quick else args.rounds
    sections = set(args.only or ["batched", "batch1", "tiny", "load"])
    try:
        import threadpoolctl
        blas = [f"{i['internal_api']} {i['version']} ({i['architecture']})"
                for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    except Exception:  # noqa: BLE001
        blas = []
    print(f"machine: {platform.processor() or platform.machine()}, {CORES} cores, Python "
          f"{platform.python_version()}, numpy {np.__version__}, BLAS {', '.join(blas) or '?'}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; compiled kernels (numba): "
          f"{'on' if compiled.enabled() else 'off (numpy only)'}; {rounds} alternating rounds, medians", flush=True)
    result: dict = {}
    peak = GemmPeak()
    if "batched" in sections:
        names = [n for n in BATCHED + MICROREF_ONLY
                 if not (args.quick and n.startswith("mobilenet")) and find(args.models, n)]
        print(f"\n1-2. run_batch at the best batch, {CORES} threads, against LiteRT XNNPACK ({CORES} threads, its best "
              f"batch), and the MAC rate against a float32 GEMM peak (numpy {peak.n}^3 matmul, {CORES} BLAS threads)")
        print("  (wall-clock medians per sample; 'CPU ratio': the same from process CPU time, which a neighbour's "
              "preemption does not inflate)")
        print(f"  {'model':36s} {'MACs':>12s} {'ours ms/s':>10s} {'b':>4s} {'LiteRT ms/s':>12s} {'b':>4s} "
              f"{'ratio':>6s} {'CPU ratio':>9s} {'ours GMAC/s':>12s} {'LiteRT':>7s} {'peak':>6s} {'of peak':>8s}")
        rows = []
        for n in names:
            r = bench_batched(find(args.models, n), rounds, peak, args.quick)
            rows.append(r)
            lite = (f"{r['litert_ms']:12.3f} {r['litert_batch']:4d} {r['ratio']:6.2f} {r['cpu_ratio']:9.2f}"
                    if "ratio" in r else f"{'refused':>12s} {'':4s} {'':6s} {'':9s}")
            print(f"  {r['model'][:36]:36s} {r['macs']:12,d} {r['ours_ms']:10.3f} {r['ours_batch']:4d} {lite} "
                  f"{r['ours_gmacs']:12.1f} {r.get('litert_gmacs', float('nan')):7.1f} {r['peak_gmacs']:6.1f} "
                  f"{100 * r['peak_fraction']:7.1f}%", flush=True)
            if "litert_error" in r:
                print(f"      LiteRT: {r['litert_error']}")
            if "numpy_only_ms" in r:
                print(f"      the same batch with the numpy kernels only: {r['numpy_only_ms']:.3f} ms per sample "
                      f"(CPU {r['numpy_only_cpu_ms']:.3f}); compiled kernels {r['numpy_only_ms'] / r['ours_ms']:.2f}x "
                      f"faster", flush=True)
        compared = [r for r in rows if "ratio" in r]
        numpy_only = [r["numpy_only_ms"] / r["litert_ms"] for r in compared if "numpy_only_ms" in r]
        summary = {"geomean_ratio_vs_litert": geomean([r["ratio"] for r in compared]),
                   "geomean_numpy_only_ratio_vs_litert": geomean(numpy_only) if numpy_only else None,
                   "geomean_cpu_ratio_vs_litert": geomean([r["cpu_ratio"] for r in compared]),
                   "models_compared": [r["model"] for r in compared],
                   "geomean_peak_fraction": geomean([r["peak_fraction"] for r in rows]),
                   "peak_gmacs": statistics.median(peak.rates) if peak.rates else float("nan")}
        print(f"  geometric mean ours/LiteRT per sample over {len(compared)} models: "
              f"{summary['geomean_ratio_vs_litert']:.2f} (target <= 1.0; from CPU time "
              f"{summary['geomean_cpu_ratio_vs_litert']:.2f}); MAC rate "
              f"{100 * summary['geomean_peak_fraction']:.1f}% of the {summary['peak_gmacs']:.1f} G MAC/s float32 "
              f"GEMM peak (geometric mean; target >= 50%)", flush=True)
        if numpy_only:
            print(f"  with the numpy kernels only: {summary['geomean_numpy_only_ratio_vs_litert']:.2f}", flush=True)
        result["batched"] = {"rows": rows, "summary": summary}
    if "batch1" in sections:
        names = [n for n in BATCH1 if not (args.quick and n.startswith("mobilenet")) and find(args.models, n)]
        print("\n3. batch 1: microref run() against TFLM invoke() (tflite-micro's reference kernels)")
        print(f"  {'model':36s} {'MACs':>12s} {'TFLM ms':>9s} {'ours ms':>9s} {'ratio':>6s} {'CPU ratio':>9s}")
        rows = []
        for n in names:
            r = bench_batch1(find(args.models, n), rounds)
            rows.append(r)
            print(f"  {r['model'][:36]:36s} {r['macs']:12,d} {r['tflm_ms']:9.3f} {r['ours_ms']:9.3f} {r['ratio']:6.2f} "
                  f"{r['cpu_ratio']:9.2f}", flush=True)
        big = [r for r in rows if r["macs"] > 1_000_000]
        g, gc = geomean([r["ratio"] for r in big]), geomean([r["cpu_ratio"] for r in big])
        print(f"  geometric mean over the {len(big)} models with > 1M MACs: {g:.3f} (target <= 0.2; from CPU time "
              f"{gc:.3f}); worst {max(r['ratio'] for r in big):.3f}")
        result["batch1"] = {"rows": rows, "geomean_ratio_big": g, "geomean_cpu_ratio_big": gc}
    if "tiny" in sections:
        print("\n4. fixed cost per operator (tiny models: the time is all overhead)")
        rows = []
        for n in TINY:
            path = find(args.models, n)
            if path:
                r = bench_batch1(path, rounds)
                rows.append(r)
                print(f"  {r['model']:36s} {r['ops']} ops: {r['ours_us_per_op']:.2f} us/op "
                      f"({r['ours_ms'] * 1e3:.1f} us per run; CPU {r['ours_cpu_us_per_op']:.2f} us/op), TFLM "
                      f"{r['tflm_us_per_op']:.2f} us/op; target <= 5 us/op", flush=True)
        result["tiny"] = rows
    if "load" in sections:
        print("\n5. from_bytes + prepare of one-op models (microref's Interpreter.from_bytes; TFLM's for scale)")
        rows = bench_load(rounds)
        for r in rows:
            print(f"  {r['model']:36s} ours {r['ours_ms']:.3f} ms (CPU {r['ours_cpu_ms']:.3f} ms), TFLM "
                  f"{r['tflm_ms']:.3f} ms; target <= 1 ms")
        result["load"] = rows
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    # microref's products are small blocks: BLAS threads only add overhead; and freed activations
    # are kept for the next call instead of page-faulted in again (interp.runtime.blas).
    with batch_tuning():
        main()
