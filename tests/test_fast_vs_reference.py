"""Every fast path equals the plain reference kernel (ops.reference), without TFLM.

The fast kernels choose their path by shape (scale-folded GEMMs, tap layouts, blocking,
workspaces, per-tap loops); here each path is forced by its threshold or override instead, on
small random models, and the outputs of ``kernels="fast"`` and ``kernels="reference"``
interpreters must be identical byte for byte (floats included: -0.0 is not +0.0 here). These
tests protect users on machines without the tflite-micro wheel; the differential tests pin the
reference to TFLM itself.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interp import Interpreter
from interp.builder import ModelBuilder
from ops import common, pooling
from ops import fixedpoint as fp
from ops.common import Requantizer
from ops.conv import Conv2D, DepthwiseConv2D
from ops.shape import Transpose
from ops.softmax import Softmax, reciprocal_scalar

SAMPLES = 3
seeds = st.integers(0, 2 ** 32 - 1)
QUANTIZED = ("INT8", "INT16")


def assert_fast_equals_reference(data: bytes, rng: np.random.Generator) -> Interpreter:
    fast = Interpreter.from_bytes(data)
    reference = Interpreter.from_bytes(data, kernels="reference")
    inputs = []
    for d in fast.input_details:
        shape = (SAMPLES,) + tuple(int(s) for s in d["shape"])
        dtype = np.dtype(d["dtype"])
        if dtype.kind == "f":
            values = rng.standard_normal(shape).astype(dtype)
            values.reshape(-1)[:2] = [-0.0, 0.0][: values.size]  # signed zeros travel too
        else:
            info = np.iinfo(dtype)
            values = rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)
        inputs.append(values)
    got, want = fast.run_batch(inputs), reference.run_batch(inputs)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert g.tobytes() == w.tobytes(), f"{np.count_nonzero(g != w)} values differ; fast {g.ravel()[:8]} " \
                                           f"reference {w.ravel()[:8]}"
    single = fast.run([x[0] for x in inputs])
    for g, w in zip(single, want):
        assert g.tobytes() == w[0].tobytes()
    return fast


def quantization(rng, kind, channels=None, per_channel=False, dim=0):
    if kind == "FLOAT32":
        return {}
    if per_channel and channels:
        return dict(scale=list(rng.uniform(1e-3, 5e-2, channels)), zero_point=0, quantized_dimension=dim)
    zp = int(rng.integers(-20, 20)) if kind == "INT8" else 0
    return dict(scale=float(rng.uniform(1e-3, 5e-2)), zero_point=zp)


def weight_values(rng, kind, shape):
    if kind == "FLOAT32":
        return rng.standard_normal(shape).astype(np.float32)
    return rng.integers(-127, 128, shape).astype(np.int8)


def bias_values(rng, kind, channels, huge):
    if kind == "FLOAT32":
        return rng.standard_normal(channels).astype(np.float32)
    limit = (1 << 30) if huge else 20000
    dtype = np.int64 if kind == "INT16" else np.int32
    return rng.integers(-limit, limit, channels).astype(dtype)


def output_quantization(rng, kind):
    if kind == "FLOAT32":
        return {}
    # Scales from very fine to coarse: multipliers whose shifts pick every requantizer mode.
    return dict(scale=float(10 ** rng.uniform(-4, 1)), zero_point=int(rng.integers(-10, 10)) if kind == "INT8" else 0)


# ------------------------------------------------------------------ FULLY_CONNECTED
@settings(max_examples=60, deadline=None)
@given(seed=seeds, kind=st.sampled_from(QUANTIZED + ("FLOAT32",)), per_channel=st.booleans(),
       huge_bias=st.booleans(), large=st.booleans(), blocked=st.booleans(),
       activation=st.sampled_from(["NONE", "RELU"]), small=st.booleans())
def test_fully_connected_fast_paths_equal_reference(seed, kind, per_channel, huge_bias, large, blocked, activation,
                                                    small):
    rng = np.random.default_rng(seed)
    depth, outputs, rows = int(rng.integers(1, 48)), int(rng.integers(1, 24)), int(rng.integers(1, 4))
    b = ModelBuilder()
    x = b.input("x", [rows, depth], kind, **quantization(rng, kind))
    w = b.constant("w", weight_values(rng, kind, (outputs, depth)),
                   **quantization(rng, "INT8" if kind != "FLOAT32" else kind, outputs, per_channel))
    bias = b.constant("b", bias_values(rng, kind, outputs, huge_bias),
                      **({} if kind == "FLOAT32" else dict(scale=1e-4)))
    y = b.tensor("y", [rows, outputs], kind, **output_quantization(rng, kind))
    b.op("FULLY_CONNECTED", [x, w, bias], [y], fused_activation_function=activation)
    b.output(y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Requantizer, "large_elements", 0 if large else 1 << 30)
        mp.setattr(Requantizer, "small_elements", 1 << 30 if small else 0)
        mp.setattr(common, "BLOCK_ELEMENTS", 8 if blocked else 1 << 17)
        try:
            assert_fast_equals_reference(b.build(), rng)
        except Exception as e:  # a model TFLM's Prepare refuses is refused the same in both modes
            if type(e).__name__ not in ("ModelError", "UnsupportedOpError"):
                raise


# ------------------------------------------------------------------ CONV_2D
@settings(max_examples=60, deadline=None)
@given(seed=seeds, kind=st.sampled_from(QUANTIZED + ("FLOAT32",)), per_channel=st.booleans(),
       scaled_gemm=st.booleans(), blocked=st.booleans(), large=st.booleans(), groups=st.sampled_from([1, 1, 2]),
       padding=st.sampled_from(["SAME", "VALID"]), pointwise=st.booleans(), small=st.booleans())
def test_conv_fast_paths_equal_reference(seed, kind, per_channel, scaled_gemm, blocked, large, groups, padding,
                                         pointwise, small):
    rng = np.random.default_rng(seed)
    h, w_, filter_depth = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 4))
    out_c = groups * int(rng.integers(1, 4))
    kh, kw = (1, 1) if pointwise else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (1, 1) if pointwise else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = (1, 1) if pointwise else (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    if padding == "VALID":
        h, w_ = max(h, (kh - 1) * dilation[0] + 1), max(w_, (kw - 1) * dilation[1] + 1)
    oh = -(-h // stride[0]) if padding == "SAME" else (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = -(-w_ // stride[1]) if padding == "SAME" else (w_ - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    b = ModelBuilder()
    x = b.input("x", [1, h, w_, filter_depth * groups], kind, **quantization(rng, kind))
    wt = b.constant("w", weight_values(rng, kind, (out_c, kh, kw, filter_depth)),
                    **quantization(rng, "INT8" if kind != "FLOAT32" else kind, out_c, per_channel))
    bias = b.constant("b", bias_values(rng, kind, out_c, False), **({} if kind == "FLOAT32" else dict(scale=1e-4)))
    y = b.tensor("y", [1, oh, ow, out_c], kind, **output_quantization(rng, kind))
    b.op("CONV_2D", [x, wt, bias], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         dilation_h_factor=dilation[0], dilation_w_factor=dilation[1], fused_activation_function="RELU6")
    b.output(y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Conv2D, "SCALED_GEMM_MAX_DEPTH", 1 << 20 if scaled_gemm else 0)
        mp.setattr(common, "BLOCK_ELEMENTS", 8 if blocked else 1 << 17)
        mp.setattr(Requantizer, "large_elements", 0 if large else 1 << 30)
        mp.setattr(Requantizer, "small_elements", 1 << 30 if small else 0)
        fast = assert_fast_equals_reference(b.build(), rng)
    kernel = fast.kernels[0]
    if scaled_gemm and kind == "INT8" and groups == 1 and kernel.requantizer.use_float:
        assert kernel.scaled_weights is not None  # the forced path was taken


# ------------------------------------------------------------------ DEPTHWISE_CONV_2D
LAYOUTS = [None, "matmul", "gemm", "channel_major", "nhwc_phases", "windows"]


@settings(max_examples=80, deadline=None)
@given(seed=seeds, kind=st.sampled_from(QUANTIZED + ("FLOAT32",)), per_channel=st.booleans(),
       layout=st.sampled_from(LAYOUTS), blocked=st.booleans(), large=st.booleans(),
       padding=st.sampled_from(["SAME", "VALID"]), one_channel=st.booleans(), small=st.booleans(),
       small_matmul=st.booleans())
def test_depthwise_fast_layouts_equal_reference(seed, kind, per_channel, layout, blocked, large, padding, one_channel,
                                                small, small_matmul):
    rng = np.random.default_rng(seed)
    h, w_ = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    channels = 1 if one_channel or layout == "gemm" else int(rng.integers(1, 5))
    dm = int(rng.integers(2, 4)) if layout == "gemm" else int(rng.integers(1, 3))
    kh, kw = (int(rng.integers(3, 6)), int(rng.integers(4, 6))) if layout == "matmul" else \
        (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    dilation = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    if padding == "VALID":
        h, w_ = max(h, (kh - 1) * dilation[0] + 1), max(w_, (kw - 1) * dilation[1] + 1)
    oh = -(-h // stride[0]) if padding == "SAME" else (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = -(-w_ // stride[1]) if padding == "SAME" else (w_ - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    out_c = channels * dm
    b = ModelBuilder()
    x = b.input("x", [1, h, w_, channels], kind, **quantization(rng, kind))
    wt = b.constant("w", weight_values(rng, kind, (1, kh, kw, out_c)),
                    **quantization(rng, "INT8" if kind != "FLOAT32" else kind, out_c, per_channel, dim=3))
    bias = b.constant("b", bias_values(rng, kind, out_c, False), **({} if kind == "FLOAT32" else dict(scale=1e-4)))
    y = b.tensor("y", [1, oh, ow, out_c], kind, **output_quantization(rng, kind))
    b.op("DEPTHWISE_CONV_2D", [x, wt, bias], [y], padding=padding, stride_h=stride[0], stride_w=stride[1],
         dilation_h_factor=dilation[0], dilation_w_factor=dilation[1], depth_multiplier=dm)
    b.output(y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DepthwiseConv2D, "force_layout", layout)
        # The per-channel product of small calls, forced on every call or off (the layout runs).
        mp.setattr(DepthwiseConv2D, "SMALL_MATMUL_ELEMENTS", 1 << 30 if small_matmul else 0)
        mp.setattr(common, "BLOCK_ELEMENTS", 8 if blocked else 1 << 17)
        mp.setattr(Requantizer, "large_elements", 0 if large else 1 << 30)
        mp.setattr(Requantizer, "small_elements", 1 << 30 if small else 0)
        fast = assert_fast_equals_reference(b.build(), rng)
    k = fast.kernels[0]
    taken = ("gemm" if k.scaled_weights is not None else "matmul" if k.use_matmul else
             "channel_major" if k.channel_major else "nhwc_phases" if k.nhwc_phases else "windows")
    if layout == "channel_major" or (layout == "nhwc_phases" and dm == 1) or layout == "windows" \
            or (layout == "matmul" and kind != "FLOAT32" and k.compute_dtype is np.float32):
        assert taken == layout  # the forced path was taken


# ------------------------------------------------------------------ pooling
@settings(max_examples=60, deadline=None)
@given(seed=seeds, kind=st.sampled_from(QUANTIZED + ("FLOAT32",)),
       op=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]), per_tap=st.booleans(),
       padding=st.sampled_from(["SAME", "VALID"]), wrap=st.booleans())
def test_pooling_fast_paths_equal_reference(seed, kind, op, per_tap, padding, wrap):
    rng = np.random.default_rng(seed)
    h, w_, c = int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 5))
    fh, fw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    if padding == "VALID":
        h, w_ = max(h, fh), max(w_, fw)
    oh = -(-h // sh) if padding == "SAME" else (h - fh) // sh + 1
    ow = -(-w_ // sw) if padding == "SAME" else (w_ - fw) // sw + 1
    q = quantization(rng, kind)
    b = ModelBuilder()
    x = b.input("x", [2, h, w_, c], kind, **q)
    y = b.tensor("y", [2, oh, ow, c], kind, **q)
    b.op(op, [x], [y], padding=padding, stride_h=sh, stride_w=sw, filter_height=fh, filter_width=fw,
         fused_activation_function="RELU")
    b.output(y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pooling, "PER_TAP_MIN_ELEMENTS", 0 if per_tap else 1 << 30)
        mp.setattr(pooling.AveragePool2D, "WRAP_FREE_BOUND", 0 if wrap else 1 << 31)  # int32 wraps or none
        assert_fast_equals_reference(b.build(), rng)


# ------------------------------------------------------------------ TRANSPOSE
@settings(max_examples=60, deadline=None)
@given(seed=seeds, kind=st.sampled_from(["INT8", "INT16", "FLOAT32"]), short=st.booleans())
def test_transpose_by_last_axis_index_equals_reference(seed, kind, short):
    """TRANSPOSE's copy one index of a short innermost output axis at a time (forced on every
    shape, or off) equals the one strided copy, ranks 1-5, every permutation."""
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 6))
    shape = [int(rng.integers(1, 6)) for _ in range(rank)]
    perm = [int(p) for p in rng.permutation(rank)]
    b = ModelBuilder()
    q = dict(scale=0.5, zero_point=0) if kind != "FLOAT32" else {}
    x = b.input("x", shape, kind, **q)
    p = b.constant("perm", np.array(perm, np.int32))
    y = b.tensor("y", [shape[k] for k in perm], kind, **q)
    b.op("TRANSPOSE", [x, p], [y])
    b.output(y)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Transpose, "SHORT_LAST_AXIS", 1 << 30 if short else -1)
        assert_fast_equals_reference(b.build(), rng)


# ------------------------------------------------------------------ SOFTMAX
@settings(max_examples=60, deadline=None)
@given(seed=seeds, out_kind=st.sampled_from(["INT8", "INT16"]), beta=st.sampled_from([1.0, 0.5, 2.7]),
       scalar=st.booleans())
def test_int8_softmax_tables_equal_reference(seed, out_kind, beta, scalar):
    rng = np.random.default_rng(seed)
    rows, depth = int(rng.integers(1, 5)), int(rng.integers(1, 40))
    b = ModelBuilder()
    x = b.input("x", [rows, depth], "INT8", scale=float(10 ** rng.uniform(-3, 0)),
                zero_point=int(rng.integers(-20, 20)))
    oq = dict(scale=1 / 256, zero_point=-128) if out_kind == "INT8" else dict(scale=1 / 65536, zero_point=-32768)
    y = b.tensor("y", [rows, depth], out_kind, **oq)
    b.op("SOFTMAX", [x], [y], beta=beta)
    b.output(y)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Softmax, "SCALAR_RECIPROCAL_MAX_ROWS", 1 << 30 if scalar else 0)
            assert_fast_equals_reference(b.build(), rng)
    except Exception as e:  # input_scale·beta·2^26 <= 1 is refused by TFLM's Prepare, in both modes
        if type(e).__name__ != "ModelError":
            raise


# ------------------------------------------------------------------ Requantizer, directly
@settings(max_examples=200, deadline=None)
@given(seed=seeds, per_channel=st.booleans(), relu=st.booleans(), bias=st.booleans(),
       near=st.booleans(), out_kind=st.sampled_from(["INT8", "INT16"]))
def test_requantizer_paths_equal_tflm_primitives(seed, per_channel, relu, bias, near, out_kind):
    """Every float path of the Requantizer (the step thresholds of small tensors, _finish's passes
    over small and large tensors, channel-major) equals TFLM's int64 MultiplyByQuantizedMultiplier,
    zero point and clamp, on accumulators that include the exact ties of both roundings."""
    rng = np.random.default_rng(seed)
    channels = int(rng.integers(1, 6)) if per_channel else 1
    multiplier = rng.integers(1 << 30, (1 << 31) - 1, channels, endpoint=True)
    shift = -rng.integers(0, 14, channels) if per_channel and rng.integers(2) else \
        np.full(channels, -int(rng.integers(0, 14)))
    zp = int(rng.integers(-128, 128)) if out_kind == "INT8" else 0
    lo, hi = (-128, 127) if out_kind == "INT8" else (-32768, 32767)
    if relu:
        lo = max(lo, zp)
    if rng.integers(3) == 0:  # a narrower range (RELU6-like)
        hi = min(hi, lo + int(rng.integers(0, 200)))
    acc_bound = int(rng.integers(1, 1 << 22))
    b = rng.integers(-(1 << 20), 1 << 20, channels) if bias else None
    dtype = np.dtype(out_kind.lower())
    r = Requantizer(multiplier, shift, zp, lo, hi, dtype, acc_bound, None, bias=b)
    assert r.use_float
    acc = rng.integers(-acc_bound, acc_bound, (int(rng.integers(1, 40)), channels), endpoint=True)
    if near:  # accumulators whose product lands exactly on a rounding tie of either rounding
        e = -shift
        for j in range(channels):
            m, bj = int(multiplier[j]), int(b[j]) if b is not None else 0
            for i in range(acc.shape[0]):
                target = int(rng.integers(-300, 300)) * (1 << (31 + int(e[j]))) + (1 << 30) * int(rng.integers(0, 3))
                a = target // m - bj + int(rng.integers(-1, 2))
                acc[i, j] = min(max(a, -acc_bound), acc_bound)
    a64 = acc + (b if b is not None else 0)
    want = np.minimum(np.maximum(fp.wrap_int32(fp.multiply_by_quantized_multiplier(a64, multiplier, shift) + zp),
                                 lo), hi).astype(dtype)
    results = {}
    for small, large in ((1 << 30, 1 << 30), (0, 1 << 30), (0, 0)):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(Requantizer, "small_elements", small)
            mp.setattr(Requantizer, "large_elements", large)
            results[(small, large)] = (r(acc.astype(np.float32)),
                                       np.swapaxes(r.channel_major(np.swapaxes(acc, 0, 1).astype(np.float64)), 0, 1))
    for (small, large), (rows, columns) in results.items():
        assert rows.dtype == dtype and rows.tobytes() == want.tobytes(), (small, large, rows, want)
        assert columns.tobytes() == np.ascontiguousarray(want).tobytes(), (small, large)
    if r.mode == "single" and np.all(shift == shift[0]) and hi - lo <= 255:
        assert r.thresholds is not None  # the threshold path was among those compared


def test_scalar_reciprocal_equals_the_array_reciprocal():
    """int8 SOFTMAX's Python-int GetReciprocal (few rows) against the array version (many rows):
    random int32 values, every value near 0 and the sums of exps softmax produces (up to 2^19 per
    element), the int32 extremes and powers of two."""
    rng = np.random.default_rng(20)
    values = np.concatenate([rng.integers(-(1 << 31), 1 << 31, 20000), np.arange(-600, 600),
                             rng.integers(0, 1 << 26, 5000), [(1 << 31) - 1, -(1 << 31)],
                             [1 << k for k in range(31)], [(1 << k) - 1 for k in range(1, 32)]])
    for digits in (12, 0, 31):
        scales, bits = fp.get_reciprocal(values, digits)
        for v, s, b in zip(values.tolist(), scales.tolist(), bits.tolist()):
            assert reciprocal_scalar(v, digits) == (s, b), (v, digits)


# ------------------------------------------------------------------ int8 binary-op tables
@settings(max_examples=30, deadline=None)
@given(seed=seeds, op=st.sampled_from(["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"]),
       activation=st.sampled_from(["NONE", "RELU", "RELU6"]))
def test_int8_binary_tables_equal_their_formula_on_every_pair(seed, op, activation):
    """The 256x256 table an int8 ADD/SUB/MUL/SQUARED_DIFFERENCE looks up (built 32 rows at a time)
    holds the kernel's formula for every pair of inputs."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x1 = b.input("x1", [1, 4], "INT8", scale=float(10 ** rng.uniform(-3, 0)), zero_point=int(rng.integers(-128, 128)))
    x2 = b.input("x2", [1, 4], "INT8", scale=float(10 ** rng.uniform(-3, 0)), zero_point=int(rng.integers(-128, 128)))
    y = b.tensor("y", [1, 4], "INT8", scale=float(10 ** rng.uniform(-3, 0)), zero_point=int(rng.integers(-128, 128)))
    options = {} if op == "SQUARED_DIFFERENCE" else {"fused_activation_function": activation}
    b.op(op, [x1, x2], [y], **options)
    b.output(y)
    try:
        kernel = Interpreter.from_bytes(b.build()).kernels[0]
    except Exception as e:  # scales TFLM's Prepare refuses are refused here too
        if type(e).__name__ != "ModelError":
            raise
        return
    values = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.int64)
    want = kernel.quantized(values[:, None], values[None, :]).astype(np.int8).reshape(-1)
    assert kernel.table is not None and kernel.table.tobytes() == want.tobytes()
