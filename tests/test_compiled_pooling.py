"""The compiled int8/int16 AVERAGE_POOL_2D (ops/compiled/pooling.py) equals the reference kernel
(ops/reference/pooling.py) and the numpy fast path byte for byte, without TFLM.

The compiled path is forced (compiled kernels on, AveragePool2D.COMPILED_MIN_ELEMENTS = 0) and a
spy checks that it ran. The cases reach the window arithmetic's corners: windows larger than the
image, SAME padding's partial windows at every border, strides of 0 to 4 (TFLM accepts 0: every
window sits at the origin), every fused activation with random scales and zero points, one to
forty channels, and a window large enough for TFLM's int32 sum to wrap.
"""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import counting_calls
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from ops import compiled
from ops.compiled import pooling as compiled_pooling
from ops.compiled import use_compiled
from ops.pooling import AveragePool2D

pytest.importorskip("numba")
if not compiled.available():
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)


def spying():
    return counting_calls(compiled_pooling, "average_pool_int")


def out_size(padding: str, size: int, filter_size: int, stride: int, rng) -> int:
    if stride <= 0:  # TFLM computes no output size for it: the model's own dims are looped over
        return int(rng.integers(1, 4))
    if padding == "SAME":
        return -(-size // stride)
    return max((size - filter_size) // stride + 1, 1)


def check(data: bytes, inputs: list[np.ndarray]) -> None:
    """Compiled (forced) == reference kernels == numpy fast path, on run_batch and run."""
    try:
        fast = Interpreter.from_bytes(data)
        reference = Interpreter.from_bytes(data, kernels="reference")
    except Exception as e:  # a window wholly outside the image is refused (TFLM leaves outputs unwritten)
        if type(e).__name__ in ("UnsupportedOpError", "ModelError"):
            return
        raise
    want = reference.run_batch(inputs)[0]
    with spying() as calls, use_compiled(True), pytest.MonkeyPatch.context() as mp:
        mp.setattr(AveragePool2D, "COMPILED_MIN_ELEMENTS", 0)
        got = fast.run_batch(inputs)[0]
        single = fast.run([inputs[0][0]])[0]
    assert calls["average_pool_int"], "the compiled kernel did not run"
    with use_compiled(False):
        numpy_got = fast.run_batch(inputs)[0]
    assert got.dtype == want.dtype and got.shape == want.shape
    assert numpy_got.tobytes() == want.tobytes()
    assert got.tobytes() == want.tobytes(), f"{np.count_nonzero(got != want)} values differ"
    assert single.tobytes() == want[0].tobytes()


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["INT8", "INT16"]),
       padding=st.sampled_from(["SAME", "VALID"]), strides=st.tuples(*[st.sampled_from([1, 1, 2, 3, 4, 0])] * 2),
       activation=st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]),
       channels=st.sampled_from([1, 3, 8, 40]), batch=st.sampled_from([1, 2]))
def test_compiled_average_pool_equals_reference(seed, kind, padding, strides, activation, channels, batch):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
    fh, fw = int(rng.integers(1, h + 3)), int(rng.integers(1, w + 3))  # up to larger than the image
    oh, ow = out_size(padding, h, fh, strides[0], rng), out_size(padding, w, fw, strides[1], rng)
    scale = float(10 ** rng.uniform(-3, 0))
    zp = int(rng.integers(-60, 60)) if kind == "INT8" else 0
    b = ModelBuilder()
    x = b.input("x", [batch, h, w, channels], kind, scale=scale, zero_point=zp)
    y = b.tensor("y", [batch, oh, ow, channels], kind, scale=scale, zero_point=zp)
    b.op("AVERAGE_POOL_2D", [x], [y], padding=padding, stride_h=strides[0], stride_w=strides[1],
         filter_height=fh, filter_width=fw, fused_activation_function=activation)
    b.output(y)
    info = np.iinfo(np.int8 if kind == "INT8" else np.int16)
    values = rng.integers(info.min, info.max, (3, batch, h, w, channels), endpoint=True).astype(info.dtype)
    if rng.integers(3) == 0:  # sums of equal signs and exact halves: the rounding's ties
        values = np.full_like(values, info.max if rng.integers(2) else info.min)
        values.reshape(-1)[:: int(rng.integers(2, 5))] = int(rng.integers(info.min, info.max))
    check(b.build(), [values])


