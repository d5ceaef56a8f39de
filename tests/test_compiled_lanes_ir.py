"""ops/compiled/lanes_ir.py's IR blocks, each run through a small numba intrinsic on 16-lane groups,
equal TFLM's MultiplyByQuantizedMultiplier + output offset (wrapped to int32) + clamp as
ops.fixedpoint computes it: accumulators at the int32 ends and around the ±2^30 negative-rounding
threshold, every shift -31..31 (left shifts that wrap included), zero and extreme multipliers,
offsets at the int32 ends and at the boundaries of the shortcuts (MODE_SKIP_NEGATIVE's
|offset| < 2^29 and act_min >= offset, MODE_SATURATE's -128..127, fold_offset's 2^60), every
mode the plan helper allows (through ``tails``). No model, no TFLM."""
from __future__ import annotations

import numpy as np
import pytest
from compiled_support import skip_unless_compiled

skip_unless_compiled()

from ops import fixedpoint as fp  # noqa: E402
from ops.compiled import depthwise, lanes_ir  # noqa: E402

LANES = lanes_ir.LANES
ACCUMULATORS = np.array([fp.INT32_MIN, fp.INT32_MIN + 1, fp.INT32_MAX, fp.INT32_MAX - 1, 0, 1, -1, 1 << 30,
                         -(1 << 30), -(1 << 30) - 1, (1 << 30) - 1, 12345, -12345, 1 << 16, -(1 << 24), -3],
                        np.int64)
MULTIPLIERS = np.array([0, 1, 1 << 30, (1 << 31) - 1, 1518500250, (1 << 30) + 1, 1 << 20, 2], np.int64)
# (output offset, act_min, act_max): the int32 ends, the int8 bounds, ReLU6-like, and both sides of
# MODE_SKIP_NEGATIVE's |offset| < 2^29 and act_min >= offset.
BOUNDS = [(0, -128, 127), (-128, -128, 127), (-128, -128, 6), (127, -128, 0), (fp.INT32_MAX, -128, 127),
          (fp.INT32_MIN, -5, 90), (-(1 << 29) + 1, -128, 127), (-(1 << 29), -128, 127), (-7, -7, 100),
          (-6, -7, 100), (5, 5, 5)]
_built: dict = {}


def _modes(allowed: int):
    """Every mode whose bits ``lanes_ir.mode`` allows (0 always)."""
    return sorted({m & allowed for m in range(4)})


