"""The compiled requantization (ops/compiled/requantize.py) equals the numpy Requantizer and the
plain reference (ops/reference/requantize.py) byte for byte.

Each test forces the compiled path (compiled kernels on, Requantizer.compiled_elements below the
tensor size) and checks, through a spy, that the compiled kernel really ran; the numpy path runs
with compiled kernels off. The parameters reach the corners of TFLM's arithmetic: multipliers 0,
2^30, 2^31 - 1 and negative ones down to INT32_MIN (SaturatingRoundingDoublingHighMul's one
saturating case, INT32_MIN·INT32_MIN), right shifts up to 31, left shifts (masked to 5 bits, as
x86 does), biases beyond int32 (the int32 wrap of the accumulator), zero points at the int32
edges (the wrapping + zero point), accumulators near 2^24 (float32) and 2^53 (float64), int8,
int16 and int32 outputs, per-tensor and per-channel (1 to 33 channels), channel-last and
channel-major layouts, non-contiguous and empty tensors.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from compiled_support import counting_calls
from hypothesis import given, settings
from hypothesis import strategies as st

from ops import common, compiled
from ops import fixedpoint as fp
from ops.common import Requantizer
from ops.compiled import requantize as compiled_requantize
from ops.compiled import use_compiled
from ops.params import QuantizedOutput, frozen_array
from ops.reference.requantize import requantize as reference_requantize
from ops.registry import Numerics

pytest.importorskip("numba")
if not compiled.available():
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)

I32_MIN, I32_MAX = fp.INT32_MIN, fp.INT32_MAX
KERNELS = ("requantize_last_axis", "requantize_channel_major", "finish_single_last_axis", "finish_split_last_axis")


def spying():
    """Counts the calls of each compiled kernel (they still run)."""
    return counting_calls(compiled_requantize, *KERNELS)


@pytest.fixture
def spy():
    with spying() as calls:
        yield calls


def compiled_and_numpy(function, *args):
    """``function(*args)`` with the compiled path forced (every size, thresholds off), then with
    compiled kernels off and the default thresholds."""
    with pytest.MonkeyPatch.context() as mp, use_compiled(True):
        mp.setattr(Requantizer, "compiled_elements", -1)
        mp.setattr(Requantizer, "small_elements", -1)
        got = function(*(a.copy() if isinstance(a, np.ndarray) else a for a in args))
    with use_compiled(False):
        want = function(*(a.copy() if isinstance(a, np.ndarray) else a for a in args))
    return got, want


def reference(acc, bias, multiplier, shift, zp, lo, hi, may_wrap, dtype, rounding="double"):
    """ops.reference's requantization of acc + bias (channels last), as the Requantizer's output type."""
    a = np.asarray(acc, np.int64) + (0 if bias is None else bias)
    if may_wrap:
        a = fp.wrap_int32(a)
    q = QuantizedOutput(output_multiplier=frozen_array(multiplier), output_shift=frozen_array(shift),
                        output_offset=zp, activation_min=lo, activation_max=hi, rounding=rounding)
    return reference_requantize(a, q).astype(dtype)


MULTIPLIERS = st.one_of(st.integers(1 << 30, I32_MAX),
                        st.sampled_from([0, 1 << 30, I32_MAX, I32_MIN, -(1 << 30), I32_MIN + 1]),
                        st.integers(I32_MIN, I32_MAX))
SHIFTS = st.one_of(st.integers(-31, 0), st.sampled_from([-31, -30, 0, 1, 2, 30, 31, 32, 40]), st.integers(-31, 40))
ZERO_POINTS = st.one_of(st.integers(-128, 127), st.sampled_from([I32_MIN, I32_MAX, I32_MIN + 5, I32_MAX - 5, 0]),
                        st.integers(I32_MIN, I32_MAX))
# The raw accumulator bound and its arithmetic types (ExactIntegerMatmul's choice and the others a
# caller may pass): near 2^24 the float32 accumulators, near 2^53 the float64 ones; None is an
# unbounded int64 accumulator (the int32 wrap then applies).
BOUNDS = st.one_of(st.integers(1, 1 << 18), st.sampled_from([(1 << 24) - 1, (1 << 31) - 1, (1 << 53) - 1, None]),
                   st.integers(1, (1 << 24) - 1), st.integers(1, (1 << 53) - 1))
OUT_TYPES = st.sampled_from([np.int8, np.int16, np.int32])


def accumulator_types(bound):
    types = [np.int64]
    if bound is not None and bound < (1 << 53):
        types.append(np.float64)
    if bound is not None and bound < (1 << 31):
        types.append(np.int32)
    if bound is not None and bound < (1 << 24):
        types.append(np.float32)
    return types


@st.composite
def requantizations(draw):
    channels = draw(st.sampled_from([1, 1, 2, 3, 7, 16, 33]))
    per_channel = st.lists(MULTIPLIERS, min_size=channels, max_size=channels)
    if draw(st.booleans()):
        multiplier, shift = draw(per_channel), draw(st.lists(SHIFTS, min_size=channels, max_size=channels))
    else:  # one scale (the bias may still be per channel)
        multiplier, shift = [draw(MULTIPLIERS)] * channels, [draw(SHIFTS)] * channels
    bias = draw(st.one_of(st.none(), st.lists(st.one_of(st.integers(-5000, 5000), st.integers(-(1 << 40), 1 << 40),
                                                        st.integers(I32_MIN, I32_MAX)),
                                              min_size=channels, max_size=channels)))
    dtype = draw(OUT_TYPES)
    info = np.iinfo(dtype)
    lo = draw(st.one_of(st.just(int(info.min)), st.integers(int(info.min), int(info.max))))
    hi = draw(st.one_of(st.just(int(info.max)), st.integers(lo, int(info.max))))
    bound = draw(BOUNDS)
    return dict(multiplier=np.array(multiplier, np.int64), shift=np.array(shift, np.int64), zp=draw(ZERO_POINTS),
                lo=lo, hi=hi, dtype=dtype, bound=bound,
                bias=None if bias is None else np.array(bias, np.int64),
                acc_type=draw(st.sampled_from(accumulator_types(bound))), seed=draw(st.integers(0, 2 ** 32 - 1)),
                rows=draw(st.sampled_from([0, 1, 2, 5, 40])),
                numerics=draw(st.sampled_from([None, "default", "single"])))


def accumulators(rng, case, shape):
    """Random accumulators within the bound, with the bound itself, 0, ±1 and the exact ties of
    both roundings (acc·M + 2^30 on a multiple of 2^(31+e), give or take one) among them."""
    bound = case["bound"]
    limit = bound if bound is not None else 1 << 62
    acc = rng.integers(-limit, limit, shape, endpoint=True, dtype=np.int64)
    flat = acc.reshape(-1)
    m = np.broadcast_to(case["multiplier"], (shape[-1],)) if shape else case["multiplier"]
    right = np.maximum(-np.broadcast_to(case["shift"], (shape[-1],)), 0) if shape else 0
    for i in range(min(flat.size, 64)):
        c = i % shape[-1]
        kind = i % 8
        if kind < 5:
            flat[i] = [limit, -limit, 0, 1, -1][kind]
        elif m[c] != 0:
            period = 1 << (31 + int(right[c]))
            target = int(rng.integers(-300, 300)) * period + (period >> 1) * int(rng.integers(0, 2)) - (1 << 30)
            flat[i] = min(max(target // int(m[c]) + int(rng.integers(-1, 2)), -limit), limit)
    if bound is None and rng.integers(2):  # int32 edges, which the wrap of acc + bias folds over
        flat[: min(flat.size, 4)] = [I32_MIN, I32_MAX, I32_MIN - 1, I32_MAX + 1][: min(flat.size, 4)]
    return acc.astype(case["acc_type"])


def make(case):
    numerics = {None: None, "default": Numerics(), "single": Numerics(rounding="single")}[case["numerics"]]
    return Requantizer(case["multiplier"], case["shift"], case["zp"], case["lo"], case["hi"], case["dtype"],
                       case["bound"], numerics, bias=case["bias"])


def compiled_applies(case) -> bool:
    return case["numerics"] != "single"


@settings(max_examples=300, deadline=None)
@given(case=requantizations(), layout=st.sampled_from(["rows", "3d", "strided", "channel_major"]))
def test_compiled_requantization_equals_numpy_and_reference(case, layout):
    with spying() as spy:
        check_requantization(case, layout, spy)


def check_requantization(case, layout, spy):
    rng = np.random.default_rng(case["seed"])
    channels = case["multiplier"].size
    # Per-tensor scales without a per-channel bias requantize any width of rows.
    width = channels if channels > 1 or case["bias"] is not None else int(rng.integers(1, 20))
    acc = accumulators(rng, case, (case["rows"], width))
    r = make(case)
    bias = case["bias"]
    want = reference(acc, bias, case["multiplier"], case["shift"], case["zp"], case["lo"], case["hi"], r.may_wrap,
                     case["dtype"], "single" if case["numerics"] == "single" else "double")
    if layout == "channel_major":
        got, numpy_got = compiled_and_numpy(r.channel_major, np.ascontiguousarray(acc.T)[None])
        got, numpy_got = got[0].T, numpy_got[0].T
    elif layout == "3d":
        got, numpy_got = compiled_and_numpy(r, acc.reshape(1, acc.shape[0], width))
        got, numpy_got = got[0], numpy_got[0]
    elif layout == "strided":  # a non-contiguous view (every other row of a larger array)
        spread = np.repeat(acc, 2, axis=0)
        got, numpy_got = compiled_and_numpy(lambda a: r(a[::2]), spread)
    else:
        got, numpy_got = compiled_and_numpy(r, acc)
    assert got.dtype == want.dtype == numpy_got.dtype and got.shape == want.shape
    assert numpy_got.tobytes() == want.tobytes()
    assert got.tobytes() == want.tobytes(), f"{np.count_nonzero(got != want)} values differ"
    ran = spy["requantize_last_axis"] + spy["requantize_channel_major"]
    assert ran == (1 if compiled_applies(case) else 0)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), channels=st.sampled_from([1, 1, 2, 5, 16, 40]),
       huge=st.booleans(), relu=st.booleans(), per_tensor_scale=st.booleans(),
       out=st.sampled_from([np.int8, np.int16]), rows=st.sampled_from([0, 1, 3, 50]))
def test_compiled_finish_of_scaled_weights_equals_numpy(seed, channels, huge, relu, per_tensor_scale, out, rows):
    """[x, 1] @ scaled_weights then from_scaled: the compiled finish (single and split modes)
    equals _finish's numpy passes and the integer reference of x @ w."""
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 20))
    weights = rng.integers(-127, 128, (depth, channels))
    bound = int(np.abs(weights).sum(axis=0).max(initial=0)) * 128
    m = rng.integers(1 << 30, 1 << 31, channels)
    shift = -rng.integers(0, 31 if huge else 13, channels)
    if per_tensor_scale:
        m, shift = m[:1].repeat(channels), shift[:1].repeat(channels)
    bias = rng.integers(-(1 << 30), 1 << 30, channels) if huge else rng.integers(-5000, 5000, channels)
    info = np.iinfo(out)
    zp = int(rng.integers(-100, 100))
    lo, hi = (max(zp, int(info.min)) if relu else int(info.min)), int(info.max)
    r = Requantizer(m, shift, zp, lo, hi, out, bound, bias=bias)
    scaled = r.scaled_weights(weights)
    assert scaled is not None  # every channel's bound fits a float mode here
    x = rng.integers(-128, 128, (rows, depth))
    t = np.hstack([x, np.ones((rows, 1))]) @ scaled
    with spying() as spy:
        got, numpy_got = compiled_and_numpy(r.from_scaled, t)
    want = reference(x @ weights, bias, m, shift, zp, lo, hi, False, out)
    assert numpy_got.tobytes() == want.tobytes()
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    kernel = "finish_single_last_axis" if r.mode == "single" else "finish_split_last_axis"
    assert spy[kernel] == 1


