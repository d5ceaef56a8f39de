"""ops/compiled/requant_ir.py's IR requantization of 16 int32 lanes (the even / odd int64 halves,
the shuffle back, the offset wrapped to int32, the saturating narrowing and the int8 clamp)
equals TFLM's MultiplyByQuantizedMultiplier + offset + clamp as ops.fixedpoint computes it, on
extreme accumulators (±2^31 ends, ±2^30 around the negative-rounding threshold), multipliers
(0, 1, 2^30, 2^31 - 1), shifts from -31 to +40 (left shifts that wrap, counts masked as x86 does),
offsets over the whole int32 range (the int32 wrap of scaled + offset) and activation bounds
inside int8. No model, no TFLM: the IR is run through a small numba intrinsic per 16 lanes.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")
if os.environ.get("MICROREF_COMPILED", "").strip().lower() in ("0", "off", "no", "false"):
    pytest.skip("compiled kernels are turned off (MICROREF_COMPILED)", allow_module_level=True)

from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import depthwise, requant_ir  # noqa: E402

LANES = requant_ir.LANES
_apply = None


def _make_apply():
    """njit ``apply(acc, left, wide, numbers, out)``: requant_ir.requantize16 on each group of 16
    lanes of acc (int32), with ``requant_ir.constants``' left / wide and numbers = (offset,
    act_min, act_max) int64, the int8 results stored to out."""
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    acc_t, half_t, out_t = ir.VectorType(i32, LANES), ir.VectorType(i64, LANES // 2), ir.VectorType(i8, LANES)

    def splat(builder, value, vector):
        one = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(i32, 0))
        return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))

    @intrinsic
    def group(typingctx, acc, left, wide, numbers, out, g):
        sig = types.void(acc, left, wide, numbers, out, g)

        def codegen(context, builder, signature, args):
            acc_a, left_a, wide_a, num_a, out_a = [context.make_array(t)(context, builder, v)
                                                   for t, v in zip(signature.args[:5], args[:5])]
            g_v = context.cast(builder, args[5], signature.args[5], types.int64)
            first = builder.mul(g_v, ir.Constant(i64, LANES))
            padded = builder.extract_value(wide_a.shape, 1)

            def at(array, element, index, vector):
                address = builder.gep(builder.bitcast(array.data, element.as_pointer()), [index])
                return builder.load(builder.bitcast(address, vector.as_pointer()), align=1)

            number = [builder.load(builder.gep(num_a.data, [ir.Constant(i64, j)])) for j in range(3)]
            offset = splat(builder, builder.trunc(number[0], i32), acc_t)
            low, high = (splat(builder, builder.trunc(v, i8), out_t) for v in number[1:])
            halves = [[at(wide_a, i64, builder.add(builder.mul(ir.Constant(i64, row), padded),
                                                    builder.add(first, ir.Constant(i64, 8 * h))), half_t)
                       for h in range(2)] for row in range(4)]
            value = requant_ir.requantize16(builder, at(acc_a, i32, first, acc_t), at(left_a, i32, first, acc_t),
                                            *halves, offset, low, high)
            address = builder.gep(builder.bitcast(out_a.data, i8.as_pointer()), [first])
            builder.store(value, builder.bitcast(address, out_t.as_pointer()), align=1)
            return context.get_dummy_value()

        return sig, codegen

    @numba.njit
    def apply(acc, left, wide, numbers, out):
        for g in range(acc.size // LANES):
            group(acc, left, wide, numbers, out, g)

    return apply


def requantize_ir(acc, multiplier, shift, offset, act_min, act_max):
    """The IR's bytes for per-lane constants (16·G lanes), through depthwise.plan's constants."""
    global _apply
    if _apply is None:
        _apply = _make_apply()
    n = acc.size
    requant = depthwise.plan("INT8", (1, 1, n), (1, 1), (1, 1), (1, 1), (0, 0), 1, 0, offset, act_min, act_max,
                             np.zeros((1, 1, n), np.int64), None, multiplier, shift)
    assert requant is not None
    left, wide = requant_ir.constants(requant, n, n)
    out = np.empty(n, np.int8)
    _apply(np.ascontiguousarray(acc, np.int32), left, wide, np.array([offset, act_min, act_max], np.int64), out)
    return out


def requantize_reference(acc, multiplier, shift, offset, act_min, act_max):
    scaled = fp.multiply_by_quantized_multiplier(np.asarray(acc, np.int64), np.asarray(multiplier, np.int64),
                                                 np.asarray(shift, np.int64))
    value = fp.wrap_int32(np.asarray(scaled, np.int64) + offset)
    return np.minimum(np.maximum(value, act_min), act_max).astype(np.int8)


ACCUMULATORS = np.array([fp.INT32_MIN, fp.INT32_MIN + 1, fp.INT32_MAX, fp.INT32_MAX - 1, 0, 1, -1, 1 << 30,
                         -(1 << 30), -(1 << 30) - 1, (1 << 30) - 1, 12345, -12345, 1 << 16, -(1 << 24), 99],
                        np.int64)
MULTIPLIERS = np.array([0, 1, 1 << 30, (1 << 31) - 1, 1518500250, (1 << 30) + 1, 1 << 20, 2], np.int64)


def test_every_shift_on_extreme_values():
    """Every shift -31..40 with every extreme multiplier, all 16 lanes different accumulators (each
    lane position meets each value: the even / odd halves and the shuffle back), offsets 0, ±128 and
    the int32 ends (scaled + offset wraps), the full int8 range and a RELU6-like range."""
    rng = np.random.default_rng(5)
    for shift in range(-31, 41):
        for m in MULTIPLIERS:
            acc = np.concatenate([ACCUMULATORS, np.roll(ACCUMULATORS, 7)])
            multiplier = np.full(acc.size, m)
            shifts = np.full(acc.size, shift)
            for offset, lo, hi in [(0, -128, 127), (-128, -128, 127), (127, -128, 0), (fp.INT32_MAX, -128, 127),
                                   (fp.INT32_MIN, -5, 90), (int(rng.integers(-300, 300)), -128, 6)]:
                got = requantize_ir(acc, multiplier, shifts, offset, lo, hi)
                want = requantize_reference(acc, multiplier, shifts, offset, lo, hi)
                assert np.array_equal(got, want), (shift, m, offset, lo, hi, got, want)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), groups=st.integers(1, 4), offset=st.integers(fp.INT32_MIN, fp.INT32_MAX)
       | st.integers(-128, 127), bounds=st.tuples(st.integers(-128, 127), st.integers(-128, 127)))
def test_per_lane_constants(seed, groups, offset, bounds):
    """Per-lane multipliers and shifts (a per-channel layer's), drawn from the extremes and at
    random, accumulators from the extremes and at random, several groups of 16 (the constants'
    even / odd layout per group); inverted bounds too (max first, then min, as TFLM)."""
    rng = np.random.default_rng(seed)
    n = LANES * groups
    acc = np.where(rng.integers(0, 2, n) == 1, rng.choice(ACCUMULATORS, n),
                   rng.integers(fp.INT32_MIN, fp.INT32_MAX, n, endpoint=True))
    multiplier = np.where(rng.integers(0, 2, n) == 1, rng.choice(MULTIPLIERS, n), rng.integers(0, 1 << 31, n))
    shift = rng.integers(-31, 41, n)
    lo, hi = bounds
    got = requantize_ir(acc, multiplier, shift, offset, lo, hi)
    assert np.array_equal(got, requantize_reference(acc, multiplier, shift, offset, lo, hi))


def test_constants_layout():
    """constants: each group of 16 channels as its 8 even channels, then its 8 odd ones; padding
    lanes M = 0, right shift 31."""
    n = 20
    requant = depthwise.plan("INT8", (1, 1, n), (1, 1), (1, 1), (1, 1), (0, 0), 1, 0, 0, -128, 127,
                             np.zeros((1, 1, n), np.int64), None, np.arange(n) + 1000, -np.arange(n) % 32 - 1)
    left, wide = requant_ir.constants(requant, n, 32)
    order = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2), 16 + np.arange(0, 16, 2),
                            16 + np.arange(1, 16, 2)])
    padded_m = np.concatenate([requant.multiplier, np.zeros(12, np.int64)])
    assert np.array_equal(wide[0], padded_m[order])
    padded_r = np.concatenate([requant.right_shift, np.full(12, 31)])
    assert np.array_equal(wide[3], padded_r[order])
    assert left.shape == (32,) and not left[n:].any()