def _build(kind: str, flag: bool = False, other: bool = False, first: bool = False):
    """njit ``apply(acc, c32, c64, out, mode)`` running one lanes_ir block per group of 16 lanes,
    its variants chosen by ``mode`` through lanes_ir.tails. c32 rows: left shift, output offset,
    act_min, act_max, right shift - 32; c64 rows (even-odd order): multiplier with junk in the high
    half, rounding, negative rounding, right shift, output offset, multiplier, folded rounding.
    ``first``: ``negative_first`` (the emission order)."""
    key = (kind, flag, other, first)
    if key in _built:
        return _built[key]
    import numba
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    v32, h64, v8 = ir.VectorType(i32, LANES), ir.VectorType(i64, LANES // 2), ir.VectorType(i8, LANES)

    @intrinsic
    def group(typingctx, acc, c32, c64, out, g, mode):
        sig = types.void(acc, c32, c64, out, g, mode)

        def codegen(context, builder, signature, args):
            acc_a, c32_a, c64_a, out_a = [context.make_array(t)(context, builder, v)
                                          for t, v in zip(signature.args[:4], args[:4])]
            first = builder.mul(context.cast(builder, args[4], signature.args[4], types.int64),
                                ir.Constant(i64, LANES))
            mode_v = context.cast(builder, args[5], signature.args[5], types.int64)
            n = builder.extract_value(acc_a.shape, 0)

            def at(array, element, row, extra, vector):
                index = builder.add(builder.mul(n, ir.Constant(i64, row)), builder.add(first, ir.Constant(i64, extra)))
                address = builder.gep(builder.bitcast(array.data, element.as_pointer()), [index])
                return builder.load(builder.bitcast(address, vector.as_pointer()), align=1)

            acc_v = at(acc_a, i32, 0, 0, v32)
            left, offset, low, high, right32 = (at(c32_a, i32, row, 0, v32) for row in range(5))
            wide = [[at(c64_a, i64, row, 8 * h, h64) for h in range(2)] for row in range(7)]
            target = builder.bitcast(builder.gep(builder.bitcast(out_a.data, i8.as_pointer()), [first]),
                                     v8.as_pointer())

            def emit(skip_negative, saturate):
                if kind == "requantize":  # flag: the multiplier words carry M in their low half
                    multiplier = wide[0] if flag else wide[5]
                    halves = [(multiplier[h], wide[1][h], wide[2][h], wide[3][h]) for h in range(2)]
                    value = lanes_ir.requantize(builder, acc_v, left, halves, offset, low, high, skip_negative,
                                                saturate, multiplier_in_low_half=flag, negative_first=first)
                elif kind == "requantize_int8":  # flag: no left shift; other: the offset folded
                    halves = [(wide[0][h], wide[6 if other else 1][h], wide[2][h], wide[3][h]) for h in range(2)]
                    value = lanes_ir.requantize(builder, acc_v, None if flag else left, halves,
                                                None if other else offset, builder.trunc(low, v8),
                                                builder.trunc(high, v8), skip_negative, saturate, int8_bounds=True)
                elif kind == "merged":  # flag: with the left shift; other: the offset folded
                    value = lanes_ir.requantize_merged(
                        builder, acc_v, left if flag else None, wide[5], wide[6] if other else wide[1], wide[2],
                        wide[3], None if other else wide[4][0], low, high, skip_negative, saturate, first)
                elif kind == "high":  # the same constants in a group's lanes
                    value = lanes_ir.requantize_high(builder, acc_v, wide[0][0], wide[1][0], wide[2][0], right32,
                                                     offset, low, high, skip_negative, saturate)
                else:  # clamp_int8 of the accumulators themselves
                    value = lanes_ir.clamp_int8(builder, acc_v, builder.trunc(low, v8), builder.trunc(high, v8))
                builder.store(value, target, align=1)

            lanes_ir.tails(builder, mode_v, emit)
            return context.get_dummy_value()

        return sig, codegen

    @numba.njit
    def apply(acc, c32, c64, out, mode):
        for g in range(acc.size // LANES):
            group(acc, c32, c64, out, g, mode)

    _built[key] = apply
    return apply


def _tables(acc, multiplier, shift, offset, act_min, act_max):
    """The c32 / c64 tables of ``_build`` from depthwise.plan's per-lane constants."""
    n = acc.size
    requant = depthwise.plan("INT8", (1, 1, n), (1, 1), (1, 1), (1, 1), (0, 0), 1, 0, offset, act_min, act_max,
                             np.zeros((1, 1, n), np.int64), None, multiplier, shift)
    assert requant is not None
    junk = (np.arange(n, dtype=np.int64) * 0x9E3779B1 % (1 << 31)) << 32  # the high halves must not matter
    folded = np.array([int(v) + (int(offset) << int(r)) if abs(int(offset)) << int(r) <= 1 << 60 else 0
                       for v, r in zip(requant.rounding, requant.right_shift)], np.int64)
    c32 = np.stack([requant.left_shift, np.full(n, offset), np.full(n, act_min), np.full(n, act_max),
                    np.asarray(requant.right_shift) - 32]).astype(np.int64)
    c32 = ((c32 + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)
    c64 = np.stack([requant.multiplier + junk, requant.rounding, requant.negative_rounding, requant.right_shift,
                    np.full(n, offset), requant.multiplier, folded]).astype(np.int64)
    return np.ascontiguousarray(c32), lanes_ir.even_odd_order(c64)


def run(kind, acc, multiplier, shift, offset, act_min, act_max, mode, flag=False, other=False, first=False):
    acc = np.ascontiguousarray(acc, np.int32)
    c32, c64 = _tables(acc, multiplier, shift, offset, act_min, act_max)
    out = np.empty(acc.size, np.int8)
    _build(kind, flag, other, first)(acc, c32, c64, out, mode)
    return out


def reference(acc, multiplier, shift, offset, act_min, act_max):
    scaled = fp.multiply_by_quantized_multiplier(np.asarray(acc, np.int64), np.asarray(multiplier, np.int64),
                                                 np.asarray(shift, np.int64))
    value = fp.wrap_int32(np.asarray(scaled, np.int64) + offset)
    return np.minimum(np.maximum(value, act_min), act_max).astype(np.int8)


def _grid(shifts, per_group: bool = False):
    """Every (accumulator, multiplier, shift) combination, one per lane (a multiple of 16);
    ``per_group``: each group of 16 lanes one (multiplier, shift) and the 16 accumulators."""
    multiplier, shift, acc = np.meshgrid(MULTIPLIERS, np.asarray(shifts), ACCUMULATORS, indexing="ij")
    if not per_group:  # neighbouring lanes (the even and the odd halves) with other constants
        acc, multiplier, shift = (np.moveaxis(a, 2, 0) for a in (acc, multiplier, shift))
    return acc.reshape(-1), multiplier.reshape(-1), shift.reshape(-1)


@pytest.mark.parametrize("low_half, first", [(True, False), (False, False), (True, True)])
def test_requantize_every_shift_and_mode(low_half, first):
    acc, multiplier, shift = _grid(range(-31, 32))
    for offset, lo, hi in BOUNDS:
        want = reference(acc, multiplier, shift, offset, lo, hi)
        for mode in _modes(lanes_ir.mode(lo, hi, offset)):
            got = run("requantize", acc, multiplier, shift, offset, lo, hi, mode, low_half, first=first)
            assert np.array_equal(got, want), (offset, lo, hi, mode, np.flatnonzero(got != want)[:5])


@pytest.mark.parametrize("with_left, first", [(True, False), (False, False), (True, True)])
def test_requantize_merged_offset_added(with_left, first):
    """The offset added to the int64 results; without the left shift only where every lane's is 0."""
    acc, multiplier, shift = _grid(range(-31, 32) if with_left else range(-31, 1))
    for offset, lo, hi in BOUNDS:
        want = reference(acc, multiplier, shift, offset, lo, hi)
        for mode in _modes(lanes_ir.mode(lo, hi, offset)):
            got = run("merged", acc, multiplier, shift, offset, lo, hi, mode, with_left, first=first)
            assert np.array_equal(got, want), (offset, lo, hi, mode)


@pytest.mark.parametrize("no_left", [False, True])
def test_requantize_int8_bounds(no_left):
    """``requantize`` with clamp_int8's bounds (int8 vectors), with and without the left shift
    (shifts <= 0 only), the offset added (every BOUNDS entry, inverted bounds too) or folded."""
    acc, multiplier, shift = _grid(range(-31, 1) if no_left else range(-31, 32))
    for offset, lo, hi in BOUNDS + [(3, 100, -100)]:
        want = reference(acc, multiplier, shift, offset, lo, hi)
        for mode in _modes(lanes_ir.mode(lo, hi, offset)):
            got = run("requantize_int8", acc, multiplier, shift, offset, lo, hi, mode, no_left)
            assert np.array_equal(got, want), (offset, lo, hi, mode)
    for offset, first_shift in ((0, -31), (-128, -22), (127, -22)):
        acc, multiplier, shift = _grid(range(first_shift, 1) if no_left else range(first_shift, 32))
        want = reference(acc, multiplier, shift, offset, -128, 127)
        got = run("requantize_int8", acc, multiplier, shift, offset, -128, 127, 0, no_left, True)
        assert np.array_equal(got, want), offset


def test_requantize_merged_offset_folded():
    """The offset folded into the rounding (lanes where |offset|·2^right <= 2^60, fold_offset's
    bound: shifts from -29 up for offset ±1, the offsets at the bound's edge)."""
    for offset, first_shift in ((0, -31), (1, -29), (-1, -29), (-128, -22), (127, -22), (1 << 20, -1)):
        acc, multiplier, shift = _grid(range(first_shift, 32))
        for lo, hi in ((-128, 127), (-3, 9)):
            want = reference(acc, multiplier, shift, offset, lo, hi)
            for mode in _modes(lanes_ir.mode(lo, hi, offset)):
                got = run("merged", acc, multiplier, shift, offset, lo, hi, mode, True, True)
                assert np.array_equal(got, want), (offset, lo, hi, mode)


def test_requantize_high_words():
    """Right shifts >= 32 only (shift -31..-1, so no left shift), a group's lanes sharing a channel."""
    acc, multiplier, shift = _grid(range(-31, 0), per_group=True)
    for offset, lo, hi in BOUNDS:
        want = reference(acc, multiplier, shift, offset, lo, hi)
        for mode in _modes(lanes_ir.mode(lo, hi, offset)):
            got = run("high", acc, multiplier, shift, offset, lo, hi, mode)
            assert np.array_equal(got, want), (offset, lo, hi, mode)


def test_clamp_int8():
    """Saturate to -128..127, narrow, then TFLM's max / min with int8 bounds (inverted ones too)."""
    acc = np.concatenate([ACCUMULATORS, np.arange(-200, 200, 5, dtype=np.int64)[:64]])
    for lo, hi in ((-128, 127), (-5, 6), (0, 0), (100, -100), (127, 127), (-128, -128)):
        got = run("clamp", acc, np.zeros(acc.size, np.int64), np.zeros(acc.size, np.int64), 0, lo, hi, 0)
        assert np.array_equal(got, np.minimum(np.maximum(acc, lo), hi).astype(np.int8)), (lo, hi)


def test_skip_negative_is_needed_outside_its_bounds():
    """The tests above can fail: leaving out the negative rounding where act_min < offset changes
    bytes (so MODE_SKIP_NEGATIVE's condition is not vacuous)."""
    acc, multiplier, shift = _grid(range(-31, 0))
    want = reference(acc, multiplier, shift, 0, -128, 127)
    assert lanes_ir.mode(-128, 127, 0) == lanes_ir.MODE_SATURATE
    got = run("requantize", acc, multiplier, shift, 0, -128, 127, lanes_ir.MODE_SKIP_NEGATIVE)
    assert not np.array_equal(got, want)


def test_plan_helpers():
    assert lanes_ir.mode(-128, 127, -128) == lanes_ir.MODE_SKIP_NEGATIVE | lanes_ir.MODE_SATURATE
    assert lanes_ir.mode(-127, 127, -128) == lanes_ir.MODE_SKIP_NEGATIVE
    assert lanes_ir.mode(-128, 127, -127) == lanes_ir.MODE_SATURATE
    assert lanes_ir.mode(-128, 127, -(1 << 29)) == lanes_ir.MODE_SATURATE  # |offset| < 2^29 needed
    assert lanes_ir.mode(-128, 127, -(1 << 29) + 1) == lanes_ir.MODE_SKIP_NEGATIVE | lanes_ir.MODE_SATURATE
    assert lanes_ir.fold_offset([5, 7], [40, 62], 0).tolist() == [5, 7]
    assert lanes_ir.fold_offset([5], [40], 1 << 20).tolist() == [5 + (1 << 60)]
    assert lanes_ir.fold_offset([5], [40], (1 << 20) + 1) is None
    assert lanes_ir.fold_offset([5], [41], -(1 << 19)).tolist() == [5 - (1 << 60)]
    assert lanes_ir.fold_offset([5, 5], [31, 62], 1) is None
    order = lanes_ir.even_odd_order(np.arange(32).reshape(1, 32))[0]
    assert order.tolist() == (list(range(0, 16, 2)) + list(range(1, 16, 2)) + list(range(16, 32, 2))
                              + list(range(17, 32, 2)))


def test_channel_constants_layout():
    """channel_constants: each group of 16 channels as its 8 even channels, then its 8 odd ones;
    padding lanes M = 0, right shift 31, left shift 0; read-only."""
    n = 20
    requant = depthwise.plan("INT8", (1, 1, n), (1, 1), (1, 1), (1, 1), (0, 0), 1, 0, 0, -128, 127,
                             np.zeros((1, 1, n), np.int64), None, np.arange(n) + 1000, np.arange(n) % 40 - 31)
    left, wide = lanes_ir.channel_constants(requant, n, 32)
    order = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2), 16 + np.arange(0, 16, 2),
                            16 + np.arange(1, 16, 2)])
    for row, values, fill in ((0, requant.multiplier, 0), (1, requant.rounding, 0),
                              (2, requant.negative_rounding, 0), (3, requant.right_shift, 31)):
        padded = np.concatenate([np.asarray(values, np.int64), np.full(12, fill, np.int64)])
        assert np.array_equal(wide[row], padded[order]), row
    assert np.array_equal(left[:n], requant.left_shift) and not left[n:].any()
    assert not left.flags.writeable and not wide.flags.writeable
