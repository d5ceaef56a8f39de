"""TFLM's int8 requantization of 16 int32 accumulators, emitted as LLVM IR for kernels written as
numba intrinsics that keep their accumulators in registers: the left shift, the int64
MultiplyByQuantizedMultiplier with both of TFLM's roundings as one arithmetic shift, the output
offset wrapped to int32, the clamp and the narrowing to int8, all in registers.

It is ops/compiled/depthwise.py's fused formula, operation for operation, per lane:

    a      = acc·2^left                      (int32, wraps: x86's C ``x * (1 << left)``)
    p      = a·M                             (int64: |p| <= 2^31·(2^31 - 1) < 2^62, exact)
    scaled = (p + rounding - [p < -2^30]·negative_rounding) >> right_shift      (int64)
    out    = min(max(int32(scaled + output_offset), act_min), act_max)   stored as int8

with the per-channel constants of depthwise.plan (left = max(shift, 0) & 31, M >= 0,
rounding = 2^30 + [e > 0]·2^(30+e), negative_rounding = [e > 0]·2^31, right_shift = 31 + e, e =
max(-shift, 0) <= 31). depthwise.py's docstring proves the one shift equal to TFLM's two roundings
(SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT). What the IR adds, and why each step
is that formula exactly:

* ``shl <16 x i32> acc, left``: left <= 31 (below the width, so never poison) gives the low 32
  bits of acc·2^left, the int32 product modulo 2^32 (numba's ``np.int32(np.int64(a) << left)``).
* The int64 steps run on two halves of 8 lanes: the 16 int32 lanes bitcast to 8 int64 words
  (x86 is little-endian: word i holds lane 2i in its low half, lane 2i + 1 in its high half);
  ``ashr (shl w, 32), 32`` is lane 2i sign-extended, ``ashr w, 32`` lane 2i + 1. The constants
  come in the same halves (``constants``: each group of 16 channels as its 8 even channels, then
  its 8 odd ones), so no lane is moved before the final shuffle. (LLVM lowers the products of
  sign-extended 32-bit halves to vpmuldq.)
* ``mul`` of two int32 values sign-extended to i64: |p| <= 2^31·(2^31 - 1) < 2^62, exact.
* ``p + rounding - select(p < -2^30, negative_rounding, 0)``: |p| + 2^30 + 2^61 + 2^31 < 2^63, no
  wrap; ``ashr`` by right_shift in 31..62 (below 64: defined) is floor division by
  2^right_shift, as numba's ``>>`` on int64.
* Each half's int64 results are cut to their low 32 bits and put back in lane order by one
  shuffle (lane 2i from the even half's word i, lane 2i + 1 from the odd half's): the int32
  truncation. Then ``add`` the offset truncated to i32: (scaled + offset) modulo 2^32 equals
  trunc(scaled) + trunc(offset) modulo 2^32, so this is ``np.int32(scaled + output_offset)``.
* The clamp: first to [-128, 127] in int32 and ``trunc`` to i8 (LLVM selects one saturating
  narrowing instruction, vpmovsdb), then max with act_min and min with act_max (TFLM's order) in
  int8. For int8 bounds -128 <= lo, hi <= 127 (the caller checks them) this is TFLM's
  min(max(v, lo), hi) of the int32 v, with c the clamp to [-128, 127]: if v < -128, c(v) = -128
  and max(-128, lo) = lo = max(v, lo); if v > 127, c(v) = 127, max(127, lo) = 127 and
  min(127, hi) = hi = min(max(v, lo), hi) (max(v, lo) = v > hi); otherwise c(v) = v. The result
  lies in int8, so the narrowing keeps it whole.

tests/test_compiled_requant_ir.py runs the IR on extreme accumulators, multipliers, shifts and
offsets against ops.fixedpoint's multiply_by_quantized_multiplier. Imports llvmlite only when
called (codegen time); nothing here runs at load or prepare.
"""
from __future__ import annotations

__all__ = ["requantize16", "constants"]

import numpy as np

LANES = 16


