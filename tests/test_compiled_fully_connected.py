"""int8 FULLY_CONNECTED on the compiled 1x1-convolution kernel (ops/compiled/pointwise_small.py, a
row as a one-pixel image) equals the reference kernel byte for byte, and TFLM.

The path is forced (FullyConnected.COMPILED_MIN_ELEMENTS = 0) and a spy checks it ran wherever
prepare planned it. The drawn layers are test_diff_fc's (per-tensor with weight zero points, which
keep the numpy path, and per-channel weights, int4 weights, biases up to 31 bits, every fused
activation, extreme scales and zero points), plus wide layers of a classifier head's size.
"""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import counting_calls
from diff_support import check_model, record, run_examples, seeds
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_diff_fc import build_fc, fc_cases

from interp import Interpreter
from interp.builder import ModelBuilder
from interp.errors import ModelError, UnsupportedOpError
from ops import compiled
from ops.compiled import pointwise_small, use_compiled
from ops.fully_connected import FullyConnected

pytest.importorskip("numba")
if not compiled.available() or not pointwise_small.available():
    pytest.skip("the compiled int8 kernels are off or the host lacks AVX512-VNNI", allow_module_level=True)


def forced_equals_reference(data: bytes, inputs: list[np.ndarray]) -> bool:
    """Whether prepare planned the compiled path; asserts its bytes equal the reference kernel's."""
    try:
        reference = Interpreter.from_bytes(data, kernels="reference")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(FullyConnected, "PLAN_MIN_WEIGHTS", 0)  # small drawn layers planned too
            fast = Interpreter.from_bytes(data)
    except (ModelError, UnsupportedOpError):
        assume(False)
    planned = fast.kernels[0].compiled_pointwise is not None
    want = reference.run_batch(inputs)[0]
    with counting_calls(pointwise_small, "conv") as calls, use_compiled(True), \
            pytest.MonkeyPatch.context() as mp:
        mp.setattr(FullyConnected, "COMPILED_MIN_ELEMENTS", 0)
        got = fast.run_batch(inputs)[0]
        single = fast.run([x[0] for x in inputs])[0]
    assert bool(calls["conv"]) == planned
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), f"{np.count_nonzero(got != want)} of {got.size} values differ"
    assert single.tobytes() == want[0].tobytes()
    return planned


@settings(max_examples=150, deadline=None)
@given(data=st.data(), kind=st.sampled_from(["INT8", "INT4"]))
def test_compiled_fully_connected_equals_reference(data, kind):
    case = data.draw(fc_cases(kind))
    model, inputs = build_fc(case)
    planned = forced_equals_reference(model, inputs)
    if case["weight_zp"] == 0 and case["kind"] == "INT8":
        # Only the filter zero point (and a refused layer) keeps the int8 path off.
        assert planned or _refused(model)


def _refused(model: bytes) -> bool:
    try:
        Interpreter.from_bytes(model)
    except (ModelError, UnsupportedOpError):
        return True
    return False


@settings(max_examples=12, deadline=None)
@given(seed=seeds, per_channel=st.booleans(), activation=st.sampled_from(["NONE", "RELU", "RELU6"]),
       shape=st.sampled_from([(8, 1280, 1000), (128, 64, 12), (5, 256, 17), (33, 100, 130)]))
def test_compiled_fully_connected_equals_reference_on_classifier_heads(seed, per_channel, activation, shape):
    """Wide layers (MobileNetV2's 1280 -> 1000 head, kws's 64 -> 12 at batch 128), depths not a
    multiple of 4 and output depths not a multiple of 16, biases near ±2^31 (the int32 sum wraps)."""
    rng = np.random.default_rng(seed)
    rows, depth, units = shape
    b = ModelBuilder()
    zp = int(rng.integers(-128, 128))
    x = b.input("x", [1, depth], "INT8", scale=0.05, zero_point=zp)
    scales = [float(s) for s in rng.uniform(0.001, 0.02, units)] if per_channel else 0.01
    w = b.constant("weights", rng.integers(-128, 128, (units, depth)).astype(np.int8), "INT8", scale=scales,
                   zero_point=0, quantized_dimension=0)
    bias_values = rng.integers(-(1 << 31), 1 << 31, units) if rng.integers(2) else rng.integers(-5000, 5000, units)
    bias_scales = [0.05 * s for s in scales] if per_channel else 0.05 * scales
    bias = b.constant("bias", bias_values.astype(np.int32), "INT32", scale=bias_scales, zero_point=0)
    y = b.tensor("y", [1, units], "INT8", scale=float(rng.uniform(0.01, 2.0)), zero_point=int(rng.integers(-128, 128)))
    b.op("FULLY_CONNECTED", [x, w, bias], [y], fused_activation_function=activation)
    b.output(y)
    xs = rng.integers(-128, 128, (rows, 1, depth)).astype(np.int8)
    assert forced_equals_reference(b.build(), [xs])


def test_small_fully_connected_layers_are_not_planned_by_default():
    """A fuzzing example's FC layer does not pay for the compiled plan in prepare."""
    model, _ = build_fc(dict(kind="INT8", input_shape=[2, 16], units=8, rows=2, keep_num_dims=False, activation=0,
                             seed=1, style="uniform", omitted_bias_slot=False, per_channel=False, input_scale=0.1,
                             output_scale=0.2, weight_scales=[0.01], weight_zp=0, input_zp=0, output_zp=0,
                             bias=None, bias_bits=0, bias_scale_factor=1.0))
    assert Interpreter.from_bytes(model).kernels[0].compiled_pointwise is None


def test_compiled_fully_connected_matches_tflm():
    """TFLM's own outputs with the compiled path forced on every drawn int8 layer."""
    def run_case(case):
        model, inputs = build_fc(case)
        with use_compiled(True), pytest.MonkeyPatch.context() as mp:
            mp.setattr(FullyConnected, "COMPILED_MIN_ELEMENTS", 0)
            mp.setattr(FullyConnected, "PLAN_MIN_WEIGHTS", 0)
            record(check_model(model, inputs, label="FULLY_CONNECTED INT8 compiled"), "FULLY_CONNECTED INT8 compiled")
    run_examples(fc_cases("INT8"), run_case, fraction=0.3)