def test_compiled_average_pool_wraps_its_int32_sum_as_tflm():
    # 300·300 taps of 32767 sum to 2,949,030,000 > 2^31: TFLM's int32 accumulator wraps negative,
    # and the rounded division of the wrapped sum is what it outputs.
    size = 300
    b = ModelBuilder()
    x = b.input("x", [1, size, size, 1], "INT16", scale=0.01, zero_point=0)
    y = b.tensor("y", [1, 1, 1, 1], "INT16", scale=0.01, zero_point=0)
    b.op("AVERAGE_POOL_2D", [x], [y], padding="VALID", stride_h=1, stride_w=1, filter_height=size,
         filter_width=size, fused_activation_function="NONE")
    b.output(y)
    values = np.full((2, 1, size, size, 1), 32767, np.int16)
    values[1, 0, :2, :, 0] = -32768
    check(b.build(), [values])
    total = size * size * 32767
    wrapped = (total + 2 ** 31) % 2 ** 32 - 2 ** 31
    assert wrapped < 0  # the case wraps indeed


def test_small_pools_keep_the_numpy_path():
    b = ModelBuilder()
    x = b.input("x", [1, 4, 4, 2], "INT8", scale=0.1, zero_point=0)
    y = b.tensor("y", [1, 1, 1, 2], "INT8", scale=0.1, zero_point=0)
    b.op("AVERAGE_POOL_2D", [x], [y], padding="VALID", stride_h=1, stride_w=1, filter_height=4, filter_width=4)
    b.output(y)
    it = Interpreter.from_bytes(b.build())
    with spying() as calls, use_compiled(True):
        it.run([np.ones((1, 4, 4, 2), np.int8)])
        assert not calls["average_pool_int"]
        it.run_batch([np.ones((AveragePool2D.COMPILED_MIN_ELEMENTS // 32, 1, 4, 4, 2), np.int8)])
        assert calls["average_pool_int"]


def test_float64_quotient_truncates_as_c_integer_division():
    """The kernel's division, trunc(fl(a / count)) in float64, equals C's truncating int32
    division on the extreme and the near-integer quotients (the docstring's proof: fl's error is
    below 1/count for |a| < 2^53): a at the int32 edges, counts up to 2^31 - 1, a = k·count ± 1."""
    rng = np.random.default_rng(3)
    counts = np.concatenate([np.arange(1, 300), rng.integers(1, 2 ** 31 - 1, 3000), [2 ** 31 - 1, 2 ** 30, 3, 7]])
    k = rng.integers(-2 ** 20, 2 ** 20, counts.size)
    a = np.concatenate([
        np.clip(k * counts + rng.integers(-1, 2, counts.size), -2 ** 31, 2 ** 31 - 1),
        np.full(counts.size, 2 ** 31 - 1), np.full(counts.size, -2 ** 31),
        rng.integers(-2 ** 31, 2 ** 31, counts.size)])
    c = np.tile(counts, 4)
    want = np.where(a >= 0, a // c, -((-a) // c))
    got = np.trunc(a.astype(np.float64) / c.astype(np.float64)).astype(np.int64)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kind", ["INT8", "INT16"])
def test_compiled_global_pools_of_the_benchmark_shapes(kind):
    """Global pools of the benchmark models' shapes (kws 25x5x64, vww 3x3x256, ResNet 8x8x64) and
    windows of 1..9 columns (the groups of four taps and their tails), type extremes."""
    rng = np.random.default_rng(9)
    info = np.iinfo(np.int8 if kind == "INT8" else np.int16)
    for h, w, c in [(25, 5, 64), (3, 3, 256), (8, 8, 64), (2, 9, 3), (1, 7, 16), (4, 1, 5)]:
        b = ModelBuilder()
        x = b.input("x", [1, h, w, c], kind, scale=0.02, zero_point=0)
        y = b.tensor("y", [1, 1, 1, c], kind, scale=0.02, zero_point=0)
        b.op("AVERAGE_POOL_2D", [x], [y], padding="VALID", stride_h=h, stride_w=w, filter_height=h,
             filter_width=w, fused_activation_function="NONE")
        b.output(y)
        values = rng.integers(info.min, info.max, (3, 1, h, w, c), endpoint=True).astype(info.dtype)
        values[0] = info.max
        values[1] = info.min
        check(b.build(), [values])
