"""Large-shape sweep against TFLM: every shared model and large synthetic FC / CONV_2D /
DEPTHWISE_CONV_2D layers, through ``run`` and ``run_batch`` at several batch sizes, bit for bit.

The differential property tests draw small shapes; the fast kernels' large-tensor paths (blocked
products, tiled requantizer constants, workspaces) start at a few thousand elements. This sweep
is what reaches them (issue 12: a float32 product on the >2048-element path went unnoticed by
150,000 small examples).

    python -m tests.sweep [--samples 2000] [--batch-sizes 1,7,64,256] [--models DIR] [--synthetic]

Every sample is compared with TFLM run from reset state (stateful models included: run() is
preceded by reset(), and run_batch runs each sample from reset). Prints one row per model and
exits 1 if anything differs. tests/test_sweep.py runs a small subset in CI.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from interp import Interpreter, UnsupportedOpError  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from interp.runtime.inputs import random_inputs  # noqa: E402

SHARED_MODELS = ROOT.parent / "shared" / "models"


@dataclass
class SweepResult:
    name: str
    samples: int
    differing: dict  # "run" / "run_batch(B)" -> number of samples with any differing output value
    seconds: float
    skipped: str = ""

    @property
    def exact(self) -> bool:
        return not self.skipped and not any(self.differing.values())


def tflm_outputs(model: bytes, samples: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """TFLM's outputs for every sample, each from reset state."""
    from tflite_micro.python.tflite_micro import runtime
    ref = runtime.Interpreter.from_bytes(model, arena_size=64 << 20)
    outputs = []
    n_out = len(Interpreter.from_bytes(model).output_details)
    for xs in samples:
        ref.reset()
        for i, x in enumerate(xs):
            ref.set_input(x, i)
        ref.invoke()
        outputs.append([np.array(ref.get_output(j), copy=True) for j in range(n_out)])
    return outputs


def sweep(name: str, model: bytes, count: int, batch_sizes, seed: int = 0) -> SweepResult:
    from tflite_micro.python.tflite_micro import runtime
    start = time.perf_counter()
    try:
        runtime.Interpreter.from_bytes(model, arena_size=64 << 20)
    except Exception as e:  # noqa: BLE001 - any refusal: there is no oracle for this model
        return SweepResult(name, 0, {}, 0.0, skipped=f"TFLM cannot load it ({str(e).splitlines()[0][:60]})")
    try:
        it = Interpreter.from_bytes(model)
    except UnsupportedOpError as e:
        return SweepResult(name, 0, {}, 0.0, skipped=str(e).splitlines()[-1].strip())
    rng = np.random.default_rng(seed)
    samples = [random_inputs(it, rng) for _ in range(count)]
    want = tflm_outputs(model, samples)
    differing = {"run": 0}
    for xs, w in zip(samples, want):
        it.reset()
        got = it.run(xs)
        differing["run"] += any(not np.array_equal(g, e.reshape(g.shape)) for g, e in zip(got, w))
    for size in batch_sizes:
        key = f"run_batch({size})"
        differing[key] = 0
        for lo in range(0, count, size):
            part = samples[lo:lo + size]
            got = it.run_batch([np.stack([xs[i] for xs in part]) for i in range(len(part[0]))])
            for k in range(len(part)):
                differing[key] += any(not np.array_equal(g[k], e.reshape(g[k].shape))
                                      for g, e in zip(got, want[lo + k]))
    return SweepResult(name, count, differing, time.perf_counter() - start)


