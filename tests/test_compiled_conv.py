"""CONV_2D with compiled kernels on: short dot products (depth <= SCALED_GEMM_MAX_DEPTH) leave
the scale-folded float64 GEMM for the float32 GEMM followed by the compiled requantization, and
the bytes stay the reference kernel's. Without compiled kernels the scaled GEMM still runs.
Skipped without numba.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from interp import Interpreter  # noqa: E402
from interp.builder import ModelBuilder  # noqa: E402
from ops import compiled  # noqa: E402
from ops.common import Requantizer  # noqa: E402
from ops.compiled import use_compiled  # noqa: E402
from ops.conv import Conv2D  # noqa: E402

SAMPLES = 3


@st.composite
def short_convs(draw):
    """Convolutions whose dot products are at most 16 long (the scaled-GEMM candidates), with
    outputs large enough for the compiled requantization."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    kh, kw = draw(st.sampled_from([(1, 1), (1, 1), (3, 1), (2, 2), (1, 3)]))
    c = draw(st.integers(1, max(1, 16 // (kh * kw))))
    stride = draw(st.sampled_from([1, 1, 2]))
    h, w = draw(st.integers(8, 24)), draw(st.integers(8, 24))
    oc = draw(st.sampled_from([8, 16, 24, 33]))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    oh = -(-h // stride) if padding == "SAME" else (h - kh) // stride + 1
    ow = -(-w // stride) if padding == "SAME" else (w - kw) // stride + 1
    zp_in = draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    zp_out = draw(st.sampled_from([-128, 127, 0]) | st.integers(-128, 127))
    per_channel = draw(st.booleans())
    scales = [float(np.float32(2.0 ** e)) for e in rng.uniform(-14, -4, oc if per_channel else 1)]
    input_scale = float(np.float32(2.0 ** rng.uniform(-8, 0)))
    output_scale = float(np.float32(2.0 ** rng.uniform(-10, 2)))
    b = ModelBuilder()
    x = b.input("x", [1, h, w, c], "INT8", scale=input_scale, zero_point=zp_in)
    wt = b.constant("w", rng.integers(-128, 128, (oc, kh, kw, c)).astype(np.int8), "INT8",
                    scale=scales if per_channel else scales[0], zero_point=0, quantized_dimension=0)
    bits = draw(st.sampled_from([0, 16, 30]))
    bias = b.constant("b", rng.integers(-(1 << bits), (1 << bits) + 1, oc).astype(np.int32), "INT32",
                      scale=[input_scale * s for s in scales] if per_channel else input_scale * scales[0], zero_point=0)
    y = b.tensor("y", [1, oh, ow, oc], "INT8", scale=output_scale, zero_point=zp_out)
    b.op("CONV_2D", [x, wt, bias], [y], padding=padding, stride_h=stride, stride_w=stride,
         fused_activation_function=draw(st.sampled_from(["NONE", "RELU", "RELU6"])))
    b.output(y)
    return b.build(), rng


@settings(max_examples=40, deadline=None)
@given(case=short_convs(), compiled_on=st.booleans())
def test_short_convolutions_equal_reference_either_way(case, compiled_on):
    data, rng = case
    reference = Interpreter.from_bytes(data, kernels="reference")
    fast = Interpreter.from_bytes(data)
    kernel = fast.kernels[0]
    x = rng.integers(-128, 128, (SAMPLES,) + tuple(int(s) for s in fast.input_details[0]["shape"])).astype(np.int8)
    calls = []
    original = Conv2D._scaled_product
    with pytest.MonkeyPatch.context() as mp, use_compiled(compiled_on):
        mp.setattr(Requantizer, "compiled_elements", 0)
        mp.setattr(Conv2D, "_scaled_product", lambda self, *a: calls.append(1) or original(self, *a))
        got = fast.run_batch([x])[0]
        really_compiled = compiled.enabled()  # not under MICROREF_COMPILED=0
    want = reference.run_batch([x])[0]
    assert got.tobytes() == want.tobytes(), f"{np.count_nonzero(got != want)} values differ"
    if kernel.scaled_weights is not None and kernel.requantizer._compiled_arguments() is not None:
        # The scaled float64 GEMM runs exactly when the requantization is not compiled.
        assert bool(calls) == (not really_compiled)
        event("scaled GEMM candidate")