def run_one(multiplier, shift, zp, acc, bias=None, lo=I32_MIN, hi=I32_MAX, dtype=np.int32, bound=None):
    """One compiled requantization (forced), checked against the numpy path; returns it."""
    r = Requantizer(multiplier, shift, zp, lo, hi, dtype, bound, bias=None if bias is None else np.array(bias))
    got, want = compiled_and_numpy(r, np.asarray(acc))
    assert got.tobytes() == want.tobytes()
    return got


def test_saturating_high_mul_of_int32_min_by_int32_min(spy):
    # SRDHM(INT32_MIN, INT32_MIN) is the one product that overflows: TFLM saturates it to INT32_MAX.
    got = run_one(I32_MIN, 0, 0, np.array([I32_MIN, I32_MIN + 1, -1], np.int64))
    assert got.tolist() == [I32_MAX, I32_MAX, 1]  # (INT32_MIN + 1)·INT32_MIN rounds to INT32_MAX itself
    assert spy["requantize_channel_major"] == 1


def test_left_shift_wraps_in_int32_and_counts_are_masked():
    # 1 << shift on x86 masks the count to 5 bits: shift 33 is a left shift by 1; the shifted
    # value wraps in int32 (2^30 << 1 = INT32_MIN).
    assert run_one(I32_MAX, 33, 0, np.array([1 << 30], np.int64)).tolist() == \
        run_one(I32_MAX, 1, 0, np.array([1 << 30], np.int64)).tolist()
    m = 1 << 30  # 0.5
    assert run_one(m, 1, 0, np.array([1 << 30, 3], np.int64)).tolist() == [-(1 << 30), 3]