def synthetic_models(seed: int = 0):
    """(name, model bytes): FC / CONV_2D / DEPTHWISE_CONV_2D with 2k-64k output values, per-tensor
    and per-channel, with biases large enough that the requantizer's constants carry them and
    output scales that put results across the int8 range (so roundings are not clamped away)."""
    rng = np.random.default_rng(seed)
    cases = []
    for per_channel in (False, True):
        tag = "pc" if per_channel else "pt"
        for out_features in (2048, 4096, 16384):
            b = ModelBuilder()
            depth = 128
            x = b.input("x", [1, depth], "INT8", scale=0.05, zero_point=int(rng.integers(-20, 20)))
            ws = list(rng.uniform(0.005, 0.02, out_features)) if per_channel else 0.01
            w = b.constant("w", rng.integers(-127, 128, (out_features, depth)).astype(np.int8), scale=ws,
                           zero_point=0, quantized_dimension=0)
            bias_scale = [0.05 * s for s in ws] if per_channel else 0.05 * ws
            bias = b.constant("b", rng.integers(-40000, 40000, out_features).astype(np.int32), scale=bias_scale)
            y = b.tensor("y", [1, out_features], "INT8", scale=float(rng.uniform(0.2, 0.6)),
                         zero_point=int(rng.integers(-10, 10)))
            b.op("FULLY_CONNECTED", [x, w, bias], [y])
            b.output(y)
            cases.append((f"fc_{tag}_{depth}x{out_features}", b.build()))
        for op, hw, channels in (("CONV_2D", 48, 16), ("CONV_2D", 64, 16), ("DEPTHWISE_CONV_2D", 64, 16),
                                 ("DEPTHWISE_CONV_2D", 96, 8)):
            b = ModelBuilder()
            x = b.input("x", [1, hw, hw, channels], "INT8", scale=0.03, zero_point=int(rng.integers(-20, 20)))
            oc = channels
            ws = list(rng.uniform(0.005, 0.03, oc)) if per_channel else [0.01] * oc
            if op == "CONV_2D":
                w = b.constant("w", rng.integers(-127, 128, (oc, 3, 3, channels)).astype(np.int8),
                               scale=ws if per_channel else 0.01, zero_point=0, quantized_dimension=0)
                options = dict(padding="SAME", stride_w=1, stride_h=1)
            else:
                w = b.constant("w", rng.integers(-127, 128, (1, 3, 3, oc)).astype(np.int8),
                               scale=ws if per_channel else 0.01, zero_point=0, quantized_dimension=3)
                options = dict(padding="SAME", stride_w=1, stride_h=1, depth_multiplier=1)
            bias = b.constant("b", rng.integers(-4000, 4000, oc).astype(np.int32),
                              scale=[0.03 * s for s in ws] if per_channel else 0.03 * 0.01)
            y = b.tensor("y", [1, hw, hw, oc], "INT8", scale=float(rng.uniform(0.05, 0.15)), zero_point=3)
            b.op(op, [x, w, bias], [y], **options)
            b.output(y)
            cases.append((f"{op.lower()}_{tag}_{hw}x{hw}x{oc}", b.build()))
    return cases


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--batch-sizes", default="1,7,64,256")
    p.add_argument("--models", default=str(SHARED_MODELS))
    p.add_argument("--synthetic", action="store_true", help="also sweep the synthetic large layers")
    p.add_argument("--only", default="", help="comma-separated substrings of model names to sweep")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    todo = [(path.name, path.read_bytes()) for path in sorted(Path(args.models).glob("*.tflite"))]
    if args.synthetic:
        todo += synthetic_models()
    if args.only:
        todo = [(n, m) for n, m in todo if any(s in n for s in args.only.split(","))]
    bad = 0
    for name, model in todo:
        r = sweep(name, model, args.samples, sizes)
        if r.skipped:
            print(f"{name:44s} skipped: {r.skipped[:90]}", flush=True)
            continue
        bad += not r.exact
        cells = " ".join(f"{k}={v}" for k, v in r.differing.items())
        print(f"{name:44s} {'exact' if r.exact else 'DIFFERS':8s} {r.samples} samples; differing: {cells} "
              f"[{r.seconds:.0f}s]", flush=True)
    print(f"sweep: {bad} model(s) differ from TFLM" if bad else "sweep: every model matches TFLM")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
