"""Models and helpers for the compat tests (tests/test_compat_*.py): small models with
SignatureDefs, the same snippet run against two interpreters as a transcript, and TFLM's outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from interp.builder import ModelBuilder

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models"

Q = dict(scale=0.05, zero_point=-3)


def with_signature(model: bytes, key: str, inputs: dict[str, int], outputs: dict[str, int]) -> bytes:
    """``model`` with one more SignatureDef (names -> tensor indices of subgraph 0), written with
    the flatbuffer object API of TFLM's (or LiteRT's) generated schema."""
    try:
        from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb
    except ImportError:
        fb = pytest.importorskip("ai_edge_litert.schema_py_generated",
                                 reason="writing a SignatureDef needs tflite-micro's or LiteRT's schema module")
    import flatbuffers

    m = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(model, 0))
    sd = fb.SignatureDefT()
    sd.signatureKey = key
    sd.subgraphIndex = 0
    sd.inputs, sd.outputs = [], []
    for names, target in ((inputs, sd.inputs), (outputs, sd.outputs)):
        for name, index in names.items():
            tm = fb.TensorMapT()
            tm.name, tm.tensorIndex = name, index
            target.append(tm)
    m.signatureDefs = (m.signatureDefs or []) + [sd]
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def conv_model(seed: int = 0, signature: bool = True) -> bytes:
    """int8 CONV_2D (per-channel weights, SAME, RELU) then MAX_POOL_2D: input [1, 6, 6, 2] whose
    batch is -1 in shape_signature; signature "serving_default" with input "image", output
    "features"."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.input("serving_default_image:0", [1, 6, 6, 2], "INT8", shape_signature=[-1, 6, 6, 2], **Q)
    w = b.constant("conv/weights", rng.integers(-127, 128, (3, 3, 3, 2)).astype(np.int8),
                   scale=[0.02, 0.03, 0.015], zero_point=0, quantized_dimension=0)
    bias = b.constant("conv/bias", rng.integers(-500, 500, 3).astype(np.int32),
                      scale=[0.05 * 0.02, 0.05 * 0.03, 0.05 * 0.015], zero_point=0)
    y = b.tensor("conv/out", [1, 6, 6, 3], "INT8", shape_signature=[-1, 6, 6, 3], scale=0.1, zero_point=-10)
    b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_w=1, stride_h=1, fused_activation_function="RELU")
    z = b.tensor("StatefulPartitionedCall:0", [1, 3, 3, 3], "INT8", shape_signature=[-1, 3, 3, 3],
                 scale=0.1, zero_point=-10)
    b.op("MAX_POOL_2D", [y], [z], padding="VALID", stride_w=2, stride_h=2, filter_width=2, filter_height=2)
    b.output(z)
    data = b.build()
    return with_signature(data, "serving_default", {"image": x}, {"features": z}) if signature else data


def two_input_model() -> bytes:
    """int8 ADD of two [1, 4] inputs and a float32 DEQUANTIZE of the sum: two outputs; the
    signature names the inputs "zeta" (input 0) and "alpha" (input 1), so that LiteRT's sorted
    name order differs from the model's."""
    b = ModelBuilder()
    a = b.input("in_a", [1, 4], "INT8", shape_signature=[-1, 4], scale=0.1, zero_point=2)
    c = b.input("in_b", [1, 4], "INT8", shape_signature=[-1, 4], scale=0.07, zero_point=-5)
    s = b.tensor("sum", [1, 4], "INT8", shape_signature=[-1, 4], scale=0.15, zero_point=1)
    b.op("ADD", [a, c], [s], fused_activation_function="NONE")
    f = b.tensor("real", [1, 4], "FLOAT32", shape_signature=[-1, 4])
    b.op("DEQUANTIZE", [s], [f])
    b.output(s, f)
    return with_signature(b.build(), "add", {"zeta": a, "alpha": c}, {"sum": s, "real": f})


def tflm_outputs(model: bytes, inputs: list[np.ndarray], n_outputs: int) -> list[np.ndarray]:
    """TFLM's outputs for one invoke on a fresh interpreter."""
    runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime",
                                  reason="tflite-micro (the oracle) is not installed")
    ref = runtime.Interpreter.from_bytes(model, arena_size=1 << 22)
    for i, x in enumerate(inputs):
        ref.set_input(x, i)
    ref.invoke()
    return [np.array(ref.get_output(k)) for k in range(n_outputs)]


BUILTIN_ERRORS = (IndexError, KeyError, AttributeError, TypeError, ValueError, RuntimeError)


def error_kind(e: BaseException) -> str:
    """The builtin exception class a caller written for LiteRT / TFLM would catch."""
    for cls in BUILTIN_ERRORS:
        if isinstance(e, cls):
            return cls.__name__
    return type(e).__name__


def normalise(value):
    """A comparable form of an API result: arrays by dtype and shape (and values for small
    integer metadata), dicts recursively, numpy scalar types by name."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(normalise(v) for v in value)
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, float):
        return round(value, 9)
    return value


class Transcript:
    """Run steps of a snippet, recording each result (normalised) or the kind of error raised."""

    def __init__(self):
        self.lines: list[tuple[str, object]] = []
        self.values: dict[str, object] = {}  # raw results, by label

    def __call__(self, label: str, fn):
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 (the kind of any error is what is compared)
            self.lines.append((label, ("raises", error_kind(e))))
            self.values[label] = e
            return None
        self.lines.append((label, normalise(result)))
        self.values[label] = result
        return result


def compare_transcripts(theirs: Transcript | None, ours: Transcript):
    """Line by line; ``theirs`` None (the other runtime is not installed) compares nothing."""
    if theirs is None:
        return
    assert [label for label, _ in ours.lines] == [label for label, _ in theirs.lines]
    for (label, want), (_, got) in zip(theirs.lines, ours.lines):
        assert got == want, f"{label}: LiteRT/TFLM gave {want!r}, microref's compat {got!r}"


def accumulator_model() -> bytes:
    """A stateful model: state += x in the resource variable "acc"; the output is the value read
    before the update (so each invoke sees the previous ones until reset)."""
    b = ModelBuilder()
    q = dict(scale=0.5, zero_point=3)
    x = b.input("x", [1, 3], "INT8", **q)
    h = b.tensor("h", [], "RESOURCE")
    old, new = b.tensor("old", [1, 3], "INT8", **q), b.tensor("new", [1, 3], "INT8", **q)
    b.op("VAR_HANDLE", [], [h], shared_name="acc")
    b.op("READ_VARIABLE", [h], [old])
    b.op("ADD", [old, x], [new], fused_activation_function="NONE")
    b.op("ASSIGN_VARIABLE", [h, new], [])
    b.output(old)
    return b.build()