def test_right_shift_31_and_ties_round_away_from_zero():
    # M = 2^31 - 1, shift -31: the result is acc·(2^31 - 1)/2^62 rounded twice.
    acc = np.array([I32_MAX, I32_MIN, 1 << 30, -(1 << 30), 0], np.int64)
    want = fp.rounding_divide_by_pot(fp.saturating_rounding_doubling_high_mul(acc, I32_MAX), 31)
    assert run_one(I32_MAX, -31, 0, acc).tolist() == want.tolist()
    # M = 2^30 (one half), shift -1: acc = 3 -> SRDHM 2 (1.5 rounds up) -> RDBPOT(2, 1) = 1;
    # acc = -3 -> SRDHM -1 (-1.5 rounds up) -> RDBPOT(-1, 1) = -1 (-0.5 away from zero);
    # acc = 1 (0.25) -> SRDHM 1 (0.5 rounds up) -> RDBPOT(1, 1) = 1: the double rounding's own
    # result, where one rounding would give 0; acc = -1 -> SRDHM 0 (-0.5 rounds up) -> 0.
    assert run_one(1 << 30, -1, 0, np.array([3, -3, 1, -1], np.int64)).tolist() == [1, -1, 1, 0]


def test_zero_point_addition_wraps_in_int32():
    # C adds the zero point to an int32: near INT32_MAX it wraps to negative values before the clamp.
    got = run_one(1 << 30, 0, I32_MAX, np.array([0, 2, 4], np.int64), lo=I32_MIN, hi=I32_MAX)
    assert got.tolist() == [I32_MAX, I32_MIN, I32_MIN + 1]
    got = run_one(1 << 30, 0, I32_MIN, np.array([0, -2], np.int64), lo=-128, hi=127, dtype=np.int8)
    assert got.tolist() == [-128, 127]