def requantize16(builder, acc, left, multiplier, rounding, negative_rounding, right_shift, offset, act_min, act_max):
    """IR for ``min(max(int32(((acc << left)·M + rounding - [·< -2^30]·negative_rounding) >> right_shift
    + offset), act_min), act_max)`` on 16 lanes, narrowed to int8 (the module docstring). ``acc``,
    ``left``, ``offset``: <16 x i32>; ``act_min``, ``act_max``: <16 x i8> (int8 bounds); the
    int64 constants ``multiplier``, ``rounding``, ``negative_rounding``, ``right_shift``: pairs
    (even lanes, odd lanes) of <8 x i64>, as ``constants`` lays them out. Returns <16 x i8>.
    ``left=None``: no lane shifts left (the shift by 0 is left out); ``offset=None``: no addition
    (a caller that has folded the offset into ``rounding``, where it proved that exact)."""
    from llvmlite import ir

    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    quads = ir.VectorType(i64, LANES // 2)
    dwords = ir.VectorType(i32, LANES)
    bits32 = ir.Constant(quads, [32] * (LANES // 2))
    low = ir.Constant(quads, [-(1 << 30)] * (LANES // 2))
    none = ir.Constant(quads, [0] * (LANES // 2))
    # int32 acc·2^left modulo 2^32 (left <= 31)
    shifted = builder.bitcast(acc if left is None else builder.shl(acc, left), quads)
    # Qword i holds lanes 2i (low half) and 2i + 1 (high half) (x86 is little-endian): each half
    # sign-extended to int64.
    halves = (builder.ashr(builder.shl(shifted, bits32), bits32), builder.ashr(shifted, bits32))
    results = []
    for half, m, r, n, s in zip(halves, multiplier, rounding, negative_rounding, right_shift):
        m = builder.ashr(builder.shl(m, bits32), bits32)  # M (0..2^31 - 1): the sign extension changes nothing
        product = builder.mul(half, m)  # exact: |p| <= 2^31·(2^31 - 1) < 2^62
        negative = builder.select(builder.icmp_signed("<", product, low), n, none)
        results.append(builder.bitcast(builder.ashr(builder.sub(builder.add(product, r), negative), s), dwords))
    # The low half of each int64 result (the int32 truncation), lanes back in order.
    scaled = builder.shuffle_vector(results[0], results[1], ir.Constant(
        dwords, [(lane // 2) * 2 + (LANES if lane % 2 else 0) for lane in range(LANES)]))
    # int32(scaled + offset): both truncated, added modulo 2^32
    value = scaled if offset is None else builder.add(scaled, offset)
    # Saturate to int8 first: clamp(x, lo, hi) = clamp(clamp(x, -128, 127), lo, hi) for int8 bounds
    # lo, hi (the clamp to [-128, 127] is monotone and the identity there), and LLVM narrows the
    # saturated int32 in one instruction (vpmovsdb).
    value = _smin(builder, _smax(builder, value, ir.Constant(dwords, [-128] * LANES)),
                  ir.Constant(dwords, [127] * LANES))
    narrow = builder.trunc(value, ir.VectorType(i8, LANES))
    return _smin(builder, _smax(builder, narrow, act_min), act_max)  # TFLM's order: max, then min


def _smax(builder, a, b):
    return builder.select(builder.icmp_signed(">", a, b), a, b)


def _smin(builder, a, b):
    return builder.select(builder.icmp_signed("<", a, b), a, b)


def constants(requant, channels: int, padded: int):
    """depthwise.plan's per-channel constants (a CompiledDepthwiseParams for ``channels`` int8
    channels) padded to ``padded`` lanes (a multiple of 16) with M = 0 (those results are never
    stored), in ``requantize16``'s layout: ``left`` (padded,) int32; ``wide`` (4, padded) int64,
    rows multiplier, rounding, negative_rounding, right_shift, each group of 16 channels stored as
    its 8 even channels, then its 8 odd ones."""
    assert padded % LANES == 0 and padded >= channels
    left = np.zeros(padded, np.int32)
    left[:channels] = requant.left_shift
    wide = np.zeros((4, padded), np.int64)
    wide[3] = 31
    for row, values in enumerate((requant.multiplier, requant.rounding, requant.negative_rounding,
                                  requant.right_shift)):
        wide[row, :channels] = values
    # (row, group, lane pair, even/odd) -> (row, group, even/odd, lane pair)
    wide = np.ascontiguousarray(wide.reshape(4, padded // LANES, LANES // 2, 2).transpose(0, 1, 3, 2))
    wide = wide.reshape(4, padded)
    left.flags.writeable = False
    wide.flags.writeable = False
    return left, wide
