"""TFLM's int8 requantization of a vector of int32 accumulators, emitted as LLVM IR (for kernels
written as numba intrinsics that keep their accumulators in registers): the left shift, the
int64 MultiplyByQuantizedMultiplier with both of TFLM's roundings as one arithmetic shift, the
output offset wrapped to int32 and the clamp, in registers; the caller narrows and stores.

It is ops/compiled/depthwise.py's fused formula, operation for operation, per lane:

    a      = acc·2^left                      (int32, wraps: x86's C ``x * (1 << left)``)
    p      = a·M                             (int64: |p| <= 2^31·(2^31 - 1) < 2^62, exact)
    scaled = (p + rounding - [p < -2^30]·negative_rounding) >> right_shift      (int64)
    out    = min(max(int32(scaled + output_offset), act_min), act_max)

with the per-channel constants of depthwise.plan (left = max(shift, 0) & 31, M >= 0,
rounding = 2^30 + [e > 0]·2^(30+e), negative_rounding = [e > 0]·2^31, right_shift = 31 + e, e =
max(-shift, 0) <= 31). depthwise.py's docstring proves the one shift equal to TFLM's two roundings
(SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). What the IR adds, and why each step
is that formula exactly:

* ``shl <N x i32> acc, left``: left <= 31 (below the width, so never poison), the low 32 bits of
  acc·2^left, i.e. the int32 product modulo 2^32 (numba's ``np.int32(np.int64(a) << left)``).
* ``mul (sext a), (sext M)`` in i64: both factors are int32, the product is below 2^62 in
  magnitude, so the i64 multiplication is exact (no wrap; LLVM lowers it to vpmuldq).
* ``p + rounding - select(p < -2^30, negative_rounding, 0)``: |p| + 2^30 + 2^61 + 2^31 < 2^63, no
  wrap; ``ashr`` by right_shift in 31..62 (below 64: defined) is the arithmetic shift, floor
  division by 2^right_shift, as numba's ``>>`` on int64.
* ``trunc`` to i32 then ``add`` the offset truncated to i32: (scaled + offset) modulo 2^32 equals
  trunc(scaled) + trunc(offset) modulo 2^32, so this is ``np.int32(scaled + output_offset)``.
* The clamp ``select(r > act_min, r, act_min)`` then ``select(r < act_max, r, act_max)`` in i32:
  the caller passes act_min and act_max that fit int32 (depthwise.plan refuses others), so
  comparing in i32 is comparing the integers; the order (max first, then min) is TFLM's.
* Narrowing (``trunc`` to i8, by the caller) keeps the low byte, as C's store to int8_t (and
  numba's store into an int8 array) does; for int8 outputs the clamp bounds are within int8.

tests/test_compiled_requant_ir.py runs the IR on extreme accumulators, multipliers and shifts
against ops.fixedpoint's multiply_by_quantized_multiplier. Imports llvmlite only when called
(codegen time); nothing here runs at load or prepare.
"""
from __future__ import annotations

__all__ = ["requantize", "constants_row"]

import numpy as np


def requantize(builder, acc, left, multiplier, rounding, negative_rounding, right_shift, offset, act_min, act_max):
    """IR for ``min(max(int32(((acc << left)·M + rounding - [·< -2^30]·negative_rounding) >> right_shift
    + offset), act_min), act_max)`` lane by lane (the module docstring). ``acc``, ``left``,
    ``multiplier``, ``offset``, ``act_min``, ``act_max``: <N x i32> values; ``rounding``,
    ``negative_rounding``, ``right_shift``: <N x i64>. Returns the <N x i32> result."""
    from llvmlite import ir

    lanes = acc.type.count
    i32, i64 = ir.IntType(32), ir.IntType(64)
    wide = ir.VectorType(i64, lanes)
    shifted = builder.shl(acc, left)  # int32 acc·2^left modulo 2^32 (left <= 31)
    product = builder.mul(builder.sext(shifted, wide), builder.sext(multiplier, wide))  # exact: |p| < 2^62
    low = ir.Constant(wide, [-(1 << 30)] * lanes)
    negative = builder.select(builder.icmp_signed("<", product, low), negative_rounding,
                              ir.Constant(wide, [0] * lanes))
    scaled = builder.ashr(builder.sub(builder.add(product, rounding), negative), right_shift)
    result = builder.add(builder.trunc(scaled, ir.VectorType(i32, lanes)), offset)  # int32(scaled + offset)
    result = builder.select(builder.icmp_signed(">", result, act_min), result, act_min)
    result = builder.select(builder.icmp_signed("<", result, act_max), result, act_max)
    return result


def constants_row(requant, channels: int, padded: int):
    """depthwise.plan's per-channel constants (a CompiledDepthwiseParams for ``channels`` int8
    channels) padded to ``padded`` lanes, in the types ``requantize`` loads them as:
    (left int32, multiplier int32, rounding int64, negative_rounding int64, right_shift int64).
    The padding lanes requantize with M = 0 (their results are never stored)."""
    left = np.zeros(padded, np.int32)
    multiplier = np.zeros(padded, np.int32)
    rounding = np.zeros(padded, np.int64)
    negative = np.zeros(padded, np.int64)
    right = np.full(padded, 31, np.int64)
    left[:channels] = requant.left_shift
    multiplier[:channels] = requant.multiplier
    rounding[:channels] = requant.rounding
    negative[:channels] = requant.negative_rounding
    right[:channels] = requant.right_shift
    out = []
    for a in (left, multiplier, rounding, negative, right):
        a.flags.writeable = False
        out.append(a)
    return tuple(out)