def test_accumulator_plus_bias_wraps_in_int32_when_it_may():
    # bound + |bias| >= 2^31: C's int32 accumulation wraps, and so does the compiled kernel.
    got = run_one(1 << 30, 0, 0, np.array([I32_MAX, 1], np.int64), bias=[1], bound=I32_MAX)
    assert got.tolist() == [fp.saturating_rounding_doubling_high_mul(I32_MIN, 1 << 30), 1]


def test_float_accumulators_at_their_exactness_bounds():
    for dtype, bound in ((np.float32, (1 << 24) - 1), (np.float64, (1 << 53) - 1)):
        acc = np.array([bound, -bound, bound - 1, 0], dtype)
        assert acc.astype(np.int64).tolist() == [bound, -bound, bound - 1, 0]  # exactly representable
        run_one(1518500250, -20, 3, acc, bias=[12345], lo=-32768, hi=32767, dtype=np.int16, bound=bound)


def test_int16_output_narrows_after_the_clamp():
    got = run_one(I32_MAX, 0, 0, np.array([40000, -40000, 123], np.int64), lo=-32768, hi=32767, dtype=np.int16)
    assert got.dtype == np.int16 and got.tolist() == [32767, -32768, 123]


def test_small_tensors_keep_the_numpy_paths_and_large_ones_go_compiled(spy):
    r = Requantizer(np.array([1 << 30] * 4), np.array([-3] * 4), 0, -128, 127, np.int8, 1 << 16,
                    bias=np.arange(4))
    small = np.ones((Requantizer.compiled_elements // 4, 4), np.float32)
    large = np.ones((Requantizer.compiled_elements // 4 + 1, 4), np.float32)
    with use_compiled(True):
        r(small)
        assert spy["requantize_last_axis"] == 0 and not r.compiled_for(small.size)
        r(large)
        assert spy["requantize_last_axis"] == 1 and r.compiled_for(large.size)
    with use_compiled(False):
        r(large)
        assert spy["requantize_last_axis"] == 1 and not r.compiled_for(large.size)


def test_fast_models_equal_reference_with_every_requantization_compiled(monkeypatch, spy):
    """CONV_2D and FULLY_CONNECTED models (per-channel, per-tensor, int8 and int16x8): the fast
    kernels with every requantization compiled equal the reference kernels."""
    from interp import Interpreter
    from interp.builder import ModelBuilder

    rng = np.random.default_rng(7)
    monkeypatch.setattr(Requantizer, "compiled_elements", -1)
    monkeypatch.setattr(Requantizer, "small_elements", -1)
    monkeypatch.setattr(common, "BLOCK_ELEMENTS", 64)
    for kind, per_channel in (("INT8", True), ("INT8", False), ("INT16", True)):
        b = ModelBuilder()
        zp = 3 if kind == "INT8" else 0
        x = b.input("x", [1, 6, 7, 5], kind, scale=0.02, zero_point=zp)
        w = b.constant("w", rng.integers(-127, 128, (4, 3, 3, 5)).astype(np.int8),
                       **(dict(scale=list(rng.uniform(1e-3, 5e-2, 4)), zero_point=0, quantized_dimension=0)
                          if per_channel else dict(scale=0.01, zero_point=0)))
        bias = b.constant("b", rng.integers(-20000, 20000, 4).astype(np.int32 if kind == "INT8" else np.int64),
                          scale=1e-4)
        y = b.tensor("y", [1, 6, 7, 4], kind, scale=0.05, zero_point=-zp)
        b.op("CONV_2D", [x, w, bias], [y], padding="SAME", stride_h=1, stride_w=1, fused_activation_function="RELU")
        fw = b.constant("fw", rng.integers(-127, 128, (6, 168)).astype(np.int8), scale=0.01, zero_point=0)
        fz = b.tensor("z", [1, 6], kind, scale=0.2, zero_point=zp)
        b.op("FULLY_CONNECTED", [y, fw], [fz], keep_num_dims=False)
        b.output(fz)
        data = b.build()
        fast, ref = Interpreter.from_bytes(data), Interpreter.from_bytes(data, kernels="reference")
        info = np.iinfo(np.int8 if kind == "INT8" else np.int16)
        inputs = [rng.integers(info.min, info.max, (4, 1, 6, 7, 5), endpoint=True).astype(info.dtype)]
        with use_compiled(True):
            got = fast.run_batch(inputs, threads=1)
        assert got[0].tobytes() == ref.run_batch(inputs, threads=1)[0].tobytes(), kind
    assert spy["requantize_last_axis"] + spy["requantize_channel_major"] + spy["finish_single_last_axis"] \
        + spy["finish_split_last_axis"] > 0


def test_numba_is_not_imported_by_load_prepare_or_small_runs():
    """from_bytes and prepare never import numba, nor a run whose requantizations are all small;
    a large batch then does (when compiled kernels are available)."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        from interp import Interpreter
        from interp.builder import ModelBuilder
        from ops import compiled
        b = ModelBuilder()
        x = b.input("x", [1, 4, 4, 3], "INT8", scale=0.02, zero_point=1)
        w = b.constant("w", np.ones((8, 1, 1, 3), np.int8), scale=0.01, zero_point=0)
        y = b.tensor("y", [1, 4, 4, 8], "INT8", scale=0.05, zero_point=0)
        b.op("CONV_2D", [x, w], [y], padding="SAME", stride_h=1, stride_w=1)
        b.output(y)
        it = Interpreter.from_bytes(b.build())
        assert "numba" not in sys.modules, "imported at load"
        it.run([np.ones((1, 4, 4, 3), np.int8)])
        assert "numba" not in sys.modules, "imported by a small run"
        it.run_batch([np.ones((1000, 1, 4, 4, 3), np.int8)], threads=1)
        assert ("numba" in sys.modules) == compiled.enabled(), "a large batch did not take the compiled path"
    """)
    env = dict(os.environ)
    env.pop("MICROREF_COMPILED", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
