"""Shared by the tests/test_planner_*.py files: TFLM's own numbers, and small models to plan.

Ground truth is the tflite-micro wheel's "Arena allocation head"/"tail" (print_allocations),
compared live where the wheel is importable, and the verified table in the shared notes (§3.7).
"""
from __future__ import annotations

import os
import re
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from interp.builder import ModelBuilder
from interp.planner import OFFLINE_METADATA, write_model_metadata

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "models"
REPRO = REPO.parent / "shared" / "repro"
GOLDEN = REPO / "golden" / "models"

# TFLM's "Arena allocation head" and "tail" for the shared models (notes §3.7 and the
# tflite-micro wheel's print_allocations).
TFLM = {
    "ad01_int8": (768, 3216),
    "hello_world_int8": (32, 1472),
    "kws_ref_model": (16000, 8272),
    "micro_speech_quantized": (5968, 1616),
    "mobilenet_v2_quantized_1x3x224x224": (2451840, 155328),
    "person_detect": (55296, 29968),
    "pretrainedResnet_quant": (49152, 6832),
    "vww_96_int8": (73728, 29952),
}
# Heads of the other shared models the wheel loads: ops microref has no kernel for (SVDF, the
# signal library) or whose scratch comes from a kernel (LSTM). Their tails are not estimated.
TFLM_HEAD_ONLY = {
    "audio_preprocessor_int8": 3040,
    "dtln_noise_suppression": 1424,
    "keyword_scrambled": 672,
    "keyword_scrambled_8bit": 672,
    "micro_speech_lstm": 17168,
    "trained_lstm": 5696,
    "trained_lstm_int8": 1536,
}

needs_models = pytest.mark.skipif(not MODELS.is_dir(), reason=f"shared models not found at {MODELS}")

try:
    from tflite_micro.python.tflite_micro import runtime as tflm_runtime
except Exception:  # pragma: no cover - depends on the environment
    tflm_runtime = None
needs_tflm = pytest.mark.skipif(tflm_runtime is None, reason="tflite_micro is not importable")


def model_path(name: str) -> Path:
    return MODELS / f"{name}.tflite"


def shared_model(name: str) -> Path:
    p = model_path(name)
    if not p.exists():
        pytest.skip(f"shared model {p} is absent")
    return p


def repro_model(name: str) -> Path:
    p = REPRO / name
    if not p.exists():
        pytest.skip(f"repro model {p} is absent")
    return p


def tflm_load(data: bytes, arena_size: int = 16 << 20):
    """(interpreter, allocation report text) from the tflite-micro wheel; RuntimeError if it refuses.
    The calling test skips where the wheel is not installed."""
    if tflm_runtime is None:
        pytest.skip("tflite_micro is not importable")
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        with tempfile.TemporaryFile() as tmp:
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                try:
                    it = tflm_runtime.Interpreter.from_file(path, arena_size=arena_size)
                    it.print_allocations()
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)
            finally:
                tmp.seek(0)
                text = tmp.read().decode("utf-8", "replace")
    finally:
        os.unlink(path)
    return it, text


def tflm_refusal(data: bytes) -> str | None:
    """What the wheel prints when it refuses to allocate the model (None if it loads it)."""
    with tempfile.NamedTemporaryFile(suffix=".tflite", delete=False) as f:
        f.write(data)
        path = f.name
    try:
        with tempfile.TemporaryFile() as tmp:
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                tflm_runtime.Interpreter.from_file(path, arena_size=1 << 20)
                return None
            except RuntimeError:
                pass
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            return tmp.read().decode("utf-8", "replace")
    finally:
        os.unlink(path)


def tflm_allocations(data: bytes):
    """(head, tail, interpreter) that the tflite-micro wheel reports for a model's bytes."""
    it, text = tflm_load(data)
    head = int(re.search(r"Arena allocation head (\d+) bytes", text).group(1))
    tail = int(re.search(r"Arena allocation tail (\d+) bytes", text).group(1))
    return head, tail, it


def tflm_run(it, inputs) -> list[np.ndarray]:
    for i, x in enumerate(inputs):
        it.set_input(x, i)
    it.invoke()
    return [it.get_output(i) for i in range(len(it.get_output_details()) if hasattr(it, "get_output_details")
                                            else 1)]


# ---------------------------------------------------------------------- synthetic models
Q = {"scale": 0.05, "zero_point": 0}


def weights(rng, shape):
    return rng.integers(-20, 20, shape, dtype=np.int8)


def two_branch_model(order=(0, 1, 2, 3, 4), extra_tensors=(), outputs=("out",)) -> bytes:
    """x -> FC -> a[1024] -> FC -> b[16];  x -> FC -> c[1024] -> FC -> d[16];  out = b + d.

    Tensor indices: x 0, w 1, a 2, w 3, b 4, w 5, c 6, w 7, d 8, out 9, then ``extra_tensors``
    (dicts of tensor() arguments). The stored order (0..4) runs both 1024-byte branches side by
    side (peak 2064 live bytes); running one branch to the end first needs 1056.
    """
    rng = np.random.default_rng(1)
    b = ModelBuilder()
    t = {"x": b.input("x", [1, 16], "INT8", **Q)}
    t["w0"] = b.constant("w0", weights(rng, (1024, 16)), **Q)
    t["a"] = b.tensor("a", [1, 1024], "INT8", **Q)
    t["w1"] = b.constant("w1", weights(rng, (16, 1024)), **Q)
    t["b"] = b.tensor("b", [1, 16], "INT8", **Q)
    t["w2"] = b.constant("w2", weights(rng, (1024, 16)), **Q)
    t["c"] = b.tensor("c", [1, 1024], "INT8", **Q)
    t["w3"] = b.constant("w3", weights(rng, (16, 1024)), **Q)
    t["d"] = b.tensor("d", [1, 16], "INT8", **Q)
    t["out"] = b.tensor("out", [1, 16], "INT8", **Q)
    for e in extra_tensors:
        b.tensor(**{"dtype": "INT8", **e})
    ops = [("FULLY_CONNECTED", ["x", "w0", None], ["a"]), ("FULLY_CONNECTED", ["x", "w2", None], ["c"]),
           ("FULLY_CONNECTED", ["a", "w1", None], ["b"]), ("FULLY_CONNECTED", ["c", "w3", None], ["d"]),
           ("ADD", ["b", "d"], ["out"])]
    for i in order:
        name, ins, outs = ops[i]
        b.op(name, [None if n is None else t[n] for n in ins], [t[n] for n in outs])
    b.output(*[t[n] for n in outputs])
    return b.build()


def fc_model(n_in: int = 8, n_out: int = 4) -> bytes:
    """x[1, n_in] -> FULLY_CONNECTED -> y[1, n_out]: tensors x 0, w 1, y 2."""
    b = ModelBuilder()
    x = b.input("x", [1, n_in], "INT8", **Q)
    w = b.constant("w", weights(np.random.default_rng(0), (n_out, n_in)), **Q)
    y = b.tensor("y", [1, n_out], "INT8", **Q)
    b.op("FULLY_CONNECTED", [x, w, None], [y])
    b.output(y)
    return b.build()


def with_offline_words(data: bytes, offsets: list[int]) -> bytes:
    """The model with an OfflineMemoryAllocation of exactly these per-tensor words (any values)."""
    payload = struct.pack(f"<{3 + len(offsets)}i", 1, 0, len(offsets), *offsets)
    return write_model_metadata(data, OFFLINE_METADATA, payload)
